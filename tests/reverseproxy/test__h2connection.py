"""The h2c upstream client: streams on one connection, flow control both ways, trailers,
resets, REFUSED_STREAM and GOAWAY, against a server-side ``h2`` state machine."""

from __future__ import annotations

from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived, RequestReceived, StreamEnded, StreamReset, TrailersReceived
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.reverseproxy import _h2client
from txcaddy.reverseproxy._dial import UpstreamAddress
from txcaddy.reverseproxy._exchange import ResponseBodyConsumer
from txcaddy.reverseproxy._h2connection import H2Pool, HTTP2Connection, StreamRefused
from txcaddy.reverseproxy.errors import (
    DialError,
    ResponseHeaderTimeout,
    UpstreamConnectionLost,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamWriteTimeout,
)

ADDR = UpstreamAddress.parse("127.0.0.1:9000")
HEADERS = [(b"Host", b"example.com"), (b"User-Agent", b"t"), (b"Connection", b"keep-alive"),
           (b"Te", b"trailers"), (b"X-Mixed-Case", b"v")]


class Peer:
    """The upstream: a server-side h2 connection wired to one client connection."""

    def __init__(self, conn: HTTP2Connection, max_streams: int | None) -> None:
        self.conn = conn
        self.server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.server.initiate_connection()
        if max_streams is not None:
            self.server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
        self.events: list[Any] = []

    def pump(self) -> list[Any]:
        """Exchange bytes both ways until quiet; return the server's new events."""
        new: list[Any] = []
        while True:
            transport = self.conn.transport
            data = transport.value()
            transport.clear()
            if data:
                new += self.server.receive_data(data)
            out = self.server.data_to_send()
            if out:
                self.conn.dataReceived(out)
            if not data and not out:
                break
        self.events += new
        return new

    def requests(self) -> dict[int, dict[bytes, bytes]]:
        return {e.stream_id: dict(e.headers) for e in self.events if isinstance(e, RequestReceived)}

    def respond(self, sid: int, body: bytes = b"", trailers: Any = None, status: bytes = b"200",
                end: bool = True) -> None:
        self.server.send_headers(sid, [(b":status", status), (b"content-type", b"text/plain")])
        if body:
            self.server.send_data(sid, body)
        if trailers:
            self.server.send_headers(sid, trailers, end_stream=True)
        elif end:
            self.server.end_stream(sid)
        self.pump()


class Endpoint:
    def __init__(self, case: H2TestCase) -> None:
        self.case = case

    def connect(self, factory: Any) -> Any:
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport())
        self.case.peers.append(Peer(proto, self.case.max_streams))
        return succeed(proto)


class Consumer(ResponseBodyConsumer):
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.trailers: Any = None
        self.reason: Any = "unfinished"

    def body_data(self, data: bytes) -> None:
        self.data.append(data)

    def body_trailers(self, trailers: Any) -> None:
        self.trailers = trailers

    def body_finished(self, reason: Failure | None) -> None:
        self.reason = reason


class Producer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


class H2TestCase(SynchronousTestCase):
    max_streams: int | None = None

    def setUp(self) -> None:
        self.clock = Clock()
        self.peers: list[Peer] = []
        self.pool = H2Pool(self.clock, dial_timeout=None, endpoint_factory=lambda a: Endpoint(self))

    def request(self, method: bytes = b"GET", body_length: int | None = None) -> Any:
        exchange = self.pool.request(ADDR, method, b"/x?y=1", list(HEADERS), body_length)
        heads: list[Any] = []
        exchange.when_head(heads.append, heads.append)
        consumer = Consumer()
        exchange.when_head(lambda head: exchange.deliver_body(consumer), lambda f: None)
        return exchange, heads, consumer


