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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IAddress, IListeningPort, IPushProducer
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._reactor import IServingReactor
from txcaddy.http.errors import HandlerError
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request, RequestBody
from txcaddy.http.response import Response
from txcaddy.http.routing import finish_chain
from txcaddy.interfaces import IExchange, IHTTPServer, IServerConnection, IUpstreamTransport
from txcaddy.reverseproxy.transport import ResponseHead
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


# -- the upstream side of reverse_proxy: a transport without sockets -------------------------
#
#     transport = FakeUpstreamTransport(respond_with(200, [(b"Content-Type", b"text/plain")], b"hi"))
#     handler = ReverseProxyHandler(clock=Clock(), transport=transport, upstreams=[...], policy=...)
#     response = serve(handler, make_request("GET", "/"))
#     assert response.body == b"hi" and transport.exchanges[0].target == b"/"
#
# Without a responder every exchange waits: the test answers it (``respond``, ``fail``) when it
# wants, and can look at what reached the upstream in between.


def respond_with(status: int = 200, headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"",
                 trailers: Iterable[tuple[bytes, bytes]] | None = None) -> Callable[[FakeExchange], None]:
    """A responder for ``FakeUpstreamTransport`` answering every request the same way."""
    canned = list(headers)
    canned_trailers = list(trailers) if trailers is not None else None

    def respond(exchange: FakeExchange) -> None:
        exchange.respond(status, canned, body, trailers=canned_trailers)

    return respond


