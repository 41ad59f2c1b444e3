"""Fakes for testing handlers, matchers and whole route lists without sockets.

    request = make_request("GET", "/api/users", headers={"Host": "example.com"})
    response = serve(handler, request)
    assert response.status == 200 and response.body == b"..."

``serve`` drives the handler (and whatever it returns) to completion; with a
``Clock`` passed to the code under test, time moves only when the test says.

``make_request`` builds a real ``IRequest`` with an in-memory body,
``FakeResponse`` is an ``IResponse`` that records what is written (status,
header fields, body bytes, whether it finished), and ``FakeServer`` is an
``IHTTPServer`` that records what a connection's protocol tells it.
``MemoryServingReactor`` is Twisted's ``MemoryReactorClock`` with UDP ports as well, so
``fromCaddyfile(..., reactor=MemoryServingReactor())`` builds a whole service that opens
no socket.
``MemoryStorage`` (from ``txcaddy.tls.storage``) is an ``IStorage`` in memory, with the file
storage's key layout and in-process locks, for code that keeps certificates or takes locks.

For a whole config (docs/testing.md; treq's ``StubTreq`` is the model)::

    client = CaddyfileClient(caddyfile_text, upstreams={"localhost:3000": FakeUpstream(body="hi")})
    assert client.get("https://example.com/").text == "hi"
    assert client.upstream("localhost:3000").last.path == "/"

``CaddyfileClient``/``ConfigClient`` serve the config in memory through txcaddy's own HTTP/1.1
server protocol; every ``reverse_proxy`` dials ``FakeUpstream``s through a ``FakeNetwork``;
``client.clock`` drives health checks, retries and timeouts; ``client.open`` streams, and
``client.websocket`` with a ``WebSocketUpstream`` exchanges WebSocket messages.  They live
in ``txcaddy/_testing/`` and are public here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._reactor import IServingReactor
from txcaddy._testing._client import CaddyfileClient as CaddyfileClient
from txcaddy._testing._client import ConfigClient as ConfigClient
from txcaddy._testing._client import MemoryClient as MemoryClient
from txcaddy._testing._client import OpenRequest as OpenRequest
from txcaddy._testing._client import ResponseNotReady as ResponseNotReady
from txcaddy._testing._exchange import FakeExchange as FakeExchange
from txcaddy._testing._exchange import FakeUpstreamTransport as FakeUpstreamTransport
from txcaddy._testing._exchange import respond_with as respond_with
from txcaddy._testing._upstreams import FakeNetwork as FakeNetwork
from txcaddy._testing._upstreams import FakeUpstream as FakeUpstream
from txcaddy._testing._upstreams import Reply as Reply
from txcaddy._testing._upstreams import UpstreamRequest as UpstreamRequest
from txcaddy._testing._upstreams import UpstreamTunnel as UpstreamTunnel
from txcaddy._testing._websocket import UpstreamWebSocket as UpstreamWebSocket
from txcaddy._testing._websocket import WebSocketClient as WebSocketClient
from txcaddy._testing._websocket import WebSocketUpstream as WebSocketUpstream
from txcaddy._testing._wire import ClientResponse as ClientResponse
from txcaddy.http.errors import HandlerError
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request, RequestBody
from txcaddy.http.response import Response
from txcaddy.http.routing import finish_chain
from txcaddy.interfaces import IHTTPServer, IServerConnection
from txcaddy.tls.storage import MemoryStorage as MemoryStorage  # re-exported: a public fake


class FakeTLS:
    """Stands in for a TLS connection's details (``request.tls``)."""

    def __init__(self, server_name: str = "", version: str = "tls1.3", cipher_suite: str = "TLS_AES_128_GCM_SHA256", proto: str = "http/1.1") -> None:
        self.server_name = server_name
        self.version = version
        self.cipher_suite = cipher_suite
        self.proto = proto
        self.resumed = False
        self.peer_certificate = None


