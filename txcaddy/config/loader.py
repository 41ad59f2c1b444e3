"""Caddy JSON config → runtime objects.

The loader is the only code that reads the JSON. Each module object is built
by the factory registered for its Caddy module ID (``config/registry.py``);
factories receive the module's JSON and this ``LoadContext`` to build nested
modules, routes and matcher sets the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txcaddy.config import registry, schema
from txcaddy.errors import ConfigError
from txcaddy.http.routing import MatcherSet, Route, RouteList

_State = TypeVar("_State")


class Runtime:
    """What one service keeps across the configs it loads, shared with no other service.

    Caddy keeps such state in package variables (the hosts of ``reverse_proxy``, the DNS
    answers of dynamic upstreams): one process, one Caddy. txcaddy may be embedded more than
    once in a process, so each ``CaddyService`` makes one ``Runtime`` and every config it
    loads gets it as ``LoadContext.runtime``; loading the next config with the same runtime
    keeps the state across the reload.

    Each module keeps its state type to itself: ``runtime.get(HostRegistry)`` is the
    service's one ``HostRegistry``, made the first time a module asks. Modules look it up
    while loading and keep it on what they build (no lookup per request).

    @ivar send_batch: the reactor's batch of sends (``_twisted.install_fast_io``) while the
        service runs with ``fast_io``, else None.
    @ivar fatal: set by what owns the process (``txcaddy run``, ``twistd caddy``): called with
        an exception when a module cannot serve after all (an ASGI app's lifespan startup
        failed), to stop the process; None when embedded.
    """

    def __init__(self) -> None:
        self._parts: dict[type[Any], Any] = {}
        self.send_batch: Any = None
        self.fatal: Callable[[BaseException], None] | None = None

    def get(self, kind: type[_State]) -> _State:
        """This runtime's one ``kind()``, made on first use."""
        part = self._parts.get(kind)
        if part is None:
            part = self._parts[kind] = kind()
        return part  # type: ignore[no-any-return]

    def provide(self, kind: type[_State], part: _State) -> None:
        """Make ``part`` this runtime's ``kind`` before any module asks (``txcaddy.testing``
        puts a fake transport registry in, so proxy routes dial no socket)."""
        self._parts[kind] = part


class LoadContext:
    """What module factories get besides their own JSON.

    @ivar runtime: the loading service's ``Runtime`` (a fresh one when none is given).
    """

    def __init__(self, reactor: Any = None, log: Logger | None = None, runtime: Runtime | None = None) -> None:
        self.reactor = reactor
        self.log = log or Logger(namespace="txcaddy")
        self.runtime = runtime if runtime is not None else Runtime()
        self.path: list[str] = []  # where in the config we are, for error messages
        # Called when the config is unloaded (server stopped or replaced): modules
        # release shared state and close what they hold open (pools, tunnels, timers);
        # a hook may return a Deferred that fires once that is done.
        self.unload_hooks: list[Callable[[], Any]] = []
        # Services modules need while the config runs (health checkers, ...): the
        # service tree adopts them.
        self.services: list[Any] = []
        # A module that needs the ``pki`` app at run time (``acme_server``) sets ``want_pki``;
        # the service then runs the app and puts it in ``pki`` once built (after the HTTP app).
        self.want_pki = False
        self.pki: Any = None

    def on_unload(self, hook: Callable[[], Any]) -> None:
        """Run ``hook()`` when this config is unloaded (it may return a Deferred)."""
        self.unload_hooks.append(hook)

    def unload(self) -> Deferred[None]:
        """Run the unload hooks, newest first; fire once what they returned has fired.

        One failing (at once or later) does not stop the others: its failure is logged.
        """
        hooks, self.unload_hooks = self.unload_hooks, []
        done = [maybeDeferred(hook).addErrback(self._unload_failed) for hook in reversed(hooks)]
        return gatherResults(done).addCallback(lambda _: None)

    def _unload_failed(self, failure: Failure) -> None:
        self.log.failure("error while unloading the config", failure)

    def _where(self) -> str:
        return ".".join(self.path) or "config"

    def load_module(self, namespace: str, config: Any, inline_key: str) -> Any:
        """Load ``config`` as module ``namespace.<config[inline_key]>``."""
        if not isinstance(config, dict):
            raise ConfigError(f"{self._where()}: module config must be a JSON object, got {type(config).__name__}")
        name = config.get(inline_key)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{self._where()}: module name missing: expected a '{inline_key}' field")
        factory = registry.lookup(f"{namespace}.{name}")
        body = {k: v for k, v in config.items() if k != inline_key}
        where = self._where()
        self.path.append(name)
        try:
            self._check(f"{namespace}.{name}", body)
            loaded = factory(body, self)
            registry.check_provides(f"{namespace}.{name}", loaded, where)
            return loaded
        except ConfigError:
            raise
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"{self._where()}: loading module '{namespace}.{name}': {e}") from None
        finally:
            self.path.pop()

    def _check(self, module_id: str, config: Any) -> None:
        """The module's declared JSON shape (``registry.module(..., schema=)``), for modules
        loaded outside a whole-config check (tests, plugins under a free-form field)."""
        spec = registry.schema_for(module_id)
        if spec is not None:
            schema.check(spec, config, self._where())

    def load_handler(self, config: Any) -> Any:
        return self.load_module("http.handlers", config, "handler")

    def load_matcher_set(self, config: Any) -> Any:
        if not isinstance(config, dict):
            raise ConfigError(f"{self._where()}: a matcher set must be a JSON object")
        matchers = []
        for name, value in config.items():
            factory = registry.lookup(f"http.matchers.{name}")
            where = self._where()
            self.path.append(f"match.{name}")
            try:
                self._check(f"http.matchers.{name}", value)
                loaded = factory(value, self)
                registry.check_provides(f"http.matchers.{name}", loaded, where)
                matchers.append(loaded)
            except ConfigError:
                raise
            except (ValueError, TypeError, KeyError) as e:
                raise ConfigError(f"{self._where()}: loading matcher '{name}': {e}") from None
            finally:
                self.path.pop()
        return MatcherSet(matchers)

    def load_matcher_sets(self, configs: Iterable[Any] | None) -> list[Any]:
        return [self.load_matcher_set(c) for c in configs or ()]

    def load_routes(self, configs: Iterable[Any] | None) -> Any:
        routes = []
        for i, config in enumerate(configs or ()):
            self.path.append(f"routes[{i}]")
            try:
                if not isinstance(config, dict):
                    raise ConfigError(f"{self._where()}: a route must be a JSON object")
                routes.append(
                    Route(
                        handlers=[self.load_handler(h) for h in config.get("handle") or ()],
                        matcher_sets=self.load_matcher_sets(config.get("match")),
                        group=config.get("group") or "",
                        terminal=bool(config.get("terminal")),
                    )
                )
            finally:
                self.path.pop()
        return RouteList(routes)
