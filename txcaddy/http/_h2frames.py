"""The server's HTTP/2 connection below the protocol: ``h2`` subclasses, frames and HPACK.

``_ServerConnection`` is ``h2``'s connection with Go's per-stream refusal over
MAX_CONCURRENT_STREAMS (``x/net/http2/server.go``) and direct writes of a response's
HEADERS/CONTINUATION and DATA frames (RFC 9113 §4.1, §6.1, §6.2, §6.10); ``_FrameBuffer``
refuses an oversized header block as it grows (CVE-2024-27316); ``_decoded_field`` and
``IndexedHeaderTable`` make hpack's decoder and encoder table cheaper with the same results
(RFC 7541). The SETTINGS values are Go's server's, which Caddy does not change
(``shared/spec/wave2-caddy-facts.md`` §5.2). Importing this module installs the hpack
decoding shortcut.
"""

from __future__ import annotations

import struct
from typing import Any

import h2.config
import h2.connection
import h2.exceptions
import h2.frame_buffer
import h2.stream
import hpack.hpack
import hpack.table
from h2.errors import ErrorCodes
from hyperframe.frame import Frame

# The connection preface of HTTP/2 by prior knowledge: defined where connections are told
# apart, which must not load h2.
from txcaddy.http._httpfactory import PREFACE  # noqa: F401 (re-exported)

# Go's server values (x/net/http2/server.go), which Caddy does not change.
MAX_CONCURRENT_STREAMS = 250
INITIAL_WINDOW_SIZE = 1 << 20
MAX_FRAME_SIZE = 1 << 20
MAX_HEADER_LIST_SIZE = (1 << 20) + 320
CONNECTION_WINDOW = 1 << 20


class _FrameBuffer(h2.frame_buffer.FrameBuffer):
    """``h2``'s frame reader, refusing a header block larger than the header list may be.

    ``h2`` keeps every HEADERS/CONTINUATION frame of a block until END_HEADERS
    (up to 64 frames of up to 1 MiB each). An encoded block longer than
    ``MAX_HEADER_LIST_SIZE`` cannot decode to a list within it (each field
    costs 32 bytes in the list, more than its HPACK framing), so it is refused
    as it grows, not after 64 MiB.
    """

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        result = super()._update_header_buffer(f)
        buffered = self._headers_buffer
        if buffered and sum(len(frame.data) for frame in buffered) > MAX_HEADER_LIST_SIZE:
            raise h2.exceptions.ProtocolError("header block larger than MAX_HEADER_LIST_SIZE")
        return result


