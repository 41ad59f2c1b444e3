"""Site addresses (``[scheme://][host][:port][/path]``) and listener addresses.

Ports of Caddy's ``httpcaddyfile.Address``, ``caddy.NetworkAddress`` and the
helpers around Go's ``net`` ones (``txcaddy._go.net``), so that keys map to the same listeners.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from txcaddy._go.errors import GoError
from txcaddy._go.net import AddrError, join_host_port, split_host_port
from txcaddy._go.strconv import NumError, atoi, parse_uint

DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443
MAX_PORT_SPAN = 65535


class AddressError(GoError):
    """A bad address, worded as Go's ``net`` package and Caddy word it."""


@dataclass(frozen=True)
class Address:
    """A parsed site address (a server block key)."""

    original: str = ""
    scheme: str = ""
    host: str = ""
    port: str = ""
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> Address:
        remaining = text[:4096].strip()
        original = remaining
        scheme = host = port = path = ""
        if "://" in remaining:
            scheme, remaining = remaining.split("://", 1)
        host_part, sep, rest = remaining.partition("/")
        try:
            host, port = split_host_port(host_part)
        except AddrError:
            try:
                host, port = split_host_port(host_part + ":")
            except AddrError:
                host, port = host_part, ""
        if sep:
            path = "/" + rest
        if port:
            try:
                number = atoi(port)
            except NumError as e:
                raise AddressError(f"invalid port '{port}': {e}") from None
            if number < 0 or number > 65535:
                raise AddressError(f"port {number} is out of range")
        return cls(original, scheme, host, port, path)

    def normalize(self) -> Address:
        host = self.host.strip()
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if ip.version == 6 and ip.ipv4_mapped is None:
                host = str(ip)
        return Address(
            self.original,
            lower_except_placeholders(self.scheme),
            lower_except_placeholders(host),
            self.port,
            self.path,
        )

    def __str__(self) -> str:
        if not self.host and not self.port:
            return ""
        scheme = self.scheme or ("https" if self.port == str(DEFAULT_HTTPS_PORT) else "http")
        out = scheme + "://"
        if self.port and (
            (scheme == "https" and self.port != str(DEFAULT_HTTPS_PORT))
            or (scheme == "http" and self.port != str(DEFAULT_HTTP_PORT))
        ):
            out += join_host_port(self.host, self.port)
        else:
            out += self.host
        return out + self.path


def lower_except_placeholders(text: str) -> str:
    """Lower-case everything outside ``{placeholders}``."""
    out = []
    escaped = in_placeholder = False
    for ch in text:
        if ch == "\\" and not escaped:
            escaped = True
            out.append(ch)
            continue
        if ch == "{" and not escaped:
            in_placeholder = True
        if ch == "}" and in_placeholder and not escaped:
            in_placeholder = False
        out.append(ch if in_placeholder else ch.lower())
        escaped = False
    return "".join(out)


def _is_unix_network(network: str) -> bool:
    return network in ("unix", "unixgram", "unixpacket")


@dataclass(frozen=True)
class NetworkAddress:
    """``network/host:port[-port]`` as Caddy parses listener addresses."""

    network: str = ""
    host: str = ""
    start_port: int = 0
    end_port: int = 0

    @classmethod
    def parse(cls, text: str) -> NetworkAddress:
        network, host, port = split_network_address(text)
        if not network:
            network = "tcp"
        if _is_unix_network(network):
            return cls(network, host)
        start = end = 0
        if port:
            before, found, after = port.partition("-")
            if not found:
                after = before
            start = _parse_port(before, "start")
            end = _parse_port(after, "end")
            if end < start:
                raise AddressError("end port must not be less than start port")
            if end - start > MAX_PORT_SPAN:
                raise AddressError(f"port range exceeds {MAX_PORT_SPAN} ports")
        return cls(network, host, start, end)

    @property
    def port(self) -> str:
        if self.start_port == self.end_port:
            return str(self.start_port)
        return f"{self.start_port}-{self.end_port}"

    def __str__(self) -> str:
        network = self.network
        if network == "tcp" and (self.host or self.port):
            network = ""
        return join_network_address(network, self.host, self.port)


def _parse_port(text: str, which: str) -> int:
    try:
        return parse_uint(text, 16)
    except NumError as e:
        raise AddressError(f"invalid {which} port: {e}") from None


def split_network_address(text: str) -> tuple[str, str, str]:
    network = ""
    before, slash, after = text.partition("/")
    if slash:
        network = before.strip().lower()
        text = after
    if _is_unix_network(network):
        return network, text, ""
    try:
        host, port = split_host_port(text)
        return network, host, port
    except AddrError as error:
        if text == "":
            return network, "", ""
        try:
            host, _ = split_host_port(text + ":0")
        except AddrError:
            raise AddressError(str(error)) from None
        return network, host, ""


def join_network_address(network: str, host: str, port: str) -> str:
    out = f"{network}/" if network else ""
    if (host and not port) or _is_unix_network(network):
        out += host
    elif port:
        out += join_host_port(host, port)
    return out
