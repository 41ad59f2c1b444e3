"""Routes and the middleware chain, evaluated at header time.

A route list runs like Caddy's compiled ``RouteList``: routes are tried in
order when the chain reaches them (so an earlier rewrite affects later
matchers); a matching route runs its handlers as middleware; a ``terminal``
route ends the list; in a ``group`` only the first matching route runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from zope.interface import classImplements

from txcaddy.config.registry import module
from txcaddy.config.schema import ROUTES, Obj
from txcaddy.http.errors import HandlerError, release_frames
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler, IRequestMatcher

#: The request var a matcher sets when it could not decide (Caddy's ``MatcherErrorVarKey``):
#: the route list then fails the request with it instead of trying the next route.
MATCHER_ERROR_VAR = "matchers.error"

Next = Callable[[Request, Response], "Deferred[Any] | None"]


def finish_chain(request: Request, response: Response) -> None:
    """The end of every chain: nothing more to do (the server finishes the response)."""
    return None


class MatcherSet:
    """Matchers that must all match (one JSON object of ``match``)."""

    __slots__ = ("matchers",)

    def __init__(self, matchers: Sequence[Any]) -> None:
        self.matchers = tuple(matchers)

    def match(self, request: Request) -> bool:
        for matcher in self.matchers:
            if not matcher.match(request):
                return False
        return True


def any_set_matches(matcher_sets: Sequence[MatcherSet], request: Request) -> bool:
    """OR across sets; no sets at all matches everything."""
    if not matcher_sets:
        return True
    for matcher_set in matcher_sets:
        if matcher_set.match(request):
            return True
    return False


class Route:
    __slots__ = ("group", "matcher_sets", "handlers", "terminal")

    def __init__(
        self,
        handlers: Sequence[Any],
        matcher_sets: Sequence[MatcherSet] = (),
        group: str = "",
        terminal: bool = False,
    ) -> None:
        self.handlers = tuple(handlers)
        self.matcher_sets = tuple(matcher_sets)
        self.group = group
        self.terminal = terminal


class RouteList:
    """A compiled list of routes; ``serve`` runs it as one middleware."""

    __slots__ = ("routes",)

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = tuple(routes)

    def serve(self, request: Request, response: Response, next: Next) -> Deferred[Any] | None:
        return self._serve_from(0, request, response, next)

    def _serve_from(self, index: int, request: Request, response: Response, next: Next) -> Any:
        routes = self.routes
        count = len(routes)
        while index < count:
            route = routes[index]
            index += 1
            if route.group and route.group in request.groups:
                continue
            if route.matcher_sets and not any_set_matches(route.matcher_sets, request):
                failed = request.vars.pop(MATCHER_ERROR_VAR, None) if request.vars else None
                if failed is not None:  # a matcher could not decide (Caddy's routes.go)
                    raise failed if isinstance(failed, HandlerError) else HandlerError(500, str(failed), cause=failed)
                continue
            if route.group:
                request.groups.add(route.group)
            if route.terminal:
                after = next
            else:
                # A partial, not a closure: compiled by mypyc, a closure's environment and
                # the function it holds would be a reference cycle per request.
                after = partial(self._resume, index, next)
            return _run_handlers(route.handlers, 0, after, request, response)
        return next(request, response)

    def _resume(self, index: int, next: Next, request: Request, response: Response) -> Any:
        """Continue with the route at ``index`` (what a non-terminal route's handlers call)."""
        return self._serve_from(index, request, response, next)


def _run_handlers(handlers: tuple[Any, ...], i: int, after: Next, request: Request, response: Response) -> Any:
    last = len(handlers) - 1
    if i >= last:
        if i == last:  # the route's last handler continues with what follows the route
            return handlers[i].serve(request, response, after)
        return after(request, response)
    # (a partial rather than a closure: see RouteList._serve_from; positional arguments only,
    # so calling it builds no keyword dict)
    return handlers[i].serve(request, response, partial(_run_handlers, handlers, i + 1, after))


def run_with_errors(routes: RouteList, errors: RouteList | None, request: Request, response: Response, next: Next) -> Any:
    """Run ``routes``; on a handler error run ``errors`` (a subroute's own error routes)."""
    if errors is None:
        return routes.serve(request, response, next)

    def handle(failure: Any) -> Any:
        error = failure.value
        if not isinstance(error, HandlerError):
            error = HandlerError(500, str(error), cause=error)
        release_frames(error)
        request.error = error
        return errors.serve(request, response, next)

    return maybeDeferred(routes.serve, request, response, next).addErrback(handle)


class Subroute:
    """``http.handlers.subroute``: a nested route list with optional error routes."""

    def __init__(self, routes: RouteList, errors: RouteList | None = None) -> None:
        self.routes = routes
        self.errors = errors

    def serve(self, request: Request, response: Response, next: Next) -> Any:
        return run_with_errors(self.routes, self.errors, request, response, next)


classImplements(Subroute, IHandler)


@module("http.handlers.subroute", schema=Obj({"routes": ROUTES, "errors": Obj({"routes": ROUTES})}, strict=True))
def load_subroute(config: dict[str, Any], context: Any) -> Subroute:
    routes = context.load_routes(config.get("routes") or [])
    errors_config = config.get("errors") or {}
    errors = context.load_routes(errors_config["routes"]) if errors_config.get("routes") else None
    return Subroute(routes, errors)


__all__ = [
    "IRequestMatcher",
    "MatcherSet",
    "Route",
    "RouteList",
    "Subroute",
    "finish_chain",
    "run_with_errors",
]
