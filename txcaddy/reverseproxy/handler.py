"""``http.handlers.reverse_proxy``: the proxy loop (Caddy's ``reverseproxy.go``).

Per client request the handler prepares the upstream request once (header
rules, ``rewrite``), then loops: select an upstream, send the request, and on
failure decide whether to try again (``lb_try_duration``, ``lb_retries``,
``lb_retry_match``). A request is only retried when nothing of it reached the
failed upstream, or it has no body and the retry rules allow it: a body is
never sent twice. The response streams back as it arrives; a ``101`` turns the
two connections into a byte tunnel. ``handle_response`` handlers (``handle_response.py``)
may change its status or answer with routes instead.

The pieces live beside this module, one concern each: ``selection``
(policies), ``hosts`` (shared upstream state), ``health`` (active and passive
checks), ``upstreams`` (dynamic upstreams), ``headers`` (header rules),
``transport`` (the HTTP/1.1 client and pools), ``streaming`` (body pumps,
flushing), ``_splice`` (the upgrade tunnel).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._go.time import Duration
from txcaddy._reactor import default_reactor
from txcaddy.config.placeholders import UNKNOWN, Template
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
from txcaddy.http.errors import AbortConnection, HandlerError
from txcaddy.http.handlers.headers import HEADERS_SCHEMA, load_headers, status_code_matches
from txcaddy.http.handlers.rewrite import REWRITE_SCHEMA, load_rewrite
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.http.routing import any_set_matches
from txcaddy.interfaces import IHandler
from txcaddy.metrics import Metrics
from txcaddy.reverseproxy import headers as proxy_headers
from txcaddy.reverseproxy._splice import Tunnels, start_tunnel
from txcaddy.reverseproxy.handle_response import (
    HandleResponseContext,
    ResponseHandler,
    discard_body,
    enter,
    leave,
    load_response_handlers,
    status_from,
)
from txcaddy.reverseproxy.health import PassiveHealth, load_active_health
from txcaddy.reverseproxy.hosts import HostRegistry, Upstream
from txcaddy.reverseproxy.selection import load_selection_policy
from txcaddy.reverseproxy.streaming import (
    BufferedBody,
    RequestBodyPump,
    ResponseRelay,
    effective_flush_interval,
)
from txcaddy.reverseproxy.transport import (
    CHUNKED,
    DialError,
    Exchange,
    ResponseHead,
    ResponseHeaderTimeout,
    UpstreamAddress,
)
from txcaddy.reverseproxy.upstreams import attach, lookup_srv_upstream

__all__ = ["PassiveHealth", "ReverseProxyHandler", "load_reverse_proxy"]

#: Where a request's proxy call publishes its {http.reverse_proxy.*} values (lazily).
_PLACEHOLDERS = "http.reverse_proxy"
# The timing placeholders (and their ``_ms`` forms) → the _Published attribute in seconds.
_TIMINGS = {"upstream.latency": "latency", "upstream.duration": "upstream_duration", "duration": "elapsed"}

log = Logger(namespace="txcaddy.reverseproxy")

#: Response bodies longer than this (or of unknown length) are paced by the client.
STREAM_THRESHOLD = 64 * 1024
_DEFAULT_TRY_INTERVAL = 0.25  # Caddy's lb_try_interval when lb_try_duration is set


class ClientGone(Exception):
    """The client went away: nothing more is written (Caddy logs it as 499)."""


class _NoUpstream(HandlerError):
    """``no upstreams available``: not a dial error, so non-GET requests are not retried."""

    def __init__(self) -> None:
        super().__init__(503, "no upstreams available")


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
        target = _Target.__new__(_Target)
        target.template = None
        target._parse(self.template.render(request, None, empty_unknown=True))
        return target

    @property
    def network_address(self) -> str:
        """``{http.reverse_proxy.upstream.address}``: Caddy's JoinNetworkAddress."""
        if self.network == "unix":
            return f"unix/{self.hostport}"
        return self.hostport if self.network == "tcp" else f"{self.network}/{self.hostport}"


@implementer(IHandler)
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


