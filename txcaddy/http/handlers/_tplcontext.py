"""The value a ``templates`` page runs on, and Caddy's template functions.

A port of Caddy 2.6.2's ``tplcontext.go`` and ``frontmatter.go``: ``.Req`` (a view of the request
with Go's field names), ``.Args``, ``.RespHeader.Add/Set/Del``, ``.OriginalReq``, ``.Cookie``,
``.RemoteIP``, ``.Host``, and the functions ``include``, ``import``, ``httpInclude``,
``readFile``, ``listFiles``, ``fileExists``, ``stripHTML``, ``markdown``, ``splitFrontMatter``,
``env``, ``placeholder``/``ph``, ``httpError``, ``humanize``, ``pathEscape``. Files are read
under the handler's root as Go's ``http.Dir`` does (the name cleaned as if absolute, so ``..``
cannot leave the root). ``tomllib`` is imported by the first TOML front matter.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

from txcaddy._go.fs import path_error
from txcaddy._go.http import remote_addr, request_cookie
from txcaddy._go.net import AddrError, split_host_port
from txcaddy._go.path import clean
from txcaddy._go.time import compile_layout, format_layout
from txcaddy._go.url import parse_query, path_escape
from txcaddy._gotemplate import ExecError, Template
from txcaddy._gotemplate._fmt import NilSlice
from txcaddy._gotemplate.sprig import FUNCS as SPRIG_FUNCS
from txcaddy._gotemplate.sprig import GoTime, strval
from txcaddy.config.placeholders import lookup, to_string
from txcaddy.http.errors import HandlerError
from txcaddy.http.headers import Headers

__all__ = ["RECURSION_HEADER", "TemplateContext", "extract_front_matter", "markdown", "strip_html"]

RECURSION_HEADER = "Caddy-Templates-Include"


# -- Go views of request parts -------------------------------------------------------------------


class GoHeader(dict):  # type: ignore[type-arg]
    """An ``http.Header``: a map of canonical names to value lists, with ``Get``/``Values``."""

    go_type_name = "http.Header"

    def Get(self, name: str) -> str:  # noqa: N802 (Go's method name)
        from txcaddy._go.textproto import canonical_mime_header_key

        values = self.get(canonical_mime_header_key(name))
        return values[0] if values else ""

    def Values(self, name: str) -> list[str]:  # noqa: N802
        from txcaddy._go.textproto import canonical_mime_header_key

        return list(self.get(canonical_mime_header_key(name)) or [])


class GoValues(dict):  # type: ignore[type-arg]
    """A ``url.Values`` with ``Get``."""

    go_type_name = "url.Values"

    def Get(self, name: str) -> str:  # noqa: N802
        values = self.get(name)
        return values[0] if values else ""


class GoURL:
    """A ``*url.URL`` as far as templates read it."""

    go_type_name = "*url.URL"

    def __init__(self, scheme: str, host: str, path: str, raw_path: str, query: str) -> None:
        self.Scheme = scheme
        self.Host = host
        self.Path = path
        self.RawPath = raw_path if raw_path != path_escape(path) else ""
        self.RawQuery = query
        self.Fragment = ""

    def Query(self) -> GoValues:  # noqa: N802
        values, _ = parse_query(self.RawQuery)
        return GoValues({k: list(v) for k, v in values.items()})

    def EscapedPath(self) -> str:  # noqa: N802
        return self.RawPath or path_escape(self.Path)

    def RequestURI(self) -> str:  # noqa: N802
        return self.EscapedPath() + ("?" + self.RawQuery if self.RawQuery else "")

    def String(self) -> str:  # noqa: N802
        prefix = f"{self.Scheme}://{self.Host}" if self.Scheme else ""
        return prefix + self.RequestURI()

    def __str__(self) -> str:
        return self.String()


class GoCookie:
    """An ``*http.Cookie`` from a request: ``Name``, ``Value``; prints as ``name=value``."""

    go_type_name = "*http.Cookie"

    def __init__(self, name: str, value: str) -> None:
        self.Name = name
        self.Value = value

    def String(self) -> str:  # noqa: N802
        return f"{self.Name}={self.Value}"

    def __str__(self) -> str:
        return self.String()


class GoRequest:
    """An ``*http.Request`` with the fields and methods templates use (``.Req.URL.Path``)."""

    go_type_name = "*http.Request"

    def __init__(self, request: Any, original: bool = False) -> None:
        self._request = request
        self.Method = request.orig_method if original else request.method
        self.Proto = request.proto
        self.Host = request.host
        self.RemoteAddr = remote_addr(request)
        self.RequestURI = request.request_uri
        if original:
            path, raw, query = request.orig_path, request.orig_raw_path, request.orig_query
        else:
            path, raw, query = request.path, request.raw_path, request.query
        self.URL = GoURL("", "", path, raw, query)
        # Go's server moves Host out of the header map into Request.Host
        self.Header = GoHeader({name: list(values) for name, values in request.headers.lists() if name != "Host"})
        self.ContentLength = 0

    def Cookie(self, name: str) -> GoCookie:  # noqa: N802
        value = request_cookie(self._request.headers, name)
        if value is None:
            raise ValueError("http: named cookie not present")
        return GoCookie(name, value)

    def FormValue(self, name: str) -> str:  # noqa: N802
        return self.URL.Query().Get(name)


class WrappedHeader:
    """``.RespHeader``: the response's header fields; Add/Set/Del return "" to print nothing."""

    go_type_name = "templates.WrappedHeader"

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def Add(self, field: str, value: str) -> str:  # noqa: N802
        self._headers.add(field, value)
        return ""

    def Set(self, field: str, value: str) -> str:  # noqa: N802
        self._headers.set(field, value)
        return ""

    def Del(self, field: str) -> str:  # noqa: N802
        self._headers.delete(field)
        return ""

    def Get(self, field: str) -> str:  # noqa: N802
        return self._headers.get(field) or ""


