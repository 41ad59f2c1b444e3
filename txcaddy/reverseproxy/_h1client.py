"""HTTP/1.1 upstream client and keep-alive pool for reverse_proxy.

Our own Protocol instead of Agent: Agent drops 1xx (incl. 101), hides trailers, has no
response-header timeout and costs ~4x the CPU per request.  The only Deferred per request is
the one that fires with the response head; everything else is plain method calls.

The pool behaves like Go's ``http.Transport`` as Caddy configures it: which failures count as
dial errors, when a connection is reused, and the one transparent re-send of a request that
found its idle connection already closed by the upstream.
"""

from __future__ import annotations

import socket
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IPushProducer, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._twisted import (
    connection_under,
    no_delay,
    quick_ack,
    send_sequence_now,
    unwrap_endpoint_protocol,
)

RawHeaders = list[tuple[bytes, bytes]]

_PENDING = object()  # no response head yet
SURPLUS_LINGER = 1.0  # see _HostPool._trim_surplus
_SPACE_BYTES = frozenset(b" \t\r\n\x0b\x0c")  # what bytes.strip() removes
# Lengths of the response fields the parser looks at (content-length, transfer-encoding,
# connection): other names are not lower-cased at all.
_NOTICED_LENGTHS = frozenset({14, 17, 10})

#: ``body_length`` value asking for a chunked request body.
CHUNKED = -1

_NO_BODY_STATUSES = frozenset((204, 304))
_FRAMING_HEADERS = frozenset((b"content-length", b"transfer-encoding"))
# Request header names the client looks at while writing the head (lower-case).
# Field names as written -> their lower-case form if the pool looks at them, else b"".
_noticed_names: dict[bytes, bytes] = {}
_NOTICED_HEADERS = _FRAMING_HEADERS | {
    b"connection", b"upgrade", b"expect", b"idempotency-key", b"x-idempotency-key"}
# Go's Request.isReplayable: bodyless requests with these methods may be re-sent.
_REPLAYABLE_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
# Twisted's socket read size; a configured read buffer only ever raises it (see from_config).
_DEFAULT_READ_SIZE = 65536


class UpstreamError(Exception):
    """Base class of upstream failures; the handler maps them to a status."""

    status = 502


class DialError(UpstreamError):
    """Connecting failed (refused, unresolvable, dial timeout): nothing reached the upstream.

    The only error Caddy retries for every method.
    """

    status = 502


class TLSHandshakeError(UpstreamError):
    """The TLS handshake with the upstream failed (e.g. an untrusted certificate).

    Nothing of the request was sent, but, as in Caddy (Go does the handshake after its dial
    function returned), this is *not* a dial error: only GET or ``lb_retry_match`` retries it.
    """

    status = 502


class TLSHandshakeTimeout(TLSHandshakeError):
    """``tls.handshake_timeout`` (or ``read_timeout`` during the handshake) expired."""

    status = 504


class ResponseHeaderTimeout(UpstreamError):
    """The upstream did not send a response head in time."""

    status = 504


class UpstreamReadTimeout(UpstreamError):
    """``read_timeout``: the upstream sent nothing for that long while we were reading.

    502, not 504: Go reports it as a broken connection, which Caddy does not see as a timeout.
    """

    status = 502


class UpstreamWriteTimeout(UpstreamError):
    """``write_timeout``: the upstream took nothing of the request body for that long."""

    status = 502


class UpstreamConnectionLost(UpstreamError):
    """The connection ended before the response was complete."""

    status = 502


class UpstreamProtocolError(UpstreamError):
    """The upstream sent something that is not valid HTTP/1.x."""

    status = 502


class UnsupportedUpstreamProtocol(UpstreamError):
    """The transport is configured for a protocol txcaddy cannot speak yet (h2c)."""

    status = 502


class UpstreamAddress:
    """Where to dial: ``tcp`` host:port or a ``unix`` socket path; also the pool key."""

    __slots__ = ("network", "host", "port", "path", "key")

    def __init__(self, network: str, host: str = "", port: int = 0, path: str = "") -> None:
        self.network = network
        self.host = host
        self.port = port
        self.path = path
        self.key = (network, host, port, path)

    @classmethod
    def parse(cls, dial: str) -> UpstreamAddress:
        """Parse Caddy's dial strings: ``host:port``, ``[v6]:port``, ``unix//path``."""
        if dial.startswith("unix/"):
            return cls("unix", path=dial[len("unix/"):])
        host, sep, port = dial.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"invalid upstream dial address {dial!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return cls("tcp", host=host, port=int(port))

    def endpoint(self, reactor: Any, timeout: float | None = None,
                 attempt_delay: float | None = None) -> Any:
        """A client endpoint for this address (IP literals skip name resolution).

        ``attempt_delay`` is the Happy Eyeballs delay between the addresses of a hostname.
        """
        kw = {} if timeout is None else {"timeout": timeout}
        if self.network == "unix":
            return endpoints.UNIXClientEndpoint(reactor, self.path, **kw)
        if _is_ipv4(self.host):
            return endpoints.TCP4ClientEndpoint(reactor, self.host, self.port, **kw)
        if ":" in self.host:
            return endpoints.TCP6ClientEndpoint(reactor, self.host, self.port, **kw)
        return endpoints.HostnameEndpoint(reactor, self.host, self.port,
                                          attemptDelay=attempt_delay, **kw)

    def __repr__(self) -> str:
        if self.network == "unix":
            return f"UpstreamAddress(unix/{self.path})"
        return f"UpstreamAddress({self.host}:{self.port})"

    def __str__(self) -> str:
        if self.network == "unix":
            return f"unix/{self.path}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _is_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


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


