"""``http.handlers.metrics``: the service's metrics over HTTP (Caddy's ``modules/metrics``).

Terminal (it never calls the next handler) and indifferent to the method, like
promhttp's handler: it answers 200 with the exposition of the service's
registry, OpenMetrics when the client's ``Accept`` asks for it unless
``disable_openmetrics``, gzip-compressed when the client accepts gzip. Scrapes are
counted in ``promhttp_metric_handler_requests_total{code}`` and
``promhttp_metric_handler_requests_in_flight``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from txcaddy.config.registry import module
from txcaddy.errors import ConfigError
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler
from txcaddy.metrics import Metrics, gzip_body, render_metrics

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge


@implementer(IHandler)
class MetricsHandler:
    """Serves ``registry``'s exposition."""

    def __init__(
        self, registry: CollectorRegistry, *, openmetrics: bool = True,
        scrapes: Counter | None = None, scrapes_in_flight: Gauge | None = None,
    ) -> None:
        self.registry = registry
        self.openmetrics = openmetrics
        self.scrapes = scrapes
        self.scrapes_in_flight = scrapes_in_flight

    def serve(self, request: Request, response: Response, next: Any) -> None:
        in_flight = self.scrapes_in_flight
        if in_flight is not None:
            in_flight.inc()
        try:
            body, content_type = render_metrics(
                self.registry, request.headers.joined("Accept"), openmetrics=self.openmetrics)
        finally:
            if in_flight is not None:
                in_flight.dec()
        fields = response.headers
        fields.set("Content-Type", content_type)
        if _accepts_gzip(request.headers.joined("Accept-Encoding")):
            body = gzip_body(body)
            fields.set("Content-Encoding", "gzip")
        if self.scrapes is not None:
            self.scrapes.labels("200").inc()
        response.write_head(200)
        response.write(body)
        response.finish()


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether ``Accept-Encoding`` names gzip (promhttp's check: any part whose coding is gzip)."""
    for part in accept_encoding.split(","):
        if part.split(";", 1)[0].strip().lower() == "gzip":
            return True
    return False


@module("http.handlers.metrics")
def load_metrics(config: dict[str, Any], context: Any) -> MetricsHandler:
    unknown = sorted(set(config) - {"disable_openmetrics"})
    if unknown:
        raise ConfigError(f"metrics: unknown field {unknown[0]!r}")
    metrics = context.runtime.get(Metrics)
    scrapes, in_flight = metrics.handler_metrics()
    return MetricsHandler(
        metrics.registry, openmetrics=not config.get("disable_openmetrics"),
        scrapes=scrapes, scrapes_in_flight=in_flight,
    )
