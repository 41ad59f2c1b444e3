"""Site blocks and the listeners they are served on (Caddy's addresses.go).

A ``SiteBlock`` is a parsed server block with the values its directives
produced (Caddy's ``serverBlock``); ``pairings`` maps each site key to its
listener addresses and groups the blocks that share exactly the same
listeners, as Caddy's ``mapAddressToServerBlocks`` and
``consolidateAddrMappings`` do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from txcaddy._go.net import join_host_port
from txcaddy.caddyfile.addresses import (
    DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_PORT,
    Address,
    AddressError,
    NetworkAddress,
    join_network_address,
)
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.helper import ConfigValue
from txcaddy.caddyfile.lexer import Token
from txcaddy.caddyfile.parser import ServerBlock


@dataclass
class SiteBlock:
    """A server block with what its directives produced (Caddy's serverBlock)."""

    block: ServerBlock
    pile: dict[str, list[ConfigValue]] = field(default_factory=dict)
    keys: list[Address] = field(default_factory=list)

    def hosts_from_keys(self, logger_mode: bool) -> list[str]:
        hosts: dict[str, None] = {}
        for addr in self.keys:
            if addr.host == "":
                if not logger_mode:
                    return []
                continue
            if logger_mode and addr.port not in ("", str(DEFAULT_HTTP_PORT), str(DEFAULT_HTTPS_PORT)):
                hosts.setdefault(join_host_port(addr.host, addr.port), None)
            else:
                hosts.setdefault(addr.host, None)
        return list(hosts)

    def hosts_from_keys_not_http(self, http_port: str) -> list[str]:
        hosts: dict[str, None] = {}
        for addr in self.keys:
            if addr.host and addr.scheme != "http" and addr.port != http_port:
                hosts.setdefault(addr.host, None)
        return list(hosts)

    def has_host_catch_all_key(self) -> bool:
        return any(addr.host == "" for addr in self.keys)

    def is_all_http(self) -> bool:
        return all(addr.scheme == "http" for addr in self.keys)


@dataclass
class Pairing:
    """Listener addresses and the site blocks served on them (sbAddrAssociation)."""

    addresses: list[str]
    server_blocks: list[SiteBlock]


def where(tok: Token | None) -> str:
    """``file:line: `` for messages Caddy gives without a location."""
    return f"{tok.file}:{tok.line}: " if tok is not None and tok.file else ""


def key_token(block: ServerBlock, key: str) -> Token | None:
    """The token a site key was written as, for error locations."""
    for tok in block.key_tokens:
        if tok.text == key:
            return tok
    return None


def listener_ports(options: Mapping[str, Any]) -> tuple[str, str]:
    """The HTTP and HTTPS ports as strings: the global options' or 80 and 443."""
    http_port = options.get("http_port")
    https_port = options.get("https_port")
    return (
        str(http_port if isinstance(http_port, int) else DEFAULT_HTTP_PORT),
        str(https_port if isinstance(https_port, int) else DEFAULT_HTTPS_PORT),
    )

def listeners_for_key(sb: SiteBlock, key: str, options: Mapping[str, Any]) -> list[str]:
    """The sorted listener addresses of one site key (listenerAddrsForServerBlockKey)."""
    try:
        addr = Address.parse(key).normalize()
    except AddressError as e:
        raise AddressError(f"parsing key: {e}") from None
    http_port, https_port = listener_ports(options)
    port = addr.port or (http_port if addr.scheme == "http" else https_port)
    if (addr.scheme == "http" and port == https_port) or (addr.scheme == "https" and port == http_port):
        raise AddressError(f"[{key}] scheme and port violate convention")
    hosts: list[str] = []
    for value in sb.pile.get("bind", []):
        hosts.extend(value.value)
    if not hosts:
        default_bind = options.get("default_bind")
        hosts = list(default_bind) if isinstance(default_bind, list) else [""]
    listeners: set[str] = set()
    for host in hosts:
        network, slash, rest = host.partition("/")
        if not slash:
            network, rest = "", network
        rest = rest.strip("[]")
        try:
            parsed = NetworkAddress.parse(join_network_address(network, rest, port))
        except AddressError as e:
            raise AddressError(f"parsing network address: {e}") from None
        listeners.add(str(parsed))
    return sorted(listeners)

def make_pairings(site_blocks: list[SiteBlock], options: Mapping[str, Any]) -> list[Pairing]:
    """Site blocks grouped by the exact set of listeners they share, sorted by address."""
    by_address: dict[str, list[SiteBlock]] = {}
    for i, sb in enumerate(site_blocks):
        keys_by_address: dict[str, list[str]] = {}
        for j, key in enumerate(sb.block.keys):
            try:
                addresses = listeners_for_key(sb, key, options)
            except AddressError as e:
                raise ConfigError(
                    f"{where(key_token(sb.block, key))}server block {i}, key {j} ({key}): "
                    f"determining listener address: {e}"
                ) from None
            for address in addresses:
                keys_by_address.setdefault(address, []).append(key)
        for address in sorted(keys_by_address):
            keys = keys_by_address[address]
            parsed = []
            for key in keys:
                try:
                    parsed.append(Address.parse(key).normalize())
                except AddressError as e:
                    raise ConfigError(f"parsing key '{key}': {e}") from None
            block = ServerBlock(
                keys=keys,
                segments=sb.block.segments,
                has_braces=sb.block.has_braces,
                key_tokens=[tok for key in keys if (tok := key_token(sb.block, key)) is not None],
            )
            by_address.setdefault(address, []).append(SiteBlock(block, sb.pile, parsed))

    def identity(blocks: list[SiteBlock]) -> list[tuple[int, tuple[str, ...]]]:
        return [(id(b.pile), tuple(b.block.keys)) for b in blocks]

    pairings: list[Pairing] = []
    remaining = dict(by_address)
    for address in list(by_address):
        if address not in remaining:
            continue
        blocks = remaining.pop(address)
        pairing = Pairing([address], blocks)
        for other in list(remaining):
            if identity(remaining[other]) == identity(blocks):
                pairing.addresses.append(other)
                del remaining[other]
        pairing.addresses.sort()
        pairings.append(pairing)
    pairings.sort(key=lambda p: p.addresses[0])
    return pairings
