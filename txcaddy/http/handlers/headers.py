"""``headers`` (``header``, ``request_header``): add, set, delete and replace header fields.

A port of Caddy 2.6.2's ``headers.go``. Operations run in Caddy's order: add,
set, delete, replace; names and values use ``ReplaceKnown`` (unknown
placeholders stay as written). Request operations see ``Host`` as a header
field, as Caddy arranges, and a changed ``Host`` becomes the request's host.

Response operations run at once, unless they are ``deferred`` or have a
``require`` matcher: then they run when the status is written, through a
response wrapper given to the handlers after this one — so, as in Caddy,
they apply to responses those handlers write (including headers those
handlers set), not to a response the server or the error routes write.
"""

from __future__ import annotations

import re
from typing import Any

from zope.interface import implementer

from txcaddy._go.regexp import RegexpError, compile_regexp, expander, replace_all
from txcaddy._go.textproto import canonical_mime_header_key as canonical_key
from txcaddy.config.placeholders import Template
from txcaddy.config.registry import module
from txcaddy.config.schema import BOOL, INT, STRING, STRINGS, ListOf, MapOf, Nullable, Obj, Spec
from txcaddy.errors import ConfigError
from txcaddy.http.errors import AbortConnection
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request
from txcaddy.http.response import Response, ResponseWrapper
from txcaddy.interfaces import IHandler

__all__ = ["HeaderOps", "HeadersHandler", "ResponseMatcher", "status_code_matches"]


# -- response matchers (also used by encode and reverse_proxy's handle_response) ------------


def status_code_matches(actual: int, configured: int) -> bool:
    """Caddy's ``StatusCodeMatches``: exact, or a class like ``2`` for 2xx."""
    if actual == configured:
        return True
    return configured < 100 and configured * 100 <= actual < (configured + 1) * 100


def _value_matches(actual: str, allowed: str) -> bool:
    if allowed == "*":
        return True
    if len(allowed) >= 2 and allowed[0] == "*" and allowed[-1] == "*":
        return allowed[1:-1] in actual
    if allowed[:1] == "*":
        return actual.endswith(allowed[1:])
    if allowed[-1:] == "*":
        return actual.startswith(allowed[:-1])
    return actual == allowed


class ResponseMatcher:
    """Caddy's ``ResponseMatcher``: status codes (any of) and header fields (all of).

    A field with ``null`` must be absent, with ``[]`` must be present; otherwise
    one of its values must match one of the patterns (``*``, ``*x``, ``x*``,
    ``*x*`` or exact).
    """

    __slots__ = ("status_codes", "headers")

    def __init__(self, status_codes: list[int] | None = None, headers: dict[str, list[str] | None] | None = None) -> None:
        self.status_codes = status_codes
        self.headers = [(canonical_key(name), values) for name, values in (headers or {}).items()]

    @classmethod
    def from_config(cls, config: Any, where: str) -> ResponseMatcher:
        if not isinstance(config, dict):
            raise ConfigError(f"{where}: a response matcher must be an object")
        codes = config.get("status_code")
        if codes is not None and (not isinstance(codes, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in codes)):
            raise ConfigError(f"{where}: status_code must be a list of integers")
        headers = config.get("headers")
        if headers is not None:
            if not isinstance(headers, dict):
                raise ConfigError(f"{where}: headers must be an object")
            for name, values in headers.items():
                if values is not None and (not isinstance(values, list) or not all(isinstance(v, str) for v in values)):
                    raise ConfigError(f"{where}: header {name!r} must be null or a list of strings")
        return cls(codes, headers)

    def match(self, status: int, headers: Headers) -> bool:
        if self.status_codes is not None:
            for code in self.status_codes:
                if status_code_matches(status, code):
                    break
            else:
                return False
        for name, allowed in self.headers:
            actual = headers.get_all(name) if name in headers else None
            if allowed is not None and not allowed and actual is not None:
                continue
            if allowed is None and actual is None:
                continue
            if not actual or not allowed:
                return False
            if not any(_value_matches(value, pattern) for value in actual for pattern in allowed):
                return False
        return True


# -- header operations ------------------------------------------------------------------


