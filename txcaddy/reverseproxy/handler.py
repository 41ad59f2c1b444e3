"""``http.handlers.reverse_proxy``: the proxy loop (Caddy's ``reverseproxy.go``).

Per client request the handler prepares the upstream request once (header
rules, ``rewrite``), then loops: select an upstream, send the request, and on
failure decide whether to try again (``lb_try_duration``, ``lb_retries``,
``lb_retry_match``). A request is only retried when nothing of it reached the
failed upstream, or it has no body and the retry rules allow it: a body is
never sent twice. The response streams back as it arrives; a ``101`` turns the
two connections into a byte tunnel. ``handle_response`` handlers (``handle_response.py``)
may change its status or answer with routes instead.

The pieces live beside this module, one concern each: ``_call`` (one request's
proxy loop), ``selection`` (policies), ``hosts`` (shared upstream state), ``health``
(active and passive checks), ``upstreams`` (dynamic upstreams), ``headers`` (header rules),
``transport`` (the HTTP/1.1 client and pools), ``streaming`` (body pumps,
flushing), ``_splice`` (the upgrade tunnel).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import classImplements

from txcaddy._reactor import default_reactor
from txcaddy.config.placeholders import Template
from txcaddy.config.registry import module
from txcaddy.config.schema import (
    ANY,
    BOOL,
    DURATION,
    INT,
    MATCHER_SET,
    ROUTES,
    STRING,
    STRINGS,
    ListOf,
    MapOf,
    Module,
    Nullable,
    Obj,
    Spec,
)
from txcaddy.config.values import duration_seconds, integer
from txcaddy.errors import ConfigError
from txcaddy.http.handlers.headers import HEADERS_SCHEMA, load_headers
from txcaddy.http.handlers.rewrite import REWRITE_SCHEMA, load_rewrite
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.http.routing import any_set_matches
from txcaddy.interfaces import IHandler
from txcaddy.metrics import Metrics
from txcaddy.reverseproxy import headers as proxy_headers
from txcaddy.reverseproxy._call import _ProxyCall
from txcaddy.reverseproxy._splice import Tunnels
from txcaddy.reverseproxy.handle_response import (
    ResponseHandler,
    load_response_handlers,
)
from txcaddy.reverseproxy.health import PassiveHealth, load_active_health
from txcaddy.reverseproxy.hosts import HostRegistry, Upstream
from txcaddy.reverseproxy.selection import load_selection_policy
from txcaddy.reverseproxy.transport import (
    DialError,
    UpstreamAddress,
)
from txcaddy.reverseproxy.upstreams import attach, lookup_srv_upstream

__all__ = ["PassiveHealth", "ReverseProxyHandler", "load_reverse_proxy"]


class _Target:
    """An upstream's dial address, parsed once when it has no placeholders."""

    __slots__ = ("template", "address", "hostport", "host", "port", "network", "error")

    def __init__(self, dial: str) -> None:
        self.template = Template(dial) if "{" in dial else None
        self.address: UpstreamAddress | None = None
        self.error = ""
        if self.template is None:
            self._parse(dial)

    def _parse(self, dial: str) -> None:
        self.error = ""
        network, address = "tcp", dial
        if "/" in dial:
            network, _, address = dial.partition("/")
            network = network.lower()
        if network == "unix":
            self.address = UpstreamAddress.parse(dial)
            self.network, self.hostport, self.host, self.port = "unix", address, address, ""
            return
        try:
            parsed = UpstreamAddress.parse(address)
        except ValueError:
            self.address = None
            host, sep, port = address.rpartition(":")
            if sep and "-" in port:
                self.error = f"dial address must represent precisely one socket: {dial}"
            else:
                self.error = f"invalid dial address {dial}"
            return
        self.address = parsed
        self.network = network
        self.host = parsed.host
        self.port = str(parsed.port)
        self.hostport = f"[{parsed.host}]:{parsed.port}" if ":" in parsed.host else f"{parsed.host}:{parsed.port}"

    def resolve(self, request: Request) -> _Target:
        """The target for this request (placeholders filled in)."""
        if self.template is None:
            return self
        target = _Target("")
        target._parse(self.template.render(request, None, empty_unknown=True))
        return target

    @property
    def network_address(self) -> str:
        """``{http.reverse_proxy.upstream.address}``: Caddy's JoinNetworkAddress."""
        if self.network == "unix":
            return f"unix/{self.hostport}"
        return self.hostport if self.network == "tcp" else f"{self.network}/{self.hostport}"