# -- pure functions ------------------------------------------------------------------------------


def strip_html(s: str) -> str:
    """Caddy's ``stripHTML``: drop ``<…>`` tags (quotes respected); an unclosed tag stays."""
    out: list[str] = []
    in_tag = in_quotes = False
    tag_start = 0
    for i, ch in enumerate(s):
        if in_tag:
            if ch == ">" and not in_quotes:
                in_tag = False
            elif ch == "<" and not in_quotes:
                out.append(s[tag_start:i])
                tag_start = i
            elif ch == '"':
                in_quotes = not in_quotes
            continue
        if ch == "<":
            in_tag = True
            tag_start = i
            continue
        out.append(ch)
    if in_tag:
        out.append(s[tag_start:])
    return "".join(out)


_MD: Any = None


def _heading_ids(state: Any) -> None:
    """goldmark's ``WithAutoHeadingID``: from the heading's source text, ASCII letters and digits
    lowered, spaces, ``-`` and ``_`` as ``-``, the rest dropped; repeats get ``-1``, ``-2``…"""
    seen: set[str] = set()
    tokens = state.tokens
    for i, tok in enumerate(tokens):
        if tok.type != "heading_open" or tok.attrGet("id"):
            continue
        text = tokens[i + 1].content if i + 1 < len(tokens) else ""  # the heading's source line
        ident = []
        for ch in text.strip(" \t\n\r"):
            if ch.isascii() and ch.isalnum():
                ident.append(ch.lower())
            elif ch in " \t\n\r-_":
                ident.append("-")
        slug = "".join(ident) or "heading"
        if slug in seen:
            n = 1
            while f"{slug}-{n}" in seen:
                n += 1
            slug = f"{slug}-{n}"
        seen.add(slug)
        tok.attrSet("id", slug)


def markdown(text: Any) -> str:
    """Caddy's ``markdown``: CommonMark with GFM tables and strikethrough, raw HTML kept,
    heading ids; rendered by markdown-it-py where Caddy uses goldmark."""
    global _MD
    if _MD is None:
        try:
            from markdown_it import MarkdownIt
        except ImportError:
            raise ValueError("markdown: the markdown-it-py package is not installed") from None
        md = MarkdownIt("commonmark", {"html": True, "xhtmlOut": False}).enable(["table", "strikethrough"])
        md.core.ruler.push("heading_ids", _heading_ids)
        md.add_render_rule("s_open", lambda *a: "<del>")
        md.add_render_rule("s_close", lambda *a: "</del>")
        _MD = md
    return str(_MD.render(strval(text)))


class Int64(int):
    """A TOML integer: Go's BurntSushi decoder gives ``int64`` (``printf "%T"`` says so)."""

    go_type_name = "int64"


