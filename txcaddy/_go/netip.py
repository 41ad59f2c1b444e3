"""Go's ``net/netip``: ``ParseAddr`` and ``ParsePrefix`` with Go's grammar and messages.

The one IP parser of txcaddy. Go refuses what Python's ``ipaddress`` accepts and the reverse
(``1.2.3.04``, ``00001::``, zones), and Caddy prints Go's message when a config entry is bad,
so ``trusted_proxies``, ``remote_ip`` ranges, client addresses and log filters all parse here.
The parser is a hand-written port of Go's: about as fast as ``ipaddress.ip_address`` (2 µs
for an IPv4 address), and callers on a request path cache answers per address.
"""

from __future__ import annotations

import ipaddress

from txcaddy._go.errors import GoError
from txcaddy._go.strconv import NumError, atoi, quote

__all__ = ["Address", "Network", "ParseAddrError", "parse_addr", "parse_prefix"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ParseAddrError(GoError):
    """An address or prefix Go's ``netip`` refuses, with Go's message."""


def _addr_error(text: str, msg: str, at: str = "") -> ParseAddrError:
    where = f" (at {quote(at)})" if at else ""
    return ParseAddrError(f"ParseAddr({quote(text)}): {msg}{where}")


def _parse_ipv4(text: str) -> int:
    value = 0
    octet = 0
    digits = 0
    fields = 0
    for i, ch in enumerate(text):
        if "0" <= ch <= "9":
            if digits == 1 and octet == 0:
                raise _addr_error(text, "IPv4 field has octet with leading zero")
            octet = octet * 10 + ord(ch) - 48
            digits += 1
            if octet > 255:
                raise _addr_error(text, "IPv4 field has value >255")
        elif ch == ".":
            if i == 0 or i == len(text) - 1 or text[i - 1] == ".":
                raise _addr_error(text, "IPv4 field must have at least one digit", text[i:])
            if fields == 3:
                raise _addr_error(text, "IPv4 address too long")
            value = (value << 8) | octet
            fields += 1
            octet = 0
            digits = 0
        else:
            raise _addr_error(text, "unexpected character", text[i:])
    if fields < 3:
        raise _addr_error(text, "IPv4 address too short")
    return (value << 8) | octet


def _parse_ipv6(text: str) -> tuple[int, str]:
    rest, sep, zone = text.partition("%")
    if sep and not zone:
        raise _addr_error(text, "zone must be a non-empty string")
    groups: list[int] = []  # 16-bit groups, in order
    ellipsis = -1  # index in groups where "::" was
    if rest.startswith("::"):
        ellipsis = 0
        rest = rest[2:]
        if not rest:
            return 0, zone
    while len(groups) < 8:
        off = 0
        acc = 0
        while off < len(rest) and rest[off] in "0123456789abcdefABCDEF":
            acc = (acc << 4) + int(rest[off], 16)
            off += 1
            if acc > 0xFFFF:
                raise _addr_error(text, "IPv6 field has value >=2^16", rest)
        if off == 0:
            raise _addr_error(text, "each colon-separated field must have at least one digit", rest)
        if off < len(rest) and rest[off] == ".":
            if ellipsis < 0 and len(groups) != 6:
                raise _addr_error(
                    text, "embedded IPv4 address must replace the final 2 fields of the address",
                    rest)
            if len(groups) > 6:
                raise _addr_error(
                    text, "too many hex fields to fit an embedded IPv4 at the end of the address",
                    rest)
            try:
                v4 = _parse_ipv4(rest)
            except ParseAddrError as exc:
                raise _addr_error(text, str(exc), rest) from None
            groups += (v4 >> 16, v4 & 0xFFFF)
            rest = ""
            break
        groups.append(acc)
        rest = rest[off:]
        if not rest:
            break
        if rest[0] != ":":
            raise _addr_error(text, "unexpected character, want colon", rest)
        if len(rest) == 1:
            raise _addr_error(text, "colon must be followed by more characters", rest)
        rest = rest[1:]
        if rest[0] == ":":
            if ellipsis >= 0:
                raise _addr_error(text, "multiple :: in address", rest)
            ellipsis = len(groups)
            rest = rest[1:]
            if not rest:
                break
    if rest:
        raise _addr_error(text, "trailing garbage after address", rest)
    if len(groups) < 8:
        if ellipsis < 0:
            raise _addr_error(text, "address string too short")
        groups[ellipsis:ellipsis] = [0] * (8 - len(groups))
    elif ellipsis >= 0:
        raise _addr_error(text, "the :: must expand to at least one field of zeros")
    value = 0
    for group in groups:
        value = (value << 16) | group
    return value, zone


def parse_addr(text: str) -> tuple[Address, str]:
    """Go's ``netip.ParseAddr`` (its accepted forms and its messages); returns (ip, zone)."""
    for ch in text:
        if ch == ".":
            return ipaddress.IPv4Address(_parse_ipv4(text)), ""
        if ch == ":":
            value, zone = _parse_ipv6(text)
            return ipaddress.IPv6Address(value), zone
        if ch == "%":
            raise _addr_error(text, "missing IPv6 address")
    raise _addr_error(text, "unable to parse IP")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_prefix(text: str) -> Network:
    """Go 1.19's ``netip.ParsePrefix`` (host bits may be set: ``127.0.0.1/8``)."""
    addr_text, _, bits_text = text.rpartition("/")
    try:
        addr, zone = parse_addr(addr_text)
    except ParseAddrError as exc:
        raise ParseAddrError(f"netip.ParsePrefix({quote(text)}): {exc}") from None
    if zone:
        raise ParseAddrError(
            f"netip.ParsePrefix({quote(text)}): IPv6 zones cannot be present in a prefix")
    try:
        bits = atoi(bits_text)
    except NumError:
        raise ParseAddrError(
            f"netip.ParsePrefix({quote(text)}): bad bits after slash: {quote(bits_text)}") from None
    if not 0 <= bits <= addr.max_prefixlen:
        raise ParseAddrError(f"netip.ParsePrefix({quote(text)}): prefix length out of range")
    return ipaddress.ip_network((addr, bits), strict=False)
