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

prometheus_client (1.2 MB with what it imports) is imported when the registry is first needed: a
scrape, an admin API request, a ``metrics`` handler. Until then ``Metrics`` keeps what happened
(the last reload, the collectors asked for) in plain attributes, copied in when it is made.
"""

from __future__ import annotations

import gzip
from typing import TYPE_CHECKING, Any

from txcaddy.metrics._http import HTTPMetrics, InstrumentedHandler, instrument_routes, request_size
from txcaddy.metrics._upstreams import UpstreamsHealthy

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge

#: The text format client_golang (Caddy 2.6.2) serves; newer prometheus_client calls its default 1.0.0.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The metrics of one service (made by ``Runtime.get(Metrics)``, kept across reloads).

    The registry and the series below are made on first access (module docstring).

    @ivar registry: the service's ``CollectorRegistry``; what ``render_metrics`` exposes.
    @ivar admin_requests: ``caddy_admin_http_requests_total{handler,path,code,method}``.
    @ivar admin_errors: ``caddy_admin_http_request_errors_total{handler,path,method}``.
    @ivar reload_successful: ``caddy_config_last_reload_successful`` (1 or 0).
    @ivar reload_timestamp: ``caddy_config_last_reload_success_timestamp_seconds``.
    """

    def __init__(self) -> None:
        self._registry: CollectorRegistry | None = None
        self._admin: tuple[Counter, Counter, Gauge, Gauge] | None = None
        # What record_config_reload saw before the gauges existed.
        self._last_reload_ok: bool | None = None
        self._last_reload_time: float | None = None
        # Collectors asked for before the registry existed, registered in this order when it is made.
        self._pending: list[Any] = []
        self._http: HTTPMetrics | None = None
        self._upstreams: UpstreamsHealthy | None = None
        self._handler_metrics: tuple[Counter, Gauge] | None = None

    @property
    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            self._make_registry()
        assert self._registry is not None
        return self._registry

    def _make_registry(self) -> None:
        """Make the registry with everything registered so far, in the order it was asked for."""
        # imported on first use (module docstring)
        from prometheus_client import CollectorRegistry, Counter, Gauge
        from prometheus_client.gc_collector import GCCollector
        from prometheus_client.platform_collector import PlatformCollector
        from prometheus_client.process_collector import ProcessCollector

        registry = CollectorRegistry()
        # Caddy's process-wide collectors (go_*, process_*): Python's equivalents.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        admin_requests = Counter(
            "caddy_admin_http_requests", "Counter of requests made to the Admin API's HTTP endpoints.",
            ["handler", "path", "code", "method"], registry=registry,
        )
        admin_errors = Counter(
            "caddy_admin_http_request_errors", "Number of requests resulting in middleware errors.",
            ["handler", "path", "method"], registry=registry,
        )
        reload_successful = Gauge(
            "caddy_config_last_reload_successful", "Whether the last configuration reload attempt was successful.",
            registry=registry,
        )
        reload_timestamp = Gauge(
            "caddy_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.", registry=registry,
        )
        if self._last_reload_ok is not None:
            reload_successful.set(1 if self._last_reload_ok else 0)
        if self._last_reload_time is not None:
            reload_timestamp.set(self._last_reload_time)
        for collector in self._pending:
            registry.register(collector)
        self._pending = []
        self._admin = (admin_requests, admin_errors, reload_successful, reload_timestamp)
        self._registry = registry

    def _series(self) -> tuple[Counter, Counter, Gauge, Gauge]:
        if self._admin is None:
            self._make_registry()
        assert self._admin is not None
        return self._admin

    @property
    def admin_requests(self) -> Counter:
        return self._series()[0]

    @property
    def admin_errors(self) -> Counter:
        return self._series()[1]

    @property
    def reload_successful(self) -> Gauge:
        return self._series()[2]

    @property
    def reload_timestamp(self) -> Gauge:
        return self._series()[3]

    def record_reload(self, success: bool, now: float) -> None:
        """Note a reload attempt (``record_config_reload``), in the gauges once they exist."""
        self._last_reload_ok = success
        if success:
            self._last_reload_time = now
        if self._admin is not None:
            self._admin[2].set(1 if success else 0)
            if success:
                self._admin[3].set(now)

    def _register(self, collector: Any) -> None:
        if self._registry is None:
            self._pending.append(collector)
        else:
            self._registry.register(collector)

    def http(self, clock: Any = None) -> HTTPMetrics:
        """The HTTP series, registered the first time a server with ``metrics`` is loaded."""
        if self._http is None:
            self._http = HTTPMetrics(clock)
            self._register(self._http)
        return self._http

    def upstreams(self) -> UpstreamsHealthy:
        """``caddy_reverse_proxy_upstreams_healthy``, registered at the first ``reverse_proxy``."""
        if self._upstreams is None:
            self._upstreams = UpstreamsHealthy()
            self._register(self._upstreams)
        return self._upstreams

    def handler_metrics(self) -> tuple[Counter, Gauge]:
        """promhttp's own series, registered when the first ``metrics`` handler is built."""
        if self._handler_metrics is None:
            from prometheus_client import Counter, Gauge

            registry = self.registry
            self._handler_metrics = (
                Counter("promhttp_metric_handler_requests", "Total number of scrapes by HTTP status code.",
                        ["code"], registry=registry),
                Gauge("promhttp_metric_handler_requests_in_flight", "Current number of scrapes being served.",
                      registry=registry),
            )
        return self._handler_metrics


def record_config_reload(metrics: Metrics, success: bool, now: float) -> None:
    """Note a config load or reload: ``success`` sets the flag, and the time when it succeeded.

    The service calls it once it has started; the admin API's ``/load`` and
    ``/config`` changes call it after each reload attempt.
    """
    metrics.record_reload(success, now)


def render_metrics(
    registry: CollectorRegistry, accept: str | None = None, *, openmetrics: bool = False
) -> tuple[bytes, str]:
    """The exposition of ``registry`` and its Content-Type.

    With ``openmetrics``, an ``Accept`` asking for ``application/openmetrics-text`` gets
    OpenMetrics (promhttp's negotiation); otherwise the Prometheus text format 0.0.4,
    which is what Caddy's admin endpoint always serves.
    """
    from prometheus_client.exposition import choose_encoder, generate_latest

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
