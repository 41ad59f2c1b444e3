"""Go's ``net/textproto.CanonicalMIMEHeaderKey``: the header names Caddy's ``http.Header`` stores.

``x-forwarded-for`` becomes ``X-Forwarded-For``; a name with a byte that cannot be in a header
name (a space, ``{``, non-ASCII) is kept as written, as Go 1.19 does. Every header lookup on a
request goes through it, so answers are cached (4,096 names).
"""

from __future__ import annotations

__all__ = ["canonical_mime_header_key"]

_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_canonical_cache: dict[str, str] = {}


def canonical_mime_header_key(name: str) -> str:
    """``textproto.CanonicalMIMEHeaderKey``."""
    cached = _canonical_cache.get(name)
    if cached is not None:
        return cached
    if not name or any(ch not in _TOKEN_CHARS for ch in name):
        result = name  # Go leaves invalid names untouched
    else:
        result = "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))
    if len(_canonical_cache) < 4096:
        _canonical_cache[name] = result
    return result
