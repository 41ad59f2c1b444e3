"""The HTTP series of servers with the ``metrics`` option (Caddy's ``caddyhttp/metrics.go``).

Caddy wraps each handler of a server's top-level routes (``routes.go:
wrapMiddleware``; handlers inside a ``subroute`` are not wrapped, so Caddyfile
sites report ``handler="subroute"``). Per request through a wrapped handler:
``requests_in_flight`` goes up and back down; ``requests_total`` counts it; a
handler error counts in ``request_errors_total`` and observes nothing else;
otherwise the duration, the request and response sizes are observed under
``code`` (0 and 200 read ``"200"``) and ``method`` (the standard verbs, else
``OTHER``). ``response_duration_seconds`` is the time to the response head.

The series are counted in plain Python numbers (the reactor is one thread) and
turned into prometheus_client metric families only when scraped. Whether a
server is instrumented is decided once at config load: servers without
``metrics`` run their handlers unwrapped. prometheus_client is imported by ``collect``, at the
first scrape: counting needs none of it.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.http.routing import Route, RouteList
from txcaddy.interfaces import IHandler

if TYPE_CHECKING:
    from prometheus_client.metrics_core import HistogramMetricFamily, Metric

#: client_golang's ``DefBuckets`` (seconds) and ``ExponentialBuckets(256, 4, 8)`` (bytes).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0)

_METHODS = {m: m for m in ("GET", "HEAD", "PUT", "POST", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")}
_METHODS.update({m.lower(): m for m in list(_METHODS)})


def sanitize_method(method: str) -> str:
    """Caddy's ``SanitizeMethod``: a standard verb in upper case, anything else ``OTHER``."""
    return _METHODS.get(method, "OTHER")


def sanitize_code(status: int) -> str:
    """Caddy's ``SanitizeCode``: 0 (nothing written) reads as 200."""
    return "200" if status in (0, 200) else str(status)


def request_size(request: Request) -> int:
    """client_golang's approximate request size: URL, method, proto, header fields, Host, body length."""
    size = len(request.raw_path) + len(request.method) + len(request.proto) + len(request.host)
    if request.query:
        size += 1 + len(request.query)
    # A plain loop: faster than joining or summing with generators for a handful of fields.
    for name, values in request.headers.lists():
        if name == "Host":  # Go keeps the Host out of the header map
            continue
        size += len(name)
        for value in values:
            size += len(value)
    length = request.body.length
    if length is not None and length > 0:
        size += length
    return size


class StatusSeries:
    """The four histograms of one (server, handler, code, method): bucket counts and sums.

    Counts are per bucket (not cumulative), the last one +Inf; kept flat in slots
    because they are updated on every request.
    """

    __slots__ = ("duration", "duration_sum", "ttfb", "ttfb_sum", "request_size", "request_size_sum",
                 "response_size", "response_size_sum")

    def __init__(self) -> None:
        self.duration = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.ttfb = [0] * (len(DURATION_BUCKETS) + 1)
        self.ttfb_sum = 0.0
        self.request_size = [0] * (len(SIZE_BUCKETS) + 1)
        self.request_size_sum = 0.0
        self.response_size = [0] * (len(SIZE_BUCKETS) + 1)
        self.response_size_sum = 0.0


class HandlerSeries:
    """The counts of one (server, handler) and its histograms by (status, method)."""

    __slots__ = ("server", "handler", "in_flight", "requests", "errors", "by_status")

    def __init__(self, server: str, handler: str) -> None:
        self.server = server
        self.handler = handler
        self.in_flight = 0
        self.requests = 0
        self.errors = 0
        self.by_status: dict[tuple[int, str], StatusSeries] = {}

    def status_series(self, status: int, method: str) -> StatusSeries:
        """The histograms for a raw status and method (found by the raw pair, made once)."""
        key = (status, method)
        series = self.by_status.get(key)
        if series is None:
            labels = (sanitize_code(status), sanitize_method(method))
            # Statuses/methods that sanitise alike share one series.
            for (other_status, other_method), other in self.by_status.items():
                if (sanitize_code(other_status), sanitize_method(other_method)) == labels:
                    series = other
                    break
            else:
                series = StatusSeries()
            self.by_status[key] = series
        return series