class ReverseProxyHandler:
    """The configured proxy; one ``_ProxyCall`` per client request does the work.

    ``transport`` provides ``IUpstreamTransport``.
    """

    def __init__(
        self,
        *,
        clock: Any,
        transport: Any,
        upstreams: list[Upstream],
        policy: Any,
        retries: int = 0,
        try_duration: float = 0.0,
        try_interval: float = 0.0,
        retry_match: list[Any] | None = None,
        passive: PassiveHealth | None = None,
        flush_interval: float = 0.0,
        trusted: Any = None,
        request_ops: Any = None,
        response_ops: Any = None,
        response_require: Any = None,
        rewrite: Any = None,
        buffer_requests: bool = False,
        buffer_responses: bool = False,
        max_buffer_size: int = 0,
        tunnels: Any = None,
        stream_timeout: float = 0.0,
        handle_response: list[ResponseHandler] | None = None,
    ) -> None:
        self.clock = clock
        self.transport = transport
        self.upstreams = upstreams
        self.policy = policy
        self.retries = retries
        self.try_duration = try_duration
        self.try_interval = try_interval
        self.retry_match = retry_match
        self.passive = passive
        self.flush_interval = flush_interval
        # No trusted proxies unless given: X-Forwarded-* from the client are replaced.
        self.trusted = trusted if trusted is not None else proxy_headers.TrustedProxies.from_config(None)
        self.request_ops = request_ops
        self.response_ops = response_ops
        self.response_require = response_require
        self.rewrite = rewrite
        self.buffer_requests = buffer_requests
        self.buffer_responses = buffer_responses
        self.max_buffer_size = max_buffer_size
        self.tunnels = tunnels
        self.stream_timeout = stream_timeout
        self.handle_response = handle_response or []
        self.compression = bool(transport.compression)

    #: The ``UpstreamProvider`` (upstreams.py) of dynamic upstreams and ``lookup_srv``; None: static only.
    dynamic: Any = None

    def serve(self, request: Request, response: Response, next: Any) -> Deferred[None]:
        return _ProxyCall(self, request, response, next).start()

    @staticmethod
    def target_of(upstream: Upstream) -> _Target:
        target = upstream.target
        if target is None:
            target = upstream.target = _Target(upstream.dial)
        return target

    def try_again(self, start: float, retries: int, error: BaseException, request: Request) -> bool:
        """Caddy's ``tryAgain`` (without the wait, which the caller schedules)."""
        if not self.try_duration and not self.retries:
            return False
        if self.try_duration and self.clock.seconds() - start >= self.try_duration:
            return False
        if self.retries and retries >= self.retries:
            return False
        if not isinstance(error, DialError):
            if self.retry_match is None:
                if request.method != "GET":
                    return False
            elif not any_set_matches(self.retry_match, request):
                return False
        return True


classImplements(ReverseProxyHandler, IHandler)




def _seconds(value: Any, name: str) -> float:
    return duration_seconds(value, f"reverse_proxy: {name}") or 0.0


def _int(value: Any, name: str) -> int:
    return integer(value, f"reverse_proxy: {name}")


_KNOWN_FIELDS = frozenset({
    "transport", "circuit_breaker", "load_balancing", "health_checks", "upstreams", "dynamic_upstreams",
    "flush_interval", "trusted_proxies", "headers", "buffer_requests", "buffer_responses",
    "max_buffer_size", "rewrite", "handle_response", "stream_timeout", "stream_close_delay",
})