class _ServerConnection(h2.connection.H2Connection):
    """``h2``'s connection, refusing one stream over the limit instead of the whole connection.

    ``h2`` answers a HEADERS frame beyond MAX_CONCURRENT_STREAMS with a
    connection error (GOAWAY), which kills every stream. Go resets only that
    stream: PROTOCOL_ERROR once the client acknowledged our SETTINGS (it knew
    better), REFUSED_STREAM before. Handlers still running for streams that
    are no longer open (``orphans``: reset by the client, or by us) count
    toward the limit too, as Go counts running handlers; a stream refused for
    them gets REFUSED_STREAM. The header block is decoded either way, so the
    HPACK state stays in step.
    """

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self.orphans = 0  # handlers still running for streams no longer open
        self.refused = 0  # streams refused, for the protocol's rapid-reset budget
        self._admitting = False

    @property
    def open_inbound_streams(self) -> int:
        # h2 reads this only to refuse an inbound stream; the check is ours (below).
        if self._admitting:
            return 0
        return super().open_inbound_streams

    def _receive_headers_frame(self, frame: Any) -> Any:
        if frame.stream_id in self.streams:
            return super()._receive_headers_frame(frame)
        # h2 counts open streams by walking all it keeps (and drops the closed ones then): only
        # worth it when the count could reach the limit. (3 % of a proxied request's CPU with
        # 100 streams in flight.)
        known = len(self.streams)
        open_now = known if known + self.orphans < MAX_CONCURRENT_STREAMS else self.open_inbound_streams
        self._admitting = True
        try:
            frames, events = super()._receive_headers_frame(frame)
        finally:
            self._admitting = False
        if open_now + 1 > MAX_CONCURRENT_STREAMS:
            acked = self.local_settings.max_concurrent_streams == MAX_CONCURRENT_STREAMS
            code = ErrorCodes.PROTOCOL_ERROR if acked else ErrorCodes.REFUSED_STREAM
        elif open_now + self.orphans + 1 > MAX_CONCURRENT_STREAMS:
            code = ErrorCodes.REFUSED_STREAM
        else:
            return frames, events
        self.reset_stream(frame.stream_id, code)
        self.refused += 1
        return frames, [e for e in events if getattr(e, "stream_id", None) != frame.stream_id]

    # The two sends of every response, without h2's frame objects. h2's ``send_headers`` and
    # ``send_data`` build hyperframe objects (flags sets, padding and priority mixins) only to
    # serialise them at once, and re-scan the fields; these make the same state transitions and
    # window accounting and write the frame bytes directly (~4 % of a proxied HTTP/2 request).
    # They rely on h2 4's state machines (``state_machine.process_input``), like h2's own
    # methods; setup.cfg keeps h2 below 5.

    def send_response_headers(self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        """``send_headers`` for a final (non-1xx) response head, or trailers, on an open stream."""
        stream = self._get_stream_by_id(stream_id)
        self.state_machine.process_input(_CONN_SEND_HEADERS)
        stream.state_machine.process_input(_STREAM_SEND_HEADERS)
        block = self.encoder.encode(fields)
        if end:
            stream.state_machine.process_input(_STREAM_SEND_END_STREAM)
        size = self.max_outbound_frame_size
        out = self._data_to_send
        if len(block) <= size:
            out += _frame_head(len(block), 0x1, 0x4 | (0x1 if end else 0), stream_id)
            out += block
            return
        out += _frame_head(size, 0x1, 0x1 if end else 0, stream_id)  # HEADERS, then CONTINUATIONs
        out += block[:size]
        for start in range(size, len(block), size):
            piece = block[start:start + size]
            last = start + size >= len(block)
            out += _frame_head(len(piece), 0x9, 0x4 if last else 0, stream_id)
            out += piece

    def send_response_data(self, stream_id: int, data: bytes, end: bool) -> None:
        """``send_data`` for a piece the caller checked against both windows and the frame size."""
        stream = self._get_stream_by_id(stream_id)
        self.state_machine.process_input(_CONN_SEND_DATA)
        stream.state_machine.process_input(_STREAM_SEND_DATA)
        if end:
            stream.state_machine.process_input(_STREAM_SEND_END_STREAM)
        size = len(data)
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        out = self._data_to_send
        out += _frame_head(size, 0x0, 0x1 if end else 0, stream_id)
        out += data


def _decoded_field(field: Any, raw: bool, _copy: Any = hpack.hpack._unicode_if_needed) -> Any:
    """hpack's ``_unicode_if_needed`` without the copy of a field already made of bytes.

    hpack's decoder passes every decoded field through that function, which for ``raw=True``
    (all h2 asks for) rebuilds the same ``HeaderTuple`` from ``bytes(name)`` and
    ``bytes(value)``: two Python-level tuple constructions per field, 8 % of the CPU of an
    HTTP/2 request in the server (measured). Fields whose name and value are bytes already
    are returned as they are; anything else (memoryview slices of literals, ``raw=False``)
    still goes through hpack's own function. Installed when this module is imported.
    """
    if raw and type(field[0]) is bytes and type(field[1]) is bytes:
        return field
    return _copy(field, raw)


hpack.hpack._unicode_if_needed = _decoded_field  # type: ignore[assignment]  # same contract


class IndexedHeaderTable(hpack.table.HeaderTable):
    """hpack's encoder table, finding dynamic entries through dicts instead of a linear scan.

    ``HeaderTable.search`` walks the whole dynamic table for every field it encodes (a few
    % of a proxied HTTP/2 request on each side). Entries are numbered as they are added; the
    table always holds the newest ones, so an entry numbered ``n`` is at position
    ``added - n`` while that is below the table's length. Search results are the same as
    hpack's: a static exact match, else the newest dynamic exact match, else a static name
    match, else the newest dynamic name match.
    """

    def __init__(self) -> None:
        super().__init__()
        self._added = 0
        self._fields: dict[tuple[bytes, bytes], int] = {}  # field -> number of its newest entry
        self._names: dict[bytes, int] = {}  # name -> number of its newest entry

    def add(self, name: bytes, value: bytes) -> None:
        size = hpack.table.table_entry_size(name, value)
        if size > self._maxsize:  # larger than the table: it empties (as hpack's add)
            self.dynamic_entries.clear()
            self._current_size = 0
            return
        self.dynamic_entries.appendleft((name, value))
        self._current_size += size
        self._shrink()
        self._added = added = self._added + 1
        self._fields[(name, value)] = added
        self._names[name] = added
        if len(self._fields) > 4 * len(self.dynamic_entries) + 64:
            self._reindex()

    def _reindex(self) -> None:
        """Forget numbers of evicted entries (the dicts would grow with every new field)."""
        fields: dict[tuple[bytes, bytes], int] = {}
        names: dict[bytes, int] = {}
        number = self._added
        for name, value in self.dynamic_entries:  # newest first
            fields.setdefault((name, value), number)
            names.setdefault(name, number)
            number -= 1
        self._fields = fields
        self._names = names

    def search(self, name: bytes, value: bytes) -> tuple[int, bytes, bytes | None] | None:
        static = self.STATIC_TABLE_MAPPING.get(name)
        if static is not None:
            index = static[1].get(value)
            if index is not None:
                return index, name, value
        length = len(self.dynamic_entries)
        offset = self.STATIC_TABLE_LENGTH + 1
        number = self._fields.get((name, value))
        if number is not None and self._added - number < length:
            return offset + self._added - number, name, value
        if static is not None:
            return static[0], name, None
        number = self._names.get(name)
        if number is not None and self._added - number < length:
            return offset + self._added - number, name, None
        return None


_CONN_SEND_HEADERS = h2.connection.ConnectionInputs.SEND_HEADERS
_CONN_SEND_DATA = h2.connection.ConnectionInputs.SEND_DATA
_STREAM_SEND_HEADERS = h2.stream.StreamInputs.SEND_HEADERS
_STREAM_SEND_DATA = h2.stream.StreamInputs.SEND_DATA
_STREAM_SEND_END_STREAM = h2.stream.StreamInputs.SEND_END_STREAM
_FRAME_HEAD = struct.Struct(">BHBBL").pack


def _frame_head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9-byte frame header (RFC 9113 §4.1)."""
    return _FRAME_HEAD(length >> 16, length & 0xFFFF, kind, flags, stream_id)