class ExchangeTests(H2TestCase):
    def test_get(self) -> None:
        """A GET becomes HEADERS with pseudo-fields and clean fields; the response reaches the consumer."""
        exchange, heads, consumer = self.request()
        (peer,) = self.peers
        peer.pump()
        (sid, fields), = peer.requests().items()
        self.assertEqual((fields[b":method"], fields[b":scheme"], fields[b":authority"], fields[b":path"]),
                         (b"GET", b"http", b"example.com", b"/x?y=1"))
        self.assertEqual(fields[b"te"], b"trailers")
        self.assertEqual(fields[b"x-mixed-case"], b"v")
        self.assertNotIn(b"connection", fields)
        self.assertNotIn(b"host", fields)
        self.assertTrue(any(isinstance(e, StreamEnded) and e.stream_id == sid for e in peer.events))
        peer.respond(sid, b"hello")
        self.assertEqual((heads[0].status, heads[0].get(b"content-type")), (200, b"text/plain"))
        self.assertEqual((b"".join(consumer.data), consumer.reason), (b"hello", None))
        self.assertEqual((self.pool.idle_count(ADDR), self.pool.open_count(ADDR)), (1, 1))

    def test_trailers_only_response_has_an_empty_length(self) -> None:
        """HEADERS with END_STREAM (gRPC's Trailers-Only) is a known empty body (content-length 0),
        as Go's client reports it, with grpc-status among the head fields."""
        _, heads, consumer = self.request()
        (peer,) = self.peers
        peer.pump()
        peer.server.send_headers(1, [(b":status", b"200"), (b"grpc-status", b"7")], end_stream=True)
        peer.pump()
        self.assertEqual((heads[0].get(b"grpc-status"), heads[0].get(b"content-length")), (b"7", b"0"))
        self.assertEqual((b"".join(consumer.data), consumer.reason), (b"", None))

    def test_idle_connection_is_reused(self) -> None:
        """A second request after the first ended goes on the same connection's next stream."""
        _, _, first = self.request()
        (peer,) = self.peers
        peer.pump()
        peer.respond(1, b"a")
        _, _, second = self.request()
        peer.pump()
        peer.respond(3, b"b")
        self.assertEqual((len(self.peers), b"".join(second.data)), (1, b"b"))

    def test_post_larger_than_window(self) -> None:
        """A body beyond the upstream's 65,535-byte window waits (producer paused) for WINDOW_UPDATE."""
        body = b"x" * 200_000
        exchange, heads, consumer = self.request(b"POST", len(body))
        producer = Producer()
        exchange.registerProducer(producer, True)
        (peer,) = self.peers
        exchange.write(body)
        peer.pump()
        received = sum(len(e.data) for e in peer.events if isinstance(e, DataReceived))
        self.assertEqual(received, 65535)
        self.assertEqual(producer.calls[-1], "pause")
        self.assertEqual(peer.requests()[1][b"content-length"], b"200000")
        while received < len(body):
            for e in [e for e in peer.events if isinstance(e, DataReceived)]:
                peer.server.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            peer.events = []
            peer.pump()
            got = sum(len(e.data) for e in peer.events if isinstance(e, DataReceived))
            self.assertGreater(got, 0)
            received += got
        self.assertEqual(received, len(body))
        self.assertTrue(any(isinstance(e, StreamEnded) for e in peer.events))
        self.assertEqual(producer.calls[-1], "resume")

    def test_request_trailers(self) -> None:
        """A chunked body's trailers go out as a final HEADERS frame."""
        exchange, _, _ = self.request(b"POST", -1)
        (peer,) = self.peers
        exchange.write(b"abc")
        exchange.finish_body([(b"Grpc-Thing", b"1")])
        peer.pump()
        (trailers,) = [e for e in peer.events if isinstance(e, TrailersReceived)]
        self.assertEqual(trailers.headers, [(b"grpc-thing", b"1")])
        self.assertNotIn(b"content-length", peer.requests()[1])

    def test_response_trailers(self) -> None:
        """Response trailers (gRPC's status) reach the consumer before the end."""
        _, _, consumer = self.request(b"POST")
        (peer,) = self.peers
        peer.pump()
        peer.respond(1, b"\0\0\0\0\0", trailers=[(b"grpc-status", b"0"), (b"grpc-message", b"ok")])
        self.assertEqual(consumer.trailers, [(b"grpc-status", b"0"), (b"grpc-message", b"ok")])
        self.assertIsNone(consumer.reason)

    def test_pause_withholds_acknowledgement(self) -> None:
        """While the exchange is paused, data is kept and not acknowledged; resuming does both."""
        exchange, _, consumer = self.request()
        (peer,) = self.peers
        peer.pump()
        peer.respond(1, end=False)
        exchange.pauseProducing()
        window = peer.server.local_flow_control_window(1)
        for _ in range(40):  # more than half the stream window: h2 then sends WINDOW_UPDATE
            peer.server.send_data(1, b"y" * 16000)
        peer.pump()
        self.assertEqual((consumer.data, peer.server.local_flow_control_window(1)),
                         ([], window - 640_000))
        exchange.resumeProducing()
        peer.pump()
        self.assertEqual((len(b"".join(consumer.data)), peer.server.local_flow_control_window(1)),
                         (640_000, window))

    def test_abort_resets_stream(self) -> None:
        """Aborting (the client went away) sends RST_STREAM CANCEL; the connection stays usable."""
        exchange, heads, _ = self.request()
        (peer,) = self.peers
        peer.pump()
        exchange.abort()
        peer.pump()
        (reset,) = [e for e in peer.events if isinstance(e, StreamReset)]
        self.assertEqual(reset.error_code, ErrorCodes.CANCEL)
        self.assertEqual(self.pool.idle_count(ADDR), 1)

    def test_upstream_reset_after_head(self) -> None:
        """RST_STREAM after the head cuts the body off: the consumer gets a failure."""
        _, _, consumer = self.request()
        (peer,) = self.peers
        peer.pump()
        peer.respond(1, b"part", end=False)
        peer.server.reset_stream(1, ErrorCodes.INTERNAL_ERROR)
        peer.pump()
        self.assertEqual(b"".join(consumer.data), b"part")
        self.assertIsInstance(consumer.reason.value, UpstreamConnectionLost)
        self.assertIn("INTERNAL_ERROR", str(consumer.reason.value))

    def test_refused_stream_is_sent_again_once(self) -> None:
        """A refused bodyless stream is sent again once (as Go); refused twice it fails with
        StreamRefused, a DialError (nothing was processed)."""
        _, heads, _ = self.request()
        (peer,) = self.peers
        peer.pump()
        peer.server.reset_stream(1, ErrorCodes.REFUSED_STREAM)
        peer.pump()
        self.assertEqual(heads, [])
        self.assertEqual(sorted(peer.requests()), [1, 3])
        peer.server.reset_stream(3, ErrorCodes.REFUSED_STREAM)
        peer.pump()
        self.assertIsInstance(heads[0].value, StreamRefused)
        self.assertIsInstance(heads[0].value, DialError)

    def test_refused_stream_with_a_body_fails(self) -> None:
        """A refused stream with a request body is not sent again: StreamRefused."""
        exchange, heads, _ = self.request(b"POST", 2)
        exchange.write(b"ab")
        (peer,) = self.peers
        peer.pump()
        peer.server.reset_stream(1, ErrorCodes.REFUSED_STREAM)
        peer.pump()
        self.assertIsInstance(heads[0].value, StreamRefused)
        self.assertEqual(sorted(peer.requests()), [1])

    def test_connection_lost_fails_streams(self) -> None:
        """Losing the connection fails every open stream and frees the pool's slot."""
        _, first, _ = self.request()
        _, second, _ = self.request()
        (peer,) = self.peers
        peer.conn.connectionLost(Failure(Exception("gone")))
        self.assertIsInstance(first[0].value, UpstreamConnectionLost)
        self.assertIsInstance(second[0].value, UpstreamConnectionLost)
        self.assertEqual(self.pool.open_count(ADDR), 0)


