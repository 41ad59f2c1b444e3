"""The FastCGI wire format: records, name-value pairs and the CGI response head.

Split out of ``_fastcgi`` (the ``fastcgi`` transport), which re-exports these names.
Follows the FastCGI 1.0 specification (fastcgi-archives: "FastCGI Specification", Open
Market 1996: section 3, records and name-value pairs; section 8, the record types) and
Caddy 2.6.2's ``modules/caddyhttp/reverseproxy/fastcgi/client.go`` (the CGI header block
on stdout read with ``textproto.ReadMIMEHeader``, ``Status`` giving the code).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from txcaddy.reverseproxy._exchange import RawHeaders, ResponseHead
from txcaddy.reverseproxy.errors import UpstreamProtocolError

# -- the record layer (FastCGI 1.0, section 3 and 8) ----------------------------------------

VERSION_1 = 1
BEGIN_REQUEST = 1
ABORT_REQUEST = 2
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
STDERR = 7
DATA = 8
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11
RESPONDER = 1
KEEP_CONN = 1
REQUEST_COMPLETE = 0

_HEADER = struct.Struct(">BBHHBx")
HEADER_LEN = 8
#: The most content one record carries (a multiple of 8, so no padding is needed).
MAX_CONTENT = 65528
#: The request id every exchange uses: one request at a time per connection.
REQUEST_ID = 1


class FastCGIError(UpstreamProtocolError):
    """The FastCGI server sent something that is not valid FastCGI (answered 502)."""


def record(rtype: int, request_id: int, content: bytes = b"") -> bytes:
    """One record: the 8-byte header, ``content`` (at most 65535 bytes) and padding to 8."""
    length = len(content)
    if length > 0xFFFF:
        raise ValueError("a FastCGI record carries at most 65535 bytes")
    padding = -length % 8
    return _HEADER.pack(VERSION_1, rtype, request_id, length, padding) + content + b"\0" * padding


def stream_records(rtype: int, request_id: int, data: bytes) -> list[bytes]:
    """``data`` on a stream (``PARAMS``, ``STDIN``) as records; empty data gives no record.

    The stream's end (an empty record) is written separately.
    """
    if len(data) <= MAX_CONTENT:
        return [record(rtype, request_id, data)] if data else []
    view = memoryview(data)
    return [record(rtype, request_id, bytes(view[i:i + MAX_CONTENT]))
            for i in range(0, len(data), MAX_CONTENT)]


def stream_pieces(rtype: int, request_id: int, data: bytes) -> list[bytes]:
    """``stream_records`` as pieces for one gathering write: headers, the data, padding.

    The data is not copied into the records (a 64 KiB body chunk per read otherwise is).
    """
    size = len(data)
    if not size:
        return []
    pieces: list[bytes] = []
    for start in range(0, size, MAX_CONTENT):
        length = min(MAX_CONTENT, size - start)
        padding = -length % 8
        pieces.append(_HEADER.pack(VERSION_1, rtype, request_id, length, padding))
        pieces.append(data if length == size else data[start:start + length])
        if padding:
            pieces.append(b"\0" * padding)
    return pieces


def _length(n: int) -> bytes:
    return bytes((n,)) if n < 128 else struct.pack(">I", n | 0x80000000)


def encode_pair(name: bytes, value: bytes) -> bytes:
    """One name-value pair: 1-byte lengths below 128, else 4-byte lengths with the top bit set."""
    return _length(len(name)) + _length(len(value)) + name + value


def encode_params(request_id: int, pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The whole ``PARAMS`` stream, its closing empty record included."""
    body = b"".join(encode_pair(n, v) for n, v in pairs)
    return b"".join(stream_records(PARAMS, request_id, body)) + record(PARAMS, request_id)


def decode_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    """The name-value pairs of a ``PARAMS`` (or ``GET_VALUES``) stream's content."""
    pairs = []
    i = 0
    lengths = [0, 0]
    try:
        while i < len(data):
            for k in (0, 1):
                if data[i] < 128:
                    lengths[k] = data[i]
                    i += 1
                else:
                    lengths[k] = struct.unpack_from(">I", data, i)[0] & 0x7FFFFFFF
                    i += 4
            end = i + lengths[0] + lengths[1]
            if end > len(data):
                raise FastCGIError("truncated name-value pair")
            pairs.append((data[i:i + lengths[0]], data[i + lengths[0]:end]))
            i = end
    except (IndexError, struct.error) as error:
        raise FastCGIError("truncated name-value pair") from error
    return pairs


def begin_request(request_id: int, keep_conn: bool) -> bytes:
    """``FCGI_BEGIN_REQUEST`` for the Responder role."""
    return record(BEGIN_REQUEST, request_id,
                  struct.pack(">HB5x", RESPONDER, KEEP_CONN if keep_conn else 0))


class RecordParser:
    """Splits received bytes into ``(type, request_id, content)`` records (padding dropped)."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        """The complete records in what arrived so far; raises ``FastCGIError`` on garbage.

        An incomplete record at the end is kept for the next call (``buffer``).
        """
        buffer = self.buffer + data if self.buffer else data
        offset = 0
        size = len(buffer)
        out = []
        while size - offset >= HEADER_LEN:
            version, rtype, request_id, length, padding = _HEADER.unpack_from(buffer, offset)
            if version != VERSION_1 or not BEGIN_REQUEST <= rtype <= UNKNOWN_TYPE:
                self.buffer = b""
                raise FastCGIError(
                    f"invalid FastCGI record header (version {version}, type {rtype})")
            end = offset + HEADER_LEN + length
            if size < end + padding:
                break
            out.append((rtype, request_id, buffer[offset + HEADER_LEN:end]))
            offset = end + padding
        self.buffer = buffer[offset:] if offset < size else b""
        return out


# -- the CGI response head (client.go: textproto.ReadMIMEHeader, then ``Status``) ---------------

_MAX_HEAD = 1 << 20


def _canonical(name: bytes) -> bytes:
    """Go's ``CanonicalMIMEHeaderKey`` for a valid token (``content-type`` → ``Content-Type``)."""
    return b"-".join(part[:1].upper() + part[1:].lower() for part in name.split(b"-"))


def parse_cgi_head(block: bytes) -> ResponseHead:
    """The response head of a CGI header block (lines, without the blank line ending it).

    ``Status: 404 Not Found`` gives the code (200 without it); like Caddy 2.6.2 the
    ``Status`` field stays among the headers.  Continuation lines are folded as Go does.
    """
    headers: RawHeaders = []
    for line in block.replace(b"\r\n", b"\n").split(b"\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + b" " + line.strip())
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or b" " in name:
            raise FastCGIError(f"malformed CGI header line {line[:80]!r}")
        headers.append((_canonical(name), value.strip(b" \t")))
    status = 200
    reason = b"OK"
    for name, value in headers:
        if name == b"Status":
            code, _, text = value.partition(b" ")
            if not code.isdigit() or not 100 <= int(code) <= 999:
                raise FastCGIError(f"invalid Status header {value[:40]!r}")
            status = int(code)
            reason = text
            break
    return ResponseHead(b"HTTP/1.1", status, reason, headers)


def _head_end(data: bytes) -> tuple[int, int]:
    """Where the header block ends and the body starts in ``data``, or (-1, -1)."""
    best = (-1, -1)
    for sep in (b"\r\n\r\n", b"\n\n", b"\n\r\n"):
        at = data.find(sep)
        if at != -1 and (best[0] == -1 or at < best[0]):
            best = (at, at + len(sep))
    if data.startswith(b"\r\n"):
        return 0, 2
    if data.startswith(b"\n"):
        return 0, 1
    return best
