"""The dynamic upstreams' resolver against real UDP sockets on 127.0.0.1: a DNS server whose
port is closed (ICMP port unreachable) fails a lookup at once, as Go's resolver does."""

from __future__ import annotations

import socket
import time
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.names import dns
from twisted.trial.unittest import TestCase

from tests._net import port_number
from tests.reverseproxy._dns import DNSServer
from txcaddy._reactor import default_reactor
from txcaddy.reverseproxy._dnslookup import LOOKUP_TIMEOUT, ServerUnreachable, make_resolver
from txcaddy.reverseproxy._resolver import NamesHostnameResolver

#: Far below LOOKUP_TIMEOUT's 10 s, far above a loopback round trip on a busy machine.
PROMPT = 2.0


def closed_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on (bound, noted, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FailFastTests(TestCase):
    timeout = 15  # a regression waits out LOOKUP_TIMEOUT (10 s) and fails on PROMPT, not here

    @inlineCallbacks
    def test_closed_port_fails_the_lookup_at_once(self) -> Any:
        """An SRV lookup asking a closed port fails with ServerUnreachable well before any timeout."""
        resolver = make_resolver([("127.0.0.1", closed_udp_port())], default_reactor(), hosts_file=False)
        started = time.monotonic()
        with self.assertRaises(ServerUnreachable) as caught:
            yield resolver.lookupService("_api._tcp.example.com", timeout=LOOKUP_TIMEOUT)
        self.assertLess(time.monotonic() - started, PROMPT)
        self.assertIn("unreachable", str(caught.exception))

    @inlineCallbacks
    def test_a_lookup_through_the_hosts_file_resolver_fails_at_once(self) -> Any:
        """A and AAAA lookups (the hosts file first) fail at once when the DNS port is closed."""
        resolver = make_resolver([("127.0.0.1", closed_udp_port())], default_reactor(), hosts_file=True)
        started = time.monotonic()
        with self.assertRaises(ServerUnreachable):
            yield resolver.lookupAddress("app.invalid", timeout=LOOKUP_TIMEOUT)
        self.assertLess(time.monotonic() - started, PROMPT)

    @inlineCallbacks
    def test_next_server_answers_after_a_closed_one(self) -> Any:
        """With a closed server listed first, the next server is asked at once and answers."""
        server = DNSServer()
        self.addCleanup(server.stop)
        server.set_srv("_api._tcp.svc.test", [(1, 0, 8001, "one.svc.test")])
        live = ("127.0.0.1", port_number(server.port))
        resolver = make_resolver([("127.0.0.1", closed_udp_port()), live], default_reactor(), hosts_file=False)
        started = time.monotonic()
        answers, _, _ = yield resolver.lookupService("_api._tcp.svc.test", timeout=LOOKUP_TIMEOUT)
        self.assertLess(time.monotonic() - started, PROMPT)
        self.assertEqual([(a.type, a.payload.port, str(a.payload.target)) for a in answers],
                         [(dns.SRV, 8001, "one.svc.test")])
        self.assertEqual(server.questions("SRV"), ["_api._tcp.svc.test"])

    @inlineCallbacks
    def test_transport_resolvers_fail_at_once_too(self) -> Any:
        """The transport's ``resolvers`` (upstream dials) also fail at once on a closed port."""
        names = NamesHostnameResolver.for_servers([("127.0.0.1", closed_udp_port())], default_reactor())
        started = time.monotonic()
        with self.assertRaises(ServerUnreachable):
            yield names.resolver.lookupAddress("backend.invalid", timeout=LOOKUP_TIMEOUT)
        self.assertLess(time.monotonic() - started, PROMPT)
