"""One upstream request/response (``Exchange``) and what it carries: ``ResponseHead``.

The proxy loop sees an upstream request only through the exchange (``IExchange``): it writes
the request body into it (an ``IConsumer``), waits for the final head with ``when_head``
(plain callbacks: the only per-request Deferred is ``head``, made when asked for), then has
the body delivered to an ``IBodyConsumer`` or, after a ``101``, takes the raw connection.
As an ``IPushProducer`` it lets a slow client pause reading from the upstream.

This exchange frames the body for HTTP/1.1 (Content-Length or chunked) and writes it straight
to its connection's transport; an HTTP/2 exchange provides the same ``IExchange``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements

from txcaddy._twisted import send_sequence_now
from txcaddy.interfaces import IBodyConsumer, IExchange
from txcaddy.reverseproxy.errors import UpstreamProtocolError

if TYPE_CHECKING:
    from txcaddy.reverseproxy._pool import HostPool

RawHeaders = list[tuple[bytes, bytes]]

#: ``body_length`` value asking for a chunked request body.
CHUNKED = -1

_PENDING = object()  # no response head yet
_log = Logger(namespace="txcaddy.reverseproxy")


class ResponseHead:
    """Status line and header fields of an upstream response, as received."""

    __slots__ = ("version", "status", "reason", "headers")

    def __init__(self, version: bytes, status: int, reason: bytes, headers: RawHeaders) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers

    def get(self, name: bytes) -> bytes | None:
        """First value of a header (name lower-case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"ResponseHead({self.status} {self.reason!r}, {len(self.headers)} headers)"


@mypyc_attr(allow_interpreted_subclasses=True)  # the h2 transport's and tests' consumers
class ResponseBodyConsumer:
    """A do-nothing ``IBodyConsumer`` to subclass (``Exchange.deliver_body`` feeds one)."""

    def body_data(self, data: bytes) -> None:
        """A piece of the body, in order."""

    def body_trailers(self, trailers: RawHeaders) -> None:
        """Trailer fields of a chunked response (called only if there are any)."""

    def body_finished(self, reason: Failure | None) -> None:
        """The body ended: None when complete, else why it was cut off."""


classImplements(ResponseBodyConsumer, IBodyConsumer)


@mypyc_attr(allow_interpreted_subclasses=True)  # H2Exchange, FastCGIExchange, AlpnExchange
class HeadWaiters:
    """The final response head (or the failure) for whoever waits for it.

    Plain callbacks (no Deferred per proxied request); ``head`` is a Deferred view made on
    demand. Subclasses set ``_head_result = _PENDING``, ``_head_waiters = []`` and
    ``_head_deferred = None`` in their ``__init__`` and define ``_cancel(deferred)``.
    """

    _head_result: Any
    _head_waiters: list[tuple[Callable[[ResponseHead], Any], Callable[[Failure], Any]]]
    _head_deferred: Deferred[ResponseHead] | None

    def _cancel(self, _d: Deferred[ResponseHead]) -> None:
        raise NotImplementedError

    def when_head(self, on_head: Callable[[ResponseHead], Any], on_failure: Callable[[Failure], Any]) -> None:
        """Call ``on_head(head)`` with the final response head, or ``on_failure(failure)``."""
        result = self._head_result
        if result is _PENDING:
            self._head_waiters.append((on_head, on_failure))
        elif isinstance(result, Failure):
            on_failure(result)
        else:
            on_head(result)

    @property
    def head(self) -> Deferred[ResponseHead]:
        """The final response head as a Deferred (cancelling it aborts the exchange)."""
        d = self._head_deferred
        if d is None:
            d = self._head_deferred = Deferred(self._cancel)
            self.when_head(d.callback, d.errback)
        return d

    def _report_head(self, result: Any) -> None:
        self._head_result = result
        waiters, self._head_waiters = self._head_waiters, []
        failed = isinstance(result, Failure)
        for on_head, on_failure in waiters:
            if failed:
                on_failure(result)
            else:
                on_head(result)


@mypyc_attr(allow_interpreted_subclasses=True)  # H2Exchange, FastCGIExchange, AlpnExchange
class Exchange(HeadWaiters):
    """One request/response on an upstream connection.

    The caller writes the request body through it (it is an IConsumer), waits on ``head``,
    then calls ``deliver_body`` (or ``switch_protocol`` after a 101).  As an IPushProducer it
    lets the caller's client response pause reading from the upstream.
    """

    def __init__(
        self,
        pool: Any,  # the HTTP/1.1, HTTP/2 or FastCGI pool (all three make Exchanges)
        host: HostPool | None,
        head_bytes: bytes,
        body_length: int | None,
        method: bytes,
        on_informational: Callable[[ResponseHead], None] | None,
    ) -> None:
        self.pool = pool
        self.host = host
        self.address = host.address if host is not None else None
        # The final response head, or the failure, goes to the ``when_head`` callbacks
        # (plain calls: no Deferred per proxied request); ``head`` is a Deferred view.
        self._head_result: Any = _PENDING
        self._head_waiters: list[tuple[Callable[[ResponseHead], Any], Callable[[Failure], Any]]] = []
        self._head_deferred: Deferred[ResponseHead] | None = None
        self.response: ResponseHead | None = None
        self.is_head_request = method == b"HEAD"
        self.on_informational = on_informational
        self.body_length = body_length
        self.body_remaining = body_length if body_length and body_length > 0 else 0
        self.body_done = body_length is None or body_length == 0
        self.sent_anything = False
        #: May be re-sent on a fresh connection if a reused one turns out dead (set by
        #: ``ConnectionPool.request``).
        self.replayable = False
        #: The request itself asked to close the connection afterwards.
        self.close_after = False
        #: This exchange was already re-sent once after a stale connection.
        self.retried = False
        #: The ``AlpnExchange`` this one runs for (declared here: a compiled Exchange takes
        #: no attribute it does not declare).
        self.alpn_owner: Any = None
        self._head_bytes = head_bytes
        self._pending: list[bytes] = [head_bytes]
        self._held = False  # body withheld until 100 Continue (expect_continue_timeout)
        self._body_refused = False  # answered before 100 Continue: the body is never sent
        self._continue_timer: Any = None
        self._body_producer: Any = None
        self._body_streaming = False
        # The HTTP11Connection, or a FastCGIConnection (the same methods; not a subclass, so
        # not annotated as one: the compiled build would check).
        self._conn: Any = None
        self._consumer: Any = None
        #: Over: the response ended, or the exchange failed or was aborted.
        self.finished = False
        self._done_reason: Failure | None = None

    @property
    def body_wanted(self) -> bool:
        """The upstream connection is up and takes the request body now."""
        conn = self._conn
        return conn is not None and conn.exchange is self and not self._held

    # -- request body (IConsumer) -------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send request body bytes (framed according to ``body_length``)."""
        if self.body_done or not data:
            return
        if self.body_length == CHUNKED:
            chunk = [b"%x\r\n" % len(data), data, b"\r\n"]
        else:
            if len(data) > self.body_remaining:
                raise ValueError("request body longer than its Content-Length")
            self.body_remaining -= len(data)
            chunk = [data]
        self._send(chunk)
        if self.body_length != CHUNKED and self.body_remaining == 0:
            self._body_complete()

    def finish_body(self, trailers: RawHeaders | None = None) -> None:
        """End the request body; a short Content-Length body aborts the exchange."""
        if self.body_done:
            return
        if self.body_length == CHUNKED:
            tail = [b"0\r\n"]
            for name, value in trailers or ():
                tail.append(b"%s: %s\r\n" % (name, value))
            tail.append(b"\r\n")
            self._send(tail)
            self._body_complete()
        else:
            self.abort(UpstreamProtocolError("request body shorter than its Content-Length"))

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._body_producer = producer
        self._body_streaming = streaming
        conn = self._conn
        if conn is not None and conn.transport is not None and not self._held:
            conn.register_body_producer(producer, streaming)
        elif streaming:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        producer, self._body_producer = self._body_producer, None
        conn = self._conn
        if producer is not None and conn is not None and conn.transport is not None \
                and not self._held:
            conn.unregister_body_producer()

    def _send(self, chunks: list[bytes]) -> None:
        conn = self._conn
        if conn is None or self._held:
            self._pending.extend(chunks)
        elif conn.exchange is not self or self._body_refused or conn.transport is None:
            return  # the response ended early; the rest of the body is not wanted
        else:
            send_sequence_now(conn.transport, chunks)

    def _body_complete(self) -> None:
        self.body_done = True
        if self._body_producer is not None:
            self.unregisterProducer()
        conn = self._conn
        if conn is not None and not self._held:
            conn.request_written()

    def _attach(self, conn: Any) -> None:
        self._conn = conn
        self.sent_anything = True
        transport = conn.transport
        if self._held:
            head, self._pending = self._pending[0], self._pending[1:]
            transport.write(head)
            self._continue_timer = self.pool.reactor.callLater(
                self.pool.expect_continue_timeout, self._release_body)
            return
        pending, self._pending = self._pending, []
        send_sequence_now(transport, pending)
        if self._body_producer is not None:
            conn.register_body_producer(self._body_producer, self._body_streaming)
            if self._body_streaming:
                self._body_producer.resumeProducing()
        if self.body_done:
            conn.request_written()

    def _release_body(self) -> None:
        """100 Continue arrived (or the wait expired): the held body may go now."""
        self._cancel_continue_timer()
        if not self._held:
            return
        self._held = False
        conn = self._conn
        if conn is None or conn.exchange is not self:
            self._pending = []
            return
        pending, self._pending = self._pending, []
        if pending:
            conn.transport.writeSequence(pending)
        if self._body_producer is not None:
            conn.register_body_producer(self._body_producer, self._body_streaming)
            if self._body_streaming:
                self._body_producer.resumeProducing()
        if self.body_done:
            conn.request_written()

    def _drop_held_body(self) -> None:
        """A final response came before 100 Continue: the body is never sent.

        The upstream may still wait for it, so the connection is not reused (as Go).
        """
        self._cancel_continue_timer()
        self._held = False
        self._body_refused = True
        self._pending = []
        self.close_after = True

    def _cancel_continue_timer(self) -> None:
        timer, self._continue_timer = self._continue_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _rewind(self) -> None:
        """Forget the dead connection so the (bodyless) request can be sent on another."""
        self._conn = None
        self.retried = True
        self.sent_anything = False
        self._pending = [self._head_bytes]

    # -- response --------------------------------------------------------------------

    def deliver_body(self, consumer: Any) -> None:
        """Start feeding the response body to ``consumer`` (see ResponseBodyConsumer)."""
        if self.finished:
            consumer.body_finished(self._done_reason)
            return
        self._consumer = consumer
        conn = self._conn
        if conn is not None and conn.exchange is self:
            conn.resume("no-consumer")

    def copy_body_to(self, response: Any) -> None:
        """Have the rest of the body spliced to ``response``'s client by the kernel, bypassing
        the consumer, where it can be (``_kernelcopy``: only where no one needs to see the
        bytes); else the body keeps flowing to the consumer."""
        conn = self._conn
        if conn is not None and conn.exchange is self:
            conn.copy_body_to(response)

    def switch_protocol(self, protocol: Any) -> None:
        """After a 101: give the raw upstream connection to ``protocol``."""
        conn = self._conn
        if conn is None or self.response is None or self.response.status != 101:
            raise RuntimeError("switch_protocol is only valid after a 101 response")
        conn.hand_over(protocol)

    def pauseProducing(self) -> None:
        conn = self._conn
        if conn is not None and conn.exchange is self:
            conn.pause("consumer")

    def resumeProducing(self) -> None:
        conn = self._conn
        if conn is not None and conn.exchange is self:
            conn.resume("consumer")

    def stopProducing(self) -> None:
        self.abort(CancelledError("response consumer stopped"))

    def abort(self, reason: BaseException | None = None) -> None:
        """Give up on the exchange: the connection is dropped, never reused."""
        if self.finished:
            return
        exc = reason or CancelledError("exchange aborted")
        conn = self._conn
        if conn is not None:
            if conn.exchange is self:
                conn.fail(exc)
        else:
            self._forget()
            self._fail(Failure(exc))

    def _cancel(self, _d: Deferred) -> None:
        conn = self._conn
        if conn is not None:
            if conn.exchange is self:
                conn.fail(CancelledError("request cancelled"))
        else:
            self._forget()
            self._fail(Failure(CancelledError("request cancelled")))

    def _forget(self) -> None:
        if self.host is not None:
            self.host.forget_waiter(self)

    def _fail(self, failure: Failure) -> None:
        """Report a failure wherever the caller is listening."""
        if self.finished:
            return
        self.finished = True
        self._cancel_continue_timer()
        if self._body_producer is not None:
            producer, self._body_producer = self._body_producer, None
            try:
                producer.stopProducing()
            except Exception:  # noqa: BLE001 - the failure is reported below regardless
                _log.failure("stopping the request body's producer after {error}",
                             error=failure.getErrorMessage())
        self._done_reason = failure
        if self._head_result is _PENDING:
            self._report_head(failure)
        elif self._consumer is not None:
            consumer, self._consumer = self._consumer, None  # no cycle left behind
            consumer.body_finished(failure)

    def _succeed(self) -> None:
        if not self.finished:
            self.finished = True
            if self._consumer is not None:
                # Dropped first: the consumer refers back to the exchange, and a cycle would
                # leave both (and the request they belong to) to the garbage collector.
                consumer, self._consumer = self._consumer, None
                consumer.body_finished(None)


classImplements(Exchange, IExchange, IPushProducer)

