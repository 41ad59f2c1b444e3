"""The HTTP/1.1 upstream response parser: heads, body framings, 1xx and 101, malformed input."""

from __future__ import annotations

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from tests.reverseproxy._client import ADDR, HOST, Collector, PoolTestCase
from txcaddy.reverseproxy.transport import (
    ConnectionPool,
    ResponseHead,
    UpstreamConnectionLost,
    UpstreamProtocolError,
)


class ResponseParsingTests(PoolTestCase):
    """Response heads and bodies parsed into the exchange, and when the connection is reused."""

    def test_content_length_and_reuse(self) -> None:
        """A Content-Length body arrives in pieces, then the connection carries the next request."""
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
        """``Connection: close`` from the upstream retires the connection after the response."""
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
        """An HTTP/1.0 response without keep-alive retires the connection."""
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
        """A chunked body with extensions and trailers parses one byte at a time."""
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
        """A whole chunked body in one read; no trailers means ``body_trailers`` is not called."""
        _, body, _, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        self.assertEqual(body.body, b"abcde")
        self.assertIsNone(body.trailers)
        self.assertTrue(body.finished)

    def test_invalid_chunk_size_fails(self) -> None:
        """A chunk size that is not hex cuts the body off with ``UpstreamProtocolError``."""
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        self.assertTrue(body.reason.check(UpstreamProtocolError))
        self.assertTrue(transport.disconnecting)

    def test_close_delimited_body(self) -> None:
        """A body without framing ends cleanly when the upstream closes; never reused."""
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
        """A response to HEAD has no body whatever its Content-Length; the connection is reused."""
        _, body, heads, _ = self.start(method=b"HEAD")
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        self.assertEqual(heads[0].get(b"content-length"), b"1000")
        self.assertTrue(body.finished)
        self.assertEqual(body.body, b"")
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertFalse(transport.disconnecting)

    def test_informational_responses(self) -> None:
        """1xx heads go to ``on_informational``; only the final head fires ``head``."""
        infos: list[ResponseHead] = []
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
        """After a 101 the raw connection, bytes already read first, goes to the new protocol."""
        exchange, _, heads, _ = self.start(target=b"/ws")
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           b"Connection: Upgrade\r\n\r\nearly-frame")
        self.assertEqual(heads[0].status, 101)
        self.assertEqual(self.pool.open_count(ADDR), 0)

        class Tunnel(Protocol):
            received = b""
            lost: Failure | None = None

            def dataReceived(self, data: bytes) -> None:
                self.received += data

            def connectionLost(self, reason: Failure = connectionDone) -> None:
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
        """A reset mid-body cuts the body off with a 502 ``UpstreamConnectionLost``."""
        _, body, _, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        proto.connectionLost(Failure(ConnectionLost("Connection reset by peer")))
        self.assertEqual(body.body, b"abc")
        self.assertTrue(body.reason.check(UpstreamConnectionLost))
        self.assertEqual(body.reason.value.status, 502)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_lost_before_head(self) -> None:
        """A connection lost before any head fails the exchange with ``UpstreamConnectionLost``."""
        _, _, _, failures = self.start()
        proto, _ = self.connect()
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(failures[0].check(UpstreamConnectionLost))

    def test_malformed_status_line(self) -> None:
        """A status line that is not HTTP/1.x fails the exchange and drops the connection."""
        _, _, _, failures = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/2 200 OK\r\n\r\n")
        self.assertTrue(failures[0].check(UpstreamProtocolError))
        self.assertTrue(transport.disconnecting)

    def test_conflicting_content_length(self) -> None:
        """Two different Content-Length values fail the exchange."""
        _, _, _, failures = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        self.assertTrue(failures[0].check(UpstreamProtocolError))

    def test_backpressure_pause_resume(self) -> None:
        """Pausing the exchange pauses the socket and holds bytes already read until resumed."""
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
        heads: list[ResponseHead] = []
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


class EdgeCaseTests(PoolTestCase):
    """Unusual but valid (or cleanly rejected) framing."""

    def test_bare_lf_response(self) -> None:
        """A head with bare LF line ends parses like CRLF."""
        _, body, heads, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\nContent-Length: 4\n\nbody")
        self.assertEqual(heads[0].headers, [(b"Content-Length", b"4")])
        self.assertEqual(body.body, b"body")

    def test_short_content_length_body_aborts(self) -> None:
        """A request body shorter than its Content-Length aborts the exchange."""
        exchange, _, _, failures = self.start(method=b"POST", body_length=5)
        _, transport = self.connect()
        exchange.write(b"abc")
        exchange.finish_body()
        self.assertTrue(failures[0].check(UpstreamProtocolError))
        self.assertTrue(transport.disconnecting)

    def test_transfer_encoding_with_content_length_not_reused(self) -> None:
        """Transfer-Encoding with Content-Length: chunked wins, and the connection is not reused."""
        _, body, _, _ = self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        self.assertEqual(body.body, b"ok")
        self.assertTrue(transport.disconnecting)

    def test_paused_bytes_delivered_before_close(self) -> None:
        """Bytes held by a pause are delivered before the close that ends the body."""
        exchange, body, _, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\n\r\nab")
        exchange.pauseProducing()
        proto.dataReceived(b"cd")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(body.body, b"abcd")
        self.assertIsNone(body.reason)

    def test_oversized_head_rejected(self) -> None:
        """A head larger than ``max_response_header_size`` fails the exchange."""
        self.pool = ConnectionPool(self.reactor, max_response_header_size=100)
        _, _, _, failures = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200)
        self.assertTrue(failures[0].check(UpstreamProtocolError))
