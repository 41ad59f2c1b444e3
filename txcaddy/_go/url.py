"""Go's ``net/url`` parsing, as far as Caddy's upstream addresses need it.

``reverse_proxy`` reads an upstream written with a scheme (``https://host:port``)
through ``url.Parse`` and then ``URL.Hostname``/``URL.Port``; what it accepts,
rejects and how it words the rejection must be Go's. Only the parts of a URL
that the adapter looks at are kept (no user info, no opaque part).
"""

from __future__ import annotations

from txcaddy.caddyfile._goparse import GoError, go_quote

__all__ = ["URL"]


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
