"""The HTTP/1.1 upstream connection: request heads and bodies, deadlines, keep-alive, 100-continue,
the re-send on a stale connection, and the client against twisted.web's server."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import http, resource, server

from tests._net import listen_local, port_number
from tests.reverseproxy._client import ADDR, HOST, Collector, PoolTestCase, load_transport
from txcaddy._reactor import default_reactor
from txcaddy.reverseproxy.transport import (
    CHUNKED,
    ConnectionPool,
    DialError,
    ResponseHead,
    UpstreamAddress,
    UpstreamConnectionLost,
    UpstreamReadTimeout,
    UpstreamWriteTimeout,
)


class RequestWritingTests(PoolTestCase):
    """The request head and body as written on the upstream connection."""

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
        """Writing more body than the announced Content-Length raises ``ValueError``."""
        exchange = self.pool.request(ADDR, b"POST", b"/", HOST, body_length=2)
        self.assertRaises(ValueError, exchange.write, b"abc")

    def test_chunked_body_with_trailers(self) -> None:
        """A CHUNKED body is sent as hex-sized chunks, ended with its trailer fields."""
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

    def test_a_producer_failing_to_stop_is_logged(self) -> None:
        """When the exchange fails, a body producer whose stopProducing raises is logged, and
        the failure still reaches the caller."""

        class Unstoppable:
            def pauseProducing(self) -> None:
                pass

            def resumeProducing(self) -> None:
                pass

            def stopProducing(self) -> None:
                raise ZeroDivisionError("cannot stop")

        exchange, _collector, _heads, failures = self.start(b"POST", body_length=CHUNKED)
        exchange.registerProducer(Unstoppable(), True)
        self.reactor.advance(3.5)  # the dial times out: the exchange fails
        self.assertEqual(len(failures), 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_socket_tuning_failure_is_logged(self) -> None:
        """A connection whose keep-alive cannot be set is logged and used as it is."""
        from tests._transports import TCPStringTransport

        class Refusing(TCPStringTransport):
            def setTcpKeepAlive(self, enabled: bool) -> None:
                raise ZeroDivisionError("no keep-alive here")

        self.pool.tcp_keepalive = 15.0
        _exchange, _collector, _heads, failures = self.start()
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[-1]
        transport = Refusing()
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        assert proto is not None
        proto.makeConnection(transport)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(transport.value().startswith(b"GET / HTTP/1.1\r\n"))
        self.assertEqual(failures, [])


class QuickAckTests(PoolTestCase):
    """When the client acknowledges upstream data at once (``_twisted.quick_ack``)."""

    def setUp(self) -> None:
        super().setUp()
        import txcaddy.reverseproxy._h1connection as client

        self.acked: list[Any] = []
        self.patch(client, "quick_ack", self.acked.append)

    def test_upstream_connections_have_nagle_off(self) -> None:
        """Every new upstream connection gets TCP_NODELAY."""
        from tests._transports import TCPStringTransport

        self.start()
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[-1]
        transport = TCPStringTransport()
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        assert proto is not None
        proto.makeConnection(transport)
        self.assertTrue(transport.no_delay)

    def test_near_the_end_of_a_response(self) -> None:
        """A Content-Length body is ACKed at once only when 64 KiB or less is left to read."""
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n" + b"x" * 1000)
        self.assertEqual(self.acked, [])  # 69,000 bytes to go: reads keep the ACKs coming
        proto.dataReceived(b"x" * 9000)
        self.assertEqual(self.acked, [transport])  # the rest fits in one read: ACK now
        proto.dataReceived(b"x" * 60000)
        self.assertTrue(body.finished)
        self.assertEqual(self.acked, [transport])  # complete: the ACK can ride on the next request

    def test_chunked_and_until_close_bodies_after_every_read(self) -> None:
        """Chunked (and until-close) bodies are ACKed after every read that leaves them open."""
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        self.assertEqual(self.acked, [transport])
        proto.dataReceived(b"0\r\n\r\n")
        self.assertTrue(body.finished)
        self.assertEqual(self.acked, [transport])

    def test_not_for_a_response_read_whole(self) -> None:
        """A response read whole in one go needs no quick ACK."""
        _, body, _, _ = self.start()
        proto, _transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(body.finished)
        self.assertEqual(self.acked, [])


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

    pump: iosim.IOPump  # the pipe of the last dial (set by _IOSimEndpoint)

    def setUp(self) -> None:
        self.resource = _Echo()
        self.reactor = MemoryReactorClock()
        self.pool = ConnectionPool(self.reactor, endpoint_factory=lambda a: _IOSimEndpoint(self))

    def test_chunked_upload_and_chunked_download_on_one_connection(self) -> None:
        """A chunked upload, then a chunked download, from twisted.web on one reused connection."""
        exchange = self.pool.request(ADDR, b"POST", b"/echo", HOST, body_length=CHUNKED)
        exchange.write(b"hello ")
        exchange.write(b"world")
        exchange.finish_body()
        heads: list[ResponseHead] = []
        body = Collector()

        def got_head(head: ResponseHead) -> None:
            heads.append(head)
            exchange.deliver_body(body)

        exchange.head.addCallback(got_head)
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
    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.factory.lost.callback(None)


class _TrackedSite(server.Site):
    """A site without idle timeout whose connection fires ``lost`` when it closes."""

    # HTTPFactory types ``protocol`` as its default factory function; a channel class does.
    protocol = _TrackedChannel  # type: ignore[assignment]

    def __init__(self, root: resource.Resource) -> None:
        super().__init__(root, timeout=None)
        self.lost: defer.Deferred[None] = defer.Deferred()


class IntegrationTests(TestCase):
    """A real Twisted web server on 127.0.0.1."""

    def test_one_mebibyte_byte_exact(self) -> defer.Deferred[list[None]]:
        """A 1 MiB body over real loopback arrives byte-exact; close_idle then closes both ends."""
        payload = bytes(range(256)) * 4096
        site = _TrackedSite(_Big(payload))
        port = listen_local(site)
        self.addCleanup(port.stopListening)
        pool = ConnectionPool(default_reactor())
        address = UpstreamAddress.parse(f"127.0.0.1:{port_number(port)}")
        exchange = pool.request(address, b"GET", b"/big", [(b"Host", b"localhost")])
        client_lost: defer.Deferred[None] = defer.Deferred()
        done: defer.Deferred[Collector] = defer.Deferred()

        class Consumer(Collector):
            def body_finished(self, reason):
                super().body_finished(reason)
                done.callback(self)

        def got_head(head):
            self.assertEqual(head.status, 200)
            conn = exchange._conn
            assert conn is not None
            original = conn.connectionLost

            def lost(reason: Failure = connectionDone) -> None:
                original(reason)
                client_lost.callback(None)

            self.patch(conn, "connectionLost", lost)
            exchange.deliver_body(Consumer())

        exchange.head.addCallback(got_head)

        def check(consumer: Collector) -> defer.Deferred[list[None]]:
            self.assertIsNone(consumer.reason)
            self.assertEqual(len(consumer.body), len(payload))
            self.assertTrue(consumer.body == payload)
            self.assertEqual(pool.idle_count(address), 1)
            pool.close_idle()
            return defer.gatherResults([client_lost, site.lost])

        return done.addCallback(check)


class ReadTimeoutTests(PoolTestCase):
    """``read_timeout``: the deadline of every read from the upstream."""

    def setUp(self) -> None:
        super().setUp()
        self.pool = ConnectionPool(self.reactor, read_timeout=5.0)

    def test_nothing_received(self) -> None:
        """Nothing read within ``read_timeout`` is a 502 and drops the connection."""
        _, _, _, failures = self.start()
        _, transport = self.connect()
        self.reactor.advance(4.9)
        self.assertEqual(failures, [])
        self.reactor.advance(0.1)
        self.assertTrue(failures[0].check(UpstreamReadTimeout))
        self.assertEqual(failures[0].value.status, 502)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_each_read_restarts_the_deadline(self) -> None:
        """Every read restarts the ``read_timeout`` deadline."""
        _, body, _, _ = self.start()
        proto, _ = self.connect()
        for piece in (b"HTTP/1.1 200 OK\r\n", b"Content-Length: 4\r\n\r\n", b"ab", b"cd"):
            self.reactor.advance(4)
            proto.dataReceived(piece)
        self.assertEqual(body.body, b"abcd")
        self.assertIsNone(body.reason)

    def test_stall_mid_body(self) -> None:
        """A body stalling for ``read_timeout`` is cut off with ``UpstreamReadTimeout``."""
        _, body, _, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        self.reactor.advance(5)
        self.assertEqual(body.body, b"ab")
        self.assertTrue(body.reason.check(UpstreamReadTimeout))

    def test_no_deadline_while_the_client_is_slow(self) -> None:
        """Paused reading (a slow client) is not the upstream's fault."""
        exchange, body, _, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        exchange.pauseProducing()
        self.reactor.advance(60)
        self.assertIsNone(body.reason)
        exchange.resumeProducing()
        self.reactor.advance(5)
        self.assertTrue(body.reason.check(UpstreamReadTimeout))

    def test_idle_connection_dropped(self) -> None:
        """An idle pooled connection silent for ``read_timeout`` is aborted and leaves the pool."""
        self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.reactor.advance(5)
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_no_deadline_on_a_tunnel(self) -> None:
        """After a 101 no read deadline runs: the tunnel stays open without timers."""
        exchange, _, heads, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
        exchange.switch_protocol(Protocol())
        self.reactor.advance(600)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class WriteTimeoutTests(PoolTestCase):
    """``write_timeout``: how long the upstream may refuse more request body."""

    def test_upstream_not_taking_the_body(self) -> None:
        """The body producer paused for ``write_timeout`` fails the exchange (502) and stops it."""
        self.pool = ConnectionPool(self.reactor, write_timeout=2.0)
        exchange, _, _, failures = self.start(method=b"POST", body_length=CHUNKED)
        _, transport = self.connect()
        body_source = StringTransport()
        exchange.registerProducer(body_source, True)
        transport.producer.pauseProducing()  # the send buffer is full
        self.assertEqual(body_source.producerState, "paused")
        self.reactor.advance(1.5)
        transport.producer.resumeProducing()  # drained in time
        self.assertEqual(body_source.producerState, "producing")
        self.reactor.advance(5)
        self.assertEqual(failures, [])
        transport.producer.pauseProducing()
        self.reactor.advance(2)
        self.assertTrue(failures[0].check(UpstreamWriteTimeout))
        self.assertEqual(failures[0].value.status, 502)
        self.assertEqual(body_source.producerState, "stopped")