class MultiplexingTests(H2TestCase):
    max_streams: int | None = 2

    def test_streams_up_to_the_limit_then_a_new_connection(self) -> None:
        """Requests share a connection up to MAX_CONCURRENT_STREAMS; the next one dials another."""
        self.request()
        (peer,) = self.peers
        peer.pump()  # the server's SETTINGS (2 streams) arrive
        self.request()
        self.assertEqual(len(self.peers), 1)
        self.request()
        self.assertEqual(len(self.peers), 2)
        peer.pump()
        self.assertEqual(sorted(peer.requests()), [1, 3])
        self.assertEqual(self.pool.open_count(ADDR), 2)

    def test_ended_streams_leave_h2s_table(self) -> None:
        """A stream that ended both ways is dropped from h2's streams at once (no sweep needed)."""
        self.request()
        self.request()
        (peer,) = self.peers
        peer.pump()
        peer.respond(1, b"ok")
        self.assertEqual(sorted(peer.conn.h2.streams), [3])
        peer.respond(3, b"ok")
        self.assertEqual(peer.conn.h2.streams, {})

    def test_frames_on_a_reset_stream_keep_the_connection(self) -> None:
        """DATA arriving on a stream we reset is answered with RST_STREAM; others go on."""
        first, _, _ = self.request()
        (peer,) = self.peers
        peer.pump()
        peer.server.send_headers(1, [(b":status", b"200")])
        first.abort()  # our RST_STREAM crosses the upstream's response
        peer.server.send_data(1, b"late")
        peer.conn.dataReceived(peer.server.data_to_send())
        _, heads, consumer = self.request()
        peer.pump()
        resets = [e.stream_id for e in peer.events if isinstance(e, StreamReset)]
        self.assertEqual(resets[:1], [1])
        peer.respond(3, b"ok")
        self.assertEqual((heads[0].status, b"".join(consumer.data)), (200, b"ok"))

    def test_five_requests_three_connections(self) -> None:
        """Five concurrent requests to an upstream allowing 2 streams: three connections, all
        answered (Go's client: a new connection when none can take a stream)."""
        results = []
        for _ in range(5):
            results.append(self.request())
            for peer in list(self.peers):
                peer.pump()  # each new connection's SETTINGS (2 streams) arrive
        self.assertEqual(len(self.peers), 3)
        self.assertEqual([sorted(p.requests()) for p in self.peers], [[1, 3], [1, 3], [1]])
        for peer in self.peers:
            for sid in peer.requests():
                peer.respond(sid, b"ok")
        self.assertEqual([(b"".join(c.data), c.reason) for _, _, c in results], [(b"ok", None)] * 5)
        self.assertEqual(self.pool.open_count(ADDR), 3)

    def test_streams_beyond_unseen_settings_are_sent_again(self) -> None:
        """Streams opened before the upstream's SETTINGS and refused by it go to a new connection."""
        self.max_streams = None  # the peer's SETTINGS come later, by hand
        for _ in range(3):
            self.request()
        (peer,) = self.peers
        peer.pump()
        self.assertEqual(sorted(peer.requests()), [1, 3, 5])
        self.max_streams = 2
        peer.server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 2})
        peer.server.reset_stream(5, ErrorCodes.REFUSED_STREAM)
        peer.pump()
        self.assertEqual(len(self.peers), 2)
        self.peers[1].pump()
        self.assertEqual(sorted(self.peers[1].requests()), [1])

    def test_free_slot_is_offered_again(self) -> None:
        """When a stream ends on a full connection, the next request uses it instead of dialing."""
        self.request()
        (peer,) = self.peers
        peer.pump()
        self.request()
        peer.pump()
        peer.respond(1, b"done")
        self.request()
        peer.pump()
        self.assertEqual((len(self.peers), sorted(peer.requests())), (1, [1, 3, 5]))

    def test_waiters_get_streams(self) -> None:
        """With max_conns_per_host 1, requests beyond the stream limit wait for a free stream."""
        self.pool.max_conns_per_host = 1
        self.request()
        (peer,) = self.peers
        peer.pump()
        self.request()
        _, third, _ = self.request()
        self.assertEqual((len(self.peers), third), (1, []))
        peer.pump()
        peer.respond(1)
        peer.pump()
        self.assertEqual(sorted(peer.requests()), [1, 3, 5])

    def test_goaway(self) -> None:
        """GOAWAY: streams above its last id fail retryably (a bodyless one is sent again on a
        new connection), older ones finish, then it closes."""
        _, first, consumer = self.request()
        (peer,) = self.peers
        peer.pump()
        second_exchange, second, _ = self.request(b"POST", 1)
        second_exchange.write(b"x")
        _, third, _ = self.request()
        peer.pump()
        peer.respond(1, end=False)
        peer.server.close_connection(last_stream_id=1)
        peer.pump()
        self.assertIsInstance(second[0].value, StreamRefused)
        self.assertEqual((third, len(self.peers)), ([], 2))  # the GET went to a new connection
        self.assertFalse(peer.conn.transport.disconnecting)
        self.request()
        self.assertEqual(len(self.peers), 2)
        # The server's h2 refuses to send after its GOAWAY; a real server finishes stream 1.
        peer.conn.dataReceived(DataFrame(1, data=b"ok", flags=["END_STREAM"]).serialize())
        self.assertEqual((b"".join(consumer.data), consumer.reason), (b"ok", None))
        self.assertTrue(peer.conn.transport.disconnecting)
        self.assertEqual(self.pool.open_count(ADDR), 1)


