"""Tests for the HTTP/1.1 upstream client and keep-alive pool."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import http, resource, server

from txcaddy.reverseproxy.transport import (
    CHUNKED,
    ConnectionPool,
    DialError,
    ResponseHeaderTimeout,
    UpstreamAddress,
    UpstreamConnectionLost,
    UpstreamProtocolError,
)

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
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def start(self, method=b"GET", target=b"/", body_length=None, consumer=None, **kw):
        """Issue a request and deliver the body to a Collector once the head is in."""
        exchange = self.pool.request(ADDR, method, target, HOST, body_length, **kw)
        collector = consumer if consumer is not None else Collector()
        heads = []
        failures = []

        def got_head(head):
            heads.append(head)
            if head.status != 101:
                exchange.deliver_body(collector)

        exchange.head.addCallbacks(got_head, failures.append)
        return exchange, collector, heads, failures


class RequestWritingTests(PoolTestCase):
    def test_head_bytes(self) -> None:
        """The request head is written verbatim; caller framing headers are replaced."""
        exchange = self.pool.request(
            ADDR, b"GET", b"/a%20b?x=1",
            [(b"Host", b"example.com"), (b"X-Multi", b"one"), (b"X-Multi", b"two"),
             (b"Content-Length", b"99"), (b"Transfer-Encoding", b"gzip")])
        _proto, transport = self.connect()
        self.assertEqual(
            transport.value(),
            b"GET /a%20b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Multi: one\r\n"
            b"X-Multi: two\r\n\r\n")
        self.assertTrue(exchange.sent_anything)

    def test_content_length_body_streamed(self) -> None:
        """Body bytes written before and after connecting are sent in order."""
        exchange = self.pool.request(ADDR, b"POST", b"/up", HOST, body_length=10)
        exchange.write(b"hello")
        _proto, transport = self.connect()
        exchange.write(b"world")
        self.assertEqual(
            transport.value(),
            b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nhelloworld")
        self.assertTrue(exchange.body_done)

    def test_content_length_overflow(self) -> None:
        exchange = self.pool.request(ADDR, b"POST", b"/", HOST, body_length=2)
        self.assertRaises(ValueError, exchange.write, b"abc")

    def test_chunked_body_with_trailers(self) -> None:
        exchange = self.pool.request(ADDR, b"PUT", b"/", HOST, body_length=CHUNKED)
        _proto, transport = self.connect()
        exchange.write(b"abc")
        exchange.write(b"0123456789abcdef")
        exchange.finish_body([(b"X-Sum", b"42")])
        self.assertEqual(
            transport.value(),
            b"PUT / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Sum: 42\r\n\r\n")

    def test_request_body_producer_paused_until_connected(self) -> None:
        """A streaming body producer waits for the connection, then is registered on it."""
        exchange = self.pool.request(ADDR, b"POST", b"/", HOST, body_length=CHUNKED)
        producer = StringTransport()  # any IPushProducer with a visible state
        exchange.registerProducer(producer, True)
        self.assertEqual(producer.producerState, "paused")
        _proto, transport = self.connect()
        self.assertEqual(producer.producerState, "producing")
        self.assertIs(transport.producer, producer)
        exchange.finish_body()
        self.assertIsNone(transport.producer)


class ResponseParsingTests(PoolTestCase):
    def test_content_length_and_reuse(self) -> None:
        exchange, body, heads, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhel")
        self.assertEqual(heads[0].status, 200)
        self.assertEqual(heads[0].reason, b"OK")
        self.assertEqual(heads[0].headers, [(b"Content-Length", b"5"), (b"X-A", b"1")])
        self.assertFalse(body.finished)
        proto.dataReceived(b"lo")
        self.assertEqual(body.body, b"hello")
        self.assertTrue(body.finished)
        self.assertIsNone(body.reason)
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        transport.clear()
        _, body2, heads2, _ = self.start(target=b"/second")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertTrue(transport.value().startswith(b"GET /second HTTP/1.1\r\n"))
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(heads2[0].status, 204)
        self.assertTrue(body2.finished)
        self.assertFalse(transport.disconnecting)

    def test_connection_close_not_reused(self) -> None:
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(body.body, b"ok")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.idle_count(ADDR), 0)
        self.assertEqual(self.pool.open_count(ADDR), 0)
        self.start()
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_http10_without_keepalive_not_reused(self) -> None:
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(body.finished)
        self.assertTrue(transport.disconnecting)

    def test_incomplete_read_not_reused(self) -> None:
        """A consumer that stops mid-body drops the connection."""
        exchange, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        exchange.stopProducing()
        self.assertTrue(transport.disconnecting)
        self.assertTrue(body.finished)
        self.assertIsNotNone(body.reason)
        self.assertEqual(self.pool.idle_count(ADDR), 0)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_chunked_response_with_trailers_byte_by_byte(self) -> None:
        _, body, heads, _ = self.start()
        proto, transport = self.connect()
        wire = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
                b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n"
                b"X-T: done\r\nX-U:  two \r\n\r\n")
        for i in range(len(wire)):
            proto.dataReceived(wire[i:i + 1])
        self.assertEqual(heads[0].status, 200)
        self.assertEqual(body.body, b"helloabcdefghijklmnopqrstuvwxyz")
        self.assertEqual(body.trailers, [(b"X-T", b"done"), (b"X-U", b"two")])
        self.assertTrue(body.finished)
        self.assertIsNone(body.reason)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.pool.idle_count(ADDR), 1)

    def test_chunked_response_in_one_packet(self) -> None:
        _, body, _, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        self.assertEqual(body.body, b"abcde")
        self.assertIsNone(body.trailers)
        self.assertTrue(body.finished)

    def test_invalid_chunk_size_fails(self) -> None:
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        self.assertTrue(body.reason.check(UpstreamProtocolError))
        self.assertTrue(transport.disconnecting)

    def test_close_delimited_body(self) -> None:
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\n\r\nsome ")
        proto.dataReceived(b"bytes")
        self.assertFalse(body.finished)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(body.body, b"some bytes")
        self.assertTrue(body.finished)
        self.assertIsNone(body.reason)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_head_response_has_no_body(self) -> None:
        _, body, heads, _ = self.start(method=b"HEAD")
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        self.assertEqual(heads[0].get(b"content-length"), b"1000")
        self.assertTrue(body.finished)
        self.assertEqual(body.body, b"")
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertFalse(transport.disconnecting)

    def test_informational_responses(self) -> None:
        infos = []
        _, body, heads, _ = self.start(on_informational=infos.append)
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
                           b"Link: </s.css>; rel=preload\r\n\r\n")
        self.assertEqual([h.status for h in infos], [100, 103])
        self.assertEqual(infos[1].headers, [(b"Link", b"</s.css>; rel=preload")])
        self.assertEqual(heads, [])
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
        self.assertEqual(heads[0].status, 200)
        self.assertEqual(body.body, b"x")

    def test_switching_protocols_handover(self) -> None:
        exchange, _, heads, _ = self.start(target=b"/ws")
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\n\r\nearly-frame")
        self.assertEqual(heads[0].status, 101)
        self.assertEqual(self.pool.open_count(ADDR), 0)

        class Tunnel(Protocol):
            received = b""
            lost = None

            def dataReceived(self, data):
                self.received += data

            def connectionLost(self, reason):
                self.lost = reason

        tunnel = Tunnel()
        exchange.switch_protocol(tunnel)
        self.assertIs(tunnel.transport, transport)
        self.assertEqual(tunnel.received, b"early-frame")
        self.assertEqual(transport.producerState, "producing")
        proto.dataReceived(b"more")
        self.assertEqual(tunnel.received, b"early-framemore")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(tunnel.lost)

    def test_reset_mid_response(self) -> None:
        _, body, _, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        proto.connectionLost(Failure(ConnectionLost("Connection reset by peer")))
        self.assertEqual(body.body, b"abc")
        self.assertTrue(body.reason.check(UpstreamConnectionLost))
        self.assertEqual(body.reason.value.status, 502)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_lost_before_head(self) -> None:
        _, _, _, failures = self.start()
        proto, _ = self.connect()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(failures[0].check(UpstreamConnectionLost))

    def test_malformed_status_line(self) -> None:
        _, _, _, failures = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/2 200 OK\r\n\r\n")
        self.assertTrue(failures[0].check(UpstreamProtocolError))
        self.assertTrue(transport.disconnecting)

    def test_conflicting_content_length(self) -> None:
        _, _, _, failures = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        self.assertTrue(failures[0].check(UpstreamProtocolError))

    def test_backpressure_pause_resume(self) -> None:
        exchange, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab")
        exchange.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        proto.dataReceived(b"cd")  # already in flight when the pause happened
        self.assertEqual(body.body, b"ab")
        exchange.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(body.body, b"abcd")
        proto.dataReceived(b"ef")
        self.assertTrue(body.finished)
        self.assertEqual(body.body, b"abcdef")

    def test_body_delivered_later(self) -> None:
        """Until deliver_body is called the body is held and reading paused."""
        exchange = self.pool.request(ADDR, b"GET", b"/", HOST)
        heads = []
        exchange.head.addCallback(heads.append)
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        self.assertEqual(heads[0].status, 200)
        self.assertEqual(transport.producerState, "paused")
        proto.dataReceived(b"cd")
        body = Collector()
        exchange.deliver_body(body)
        self.assertEqual(body.body, b"abcd")
        self.assertTrue(body.finished)
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(self.pool.idle_count(ADDR), 1)

    def test_early_response_before_body_sent(self) -> None:
        """An answer before the request body is complete retires the connection."""
        exchange, body, heads, _ = self.start(method=b"POST", body_length=100)
        proto, transport = self.connect()
        exchange.write(b"x" * 10)
        proto.dataReceived(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(heads[0].status, 413)
        self.assertTrue(body.finished)
        self.assertTrue(transport.disconnecting)
        before = transport.value()
        exchange.write(b"y" * 10)
        self.assertEqual(transport.value(), before)


class PoolTests(PoolTestCase):
    def test_idle_retirement(self) -> None:
        pool = self.pool = ConnectionPool(self.reactor, idle_timeout=90.0)
        self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(pool.idle_count(ADDR), 1)
        self.reactor.advance(89)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(pool.idle_count(ADDR), 0)
        self.assertEqual(pool.open_count(ADDR), 0)

    def test_reuse_cancels_idle_timer(self) -> None:
        self.pool = ConnectionPool(self.reactor, idle_timeout=10.0)
        self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.reactor.advance(5)
        self.start()
        self.reactor.advance(20)
        self.assertFalse(transport.disconnecting)

    def test_idle_connection_closed_by_server(self) -> None:
        self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.pool.idle_count(ADDR), 0)
        self.assertEqual(self.pool.open_count(ADDR), 0)
        self.start()
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_max_idle_per_host(self) -> None:
        self.pool = ConnectionPool(self.reactor, max_idle_per_host=1)
        self.start()
        self.start()
        p1, t1 = self.connect(0)
        p2, t2 = self.connect(1)
        p1.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        p2.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertFalse(t1.disconnecting)
        self.assertTrue(t2.disconnecting)

    def test_max_conns_per_host_queues(self) -> None:
        self.pool = ConnectionPool(self.reactor, max_conns_per_host=1)
        _, body1, _, _ = self.start(target=b"/1")
        _, body2, heads2, _ = self.start(target=b"/2")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        proto, transport = self.connect()
        self.assertNotIn(b"/2", transport.value())
        transport.clear()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        self.assertTrue(body1.finished)
        self.assertTrue(transport.value().startswith(b"GET /2 HTTP/1.1"))
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")
        self.assertEqual(body2.body, b"2")
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_queued_request_dials_after_close(self) -> None:
        self.pool = ConnectionPool(self.reactor, max_conns_per_host=1)
        self.start()
        _, _, _, _ = self.start(target=b"/2")
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_dial_timeout(self) -> None:
        _, _, _, failures = self.start()
        self.reactor.advance(2.9)
        self.assertEqual(failures, [])
        self.reactor.advance(0.1)
        self.assertTrue(failures[0].check(DialError))
        self.assertEqual(failures[0].value.status, 502)
        self.assertIn("timeout", str(failures[0].value))
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_dial_refused(self) -> None:
        _, _, _, failures = self.start()
        _h, _p, factory, _t, _b = self.reactor.tcpClients[0]
        connector = self.reactor.connectors[0]
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
        self.assertTrue(failures[0].check(DialError))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_response_header_timeout(self) -> None:
        self.pool = ConnectionPool(self.reactor, response_header_timeout=5.0)
        exchange, _, _, failures = self.start(method=b"POST", body_length=CHUNKED)
        _, transport = self.connect()
        self.reactor.advance(10)  # body not finished: the timer has not started
        self.assertEqual(failures, [])
        exchange.finish_body()
        self.reactor.advance(5)
        self.assertTrue(failures[0].check(ResponseHeaderTimeout))
        self.assertEqual(failures[0].value.status, 504)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_response_header_timer_stops_at_head(self) -> None:
        self.pool = ConnectionPool(self.reactor, response_header_timeout=5.0)
        _, body, _, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
        self.reactor.advance(60)
        proto.dataReceived(b"abc")
        self.assertIsNone(body.reason)
        self.assertEqual(body.body, b"abc")

    def test_cancel_head_aborts(self) -> None:
        exchange, _, _, failures = self.start()
        _, transport = self.connect()
        exchange.head.cancel()
        self.assertTrue(failures[0].check(defer.CancelledError))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_cancel_while_dialing_keeps_connection(self) -> None:
        exchange, _, _, failures = self.start()
        exchange.head.cancel()
        self.assertTrue(failures[0].check(defer.CancelledError))
        _, transport = self.connect()
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.pool.idle_count(ADDR), 1)

    def test_unix_address(self) -> None:
        address = UpstreamAddress.parse("unix//run/app.sock")
        self.assertEqual((address.network, address.path), ("unix", "/run/app.sock"))
        self.pool.request(address, b"GET", b"/", HOST)
        self.assertEqual(self.reactor.unixClients[0][0], "/run/app.sock")

    def test_address_parsing(self) -> None:
        v6 = UpstreamAddress.parse("[::1]:8080")
        self.assertEqual((v6.host, v6.port), ("::1", 8080))
        self.assertRaises(ValueError, UpstreamAddress.parse, "nope")
        self.assertNotEqual(UpstreamAddress.parse("a:1").key, UpstreamAddress.parse("a:2").key)


class _IOSimEndpoint:
    """Connects the client to a twisted.web server through iosim's in-memory pipe."""

    def __init__(self, test: IOSimTests) -> None:
        self.test = test

    def connect(self, factory):
        client = factory.buildProtocol(None)
        site = server.Site(self.test.resource, reactor=self.test.reactor)
        server_proto = site.buildProtocol(None)
        self.test.pump = iosim.connect(
            server_proto, iosim.FakeTransport(server_proto, True),
            client, iosim.FakeTransport(client, False), greet=False)
        return defer.succeed(client)


