"""The txcaddy service tree.

``CaddyService`` is the root ``MultiService`` for one config: it loads the
Caddy JSON into runtime objects (through the loader) and has one child
service per listener socket. The listeners bind in ``privilegedStartService``
(Twisted's ``StreamServerEndpointService``), so ``twistd --uid/--gid`` binds
:80 and :443 as root and then drops privileges. ``stopService`` stops accepting,
lets requests in flight finish within the grace period, then waits for what the
modules close on unload (upstream connection pools) before it fires.

The service owns its ``Runtime`` (the state Caddy keeps in package variables:
upstream hosts, DNS answers) and, when asked for (``fast_io=True``; ``twistd caddy``
and ``txcaddy run`` ask), txcaddy's fast reactor path (``_twisted.install_fast_io``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger

from txcaddy import _systemd, _twisted
from txcaddy._reactor import IServingReactor, default_reactor
from txcaddy.caddyfile.adapter import adapt
from txcaddy.caddyfile.jsonenc import encode
from txcaddy.config.configschema import check_config
from txcaddy.config.loader import LoadContext, Runtime
from txcaddy.config.source import read_config_text
from txcaddy.errors import ConfigError, ConfigWarning
from txcaddy.http._h2 import HTTPFactory
from txcaddy.http.app import HTTPApp, load_http_app
from txcaddy.interfaces import IStorage
from txcaddy.logs import LogSystem
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

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory, address: str) -> None:
        super().__init__(endpoint, factory)
        self.address = address
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        self._raiseSynchronously = True  # Twisted turns it off after each start
        super().privilegedStartService()
        waiting: Deferred[IListeningPort | None] = cast(Deferred, self._waitingForPort)
        waiting.addCallback(self._bound)

    def _bound(self, port: IListeningPort | None) -> IListeningPort | None:
        self.port = port
        return port

    def stopService(self) -> Deferred[None]:
        self.port = None
        if self._waitingForPort is None:  # never started (a sibling failed to bind first)
            Service.stopService(self)
            return succeed(None)
        stopped: Deferred[None] = super().stopService()
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


class CaddyService(MultiService):
    """Root service for one loaded config.

    @ivar runtime: the state this service keeps across the configs it loads.
    @ivar fast_io: whether it runs txcaddy's fast reactor path while started.
    """

    log = Logger()

    def __init__(
        self,
        config: dict[str, Any],
        warnings: list[ConfigWarning] | None = None,
        reactor: IServingReactor | None = None,
        fast_io: bool = False,
        inherited: Sequence[_systemd.InheritedSocket] | None = None,
    ) -> None:
        super().__init__()
        self.reactor = default_reactor(reactor)
        # systemd socket activation: listeners bound where an inherited socket is adopt it.
        self.inherited = list(_systemd.process_sockets() if inherited is None else inherited)
        self.config = plain_json(config)
        self.warnings = list(warnings or [])
        self.fast_io = fast_io
        self.runtime = Runtime()
        self.http: HTTPApp | None = None
        self.tls: TLSApp | None = None
        self.challenges = Challenges()  # the ACME challenges in flight (kept across configs)
        self.storage: IStorage | None = None
        self.logs: LogSystem | None = None
        self._h3_services: dict[str, list[QUICListenerService]] = {}
        self._build()

    def _build(self) -> None:
        check_config(self.config)  # every value's type, before any module reads it
        apps = self.config.get("apps") or {}
        unknown = sorted(set(apps) - {"http", "tls", "pki"})
        if unknown:
            raise ConfigError(f"loading app modules: module not registered: {unknown[0]}")
        context = self.context = LoadContext(reactor=self.reactor, log=self.log, runtime=self.runtime)
        self.logs = LogSystem.from_config(self.config.get("logging"), context)
        self.tls = TLSApp.load(apps.get("tls"), self.challenges)
        http_config = apps.get("http")
        if not http_config:
            return
        auto_https = self.tls.plan_http(http_config)
        self.http = load_http_app(auto_https.http, context, logs=self.logs, challenges=self.challenges)
        for name, server in self.http.servers.items():
            # HTTP/2 is chosen per connection at its first bytes (``HTTPFactory``): by ALPN on
            # TLS listeners when the server's protocols name h2 (Caddy's default: h1 h2 h3), by
            # the h2c preface in the clear when they name h2c.
            protocols = auto_https.http["servers"][name].get("protocols") or DEFAULT_PROTOCOLS
            factory: IProtocolFactory = HTTPFactory(server, self.reactor, h2c="h2c" in protocols)
            tls_factory: IProtocolFactory | None = None
            for listener in self.http.listeners[name]:
                endpoint = self._endpoint(listener.endpoint)
                serving = factory
                if listener.tls:
                    if tls_factory is None:
                        http2 = "h2" in protocols
                        tls_factory = self.tls.wrap(
                            name, auto_https.http["servers"][name], HTTPFactory(server, self.reactor, h2=http2),
                            http2=http2,
                        )
                    serving = tls_factory
                child = ListenerService(endpoint, serving, listener.address)
                child.setName(f"{name} {listener.endpoint}")
                child.setServiceParent(self)
                if listener.tls and "h3" in protocols:
                    self._add_h3(name, server, auto_https.http["servers"][name], listener, protocols)
        for service in context.services:
            service.setServiceParent(self)
        self._add_certificate_services()

    def _endpoint(self, description: str) -> IStreamServerEndpoint:
        """The endpoint for a listener: an inherited socket bound there (systemd), else a new one."""
        inherited = _systemd.match_endpoint(description, self.inherited)
        if inherited is None:
            return serverFromString(self.reactor, description)
        self.log.info("{description} adopts inherited socket fd {fd}", description=description, fd=inherited.fd)
        return _systemd.AdoptedEndpoint(self.reactor, inherited)

    def _add_h3(
        self, name: str, server: Any, config: dict[str, Any], listener: Any, protocols: Sequence[str]
    ) -> None:
        """HTTP/3 on UDP beside one TLS listener (Caddy's ``serveHTTP3``); not for unix sockets."""
        # Imported here: aioquic (and its QPACK extension) is loaded only by configs that serve HTTP/3.
        from txcaddy.http._h3 import HTTP3Listener, alt_svc_value

        assert self.tls is not None and self.http is not None
        udp = _udp_address(listener.endpoint)
        if udp is None:
            self.log.warn("HTTP/3 is not served on {address}: not an IP listener", address=listener.address)
            return
        creator = self.tls.server_tls(name, config, http2="h2" in protocols)
        services = self._h3_services.setdefault(name, [])

        def ports_changed() -> None:
            server.alt_svc = alt_svc_value([p for p in (s.bound_port() for s in services) if p is not None])

        h3 = HTTP3Listener(server, self.reactor, creator.quic_certificate)
        child = QUICListenerService(
            self.reactor, h3, udp[0], udp[1], listener.address, ports_changed,
            self.http.grace_period or DEFAULT_GRACE_PERIOD, _systemd.match_datagram(udp[0], udp[1], self.inherited),
        )
        child.setName(f"{name} udp {listener.endpoint}")
        services.append(child)
        child.setServiceParent(self)

    def _add_certificate_services(self) -> None:
        """The PKI app and the certificate manager, after the listeners (Caddy's phase 2).

        Only when there is something to manage or a CA to keep: an all-``http://`` config
        opens no storage.
        """
        assert self.tls is not None
        apps = self.config.get("apps") or {}
        if not (self.tls.managed or apps.get("pki") or self.tls.uses_on_demand()):
            return
        self.storage = storage_from_config(self.config.get("storage"), self.reactor)
        for service in self.tls.services(self.storage, apps.get("pki"), self.reactor, self.reactor):
            service.setServiceParent(self)

    def listenAddresses(self) -> dict[str, list[str]]:
        """Each HTTP server's listener addresses, by server name (with automatic HTTPS's redirect server)."""
        if self.http is None:
            return {}
        return {name: list(server.listen) for name, server in self.http.servers.items()}

    def boundAddresses(self) -> dict[str, list[Any]]:
        """The socket addresses actually listened on, by server name (once started)."""
        out: dict[str, list[Any]] = {}
        for child in self:
            if isinstance(child, ListenerService) and child.port is not None:
                out.setdefault((child.name or "").split(" ", 1)[0], []).append(child.port.getHost())
        return out

    def startService(self) -> None:
        for warning in self.warnings:
            self.log.warn("{config_warning}", config_warning=str(warning))
        if self.logs is not None:
            self.logs.start()  # open the log files first: a bad one fails the start
        if self.fast_io and self.runtime.send_batch is None:
            self.runtime.send_batch = _twisted.install_fast_io(self.reactor)
        super().startService()
        for name, addresses in self.listenAddresses().items():
            self.log.info("server {name} listening on {addresses}", name=name, addresses=addresses)

    @inlineCallbacks
    def stopService(self) -> Generator[Deferred[Any], Any, None]:
        # Stop accepting first (the listener children), then drain the connections, then
        # unload (waiting for the pools to close), then close the logs (the last requests
        # are still logged) and give the reactor its own loop back.
        yield super().stopService()
        try:
            if self.http is not None:
                grace = self.http.grace_period or DEFAULT_GRACE_PERIOD
                yield DeferredList(
                    [server.drain(grace, self.reactor) for server in self.http.servers.values()]
                )
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
