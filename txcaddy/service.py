"""The txcaddy service tree, and graceful reload.

``CaddyService`` is the root ``MultiService`` for the running config: it loads the
Caddy JSON into runtime objects (through the loader) and has one child
service per listener socket, the admin endpoint when asked for (``txcaddy/admin``),
and the config's own services. ``reload`` builds the next config beside the running
one and swaps it in (Caddy's ``caddy.go: run`` / ``changeConfig``, but listeners are
kept: a ``SwitchingFactory`` per socket points new connections at the new servers). The listeners bind in ``privilegedStartService``
(Twisted's ``StreamServerEndpointService``), so ``twistd --uid/--gid`` binds
:80 and :443 as root and then drops privileges. ``stopService`` stops accepting,
lets requests in flight finish within the grace period, then waits for what the
modules close on unload (upstream connection pools) before it fires.

The service owns its ``Runtime`` (the state Caddy keeps in package variables:
upstream hosts, DNS answers) and, when asked for (``fast_io=True``; ``twistd caddy``
and ``txcaddy run`` ask), txcaddy's fast reactor path (``_twisted.install_fast_io``).

With ``workers N`` (N > 1) the service is a **supervisor**: it binds the listeners but never
accepts on them, and a ``WorkerPool`` child (``txcaddy._workers``) runs N worker processes
that serve on those sockets (or, with ``TXCADDY_WORKER_SOCKETS=reuseport``, each on its
slot's own ``SO_REUSEPORT`` socket: ``txcaddy._reuseport``); a reload rolls them.  A worker's own ``CaddyService`` is built
with a ``WorkerMode``: it adopts the inherited sockets, hands its log entries to the
supervisor, runs no active health checks and obtains no managed certificate (the
supervisor does both, once, and pushes the results).  See docs/scaling.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    fail,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from txcaddy import _systemd, _twisted
from txcaddy._reactor import IServingReactor, default_reactor
from txcaddy.admin import _persist as persist
from txcaddy.admin._paths import strip_ids
from txcaddy.admin._persist import wants_persist
from txcaddy.admin._server import AdminService, AdminSettings
from txcaddy.caddyfile.adapter import adapt
from txcaddy.caddyfile.jsonenc import encode
from txcaddy.config.configschema import check_config
from txcaddy.config.loader import LoadContext, Runtime
from txcaddy.config.source import read_config_text
from txcaddy.errors import ConfigError, ConfigWarning
from txcaddy.http._httpfactory import HTTPFactory
from txcaddy.http.app import HTTPApp, load_http_app
from txcaddy.interfaces import IStorage
from txcaddy.logs import LogSystem
from txcaddy.metrics import Metrics, record_config_reload
from txcaddy.tls.app import TLSApp
from txcaddy.tls.challenges import Challenges
from txcaddy.tls.storage import storage_from_config

if TYPE_CHECKING:
    from txcaddy.http._h3 import HTTP3Listener

DEFAULT_GRACE_PERIOD = 10.0  # seconds to let in-flight requests finish on stop


#: Caddy's ``protocols`` when a server names none (``caddyhttp/server.go``).
DEFAULT_PROTOCOLS = ("h1", "h2", "h3")


class ListenerService(StreamServerEndpointService):
    """Listens on one endpoint while running; knows the port it got (``:0`` works).

    Twisted's endpoint service: the socket is bound in ``privilegedStartService`` (which
    ``twistd`` calls before it drops privileges), or in ``startService`` when nothing
    called that first. A failure to bind raises at start (an address in use fails loudly).

    @ivar address: the listener address as the config wrote it.
    @ivar port: the listening port while running, else None.
    """

    def __init__(
        self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory, address: str, accept: bool = True,
    ) -> None:
        super().__init__(endpoint, factory)
        self.address = address
        # False in a supervisor (``workers N``): the socket is bound and held for the workers,
        # which accept on it; this process never does.
        self.accept = accept
        self.server_name = ""  # the HTTP server it serves (changes when a reload renames it)
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        self._raiseSynchronously = True  # Twisted turns it off after each start
        super().privilegedStartService()
        waiting: Deferred[IListeningPort | None] = cast(Deferred, self._waitingForPort)
        waiting.addCallback(self._bound)

    def _bound(self, port: IListeningPort | None) -> IListeningPort | None:
        self.port = port
        if not self.accept and port is not None:
            cast(Any, port).stopReading()  # bound synchronously: nothing was accepted yet
        return port

    def stopService(self) -> Deferred[None]:
        self.port = None
        if self._waitingForPort is None:  # never started (a sibling failed to bind first)
            Service.stopService(self)
            return succeed(None)
        stopped: Deferred[None] = super().stopService()
        # An ``SO_REUSEPORT`` group (``_reuseport``): the sockets held for the other worker
        # slots close with the listener (the workers' own copies close as they stop).
        close = getattr(self.endpoint, "close", None)
        if close is not None:
            close()
        self._waitingForPort = None  # a later start binds again
        return stopped


class QUICListenerService(Service):
    """Serves HTTP/3 on a UDP port beside a TLS listener (same host and port), while running.

    Bound in ``privilegedStartService`` as the TCP listeners are.  On stop it stops taking
    new connections, lets open streams finish for up to ``grace_period`` seconds, then closes
    what is left and the socket.

    @ivar port: the listening UDP port while running, else None.
    """

    def __init__(
        self, reactor: Any, listener: HTTP3Listener, port: int, interface: str, address: str,
        on_change: Any, grace_period: float = DEFAULT_GRACE_PERIOD,
        inherited: _systemd.InheritedSocket | None = None,
    ) -> None:
        self.inherited = inherited  # a UDP socket from systemd to adopt instead of binding
        self.reactor = reactor
        self.listener = listener
        self.port_number = port
        self.interface = interface
        self.address = address
        self.on_change = on_change  # called when the bound ports change (the Alt-Svc value)
        self.grace_period = grace_period
        self.port: Any = None

    def _bind(self) -> None:
        if self.port is None:
            self.listener.accepting = True
            if self.inherited is not None:
                self.port = self.reactor.adoptDatagramPort(self.inherited.fd, self.inherited.family, self.listener)
            else:
                self.port = self.reactor.listenUDP(self.port_number, self.listener, interface=self.interface)
            self.on_change()

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._bind()

    def startService(self) -> None:
        super().startService()
        self._bind()

    def bound_port(self) -> int | None:
        return self.port.getHost().port if self.port is not None else None  # type: ignore[no-any-return]

    @inlineCallbacks
    def stopService(self) -> Generator[Deferred[Any], Any, None]:
        super().stopService()
        port, self.port = self.port, None
        self.on_change()
        if port is None:
            return
        done = self.listener.close_gracefully()
        timer = self.reactor.callLater(self.grace_period, self.listener.close_all)
        yield done
        if timer.active():
            timer.cancel()
        yield port.stopListening()


def _udp_address(endpoint: str) -> tuple[int, str] | None:
    """(port, interface) for the UDP socket beside a ``tcp:``/``tcp6:`` endpoint; None for others."""
    kind, _, rest = endpoint.partition(":")
    if kind not in ("tcp", "tcp6"):
        return None
    port, _, options = rest.partition(":")
    interface = "::" if kind == "tcp6" else ""
    if options.startswith("interface="):
        interface = options[len("interface="):].replace("\\:", ":")
    return int(port), interface


class SwitchingFactory(Factory):
    """The factory a listener serves with: each new connection gets the *current* target's protocol.

    A reload that keeps a listener address replaces ``target`` (one attribute store, so
    atomic for the reactor thread): connections accepted afterwards are served by the new
    config while the ones already open keep the protocol (and server) they were built with.
    The socket is never closed, so no connection is refused or reset by a reload.
    """

    def __init__(self, target: IProtocolFactory) -> None:
        self.target = target

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 - Twisted's name
        return self.target.buildProtocol(addr)


@dataclass
class WorkerMode:
    """What makes a ``CaddyService`` a worker process's (``txcaddy._worker``).

    @ivar sockets: endpoint description -> the inherited listening socket to adopt there.
    @ivar forward_log: takes each log entry ``(logger, level, message, fields, time)`` to the
        supervisor, whose log outputs write it.
    """

    sockets: Mapping[str, _systemd.InheritedSocket] = field(default_factory=dict)
    forward_log: Callable[[str, str, str, list[tuple[str, Any]], float], Any] | None = None


class _AppServices(MultiService):
    """The services of one config (health checkers, PKI, certificate manager), started and
    stopped together; iterating a ``CaddyService`` shows them as its own children."""


class _Apps:
    """One loaded config's apps (logging, TLS, HTTP and the services they need), not yet serving.

    A reload builds the next ``_Apps`` beside the running one and swaps it in only once it
    has loaded and started; until then nothing of the running config is touched.

    @ivar listeners: endpoint description -> (server name, config address, factory) to serve there.
    @ivar h3: UDP endpoint key -> what ``CaddyService._h3_listener`` needs to serve HTTP/3 there.
    @ivar services: the modules' services (health checks...) and the certificate services.
    """

    def __init__(self, raw: dict[str, Any], warnings: list[ConfigWarning]) -> None:
        self.raw = raw  # as loaded, with its ``@id`` fields (what the admin API serves)
        self.config: dict[str, Any] = strip_ids(raw)
        self.warnings = warnings
        self.context: LoadContext
        self.logs: LogSystem | None = None
        self.tls: TLSApp | None = None
        self.http: HTTPApp | None = None
        self.storage: IStorage | None = None
        self.listeners: dict[str, tuple[str, str, IProtocolFactory]] = {}
        self.h3: dict[str, tuple[str, Any, dict[str, Any], Any, Sequence[str]]] = {}
        self.services = _AppServices()

    def grace_period(self) -> float:
        return (self.http.grace_period if self.http is not None else 0.0) or DEFAULT_GRACE_PERIOD


class CaddyService(MultiService):
    """Root service for the running config; ``reload`` replaces the config while serving.

    Children: one ``ListenerService`` per listener socket (kept across reloads while the
    address stays), the QUIC listeners, and the current config's services.

    @ivar runtime: the state this service keeps across the configs it loads (``runtime=``
        gives one made beforehand: txcaddy.testing provides its fake transports through it).
    @ivar fast_io: whether it runs txcaddy's fast reactor path while started.
    @ivar on_reload: called with ``(success: bool)`` after each reload attempt (the hook the
        ``caddy_config_last_reload_successful`` metric uses).
    @ivar admin: the admin endpoint (``admin=True``: ``txcaddy run`` and ``twistd caddy``), else None.
    @ivar autosave: where each successfully loaded config is saved (``autosave.json``), or None.
    """

    log = Logger()

    def __init__(
        self,
        config: dict[str, Any],
        warnings: list[ConfigWarning] | None = None,
        reactor: IServingReactor | None = None,
        fast_io: bool = False,
        *,
        admin: bool = False,
        stop: Callable[[], Any] | None = None,
        autosave: str | None = None,
        inherited: Sequence[_systemd.InheritedSocket] | None = None,
        runtime: Runtime | None = None,
        workers: int | None = None,
        worker: WorkerMode | None = None,
        worker_sockets: str | None = None,
    ) -> None:
        super().__init__()
        self.reactor = default_reactor(reactor)
        config = plain_json(config)
        # ``workers N``: the argument (``--workers``) wins over the config's ``workers`` key.
        from txcaddy._workers import parse_workers

        self.worker_mode = worker
        self.workers = 1 if worker is not None else (
            parse_workers(config.get("workers", 1)) if workers is None else workers)
        self.supervising = self.workers > 1
        # How the workers share a TCP listener: one inherited socket (``shared``), or one
        # ``SO_REUSEPORT`` socket per slot (``reuseport``, TXCADDY_WORKER_SOCKETS); see _reuseport.
        from txcaddy._reuseport import SOCKETS_ENV, worker_sockets_mode

        self.worker_sockets = (
            worker_sockets_mode({SOCKETS_ENV: worker_sockets}) if worker_sockets is not None
            else worker_sockets_mode() if self.supervising else "shared")
        self.pool: Any = None
        # systemd socket activation: listeners bound where an inherited socket is adopt it.
        self.inherited = list(_systemd.process_sockets() if inherited is None else inherited)
        self.autosave = autosave
        self.fast_io = fast_io
        self.runtime = runtime if runtime is not None else Runtime()
        self.challenges = Challenges()  # the ACME challenges in flight (kept across configs)
        self.on_reload: list[Callable[[bool], Any]] = [self._record_reload]
        self.before_reload: list[Callable[[], Any]] = []  # called as a reload begins (sd_notify)
        self._listeners: dict[str, ListenerService] = {}
        self._h3_by_key: dict[str, QUICListenerService] = {}
        self._h3_services: dict[str, list[QUICListenerService]] = {}
        self._retiring: list[Deferred[Any]] = []
        self._retiring_servers: set[Any] = set()  # old servers still finishing (WebSockets...)
        self._reloading = False
        apps = self._build(config, list(warnings or []))
        self._apps = apps
        self._install_listeners(apps)
        apps.services.setServiceParent(self)
        self.admin: AdminService | None = None
        if admin:
            self.admin = AdminService(self, stop or self.reactor.stop)
            self.admin.setServiceParent(self)
        if self.supervising:
            self._start_pool()

    def __iter__(self) -> Iterator[Service]:
        """The children, with the current config's services in place of their group."""
        for child in self.services:
            if isinstance(child, _AppServices):
                yield from child
            else:
                yield child

    # -- the current config's parts (the names embedding code and tests use) -----------------

    @property
    def config(self) -> dict[str, Any]:
        return self._apps.config

    @property
    def raw_config(self) -> dict[str, Any]:
        """The running config as loaded, ``@id`` fields included (the admin API's ``/config/``)."""
        return self._apps.raw

    @property
    def warnings(self) -> list[ConfigWarning]:
        return self._apps.warnings

    @property
    def context(self) -> LoadContext:
        return self._apps.context

    @property
    def http(self) -> HTTPApp | None:
        return self._apps.http

    @property
    def tls(self) -> TLSApp | None:
        return self._apps.tls

    @property
    def logs(self) -> LogSystem | None:
        return self._apps.logs

    @property
    def storage(self) -> IStorage | None:
        return self._apps.storage

    # -- building ---------------------------------------------------------------------------

    def _build(self, config: dict[str, Any], warnings: list[ConfigWarning]) -> _Apps:
        """Load ``config`` into a new ``_Apps``; binds nothing and starts nothing.

        On a config error what loading acquired (upstream hosts...) is released again.
        """
        new = _Apps(config, warnings)
        new.context = LoadContext(reactor=self.reactor, log=self.log, runtime=self.runtime)
        try:
            self._load(new)
        except BaseException:
            new.context.unload()
            raise
        return new

    def _load(self, new: _Apps) -> None:
        check_config(new.config)  # every value's type, before any module reads it
        if "workers" in new.config:
            from txcaddy._workers import parse_workers

            parse_workers(new.config["workers"])
        apps = new.config.get("apps") or {}
        unknown = sorted(set(apps) - {"http", "tls", "pki"})
        if unknown:
            raise ConfigError(f"loading app modules: module not registered: {unknown[0]}")
        context = new.context
        new.logs = LogSystem.from_config(new.config.get("logging"), context)
        if self.worker_mode is not None:
            new.logs.forward = self.worker_mode.forward_log
        new.tls = TLSApp.load(apps.get("tls"), self.challenges)
        http_config = apps.get("http")
        if http_config:
            auto_https = new.tls.plan_http(http_config)
            new.http = load_http_app(auto_https.http, context, logs=new.logs, challenges=self.challenges)
            for name, server in new.http.servers.items():
                # HTTP/2 is chosen per connection at its first bytes (``HTTPFactory``): by ALPN on
                # TLS listeners when the server's protocols name h2 (Caddy's default: h1 h2 h3), by
                # the h2c preface in the clear when they name h2c.
                server_config = auto_https.http["servers"][name]
                protocols = server_config.get("protocols") or DEFAULT_PROTOCOLS
                factory: IProtocolFactory = HTTPFactory(server, self.reactor, h2c="h2c" in protocols)
                tls_factory: IProtocolFactory | None = None
                for listener in new.http.listeners[name]:
                    serving = factory
                    if listener.tls:
                        if tls_factory is None:
                            http2 = "h2" in protocols
                            tls_factory = new.tls.wrap(
                                name, server_config, HTTPFactory(server, self.reactor, h2=http2), http2=http2,
                            )
                        serving = tls_factory
                    new.listeners.setdefault(listener.endpoint, (name, listener.address, serving))
                    if listener.tls and "h3" in protocols and (self.supervising or self.worker_mode):
                        if self.supervising:
                            self.log.warn("HTTP/3 is not served on {address} with workers > 1 "
                                          "(see docs/scaling.md)", address=listener.address)
                    elif listener.tls and "h3" in protocols:
                        udp = _udp_address(listener.endpoint)
                        if udp is None:
                            self.log.warn("HTTP/3 is not served on {address}: not an IP listener",
                                          address=listener.address)
                        else:
                            new.h3.setdefault(f"udp/{udp[1]}/{udp[0]}",
                                              (name, server, server_config, listener, protocols))
        from txcaddy.reverseproxy.health import ActiveHealthChecker

        for service in context.services:
            if self.worker_mode is not None and isinstance(service, ActiveHealthChecker):
                continue  # the supervisor checks, once, and pushes its marks
            service.setServiceParent(new.services)
        self._add_certificate_services(new)

    def _endpoint(self, description: str) -> IStreamServerEndpoint:
        """The endpoint for a listener: an inherited socket bound there (systemd), else a new one."""
        inherited = _systemd.match_endpoint(description, self.inherited)
        if self.worker_mode is not None:
            adopted = self.worker_mode.sockets.get(description)
            if adopted is None:
                raise ConfigError(f"worker: no socket from the supervisor for listener {description}")
            return _systemd.AdoptedEndpoint(self.reactor, adopted)
        if inherited is None:
            endpoint = serverFromString(self.reactor, description)
            if self.supervising and self.worker_sockets == "reuseport":
                from txcaddy._reuseport import reuseport_endpoint

                return reuseport_endpoint(self.reactor, endpoint, self.workers) or endpoint
            return endpoint
        self.log.info("{description} adopts inherited socket fd {fd}", description=description, fd=inherited.fd)
        return _systemd.AdoptedEndpoint(self.reactor, inherited)

    def _add_certificate_services(self, new: _Apps) -> None:
        """The PKI app and the certificate manager, after the listeners (Caddy's phase 2).

        Only when there is something to manage or a CA to keep: an all-``http://`` config
        opens no storage.
        """
        assert new.tls is not None
        apps = new.config.get("apps") or {}
        want_pki = new.context.want_pki
        if not (new.tls.managed or apps.get("pki") or want_pki or new.tls.uses_on_demand()):
            return
        new.storage = storage_from_config(new.config.get("storage"), self.reactor)
        pki_config = apps.get("pki")
        if pki_config is None and want_pki:
            pki_config = {}  # the default CA, run because a handler uses it (Caddy's ctx.App("pki"))
        for service in new.tls.services(new.storage, pki_config, self.reactor, self.reactor):
            if self.worker_mode is not None and hasattr(service, "trust_installer"):
                service.trust_installer = None  # the supervisor installs the root, once
            service.setServiceParent(new.services)
        new.context.pki = new.tls.pki
        manager = new.tls.manager
        if manager is not None and self.worker_mode is not None:
            manager.follower = True  # loads what the supervisor's manager stores
        elif manager is not None and self.supervising:
            manager.on_stored.append(self._certificate_stored)

    # -- listeners --------------------------------------------------------------------------

    def _install_listeners(self, apps: _Apps) -> list[Service]:
        """Point kept listeners at ``apps`` and add the missing ones; returns the added ones."""
        added: list[Service] = []
        for endpoint, (name, address, factory) in apps.listeners.items():
            child = self._kept_listener(endpoint)
            if child is not None:
                cast(SwitchingFactory, child.factory).target = factory
                child.server_name = name  # the server may have another name now
                continue
            child = ListenerService(self._endpoint(endpoint), SwitchingFactory(factory), address,
                                    accept=not self.supervising)
            child.setName(f"{name} {endpoint}")
            child.server_name = name
            self._listeners[endpoint] = child
            self._adopt(child)
            added.append(child)
        self._h3_services = {}
        for key, (name, server, server_config, listener, protocols) in apps.h3.items():
            h3_child = self._h3_by_key.get(key)
            assert apps.tls is not None and apps.http is not None
            creator = apps.tls.server_tls(name, server_config, http2="h2" in protocols)
            services = self._h3_services.setdefault(name, [])
            if h3_child is not None:
                h3_child.listener.server = server
                h3_child.listener.choose = creator.quic_certificate
                h3_child.on_change = self._alt_svc_updater(server, services)
                h3_child.grace_period = apps.grace_period()
            else:
                h3_child = self._h3_listener(key, name, server, creator, listener, services, apps)
                added.append(h3_child)
            services.append(h3_child)
        for name, services in self._h3_services.items():
            assert apps.http is not None
            self._alt_svc_updater(apps.http.servers[name], services)()
        return added

    def whenRetired(self) -> Deferred[None]:  # noqa: N802 - Twisted's naming
        """Fires once the configs replaced so far are fully stopped: their removed listeners
        closed, their connections drained, their modules unloaded."""
        return DeferredList(list(self._retiring)).addCallback(lambda _: None)

    def _adopt(self, child: Service) -> None:
        """Make ``child`` ours; while running without starting it (a reload starts what it
        adds itself, so that a failure can be undone)."""
        if not self.running:
            child.setServiceParent(self)
            return
        child.parent = self
        self.services.append(child)
        if child.name:
            self.namedServices[child.name] = child

    def _kept_listener(self, endpoint: str) -> ListenerService | None:
        """The running listener for ``endpoint``: the same description, or one that asked for
        port 0 and got the port ``endpoint`` names (a config reloaded with the bound port)."""
        child = self._listeners.get(endpoint)
        if child is not None:
            return child
        kind, _, rest = endpoint.partition(":")
        port, _, options = rest.partition(":")
        for known, candidate in list(self._listeners.items()):
            k_kind, _, k_rest = known.partition(":")
            k_port, _, k_options = k_rest.partition(":")
            if (k_kind, k_port, k_options) == (kind, "0", options) and candidate.port is not None \
                    and str(getattr(candidate.port.getHost(), "port", "")) == port:
                del self._listeners[known]
                self._listeners[endpoint] = candidate
                return candidate
        return None

    def _alt_svc_updater(self, server: Any, services: list[QUICListenerService]) -> Callable[[], None]:
        from txcaddy.http._h3 import alt_svc_value

        def ports_changed() -> None:
            server.alt_svc = alt_svc_value([p for p in (s.bound_port() for s in services) if p is not None])

        return ports_changed

    def _h3_listener(
        self, key: str, name: str, server: Any, creator: Any, listener: Any,
        services: list[QUICListenerService], apps: _Apps,
    ) -> QUICListenerService:
        """HTTP/3 on UDP beside one TLS listener (Caddy's ``serveHTTP3``); not for unix sockets."""
        # Imported here: aioquic (and its QPACK extension) is loaded only by configs that serve HTTP/3.
        from txcaddy.http._h3 import HTTP3Listener

        udp = _udp_address(listener.endpoint)
        assert udp is not None
        h3 = HTTP3Listener(server, self.reactor, creator.quic_certificate)
        child = QUICListenerService(
            self.reactor, h3, udp[0], udp[1], listener.address, self._alt_svc_updater(server, services),
            apps.grace_period(), _systemd.match_datagram(udp[0], udp[1], self.inherited),
        )
        child.setName(f"{name} udp {listener.endpoint}")
        self._h3_by_key[key] = child
        self._adopt(child)
        return child

    def listenAddresses(self) -> dict[str, list[str]]:  # noqa: N802 - public API name
        """Each HTTP server's listener addresses, by server name (with automatic HTTPS's redirect server)."""
        if self.http is None:
            return {}
        return {name: list(server.listen) for name, server in self.http.servers.items()}

    def boundAddresses(self) -> dict[str, list[Any]]:  # noqa: N802 - public API name
        """The socket addresses actually listened on, by server name (once started)."""
        out: dict[str, list[Any]] = {}
        for child in self._listeners.values():
            if child.port is not None:
                out.setdefault(child.server_name, []).append(child.port.getHost())
        return out

    # -- workers (the supervisor's side) ----------------------------------------------------

    def _start_pool(self) -> None:
        """Add the ``WorkerPool`` (after the listeners: they are bound when it starts) and
        push the active health marks to it."""
        from txcaddy._workers import WorkerPool
        from txcaddy.reverseproxy.hosts import HostRegistry

        self.pool = WorkerPool(
            self.reactor, self.workers,
            config=lambda: self.raw_config,
            sockets=self._worker_sockets,
            marks=self._marks,
            emit_log=self._emit_worker_log,
            grace_period=lambda: self._apps.grace_period(),
            before=self._local_ca_ready,
        )
        self.pool.setName("workers")
        self.pool.setServiceParent(self)
        self.runtime.get(HostRegistry).watchers.append(self._host_marked)

    def _local_ca_ready(self) -> Deferred[Any] | None:
        """The running PKI app's provisioning (its root in storage), which the first workers
        wait for: they load that root rather than make their own."""
        from txcaddy.tls.internalca import PKIService

        for service in self._apps.services:
            if isinstance(service, PKIService) and service.ready is not None:
                return service.ready
        return None

    def _worker_sockets(self, slot: int) -> dict[str, int]:
        """Endpoint description -> the fd of the bound listener worker ``slot`` accepts on:
        the one shared socket, or the slot's own in an ``SO_REUSEPORT`` group."""
        from txcaddy._reuseport import ReusePortEndpoint

        out: dict[str, int] = {}
        for endpoint, child in self._listeners.items():
            if child.port is None:
                continue
            own = child.endpoint.fd_for(slot) if isinstance(child.endpoint, ReusePortEndpoint) else None
            out[endpoint] = own if own is not None else cast(Any, child.port).fileno()
        return out

    def _marks(self) -> dict[str, bool]:
        """The hosts the active health checks marked down (a new worker starts with them)."""
        from txcaddy.reverseproxy.hosts import HostRegistry

        return {host.address: False for host in self.runtime.get(HostRegistry).all() if host.unhealthy}

    def _host_marked(self, host: Any) -> None:
        if self.pool is not None:
            self.pool.broadcast("health", address=host.address, healthy=not host.unhealthy)

    def _certificate_stored(self, name: str) -> None:
        if self.pool is not None:
            self.pool.broadcast("certificates", names=[name])

    def _emit_worker_log(self, logger: str, level: str, message: str, fields: list[tuple[str, Any]],
                         when: float) -> None:
        """A worker's log entry, written by this process's log outputs (one stream)."""
        if self.logs is not None:
            self.logs.emit(logger, level, message, fields, when)

    def whenServing(self) -> Deferred[None]:  # noqa: N802 - Twisted's naming
        """Fires once requests are served: at once, or with workers once all are ready."""
        if self.pool is None:
            return succeed(None)
        waiting: Deferred[None] = Deferred()

        def ready(result: Any) -> Any:
            waiting.callback(None)
            return result

        self.pool.ready.addBoth(ready)
        return waiting

    # -- reload -----------------------------------------------------------------------------

    def reload(self, config: dict[str, Any], warnings: list[ConfigWarning] | None = None) -> Deferred[None]:
        """Serve ``config`` instead of the running config, without closing kept listeners.

        The new config is loaded, its new listeners bound and its logs and services started
        beside the running one; only then it is swapped in: kept listeners hand new connections
        to the new servers, listeners the new config lacks stop accepting, and the old servers
        drain (requests, streams and WebSockets in flight finish within ``grace_period``) before
        the old config is unloaded. Idle keep-alive connections move to the new server of the
        same name, so a client never finds its connection closed by a reload.

        Fires once the new config serves; fails with the error (``ConfigError``, an address in
        use...) when it could not load or start, and then the running config is left exactly
        as it was.
        """
        if self.pool is not None and self.pool.rolling:
            return fail(ConfigError("a reload is already in progress (the workers are rolling)"))
        for begin in self.before_reload:
            begin()
        previous = (self.raw_config, self.warnings)
        try:
            self._reload(plain_json(config), list(warnings or []))
        except BaseException as e:
            for hook in self.on_reload:
                hook(False)
            return fail(e)
        if self.pool is not None and self.pool.running:
            return self._roll(previous)
        for hook in self.on_reload:
            hook(True)
        return succeed(None)

    def _roll(self, previous: tuple[dict[str, Any], list[ConfigWarning]]) -> Deferred[None]:
        """Workers: start new ones with the config just loaded, stop the old ones once ready.

        When the new workers cannot start, the old ones keep serving and this process goes
        back to ``previous`` (the config they serve), so the admin API shows what is served.
        """
        from txcaddy._workers import parse_workers

        wanted = self.config.get("workers")
        if wanted is not None and parse_workers(wanted) != self.pool.count:
            self.log.warn("workers: the number of workers changes only when the server restarts")

        def rolled(result: Any) -> Any:
            for hook in self.on_reload:
                hook(True)
            return result

        def failed(failure: Any) -> Any:
            self.log.error("reload: {error}; the old workers keep serving", error=str(failure.value))
            if not self.pool.running:
                return failure
            try:
                self._reload(plain_json(previous[0]), list(previous[1]))
            except Exception as e:  # noqa: BLE001 - logged: the workers serve regardless
                self.log.error("reload: going back to the running config: {error}", error=str(e))
            for hook in self.on_reload:
                hook(False)
            return failure

        return cast(Deferred[None], self.pool.roll().addCallbacks(rolled, failed))

    def _record_reload(self, success: bool) -> None:
        """``caddy_config_last_reload_successful`` and its timestamp follow every reload."""
        record_config_reload(self.runtime.get(Metrics), success, self.reactor.seconds())

    def _reload(self, config: dict[str, Any], warnings: list[ConfigWarning]) -> None:
        if self._reloading:
            raise ConfigError("a reload is already in progress")
        self._reloading = True
        try:
            new = self._build(config, warnings)
            added: list[Service] = []
            old = self._apps
            old_listeners, old_h3_keys = dict(self._listeners), dict(self._h3_by_key)
            old_targets = [(c, cast(SwitchingFactory, c.factory).target, c.server_name) for c in old_listeners.values()]
            old_h3 = {k: (c.listener.server, c.listener.choose, c.on_change, c.grace_period)
                      for k, c in self._h3_by_key.items()}
            try:
                if old.tls is not None and new.tls is not None:
                    new.tls.adopt_certificates(old.tls)
                if self.admin is not None:
                    AdminSettings(new.raw.get("admin"))  # a bad admin object fails the load
                if self.running:
                    for warning in warnings:
                        self.log.warn("{config_warning}", config_warning=str(warning))
                    if new.logs is not None:
                        new.logs.start()
                added = self._install_listeners(new)
                if self.running:
                    for child in added:
                        child.privilegedStartService()  # binds now: an address in use fails here
                        child.startService()
                    new.services.startService()
            except BaseException:
                self._undo(new, added, old_targets, old_h3)
                self._listeners, self._h3_by_key = old_listeners, old_h3_keys
                raise
        finally:
            self._reloading = False
        # The swap: from here on the new config serves.
        self._apps = new
        self._adopt(new.services)
        stopping: list[Service] = [old.services]
        stopping += [self._listeners.pop(e) for e in list(self._listeners) if e not in new.listeners]
        stopping += [self._h3_by_key.pop(k) for k in list(self._h3_by_key) if k not in new.h3]
        self._retire(old, new, stopping)
        if self.admin is not None:
            self.admin.configure(new.raw.get("admin"))
        self._save()

    def _save(self) -> None:
        """Write the running config to ``autosave`` (Caddy does after every successful load)."""
        if self.autosave and wants_persist(self.raw_config):
            try:
                persist.save(self.raw_config, self.autosave)
            except OSError as e:
                self.log.error("unable to autosave config to {path}: {error}", path=self.autosave, error=str(e))

    def _undo(self, new: _Apps, added: list[Service], old_targets: list[tuple[ListenerService, Any, str]],
              old_h3: dict[str, Any]) -> None:
        """Put the listeners back as they were before a failed reload; release ``new``."""
        for child, target, server_name in old_targets:
            cast(SwitchingFactory, child.factory).target = target
            child.server_name = server_name
        for key, (server, choose, on_change, grace) in old_h3.items():
            h3 = self._h3_by_key[key]
            h3.listener.server, h3.listener.choose, h3.on_change, h3.grace_period = server, choose, on_change, grace
        for added_child in added:
            self._listeners = {k: v for k, v in self._listeners.items() if v is not added_child}
            self._h3_by_key = {k: v for k, v in self._h3_by_key.items() if v is not added_child}
            added_child.disownServiceParent()  # stops it when it started
        if new.services.running:
            new.services.stopService()
        new.context.unload()
        if new.logs is not None:
            new.logs.stop()
        self._h3_services = {}
        for h3_child in self._h3_by_key.values():
            self._h3_services.setdefault((h3_child.name or "").split(" ", 1)[0], []).append(h3_child)

    def _retire(self, old: _Apps, new: _Apps, stopping: list[Service]) -> None:
        """Stop what the old config had: its removed listeners, services and servers (drained)."""
        done: Deferred[Any] = self._retire_old(old, new, stopping)
        self._retiring.append(done)

        def retired(result: Any) -> Any:
            self._retiring.remove(done)
            return result

        done.addBoth(retired)

    @inlineCallbacks
    def _retire_old(self, old: _Apps, new: _Apps, stopping: list[Service]) -> Generator[Deferred[Any], Any, None]:
        try:
            # Removing a child from the running service stops it (a listener stops accepting).
            yield DeferredList([maybeDeferred(child.disownServiceParent) for child in stopping])
            if old.http is not None:
                grace = new.grace_period()
                drains = []
                for name, server in old.http.servers.items():
                    successor = new.http.servers.get(name) if new.http is not None else None
                    self._retiring_servers.add(server)
                    drains.append(server.retire(successor, grace, self.reactor))
                try:
                    yield DeferredList(drains)
                finally:
                    self._retiring_servers.difference_update(old.http.servers.values())
        finally:
            yield old.context.unload()
            if old.logs is not None:
                old.logs.stop()

    # -- start and stop ---------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        for warning in self.warnings:
            self.log.warn("{config_warning}", config_warning=str(warning))
        if self.logs is not None:
            self.logs.start()  # open the log files first: a bad one fails the start
        if self.fast_io and self.runtime.send_batch is None and _twisted.fast_io_supported(self.reactor):
            self.runtime.send_batch = _twisted.install_fast_io(self.reactor)
        super().startService()
        record_config_reload(self.runtime.get(Metrics), True, self.reactor.seconds())
        self._save()
        for name, addresses in self.listenAddresses().items():
            self.log.info("server {name} listening on {addresses}", name=name, addresses=addresses)

    @inlineCallbacks
    def stopService(self) -> Generator[Deferred[Any], Any, None]:  # noqa: N802 - Twisted's name
        # Stop accepting first (the listener children), then drain the connections, then
        # unload (waiting for the pools to close), then close the logs (the last requests
        # are still logged) and give the reactor its own loop back.
        yield super().stopService()
        grace = self._apps.grace_period()
        try:
            if self.http is not None:
                yield DeferredList(
                    [server.drain(grace, self.reactor) for server in self.http.servers.values()]
                )
            if self._retiring:
                # Stopping: what old configs still run (WebSockets) closes now, as the current's.
                for server in list(self._retiring_servers):
                    server.drain(grace, self.reactor)
                yield DeferredList(list(self._retiring))
        finally:
            yield self.context.unload()
            if self.logs is not None:
                self.logs.stop()
            if self.runtime.send_batch is not None:
                self.runtime.send_batch = None
                _twisted.uninstall_fast_io(self.reactor)


