"""The proxy loop with a fake transport and a Clock: retries, statuses, passive counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.config.loader import LoadContext
from txcaddy.http.errors import AbortConnection, HandlerError
from txcaddy.reverseproxy.handler import load_reverse_proxy
from txcaddy.reverseproxy.hosts import HostRegistry
from txcaddy.reverseproxy.transport import (
    CHUNKED,
    DialError,
    ResponseHead,
    ResponseHeaderTimeout,
    UpstreamConnectionLost,
)
from txcaddy.testing import FakeResponse, make_request


class FakeExchange:
    def __init__(self, transport: FakeTransport, address: Any, method: bytes, target: bytes, headers: Any,
                 body_length: int | None) -> None:
        self.transport = transport
        self.address = address
        self.method = method
        self.target = target
        self.headers = headers
        self.body_length = body_length
        self.head: Deferred[ResponseHead] = Deferred()
        self.body = bytearray()
        self.body_done = False
        self.producer: Any = None
        self.consumer: Any = None
        self.aborted: BaseException | None = None
        self.sent_anything = False
        self.body_wanted = False
        self.finished = False

    def when_head(self, on_head: Any, on_failure: Any) -> None:
        self.head.addCallbacks(on_head, on_failure)

    @property
    def dial(self) -> str:
        return f"{self.address.host}:{self.address.port}"

    # the request body side
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.body += data

    def finish_body(self, trailers: Any = None) -> None:
        self.body_done = True

    def connect(self) -> None:
        """The upstream connection is up: the body starts to flow."""
        self.sent_anything = self.body_wanted = True
        if self.producer is not None:
            self.producer.resumeProducing()

    # the response side
    def respond(self, status: int, headers: Sequence[tuple[bytes, bytes]] = (), body: bytes = b"") -> None:
        self.head.callback(ResponseHead(b"HTTP/1.1", status, b"", list(headers)))
        if self.consumer is not None and body:
            self.consumer.body_data(body)
        if self.consumer is not None:
            self.consumer.body_finished(None)

    def fail(self, error: BaseException) -> None:
        if self.producer is not None:
            self.producer.stopProducing()
        self.head.errback(Failure(error))

    def deliver_body(self, consumer: Any) -> None:
        self.consumer = consumer

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def abort(self, reason: BaseException | None = None) -> None:
        self.aborted = reason
        if not self.head.called:
            self.head.errback(Failure(reason))
        elif self.consumer is not None:
            self.consumer.body_finished(Failure(reason))


class FakeTransport:
    unsupported_reason = None
    compression = False

    def __init__(self) -> None:
        self.exchanges: list[FakeExchange] = []

    def request(self, address: Any, method: bytes, target: bytes, headers: Any, body_length: int | None = None,
                on_informational: Any = None, request: Any = None) -> FakeExchange:
        exchange = FakeExchange(self, address, method, target, headers, body_length)
        self.exchanges.append(exchange)
        return exchange

    def close_idle(self) -> Deferred[None]:
        return succeed(None)


class HandlerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.transport = FakeTransport()

    def load(self, config: dict[str, Any]) -> Any:
        from txcaddy.config import registry

        context = self.context = LoadContext(reactor=self.clock)
        original = registry.MODULES["http.reverse_proxy.transport.http"]
        registry.MODULES["http.reverse_proxy.transport.http"] = lambda cfg, ctx: self.transport
        try:
            handler = load_reverse_proxy(config, context)
        finally:
            registry.MODULES["http.reverse_proxy.transport.http"] = original
        self.addCleanup(context.unload)
        return handler

    @property
    def hosts(self) -> HostRegistry:
        """The upstream hosts of the service the last ``load`` loaded into."""
        return self.context.runtime.get(HostRegistry)

    def fails(self, dial: str) -> int:
        """The passive health failures counted for the upstream host ``dial``."""
        host = self.hosts.get(dial)
        assert host is not None, dial
        return host.fails

    def serve(self, handler: Any, request: Any) -> tuple[FakeResponse, list[Any]]:
        response = FakeResponse()
        outcome: list[Any] = []
        d = handler.serve(request, response, lambda rq, rs: None)
        d.addBoth(outcome.append)
        return response, outcome


def _upstreams(*dials: str) -> list[dict[str, str]]:
    return [{"dial": dial} for dial in dials]


class ProxyLoopTests(HandlerTestCase):
    def test_success_relays_status_headers_and_body(self) -> None:
        """The request goes up as it came; status, fields and body come back, less hop-by-hop."""
        handler = self.load({"upstreams": _upstreams("10.0.0.1:80")})
        response, outcome = self.serve(handler, make_request("GET", "/a?b=1", {"X-In": "1"}))
        (exchange,) = self.transport.exchanges
        self.assertEqual((exchange.method, exchange.target, exchange.dial), (b"GET", b"/a?b=1", "10.0.0.1:80"))
        self.assertIn((b"X-In", b"1"), exchange.headers)
        self.assertIsNone(exchange.body_length)
        exchange.respond(201, [(b"X-Up", b"yes"), (b"Keep-Alive", b"timeout=5"), (b"Content-Length", b"5")], b"hello")
        self.assertEqual(outcome, [None])
        self.assertEqual(response.status, 201)
        self.assertEqual(response.headers.get("X-Up"), "yes")
        self.assertNotIn("Keep-Alive", response.headers)
        self.assertEqual(response.body, b"hello")

    def test_no_upstreams_is_503(self) -> None:
        """A proxy without upstreams answers 503."""
        handler = self.load({})
        response, outcome = self.serve(handler, make_request())
        self.assertIsInstance(outcome[0], Failure)
        self.assertEqual(outcome[0].value.status, 503)

    def test_statuses_of_transport_failures(self) -> None:
        """Dial errors and lost connections are 502; a response header timeout is 504."""
        for error, status in [
            (DialError("refused"), 502),
            (UpstreamConnectionLost("reset"), 502),
            (ResponseHeaderTimeout("slow"), 504),
        ]:
            handler = self.load({"upstreams": _upstreams("10.0.0.1:80")})
            response, outcome = self.serve(handler, make_request())
            self.transport.exchanges[-1].fail(error)
            self.assertIsInstance(outcome[0].value, HandlerError)
            self.assertEqual(outcome[0].value.status, status, error)

    def test_port_range_dial_is_502(self) -> None:
        """A dial address with a port range is a 502 without dialling."""
        handler = self.load({"upstreams": _upstreams("10.0.0.1:9001-9003")})
        response, outcome = self.serve(handler, make_request())
        self.assertEqual(outcome[0].value.status, 502)
        self.assertEqual(self.transport.exchanges, [])

    def test_placeholders_in_the_dial_address(self) -> None:
        """The dial address expands placeholders per request."""
        handler = self.load({"upstreams": _upstreams("{http.request.header.X-Up}:8080")})
        self.serve(handler, make_request("GET", "/", {"X-Up": "10.1.2.3"}))
        self.assertEqual(self.transport.exchanges[0].dial, "10.1.2.3:8080")

    def test_proxy_placeholders(self) -> None:
        """{http.reverse_proxy.*} show the dialled upstream, its counts and the timings."""
        from txcaddy.config.placeholders import Template

        handler = self.load({"upstreams": [{"dial": "10.0.0.1:8080", "max_requests": 7}]})
        request = make_request()

        def render(text: str) -> str:
            return Template(text).render(request, None)

        self.assertEqual(render("{http.reverse_proxy.upstream.address}"), "{http.reverse_proxy.upstream.address}")
        response, outcome = self.serve(handler, request)
        self.assertEqual(
            render("{http.reverse_proxy.upstream.address} {http.reverse_proxy.upstream.hostport} "
                   "{http.reverse_proxy.upstream.host} {http.reverse_proxy.upstream.port} "
                   "{http.reverse_proxy.upstream.requests} {http.reverse_proxy.upstream.max_requests} "
                   "{http.reverse_proxy.upstream.fails}"),
            "10.0.0.1:8080 10.0.0.1:8080 10.0.0.1 8080 0 7 0")
        # Timings are unknown until they happened.
        self.assertEqual(render("{http.reverse_proxy.upstream.latency}|{http.reverse_proxy.duration_ms}"),
                         "{http.reverse_proxy.upstream.latency}|{http.reverse_proxy.duration_ms}")
        self.clock.advance(0.25)
        self.transport.exchanges[0].respond(200, [(b"Content-Length", b"0")])
        self.assertEqual(outcome, [None])
        self.assertEqual(
            render("{http.reverse_proxy.upstream.latency} {http.reverse_proxy.upstream.latency_ms} "
                   "{http.reverse_proxy.upstream.duration} {http.reverse_proxy.duration_ms}"),
            "250ms 250 250ms 250")
        # The namespace itself and unknown names are no placeholders; a value set directly wins.
        self.assertEqual(render("{http.reverse_proxy}|{http.reverse_proxy.upstream.nope}|{http.reverse_proxy.x_ms}"),
                         "{http.reverse_proxy}|{http.reverse_proxy.upstream.nope}|{http.reverse_proxy.x_ms}")
        request.placeholders["http.reverse_proxy.upstream.host"] = "set"
        self.assertEqual(render("{http.reverse_proxy.upstream.host}"), "set")


class RetryTests(HandlerTestCase):
    CONFIG: dict[str, Any] = {
        "upstreams": _upstreams("10.0.0.1:80", "10.0.0.2:80"),
        "load_balancing": {"selection_policy": {"policy": "first"}, "try_duration": 2_000_000_000},
    }

    def test_no_retry_without_settings(self) -> None:
        """Without try_duration or retries a failed dial is not tried again."""
        handler = self.load({"upstreams": _upstreams("10.0.0.1:80", "10.0.0.2:80")})
        response, outcome = self.serve(handler, make_request())
        self.transport.exchanges[0].fail(DialError("refused"))
        self.assertEqual(len(self.transport.exchanges), 1)
        self.assertEqual(outcome[0].value.status, 502)

    def test_dial_error_retried_after_the_default_interval(self) -> None:
        """A failed dial is retried after 250 ms on another upstream, with the body intact."""
        config = dict(self.CONFIG, health_checks={"passive": {"fail_duration": 10_000_000_000}})
        handler = self.load(config)
        response, outcome = self.serve(handler, make_request("POST", "/", body=b"data"))
        first = self.transport.exchanges[0]
        self.assertEqual(first.body_length, 4)
        first.fail(DialError("refused"))
        self.assertEqual(len(self.transport.exchanges), 1)
        self.clock.advance(0.249)
        self.assertEqual(len(self.transport.exchanges), 1)
        self.clock.advance(0.001)  # lb_try_interval defaults to 250ms
        second = self.transport.exchanges[1]
        self.assertEqual(second.dial, "10.0.0.2:80")  # the failed one is down for fail_duration
        second.connect()
        self.assertEqual((bytes(second.body), second.body_done), (b"data", True))
        second.respond(200)
        self.assertEqual(outcome, [None])
        self.assertEqual(self.fails("10.0.0.1:80"), 1)
        self.clock.advance(10)
        self.assertEqual(self.fails("10.0.0.1:80"), 0)

    def test_try_duration_ends_the_loop_with_502(self) -> None:
        """Retries stop with a 502 once try_duration has passed."""
        handler = self.load(dict(self.CONFIG, upstreams=_upstreams("10.0.0.1:80")))
        response, outcome = self.serve(handler, make_request())
        for _ in range(9):
            self.transport.exchanges[-1].fail(DialError("refused"))
            self.clock.advance(0.25)
        # tries at 0, 0.25, ... 2.0 s: the one failing at 2.0 s has used up lb_try_duration
        self.assertEqual(len(self.transport.exchanges), 9)
        self.assertEqual(outcome[0].value.status, 502)

    def test_lb_retries_counts_retries(self) -> None:
        """retries caps the number of retries after the first try."""
        config = {"upstreams": _upstreams("10.0.0.1:80"), "load_balancing": {"retries": 2}}
        handler = self.load(config)
        response, outcome = self.serve(handler, make_request())
        for _ in range(5):
            if not outcome:
                self.transport.exchanges[-1].fail(DialError("refused"))
        self.assertEqual(len(self.transport.exchanges), 3)  # the first try and 2 retries
        self.assertEqual(outcome[0].value.status, 502)

    def test_error_after_connect_retries_get_only(self) -> None:
        """An error after connecting is retried for GET only, not for other methods."""
        handler = self.load(self.CONFIG)
        response, outcome = self.serve(handler, make_request("DELETE", "/"))
        self.transport.exchanges[0].fail(UpstreamConnectionLost("reset"))
        self.clock.advance(1)
        self.assertEqual(len(self.transport.exchanges), 1)
        self.assertEqual(outcome[0].value.status, 502)
        response, outcome = self.serve(handler, make_request("GET", "/"))
        self.transport.exchanges[1].fail(UpstreamConnectionLost("reset"))
        self.clock.advance(1)
        self.assertEqual(len(self.transport.exchanges), 3)

    def test_a_sent_body_is_never_sent_again(self) -> None:
        """A request whose body was sent is never retried, even when retry_match allows it."""
        config = dict(self.CONFIG, load_balancing=dict(self.CONFIG["load_balancing"], retry_match=[{"method": ["POST"]}]))
        handler = self.load(config)
        response, outcome = self.serve(handler, make_request("POST", "/", body=b"once"))
        first = self.transport.exchanges[0]
        first.connect()
        self.assertEqual(bytes(first.body), b"once")
        first.fail(UpstreamConnectionLost("reset after the body"))
        self.clock.advance(1)
        self.assertEqual(len(self.transport.exchanges), 1)
        self.assertEqual(outcome[0].value.status, 502)

    def test_retry_match_allows_bodyless_non_get(self) -> None:
        """retry_match lets a bodyless non-GET request be retried after connect errors."""
        config = dict(self.CONFIG, load_balancing=dict(self.CONFIG["load_balancing"], retry_match=[{"method": ["DELETE"]}]))
        handler = self.load(config)
        response, outcome = self.serve(handler, make_request("DELETE", "/"))
        self.transport.exchanges[0].fail(UpstreamConnectionLost("reset"))
        self.clock.advance(0.25)
        self.assertEqual(len(self.transport.exchanges), 2)


class StreamingTests(HandlerTestCase):
    def test_chunked_request_body_streams_as_it_arrives(self) -> None:
        """A chunked request body streams upstream once connected, as its pieces arrive."""
        from txcaddy.http.headers import Headers
        from txcaddy.http.request import Request, RequestBody

        body = RequestBody(None)
        request = Request("POST", "/", Headers([("Host", "x"), ("Transfer-Encoding", "chunked")]), body=body)
        handler = self.load({"upstreams": _upstreams("10.0.0.1:80")})
        response, outcome = self.serve(handler, request)
        exchange = self.transport.exchanges[0]
        self.assertEqual(exchange.body_length, CHUNKED)
        self.assertNotIn(b"Transfer-Encoding", [name for name, _ in exchange.headers])
        body.feed(b"early")
        self.assertEqual(bytes(exchange.body), b"")  # nothing is taken before the upstream is up
        exchange.connect()
        self.assertEqual(bytes(exchange.body), b"early")
        body.feed(b" late")
        body.finish()
        self.assertEqual((bytes(exchange.body), exchange.body_done), (b"early late", True))

    def test_client_gone_aborts_the_upstream_request(self) -> None:
        """The client going away aborts the upstream request."""
        handler = self.load({"upstreams": _upstreams("10.0.0.1:80")})
        response, outcome = self.serve(handler, make_request())
        exchange = self.transport.exchanges[0]
        response.connection_lost(ConnectionError("gone"))
        self.assertIsNotNone(exchange.aborted)
        self.assertEqual(outcome, [None])  # nothing to answer: the client is gone

    def test_flush_interval_minus_one_keeps_the_upstream_request(self) -> None:
        """With flush_interval -1 the upstream request goes on after the client left."""
        handler = self.load({"upstreams": _upstreams("10.0.0.1:80"), "flush_interval": -1})
        response, outcome = self.serve(handler, make_request())
        exchange = self.transport.exchanges[0]
        response.connection_lost(ConnectionError("gone"))
        self.assertIsNone(exchange.aborted)

    def test_cut_off_body_aborts_the_client_connection(self) -> None:
        """An upstream body cut short aborts the client connection after what arrived."""
        handler = self.load({"upstreams": _upstreams("10.0.0.1:80")})
        response, outcome = self.serve(handler, make_request())
        exchange = self.transport.exchanges[0]
        exchange.head.callback(ResponseHead(b"HTTP/1.1", 200, b"OK", [(b"Content-Length", b"10")]))
        exchange.consumer.body_data(b"12345")
        exchange.consumer.body_finished(Failure(UpstreamConnectionLost("reset")))
        self.assertIsInstance(outcome[0].value, AbortConnection)
        self.assertEqual(response.body, b"12345")

    def test_trailers_are_relayed(self) -> None:
        """Trailer announcements and trailers from upstream reach the client."""
        handler = self.load({"upstreams": _upstreams("10.0.0.1:80")})
        response, outcome = self.serve(handler, make_request())
        exchange = self.transport.exchanges[0]
        exchange.head.callback(ResponseHead(b"HTTP/1.1", 200, b"OK", [(b"Trailer", b"X-Checksum"),
                                                                      (b"Transfer-Encoding", b"chunked")]))
        self.assertEqual(response.headers.get("Trailer"), "X-Checksum")
        exchange.consumer.body_data(b"data")
        exchange.consumer.body_trailers([(b"X-Checksum", b"abc")])
        exchange.consumer.body_finished(None)
        assert response.trailers is not None
        self.assertEqual(response.trailers.get("X-Checksum"), "abc")
        self.assertEqual(outcome, [None])


class PassiveHealthTests(HandlerTestCase):
    def test_unhealthy_status_counts_but_is_delivered(self) -> None:
        """An unhealthy status is delivered, counts as a fail, and max_fails takes it down."""
        config = {
            "upstreams": _upstreams("10.0.0.9:80"),
            "health_checks": {"passive": {"fail_duration": 5_000_000_000, "max_fails": 2, "unhealthy_status": [5]}},
        }
        handler = self.load(config)
        response, outcome = self.serve(handler, make_request())
        self.transport.exchanges[0].respond(503, body=b"down")
        self.assertEqual((response.status, response.body), (503, b"down"))
        self.assertEqual(self.fails("10.0.0.9:80"), 1)
        self.serve(handler, make_request())
        self.transport.exchanges[1].respond(500)
        response, outcome = self.serve(handler, make_request())
        self.assertEqual(outcome[0].value.status, 503)  # both failures remembered: unavailable
        self.clock.advance(5)
        self.serve(handler, make_request())
        self.assertEqual(len(self.transport.exchanges), 3)

    def test_unhealthy_request_count_alone_does_not_take_upstreams_down(self) -> None:
        """unhealthy_request_count refuses while full, not once a request has finished."""
        # Caddy 2.6.2 answered 503 to everything here; DESIGN.md §1 takes 2.7.5's fix.
        config = {"upstreams": _upstreams("10.0.0.8:80"), "health_checks": {"passive": {"unhealthy_request_count": 1}}}
        handler = self.load(config)
        self.serve(handler, make_request())
        self.assertEqual(len(self.transport.exchanges), 1)
        response, outcome = self.serve(handler, make_request())  # one in flight: full
        self.assertEqual(outcome[0].value.status, 503)
        self.transport.exchanges[0].respond(200)
        self.serve(handler, make_request())
        self.assertEqual(len(self.transport.exchanges), 2)


class UpgradeCheckTests(HandlerTestCase):
    def test_unexpected_upgrade_protocol_writes_nothing(self) -> None:
        """A 101 switching to another protocol than asked aborts, writing nothing."""
        handler = self.load({"upstreams": _upstreams("10.0.0.1:80")})
        request = make_request("GET", "/", {"Connection": "Upgrade", "Upgrade": "websocket"})
        response, outcome = self.serve(handler, request)
        exchange = self.transport.exchanges[0]
        self.assertIn((b"Upgrade", b"websocket"), exchange.headers)
        exchange.head.callback(ResponseHead(b"HTTP/1.1", 101, b"", [(b"Upgrade", b"h2c")]))
        self.assertEqual(outcome, [None])
        self.assertFalse(response.head_sent)
        self.assertIsNotNone(exchange.aborted)
