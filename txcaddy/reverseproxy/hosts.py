"""Upstreams and the per-address state they share (Caddy's ``hosts.go``).

A ``Host`` is the live state of one upstream address: requests in flight,
failures remembered by passive health checks, the active health flag. Hosts
live in a registry keyed by the dial string, one per service (its ``Runtime``:
``context.runtime.get(HostRegistry)``; Caddy's is package-wide), so every
``reverse_proxy`` of the service that names the same address sees the same counts,
and the state survives a config reload (DESIGN.md §4). An ``Upstream`` is one entry
of one handler's pool: the dial string as configured, its request limit and
the handler's passive-check policy, pointing at the shared ``Host``.
"""

from __future__ import annotations

from typing import Any

from mypy_extensions import mypyc_attr


class Host:
    """State of one upstream address, shared by every handler that dials it."""

    __slots__ = ("address", "num_requests", "fails", "unhealthy", "users", "active_checks", "registry")

    def __init__(self, address: str) -> None:
        self.address = address
        self.num_requests = 0  # requests in flight
        self.fails = 0  # failures remembered by passive health checks
        self.unhealthy = False  # set by the active health checker
        self.users = 0  # handlers holding this host (the registry's reference count)
        # The active checkers' bookkeeping (``health._ActiveChecks``) while any checks this host.
        self.active_checks: Any = None
        self.registry: HostRegistry | None = None  # the registry holding it, told of marks

    def mark(self, unhealthy: bool) -> None:
        """Set the active health flag and tell the registry's watchers (a supervisor pushes
        the mark to its worker processes)."""
        self.unhealthy = unhealthy
        if self.registry is not None:
            for watcher in list(self.registry.watchers):
                watcher(self)

    def count_request(self, delta: int) -> None:
        self.num_requests = max(0, self.num_requests + delta)

    def count_fail(self, delta: int) -> None:
        self.fails = max(0, self.fails + delta)

    def __repr__(self) -> str:
        return f"<Host {self.address} requests={self.num_requests} fails={self.fails}>"


class HostRegistry:
    """Hosts by address with reference counts (Caddy's package-level ``hosts`` ``UsagePool``).

    A handler acquires its upstreams' hosts when it is loaded and releases
    them when its config is unloaded; a host nobody holds is forgotten.
    Loading the new config before unloading the old one keeps the state.
    """

    def __init__(self) -> None:
        self._hosts: dict[str, Host] = {}
        # Called with each host whose active health mark changes (``Host.mark``).
        self.watchers: list[Any] = []

    def acquire(self, address: str) -> Host:
        host = self._hosts.get(address)
        if host is None:
            host = self._hosts[address] = Host(address)
            host.registry = self
        host.users += 1
        return host

    def release(self, host: Host) -> None:
        host.users -= 1
        if host.users <= 0 and self._hosts.get(host.address) is host:
            del self._hosts[host.address]

    def get(self, address: str) -> Host | None:
        return self._hosts.get(address)

    def all(self) -> list[Host]:
        return list(self._hosts.values())


@mypyc_attr(allow_interpreted_subclasses=True)  # upstreams.py's dynamic upstreams
class Upstream:
    """One upstream of a handler's pool.

    ``passive`` is the handler's passive health policy (anything with a
    ``max_fails`` attribute) or None; ``dial`` may hold placeholders, resolved
    per request by the handler.
    """

    __slots__ = ("dial", "max_requests", "host", "passive", "target")

    def __init__(self, dial: str, host: Host | None = None, max_requests: int = 0, passive: Any = None) -> None:
        self.dial = dial
        self.host = host if host is not None else Host(dial)
        self.max_requests = max_requests
        self.passive = passive
        # Where the handler dials it, parsed once (handler.py's ``_Target``); set on first
        # use, or beforehand by upstreams.py when it differs from ``dial`` (lookup_srv).
        self.target: Any = None

    @property
    def num_requests(self) -> int:
        return self.host.num_requests

    @property
    def fails(self) -> int:
        return self.host.fails

    def healthy(self) -> bool:
        """Not marked down by the active checker, nor by too many remembered failures."""
        if self.host.unhealthy:
            return False
        passive = self.passive
        return passive is None or self.host.fails < passive.max_fails

    def full(self) -> bool:
        return self.max_requests > 0 and self.host.num_requests >= self.max_requests

    def available(self) -> bool:
        return self.healthy() and not self.full()

    def __repr__(self) -> str:
        return f"<Upstream {self.dial}>"
