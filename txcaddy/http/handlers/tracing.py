"""``tracing`` (``http.handlers.tracing``): one OpenTelemetry server span per request.

Follows Caddy 2.6.2's ``modules/caddyhttp/tracing`` (``module.go``, ``tracer.go``,
``tracerprovider.go``), which wraps the next handlers in otelhttp v0.34's handler:

* the span is named by ``span`` (``"handler"`` when empty), kind SERVER, and continues
  the W3C trace context (``traceparent``/``tracestate``) and ``baggage`` of the request;
* the server span's context is then written into the *request's* header fields, so
  ``reverse_proxy`` (which copies them) sends upstreams a ``traceparent`` naming it;
* its attributes are otelhttp's of that era (semantic conventions v1.12): ``http.method``,
  ``http.target``, ``http.scheme``, ``http.host``, ``http.flavor``, ``http.server_name``
  (the span name), ``http.user_agent``, ``http.request_content_length``,
  ``http.client_ip`` (first ``X-Forwarded-For``), ``net.transport``, ``net.peer.ip``/``port``,
  ``net.host.name``/``ip``/``port``, ``enduser.id`` (Basic auth user); after the handlers,
  ``http.status_code``, ``http.wrote_bytes``, ``http.read_bytes`` and the span status
  (error for 5xx and for codes that are no HTTP status; 4xx leave it unset on a server
  span). When the handlers fail before writing (their error is answered by the server's
  error routes, outside the span) no status is recorded, as with Caddy;
* all tracing handlers of a service share one tracer provider (Caddy's
  ``globalTracerProvider``), made by the first handler loaded and flushed and shut down
  when the last one is unloaded, so a reload keeps it;
* the exporter is OTLP over gRPC (Caddy's ``otlptracegrpc``), configured only by the
  standard ``OTEL_*`` environment variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``_INSECURE``,
  ``_CERTIFICATE``, ``_TIMEOUT``, ``_COMPRESSION``, ``OTEL_BSP_*``, ``OTEL_SERVICE_NAME``,
  ``OTEL_RESOURCE_ATTRIBUTES``...), spans sent in batches from the SDK's own thread.

Caddy 2.6.2 sets no ``{http.vars.trace_id}`` placeholder and logs no trace id (both came
later), so neither does this handler. The OpenTelemetry packages are the optional extra
``txcaddy[tracing]`` (the gRPC exporter brings grpcio and protobuf, tens of MB): they
are imported when a config first uses ``tracing``, and a config that does without them
is refused with a ``ConfigError`` saying what to install.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy import __version__
from txcaddy.config.registry import module
from txcaddy.config.schema import STRING, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler

__all__ = ["Tracing", "TracerProviders", "DEFAULT_SPAN_NAME", "MISSING_MESSAGE", "server_attributes"]

#: The span name when ``span`` is empty (Caddy's ``defaultSpanName``).
DEFAULT_SPAN_NAME = "handler"

#: The instrumentation scope spans are reported under.
SCOPE_NAME = "txcaddy.http.handlers.tracing"

MISSING_MESSAGE = (
    "tracing: the OpenTelemetry SDK is not installed; install txcaddy's 'tracing' extra "
    "(pip install 'txcaddy[tracing]': opentelemetry-sdk, opentelemetry-exporter-otlp-proto-grpc)"
)

_log = Logger(namespace="txcaddy.tracing")


class TracerProviders:
    """The service's one tracer provider, shared by its tracing handlers (Caddy's
    ``globalTracerProvider``): counted users, shut down when the last one leaves.

    @ivar make_processor: builds the span processor of a new provider; None gives the
        batching OTLP/gRPC exporter configured from the environment. Tests put a
        ``SimpleSpanProcessor`` over an ``InMemorySpanExporter`` here.
    @ivar provider: the live ``TracerProvider``, or None.
    @ivar users: how many loaded tracing handlers use it.
    """

    make_processor: Callable[[], Any] | None = None

    def __init__(self) -> None:
        self.provider: Any = None
        self.users = 0

    def acquire(self) -> Any:
        """The shared provider, made on first use; one more user."""
        self.users += 1
        if self.provider is None:
            self.provider = _new_provider(self.make_processor)
        return self.provider

    def release(self, reactor: Any = None) -> Deferred[None] | None:
        """One user fewer; the last one flushes and shuts the provider down.

        Exporting can block on the network, so with a reactor it runs in its thread pool.
        """
        if self.users > 0:
            self.users -= 1
        if self.users or self.provider is None:
            return None
        provider, self.provider = self.provider, None

        def shutdown() -> None:
            if not provider.force_flush():
                _log.warn("tracing: not every span could be exported before shutdown")
            provider.shutdown()

        if reactor is None or not hasattr(reactor, "getThreadPool"):
            shutdown()
            return None
        from twisted.internet.threads import deferToThreadPool

        return deferToThreadPool(reactor, reactor.getThreadPool(), shutdown)


def _new_provider(make_processor: Callable[[], Any] | None) -> Any:
    """A ``TracerProvider`` with txcaddy's resource over the SDK's default one (env included)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    # Caddy merges resource.Default() (service.name, telemetry.sdk.*, OTEL_RESOURCE_ATTRIBUTES)
    # with webengine.name/version (semantic conventions v1.7).
    resource = Resource.create({"webengine.name": "txcaddy", "webengine.version": __version__})
    provider = TracerProvider(resource=resource)
    if make_processor is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = make_processor()
    provider.add_span_processor(processor)
    return provider


