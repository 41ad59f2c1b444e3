"""The upstream HTTP/1.1 response head, from its bytes to a ``ResponseHead``.

The status line and the header fields, as ``_h1response.ResponseParser`` finds them (Go's
net/http ReadResponse and textproto reader: a bare-LF head accepted, a field name with
surrounding space refused).  A module of its own so that the optional mypyc build compiles
it: the parser class around it stays interpreted (see docs/performance.md).
"""

from __future__ import annotations

from txcaddy.reverseproxy._exchange import RawHeaders, ResponseHead
from txcaddy.reverseproxy.errors import UpstreamProtocolError

_SPACE_BYTES = frozenset(b" \t\r\n\x0b\x0c")  # what bytes.strip() removes
# Lengths of the response fields the parser looks at (content-length, transfer-encoding,
# connection): other names are not lower-cased at all.
_NOTICED_LENGTHS = frozenset({14, 17, 10})


def parse_head(raw: bytes, crlf: bool) -> tuple[ResponseHead, bytes | None, bytes | None, bool]:
    """One head without its blank line: the head, its Content-Length and Transfer-Encoding
    values (None when absent) and whether it asks to close the connection.

    ``crlf`` says the head ended with CRLF CRLF (the usual case: split once, no per-line
    stripping unless some line ends in a bare LF).
    """
    if crlf and raw.count(b"\n") == raw.count(b"\r\n"):
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
    return ResponseHead(version, status, reason, headers), content_length, transfer_encoding, connection_close
