"""``caddy_reverse_proxy_upstreams_healthy`` (Caddy's ``reverseproxy/metrics.go``).

Caddy sets the gauge for each static upstream of each ``reverse_proxy`` when the
handler is provisioned and every 10 s after. Here the value is read from the
upstreams' live health state when scraped, so it is never stale; a pool drops out
once its config is unloaded (Caddy keeps the last value of removed upstreams).
1 unless an active health check marked the upstream down or passive checks
counted too many failures, as ``Upstream.healthy()`` says. prometheus_client is imported at the
first scrape (``collect``): every ``reverse_proxy`` makes this collector.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


class UpstreamsHealthy:
    """A prometheus_client collector over the static upstreams of the loaded ``reverse_proxy`` handlers."""

    def __init__(self) -> None:
        self._pools: list[Sequence[Any]] = []

    def track(self, upstreams: Sequence[Any]) -> None:
        """Report ``upstreams`` (``hosts.Upstream``s) until ``untrack``."""
        self._pools.append(upstreams)

    def untrack(self, upstreams: Sequence[Any]) -> None:
        self._pools = [pool for pool in self._pools if pool is not upstreams]

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        # imported on first use (module docstring)
        from prometheus_client.metrics_core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "caddy_reverse_proxy_upstreams_healthy", "Health status of reverse proxy upstreams.", labels=["upstream"])
        values: dict[str, float] = {}
        for pool in self._pools:
            for upstream in pool:
                values[upstream.dial] = 1.0 if upstream.healthy() else 0.0
        for dial, value in values.items():
            family.add_metric([dial], value)
        yield family
