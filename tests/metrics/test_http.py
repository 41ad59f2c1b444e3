"""HTTP series of servers with the ``metrics`` option, through ``load_http_app`` and ``HTTPServer.handle``."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.config.loader import LoadContext, Runtime
from txcaddy.http.app import load_http_app
from txcaddy.http.routing import Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.metrics import InstrumentedHandler, Metrics, render_metrics, request_size
from txcaddy.metrics._http import HTTPMetrics, instrument_routes, sanitize_code, sanitize_method
from txcaddy.testing import FakeResponse, make_request


def _samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the scraped text, keyed by (name, sorted labels)."""
    body, _ = render_metrics(registry)
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _server_config(routes: list[Any], metrics: bool = True) -> dict[str, Any]:
    server: dict[str, Any] = {"listen": [":8080"], "routes": routes}
    if metrics:
        server["metrics"] = {}
    return {"servers": {"srv0": server}}


RESPOND = [{"handle": [{"handler": "static_response", "status_code": 201, "body": "hello"}]}]


class _Setup:
    def load(self, routes: list[Any], metrics: bool = True) -> tuple[Any, Runtime, Clock]:
        clock = Clock()
        runtime = Runtime()
        app = load_http_app(_server_config(routes, metrics), LoadContext(reactor=clock, runtime=runtime))
        return app.servers["srv0"], runtime, clock


class HTTPSeriesTests(SynchronousTestCase, _Setup):
    def test_request_counted_with_caddy_names_and_labels(self) -> None:
        """A request through a static_response counts in requests_total and every histogram, labelled as Caddy."""
        server, runtime, _ = self.load(RESPOND)
        response = FakeResponse()
        server.handle(make_request("GET", "/x"), response)
        self.assertEqual((response.status, response.body), (201, b"hello"))
        samples = _samples(runtime.get(Metrics).registry)
        basic = (("handler", "static_response"), ("server", "srv0"))
        self.assertEqual(samples[("caddy_http_requests_total", basic)], 1)
        self.assertEqual(samples[("caddy_http_requests_in_flight", basic)], 0)
        self.assertEqual(samples[("caddy_http_request_errors_total", basic)], 0)
        full = (("code", "201"), ("handler", "static_response"), ("method", "GET"), ("server", "srv0"))
        for name in ("caddy_http_request_duration_seconds", "caddy_http_response_duration_seconds",
                     "caddy_http_request_size_bytes", "caddy_http_response_size_bytes"):
            self.assertEqual(samples[(name + "_count", full)], 1, name)
        self.assertEqual(samples[("caddy_http_response_size_bytes_sum", full)], 5)
        # the response size falls in the first bucket (le 256), and the buckets are Caddy's
        self.assertEqual(samples[("caddy_http_response_size_bytes_bucket", (*full[:2], ("le", "256.0"), *full[2:]))], 1)
        size_bounds = sorted(float(dict(k[1])["le"]) for k in samples
                             if k[0] == "caddy_http_request_size_bytes_bucket")
        self.assertEqual(size_bounds, [256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
                                       float("inf")])
        duration_bounds = sorted(float(dict(k[1])["le"]) for k in samples
                                 if k[0] == "caddy_http_request_duration_seconds_bucket")
        self.assertEqual(duration_bounds, [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                                           float("inf")])

    def test_metrics_off_means_no_wrappers_and_no_series(self) -> None:
        """Without the metrics option the handlers are not wrapped and no caddy_http_ series exist."""
        server, runtime, _ = self.load(RESPOND, metrics=False)
        handler = server.routes.routes[0].handlers[0]
        self.assertNotIsInstance(handler, InstrumentedHandler)
        server.handle(make_request(), FakeResponse())
        names = {key[0] for key in _samples(runtime.get(Metrics).registry)}
        self.assertFalse([n for n in names if n.startswith("caddy_http_")])
        self.assertIn("caddy_config_last_reload_successful", names)

    def test_only_top_level_handlers_wrapped(self) -> None:
        """Handlers inside a subroute are not wrapped: the series read handler="subroute"."""
        routes = [{"handle": [{"handler": "subroute", "routes": RESPOND}]}]
        server, runtime, _ = self.load(routes)
        subroute = server.routes.routes[0].handlers[0]
        self.assertIsInstance(subroute, InstrumentedHandler)
        self.assertNotIsInstance(subroute.handler.routes.routes[0].handlers[0], InstrumentedHandler)
        server.handle(make_request(), FakeResponse())
        handlers = {dict(k[1]).get("handler") for k in _samples(runtime.get(Metrics).registry)
                    if k[0] == "caddy_http_requests_total"}
        self.assertEqual(handlers, {"subroute"})

    def test_handler_error_counts_error_and_no_observations(self) -> None:
        """A handler error counts in request_errors_total and observes no histogram."""
        routes = [{"handle": [{"handler": "error", "status_code": 503}]}]
        server, runtime, _ = self.load(routes)
        response = FakeResponse()
        server.handle(make_request(), response)
        self.assertEqual(response.status, 503)
        samples = _samples(runtime.get(Metrics).registry)
        basic = (("handler", "error"), ("server", "srv0"))
        self.assertEqual(samples[("caddy_http_requests_total", basic)], 1)
        self.assertEqual(samples[("caddy_http_request_errors_total", basic)], 1)
        self.assertEqual(samples[("caddy_http_requests_in_flight", basic)], 0)
        self.assertFalse([k for k in samples if k[0].startswith("caddy_http_request_duration_seconds")])

    def test_each_handler_of_a_route_wrapped_with_its_module_name(self) -> None:
        """Each handler of a top-level route gets its own handler label (middleware and the terminal one)."""
        routes = [{"handle": [{"handler": "headers", "response": {"set": {"X-A": ["1"]}}},
                              {"handler": "static_response", "body": "x"}]}]
        server, runtime, _ = self.load(routes)
        response = FakeResponse()
        server.handle(make_request(method="POST"), response)
        self.assertEqual(response.headers.get("X-A"), "1")
        samples = _samples(runtime.get(Metrics).registry)
        for handler in ("headers", "static_response"):
            key = (("code", "200"), ("handler", handler), ("method", "POST"), ("server", "srv0"))
            self.assertEqual(samples[("caddy_http_request_duration_seconds_count", key)], 1, handler)