class UTCTime(GoTime):
    """A date from front matter: a ``time.Time`` in UTC, printed as Go prints it."""

    __slots__ = ()

    def __str__(self) -> str:
        return format_layout(_TIME_STRING, float(self), False)


_TIME_STRING = compile_layout("2006-01-02 15:04:05.999999999 -0700 MST")


def _go_values(value: Any, toml: bool = False) -> Any:
    """Decoded front matter as Go's decoders give it: dates as ``time.Time``, TOML ints as int64."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: _go_values(v, toml) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_values(v, toml) for v in value]
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return UTCTime(value.timestamp())
    if isinstance(value, datetime.date):
        return UTCTime(datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.UTC).timestamp())
    if toml and isinstance(value, int) and not isinstance(value, bool):
        return Int64(value)
    return value


_YAML_LOADER: Any = None


def _yaml_loader() -> Any:
    """PyYAML's safe loader with YAML 1.2's booleans (only true/false), as Go's yaml.v3."""
    global _YAML_LOADER
    if _YAML_LOADER is None:
        import re

        import yaml

        class Loader(yaml.SafeLoader):
            pass

        resolvers = {}
        for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items():
            resolvers[first] = [(tag, regexp) for tag, regexp in entries if tag != "tag:yaml.org,2002:bool"]
        Loader.yaml_implicit_resolvers = resolvers
        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
        _YAML_LOADER = Loader
    return _YAML_LOADER


def _yaml(text: str) -> dict[str, Any]:
    try:
        import yaml
    except ImportError:
        raise ValueError("YAML front matter needs the PyYAML package") from None
    value = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (a safe loader)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"yaml: cannot unmarshal {type(value).__name__} into map")
    return dict(_go_values(value))


def _toml(text: str) -> dict[str, Any]:
    import tomllib  # imported on first use (module docstring)

    return dict(_go_values(tomllib.loads(text), toml=True))


def _json_front(text: str) -> dict[str, Any]:
    value = json.loads("{" + text + "}")
    return dict(value)


_FRONT_MATTER: list[tuple[str, list[str], Callable[[str], dict[str, Any]]]] = [
    ("---", ["---"], _yaml),
    ("+++", ["+++"], _toml),
    ("{", ["}"], _json_front),
]


def extract_front_matter(text: str) -> tuple[dict[str, Any] | None, str]:
    """Caddy's ``extractFrontMatter``: (metadata, body); no front matter gives (None, text)."""
    first_start = first_end = 0
    line_empty = True
    for i, ch in enumerate(text):
        if ch == "\n":
            first_start = first_end
            if first_start > 0:
                first_start += 1
            first_end = i
            if not line_empty:
                break
            continue
        line_empty = line_empty and ch.isspace()
    first_line = text[first_start:first_end].strip()
    found = next((entry for entry in _FRONT_MATTER if entry[0] == first_line), None)
    if found is None:
        return None, text
    _, fence_close, parser = found
    end_start = -1
    end_fence = ""
    for fence in fence_close:
        index = text.find("\n" + fence, first_end)
        if index >= 0:
            end_start = index - first_end
            end_fence = fence
            break
    if end_start < 0:
        raise ValueError("unterminated front matter")
    end_start += first_end + 1
    meta = parser(text[first_end:end_start])
    return meta, text[end_start + len(end_fence):]


_SIZES = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]


def humanize_bytes(size: int) -> str:
    """go-humanize's ``Bytes`` (SI units)."""
    if size < 10:
        return f"{size} B"
    e = math.floor(math.log(size) / math.log(1000))
    value = math.floor(size / 1000**e * 10 + 0.5) / 10
    return (f"{value:.1f} {_SIZES[e]}" if value < 10 else f"{value:.0f} {_SIZES[e]}")


_SECOND, _MINUTE, _HOUR, _DAY = 1, 60, 3600, 86400
_WEEK, _MONTH = 7 * _DAY, 30 * _DAY
_YEAR = 12 * _MONTH
_MAGNITUDES: list[tuple[float, str, int]] = [
    (_SECOND, "now", 1),
    (2 * _SECOND, "1 second %s", 1),
    (_MINUTE, "%d seconds %s", _SECOND),
    (2 * _MINUTE, "1 minute %s", 1),
    (_HOUR, "%d minutes %s", _MINUTE),
    (2 * _HOUR, "1 hour %s", 1),
    (_DAY, "%d hours %s", _HOUR),
    (2 * _DAY, "1 day %s", 1),
    (_WEEK, "%d days %s", _DAY),
    (2 * _WEEK, "1 week %s", 1),
    (_MONTH, "%d weeks %s", _WEEK),
    (2 * _MONTH, "1 month %s", 1),
    (_YEAR, "%d months %s", _MONTH),
    (18 * _MONTH, "1 year %s", 1),
    (2 * _YEAR, "2 years %s", 1),
    (37 * _YEAR, "%d years %s", _YEAR),
    (math.inf, "a long while %s", 1),
]


