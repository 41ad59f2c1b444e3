"""The h2c upstream client below the connection: ``h2``'s client connection, made cheaper.

``_ClientConnection`` is ``h2``'s client ``H2Connection`` writing a request's HEADERS/
CONTINUATION and DATA frames as bytes (RFC 9113 §4.1, §6.1, §6.2, §6.10) and checking a
response header block in one pass (``_malformed_response``: RFC 9113 §8.1, §8.2, what h2's
inbound validation does); ``h2_request_headers`` builds a request's HEADERS as Go's http2
transport does (pseudo-fields first, HTTP/1.1-only fields dropped, secrets never indexed,
RFC 7541 §7.1.3); ``_decode_huffman`` caches hpack's Huffman decoding per upstream connection
(installed when this module is imported). ``HTTP2Connection`` (``_h2connection``) uses them.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any

import hpack.hpack
from h2.config import H2Configuration
from h2.connection import AllowedStreamIDs, ConnectionInputs, H2Connection
from h2.errors import ErrorCodes
from h2.events import InformationalResponseReceived, ResponseReceived, TrailersReceived
from h2.exceptions import ProtocolError, StreamClosedError, StreamIDTooLowError, TooManyStreamsError
from h2.stream import StreamInputs
from hpack import NeverIndexedHeaderTuple
from hyperframe.frame import RstStreamFrame

from txcaddy.http._h2frames import IndexedHeaderTable
from txcaddy.reverseproxy._dial import UpstreamAddress
from txcaddy.reverseproxy._exchange import RawHeaders

# Connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2); the framing is HTTP/2's own.
_DROPPED = frozenset((
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade",
    b"content-length", b"host"))


# Fields hpack must never index (h2's outbound normalisation marks them the same way).
_SECRET = frozenset((b"authorization", b"proxy-authorization"))
_FRAME_HEAD = struct.Struct(">BHBBL").pack
# Fields that mean something only to an HTTP/1.1 connection, malformed in a response.
_CONNECTION_SPECIFIC = frozenset((
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"))
#: A received field name: no controls, space, upper case, DEL, non-ASCII or colon (RFC 9113 §8.2.1).
_FIELD_NAME = re.compile(rb"[^\x00-\x20A-Z\x7f-\xff:]+").fullmatch
#: What makes a received field value malformed: NUL, CR, LF, or whitespace at either end.
_BAD_FIELD_VALUE = re.compile(rb"[\x00\n\r]|\A[ \t]|[ \t]\Z").search


def _malformed_response(fields: RawHeaders, trailers: bool) -> str | None:
    """Why a response head (or trailer section) is malformed (RFC 9113 §8.1, §8.2), or None.

    One pass doing what h2's inbound validation does with a chain of generators per field:
    pseudo-fields (only ``:status``, once, first; none in trailers), lower-case token-ish
    names, no connection-specific fields, ``TE`` only ``trailers``, values without NUL, CR,
    LF or surrounding whitespace.
    """
    status = False
    regular = False
    for name, value in fields:
        if name[:1] == b":":
            if trailers or regular or status or name != b":status":
                return f"pseudo-header field {name!r} not allowed here"
            status = True
        else:
            regular = True
            if not _FIELD_NAME(name) or name in _CONNECTION_SPECIFIC:
                return f"field name {name!r} not allowed"
            if name == b"te" and value.lower() != b"trailers":
                return f"TE {value!r} not allowed"
        if value and _BAD_FIELD_VALUE(value):
            return f"malformed value of {name!r}"
    if not trailers and not status:
        return "no :status in the response"
    return None


def _frame_head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte frame header (RFC 9113 §4.1)."""
    return _FRAME_HEAD(length >> 16, length & 0xFFFF, kind, flags, stream_id)


#: Huffman-coded strings remembered per upstream connection, and the longest remembered.
HUFFMAN_CACHE_SIZE = 256
HUFFMAN_CACHE_LENGTH = 128
#: The cache of the upstream connection decoding a header block now (None: no caching).
_huffman_cache: dict[bytes, bytes] | None = None


def _decode_huffman(data: Any, _decode: Callable[[Any], bytes] = hpack.hpack.decode_huffman) -> bytes:
    """hpack's ``decode_huffman``, remembering results while an upstream block is decoded.

    Upstreams such as nginx send their response fields as Huffman-coded literals without
    indexing, the same strings on every response (content type, server, dates within a
    second); decoding them bit by bit in Python was ~10 % of a proxied gRPC call. The cache is
    the connection's own (no timing hints across connections) and bounded; anything else
    (the server side, long strings) decodes as before.
    """
    cache = _huffman_cache
    if cache is None or len(data) > HUFFMAN_CACHE_LENGTH:
        return _decode(data)
    key = bytes(data)
    value = cache.get(key)
    if value is None:
        value = _decode(key)
        if len(cache) >= HUFFMAN_CACHE_SIZE:
            cache.clear()
        cache[key] = value
    return value


hpack.hpack.decode_huffman = _decode_huffman  # type: ignore[assignment]  # same contract


