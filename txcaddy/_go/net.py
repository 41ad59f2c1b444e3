"""Go's ``net``: ``SplitHostPort``, ``JoinHostPort`` and ``ParseIP``.

Caddy splits every ``host:port`` it reads (the Host header, ``RemoteAddr``, site and upstream
addresses) with ``net.SplitHostPort``, whose rules decide what counts as a port
(``[::1]:80`` yes, ``::1`` no, ``a:b:c`` an error), so txcaddy splits them here.
"""

from __future__ import annotations

from txcaddy._go.errors import GoError
from txcaddy._go.netip import Address, ParseAddrError, parse_addr

__all__ = ["AddrError", "join_host_port", "parse_ip", "split_host_port"]


class AddrError(GoError):
    """``net.AddrError``: ``address <addr>: <reason>`` (the reason alone for an empty address).

    The message is built only when printed: request paths that fall back on a host without a
    port pay for no formatting.
    """

    def __init__(self, reason: str, address: str) -> None:
        super().__init__(reason, address)
        self.reason = reason
        self.address = address

    def __str__(self) -> str:
        return f"address {self.address}: {self.reason}" if self.address else self.reason


def split_host_port(hostport: str) -> tuple[str, str]:
    """``net.SplitHostPort``: host (brackets removed) and port; raises AddrError as Go."""
    i = hostport.rfind(":")
    if i < 0:
        raise AddrError("missing port in address", hostport)
    j = k = 0
    if hostport[0] == "[":  # not empty: it has a colon
        end = hostport.find("]")
        if end < 0:
            raise AddrError("missing ']' in address", hostport)
        if end + 1 == len(hostport):
            raise AddrError("missing port in address", hostport)
        if end + 1 != i:
            if hostport[end + 1] == ":":
                raise AddrError("too many colons in address", hostport)
            raise AddrError("missing port in address", hostport)
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            raise AddrError("too many colons in address", hostport)
    if "[" in hostport[j:]:
        raise AddrError("unexpected '[' in address", hostport)
    if "]" in hostport[k:]:
        raise AddrError("unexpected ']' in address", hostport)
    return host, hostport[i + 1 :]


def join_host_port(host: str, port: object) -> str:
    """``net.JoinHostPort``: brackets around a host with a colon (an IPv6 address)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_ip(text: str) -> Address | None:
    """``net.ParseIP`` as its callers read it (``To4()`` first): IPv4-mapped IPv6 addresses
    come back as IPv4; None where Go returns nil (bad text, or a zone)."""
    try:
        address, zone = parse_addr(text)
    except ParseAddrError:
        return None
    if zone:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:  # type: ignore[union-attr]
        return address.ipv4_mapped  # type: ignore[union-attr]
    return address