class ResponseBodyConsumer:
    """What ``Exchange.deliver_body`` feeds; subclass or duck-type it."""

    def body_data(self, data: bytes) -> None:
        """A piece of the body, in order."""

    def body_trailers(self, trailers: RawHeaders) -> None:
        """Trailer fields of a chunked response (called only if there are any)."""

    def body_finished(self, reason: Failure | None) -> None:
        """The body ended: None when complete, else why it was cut off."""


@implementer(IPushProducer)
class Exchange:
    """One request/response on an upstream connection.

    The caller writes the request body through it (it is an IConsumer), waits on ``head``,
    then calls ``deliver_body`` (or ``switch_protocol`` after a 101).  As an IPushProducer it
    lets the caller's client response pause reading from the upstream.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        host: _HostPool | None,
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
        #: May be re-sent on a fresh connection if a reused one turns out dead (set by the pool).
        self.replayable = False
        #: The request itself asked to close the connection afterwards.
        self.close_after = False
        #: This exchange was already re-sent once after a stale connection.
        self.retried = False
        self._head_bytes = head_bytes
        self._pending: list[bytes] = [head_bytes]
        self._held = False  # body withheld until 100 Continue (expect_continue_timeout)
        self._body_refused = False  # answered before 100 Continue: the body is never sent
        self._continue_timer: Any = None
        self._body_producer: Any = None
        self._body_streaming = False
        self._conn: _ClientProtocol | None = None
        self._consumer: Any = None
        self._finished = False
        self._done_reason: Failure | None = None

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

    def _attach(self, conn: _ClientProtocol) -> None:
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
        if self._finished:
            consumer.body_finished(self._done_reason)
            return
        self._consumer = consumer
        conn = self._conn
        if conn is not None and conn.exchange is self:
            conn.resume("no-consumer")

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
        if self._finished:
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
        if self._finished:
            return
        self._finished = True
        self._cancel_continue_timer()
        if self._body_producer is not None:
            producer, self._body_producer = self._body_producer, None
            try:
                producer.stopProducing()
            except Exception:
                pass
        self._done_reason = failure
        if self._head_result is _PENDING:
            self._report_head(failure)
        elif self._consumer is not None:
            consumer, self._consumer = self._consumer, None  # no cycle left behind
            consumer.body_finished(failure)

    def _succeed(self) -> None:
        if not self._finished:
            self._finished = True
            if self._consumer is not None:
                # Dropped first: the consumer refers back to the exchange, and a cycle would
                # leave both (and the request they belong to) to the garbage collector.
                consumer, self._consumer = self._consumer, None
                consumer.body_finished(None)


@implementer(IPushProducer)
class _WriteDeadline:
    """Wraps a request body producer to time how long the upstream refuses more body.

    The transport pauses the producer when its send buffer is full; ``write_timeout`` runs
    while it stays paused (Go sets a deadline on every blocking write).
    """

    __slots__ = ("conn", "producer")

    def __init__(self, conn: _ClientProtocol, producer: Any) -> None:
        self.conn = conn
        self.producer = producer

    def pauseProducing(self) -> None:
        self.conn.start_write_timer()
        self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.conn.stop_write_timer()
        self.producer.resumeProducing()

    def stopProducing(self) -> None:
        self.conn.stop_write_timer()
        self.producer.stopProducing()


# Parser states.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _EOF, _IDLE, _SWITCHED = range(9)
# Reading a response body: more of it is expected.
_UNFINISHED = frozenset((_LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _EOF))
_QUICK_ACK_REMAINING = 65536  # see dataReceived


@implementer(IHandshakeListener)
class _ClientProtocol(Protocol):
    """One upstream connection: writes request heads, parses responses."""

    def __init__(self, pool: ConnectionPool, host: _HostPool) -> None:
        self.pool = pool
        self.host = host
        self.exchange: Exchange | None = None
        self.state = _IDLE
        self.buffer = b""
        self.remaining = 0
        self.trailers: RawHeaders = []
        self.keep_alive = True
        self.written = False
        self.pauses: set[str] = set()
        self.timer: Any = None
        self.idle_timer: Any = None
        self.idle_since: float | None = None
        self.read_timer: Any = None
        self.write_timer: Any = None
        self.switched_to: Any = None
        self.connected = False
        self.requests = 0  # exchanges started here; more than one means a reused connection
        self.responded = False  # some of the current response has arrived
        self.dial: _Dial | None = None  # waiting for the TLS handshake
        self.handshake_ok = False
        self.lost_reason: Failure | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        no_delay(self.transport)
        pool = self.pool
        if pool.tcp_keepalive or pool.read_size:
            try:
                _tune_socket(self.transport, pool.tcp_keepalive, pool.read_size)
            except Exception:  # best effort: an exotic transport keeps its defaults
                pass
        self._arm_read_timer()

    def handshakeCompleted(self) -> None:
        self.handshake_ok = True
        dial, self.dial = self.dial, None
        if dial is not None:
            dial.handshake_done(self)

    def start(self, exchange: Exchange) -> None:
        """Run ``exchange`` on this (fresh or idle) connection."""
        # Busy again; a pending idle timer notices and lets itself lapse (no cancel and
        # re-arm per request: that cost more than the rest of the pool's work).
        self.idle_since = None
        self.exchange = exchange
        self.state = _HEAD
        self.buffer = b""
        self.trailers = []
        self.keep_alive = True
        self.written = False
        self.responded = False
        self.requests += 1
        exchange._attach(self)

    def request_written(self) -> None:
        """The whole request is on the wire: start the response-header timer."""
        self.written = True
        timeout = self.pool.response_header_timeout
        if timeout and self.state == _HEAD and self.timer is None:
            self.timer = self.pool.reactor.callLater(timeout, self._header_timeout)

    def _header_timeout(self) -> None:
        self.timer = None
        self.fail(ResponseHeaderTimeout("timeout awaiting response headers"))

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None

    # -- read / write deadlines -----------------------------------------------------------

    def _read_timed_out(self) -> None:
        self.read_timer = None
        if self.dial is not None:
            self.dial.handshake_timed_out(self)
        elif self.exchange is not None:
            self.fail(UpstreamReadTimeout(
                f"read from {self.host.address}: i/o timeout after {self.pool.read_timeout}s"))
        elif self.transport is not None:
            self.transport.abortConnection()  # idle: Go's pending read fails and drops it

    def _arm_read_timer(self) -> None:
        """Start the ``read_timeout`` deadline unless it runs already (never on a tunnel)."""
        timeout = self.pool.read_timeout
        if timeout and self.read_timer is None and self.connected and self.state != _SWITCHED:
            self.read_timer = self.pool.reactor.callLater(timeout, self._read_timed_out)

    def _stop_read_timer(self) -> None:
        timer, self.read_timer = self.read_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def start_write_timer(self) -> None:
        if self.write_timer is None and self.connected:
            self.write_timer = self.pool.reactor.callLater(
                self.pool.write_timeout, self._write_timed_out)

    def stop_write_timer(self) -> None:
        timer, self.write_timer = self.write_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _write_timed_out(self) -> None:
        self.write_timer = None
        self.fail(UpstreamWriteTimeout(
            f"write to {self.host.address}: i/o timeout after {self.pool.write_timeout}s"))

    def register_body_producer(self, producer: Any, streaming: bool) -> None:
        if self.pool.write_timeout and streaming:
            producer = _WriteDeadline(self, producer)
        self.transport.registerProducer(producer, streaming)

    def unregister_body_producer(self) -> None:
        self.stop_write_timer()
        self.transport.unregisterProducer()

    def fail(self, exc: BaseException) -> None:
        """Abort the current exchange with ``exc`` and drop the connection."""
        if self.state == _SWITCHED:
            if self.transport is not None:
                self.transport.abortConnection()
            return
        exchange, self.exchange = self.exchange, None
        self.keep_alive = False
        self._cancel_timer()
        self._stop_read_timer()
        self.stop_write_timer()
        self.state = _IDLE
        if self.transport is not None:
            self.transport.abortConnection()
        if exchange is not None:
            exchange._fail(Failure(exc))
            self.host.connection_done(self, reusable=False)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:
        self.connected = False
        self.lost_reason = reason
        self._cancel_timer()
        self._stop_read_timer()
        self.stop_write_timer()
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()
        self.idle_timer = None
        dial, self.dial = self.dial, None
        if dial is not None:
            dial.handshake_failed(self, reason)
            return
        if self.state == _SWITCHED:
            if self.switched_to is not None:
                self.switched_to.connectionLost(reason)
            return
        if self.buffer and self.exchange is not None and self.state not in (_HEAD, _IDLE):
            # Bytes held back by a pause arrived before the close: deliver them first.
            data, self.buffer = self.buffer, b""
            self.pauses.clear()
            try:
                self._parse(data)
            except UpstreamProtocolError:
                pass
        exchange, self.exchange = self.exchange, None
        if self.state == _EOF and exchange is not None and reason.check(ConnectionDone):
            self.state = _IDLE
            exchange._succeed()
            self.host.connection_done(self, reusable=False)
            return
        if (exchange is not None and self.state == _HEAD and not self.responded
                and self.requests > 1 and exchange.replayable and not exchange.retried
                and not exchange._finished):
            # The upstream had closed this idle connection before our request reached it
            # (Go's errServerClosedIdle): send the request again on a new connection.
            self.state = _IDLE
            self.host.retry_on_fresh_connection(exchange)
            return
        self.state = _IDLE
        if exchange is not None:
            exchange._fail(Failure(UpstreamConnectionLost(
                f"upstream connection lost: {reason.getErrorMessage()}")))
            self.host.connection_done(self, reusable=False)
        else:
            self.host.idle_lost(self)

    # -- flow control ---------------------------------------------------------------------

    def pause(self, why: str) -> None:
        if not self.pauses and self.transport is not None:
            self.transport.pauseProducing()
            if self.read_timer is not None:
                self._stop_read_timer()  # Go reads only when asked to; no deadline meanwhile
        self.pauses.add(why)

    def resume(self, why: str) -> None:
        if why in self.pauses:
            self.pauses.discard(why)
            if not self.pauses and self.transport is not None:
                self.transport.resumeProducing()
                self._arm_read_timer()
                if self.buffer and self.state not in (_HEAD, _IDLE, _SWITCHED):
                    data, self.buffer = self.buffer, b""
                    self.dataReceived(data)

    def hand_over(self, protocol: Any) -> None:
        self.switched_to = protocol
        protocol.makeConnection(self.transport)
        data, self.buffer = self.buffer, b""
        self.resume("no-consumer")
        if data:
            protocol.dataReceived(data)

    # -- parsing ------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.read_timer is not None:
            self.read_timer.reset(self.pool.read_timeout)
        state = self.state
        if state == _SWITCHED:
            if self.switched_to is None:
                self.buffer += data
            else:
                self.switched_to.dataReceived(data)
            return
        if state == _IDLE:
            # Bytes nobody asked for: the connection is no longer in a known state.
            self.keep_alive = False
            if self.transport is not None:
                self.transport.loseConnection()
            return
        if self.pauses:
            self.buffer += data
            return
        try:
            self._parse(data)
        except UpstreamProtocolError as exc:
            self.fail(exc)
            return
        state = self.state
        if state in _UNFINISHED and self.exchange is not None and (
                state != _LENGTH or self.remaining <= _QUICK_ACK_REMAINING):
            # Near the end of a response the upstream may wait for this ACK to send the
            # rest (a long body keeps ACKs flowing anyway: an ACK per read cost 1m ~8 %).
            quick_ack(self.transport)

    def _deliver_counted(self, consumer: Any, data: bytes) -> bytes:
        """Pass on at most ``self.remaining`` body bytes; return what follows them."""
        if len(data) <= self.remaining:
            self.remaining -= len(data)
            consumer.body_data(data)
            return b""
        consumer.body_data(data[: self.remaining])
        rest = data[self.remaining :]
        self.remaining = 0
        return rest

    def _parse(self, data: bytes) -> None:
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        while data:
            state = self.state
            exchange = self.exchange
            if exchange is None:
                return
            if state == _HEAD:
                self.responded = True
                data = self._parse_head(data)
                if data is None:
                    return
                continue
            if self.pauses:
                self.buffer = data
                return
            consumer = exchange._consumer
            if state == _LENGTH:
                data = self._deliver_counted(consumer, data)
                if self.remaining == 0:
                    if data:
                        self.keep_alive = False  # bytes beyond the body: not reusable
                    self._response_done()
                    return
            elif state == _EOF:
                consumer.body_data(data)
                return
            elif state == _CHUNK_DATA:
                data = self._deliver_counted(consumer, data)
                if self.remaining == 0:
                    self.state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(data) < 2:
                    if data != b"\r"[: len(data)] and data != b"\n":
                        raise UpstreamProtocolError("malformed chunk terminator")
                    if data == b"\n":
                        data = b""
                        self.state = _CHUNK_SIZE
                        continue
                    self.buffer = data
                    return
                if data[:2] == b"\r\n":
                    data = data[2:]
                elif data[:1] == b"\n":
                    data = data[1:]
                else:
                    raise UpstreamProtocolError("malformed chunk terminator")
                self.state = _CHUNK_SIZE
            elif state == _CHUNK_SIZE:
                eol = data.find(b"\n")
                if eol < 0:
                    if len(data) > 4096:
                        raise UpstreamProtocolError("chunk size line too long")
                    self.buffer = data
                    return
                line = data[:eol].rstrip(b"\r").split(b";", 1)[0].strip()
                data = data[eol + 1:]
                try:
                    if not line or line.startswith((b"-", b"+", b"0x", b"0X")):
                        raise ValueError
                    size = int(line, 16)
                except ValueError:
                    raise UpstreamProtocolError(f"invalid chunk size {line[:20]!r}") from None
                if size == 0:
                    self.state = _TRAILERS
                else:
                    self.remaining = size
                    self.state = _CHUNK_DATA
            elif state == _TRAILERS:
                eol = data.find(b"\n")
                if eol < 0:
                    if len(data) > self.pool.max_response_header_size:
                        raise UpstreamProtocolError("trailers too large")
                    self.buffer = data
                    return
                line = data[:eol].rstrip(b"\r")
                data = data[eol + 1:]
                if line:
                    name, sep, value = line.partition(b":")
                    if not sep or not name or name != name.strip():
                        raise UpstreamProtocolError("malformed trailer field")
                    self.trailers.append((name, value.strip(b" \t")))
                    continue
                if self.trailers:
                    consumer.body_trailers(self.trailers)
                if data:
                    self.keep_alive = False
                self._response_done()
                return
            else:
                return

    def _parse_head(self, data: bytes) -> bytes | None:
        """Parse one complete head (final or 1xx) from ``data``; None if more is needed."""
        end = data.find(b"\r\n\r\n")
        skip = 4
        bare = data.find(b"\n\n", 0, end if end >= 0 else len(data))
        if bare >= 0:
            end, skip = bare, 2  # a server using bare LF line ends
        limit = self.pool.max_response_header_size
        if end < 0 or end + skip > limit:
            if len(data) > limit or end >= 0:
                raise UpstreamProtocolError(
                    f"server response headers exceeded {limit} bytes; aborted")
            self.buffer = data
            return None
        raw = data[:end]
        rest = data[end + skip:]
        if skip == 4 and raw.count(b"\n") == raw.count(b"\r\n"):
            lines = raw.split(b"\r\n")  # the usual CRLF head: no per-line stripping
        else:
            lines = [line.rstrip(b"\r") for line in raw.split(b"\n")]
        status_line = lines[0]
        version, _, tail = status_line.partition(b" ")
        code, _, reason = tail.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise UpstreamProtocolError(f"malformed status line {status_line[:60]!r}")
        status = int(code)
        headers: RawHeaders = []
        content_length: bytes | None = None
        transfer_encoding: bytes | None = None
        connection_close = version == b"HTTP/1.0"
        space = _SPACE_BYTES
        for index in range(1, len(lines)):
            line = lines[index]
            name, sep, value = line.partition(b":")
            if not sep or not name or name[0] in space or name[-1] in space:
                raise UpstreamProtocolError(f"malformed header line {line[:60]!r}")
            value = value.strip(b" \t")
            headers.append((name, value))
            if len(name) not in _NOTICED_LENGTHS:
                continue
            lower = name.lower()
            if lower == b"content-length":
                if content_length is not None and content_length != value:
                    raise UpstreamProtocolError("conflicting Content-Length headers")
                content_length = value
            elif lower == b"transfer-encoding":
                transfer_encoding = (
                    value if transfer_encoding is None else transfer_encoding + b"," + value)
            elif lower == b"connection":
                tokens = {t.strip().lower() for t in value.split(b",")}
                if b"close" in tokens:
                    connection_close = True
                elif b"keep-alive" in tokens and version == b"HTTP/1.0":
                    connection_close = False
        head = ResponseHead(version, status, reason, headers)
        exchange = self.exchange
        if 100 <= status < 200 and status != 101:
            if status == 100 and exchange._held:
                exchange._release_body()
            if exchange.on_informational is not None:
                exchange.on_informational(head)
            return rest
        self._cancel_timer()
        if exchange._held:
            exchange._drop_held_body()
        exchange.response = head
        if connection_close:
            self.keep_alive = False
        if status == 101:
            self.state = _SWITCHED
            self._stop_read_timer()  # the tunnel's two ends pace each other; no deadline
            self.keep_alive = False
            self.buffer = rest
            self.host.connection_detached(self)
            self.pause("no-consumer")
            exchange._report_head(head)
            return None
        if exchange.is_head_request or status in _NO_BODY_STATUSES:
            body = "none"
        elif transfer_encoding is not None:
            if content_length is not None:
                self.keep_alive = False  # ambiguous framing: never reuse
            last = transfer_encoding.split(b",")[-1].strip().lower()
            body = "chunked" if last == b"chunked" else "eof"
        elif content_length is not None:
            if not content_length.isdigit():
                raise UpstreamProtocolError("invalid Content-Length")
            self.remaining = int(content_length)
            body = "length" if self.remaining else "none"
        else:
            body = "eof"
        if body == "none":
            if rest:
                self.keep_alive = False
            exchange._report_head(head)
            if self.exchange is exchange:
                self._response_done()
            return None
        if body == "eof":
            self.keep_alive = False
            self.state = _EOF
        elif body == "chunked":
            self.state = _CHUNK_SIZE
        else:
            self.state = _LENGTH
        exchange._report_head(head)
        if self.exchange is not exchange:
            return None  # the caller aborted in its callback
        if exchange._consumer is None:
            self.pause("no-consumer")
        if self.pauses:
            self.buffer = rest
            return None
        return rest

    def _response_done(self) -> None:
        """The response ended cleanly: release the connection, then tell the consumer."""
        exchange = self.exchange
        self.state = _IDLE
        self.remaining = 0
        if exchange is None:
            return
        self._release()
        exchange._succeed()

    def _release(self) -> None:
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        # An early answer (request body unfinished) leaves the connection unusable.
        reusable = (self.keep_alive and exchange.body_done and self.connected
                    and self.pool.keep_alive and not exchange.close_after)
        if exchange._body_producer is not None:
            exchange._body_producer = None
            self.unregister_body_producer()
        if self.pauses:
            self.pauses.clear()
            self.transport.resumeProducing()
            self._arm_read_timer()
        if not reusable and self.transport is not None:
            self.transport.loseConnection()
        self.host.connection_done(self, reusable=reusable)


def _tune_socket(transport: Any, keepalive: float | None, read_size: int | None) -> None:
    """TCP keep-alive probes and the socket read size, on the TCP connection under TLS too."""
    raw = connection_under(transport)  # TLS: tune the TCP connection underneath
    if read_size and hasattr(raw, "bufferSize"):
        raw.bufferSize = read_size
    if keepalive and ITCPTransport.providedBy(raw):
        raw.setTcpKeepAlive(1)
        sock = raw.getHandle()
        seconds = max(1, int(keepalive))
        for option in ("TCP_KEEPIDLE", "TCP_KEEPINTVL"):
            if hasattr(socket, option):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), seconds)
                except OSError:
                    pass


class _Dial:
    """One new connection for ``exchange``: connect within ``dial_timeout``, then TLS."""

    __slots__ = ("host", "exchange", "timer", "timed_out", "handshake_timer",
                 "handshake_expired")

    def __init__(self, host: _HostPool, exchange: Exchange) -> None:
        self.host = host
        self.exchange = exchange
        self.timer: Any = None
        self.timed_out = False
        self.handshake_timer: Any = None
        self.handshake_expired = False

    def start(self) -> None:
        host = self.host
        pool = host.pool
        endpoint = pool.endpoint_factory(host.address)
        if host.tls is not None:
            endpoint = endpoints.wrapClientTLS(host.tls, endpoint)
        factory = Factory.forProtocol(lambda: _ClientProtocol(pool, host))
        factory.noisy = False  # no "Starting factory" log line per upstream connection
        dialing = endpoint.connect(factory)
        if pool.dial_timeout is not None:
            def on_timeout() -> None:
                self.timer = None
                self.timed_out = True
                dialing.cancel()

            self.timer = pool.reactor.callLater(max(0.0, pool.dial_timeout), on_timeout)
        dialing.addCallbacks(self._connected, self._failed)

    def _cancel_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _connected(self, conn: _ClientProtocol) -> None:
        self._cancel_timer()
        if conn.connected:
            unwrap_endpoint_protocol(conn)
        if self.host.tls is None or conn.handshake_ok:
            self._ready(conn)
        elif not conn.connected:
            self.handshake_failed(conn, conn.lost_reason or Failure(ConnectionDone()))
        else:
            conn.dial = self
            timeout = self.host.pool.tls_handshake_timeout
            if timeout:
                self.handshake_timer = self.host.pool.reactor.callLater(
                    timeout, self.handshake_timed_out, conn)

    def _ready(self, conn: _ClientProtocol) -> None:
        if self.exchange._finished:
            # The caller gave up while we were dialing: keep the connection for others.
            self.host.connection_done(conn, reusable=True)
            return
        conn.start(self.exchange)

    def _failed(self, reason: Failure) -> None:
        self._cancel_timer()
        host = self.host
        if self.timed_out:
            msg = f"dial {host.address}: i/o timeout after {host.pool.dial_timeout}s"
        else:
            msg = f"dial {host.address}: {reason.getErrorMessage()}"
        host.dial_failed(self.exchange, DialError(msg))

    def _cancel_handshake_timer(self) -> None:
        timer, self.handshake_timer = self.handshake_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def handshake_done(self, conn: _ClientProtocol) -> None:
        self._cancel_handshake_timer()
        self._ready(conn)

    def handshake_timed_out(self, conn: _ClientProtocol) -> None:
        self.handshake_timer = None
        self.handshake_expired = True
        conn.transport.abortConnection()

    def handshake_failed(self, conn: _ClientProtocol, reason: Failure) -> None:
        self._cancel_handshake_timer()
        host = self.host
        error: TLSHandshakeError
        if self.handshake_expired:
            error = TLSHandshakeTimeout(f"TLS handshake with {host.address}: timeout")
        else:
            error = TLSHandshakeError(
                f"TLS handshake with {host.address}: {_tls_failure_text(reason)}")
        host.dial_failed(self.exchange, error)


def _tls_failure_text(reason: Failure) -> str:
    """OpenSSL's error list as one readable line."""
    value = reason.value
    args = getattr(value, "args", ())
    if args and isinstance(args[0], list) and args[0] and isinstance(args[0][0], tuple):
        return "; ".join(str(entry[-1]) for entry in args[0] if entry and entry[-1])
    return reason.getErrorMessage()