class NeverConnects:
    """An endpoint whose connect never completes (cancelled by the dial timeout)."""

    def connect(self, factory: Any) -> Any:
        return Deferred(lambda d: d.errback(CancelledError()))


class CheckedResponseTests(H2TestCase):
    """Response fields are checked by our one pass (h2's inbound validation is off)."""

    def _answer(self, fields: list[tuple[bytes, bytes]], trailers: Any = None) -> list[Any]:
        _, heads, consumer = self.request()
        (peer,) = self.peers
        peer.pump()
        peer.server.config.validate_outbound_headers = False  # the upstream misbehaves
        peer.server.config.normalize_outbound_headers = False
        peer.server.send_headers(1, fields, end_stream=trailers is None)
        peer.pump()
        if trailers is not None:
            peer.server.send_headers(1, trailers, end_stream=True)
            peer.pump()
        return [heads, consumer]

    def test_upper_case_field_name_is_a_protocol_error(self) -> None:
        """A response field name with upper case fails the exchange as a protocol error."""
        heads, _ = self._answer([(b":status", b"200"), (b"X-Bad", b"1")])
        self.assertIsInstance(heads[0].value, UpstreamProtocolError)

    def test_missing_status_is_a_protocol_error(self) -> None:
        """A response head without :status fails the exchange."""
        heads, _ = self._answer([(b"content-type", b"text/plain")])
        self.assertIsInstance(heads[0].value, UpstreamProtocolError)

    def test_value_with_newline_is_a_protocol_error(self) -> None:
        """A field value with CR or LF fails the exchange."""
        heads, _ = self._answer([(b":status", b"200"), (b"x", b"a\r\nb: c")])
        self.assertIsInstance(heads[0].value, UpstreamProtocolError)

    def test_pseudo_field_in_trailers_fails_the_body(self) -> None:
        """Trailers carrying a pseudo-field end the body with a protocol error."""
        heads, consumer = self._answer([(b":status", b"200")], [(b":status", b"200")])
        self.assertEqual(heads[0].status, 200)
        self.assertIsInstance(consumer.reason.value, UpstreamProtocolError)

    def test_well_formed_response_passes(self) -> None:
        """A well-formed head and trailers reach the consumer unchanged."""
        heads, consumer = self._answer([(b":status", b"200"), (b"x-a", b"")],
                                       [(b"grpc-status", b"0")])
        self.assertEqual((heads[0].status, heads[0].headers), (200, [(b"x-a", b"")]))
        self.assertEqual((consumer.trailers, consumer.reason), ([(b"grpc-status", b"0")], None))

    def test_huffman_strings_remembered_per_connection(self) -> None:
        """Huffman-coded response strings decode the same from the connection's bounded cache."""
        self.patch(_h2client, "HUFFMAN_CACHE_SIZE", 2)
        fields = [(b":status", b"200"), (b"x-a", b"application/grpc"), (b"x-b", b"nginx/1.22.1")]
        for sid in (1, 3):
            _, heads, _ = self.request()
            (peer,) = self.peers
            peer.pump()
            peer.server.encoder.header_table.maxsize = 0  # literals every time, as nginx sends
            peer.server.send_headers(sid, fields, end_stream=True)
            peer.pump()
            self.assertEqual(heads[0].headers, [(b"x-a", b"application/grpc"),
                                                (b"x-b", b"nginx/1.22.1"),
                                                (b"content-length", b"0")])
        cache = peer.conn.h2.huffman_cache
        self.assertTrue(0 < len(cache) <= 2)
        self.assertIsNone(_h2client._huffman_cache)

    def test_credentials_are_never_indexed(self) -> None:
        """Authorization and short cookies are not put in the HPACK table (as h2 did)."""
        self.pool.request(ADDR, b"GET", b"/", [(b"Authorization", b"Basic eDp5"),
                                              (b"Cookie", b"a=b"), (b"X-Other", b"v")], None)
        (peer,) = self.peers
        peer.pump()
        names = [name for name, _ in peer.conn.h2.encoder.header_table.dynamic_entries]
        self.assertIn(b"x-other", names)
        self.assertNotIn(b"authorization", names)
        self.assertNotIn(b"cookie", names)
        self.assertEqual(peer.requests()[1][b"authorization"], b"Basic eDp5")


