"""The transport's ``resolver``: upstream host names looked up on the configured DNS servers."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tests.reverseproxy._client import load_transport
from txcaddy.errors import ConfigError
from txcaddy.reverseproxy._resolver import NamesHostnameResolver, parse_resolver_addresses
from txcaddy.reverseproxy.transport import (
    UpstreamAddress,
)


class ResolverTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        """``resolver.addresses`` are ``[network/]ip[:port]``; host names and ranges are errors."""
        self.assertEqual(
            parse_resolver_addresses(["127.0.0.1:5353", "udp/10.0.0.1", "[::1]:53", "tcp/::2"]),
            [("127.0.0.1", 5353), ("10.0.0.1", 53), ("::1", 53), ("::2", 53)])
        for bad in (["dns.example:53"], ["1.1.1.1:53-54"], ["1.1.1.1:x"], "1.1.1.1"):
            self.assertRaises(ConfigError, parse_resolver_addresses, bad)

    def test_hostname_upstreams_use_the_resolver(self) -> None:
        """With a resolver, host-name endpoints resolve through it; without, through the reactor."""
        reactor = MemoryReactorClock()
        transport = load_transport({"resolver": {"addresses": ["127.0.0.1:5353"]}}, reactor)
        endpoint = transport.pool.endpoint_factory(UpstreamAddress.parse("backend.test:80"))
        self.assertIsInstance(endpoint._reactor.nameResolver, NamesHostnameResolver)
        plain = load_transport({}, reactor).pool.endpoint_factory(UpstreamAddress.parse("backend.test:80"))
        self.assertIs(plain._reactor, reactor)
