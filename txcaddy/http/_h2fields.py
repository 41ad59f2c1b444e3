"""HTTP/2 header fields: checking what a client sent, and shaping what the server sends.

Inbound request and trailer blocks are checked in one pass each, as Go's
``x/net/http2`` server does (``h2``'s own validation is off: its chain of generators per
field was ~7 % of the CPU of a proxied request): pseudo-header fields (RFC 9113 §8.3.1),
token field names in lower case and values without controls or surrounding whitespace
(RFC 9113 §8.2.1), no connection-specific fields (RFC 9113 §8.2.2). Outbound fields are
lowercased with the connection-specific ones dropped, so ``h2`` need not normalise them.
"""

from __future__ import annotations

import re
from typing import Any

from txcaddy.http.headers import Headers

# Fields that mean something only to an HTTP/1.1 connection (RFC 9113 §8.2.2).
_CONNECTION_SPECIFIC = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
})
_CONNECTION_SPECIFIC_RAW = frozenset(name.encode("ascii") for name in _CONNECTION_SPECIFIC)
#: A field name as Go's server takes it: a token (RFC 9110 §5.6.2), lowercase (RFC 9113 §8.2.1).
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch
#: What makes a field value malformed: control characters but HTAB (Go's ``ValidHeaderFieldValue``;
#: RFC 9113 forbids NUL, CR and LF), or whitespace at either end (RFC 9113 §8.2.1).
_BAD_FIELD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|\A[ \t]|[ \t]\Z").search


def _malformed_trailers(fields: Any) -> str | None:
    """Why a trailer section is malformed (RFC 9113 §8.1: no pseudo-header fields), or None."""
    for name, value in fields:
        if name[:1] == b":":
            return f"pseudo-header field {name!r} in trailers"
        if not _FIELD_NAME(name) or name in _CONNECTION_SPECIFIC_RAW:
            return f"field name {name!r} not allowed"
        if value and _BAD_FIELD_VALUE(value):
            return f"malformed value of {name!r}"
    return None


def _request_fields(
    fields: Any,
) -> tuple[bytes, bytes, bytes, bytes, list[tuple[bytes, bytes]], str | None]:
    """A request header block checked in one pass (RFC 9113 §8.1.1, §8.2, §8.3.1).

    Returns ``:method``, ``:path``, ``:authority``, ``:scheme``, the regular fields (cookies
    joined again, as Go does) and why the block is malformed (None when it is not).
    """
    method = path = authority = scheme = b""
    pairs: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    host: bytes | None = None
    error: str | None = None
    regular = False
    for name, value in fields:
        if value and _BAD_FIELD_VALUE(value):
            error = f"malformed value of {name!r}"
            break
        if name[:1] == b":":
            if regular:
                error = f"pseudo-header field {name!r} after a regular one"
                break
            if name == b":method" and not method:
                method = value
            elif name == b":path" and not path:
                path = value
            elif name == b":authority" and not authority:
                authority = value
            elif name == b":scheme" and not scheme:
                scheme = value
            else:
                error = f"pseudo-header field {name!r} repeated or unknown"
                break
            continue
        regular = True
        if not _FIELD_NAME(name):
            error = f"field name {name!r} not allowed"
            break
        if name == b"cookie":
            cookies.append(value)  # HTTP/2 may split them; Go joins them again
            continue
        if name in _CONNECTION_SPECIFIC_RAW or (name == b"te" and value != b"trailers"):
            error = f"connection-specific field {name!r}"
            break
        if name == b"host":
            host = value
        pairs.append((name, value))
    if error is None:
        # RFC 9113 §8.3.1 and §8.5: every request has :method; CONNECT has :authority and
        # neither :scheme nor :path; others have both, :path not empty. A Host field must
        # name the same authority (h2's rule; it keeps routing and the upstream in step).
        if not method:
            error = "no :method"
        elif method == b"CONNECT":
            if scheme or path or not authority:
                error = "CONNECT needs :authority alone"
        elif not scheme or not path:
            error = "no :scheme or :path"
        if error is None and host is not None and authority and host != authority:
            error = "Host and :authority differ"
        if error is None and not authority and host is None:
            error = "no :authority or Host"
    if error is None and cookies:
        pairs.append((b"cookie", b"; ".join(cookies)))
    return method, path, authority, scheme, pairs, error


def _fields(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Header fields as HTTP/2 wants them: lowercase names, no connection-specific ones."""
    out = []
    for name, values in headers.lists():
        lower = name.lower()
        if lower in _CONNECTION_SPECIFIC:
            continue
        key = lower.encode("latin-1")
        for value in values:
            if lower == "te" and value.strip().lower() != "trailers":
                continue
            out.append((key, value.encode("latin-1")))
    return out
