"""The HTTP/3 server (``txcaddy.http._h3``), with aioquic's own client, datagrams carried in memory."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.http._h3client import FakeUDPTransport, H3Client, pump
from tests.tls._certs import TestCA
from txcaddy.http import _h3
from txcaddy.http._h3 import IDLE_TIMEOUT, HTTP3Listener, alt_svc_value
from txcaddy.http.headers import Headers
from txcaddy.testing import FakeServer
from txcaddy.tls._server import ServerTLS, load_connection_policies
from txcaddy.tls.certificates import CertificateCache

CLIENT = ("127.0.0.1", 50000)


class Harness:
    """A listener with one certificate cache and a client, joined in memory."""

    def __init__(self, test: SynchronousTestCase, names: tuple[str, ...] = ("example.com",),
                 policies: list[dict[str, Any]] | None = None) -> None:
        self.ca = TestCA()
        cache = CertificateCache()
        for name in names:
            cache.add(self.ca.certificate_for([name]))
        self.tls = ServerTLS(load_connection_policies(policies or [{}], "test"), cache)
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.server = FakeServer()
        self.listener = HTTP3Listener(self.server, self.clock, self.tls.quic_certificate)
        self.transport = FakeUDPTransport()
        self.listener.transport = self.transport
        self.listener.startProtocol()
        self.cafile = test.mktemp()
        with open(self.cafile, "wb") as f:
            f.write(self.ca.pem)
        self.outbox: list[tuple[bytes, Any]] = []

    def client(self, server_name: str = "example.com", verify: bool = True) -> H3Client:
        client = H3Client(self.clock.seconds, lambda data, addr: self.outbox.append((data, addr)), server_name,
                          self.cafile if verify else None)
        client.connect(("127.0.0.1", 443))
        self.pump(client)
        return client

    def pump(self, client: H3Client) -> None:
        pump(client, self.listener, self.transport, self.clock, CLIENT, self.outbox)


class HTTP3Tests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self)
        self.client = self.h.client()

    def answer(self, index: int = -1) -> tuple[Any, Any]:
        return self.h.server.requests[index]

    def test_handshake_and_get(self) -> None:
        """A GET becomes a Request with proto HTTP/3.0, Host from :authority, TLS state; the
        response's status, fields and body (with a content-length) reach the client."""
        self.assertTrue(self.client.handshake)
        _, exchange = self.client.request(b"GET", b"/a/b?c=d", headers=[(b"x-one", b"1")])
        self.h.pump(self.client)
        request, response = self.answer()
        self.assertEqual((request.method, request.path, request.query, request.proto),
                         ("GET", "/a/b", "c=d", "HTTP/3.0"))
        self.assertEqual(request.host, "example.com")
        self.assertEqual(request.headers.first("X-One"), "1")
        self.assertEqual((request.tls.version, request.tls.proto, request.tls.server_name),
                         ("tls1.3", "h3", "example.com"))
        self.assertTrue(request.tls.cipher_suite.startswith("TLS_"))
        self.assertEqual(request.remote, CLIENT)
        self.assertEqual(request.local, ("127.0.0.1", 443))
        response.headers.set("Content-Type", "text/plain")
        response.write_head(201)
        response.write(b"hello")
        response.finish()
        self.h.pump(self.client)
        self.assertTrue(exchange.ended)
        self.assertEqual(exchange.status, 201)
        self.assertEqual(exchange.header(b"content-type"), b"text/plain")
        self.assertEqual(exchange.header(b"content-length"), b"5")
        self.assertIsNotNone(exchange.header(b"date"))
        self.assertEqual(exchange.body, b"hello")

    def test_streamed_request_body(self) -> None:
        """A request body arrives at the handler as the client sends it, then finishes."""
        stream_id, exchange = self.client.request(b"POST", b"/up", body=b"part1-", end=False)
        self.h.pump(self.client)
        request, response = self.answer()
        self.assertEqual(request.body.received, 6)
        self.assertFalse(request.body.finished)
        self.client.send_body(stream_id, b"part2", True)
        self.h.pump(self.client)
        self.assertTrue(request.body.finished)
        self.assertEqual(b"".join(request.body._chunks), b"part1-part2")
        response.write_head(200)
        response.write(b"".join(request.body._chunks))
        response.finish()
        self.h.pump(self.client)
        self.assertEqual((exchange.status, exchange.body), (200, b"part1-part2"))

    def test_request_body_backpressure(self) -> None:
        """While the body's consumer is paused the client can send at most one stream window
        past what was taken; once resumed, the rest arrives."""
        size = 3 * _h3.STREAM_WINDOW
        stream_id, _ = self.client.request(b"POST", b"/up", body=b"", end=False)
        self.h.pump(self.client)
        request, response = self.answer()
        got: list[bytes] = []
        ended: list[Any] = []

        class Consumer:
            def body_data(self, data: bytes) -> None:
                got.append(data)

            def body_trailers(self, trailers: Any) -> None:
                pass

            def body_finished(self, reason: Any) -> None:
                ended.append(reason)

        request.body.deliver(Consumer())
        request.body.producer.pauseProducing()
        self.client.send_body(stream_id, b"z" * size, True)
        self.h.pump(self.client)
        self.assertLessEqual(request.body.received, _h3.STREAM_WINDOW)
        self.assertGreater(request.body.received, _h3.STREAM_WINDOW // 2)
        self.assertEqual(ended, [])
        request.body.producer.resumeProducing()
        self.h.pump(self.client)
        self.assertEqual(sum(map(len, got)), size)
        self.assertEqual(ended, [None])
        response.finish()

    def test_large_streamed_response_and_trailers(self) -> None:
        """A streamed body larger than the hold limit and the flow-control window arrives whole,
        then the trailers."""
        _, exchange = self.client.request(b"GET", b"/big")
        self.h.pump(self.client)
        _, response = self.answer()
        response.write_head(200)
        payload = bytes(range(256)) * 8192  # 2 MiB: past the 1 MiB windows
        for start in range(0, len(payload), 65536):
            response.write(payload[start:start + 65536])
            self.h.pump(self.client)
        response.add_trailers(Headers.from_raw([(b"grpc-status", b"0")]))
        response.finish()
        self.h.pump(self.client)
        self.assertTrue(exchange.ended)
        self.assertIsNone(exchange.header(b"content-length"))
        self.assertEqual(len(exchange.body), len(payload))
        self.assertEqual(exchange.body, payload)
        self.assertEqual(exchange.trailers, [(b"grpc-status", b"0")])

    def test_head_and_no_body_statuses(self) -> None:
        """HEAD gets the head only (no DATA even when the handler writes); a 204 carries no content-length."""
        head_id, head = self.client.request(b"HEAD", b"/")
        _, empty = self.client.request(b"GET", b"/none")
        self.h.pump(self.client)
        connection = next(iter(self.h.listener.connections))
        assert connection.h3 is not None
        sent: list[tuple[int, bytes]] = []
        send_data = connection.h3.send_data

        def spy(stream_id: int, data: bytes, end_stream: bool) -> None:
            sent.append((stream_id, data))
            send_data(stream_id, data, end_stream)

        self.patch(connection.h3, "send_data", spy)
        for request, response in self.h.server.requests:
            if request.method == "HEAD":
                response.headers.set("Content-Length", "0")  # aioquic's client checks it against the DATA
                response.write_head(200)
                response.write(b"ignored")
            else:
                response.write_head(204)
            response.finish()
        self.h.pump(self.client)
        self.assertEqual((head.status, head.body, head.ended), (200, b"", True))
        self.assertEqual((empty.status, empty.header(b"content-length"), empty.ended), (204, None, True))
        self.assertEqual([data for i, data in sent if i == head_id], [])  # HEADERS with FIN only

    def test_early_hints(self) -> None:
        """A 103 goes out before the final response."""
        _, exchange = self.client.request(b"GET", b"/")
        self.h.pump(self.client)
        _, response = self.answer()
        response.write_informational(103, Headers.from_raw([(b"link", b"</a.css>; rel=preload")]))
        response.write_head(200)
        response.finish()
        self.h.pump(self.client)
        self.assertEqual(exchange.interim, [[(b":status", b"103"), (b"link", b"</a.css>; rel=preload")]])
        self.assertEqual(exchange.status, 200)

    def test_streaming_producer_paused_while_unacknowledged(self) -> None:
        """A streaming producer is paused while too much waits unacknowledged, resumed once ACKed."""
        _, exchange = self.client.request(b"GET", b"/")
        self.h.pump(self.client)
        _, response = self.answer()
        calls: list[str] = []

        class Producer:
            def pauseProducing(self) -> None:
                calls.append("pause")

            def resumeProducing(self) -> None:
                calls.append("resume")

            def stopProducing(self) -> None:
                calls.append("stop")

        response.write_head(200)
        response.register_producer(Producer(), True)
        response.write(b"x" * (512 * 1024))
        self.assertEqual(calls, ["pause"])
        self.h.pump(self.client)
        self.assertEqual(calls, ["pause", "resume"])
        response.unregister_producer()
        response.finish()
        self.h.pump(self.client)
        self.assertEqual(len(exchange.body), 512 * 1024)

    def test_client_stop_sending_stops_response(self) -> None:
        """A response the client no longer wants (STOP_SENDING) is cut off and its producer stopped."""
        stream_id, _ = self.client.request(b"GET", b"/")
        self.h.pump(self.client)
        _, response = self.answer()
        stopped: list[bool] = []

        class Producer:
            def pauseProducing(self) -> None:
                pass

            def resumeProducing(self) -> None:
                pass

            def stopProducing(self) -> None:
                stopped.append(True)

        response.write_head(200)
        response.register_producer(Producer(), True)
        response.write(b"x" * 3000)
        self.client.quic.stop_stream(stream_id, 0x10C)
        self.client.transmit()
        self.h.pump(self.client)
        self.assertEqual(stopped, [True])
        self.assertIsNotNone(response.lost)
        self.assertEqual(self.client.exchanges[stream_id].reset, 0x10C)

    def test_rapid_reset_closes_connection(self) -> None:
        """More streams cancelled by the client than the budget allows close the connection
        with H3_EXCESSIVE_LOAD."""
        self.patch(_h3, "RAPID_RESET_LIMIT", 3)
        h = Harness(self)
        client = h.client()
        for _ in range(4):
            stream_id, _ = client.request(b"GET", b"/")
            h.pump(client)
            client.quic.stop_stream(stream_id, 0x10C)
            client.transmit()
            h.pump(client)
        settle(h, client)
        self.assertEqual(client.terminated.error_code, 0x107)
        self.assertEqual(h.server.connections, set())

    def test_graceful_close(self) -> None:
        """close_gracefully lets the open stream finish, then closes the connection."""
        _, exchange = self.client.request(b"GET", b"/")
        self.h.pump(self.client)
        _, response = self.answer()
        closed = self.h.listener.close_gracefully()
        self.assertNoResult(closed)
        response.write_head(200)
        response.write(b"done")
        response.finish()
        self.h.pump(self.client)
        self.assertEqual(exchange.body, b"done")
        self.h.clock.advance(5)
        self.h.pump(self.client)
        self.successResultOf(closed)
        self.assertEqual(self.h.server.connections, set())
        self.assertIsNotNone(self.client.terminated)

    def test_idle_timeout(self) -> None:
        """An idle connection is closed after the idle timeout and forgotten."""
        self.assertEqual(len(self.h.server.connections), 1)
        self.h.clock.advance(IDLE_TIMEOUT + 1)
        self.assertEqual(self.h.server.connections, set())
        self.assertEqual(self.h.listener.connection_ids, {})


class LimitTests(SynchronousTestCase):
    def test_header_section_over_limit_refused(self) -> None:
        """A header section larger than the server's limit is refused (H3_EXCESSIVE_LOAD) without
        reaching the server; the connection still serves other requests."""
        h = Harness(self)
        h.server.max_header_bytes = 4000
        client = h.client()
        stream_id, big = client.request(b"GET", b"/", headers=[(b"x-big", b"a" * 8000)])
        h.pump(client)
        self.assertEqual((big.reset, h.server.requests), (0x107, []))
        _, small = client.request(b"GET", b"/ok")
        h.pump(client)
        [(request, response)] = h.server.requests
        self.assertEqual(request.path, "/ok")
        response.finish()
        h.pump(client)
        self.assertEqual(small.status, 200)

    def test_malformed_request_resets_only_its_stream(self) -> None:
        """A request aioquic lets through but the HTTP/2 server's one-pass checks refuse (a Host
        differing from :authority, a control character in a value) is reset with
        H3_MESSAGE_ERROR without reaching the server; the connection still serves other
        requests. (What aioquic refuses itself, e.g. a connection-specific field, closes the
        connection: aioquic's choice, docs/http2.md.)"""
        h = Harness(self)
        client = h.client()
        for extra in ([(b"host", b"other.example")], [(b"x-v", b"a\x01b")]):
            _, bad = client.request(b"GET", b"/", headers=extra)
            h.pump(client)
            self.assertEqual((bad.reset, h.server.requests), (0x10E, []), extra)
        _, good = client.request(b"GET", b"/ok", headers=[(b"cookie", b"a=1"), (b"cookie", b"b=2")])
        h.pump(client)
        [(request, response)] = h.server.requests
        self.assertEqual((request.path, request.headers.values_of("Cookie")), ("/ok", ["a=1; b=2"]))
        response.finish()
        h.pump(client)
        self.assertEqual(good.status, 200)


class CertificateTests(SynchronousTestCase):
    def test_certificate_chosen_by_sni(self) -> None:
        """The certificate presented is the one for the ClientHello's server name (the client
        verifies it against the name)."""
        h = Harness(self, names=("a.example", "b.example"))
        for name in ("a.example", "b.example"):
            client = h.client(name)
            self.assertTrue(client.handshake, name)
            self.assertIsNone(client.terminated)

    def test_unknown_name_refused(self) -> None:
        """No certificate for the server name: the handshake fails."""
        h = Harness(self, names=("a.example",))
        client = h.client("other.example", verify=False)
        self.assertFalse(client.handshake)
        settle(h, client)
        self.assertEqual(client.terminated.error_code, 0x100 + 40)  # CRYPTO_ERROR + handshake_failure
        self.assertEqual((h.server.connections, h.listener.connection_ids), (set(), {}))

    def test_client_authentication_policy_refuses_quic(self) -> None:
        """A policy that authenticates clients is not served over QUIC (no way around mTLS)."""
        ca = TestCA()
        policies = [{"client_authentication": {"mode": "require_and_verify",
                                               "trusted_ca_certs": [_b64(ca)]}}]
        h = Harness(self, policies=policies)
        client = h.client(verify=False)
        self.assertFalse(client.handshake)
        settle(h, client)
        self.assertEqual(client.terminated.error_code, 0x100 + 40)

    def test_tls12_only_policy_refuses_quic(self) -> None:
        """A policy capped below TLS 1.3 refuses QUIC (always TLS 1.3)."""
        h = Harness(self, policies=[{"protocol_max": "tls1.2"}])
        client = h.client(verify=False)
        self.assertFalse(client.handshake)


class ListenerTests(SynchronousTestCase):
    def test_version_negotiation(self) -> None:
        """An Initial of an unknown QUIC version gets a Version Negotiation packet listing v1 and v2."""
        h = Harness(self)
        packet = bytes([0xC0]) + (0x1A2A3A4A).to_bytes(4, "big") + b"\x08" + b"d" * 8 + b"\x08" + b"s" * 8
        h.listener.datagramReceived(packet + b"\x00" * 1200, CLIENT)
        [(data, addr)] = h.transport.written
        self.assertEqual(addr, CLIENT)
        self.assertEqual(data[1:5], b"\x00\x00\x00\x00")
        self.assertIn((1).to_bytes(4, "big"), data[-8:])
        self.assertIn((0x6B3343CF).to_bytes(4, "big"), data[-8:])

    def test_short_initial_ignored(self) -> None:
        """An Initial in a datagram under 1200 bytes opens no connection."""
        h = Harness(self)
        client = H3Client(h.clock.seconds, lambda data, addr: h.outbox.append((data, addr)))
        client.connect(("127.0.0.1", 443))
        data, _ = h.outbox[0]
        h.listener.datagramReceived(data[:1100], CLIENT)
        self.assertEqual((h.transport.written, h.server.connections), ([], set()))

    def test_retry_under_load(self) -> None:
        """Past the threshold a new client first gets a Retry, then connects with its token."""
        h = Harness(self)
        h.listener.retry_threshold = 0
        client = H3Client(h.clock.seconds, lambda data, addr: h.outbox.append((data, addr)))
        client.connect(("127.0.0.1", 443))
        data, _ = h.outbox.pop(0)
        h.listener.datagramReceived(data, CLIENT)
        [(retry, _addr)] = h.transport.written
        self.assertEqual(retry[0] & 0xF0, 0xF0)  # long header, type Retry (v1)
        self.assertEqual(h.server.connections, set())
        h.pump(client)
        self.assertTrue(client.handshake)
        self.assertEqual(len(h.server.connections), 1)

    def test_bad_retry_token_dropped(self) -> None:
        """An Initial whose token is not ours opens no connection."""
        h = Harness(self)
        h.listener.retry_threshold = 0
        client = H3Client(h.clock.seconds, lambda data, addr: h.outbox.append((data, addr)))
        client.quic._configuration.token = b"x" * 40  # noqa: S105 - a forged token
        client.quic._peer_token = b"x" * 40
        client.connect(("127.0.0.1", 443))
        data, _ = h.outbox.pop(0)
        h.listener.datagramReceived(data, CLIENT)
        self.assertEqual((h.transport.written, h.server.connections), ([], set()))

    def test_alt_svc_value(self) -> None:
        """One entry per port, joined by ',', with Caddy's 30-day max age."""
        self.assertEqual(alt_svc_value([443]), 'h3=":443"; ma=2592000')
        self.assertEqual(alt_svc_value([443, 8443, 443]), 'h3=":443"; ma=2592000,h3=":8443"; ma=2592000')


def settle(h: Harness, client: H3Client) -> None:
    """Let both sides' closing and draining periods pass."""
    for _ in range(10):
        h.clock.advance(1)
        client.tick()
        h.pump(client)


def _b64(ca: TestCA) -> str:
    import base64

    from cryptography.hazmat.primitives import serialization

    return base64.b64encode(ca.certificate.public_bytes(serialization.Encoding.DER)).decode()


class AltSvcTests(SynchronousTestCase):
    def test_alt_svc_below_http3_only(self) -> None:
        """A server with HTTP/3 ports advertises them on HTTP/1.1 and HTTP/2 responses, not on HTTP/3 ones."""
        from txcaddy.http.routing import RouteList
        from txcaddy.http.server import HTTPServer
        from txcaddy.testing import FakeResponse, make_request

        server = HTTPServer("srv0", [":443"], RouteList([]))
        server.alt_svc = alt_svc_value([443])
        for proto, expected in (("HTTP/1.1", ['h3=":443"; ma=2592000']), ("HTTP/2.0", ['h3=":443"; ma=2592000']),
                                ("HTTP/3.0", None)):
            request = make_request("GET", "/", proto=proto)
            response = FakeResponse()
            server.handle(request, response)
            self.assertEqual(response.headers.values_of("Alt-Svc"), expected, proto)


class UDPAddressTests(SynchronousTestCase):
    def test_udp_beside_tcp_endpoints(self) -> None:
        """The UDP socket takes the TCP listener's port and interface; unix listeners get none."""
        from txcaddy.service import _udp_address

        self.assertEqual(_udp_address("tcp:443"), (443, ""))
        self.assertEqual(_udp_address("tcp:8443:interface=127.0.0.1"), (8443, "127.0.0.1"))
        self.assertEqual(_udp_address("tcp6:443:interface=\\:\\:1"), (443, "::1"))
        self.assertEqual(_udp_address("tcp6:443"), (443, "::"))
        self.assertIsNone(_udp_address("unix:/run/x.sock"))
