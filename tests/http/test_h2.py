"""The HTTP/2 protocol driven by an ``h2`` client over a StringTransport."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from txcaddy.http._h1 import HTTP11Protocol
from txcaddy.http._h2 import PREFACE, HTTP2Protocol
from txcaddy.http._httpfactory import HTTPFactory
from txcaddy.http.handlers.static import load_static_response
from txcaddy.http.headers import Headers
from txcaddy.http.routing import MatcherSet, Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.interfaces import IHandler, IRequestMatcher


@implementer(IRequestMatcher)
class PathPrefix:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def match(self, request: Any) -> bool:
        return request.path.startswith(self.prefix)


@implementer(IHandler)
class Echo:
    """Answers with the method and the whole request body, and the request's trailers as its own."""

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        chunks: list[bytes] = []

        class Consumer:
            def body_data(self, data: bytes) -> None:
                chunks.append(data)

            def body_trailers(self, trailers: Any) -> None:
                pass

            def body_finished(self, error: Any) -> None:
                if request.trailers is not None:
                    response.add_trailers(Headers([("X-Got", v) for v in request.trailers.get_all("x-check")]))
                response.write(request.method.encode() + b" " + b"".join(chunks))
                done.callback(None)

        request.body.deliver(Consumer())
        return done


@implementer(IHandler)
class Held:
    """Keeps the response (and leaves the body unread) until the test releases it."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, Any, Deferred[None]]] = []

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append((request, response, d))
        return d

    def release(self, body: bytes = b"held") -> None:
        _, response, d = self.pending.pop(0)
        response.write(body)
        d.callback(None)


@implementer(IHandler)
class Big:
    """Writes a large body in one piece, with a trailer."""

    size = 200_000

    def serve(self, request: Any, response: Any, next: Any) -> None:
        response.headers.set("Connection", "keep-alive")  # connection-specific: never sent on h2
        response.write(b"x" * self.size)
        response.add_trailers(Headers([("Grpc-Status", "0")]))


@implementer(IHandler)
class Streamer:
    """Streams a long body through a push producer, writing while it is not paused."""

    chunk = 16 * 1024
    total = 10 * 1024 * 1024

    def __init__(self) -> None:
        self.written = 0
        self.paused = False
        self.pauses = 0
        self.stopped = False

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        self.response = response
        self.done: Deferred[None] = Deferred()
        response.register_producer(self, True)
        self.resumeProducing()
        return self.done

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and not self.stopped and self.written < self.total:
            self.written += self.chunk
            self.response.write(b"s" * self.chunk)

    def stopProducing(self) -> None:
        self.stopped = True
        self.done.callback(None)


class Client:
    """An ``h2`` client connection wired to a server protocol on a StringTransport."""

    def __init__(self, protocol: Any, transport: StringTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.events: list[Any] = []

    def pump(self) -> list[Any]:
        """Move bytes both ways until neither side has more; return the new client events."""
        new: list[Any] = []
        while True:
            out = self.conn.data_to_send()
            if out:
                self.protocol.dataReceived(out)
            back = self.transport.value()
            self.transport.clear()
            if back:
                new.extend(self.conn.receive_data(back))
            if not out and not back:
                break
        self.events.extend(new)
        return new

    def request(self, method: str, path: str, body: bytes = b"", end: bool = True, extra: list[Any] | None = None) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "https"), (":authority", "example.com"), (":path", path)]
        headers += extra or []
        self.conn.send_headers(sid, headers, end_stream=end and not body)
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        return sid

    def response(self, sid: int) -> tuple[dict[bytes, bytes], bytes, dict[bytes, bytes] | None, bool]:
        """Head fields, body, trailers, and whether the stream ended, as the client saw them."""
        head: dict[bytes, bytes] = {}
        body = b""
        trailers = None
        ended = False
        for event in self.events:
            if getattr(event, "stream_id", None) != sid:
                continue
            if isinstance(event, h2.events.ResponseReceived):
                head = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, sid)
            elif isinstance(event, h2.events.TrailersReceived):
                trailers = dict(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        return head, body, trailers, ended


class HTTP2Tests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.held = Held()
        respond = load_static_response({"body": "{http.request.proto} {http.request.host} {http.request.uri}",
                                        "headers": {"X-Test": ["yes"]}}, None)
        routes = RouteList([
            Route([Echo()], [MatcherSet([PathPrefix("/echo")])], terminal=True),
            Route([self.held], [MatcherSet([PathPrefix("/held")])], terminal=True),
            Route([Big()], [MatcherSet([PathPrefix("/big")])], terminal=True),
            Route([respond]),
        ])
        self.server = HTTPServer("srv0", [":443"], routes, reactor=self.clock)
        self.protocol = HTTP2Protocol(self.server, self.clock)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.client = Client(self.protocol, self.transport)
        self.client.pump()

    def test_settings_are_gos(self) -> None:
        """The server advertises Go's SETTINGS and opens the connection window to 1 MiB."""
        remote = self.client.conn.remote_settings
        self.assertEqual(remote.max_concurrent_streams, 250)
        self.assertEqual(remote.initial_window_size, 1 << 20)
        self.assertEqual(remote.max_frame_size, 1 << 20)
        self.assertEqual(remote.max_header_list_size, 1048896)
        self.assertEqual(self.client.conn.outbound_flow_control_window, 1 << 20)

    def test_get_routed_through_the_server(self) -> None:
        """A GET goes through the server's routes: status, fields and the proto placeholder."""
        sid = self.client.request("GET", "/a?b=1")
        self.client.pump()
        head, body, trailers, ended = self.client.response(sid)
        self.assertEqual(head[b":status"], b"200")
        self.assertEqual(head[b"server"], b"Caddy")
        self.assertEqual(head[b"x-test"], b"yes")
        self.assertTrue(head[b"date"].endswith(b" GMT"))  # Go dates every response
        self.assertEqual(head[b"content-length"], str(len(body)).encode())
        self.assertEqual(body, b"HTTP/2.0 example.com /a?b=1")
        self.assertIsNone(trailers)
        self.assertTrue(ended)
        self.assertTrue(self.protocol.idle)

    def test_post_body_reaches_the_handler(self) -> None:
        """A POST body arrives through the request body's consumer."""
        sid = self.client.request("POST", "/echo", b"hello " * 1000)
        self.client.pump()
        _, body, _, ended = self.client.response(sid)
        self.assertEqual(body, b"POST " + b"hello " * 1000)
        self.assertTrue(ended)

    def test_trailers_both_ways(self) -> None:
        """Request trailers reach the handler; response trailers follow the body in a HEADERS frame."""
        sid = self.client.request("POST", "/echo", b"data", end=False)
        self.client.conn.send_headers(sid, [("x-check", "42")], end_stream=True)
        self.client.pump()
        head, body, trailers, ended = self.client.response(sid)
        self.assertEqual(body, b"POST data")
        self.assertEqual(head[b":status"], b"200")
        self.assertEqual(trailers, {b"x-got": b"42"})
        self.assertTrue(ended)

    def test_head_sends_no_body(self) -> None:
        """HEAD gets the head (with the length the body would have) and no DATA."""
        sid = self.client.request("HEAD", "/a")
        self.client.pump()
        head, body, _, ended = self.client.response(sid)
        self.assertEqual(head[b":status"], b"200")
        self.assertEqual(head[b"content-length"], b"23")
        self.assertEqual(body, b"")
        self.assertTrue(ended)
        self.assertFalse(any(isinstance(e, h2.events.DataReceived) for e in self.client.events))

    def test_many_concurrent_streams(self) -> None:
        """Many streams opened together are all answered, each with its own body."""
        sids = [self.client.request("GET", f"/n{i}") for i in range(100)]
        self.client.pump()
        for i, sid in enumerate(sids):
            _, body, _, ended = self.client.response(sid)
            self.assertEqual(body, f"HTTP/2.0 example.com /n{i}".encode())
            self.assertTrue(ended)
        self.assertEqual(self.server.connections, {self.protocol})

    def test_response_waits_for_window_update(self) -> None:
        """A body larger than the client's window stops at the window and resumes on WINDOW_UPDATE."""
        sid = self.client.request("GET", "/big")
        self.client.pump()
        received = sum(len(e.data) for e in self.client.events if isinstance(e, h2.events.DataReceived))
        self.assertEqual(received, 65535)
        self.assertFalse(any(isinstance(e, h2.events.StreamEnded) for e in self.client.events))
        for _ in range(10):
            self.client.response(sid)  # acknowledges what arrived: WINDOW_UPDATEs
            self.client.events = [e for e in self.client.events if not isinstance(e, h2.events.DataReceived)]
            new = self.client.pump()
            received += sum(len(e.data) for e in new if isinstance(e, h2.events.DataReceived))
            if any(isinstance(e, h2.events.StreamEnded) for e in new):
                break
        self.assertEqual(received, Big.size)
        self.assertTrue(any(isinstance(e, h2.events.StreamEnded) for e in self.client.events))
        trailers = [e for e in self.client.events if isinstance(e, h2.events.TrailersReceived)]
        self.assertEqual(dict(trailers[0].headers), {b"grpc-status": b"0"})
        head = next(e for e in self.client.events if isinstance(e, h2.events.ResponseReceived))
        self.assertNotIn(b"connection", dict(head.headers))

    def test_request_body_window_opens_only_as_consumed(self) -> None:
        """Unread request body keeps the client's window closed; taking it reopens the window."""
        size = 700_000
        sid = self.client.request("POST", "/held", b"y" * size, end=False)
        self.client.pump()
        self.assertEqual(self.client.conn.local_flow_control_window(sid), (1 << 20) - size)
        request, _, _ = self.held.pending[0]
        taken: list[bytes] = []

        class Taker:
            def body_data(self, data: bytes) -> None:
                taken.append(data)

            def body_trailers(self, trailers: Any) -> None:
                pass

            def body_finished(self, reason: Any) -> None:
                pass

        request.body.deliver(Taker())
        self.client.pump()
        self.assertEqual(len(b"".join(taken)), size)
        self.assertEqual(self.client.conn.local_flow_control_window(sid), 1 << 20)

    def test_data_on_a_reset_stream_returns_the_connection_window(self) -> None:
        """A body still arriving after the response (the stream was reset with NO_ERROR) does not
        use up the server's connection window (h2 counts such DATA but reports no event)."""
        sid = self.client.request("POST", "/", b"", end=False)
        self.client.pump()  # answered (the respond route reads no body) and reset
        _, body, _, ended = self.client.response(sid)
        self.assertTrue(body.startswith(b"HTTP/2.0") and ended)
        before = self.protocol.conn.inbound_flow_control_window
        for _ in range(50):  # 800 KiB more, as a peer still uploading would send it
            frame = hyperframe.frame.DataFrame(sid)
            frame.data = b"x" * 16384
            self.protocol.dataReceived(frame.serialize())
        self.assertEqual(self.protocol.conn.inbound_flow_control_window, before)

    def test_goaway_lets_open_streams_finish(self) -> None:
        """close_when_idle sends GOAWAY, the open stream still completes, then the connection closes."""
        sid = self.client.request("GET", "/held")
        self.client.pump()
        self.protocol.close_when_idle()
        new = self.client.pump()
        goaway = [e for e in new if isinstance(e, h2.events.ConnectionTerminated)]
        self.assertEqual(goaway[0].last_stream_id, sid)
        self.assertEqual(goaway[0].error_code, 0)
        self.assertFalse(self.transport.disconnecting)
        self.held.release(b"done")
        back = self.transport.value()
        self.assertIn(b"done", back)
        self.assertTrue(self.transport.disconnecting)

    def test_reload_moves_idle_and_drains_busy_connections(self) -> None:
        """A reload (``HTTPServer.retire``): an idle HTTP/2 connection moves to the new server and
        its next stream sees the new routes; a busy one gets GOAWAY, finishes its stream on the
        old routes, then closes."""
        successor = HTTPServer("srv0", [":443"], RouteList([Route([load_static_response({"body": "new"}, None)])]),
                               reactor=self.clock)
        idle_transport = StringTransport()
        idle = HTTP2Protocol(self.server, self.clock)
        idle.makeConnection(idle_transport)
        idle_client = Client(idle, idle_transport)
        idle_client.pump()
        sid = self.client.request("GET", "/held")
        self.client.pump()
        drained = self.server.retire(successor, 10, self.clock)
        goaway = [e for e in self.client.pump() if isinstance(e, h2.events.ConnectionTerminated)]
        self.assertEqual((goaway[0].last_stream_id, goaway[0].error_code), (sid, 0))
        self.assertNoResult(drained)
        self.held.release(b"old routes")
        self.assertIn(b"old routes", self.transport.value())  # (h2's client reads no more after GOAWAY)
        self.assertTrue(self.transport.disconnecting)
        moved = idle_client.request("GET", "/held")
        idle_client.pump()
        self.assertEqual(idle_client.response(moved)[1], b"new")
        self.assertFalse(idle_transport.disconnecting)

    def test_client_reset_stops_the_response(self) -> None:
        """A stream the client resets is released: the response is lost, nothing more is sent."""
        sid = self.client.request("GET", "/held")
        self.client.pump()
        _, response, _ = self.held.pending[0]
        self.client.conn.reset_stream(sid)
        self.client.pump()
        self.assertIsNotNone(response.lost)
        self.assertTrue(self.protocol.idle)
        self.held.release(b"late")
        self.assertEqual(self.transport.value(), b"")

    def test_expect_continue(self) -> None:
        """Expect: 100-continue gets a 100 informational HEADERS when the handler takes the body."""
        sid = self.client.request("POST", "/echo", end=False, extra=[("expect", "100-continue")])
        new = self.client.pump()
        informational = [e for e in new if isinstance(e, h2.events.InformationalResponseReceived)]
        self.assertEqual(dict(informational[0].headers)[b":status"], b"100")
        self.client.conn.send_data(sid, b"abc", end_stream=True)
        self.client.pump()
        self.assertEqual(self.client.response(sid)[1], b"POST abc")


class SelectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        respond = load_static_response({"body": "{http.request.proto}"}, None)
        self.server = HTTPServer("srv0", [":80"], RouteList([Route([respond])]), reactor=MemoryReactorClock())

    def test_h2c_prior_knowledge(self) -> None:
        """With h2c, a connection opening with the preface (even split) is served as HTTP/2."""
        protocol = HTTPFactory(self.server, h2c=True).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        client.initiate_connection()
        client.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")],
                            end_stream=True)
        data = client.data_to_send()
        self.assertTrue(data.startswith(PREFACE))
        protocol.dataReceived(data[:10])
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(data[10:])
        events = client.receive_data(transport.value())
        bodies = [e.data for e in events if isinstance(e, h2.events.DataReceived)]
        self.assertEqual(bodies, [b"HTTP/2.0"])
        self.assertEqual(len(self.server.connections), 1)
        self.assertIsInstance(next(iter(self.server.connections)), HTTP2Protocol)

    def test_http11_on_an_h2c_listener(self) -> None:
        """An HTTP/1.1 request on an h2c listener is served as HTTP/1.1."""
        protocol = HTTPFactory(self.server, h2c=True).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertTrue(transport.value().endswith(b"HTTP/1.1"))

    def test_preface_without_h2c_is_not_http2(self) -> None:
        """Without h2c the factory builds plain HTTP/1.1 protocols, which refuse the preface."""
        protocol = HTTPFactory(self.server).buildProtocol(None)
        self.assertIsInstance(protocol, HTTP11Protocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(PREFACE)
        self.assertNotIn(b"HTTP/2.0", transport.value())
        self.assertTrue(transport.disconnecting)


class UpgradeTests(SynchronousTestCase):
    """``Upgrade: h2c`` on a cleartext listener, as Go's h2c handler serves it."""

    def setUp(self) -> None:
        respond = load_static_response({"body": "{http.request.proto} {http.request.uri} {http.request.header.upgrade}"},
                                       None)
        self.server = HTTPServer("srv0", [":80"], RouteList([Route([respond])]), reactor=MemoryReactorClock())
        self.transport = StringTransport()
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))

    def upgrade(self, h2c: bool = True, fields: bytes | None = None, request: bytes = b"GET /up?x=1 HTTP/1.1\r\n") -> bytes:
        """Send an upgrade request (the client's own settings unless ``fields``); return what came back."""
        protocol = HTTPFactory(self.server, h2c=h2c).buildProtocol(None)
        protocol.makeConnection(self.transport)
        settings = self.client.initiate_upgrade_connection()
        assert settings is not None
        if fields is None:
            fields = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n"
        self.protocol = protocol
        protocol.dataReceived(request + b"Host: a\r\n" + fields + b"\r\n")
        out = self.transport.value()
        self.transport.clear()
        return out

    def test_upgrade_serves_the_request_as_stream_1(self) -> None:
        """101 with Connection/Upgrade, then HTTP/2: the upgrade request is answered on stream 1, more streams follow."""
        out = self.upgrade()
        head = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        self.assertTrue(out.startswith(head), out[:200])
        events = self.client.receive_data(out[len(head):])
        self.protocol.dataReceived(self.client.data_to_send())  # the preface and SETTINGS, after the 101
        events += self.client.receive_data(self.transport.value())
        self.transport.clear()
        bodies = {e.stream_id: e.data for e in events if isinstance(e, h2.events.DataReceived)}
        self.assertEqual(bodies, {1: b"HTTP/2.0 /up?x=1 "})  # no Upgrade field left on the HTTP/2 request
        self.assertTrue(any(isinstance(e, h2.events.StreamEnded) and e.stream_id == 1 for e in events))
        self.client.send_headers(3, [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/two")],
                                 end_stream=True)
        self.protocol.dataReceived(self.client.data_to_send())
        events = self.client.receive_data(self.transport.value())
        self.assertEqual([e.data for e in events if isinstance(e, h2.events.DataReceived)], [b"HTTP/2.0 /two "])
        self.assertEqual([type(c) for c in self.server.connections], [HTTP2Protocol])

    def test_without_h2c_the_upgrade_is_ignored(self) -> None:
        """A server without h2c in its protocols serves the upgrade request as HTTP/1.1."""
        out = self.upgrade(h2c=False)
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:100])
        self.assertTrue(out.endswith(b"HTTP/1.1 /up?x=1 h2c"))

    def test_malformed_settings_are_ignored(self) -> None:
        """Two HTTP2-Settings fields, bad base64url, or no HTTP2-Settings in Connection: plain HTTP/1.1."""
        for fields in (
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\nHTTP2-Settings: AAMAAABk\r\n",
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: !!!\r\n",
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAA\r\n",  # 4 bytes
            b"Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n",
        ):
            self.setUp()
            out = self.upgrade(fields=fields)
            self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), (fields, out[:100]))
            self.assertTrue(out.endswith(b"HTTP/1.1 /up?x=1 h2c"))

    def test_upgrade_with_a_body_is_served_as_http11(self) -> None:
        """An upgrade request with a body is answered as HTTP/1.1 (ignoring the upgrade is always allowed)."""
        out = self.upgrade(request=b"POST /up?x=1 HTTP/1.1\r\nContent-Length: 0\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 101 "))  # an empty body is no body
        self.setUp()
        out = self.upgrade(request=b"POST /up?x=1 HTTP/1.1\r\nContent-Length: 3\r\n")
        self.protocol.dataReceived(b"abc")
        out += self.transport.value()
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out[:100])
        self.assertTrue(out.endswith(b"HTTP/1.1 /up?x=1 h2c"))

    def test_invalid_settings_values_get_goaway(self) -> None:
        """Well-formed HTTP2-Settings with a value h2 refuses (window over 2^31-1): 101, then GOAWAY PROTOCOL_ERROR."""
        fields = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AASAAAAA\r\n"
        out = self.upgrade(fields=fields)
        head = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        self.assertTrue(out.startswith(head))
        self.assertEqual(last_goaway(out[len(head):]), 1)  # PROTOCOL_ERROR
        self.assertTrue(self.transport.disconnecting)


