"""The HTTP/1.1 response parser of the upstream client, and its body decoders.

Hand-written rather than httptools': as fast, and it handles a response to ``HEAD`` (httptools'
response parser cannot be told the request was HEAD and waits for a body).  It parses the head
without per-line strips (the usual CRLF head is split once; only field names it acts on are
lower-cased, found by their length), then decodes the body by Content-Length, chunked or until
the connection closes, passing each piece straight to the exchange's ``IBodyConsumer``: no copy
of body bytes beyond the slice a boundary needs.

``ResponseParser`` is a mixin of the connection protocol (``HTTP11Connection``): the parse loop
runs as the connection's own methods, without a call layer per read.  It is a mypyc *trait*
(a no-op in pure Python) so that the compiled build can make ``HTTP11Connection``, which also
derives from ``PooledConnection``, a native class: native classes take one base plus traits.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr, trait

from txcaddy.reverseproxy._exchange import Exchange, RawHeaders
from txcaddy.reverseproxy._h1rhead import parse_head
from txcaddy.reverseproxy.errors import UpstreamProtocolError

if TYPE_CHECKING:
    from txcaddy.reverseproxy._h1connection import ConnectionPool
    from txcaddy.reverseproxy._pool import HostPool

_NO_BODY_STATUSES = frozenset((204, 304))

# Parser states: waiting for a head; a body by Content-Length; chunked (size line, data, the
# CRLF after the data, trailers); a body until the connection closes; no exchange; the
# connection left HTTP after a 101.
HEAD, LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, TRAILERS, EOF, IDLE, SWITCHED = range(9)
#: Reading a response body: more of it is expected.
UNFINISHED = frozenset((LENGTH, CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, TRAILERS, EOF))


@trait
@mypyc_attr(allow_interpreted_subclasses=True)
class ResponseParser:
    """Parses responses on one connection into its current exchange.

    States (``state``): ``HEAD`` until a final head arrived (1xx heads go to the exchange's
    ``on_informational``; a 100 releases a held body); then ``LENGTH``, ``CHUNK_SIZE`` →
    ``CHUNK_DATA`` → ``CHUNK_CRLF`` → ``CHUNK_SIZE`` … → ``TRAILERS``, or ``EOF``; back to
    ``IDLE`` through ``_response_done``.  A ``101`` moves to ``SWITCHED`` for good.  While the
    connection is paused (``pauses``) the bytes not yet delivered wait in ``buffer``.

    @ivar remaining: body bytes still expected (Content-Length, or the current chunk).
    @ivar keep_alive: False once something in the response rules out reusing the connection.
    @ivar responded: some of the current response arrived (a stale connection says nothing).
    """

    # Provided by the connection protocol (HTTP11Connection).  ``exchange`` is the current
    # Exchange (None between exchanges: the parse loop stops then).
    pool: ConnectionPool
    host: HostPool
    exchange: Exchange | None
    state: int
    buffer: bytes
    remaining: int
    trailers: RawHeaders
    keep_alive: bool
    responded: bool
    pauses: set[str]

    # The connection's own steps the parse takes: abstract, the connection implements them
    # (methods rather than callable attributes: the compiled build calls them through the
    # trait's method table).
    @abstractmethod
    def _cancel_timer(self) -> None:
        """The response head arrived: stop the response-header timer."""

    @abstractmethod
    def _stop_read_timer(self) -> None:
        """No more read deadline (the connection left HTTP)."""

    @abstractmethod
    def _response_done(self) -> None:
        """The response is complete: finish the exchange, release the connection."""

    @abstractmethod
    def pause(self, why: str) -> None:
        """Stop reading from the upstream for ``why``."""

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
            if state == HEAD:
                self.responded = True
                rest = self._parse_head(data)
                if rest is None:
                    return
                data = rest
                continue
            if self.pauses:
                self.buffer = data
                return
            consumer = exchange._consumer
            if state == LENGTH:
                data = self._deliver_counted(consumer, data)
                if self.remaining == 0:
                    if data:
                        self.keep_alive = False  # bytes beyond the body: not reusable
                    self._response_done()
                    return
            elif state == EOF:
                consumer.body_data(data)
                return
            elif state == CHUNK_DATA:
                data = self._deliver_counted(consumer, data)
                if self.remaining == 0:
                    self.state = CHUNK_CRLF
            elif state == CHUNK_CRLF:
                if len(data) < 2:
                    if data != b"\r"[: len(data)] and data != b"\n":
                        raise UpstreamProtocolError("malformed chunk terminator")
                    if data == b"\n":
                        data = b""
                        self.state = CHUNK_SIZE
                        continue
                    self.buffer = data
                    return
                if data[:2] == b"\r\n":
                    data = data[2:]
                elif data[:1] == b"\n":
                    data = data[1:]
                else:
                    raise UpstreamProtocolError("malformed chunk terminator")
                self.state = CHUNK_SIZE
            elif state == CHUNK_SIZE:
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
                    self.state = TRAILERS
                else:
                    self.remaining = size
                    self.state = CHUNK_DATA
            elif state == TRAILERS:
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
        head, content_length, transfer_encoding, connection_close = parse_head(data[:end], skip == 4)
        rest = data[end + skip:]
        status = head.status
        exchange = self.exchange
        assert exchange is not None  # _parse returns between exchanges
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
            self.state = SWITCHED
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
            self.state = EOF
        elif body == "chunked":
            self.state = CHUNK_SIZE
        else:
            self.state = LENGTH
        exchange._report_head(head)
        if self.exchange is not exchange:
            return None  # the caller aborted in its callback
        if exchange._consumer is None:
            self.pause("no-consumer")
        if self.pauses:
            self.buffer = rest
            return None
        return rest
