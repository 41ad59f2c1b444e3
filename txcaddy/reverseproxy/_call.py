"""One client request through ``reverse_proxy``: the proxy loop of Caddy's ``reverseproxy.go``.

Split out of ``handler`` (the configured handler and its loader), which starts one
``_ProxyCall`` per request.  Follows Caddy 2.6.2's ``modules/caddyhttp/reverseproxy/
reverseproxy.go`` (``ServeHTTP``, ``proxyLoopIteration``, ``reverseProxy``,
``finalizeResponse``, ``statusError``): prepare the upstream request once, select an
upstream, send, retry when ``tryAgain`` allows, then stream the response back, hand it to
``handle_response`` routes or turn a ``101`` into a tunnel; and the lazily formatted
``{http.reverse_proxy.*}`` placeholders the request publishes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txcaddy._go.time import Duration
from txcaddy.config.placeholders import UNKNOWN
from txcaddy.http.errors import AbortConnection, HandlerError
from txcaddy.http.handlers.headers import status_code_matches
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.reverseproxy import headers as proxy_headers
from txcaddy.reverseproxy._splice import start_tunnel
from txcaddy.reverseproxy.handle_response import (
    HandleResponseContext,
    ResponseHandler,
    discard_body,
    enter,
    leave,
    status_from,
)
from txcaddy.reverseproxy.hosts import Upstream
from txcaddy.reverseproxy.streaming import (
    BufferedBody,
    RequestBodyPump,
    ResponseRelay,
    effective_flush_interval,
)
from txcaddy.reverseproxy.transport import (
    CHUNKED,
    DialError,
    ResponseHead,
    ResponseHeaderTimeout,
)

if TYPE_CHECKING:
    from txcaddy.reverseproxy.handler import ReverseProxyHandler, _Target


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
        # an IExchange: an Exchange, or another transport's (ALPN, test doubles); not
        # annotated as Exchange, which a mypyc build would check at run time
        self.exchange: Any = None
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

    def _switch_protocols(self, head: ResponseHead, exchange: Any, upstream: Upstream) -> None:
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