def last_goaway(data: bytes) -> int | None:
    """The error code of the last GOAWAY frame in what the server wrote, or None."""
    code = None
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = hyperframe.frame.Frame.parse_frame_header(view[:9])
        if isinstance(frame, hyperframe.frame.GoAwayFrame):
            frame.parse_body(view[9:9 + length])
            code = frame.error_code
        view = view[9 + length:]
    return code


def rst_streams(data: bytes) -> dict[int, int]:
    """Stream id → error code of each RST_STREAM frame in what the server wrote."""
    codes = {}
    view = memoryview(data)
    while len(view) >= 9:
        frame, length = hyperframe.frame.Frame.parse_frame_header(view[:9])
        if isinstance(frame, hyperframe.frame.RstStreamFrame):
            frame.parse_body(view[9:9 + length])
            codes[frame.stream_id] = frame.error_code
        view = view[9 + length:]
    return codes


class _TwoClients(SynchronousTestCase):
    """A server with an attacker's and a bystander's HTTP/2 connection."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.held = Held()
        respond = load_static_response({"body": "ok"}, None)
        self.streamer = Streamer()
        routes = RouteList([
            Route([self.held], [MatcherSet([PathPrefix("/held")])], terminal=True),
            Route([self.streamer], [MatcherSet([PathPrefix("/stream")])], terminal=True),
            Route([respond]),
        ])
        self.server = HTTPServer("srv0", [":443"], routes, reactor=self.clock)
        self.attacker = self.connect()
        self.bystander = self.connect()

    def connect(self) -> Client:
        protocol = HTTP2Protocol(self.server, self.clock)
        transport = StringTransport()
        protocol.makeConnection(transport)
        client = Client(protocol, transport)
        client.pump()
        return client

    def goaway(self, client: Client) -> Any:
        """The GOAWAY the client received (after reading what the server wrote), or None."""
        client.pump()
        ended = [e for e in client.events if isinstance(e, h2.events.ConnectionTerminated)]
        return ended[0] if ended else None

    def assertCalmedDown(self, client: Client, code: int = 11) -> None:
        goaway = self.goaway(client)
        self.assertIsNotNone(goaway)
        self.assertEqual(goaway.error_code, code)
        self.assertTrue(client.transport.disconnecting)

    def assertServed(self, client: Client) -> None:
        sid = client.request("GET", "/")
        client.pump()
        head, body, _, ended = client.response(sid)
        self.assertEqual((head[b":status"], body, ended), (b"200", b"ok", True))
        self.assertFalse(client.transport.disconnecting)

    def resets(self, client: Client) -> dict[int, int]:
        """Stream id → error code of each RST_STREAM the client received."""
        client.pump()
        return {e.stream_id: e.error_code for e in client.events if isinstance(e, h2.events.StreamReset)}


class AbuseTests(_TwoClients):
    """Per-connection abuse limits: the attacker gets GOAWAY and is closed, others are still served."""

    def test_rapid_reset(self) -> None:
        """More than 2×MAX_CONCURRENT_STREAMS unfinished streams reset within the window: ENHANCE_YOUR_CALM."""
        for _ in range(2 * 250):
            sid = self.attacker.request("GET", "/held")
            self.attacker.conn.reset_stream(sid)
            self.attacker.pump()
        self.assertIsNone(self.goaway(self.attacker))
        sid = self.attacker.request("GET", "/held")
        self.attacker.conn.reset_stream(sid)
        self.assertCalmedDown(self.attacker)
        self.assertServed(self.bystander)
        self.clock.advance(1)  # the peer did not take the GOAWAY: aborted
        self.assertTrue(self.attacker.transport.disconnected)

    def test_resets_spread_over_time_are_allowed(self) -> None:
        """Resets slower than the limit per window never close the connection."""
        for i in range(1200):
            sid = self.attacker.request("GET", "/held")
            self.attacker.conn.reset_stream(sid)
            self.attacker.pump()
            self.held.release()  # the handler returns after the client went away
            if i % 100 == 99:
                self.clock.advance(3)
        self.assertIsNone(self.goaway(self.attacker))
        self.assertServed(self.attacker)

    def test_completed_requests_do_not_count(self) -> None:
        """Many completed requests never trip the rapid-reset limit."""
        for _ in range(600):
            self.assertServed(self.attacker)
        self.assertIsNone(self.goaway(self.attacker))

    def headers_frame(self, client: Client, sid: int, path: str = "/held") -> bytes:
        """A HEADERS frame the client's own state machine would refuse to send."""
        frame = hyperframe.frame.HeadersFrame(sid)
        frame.data = client.conn.encoder.encode(
            [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", path)])
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        return frame.serialize()

    def test_stream_over_max_concurrent_is_reset(self) -> None:
        """The 251st concurrent stream gets RST_STREAM PROTOCOL_ERROR; the first 250 are still answered."""
        sids = [self.attacker.request("GET", "/held") for _ in range(250)]
        self.attacker.pump()
        self.assertEqual(len(self.held.pending), 250)
        self.attacker.protocol.dataReceived(self.headers_frame(self.attacker, 501))
        self.attacker.conn.highest_outbound_stream_id = 501  # sent behind the client state machine's back
        written = self.attacker.transport.value()
        self.attacker.transport.clear()
        self.assertEqual(last_goaway(written), None)
        self.assertEqual(rst_streams(written), {501: 1})  # PROTOCOL_ERROR, as Go after the SETTINGS ACK
        self.assertEqual(len(self.held.pending), 250)
        for _ in range(250):
            self.held.release(b"done")
        self.attacker.pump()
        for sid in sids:
            _, body, _, ended = self.attacker.response(sid)
            self.assertEqual((body, ended), (b"done", True))
        self.assertFalse(self.attacker.transport.disconnecting)
        self.assertServed(self.attacker)

    def test_stream_over_limit_before_the_settings_ack_is_refused(self) -> None:
        """Before the client acknowledged our SETTINGS, a stream over the limit gets REFUSED_STREAM."""
        protocol = HTTP2Protocol(self.server, self.clock)
        transport = StringTransport()
        protocol.makeConnection(transport)
        client = Client(protocol, transport)
        protocol.dataReceived(client.conn.data_to_send())  # preface and SETTINGS, no ACK yet
        block = b"".join(self.headers_frame(client, 2 * i + 1) for i in range(251))
        protocol.dataReceived(block)
        self.assertEqual(len(self.held.pending), 250)
        self.assertEqual(rst_streams(transport.value()), {501: 7})  # REFUSED_STREAM
        self.assertIsNone(last_goaway(transport.value()))
        self.assertFalse(transport.disconnecting)

    def test_running_handlers_of_reset_streams_count(self) -> None:
        """Handlers still running for reset streams count toward the limit: the next stream is refused."""
        for _ in range(250):
            sid = self.attacker.request("GET", "/held")
            self.attacker.conn.reset_stream(sid)
        self.attacker.pump()
        self.assertEqual(len(self.held.pending), 250)
        self.assertTrue(self.attacker.protocol.idle)  # no stream open...
        sid = self.attacker.request("GET", "/held")
        self.assertEqual(self.resets(self.attacker), {sid: 7})  # ...but 250 handlers run: REFUSED_STREAM
        self.assertEqual(len(self.held.pending), 250)
        self.assertIsNone(self.goaway(self.attacker))
        self.held.release()  # one handler returns: one stream may open again
        sid = self.attacker.request("GET", "/held")
        self.attacker.pump()
        self.assertNotIn(sid, self.resets(self.attacker))
        self.assertEqual(len(self.held.pending), 250)
        self.assertServed(self.bystander)

    def test_refused_streams_count_as_rapid_resets(self) -> None:
        """Streams refused while reset streams' handlers run count toward the rapid-reset limit."""
        for _ in range(250):
            sid = self.attacker.request("GET", "/held")
            self.attacker.conn.reset_stream(sid)
        self.attacker.pump()
        for _ in range(250):
            self.attacker.request("GET", "/held")  # refused: 500 resets and refusals so far
        self.attacker.pump()
        self.assertIsNone(self.goaway(self.attacker))
        self.attacker.request("GET", "/held")
        self.assertCalmedDown(self.attacker)
        self.assertServed(self.bystander)

    def test_window_update_flood(self) -> None:
        """100,000 WINDOW_UPDATE frames queue nothing (no reply, no growth) and others are still served."""
        sid = self.attacker.request("GET", "/held")
        self.attacker.pump()
        self.attacker.transport.clear()
        frames = b"".join(hyperframe.frame.WindowUpdateFrame(stream, window_increment=1).serialize()
                          for stream in (0, sid)) * 50_000
        self.attacker.protocol.dataReceived(frames)
        self.assertEqual(self.attacker.transport.value(), b"")  # nothing queued in answer
        self.assertFalse(self.attacker.transport.disconnecting)
        self.assertServed(self.bystander)
        self.held.release(b"fine")
        self.attacker.pump()
        self.assertEqual(self.attacker.response(sid)[1], b"fine")

    def test_window_overflow_is_a_flow_control_error(self) -> None:
        """A WINDOW_UPDATE taking the connection window past 2^31-1: GOAWAY FLOW_CONTROL_ERROR."""
        frame = hyperframe.frame.WindowUpdateFrame(0, window_increment=(1 << 31) - 1)
        self.attacker.protocol.dataReceived(frame.serialize())
        self.assertEqual(last_goaway(self.attacker.transport.value()), 3)  # FLOW_CONTROL_ERROR
        self.assertTrue(self.attacker.transport.disconnecting)
        self.assertServed(self.bystander)

    def test_stream_window_overflow_resets_the_stream(self) -> None:
        """A WINDOW_UPDATE taking a stream's window past 2^31-1: RST_STREAM FLOW_CONTROL_ERROR, the connection goes on."""
        sid = self.attacker.request("GET", "/held")
        self.attacker.pump()
        frame = hyperframe.frame.WindowUpdateFrame(sid, window_increment=(1 << 31) - 1)
        self.attacker.protocol.dataReceived(frame.serialize())
        self.assertEqual(rst_streams(self.attacker.transport.value()), {sid: 3})
        self.assertFalse(self.attacker.transport.disconnecting)
        self.attacker.transport.clear()
        self.assertServed(self.attacker)

    def test_zero_window_stall(self) -> None:
        """A client that never opens a zero window: the producer is paused (memory bounded), the stream
        is reset after idle_timeout, and the connection closed after another idle_timeout."""
        self.attacker.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        self.attacker.pump()
        sid = self.attacker.request("GET", "/stream")
        self.attacker.pump()
        protocol = self.attacker.protocol
        stream = protocol._streams[sid]
        self.assertTrue(self.streamer.paused)
        self.assertLessEqual(stream.pending_size, 64 * 1024 + Streamer.chunk)
        self.assertLessEqual(self.streamer.written, 64 * 1024 + 2 * Streamer.chunk)
        self.assertServed(self.bystander)
        self.clock.advance(299)
        self.assertFalse(self.streamer.stopped)
        self.assertEqual(self.streamer.written, 64 * 1024 + Streamer.chunk)  # no more while stalled
        self.clock.advance(1)  # idle_timeout (5 min) without a byte out: reset
        self.assertTrue(self.streamer.stopped)
        self.assertEqual(rst_streams(self.attacker.transport.value()), {sid: 2})  # INTERNAL_ERROR
        self.assertTrue(protocol.idle)
        self.assertFalse(self.attacker.transport.disconnecting)
        self.clock.advance(300)  # then idle: GOAWAY and close
        self.assertTrue(self.attacker.transport.disconnecting)

    def test_slow_window_updates_keep_the_stream(self) -> None:
        """A client that keeps opening its window, however slowly, is not cut off by the stall timer."""
        self.attacker.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
        self.attacker.pump()
        sid = self.attacker.request("GET", "/stream")
        self.attacker.pump()
        for _ in range(5):
            self.clock.advance(200)
            self.attacker.conn.increment_flow_control_window(1000, sid)
            self.attacker.pump()
        self.assertFalse(self.streamer.stopped)
        self.assertNotIn(sid, rst_streams(self.attacker.transport.value()))

    def test_highest_stream_id(self) -> None:
        """Stream 2^31-1 is served; a new stream after it (necessarily a lower id) is a connection error."""
        last = (1 << 31) - 1
        self.attacker.protocol.dataReceived(self.headers_frame(self.attacker, last, "/"))
        written = self.attacker.transport.value()
        self.attacker.transport.clear()
        self.assertIn(b"ok", written)
        self.assertEqual(rst_streams(written), {})
        self.attacker.protocol.dataReceived(self.headers_frame(self.attacker, 5, "/"))
        self.assertEqual(last_goaway(self.attacker.transport.value()), 1)  # PROTOCOL_ERROR
        self.assertTrue(self.attacker.transport.disconnecting)
        self.assertServed(self.bystander)

    def test_ping_flood_while_not_reading(self) -> None:
        """PINGs whose ACKs queue up (transport paused) past 10,000: ENHANCE_YOUR_CALM."""
        protocol = self.attacker.protocol
        protocol.pauseProducing()  # what the transport does while the client does not read
        ping = hyperframe.frame.PingFrame(0)
        ping.opaque_data = b"12345678"
        flood = ping.serialize() * 1000
        for _ in range(10):
            protocol.dataReceived(flood)
        self.assertFalse(self.attacker.transport.disconnecting)
        protocol.dataReceived(ping.serialize())
        self.assertCalmedDown(self.attacker)
        self.assertServed(self.bystander)

    def test_settings_flood_while_not_reading(self) -> None:
        """SETTINGS frames (each acknowledged) count as queued control frames too."""
        protocol = self.attacker.protocol
        protocol.pauseProducing()
        protocol.dataReceived(hyperframe.frame.SettingsFrame(0).serialize() * 10_001)
        self.assertCalmedDown(self.attacker)
        self.assertServed(self.bystander)

    def test_pings_while_reading_are_fine(self) -> None:
        """The control-frame count restarts when the transport resumes (the client reads)."""
        protocol = self.attacker.protocol
        ping = hyperframe.frame.PingFrame(0)
        ping.opaque_data = b"12345678"
        for _ in range(3):
            protocol.pauseProducing()
            protocol.dataReceived(ping.serialize() * 6000)
            protocol.resumeProducing()
        self.assertIsNone(self.goaway(self.attacker))
        self.assertServed(self.attacker)

    def test_empty_data_flood(self) -> None:
        """More than 1,000 empty DATA frames without END_STREAM within 10 s: ENHANCE_YOUR_CALM."""
        sid = self.attacker.request("POST", "/held", end=False)
        self.attacker.pump()
        empty = hyperframe.frame.DataFrame(sid).serialize()
        self.attacker.protocol.dataReceived(empty * 1000)
        self.assertIsNone(self.goaway(self.attacker))
        self.attacker.protocol.dataReceived(empty)
        self.assertCalmedDown(self.attacker)
        self.assertServed(self.bystander)

    def continuation_flood(self, pieces: int, size: int) -> None:
        headers = hyperframe.frame.HeadersFrame(1)
        headers.data = self.attacker.conn.encoder.encode(
            [(":method", "GET"), (":scheme", "https"), (":authority", "a"), (":path", "/")])
        self.attacker.protocol.dataReceived(headers.serialize())
        for _ in range(pieces):
            continuation = hyperframe.frame.ContinuationFrame(1)
            continuation.data = b"\x00" * size  # never decoded: no END_HEADERS
            self.attacker.protocol.dataReceived(continuation.serialize())

    def test_many_continuation_frames(self) -> None:
        """h2 refuses a header block in more than 64 CONTINUATION frames: GOAWAY PROTOCOL_ERROR."""
        self.continuation_flood(65, 1)
        self.assertCalmedDown(self.attacker, 1)
        self.assertServed(self.bystander)

    def test_header_block_larger_than_the_header_list(self) -> None:
        """A header block over MAX_HEADER_LIST_SIZE bytes before END_HEADERS: GOAWAY PROTOCOL_ERROR."""
        self.continuation_flood(3, 400_000)
        self.assertCalmedDown(self.attacker, 1)
        self.assertServed(self.bystander)

    def test_preface_timeout(self) -> None:
        """A connection that sends nothing for 10 s gets GOAWAY PROTOCOL_ERROR and is closed."""
        protocol = HTTP2Protocol(self.server, self.clock)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(PREFACE[:10])
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(last_goaway(transport.value()), 1)  # PROTOCOL_ERROR
        self.assertServed(self.bystander)

    def test_preface_in_time_cancels_the_timeout(self) -> None:
        """A client that sent its preface and SETTINGS is not closed at 10 s."""
        self.clock.advance(11)
        self.assertIsNone(self.goaway(self.attacker))
        self.assertServed(self.attacker)

    def test_nothing_after_the_goaway(self) -> None:
        """A held response finishing after the connection was closed for abuse writes nothing more."""
        self.attacker.request("GET", "/held")
        self.attacker.pump()
        self.attacker.protocol.pauseProducing()
        self.attacker.protocol.dataReceived(hyperframe.frame.SettingsFrame(0).serialize() * 10_001)
        self.assertEqual(last_goaway(self.attacker.transport.value()), 11)
        self.attacker.transport.clear()
        self.held.release(b"late")
        self.assertEqual(self.attacker.transport.value(), b"")


class MalformedRequestTests(_TwoClients):
    """Malformed request fields reset only their stream (RFC 9113 §8.1.1, as Go's server); the
    checks are txcaddy's own single pass (h2's inbound validation is off for speed)."""

    def lenient(self, client: Client) -> Client:
        """Let the client's h2 send whatever fields a test gives it."""
        client.conn.config.validate_outbound_headers = False
        client.conn.config.normalize_outbound_headers = False
        return client

    def send(self, fields: list[tuple[bytes, bytes]], end: bool = True) -> int:
        client = self.lenient(self.attacker)
        sid: int = client.conn.get_next_available_stream_id()
        client.conn.send_headers(sid, fields, end_stream=end)
        return sid

    GOOD = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/")]

    def assertReset(self, fields: list[tuple[bytes, bytes]]) -> None:
        sid = self.send(fields)
        self.assertEqual(self.resets(self.attacker).get(sid), 1, fields)  # PROTOCOL_ERROR
        head, _, _, _ = self.attacker.response(sid)
        self.assertEqual(head, {})  # no response was started
        self.assertServed(self.attacker)  # the connection goes on

    def test_bad_names(self) -> None:
        """Uppercase, non-token and empty field names are malformed."""
        for name in (b"X-Upper", b"bad name", b"a\x00b", b"", b"colon:in"):
            self.assertReset([*self.GOOD, (name, b"v")])

    def test_bad_values(self) -> None:
        """Control characters (CR, LF, NUL, others but HTAB) and surrounding whitespace in values."""
        for value in (b"a\nb", b"a\rb", b"a\x00b", b"a\x01b", b" lead", b"trail\t", b"\x7f"):
            self.assertReset([*self.GOOD, (b"x-v", value)])

    def test_connection_specific_fields(self) -> None:
        """Connection-specific fields, and TE other than ``trailers``, are malformed."""
        for field in ((b"connection", b"keep-alive"), (b"transfer-encoding", b"chunked"),
                      (b"upgrade", b"websocket"), (b"keep-alive", b"1"), (b"proxy-connection", b"x"),
                      (b"te", b"gzip")):
            self.assertReset([*self.GOOD, field])

    def test_pseudo_header_rules(self) -> None:
        """Pseudo-header fields: after a regular field, repeated, unknown, a response's, missing."""
        method, scheme, authority, path = self.GOOD
        for fields in (
            [method, scheme, (b"x-a", b"1"), authority, path],
            [method, scheme, authority, path, path],
            [method, scheme, authority, path, (b":foo", b"x")],
            [method, scheme, authority, path, (b":status", b"200")],
            [scheme, authority, path],
            [method, authority, path],
            [method, scheme, authority],
            [method, scheme, authority, (b":path", b"")],
            [(b":method", b"CONNECT"), authority, path],
            [(b":method", b"CONNECT"), (b":path", b"/")],
            [method, scheme, path],  # neither :authority nor Host
            [method, scheme, authority, path, (b"host", b"other.test")],
        ):
            self.assertReset(fields)

    def test_allowed_forms(self) -> None:
        """TE: trailers, an empty value, a Host equal to :authority, Host alone and split cookies
        are fine; the cookies reach the handler joined."""
        method, scheme, authority, path = self.GOOD
        for fields in (
            [*self.GOOD, (b"te", b"trailers"), (b"x-empty", b"")],
            [*self.GOOD, (b"host", b"a.test")],
            [method, scheme, path, (b"host", b"a.test")],
        ):
            sid = self.send(fields)
            self.attacker.pump()
            head, body, _, ended = self.attacker.response(sid)
            self.assertEqual((head.get(b":status"), body, ended), (b"200", b"ok", True), fields)
        seen: list[Any] = []
        respond = load_static_response({"body": "{http.request.header.Cookie}"}, None)

        class Record:
            def serve(self, request: Any, response: Any, next: Any) -> Any:
                seen.append(request.headers.values_of("Cookie"))
                return respond.serve(request, response, next)

        self.server.routes = RouteList([Route([Record()])])
        sid = self.send([*self.GOOD, (b"cookie", b"a=1"), (b"x-b", b"2"), (b"cookie", b"c=3")])
        self.attacker.pump()
        self.assertEqual(self.attacker.response(sid)[1], b"a=1; c=3")
        self.assertEqual(seen, [["a=1; c=3"]])

    def test_malformed_trailers_reset_the_stream(self) -> None:
        """Pseudo-header fields or bad values in request trailers reset the stream."""
        for trailers in ([(b":path", b"/x")], [(b"x-t", b"a\nb")]):
            sid = self.send([(b":method", b"POST"), *self.GOOD[1:3], (b":path", b"/held")], end=False)
            self.attacker.conn.send_data(sid, b"body")
            self.attacker.conn.send_headers(sid, trailers, end_stream=True)
            self.assertEqual(self.resets(self.attacker).get(sid), 1, trailers)
            self.assertServed(self.attacker)

    def test_malformed_streams_count_as_rapid_resets(self) -> None:
        """A flood of malformed requests spends the rapid-reset budget: GOAWAY ENHANCE_YOUR_CALM."""
        for _ in range(600):
            self.send([*self.GOOD, (b"X-Upper", b"v")])
            self.attacker.pump()
            if self.attacker.transport.disconnecting:
                break
        self.assertCalmedDown(self.attacker)
        self.assertServed(self.bystander)


class HpackDecodeTests(SynchronousTestCase):
    """The hpack decoding shortcut (``_h2._decoded_field``) gives hpack's own results."""

    def test_decoded_fields_unchanged(self) -> None:
        """Indexed, literal, Huffman and non-Huffman fields decode to the same bytes and str as
        with hpack's own function, raw and not, and the shortcut is installed."""
        import hpack
        import hpack.hpack

        from txcaddy.http import _h2

        self.assertIs(hpack.hpack._unicode_if_needed, _h2._decoded_field)
        fields = [(b":method", b"GET"), (b":path", b"/a?b=c"), (b"x-long", b"v" * 300),
                  (b"cookie", b"k=v"), (b"user-agent", b"caddy test \xc3\xa9")]
        for huffman in (True, False):
            block = hpack.Encoder().encode(fields, huffman=huffman)
            self.assertEqual(hpack.Decoder().decode(block, raw=True), fields)
            decoded = list(hpack.Decoder().decode(block, raw=False))
            self.assertEqual(decoded[4], ("user-agent", "caddy test é"))
            self.assertTrue(all(type(name) is bytes for name, _ in hpack.Decoder().decode(block, raw=True)))


class IndexedHeaderTableTests(SynchronousTestCase):
    """``IndexedHeaderTable`` answers every search as hpack's own table does."""

    def test_same_results_as_hpacks_table(self) -> None:
        """Random adds, searches and resizes give hpack's results and entries, step by step."""
        import random

        from hpack.table import HeaderTable

        from txcaddy.http._h2 import IndexedHeaderTable

        rng = random.Random(7)
        names = [b"x-a", b"content-type", b":path", b"cookie", b"accept"] + [b"n%d" % i for i in range(20)]
        for _ in range(50):
            ours, theirs = IndexedHeaderTable(), HeaderTable()
            for _ in range(400):
                if rng.random() < 0.05:
                    ours.maxsize = theirs.maxsize = rng.choice([0, 100, 4096])
                name = rng.choice(names)
                value = b"v%d" % rng.randint(0, rng.choice([3, 50])) * rng.randint(1, 8)
                self.assertEqual(ours.search(name, value), theirs.search(name, value))
                if rng.random() < 0.6:
                    ours.add(name, value)
                    theirs.add(name, value)
                self.assertEqual(list(ours.dynamic_entries), list(theirs.dynamic_entries))

    def test_found_entry_index(self) -> None:
        """A field added twice is found at its newest position; an evicted one is not."""
        from txcaddy.http._h2 import IndexedHeaderTable

        table = IndexedHeaderTable()
        table.add(b"x-a", b"1")
        table.add(b"x-b", b"2")
        self.assertEqual(table.search(b"x-a", b"1"), (63, b"x-a", b"1"))
        self.assertEqual(table.search(b"x-a", b"9"), (63, b"x-a", None))
        table.maxsize = 40  # room for one entry: x-a is evicted
        self.assertIsNone(table.search(b"x-a", b"1"))