class HTTPMetrics:
    """A prometheus_client collector of every instrumented (server, handler) of a service.

    The series live as long as the service (Caddy's never go away either), so
    counts carry across config reloads.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock: Callable[[], float] = clock or time.monotonic
        self._series: dict[tuple[str, str], HandlerSeries] = {}

    def series(self, server: str, handler: str) -> HandlerSeries:
        key = (server, handler)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = HandlerSeries(server, handler)
        return found

    def describe(self) -> list[Metric]:
        return []  # families only appear once something is instrumented

    def collect(self) -> Iterator[Metric]:
        # imported on first use (module docstring)
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
        from prometheus_client.utils import floatToGoString

        duration_bounds = [floatToGoString(bound) for bound in (*DURATION_BUCKETS, float("inf"))]
        size_bounds = [floatToGoString(bound) for bound in (*SIZE_BUCKETS, float("inf"))]
        basic = ["server", "handler"]
        in_flight = GaugeMetricFamily(
            "caddy_http_requests_in_flight", "Number of requests currently handled by this server.", labels=basic)
        errors = CounterMetricFamily(
            "caddy_http_request_errors", "Number of requests resulting in middleware errors.", labels=basic)
        requests = CounterMetricFamily("caddy_http_requests", "Counter of HTTP(S) requests made.", labels=basic)
        status_labels = ["server", "handler", "code", "method"]
        duration = HistogramMetricFamily(
            "caddy_http_request_duration_seconds", "Histogram of round-trip request durations.",
            labels=status_labels)
        request_size = HistogramMetricFamily(
            "caddy_http_request_size_bytes", "Total size of the request. Includes body", labels=status_labels)
        response_size = HistogramMetricFamily(
            "caddy_http_response_size_bytes", "Size of the returned response.", labels=status_labels)
        ttfb = HistogramMetricFamily(
            "caddy_http_response_duration_seconds", "Histogram of times to first byte in response bodies.",
            labels=status_labels)
        for series in list(self._series.values()):
            names = [series.server, series.handler]
            in_flight.add_metric(names, series.in_flight)
            errors.add_metric(names, series.errors)
            requests.add_metric(names, series.requests)
            seen: set[int] = set()
            for (status, method), status_series in list(series.by_status.items()):
                if id(status_series) in seen:
                    continue
                seen.add(id(status_series))
                labels = [*names, sanitize_code(status), sanitize_method(method)]
                _add(duration, labels, status_series.duration, status_series.duration_sum, duration_bounds)
                _add(request_size, labels, status_series.request_size, status_series.request_size_sum,
                     size_bounds)
                _add(response_size, labels, status_series.response_size, status_series.response_size_sum,
                     size_bounds)
                _add(ttfb, labels, status_series.ttfb, status_series.ttfb_sum, duration_bounds)
        yield from (in_flight, errors, requests, duration, request_size, response_size, ttfb)


def _add(
    family: HistogramMetricFamily, labels: list[str], counts: list[int], total: float, bounds: Sequence[str]
) -> None:
    """Add one histogram series; ``bounds`` are its buckets' ``le`` labels, ``+Inf`` last."""
    if not any(counts):
        return  # like a client_golang vector child, a series exists once observed
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(bounds, counts, strict=True):
        cumulative += count
        buckets.append((bound, cumulative))
    family.add_metric(labels, buckets, total)


def _observe(
    series: HandlerSeries, request: Request, response: Response, start: float, now: float,
    _durations: tuple[float, ...] = DURATION_BUCKETS, _sizes: tuple[float, ...] = SIZE_BUCKETS,
    _fast_duration: float = DURATION_BUCKETS[0], _fast_size: float = SIZE_BUCKETS[0],
) -> None:
    """A request through a handler of ``series`` finished without an error: count and observe it."""
    series.in_flight -= 1
    series.requests += 1
    method = request.method
    status = response.status  # 0 when no head was written: Caddy reads it as 200
    found = series.by_status.get((status, method)) or series.status_series(status, method)
    head_time = response.head_time
    # The time to the head, when the head went out while this handler ran (a head the
    # server writes after the chain, an error status, is not the handler's).
    if head_time is not None and head_time >= start and response.head_sent:
        elapsed = head_time - start
        found.ttfb[0 if elapsed <= _fast_duration else bisect_left(_durations, elapsed)] += 1
        found.ttfb_sum += elapsed
    elapsed = now - start
    # Most observations fall in the first bucket: a comparison rather than a bisection.
    found.duration[0 if elapsed <= _fast_duration else bisect_left(_durations, elapsed)] += 1
    found.duration_sum += elapsed
    # request_size(), inlined: this runs on every request.
    size = len(request.raw_path) + len(method) + len(request.proto) + len(request.host)
    if request.query:
        size += 1 + len(request.query)
    for name, values in request.headers.lists():
        if name == "Host":  # Go keeps the Host out of the header map
            continue
        size += len(name)
        for value in values:
            size += len(value)
    length = request.body.length
    if length:  # None (unknown) and 0 add nothing
        size += length
    found.request_size[0 if size <= _fast_size else bisect_left(_sizes, size)] += 1
    found.request_size_sum += size
    size = response.size
    found.response_size[0 if size <= _fast_size else bisect_left(_sizes, size)] += 1
    found.response_size_sum += size


