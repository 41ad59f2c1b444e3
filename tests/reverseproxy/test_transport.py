"""Tests for the HTTP/1.1 upstream client and keep-alive pool."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import socket
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, CertificateOptions, trustRootFromCertificates
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.names import authority, dns
from twisted.names import server as names_server
from twisted.protocols import policies
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import http, resource, server

from txcaddy.errors import ConfigError
from txcaddy.reverseproxy._pool import SURPLUS_LINGER
from txcaddy.reverseproxy._resolver import NamesHostnameResolver, parse_resolver_addresses
from txcaddy.reverseproxy._tls import _allow_one_renegotiation
from txcaddy.reverseproxy.transport import (
    CHUNKED,
    H2C_UNSUPPORTED,
    ConnectionPool,
    DialError,
    HTTPTransport,
    ResponseHeaderTimeout,
    TLSHandshakeError,
    TLSHandshakeTimeout,
    UnsupportedUpstreamProtocol,
    UpstreamAddress,
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamWriteTimeout,
)
from txcaddy.testing import make_request

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


class QuickAckTests(PoolTestCase):
    """When the client acknowledges upstream data at once (``_twisted.quick_ack``)."""

    def setUp(self) -> None:
        super().setUp()
        import txcaddy.reverseproxy._h1connection as client

        self.acked: list[Any] = []
        self.patch(client, "quick_ack", self.acked.append)

    def test_upstream_connections_have_nagle_off(self) -> None:
        from tests._transports import TCPStringTransport

        self.start()
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[-1]
        transport = TCPStringTransport()
        factory.buildProtocol(IPv4Address("TCP", host, port)).makeConnection(transport)
        self.assertTrue(transport.no_delay)

    def test_near_the_end_of_a_response(self) -> None:
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
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        self.assertEqual(self.acked, [transport])
        proto.dataReceived(b"0\r\n\r\n")
        self.assertTrue(body.finished)
        self.assertEqual(self.acked, [transport])

    def test_not_for_a_response_read_whole(self) -> None:
        _, body, _, _ = self.start()
        proto, _transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertTrue(body.finished)
        self.assertEqual(self.acked, [])


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

    def two_answered_connections(self, surplus_linger: float | None = None) -> tuple[Any, Any, Any, Any]:
        """A pool keeping one idle connection per host, after two requests were answered on
        two connections: (protocol, transport) of the first, then of the second."""
        self.pool = ConnectionPool(self.reactor, max_idle_per_host=1)
        if surplus_linger is not None:
            self.pool.surplus_linger = surplus_linger
        self.start()
        self.start()
        p1, t1 = self.connect(0)
        p2, t2 = self.connect(1)
        p1.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        p2.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        return p1, t1, p2, t2

    def test_max_idle_per_host(self) -> None:
        # Go's rule (surplus_linger 0): a connection beyond the idle limit closes at once.
        p1, t1, p2, t2 = self.two_answered_connections(surplus_linger=0)
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertFalse(t1.disconnecting)
        self.assertTrue(t2.disconnecting)

    def test_idle_surplus_lingers_then_the_oldest_closes(self) -> None:
        p1, t1, p2, t2 = self.two_answered_connections()
        self.assertEqual(self.pool.idle_count(ADDR), 2)
        self.assertFalse(t1.disconnecting or t2.disconnecting)
        self.reactor.advance(SURPLUS_LINGER - 0.01)
        self.assertEqual(self.pool.idle_count(ADDR), 2)
        self.reactor.advance(0.01)
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertTrue(t1.disconnecting)
        self.assertFalse(t2.disconnecting)

    def test_idle_surplus_in_use_by_bursts_is_not_closed(self) -> None:
        p1, t1, p2, t2 = self.two_answered_connections()  # idle: [p1, p2], one too many
        self.reactor.advance(SURPLUS_LINGER / 2)
        self.start()  # a burst takes both again
        self.start()
        self.reactor.advance(0.1)
        p1.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        p2.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.reactor.advance(SURPLUS_LINGER / 2)  # the first trim: the surplus idled only 0.4 s
        self.assertEqual(self.pool.idle_count(ADDR), 2)
        self.assertFalse(t1.disconnecting or t2.disconnecting)
        self.reactor.advance(SURPLUS_LINGER / 2)  # idle for the whole linger now
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertEqual(len(self.reactor.tcpClients), 2)  # never redialled
        self.assertTrue(t1.disconnecting or t2.disconnecting)
        self.assertFalse(t1.disconnecting and t2.disconnecting)

    def test_idle_surplus_reused_within_the_linger_is_kept(self) -> None:
        p1, t1, p2, t2 = self.two_answered_connections()
        t2.clear()
        self.start()  # takes the newest idle connection: no new dial
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertTrue(t2.value().startswith(b"GET "))
        self.reactor.advance(SURPLUS_LINGER)
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertFalse(t1.disconnecting or t2.disconnecting)

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

    def test_host_without_connections_is_forgotten(self) -> None:
        self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(len(self.pool._hosts), 1)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.pool._hosts, {})
        _, _, _, failures = self.start()
        self.reactor.advance(3)  # dial timeout
        self.assertTrue(failures[0].check(DialError))
        self.assertEqual(self.pool._hosts, {})

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


# -- Caddy's transport options -------------------------------------------------------------


def _load(config=None, reactor=None):
    return HTTPTransport.from_config(config, reactor or MemoryReactorClock())


def _pool_settings(pool):
    return {
        "dial_timeout": pool.dial_timeout,
        "response_header_timeout": pool.response_header_timeout,
        "max_response_header_size": pool.max_response_header_size,
        "max_idle_per_host": pool.max_idle_per_host,
        "max_idle_conns": pool.max_idle_conns,
        "idle_timeout": pool.idle_timeout,
        "max_conns_per_host": pool.max_conns_per_host,
        "keep_alive": pool.keep_alive,
        "tcp_keepalive": pool.tcp_keepalive,
        "read_timeout": pool.read_timeout,
        "write_timeout": pool.write_timeout,
        "expect_continue_timeout": pool.expect_continue_timeout,
        "tls_handshake_timeout": pool.tls_handshake_timeout,
        "read_size": pool.read_size,
    }


CADDY_DEFAULTS = {
    "dial_timeout": 3.0,
    "response_header_timeout": None,
    "max_response_header_size": 10 << 20,
    "max_idle_per_host": 32,
    "max_idle_conns": 0,
    "idle_timeout": 120.0,
    "max_conns_per_host": 0,
    "keep_alive": True,
    "tcp_keepalive": 30.0,
    "read_timeout": None,
    "write_timeout": None,
    "expect_continue_timeout": None,
    "tls_handshake_timeout": None,
    "read_size": None,
}


class TransportConfigTests(SynchronousTestCase):
    """Loading the JSON ``transport`` object with Caddy's defaults."""

    def test_defaults(self) -> None:
        for config in (None, {}, {"protocol": "http"}):
            transport = _load(config)
            self.assertEqual(_pool_settings(transport.pool), CADDY_DEFAULTS)
            self.assertEqual(transport.versions, ("1.1", "2"))
            self.assertIs(transport.compression, True)
            self.assertIs(transport.tls, False)
            self.assertIsNone(transport.tls_config)
            self.assertIsNone(transport.unsupported_reason)

    def test_every_option(self) -> None:
        transport = _load({
            "protocol": "http",
            "dial_timeout": "5s",
            "dial_fallback_delay": "150ms",
            "response_header_timeout": "30s",
            "expect_continue_timeout": "1s",
            "max_response_header_size": 4096,
            "read_buffer_size": 131072,
            "write_buffer_size": 8192,
            "read_timeout": "10s",
            "write_timeout": 2_000_000_000,  # JSON integers are nanoseconds
            "max_conns_per_host": 7,
            "compression": False,
            "versions": ["1.1"],
            "keep_alive": {"enabled": True, "probe_interval": "5s", "max_idle_conns": 50,
                           "max_idle_conns_per_host": 9, "idle_timeout": "1m"},
        })
        self.assertEqual(_pool_settings(transport.pool), {
            "dial_timeout": 5.0,
            "response_header_timeout": 30.0,
            "max_response_header_size": 4096,
            "max_idle_per_host": 9,
            "max_idle_conns": 50,
            "idle_timeout": 60.0,
            "max_conns_per_host": 7,
            "keep_alive": True,
            "tcp_keepalive": 5.0,
            "read_timeout": 10.0,
            "write_timeout": 2.0,
            "expect_continue_timeout": 1.0,
            "tls_handshake_timeout": None,
            "read_size": 131072,
        })
        self.assertIs(transport.compression, False)
        self.assertEqual(transport.versions, ("1.1",))
        endpoint = transport.pool.endpoint_factory(UpstreamAddress.parse("backend.test:80"))
        self.assertEqual(endpoint._attemptDelay, 0.15)

    def test_keep_alive_defaults_only_without_any_keep_alive_option(self) -> None:
        """Caddy's quirk: one keep_alive field leaves the others at Go's zero-value defaults."""
        idle_only = _pool_settings(_load({"keep_alive": {"idle_timeout": 90_000_000_000}}).pool)
        self.assertEqual(
            (idle_only["idle_timeout"], idle_only["max_idle_per_host"],
             idle_only["tcp_keepalive"], idle_only["max_idle_conns"]),
            (90.0, 2, 15.0, 0))
        per_host = _pool_settings(_load({"keep_alive": {"max_idle_conns_per_host": 10}}).pool)
        self.assertEqual(
            (per_host["idle_timeout"], per_host["max_idle_per_host"], per_host["tcp_keepalive"]),
            (None, 10, 15.0))
        empty = _pool_settings(_load({"keep_alive": {}}).pool)
        self.assertEqual((empty["idle_timeout"], empty["max_idle_per_host"]), (None, 2))
        no_probes = _load({"keep_alive": {"probe_interval": "-1s",
                                          "max_idle_conns_per_host": -1}}).pool
        self.assertEqual((no_probes.tcp_keepalive, no_probes.max_idle_per_host), (None, 0))

    def test_keep_alive_off(self) -> None:
        pool = _load({"keep_alive": {"enabled": False}}).pool
        self.assertIs(pool.keep_alive, False)

    def test_small_read_buffer_keeps_the_default_read_size(self) -> None:
        self.assertIsNone(_load({"read_buffer_size": 4096}).pool.read_size)

    def test_dial_fallback_delay(self) -> None:
        hostname = UpstreamAddress.parse("backend.test:80")
        self.assertEqual(_load({}).pool.endpoint_factory(hostname)._attemptDelay, 0.3)
        serial = _load({"dial_fallback_delay": "-1s", "dial_timeout": "2s"}).pool
        self.assertEqual(serial.endpoint_factory(hostname)._attemptDelay, 2.0)

    def test_negative_timeouts_are_off(self) -> None:
        pool = _load({"response_header_timeout": "-1s", "read_timeout": "-1s",
                      "keep_alive": {"idle_timeout": "-5s"}}).pool
        self.assertEqual((pool.response_header_timeout, pool.read_timeout, pool.idle_timeout),
                         (None, None, None))

    def test_unknown_fields_are_named(self) -> None:
        cases = [
            ({"read_buffer": 4096}, 'unknown field "read_buffer"'),
            ({"keep_alive": {"idle_conn_timeout": "1m"}}, 'keep_alive: unknown field "idle_conn_timeout"'),
            ({"tls": {"trusted_ca_certs": []}}, 'tls: unknown field "trusted_ca_certs"'),
            ({"resolver": {"servers": []}}, 'resolver: unknown field "servers"'),
        ]
        for config, message in cases:
            error = self.assertRaises(ConfigError, _load, config)
            self.assertIn(message, str(error))

    def test_bad_values(self) -> None:
        for config in (
            {"dial_timeout": "soon"},
            {"dial_timeout": 1.5},
            {"max_conns_per_host": "3"},
            {"compression": "off"},
            {"versions": "1.1"},
            {"keep_alive": {"enabled": "no"}},
            {"keep_alive": []},
            {"protocol": "fastcgi"},
            {"resolver": {"addresses": []}},
            {"tls": {"renegotiation": "sometimes"}},
        ):
            self.assertRaises(ConfigError, _load, config)

    def test_registered_module(self) -> None:
        from txcaddy.config.loader import LoadContext

        context = LoadContext(reactor=MemoryReactorClock())
        transport = context.load_module(
            "http.reverse_proxy.transport", {"protocol": "http", "dial_timeout": "1s"}, "protocol")
        self.assertIsInstance(transport, HTTPTransport)
        self.assertEqual(transport.pool.dial_timeout, 1.0)
        error = self.assertRaises(
            ConfigError, context.load_module, "http.reverse_proxy.transport",
            {"protocol": "fastcgi", "root": "/srv"}, "protocol")
        self.assertIn("not supported", str(error))


