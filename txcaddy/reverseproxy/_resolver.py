"""Resolving upstream host names with chosen DNS servers (the transport's ``resolvers``).

Caddy gives Go's dialer a resolver that asks those servers (after the hosts file).  We do the
same with ``twisted.names``: an ``IHostnameResolver`` over a names client, and a reactor view
that hands it to ``HostnameEndpoint`` (which takes its resolver from the reactor).
``twisted.names`` (0.65 MB) is imported on first use: only a transport with ``resolver`` needs it.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import DeferredList
from twisted.internet.interfaces import (
    IHostnameResolver,
    IHostResolution,
    IReactorPluggableNameResolver,
)
from zope.interface import implementer

from txcaddy.errors import ConfigError

_NETWORKS = ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6")


def parse_resolver_addresses(addresses: Any) -> list[tuple[str, int]]:
    """Caddy's resolver addresses (``[network/]ip[:port]``, port 53 by default) → (ip, port)."""
    if not isinstance(addresses, list) or not addresses or \
            not all(isinstance(a, str) for a in addresses):
        raise ConfigError("reverse_proxy transport http: resolver.addresses must be a non-empty "
                          "list of strings")
    servers = []
    for text in addresses:
        address = text
        network, slash, rest = address.partition("/")
        if slash and network.lower() in _NETWORKS:
            address = rest
        host, port = address, "53"
        if address.startswith("["):
            close = address.find("]")
            host = address[1:close] if close > 0 else address
            tail = address[close + 1:] if close > 0 else ""
            if tail.startswith(":"):
                port = tail[1:]
        elif address.count(":") == 1:
            host, port = address.split(":")
        if "-" in port:
            raise ConfigError(f"resolver address must have exactly one address; cannot call {text}")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"reverse_proxy transport http: invalid resolver port in {text!r}")
        if not (isIPAddress(host) or isIPv6Address(host)):
            raise ConfigError(
                f"reverse_proxy transport http: resolver address {text!r} must be an IP address "
                "in txcaddy (Caddy also accepts a host name)")
        servers.append((host, int(port)))
    return servers


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class NamesHostnameResolver:
    """An ``IHostnameResolver`` asking a ``twisted.names`` resolver for A and AAAA records.

    IPv4 addresses come first; ``HostnameEndpoint`` races the rest after its attempt delay.
    """

    def __init__(self, resolver: Any) -> None:
        self.resolver = resolver

    @classmethod
    def for_servers(cls, servers: list[tuple[str, int]], reactor: Any,
                    hosts_file: bytes = b"/etc/hosts") -> NamesHostnameResolver:
        """The hosts file first, then the given DNS servers in order, no cache (as Go's)."""
        # imported on first use (module docstring)
        from twisted.names import hosts, resolve

        from txcaddy.reverseproxy._dnslookup import FailFastResolver

        return cls(resolve.ResolverChain([
            hosts.Resolver(file=hosts_file),
            FailFastResolver(servers=servers, reactor=reactor),  # a closed port fails at once
        ]))

    def resolveHostName(self, resolutionReceiver: Any, hostName: str, portNumber: int = 0,
                        addressTypes: Any = None, transportSemantics: str = "TCP") -> Any:
        resolution = _Resolution(hostName)
        resolutionReceiver.resolutionBegan(resolution)
        want4 = addressTypes is None or IPv4Address in addressTypes
        want6 = addressTypes is None or IPv6Address in addressTypes
        if isIPAddress(hostName) or isIPv6Address(hostName):
            kind = IPv4Address if isIPAddress(hostName) else IPv6Address
            if (want4, want6)[kind is IPv6Address]:
                resolutionReceiver.addressResolved(kind("TCP", hostName, portNumber))
            resolutionReceiver.resolutionComplete()
            return resolution
        lookups = []
        if want4:
            lookups.append(self.resolver.lookupAddress(hostName))
        if want6:
            lookups.append(self.resolver.lookupIPV6Address(hostName))

        from twisted.names import dns  # imported on first use (module docstring)

        def deliver(results: list[tuple[bool, Any]]) -> None:
            for ok, result in results:
                if not ok:
                    continue
                for record in result[0]:
                    if record.type == dns.A:
                        resolutionReceiver.addressResolved(
                            IPv4Address("TCP", record.payload.dottedQuad(), portNumber))
                    elif record.type == dns.AAAA:
                        address = socket.inet_ntop(socket.AF_INET6, record.payload.address)
                        resolutionReceiver.addressResolved(IPv6Address("TCP", address, portNumber))
            resolutionReceiver.resolutionComplete()

        DeferredList(lookups, consumeErrors=True).addCallback(deliver)
        return resolution


@implementer(IReactorPluggableNameResolver)
class ReactorWithResolver:
    """The reactor, except that ``nameResolver`` is ours (what ``HostnameEndpoint`` reads)."""

    def __init__(self, reactor: Any, resolver: Any) -> None:
        self._reactor = reactor
        self.nameResolver = resolver

    def installNameResolver(self, resolver: Any) -> Any:
        previous, self.nameResolver = self.nameResolver, resolver
        return previous

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)