class _Later:
    """A handler that answers when ``finish`` is called (an asynchronous one, like reverse_proxy)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Any, Deferred[None]]] = []

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append((response, d))
        return d

    def finish(self, body: bytes) -> None:
        response, d = self.pending.pop(0)
        response.write_head(200)
        response.write(body)
        d.callback(None)


class _Next:
    """A handler that goes on with ``next`` and returns what it returns (like ``header``)."""

    def serve(self, request: Any, response: Any, next: Any) -> Any:
        return next(request, response)


class AsyncTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.metrics = Metrics()
        self.http = self.metrics.http(self.clock.seconds)
        self.handler = _Later()
        routes = RouteList([Route([self.handler])])
        self.routes = instrument_routes(routes, [{"handle": [{"handler": "reverse_proxy"}]}], "srv0", self.http)
        self.server = HTTPServer("srv0", [":8080"], self.routes)

    def test_in_flight_until_the_deferred_fires_and_duration_from_the_clock(self) -> None:
        """In flight counts while the handler's Deferred is pending; the duration and TTFB follow the clock."""
        response = FakeResponse()
        self.server.handle(make_request(), response)
        samples = _samples(self.metrics.registry)
        basic = (("handler", "reverse_proxy"), ("server", "srv0"))
        self.assertEqual(samples[("caddy_http_requests_in_flight", basic)], 1)
        self.assertEqual(samples[("caddy_http_requests_total", basic)], 0)
        self.clock.advance(0.3)
        self.handler.finish(b"x" * 2000)
        self.assertTrue(response.finished)
        samples = _samples(self.metrics.registry)
        self.assertEqual(samples[("caddy_http_requests_in_flight", basic)], 0)
        self.assertEqual(samples[("caddy_http_requests_total", basic)], 1)
        full = (("code", "200"), ("handler", "reverse_proxy"), ("method", "GET"), ("server", "srv0"))

        def bucket(name: str, le: str) -> float:
            return samples[(name + "_bucket", (*full[:2], ("le", le), *full[2:]))]

        self.assertEqual(samples[("caddy_http_request_duration_seconds_sum", full)], 0.3)
        self.assertEqual((bucket("caddy_http_request_duration_seconds", "0.25"),
                          bucket("caddy_http_request_duration_seconds", "0.5")), (0, 1))
        self.assertEqual(samples[("caddy_http_response_duration_seconds_sum", full)], 0.3)
        self.assertEqual((bucket("caddy_http_response_size_bytes", "1024.0"),
                          bucket("caddy_http_response_size_bytes", "4096.0")), (0, 1))

    def test_failed_deferred_counts_an_error(self) -> None:
        """A Deferred failing counts an error and leaves nothing in flight; the server answers 500."""
        response = FakeResponse()
        self.server.handle(make_request(), response)
        _, d = self.handler.pending.pop()
        d.errback(RuntimeError("upstream gone"))
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(response.status, 500)
        samples = _samples(self.metrics.registry)
        basic = (("handler", "reverse_proxy"), ("server", "srv0"))
        self.assertEqual((samples[("caddy_http_request_errors_total", basic)],
                          samples[("caddy_http_requests_in_flight", basic)],
                          samples[("caddy_http_requests_total", basic)]), (1, 0, 1))

    def test_observations_on_a_bound_fall_in_its_bucket(self) -> None:
        """A value equal to a bucket's bound counts in that bucket (le), one above it in the next."""
        for body, advance in ((b"x" * 256, 0.005), (b"x" * 257, 0.0051)):
            self.server.handle(make_request(), FakeResponse())
            self.clock.advance(advance)
            self.handler.finish(body)
        samples = _samples(self.metrics.registry)
        full = (("code", "200"), ("handler", "reverse_proxy"), ("method", "GET"), ("server", "srv0"))

        def bucket(name: str, le: str) -> float:
            return samples[(name + "_bucket", (*full[:2], ("le", le), *full[2:]))]

        self.assertEqual((bucket("caddy_http_response_size_bytes", "256.0"),
                          bucket("caddy_http_response_size_bytes", "1024.0")), (1, 2))
        self.assertEqual((bucket("caddy_http_request_duration_seconds", "0.005"),
                          bucket("caddy_http_request_duration_seconds", "0.01")), (1, 2))
        self.assertEqual((bucket("caddy_http_response_duration_seconds", "0.005"),
                          bucket("caddy_http_response_duration_seconds", "0.01")), (1, 2))

    def test_request_size_observed_as_request_size_computes_it(self) -> None:
        """The request size observed is ``request_size`` of the request (URL, method, proto, fields, body)."""
        request = make_request("POST", "/a?b=1", {"X-Y": "zz"}, body=b"12345", host="h.test")
        expected = request_size(request)
        self.server.handle(request, FakeResponse())
        self.handler.finish(b"")
        samples = _samples(self.metrics.registry)
        full = (("code", "200"), ("handler", "reverse_proxy"), ("method", "POST"), ("server", "srv0"))
        self.assertEqual(samples[("caddy_http_request_size_bytes_sum", full)], expected)
        self.assertEqual(expected, len("/a?b=1") + 4 + 8 + len("X-Yzz") + 6 + 5)

    def test_wrapped_handlers_reached_through_next_count_once_each(self) -> None:
        """A handler reached through ``next`` counts on its own Deferred, the outer one through the server's."""
        routes = RouteList([Route([_Next(), self.handler])])
        config = [{"handle": [{"handler": "headers"}, {"handler": "reverse_proxy"}]}]
        server = HTTPServer("srv0", [":8080"], instrument_routes(routes, config, "srv0", self.http))
        response = FakeResponse()
        server.handle(make_request(), response)
        self.clock.advance(0.3)
        self.handler.finish(b"x")
        samples = _samples(self.metrics.registry)
        for name in ("headers", "reverse_proxy"):
            basic = (("handler", name), ("server", "srv0"))
            self.assertEqual((samples[("caddy_http_requests_total", basic)],
                              samples[("caddy_http_requests_in_flight", basic)]), (1, 0))
            full = (("code", "200"), ("handler", name), ("method", "GET"), ("server", "srv0"))
            self.assertEqual(samples[("caddy_http_request_duration_seconds_count", full)], 1)