class VersionsTests(SynchronousTestCase):
    def test_h2c_loads_and_fails_every_request(self) -> None:
        reactor = MemoryReactorClock()
        transport = _load({"versions": ["h2c", "2"]}, reactor)
        self.assertEqual(transport.unsupported_reason, H2C_UNSUPPORTED)
        self.assertIn("h2c", transport.unsupported_reason)
        exchange = transport.request(ADDR, b"GET", b"/", HOST)
        failures = []
        exchange.head.addErrback(failures.append)
        self.assertTrue(failures[0].check(UnsupportedUpstreamProtocol))
        self.assertEqual(failures[0].value.status, 502)
        self.assertEqual(reactor.tcpClients, [])

    def test_h2c_with_tls_only_fails_plain_requests(self) -> None:
        reactor = MemoryReactorClock()
        transport = _load({"versions": ["h2c", "2"],
                           "tls": {"insecure_skip_verify": True, "except_ports": ["9000"]}},
                          reactor)
        self.assertIsNone(transport.unsupported_reason)
        failures = []
        transport.request(ADDR, b"GET", b"/", HOST).head.addErrback(failures.append)
        self.assertTrue(failures[0].check(UnsupportedUpstreamProtocol))
        transport.request(UpstreamAddress.parse("127.0.0.1:443"), b"GET", b"/", HOST)
        self.assertEqual(len(reactor.tcpClients), 1)

    def test_version_2_without_tls_speaks_http_1_1(self) -> None:
        """As Caddy: "2" only matters through TLS ALPN; plain upstreams get HTTP/1.1."""
        reactor = MemoryReactorClock()
        transport = _load({"versions": ["2"]}, reactor)
        self.assertIsNone(transport.unsupported_reason)
        transport.request(ADDR, b"GET", b"/", HOST)
        self.assertEqual(len(reactor.tcpClients), 1)


