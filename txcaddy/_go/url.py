"""Go's ``net/url``: the escaping Caddy reads and rewrites requests through, and ``url.Parse``
as far as Caddy's upstream addresses need it.

Escaping (``PathEscape``-for-paths, ``PathUnescape``, ``QueryEscape``, ``QueryUnescape``,
``ParseQuery``): a ``%`` that starts no valid escape makes the whole value invalid (Python's
``unquote`` would keep it), ``+`` is a space only in a query, and invalid UTF-8 survives decoding
(as surrogate escapes). The functions that fail in Go return None here: their callers only fall
back.

Parsing: ``reverse_proxy`` reads an upstream written with a scheme (``https://host:port``)
through ``url.Parse`` and then ``URL.Hostname``/``URL.Port``; what it accepts, rejects and how it
words the rejection must be Go's. Only the parts of a URL that the adapter looks at are kept (no
user info, no opaque part).
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote_plus, unquote

from txcaddy._go.errors import GoError
from txcaddy._go.strconv import quote as go_quote

__all__ = [
    "URL",
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

def _valid_optional_port(port: str) -> bool:
    if not port:
        return True
    return port[0] == ":" and all("0" <= c <= "9" for c in port[1:])


_HOST_OK = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\""
)
_HEX = "0123456789abcdefABCDEF"


def _unescape_host(host: str) -> str:
    """net/url's unescape(host, encodeHost): %-escapes decoded, odd ASCII refused."""
    out = bytearray()
    i = 0
    raw = host.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c == 0x25:  # '%'
            if i + 2 >= len(raw) or chr(raw[i + 1]) not in _HEX or chr(raw[i + 2]) not in _HEX:
                bad = raw[i : i + 3].decode("utf-8", "replace")
                raise GoError(f"invalid URL escape {go_quote(bad)}")
            if int(chr(raw[i + 1]), 16) < 8 and raw[i : i + 3] != b"%25":
                raise GoError(f"invalid URL escape {go_quote(raw[i : i + 3].decode())}")
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
            continue
        if c < 0x80 and chr(c) not in _HOST_OK:
            raise GoError(f"invalid character {go_quote(chr(c))} in host name")
        out.append(c)
        i += 1
    return out.decode("utf-8", "replace")


class URL:
    """The parts of a net/url.URL that upstream addresses use; ``URL(raw)`` is ``url.Parse``.

    Raises :class:`GoError` with Go's message when ``url.Parse`` would fail.
    """

    def __init__(self, raw: str) -> None:
        try:
            self._parse(raw)
        except ValueError as e:
            raise GoError(f"parse {go_quote(raw)}: {e}")

    def _parse(self, raw: str) -> None:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
            raise GoError("net/url: invalid control character in URL")
        rest, _, self.fragment = raw.partition("#")
        self.scheme = ""
        for i, c in enumerate(rest):
            if c.isascii() and c.isalpha():
                continue
            if c.isdigit() or c in "+-.":
                if i == 0:
                    break
                continue
            if c == ":":
                if i == 0:
                    raise GoError("missing protocol scheme")
                self.scheme, rest = rest[:i].lower(), rest[i + 1 :]
            break
        rest, _, self.raw_query = rest.partition("?")
        self.host = ""
        if rest.startswith("//") and (self.scheme or not rest.startswith("///")):
            authority, slash, path = rest[2:].partition("/")
            rest = slash + path
            at = authority.rfind("@")
            self.host = self._parse_host(authority[at + 1 :] if at >= 0 else authority)
        elif self.scheme and not rest.startswith("/"):
            rest = ""  # opaque; Caddy never looks at it
        self.path = rest

    @staticmethod
    def _parse_host(host: str) -> str:
        if host.startswith("["):
            i = host.rfind("]")
            if i < 0:
                raise GoError("missing ']' in host")
            if not _valid_optional_port(host[i + 1 :]):
                raise GoError(f"invalid port {go_quote(host[i + 1 :])} after host")
        else:
            i = host.rfind(":")
            if i != -1 and not _valid_optional_port(host[i:]):
                raise GoError(f"invalid port {go_quote(host[i:])} after host")
        return _unescape_host(host)

    def _split(self) -> tuple[str, str]:
        host, port = self.host, ""
        colon = host.rfind(":")
        if colon != -1 and _valid_optional_port(host[colon:]):
            host, port = host[:colon], host[colon + 1 :]
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return host, port

    def hostname(self) -> str:
        """``URL.Hostname``: the host without port or IPv6 brackets."""
        return self._split()[0]

    def port(self) -> str:
        """``URL.Port``: the port digits, or ``""``."""
        return self._split()[1]