class _Replacement:
    __slots__ = ("search", "regexp", "replace", "static_expand")

    def __init__(self, config: Any, field: str) -> None:
        if not isinstance(config, dict):
            raise ConfigError(f"header replacement for field '{field}' must be an object")
        search = config.get("search") or ""
        search_regexp = config.get("search_regexp") or ""
        replace = config.get("replace") or ""
        if search and search_regexp:
            raise ConfigError(f"cannot specify both a substring search and a regular expression search for field '{field}'")
        self.search = Template(search)
        self.replace = Template(replace)
        self.regexp: re.Pattern[str] | None = None
        self.static_expand: Any = None
        if search_regexp:
            try:
                self.regexp = compile_regexp(search_regexp)
            except RegexpError as e:
                raise ConfigError(f"replacement for header field '{field}': {e}") from None
            if self.replace.is_static:
                self.static_expand = expander(self.regexp, replace)

    def apply_all(self, headers: Headers, names: list[str] | None, request: Any, response: Any) -> None:
        """Replace in every value of ``names`` (all fields when None)."""
        regexp = self.regexp
        if regexp is not None:
            expand = self.static_expand or expander(regexp, self.replace.render(request, response))
        else:
            search = self.search.render(request, response)
            replacement = self.replace.render(request, response)
        for name in headers.names() if names is None else names:
            values = headers.get_all(name)
            if not values:
                continue
            if regexp is not None:
                new_values = [replace_all(regexp, value, expand) for value in values]
            else:
                new_values = [value.replace(search, replacement) for value in values]
            if new_values != values:
                headers.set_all(name, new_values)


def _string_map(config: Any, where: str) -> list[tuple[Template, list[Template]]]:
    if config is None:
        return []
    if not isinstance(config, dict):
        raise ConfigError(f"{where} must be an object of field → list of values")
    result = []
    for name, values in config.items():
        if values is None:
            values = []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where}: field {name!r} must be a list of strings")
        result.append((Template(name), [Template(v) for v in values]))
    return result


class HeaderOps:
    """Caddy's ``HeaderOps``: the operations on one header map."""

    def __init__(self, config: dict[str, Any], where: str) -> None:
        self.add = _string_map(config.get("add"), f"{where}.add")
        self.set = _string_map(config.get("set"), f"{where}.set")
        delete = config.get("delete") or []
        if not isinstance(delete, list) or not all(isinstance(d, str) for d in delete):
            raise ConfigError(f"{where}.delete must be a list of field names")
        self.delete = [Template(name) for name in delete]
        replace = config.get("replace") or {}
        if not isinstance(replace, dict):
            raise ConfigError(f"{where}.replace must be an object of field → replacements")
        self.replace: list[tuple[Template, list[_Replacement]]] = []
        for name, replacements in replace.items():
            if not isinstance(replacements, list):
                raise ConfigError(f"{where}.replace: field {name!r} must have a list of replacements")
            self.replace.append((Template(name), [_Replacement(r, name) for r in replacements]))

    @property
    def empty(self) -> bool:
        return not (self.add or self.set or self.delete or self.replace)

    def apply(self, headers: Headers, request: Any, response: Any = None) -> None:
        """Run the operations on ``headers`` (Caddy's ``ApplyTo``)."""
        for name, values in self.add:
            field = name.render(request, response)
            for value in values:
                headers.add(field, value.render(request, response))
        for name, values in self.set:
            field = name.render(request, response)
            headers.set(field, ",".join(value.render(request, response) for value in values))
        for name in self.delete:
            _delete(headers, name.render(request, response).lower())
        for name, replacements in self.replace:
            field = canonical_key(name.render(request, response))
            names = None if field == "*" else [field]
            for replacement in replacements:
                replacement.apply_all(headers, names, request, response)

    def apply_to_request(self, request: Request, response: Any = None) -> None:
        """Run the operations on the request's fields, with ``Host`` among them."""
        headers = request.headers
        headers.set("Host", request.host)
        self.apply(headers, request, response)
        hosts = headers.get_all("Host")
        request.host = hosts[-1] if hosts else ""
        if request.host:
            headers.set("Host", request.host)
        else:
            headers.delete("Host")