class _HeadersGetter:
    """The propagators' view of our ``Headers`` (a ``Getter``)."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = carrier.get_all(key)
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return list(carrier.names())


class _HeadersSetter:
    """The propagators' writer into our ``Headers`` (a ``Setter``)."""

    def set(self, carrier: Headers, key: str, value: str) -> None:
        carrier.set(key, value)


_GETTER = _HeadersGetter()
_SETTER = _HeadersSetter()


@implementer(IHandler)
class Tracing:
    """``http.handlers.tracing``: a server span around the next handlers.

    @ivar span_name: the name of every span (``DEFAULT_SPAN_NAME`` when configured empty).
    @ivar provider: the service's shared ``TracerProvider`` the spans come from.
    """

    def __init__(self, span_name: str, provider: Any, propagator: Any) -> None:
        self.span_name = span_name or DEFAULT_SPAN_NAME
        self.provider = provider
        self.tracer = provider.get_tracer(SCOPE_NAME, __version__)
        self.propagator = propagator

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        from opentelemetry.trace import SpanKind, set_span_in_context

        parent = self.propagator.extract(request.headers, getter=_GETTER)
        span = self.tracer.start_span(
            self.span_name, context=parent, kind=SpanKind.SERVER,
            attributes=server_attributes(request, self.span_name),
        )
        # As Caddy: the request now carries the server span's context for what comes next.
        self.propagator.inject(request.headers, context=set_span_in_context(span, parent), setter=_SETTER)
        body = request.body
        body_before = body.received - body.buffered

        def end(_: Any = None) -> None:
            _end_span(span, response, body.received - body.buffered - body_before)

        def done(result: Any) -> Any:
            if isinstance(result, Failure) or response.finished or response.lost is not None:
                end()
            else:
                response.on_finish(end)
            return result

        try:
            result = next(request, response)
        except BaseException:
            end()
            raise
        if isinstance(result, Deferred):
            return result.addBoth(done)
        done(result)
        return result


def _end_span(span: Any, response: Response, read: int) -> None:
    """otelhttp's ``setAfterServeAttributes``, then the end of the span."""
    from opentelemetry.trace import Status, StatusCode

    if read > 0:
        span.set_attribute("http.read_bytes", read)
    if response.size > 0:
        span.set_attribute("http.wrote_bytes", response.size)
    status = response.status
    if status > 0:
        span.set_attribute("http.status_code", status)
        error, description = span_status(status)
        if error:
            span.set_status(Status(StatusCode.ERROR, description or None))
    span.end()


#: The status codes Go's net/http names, by class (semconv's ``validRangesPerCategory``).
_VALID_RANGES = {
    1: ((100, 103),),
    2: ((200, 208), (226, 226)),
    3: ((300, 305), (307, 308)),
    4: ((400, 418), (421, 426), (428, 429), (431, 431), (451, 451)),
    5: ((500, 508), (510, 511)),
}