@implementer(IExchange, IPushProducer)
class FakeExchange:
    """One request a ``FakeUpstreamTransport`` got, answered by the test (``IExchange``).

    It records the request (``address``, ``method``, ``target``, ``headers`` as bytes pairs,
    ``body``, ``body_done``, ``trailers``) and the caller's handling of the response
    (``consumer``, ``paused``, ``aborted``).  ``connect`` stands for the upstream connection
    coming up (the request body starts to flow); ``respond`` and ``fail`` answer.
    """

    def __init__(self, transport: FakeUpstreamTransport, address: Any, method: bytes, target: bytes,
                 headers: list[tuple[bytes, bytes]], body_length: int | None,
                 on_informational: Callable[[Any], None] | None = None, request: Any = None) -> None:
        self.transport = transport
        self.address = address
        self.method = method
        self.target = target
        self.headers = headers
        self.body_length = body_length
        self.on_informational = on_informational
        self.request = request
        self.body = bytearray()
        self.body_done = body_length is None
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.producer: Any = None
        self.consumer: Any = None
        self.paused = False
        self.aborted: BaseException | None = None
        self.response: Any = None
        self.sent_anything = False
        self.body_wanted = False
        self.finished = False
        #: Called with the exchange once the request (body included) is complete.
        self.on_request_complete: Callable[[FakeExchange], None] | None = None
        self.upstream_transport: StringTransport | None = None
        self._head: Any = None  # the ResponseHead, or a Failure
        self._head_waiters: list[tuple[Callable[[Any], Any], Callable[[Failure], Any]]] = []
        self._body: list[bytes] = []
        self._body_trailers: list[tuple[bytes, bytes]] | None = None
        self._ended = False  # the fake upstream sent the whole body
        self._failure: Failure | None = None  # the body was cut off

    # -- the test's side ----------------------------------------------------------------

    def connect(self) -> None:
        """The upstream connection is up: the request body starts to flow."""
        self.sent_anything = self.body_wanted = True
        if self.producer is not None:
            self.producer.resumeProducing()
        self._maybe_complete()

    def informational(self, status: int, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """Send a 1xx head (103 Early Hints, ...)."""
        if self.on_informational is not None:
            self.on_informational(ResponseHead(b"HTTP/1.1", status, b"", list(headers)))

    def respond(self, status: int, headers: Iterable[tuple[bytes, bytes]] = (), body: bytes = b"",
                trailers: Iterable[tuple[bytes, bytes]] | None = None, *, complete: bool = True) -> None:
        """Answer: the head now, the body (and trailers) once the caller asks for it.

        ``complete=False`` leaves the body open: add to it with ``send_body``, end it with
        ``end_body``, or cut it off with ``fail``.
        """
        self.sent_anything = True
        if body:
            self._body.append(body)
        self._body_trailers = list(trailers) if trailers is not None else None
        self._ended = complete
        self.response = ResponseHead(b"HTTP/1.1", status, b"", list(headers))
        self._report(self.response)
        self._flush()

    def send_body(self, data: bytes) -> None:
        """More of the response body."""
        self._body.append(data)
        self._flush()

    def end_body(self, trailers: Iterable[tuple[bytes, bytes]] | None = None) -> None:
        """The response body is complete."""
        if trailers is not None:
            self._body_trailers = list(trailers)
        self._ended = True
        self._flush()

    def fail(self, error: BaseException) -> None:
        """The upstream failed (``error`` is usually an ``UpstreamError``)."""
        self._end(Failure(error))

    # -- IExchange: the request ---------------------------------------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.body += data

    def finish_body(self, trailers: Any = None) -> None:
        self.body_done = True
        self.trailers = list(trailers) if trailers else None
        self._maybe_complete()

    # -- IExchange: the response --------------------------------------------------------

    def when_head(self, on_head: Callable[[Any], Any], on_failure: Callable[[Failure], Any]) -> None:
        head = self._head
        if head is None:
            self._head_waiters.append((on_head, on_failure))
        elif isinstance(head, Failure):
            on_failure(head)
        else:
            on_head(head)

    @property
    def head(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred(lambda _: self.abort())
        self.when_head(d.callback, d.errback)
        return d

    def deliver_body(self, consumer: Any) -> None:
        self.consumer = consumer
        self._flush()

    def switch_protocol(self, protocol: Any) -> None:
        """After a 101: ``protocol`` is connected to ``upstream_transport`` (a StringTransport)."""
        if self.response is None or self.response.status != 101:
            raise RuntimeError("switch_protocol is only valid after a 101 response")
        self.upstream_transport = StringTransport()
        protocol.makeConnection(self.upstream_transport)

    def abort(self, reason: BaseException | None = None) -> None:
        if self.finished or self._failure is not None:
            return
        self.aborted = reason if reason is not None else CancelledError("exchange aborted")
        self._end(Failure(self.aborted))

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._flush()

    def stopProducing(self) -> None:
        self.abort(CancelledError("response consumer stopped"))

    # -- internals ----------------------------------------------------------------------

    def _maybe_complete(self) -> None:
        complete, self.on_request_complete = self.on_request_complete, None
        if complete is not None:
            if self.body_done and self.body_wanted:
                complete(self)
            else:
                self.on_request_complete = complete

    def _report(self, result: Any) -> None:
        self._head = result
        waiters, self._head_waiters = self._head_waiters, []
        for on_head, on_failure in waiters:
            if isinstance(result, Failure):
                on_failure(result)
            else:
                on_head(result)

    def _flush(self) -> None:
        consumer = self.consumer
        if consumer is None or self.finished:
            return
        while self._body and not self.paused:
            consumer.body_data(self._body.pop(0))
        if self._failure is not None:
            self.finished = True
            self.consumer = None
            consumer.body_finished(self._failure)
        elif self._ended and not self._body:
            self.finished = True
            self.consumer = None
            if self._body_trailers:
                consumer.body_trailers(self._body_trailers)
            consumer.body_finished(None)

    def _end(self, failure: Failure) -> None:
        if self.finished or self._failure is not None:
            return
        if self.producer is not None:
            producer, self.producer = self.producer, None
            producer.stopProducing()
        if self._head is None:
            self.finished = True
            self._report(failure)
            return
        self._failure = failure  # the body is cut off: its consumer hears it after what came
        self._flush()


@implementer(IUpstreamTransport)
class FakeUpstreamTransport:
    """An ``IUpstreamTransport`` for proxy routes without sockets (treq's ``StubTreq`` idea).

    Every request becomes a ``FakeExchange`` in ``exchanges``.  With a ``responder`` (see
    ``respond_with``) each exchange is connected at once and answered by
    ``responder(exchange)`` when its request is complete; without one it waits for the test.
    """

    def __init__(self, responder: Callable[[FakeExchange], None] | None = None, *,
                 compression: bool = False, unsupported_reason: str | None = None) -> None:
        self.responder = responder
        self.compression = compression
        self.unsupported_reason = unsupported_reason
        self.exchanges: list[FakeExchange] = []
        self.idle_closed = 0  # how many times close_idle was called

    def request(self, address: Any, method: bytes, target: bytes, headers: Any, body_length: int | None = None,
                on_informational: Callable[[Any], None] | None = None, request: Any = None) -> FakeExchange:
        exchange = FakeExchange(self, address, method, target, list(headers), body_length,
                                on_informational, request)
        self.exchanges.append(exchange)
        if self.responder is not None:
            exchange.on_request_complete = self.responder
            exchange.connect()
        return exchange

    def close_idle(self) -> Deferred[None]:
        self.idle_closed += 1
        return succeed(None)


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
