"""``CaddyfileClient`` and ``ConfigClient``: a whole config served in memory, for users' tests.

treq's ``StubTreq`` is the model: the test holds a client, the client holds the service, and
nothing opens a socket.  The config is loaded by the real ``CaddyService`` on a
``MemoryServingReactor`` (which is also the test's clock); each request is a new
connection of txcaddy's own HTTP/1.1 server protocol over a ``StringTransport`` (the
listener the URL's port names, with a stand-in TLS state where that listener speaks TLS), so
parsing, routing, placeholders, header handling and response framing are those of a TCP
connection.  Every ``reverse_proxy`` gets a ``FakeNetwork`` as its transport: dial addresses
name ``FakeUpstream`` objects.  Certificates are neither obtained nor issued (no storage is
opened); HTTP/2 and HTTP/3 are not spoken.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from txcaddy._testing._upstreams import FakeNetwork, FakeUpstream, HeaderInput
from txcaddy._testing._wire import ClientResponse, ResponseReader, request_head
from txcaddy.caddyfile.adapter import adapt
from txcaddy.config.loader import Runtime
from txcaddy.http._httpfactory import HTTPFactory
from txcaddy.reverseproxy.handler import TransportRegistry
from txcaddy.service import CaddyService, plain_json

_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


class ResponseNotReady(AssertionError):
    """The response is not complete yet: something waits on the clock or on an upstream."""


class _FakeTransports(TransportRegistry):
    """Every ``reverse_proxy`` of the config gets the client's ``FakeNetwork``, seen through
    its transport module (built, so its options are checked and apply, but never dialling)."""

    def __init__(self, network: FakeNetwork) -> None:
        super().__init__()
        self.network = network

    def acquire(self, key: str, build: Any) -> Any:
        return self.network.view(build())

    def release(self, key: str) -> Any:
        return None


class _MemoryService(CaddyService):
    """A ``CaddyService`` that binds no listener and manages no certificates (no storage, no
    ACME, no CA): the client builds each connection's protocol itself, so a plain ``Clock``
    is reactor enough."""

    def _add_certificate_services(self, new: Any) -> None:
        return None

    def _install_listeners(self, apps: Any) -> list[Any]:
        return []


class _ClientTransport(StringTransport):
    """The client's view of the connection: every server write reaches ``OpenRequest``."""

    def __init__(self, owner: OpenRequest, host: IPv4Address, peer: IPv4Address) -> None:
        super().__init__(hostAddress=host, peerAddress=peer)
        self.owner = owner

    def write(self, data: bytes) -> None:
        super().write(data)
        self.owner._server_wrote(data)

    def writeSequence(self, seq: Iterable[bytes]) -> None:  # noqa: N802 - Twisted's name
        for data in seq:
            self.write(data)

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        super().loseConnection()
        self.owner._server_closed(ConnectionDone())

    def abortConnection(self) -> None:  # noqa: N802 - Twisted's name
        super().loseConnection()
        self.owner._server_closed(ConnectionLost("aborted by the server"))


