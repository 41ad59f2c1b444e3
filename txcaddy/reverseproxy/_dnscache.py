"""The answer caches of dynamic upstreams and Go's SRV ordering: the DNS side that needs no resolver.

Split from ``_dnslookup`` (which re-exports all of it) so that ``upstreams``, imported with every
config, does not load ``twisted.names`` (0.65 MB) before a dynamic upstream asks for a resolver.
``LookupCache`` keeps answers by lookup key (keyed like Caddy's: the SRV name, or ``name:port``
plus the IP versions for A/AAAA) for ``refresh``; a service's ``DNSCaches`` (in its ``Runtime``)
serve every handler of the service and survive reloads, as Caddy's package-level maps do.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from txcaddy.reverseproxy.hosts import Upstream

__all__ = [
    "CACHE_SIZE",
    "LOOKUP_TIMEOUT",
    "DNSCaches",
    "DNSLookupError",
    "LookupCache",
    "order_srv_records",
]

log = Logger(namespace="txcaddy.reverseproxy.upstreams")

#: Retransmission timeouts of one query: Go's resolver waits 5 s and tries twice.
LOOKUP_TIMEOUT = (5, 5)
#: Entries each cache keeps (Caddy: 100, one dropped to make room for a new name).
CACHE_SIZE = 100


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


def _target_of(record: Any) -> str:
    """The record's target without the final dot ("." means no service: empty)."""
    return record.target.name.decode("ascii", "replace").rstrip(".")  # type: ignore[no-any-return]
