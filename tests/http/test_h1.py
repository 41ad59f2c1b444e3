"""The HTTP/1.1 protocol on a StringTransport: framing, keep-alive, pipelining, limits."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from txcaddy.http._h1 import HTTP11Factory
from txcaddy.http.errors import HandlerError
from txcaddy.http.headers import Headers
from txcaddy.http.routing import MatcherSet, Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.interfaces import IHandler, IRequestMatcher


@implementer(IHandler)
class Echo:
    """Answers with the method, path and the whole request body."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        self.seen.append(request)
        done: Deferred[None] = Deferred()
        chunks: list[bytes] = []
        handler = self

        class Consumer:
            def body_data(self, data: bytes) -> None:
                chunks.append(data)

            def body_finished(self, error: Any) -> None:
                if error is not None:
                    done.errback(error)
                    return
                response.headers.set("Content-Type", "text/plain")
                response.write(f"{request.method} {request.path} ".encode() + b"".join(chunks))
                done.callback(None)

        del handler
        request.body.deliver(Consumer())
        return done


@implementer(IHandler)
class Held:
    """Writes nothing until the test releases it."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, Deferred[None]]] = []

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append((response, d))
        return d

    def release(self, body: bytes = b"held") -> None:
        response, d = self.pending.pop(0)
        response.write(body)
        d.callback(None)


@implementer(IHandler)
class Fail:
    def serve(self, request: Any, response: Any, next: Any) -> None:
        raise HandlerError(418, "teapot")


@implementer(IRequestMatcher)
class PathPrefix:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def match(self, request: Any) -> bool:
        return request.path.startswith(self.prefix)


class ProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.echo = Echo()
        self.held = Held()
        routes = RouteList(
            [
                Route([Fail()], [MatcherSet([PathPrefix("/fail")])], terminal=True),
                Route([self.held], [MatcherSet([PathPrefix("/held")])], terminal=True),
                Route([self.echo]),
            ]
        )
        self.server = HTTPServer("srv0", [":80"], routes, reactor=self.clock, max_header_bytes=2048)
        self.protocol = HTTP11Factory(self.server, self.clock).buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> bytes:
        self.protocol.dataReceived(data)
        out = self.transport.value()
        self.transport.clear()
        return out

    def test_rejections_are_logged_by_the_connection(self) -> None:
        """A rejected request is logged under the protocol's namespace, with the connection as
        the source (the logger is made when used: one per connection would cost every client)."""
        from typing import cast

        from twisted.logger import ILogObserver, globalLogPublisher

        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.assertTrue(self.send(b"GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n").startswith(b"HTTP/1.1 400 "))
        (event,) = [e for e in events if e.get("log_format", "").startswith("rejecting request")]
        self.assertEqual(event["log_namespace"], "txcaddy.http._h1.HTTP11Protocol")
        self.assertIs(event["log_source"], self.protocol)

    def test_tcp_no_delay_like_go(self) -> None:
        """Go turns Nagle's algorithm off on every accepted TCP connection; so do we."""
        from tests._transports import TCPStringTransport

        transport = TCPStringTransport()
        HTTP11Factory(self.server, self.clock).buildProtocol(None).makeConnection(transport)
        self.assertTrue(transport.no_delay)

    def test_simple_request_gets_content_length(self) -> None:
        """A small answer gets Content-Length and Server: Caddy, and the connection stays open."""
        out = self.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"\r\nContent-Length: 7\r\n", out)
        self.assertIn(b"\r\nServer: Caddy\r\n", out)
        self.assertTrue(out.endswith(b"\r\n\r\nGET /a "))
        self.assertFalse(self.transport.disconnecting)

    def test_local_address_is_asked_for_once_and_only_when_used(self) -> None:
        """The transport's local address is looked up lazily, once per connection, on first use."""
        calls: list[Any] = []
        get_host = self.transport.getHost

        def counted_get_host() -> Any:
            calls.append(1)
            return get_host()

        self.patch(self.transport, "getHost", counted_get_host)
        self.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(calls, [])
        first, second = self.echo.seen[-2:]
        address = get_host()
        self.assertEqual(first.local, (address.host, address.port))
        self.assertEqual(second.local, (address.host, address.port))
        self.assertEqual(calls, [1])

    def test_routing_happens_at_header_time(self) -> None:
        """A request is routed when its head arrives; the body streams to the handler later."""
        self.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        self.assertEqual([r.path for r in self.echo.seen], ["/up"])  # before the body ended
        out = self.send(b"56789")
        self.assertTrue(out.endswith(b"POST /up 0123456789"))

    def test_chunked_request_body(self) -> None:
        """A chunked request body reaches the handler de-chunked."""
        out = self.send(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        self.assertTrue(out.endswith(b"POST /c abcde"))

    def test_keep_alive_and_pipelining_answer_in_order(self) -> None:
        """Pipelined requests are served one at a time and answered in the order they arrived."""
        out = self.send(
            b"GET /held/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertEqual(out, b"")
        self.assertEqual(self.echo.seen, [])  # the second waits for the first
        self.held.release(b"first")
        out = self.transport.value()
        self.assertLess(out.index(b"first"), out.index(b"GET /second"))

    def test_http10_closes_after_response(self) -> None:
        """An HTTP/1.0 request is answered as HTTP/1.0 and the connection closes afterwards."""
        out = self.send(b"GET /ten HTTP/1.0\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.0 200 OK\r\n"))
        self.assertTrue(self.transport.disconnecting)

    def test_connection_close_is_honoured(self) -> None:
        """Connection: close from the client is echoed in the response and the connection closes."""
        out = self.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertIn(b"\r\nConnection: close\r\n", out)
        self.assertTrue(self.transport.disconnecting)

    def test_head_has_no_body(self) -> None:
        """HEAD is answered with the Content-Length a GET would have, and no body."""
        out = self.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"Content-Length: 8\r\n", out)  # what GET would send
        self.assertTrue(out.endswith(b"\r\n\r\n"))

    def test_expect_continue_is_sent_when_the_body_is_wanted(self) -> None:
        """Expect: 100-continue gets 100 Continue when the handler reads the body."""
        out = self.send(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        self.assertEqual(out, b"HTTP/1.1 100 Continue\r\n\r\n")
        out = self.send(b"abc")
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK"))
        self.assertTrue(out.endswith(b"PUT /e abc"))

    def test_handler_error_status(self) -> None:
        """A HandlerError becomes its status line with an empty body."""
        out = self.send(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 418 I'm a teapot\r\n"), out)
        self.assertIn(b"Content-Length: 0\r\n", out)

    def test_malformed_requests_get_4xx_and_close(self) -> None:
        """Malformed heads get 400, 431 or 501, close the connection and never reach a handler."""
        cases = [
            (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # no Host
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 3000 + b"\r\n\r\n", b"431"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n", b"400"),
            (b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", b"501"),
        ]
        for raw, status in cases:
            self.setUp()
            out = self.send(raw)
            self.assertTrue(out.startswith(b"HTTP/1.1 " + status), (raw, out))
            self.assertTrue(self.transport.disconnecting, raw)
            self.assertEqual(self.echo.seen, [], raw)

    def test_malformed_body_after_routing_is_a_400(self) -> None:
        """A bad chunk after routing is a 400 without the partial body; the connection closes."""
        out = self.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 Bad Request\r\n"), out)
        self.assertNotIn(b"abc", out)  # the handler never answered with the partial body
        self.assertTrue(self.transport.disconnecting)

    def test_length_and_chunked_served_chunked_then_closed(self) -> None:
        """Content-Length with chunked: the body is read chunked, then the connection closes."""
        out = self.send(
            b"POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        self.assertTrue(out.endswith(b"POST /s hello"), out)
        self.assertIn(b"\r\nConnection: close\r\n", out)
        self.assertTrue(self.transport.disconnecting)
        self.assertNotIn("Content-Length", self.echo.seen[0].headers)
        self.assertEqual([r.path for r in self.echo.seen], ["/s"])

    def test_idle_connection_times_out(self) -> None:
        """An idle connection is closed once the server's idle timeout has passed, not before."""
        self.server.idle_timeout = 30
        self.setUp_with_timeout()
        self.clock.advance(29)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(2)
        self.assertTrue(self.transport.disconnecting)

    def setUp_with_timeout(self) -> None:
        self.protocol = HTTP11Factory(self.server, self.clock).buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_graceful_drain(self) -> None:
        """drain waits for the in-flight response, closes the connection after it, then fires."""
        self.send(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        drained = self.server.drain(10, self.clock)
        self.assertNoResult(drained)
        self.held.release()
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(None)
        self.successResultOf(drained)

    def test_drain_serves_a_fresh_connections_first_request(self) -> None:
        """A connection that has sent nothing yet when the drain starts is not closed at once:
        its first request is served with ``Connection: close`` (Go's 5 s for new connections)."""
        drained = self.server.drain(10, self.clock)
        self.clock.advance(4)
        self.assertFalse(self.transport.disconnecting)
        out = self.send(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200"), out)
        self.assertIn(b"\r\nConnection: close\r\n", out)
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(None)
        self.successResultOf(drained)

    def test_drain_closes_a_silent_fresh_connection_after_its_grace(self) -> None:
        """A fresh connection that sends nothing is closed 5 s into the drain; an idle
        connection that has served a request is closed at once."""
        self.server.drain(10, self.clock)
        self.clock.advance(4.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(self.transport.disconnecting)
        self.setUp()
        self.send(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        self.server.drain(10, self.clock)
        self.assertTrue(self.transport.disconnecting)

    def test_drain_forces_close_after_grace(self) -> None:
        """drain closes a connection whose response is still pending once the grace period ends."""
        self.send(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        self.server.drain(5, self.clock)
        self.clock.advance(5)
        self.assertTrue(self.transport.disconnecting)

    def test_date_header_follows_the_clock_each_second(self) -> None:
        """The Date header is the server clock's current second, in RFC 7231 IMF-fixdate form."""
        request = b"GET /d HTTP/1.1\r\nHost: x\r\n\r\n"
        self.clock.advance(1_700_000_000.25)
        self.assertIn(b"\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n", self.send(request))
        self.clock.advance(0.5)  # still the same second
        self.assertIn(b"\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\n", self.send(request))
        self.clock.advance(0.25)
        self.assertIn(b"\r\nDate: Tue, 14 Nov 2023 22:13:21 GMT\r\n", self.send(request))
        self.clock.advance(86_400)
        self.assertIn(b"\r\nDate: Wed, 15 Nov 2023 22:13:21 GMT\r\n", self.send(request))


@implementer(IHandler)
class Fields:
    """Answers with the given header fields, body and trailers (forcing chunked coding)."""

    def __init__(self, fields: list[tuple[str, str]], trailers: list[tuple[str, str]] | None = None,
                 informational: bool = False) -> None:
        self.fields = fields
        self.trailers = trailers or []
        self.informational = informational

    def serve(self, request: Any, response: Any, next: Any) -> None:
        if self.informational:
            response.write_informational(103, Headers([("Link", "</a.css>; rel=preload\r\nX-Evil: 1")]))
        for name, value in self.fields:
            response.headers.add(name, value)
        response.write_head(200)
        response.write(b"x" * 3000)  # past the hold limit: chunked
        if self.trailers:
            response.add_trailers(Headers(self.trailers))
        response.finish()


class HeadWritingTests(SynchronousTestCase):
    def serve(self, handler: Any, request: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") -> bytes:
        server = HTTPServer("srv0", [":80"], RouteList([Route([handler])]), reactor=MemoryReactorClock())
        protocol = HTTP11Factory(server, server.reactor).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(request)
        return transport.value()

    def test_cr_and_lf_in_values_never_split_the_response(self) -> None:
        """CR and LF in header values are written as spaces, so a value cannot inject a header."""
        out = self.serve(Fields([("X-A", "one\r\nX-Injected: 1"), ("X-B", "two\nthree"), ("X-C", "fine")]))
        head = out.split(b"\r\n\r\n", 1)[0]
        self.assertIn(b"\r\nX-A: one  X-Injected: 1\r\n", head)
        self.assertIn(b"\r\nX-B: two three\r\n", head)
        self.assertIn(b"\r\nX-C: fine\r\n", head)
        self.assertNotIn(b"\r\nX-Injected", head)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"))

    def test_fields_whose_names_are_not_tokens_are_dropped(self) -> None:
        """Header fields whose names are not HTTP tokens are left out of the head."""
        out = self.serve(Fields([("Bad Name", "x"), ("X-Good", "y")]))
        head = out.split(b"\r\n\r\n", 1)[0]
        self.assertNotIn(b"Bad Name", head)
        self.assertIn(b"\r\nX-Good: y\r\n", head)

    def test_trailers_are_cleaned_the_same_way(self) -> None:
        """Trailer values have CR and LF replaced by spaces, as header values do."""
        out = self.serve(Fields([], trailers=[("X-Sum", "abc\r\nX-Injected: 1")]))
        self.assertTrue(out.endswith(b"\r\n0\r\nX-Sum: abc  X-Injected: 1\r\n\r\n"))

    def test_informational_responses_are_cleaned_the_same_way(self) -> None:
        """Fields of a 1xx informational response are cleaned the same way as final ones."""
        out = self.serve(Fields([], informational=True))
        self.assertTrue(out.startswith(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload  X-Evil: 1\r\n\r\nHTTP/1.1 200 OK\r\n"))
