"""HTTP/2 to HTTPS upstreams by ALPN (``versions`` "2"), against txcaddy's own server behind
TLS on 127.0.0.1: one that negotiates h2 and one that speaks only HTTP/1.1."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests._net import listen_local, port_number
from tests.reverseproxy._client import Collector, TrackedFactory
from tests.tls.test__client import shared_pki
from txcaddy._reactor import default_reactor
from txcaddy.http._h2 import HTTPFactory
from txcaddy.http.routing import Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.interfaces import IHandler
from txcaddy.reverseproxy._alpn import AlpnExchange
from txcaddy.reverseproxy.transport import HTTPTransport, UpstreamAddress

TLS = {"insecure_skip_verify": True}


@implementer(IHandler)
class ProtoEcho:
    """Answers ``<proto> <method> <body length>``."""

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        size = [0]

        class Consumer:
            def body_data(self, data: bytes) -> None:
                size[0] += len(data)

            def body_trailers(self, trailers: Any) -> None:
                pass

            def body_finished(self, error: Any) -> None:
                response.write(b"%s %s %d" % (request.proto.encode(), request.method.encode(),
                                              size[0]))
                done.callback(None)

        request.body.deliver(Consumer())
        return done


class CountingFactory(TrackedFactory):
    """Counts the connections the upstream accepted."""

    made = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.made += 1
        return super().buildProtocol(addr)


def send(transport: HTTPTransport, address: UpstreamAddress, method: bytes = b"GET",
         body: bytes | None = None, headers: Any = ()) -> Deferred[tuple[int, bytes, bytes]]:
    """A request through ``transport``; fires with (status, version, body)."""
    exchange = transport.request(address, method, b"/", [(b"Host", b"backend.test"), *headers],
                                 None if body is None else len(body))
    if body is not None:
        exchange.write(body)  # before any connection: kept by the exchange until then
    done: Deferred[tuple[int, bytes, bytes]] = Deferred()

    def got_head(head: Any) -> None:
        class Body(Collector):
            def body_finished(self, reason: Any) -> None:
                if reason is None:
                    done.callback((head.status, head.version, self.body))
                else:
                    done.errback(reason)

        exchange.deliver_body(Body())

    exchange.head.addCallbacks(got_head, done.errback)
    return done


class ALPNUpstreamTests(TestCase):
    def setUp(self) -> None:
        self.reactor = default_reactor()
        self.pki = shared_pki(self)

    def serve(self, h2: bool) -> tuple[UpstreamAddress, CountingFactory]:
        """A TLS upstream choosing ``h2`` by ALPN (``h2``), or ``http/1.1`` only."""
        server = HTTPServer("up", [":0"], RouteList([Route([ProtoEcho()])]), reactor=self.reactor)
        options = self.pki.server_options()
        options._acceptableProtocols = [b"h2", b"http/1.1"] if h2 else [b"http/1.1"]
        factory = CountingFactory(TLSMemoryBIOFactory(
            options, False, HTTPFactory(server, self.reactor, h2=True)))
        port = listen_local(factory, reactor=self.reactor)
        self.addCleanup(port.stopListening)
        self.addCleanup(factory.all_closed)
        return UpstreamAddress.parse(f"127.0.0.1:{port_number(port)}"), factory

    def transport(self, config: dict[str, Any]) -> HTTPTransport:
        transport = HTTPTransport.from_config(config, self.reactor)
        self.addCleanup(transport.close_idle)
        return transport

    @defer.inlineCallbacks
    def test_h2_upstream_gets_http2_by_default(self) -> Any:
        """Default versions: an upstream choosing h2 by ALPN is served over HTTP/2, reusing one
        connection for later requests, a request body included."""
        address, factory = self.serve(h2=True)
        transport = self.transport({"tls": TLS})
        result = yield send(transport, address)
        self.assertEqual(result, (200, b"HTTP/2.0", b"HTTP/2.0 GET 0"))
        result = yield send(transport, address, b"POST", b"x" * 70000)
        self.assertEqual(result, (200, b"HTTP/2.0", b"HTTP/2.0 POST 70000"))
        results = yield defer.gatherResults([send(transport, address) for _ in range(3)])
        self.assertEqual([r[2] for r in results], [b"HTTP/2.0 GET 0"] * 3)
        self.assertIsNotNone(transport.alpn_pool)
        self.assertEqual(factory.made, 1)

    @defer.inlineCallbacks
    def test_h1_only_upstream_gets_http11(self) -> Any:
        """Default versions: an upstream that does not pick h2 is served over HTTP/1.1."""
        address, _ = self.serve(h2=False)
        transport = self.transport({"tls": TLS})
        result = yield send(transport, address, b"POST", b"abc")
        self.assertEqual(result, (200, b"HTTP/1.1", b"HTTP/1.1 POST 3"))

    @defer.inlineCallbacks
    def test_versions_1_1_offers_no_h2(self) -> Any:
        """``versions ["1.1"]``: only http/1.1 offered, so even an h2-capable upstream speaks HTTP/1.1."""
        address, _ = self.serve(h2=True)
        transport = self.transport({"tls": TLS, "versions": ["1.1"]})
        self.assertIsNone(transport.alpn_pool)
        result = yield send(transport, address)
        self.assertEqual(result, (200, b"HTTP/1.1", b"HTTP/1.1 GET 0"))

    @defer.inlineCallbacks
    def test_versions_2_alone(self) -> Any:
        """``versions ["2"]``: HTTP/2 to an upstream choosing h2."""
        address, _ = self.serve(h2=True)
        transport = self.transport({"tls": TLS, "versions": ["2"]})
        result = yield send(transport, address)
        self.assertEqual(result, (200, b"HTTP/2.0", b"HTTP/2.0 GET 0"))

    @defer.inlineCallbacks
    def test_upgrade_requests_stay_http11(self) -> Any:
        """An upgrade request (WebSocket) is dialled offering only http/1.1, in the HTTP/1.1 pool."""
        address, _ = self.serve(h2=True)
        transport = self.transport({"tls": TLS})
        upgrade = [(b"Connection", b"Upgrade"), (b"Upgrade", b"foo")]
        exchange = transport.request(address, b"GET", b"/", [(b"Host", b"b"), *upgrade])
        self.assertNotIsInstance(exchange, AlpnExchange)
        exchange.abort()
        result = yield send(transport, address, headers=upgrade)
        self.assertEqual(result[1], b"HTTP/1.1")
        self.assertIn(b"HTTP/1.1 GET", result[2])
