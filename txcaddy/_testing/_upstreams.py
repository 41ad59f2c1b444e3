"""Fake upstreams for whole configs: ``reverse_proxy`` dials them without a socket.

A ``FakeNetwork`` is the ``IUpstreamTransport`` every ``reverse_proxy`` of a config loaded by
``CaddyfileClient``/``ConfigClient`` gets (in place of the ``http`` transport module, Caddy's
``http.RoundTripper``), so upstream selection, retries, active and passive health checks,
``header_up``/``header_down`` and the response handling all run as they do over TCP; only the
bytes on the upstream connection are replaced by ``FakeExchange`` calls.  Each dial address
(``localhost:3000``, ``unix//run/app.sock``) names one ``FakeUpstream``; a dial to an address
with none is refused as a closed port is (``DialError``, which Caddy retries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from txcaddy._testing._exchange import FakeExchange
from txcaddy.http.headers import Headers
from txcaddy.interfaces import IUpstreamTransport
from txcaddy.reverseproxy.errors import DialError, ResponseHeaderTimeout

HeaderInput = Union[Mapping[str, str], Iterable[tuple[Any, Any]], None]


def raw_headers(headers: HeaderInput) -> list[tuple[bytes, bytes]]:
    """``{"Name": "value"}`` or ``(name, value)`` pairs (str or bytes) as bytes pairs."""
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(_b(name), _b(value)) for name, value in pairs]


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("latin-1")


def dial_string(address: Any) -> str:
    """An ``UpstreamAddress`` as the config wrote its dial address (``host:port``, ``unix//path``)."""
    if getattr(address, "network", "tcp") == "unix":
        return f"unix/{address.path}"
    host = address.host
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


class Reply:
    """What a ``FakeUpstream`` answers: a status, header fields, a body, after ``delay`` seconds.

    A ``Content-Length`` is added when the fields have no framing, as a real backend sends.
    """

    def __init__(self, status: int = 200, headers: HeaderInput = None, body: bytes | str = b"", *,
                 delay: float = 0.0, trailers: HeaderInput = None) -> None:
        self.status = status
        self.headers = raw_headers(headers)
        self.body = body.encode() if isinstance(body, str) else body
        names = {name.lower() for name, _ in self.headers}
        if b"content-length" not in names and b"transfer-encoding" not in names and status >= 200:
            # What a real backend sends (Go's server does for a short body); framing decides
            # whether the proxy answers with a length or chunked.
            self.headers.append((b"Content-Length", str(len(self.body)).encode()))
        self.delay = delay
        self.trailers = raw_headers(trailers) if trailers is not None else None


class UpstreamRequest:
    """One request a ``FakeUpstream`` got (the proxy's, or an active health check's).

    ``method``, ``path`` (the request target), ``headers`` (a ``Headers``) and ``body`` are
    what reached the upstream; ``health_check`` is True for the active health checker's
    probes.  ``respond``/``fail`` answer one the upstream's handler left waiting;
    ``tunnel`` is the upgraded connection after a ``101``.
    """

    def __init__(self, upstream: FakeUpstream, exchange: Any) -> None:
        self.upstream = upstream
        self.exchange = exchange
        self.address = dial_string(exchange.address)
        self.method = exchange.method.decode("latin-1")
        self.path = exchange.target.decode("latin-1")
        self.headers = Headers.from_raw(exchange.headers)
        self.health_check = exchange.request is None
        self.tunnel: UpstreamTunnel | None = None

    @property
    def body(self) -> bytes:
        """The request body as far as it reached the upstream."""
        return bytes(self.exchange.body)

    @property
    def complete(self) -> bool:
        """Whether the whole request (its body included) arrived."""
        return bool(self.exchange.body_done)

    def respond(self, status: int = 200, headers: HeaderInput = None, body: bytes | str = b"",
                *, trailers: HeaderInput = None, complete: bool = True) -> None:
        """Answer now (``complete=False`` keeps the body open: ``send_body``, ``end_body``)."""
        data = body.encode() if isinstance(body, str) else body
        self.exchange.respond(status, raw_headers(headers), data,
                              trailers=raw_headers(trailers) if trailers is not None else None,
                              complete=complete)

    def send_body(self, data: bytes) -> None:
        """More of a response body left open."""
        self.exchange.send_body(data)

    def end_body(self) -> None:
        """End a response body left open."""
        self.exchange.end_body()

    def fail(self, error: BaseException | None = None) -> None:
        """The upstream connection breaks (default: closed before any answer)."""
        from txcaddy.reverseproxy.errors import UpstreamConnectionLost
        self.exchange.fail(error if error is not None else UpstreamConnectionLost("upstream closed the connection"))

    def __repr__(self) -> str:
        return f"<UpstreamRequest {self.method} {self.path} at {self.address}>"


class UpstreamTunnel:
    """The upstream's side of a connection after ``101 Switching Protocols`` (a WebSocket).

    ``received`` is every byte the proxy forwarded from the client; ``send`` answers;
    ``on_data(bytes)``, when set, is called with each piece as it arrives.
    """

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.received = b""
        self.closed = False
        self.on_data: Callable[[bytes], None] | None = None

    def _write(self, data: bytes) -> None:
        self.received += data
        if self.on_data is not None:
            self.on_data(data)

    def send(self, data: bytes) -> None:
        """Bytes from the upstream to the client."""
        self.protocol.dataReceived(data)

    def close(self) -> None:
        """The upstream closes the connection."""
        if not self.closed:
            self.closed = True
            from twisted.internet.error import ConnectionDone
            from twisted.python.failure import Failure
            self.protocol.connectionLost(Failure(ConnectionDone()))


class _TunnelTransport(StringTransport):
    """A StringTransport that tells its tunnel about each write."""

    def __init__(self, tunnel_ref: list[UpstreamTunnel]) -> None:
        super().__init__()
        self._tunnel_ref = tunnel_ref

    def write(self, data: bytes) -> None:
        super().write(data)
        self._tunnel_ref[0]._write(data)

    def writeSequence(self, seq: Iterable[bytes]) -> None:  # noqa: N802 - Twisted's name
        for data in seq:
            self.write(data)

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        super().loseConnection()
        self._tunnel_ref[0].close()

    def abortConnection(self) -> None:  # noqa: N802 - Twisted's name
        self.loseConnection()


Handler = Callable[[UpstreamRequest], Union[Reply, None]]


class FakeUpstream:
    """A backend that records what it gets and answers what the test says.

    By default every request is answered with ``reply`` (``Reply(200)``, or the
    ``status``/``headers``/``body`` given).  A ``handler(request)`` decides instead: it returns
    a ``Reply``, or None to leave the request waiting for ``request.respond(...)``.
    ``refusing = True`` refuses every dial (the process is down); ``requests`` keeps every
    request in arrival order, ``proxied`` those from clients and ``health_checks`` the probes.
    ``on_upgrade(tunnel)`` is called when a ``101`` answer turned a connection into a tunnel.
    """

    def __init__(self, status: int = 200, headers: HeaderInput = None, body: bytes | str = b"", *,
                 name: str = "", handler: Handler | None = None, delay: float = 0.0) -> None:
        self.name = name
        self.reply = Reply(status, headers, body, delay=delay)
        self.handler = handler
        self.refusing = False
        self.requests: list[UpstreamRequest] = []
        self.refused = 0  # dials refused while ``refusing``
        self.on_upgrade: Callable[[UpstreamTunnel], None] | None = None
        self.clock: IReactorTime | None = None  # set by the FakeNetwork it is registered with

    @property
    def proxied(self) -> list[UpstreamRequest]:
        """The requests the proxy forwarded (not the health checker's)."""
        return [r for r in self.requests if not r.health_check]

    @property
    def health_checks(self) -> list[UpstreamRequest]:
        """The active health checker's probes."""
        return [r for r in self.requests if r.health_check]

    @property
    def last(self) -> UpstreamRequest:
        """The last request forwarded by the proxy (fails when there was none)."""
        proxied = self.proxied
        if not proxied:
            raise AssertionError(f"upstream {self.name or '?'} got no proxied request")
        return proxied[-1]

    def _received(self, request: UpstreamRequest) -> None:
        """The request (with its body) is complete: answer it."""
        reply = self.handler(request) if self.handler is not None else self.reply
        if reply is None:
            return
        if reply.delay and self.clock is not None:
            self.clock.callLater(reply.delay, self._answer, request, reply)
        else:
            self._answer(request, reply)

    def _answer(self, request: UpstreamRequest, reply: Reply) -> None:
        if request.exchange.finished or request.exchange.aborted is not None:
            return  # the proxy gave up (a timeout, the client left)
        request.exchange.respond(reply.status, reply.headers, reply.body, trailers=reply.trailers)

    def _upgraded(self, request: UpstreamRequest, protocol: Any) -> StringTransport:
        ref: list[UpstreamTunnel] = []
        transport = _TunnelTransport(ref)
        tunnel = UpstreamTunnel(protocol)
        ref.append(tunnel)
        request.tunnel = tunnel
        protocol.makeConnection(transport)
        if self.on_upgrade is not None:
            self.on_upgrade(tunnel)
        return transport

    def __repr__(self) -> str:
        return f"<FakeUpstream {self.name!r}: {len(self.requests)} requests>"


@implementer(IUpstreamTransport)
class FakeNetwork:
    """The ``IUpstreamTransport`` of a config served in memory: dial address -> ``FakeUpstream``.

    Addresses are matched as written in the config (``localhost:3000``); ``localhost`` and
    ``127.0.0.1`` name the same upstream, as they reach the same port.
    """

    compression = False
    unsupported_reason: str | None = None

    def __init__(self, clock: IReactorTime, upstreams: Mapping[str, FakeUpstream] | None = None) -> None:
        self.clock = clock
        self.upstreams: dict[str, FakeUpstream] = {}
        self.dials: list[str] = []  # every address dialled, in order
        self.views: list[NetworkView] = []  # one per reverse_proxy loaded (its transport's view)
        for address, upstream in (upstreams or {}).items():
            self.add(address, upstream)

    def add(self, address: str, upstream: FakeUpstream | None = None) -> FakeUpstream:
        """Serve ``address`` (a dial address) with ``upstream`` (a new one by default)."""
        upstream = upstream if upstream is not None else FakeUpstream()
        if not upstream.name:
            upstream.name = address
        upstream.clock = self.clock
        self.upstreams[_normal(address)] = upstream
        return upstream

    def find(self, address: str) -> FakeUpstream | None:
        return self.upstreams.get(_normal(address))

    def request(self, address: Any, method: bytes, target: bytes, headers: Any, body_length: int | None = None,
                on_informational: Callable[[Any], None] | None = None, request: Any = None) -> Any:
        dial = dial_string(address)
        self.dials.append(dial)
        upstream = self.find(dial)
        exchange = _NetworkExchange(self, address, method, target, list(headers), body_length,
                                    on_informational, request)
        if upstream is None or upstream.refusing:
            if upstream is not None:
                upstream.refused += 1
            exchange.fail(DialError(f"dial tcp {dial}: connect: connection refused"))
            return exchange
        recorded = UpstreamRequest(upstream, exchange)
        exchange.recorded = recorded
        upstream.requests.append(recorded)
        exchange.on_request_complete = lambda _: upstream._received(recorded)
        exchange.connect()
        return exchange

    def close_idle(self) -> Deferred[None]:
        return succeed(None)

    def view(self, transport: Any) -> NetworkView:
        """This network as seen through a loaded transport module (its options, its timeouts)."""
        view = NetworkView(self, transport)
        self.views.append(view)
        return view


@implementer(IUpstreamTransport)
class NetworkView:
    """A ``FakeNetwork`` behind one ``reverse_proxy``'s transport: the transport module the config
    names is loaded (so its options are checked) but never dials; its ``compression`` and
    ``response_header_timeout`` (on the clock) apply to the fake upstreams."""

    def __init__(self, network: FakeNetwork, transport: Any) -> None:
        self.network = network
        self.transport = transport
        self.compression = bool(getattr(transport, "compression", False))
        self.unsupported_reason = getattr(transport, "unsupported_reason", None)
        pool = getattr(transport, "pool", None)
        self.response_header_timeout: float | None = getattr(pool, "response_header_timeout", None)

    def request(self, address: Any, method: bytes, target: bytes, headers: Any, body_length: int | None = None,
                on_informational: Callable[[Any], None] | None = None, request: Any = None) -> Any:
        exchange = self.network.request(address, method, target, headers, body_length, on_informational, request)
        timeout = self.response_header_timeout
        if timeout and exchange.recorded is not None:
            timer = self.network.clock.callLater(timeout, self._timed_out, exchange, timeout)

            def stop(_: object) -> None:
                if timer.active():
                    timer.cancel()

            exchange.when_head(stop, stop)
        return exchange

    def _timed_out(self, exchange: Any, timeout: float) -> None:
        exchange.fail(ResponseHeaderTimeout(f"no response head from the upstream in {timeout}s"))

    def close_idle(self) -> Deferred[None]:
        return succeed(None)


def _normal(address: str) -> str:
    if address.startswith("localhost:"):
        return "127.0.0.1:" + address[len("localhost:"):]
    return address


class _NetworkExchange(FakeExchange):
    """A ``FakeExchange`` whose 101 hands the connection to its upstream's tunnel."""

    recorded: UpstreamRequest | None = None

    def switch_protocol(self, protocol: Any) -> None:
        if self.response is None or self.response.status != 101 or self.recorded is None:
            raise RuntimeError("switch_protocol is only valid after a 101 response")
        self.upstream_transport = self.recorded.upstream._upgraded(self.recorded, protocol)