class _ClientConnection(H2Connection):
    """``h2``'s client connection with direct sends of a request's HEADERS and DATA.

    ``send_headers`` and ``send_data`` build hyperframe objects only to serialise them, and
    ``send_headers`` re-validates and re-normalises fields that ``h2_request_headers`` built
    (lower-case names, no connection-specific fields, pseudo-fields first) and counts the open
    streams by walking every stream h2 keeps. These make the same state transitions and window
    accounting and write the frame bytes directly; the stream count is walked only when it
    could reach the limit (the walk also drops closed streams). Trailers and everything else
    still go through h2's own methods. They rely on h2 4's state machines, like the server's
    ``_ServerConnection`` (``txcaddy.http._h2``).
    """

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config=config)
        self.encoder.header_table = IndexedHeaderTable()
        self.huffman_cache: dict[bytes, bytes] = {}

    def _receive_frame(self, frame: Any) -> Any:
        # h2's own, less its first line: a trace log call whose argument, ``repr(frame)``, is
        # built for every frame (data included) even though the logger drops it: 2-5 % of a
        # proxied gRPC call. The errors are handled as h2 handles them.
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as error:
            if not self._stream_is_closed_by_reset(error.stream_id):
                raise
            # A frame on a stream we reset: answer with RST_STREAM, a stream error only.
            reset = RstStreamFrame(error.stream_id)
            reset.error_code = error.error_code
            self._prepare_for_sending([reset])
            return error._events
        except StreamIDTooLowError as error:
            if self._stream_is_closed_by_reset(error.stream_id):
                reset = RstStreamFrame(error.stream_id)
                reset.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([reset])
                return []
            if self._stream_is_closed_by_end(error.stream_id):
                raise StreamClosedError(error.stream_id) from error
            raise
        self._prepare_for_sending(frames)
        return events

    def _receive_headers_frame(self, frame: Any) -> Any:
        # Inbound fields are checked here in one pass (``_malformed_response``), h2's own
        # validation being off; a malformed block is a connection error, as in h2.
        global _huffman_cache
        _huffman_cache = self.huffman_cache
        try:
            frames, events = super()._receive_headers_frame(frame)
        finally:
            _huffman_cache = None
        event: Any
        for event in events:
            kind = type(event)
            if kind is ResponseReceived or kind is InformationalResponseReceived:
                error = _malformed_response(event.headers, False)
            elif kind is TrailersReceived:
                error = _malformed_response(event.headers, True)
            else:
                continue
            if error is not None:
                raise ProtocolError(f"malformed response header block: {error}")
        return frames, events

    def forget_closed(self, stream_id: int) -> None:
        """Drop a closed stream from ``streams`` now, as h2's open-stream count would later.

        h2 keeps closed streams in ``streams`` until it next counts the open ones (walking them
        all); dropping ours as they end keeps that count cheap (``has_room``). Frames arriving
        later for the stream are handled from ``_closed_streams``, as after h2's own sweep.
        """
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = stream.closed_by

    def send_request_headers(self, stream_id: int, fields: RawHeaders, end: bool,
                             method: bytes, authority: bytes) -> None:
        """``send_headers`` opening a new stream with the fields of ``h2_request_headers``."""
        limit = self.remote_settings.max_concurrent_streams
        if len(self.streams) >= limit:
            open_now = self.open_outbound_streams
            if open_now + 1 > limit:
                raise TooManyStreamsError(f"Max outbound streams is {limit}, {open_now} open")
        self.state_machine.process_input(ConnectionInputs.SEND_HEADERS)
        stream = self._begin_new_stream(stream_id, AllowedStreamIDs.ODD)
        stream.state_machine.process_input(StreamInputs.SEND_HEADERS)
        block = self.encoder.encode(fields)
        if end:
            stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)
        stream._authority = authority
        stream.request_method = method
        size = self.max_outbound_frame_size
        out = self._data_to_send
        if len(block) <= size:
            out += _frame_head(len(block), 0x1, 0x4 | (0x1 if end else 0), stream_id)
            out += block
            return
        out += _frame_head(size, 0x1, 0x1 if end else 0, stream_id)  # HEADERS, CONTINUATIONs
        out += block[:size]
        for start in range(size, len(block), size):
            piece = block[start:start + size]
            out += _frame_head(len(piece), 0x9, 0x4 if start + size >= len(block) else 0,
                               stream_id)
            out += piece

    def send_request_data(self, stream_id: int, data: bytes, end: bool) -> None:
        """``send_data`` for a piece the caller checked against both windows and the frame size."""
        stream = self._get_stream_by_id(stream_id)
        self.state_machine.process_input(ConnectionInputs.SEND_DATA)
        stream.state_machine.process_input(StreamInputs.SEND_DATA)
        if end:
            stream.state_machine.process_input(StreamInputs.SEND_END_STREAM)
        size = len(data)
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        out = self._data_to_send
        out += _frame_head(size, 0x0, 0x1 if end else 0, stream_id)
        out += data


def h2_request_headers(address: UpstreamAddress, method: bytes, target: bytes,
                       headers: RawHeaders, body_length: int | None,
                       scheme: bytes = b"http") -> RawHeaders:
    """The HEADERS of a request: pseudo-fields first, names lower-cased, HTTP/1.1-only ones
    dropped (``Host`` becomes ``:authority``; ``TE`` only as ``trailers``)."""
    authority = b""
    fields: RawHeaders = []
    for name, value in headers:
        lower = name.lower()
        if lower in _DROPPED:
            if lower == b"host" and not authority:
                authority = value
            continue
        if lower == b"te":
            if b"trailers" not in value.lower():
                continue
            value = b"trailers"  # the only TE value HTTP/2 allows
        value = value.strip()  # as h2's outbound normalisation did
        if lower in _SECRET or (lower == b"cookie" and len(value) < 20):
            fields.append(NeverIndexedHeaderTuple(lower, value))
            continue
        fields.append((lower, value))
    if not authority:
        host_text = f"[{address.host}]" if ":" in address.host else address.host
        authority = (f"{host_text}:{address.port}" if address.port else host_text or
                     "localhost").encode()
    request_headers: RawHeaders = [
        (b":method", method), (b":scheme", scheme), (b":authority", authority),
        (b":path", target)]
    if body_length is not None and body_length >= 0:
        request_headers.append((b"content-length", b"%d" % body_length))
    request_headers += fields
    return request_headers
