"""HTTP/1.1 upstream client and keep-alive pool for reverse_proxy.

Our own Protocol instead of Agent: Agent drops 1xx (incl. 101), hides trailers, has no
response-header timeout and costs ~4x the CPU per request.  The only Deferred per request is
the one that fires with the response head; everything else is plain method calls.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

RawHeaders = list[tuple[bytes, bytes]]

#: ``body_length`` value asking for a chunked request body.
CHUNKED = -1

_NO_BODY_STATUSES = frozenset((204, 304))
_FRAMING_HEADERS = frozenset((b"content-length", b"transfer-encoding"))


class UpstreamError(Exception):
    """Base class of upstream failures; the handler maps them to a status."""

    status = 502


class DialError(UpstreamError):
    """Connecting failed (refused, unresolvable, dial timeout): nothing reached the upstream."""

    status = 502


class ResponseHeaderTimeout(UpstreamError):
    """The upstream did not send a response head in time."""

    status = 504


class UpstreamConnectionLost(UpstreamError):
    """The connection ended before the response was complete."""

    status = 502


class UpstreamProtocolError(UpstreamError):
    """The upstream sent something that is not valid HTTP/1.x."""

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

    def endpoint(self, reactor: Any, timeout: float | None = None) -> Any:
        """A client endpoint for this address (IP literals skip name resolution)."""
        kw = {} if timeout is None else {"timeout": timeout}
        if self.network == "unix":
            return endpoints.UNIXClientEndpoint(reactor, self.path, **kw)
        if _is_ipv4(self.host):
            return endpoints.TCP4ClientEndpoint(reactor, self.host, self.port, **kw)
        if ":" in self.host:
            return endpoints.TCP6ClientEndpoint(reactor, self.host, self.port, **kw)
        return endpoints.HostnameEndpoint(reactor, self.host, self.port, **kw)

    def __repr__(self) -> str:
        if self.network == "unix":
            return f"UpstreamAddress(unix/{self.path})"
        return f"UpstreamAddress({self.host}:{self.port})"


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
        address: UpstreamAddress,
        head_bytes: bytes,
        body_length: int | None,
        method: bytes,
        on_informational: Callable[[ResponseHead], None] | None,
    ) -> None:
        self.pool = pool
        self.address = address
        self.head: Deferred[ResponseHead] = Deferred(self._cancel)
        self.response: ResponseHead | None = None
        self.is_head_request = method == b"HEAD"
        self.on_informational = on_informational
        self.body_length = body_length
        self.body_remaining = body_length if body_length and body_length > 0 else 0
        self.body_done = body_length is None or body_length == 0
        self.sent_anything = False
        self._head_bytes = head_bytes
        self._pending: list[bytes] = [head_bytes]
        self._body_producer: Any = None
        self._body_streaming = False
        self._conn: _ClientProtocol | None = None
        self._consumer: Any = None
        self._finished = False
        self._done_reason: Failure | None = None

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
        if conn is not None and conn.transport is not None:
            conn.transport.registerProducer(producer, streaming)
        elif streaming:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        producer, self._body_producer = self._body_producer, None
        conn = self._conn
        if producer is not None and conn is not None and conn.transport is not None:
            conn.transport.unregisterProducer()

    def _send(self, chunks: list[bytes]) -> None:
        conn = self._conn
        if conn is None or conn.transport is None:
            self._pending.extend(chunks)
        elif conn.exchange is not self:
            return  # the response ended early; the rest of the body is not wanted
        else:
            self.sent_anything = True
            conn.transport.writeSequence(chunks)

    def _body_complete(self) -> None:
        self.body_done = True
        if self._body_producer is not None:
            self.unregisterProducer()
        conn = self._conn
        if conn is not None:
            conn.request_written()

    def _attach(self, conn: _ClientProtocol) -> None:
        self._conn = conn
        pending, self._pending = self._pending, []
        self.sent_anything = True
        conn.transport.writeSequence(pending)
        if self._body_producer is not None:
            conn.transport.registerProducer(self._body_producer, self._body_streaming)
            if self._body_streaming:
                self._body_producer.resumeProducing()
        if self.body_done:
            conn.request_written()

    # -- response --------------------------------------------------------------------

    def deliver_body(self, consumer: Any) -> None:
        """Start feeding the response body to ``consumer`` (see ResponseBodyConsumer)."""
        self._consumer = consumer
        if self._finished:
            consumer.body_finished(self._done_reason)
            return
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
            self.pool._forget_waiter(self)
            self._fail(Failure(exc))

    def _cancel(self, _d: Deferred) -> None:
        conn = self._conn
        if conn is not None:
            if conn.exchange is self:
                conn.fail(CancelledError("request cancelled"))
        else:
            self.pool._forget_waiter(self)
            self._finished = True
            # Deferred's canceller contract: errback with CancelledError ourselves.

    def _fail(self, failure: Failure) -> None:
        """Report a failure wherever the caller is listening."""
        if self._finished:
            return
        self._finished = True
        if self._body_producer is not None:
            producer, self._body_producer = self._body_producer, None
            try:
                producer.stopProducing()
            except Exception:
                pass
        self._done_reason = failure
        if not self.head.called:
            self.head.errback(failure)
        elif self._consumer is not None:
            self._consumer.body_finished(failure)

    def _succeed(self) -> None:
        if not self._finished:
            self._finished = True
            if self._consumer is not None:
                self._consumer.body_finished(None)


# Parser states.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _EOF, _IDLE, _SWITCHED = range(9)


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
        self.switched_to: Any = None
        self.connected = False

    # -- lifecycle ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True

    def start(self, exchange: Exchange) -> None:
        """Run ``exchange`` on this (fresh or idle) connection."""
        if self.idle_timer is not None:
            if self.idle_timer.active():
                self.idle_timer.cancel()
            self.idle_timer = None
        self.exchange = exchange
        self.state = _HEAD
        self.buffer = b""
        self.trailers = []
        self.keep_alive = True
        self.written = False
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

    def fail(self, exc: BaseException) -> None:
        """Abort the current exchange with ``exc`` and drop the connection."""
        if self.state == _SWITCHED:
            if self.transport is not None:
                self.transport.abortConnection()
            return
        exchange, self.exchange = self.exchange, None
        self.keep_alive = False
        self._cancel_timer()
        self.state = _IDLE
        if self.transport is not None:
            self.transport.abortConnection()
        if exchange is not None:
            exchange._fail(Failure(exc))
            self.host.connection_done(self, reusable=False)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:
        self.connected = False
        self._cancel_timer()
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()
        self.idle_timer = None
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
        self.pauses.add(why)

    def resume(self, why: str) -> None:
        if why in self.pauses:
            self.pauses.discard(why)
            if not self.pauses and self.transport is not None:
                self.transport.resumeProducing()
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
        if end < 0:
            if len(data) > self.pool.max_response_header_size:
                raise UpstreamProtocolError("response head too large")
            self.buffer = data
            return None
        raw = data[:end]
        rest = data[end + skip:]
        lines = raw.split(b"\n")
        status_line = lines[0].rstrip(b"\r")
        version, _, tail = status_line.partition(b" ")
        code, _, reason = tail.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
            raise UpstreamProtocolError(f"malformed status line {status_line[:60]!r}")
        status = int(code)
        headers: RawHeaders = []
        content_length: bytes | None = None
        transfer_encoding: bytes | None = None
        connection_close = version == b"HTTP/1.0"
        for line in lines[1:]:
            line = line.rstrip(b"\r")
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise UpstreamProtocolError(f"malformed header line {line[:60]!r}")
            value = value.strip(b" \t")
            headers.append((name, value))
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
            if exchange.on_informational is not None:
                exchange.on_informational(head)
            return rest
        self._cancel_timer()
        exchange.response = head
        if connection_close:
            self.keep_alive = False
        if status == 101:
            self.state = _SWITCHED
            self.keep_alive = False
            self.buffer = rest
            self.host.connection_detached(self)
            self.pause("no-consumer")
            exchange.head.callback(head)
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
            exchange.head.callback(head)
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
        exchange.head.callback(head)
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
        reusable = self.keep_alive and exchange.body_done and self.connected
        if exchange._body_producer is not None:
            exchange._body_producer = None
            self.transport.unregisterProducer()
        if self.pauses:
            self.pauses.clear()
            self.transport.resumeProducing()
        if not reusable and self.transport is not None:
            self.transport.loseConnection()
        self.host.connection_done(self, reusable=reusable)


class _HostPool:
    """Connections to one upstream address: idle stack, active count, waiters."""

    def __init__(self, pool: ConnectionPool, address: UpstreamAddress) -> None:
        self.pool = pool
        self.address = address
        self.idle: list[_ClientProtocol] = []
        self.open = 0
        self.waiters: deque[Exchange] = deque()

    def submit(self, exchange: Exchange) -> None:
        while self.idle:
            conn = self.idle.pop()
            if conn.connected:
                conn.start(exchange)
                return
            self.open -= 1
        limit = self.pool.max_conns_per_host
        if limit and self.open >= limit:
            self.waiters.append(exchange)
            return
        self._dial(exchange)

    def _dial(self, exchange: Exchange) -> None:
        self.open += 1
        pool = self.pool
        endpoint = pool.endpoint_factory(self.address)
        factory = Factory.forProtocol(lambda: _ClientProtocol(pool, self))
        dialing = endpoint.connect(factory)
        timer = None
        timed_out = []
        if pool.dial_timeout:
            def on_timeout() -> None:
                timed_out.append(True)
                dialing.cancel()
            timer = pool.reactor.callLater(pool.dial_timeout, on_timeout)

        def connected(conn: _ClientProtocol) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            if exchange._finished:
                # The caller gave up while we were dialing: keep the connection for others.
                self.connection_done(conn, reusable=True)
                return
            conn.start(exchange)

        def failed(reason: Failure) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            self.open -= 1
            if timed_out:
                msg = f"dial {self.address}: timeout after {pool.dial_timeout}s"
            else:
                msg = f"dial {self.address}: {reason.getErrorMessage()}"
            exchange._fail(Failure(DialError(msg)))
            self._next_waiter()

        dialing.addCallbacks(connected, failed)

    def connection_done(self, conn: _ClientProtocol, reusable: bool) -> None:
        """An exchange ended on ``conn``; reuse or retire it."""
        if reusable and conn.connected:
            if self.waiters:
                conn.start(self.waiters.popleft())
                return
            max_idle = self.pool.max_idle_per_host
            if max_idle is None or len(self.idle) < max_idle:
                self.idle.append(conn)
                if self.pool.idle_timeout:
                    conn.idle_timer = self.pool.reactor.callLater(
                        self.pool.idle_timeout, self._retire, conn)
                return
            conn.transport.loseConnection()
        self.open -= 1
        self._next_waiter()

    def connection_detached(self, conn: _ClientProtocol) -> None:
        """The connection left HTTP (101): it no longer counts against the host."""
        self.open -= 1
        self._next_waiter()

    def _next_waiter(self) -> None:
        limit = self.pool.max_conns_per_host
        while self.waiters and (not limit or self.open < limit):
            self._dial(self.waiters.popleft())

    def _retire(self, conn: _ClientProtocol) -> None:
        conn.idle_timer = None
        if conn in self.idle:
            self.idle.remove(conn)
            self.open -= 1
            conn.transport.loseConnection()
            self._next_waiter()

    def idle_lost(self, conn: _ClientProtocol) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
            self.open -= 1
            self._next_waiter()


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections per upstream address.

    ``max_idle_per_host`` None means unlimited (Caddy's default is 32), ``max_conns_per_host``
    0 means unlimited; requests beyond it wait in FIFO order.  Timeouts in seconds, 0/None off.
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
        endpoint_factory: Callable[[UpstreamAddress], Any] | None = None,
    ) -> None:
        self.reactor = reactor
        self.max_idle_per_host = max_idle_per_host
        self.idle_timeout = idle_timeout
        self.max_conns_per_host = max_conns_per_host
        self.dial_timeout = dial_timeout
        self.response_header_timeout = response_header_timeout
        self.max_response_header_size = max_response_header_size
        self.endpoint_factory = endpoint_factory or (lambda addr: addr.endpoint(reactor))
        self._hosts: dict[tuple, _HostPool] = {}

    def request(
        self,
        address: UpstreamAddress,
        method: bytes,
        target: bytes,
        headers: RawHeaders,
        body_length: int | None = None,
        on_informational: Callable[[ResponseHead], None] | None = None,
    ) -> Exchange:
        """Start a request; the body is written through the returned Exchange.

        ``headers`` must include Host; Content-Length / Transfer-Encoding in it are ignored,
        the framing comes from ``body_length`` (None: no body, n: Content-Length, CHUNKED).
        """
        parts = [method, b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            if name.lower() in _FRAMING_HEADERS:
                continue
            parts += (name, b": ", value, b"\r\n")
        if body_length == CHUNKED:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif body_length is not None:
            parts.append(b"Content-Length: %d\r\n" % body_length)
        parts.append(b"\r\n")
        exchange = Exchange(self, address, b"".join(parts), body_length, method,
                            on_informational)
        host = self._hosts.get(address.key)
        if host is None:
            host = self._hosts[address.key] = _HostPool(self, address)
        host.submit(exchange)
        return exchange

    def _forget_waiter(self, exchange: Exchange) -> None:
        host = self._hosts.get(exchange.address.key)
        if host is not None and exchange in host.waiters:
            host.waiters.remove(exchange)

    def idle_count(self, address: UpstreamAddress) -> int:
        host = self._hosts.get(address.key)
        return len(host.idle) if host else 0

    def open_count(self, address: UpstreamAddress) -> int:
        """Connections counted against the host (idle, busy and dialing)."""
        host = self._hosts.get(address.key)
        return host.open if host else 0

    def close_idle(self) -> None:
        """Close every idle connection (config unload)."""
        for host in self._hosts.values():
            idle, host.idle = host.idle, []
            for conn in idle:
                host.open -= 1
                if conn.idle_timer is not None and conn.idle_timer.active():
                    conn.idle_timer.cancel()
                conn.idle_timer = None
                conn.transport.loseConnection()
