"""The ``metrics`` handler, ``render_metrics``, the reload gauges and ``caddy_reverse_proxy_upstreams_healthy``."""

from __future__ import annotations

import gzip
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.config.loader import LoadContext, Runtime
from txcaddy.metrics import Metrics, record_config_reload, render_metrics
from txcaddy.metrics.handler import MetricsHandler
from txcaddy.testing import make_request, serve


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _handler(config: dict[str, Any], runtime: Runtime | None = None) -> MetricsHandler:
    context = LoadContext(reactor=Clock(), runtime=runtime)
    handler = context.load_handler({"handler": "metrics", **config})
    assert isinstance(handler, MetricsHandler)
    return handler


class MetricsHandlerTests(SynchronousTestCase):
    def test_text_format_by_default(self) -> None:
        """Without an OpenMetrics Accept, the answer is the text format 0.0.4 with the service's series."""
        runtime = Runtime()
        record_config_reload(runtime.get(Metrics), True, 1234.5)
        response = serve(_handler({}, runtime), make_request(target="/metrics"))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        values = _values(response.body.decode())
        self.assertEqual(values[("caddy_config_last_reload_successful", ())], 1)
        self.assertEqual(values[("caddy_config_last_reload_success_timestamp_seconds", ())], 1234.5)
        self.assertIn(("process_cpu_seconds_total", ()), values)

    def test_openmetrics_negotiated(self) -> None:
        """A client asking for OpenMetrics gets it (ending in # EOF)."""
        request = make_request(headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        response = serve(_handler({}), request)
        self.assertTrue((response.headers.get("Content-Type") or "").startswith("application/openmetrics-text"))
        self.assertTrue(response.body.endswith(b"# EOF\n"))

    def test_disable_openmetrics(self) -> None:
        """With disable_openmetrics the text format is served whatever the Accept says."""
        request = make_request(headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        response = serve(_handler({"disable_openmetrics": True}), request)
        self.assertEqual(response.headers.get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        self.assertNotIn(b"# EOF", response.body)

    def test_gzip_when_accepted(self) -> None:
        """A client accepting gzip gets the exposition gzip-compressed."""
        response = serve(_handler({}), make_request(headers={"Accept-Encoding": "br, gzip;q=0.5"}))
        self.assertEqual(response.headers.get("Content-Encoding"), "gzip")
        self.assertIn(b"caddy_config_last_reload_successful", gzip.decompress(response.body))

    def test_scrapes_counted(self) -> None:
        """Each scrape counts in promhttp_metric_handler_requests_total{code="200"}, shown from the next one on."""
        handler = _handler({})
        serve(handler, make_request())
        values = _values(serve(handler, make_request()).body.decode())
        self.assertEqual(values[("promhttp_metric_handler_requests_total", (("code", "200"),))], 1)

    def test_terminal(self) -> None:
        """The handler never calls the next one."""
        called = []
        serve(_handler({}), make_request(), next=lambda rq, rs: called.append(1))
        self.assertEqual(called, [])

    def test_unknown_field_rejected(self) -> None:
        """An unknown field is a config error naming it."""
        from txcaddy.errors import ConfigError

        error = self.assertRaises(ConfigError, _handler, {"path": "/x"})
        self.assertIn("'path'", str(error))


class RenderTests(SynchronousTestCase):
    def test_admin_form_is_text(self) -> None:
        """render_metrics without openmetrics (the admin endpoint's form) is text even when OpenMetrics is asked."""
        metrics = Metrics()
        metrics.admin_requests.labels("admin", "/config/", "200", "GET").inc()
        body, content_type = render_metrics(metrics.registry, "application/openmetrics-text")
        self.assertEqual(content_type, "text/plain; version=0.0.4; charset=utf-8")
        values = _values(body.decode())
        key = (("code", "200"), ("handler", "admin"), ("method", "GET"), ("path", "/config/"))
        self.assertEqual(values[("caddy_admin_http_requests_total", key)], 1)

    def test_failed_reload_keeps_timestamp(self) -> None:
        """A failed reload clears the success flag and keeps the last success time."""
        metrics = Metrics()
        record_config_reload(metrics, True, 100.0)
        record_config_reload(metrics, False, 200.0)
        values = _values(render_metrics(metrics.registry)[0].decode())
        self.assertEqual(values[("caddy_config_last_reload_successful", ())], 0)
        self.assertEqual(values[("caddy_config_last_reload_success_timestamp_seconds", ())], 100.0)


class LateRegistryTests(SynchronousTestCase):
    """The registry is made on first use; what happened before shows as if it had been there."""

    def _families(self, metrics: Metrics) -> list[str]:
        return [family.name for family in text_string_to_metric_families(render_metrics(metrics.registry)[0].decode())]

    def test_same_exposition_as_an_early_registry(self) -> None:
        """Reloads and collectors recorded before the registry exists are in it, in the same order
        as when the registry was there first; later reloads still update the gauges."""
        early = Metrics()
        early.registry  # noqa: B018 - made first
        late = Metrics()
        for metrics in (early, late):
            metrics.upstreams()
            metrics.http(lambda: 0.0).series("srv0", "static_response").requests += 1
            record_config_reload(metrics, True, 50.0)
            record_config_reload(metrics, False, 60.0)
        self.assertIsNone(late._registry)
        self.assertEqual(self._families(late), self._families(early))
        values = _values(render_metrics(late.registry)[0].decode())
        self.assertEqual(values[("caddy_config_last_reload_successful", ())], 0)
        self.assertEqual(values[("caddy_config_last_reload_success_timestamp_seconds", ())], 50.0)
        record_config_reload(late, True, 70.0)
        values = _values(render_metrics(late.registry)[0].decode())
        self.assertEqual(values[("caddy_config_last_reload_successful", ())], 1)
        self.assertEqual(values[("caddy_config_last_reload_success_timestamp_seconds", ())], 70.0)


class UpstreamsHealthyTests(SynchronousTestCase):
    def _load(self, runtime: Runtime, config: dict[str, Any]) -> tuple[Any, LoadContext]:
        context = LoadContext(reactor=Clock(), runtime=runtime)
        return context.load_handler({"handler": "reverse_proxy", **config}), context

    def test_gauge_follows_health_and_unload(self) -> None:
        """Each static upstream reads 1 until marked down, then 0; unloading the config drops its pool."""
        runtime = Runtime()
        handler, context = self._load(runtime, {"upstreams": [{"dial": "127.0.0.1:9001"}, {"dial": "10.0.0.1:80"}]})
        registry = runtime.get(Metrics).registry
        values = _values(render_metrics(registry)[0].decode())
        self.assertEqual(values[("caddy_reverse_proxy_upstreams_healthy", (("upstream", "127.0.0.1:9001"),))], 1)
        self.assertEqual(values[("caddy_reverse_proxy_upstreams_healthy", (("upstream", "10.0.0.1:80"),))], 1)
        handler.upstreams[1].host.unhealthy = True
        values = _values(render_metrics(registry)[0].decode())
        self.assertEqual(values[("caddy_reverse_proxy_upstreams_healthy", (("upstream", "10.0.0.1:80"),))], 0)
        self.successResultOf(context.unload())
        values = _values(render_metrics(registry)[0].decode())
        self.assertFalse([k for k in values if k[0] == "caddy_reverse_proxy_upstreams_healthy"])