#: ``reverseproxy.Handler``.
REVERSE_PROXY_SCHEMA: Spec = Obj(
    {
        "transport": Module("http.reverse_proxy.transport", "protocol"),
        "circuit_breaker": ANY,
        "load_balancing": Obj(
            {"selection_policy": Module("http.reverse_proxy.selection_policies", "policy"), "retries": INT,
             "try_duration": DURATION, "try_interval": DURATION, "retry_match": ListOf(MATCHER_SET)},
            strict=True, name="reverseproxy.LoadBalancing",
        ),
        "health_checks": Obj(
            {
                "active": Obj(
                    {"path": STRING, "uri": STRING, "port": INT, "headers": MapOf(STRINGS), "interval": DURATION,
                     "timeout": DURATION, "max_size": INT, "expect_status": INT, "expect_body": STRING},
                    strict=True, name="reverseproxy.ActiveHealthChecks",
                ),
                "passive": Obj(
                    {"fail_duration": DURATION, "max_fails": INT, "unhealthy_request_count": INT,
                     "unhealthy_status": ListOf(INT), "unhealthy_latency": DURATION},
                    strict=True, name="reverseproxy.PassiveHealthChecks",
                ),
            },
            strict=True, name="reverseproxy.HealthChecks",
        ),
        "upstreams": ListOf(Obj({"dial": STRING, "lookup_srv": STRING, "max_requests": INT}, strict=True,
                                name="reverseproxy.Upstream")),
        "dynamic_upstreams": Module("http.reverse_proxy.upstreams", "source"),
        "flush_interval": DURATION,
        "trusted_proxies": STRINGS,
        "headers": HEADERS_SCHEMA,
        "buffer_requests": BOOL,
        "buffer_responses": BOOL,
        "max_buffer_size": INT,
        "stream_timeout": DURATION,
        "stream_close_delay": DURATION,
        "rewrite": REWRITE_SCHEMA,
        "handle_response": ListOf(Obj(
            {"match": Obj({"status_code": ListOf(INT), "headers": MapOf(Nullable(STRINGS))}), "status_code": ANY,
             "routes": ROUTES},
            name="reverseproxy.ResponseHandler",
        )),
    },
    name="reverseproxy.Handler",
)


