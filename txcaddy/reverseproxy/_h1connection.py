"""The HTTP/1.1 upstream client: one connection protocol, and the pool that speaks HTTP/1.1.

Our own Protocol instead of Agent: Agent drops 1xx (incl. 101), hides trailers, has no
response-header timeout and costs ~4x the CPU per request.  The only Deferred per request is
the one that fires with the response head, made only when asked for; everything else is plain
method calls.  The request head is built as bytes directly, field names classified once.

HTTP/1.1 specifics live here, the pool (``_pool``) stays protocol-blind: keep-alive
(``Connection: close`` when keep-alive is off, a connection reused only after a complete
exchange with nothing extra read), the read/write/response-header deadlines, and the one
transparent re-send of a request that found its idle connection already closed by the
upstream (Go's ``errServerClosedIdle``).  The response parser is the ``ResponseParser`` mixin
(``_h1response``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mypy_extensions import mypyc_attr
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements, implementer

from txcaddy._twisted import quick_ack
from txcaddy.interfaces import IUpstreamConnection
from txcaddy.reverseproxy._dial import Dial, UpstreamAddress
from txcaddy.reverseproxy._exchange import CHUNKED, Exchange, RawHeaders, ResponseHead
from txcaddy.reverseproxy._h1response import (
    EOF,
    HEAD,
    IDLE,
    LENGTH,
    SWITCHED,
    UNFINISHED,
    ResponseParser,
)
from txcaddy.reverseproxy._kernelcopy import KernelCopy, copy_body
from txcaddy.reverseproxy._pool import SURPLUS_LINGER, HostPool, PooledConnection, UpstreamPool
from txcaddy.reverseproxy.errors import (
    ResponseHeaderTimeout,
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamWriteTimeout,
)

_log = Logger(namespace="txcaddy.reverseproxy")
_FRAMING_HEADERS = frozenset((b"content-length", b"transfer-encoding"))
# Request header names the client looks at while writing the head (lower-case).
# Field names as written -> their lower-case form if the pool looks at them, else b"".
_noticed_names: dict[bytes, bytes] = {}
_NOTICED_HEADERS = _FRAMING_HEADERS | {
    b"connection", b"upgrade", b"expect", b"idempotency-key", b"x-idempotency-key"}
# Go's Request.isReplayable: bodyless requests with these methods may be re-sent.
_REPLAYABLE_METHODS = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
_QUICK_ACK_REMAINING = 65536  # see dataReceived


@implementer(IPushProducer)
class _WriteDeadline:
    """Wraps a request body producer to time how long the upstream refuses more body.

    The transport pauses the producer when its send buffer is full; ``write_timeout`` runs
    while it stays paused (Go sets a deadline on every blocking write).
    """

    __slots__ = ("conn", "producer")

    def __init__(self, conn: HTTP11Connection, producer: Any) -> None:
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





@mypyc_attr(allow_interpreted_subclasses=True)
class HTTP11Connection(PooledConnection, ResponseParser):
    """One upstream HTTP/1.1 connection: runs one exchange at a time, parses its response.

    The pool holds it idle (``state`` ``IDLE``, ``exchange`` None) between exchanges; it
    reports every exchange's end with ``host.connection_done(conn, reusable)``.
    """

    transport: Any = None  # a TCP or TLS transport: also an IPushProducer and an IConsumer
    connected: bool = False

    def __init__(self, pool: ConnectionPool, host: HostPool) -> None:
        self.pool = pool
        self.host = host
        self.exchange: Exchange | None = None
        self.state = IDLE
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
        self.dial: Dial | None = None  # waiting for the TLS handshake
        self.handshake_ok = False
        self.lost_reason: Failure | None = None
        self.kernel_copy: KernelCopy | None = None  # splicing the current body (_kernelcopy)
        self.parsing = False  # inside dataReceived's parse
        self.copy_to: Any = None  # the response asked for kernel copy during the parse

    # -- lifecycle ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        self.prepare_socket(self.pool)
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
        self.state = HEAD
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
        if timeout and self.state == HEAD and self.timer is None:
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
        if timeout and self.read_timer is None and self.connected and self.state != SWITCHED:
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
        if self.kernel_copy is not None:
            self.kernel_copy.stop()
        if self.state == SWITCHED:
            if self.transport is not None:
                self.transport.abortConnection()
            return
        exchange, self.exchange = self.exchange, None
        self.keep_alive = False
        self._cancel_timer()
        self._stop_read_timer()
        self.stop_write_timer()
        self.state = IDLE
        if self.transport is not None:
            self.transport.abortConnection()
        if exchange is not None:
            exchange._fail(Failure(exc))
            self.host.connection_done(self, reusable=False)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost_reason = reason
        if self.kernel_copy is not None:
            self.kernel_copy.stop()
        self._cancel_timer()
        self._stop_read_timer()
        self.stop_write_timer()
        self.closed()
        dial, self.dial = self.dial, None
        if dial is not None:
            dial.handshake_failed(self, reason)
            return
        if self.state == SWITCHED:
            if self.switched_to is not None:
                self.switched_to.connectionLost(reason)
            return
        if self.buffer and self.exchange is not None and self.state not in (HEAD, IDLE):
            # Bytes held back by a pause arrived before the close: deliver them first.
            data, self.buffer = self.buffer, b""
            self.pauses.clear()
            try:
                self._parse(data)
            except UpstreamProtocolError:
                pass
        exchange, self.exchange = self.exchange, None
        if self.state == EOF and exchange is not None and reason.check(ConnectionDone):
            self.state = IDLE
            exchange._succeed()
            self.host.connection_done(self, reusable=False)
            return
        if (exchange is not None and self.state == HEAD and not self.responded
                and self.requests > 1 and exchange.replayable and not exchange.retried
                and not exchange.finished):
            # The upstream had closed this idle connection before our request reached it
            # (Go's errServerClosedIdle): send the request again on a new connection.
            self.state = IDLE
            exchange._rewind()
            self.host.redial(exchange)
            return
        self.state = IDLE
        if exchange is not None:
            exchange._fail(Failure(UpstreamConnectionLost(
                f"upstream connection lost: {reason.getErrorMessage()}")))
            self.host.connection_done(self, reusable=False)
        else:
            self.host.idle_lost(self)

    def close(self) -> None:
        """Close the connection once what was written is sent (the pool retires it)."""
        self.transport.loseConnection()


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
                if self.buffer and self.state not in (HEAD, IDLE, SWITCHED):
                    data, self.buffer = self.buffer, b""
                    self.dataReceived(data)

    def copy_body_to(self, response: Any) -> None:
        """Splice the rest of a ``Content-Length`` body to ``response``'s client (``_kernelcopy``)
        where that can be done; else (and until then) the body goes through ``dataReceived``.

        Asked during a parse (the head's callbacks), it starts once the bytes in hand are
        delivered.
        """
        if self.state != LENGTH or self.exchange is None:
            return
        if self.parsing:
            self.copy_to = response
        else:
            copy_body(self, response)

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
        if state == SWITCHED:
            if self.switched_to is None:
                self.buffer += data
            else:
                self.switched_to.dataReceived(data)
            return
        if state == IDLE:
            # Bytes nobody asked for: the connection is no longer in a known state.
            self.keep_alive = False
            if self.transport is not None:
                self.transport.loseConnection()
            return
        if self.pauses:
            self.buffer += data
            return
        self.parsing = True
        try:
            self._parse(data)
        except UpstreamProtocolError as exc:
            self.parsing = False
            self.fail(exc)
            return
        self.parsing = False
        state = self.state
        if self.copy_to is not None:
            response, self.copy_to = self.copy_to, None
            if state == LENGTH and self.exchange is not None and copy_body(self, response):
                return
        if state in UNFINISHED and self.exchange is not None and (
                state != LENGTH or self.remaining <= _QUICK_ACK_REMAINING):
            # Near the end of a response the upstream may wait for this ACK to send the
            # rest (a long body keeps ACKs flowing anyway: an ACK per read cost 1m ~8 %).
            quick_ack(self.transport)


    def _response_done(self) -> None:
        """The response ended cleanly: release the connection, then tell the consumer."""
        exchange = self.exchange
        self.state = IDLE
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


classImplements(HTTP11Connection, IUpstreamConnection, IHandshakeListener)


@mypyc_attr(allow_interpreted_subclasses=True)
class ConnectionPool(UpstreamPool):
    """Keep-alive HTTP/1.1 connections per upstream address (and TLS server name).

    The pool's limits (see ``UpstreamPool``) with the HTTP/1.1 connection: timeouts in
    seconds, 0/None off.  ``keep_alive=False`` sends ``Connection: close`` and uses each
    connection once.
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
        surplus_linger: float = SURPLUS_LINGER,
    ) -> None:
        super().__init__(
            reactor,
            connection_factory=HTTP11Connection,
            max_idle_per_host=max_idle_per_host,
            idle_timeout=idle_timeout,
            max_conns_per_host=max_conns_per_host,
            dial_timeout=dial_timeout,
            max_idle_conns=max_idle_conns,
            tls_handshake_timeout=tls_handshake_timeout,
            tcp_keepalive=tcp_keepalive,
            read_size=read_size,
            endpoint_factory=endpoint_factory,
            surplus_linger=surplus_linger,
        )
        self.response_header_timeout = response_header_timeout
        self.max_response_header_size = max_response_header_size
        self.keep_alive = keep_alive
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.expect_continue_timeout = expect_continue_timeout
        #: The keyword arguments this pool was made with (a sibling pool copies them).
        self.options: dict[str, Any] = dict(
            max_idle_per_host=max_idle_per_host, idle_timeout=idle_timeout,
            max_conns_per_host=max_conns_per_host, dial_timeout=dial_timeout,
            response_header_timeout=response_header_timeout,
            max_response_header_size=max_response_header_size, keep_alive=keep_alive,
            max_idle_conns=max_idle_conns, read_timeout=read_timeout,
            write_timeout=write_timeout, expect_continue_timeout=expect_continue_timeout,
            tls_handshake_timeout=tls_handshake_timeout, tcp_keepalive=tcp_keepalive,
            read_size=read_size, endpoint_factory=endpoint_factory,
            surplus_linger=surplus_linger)

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
        key = address.key if tls is None else (address.key, tls)
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = HostPool(self, key, address, tls)
        exchange = self.new_exchange(host, method, target, headers, body_length,
                                     on_informational)
        host.submit(exchange)
        return exchange

    def new_exchange(
        self,
        host: HostPool,
        method: bytes,
        target: bytes,
        headers: RawHeaders,
        body_length: int | None,
        on_informational: Callable[[ResponseHead], None] | None,
    ) -> Exchange:
        """The exchange of one request to ``host``, not yet submitted (see ``request``)."""
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
        exchange = Exchange(self, host, b"".join(parts), body_length, method, on_informational)
        bodyless = not body_length
        exchange.replayable = bodyless and (method in _REPLAYABLE_METHODS or idempotency_key)
        exchange.close_after = wants_close
        if expects_continue and not bodyless and self.expect_continue_timeout:
            exchange._held = True
        return exchange

    def failed_exchange(self, error: UpstreamError) -> Exchange:
        """An exchange that has already failed with ``error`` (nothing is dialled)."""
        exchange = Exchange(self, None, b"", None, b"GET", None)
        exchange._fail(Failure(error))
        return exchange