class OpenRequest:
    """One request in flight on its own connection: send its body, watch its response.

    ``response`` (a ``ClientResponse``) fills in as the server writes; ``when_complete()``
    fires with it at the end of the body (or the 101), ``when_head()`` once the head is there.
    ``send``/``end`` stream a request body opened with ``stream=True`` (chunked unless a
    ``Content-Length`` was given); ``send_raw`` writes bytes as they are (a tunnel's).
    ``closed`` is True once the server closed the connection.
    """

    def __init__(self, client: MemoryClient, method: str, protocol: Any, host: IPv4Address,
                 peer: IPv4Address, chunked: bool) -> None:
        self.client = client
        self.response = ClientResponse(method)
        self._reader = ResponseReader(self.response)
        self._chunked = chunked
        self.protocol = protocol
        self.closed = False
        self.ended = False
        self._receiving = False
        self._pending_close: BaseException | None = None
        self._complete_waiters: list[Deferred[ClientResponse]] = []
        self._head_waiters: list[Deferred[ClientResponse]] = []
        self.transport = _ClientTransport(self, host, peer)
        protocol.makeConnection(self.transport)

    # -- the test's side ------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """A piece of the request body."""
        if self._chunked and data:
            self.send_raw(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.send_raw(data)

    def end(self) -> None:
        """The request body is complete."""
        if self._chunked and not self.ended:
            self.send_raw(b"0\r\n\r\n")
        self.ended = True

    def send_raw(self, data: bytes) -> None:
        """Bytes to the server as they are."""
        if self.closed or not data:
            return
        self._receiving = True
        try:
            self.protocol.dataReceived(data)
        finally:
            self._receiving = False
        self._deliver_close()

    def disconnect(self) -> None:
        """The client goes away (closes its side before the response is complete)."""
        self._server_closed(ConnectionDone("the client closed"))

    def when_complete(self) -> Deferred[ClientResponse]:
        d: Deferred[ClientResponse] = Deferred()
        if self.response.complete:
            d.callback(self.response)
        else:
            self._complete_waiters.append(d)
        return d

    def when_head(self) -> Deferred[ClientResponse]:
        d: Deferred[ClientResponse] = Deferred()
        if self.response.status is not None:
            d.callback(self.response)
        else:
            self._head_waiters.append(d)
        return d

    def result(self) -> ClientResponse:
        """The complete response (after running what is due now on the clock)."""
        if not self.response.complete:
            self.client.clock.advance(0)
        if not self.response.complete:
            raise ResponseNotReady(
                f"the response is not complete ({self.response!r}): advance client.clock, answer the "
                "upstream, or use client.open(...).when_complete()")
        return self.response

    # -- the connection's side ------------------------------------------------------------

    def _server_wrote(self, data: bytes) -> None:
        had_head = self.response.status is not None
        self._reader.feed(data)
        self._notify(had_head)

    def _server_closed(self, reason: BaseException) -> None:
        if self.closed:
            return
        self.closed = True
        had_head = self.response.status is not None
        self._reader.connection_closed()
        self._pending_close = reason
        self._deliver_close()
        self._notify(had_head)

    def _deliver_close(self) -> None:
        reason = self._pending_close
        if reason is None or self._receiving:
            return  # the protocol hears it once its dataReceived returned
        self._pending_close = None
        self.protocol.connectionLost(Failure(reason))

    def _notify(self, had_head: bool) -> None:
        response = self.response
        if not had_head and response.status is not None:
            waiters, self._head_waiters = self._head_waiters, []
            for d in waiters:
                d.callback(response)
        if response.complete:
            waiters, self._complete_waiters = self._complete_waiters, []
            for d in waiters:
                d.callback(response)
            if response.status != 101 and not self.closed:
                self._server_closed(ConnectionDone("the client is done"))
        elif self.closed:
            waiters = self._complete_waiters + self._head_waiters
            self._complete_waiters, self._head_waiters = [], []
            for d in waiters:
                d.errback(ConnectionLost(f"the server closed the connection before the response ended ({response!r})"))


class MemoryClient:
    """What ``CaddyfileClient`` and ``ConfigClient`` share: requests to a config in memory.

    ``clock`` is the service's reactor (a ``Clock``; by default a ``MemoryServingReactor``, which
    is one and provides every reactor interface a module may ask for): advance it to run
    health checks, retries and timeouts.  ``network`` is the ``FakeNetwork`` behind every
    ``reverse_proxy``; ``upstream(address)`` gets (or adds) the ``FakeUpstream`` at a dial
    address.  ``base_url`` is where a bare path goes (``client.get("/x")``).
    """

    def __init__(self, config: dict[str, Any], warnings: list[Any] | None = None, *,
                 upstreams: Mapping[str, FakeUpstream] | Iterable[str] | None = None,
                 clock: Any = None, base_url: str = "http://localhost",
                 remote: tuple[str, int] = ("127.0.0.1", 54321), start: bool = True) -> None:
        from txcaddy.testing import MemoryServingReactor

        self.clock = clock if clock is not None else MemoryServingReactor()
        if isinstance(upstreams, Mapping):
            self.network = FakeNetwork(self.clock, upstreams)
        else:
            self.network = FakeNetwork(self.clock)
            for address in upstreams or ():
                self.network.add(address)
        runtime = Runtime()
        runtime.provide(TransportRegistry, _FakeTransports(self.network))
        self.service: CaddyService = _MemoryService(config, warnings=warnings, reactor=self.clock, runtime=runtime)
        self.base_url = base_url
        self.remote = remote
        self.requests: list[OpenRequest] = []
        if start:
            self.service.startService()

    @property
    def warnings(self) -> list[Any]:
        """What loading the config warned about (``ConfigWarning``s: deprecated spellings...)."""
        return list(self.service.warnings)

    def upstream(self, address: str) -> FakeUpstream:
        """The ``FakeUpstream`` at dial address ``address``, added when there is none yet."""
        return self.network.find(address) or self.network.add(address)

    def close(self) -> None:
        """Stop the service (give ``addCleanup`` this); requests still open are cut off."""
        if not self.service.running:
            return
        done = self.service.stopService()
        for request in self.requests:
            if not request.closed:
                request.disconnect()
        self.clock.advance(0)
        if done is not None and not done.called:
            self.clock.advance(3600)  # the grace period for what is left

    # -- requests ------------------------------------------------------------------------

    def open(self, method: str, url: str, headers: HeaderInput = None, body: bytes | str | None = None,
             *, stream: bool = False) -> OpenRequest:
        """Send a request on a new connection and return it while it runs.

        ``body`` is sent whole with a ``Content-Length``; ``stream=True`` sends only the head
        (chunked, unless ``headers`` has a ``Content-Length``) and the test feeds the body with
        ``send``/``end``.  A ``Host`` field is added from the URL unless ``headers`` has one.
        Raises ``ConnectionRefusedError`` when no listener serves the URL's port.
        """
        parts = urlsplit(url if "://" in url else self.base_url.rstrip("/") + "/" + url.lstrip("/"))
        scheme = parts.scheme or "http"
        app = self.service.http
        if app is None:
            raise ConnectionRefusedError("the config has no HTTP app")
        port = parts.port or (app.https_port if scheme == "https" else app.http_port)
        found = self._listener(port, parts.hostname or "")
        if found is None:
            raise ConnectionRefusedError(f"no listener on port {port} for {url}")
        server, tls = found
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        pairs = [(_s(k), _s(v)) for k, v in _pairs(headers)]
        names = {name.lower() for name, _ in pairs}
        if "host" not in names:
            default_port = 443 if scheme == "https" else 80
            host = parts.hostname or "localhost"
            if ":" in host:
                host = f"[{host}]"
            pairs.insert(0, ("Host", host if parts.port in (None, default_port) else f"{host}:{parts.port}"))
        data = body.encode() if isinstance(body, str) else body
        chunked = False
        if stream:
            if "content-length" not in names and "transfer-encoding" not in names:
                pairs.append(("Transfer-Encoding", "chunked"))
                chunked = True
            elif "chunked" in ",".join(v.lower() for k, v in pairs if k.lower() == "transfer-encoding"):
                chunked = True
        elif "content-length" not in names and "transfer-encoding" not in names:
            if data or method.upper() not in _BODYLESS:
                pairs.append(("Content-Length", str(len(data or b""))))
        peer = IPv4Address("TCP", self.remote[0], self.remote[1])
        host_address = IPv4Address("TCP", "127.0.0.1", port)
        fake_tls = None
        if tls:
            from txcaddy.testing import FakeTLS
            fake_tls = FakeTLS(server_name=parts.hostname or "")
        protocol = HTTPFactory(server, self.clock, fake_tls).buildProtocol(peer)
        request = OpenRequest(self, method.upper(), protocol, host_address, peer, chunked)
        self.requests.append(request)
        request.send_raw(request_head(method.upper(), target, pairs))
        if data and not stream:
            request.send_raw(data)
        return request

    def request(self, method: str, url: str, headers: HeaderInput = None,
                body: bytes | str | None = None) -> ClientResponse:
        """The complete response to a request (``ResponseNotReady`` if it is still waiting)."""
        return self.open(method, url, headers, body).result()

    def request_deferred(self, method: str, url: str, headers: HeaderInput = None,
                         body: bytes | str | None = None) -> Deferred[ClientResponse]:
        """A Deferred for the complete response (fires once the clock or upstream allow)."""
        return self.open(method, url, headers, body).when_complete()

    def get(self, url: str, headers: HeaderInput = None) -> ClientResponse:
        return self.request("GET", url, headers)

    def head(self, url: str, headers: HeaderInput = None) -> ClientResponse:
        return self.request("HEAD", url, headers)

    def delete(self, url: str, headers: HeaderInput = None) -> ClientResponse:
        return self.request("DELETE", url, headers)

    def post(self, url: str, body: bytes | str = b"", headers: HeaderInput = None) -> ClientResponse:
        return self.request("POST", url, headers, body)

    def put(self, url: str, body: bytes | str = b"", headers: HeaderInput = None) -> ClientResponse:
        return self.request("PUT", url, headers, body)

    def websocket(self, url: str, headers: HeaderInput = None, protocols: Iterable[str] = ()) -> Any:
        """Open a WebSocket (an HTTP/1.1 upgrade); see ``WebSocketClient``."""
        from txcaddy._testing._websocket import WebSocketClient
        return WebSocketClient.connect(self, url, headers, protocols)

    def _listener(self, port: int, hostname: str) -> tuple[Any, bool] | None:
        app = self.service.http
        assert app is not None
        best: tuple[Any, bool] | None = None
        for name, listeners in app.listeners.items():
            for listener in listeners:
                kind, _, rest = listener.endpoint.partition(":")
                if kind not in ("tcp", "tcp6"):
                    continue
                number, _, options = rest.partition(":")
                if int(number) != port:
                    continue
                interface = options[len("interface="):].replace("\\:", ":") if options.startswith("interface=") else ""
                if not interface or interface == hostname or best is None:
                    best = (app.servers[name], listener.tls)
        return best


class CaddyfileClient(MemoryClient):
    """A client for a Caddyfile (its text, or the path of a file) served in memory; see ``MemoryClient``."""

    def __init__(self, caddyfile: str, *, environ: Mapping[str, str] | None = None, **kw: Any) -> None:
        filename = "Caddyfile"
        if "\n" not in caddyfile and os.path.isfile(caddyfile):
            filename = caddyfile
            with open(caddyfile) as f:
                caddyfile = f.read()
        config, warnings = adapt(caddyfile, filename, environ)
        super().__init__(plain_json(config), warnings, **kw)


class ConfigClient(MemoryClient):
    """A client for a Caddy JSON config (a dict, or its JSON text) served in memory."""

    def __init__(self, config: Mapping[str, Any] | str, **kw: Any) -> None:
        loaded = json.loads(config) if isinstance(config, str) else dict(config)
        super().__init__(plain_json(loaded), None, **kw)


def _pairs(headers: HeaderInput) -> list[tuple[Any, Any]]:
    if headers is None:
        return []
    return list(headers.items() if isinstance(headers, Mapping) else headers)


def _s(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)