class LaterEndpoint:
    """Connects when the test says so (``finish``), or fails (``fail``)."""

    def __init__(self, case: H2TestCase) -> None:
        self.case = case
        self.dials: list[tuple[Any, Deferred[Any]]] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.dials.append((factory, d))
        return d

    def finish(self, index: int) -> None:
        factory, d = self.dials[index]
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport())
        self.case.peers.append(Peer(proto, self.case.max_streams))
        d.callback(proto)


class DialSharingTests(H2TestCase):
    """Requests that find no connection wait for the one being dialled (Go's http2 pool)."""

    def setUp(self) -> None:
        super().setUp()
        self.endpoint = LaterEndpoint(self)
        self.pool = H2Pool(self.clock, dial_timeout=None, endpoint_factory=lambda a: self.endpoint)

    def test_requests_ride_one_dial(self) -> None:
        """Three requests made while one dial is under way: one connection, three streams."""
        results = [self.request() for _ in range(3)]
        self.assertEqual(len(self.endpoint.dials), 1)
        self.endpoint.finish(0)
        (peer,) = self.peers
        peer.pump()
        self.assertEqual(sorted(peer.requests()), [1, 3, 5])
        for sid in peer.requests():
            peer.respond(sid, b"ok")
        self.assertEqual([(b"".join(c.data), c.reason) for _, _, c in results], [(b"ok", None)] * 3)
        self.assertEqual(self.pool.open_count(ADDR), 1)

    def test_riders_beyond_the_assumed_streams_dial_again(self) -> None:
        """A dial takes as many riders as the streams assumed before SETTINGS; the next dials."""
        self.pool.dial_riders = 1
        for _ in range(3):
            self.request()
        self.assertEqual(len(self.endpoint.dials), 2)

    def test_failed_dial_fails_its_riders(self) -> None:
        """A dial that fails fails every request waiting for it with the same DialError."""
        results = [self.request() for _ in range(2)]
        self.endpoint.dials[0][1].errback(Failure(ConnectionDone("refused")))
        for _, heads, _ in results:
            self.assertIsInstance(heads[0].value, DialError)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_cancelled_rider_is_not_sent(self) -> None:
        """A request cancelled while it waited for the dial never opens a stream."""
        first = self.request()
        second, heads, _ = self.request()
        second.abort()
        self.endpoint.finish(0)
        (peer,) = self.peers
        peer.pump()
        self.assertEqual(sorted(peer.requests()), [1])
        self.assertIsInstance(heads[0].value, CancelledError)
        self.assertIs(first[0].finished, False)