class _Published:
    """What a request's {http.reverse_proxy.*} placeholders show, formatted only when read.

    Kept apart from ``_ProxyCall`` (which refers to the request) so that the request's
    placeholders refer to nothing that refers back: no reference cycle per request.
    """

    __slots__ = ("target", "upstream", "counts", "latency", "upstream_duration", "elapsed", "status",
                 "status_text", "headers")

    def __init__(self) -> None:
        self.target: _Target | None = None
        self.upstream: Upstream | None = None
        self.counts = (0, 0)  # the upstream's active requests and fails when it was chosen
        self.latency: float | None = None
        self.upstream_duration: float | None = None
        self.elapsed: float | None = None
        # the upstream response, published for handle_response routes
        self.status: int | None = None
        self.status_text = ""
        self.headers: Headers | None = None

    def placeholder(self, name: str) -> Any:
        """``{http.reverse_proxy.<name>}`` (see placeholders.PROVIDED_NAMESPACES), or UNKNOWN."""
        target = self.target
        if target is not None and name.startswith("upstream."):
            field = name[9:]
            if field == "address":
                return target.network_address
            if field in ("hostport", "host", "port"):
                return getattr(target, field)
            if field == "requests":
                return self.counts[0]
            if field == "fails":
                return self.counts[1]
            if field == "max_requests" and self.upstream is not None:
                return self.upstream.max_requests
        if self.status is not None:
            if name == "status_code":
                return self.status
            if name == "status_text":
                return self.status_text
            if name.startswith("header.") and self.headers is not None:
                # Caddy sets one value per field under its canonical name (values joined by ",")
                field = name[7:]
                values = self.headers.values_of(field)
                if values is not None:
                    return ",".join(values)
        in_ms = name.endswith("_ms")
        attribute = _TIMINGS.get(name[:-3] if in_ms else name)
        seconds = getattr(self, attribute) if attribute is not None else None
        if seconds is None:
            return UNKNOWN
        return seconds * 1e3 if in_ms else Duration(int(seconds * 1e9))


