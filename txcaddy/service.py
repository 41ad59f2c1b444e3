"""The txcaddy service tree.

``CaddyService`` is the root ``MultiService`` for one config: it loads the
Caddy JSON into runtime objects (through the loader) and has one child
service per listener socket. ``stopService`` stops accepting, lets requests
in flight finish within the grace period and then closes what is left.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError, ConfigWarning
from txcaddy.http._h1 import HTTP11Factory
from txcaddy.http.app import HTTPApp, load_http_app
from txcaddy.logs import LogSystem

DEFAULT_GRACE_PERIOD = 10.0  # seconds to let in-flight requests finish on stop


class ListenerService(Service):
    """Listens on one endpoint while running; knows the address it got (``:0`` works)."""

    def __init__(self, endpoint: Any, factory: Any, address: str) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self.address = address
        self.port: Any = None

    def startService(self) -> None:
        super().startService()
        outcome: list[Any] = []
        self.endpoint.listen(self.factory).addBoth(outcome.append)
        if outcome and hasattr(outcome[0], "raiseException"):
            self.running = False
            outcome[0].raiseException()  # e.g. address already in use: fail loudly at start
        self.port = outcome[0] if outcome else None

    def stopService(self) -> Deferred[None]:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return maybeDeferred(lambda: None)
        return maybeDeferred(port.stopListening)


class CaddyService(MultiService):
    """Root service for one loaded config."""

    log = Logger()

    def __init__(
        self,
        config: dict[str, Any],
        warnings: list[ConfigWarning] | None = None,
        reactor: Any = None,
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.config = plain_json(config)
        self.warnings = list(warnings or [])
        self.http: HTTPApp | None = None
        self.logs: LogSystem | None = None
        self._build()

    def _build(self) -> None:
        apps = self.config.get("apps") or {}
        unknown = sorted(set(apps) - {"http", "tls", "pki"})
        if unknown:
            raise ConfigError(f"loading app modules: module not registered: {unknown[0]}")
        context = self.context = LoadContext(reactor=self.reactor, log=self.log)
        self.logs = LogSystem.from_config(self.config.get("logging"), context)
        http_config = apps.get("http")
        if not http_config:
            return
        self.http = load_http_app(http_config, context, logs=self.logs)
        for name, server in self.http.servers.items():
            factory = HTTP11Factory(server, self.reactor)
            for listener in self.http.listeners[name]:
                endpoint = serverFromString(self.reactor, listener.endpoint)
                child = ListenerService(endpoint, factory, listener.address)
                child.setName(f"{name} {listener.endpoint}")
                child.setServiceParent(self)
        for service in context.services:
            service.setServiceParent(self)

    def listenAddresses(self) -> dict[str, list[str]]:
        """Each configured HTTP server's listener addresses, by server name."""
        servers = ((self.config.get("apps") or {}).get("http") or {}).get("servers") or {}
        return {name: list(server.get("listen") or []) for name, server in servers.items()}

    def boundAddresses(self) -> dict[str, list[Any]]:
        """The socket addresses actually listened on, by server name (once started)."""
        out: dict[str, list[Any]] = {}
        for child in self:
            if isinstance(child, ListenerService) and child.port is not None:
                out.setdefault(child.name.split(" ", 1)[0], []).append(child.port.getHost())
        return out

    def startService(self) -> None:
        for warning in self.warnings:
            self.log.warn("{config_warning}", config_warning=str(warning))
        if self.logs is not None:
            self.logs.start()  # open the log files first: a bad one fails the start
        super().startService()
        for name, addresses in self.listenAddresses().items():
            self.log.info("server {name} listening on {addresses}", name=name, addresses=addresses)

    @inlineCallbacks
    def stopService(self) -> Any:
        # Stop accepting first (the listener children), then drain the connections,
        # then close the logs (the last requests are still logged).
        yield super().stopService()
        try:
            if self.http is not None:
                grace = self.http.grace_period or DEFAULT_GRACE_PERIOD
                yield DeferredList(
                    [server.drain(grace, self.reactor) for server in self.http.servers.values()]
                )
        finally:
            self.context.unload()
            if self.logs is not None:
                self.logs.stop()


def plain_json(config: dict[str, Any]) -> dict[str, Any]:
    """The config as plain JSON values, as Caddy loads it (adapter objects encoded)."""
    import json

    from txcaddy.caddyfile.jsonenc import encode

    return json.loads(encode(config))


def fromConfig(config: dict[str, Any], reactor: Any = None) -> CaddyService:
    """The service for a Caddy JSON config (a dict)."""
    return CaddyService(config, reactor=reactor)


def fromCaddyfile(pathOrText: str, reactor: Any = None, environ: Any = None) -> CaddyService:
    """The service for a Caddyfile, given as a path to a file or as its text.

    A string naming an existing file is read from it; anything else is taken
    as Caddyfile text. Config errors raise ``ConfigError`` with file and line.
    """
    import os

    from txcaddy.caddyfile.adapter import adapt

    if "\n" not in pathOrText and os.path.isfile(pathOrText):
        from txcaddy.config.source import read_config_text

        config, warnings = adapt(read_config_text(pathOrText), pathOrText, environ)
    else:
        config, warnings = adapt(pathOrText, "Caddyfile", environ)
    return CaddyService(config, warnings=warnings, reactor=reactor)
