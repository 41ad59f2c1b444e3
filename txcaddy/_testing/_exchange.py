"""The fake upstream transport: ``FakeUpstreamTransport`` and its ``FakeExchange``.

Public through ``txcaddy.testing``; here so that the in-memory clients (``_client``) and the
fake network (``_upstreams``) can build on it without importing the public module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy.interfaces import IExchange, IUpstreamTransport
from txcaddy.reverseproxy.transport import ResponseHead

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

    def __init__(self, transport: Any, address: Any, method: bytes, target: bytes,
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