class TimeoutTests(H2TestCase):
    """The transport's timeouts on h2 connections, driven by a Clock."""

    def test_dial_timeout(self) -> None:
        """``dial_timeout`` fails a dial that does not complete with a DialError."""
        self.pool = H2Pool(self.clock, dial_timeout=3, endpoint_factory=lambda a: NeverConnects())
        _, heads, _ = self.request()
        self.clock.advance(2.9)
        self.assertEqual(heads, [])
        self.clock.advance(0.1)
        self.assertIsInstance(heads[0].value, DialError)
        self.assertIn("i/o timeout", str(heads[0].value))

    def test_response_header_timeout(self) -> None:
        """``response_header_timeout`` after the request was sent: 504 error, stream cancelled."""
        self.pool.response_header_timeout = 2
        _, heads, _ = self.request()
        (peer,) = self.peers
        peer.pump()
        self.clock.advance(1.9)
        self.assertEqual(heads, [])
        self.clock.advance(0.1)
        self.assertIsInstance(heads[0].value, ResponseHeaderTimeout)
        peer.pump()
        resets = [e for e in peer.events if isinstance(e, StreamReset)]
        self.assertEqual([(e.stream_id, e.error_code) for e in resets], [(1, ErrorCodes.CANCEL)])

    def test_read_timeout_fails_a_silent_connection(self) -> None:
        """``read_timeout``: every read restarts it; silence that long fails the streams."""
        self.pool.read_timeout = 5
        _, heads, consumer = self.request()
        (peer,) = self.peers
        peer.pump()
        self.clock.advance(4)
        peer.respond(1, b"part", end=False)
        self.clock.advance(4)
        self.assertEqual(consumer.reason, "unfinished")
        self.clock.advance(1)
        self.assertIsInstance(consumer.reason.value, UpstreamReadTimeout)
        self.assertTrue(peer.conn.transport.disconnecting)

    def test_read_timeout_drops_an_idle_connection(self) -> None:
        """``read_timeout`` also ends an idle connection (Go's read loop never stops reading)."""
        self.pool.read_timeout = 5
        self.request()
        (peer,) = self.peers
        peer.pump()
        peer.respond(1, b"ok")
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.clock.advance(4.9)
        self.assertFalse(peer.conn.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(peer.conn.transport.disconnecting)
        peer.conn.connectionLost(Failure(ConnectionDone()))  # the StringTransport does not
        self.assertEqual((self.pool.idle_count(ADDR), self.pool.open_count(ADDR)), (0, 0))

    def test_write_timeout(self) -> None:
        """``write_timeout`` runs while the transport refuses bytes, stops when it takes them."""
        self.pool.write_timeout = 3
        _, heads, _ = self.request(b"POST", 10)
        (peer,) = self.peers
        conn = peer.conn
        self.assertIs(conn.transport.producer, conn)
        conn.pauseProducing()
        self.clock.advance(2)
        conn.resumeProducing()
        self.clock.advance(2)
        self.assertEqual(heads, [])
        conn.pauseProducing()
        self.clock.advance(3)
        self.assertIsInstance(heads[0].value, UpstreamWriteTimeout)

    def test_idle_timeout(self) -> None:
        """The keep-alive ``idle_timeout`` closes an h2 connection idle that long (GOAWAY)."""
        self.pool.idle_timeout = 10
        self.request()
        (peer,) = self.peers
        peer.pump()
        peer.respond(1, b"ok")
        self.clock.advance(9)
        self.assertFalse(peer.conn.transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(peer.conn.transport.disconnecting)
        self.assertEqual(self.pool.open_count(ADDR), 0)
