"""HTTP/2 to HTTPS upstreams by ALPN (``versions`` "2"), against txcaddy's own server behind
TLS on 127.0.0.1: one that negotiates h2 and one that speaks only HTTP/1.1."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from zope.interface import implementer

from tests._net import listen_local, port_number
from tests.reverseproxy._backends import site, start_proxy
from tests.reverseproxy._client import Collector, TrackedFactory
from tests.tls.test__client import shared_pki
from txcaddy._reactor import default_reactor
from txcaddy.http._httpfactory import HTTPFactory
from txcaddy.http.routing import Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.interfaces import IHandler
from txcaddy.reverseproxy._alpn import ALPN_H2_H1, AlpnExchange
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


class TLSUpstreamCase(TestCase):
    """A real TLS upstream on 127.0.0.1 (txcaddy's own server) and transports to it."""

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


class ALPNUpstreamTests(TLSUpstreamCase):
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
    def streamed(self, h2: bool) -> Any:
        """POST 30000 bytes from a producer registered before the connection exists; return
        (response version, body, producer calls)."""
        address, _ = self.serve(h2=h2)
        transport = self.transport({"tls": TLS})
        exchange = transport.request(address, b"POST", b"/", [(b"Host", b"b")], 30000)
        calls: list[str] = []

        class Producer:
            def pauseProducing(self) -> None:
                calls.append("pause")

            def resumeProducing(self) -> None:
                calls.append("resume")
                if calls.count("resume") == 1:
                    for _ in range(3):
                        exchange.write(b"y" * 10000)

            def stopProducing(self) -> None:
                calls.append("stop")

        exchange.registerProducer(Producer(), True)
        self.assertEqual((calls, exchange.body_wanted), (["pause"], False))
        head = yield exchange.head
        done: Deferred[None] = Deferred()

        class Body(Collector):
            def body_finished(self, reason: Any) -> None:
                done.callback(reason)

        body = Body()
        exchange.deliver_body(body)
        yield done
        return head.version, body.body, calls

    @defer.inlineCallbacks
    def test_streamed_body_over_http2(self) -> Any:
        """A body producer registered before the connection is paused, then resumed on the
        HTTP/2 stream the request ends up on; the body arrives whole."""
        version, body, calls = yield self.streamed(True)
        self.assertEqual((version, body), (b"HTTP/2.0", b"HTTP/2.0 POST 30000"))
        self.assertEqual(calls[-1], "resume")  # paused (at registration, at binding) until then
        self.assertNotIn("stop", calls)

    @defer.inlineCallbacks
    def test_streamed_body_over_http11(self) -> Any:
        """The same on an HTTP/1.1 connection (the upstream chose http/1.1)."""
        version, body, calls = yield self.streamed(False)
        self.assertEqual((version, body), (b"HTTP/1.1", b"HTTP/1.1 POST 30000"))
        self.assertIn("resume", calls)
        self.assertNotIn("stop", calls)

    @defer.inlineCallbacks
    def test_abort_while_dialling(self) -> Any:
        """A request given up before its connection is ready fails with its reason; the new
        connection is kept idle for the next request."""
        address, factory = self.serve(h2=True)
        transport = self.transport({"tls": TLS})
        exchange = transport.request(address, b"GET", b"/", [(b"Host", b"b")])
        failure = self.assertFailure(exchange.head, ValueError)
        exchange.abort(ValueError("client gone"))
        yield failure
        self.assertTrue(exchange.finished)
        pool = transport.alpn_pool
        assert pool is not None
        creator = transport.tls_config.creator_for("127.0.0.1", alpn=ALPN_H2_H1)  # type: ignore[union-attr]
        for _ in range(500):  # the dial goes on: its connection is kept
            if pool.idle_count(address, tls=creator):
                break
            yield deferLater(self.reactor, 0.01, lambda: None)
        self.assertEqual(pool.idle_count(address, tls=creator), 1)
        result = yield send(transport, address)
        self.assertEqual(result[1], b"HTTP/2.0")
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


class ProxyThroughALPNTests(TLSUpstreamCase):
    """The whole proxy, from a Caddyfile, to an HTTPS upstream that chooses h2."""

    @defer.inlineCallbacks
    def proxied(self, transport_lines: str) -> Any:
        address, _ = self.serve(h2=True)
        base = start_proxy(self, site(
            f"\treverse_proxy https://127.0.0.1:{address.port} {{\n\t\ttransport http {{\n"
            f"\t\t\ttls_insecure_skip_verify\n{transport_lines}\t\t}}\n\t}}"))
        agent = Agent(self.reactor)
        response = yield agent.request(b"POST", base.encode() + b"/x", None,
                                       FileBodyProducer(BytesIO(b"hello")))
        body = yield readBody(response)
        return response.code, body

    @defer.inlineCallbacks
    def test_default_versions_proxy_over_http2(self) -> Any:
        """``reverse_proxy https://…`` with default versions reaches an h2 upstream over HTTP/2."""
        result = yield self.proxied("")
        self.assertEqual(result, (200, b"HTTP/2.0 POST 5"))

    @defer.inlineCallbacks
    def test_versions_1_1_proxy_over_http11(self) -> Any:
        """``versions 1.1`` keeps the same upstream on HTTP/1.1."""
        result = yield self.proxied("\t\t\tversions 1.1\n")
        self.assertEqual(result, (200, b"HTTP/1.1 POST 5"))
