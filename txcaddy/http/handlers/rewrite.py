"""``rewrite``: change the method and URI before later matchers and handlers see them.

A port of Caddy 2.6.2's ``rewrite.go``, quirks included, because configs
depend on them:

* ``uri`` is split into path, query and fragment; each part present replaces
  the request's. In the path ``{http.request.uri}`` is the *decoded* path
  plus query, and a ``?`` produced by a placeholder injects a query (used
  only when ``uri`` itself has an empty query part). In the query, values of
  placeholders are query-escaped, except ``{http.request.uri.query}`` where a
  key or a whole component may stand (it is already escaped); an unknown
  placeholder there gives ``%3Cnil%3E`` as in Caddy.
* ``strip_path_prefix``/``strip_path_suffix`` work on the cleaned, escaped
  path, compare case-insensitively and decode ``%xx`` in the path when the
  prefix has no ``%`` at that spot; no ``/`` is put back.
* ``uri_substring`` replaces in the cleaned path and in the raw query;
  ``path_regexp`` is Go's ``ReplaceAllString`` on the escaped path.

Go keeps a URL as a decoded ``Path`` plus an optional ``RawPath``; the
request keeps ``path`` and the escaped form Go would show (``raw_path``), so
each change below recomputes ``raw_path`` as Go's ``EscapedPath`` would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from txcaddy._go.fmt import sprint
from txcaddy._go.regexp import RegexpError, compile_regexp, expander
from txcaddy._go.regexp import replace_all as regexp_replace_all
from txcaddy._go.strings import to_upper
from txcaddy._go.url import path_escape, path_unescape, query_escape, valid_encoded
from txcaddy.config.placeholders import UNKNOWN, Template, replace_all, to_string
from txcaddy.config.registry import module
from txcaddy.config.schema import INT, STRING, ListOf, Obj, Spec
from txcaddy.errors import ConfigError
from txcaddy.http.matchers import clean_path_keep_slashes as clean_path
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler

__all__ = ["Rewrite", "change_path", "trim_path_prefix"]

# -- Caddy's path prefix trimming on the escaped path ---------------------------------------

_HEX = frozenset("0123456789abcdefABCDEF")


def _latin1(text: str) -> str:
    """The UTF-8 bytes of ``text``, one character per byte (to index like Go)."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _from_latin1(text: str) -> str:
    return text.encode("latin-1").decode("utf-8", "surrogateescape")


def _fold_equal(a: str, b: str) -> bool:
    """Go's ``strings.EqualFold`` on two one-character strings in U+0000..U+00FF."""
    return a == b or a.lower() == b.lower()


def trim_path_prefix(escaped_path: str, prefix: str) -> str:
    """Caddy's ``trimPathPrefix``, byte for byte (its quirks included)."""
    path = _latin1(escaped_path)
    pre = _latin1(prefix)
    i_path = i_prefix = 0
    length = len(path)
    while i_path < length and i_prefix < len(pre):
        prefix_ch = pre[i_prefix]
        ch = path[i_path]
        if ch == "%" and prefix_ch != "%" and length >= i_path + 3:
            escape = path[i_path + 1 : i_path + 3]
            if escape[0] not in _HEX or escape[1] not in _HEX:
                return escaped_path
            byte = int(escape, 16)
            if byte >= 0x80:
                return escaped_path  # a lone non-ASCII byte never folds equal in Go
            ch = chr(byte)
            i_path += 2
        if not _fold_equal(ch, prefix_ch):
            return escaped_path
        i_path += 1
        i_prefix += 1
    if i_path >= len(pre):
        return _from_latin1(path[i_path:])
    return escaped_path


def _store_url_path(request: Request, path: str, go_raw_path: str) -> None:
    """Set Go's (Path, RawPath) pair on the request, keeping ``raw_path`` = ``EscapedPath()``."""
    request.path = path
    if go_raw_path and valid_encoded(go_raw_path) and path_unescape(go_raw_path) == path:
        request.raw_path = go_raw_path
    elif path == "*":
        request.raw_path = "*"
    else:
        request.raw_path = path_escape(path)


def change_path(request: Request, new_value: Callable[[str], str]) -> None:
    """Caddy's ``changePath``: apply to the escaped path, falling back to the decoded one."""
    raw = new_value(request.raw_path)
    decoded = path_unescape(raw)
    if decoded is not None and decoded != "":
        path = decoded
    else:
        path = new_value(request.path)
    _store_url_path(request, path, "" if raw == path else raw)


# -- the query part of ``uri`` -------------------------------------------------------------


