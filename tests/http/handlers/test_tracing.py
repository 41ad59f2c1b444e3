"""The tracing handler: otelhttp's server spans, W3C propagation, the shared provider."""

from __future__ import annotations

import base64
import json
from typing import Any

import treq
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers
from zope.interface.verify import verifyObject

from tests.reverseproxy._backends import EchoBackend, site, start_proxy
from txcaddy.caddyfile.adapter import adapt
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.handlers import tracing
from txcaddy.interfaces import IHandler
from txcaddy.service import plain_json
from txcaddy.testing import FakeResponse, make_request, serve

#: ``caddy adapt`` 2.6.2 (a build with the tracing module) of ``tracing { span my_span }``.
CADDY_TRACING = {"handler": "tracing", "span": "my_span"}

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"


def respond(status: int, body: bytes = b"") -> Any:
    def next(request: Any, response: Any) -> None:
        response.write_head(status)
        if body:
            response.write(body)
        response.finish()
    return next


class _InMemory:
    """Patches the providers to export into memory; ``spans()`` gives what ended."""

    def __init__(self, test: SynchronousTestCase) -> None:
        self.exporter = InMemorySpanExporter()
        test.patch(tracing.TracerProviders, "make_processor", lambda _self: SimpleSpanProcessor(self.exporter))

    def spans(self) -> Any:
        return self.exporter.get_finished_spans()


class TracingHandlerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.memory = _InMemory(self)
        self.context = LoadContext()

    def load(self, config: dict[str, Any]) -> Any:
        return self.context.load_handler(config)

    def test_adapter_matches_caddy(self) -> None:
        """``tracing { span my_span }`` adapts to the handler caddy adapt 2.6.2 writes."""
        config = plain_json(adapt(":8080 {\n\ttracing {\n\t\tspan my_span\n\t}\n}\n")[0])
        handlers = [h for route in config["apps"]["http"]["servers"]["srv0"]["routes"] for h in route["handle"]]
        self.assertEqual(handlers, [CADDY_TRACING])

    def test_one_server_span_with_otelhttp_attributes(self) -> None:
        """A request gives one SERVER span named by ``span``, with otelhttp v0.34's attributes."""
        handler = self.load(CADDY_TRACING)
        self.assertTrue(verifyObject(IHandler, handler))
        auth = "Basic " + base64.b64encode(b"alice:secret").decode()
        request = make_request("POST", "/a/b?c=1", {
            "Host": "example.com:8443", "User-Agent": "curl/8", "Authorization": auth,
            "X-Forwarded-For": "203.0.113.9, 10.0.0.1",
        }, body=b"hello", remote=("192.0.2.7", 40000))
        response = serve(handler, request, next=respond(201, b"created"))
        self.assertEqual(response.body, b"created")
        (span,) = self.memory.spans()
        self.assertEqual(span.name, "my_span")
        self.assertEqual(span.kind, SpanKind.SERVER)
        self.assertIsNone(span.parent)
        self.assertEqual(span.status.status_code, StatusCode.UNSET)
        self.assertEqual(dict(span.attributes), {
            "net.transport": "ip_tcp", "net.peer.ip": "192.0.2.7", "net.peer.port": 40000,
            "net.host.name": "example.com", "net.host.port": 8443, "enduser.id": "alice",
            "http.target": "/a/b?c=1", "http.server_name": "my_span", "http.client_ip": "203.0.113.9",
            "http.user_agent": "curl/8", "http.request_content_length": 5, "http.scheme": "http",
            "http.host": "example.com:8443", "http.flavor": "1.1", "http.method": "POST",
            "http.status_code": 201, "http.wrote_bytes": 7,
        })
        self.assertEqual(span.instrumentation_scope.name, tracing.SCOPE_NAME)
        self.assertEqual(span.resource.attributes["webengine.name"], "txcaddy")

    def test_default_span_name(self) -> None:
        """An empty ``span`` names spans ``handler`` (Caddy's default), also in http.server_name."""
        serve(self.load({"handler": "tracing", "span": ""}), make_request(), next=respond(204))
        (span,) = self.memory.spans()
        self.assertEqual(span.name, "handler")
        self.assertEqual(span.attributes["http.server_name"], "handler")
        self.assertNotIn("http.wrote_bytes", span.attributes)

    def test_incoming_traceparent_is_continued(self) -> None:
        """An incoming ``traceparent`` makes the span its child, in the same trace."""
        request = make_request(headers={
            "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01", "tracestate": "vendor=x"})
        serve(self.load(CADDY_TRACING), request, next=respond(200))
        (span,) = self.memory.spans()
        self.assertEqual(format(span.context.trace_id, "032x"), PARENT_TRACE)
        self.assertEqual(format(span.parent.span_id, "016x"), PARENT_SPAN)
        self.assertTrue(span.parent.is_remote)
        self.assertEqual(span.context.trace_state.to_header(), "vendor=x")

    def test_request_carries_the_server_span_context(self) -> None:
        """The next handlers see a ``traceparent`` naming the server span (and the tracestate)."""
        seen: dict[str, Any] = {}

        def next(request: Any, response: Any) -> None:
            seen["traceparent"] = request.headers.get_all("traceparent")
            seen["tracestate"] = request.headers.get("tracestate")
            respond(200)(request, response)

        request = make_request(headers={
            "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01", "tracestate": "vendor=x"})
        serve(self.load(CADDY_TRACING), request, next=next)
        (span,) = self.memory.spans()
        self.assertEqual(seen["traceparent"], [f"00-{PARENT_TRACE}-{span.context.span_id:016x}-01"])
        self.assertEqual(seen["tracestate"], "vendor=x")

    def test_baggage_passes_on_and_unsampled_parents_are_not_exported(self) -> None:
        """``baggage`` reaches the next handlers; a parent not sampled gives no exported span."""
        seen: dict[str, Any] = {}

        def next(request: Any, response: Any) -> None:
            seen["traceparent"] = request.headers.get("traceparent")
            seen["baggage"] = request.headers.get("baggage")
            respond(200)(request, response)

        request = make_request(headers={
            "traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-00", "baggage": "user=alice"})
        serve(self.load(CADDY_TRACING), request, next=next)
        self.assertEqual(self.memory.spans(), ())
        self.assertEqual(seen["baggage"], "user=alice")
        self.assertTrue(seen["traceparent"].startswith(f"00-{PARENT_TRACE}-"))
        self.assertTrue(seen["traceparent"].endswith("-00"))
        self.assertNotIn(PARENT_SPAN, seen["traceparent"])

    def test_server_error_sets_error_status(self) -> None:
        """A 5xx response makes the span status ERROR; a 4xx leaves it unset (server span)."""
        handler = self.load(CADDY_TRACING)
        serve(handler, make_request(), next=respond(503))
        serve(handler, make_request(), next=respond(404))
        serve(handler, make_request(), next=respond(299))
        error, missing, invalid = self.memory.spans()
        self.assertEqual((error.status.status_code, error.attributes["http.status_code"]), (StatusCode.ERROR, 503))
        self.assertIsNone(error.status.description)
        self.assertEqual((missing.status.status_code, missing.attributes["http.status_code"]), (StatusCode.UNSET, 404))
        self.assertEqual(invalid.status.status_code, StatusCode.ERROR)
        self.assertEqual(invalid.status.description, "Invalid HTTP status code 299")

    def test_handler_error_before_writing_records_no_status(self) -> None:
        """Handlers failing before writing end the span without a status code, as otelhttp under Caddy."""

        def failing(request: Any, response: Any) -> None:
            raise RuntimeError("boom")

        with self.assertRaises(RuntimeError):
            self.load(CADDY_TRACING).serve(make_request(), FakeResponse(), failing)
        (span,) = self.memory.spans()
        self.assertNotIn("http.status_code", span.attributes)
        self.assertEqual(span.status.status_code, StatusCode.UNSET)

    def test_span_ends_when_the_response_finishes(self) -> None:
        """A response still streaming when the handlers return ends the span when it finishes."""

        def streaming(request: Any, response: Any) -> None:
            response.write_head(200)
            response.write(b"part")

        response = FakeResponse()
        self.load(CADDY_TRACING).serve(make_request(), response, streaming)
        self.assertEqual(self.memory.spans(), ())
        response.write(b"-end")
        response.finish()
        (span,) = self.memory.spans()
        self.assertEqual(span.attributes["http.wrote_bytes"], 8)

    def test_attribute_edge_cases(self) -> None:
        """IP hosts become net.host.ip, HTTP/2 is flavor 2, TLS is https, HTTP/3 has no flavor."""
        request = make_request(host="[::1]:443", remote=("::ffff:10.1.2.3", 1), proto="HTTP/2.0", tls=object())
        attributes = tracing.server_attributes(request, "s")
        self.assertEqual((attributes["net.host.ip"], attributes["net.host.port"]), ("::1", 443))
        self.assertEqual(attributes["net.peer.ip"], "10.1.2.3")
        self.assertEqual((attributes["http.flavor"], attributes["http.scheme"]), ("2", "https"))
        h3 = tracing.server_attributes(make_request(host="example.com", proto="HTTP/3.0"), "s")
        self.assertNotIn("http.flavor", h3)
        self.assertEqual(h3["net.host.name"], "example.com")
        self.assertNotIn("net.host.port", h3)

    def test_provider_shared_and_shut_down_with_the_last_user(self) -> None:
        """Tracing handlers share one provider; it is flushed and shut down when the last unloads."""
        first, second = self.load(CADDY_TRACING), self.load({"handler": "tracing", "span": "other"})
        providers = self.context.runtime.get(tracing.TracerProviders)
        self.assertEqual(providers.users, 2)
        self.assertIs(first.provider, second.provider)
        self.assertIs(first.provider, providers.provider)
        self.context.unload()
        self.assertIsNone(providers.provider)
        self.assertEqual(providers.users, 0)
        # The exporter was shut down with it: it keeps nothing more.
        serve(first, make_request(), next=respond(200))
        self.assertEqual(self.memory.spans(), ())

    def test_unknown_field_refused(self) -> None:
        """A field other than ``span`` is refused at load."""
        with self.assertRaises(ConfigError):
            self.load({"handler": "tracing", "span": "x", "exporter": "otlp"})

    def test_missing_sdk_is_a_clear_config_error(self) -> None:
        """Without the OpenTelemetry packages, a config using tracing says what to install."""
        import builtins

        real_import = builtins.__import__

        def no_otel(name: str, *args: Any, **kwargs: Any) -> Any:
            if name.startswith("opentelemetry"):
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        self.patch(builtins, "__import__", no_otel)
        with self.assertRaises(ConfigError) as raised:
            self.load(CADDY_TRACING)
        self.assertIn("txcaddy[tracing]", str(raised.exception))


class TracingProxyTests(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_upstream_receives_server_span_traceparent(self) -> Any:
        """Through a real reverse_proxy, the upstream gets a ``traceparent`` naming the server span."""
        memory = _InMemory(self)
        backend = EchoBackend("a")
        self.addCleanup(backend.stop)
        base = start_proxy(self, site(f"\ttracing {{\n\t\tspan proxied\n\t}}\n\treverse_proxy {backend.address}"))
        response = yield treq.get(base + "/x", persistent=False, headers=Headers({
            "traceparent": [f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"]}))
        body = yield response.content()
        self.assertEqual(response.code, 200)
        headers = [value for name, value in json.loads(body)["headers"] if name.lower() == "traceparent"]
        (span,) = memory.spans()
        self.assertEqual(span.name, "proxied")
        self.assertEqual(headers, [f"00-{PARENT_TRACE}-{span.context.span_id:016x}-01"])
        self.assertEqual(format(span.parent.span_id, "016x"), PARENT_SPAN)
        self.assertEqual(span.attributes["http.status_code"], 200)
