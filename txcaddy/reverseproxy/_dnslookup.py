"""DNS for dynamic upstreams: the answer caches, Go's SRV ordering, and the resolvers.

Split from ``upstreams.py`` (the sources and the handler's side) because this part is about DNS
alone. ``LookupCache`` keeps answers by lookup key (keyed like Caddy's: the SRV name, or
``name:port`` plus the IP versions for A/AAAA) for ``refresh``; a service's ``DNSCaches`` (in its
``Runtime``) serve every handler of the service and survive reloads, as Caddy's package-level maps
do. ``make_resolver`` builds the ``twisted.names`` resolver a source asks, with the hosts file
first for address lookups as Go does. Its UDP queries go out on sockets connected to the server,
so an ICMP port unreachable (no DNS server listening) fails the query at once and the next server
is asked, as Go's resolver (``dnsclient_unix.go``: a read error moves on) does, instead of waiting
out the retransmission timeouts.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, TimeoutError, fail
from twisted.logger import Logger
from twisted.names import client, dns, hosts
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from txcaddy.reverseproxy.hosts import Upstream

__all__ = [
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

log = Logger(namespace="txcaddy.reverseproxy.upstreams")

#: Retransmission timeouts of one query: Go's resolver waits 5 s and tries twice.
LOOKUP_TIMEOUT = (5, 5)
#: Entries each cache keeps (Caddy: 100, one dropped to make room for a new name).
CACHE_SIZE = 100
_RESOLV_CONF = "/etc/resolv.conf"
_HOSTS_FILE = b"/etc/hosts"


class DNSLookupError(Exception):
    """A lookup gave no usable records (Go: "no such host")."""


# -- SRV ordering ------------------------------------------------------------------------------


def order_srv_records(records: Sequence[Any], rng: Any = random) -> list[Any]:
    """SRV records in the order Go's ``LookupSRV`` returns them (RFC 2782).

    Sorted by priority (lowest first); within one priority the records are
    shuffled by weight: a record is drawn with probability weight / (sum of
    the weights left), so heavier records tend to come first. Records of
    weight 0 keep their place after the weighted ones.
    """
    ordered = sorted(records, key=lambda r: (r.priority, r.weight))
    start = 0
    while start < len(ordered):
        end = start
        while end < len(ordered) and ordered[end].priority == ordered[start].priority:
            end += 1
        _shuffle_by_weight(ordered, start, end, rng)
        start = end
    return ordered


def _shuffle_by_weight(records: list[Any], start: int, end: int, rng: Any) -> None:
    total = sum(r.weight for r in records[start:end])
    while total > 0 and end - start > 1:
        n = rng.randrange(total)
        seen = 0
        for i in range(start, end):
            seen += records[i].weight
            if seen > n:
                records[start], records[i] = records[i], records[start]
                break
        total -= records[start].weight
        start += 1


# -- the cache ---------------------------------------------------------------------------------


class _Entry:
    __slots__ = ("upstreams", "expires", "waiters")

    def __init__(self) -> None:
        self.upstreams: list[Upstream] | None = None
        self.expires = 0.0
        self.waiters: list[Deferred[list[Upstream]]] | None = None  # a lookup is running


class LookupCache:
    """Answers by lookup key for ``refresh`` seconds; one lookup at a time per key.

    A service's instances (``DNSCaches``, in its ``Runtime``) serve every handler
    of the service and survive reloads, like Caddy's package-level maps.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def clear(self) -> None:
        """Forget every answer (lookups under way still finish for their waiters)."""
        self._entries.clear()

    def get(
        self,
        key: str,
        clock: Any,
        refresh: float,
        lookup: Callable[[], Deferred[list[Upstream]]],
        grace_period: float = 0.0,
    ) -> list[Upstream] | Deferred[list[Upstream]]:
        """The fresh answer for ``key``, or a Deferred for the lookup that gets it.

        ``lookup()`` runs only when no lookup for ``key`` is under way. A fresh
        answer lasts ``refresh`` seconds from when it arrived. When a lookup
        fails the waiters get the failure and the next request looks up again,
        except with ``grace_period`` (Caddy 2.8's ``srv grace_period``) and an
        earlier answer: that answer is then served for ``grace_period`` more.
        """
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self.size:
                self._make_room()
            entry = self._entries[key] = _Entry()
        elif entry.upstreams is not None and clock.seconds() < entry.expires:
            return entry.upstreams
        waiter: Deferred[list[Upstream]] = Deferred()
        if entry.waiters is not None:
            entry.waiters.append(waiter)
            return waiter
        entry.waiters = [waiter]
        try:
            started = lookup()
        except Exception:  # noqa: BLE001 - a lookup that cannot start is a failed lookup
            started = fail()
        started.addBoth(self._finished, key, entry, clock, refresh, grace_period)
        if waiter.called:  # the lookup answered at once (a hosts file, an IP literal, a fake)
            box: list[Any] = []
            waiter.addBoth(box.append)
            if isinstance(box[0], Failure):
                box[0].raiseException()
            return box[0]  # type: ignore[no-any-return]
        return waiter

    def _make_room(self) -> None:
        for key, entry in self._entries.items():
            if entry.waiters is None:
                del self._entries[key]
                return

    def _finished(self, result: Any, key: str, entry: _Entry, clock: Any, refresh: float, grace: float) -> None:
        waiters, entry.waiters = entry.waiters or [], None
        if isinstance(result, Failure):
            if grace > 0 and entry.upstreams is not None:
                log.error("DNS lookup of {key} failed; using the previous answer for {grace}s: {error}",
                          key=key, grace=grace, error=result.getErrorMessage())
                entry.expires = clock.seconds() + grace
                result = entry.upstreams
            else:
                if entry.upstreams is None and self._entries.get(key) is entry:
                    del self._entries[key]
                for waiter in waiters:
                    waiter.errback(result)
                return None
        else:
            entry.upstreams = result
            entry.expires = clock.seconds() + refresh
        for waiter in waiters:
            waiter.callback(result)
        return None


class DNSCaches:
    """A service's answers of dynamic upstreams (``context.runtime.get(DNSCaches)``).

    @ivar srv: Caddy's ``srvs`` map: SRV answers by name.
    @ivar a: Caddy's ``aAaaa`` map: A/AAAA answers by ``name:port`` and IP versions.
    """

    def __init__(self) -> None:
        self.srv = LookupCache()
        self.a = LookupCache()


def srv_records(answer: Any, name: str) -> list[Any]:
    """The usable SRV records of a ``lookupService`` answer; none is a lookup error (as in Go)."""
    records = [rr.payload for rr in answer[0] if rr.type == dns.SRV and _target_of(rr.payload)]
    if not records:
        raise DNSLookupError(f"lookup {name}: no such host")
    return records


def _target_of(record: Any) -> str:
    """The record's target without the final dot ("." means no service: empty)."""
    return record.target.name.decode("ascii", "replace").rstrip(".")  # type: ignore[no-any-return]


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