def plain_json(config: dict[str, Any]) -> dict[str, Any]:
    """The config as plain JSON values, as Caddy loads it (adapter objects encoded)."""
    return json.loads(encode(config))  # type: ignore[no-any-return]


def fromConfig(
    config: dict[str, Any], reactor: IServingReactor | None = None, fast_io: bool = False
) -> CaddyService:
    """The service for a Caddy JSON config (a dict).

    ``fast_io=True`` runs txcaddy's fast reactor path while the service runs (see
    docs/embedding.md: it changes the reactor's loop for every protocol in the process).
    """
    return CaddyService(config, reactor=reactor, fast_io=fast_io)


def fromCaddyfile(
    pathOrText: str,
    reactor: IServingReactor | None = None,
    environ: Any = None,
    fast_io: bool = False,
) -> CaddyService:
    """The service for a Caddyfile, given as a path to a file or as its text.

    A string naming an existing file is read from it; anything else is taken
    as Caddyfile text. Config errors raise ``ConfigError`` with file and line.
    ``fast_io`` as for ``fromConfig``.
    """
    if "\n" not in pathOrText and os.path.isfile(pathOrText):
        config, warnings = adapt(read_config_text(pathOrText), pathOrText, environ)
    else:
        config, warnings = adapt(pathOrText, "Caddyfile", environ)
    return CaddyService(config, warnings=warnings, reactor=reactor, fast_io=fast_io)