class LoadedTimeoutTests(PoolTestCase):
    """Each timeout loaded from JSON ends the request with Caddy's status."""

    def test_dial_timeout_is_a_502_dial_error(self) -> None:
        self.pool = _load({"dial_timeout": "1s"}, self.reactor).pool
        _, _, _, failures = self.start()
        self.reactor.advance(0.999)
        self.assertEqual(failures, [])
        self.reactor.advance(0.001)
        self.assertTrue(failures[0].check(DialError))
        self.assertEqual(failures[0].value.status, 502)

    def test_response_header_timeout_is_a_504(self) -> None:
        self.pool = _load({"response_header_timeout": "2s"}, self.reactor).pool
        _, _, _, failures = self.start()
        self.connect()
        self.reactor.advance(2)
        self.assertTrue(failures[0].check(ResponseHeaderTimeout))
        self.assertEqual(failures[0].value.status, 504)

    def test_oversized_head_in_one_packet_is_a_502(self) -> None:
        self.pool = _load({"max_response_header_size": 64}, self.reactor).pool
        _, _, _, failures = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 60 + b"\r\n\r\n")
        self.assertTrue(failures[0].check(UpstreamProtocolError))
        self.assertIn("exceeded 64 bytes", str(failures[0].value))
        self.assertTrue(transport.disconnecting)


