"""Shared pieces of the upstream client tests: a body collector, a pool on a MemoryReactorClock,
loaded transports, and real-socket helpers (a TLS site, a DNS server)."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.names import authority, dns
from twisted.names import server as names_server
from twisted.protocols import policies
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource

from tests._net import port_number
from txcaddy._reactor import default_reactor
from txcaddy.reverseproxy.transport import (
    ConnectionPool,
    HTTPTransport,
    UpstreamAddress,
)
from txcaddy.testing import MemoryServingReactor

ADDR = UpstreamAddress.parse("127.0.0.1:9000")


HOST = [(b"Host", b"example.com")]


class Collector:
    """A response body consumer that records what it is given."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.trailers = None
        self.finished = False
        self.reason: Failure | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def body_data(self, data: bytes) -> None:
        self.chunks.append(data)

    def body_trailers(self, trailers) -> None:
        self.trailers = trailers

    def body_finished(self, reason: Failure | None) -> None:
        self.finished = True
        self.reason = reason


class PoolTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pool = ConnectionPool(self.reactor, dial_timeout=3.0)

    def connect(self, index: int = -1):
        """Complete the pending dial number ``index``; return (protocol, transport)."""
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[index]
        self.assertEqual((host, port), ("127.0.0.1", 9000))
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def start(self, method=b"GET", target=b"/", body_length=None, consumer=None, **kw):
        """Issue a request and deliver the body to a Collector once the head is in."""
        exchange = self.pool.request(ADDR, method, target, HOST, body_length, **kw)
        collector = consumer if consumer is not None else Collector()
        heads: list[Any] = []
        failures: list[Failure] = []

        def got_head(head):
            heads.append(head)
            if head.status != 101:
                exchange.deliver_body(collector)

        exchange.head.addCallbacks(got_head, failures.append)
        return exchange, collector, heads, failures


def load_transport(config=None, reactor=None):
    return HTTPTransport.from_config(config, reactor or MemoryServingReactor())


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello over " + (b"tls" if request.isSecure() else b"plain http")


class TrackedFactory(policies.WrappingFactory):
    """Server factory that can wait until all its connections have closed."""

    def __init__(self, wrapped) -> None:
        super().__init__(wrapped)
        self._waiting: list[defer.Deferred] = []

    def unregisterProtocol(self, p) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def all_closed(self) -> defer.Deferred:
        if not self.protocols:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d


def fetch(transport, address, host=b"backend.test", request=None):
    """GET / through ``transport``; fires with (status, body) or fails with the error."""
    exchange = transport.request(address, b"GET", b"/", [(b"Host", host)], request=request)
    done: defer.Deferred[tuple[int, bytes]] = defer.Deferred()

    class Body(Collector):
        status = 0

        def body_finished(self, reason):
            super().body_finished(reason)
            if reason is None:
                done.callback((self.status, self.body))
            else:
                done.errback(reason)

    def got_head(head):
        body = Body()
        body.status = head.status
        exchange.deliver_body(body)

    exchange.head.addCallbacks(got_head, done.errback)
    return done


class Zone(authority.FileAuthority):
    """An authoritative zone held in memory."""

    def __init__(self, records) -> None:
        super().__init__(None)
        # FileAuthority's ``soa = None`` types the attribute None; it holds (name, Record_SOA).
        soa = dns.Record_SOA(mname=b"ns.test", rname=b"admin.test", serial=1,
                             refresh=60, retry=60, expire=60, minimum=60, ttl=60)
        self.soa = (b"test", soa)  # type: ignore[assignment]
        self.records = records

    def loadFile(self, filename) -> None:
        pass


def dns_server(test, records) -> str:
    """An authoritative DNS server for ``records`` on 127.0.0.1 (UDP); returns its address."""
    factory = names_server.DNSServerFactory(authorities=[Zone(records)])
    # Twisted's default packet size, spelled out: IReactorUDP declares it without one.
    port = default_reactor().listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1",
                                       maxPacketSize=8192)
    test.addCleanup(port.stopListening)
    return f"127.0.0.1:{port_number(port)}"
