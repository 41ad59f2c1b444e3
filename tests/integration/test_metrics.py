"""Metrics on a real service on 127.0.0.1: ``servers { metrics }``, the ``metrics`` handler, a scrape."""

from __future__ import annotations

import socket
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor
from txcaddy.metrics import Metrics, render_metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class MetricsServiceTests(TestCase):
    timeout = 30

    def start(self, text: str) -> Any:
        service = fromCaddyfile(text, reactor=default_reactor())
        service.startService()
        self.addCleanup(service.stopService)
        return service

    @inlineCallbacks
    def get(self, url: str, **kwargs: Any) -> Any:
        response = yield treq.get(url, persistent=False, **kwargs)
        body = yield response.content()
        return response, body

    @inlineCallbacks
    def test_proxied_requests_scraped(self) -> Any:
        """Requests through reverse_proxy show in the scrape under Caddy's names, labels and counts."""
        front, back = _free_port(), _free_port()
        service = self.start(
            "{\n\tservers {\n\t\tmetrics\n\t}\n}\n"
            f"http://127.0.0.1:{front} {{\n\tbind 127.0.0.1\n\tmetrics /metrics\n"
            f"\treverse_proxy 127.0.0.1:{back}\n}}\n"
            f"http://127.0.0.1:{back} {{\n\tbind 127.0.0.1\n\trespond \"backend\" 202\n}}\n"
        )
        base = f"http://127.0.0.1:{front}"
        for _ in range(3):
            response, body = yield self.get(base + "/app")
            self.assertEqual((response.code, body), (202, b"backend"))
        response, body = yield self.get(base + "/metrics")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Content-Type"), ["text/plain; version=0.0.4; charset=utf-8"])
        values = _values(body.decode())
        # one site per listener: handlers sit in a subroute, so the label is "subroute" (as in Caddy)
        (name,) = [n for n, server in service.http.servers.items() if any(str(front) in a for a in server.listen)]
        labels = (("handler", "subroute"), ("server", name))
        # the scrape itself is in flight, counted in requests_total once it is done (as in Caddy)
        self.assertEqual(values[("caddy_http_requests_total", labels)], 3)
        self.assertEqual(values[("caddy_http_requests_in_flight", labels)], 1)  # the scrape in progress
        full = (("code", "202"), ("handler", "subroute"), ("method", "GET"), ("server", name))
        self.assertEqual(values[("caddy_http_request_duration_seconds_count", full)], 3)
        self.assertEqual(values[("caddy_http_response_size_bytes_sum", full)], 3 * len(b"backend"))
        self.assertEqual(values[("caddy_reverse_proxy_upstreams_healthy", (("upstream", f"127.0.0.1:{back}"),))], 1)
        self.assertEqual(values[("caddy_config_last_reload_successful", ())], 1)
        # the service's own registry holds the same series (what the admin endpoint serves)
        own = _values(render_metrics(service.runtime.get(Metrics).registry)[0].decode())
        self.assertEqual(own[("caddy_http_requests_total", labels)], 4)  # the scrape is done by now

    @inlineCallbacks
    def test_without_metrics_option_no_http_series(self) -> Any:
        """Without servers { metrics } the metrics handler still serves, but no caddy_http_ series exist."""
        port = _free_port()
        self.start(f"http://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n\tmetrics /metrics\n\trespond / \"hi\"\n}}\n")
        response, body = yield self.get(f"http://127.0.0.1:{port}/")
        self.assertEqual(body, b"hi")
        response, body = yield self.get(f"http://127.0.0.1:{port}/metrics")
        names = {key[0] for key in _values(body.decode())}
        self.assertEqual([n for n in names if n.startswith("caddy_http_")], [])
        self.assertIn("caddy_config_last_reload_successful", names)