def _query_value_text(value: Any) -> str:
    """The text Caddy's query replacer escapes: strings, Stringers, ints, else ``%+v``."""
    if value.__class__ is str:
        return value
    return sprint(value)


class _QueryComponent:
    __slots__ = ("segments", "amp_is_next")

    def __init__(self, text: str, amp_is_next: bool) -> None:
        template = Template(text)
        # the segments of the compiled template: literal strings and slots
        self.segments: tuple[Any, ...] = template._segments
        self.amp_is_next = amp_is_next

    def render(self, request: Request, response: Response | None, raw_query_ok: bool) -> str:
        segments = self.segments
        if len(segments) == 1 and segments[0].__class__ is str:
            return segments[0]
        out = []
        for segment in segments:
            if segment.__class__ is str:
                out.append(segment)
                continue
            value = segment.resolve(request, response)
            if value is UNKNOWN:
                value = None
            if raw_query_ok and segment.key == "http.request.uri.query":
                out.append(to_string(value))
            else:
                out.append(query_escape(_query_value_text(value)))
        return "".join(out)


def _split_query(qs: str) -> list[_QueryComponent]:
    """Split the query of ``uri`` at ``=``/``&`` as Caddy's ``buildQueryString`` does."""
    components = []
    while qs:
        next_eq, next_amp = qs.find("="), qs.find("&")
        amp_is_next = next_amp >= 0 and (next_amp < next_eq or next_eq < 0)
        end = len(qs)
        if amp_is_next:
            end = next_amp
        elif next_eq >= 0 and (next_eq < next_amp or next_amp < 0):
            end = next_eq
        components.append(_QueryComponent(qs[:end], amp_is_next))
        qs = qs[end + 1 :] if end < len(qs) else ""
    return components


def _build_query(components: list[_QueryComponent], request: Request, response: Response | None) -> str:
    out: list[str] = []
    size = 0
    wrote_value = True
    for component in components:
        text = component.render(request, response, wrote_value)
        if wrote_value:
            if size > 0 and text:
                out.append("&")
                size += 1
        else:
            out.append("=")
            size += 1
        out.append(text)
        size += len(text)
        wrote_value = component.amp_is_next
    return "".join(out)


# -- the handler -------------------------------------------------------------------------------

_URI_PLACEHOLDER = "{http.request.uri}"


class _URIRewrite:
    """The ``uri`` field, split and compiled."""

    def __init__(self, uri: str) -> None:
        path_start = qs_start = frag_start = -1
        path_end = qs_end = -1
        for i, ch in enumerate(uri):
            if ch == "?" and qs_start < 0:
                path_end, qs_start = i, i + 1
            elif ch == "#" and frag_start < 0:
                if qs_start < 0:
                    path_end = i
                else:
                    qs_end = i
                frag_start = i + 1
                break
            elif path_start < 0 and qs_start < 0:
                path_start = i
        if path_start >= 0 and path_end < 0:
            path_end = len(uri)
        if qs_start >= 0 and qs_end < 0:
            qs_end = len(uri)
        self.path = uri[path_start:path_end] if path_start > -1 else ""
        self.query = uri[qs_start:qs_end] if qs_start > -1 else ""
        self.sets_path = path_start >= 0
        self.sets_query = qs_start >= 0
        self.path_has_uri = _URI_PLACEHOLDER in self.path
        self.path_template = Template(self.path)
        self.query_components = _split_query(self.query)

    def apply(self, request: Request, response: Response | None) -> None:
        new_path = ""
        path = self.path
        if path:
            if self.path_has_uri:
                current = request.path + ("?" + request.query if request.query else "")
                new_path = replace_all(path.replace(_URI_PLACEHOLDER, current), request, response)
            else:
                new_path = self.path_template.render(request, response, empty_unknown=True)
        components = self.query_components
        if "?" in new_path:
            new_path, _, injected = new_path.partition("?")
            if not self.query:
                components = _split_query(injected)
        new_query = _build_query(components, request, response) if components else ""
        if self.sets_path:
            # Go sets URL.Path and keeps the old RawPath, used again only if it still fits
            _store_url_path(request, new_path, request.raw_path)
        if self.sets_query:
            request.query = new_query