def make_request(
    method: str = "GET",
    target: str = "/",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    host: str | None = "localhost",
    remote: tuple[str, int] = ("127.0.0.1", 54321),
    proto: str = "HTTP/1.1",
    tls: Any = None,
    server: IHTTPServer | None = None,
) -> Request:
    """A complete request with an in-memory body (``server`` is what ``request.server`` gives)."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    fields = Headers(pairs)
    if host is not None and "Host" not in fields:
        fields.set("Host", host)
    request_body = RequestBody(len(body))
    if body:
        request_body.feed(body)
    request_body.finish()
    return Request(method, target, fields, proto=proto, remote=remote, tls=tls, body=request_body, server=server)


class FakeResponse(Response):
    """A response that keeps everything written in memory.

    Besides ``IResponse``'s ``status``, ``headers``, ``head_sent`` and
    ``finished``, it records the body as written (``chunks``, joined as
    ``body``), whether the end reached the wire (``ended``), the registered
    ``producer`` (a non-streaming one is pulled to the end at once), the 1xx
    responses sent before the final one (``informational``: ``(status, headers)``
    pairs), whether the handler aborted the connection (``aborted``), and a
    ``switch_protocols`` handover.
    """

    #: A plain attribute here (the base class's is a read-only property), so tests may set it.
    can_switch_protocols: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.producer: Any = None
        self.ended = False
        self.informational: list[tuple[int, Headers | None]] = []
        self.aborted = False
        # Protocol switching (a 101 tunnel): whether it is allowed, to what it switched,
        # and the transport standing in for the client connection afterwards.
        self.can_switch_protocols = True
        self.switched_to: Any = None
        self.switched_transport: StringTransport | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def register_producer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        if not streaming:
            while self.producer is producer and not self.finished:
                producer.resumeProducing()

    def unregister_producer(self) -> None:
        self.producer = None

    def write_informational(self, status: int, headers: Headers | None = None) -> None:
        """Record a 1xx response (ignored once the head is sent, as on the wire)."""
        if not self.head_sent:
            self.informational.append((status, headers))

    def abort_connection(self) -> None:
        """Record that the handler aborted the client connection."""
        self.aborted = True

    def switch_protocols(self, protocol: Any) -> None:
        """Like the HTTP/1.1 response's: status 101, the connection handed to ``protocol``.

        ``protocol`` is connected to ``switched_transport``, a ``StringTransport``
        that shows what it sends the client; feed it client bytes with
        ``protocol.dataReceived``.
        """
        if not self.can_switch_protocols or self.head_sent:
            raise RuntimeError("switch_protocols needs an upgrade request, before any response")
        self.can_switch_protocols = False
        self.status = 101
        self.head_sent = True
        self.finished = True
        self.ended = True
        self.switched_to = protocol
        self.switched_transport = StringTransport()
        protocol.makeConnection(self.switched_transport)
        self._fire_finished()

    def _send_head(self, status: int) -> None:
        pass

    def _send_body(self, data: bytes) -> None:
        self.chunks.append(bytes(data))

    def _send_end(self) -> None:
        self.ended = True


def serve(handler: Any, request: Request, response: FakeResponse | None = None, next: Any = finish_chain) -> FakeResponse:
    """Run ``handler.serve`` to completion and finish the response, like the server does.

    A ``HandlerError`` from the handler is re-raised (after the Deferred, if any,
    has fired), so tests can assert on it.
    """
    response = response if response is not None else FakeResponse()
    result = handler.serve(request, response, next)
    if isinstance(result, Deferred):
        outcome: list[Any] = []
        result.addBoth(outcome.append)
        if not outcome:
            raise AssertionError("the handler's Deferred has not fired; drive the clock or peer first")
        if hasattr(outcome[0], "raiseException"):
            outcome[0].raiseException()
    response.finish()
    return response


@implementer(IHTTPServer)
class FakeServer:
    """An ``IHTTPServer`` that records what a connection's protocol tells it.

    For testing a protocol, or code that reads ``request.server``, without
    routes. Every request handed over is kept in ``requests`` with its
    response. With a ``handler`` (an ``IHandler``) each one is served by it,
    then its response finished; a failure is kept in ``failures`` and, if
    nothing was written yet, answered with its ``HandlerError`` status (500
    for anything else). Without a handler the test answers on the response
    itself. Open connections are in ``connections``.
    """

    def __init__(
        self,
        handler: Any = None,
        *,
        name: str = "fake",
        max_header_bytes: int = 0,
        idle_timeout: float = 0.0,
    ) -> None:
        self.handler = handler
        self.name = name
        self.max_header_bytes = max_header_bytes
        self.idle_timeout = idle_timeout
        self.requests: list[tuple[Any, Any]] = []
        self.failures: list[Failure] = []
        self.connections: set[IServerConnection] = set()
        self._drained: list[Deferred[None]] = []

    def handle(self, request: Any, response: Any) -> None:
        """Record the request; serve it with ``handler`` if there is one."""
        self.requests.append((request, response))
        if self.handler is None:
            return
        d = maybeDeferred(self.handler.serve, request, response, finish_chain)
        d.addCallbacks(self._served, self._failed, callbackArgs=(response,), errbackArgs=(response,))

    def _served(self, _: object, response: Any) -> None:
        if not response.finished and response.lost is None:
            response.finish()

    def _failed(self, failure: Failure, response: Any) -> None:
        self.failures.append(failure)
        if not response.head_sent:
            error = failure.value
            response.write_head(error.status if isinstance(error, HandlerError) else 500)
        self._served(None, response)

    def connection_made(self, connection: IServerConnection) -> None:
        self.connections.add(connection)

    def connection_lost(self, connection: IServerConnection) -> None:
        self.connections.discard(connection)
        if not self.connections:
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def drain(self, grace_period: float, clock: Any) -> Deferred[None]:
        """Ask every connection to close when idle; fires once none is left.

        Nothing is forced after ``grace_period``: the test closes what is left.
        """
        d: Deferred[None] = Deferred()
        if not self.connections:
            d.callback(None)
            return d
        self._drained.append(d)
        for connection in list(self.connections):
            connection.close_when_idle()
        return d


@implementer(IListeningPort)
class _MemoryUDPPort:
    """What ``MemoryServingReactor.listenUDP`` returns: a port that opens nothing."""

    def __init__(self, address: IPv4Address) -> None:
        self.address = address
        self.listening = True

    def startListening(self) -> None:
        self.listening = True

    def stopListening(self) -> None:
        self.listening = False

    def getHost(self) -> IAddress:
        return self.address


@implementer(IServingReactor)
class MemoryServingReactor(MemoryReactorClock):
    """A ``MemoryReactorClock`` that is all a ``CaddyService`` runs on: UDP ports are recorded
    in ``udpPorts`` (port, protocol, interface, maxPacketSize) and open nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[tuple[int, DatagramProtocol, str, int]] = []

    def listenUDP(self, port: int, protocol: DatagramProtocol, interface: str = "",
                  maxPacketSize: int = 8192) -> IListeningPort:
        self.udpPorts.append((port, protocol, interface, maxPacketSize))
        return _MemoryUDPPort(IPv4Address("UDP", interface or "0.0.0.0", port))