class HelperTests(SynchronousTestCase):
    def test_sanitize(self) -> None:
        """Codes 0 and 200 read "200"; standard methods upper-case; others OTHER (Caddy's internal/metrics)."""
        self.assertEqual([sanitize_code(0), sanitize_code(200), sanitize_code(404)], ["200", "200", "404"])
        self.assertEqual([sanitize_method("get"), sanitize_method("PATCH"), sanitize_method("PROPFIND")],
                         ["GET", "PATCH", "OTHER"])

    def test_request_size(self) -> None:
        """URL + method + proto + header names and values (without Host) + Host + body length."""
        request = make_request("POST", "/a?b=1", {"X-Y": "zz"}, body=b"12345", host="h.test")
        self.assertEqual(request_size(request), len("/a?b=1") + 4 + 8 + len("X-Yzz") + 6 + 5)

    def test_statuses_sanitising_alike_share_a_series(self) -> None:
        """Status 0 and 200 (and get/GET) land in one series, exported once."""
        http = HTTPMetrics()
        series = http.series("s", "h")
        self.assertIs(series.status_series(0, "get"), series.status_series(200, "GET"))
        self.assertIsNot(series.status_series(404, "GET"), series.status_series(200, "GET"))

    def test_separate_services_separate_registries(self) -> None:
        """Two runtimes keep separate registries: one's requests do not show in the other's."""
        one, two = Runtime(), Runtime()
        for runtime in (one, two):
            load_http_app(_server_config(RESPOND), LoadContext(reactor=Clock(), runtime=runtime))
        self.assertIsNot(one.get(Metrics).registry, two.get(Metrics).registry)
        app = load_http_app(_server_config(RESPOND), LoadContext(reactor=Clock(), runtime=one))
        app.servers["srv0"].handle(make_request(), FakeResponse())
        basic = (("handler", "static_response"), ("server", "srv0"))
        self.assertEqual(_samples(one.get(Metrics).registry)[("caddy_http_requests_total", basic)], 1)
        self.assertEqual(_samples(two.get(Metrics).registry)[("caddy_http_requests_total", basic)], 0)