class _SubstringReplacer:
    def __init__(self, config: dict[str, Any]) -> None:
        self.find = config.get("find") or ""
        self.find_template = Template(self.find)
        self.replace_template = Template(config.get("replace") or "")
        limit = config.get("limit") or 0
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ConfigError("rewrite: uri_substring limit must be an integer")
        self.count = -1 if limit <= 0 else limit
        self.merge_slashes = "//" not in self.find

    def apply(self, request: Request, response: Response | None) -> None:
        if not self.find:
            return
        find = self.find_template.render(request, response, empty_unknown=True)
        replacement = self.replace_template.render(request, response, empty_unknown=True)
        count, merge = self.count, self.merge_slashes
        change_path(request, lambda p: clean_path(p, merge).replace(find, replacement, count))
        request.query = request.query.replace(find, replacement, count)


class _RegexpReplacer:
    def __init__(self, config: dict[str, Any]) -> None:
        find = config.get("find") or ""
        if not find:
            raise ConfigError("rewrite: path_regexp find cannot be empty")
        try:
            self.regexp = compile_regexp(find)
        except RegexpError as e:
            raise ConfigError(f"rewrite: compiling regular expression: {e}") from None
        replace = config.get("replace") or ""
        self.replace_template = Template(replace)
        self.static_expand = expander(self.regexp, replace) if self.replace_template.is_static else None

    def apply(self, request: Request, response: Response | None) -> None:
        expand = self.static_expand
        if expand is None:
            expand = expander(self.regexp, self.replace_template.render(request, response, empty_unknown=True))
        regexp = self.regexp
        change_path(request, lambda p: regexp_replace_all(regexp, p, expand))


@implementer(IHandler)
class Rewrite:
    """``http.handlers.rewrite``."""

    def __init__(
        self,
        method: str = "",
        uri: str = "",
        strip_path_prefix: str = "",
        strip_path_suffix: str = "",
        uri_substring: list[dict[str, Any]] | None = None,
        path_regexp: list[dict[str, Any]] | None = None,
    ) -> None:
        self.method = Template(method) if method else None
        self.uri = _URIRewrite(uri) if uri else None
        self.strip_prefix = Template(strip_path_prefix) if strip_path_prefix else None
        self.strip_suffix = Template(strip_path_suffix) if strip_path_suffix else None
        self.substrings = [_SubstringReplacer(c) for c in uri_substring or ()]
        self.regexps = [_RegexpReplacer(c) for c in path_regexp or ()]

    def rewrite(self, request: Request, response: Response | None = None) -> None:
        """Change ``request`` in place (also used by handlers that embed a rewrite)."""
        if self.method is not None:
            request.method = to_upper(self.method.render(request, response, empty_unknown=True))
        if self.uri is not None:
            self.uri.apply(request, response)
        if self.strip_prefix is not None:
            prefix = self.strip_prefix.render(request, response, empty_unknown=True)
            merge = "//" not in prefix
            change_path(request, lambda p: trim_path_prefix(clean_path(p, merge), prefix))
        if self.strip_suffix is not None:
            suffix = self.strip_suffix.render(request, response, empty_unknown=True)
            merge = "//" not in suffix
            reversed_suffix = suffix[::-1]
            change_path(request, lambda p: trim_path_prefix(clean_path(p, merge)[::-1], reversed_suffix)[::-1])
        for substring in self.substrings:
            substring.apply(request, response)
        for regexp in self.regexps:
            regexp.apply(request, response)

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        self.rewrite(request, response)
        return next(request, response)


def _list_of_objects(config: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = config.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"rewrite: {key} must be a list of objects")
    return value


#: ``rewrite.Rewrite``; ``reverse_proxy`` uses it for its ``rewrite`` too.
REWRITE_SCHEMA: Spec = Obj(
    {
        "method": STRING, "uri": STRING, "strip_path_prefix": STRING, "strip_path_suffix": STRING,
        "uri_substring": ListOf(Obj({"find": STRING, "replace": STRING, "limit": INT}, strict=True)),
        "path_regexp": ListOf(Obj({"find": STRING, "replace": STRING}, strict=True)),
    },
    strict=True, name="rewrite.Rewrite",
)


@module("http.handlers.rewrite", schema=REWRITE_SCHEMA)
def load_rewrite(config: dict[str, Any], context: Any) -> Rewrite:
    for key in ("method", "uri", "strip_path_prefix", "strip_path_suffix"):
        if not isinstance(config.get(key) or "", str):
            raise ConfigError(f"rewrite: {key} must be a string")
    return Rewrite(
        method=config.get("method") or "",
        uri=config.get("uri") or "",
        strip_path_prefix=config.get("strip_path_prefix") or "",
        strip_path_suffix=config.get("strip_path_suffix") or "",
        uri_substring=_list_of_objects(config, "uri_substring"),
        path_regexp=_list_of_objects(config, "path_regexp"),
    )