def _count_error(series: HandlerSeries) -> None:
    """The handler raised or its Deferred failed: an error, nothing observed."""
    series.in_flight -= 1
    series.requests += 1
    series.errors += 1


@implementer(IHandler)
class InstrumentedHandler:
    """A top-level handler of a server with ``metrics``, counted under (server, handler).

    No object is made per request: the start time travels as a callback argument, or,
    for the outermost wrapped handler of a request, on the request itself
    (``metrics_start``), the server telling this handler when the chain ends
    (``Request.chain_end``) rather than it adding Deferred callbacks of its own.
    The time to the head is stamped by the response (``Response.stamp_head``).
    """

    __slots__ = ("handler", "series", "clock")

    def __init__(self, handler: Any, series: HandlerSeries, clock: Callable[[], float]) -> None:
        self.handler = handler
        self.series = series
        self.clock = clock

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        clock = self.clock
        series = self.series
        series.in_flight += 1
        start = clock()
        if not response.head_sent:
            response.stamp_head(clock)
        outermost = request.chain_end is None
        if outermost:
            request.chain_end = self
            request.metrics_start = start
        try:
            result = self.handler.serve(request, response, next)
        except BaseException:
            if outermost:
                request.metrics_start = None
            _count_error(series)
            raise
        if isinstance(result, Deferred):
            if outermost:
                return result  # the server calls done()/failed() when it fires
            return result.addCallbacks(
                self._done, self._failed, callbackArgs=(request, response, start))
        if outermost:
            request.metrics_start = None
        _observe(series, request, response, start, clock())
        return None

    # The server's ``chain_end`` calls, for the outermost wrapped handler of a request.

    def done(self, request: Request, response: Response) -> None:
        start = request.metrics_start
        if start is not None:  # not counted yet
            request.metrics_start = None
            _observe(self.series, request, response, start, self.clock())

    def failed(self, request: Request, response: Response) -> None:
        if request.metrics_start is not None:
            request.metrics_start = None
            _count_error(self.series)

    # Deferred callbacks, for wrapped handlers run through ``next`` by another one.

    def _done(self, result: Any, request: Request, response: Response, start: float) -> Any:
        _observe(self.series, request, response, start, self.clock())
        return result

    def _failed(self, failure: Any) -> Any:
        _count_error(self.series)
        return failure

    def __repr__(self) -> str:
        return f"<InstrumentedHandler {self.series.handler} {self.handler!r}>"


def instrument_routes(
    routes: RouteList, route_configs: Sequence[Any] | None, server: str, metrics: HTTPMetrics
) -> RouteList:
    """``routes`` with every handler wrapped, labelled with its module name from ``route_configs``.

    ``route_configs`` is the server's ``routes`` JSON that ``routes`` was loaded from
    (the loader builds one handler per ``handle`` entry, in order).
    """
    configs = list(route_configs or ())
    wrapped = []
    for route, config in zip(routes.routes, configs, strict=True):
        handles = config.get("handle") or ()
        handlers = [
            InstrumentedHandler(handler, metrics.series(server, str(handle.get("handler"))), metrics.clock)
            for handler, handle in zip(route.handlers, handles, strict=True)
        ]
        wrapped.append(Route(handlers, route.matcher_sets, route.group, route.terminal))
    return RouteList(wrapped)