class _HostPool:
    """Connections to one upstream address (and TLS name): idle stack, open count, waiters."""

    def __init__(self, pool: ConnectionPool, key: Any, address: UpstreamAddress,
                 tls: Any = None) -> None:
        self.pool = pool
        self.key = key
        self.address = address
        self.tls = tls  # the TLS connection creator, or None for plain HTTP
        self.idle: list[_ClientProtocol] = []  # oldest first; reuse takes the newest
        self.trim_call: Any = None  # closes idle connections beyond max_idle_per_host
        self.open = 0
        self.waiters: deque[Exchange] = deque()

    def submit(self, exchange: Exchange) -> None:
        while self.idle:
            conn = self.idle.pop()
            self.pool._idle_taken(conn)
            if conn.connected:
                conn.start(exchange)
                return
            self.open -= 1
        limit = self.pool.max_conns_per_host
        if limit > 0 and self.open >= limit:
            self.waiters.append(exchange)
            return
        self._dial(exchange)

    def _dial(self, exchange: Exchange) -> None:
        self.open += 1
        _Dial(self, exchange).start()

    def dial_failed(self, exchange: Exchange, error: UpstreamError) -> None:
        exchange._fail(Failure(error))
        self._slot_freed()

    def retry_on_fresh_connection(self, exchange: Exchange) -> None:
        """Re-send ``exchange`` after its reused connection died; it takes that one's slot."""
        exchange._rewind()
        _Dial(self, exchange).start()

    def forget_waiter(self, exchange: Exchange) -> None:
        if exchange in self.waiters:
            self.waiters.remove(exchange)

    def connection_done(self, conn: _ClientProtocol, reusable: bool) -> None:
        """An exchange ended on ``conn``; reuse or retire it."""
        if reusable and conn.connected:
            if self.waiters:
                conn.start(self.waiters.popleft())
                return
            pool = self.pool
            max_idle = pool.max_idle_per_host
            if max_idle is None or len(self.idle) < max_idle or (max_idle > 0 and pool.surplus_linger > 0):
                self.idle.append(conn)
                conn.idle_since = pool.reactor.seconds()
                if pool.idle_timeout:
                    if conn.idle_timer is None:
                        conn.idle_timer = pool.reactor.callLater(
                            pool.idle_timeout, self._idle_check, conn)
                pool._idle_added(conn)
                if max_idle is not None and len(self.idle) > max_idle and self.trim_call is None:
                    self.trim_call = pool.reactor.callLater(pool.surplus_linger, self._trim_surplus)
                return
            conn.transport.loseConnection()
        self._slot_freed()

    def _trim_surplus(self) -> None:
        """Close idle connections beyond ``max_idle_per_host`` that stayed idle ``surplus_linger``.

        A connection that comes back while the host already keeps its share of idle ones is
        not closed at once: under a steady load more requests are in flight at the peak of
        each burst than are idle between bursts, and closing the surplus at once meant
        dialing it again a few milliseconds later (about one request in ten on the
        benchmark's 64 clients). Reuse takes the newest idle connection, so the oldest are
        the surplus; they are closed once nothing needed them for ``surplus_linger``.
        """
        self.trim_call = None
        pool = self.pool
        max_idle = pool.max_idle_per_host or 0
        deadline = pool.reactor.seconds() - pool.surplus_linger
        while len(self.idle) > max_idle:
            oldest = self.idle[0]
            since = oldest.idle_since
            if since is not None and since > deadline:
                # Still used by the bursts: look again when the oldest has idled long enough.
                self.trim_call = pool.reactor.callLater(since - deadline, self._trim_surplus)
                return
            self._retire(oldest)

    def cancel_trim(self) -> None:
        call, self.trim_call = self.trim_call, None
        if call is not None and call.active():
            call.cancel()

    def connection_detached(self, conn: _ClientProtocol) -> None:
        """The connection left HTTP (101): it no longer counts against the host."""
        self._slot_freed()

    def _slot_freed(self) -> None:
        """One connection less: let a waiter dial; a host with nothing left is forgotten."""
        self.open -= 1
        limit = self.pool.max_conns_per_host
        while self.waiters and (limit <= 0 or self.open < limit):
            self._dial(self.waiters.popleft())
        if self.open <= 0 and not self.waiters:
            self.pool._forget_host(self)

    def _idle_check(self, conn: _ClientProtocol) -> None:
        """The idle timer fired: retire ``conn`` if it has been idle for the whole timeout."""
        conn.idle_timer = None
        since = conn.idle_since
        if since is None or conn not in self.idle:
            return
        remaining = since + self.pool.idle_timeout - self.pool.reactor.seconds()
        if remaining > 0:
            conn.idle_timer = self.pool.reactor.callLater(remaining, self._idle_check, conn)
            return
        self._retire(conn)

    def _retire(self, conn: _ClientProtocol) -> None:
        timer, conn.idle_timer = conn.idle_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if conn in self.idle:
            self.idle.remove(conn)
            self.pool._idle_taken(conn)
            conn.transport.loseConnection()
            self._slot_freed()

    def idle_lost(self, conn: _ClientProtocol) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
            self.pool._idle_taken(conn)
            self._slot_freed()


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections per upstream address (and TLS server name).

    Limits follow Go's ``http.Transport``: ``max_idle_per_host`` None means unlimited,
    ``max_idle_conns`` caps idle connections across all hosts (0 unlimited, the oldest is
    closed first), ``max_conns_per_host`` 0 means unlimited and requests beyond it wait in
    FIFO order.  Timeouts in seconds, 0/None off.  ``keep_alive=False`` sends
    ``Connection: close`` and uses each connection once.
    """

    def __init__(
        self,
        reactor: Any,
        *,
        max_idle_per_host: int | None = 32,
        idle_timeout: float | None = 120.0,
        max_conns_per_host: int = 0,
        dial_timeout: float | None = 3.0,
        response_header_timeout: float | None = None,
        max_response_header_size: int = 10 << 20,
        keep_alive: bool = True,
        max_idle_conns: int = 0,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        expect_continue_timeout: float | None = None,
        tls_handshake_timeout: float | None = None,
        tcp_keepalive: float | None = None,
        read_size: int | None = None,
        endpoint_factory: Callable[[UpstreamAddress], Any] | None = None,
    ) -> None:
        self.reactor = reactor
        self.max_idle_per_host = max_idle_per_host
        #: Seconds an idle connection beyond max_idle_per_host lingers before it is closed
        #: (0: closed at once, as Go does). See ``_HostPool._trim_surplus``.
        self.surplus_linger = SURPLUS_LINGER
        self.idle_timeout = idle_timeout
        self.max_conns_per_host = max_conns_per_host
        self.dial_timeout = dial_timeout
        self.response_header_timeout = response_header_timeout
        self.max_response_header_size = max_response_header_size
        self.keep_alive = keep_alive
        self.max_idle_conns = max_idle_conns
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.expect_continue_timeout = expect_continue_timeout
        self.tls_handshake_timeout = tls_handshake_timeout
        self.tcp_keepalive = tcp_keepalive
        self.read_size = read_size
        self.endpoint_factory = endpoint_factory or (lambda addr: addr.endpoint(reactor))
        self._hosts: dict[Any, _HostPool] = {}
        # Idle connections of every host, oldest first; kept only when max_idle_conns is set.
        self._idle_lru: OrderedDict[_ClientProtocol, None] | None = (
            OrderedDict() if max_idle_conns else None)

    def request(
        self,
        address: UpstreamAddress,
        method: bytes,
        target: bytes,
        headers: RawHeaders,
        body_length: int | None = None,
        on_informational: Callable[[ResponseHead], None] | None = None,
        tls: Any = None,
    ) -> Exchange:
        """Start a request; the body is written through the returned Exchange.

        ``headers`` must include Host; Content-Length / Transfer-Encoding in it are ignored,
        the framing comes from ``body_length`` (None: no body, n: Content-Length, CHUNKED).
        ``tls`` is an IOpenSSLClientConnectionCreator for an HTTPS upstream (connections are
        pooled per creator), or None.
        """
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        wants_close = switching = idempotency_key = expects_continue = False
        noticed = _noticed_names
        for name, value in headers:
            lower = noticed.get(name)
            if lower is None:  # a name not seen before: remember whether it matters here
                lower = name.lower()
                if lower not in _NOTICED_HEADERS:
                    lower = b""
                if len(noticed) < 4096:
                    noticed[name] = lower
            if lower:
                if lower in _FRAMING_HEADERS:
                    continue
                if lower == b"connection":
                    tokens = {t.strip() for t in value.lower().split(b",")}
                    wants_close = wants_close or b"close" in tokens
                    switching = switching or b"upgrade" in tokens
                elif lower == b"expect":
                    expects_continue = value.strip().lower() == b"100-continue"
                elif lower != b"upgrade":
                    idempotency_key = True
            parts += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not wants_close and not switching:
            parts.append(b"Connection: close\r\n")
        if body_length == CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif body_length is not None:
            parts.append(b"Content-Length: %d\r\n" % body_length)
        parts.append(b"\r\n")
        key = address.key if tls is None else (address.key, tls)
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _HostPool(self, key, address, tls)
        exchange = Exchange(self, host, b"".join(parts), body_length, method, on_informational)
        bodyless = not body_length
        exchange.replayable = bodyless and (method in _REPLAYABLE_METHODS or idempotency_key)
        exchange.close_after = wants_close
        if expects_continue and not bodyless and self.expect_continue_timeout:
            exchange._held = True
        host.submit(exchange)
        return exchange

    def failed_exchange(self, error: UpstreamError) -> Exchange:
        """An exchange that has already failed with ``error`` (nothing is dialled)."""
        exchange = Exchange(self, None, b"", None, b"GET", None)
        exchange._fail(Failure(error))
        return exchange

    def _host(self, address: UpstreamAddress, tls: Any) -> _HostPool | None:
        return self._hosts.get(address.key if tls is None else (address.key, tls))

    def idle_count(self, address: UpstreamAddress, tls: Any = None) -> int:
        host = self._host(address, tls)
        return len(host.idle) if host else 0

    def open_count(self, address: UpstreamAddress, tls: Any = None) -> int:
        """Connections counted against the host (idle, busy and dialing)."""
        host = self._host(address, tls)
        return host.open if host else 0

    def _forget_host(self, host: _HostPool) -> None:
        host.cancel_trim()
        if self._hosts.get(host.key) is host:
            del self._hosts[host.key]

    def _idle_added(self, conn: _ClientProtocol) -> None:
        lru = self._idle_lru
        if lru is None:
            return
        lru[conn] = None
        while len(lru) > max(self.max_idle_conns, 0):
            oldest = next(iter(lru))
            oldest.host._retire(oldest)

    def _idle_taken(self, conn: _ClientProtocol) -> None:
        if self._idle_lru is not None:
            self._idle_lru.pop(conn, None)

    def close_idle(self) -> None:
        """Close every idle connection (config unload)."""
        for host in list(self._hosts.values()):
            host.cancel_trim()
            idle, host.idle = host.idle, []
            for conn in idle:
                self._idle_taken(conn)
                if conn.idle_timer is not None and conn.idle_timer.active():
                    conn.idle_timer.cancel()
                conn.idle_timer = None
                conn.transport.loseConnection()
                host._slot_freed()