@module("http.handlers.reverse_proxy", schema=REVERSE_PROXY_SCHEMA)
def load_reverse_proxy(config: dict[str, Any], context: Any) -> ReverseProxyHandler:
    unknown = sorted(set(config) - _KNOWN_FIELDS)
    if unknown:
        raise ConfigError(f"reverse_proxy: unknown field {unknown[0]!r}")
    reactor = default_reactor(context.reactor)
    hosts = context.runtime.get(HostRegistry)
    if config.get("circuit_breaker") is not None:
        raise ConfigError("reverse_proxy: circuit_breaker: no circuit breaker modules are available")
    handle_response = load_response_handlers(config.get("handle_response"), context)

    transport = _load_transport(config.get("transport"), context, reactor)

    health = config.get("health_checks") or {}
    passive = PassiveHealth(health["passive"], reactor, context.log) if health.get("passive") is not None else None

    upstreams: list[Upstream] = []
    lookup_srv = False
    for entry in config.get("upstreams") or ():
        if not isinstance(entry, dict):
            raise ConfigError("reverse_proxy: each upstream must be an object")
        if entry.get("lookup_srv"):  # deprecated SRV upstream: upstreams.py
            upstreams.append(lookup_srv_upstream(entry, passive, bool(health.get("active")), hosts))
            lookup_srv = True
            continue
        dial = entry.get("dial")
        if not isinstance(dial, str) or not dial:
            raise ConfigError("reverse_proxy: an upstream needs a dial address")
        max_requests = _int(entry.get("max_requests"), "max_requests")
        if passive is not None and passive.unhealthy_request_count and not max_requests:
            max_requests = passive.unhealthy_request_count
        upstreams.append(Upstream(dial, hosts.acquire(dial), max_requests, passive))

    if health.get("active") is not None:  # a service probing the static upstreams (health.py)
        load_active_health(health["active"], upstreams, transport, reactor, context)

    lb = config.get("load_balancing") or {}
    policy = load_selection_policy(lb.get("selection_policy"), context)
    retry_match = context.load_matcher_sets(lb["retry_match"]) if lb.get("retry_match") else None

    flush_raw = config.get("flush_interval")
    flush_interval = -1.0 if flush_raw == -1 else _seconds(flush_raw, "flush_interval")

    request_ops = response_ops = require = None
    if config.get("headers") is not None:
        header_handler = load_headers(config["headers"], context)
        request_ops = header_handler.request_ops
        response_ops = header_handler.response_ops
        require = header_handler.require

    rewrite = None
    if config.get("rewrite") is not None:
        rewrite = load_rewrite(config["rewrite"], context)

    tunnels = Tunnels(reactor, close_delay=_seconds(config.get("stream_close_delay"), "stream_close_delay"))
    stream_timeout = _seconds(config.get("stream_timeout"), "stream_timeout")

    handler = ReverseProxyHandler(
        clock=reactor,
        transport=transport,
        upstreams=upstreams,
        policy=policy,
        retries=_int(lb.get("retries"), "retries"),
        try_duration=_seconds(lb.get("try_duration"), "try_duration"),
        try_interval=_seconds(lb.get("try_interval"), "try_interval"),
        retry_match=retry_match,
        passive=passive,
        flush_interval=flush_interval,
        trusted=proxy_headers.TrustedProxies.from_config(config.get("trusted_proxies")),
        request_ops=request_ops,
        response_ops=response_ops,
        response_require=require,
        rewrite=rewrite,
        buffer_requests=bool(config.get("buffer_requests")),
        buffer_responses=bool(config.get("buffer_responses")),
        max_buffer_size=_int(config.get("max_buffer_size"), "max_buffer_size"),
        tunnels=tunnels,
        stream_timeout=stream_timeout,
        handle_response=handle_response,
    )

    if config.get("dynamic_upstreams") is not None or lookup_srv:
        handler.dynamic = attach(handler, config.get("dynamic_upstreams"), context, _Target)

    upstreams_healthy = context.runtime.get(Metrics).upstreams()
    upstreams_healthy.track(upstreams)

    def unload() -> None:
        upstreams_healthy.untrack(upstreams)
        tunnels.close_all()
        if passive is not None:
            passive.unload()
        for upstream in upstreams:
            hosts.release(upstream.host)
        # The transport is released by its own hook (``TransportRegistry``): closed once no
        # loaded config uses it.

    context.on_unload(unload)
    return handler


class TransportRegistry:
    """The transports (and so the upstream connection pools) of a service's loaded configs.

    A reload loads the new config before it unloads the old one; a ``reverse_proxy`` at the
    same place in the config with the same ``transport`` JSON gets the old config's transport
    back, so its idle upstream connections are reused instead of dialled again (Caddy builds a
    new ``http.Transport`` per config). A transport is closed when no loaded config uses it.
    Kept per service in its ``Runtime``.
    """

    def __init__(self) -> None:
        self._transports: dict[str, list[Any]] = {}  # key -> [transport, users]

    def acquire(self, key: str, build: Any) -> Any:
        entry = self._transports.get(key)
        if entry is None:
            entry = self._transports[key] = [build(), 0]
        entry[1] += 1
        return entry[0]

    def release(self, key: str) -> Any:
        """Drop one use; returns what closing the transport returns when it was the last."""
        entry = self._transports.get(key)
        if entry is None:
            return None
        entry[1] -= 1
        if entry[1] > 0:
            return None
        del self._transports[key]
        return entry[0].close_idle()


def _load_transport(config: Any, context: Any, reactor: Any) -> Any:
    if config is None:
        config = {"protocol": "http"}
    registry = context.runtime.get(TransportRegistry)
    # Where the handler is plus its transport JSON; a second reverse_proxy at the same path in
    # one config (two handlers in one route) gets its own transport, as in Caddy.
    where = ".".join(context.path)
    seen = context.__dict__.setdefault("_transport_keys", {})
    seen[where] = seen.get(where, 0) + 1
    key = f"{where}#{seen[where]} " + json.dumps(config, sort_keys=True, default=str)
    transport = registry.acquire(
        key, lambda: context.load_module("http.reverse_proxy.transport", config, "protocol"))
    context.on_unload(lambda: registry.release(key))
    return transport

