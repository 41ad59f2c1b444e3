"""``handle_response``, ``replace_status`` and the handlers used inside them.

Follows Caddy 2.6.2's ``reverseproxy.go`` (``reverseProxy``: the response
handlers tried in order once the upstream's head is in) and
``copyresponse.go`` (``copy_response``, ``copy_response_headers``).

A ``ResponseHandler`` whose matcher (``caddyhttp.ResponseMatcher``: status
codes or classes, header fields) accepts the upstream response either only
changes the status (``status_code``, Caddy's ``replace_status``: the upstream
body is still relayed) or runs its routes *instead of* relaying the response.
Those routes see the upstream response through ``{http.reverse_proxy.status_code}``,
``{…status_text}`` and ``{…header.<Field>}``, and continue with the handler
after the proxy (that is how ``forward_auth`` lets a request through).

The upstream body is only sent when a ``copy_response`` in the routes asks for
it. Otherwise it is thrown away when the routes are done (or at once, when the
routes hold no ``copy_response`` at all, so a ``forward_auth`` check does not
keep its connection while the application answers). Caddy closes an unread
body, which closes the pooled connection; here a body of at most
``DRAIN_LIMIT`` bytes is read and dropped so the connection goes back to the
pool, and a longer one closes the connection.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._go.textproto import canonical_mime_header_key as canonical_key
from txcaddy.config.placeholders import Template
from txcaddy.config.registry import module
from txcaddy.config.schema import ANY, STRINGS, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.handlers.headers import ResponseMatcher
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IBodyConsumer, IHandler
from txcaddy.reverseproxy.transport import RawHeaders

__all__ = [
    "DRAIN_LIMIT",
    "CopyResponseHandler",
    "CopyResponseHeadersHandler",
    "ResponseHandler",
    "discard_body",
    "load_response_handlers",
]

#: An unread upstream body up to this size is read and dropped (the connection is reused);
#: a longer one (or one that turns out longer) closes the connection.
DRAIN_LIMIT = 64 * 1024

#: The request attribute where an active ``handle_response`` route finds its proxy call
#: (Caddy keeps it in the request context).
_CONTEXT_ATTRIBUTE = "_txcaddy_handle_response"


class ResponseHandler:
    """Caddy's ``caddyhttp.ResponseHandler``: a response matcher and what to do on a match."""

    __slots__ = ("match", "status_code", "routes", "copies")

    def __init__(self, match: ResponseMatcher | None, status_code: Template | None, routes: Any,
                 copies: bool) -> None:
        self.match = match
        self.status_code = status_code  # replace_status (placeholders allowed)
        self.routes = routes  # a RouteList, or None
        self.copies = copies  # the routes may hold a copy_response: keep the body until they end

    def matches(self, status: int, headers: Headers) -> bool:
        return self.match is None or self.match.match(status, headers)


def _mentions_copy_response(config: Any) -> bool:
    """Whether a route config holds ``copy_response`` anywhere (subroutes included)."""
    if isinstance(config, dict):
        if config.get("handler") == "copy_response":
            return True
        return any(_mentions_copy_response(value) for value in config.values())
    if isinstance(config, list):
        return any(_mentions_copy_response(value) for value in config)
    return False


def _weak_string(value: Any) -> Template | None:
    """A ``caddyhttp.WeakString`` as a template; None when empty.

    As in Caddy, any JSON value is taken: a string as it is, anything else as its JSON text
    (``true`` becomes "true", which fails as a status at request time, with a 500).
    """
    if value is None or value == "":
        return None
    return Template(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))


def load_response_handlers(configs: Any, context: Any) -> list[ResponseHandler]:
    """The ``handle_response`` list of a ``reverse_proxy`` config."""
    handlers = []
    for index, config in enumerate(configs or ()):
        where = f"reverse_proxy: handle_response {index}"
        if not isinstance(config, dict):
            raise ConfigError(f"{where}: must be an object")
        match = ResponseMatcher.from_config(config["match"], where) if config.get("match") is not None else None
        routes = context.load_routes(config["routes"]) if config.get("routes") else None
        handlers.append(ResponseHandler(
            match, _weak_string(config.get("status_code")), routes,
            _mentions_copy_response(config.get("routes")),
        ))
    return handlers


