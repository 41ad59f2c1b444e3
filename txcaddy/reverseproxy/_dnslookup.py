"""DNS for dynamic upstreams: the resolvers (and, re-exported from ``_dnscache``, the answer caches
and Go's SRV ordering).

Split from ``upstreams.py`` (the sources and the handler's side) because this part is about DNS
alone; it loads ``twisted.names``, so ``upstreams`` imports it only when a source needs a resolver
or an SRV answer read. ``make_resolver`` builds the ``twisted.names`` resolver a source asks, with the hosts file
first for address lookups as Go does. Its UDP queries go out on sockets connected to the server,
so an ICMP port unreachable (no DNS server listening) fails the query at once and the next server
is asked, as Go's resolver (``dnsclient_unix.go``: a read error moves on) does, instead of waiting
out the retransmission timeouts.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, TimeoutError, fail
from twisted.names import client, dns, hosts
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from txcaddy.reverseproxy._dnscache import (
    CACHE_SIZE,
    LOOKUP_TIMEOUT,
    DNSCaches,
    DNSLookupError,
    LookupCache,
    _target_of,
    order_srv_records,
)

__all__ = [  # the caches and SRV ordering are _dnscache's, re-exported: this module was their home
    "CACHE_SIZE",
    "LOOKUP_TIMEOUT",
    "DNSCaches",
    "DNSLookupError",
    "FailFastResolver",
    "LookupCache",
    "ServerUnreachable",
    "make_resolver",
    "order_srv_records",
    "srv_records",
    "system_servers",
]

_RESOLV_CONF = "/etc/resolv.conf"
_HOSTS_FILE = b"/etc/hosts"


def srv_records(answer: Any, name: str) -> list[Any]:
    """The usable SRV records of a ``lookupService`` answer; none is a lookup error (as in Go)."""
    records = [rr.payload for rr in answer[0] if rr.type == dns.SRV and _target_of(rr.payload)]
    if not records:
        raise DNSLookupError(f"lookup {name}: no such host")
    return records


def system_servers(path: str = _RESOLV_CONF) -> list[tuple[str, int]]:
    """The name servers of ``resolv.conf`` (127.0.0.1 when it names none, as Go and libc do)."""
    servers = []
    try:
        with open(path, "rb") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == b"nameserver":
                    address = fields[1].decode("ascii", "replace").split("%")[0]
                    if isIPAddress(address) or isIPv6Address(address):
                        servers.append((address, 53))
    except OSError:
        pass
    return servers or [("127.0.0.1", 53)]


class _HostsFirst:
    """Address lookups as Go does them: a name in the hosts file is answered from it alone.

    (A ``ResolverChain`` would ask DNS for the AAAA records of a name the
    hosts file only gives an IPv4 address.)
    """

    def __init__(self, hosts_file: bytes, names: Any) -> None:
        self.hosts = hosts.Resolver(file=hosts_file)
        self.names = names

    def _listed(self, name: Any) -> bool:
        return bool(hosts.searchFileForAll(FilePath(self.hosts.file), dns.domainString(name)))

    def lookupAddress(self, name: Any, timeout: Any = None) -> Deferred[Any]:
        if self._listed(name):
            return self.hosts.lookupAddress(name).addErrback(lambda _: ([], [], []))  # type: ignore[no-any-return]
        return self.names.lookupAddress(name, timeout)  # type: ignore[no-any-return]

    def lookupIPV6Address(self, name: Any, timeout: Any = None) -> Deferred[Any]:
        if self._listed(name):
            return self.hosts.lookupIPV6Address(name).addErrback(lambda _: ([], [], []))  # type: ignore[no-any-return]
        return self.names.lookupIPV6Address(name, timeout)  # type: ignore[no-any-return]

    def lookupService(self, name: Any, timeout: Any = None) -> Deferred[Any]:
        return self.names.lookupService(name, timeout)  # type: ignore[no-any-return]


class ServerUnreachable(dns.DNSQueryTimeoutError):
    """A DNS server's port is closed (ICMP port unreachable): the query is over at once.

    A timeout to ``twisted.names`` (so its retry loop asks the next server
    straight away), but not to the caller: see ``FailFastResolver``.
    """

    def __str__(self) -> str:
        return f"DNS query {self.id}: the server is unreachable (ICMP: no DNS server listening)"


class _ConnectedQueryProtocol(dns.DNSDatagramProtocol):
    """One query's UDP protocol on a socket connected to its server.

    The ICMP error reaches Twisted one of two ways: a ``recvfrom`` failing
    with ECONNREFUSED (``connectionRefused``, select-style reactors), or, with
    epoll, an EPOLLERR that makes the reactor drop the port (``stopProtocol``,
    where ``DNSDatagramProtocol`` would forget the query and leave it to its
    timeout). Either way the query in flight fails now.
    """

    def connectionRefused(self) -> None:  # noqa: N802 - Twisted's name
        self._fail_live()

    def stopProtocol(self) -> None:  # noqa: N802 - Twisted's name
        live = self.liveMessages
        super().stopProtocol()
        self._fail_live(live)

    def _fail_live(self, live: dict[int, Any] | None = None) -> None:
        if live is None:
            live, self.liveMessages = self.liveMessages, {}
        for message_id, (d, timeout_call) in list(live.items()):
            if timeout_call.active():
                timeout_call.cancel()
            d.errback(ServerUnreachable(message_id))
        live.clear()


class FailFastResolver(client.Resolver):
    """``twisted.names``' resolver, each UDP query on a socket connected to its server.

    An unconnected socket never hears of an ICMP port unreachable, so a query
    to a closed port waits out every timeout (10 s with ``LOOKUP_TIMEOUT``);
    a connected one gets ECONNREFUSED and the query fails at once. When every
    server refused, the lookup fails with ``ServerUnreachable`` (not Twisted's
    ``TimeoutError``), as Go's ends with its last server's error.
    """

    def _query(self, address: Any, queries: Any, timeout: float, message_id: int | None = None) -> Deferred[Any]:
        address = (address[0], address[1])  # a connected port checks writes against this tuple
        protocol = _ConnectedQueryProtocol(self, reactor=self._reactor)
        port = self._reactor.listenUDP(0, protocol, interface="::" if isIPv6Address(address[0]) else "")
        try:
            port.connect(*address)
        except Exception:  # noqa: BLE001 - an address the socket cannot connect to fails this query
            port.stopListening()
            return fail()
        d: Deferred[Any] = protocol.query(address, queries, timeout, message_id)

        def stop(result: Any) -> Any:
            port.stopListening()
            return result

        return d.addBoth(stop)

    def _reissue(self, reason: Failure, *args: Any) -> Any:
        result = super()._reissue(reason, *args)
        if isinstance(result, Failure) and result.check(TimeoutError) and reason.check(ServerUnreachable):
            return reason  # the last server refused: say so rather than "timed out"
        return result


def make_resolver(servers: list[tuple[str, int]] | None, reactor: Any, *, hosts_file: bool) -> Any:
    """A ``twisted.names`` resolver asking ``servers`` (the system's when None), without a cache.

    With ``hosts_file`` the hosts file answers first, as for Go's address
    lookups; SRV lookups go to DNS only. A server with nothing listening
    fails its query at once (``FailFastResolver``).
    """
    names = FailFastResolver(servers=servers if servers is not None else system_servers(), reactor=reactor)
    if not hosts_file:
        return names
    return _HostsFirst(_HOSTS_FILE, names)
