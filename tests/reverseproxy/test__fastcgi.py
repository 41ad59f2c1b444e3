"""The FastCGI transport without a FastCGI server: records and pairs, the CGI head, the
environment, and one connection driven over a StringTransport on a MemoryReactorClock."""

from __future__ import annotations

import os
import struct
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import provider
from zope.interface.verify import verifyObject

from tests.reverseproxy._client import Collector
from txcaddy.errors import ConfigError
from txcaddy.interfaces import IExchange, IUpstreamConnection, IUpstreamTransport
from txcaddy.reverseproxy._fastcgi import (
    FastCGIError,
    FastCGITransport,
    RecordParser,
    build_env,
    encode_pair,
    encode_params,
    parse_cgi_head,
    record,
    stream_pieces,
    stream_records,
)
from txcaddy.reverseproxy._fastcgirecords import (
    BEGIN_REQUEST,
    END_REQUEST,
    PARAMS,
    STDERR,
    STDIN,
    STDOUT,
    decode_pairs,
)
from txcaddy.reverseproxy.errors import (
    UpstreamConnectionLost,
    UpstreamReadTimeout,
    UpstreamWriteTimeout,
)
from txcaddy.reverseproxy.transport import CHUNKED, UpstreamAddress
from txcaddy.testing import make_request

ADDR = UpstreamAddress.parse("127.0.0.1:9000")


def end_request(app_status: int = 0, protocol_status: int = 0) -> bytes:
    return record(END_REQUEST, 1, struct.pack(">IB3x", app_status, protocol_status))


def records_of(data: bytes) -> list[tuple[int, int, bytes]]:
    return list(RecordParser().feed(data))


def stream(data: bytes, rtype: int) -> bytes:
    """The content of every ``rtype`` record in ``data``, joined."""
    return b"".join(content for t, _, content in records_of(data) if t == rtype)


class RecordTests(SynchronousTestCase):
    def test_record_layout_and_padding(self) -> None:
        """A record is version 1, type, id, length, padding to a multiple of 8."""
        data = record(STDOUT, 1, b"hello")
        self.assertEqual(data[:8], bytes([1, STDOUT, 0, 1, 0, 5, 3, 0]))
        self.assertEqual(data[8:], b"hello\0\0\0")
        self.assertEqual(len(record(PARAMS, 1)), 8)

    def test_long_stream_split_into_records(self) -> None:
        """200 000 bytes of stdin become four records, none over 65535 bytes, same content."""
        data = bytes(range(256)) * 782
        chunks = stream_records(STDIN, 1, data)
        self.assertEqual(len(chunks), 4)
        parsed = records_of(b"".join(chunks))
        self.assertTrue(all(len(c) <= 65535 for _, _, c in parsed))
        self.assertEqual(b"".join(c for _, _, c in parsed), data)
        self.assertEqual(stream_records(STDIN, 1, b""), [])
        with self.assertRaises(ValueError):
            record(STDIN, 1, b"x" * 65536)

    def test_pieces_are_the_same_records(self) -> None:
        """The gathering-write pieces join into exactly the records, for short and long data."""
        for size in (1, 8, 65528, 65529, 200_001):
            data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            self.assertEqual(b"".join(stream_pieces(STDIN, 1, data)),
                             b"".join(stream_records(STDIN, 1, data)))
        self.assertEqual(stream_pieces(STDIN, 1, b""), [])

    def test_pair_lengths(self) -> None:
        """Lengths under 128 take one byte; longer ones four with the top bit set."""
        self.assertEqual(encode_pair(b"A", b"bc"), b"\x01\x02Abc")
        long = b"v" * 300
        self.assertEqual(encode_pair(b"K", long)[:6], b"\x01\x80\x00\x01\x2cK")
        pairs = [(b"SCRIPT_NAME", b"/index.php"), (b"X" * 200, long), (b"EMPTY", b"")]
        params = encode_params(1, pairs)
        self.assertEqual(decode_pairs(stream(params, PARAMS)), pairs)
        self.assertEqual(records_of(params)[-1], (PARAMS, 1, b""))

    def test_truncated_pairs_refused(self) -> None:
        """A pair claiming more bytes than there are is a FastCGIError."""
        with self.assertRaises(FastCGIError):
            decode_pairs(b"\x05\x05abc")

    def test_parser_across_reads(self) -> None:
        """Records split at every byte boundary come out whole, in order."""
        data = record(STDOUT, 1, b"abc") + record(STDERR, 1, b"oops") + end_request()
        parser = RecordParser()
        out: list[tuple[int, int, bytes]] = []
        for i in range(len(data)):
            out.extend(parser.feed(data[i:i + 1]))
        self.assertEqual([(t, c) for t, _, c in out],
                         [(STDOUT, b"abc"), (STDERR, b"oops"), (END_REQUEST, out[2][2])])
        self.assertEqual(parser.buffer, b"")

    def test_garbage_refused(self) -> None:
        """Bytes that are not FastCGI (an HTTP response) are a FastCGIError."""
        with self.assertRaises(FastCGIError):
            records_of(b"HTTP/1.1 200 OK\r\n\r\n")


