"""``static_response`` (``respond``, ``abort``) and ``error``: answers fixed in the config.

Both follow Caddy 2.6.2's ``staticresp.go`` and ``staticerror.go``: the status
may be a placeholder (``ReplaceAll``, then parsed as an integer; a bad number
is a 500), header fields use ``ReplaceAll``, the body ``ReplaceKnown``; a body
without a Content-Type gets ``application/json`` when it looks like JSON and
``text/plain; charset=utf-8`` otherwise. Inside error routes the default status
is the error's.
"""

from __future__ import annotations

import json
from typing import Any

from zope.interface import implementer

from txcaddy._go.strconv import NumError, atoi
from txcaddy._go.strings import trim_space
from txcaddy.config.placeholders import Template
from txcaddy.config.registry import module
from txcaddy.config.schema import ANY, BOOL, STRING, STRINGS, MapOf, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.errors import AbortConnection, HandlerError
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler

__all__ = ["AbortConnection", "StaticError", "StaticResponse", "weak_status"]

_EARLY_HINTS = 103


def weak_status(value: Any, where: str) -> Template | None:
    """A Caddy ``WeakString`` status (JSON number or string) as a template; None when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: status_code must be a number or a string, got {value!r}")
    # Go keeps the JSON text of a number: 404.0 is not an integer there either
    return Template(repr(value) if isinstance(value, float) else str(value))


def render_status(template: Template, request: Request, response: Response | None = None) -> int:
    """``strconv.Atoi(repl.ReplaceAll(code))``; a value that is not a number is a 500 error."""
    text = template.render(request, response, empty_unknown=True)
    try:
        return atoi(text)
    except NumError as e:
        raise HandlerError(500, str(e)) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _looks_like_json(body: str) -> bool:
    """Caddy's test: trimmed, ``{…}`` or ``[…]``, longer than 2, and valid JSON."""
    content = trim_space(body)
    if len(content.encode("utf-8", "surrogateescape")) <= 2:
        return False
    if not ((content[0] == "{" and content[-1] == "}") or (content[0] == "[" and content[-1] == "]")):
        return False
    try:
        json.loads(content, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    return True


@implementer(IHandler)
class StaticResponse:
    """``http.handlers.static_response``."""

    def __init__(
        self,
        status: Template | None = None,
        headers: list[tuple[Template, list[Template]]] | None = None,
        body: str = "",
        close: bool = False,
        abort: bool = False,
    ) -> None:
        self.status = status
        self.headers = headers or []
        self.body = Template(body) if body else None
        self.close = close
        self.abort = abort
        # decided from the body as written (before placeholders), as Caddy does
        self.content_type = ("application/json" if _looks_like_json(body) else "text/plain; charset=utf-8") if body else ""

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        if self.abort:
            raise AbortConnection()
        fields = response.headers
        if self.close:
            fields.set("Connection", "close")
        for name, values in self.headers:
            field = name.render(request, response, empty_unknown=True)
            fields.set_all(field, [v.render(request, response, empty_unknown=True) for v in values])
        body = self.body.render(request, response) if self.body is not None else ""
        if body and not fields.get("Content-Type"):
            fields.set("Content-Type", self.content_type)
        status = 200
        error = request.error
        if error is not None and getattr(error, "status", 0) > 0:
            status = error.status
        if self.status is not None:
            status = render_status(self.status, request, response)
        if not 100 <= status <= 999:
            # Go's WriteHeader panics on such a code; the server drops the connection
            raise AbortConnection()
        if status == _EARLY_HINTS:
            response.write_informational(status, fields)
            return next(request, response)
        response.write_head(status)
        if body:
            response.write(body.encode("utf-8", "surrogateescape"))
        return None


@module("http.handlers.static_response", schema=Obj(
    {"status_code": ANY, "headers": MapOf(STRINGS), "body": STRING, "close": BOOL,
     "abort": BOOL},
))
def load_static_response(config: dict[str, Any], context: Any) -> StaticResponse:
    where = "static_response"
    headers: list[tuple[Template, list[Template]]] = []
    raw_headers = config.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise ConfigError(f"{where}: headers must be an object of field → list of values")
    for name, values in raw_headers.items():
        if values is None:
            values = []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where}: header {name!r} must be a list of strings")
        headers.append((Template(name), [Template(v) for v in values]))
    body = config.get("body") or ""
    if not isinstance(body, str):
        raise ConfigError(f"{where}: body must be a string")
    return StaticResponse(
        status=weak_status(config.get("status_code"), where),
        headers=headers,
        body=body,
        close=bool(config.get("close")),
        abort=bool(config.get("abort")),
    )


@implementer(IHandler)
class StaticError:
    """``http.handlers.error``: fail the request with a status and a message."""

    def __init__(self, status: Template | None = None, message: str = "") -> None:
        self.status = status
        self.message = message

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        status = 500 if self.status is None else render_status(self.status, request, response)
        raise HandlerError(status, self.message)


@module("http.handlers.error", schema=Obj({"error": STRING, "status_code": ANY}))
def load_error(config: dict[str, Any], context: Any) -> StaticError:
    message = config.get("error") or ""
    if not isinstance(message, str):
        raise ConfigError("error: the error message must be a string")
    return StaticError(weak_status(config.get("status_code"), "error"), message)
