"""Health checks with HTTP/2 upstreams: active probes go over h2c when the transport says so
(Caddy probes with the handler's own transport), and failed h2 requests count as passive
failures.  The upstream is a server-side ``h2`` state machine wired in memory."""

from __future__ import annotations

from typing import Any

from h2.errors import ErrorCodes
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.reverseproxy.test__h2connection import Peer
from tests.reverseproxy.test_handler import HandlerTestCase
from txcaddy.reverseproxy._h1connection import ConnectionPool
from txcaddy.reverseproxy._h2connection import H2Pool
from txcaddy.reverseproxy._transport import HTTPTransport
from txcaddy.reverseproxy.health import ActiveHealthChecker, ActiveHealthConfig
from txcaddy.reverseproxy.hosts import Host, Upstream
from txcaddy.testing import make_request


class _Endpoint:
    """Connects at once to a new in-memory h2 ``Peer`` (its SETTINGS allow 10 streams)."""

    def __init__(self, peers: list[Peer]) -> None:
        self.peers = peers

    def connect(self, factory: Any) -> Any:
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport())
        self.peers.append(Peer(proto, 10))
        return succeed(proto)


def h2c_transport(reactor: Any, peers: list[Peer]) -> HTTPTransport:
    """The ``http`` transport with ``versions h2c``, dialling in-memory peers."""
    endpoint = _Endpoint(peers)
    pool = ConnectionPool(reactor, endpoint_factory=lambda a: endpoint)
    h2_pool = H2Pool(reactor, endpoint_factory=lambda a: endpoint)
    return HTTPTransport(pool, versions=("h2c",), h2_pool=h2_pool)


class ActiveH2CTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.peers: list[Peer] = []

    def check(self, status: bytes) -> bool:
        """One round against an h2c upstream answering ``status``; the host's health after it."""
        active = ActiveHealthConfig.from_config({"uri": "/health", "interval": 10_000_000_000})
        assert active is not None
        host = Host("10.0.0.1:80")
        checker = ActiveHealthChecker(active, [Upstream("10.0.0.1:80", host)],
                                      h2c_transport(self.clock, self.peers), self.clock)
        checker.startService()
        self.addCleanup(checker.stopService)
        (peer,) = self.peers
        peer.pump()
        (headers,) = peer.requests().values()
        self.assertEqual((headers[b":method"], headers[b":path"], headers[b":scheme"]),
                         (b"GET", b"/health", b"http"))
        peer.respond(1, b"ok", status=status)
        return not host.unhealthy

    def test_probe_over_h2c(self) -> None:
        """The probe is an HTTP/2 request on the h2c transport; a 200 keeps the host healthy."""
        self.assertTrue(self.check(b"200"))

    def test_failed_probe_over_h2c(self) -> None:
        """A 503 answered over h2c marks the host unhealthy."""
        self.assertFalse(self.check(b"503"))


class PassiveH2CTests(HandlerTestCase):
    def test_reset_stream_counts_as_a_failure(self) -> None:
        """An h2 request the upstream resets is a 502 and a passive health failure."""
        peers: list[Peer] = []
        self.transport = h2c_transport(self.clock, peers)  # type: ignore[assignment]
        handler = self.load({"upstreams": [{"dial": "10.0.0.1:80"}],
                             "health_checks": {"passive": {"fail_duration": 10_000_000_000}}})
        _, outcome = self.serve(handler, make_request())
        (peer,) = peers
        peer.pump()
        self.assertEqual(self.fails("10.0.0.1:80"), 0)
        peer.server.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
        peer.pump()
        self.assertEqual(outcome[0].value.status, 502)
        self.assertEqual(self.fails("10.0.0.1:80"), 1)