class _ProxyCall:
    """One client request going through the proxy loop."""

    __slots__ = (
        "handler", "request", "response", "d", "start_time", "attempts", "error", "method", "target",
        "headers", "upgrade", "body_length", "buffered", "pump", "exchange", "upstream", "attempt_start",
        "gone", "done", "relay", "method_text", "gzip", "published", "next", "on_body_done",
    )

    def __init__(self, handler: ReverseProxyHandler, request: Request, response: Response, next: Any) -> None:
        self.handler = handler
        self.next = next
        # where a copy_response wants the end of the relayed body reported (None: the call ends)
        self.on_body_done: Callable[[Failure | None], None] | None = None
        self.request = request
        self.response = response
        self.d: Deferred[None] = Deferred()
        self.attempts = 0
        self.error: BaseException | None = None
        self.pump: RequestBodyPump | None = None
        self.buffered: BufferedBody | None = None
        self.exchange: Exchange | None = None
        self.upstream: Upstream | None = None
        self.gone = False
        self.done = False
        self.relay: ResponseRelay | None = None
        self.gzip = False
        self.published = _Published()

    # -- preparing (once per request) ------------------------------------------------

    def start(self) -> Deferred[None]:
        handler = self.handler
        request = self.request
        self.start_time = handler.clock.seconds()
        method, target = request.method, request.uri
        no_body = False
        if handler.rewrite is not None:
            method, target, no_body = _rewritten(handler.rewrite, request, self.response)
        self.method_text = method
        self.method = method.encode("latin-1")
        self.target = (target or "/").encode("latin-1")
        try:
            self.headers, self.upgrade = proxy_headers.prepare_upstream_headers(request, handler.trusted)
        except proxy_headers.ForwardedHeadersError as error:
            self._finish(Failure(HandlerError(500, f"preparing request for upstream round-trip: {error}")))
            return self.d
        body = request.body
        if no_body or body.empty:
            self.body_length: int | None = None
            if not body.finished and not no_body:
                body.discard()
        elif body.length is None:
            self.body_length = CHUNKED
        else:
            self.body_length = body.length
        if self.body_length is None and no_body and not handler.handle_response:
            body.discard()  # with handle_response routes, the handlers after the proxy may read it
        self.response.on_finish(self._client_finished)
        if self.body_length is not None and handler.buffer_requests:
            self.buffered = BufferedBody(body, handler.max_buffer_size, self._attempt)
        else:
            self._attempt()
        return self.d

    def _client_finished(self) -> None:
        if self.response.lost is None or self.done:
            return
        self.gone = True
        exchange = self.exchange
        if exchange is not None and self.handler.flush_interval != -1:
            # Caddy cancels the upstream request when the client leaves, except with
            # flush_interval -1 (the upstream then runs to its end).
            exchange.abort(ClientGone("client went away"))

    # -- the loop --------------------------------------------------------------------

    def _attempt(self, pool: list[Upstream] | None = None) -> None:
        if self.done:
            return
        handler = self.handler
        request = self.request
        if pool is None:
            pool = handler.upstreams
            if handler.dynamic is not None:  # dynamic upstreams / lookup_srv: upstreams.py
                found = handler.dynamic.pool(request, pool)
                if found.__class__ is not list:  # a Deferred: a DNS lookup runs; try when it is done
                    found.addCallback(self._attempt)
                    return
                pool = found
        self.attempts += 1
        if self.gone:
            self._finish(None)
            return
        upstream = handler.policy.select(pool, request, self.response)
        if upstream is None:
            self._failed(self.error or _NoUpstream(), None)
            return
        target = handler.target_of(upstream).resolve(request)
        if target.address is None:
            self._finish(Failure(HandlerError(502, f"making dial info: upstream {upstream.dial}: {target.error}")))
            return
        published = self.published
        published.target = target
        published.upstream = upstream
        host = upstream.host
        published.counts = (host.num_requests, host.fails)
        request.placeholders[_PLACEHOLDERS] = published
        headers = self.headers
        try:
            if handler.request_ops is not None:
                headers = headers.copy()
                proxy_headers.apply_request_ops(handler.request_ops, headers, request)
            if self.upgrade is not None:
                if headers is self.headers:
                    headers = headers.copy()
                proxy_headers.reapply_upgrade(headers, self.upgrade)
            raw = proxy_headers.to_raw(headers, default_host=target.hostport)
        except Exception as error:  # noqa: BLE001 - bad header values: answered, never sent
            self._finish(Failure(_status_error(error)))
            return
        self.gzip = handler.compression and proxy_headers.wants_gzip(headers, self.method_text)
        if self.gzip:
            raw.append(proxy_headers.ACCEPT_GZIP)
        reason = handler.transport.unsupported_reason
        if reason:
            self._failed(HandlerError(502, reason), upstream)
            return
        self.upstream = upstream
        upstream.host.count_request(1)
        self.attempt_start = handler.clock.seconds()
        exchange = self.exchange = handler.transport.request(
            target.address,
            self.method,
            self.target,
            raw,
            self.body_length,
            self._informational,
            request=request,
        )
        if self.body_length is not None:
            if self.buffered is not None:
                self.buffered.send_to(exchange)
            else:
                self.pump = RequestBodyPump(self.request.body, exchange)
        exchange.when_head(self._got_head, self._round_trip_failed)

    def _informational(self, head: ResponseHead) -> None:
        """Forward 1xx responses (103 Early Hints, ...) to the client."""
        if head.status != 100:
            self.response.write_informational(head.status, _headers_of(head))

    def _round_trip_failed(self, failure: Failure) -> None:
        upstream, self.upstream = self.upstream, None
        self.exchange = None
        if upstream is not None:
            upstream.host.count_request(-1)
        error = cast(BaseException, failure.value)  # an errback's failure has a value
        if self.gone or isinstance(error, ClientGone):
            self._finish(None)
            return
        if upstream is not None and self.handler.passive is not None:
            self.handler.passive.count_failure(upstream)
        self._failed(error, upstream)

    def _failed(self, error: BaseException, upstream: Upstream | None) -> None:
        """An attempt failed: try again if allowed, else answer with the error's status."""
        self.error = error
        handler = self.handler
        if self.body_length is not None and upstream is not None and not isinstance(error, DialError):
            allowed = False  # the body (or part of it) reached the upstream: never send it twice
        elif self.buffered is not None and not self.buffered.replayable and upstream is not None:
            allowed = False  # a body longer than the buffer was streamed: it cannot be sent again
        else:
            allowed = handler.try_again(self.start_time, self.attempts - 1, error, self.request)
        self.pump = None
        if not allowed:
            self._finish(Failure(_status_error(error)))
            return
        interval = handler.try_interval
        if not interval and handler.try_duration:
            interval = _DEFAULT_TRY_INTERVAL
        if interval:
            handler.clock.callLater(interval, self._attempt)
        else:
            self._attempt()

    # -- the response -----------------------------------------------------------------

    def _got_head(self, head: ResponseHead) -> None:
        handler = self.handler
        request = self.request
        response = self.response
        upstream = self.upstream
        exchange = self.exchange
        assert upstream is not None and exchange is not None
        latency = self.published.latency = handler.clock.seconds() - self.attempt_start
        passive = handler.passive
        if passive is not None:
            for bad in passive.unhealthy_status:
                if status_code_matches(head.status, bad):
                    passive.count_failure(upstream)
            if passive.unhealthy_latency and latency >= passive.unhealthy_latency:
                passive.count_failure(upstream)
        if self.gone:
            exchange.abort(ClientGone("client went away"))
            return
        status = head.status
        if handler.handle_response:
            # Caddy's reverseProxy: the first response handler that matches decides
            matched_headers = _headers_of(head)
            matched_headers.delete_canonical(("Transfer-Encoding",))  # Go's client drops it
            for entry in handler.handle_response:
                if not entry.matches(head.status, matched_headers):
                    continue
                if entry.status_code is not None:  # replace_status: relay with another status
                    try:
                        replaced = status_from(entry.status_code, request, response)
                    except HandlerError as error:
                        self._drop_upstream(abort=True)
                        self._finish(Failure(error))
                        return
                    if replaced:
                        status = replaced
                    break
                if entry.routes is None:
                    continue
                self._run_response_routes(entry, head, matched_headers)
                return
        self._relay(head, status)

    def _relay(self, head: ResponseHead, status: int) -> None:
        """Send the upstream response to the client (Caddy's finalizeResponse)."""
        handler = self.handler
        request = self.request
        response = self.response
        upstream = self.upstream
        exchange = self.exchange
        assert upstream is not None and exchange is not None
        if status == 101:
            self._switch_protocols(head, exchange, upstream)
            return
        upstream_headers = _headers_of(head)
        try:
            announced = proxy_headers.announced_trailers(upstream_headers)
        except Exception as error:  # noqa: BLE001 - an invalid Trailer announcement
            exchange.abort(error)
            return
        proxy_headers.clean_response_headers(upstream_headers)
        gunzip = self.gzip and proxy_headers.gunzip_response_headers(upstream_headers, head.status)
        if handler.response_ops is not None and (
            handler.response_require is None or handler.response_require.match(status, upstream_headers)
        ):
            handler.response_ops.apply(upstream_headers, request, response)
        out = response.headers
        out.merge(upstream_headers)
        if announced:
            out.add("Trailer", ", ".join(announced))
        lengths = out.values_of("Content-Length")
        content_length = int(lengths[0]) if lengths and lengths[0].isdigit() else None
        if request.method == "HEAD" or status in (204, 304):
            content_length = 0
        response.write_head(status)
        types = out.values_of("Content-Type")
        flush = effective_flush_interval(handler.flush_interval, types[0] if types else "", content_length)
        stream = content_length is None or content_length > STREAM_THRESHOLD
        sniff = types is None and status not in (204, 304) and request.method != "HEAD"
        self.relay = ResponseRelay(
            response, exchange, flush, handler.clock, self._body_done, stream,
            buffer_limit=handler.max_buffer_size if handler.buffer_responses else None,
            gunzip=gunzip, sniff=sniff,
        )

    def _body_done(self, reason: Failure | None) -> None:
        self._drop_upstream(abort=False)
        relay, self.relay = self.relay, None
        if reason is None and relay is not None and relay.trailers:
            self.response.add_trailers(relay.trailers)
        if reason is None or self.gone or self.response.lost is not None:
            self._body_end(None)
            return
        # The head is out: no error page is possible, so the client must see the
        # response cut off rather than a clean end.
        log.error("{uri}: aborting with incomplete response: {error}", uri=self.request.uri, error=reason.getErrorMessage())
        self._body_end(Failure(AbortConnection(returned=True)))  # Caddy's handler returns nil here

    def _body_end(self, result: Failure | None) -> None:
        report, self.on_body_done = self.on_body_done, None
        if report is None:
            self._finish(result)
        else:
            report(result)

    def _drop_upstream(self, *, abort: bool) -> None:
        """The exchange is over for this call (once): count the request done, maybe abort it."""
        upstream, self.upstream = self.upstream, None
        exchange, self.exchange = self.exchange, None
        if upstream is None:
            return
        upstream.host.count_request(-1)
        self.published.upstream_duration = self.handler.clock.seconds() - self.attempt_start
        if abort and exchange is not None:
            exchange.abort(CancelledError("upstream response not used"))

    # -- handle_response ------------------------------------------------------------------

    def _run_response_routes(self, entry: ResponseHandler, head: ResponseHead, headers: Headers) -> None:
        """Answer with ``entry``'s routes instead of the upstream response."""
        request = self.request
        published = self.published
        published.status = head.status
        published.status_text = f"{head.status} {head.reason.decode('latin-1')}".rstrip()
        published.headers = headers
        request.placeholders[_PLACEHOLDERS] = published
        context = HandleResponseContext(self, head, headers)
        if not entry.copies:
            self._discard(head)  # nothing can ask for the body: let the connection go now
        previous = enter(request, context)

        def routes_done(result: Any) -> None:
            leave(request, previous)
            if not context.finalized and self.exchange is not None:
                self._discard(head)
            if isinstance(result, Failure):
                self._finish(result)  # Caddy's roundtripSucceeded: never retried
            else:
                self._finish(None)

        maybeDeferred(entry.routes.serve, request, self.response, self.next).addBoth(routes_done)

    def _discard(self, head: ResponseHead) -> None:
        """Drop the upstream body: drained (the connection is reused) or the connection closed."""
        exchange = self.exchange
        if exchange is None:
            return
        lengths = head.get(b"content-length")
        length = int(lengths) if lengths is not None and lengths.isdigit() else None
        if self.method == b"HEAD" or head.status in (204, 304):
            length = 0
        self._drop_upstream(abort=False)  # a client leaving now must not abort the drain
        discard_body(exchange, length)

    def copy_response(self, head: ResponseHead, status: int) -> Deferred[None]:
        """``copy_response``: relay the upstream response now; fires when its body is sent."""
        done: Deferred[None] = Deferred()
        if self.exchange is None or self.upstream is None:
            done.callback(None)  # already dropped: nothing left to send
            return done

        def body_done(reason: Failure | None) -> None:
            if reason is None:
                done.callback(None)
            else:
                done.errback(reason)

        self.on_body_done = body_done
        self._relay(head, status)
        return done

    def _switch_protocols(self, head: ResponseHead, exchange: Exchange, upstream: Upstream) -> None:
        """A 101: check the protocol and join the connections (Caddy's handleUpgradeResponse)."""
        upstream.host.count_request(-1)
        self.upstream = None
        self.exchange = None
        sent = self.upgrade or ""
        upstream_headers = _headers_of(head)
        if not sent or not proxy_headers.upgrade_accepted(sent, upstream_headers):
            got = upstream_headers.get("Upgrade")
            log.debug("backend tried to switch to unexpected protocol {got!r} (requested {sent!r})", got=got, sent=sent)
            exchange.abort(CancelledError("unexpected upgrade"))
            self._body_end(None)
            return
        out = self.response.headers
        for name, value in upstream_headers.items():
            out.add(name, value)
        start_tunnel(self.response, exchange, self.handler.tunnels, clock=self.handler.clock,
                     stream_timeout=self.handler.stream_timeout, websocket=sent.lower() == "websocket")
        self._body_end(None)

    def _finish(self, result: Failure | None) -> None:
        if self.done:
            return
        self.done = True
        self.published.elapsed = self.handler.clock.seconds() - self.start_time
        self.request.placeholders[_PLACEHOLDERS] = self.published
        if result is None:
            self.d.callback(None)
        else:
            self.d.errback(result)


# -- small helpers ---------------------------------------------------------------------------


def _status_error(error: BaseException) -> BaseException:
    """Caddy's ``statusError``: which status the client gets for a failed proxy."""
    if isinstance(error, (HandlerError, AbortConnection)):
        return error
    if isinstance(error, ResponseHeaderTimeout):
        return HandlerError(504, str(error), cause=error)
    status = getattr(error, "status", 502)
    return HandlerError(status if isinstance(status, int) else 502, str(error) or type(error).__name__, cause=error)


def _headers_of(head: ResponseHead) -> Headers:
    return proxy_headers.from_raw(head.headers)


def _rewritten(rewrite: Any, request: Request, response: Response) -> tuple[str, str, bool]:
    """Method and target after the proxy's own ``rewrite`` (applied to a copy)."""
    clone = copy.copy(request)
    clone.placeholders = request.placeholders
    rewrite.rewrite(clone, response)
    no_body = clone.method != request.method and clone.method in ("GET", "HEAD")
    return clone.method, clone.uri, no_body


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

