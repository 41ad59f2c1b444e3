"""Go's ``net/url`` escaping: ``PathEscape``-for-paths, ``PathUnescape``, ``QueryEscape``,
``QueryUnescape`` and ``ParseQuery``.

Caddy reads and rewrites request paths and queries through these, so a ``%`` that starts no
valid escape makes the whole value invalid (Python's ``unquote`` would keep it), ``+`` is a
space only in a query, and invalid UTF-8 survives decoding (as surrogate escapes). The
functions that fail in Go return None here: their callers only fall back.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote_plus, unquote

__all__ = [
    "parse_query",
    "path_escape",
    "path_unescape",
    "query_escape",
    "query_unescape",
    "valid_encoded",
]

BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
"""A ``%`` that Go's unescaping refuses."""

_PERCENT_HEX = re.compile(r"%([0-9A-Fa-f]{2})")

# Bytes Go's path escaping leaves alone; ``validEncoded`` also accepts these sub-delims.
_PATH_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~$&+,/:;=@")
VALID_ENCODED = _PATH_UNRESERVED | frozenset("!'()*[]%")
"""What ``url.validEncoded`` accepts in an escaped path."""


def path_unescape(text: str) -> str | None:
    """``url.PathUnescape``: ``%xx`` decoded (``+`` kept); None for a bad escape."""
    if "%" not in text:
        return text
    if BAD_ESCAPE.search(text):
        return None
    raw = _PERCENT_HEX.sub(lambda m: chr(int(m.group(1), 16)), text.encode("utf-8", "surrogateescape").decode("latin-1"))
    return raw.encode("latin-1").decode("utf-8", "surrogateescape")


def query_unescape(text: str) -> str | None:
    """``url.QueryUnescape``; None for a malformed ``%`` escape."""
    if "%" in text:
        if BAD_ESCAPE.search(text):
            return None
        return unquote(text.replace("+", " "), errors="surrogateescape")
    return text.replace("+", " ") if "+" in text else text


def query_escape(text: str) -> str:
    """``url.QueryEscape``."""
    return quote_plus(text.encode("utf-8", "surrogateescape"), safe="")


def path_escape(path: str) -> str:
    """The escaping of ``URL.EscapedPath`` (``escape(p, encodePath)``)."""
    if all(ch in _PATH_UNRESERVED for ch in path):
        return path
    out = []
    for byte in path.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        out.append(ch if ch in _PATH_UNRESERVED else f"%{byte:02X}")
    return "".join(out)


def valid_encoded(raw: str) -> bool:
    """``url.validEncoded(raw, encodePath)``: only bytes an escaped path may hold."""
    return all(ch in VALID_ENCODED for ch in raw)


@lru_cache(maxsize=512)
def _parse_query_cached(raw: str) -> tuple[dict[str, tuple[str, ...]], bool]:
    values: dict[str, list[str]] = {}
    failed = False
    for part in raw.split("&"):
        if ";" in part:
            failed = True
            continue
        if not part:
            continue
        key, _, value = part.partition("=")
        key_text = query_unescape(key)
        value_text = query_unescape(value) if key_text is not None else None
        if key_text is None or value_text is None:
            failed = True
            continue
        values.setdefault(key_text, []).append(value_text)
    return {k: tuple(v) for k, v in values.items()}, failed


def parse_query(raw: str) -> tuple[dict[str, tuple[str, ...]], bool]:
    """``url.ParseQuery``: the values (do not mutate) and whether it reported an error."""
    if not raw:
        return {}, False
    return _parse_query_cached(raw)