def humanize_time(then: float, now: float) -> str:
    """go-humanize's ``Time``: "3 days ago", "1 hour from now"."""
    label = "ago"
    diff = now - then
    if then > now:
        label, diff = "from now", then - now
    diff = int(diff)
    for limit, fmt, divide in _MAGNITUDES:
        if diff < limit:
            if fmt.startswith("%d"):
                return fmt.replace("%d", str(diff // divide)).replace("%s", label)
            return fmt.replace("%s", label).rstrip() if "%s" in fmt else fmt
    return "a long while " + label  # pragma: no cover


_LAYOUT_TOKENS = [
    ("2006", "%Y"), ("January", "%B"), ("Jan", "%b"), ("Monday", "%A"), ("Mon", "%a"), ("-0700", "%z"),
    ("-07:00", "%z"), ("MST", "%Z"), ("01", "%m"), ("02", "%d"), ("15", "%H"), ("04", "%M"), ("05", "%S"),
]


def _parse_time(layout: str, text: str) -> float:
    if layout == "Mon, 02 Jan 2006 15:04:05 -0700":
        parsed = email.utils.parsedate_to_datetime(text)
        return parsed.timestamp()
    fmt = layout
    for go, py in _LAYOUT_TOKENS:
        fmt = fmt.replace(go, py)
    value = datetime.datetime.strptime(text, fmt)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()


# -- the context ---------------------------------------------------------------------------------


class TemplateContext:
    """Caddy's ``TemplateContext``: the dot of a page, and the functions bound to it."""

    go_type_name = "*templates.TemplateContext"

    def __init__(self, root: str | None, request: Any, response_headers: Headers, handler: Any = None,
                 delimiters: tuple[str, str] = ("", ""), clock: Callable[[], float] = time.time) -> None:
        self.Root = root
        self._request = request
        self.Req = GoRequest(request)
        self.Args: list[Any] = NilSlice()
        self.RespHeader = WrappedHeader(response_headers)
        self._handler = handler
        self._delimiters = delimiters
        self._clock = clock
        self._template: Template | None = None

    def copy(self) -> TemplateContext:
        """A copy, as Go's value receivers make (``include`` sets its own ``.Args``)."""
        other = TemplateContext.__new__(TemplateContext)
        other.__dict__.update(self.__dict__)
        return other

    # -- fields and methods --------------------------------------------------------------

    def OriginalReq(self) -> GoRequest:  # noqa: N802
        return GoRequest(self._request, original=True)

    def Cookie(self, name: str) -> str:  # noqa: N802
        return request_cookie(self._request.headers, name) or ""

    def RemoteIP(self) -> str:  # noqa: N802
        addr = remote_addr(self._request)
        try:
            return split_host_port(addr)[0]
        except AddrError:
            return addr

    def ClientIP(self) -> str:  # noqa: N802  (Caddy 2.7; the remote address here)
        return self.RemoteIP()

    def Host(self) -> str:  # noqa: N802
        host = self._request.host
        try:
            return split_host_port(host)[0]
        except AddrError:
            if ":" not in host:
                return host
            raise

    @property
    def Vars(self) -> dict[str, Any]:  # noqa: N802  (Caddy 2.7)
        return self._request.vars

    # -- templates -----------------------------------------------------------------------

    def new_template(self, name: str) -> Template:
        tpl = Template(name, self._delimiters)
        tpl.funcs(SPRIG_FUNCS)
        tpl.funcs(self.funcs())
        self._template = tpl
        return tpl

    def execute_text(self, name: str, text: str) -> str:
        """Caddy's ``executeTemplateInBuffer``: a fresh template set, run on this context."""
        tpl = self.new_template(name)
        tpl.parse(text)
        return tpl.execute(self)

    def funcs(self) -> dict[str, Callable[..., Any]]:
        return {
            "include": self.func_include,
            "import": self.func_import,
            "httpInclude": self.func_http_include,
            "readFile": self.func_read_file,
            "stripHTML": lambda s: strip_html(strval(s)),
            "markdown": markdown,
            "splitFrontMatter": self.func_split_front_matter,
            "listFiles": self.func_list_files,
            "env": lambda name: os.environ.get(name, ""),
            "placeholder": self.func_placeholder,
            "ph": self.func_placeholder,
            "fileExists": self.func_file_exists,
            "httpError": self.func_http_error,
            "humanize": self.func_humanize,
            "pathEscape": path_escape,
        }

    def _path(self, filename: str) -> str:
        if self.Root is None:
            raise ValueError("root file system not specified")
        name = clean("/" + filename)
        return os.path.join(self.Root, name.lstrip("/")) if name != "/" else (self.Root or ".")

    def read(self, filename: str) -> str:
        full = self._path(filename)
        try:
            with open(full, "rb") as f:
                data = f.read()
        except IsADirectoryError as e:  # http.Dir opens a directory; reading it fails
            raise ValueError(path_error("read", full, e)) from None
        except OSError as e:
            raise ValueError(path_error("open", full, e)) from None
        return data.decode("utf-8", "surrogateescape")

    def func_include(self, filename: str, *args: Any) -> str:
        text = self.read(filename)
        ctx = self.copy()
        ctx.Args = list(args)
        return ctx.execute_text(filename, text)

    def func_read_file(self, filename: str) -> str:
        return self.read(filename)

    def func_import(self, filename: str) -> str:
        text = self.read(filename)
        if self._template is not None:
            self._template.parse(text)
        return ""

    def func_http_include(self, uri: str) -> str:
        count = 1
        previous = self._request.headers.get(RECURSION_HEADER)
        if previous:
            try:
                number = int(previous)
            except ValueError:
                raise ValueError(f"parsing {RECURSION_HEADER}: strconv.Atoi: parsing {json.dumps(previous)}: invalid syntax") from None
            if number >= 3:
                raise ValueError("virtual request cycle")
            count = number + 1
        if self._handler is None or self._request.server is None:
            raise ValueError("httpInclude: no server to send the virtual request to")
        status, body = self._handler.virtual_request(self._request, uri, count)
        if status >= 400:
            raise ValueError(f"http {status}")
        return self.copy().execute_text(uri, body)

    def func_split_front_matter(self, text: Any) -> dict[str, Any]:
        meta, body = extract_front_matter(strval(text))
        return {"Meta": meta if meta is not None else {}, "Body": body}

    def func_list_files(self, name: str) -> list[str]:
        full = self._path(clean(name))
        try:
            if not os.path.isdir(full):
                if not os.path.exists(full):
                    raise FileNotFoundError(2, "No such file or directory")
                raise ValueError(f"{name} is not a directory")
            return os.listdir(full)  # directory order, as Go's Readdir
        except OSError as e:
            raise ValueError(path_error("open", full, e)) from None

    def func_file_exists(self, filename: str) -> bool:
        return os.path.exists(self._path(filename))

    def func_placeholder(self, name: str) -> str:
        value, known = lookup(name, self._request, None)
        return to_string(value) if known else ""

    def func_http_error(self, status: int) -> bool:
        raise HandlerError(status)

    def func_humanize(self, format_type: str, data: str) -> str:
        parts = format_type.split(":", 1)
        if parts[0] == "size":
            try:
                size = int(data)
                if size < 0 or not data.isdigit():
                    raise ValueError
            except ValueError:
                raise ValueError(f'humanize: size cannot be parsed: strconv.ParseUint: parsing "{data}": invalid syntax') from None
            return humanize_bytes(size)
        if parts[0] == "time":
            layout = parts[1] if len(parts) > 1 else "Mon, 02 Jan 2006 15:04:05 -0700"
            try:
                then = _parse_time(layout, data)
            except (ValueError, TypeError) as e:
                raise ValueError(f"humanize: time cannot be parsed: {e}") from None
            return humanize_time(then, self._clock())
        raise ValueError("no know function was given")


def handler_error_of(error: BaseException) -> HandlerError | None:
    """The ``HandlerError`` an execution error wraps (Caddy's ``errors.As``), if any."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, HandlerError):
            return seen
        if isinstance(seen, ExecError):
            seen = seen.cause
        else:
            seen = seen.__cause__ or getattr(seen, "cause", None)
    return None