def span_status(code: int) -> tuple[bool, str]:
    """Whether a server span with response status ``code`` is an error, and why.

    5xx are errors; a code outside the ranges HTTP defines is an error "Invalid HTTP
    status code N"; everything else (4xx included, on a server span) leaves it unset.
    """
    ranges = _VALID_RANGES.get(code // 100, ())
    if not any(low <= code <= high for low, high in ranges):
        return True, f"Invalid HTTP status code {code}"
    return code >= 500, ""


def _ip_name_port(host_port: str) -> tuple[str, str, int]:
    """Go's ``hostIPNamePort``: split ``host[:port]``, the host as an IP when it is one."""
    host, port_text = _split_host_port(host_port)
    if host is None:
        host, port_text = host_port, ""
    ip, name = _ip_or_name(host)
    port = int(port_text) if port_text.isdigit() and port_text.isascii() and int(port_text) < 65536 else 0
    return ip, name, port


def _ip_or_name(host: str) -> tuple[str, str]:
    """``(ip, "")`` when ``host`` is an IP address (as Go prints it), else ``("", host)``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "", host
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped if mapped is not None else address), ""


def _split_host_port(text: str) -> tuple[str | None, str]:
    """Go's ``net.SplitHostPort``: (None, "") where it would fail (no port, bad brackets)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":" or "[" in text[1:] or "]" in text[end + 1 :]:
            return None, ""
        return text[1:end], text[end + 2 :]
    colon = text.rfind(":")
    if colon < 0 or ":" in text[:colon]:
        return None, ""
    return text[:colon], text[colon + 1 :]


def _basic_auth_user(authorization: str | None) -> str | None:
    """Go's ``Request.BasicAuth`` user name, or None."""
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:], validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return None
    user, sep, _ = decoded.partition(":")
    return user if sep else None


def server_attributes(request: Request, server_name: str) -> dict[str, Any]:
    """The attributes otelhttp v0.34 starts a server span with (semantic conventions v1.12)."""
    attributes: dict[str, Any] = {"net.transport": "ip_tcp"}
    remote = request.remote
    if remote and remote[0]:
        peer_ip, peer_name = _ip_or_name(remote[0])
        if peer_ip:
            attributes["net.peer.ip"] = peer_ip
        if peer_name:
            attributes["net.peer.name"] = peer_name
        if remote[1]:
            attributes["net.peer.port"] = remote[1]
    host_ip, host_name, host_port = _ip_name_port(request.host)
    if host_ip:
        attributes["net.host.ip"] = host_ip
    if host_name:
        attributes["net.host.name"] = host_name
    if host_port:
        attributes["net.host.port"] = host_port
    user = _basic_auth_user(request.headers.get("Authorization"))
    if user is not None:
        attributes["enduser.id"] = user
    attributes["http.target"] = request.request_uri
    if server_name:
        attributes["http.server_name"] = server_name
    forwarded = request.headers.get_all("X-Forwarded-For")
    if forwarded:
        address = forwarded[0]
        comma = address.find(",")
        attributes["http.client_ip"] = address[:comma] if comma > 0 else address
    user_agent = request.headers.get("User-Agent")
    if user_agent:
        attributes["http.user_agent"] = user_agent
    length = request.body.length
    if length is not None and length > 0:
        attributes["http.request_content_length"] = length
    attributes["http.scheme"] = request.scheme
    if request.host:
        attributes["http.host"] = request.host
    major, minor = request.version
    if major == 1:
        attributes["http.flavor"] = f"1.{minor}"
    elif major == 2:
        attributes["http.flavor"] = "2"
    attributes["http.method"] = request.method or "GET"
    return attributes


_SCHEMA = Obj({"span": STRING}, strict=True, name="tracing.Tracing")


@module("http.handlers.tracing", schema=_SCHEMA)
def load_tracing(config: dict[str, Any], context: Any) -> Tracing:
    try:
        from opentelemetry.baggage.propagation import W3CBaggagePropagator
        from opentelemetry.propagators.composite import CompositePropagator
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        raise ConfigError(MISSING_MESSAGE) from None
    providers = context.runtime.get(TracerProviders)
    try:
        provider = providers.acquire()
    except ImportError:
        providers.users -= 1
        raise ConfigError(MISSING_MESSAGE) from None
    reactor = getattr(context, "reactor", None)
    context.on_unload(lambda: providers.release(reactor))
    propagator = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
    return Tracing(config.get("span") or "", provider, propagator)
