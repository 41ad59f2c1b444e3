"""Prometheus metrics of one service, under Caddy's metric names.

Caddy 2.6.2 keeps its metrics in client_golang's default registry (package
variables): ``modules/caddyhttp/metrics.go`` (HTTP series, only on servers with
the ``metrics`` option), ``modules/caddyhttp/reverseproxy/metrics.go``
(``caddy_reverse_proxy_upstreams_healthy``), ``admin.go`` (admin API requests) and
``modules/metrics`` (the ``metrics`` handler, ``promhttp_metric_handler_*``). The
``caddy_config_last_reload_*`` gauges are Caddy 2.7's names; 2.6.2 has none.

txcaddy may run several services in one process, so each service keeps its own
``CollectorRegistry`` on its ``Runtime``: ``runtime.get(Metrics)``. The
exposition is prometheus_client's (``render_metrics``); the hot HTTP series are
a custom collector (``_http.py``) so counting a request costs a few integer
additions rather than prometheus_client's locked values.
"""

from __future__ import annotations

import gzip
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from txcaddy.metrics._http import HTTPMetrics, InstrumentedHandler, instrument_routes, request_size
from txcaddy.metrics._upstreams import UpstreamsHealthy

#: The text format client_golang (Caddy 2.6.2) serves; newer prometheus_client calls its default 1.0.0.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The metrics of one service (made by ``Runtime.get(Metrics)``, kept across reloads).

    @ivar registry: the service's ``CollectorRegistry``; what ``render_metrics`` exposes.
    @ivar admin_requests: ``caddy_admin_http_requests_total{handler,path,code,method}``.
    @ivar admin_errors: ``caddy_admin_http_request_errors_total{handler,path,method}``.
    @ivar reload_successful: ``caddy_config_last_reload_successful`` (1 or 0).
    @ivar reload_timestamp: ``caddy_config_last_reload_success_timestamp_seconds``.
    """

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry()
        # Caddy's process-wide collectors (go_*, process_*): Python's equivalents.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        self.admin_requests = Counter(
            "caddy_admin_http_requests", "Counter of requests made to the Admin API's HTTP endpoints.",
            ["handler", "path", "code", "method"], registry=registry,
        )
        self.admin_errors = Counter(
            "caddy_admin_http_request_errors", "Number of requests resulting in middleware errors.",
            ["handler", "path", "method"], registry=registry,
        )
        self.reload_successful = Gauge(
            "caddy_config_last_reload_successful", "Whether the last configuration reload attempt was successful.",
            registry=registry,
        )
        self.reload_timestamp = Gauge(
            "caddy_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.", registry=registry,
        )
        self._http: HTTPMetrics | None = None
        self._upstreams: UpstreamsHealthy | None = None
        self._handler_metrics: tuple[Counter, Gauge] | None = None

    def http(self, clock: Any = None) -> HTTPMetrics:
        """The HTTP series, registered the first time a server with ``metrics`` is loaded."""
        if self._http is None:
            self._http = HTTPMetrics(clock)
            self.registry.register(self._http)
        return self._http

    def upstreams(self) -> UpstreamsHealthy:
        """``caddy_reverse_proxy_upstreams_healthy``, registered at the first ``reverse_proxy``."""
        if self._upstreams is None:
            self._upstreams = UpstreamsHealthy()
            self.registry.register(self._upstreams)
        return self._upstreams

    def handler_metrics(self) -> tuple[Counter, Gauge]:
        """promhttp's own series, registered when the first ``metrics`` handler is built."""
        if self._handler_metrics is None:
            self._handler_metrics = (
                Counter("promhttp_metric_handler_requests", "Total number of scrapes by HTTP status code.",
                        ["code"], registry=self.registry),
                Gauge("promhttp_metric_handler_requests_in_flight", "Current number of scrapes being served.",
                      registry=self.registry),
            )
        return self._handler_metrics


def record_config_reload(metrics: Metrics, success: bool, now: float) -> None:
    """Note a config load or reload: ``success`` sets the flag, and the time when it succeeded.

    The service calls it once it has started; the admin API's ``/load`` and
    ``/config`` changes call it after each reload attempt.
    """
    metrics.reload_successful.set(1 if success else 0)
    if success:
        metrics.reload_timestamp.set(now)


def render_metrics(
    registry: CollectorRegistry, accept: str | None = None, *, openmetrics: bool = False
) -> tuple[bytes, str]:
    """The exposition of ``registry`` and its Content-Type.

    With ``openmetrics``, an ``Accept`` asking for ``application/openmetrics-text`` gets
    OpenMetrics (promhttp's negotiation); otherwise the Prometheus text format 0.0.4,
    which is what Caddy's admin endpoint always serves.
    """
    if openmetrics and accept and "application/openmetrics-text" in accept:
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type
    return generate_latest(registry), TEXT_CONTENT_TYPE


def gzip_body(body: bytes) -> bytes:
    """The body gzip-compressed, as promhttp sends it to clients accepting gzip."""
    return gzip.compress(body, compresslevel=1)


__all__ = [
    "HTTPMetrics",
    "InstrumentedHandler",
    "Metrics",
    "TEXT_CONTENT_TYPE",
    "UpstreamsHealthy",
    "instrument_routes",
    "record_config_reload",
    "render_metrics",
    "request_size",
]