class _Echo(resource.Resource):
    isLeaf = True

    def render_POST(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"got:" + request.content.read()

    def render_GET(self, request):
        request.write(b"chunk1-")
        request.write(b"chunk2")
        request.finish()
        return server.NOT_DONE_YET


class IOSimTests(SynchronousTestCase):
    """The client against twisted.web's real HTTP/1.1 server, over iosim."""

    def setUp(self) -> None:
        self.resource = _Echo()
        self.reactor = MemoryReactorClock()
        self.pool = ConnectionPool(self.reactor, endpoint_factory=lambda a: _IOSimEndpoint(self))

    def test_chunked_upload_and_chunked_download_on_one_connection(self) -> None:
        exchange = self.pool.request(ADDR, b"POST", b"/echo", HOST, body_length=CHUNKED)
        exchange.write(b"hello ")
        exchange.write(b"world")
        exchange.finish_body()
        heads, body = [], Collector()
        exchange.head.addCallback(lambda h: (heads.append(h), exchange.deliver_body(body)))
        self.pump.flush()
        self.assertEqual(heads[0].status, 200)
        self.assertEqual(body.body, b"got:hello world")
        self.assertIsNone(body.reason)
        first_pump = self.pump

        exchange = self.pool.request(ADDR, b"GET", b"/stream", HOST)
        body2 = Collector()
        exchange.head.addCallback(lambda h: exchange.deliver_body(body2))
        first_pump.flush()
        self.assertIs(self.pump, first_pump)  # reused, no new dial
        self.assertEqual(body2.body, b"chunk1-chunk2")
        self.assertIsNone(body2.reason)
        self.assertEqual(self.pool.idle_count(ADDR), 1)


class _Big(resource.Resource):
    isLeaf = True

    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.payload = payload

    def render_GET(self, request):
        request.setHeader(b"content-length", b"%d" % len(self.payload))
        return self.payload


class _TrackedChannel(http.HTTPChannel):
    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.factory.lost.callback(None)


class IntegrationTests(TestCase):
    """A real Twisted web server on 127.0.0.1."""

    def test_one_mebibyte_byte_exact(self) -> None:
        from twisted.internet import reactor

        payload = bytes(range(256)) * 4096
        site = server.Site(_Big(payload), timeout=None)
        site.protocol = _TrackedChannel
        site.lost = defer.Deferred()
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        pool = ConnectionPool(reactor)
        address = UpstreamAddress.parse(f"127.0.0.1:{port.getHost().port}")
        exchange = pool.request(address, b"GET", b"/big", [(b"Host", b"localhost")])
        client_lost = defer.Deferred()
        done = defer.Deferred()

        class Consumer(Collector):
            def body_finished(self, reason):
                super().body_finished(reason)
                done.callback(self)

        def got_head(head):
            self.assertEqual(head.status, 200)
            conn = exchange._conn
            original = conn.connectionLost

            def lost(reason):
                original(reason)
                client_lost.callback(None)

            conn.connectionLost = lost
            exchange.deliver_body(Consumer())

        exchange.head.addCallback(got_head)

        def check(consumer):
            self.assertIsNone(consumer.reason)
            self.assertEqual(len(consumer.body), len(payload))
            self.assertTrue(consumer.body == payload)
            self.assertEqual(pool.idle_count(address), 1)
            pool.close_idle()
            return defer.gatherResults([client_lost, site.lost])

        return done.addCallback(check)


class EdgeCaseTests(PoolTestCase):
    def test_bare_lf_response(self) -> None:
        _, body, heads, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\nContent-Length: 4\n\nbody")
        self.assertEqual(heads[0].headers, [(b"Content-Length", b"4")])
        self.assertEqual(body.body, b"body")

    def test_short_content_length_body_aborts(self) -> None:
        exchange, _, _, failures = self.start(method=b"POST", body_length=5)
        _, transport = self.connect()
        exchange.write(b"abc")
        exchange.finish_body()
        self.assertTrue(failures[0].check(UpstreamProtocolError))
        self.assertTrue(transport.disconnecting)

    def test_transfer_encoding_with_content_length_not_reused(self) -> None:
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        self.assertEqual(body.body, b"ok")
        self.assertTrue(transport.disconnecting)

    def test_paused_bytes_delivered_before_close(self) -> None:
        exchange, body, _, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\n\r\nab")
        exchange.pauseProducing()
        proto.dataReceived(b"cd")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(body.body, b"abcd")
        self.assertIsNone(body.reason)

    def test_oversized_head_rejected(self) -> None:
        self.pool = ConnectionPool(self.reactor, max_response_header_size=100)
        _, _, _, failures = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200)
        self.assertTrue(failures[0].check(UpstreamProtocolError))