def status_from(template: Template, request: Request, response: Response | None) -> int:
    """A configured status (placeholders replaced, unknown ones by nothing), as Go's Atoi reads it."""
    text = template.render(request, response, empty_unknown=True)
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body or not body.isascii() or not body.isdigit():
        raise HandlerError(500, f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


class HandleResponseContext:
    """What a ``handle_response`` route may use: the upstream response and how to relay it.

    ``copy(status)`` relays the head and body (through the proxy call's usual path) and
    returns a Deferred that fires when the body has been sent.
    """

    __slots__ = ("call", "head", "status", "headers", "finalized")

    def __init__(self, call: Any, head: Any, headers: Headers) -> None:
        self.call = call
        self.head = head  # the upstream's ResponseHead
        self.status: int = head.status  # what copy_response sends (its status_code changes it)
        self.headers = headers  # the upstream's fields as received
        self.finalized = False

    def copy(self) -> Deferred[None]:
        self.finalized = True
        return self.call.copy_response(self.head, self.status)  # type: ignore[no-any-return]


def enter(request: Request, context: HandleResponseContext) -> Any:
    """Make ``context`` the active one for the routes; returns what to restore afterwards."""
    previous = getattr(request, _CONTEXT_ATTRIBUTE, None)
    setattr(request, _CONTEXT_ATTRIBUTE, context)
    return previous


def leave(request: Request, previous: Any) -> None:
    setattr(request, _CONTEXT_ATTRIBUTE, previous)


def _active(request: Request, name: str) -> HandleResponseContext:
    context = getattr(request, _CONTEXT_ATTRIBUTE, None)
    if context is None:
        raise HandlerError(500, f"cannot use '{name}' outside of reverse_proxy's handle_response routes")
    return context  # type: ignore[no-any-return]


# -- dropping an unread body --------------------------------------------------------------


@implementer(IBodyConsumer)
class _Drain:
    """Reads an upstream body to its end and drops it; too long a body closes the connection."""

    __slots__ = ("exchange", "left")

    def __init__(self, exchange: Any, limit: int) -> None:
        self.exchange = exchange
        self.left = limit

    def body_data(self, data: bytes) -> None:
        self.left -= len(data)
        if self.left < 0 and self.exchange is not None:
            exchange, self.exchange = self.exchange, None
            exchange.abort(None)

    def body_trailers(self, trailers: RawHeaders) -> None:
        """Trailers of a dropped body are dropped too."""

    def body_finished(self, reason: Failure | None) -> None:
        self.exchange = None


def discard_body(exchange: Any, content_length: int | None, limit: int = DRAIN_LIMIT) -> bool:
    """Drop an upstream response body; True when the connection can be reused (it is drained).

    A body announced longer than ``limit`` closes the connection at once; a body of unknown
    length is read until it passes ``limit``.
    """
    if exchange.finished:
        return True
    if content_length is not None and content_length > limit:
        exchange.abort(None)
        return False
    exchange.deliver_body(_Drain(exchange, limit))
    return True


# -- copy_response, copy_response_headers ---------------------------------------------------


@implementer(IHandler)
class CopyResponseHandler:
    """``http.handlers.copy_response``: send the upstream response (optionally another status)."""

    def __init__(self, status_code: Template | None = None) -> None:
        self.status_code = status_code

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        context = _active(request, "copy_response")
        if self.status_code is not None:
            context.status = status_from(self.status_code, request, response)
        if context.finalized:
            return None  # the body is already sent
        return context.copy()


@module("http.handlers.copy_response", schema=Obj({"status_code": ANY}, strict=True))
def load_copy_response(config: dict[str, Any], context: Any) -> CopyResponseHandler:
    return CopyResponseHandler(_weak_string(config.get("status_code")))


@implementer(IHandler)
class CopyResponseHeadersHandler:
    """``http.handlers.copy_response_headers``: add the upstream's fields to the response."""

    def __init__(self, include: list[str] | None = None, exclude: list[str] | None = None) -> None:
        if include and exclude:
            raise ConfigError("cannot define both 'exclude' and 'include' lists at the same time")
        self.include = frozenset(canonical_key(name) for name in include or ())
        self.exclude = frozenset(canonical_key(name) for name in exclude or ())

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        context = _active(request, "copy_response_headers")
        out = response.headers
        include, exclude = self.include, self.exclude
        for name, values in list(context.headers.lists()):
            if include and name not in include:
                continue
            if name in exclude:
                continue
            for value in values:
                out.add(name, value)
        return next(request, response)


@module("http.handlers.copy_response_headers", schema=Obj({"include": STRINGS, "exclude": STRINGS}, strict=True))
def load_copy_response_headers(config: dict[str, Any], context: Any) -> CopyResponseHeadersHandler:
    return CopyResponseHeadersHandler(config.get("include"), config.get("exclude"))