class HeadTests(SynchronousTestCase):
    def test_status_header(self) -> None:
        """``Status`` gives the code and text; names are canonicalised; Status stays (as Caddy 2.6.2)."""
        head = parse_cgi_head(b"status: 404 Not Found\r\ncontent-type: text/html\r\nX-A: 1")
        self.assertEqual((head.status, head.reason), (404, b"Not Found"))
        self.assertEqual(head.headers, [(b"Status", b"404 Not Found"),
                                        (b"Content-Type", b"text/html"), (b"X-A", b"1")])

    def test_default_200(self) -> None:
        """Without Status the response is a 200."""
        self.assertEqual(parse_cgi_head(b"Content-Type: text/plain\n").status, 200)

    def test_malformed(self) -> None:
        """A header line without a colon, or a non-numeric Status, is refused."""
        with self.assertRaises(FastCGIError):
            parse_cgi_head(b"not a header")
        for bad in (b"Status: abc", b"Status: 20", b"Status: 1000 Big"):
            with self.assertRaises(FastCGIError):
                parse_cgi_head(bad)


class EnvTests(SynchronousTestCase):
    def env(self, target: str = "/index.php", method: str = "GET", **kw: Any) -> dict[str, str]:
        transport = FastCGITransport(MemoryReactorClock(), root="/srv/www",
                                     split_path=[".php"], env={"APP": "{http.request.method}"})
        body_length = kw.pop("body_length", None)
        request = make_request(method, target, headers=kw.pop("headers", None), **kw)
        raw = [(b"Host", request.host.encode())] + [
            (k.encode(), v.encode()) for k, v in request.headers.items()]
        return {k.decode(): v.decode() for k, v in build_env(
            transport, request, method.encode(), target.encode(), raw, body_length)}

    def test_split_path(self) -> None:
        """The path splits after .php: SCRIPT_NAME, PATH_INFO and the file names follow."""
        env = self.env("/app/Index.PHP/a/b?x=1")
        self.assertEqual(env["SCRIPT_NAME"], "/app/Index.PHP")
        self.assertEqual(env["PATH_INFO"], "/a/b")
        self.assertEqual(env["SCRIPT_FILENAME"], "/srv/www/app/Index.PHP")
        self.assertEqual(env["PATH_TRANSLATED"], "/srv/www/a/b")
        self.assertEqual(env["DOCUMENT_URI"], "/app/Index.PHP")
        self.assertEqual(env["QUERY_STRING"], "x=1")
        self.assertEqual(env["REQUEST_URI"], "/app/Index.PHP/a/b?x=1")

    def test_server_and_remote(self) -> None:
        """SERVER_* from the Host (80 without a port), REMOTE_* from the client, headers as HTTP_*."""
        env = self.env(headers={"X-Some-Thing": "v"}, host="example.com",
                       remote=("10.1.2.3", 4567))
        self.assertEqual((env["SERVER_NAME"], env["SERVER_PORT"]), ("example.com", "80"))
        self.assertEqual((env["REMOTE_ADDR"], env["REMOTE_HOST"], env["REMOTE_PORT"]),
                         ("10.1.2.3", "10.1.2.3", "4567"))
        self.assertEqual(env["HTTP_X_SOME_THING"], "v")
        self.assertEqual(env["HTTP_HOST"], "example.com")
        self.assertEqual(env["APP"], "GET")
        self.assertEqual(env["SERVER_SOFTWARE"], "Caddy/2.6.2")
        self.assertNotIn("PATH_TRANSLATED", env)
        self.assertNotIn("HTTPS", env)

    def test_https(self) -> None:
        """A TLS request sets HTTPS=on, port 443 and the mod_ssl protocol name."""

        class TLS:
            version = "tls1.3"
            cipher_suite = "TLS_AES_128_GCM_SHA256"

        env = self.env(tls=TLS())
        self.assertEqual((env["HTTPS"], env["REQUEST_SCHEME"], env["SERVER_PORT"]),
                         ("on", "https", "443"))
        self.assertEqual((env["SSL_PROTOCOL"], env["SSL_CIPHER"]),
                         ("TLSv1.3", "TLS_AES_128_GCM_SHA256"))

    def test_post_defaults(self) -> None:
        """A POST without a Content-Type gets the form type; a chunked body has length -1."""
        env = self.env(method="POST", body_length=CHUNKED)
        self.assertEqual(env["CONTENT_TYPE"], "application/x-www-form-urlencoded")
        self.assertEqual(env["CONTENT_LENGTH"], "-1")

    def test_without_a_client_request(self) -> None:
        """An active health check's request (no client request) gets global placeholders only."""
        transport = FastCGITransport(MemoryReactorClock(), root="{http.vars.root}",
                                     split_path=[".php"], env={"HOME_DIR": "{env.HOME}"})
        env = {k.decode(): v.decode() for k, v in build_env(
            transport, None, b"GET", b"/ping.php?full", [(b"Host", b"10.0.0.1:9000")], None)}
        self.assertEqual(env["DOCUMENT_ROOT"], os.path.abspath("."))
        self.assertEqual(env["SCRIPT_NAME"], "/ping.php")
        self.assertEqual(env["REQUEST_URI"], "/ping.php?full")
        self.assertEqual(env["HOME_DIR"], os.environ.get("HOME", ""))
        self.assertEqual((env["SERVER_NAME"], env["SERVER_PORT"]), ("10.0.0.1", "9000"))

    def test_config_loading(self) -> None:
        """The JSON options load; an unknown field is refused."""
        transport = FastCGITransport.from_config(
            {"protocol": "fastcgi", "split_path": [".php"], "read_timeout": "5s",
             "env": {"A": "b"}}, MemoryReactorClock())
        self.assertEqual(transport.split_path, [".php"])
        self.assertEqual(transport.pool.read_timeout, 5.0)
        self.assertEqual(transport.pool.dial_timeout, 3.0)
        with self.assertRaises(ConfigError):
            FastCGITransport.from_config({"protocol": "fastcgi", "bogus": 1}, MemoryReactorClock())


class ConnectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def transport(self, **kw: Any) -> FastCGITransport:
        return FastCGITransport(self.reactor, root="/srv", split_path=[".php"], **kw)

    def connect(self, index: int = -1) -> tuple[Any, StringTransport]:
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[index]
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def start(self, fcgi: FastCGITransport, method: bytes = b"GET", target: bytes = b"/i.php",
              body_length: int | None = None) -> tuple[Any, Collector, list[Any], list[Failure]]:
        request = make_request(method.decode(), target.decode())
        exchange = fcgi.request(ADDR, method, target, [(b"Host", b"localhost")], body_length,
                                request=request)
        collector = Collector()
        heads: list[Any] = []
        failures: list[Failure] = []

        def got_head(head: Any) -> None:
            heads.append(head)
            exchange.deliver_body(collector)

        exchange.when_head(got_head, failures.append)
        return exchange, collector, heads, failures

    def test_interfaces(self) -> None:
        """The transport, its connection and its exchange provide the proxy's interfaces."""
        fcgi = self.transport()
        exchange, _, _, _ = self.start(fcgi)
        self.connect()
        self.assertTrue(verifyObject(IUpstreamTransport, fcgi))
        self.assertTrue(verifyObject(IUpstreamConnection, exchange._conn))
        self.assertTrue(verifyObject(IExchange, exchange))

    def test_request_and_response(self) -> None:
        """BEGIN_REQUEST with KEEP_CONN, the params, an empty stdin; stdout becomes head and body."""
        fcgi = self.transport()
        _, collector, heads, _ = self.start(fcgi)
        proto, wire = self.connect()
        sent = records_of(wire.value())
        self.assertEqual(sent[0][:2], (BEGIN_REQUEST, 1))
        self.assertEqual(sent[0][2][:3], b"\x00\x01\x01")  # responder, keep-conn
        params = dict(decode_pairs(stream(wire.value(), PARAMS)))
        self.assertEqual(params[b"SCRIPT_FILENAME"], b"/srv/i.php")
        self.assertEqual(sent[-1], (STDIN, 1, b""))
        proto.dataReceived(record(STDOUT, 1, b"Status: 201 Created\r\nX-A: 1\r\n\r\nhel"))
        self.assertEqual(heads[0].status, 201)
        proto.dataReceived(record(STDOUT, 1, b"lo") + end_request())
        self.assertEqual((collector.body, collector.finished, collector.reason),
                         (b"hello", True, None))
        self.assertEqual(fcgi.pool.idle_count(ADDR), 1)
        self.assertFalse(wire.disconnecting)

    def test_connection_reused(self) -> None:
        """A second request goes over the kept connection: no new dial."""
        fcgi = self.transport()
        self.start(fcgi)
        proto, wire = self.connect()
        proto.dataReceived(record(STDOUT, 1, b"\r\nA") + end_request())
        wire.clear()
        _, collector, _, _ = self.start(fcgi)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(records_of(wire.value())[0][0], BEGIN_REQUEST)
        proto.dataReceived(record(STDOUT, 1, b"\r\nB") + end_request())
        self.assertEqual(collector.body, b"B")

    def test_body_streams_as_stdin(self) -> None:
        """A request body goes out as STDIN records, then the empty STDIN record."""
        fcgi = self.transport()
        exchange, _, _, _ = self.start(fcgi, b"POST", body_length=6)
        _, wire = self.connect()
        exchange.write(b"abc")
        exchange.write(b"def")
        self.assertEqual(stream(wire.value(), STDIN), b"abcdef")
        self.assertEqual(records_of(wire.value())[-1], (STDIN, 1, b""))
        self.assertIn((b"CONTENT_LENGTH", b"6"), decode_pairs(stream(wire.value(), PARAMS)))

    def test_chunked_body_read_whole_then_sent_with_its_length(self) -> None:
        """A chunked request body is read first (nothing dialled), then sent with CONTENT_LENGTH."""
        fcgi = self.transport()
        exchange, collector, _, _ = self.start(fcgi, b"POST", body_length=CHUNKED)
        self.assertTrue(exchange.body_wanted)
        exchange.write(b"abc")
        exchange.write(b"defg")
        self.assertEqual(self.reactor.tcpClients, [])
        exchange.finish_body()
        proto, wire = self.connect()
        self.assertIn((b"CONTENT_LENGTH", b"7"), decode_pairs(stream(wire.value(), PARAMS)))
        self.assertEqual(stream(wire.value(), STDIN), b"abcdefg")
        self.assertEqual(records_of(wire.value())[-1], (STDIN, 1, b""))
        proto.dataReceived(record(STDOUT, 1, b"\r\nok") + end_request())
        self.assertEqual(collector.body, b"ok")
        self.assertEqual(fcgi.pool.idle_count(ADDR), 1)

    def test_backpressure_pauses_reading(self) -> None:
        """Pausing the exchange pauses the socket; body bytes wait until it resumes."""
        fcgi = self.transport()
        exchange, collector, _, _ = self.start(fcgi)
        proto, wire = self.connect()
        proto.dataReceived(record(STDOUT, 1, b"\r\none"))
        exchange.pauseProducing()
        self.assertEqual(wire.producerState, "paused")
        proto.dataReceived(record(STDOUT, 1, b"two") + end_request())
        self.assertEqual(collector.body, b"one")
        exchange.resumeProducing()
        self.assertEqual((collector.body, collector.finished), (b"onetwo", True))

    def test_pause_inside_one_read(self) -> None:
        """A consumer pausing on the first of several records in one read gets the rest, in order, on resume."""
        fcgi = self.transport()
        exchange, collector, _, _ = self.start(fcgi)
        proto, wire = self.connect()

        def body_data(data: bytes) -> None:
            collector.chunks.append(data)
            if len(collector.chunks) == 1:
                exchange.pauseProducing()

        collector.body_data = body_data  # type: ignore[method-assign]
        proto.dataReceived(record(STDOUT, 1, b"\r\na") + record(STDOUT, 1, b"b")
                           + record(STDOUT, 1, b"c") + end_request())
        self.assertEqual((collector.body, collector.finished), (b"a", False))
        exchange.resumeProducing()
        self.assertEqual((collector.body, collector.finished), (b"abc", True))
        self.assertEqual(fcgi.pool.idle_count(ADDR), 1)

    def test_extra_bytes_after_end_not_kept(self) -> None:
        """Records after FCGI_END_REQUEST mean the connection is not reused."""
        fcgi = self.transport()
        _, collector, _, _ = self.start(fcgi)
        proto, wire = self.connect()
        proto.dataReceived(record(STDOUT, 1, b"\r\nok") + end_request() + record(STDOUT, 1, b"x"))
        self.assertEqual((collector.body, collector.finished), (b"ok", True))
        self.assertEqual(fcgi.pool.idle_count(ADDR), 0)
        self.assertTrue(wire.disconnecting)

    def test_stderr_logged(self) -> None:
        """stderr from the script is logged once the response ends (error level for a 5xx)."""
        fcgi = self.transport(capture_stderr=True)
        self.start(fcgi)
        proto, _ = self.connect()
        events: list[LogEvent] = []

        @provider(ILogObserver)
        def observer(event: LogEvent) -> None:
            events.append(event)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        proto.dataReceived(record(STDERR, 1, b"PHP Warning: x") +
                           record(STDOUT, 1, b"Status: 500\r\n\r\n") + end_request())
        logged = [e for e in events if e.get("stderr") == "PHP Warning: x"]
        self.assertEqual([e["log_level"].name for e in logged], ["error"])

    def test_garbage_fails_502(self) -> None:
        """Non-FastCGI bytes fail the exchange with a 502 error and drop the connection."""
        fcgi = self.transport()
        _, _, heads, failures = self.start(fcgi)
        proto, wire = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
        self.assertEqual(heads, [])
        self.assertIsInstance(failures[0].value, FastCGIError)
        self.assertEqual(getattr(failures[0].value, "status", None), 502)
        self.assertTrue(wire.disconnected or wire.disconnecting)
        self.assertEqual(fcgi.pool.open_count(ADDR), 0)
        self.flushLoggedErrors()

    def test_lost_before_end(self) -> None:
        """A connection closing mid-response ends the body with UpstreamConnectionLost."""
        fcgi = self.transport()
        _, collector, _, _ = self.start(fcgi)
        proto, _ = self.connect()
        proto.dataReceived(record(STDOUT, 1, b"\r\npartial"))
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(collector.reason.value if collector.reason else None,
                              UpstreamConnectionLost)

    def test_read_timeout_is_a_deadline(self) -> None:
        """read_timeout runs from the start of the request, even while data keeps arriving."""
        fcgi = self.transport(read_timeout=5.0)
        _, collector, _, _ = self.start(fcgi)
        proto, _ = self.connect()
        proto.dataReceived(record(STDOUT, 1, b"\r\na"))
        self.reactor.advance(4)
        proto.dataReceived(record(STDOUT, 1, b"b"))
        self.reactor.advance(1)
        self.assertIsInstance(collector.reason.value if collector.reason else None,
                              UpstreamReadTimeout)

    def test_write_timeout(self) -> None:
        """A request body not fully sent within write_timeout fails the exchange."""
        fcgi = self.transport(write_timeout=2.0)
        exchange, _, _, failures = self.start(fcgi, b"POST", body_length=10)
        self.connect()
        exchange.write(b"abc")
        self.reactor.advance(2)
        self.assertIsInstance(failures[0].value, UpstreamWriteTimeout)

    def test_busy_neighbour_means_no_keep(self) -> None:
        """A connection finishing while another request waits for a worker is closed, not kept."""
        fcgi = self.transport()
        self.start(fcgi)
        first, first_wire = self.connect(0)
        self.start(fcgi)
        self.connect(1)  # connected, but php-fpm has no free worker for it yet
        first.dataReceived(record(STDOUT, 1, b"\r\nx") + end_request())
        self.assertTrue(first_wire.disconnecting)
        self.assertEqual(fcgi.pool.idle_count(ADDR), 0)

    def test_new_connection_frees_a_worker_held_by_another_pool(self) -> None:
        """A request on a new connection closes an idle connection of another pool to the same server."""
        first = self.transport()
        self.start(first)
        proto, wire = self.connect(0)
        proto.dataReceived(record(STDOUT, 1, b"\r\nx") + end_request())
        self.assertEqual(first.pool.idle_count(ADDR), 1)
        second = self.transport()
        self.start(second)
        self.connect(1)
        self.assertEqual(first.pool.idle_count(ADDR), 0)
        self.assertTrue(wire.disconnecting)

    def test_nul_in_path_is_400(self) -> None:
        """A NUL byte in the path is refused with 400 before anything is dialled."""
        fcgi = self.transport()
        _, _, _, failures = self.start(fcgi, target=b"/a.php%00.txt")
        self.assertEqual(getattr(failures[0].value, "status", None), 400)
        self.assertEqual(self.reactor.tcpClients, [])
