"""Dynamic upstreams end to end: a twisted.names DNS server, real backends and txcaddy on 127.0.0.1."""

from __future__ import annotations

import time
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests._net import port_number
from tests.reverseproxy._backends import EchoBackend, site, start_proxy
from tests.reverseproxy._dns import DNSServer
from tests.reverseproxy.test__dnslookup import closed_udp_port
from txcaddy.reverseproxy import _dnslookup, upstreams


class _MovableClock:
    """The reactor's time plus an offset the test moves (so refresh expiry needs no waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def seconds(self) -> float:
        return reactor.seconds() + self.offset  # type: ignore[attr-defined,misc,no-any-return]


class DynamicUpstreamTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.dns = DNSServer()
        self.addCleanup(self.dns.stop)
        self.clock = _MovableClock()
        self.patch(upstreams, "_clock_for", lambda reactor: self.clock)

    def backend(self, name: str) -> EchoBackend:
        backend = EchoBackend(name)
        self.addCleanup(backend.stop)
        return backend

    def port_of(self, backend: EchoBackend) -> int:
        return int(backend.address.rpartition(":")[2])

    @inlineCallbacks
    def served_by(self, base: str, count: int) -> Any:
        """Which backend answered each of ``count`` sequential GETs."""
        names = []
        for _ in range(count):
            response = yield treq.get(base + "/", persistent=False)
            yield response.content()
            self.assertEqual(response.code, 200)
            names.append(response.headers.getRawHeaders("X-Backend", ["?"])[0])
        return names

    @inlineCallbacks
    def test_srv_records_spread_traffic_and_changes_follow_after_refresh(self) -> Any:
        """SRV records share traffic from one cached lookup; changes apply once refresh passes."""
        a, b, c = self.backend("a"), self.backend("b"), self.backend("c")
        self.dns.set_srv("_api._tcp.svc.test", [(10, 50, self.port_of(a), "one.svc.test"),
                                                (10, 50, self.port_of(b), "two.svc.test")])
        for host in ("one", "two", "three"):
            self.dns.set_a(f"{host}.svc.test", "127.0.0.1")
        base = start_proxy(self, site(
            "\treverse_proxy {\n"
            "\t\tdynamic srv _api._tcp.svc.test {\n"
            f"\t\t\tresolvers {self.dns.address}\n"
            "\t\t\trefresh 5s\n"
            "\t\t}\n"
            # the targets' addresses come from the transport's resolver, as in Caddy
            f"\t\ttransport http {{\n\t\t\tresolvers {self.dns.address}\n\t\t}}\n"
            "\t}"))
        served = yield self.served_by(base, 4)
        self.assertEqual(sorted(served), ["a", "a", "b", "b"])  # round robin over both records
        self.assertEqual(self.dns.questions("SRV"), ["_api._tcp.svc.test"])  # one lookup, then the cache

        self.dns.set_srv("_api._tcp.svc.test", [(1, 0, self.port_of(c), "three.svc.test")])
        served = yield self.served_by(base, 1)
        self.assertIn(served[0], ("a", "b"))  # still fresh: the old records
        self.clock.offset += 5  # the refresh interval has passed
        served = yield self.served_by(base, 2)
        self.assertEqual(served, ["c", "c"])
        self.assertEqual(len(self.dns.questions("SRV")), 2)

    @inlineCallbacks
    def test_dynamic_a_name_resolving_to_loopback(self) -> Any:
        """dynamic a sends traffic to the name's addresses on its port, asking A and AAAA once."""
        a = self.backend("a")
        self.dns.set_a("app.svc.test", "127.0.0.1")
        base = start_proxy(self, site(
            f"\treverse_proxy {{\n\t\tdynamic a app.svc.test {self.port_of(a)} {{\n"
            f"\t\t\tresolvers {self.dns.address}\n\t\t}}\n\t}}"))
        served = yield self.served_by(base, 2)
        self.assertEqual(served, ["a", "a"])
        self.assertEqual(a.requests[0]["uri"], "/")
        self.assertEqual(sorted(self.dns.questions("A") + self.dns.questions("AAAA")),
                         ["app.svc.test", "app.svc.test"])  # A and AAAA, once

    @inlineCallbacks
    def test_lookup_failure_falls_back_to_static_or_503(self) -> Any:
        """A failed lookup leaves the static upstreams, or answers 503 when there are none."""
        a = self.backend("a")
        lookup = f"\t\tdynamic srv _missing._tcp.svc.test {{\n\t\t\tresolvers {self.dns.address}\n\t\t}}\n"
        base = start_proxy(self, site(f"\treverse_proxy {{\n{lookup}\t}}"))
        response = yield treq.get(base + "/", persistent=False)
        yield response.content()
        self.assertEqual(response.code, 503)
        base = start_proxy(self, site(f"\treverse_proxy {a.address} {{\n{lookup}\t}}"))
        served = yield self.served_by(base, 1)
        self.assertEqual(served, ["a"])

    @inlineCallbacks
    def test_no_dns_server_listening_is_503_at_once(self) -> Any:
        """With nothing on the DNS port (ICMP unreachable), dynamic srv and the tutorial's
        "to _api._tcp.name" answer 503 at once, not after the 10 s of retransmissions."""
        closed = closed_udp_port()
        self.patch(_dnslookup, "system_servers", lambda: [("127.0.0.1", closed)])
        for upstream in (f"{{\n\t\tdynamic srv _api._tcp.svc.test {{\n\t\t\tresolvers 127.0.0.1:{closed}\n\t\t}}\n\t}}",
                         "_api._tcp.svc.test"):
            base = start_proxy(self, site(f"\treverse_proxy {upstream}"))
            started = time.monotonic()
            response = yield treq.get(base + "/", persistent=False)
            yield response.content()
            self.assertEqual(response.code, 503)
            self.assertLess(time.monotonic() - started, 2.0)

    @inlineCallbacks
    def test_tutorial_srv_upstream_and_lookup_srv_use_the_system_resolver(self) -> Any:
        """SRV upstreams use the system resolver: "_svc._proto.name" takes every record,
        the deprecated srv+ form the first one, looked up per request."""
        a, b = self.backend("a"), self.backend("b")
        self.dns.set_srv("_web._tcp.svc.test", [(1, 0, self.port_of(a), "localhost"),
                                                (2, 0, self.port_of(b), "localhost")])
        self.patch(_dnslookup, "system_servers", lambda: [("127.0.0.1", port_number(self.dns.port))])
        # DESIGN.md §1: "to _service._proto.name" is "dynamic srv": every record is an upstream
        base = start_proxy(self, site("\treverse_proxy _web._tcp.svc.test"))
        served = yield self.served_by(base, 2)
        self.assertEqual(served, ["a", "b"])
        # Caddy 2.6.2's deprecated srv+ form: looked up per request, the first record is dialled
        base = start_proxy(self, site("\treverse_proxy srv+_web._tcp.svc.test"))
        served = yield self.served_by(base, 2)
        self.assertEqual(served, ["a", "a"])
        self.assertEqual(len(self.dns.questions("SRV")), 3)
