"""A small authoritative DNS server on 127.0.0.1 for the dynamic upstream tests.

``twisted.names`` serves a zone held in memory; tests change the records
while it runs and read which questions it was asked. Like every
``FileAuthority`` it puts no target addresses in the additional section of
SRV answers (DESIGN.md §9): whoever dials a target resolves it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.names import authority, dns, server

from tests._net import port_number
from txcaddy._reactor import default_reactor


class _MemoryAuthority(authority.FileAuthority):
    def __init__(self, zone: bytes, asked: list[tuple[str, str]]) -> None:
        self._zone = zone
        self._asked = asked
        super().__init__(None)

    def loadFile(self, filename: Any) -> None:
        zone = self._zone
        self.soa = (zone, dns.Record_SOA(  # type: ignore[assignment]
            mname=b"ns." + zone, rname=b"admin." + zone, serial=1, refresh=60, retry=60, expire=60, minimum=1, ttl=1))
        self.records = {}  # type: ignore[assignment]  # name -> records

    def _lookup(self, name: Any, cls: int, type: int, timeout: Any = None) -> Any:
        text = name.decode("ascii") if isinstance(name, bytes) else str(name)
        self._asked.append((dns.QUERY_TYPES.get(type, str(type)), text))
        return super()._lookup(name, cls, type, timeout)


class DNSServer:
    """Answers for ``zone`` on a random UDP port of 127.0.0.1 (``address``)."""

    def __init__(self, zone: str = "svc.test") -> None:
        self.asked: list[tuple[str, str]] = []  # (record type, name) of every question
        self.authority = _MemoryAuthority(zone.encode("ascii"), self.asked)
        factory = server.DNSServerFactory(authorities=[self.authority])
        factory.noisy = False
        protocol = dns.DNSDatagramProtocol(factory)
        protocol.noisy = False
        # Twisted's default packet size, spelled out: IReactorUDP declares it without one.
        self.port = default_reactor().listenUDP(0, protocol, interface="127.0.0.1", maxPacketSize=8192)
        self.address = f"127.0.0.1:{port_number(self.port)}"

    def set_srv(self, name: str, records: list[tuple[int, int, int, str]]) -> None:
        """``name``'s SRV records: (priority, weight, port, target) each."""
        self.authority.records[name.lower().encode("ascii")] = [  # type: ignore[index]
            dns.Record_SRV(priority, weight, port, target, ttl=1) for priority, weight, port, target in records
        ]

    def set_a(self, name: str, *addresses: str) -> None:
        records = [dns.Record_A(a, ttl=1) for a in addresses]
        self.authority.records[name.lower().encode("ascii")] = records  # type: ignore[index]

    def questions(self, record_type: str) -> list[str]:
        return [name for kind, name in self.asked if kind == record_type]

    def stop(self) -> Deferred[None] | None:
        return self.port.stopListening()
