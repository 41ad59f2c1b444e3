"""One configured HTTP server (``apps.http.servers.NAME``) at run time.

It owns the compiled routes and error routes, serves each request through
them (``handle``), turns handler errors into error-route runs or bare
statuses, tracks its connections for a graceful stop, and builds the
protocol factories for its listeners.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements

from txcaddy.http.errors import AbortConnection, HandlerError, release_frames
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.http.routing import RouteList, finish_chain
from txcaddy.interfaces import IHTTPServer

DEFAULT_IDLE_TIMEOUT = 5 * 60.0  # Caddy's default idle timeout


class HTTPServer:
    """Routes, error routes, limits and live connections of one server."""

    log = Logger()

    def __init__(
        self,
        name: str,
        listen: list[str],
        routes: RouteList,
        errors: RouteList | None = None,
        *,
        reactor: Any = None,
        max_header_bytes: int = 0,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        access_log: Any = None,
        protocols: list[str] | None = None,
        challenges: Any = None,
        strict_sni_host: bool = False,
    ) -> None:
        self.name = name
        self.listen = listen
        self.routes = routes
        self.errors = errors
        self.reactor = reactor
        self.max_header_bytes = max_header_bytes
        self.idle_timeout = idle_timeout
        self.access_log = access_log
        self.protocols = protocols or ["h1", "h2"]
        self.challenges = challenges  # txcaddy.tls.challenges.Challenges: ACME HTTP-01 answered first
        self.strict_sni_host = strict_sni_host  # the Host must name the TLS server name (else 421)
        # ``Alt-Svc`` for responses over HTTP/1.x and HTTP/2 while the server serves HTTP/3
        # (set by the service once its UDP ports are bound; Caddy's ``SetQuicHeaders``).
        self.alt_svc = ""
        self.connections: set[Any] = set()
        self._drained: list[Deferred[None]] = []

    # -- requests ---------------------------------------------------------------------

    def handle(self, request: Request, response: Response) -> None:
        """Serve one request; never raises."""
        response.headers.set_canonical("Server", "Caddy")
        if self.alt_svc and request.proto != "HTTP/3.0":
            response.headers.set_canonical("Alt-Svc", self.alt_svc)
        challenges = self.challenges
        if challenges is not None and challenges.http01_pending and self._answer_challenge(request, response):
            return
        if self.access_log is not None:
            self.access_log.begin(request, response)  # records the request as it arrived
        if self.strict_sni_host and request.tls is not None and not _host_is_server_name(request):
            response.headers.set_canonical("Connection", "close")
            self._failed(request, response, HandlerError(
                421, f"strict host matching: TLS ServerName ({request.tls.server_name}) and HTTP Host "
                     f"({request.host}) values differ"))
            return
        try:
            result = self.routes.serve(request, response, finish_chain)
        except Exception as error:  # noqa: BLE001 - every handler failure is answered
            self._failed(request, response, error)
            return
        if isinstance(result, Deferred):
            # Bound methods with arguments: no closures made per request.
            result.addCallbacks(
                self._chain_result, self._chain_error, callbackArgs=(request, response), errbackArgs=(request, response)
            )
        else:
            self._chain_done(request, response)

    def _answer_challenge(self, request: Request, response: Response) -> bool:
        """ACME HTTP-01, before any route on every server (Caddy's ``HandleHTTPChallenge``)."""
        body = self.challenges.http01_response(request.method, request.host, request.path)
        if body is None:
            return False
        self.log.info("served key authentication for {host}", host=request.host)
        response.headers.set_canonical("Content-Type", "text/plain")
        response.headers.set_canonical("Connection", "close")
        response.write_head(200)
        response.write(body)
        response.finish()
        return True

    def _chain_result(self, _: Any, request: Request, response: Response) -> None:
        chain_end = request.chain_end
        if chain_end is not None:
            chain_end.done(request, response)
        self._chain_done(request, response)

    def _chain_error(self, failure: Failure, request: Request, response: Response) -> None:
        chain_end = request.chain_end
        if chain_end is not None:
            chain_end.failed(request, response)
        self._failed(request, response, cast(BaseException, failure.value))  # an errback's failure has a value

    def _chain_done(self, request: Request, response: Response) -> None:
        if self.access_log is not None:
            self.access_log.chain_done(request, response)
        self._done(request, response)

    def _done(self, request: Request, response: Response) -> None:
        if not response.finished and response.lost is None:
            response.finish()
        if self.access_log is not None:
            self.access_log.finished(request, response)
        response.handler_done()

    def _failed(self, request: Request, response: Response, error: BaseException) -> None:
        if isinstance(error, AbortConnection):
            # A Go panic in Caddy unwinds past its error logging, and past the line
            # that sets the duration its access entry reports (0); a handler that
            # returned (the proxy's incomplete response) has its duration.
            self._abort(request, response, timed=error.returned)
            return
        if self.access_log is not None:
            self.access_log.chain_failed(request)
        if not isinstance(error, HandlerError):
            self.log.failure("handler failed on {uri}", Failure(error), uri=request.uri)
            error = HandlerError(500, str(error), cause=error)
        release_frames(error)
        request.error = error
        if response.head_sent:
            # Too late for an error response: cut the connection so the client sees it
            # failed. Caddy logs the error and the response as far as it went.
            self.log.error("{uri}: {error} after the response started", uri=request.uri, error=error)
            self._abort(request, response)
            return
        if self.errors is None:
            self._answer_status(request, response, error.status)
            return
        d = maybeDeferred(self.errors.serve, request, response, finish_chain)

        def error_routes_failed(failure: Failure) -> None:
            second = failure.value
            if isinstance(second, AbortConnection):
                # Caddy's duration was set before its error routes ran; the panic skips
                # the first error's log entry.
                self._abort(request, response, log_error=False)
                return
            # DESIGN.md §1: the error routes' own status wins (e.g. try_files … =503).
            status = second.status if isinstance(second, HandlerError) else error.status
            if response.head_sent:
                self._abort(request, response)
            else:
                self._answer_status(request, response, status)

        d.addCallbacks(lambda _: self._done(request, response), error_routes_failed)

    def _answer_status(self, request: Request, response: Response, status: int) -> None:
        response.write_head(status)
        self._done(request, response)

    def _abort(self, request: Request, response: Response, *, timed: bool = True, log_error: bool = True) -> None:
        # Like Go after ErrAbortHandler: what was written is flushed, then the connection
        # closes; a response cut off mid-body is visibly incomplete to the client. The
        # access entry is still written, as Caddy's deferred one is.
        access_log = self.access_log
        if access_log is not None:
            access_log.chain_done(request, response)
            access_log.finished(request, response, timed=timed, log_error=log_error)
        response.abort_connection()
        response.handler_done()

    # -- connections -------------------------------------------------------------------

    def connection_made(self, protocol: Any) -> None:
        self.connections.add(protocol)

    def connection_lost(self, protocol: Any) -> None:
        self.connections.discard(protocol)
        if not self.connections:
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def drain(self, grace_period: float, clock: Any) -> Deferred[None]:
        """Close idle connections, let busy ones finish, force-close after ``grace_period``."""
        d: Deferred[None] = Deferred()
        if not self.connections:
            d.callback(None)
            return d
        self._drained.append(d)
        for protocol in list(self.connections):
            protocol.close_when_idle()
        if grace_period > 0 and clock is not None:
            timer = clock.callLater(grace_period, self._force_close)
            d.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return d

    def retire(self, successor: Any, grace_period: float, clock: Any) -> Deferred[None]:
        """After a reload: this server's config is gone, ``successor`` (or None) replaces it.

        Idle connections move to ``successor`` (their next request sees the new routes, and
        no client finds its keep-alive connection closed by a reload); busy ones finish their
        requests and then close (``Connection: close``); switched connections (WebSockets) keep
        running. Whatever is left after ``grace_period`` is closed. Fires when none is left.
        """
        for protocol in list(self.connections):
            if getattr(protocol, "_switched", None) is not None:
                continue
            # HTTP/3 connections (no ``idle``) are not moved: their streams are closed gracefully.
            if successor is not None and getattr(protocol, "idle", False) and not protocol.closing:
                self.connections.discard(protocol)
                protocol.server = successor
                successor.connection_made(protocol)
            else:
                protocol.close_when_idle()
        d: Deferred[None] = Deferred()
        if not self.connections:
            d.callback(None)
            return d
        self._drained.append(d)
        if grace_period > 0 and clock is not None:
            timer = clock.callLater(grace_period, self._force_close)
            d.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return d

    def _force_close(self) -> None:
        for protocol in list(self.connections):
            transport = protocol.transport
            if transport is not None:
                getattr(transport, "abortConnection", transport.loseConnection)()


classImplements(HTTPServer, IHTTPServer)


def _host_is_server_name(request: Request) -> bool:
    """Caddy's strict SNI check: the Host without its port equals the SNI (case-insensitive)."""
    host = request.host
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host
    else:
        name, colon, port = host.rpartition(":")
        if colon and port.isdigit():
            host = name
    return host.lower() == (request.tls.server_name or "").lower()