class ExpectContinueTests(PoolTestCase):
    """``Expect: 100-continue`` with ``expect_continue_timeout``: the body held back."""

    EXPECT = HOST + [(b"Expect", b"100-continue")]

    def request(self):
        exchange = self.pool.request(ADDR, b"POST", b"/up", self.EXPECT, body_length=4)
        exchange.write(b"data")
        heads: list[ResponseHead] = []
        body = Collector()

        def got_head(head: ResponseHead) -> None:
            heads.append(head)
            exchange.deliver_body(body)

        exchange.head.addCallback(got_head)
        return exchange, heads, body

    def test_body_waits_for_100_continue(self) -> None:
        """With ``expect_continue_timeout`` the body waits for ``100 Continue``; reused after."""
        self.pool = ConnectionPool(self.reactor, expect_continue_timeout=1.0)
        exchange, heads, body = self.request()
        proto, transport = self.connect()
        self.assertTrue(transport.value().endswith(b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\n"))
        self.assertFalse(exchange.body_wanted)
        proto.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertTrue(transport.value().endswith(b"\r\n\r\ndata"))
        proto.dataReceived(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(heads[0].status, 201)
        self.assertEqual(self.pool.idle_count(ADDR), 1)

    def test_body_sent_when_the_wait_expires(self) -> None:
        """Without a 100, the held body goes when ``expect_continue_timeout`` expires."""
        self.pool = ConnectionPool(self.reactor, expect_continue_timeout=1.0)
        self.request()
        _, transport = self.connect()
        self.reactor.advance(0.999)
        self.assertFalse(transport.value().endswith(b"data"))
        self.reactor.advance(0.001)
        self.assertTrue(transport.value().endswith(b"\r\n\r\ndata"))

    def test_final_answer_instead_of_100(self) -> None:
        """A final answer instead of 100: the body is never sent and the connection is retired."""
        self.pool = ConnectionPool(self.reactor, expect_continue_timeout=1.0)
        exchange, heads, body = self.request()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(heads[0].status, 417)
        self.assertNotIn(b"data", transport.value())
        self.reactor.advance(5)
        self.assertNotIn(b"data", transport.value())
        self.assertTrue(transport.disconnecting)  # the unsent body makes it unusable

    def test_body_arriving_during_an_early_answer_is_not_sent(self) -> None:
        """Body bytes written after an early final answer are never sent."""
        self.pool = ConnectionPool(self.reactor, expect_continue_timeout=1.0)
        exchange = self.pool.request(ADDR, b"POST", b"/", self.EXPECT, body_length=CHUNKED)
        exchange.head.addCallback(lambda h: exchange.deliver_body(Collector()))
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nno")
        exchange.write(b"late body")
        self.assertNotIn(b"late body", transport.value())
        proto.dataReceived(b"pe")
        self.assertTrue(transport.disconnecting)

    def test_producer_resumed_on_100(self) -> None:
        """A body producer stays paused and unregistered until the 100 arrives."""
        self.pool = ConnectionPool(self.reactor, expect_continue_timeout=1.0)
        exchange = self.pool.request(ADDR, b"POST", b"/", self.EXPECT, body_length=CHUNKED)
        proto, transport = self.connect()
        source = StringTransport()
        exchange.registerProducer(source, True)
        self.assertEqual(source.producerState, "paused")
        self.assertIsNone(transport.producer)
        proto.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertEqual(source.producerState, "producing")
        self.assertIs(transport.producer, source)

    def test_no_wait_by_default(self) -> None:
        """Without ``expect_continue_timeout`` the body follows the head at once."""
        self.request()
        _, transport = self.connect()
        self.assertTrue(transport.value().endswith(b"\r\n\r\ndata"))


class KeepAliveTests(PoolTestCase):
    """When a connection is reused, kept, or closed after its exchange."""

    def test_disabled_sends_connection_close_and_never_reuses(self) -> None:
        """Keep-alive off: every request says ``Connection: close`` and its connection is closed."""
        self.pool = load_transport({"keep_alive": {"enabled": False}}, self.reactor).pool
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        self.assertEqual(transport.value(),
                         b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(body.body, b"ok")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_disabled_leaves_an_upgrade_alone(self) -> None:
        """Keep-alive off adds no ``close`` to an upgrade request."""
        self.pool = ConnectionPool(self.reactor, keep_alive=False)
        self.pool.request(ADDR, b"GET", b"/ws", HOST + [(b"Connection", b"Upgrade"),
                                                       (b"Upgrade", b"websocket")])
        _, transport = self.connect()
        self.assertNotIn(b"close", transport.value())

    def test_request_asking_to_close(self) -> None:
        """A request sending ``Connection: close`` retires its connection after the response."""
        exchange = self.pool.request(ADDR, b"GET", b"/", HOST + [(b"Connection", b"close")])
        exchange.head.addCallback(lambda h: exchange.deliver_body(Collector()))
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertTrue(transport.disconnecting)

    def test_max_idle_conns_across_hosts_closes_the_oldest(self) -> None:
        """``max_idle_conns`` counts idle connections of all hosts and closes the oldest."""
        self.pool = ConnectionPool(self.reactor, max_idle_conns=1)
        other = UpstreamAddress.parse("127.0.0.1:9001")
        conns = []
        for address in (ADDR, other):
            exchange = self.pool.request(address, b"GET", b"/", HOST)
            exchange.head.addCallback(lambda h, e: e.deliver_body(Collector()), exchange)
            host, port, factory, _t, _b = self.reactor.tcpClients[-1]
            proto = factory.buildProtocol(IPv4Address("TCP", host, port))
            assert proto is not None
            transport = StringTransport()
            proto.makeConnection(transport)
            conns.append((proto, transport))
        conns[0][0].dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        conns[1][0].dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertTrue(conns[0][1].disconnecting)
        self.assertFalse(conns[1][1].disconnecting)
        self.assertEqual((self.pool.open_count(ADDR), self.pool.idle_count(other)), (0, 1))


class StaleConnectionRetryTests(PoolTestCase):
    """A reused idle connection the upstream had closed: Go's transparent re-send."""

    def reuse(self, method=b"GET", body_length=None, headers=HOST):
        """One exchange completes, a second starts on the now idle connection."""
        self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        transport.clear()
        exchange = self.pool.request(ADDR, method, b"/again", headers, body_length)
        body = Collector()
        heads: list[ResponseHead] = []
        failures: list[Failure] = []

        def got_head(head: ResponseHead) -> None:
            heads.append(head)
            exchange.deliver_body(body)

        exchange.head.addCallbacks(got_head, failures.append)
        self.assertTrue(transport.value().startswith(method + b" /again HTTP/1.1\r\n"))
        return proto, exchange, body, heads, failures

    def test_get_resent_on_a_new_connection(self) -> None:
        """A GET on a reused connection closed before any answer is sent again on a new one."""
        proto, exchange, body, heads, failures = self.reuse()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(failures, [])
        self.assertEqual(len(self.reactor.tcpClients), 2)
        fresh, transport = self.connect()
        self.assertEqual(transport.value(), b"GET /again HTTP/1.1\r\nHost: example.com\r\n\r\n")
        fresh.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual([h.status for h in heads], [200])
        self.assertEqual(body.body, b"ok")
        self.assertEqual((self.pool.open_count(ADDR), self.pool.idle_count(ADDR)), (1, 1))

    def test_reset_also_retried(self) -> None:
        """A reset (not only a clean close) of the stale connection is re-sent too."""
        proto, _, _, _, failures = self.reuse(method=b"HEAD")
        proto.connectionLost(Failure(ConnectionLost("Connection reset by peer")))
        self.assertEqual(failures, [])
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_post_with_a_body_is_never_resent(self) -> None:
        """A request with a body is never re-sent: it fails with ``UpstreamConnectionLost``."""
        proto, exchange, _, _, failures = self.reuse(method=b"POST", body_length=4)
        exchange.write(b"data")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(failures[0].check(UpstreamConnectionLost))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_bodyless_post_is_not_resent(self) -> None:
        """Go re-sends it only when sure nothing was written, which Twisted cannot tell."""
        proto, _, _, _, failures = self.reuse(method=b"POST")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(failures[0].check(UpstreamConnectionLost))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_idempotency_key_makes_it_replayable(self) -> None:
        """An ``Idempotency-Key`` makes a bodyless POST replayable."""
        proto, _, _, _, failures = self.reuse(
            method=b"POST", headers=HOST + [(b"Idempotency-Key", b"abc")])
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(failures, [])
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_not_after_part_of_the_response(self) -> None:
        """Once part of the response arrived the request is not re-sent."""
        proto, _, _, _, failures = self.reuse()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\n")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(failures[0].check(UpstreamConnectionLost))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_not_on_a_fresh_connection(self) -> None:
        """A new connection that closes is a failure, not a stale one: no re-send."""
        _, _, _, failures = self.start()
        proto, _ = self.connect()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(failures[0].check(UpstreamConnectionLost))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_only_once(self) -> None:
        """The re-send happens once: its new connection closing too is a failure."""
        proto, _, _, _, failures = self.reuse()
        proto.connectionLost(Failure(ConnectionDone()))
        fresh, _ = self.connect()
        fresh.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(failures[0].check(UpstreamConnectionLost))
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_new_connection_refused_is_a_dial_error(self) -> None:
        """The re-send's connect being refused is a ``DialError`` and frees the slot."""
        proto, _, _, _, failures = self.reuse()
        proto.connectionLost(Failure(ConnectionDone()))
        factory = self.reactor.tcpClients[1][2]
        factory.clientConnectionFailed(self.reactor.connectors[1],
                                       Failure(ConnectionRefusedError()))
        self.assertTrue(failures[0].check(DialError))
        self.assertEqual(self.pool.open_count(ADDR), 0)