def _delete(headers: Headers, pattern: str) -> None:
    if pattern.startswith("*") and pattern.endswith("*"):
        if len(pattern) == 1:
            # Caddy slices "*"[1:0] here and panics; Go then drops the connection
            raise AbortConnection()
        needle = pattern[1:-1]
        for name in headers.names():
            if needle in name.lower():
                headers.delete(name)
    elif pattern.startswith("*"):
        needle = pattern[1:]
        for name in headers.names():
            if name.lower().endswith(needle):
                headers.delete(name)
    elif pattern.endswith("*"):
        needle = pattern[:-1]
        for name in headers.names():
            if name.lower().startswith(needle):
                headers.delete(name)
    else:
        headers.delete(pattern)


# -- the handler ------------------------------------------------------------------------


class _DeferredHeaders(ResponseWrapper):
    """Runs response operations when the status is written through it."""

    def __init__(self, inner: Response, ops: HeaderOps | None, require: ResponseMatcher | None, request: Request) -> None:
        super().__init__(inner)
        self._ops = ops
        self._require = require
        self._request = request

    def _apply(self, status: int) -> None:
        if self._require is None or self._require.match(status, self.inner.headers):
            if self._ops is not None:
                self._ops.apply(self.inner.headers, self._request, self.inner)

    def write_head(self, status: int) -> None:
        if self.inner.head_sent:
            return
        self._apply(status)
        self.inner.write_head(status)

    def write_informational(self, status: int, headers: Headers | None = None) -> None:
        self._apply(status)
        self.inner.write_informational(status, headers)


@implementer(IHandler)
class HeadersHandler:
    """``http.handlers.headers``."""

    def __init__(
        self,
        request_ops: HeaderOps | None = None,
        response_ops: HeaderOps | None = None,
        require: ResponseMatcher | None = None,
        deferred: bool = False,
    ) -> None:
        self.request_ops = request_ops
        self.response_ops = response_ops
        self.require = require
        self.deferred = deferred
        self.has_response = response_ops is not None or require is not None or deferred

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        if self.request_ops is not None:
            self.request_ops.apply_to_request(request, response)
        if self.has_response:
            if self.deferred or self.require is not None:
                response = _DeferredHeaders(response, self.response_ops, self.require, request)
            elif self.response_ops is not None:
                self.response_ops.apply(response.headers, request, response)
        return next(request, response)


_REPLACEMENT = Obj({"search": STRING, "search_regexp": STRING, "replace": STRING}, strict=True)
_HEADER_OPS = {"add": MapOf(STRINGS), "set": MapOf(STRINGS), "delete": STRINGS, "replace": MapOf(ListOf(_REPLACEMENT))}

#: ``headers.HeaderOps``: one header map's operations (``push`` uses it for its pushed requests).
HEADER_OPS_SCHEMA: Spec = Obj(_HEADER_OPS, strict=True, name="headers.HeaderOps")

#: ``headers.Handler``; ``reverse_proxy`` uses it for its ``headers`` too.
HEADERS_SCHEMA: Spec = Obj(
    {
        "request": HEADER_OPS_SCHEMA,
        "response": Obj(
            {**_HEADER_OPS, "require": Obj({"status_code": ListOf(INT), "headers": MapOf(Nullable(STRINGS))}),
             "deferred": BOOL},
            strict=True, name="headers.RespHeaderOps",
        ),
    },
    strict=True, name="headers.Handler",
)


@module("http.handlers.headers", schema=HEADERS_SCHEMA)
def load_headers(config: dict[str, Any], context: Any) -> HeadersHandler:
    request_config = config.get("request")
    response_config = config.get("response")
    for key, value in (("request", request_config), ("response", response_config)):
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"headers: {key} must be an object")
    request_ops = HeaderOps(request_config, "headers.request") if request_config is not None else None
    response_ops = None
    require = None
    deferred = False
    if response_config is not None:
        response_ops = HeaderOps(response_config, "headers.response")
        if response_config.get("require") is not None:
            require = ResponseMatcher.from_config(response_config["require"], "headers.response.require")
        deferred = bool(response_config.get("deferred"))
    return HeadersHandler(request_ops, response_ops, require, deferred)