class ReadTimeoutTests(PoolTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.pool = ConnectionPool(self.reactor, read_timeout=5.0)

    def test_nothing_received(self) -> None:
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
        _, body, _, _ = self.start()
        proto, _ = self.connect()
        for piece in (b"HTTP/1.1 200 OK\r\n", b"Content-Length: 4\r\n\r\n", b"ab", b"cd"):
            self.reactor.advance(4)
            proto.dataReceived(piece)
        self.assertEqual(body.body, b"abcd")
        self.assertIsNone(body.reason)

    def test_stall_mid_body(self) -> None:
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
        self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.reactor.advance(5)
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_no_deadline_on_a_tunnel(self) -> None:
        exchange, _, heads, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
        exchange.switch_protocol(Protocol())
        self.reactor.advance(600)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class WriteTimeoutTests(PoolTestCase):
    def test_upstream_not_taking_the_body(self) -> None:
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
    EXPECT = HOST + [(b"Expect", b"100-continue")]

    def request(self):
        exchange = self.pool.request(ADDR, b"POST", b"/up", self.EXPECT, body_length=4)
        exchange.write(b"data")
        heads, body = [], Collector()
        exchange.head.addCallback(lambda h: (heads.append(h), exchange.deliver_body(body)))
        return exchange, heads, body

    def test_body_waits_for_100_continue(self) -> None:
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
        self.pool = ConnectionPool(self.reactor, expect_continue_timeout=1.0)
        self.request()
        _, transport = self.connect()
        self.reactor.advance(0.999)
        self.assertFalse(transport.value().endswith(b"data"))
        self.reactor.advance(0.001)
        self.assertTrue(transport.value().endswith(b"\r\n\r\ndata"))

    def test_final_answer_instead_of_100(self) -> None:
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
        self.request()
        _, transport = self.connect()
        self.assertTrue(transport.value().endswith(b"\r\n\r\ndata"))


class KeepAliveTests(PoolTestCase):
    def test_disabled_sends_connection_close_and_never_reuses(self) -> None:
        self.pool = _load({"keep_alive": {"enabled": False}}, self.reactor).pool
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        self.assertEqual(transport.value(),
                         b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        self.assertEqual(body.body, b"ok")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_disabled_leaves_an_upgrade_alone(self) -> None:
        self.pool = ConnectionPool(self.reactor, keep_alive=False)
        self.pool.request(ADDR, b"GET", b"/ws", HOST + [(b"Connection", b"Upgrade"),
                                                       (b"Upgrade", b"websocket")])
        _, transport = self.connect()
        self.assertNotIn(b"close", transport.value())

    def test_request_asking_to_close(self) -> None:
        exchange = self.pool.request(ADDR, b"GET", b"/", HOST + [(b"Connection", b"close")])
        exchange.head.addCallback(lambda h: exchange.deliver_body(Collector()))
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertTrue(transport.disconnecting)

    def test_max_idle_conns_across_hosts_closes_the_oldest(self) -> None:
        self.pool = ConnectionPool(self.reactor, max_idle_conns=1)
        other = UpstreamAddress.parse("127.0.0.1:9001")
        conns = []
        for address in (ADDR, other):
            exchange = self.pool.request(address, b"GET", b"/", HOST)
            exchange.head.addCallback(lambda h, e=exchange: e.deliver_body(Collector()))
            host, port, factory, _t, _b = self.reactor.tcpClients[-1]
            proto = factory.buildProtocol(IPv4Address("TCP", host, port))
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
        body, heads, failures = Collector(), [], []
        exchange.head.addCallbacks(
            lambda h: (heads.append(h), exchange.deliver_body(body)), failures.append)
        self.assertTrue(transport.value().startswith(method + b" /again HTTP/1.1\r\n"))
        return proto, exchange, body, heads, failures

    def test_get_resent_on_a_new_connection(self) -> None:
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
        proto, _, _, _, failures = self.reuse(method=b"HEAD")
        proto.connectionLost(Failure(ConnectionLost("Connection reset by peer")))
        self.assertEqual(failures, [])
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_post_with_a_body_is_never_resent(self) -> None:
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
        proto, _, _, _, failures = self.reuse(
            method=b"POST", headers=HOST + [(b"Idempotency-Key", b"abc")])
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(failures, [])
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_not_after_part_of_the_response(self) -> None:
        proto, _, _, _, failures = self.reuse()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\n")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(failures[0].check(UpstreamConnectionLost))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_not_on_a_fresh_connection(self) -> None:
        _, _, _, failures = self.start()
        proto, _ = self.connect()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(failures[0].check(UpstreamConnectionLost))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_only_once(self) -> None:
        proto, _, _, _, failures = self.reuse()
        proto.connectionLost(Failure(ConnectionDone()))
        fresh, _ = self.connect()
        fresh.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(failures[0].check(UpstreamConnectionLost))
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_new_connection_refused_is_a_dial_error(self) -> None:
        proto, _, _, _, failures = self.reuse()
        proto.connectionLost(Failure(ConnectionDone()))
        factory = self.reactor.tcpClients[1][2]
        factory.clientConnectionFailed(self.reactor.connectors[1],
                                       Failure(ConnectionRefusedError()))
        self.assertTrue(failures[0].check(DialError))
        self.assertEqual(self.pool.open_count(ADDR), 0)


# -- TLS upstreams -------------------------------------------------------------------------


def _certificate(subject, issuer_key, issuer_name, key, *, ca=False, dns_names=(), ips=(),
                 client=False):
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        sans = [x509.DNSName(n) for n in dns_names] + [
            x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


class _PKI:
    """A test CA with a server certificate for backend.test / 127.0.0.1, and a client CA."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _certificate("txcaddy test CA", None, None, self.ca_key, ca=True)
        self.server_key = ec.generate_private_key(ec.SECP256R1())
        self.server = _certificate("backend.test", self.ca_key, self.ca.subject, self.server_key,
                                   dns_names=["backend.test"], ips=["127.0.0.1"])
        self.client_ca_key = ec.generate_private_key(ec.SECP256R1())
        self.client_ca = _certificate("txcaddy client CA", None, None, self.client_ca_key, ca=True)
        self.client_key = ec.generate_private_key(ec.SECP256R1())
        self.client = _certificate("proxy", self.client_ca_key, self.client_ca.subject,
                                   self.client_key, client=True)
        self.ca_file = self._write(directory, "ca.pem", self.ca.public_bytes(Encoding.PEM))
        self.client_file = self._write(directory, "client.pem", self.client.public_bytes(Encoding.PEM))
        self.client_key_file = self._write(directory, "client.key", self.client_key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        self.ca_der_base64 = base64.b64encode(self.ca.public_bytes(Encoding.DER)).decode()

    @staticmethod
    def _write(directory: str, name: str, data: bytes) -> str:
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def server_options(self, require_client_certificate: bool = False) -> CertificateOptions:
        extra = {}
        if require_client_certificate:
            extra["trustRoot"] = trustRootFromCertificates(
                [Certificate(crypto.X509.from_cryptography(self.client_ca))])
        return CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(self.server_key),
            certificate=crypto.X509.from_cryptography(self.server), **extra)


class _Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello over " + (b"tls" if request.isSecure() else b"plain http")


class _Tracked(policies.WrappingFactory):
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
        d = defer.Deferred()
        self._waiting.append(d)
        return d


def _fetch(transport, address, host=b"backend.test", request=None):
    """GET / through ``transport``; fires with (status, body) or fails with the error."""
    exchange = transport.request(address, b"GET", b"/", [(b"Host", host)], request=request)
    done = defer.Deferred()

    class Body(Collector):
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


class TLSUpstreamTests(TestCase):
    """A real Twisted TLS server on 127.0.0.1 with a CA made for the test."""

    pki: _PKI | None = None

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        if TLSUpstreamTests.pki is None:
            TLSUpstreamTests.pki = _PKI(os.path.abspath(self.mktemp()))
        self.pki = TLSUpstreamTests.pki

    def serve(self, tls=True, require_client_certificate=False):
        """Start a server; return its address and the server names clients sent (SNI)."""
        site = server.Site(_Hello(), reactor=self.reactor)
        site.timeout = None
        sni: list[bytes | None] = []
        if tls:
            options = self.pki.server_options(require_client_certificate)
            options.getContext().set_tlsext_servername_callback(
                lambda connection: sni.append(connection.get_servername()))
            factory = _Tracked(TLSMemoryBIOFactory(options, False, site))
        else:
            factory = _Tracked(site)
        port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(factory.all_closed)
        return UpstreamAddress.parse(f"127.0.0.1:{port.getHost().port}"), sni

    def transport(self, config):
        transport = HTTPTransport.from_config(config, self.reactor)
        self.addCleanup(transport.close_idle)
        return transport

    @defer.inlineCallbacks
    def test_trusted_by_root_ca_pem_files(self):
        address, sni = self.serve()
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file]}})
        self.assertTrue(transport.tls)
        self.assertTrue(transport.uses_tls(address))
        result = yield _fetch(transport, address)
        self.assertEqual(result, (200, b"hello over tls"))
        self.assertEqual(sni, [None])  # no SNI for an IP address (RFC 6066)

    @defer.inlineCallbacks
    def test_trusted_by_root_ca_pool(self):
        address, _ = self.serve()
        transport = self.transport({"tls": {"root_ca_pool": [self.pki.ca_der_base64]}})
        result = yield _fetch(transport, address)
        self.assertEqual(result, (200, b"hello over tls"))

    @defer.inlineCallbacks
    def test_untrusted_certificate_is_a_502_but_not_a_dial_error(self):
        address, _ = self.serve()
        transport = self.transport({"tls": {}})  # system roots do not know the test CA
        error = yield self.assertFailure(_fetch(transport, address), TLSHandshakeError)
        self.assertNotIsInstance(error, DialError)
        self.assertEqual(error.status, 502)
        self.assertIn("certificate verify failed", str(error))
        self.assertEqual(transport.pool.open_count(address), 0)

    @defer.inlineCallbacks
    def test_insecure_skip_verify(self):
        address, _ = self.serve()
        transport = self.transport({"tls": {"insecure_skip_verify": True}})
        result = yield _fetch(transport, address)
        self.assertEqual(result, (200, b"hello over tls"))

    @defer.inlineCallbacks
    def test_server_name_is_sent_and_verified(self):
        address, sni = self.serve()
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file],
                                            "server_name": "backend.test"}})
        result = yield _fetch(transport, address)
        self.assertEqual(result, (200, b"hello over tls"))
        self.assertEqual(sni, [b"backend.test"])

    @defer.inlineCallbacks
    def test_wrong_server_name_fails(self):
        address, sni = self.serve()
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file],
                                            "server_name": "other.test"}})
        error = yield self.assertFailure(_fetch(transport, address), TLSHandshakeError)
        self.assertEqual(error.status, 502)
        self.assertIn("other.test", str(error))
        self.assertEqual(sni, [b"other.test"])

    @defer.inlineCallbacks
    def test_client_certificate(self):
        address, _ = self.serve(require_client_certificate=True)
        transport = self.transport({"tls": {
            "root_ca_pem_files": [self.pki.ca_file],
            "client_certificate_file": self.pki.client_file,
            "client_certificate_key_file": self.pki.client_key_file,
        }})
        result = yield _fetch(transport, address)
        self.assertEqual(result, (200, b"hello over tls"))

    @defer.inlineCallbacks
    def test_client_certificate_missing(self):
        """With TLS 1.3 the server rejects it after our side finished: still a 502."""
        address, _ = self.serve(require_client_certificate=True)
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file]}})
        error = yield self.assertFailure(_fetch(transport, address), UpstreamError)
        self.assertEqual(error.status, 502)

    @defer.inlineCallbacks
    def test_except_ports_speak_plain_http(self):
        address, _ = self.serve(tls=False)
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file],
                                            "except_ports": [str(address.port)]}})
        self.assertFalse(transport.uses_tls(address))
        result = yield _fetch(transport, address)
        self.assertEqual(result, (200, b"hello over plain http"))

    @defer.inlineCallbacks
    def test_host_name_upstream_is_the_server_name(self):
        """Dialled by name (resolved by our DNS server), the name is the SNI and is verified."""
        address, sni = self.serve()
        resolver = _dns_server(self, {b"backend.test": [dns.Record_A("127.0.0.1", ttl=60)]})
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file]},
                                    "resolver": {"addresses": [resolver]}})
        result = yield _fetch(transport, UpstreamAddress.parse(f"backend.test:{address.port}"))
        self.assertEqual(result, (200, b"hello over tls"))
        self.assertEqual(sni, [b"backend.test"])

    @defer.inlineCallbacks
    def test_connections_reused_per_server_name(self):
        address, sni = self.serve()
        transport = self.transport({"tls": {"insecure_skip_verify": True,
                                            "server_name": "{http.request.host}"}})
        for host in ("a.test", "b.test", "a.test"):
            result = yield _fetch(transport, address, request=make_request(host=host))
            self.assertEqual(result[0], 200)
        self.assertEqual(sni, [b"a.test", b"b.test"])
        creator = transport.tls_config.creator_for("127.0.0.1", make_request(host="a.test"))
        self.assertEqual(transport.pool.idle_count(address, tls=creator), 1)
        self.assertEqual(transport.pool.idle_count(address), 0)


class TLSConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        if TLSUpstreamTests.pki is None:
            TLSUpstreamTests.pki = _PKI(os.path.abspath(self.mktemp()))
        self.pki = TLSUpstreamTests.pki

    def test_https_upstream_defaults(self) -> None:
        transport = _load({"tls": {}})
        tls = transport.tls_config
        self.assertEqual((tls.verify, tls.server_name, tls.handshake_timeout, tls.renegotiation,
                          tls.except_ports), (True, "", None, "never", frozenset()))
        self.assertEqual(transport.pool.tls_handshake_timeout, None)
        self.assertEqual(_load({"tls": {"handshake_timeout": "10s"}}).pool.tls_handshake_timeout,
                         10.0)

    def test_server_name_placeholders(self) -> None:
        tls = _load({"tls": {"server_name": "{http.request.host}"}}).tls_config
        self.assertEqual(tls.creator_for("10.0.0.1", make_request(host="app.test")).name, "app.test")
        empty = _load({"tls": {"server_name": "{http.vars.unset}"}}).tls_config
        self.assertEqual(empty.creator_for("10.0.0.1", make_request()).name, "10.0.0.1")
        static = _load({"tls": {"server_name": "fixed.test"}}).tls_config
        self.assertIs(static.creator_for("10.0.0.1"), static.creator_for("10.0.0.2"))

    def test_creators_equal_by_server_name(self) -> None:
        """Pooled connections are keyed by creator: equal settings and name share them."""
        tls = _load({"tls": {"insecure_skip_verify": True}}).tls_config
        first = tls.creator_for("a.test")
        tls._creators.clear()
        again = tls.creator_for("a.test")
        self.assertIsNot(first, again)
        self.assertEqual(first, again)
        self.assertEqual(hash(first), hash(again))
        self.assertNotEqual(first, tls.creator_for("b.test"))
        other = _load({"tls": {"insecure_skip_verify": True}}).tls_config
        self.assertNotEqual(first, other.creator_for("a.test"))

    def test_config_errors(self) -> None:
        cases = [
            ({"client_certificate_file": self.pki.client_file}, "without client_certificate_key_file"),
            ({"client_certificate_key_file": self.pki.client_key_file}, "without client_certificate_file"),
            ({"client_certificate_file": self.pki.client_file,
              "client_certificate_key_file": self.pki.ca_file}, "loading client certificate key pair"),
            ({"client_certificate_automate": "proxy.test"}, "not supported"),
            ({"root_ca_pem_files": ["/nonexistent/ca.pem"]}, "failed reading ca cert"),
            ({"root_ca_pool": ["not base64!"]}, "parsing CA certificate"),
            ({"renegotiation": "twice"}, "invalid TLS renegotiation level: twice"),
        ]
        for config, message in cases:
            error = self.assertRaises(ConfigError, _load, {"tls": config})
            self.assertIn(message, str(error))

    def test_key_not_matching_certificate(self) -> None:
        other = ec.generate_private_key(ec.SECP256R1())
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(other.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        error = self.assertRaises(ConfigError, _load, {"tls": {
            "client_certificate_file": self.pki.client_file, "client_certificate_key_file": path}})
        self.assertIn("loading client certificate key pair", str(error))

    def connection(self, renegotiation):
        tls = _load({"tls": {"insecure_skip_verify": True, "renegotiation": renegotiation}}).tls_config
        factory = TLSMemoryBIOFactory(tls.creator_for("backend.test"), True,
                                      Factory.forProtocol(Protocol))
        protocol = factory.buildProtocol(None)
        return tls.creator_for("backend.test").clientConnectionForTLS(protocol)

    def test_renegotiation(self) -> None:
        never = self.connection("never")
        self.assertTrue(never.set_options(0) & SSL.OP_NO_RENEGOTIATION)
        freely = self.connection("freely")
        self.assertFalse(freely.set_options(0) & SSL.OP_NO_RENEGOTIATION)
        once = self.connection("once")
        self.assertFalse(once.set_options(0) & SSL.OP_NO_RENEGOTIATION)

    def test_renegotiation_once(self) -> None:
        """The first handshake and one renegotiation are allowed, then refused."""

        class Connection:
            options = 0

            def set_options(self, options):
                self.options |= options

        callback, connection = _allow_one_renegotiation(), Connection()
        callback(connection, SSL.SSL_CB_HANDSHAKE_START, 1)
        callback(connection, SSL.SSL_CB_HANDSHAKE_DONE, 1)
        self.assertEqual(connection.options, 0)
        callback(connection, SSL.SSL_CB_HANDSHAKE_DONE, 1)
        self.assertEqual(connection.options, SSL.OP_NO_RENEGOTIATION)

    def test_handshake_timeout_is_a_504(self) -> None:
        reactor = MemoryReactorClock()
        transport = _load({"tls": {"insecure_skip_verify": True, "handshake_timeout": "2s"}},
                          reactor)
        failures = []
        exchange = transport.request(ADDR, b"GET", b"/", HOST)
        exchange.head.addErrback(failures.append)
        host, port, factory, _t, _b = reactor.tcpClients[0]
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        wire = StringTransport()
        proto.makeConnection(wire)
        self.assertTrue(wire.value().startswith(b"\x16\x03"))  # the ClientHello went out
        reactor.advance(1.9)
        self.assertEqual(failures, [])
        reactor.advance(0.1)
        self.assertTrue(wire.disconnected)
        proto.connectionLost(Failure(ConnectionLost("aborted")))
        self.assertTrue(failures[0].check(TLSHandshakeTimeout))
        self.assertEqual(failures[0].value.status, 504)
        self.assertFalse(exchange.sent_anything)


# -- resolvers and sockets -----------------------------------------------------------------


class _Zone(authority.FileAuthority):
    """An authoritative zone held in memory."""

    def __init__(self, records) -> None:
        super().__init__(None)
        self.soa = (b"test", dns.Record_SOA(mname=b"ns.test", rname=b"admin.test", serial=1,
                                            refresh=60, retry=60, expire=60, minimum=60, ttl=60))
        self.records = records

    def loadFile(self, filename) -> None:
        pass


def _dns_server(test, records) -> str:
    """An authoritative DNS server for ``records`` on 127.0.0.1 (UDP); returns its address."""
    from twisted.internet import reactor

    factory = names_server.DNSServerFactory(authorities=[_Zone(records)])
    port = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    test.addCleanup(port.stopListening)
    return f"127.0.0.1:{port.getHost().port}"


class ResolverTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        self.assertEqual(
            parse_resolver_addresses(["127.0.0.1:5353", "udp/10.0.0.1", "[::1]:53", "tcp/::2"]),
            [("127.0.0.1", 5353), ("10.0.0.1", 53), ("::1", 53), ("::2", 53)])
        for bad in (["dns.example:53"], ["1.1.1.1:53-54"], ["1.1.1.1:x"], "1.1.1.1"):
            self.assertRaises(ConfigError, parse_resolver_addresses, bad)

    def test_hostname_upstreams_use_the_resolver(self) -> None:
        reactor = MemoryReactorClock()
        transport = _load({"resolver": {"addresses": ["127.0.0.1:5353"]}}, reactor)
        endpoint = transport.pool.endpoint_factory(UpstreamAddress.parse("backend.test:80"))
        self.assertIsInstance(endpoint._reactor.nameResolver, NamesHostnameResolver)
        plain = _load({}, reactor).pool.endpoint_factory(UpstreamAddress.parse("backend.test:80"))
        self.assertIs(plain._reactor, reactor)


class RealSocketTests(TestCase):
    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor

    def backend(self):
        site = server.Site(_Hello(), reactor=self.reactor)
        site.timeout = None
        factory = _Tracked(site)
        port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(factory.all_closed)
        return port.getHost().port

    @defer.inlineCallbacks
    def test_resolver_addresses(self):
        """``backend.test`` is looked up with a DNS server of ours, then dialled."""
        http_port = self.backend()
        resolver = _dns_server(self, {b"backend.test": [dns.Record_A("127.0.0.1", ttl=60)]})
        transport = HTTPTransport.from_config({"resolver": {"addresses": [resolver]}},
                                              self.reactor)
        self.addCleanup(transport.close_idle)
        result = yield _fetch(transport, UpstreamAddress.parse(f"backend.test:{http_port}"))
        self.assertEqual(result, (200, b"hello over plain http"))

    @defer.inlineCallbacks
    def test_keepalive_probes_and_read_size_on_the_socket(self):
        port = self.backend()
        address = UpstreamAddress.parse(f"127.0.0.1:{port}")
        transport = HTTPTransport.from_config({"read_buffer_size": 1 << 20}, self.reactor)
        self.addCleanup(transport.close_idle)
        result = yield _fetch(transport, address)
        self.assertEqual(result[0], 200)
        conn = transport.pool._hosts[address.key].idle[0]
        sock = conn.transport.getHandle()
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), 30)
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL), 30)
        self.assertEqual(conn.transport.bufferSize, 1 << 20)
