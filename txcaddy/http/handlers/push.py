"""``push`` (``http.handlers.push``): accepted, checked, and passed through; nothing is pushed.

Caddy 2.6.2's ``modules/caddyhttp/push/handler.go`` pushes its ``resources``
(and the targets of ``Link`` response fields) through Go's ``http.Pusher``, only
on HTTP/2 connections whose client allows push; on HTTP/1.1 and HTTP/3 it just
calls the next handler, and it never adds ``Link`` fields itself. Browsers no
longer allow push (Chrome 106 removed it; Firefox and Safari followed) and
curl does not ask for it, so what clients see from Caddy is the response
without pushes. txcaddy's HTTP/2 server does not push either: the handler
checks its JSON as Caddy does (resources, header operations for the pushed
requests), says once that push has no effect, and calls the next handler, so
the response is the same bytes Caddy sends such clients.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from txcaddy.config.registry import module
from txcaddy.config.schema import STRING, ListOf, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.handlers.headers import HEADER_OPS_SCHEMA, HeaderOps
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler

__all__ = ["Push", "NO_PUSH_MESSAGE"]

NO_PUSH_MESSAGE = (
    "push: HTTP/2 server push is not done by txcaddy (browsers no longer accept it); "
    "the push handler passes requests through unchanged"
)

_warned = False


@implementer(IHandler)
class Push:
    """``http.handlers.push``: the configured resources, kept for inspection; requests pass through.

    @ivar resources: ``(method, target)`` pairs (method ``GET`` when not given).
    @ivar headers: the header operations Caddy applies to the pushed requests, or None.
    """

    def __init__(self, resources: list[tuple[str, str]], headers: HeaderOps | None = None) -> None:
        self.resources = resources
        self.headers = headers

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        return next(request, response)


_RESOURCE = Obj({"method": STRING, "target": STRING}, strict=True, name="push.Resource")
_SCHEMA = Obj(
    {"resources": ListOf(_RESOURCE), "headers": HEADER_OPS_SCHEMA},
    strict=True,
    name="push.Handler",
)


@module("http.handlers.push", schema=_SCHEMA)
def load_push(config: dict[str, Any], context: Any) -> Push:
    global _warned
    resources = []
    for resource in config.get("resources") or ():
        if not isinstance(resource, dict):
            raise ConfigError("push: each resource must be an object with 'method' and 'target'")
        resources.append((resource.get("method") or "GET", resource.get("target") or ""))
    headers_config = config.get("headers")
    if headers_config is not None and not isinstance(headers_config, dict):
        raise ConfigError("push: headers must be an object of header operations")
    headers = HeaderOps(headers_config, "push.headers") if headers_config is not None else None
    if not _warned:
        _warned = True
        log: Logger = getattr(context, "log", None) or Logger(namespace="txcaddy")
        log.warn(NO_PUSH_MESSAGE)
    return Push(resources, headers)
