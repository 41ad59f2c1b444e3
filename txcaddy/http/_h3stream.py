"""One HTTP/3 request stream: its body's flow control and the response sent on it.

Split out of ``_h3`` (the HTTP/3 server), whose ``HTTP3Connection`` makes one ``_Stream``
and one ``H3Response`` per request stream and re-exports ``H3Response``.  Follows RFC 9114
§4 (HEADERS, DATA and trailing HEADERS frames on a request stream; no connection-specific
fields, ``te`` only as ``trailers``) and, for what Caddy sends, quic-go's ``http3``
response writer as Caddy 2.6.2 uses it (``content-length`` for short responses, ``date``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aioquic.h3.connection import ErrorCode

from txcaddy.http._h1head import DATE
from txcaddy.http._h2fields import _fields  # the same rules (RFC 9114 §4.2 as RFC 9113 §8.2.2)
from txcaddy.http._h2stream import _NO_BODY_STATUSES
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request, RequestBody
from txcaddy.http.response import Response

if TYPE_CHECKING:
    from txcaddy.http._h3 import HTTP3Connection


class _Stream:
    """One request stream: its request body (whose producer it is) and its response's producer."""

    __slots__ = (
        "id", "connection", "request", "response", "body", "producer", "streaming",
        "producer_paused", "closed", "remote_ended", "local_ended", "unacked", "paused",
    )

    def __init__(self, stream_id: int, connection: HTTP3Connection) -> None:
        self.id = stream_id
        self.connection = connection
        self.request: Request | None = None
        self.response: H3Response | None = None
        self.body: RequestBody | None = None
        self.producer: Any = None
        self.streaming = True
        self.producer_paused = False
        self.closed = False
        self.remote_ended = False
        self.local_ended = False
        self.unacked = 0  # body bytes received and not yet taken by the consumer
        self.paused = False

    # IPushProducer for the request body: pausing stops the stream's window from moving.
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.acknowledge(True)

    def body_drained(self) -> None:
        """The body's consumer took what was kept (or it was discarded)."""
        self.acknowledge(True)

    def acknowledge(self, send: bool) -> None:
        """Count what the consumer took as taken, so the window may move on."""
        if self.paused or not self.unacked or self.body is None or self.body.buffered:
            return
        self.unacked = 0
        if send:
            self.connection._transmit()

    def stopProducing(self) -> None:
        self.connection._cancel(self, ErrorCode.H3_REQUEST_CANCELLED)


class H3Response(Response):
    """A response sent as HEADERS, DATA and (trailers) HEADERS frames on one request stream.

    As ``H2Response``: the head is held until the body passes 2 KiB or the response
    ends, so a short response gets a ``content-length``.
    """

    HOLD_LIMIT = 2048

    def __init__(self, connection: HTTP3Connection, stream: _Stream, head_only: bool) -> None:
        super().__init__()
        self._connection = connection
        self._stream = stream
        self._head_only = head_only
        self._body_allowed = True
        self._holding = False
        self._held: list[bytes] = []
        self._held_size = 0

    def _send_head(self, status: int) -> None:
        self._body_allowed = not (self._head_only or status in _NO_BODY_STATUSES)
        self._holding = True

    def _emit_head(self, content_length: int | None) -> None:
        self._holding = False
        headers = self.headers
        status = self.status
        if status in _NO_BODY_STATUSES:
            headers.delete_canonical(("Content-Length",))
        elif headers.values_of("Content-Length") is None and content_length is not None:
            if content_length > 0 or not self._head_only:
                headers.set("Content-Length", str(content_length))
        fields = [(b":status", str(status).encode("ascii"))]
        fields.extend(_fields(headers))
        if headers.values_of("Date") is None:
            fields.append((b"date", DATE.line(self._connection.clock())[6:-2].encode("ascii")))
        held, self._held = self._held, []
        end = content_length is not None and (not held or not self._body_allowed) and not self.trailers
        self._connection._send_headers(self._stream, fields, end)
        if held and self._body_allowed and not end:
            self._connection._send_data(self._stream, b"".join(held), False)

    def flush(self) -> None:
        """Send the head and anything held back now (streamed responses)."""
        if self._holding and not self._stream.closed:
            self._emit_head(None)
            self._connection._transmit()

    def _send_body(self, data: bytes) -> None:
        if self._stream.closed:
            return
        if self._holding:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size > self.HOLD_LIMIT:
                self._emit_head(None)
                self._connection._transmit()
            return
        if self._body_allowed and data:
            self._connection._send_data(self._stream, data, False)
            self._connection._transmit()

    def _send_end(self) -> None:
        stream = self._stream
        if stream.closed:
            return
        connection = self._connection
        if self._holding:
            self._emit_head(self._held_size)
        if not stream.local_ended and not stream.closed:
            if self.trailers:
                connection._send_headers(stream, _fields(self.trailers), True)
            else:
                connection._send_data(stream, b"", True)
        connection._transmit()
        connection._response_done(stream)

    def register_producer(self, producer: Any, streaming: bool) -> None:
        self.flush()
        stream = self._stream
        stream.producer = producer
        stream.streaming = streaming
        stream.producer_paused = False
        if stream.closed:
            producer.stopProducing()
            return
        self._connection._pace(stream)

    def unregister_producer(self) -> None:
        self._stream.producer = None

    def abort_connection(self) -> None:
        """Cut this stream off (RESET_STREAM), as for HTTP/2's RST_STREAM."""
        self._connection._cancel(self._stream, ErrorCode.H3_INTERNAL_ERROR)

    def write_informational(self, status: int, headers: Headers | None = None) -> None:
        """Send a 1xx response (103 Early Hints, 100 Continue) before the final one."""
        if self.head_sent or self._stream.closed or not 100 <= status < 200 or status == 101:
            return
        fields = [(b":status", str(status).encode("ascii"))]
        if headers is not None:
            fields.extend(_fields(headers))
        self._connection._send_headers(self._stream, fields, False)
        self._connection._transmit()

