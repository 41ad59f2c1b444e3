"""One HTTP/2 server stream: its flow-control state and its ``Response``.

``_Stream`` is a request/response exchange on an ``HTTP2Protocol`` connection and the
producer of the request body (pausing it stops reopening the client's window, RFC 9113
§5.2); ``H2Response`` sends the response as HEADERS, DATA and trailer HEADERS frames,
holding the head back as ``H1Response`` does so that a short response gets a
``content-length`` (as Go's server, ``x/net/http2/server.go``, does for Caddy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes

from txcaddy.http._h1head import DATE
from txcaddy.http._h2fields import _fields
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request, RequestBody
from txcaddy.http.response import Response

if TYPE_CHECKING:
    from txcaddy.http._h2 import HTTP2Protocol

_NO_BODY_STATUSES = frozenset({204, 304})


class _Stream:
    """One request/response exchange on the connection, and its flow control.

    It is the request body's producer: pausing it stops reopening the peer's
    window for this stream.
    """

    __slots__ = (
        "id", "protocol", "request", "response", "body", "unacked", "paused", "pending",
        "pending_size", "end_pending", "producer", "streaming", "producer_paused",
        "closed", "remote_ended", "expect_continue", "_pulling", "handler_running", "orphaned",
        "stalled_since",
    )

    def __init__(self, stream_id: int, protocol: HTTP2Protocol) -> None:
        self.id = stream_id
        self.protocol = protocol
        self.request: Request | None = None
        self.response: H2Response | None = None
        self.body: RequestBody | None = None
        self.unacked = 0  # received body bytes not yet acknowledged to the peer
        self.paused = False  # the body's consumer asked for no more
        self.pending: list[bytes] = []  # response bytes waiting for the peer's window
        self.pending_size = 0
        self.end_pending = False  # the response ended; END_STREAM (or trailers) after pending
        self.producer: Any = None  # the response's registered producer
        self.streaming = True
        self.producer_paused = False
        self.closed = False  # reset, or both sides ended
        self.remote_ended = False
        self.expect_continue = False
        self._pulling = False
        self.handler_running = True  # until the server's handlers return
        self.orphaned = False  # counted in the connection's orphans
        self.stalled_since: float | None = None  # response bytes queued and none sent since

    # -- IPushProducer for the request body ----------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.acknowledge()

    def stopProducing(self) -> None:
        self.protocol._reset(self, ErrorCodes.CANCEL)

    def body_drained(self) -> None:
        """The body's consumer took what was kept (or it was discarded)."""
        if self.expect_continue:
            self.expect_continue = False
            response = self.response
            if response is not None and not response.head_sent and not self.remote_ended and not self.closed:
                self.protocol._send_headers(self, [(b":status", b"100")], False)
        self.acknowledge()

    def acknowledge(self) -> None:
        """Reopen the peer's window for what the consumer took."""
        if self.paused or not self.unacked or self.body is None or self.body.buffered:
            return
        size, self.unacked = self.unacked, 0
        self.protocol._acknowledge(self, size)


class H2Response(Response):
    """A response sent as HEADERS, DATA and (trailers) HEADERS frames on one stream.

    As in ``H1Response``, the head is held until the body passes 2 KiB or the
    response ends, so a short response gets a ``content-length``.
    """

    HOLD_LIMIT = 2048

    def __init__(self, protocol: HTTP2Protocol, stream: _Stream, head_only: bool) -> None:
        super().__init__()
        self._protocol = protocol
        self._stream = stream
        self._head_only = head_only
        self._body_allowed = True
        self._holding = False
        self._held: list[bytes] = []
        self._held_size = 0

    def _send_head(self, status: int) -> None:
        self._body_allowed = not (self._head_only or status in _NO_BODY_STATUSES)
        self._holding = True

    def _emit_head(self, content_length: int | None) -> bool:
        """Send the HEADERS frame (with END_STREAM when nothing follows); True if it ended the stream."""
        self._holding = False
        stream = self._stream
        status = self.status
        headers = self.headers
        if status in _NO_BODY_STATUSES:
            headers.delete_canonical(("Content-Length",))
        elif headers.values_of("Content-Length") is None and content_length is not None:
            if content_length > 0 or not self._head_only:
                headers.set("Content-Length", str(content_length))
        fields = [(b":status", str(status).encode("ascii"))]
        fields.extend(_fields(headers))
        if headers.values_of("Date") is None:  # Go's server dates every response, as _h1 does
            fields.append((b"date", DATE.line(self._protocol.clock())[6:-2].encode("ascii")))
        held, self._held = self._held, []
        end = content_length is not None and (not held or not self._body_allowed) and not self.trailers
        self._protocol._send_headers(stream, fields, end, final=True)
        if end:
            stream.end_pending = False
            return True
        if held and self._body_allowed:
            for data in held:
                self._protocol._queue(stream, data)
        return False

    def flush(self) -> None:
        """Send the head and anything held back now (streamed responses)."""
        if self._holding and not self._stream.closed:
            self._emit_head(None)

    def _send_body(self, data: bytes) -> None:
        if self._stream.closed:
            return
        if self._holding:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size > self.HOLD_LIMIT:
                self._emit_head(None)
            return
        if self._body_allowed:
            self._protocol._queue(self._stream, data)

    def _send_end(self) -> None:
        stream = self._stream
        if stream.closed:
            return
        stream.end_pending = True
        if self._holding:
            if self._emit_head(self._held_size):
                self._protocol._response_done(stream)
            return  # else the held body was queued, and the stream ends after it
        self._protocol._flush(stream)

    def register_producer(self, producer: Any, streaming: bool) -> None:
        self.flush()
        stream = self._stream
        stream.producer = producer
        stream.streaming = streaming
        stream.producer_paused = False
        if stream.closed:
            producer.stopProducing()
            return
        if streaming:
            self._protocol._pace(stream)
        else:
            self._protocol._pull(stream)

    def unregister_producer(self) -> None:
        self._stream.producer = None

    def abort_connection(self) -> None:
        """Cut this stream off (RST_STREAM), as Go's h2 server does for ``ErrAbortHandler``."""
        self._protocol._reset(self._stream, ErrorCodes.INTERNAL_ERROR)

    def handler_done(self) -> None:
        """The handlers returned: a reset stream's handler stops counting toward the stream limit."""
        self._protocol._handler_done(self._stream)

    def write_informational(self, status: int, headers: Headers | None = None) -> None:
        """Send a 1xx response (103 Early Hints, 100 Continue) before the final one."""
        if self.head_sent or self._stream.closed or not 100 <= status < 200 or status == 101:
            return
        fields = [(b":status", str(status).encode("ascii"))]
        if headers is not None:
            fields.extend(_fields(headers))
        self._protocol._send_headers(self._stream, fields, False)
