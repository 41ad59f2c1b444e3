"""Caddy's placeholders: ``{http.request.host}``, ``{env.HOME}``, ``{http.vars.root}``, ...

A string with placeholders is parsed once, at load time, into a ``Template``:
literal text and slots whose value source (a small function) is chosen by
the placeholder's name when the template is built. Rendering is then a walk
over the segments, with no string scanning per request.

The parsing reproduces Caddy's ``Replacer`` exactly, quirks included, because
configs written for Caddy depend on them:

* ``\\{`` and ``\\}`` are literal braces, but only in a string that contains a
  ``{`` somewhere (otherwise Caddy returns the text untouched);
* a placeholder ends at the first ``}`` not preceded by a backslash;
* an unknown placeholder is left as written by ``ReplaceKnown`` (scanning
  resumes just after its ``{``, so ``{x{http.request.method}}`` gives
  ``{xGET}``) and becomes empty with ``ReplaceAll``;
* more than 101 unclosed ``{`` make the whole result empty.

The lookup order is Caddy's too: global values (``env.*``, ``system.*``,
``time.*``) first, then values set during the request (``request.placeholders``
and the ``http.error.*`` of an error route), then the request's own values.
txcaddy adds one name (DESIGN.md §1): ``{>Name}`` is the request header
``Name``, like ``{http.request.header.Name}``.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import ipaddress
import os
import platform
import re
import socket
import sys
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from txcaddy.http.headers import canonical_key

# The clock behind ``{time.now*}`` and ``{http.request.duration}``; tests replace it
# (Caddy's ``nowFunc``). A module attribute, read at render time.
now: Callable[[], float] = time.time


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
"""What a value source returns for a placeholder it does not know."""

Resolver = Callable[[Any, Any], Any]  # (request, response) -> value or UNKNOWN


# -- Go's string forms of values ------------------------------------------------------


def _float_digits(value: float) -> tuple[str, str, int]:
    """Sign, shortest round-tripping digits and decimal-point position (Go's ``decimal``)."""
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return ("-" if sign else ""), "0", 1
    stripped = text.rstrip("0")
    point = len(text) + int(exponent)
    return ("-" if sign else ""), stripped, point


def _special_float(value: float) -> str | None:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return None


def format_float_f(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` (what Caddy's ``ToString`` uses)."""
    special = _special_float(value)
    if special is not None:
        return special
    sign, digits, point = _float_digits(value)
    if digits == "0":
        return sign + "0"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def format_float_g(value: float) -> str:
    """Go's ``%v`` of a float64 (shortest ``%g``, exponent past 1e+21's cousin 1e+06)."""
    special = _special_float(value)
    if special is not None:
        return special
    sign, digits, point = _float_digits(value)
    if digits == "0":
        return sign + "0"
    exponent = point - 1
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        exp_sign = "-" if exponent < 0 else "+"
        return f"{sign}{mantissa}e{exp_sign}{abs(exponent):02d}"
    return format_float_f(value)


def go_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String()`` (``1.5ms``, ``2m0s``, ``0s``)."""
    if nanoseconds == 0:
        return "0s"
    negative = nanoseconds < 0
    u = -nanoseconds if negative else nanoseconds

    def frac(v: int, precision: int) -> tuple[str, int]:
        scale = 10**precision
        digits = f"{v % scale:0{precision}d}".rstrip("0")
        return ("." + digits if digits else ""), v // scale

    if u < 1_000_000_000:
        if u < 1_000:
            text = f"{u}ns"
        elif u < 1_000_000:
            fraction, whole = frac(u, 3)
            text = f"{whole}{fraction}µs"
        else:
            fraction, whole = frac(u, 6)
            text = f"{whole}{fraction}ms"
    else:
        fraction, seconds = frac(u, 9)
        text = f"{seconds % 60}{fraction}s"
        minutes = seconds // 60
        if minutes:
            text = f"{minutes % 60}m{text}"
            hours = minutes // 60
            if hours:
                text = f"{hours}h{text}"
    return "-" + text if negative else text


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _utc_offset(tm: time.struct_time) -> str:
    offset = tm.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    offset = abs(offset) // 60
    return f"{sign}{offset // 60:02d}{offset % 60:02d}"


def go_time(timestamp: float) -> str:
    """Go's ``time.Time.String()`` in local time (without the monotonic reading)."""
    tm = time.localtime(timestamp)
    micros = int(round(timestamp * 1_000_000)) % 1_000_000
    fraction = f".{micros * 1000:09d}".rstrip("0") if micros else ""
    zone = tm.tm_zone or _utc_offset(tm)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', tm)}{fraction} {_utc_offset(tm)} {zone}"


def common_log_time(timestamp: float) -> str:
    """``02/Jan/2006:15:04:05 -0700`` in local time, locale-independent."""
    tm = time.localtime(timestamp)
    return (
        f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:"
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {_utc_offset(tm)}"
    )


class GoDuration(int):
    """Nanoseconds that print like Go's ``time.Duration``."""

    __slots__ = ()

    def __str__(self) -> str:
        return go_duration(int(self))


class GoTime(float):
    """A timestamp that prints like Go's ``time.Time``."""

    __slots__ = ()

    def __str__(self) -> str:
        return go_time(float(self))


def to_string(value: Any) -> str:
    """Caddy's ``ToString``: how a placeholder value is written into text."""
    cls = value.__class__
    if cls is str:
        return value
    if value is None:
        return ""
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return str(value)
    if cls is float:
        return format_float_f(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_sprint(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_sprint(k)}:{go_sprint(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) + "]"
    return str(value)


def go_sprint(value: Any) -> str:
    """Go's ``fmt.Sprintf("%v", value)``, used where Caddy compares values as text."""
    if value is None:
        return "<nil>"
    cls = value.__class__
    if cls is float:
        return format_float_g(value)
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_sprint(v) for v in value) + "]"
    return to_string(value)


# -- Go's net and url helpers ------------------------------------------------------------


def split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``; None where Go returns an error."""
    i = hostport.rfind(":")
    if i < 0:
        return None
    j = k = 0
    if hostport[0] == "[":
        end = hostport.find("]")
        if end < 0 or end + 1 != i:
            return None
        host = hostport[1:end]
        j, k = 1, end + 1
    else:
        host = hostport[:i]
        if ":" in host:
            return None
    if "[" in hostport[j:] or "]" in hostport[k:]:
        return None
    return host, hostport[i + 1 :]


def join_host_port(host: str, port: str) -> str:
    """Go's ``net.JoinHostPort``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_ATOI = re.compile(r"[+-]?[0-9]+\Z")


def go_atoi(text: str) -> int | None:
    """Go's ``strconv.Atoi`` (no spaces, no underscores); None on error."""
    return int(text) if _ATOI.match(text) else None


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def query_unescape(text: str) -> str | None:
    """Go's ``url.QueryUnescape``; None for a malformed ``%`` escape."""
    if "%" in text:
        if _BAD_ESCAPE.search(text):
            return None
        return unquote(text.replace("+", " "), errors="surrogateescape")
    return text.replace("+", " ") if "+" in text else text


@lru_cache(maxsize=512)
def _parse_query_cached(raw: str) -> tuple[dict[str, tuple[str, ...]], bool]:
    values: dict[str, list[str]] = {}
    failed = False
    for part in raw.split("&"):
        if ";" in part:
            failed = True
            continue
        if not part:
            continue
        key, _, value = part.partition("=")
        key_text = query_unescape(key)
        value_text = query_unescape(value) if key_text is not None else None
        if key_text is None or value_text is None:
            failed = True
            continue
        values.setdefault(key_text, []).append(value_text)
    return {k: tuple(v) for k, v in values.items()}, failed


def parse_query(raw: str) -> tuple[dict[str, tuple[str, ...]], bool]:
    """Go's ``url.ParseQuery``: the values (do not mutate) and whether it reported an error."""
    if not raw:
        return {}, False
    return _parse_query_cached(raw)


# Bytes Go's path escaping leaves alone; ``validEncoded`` also accepts these sub-delims.
_PATH_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~$&+,/:;=@")
_VALID_ENCODED = _PATH_UNRESERVED | frozenset("!'()*[]%")


def go_escape_path(path: str) -> str:
    """Go's ``url.PathEscape``-for-paths (``escape(p, encodePath)``)."""
    if all(ch in _PATH_UNRESERVED for ch in path):
        return path
    out = []
    for byte in path.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        out.append(ch if ch in _PATH_UNRESERVED else f"%{byte:02X}")
    return "".join(out)


def escaped_path(request: Any) -> str:
    """Go's ``URL.EscapedPath()``: the path as received when it is a valid encoding
    of the current path, else the current path escaped."""
    raw = request.raw_path
    path = request.path
    if raw and all(ch in _VALID_ENCODED for ch in raw):
        if raw == path or ("%" in raw and not _BAD_ESCAPE.search(raw) and unquote(raw, errors="surrogateescape") == path):
            return raw
    if path == "*":
        return "*"
    return go_escape_path(path)


def request_uri(request: Any) -> str:
    """Go's ``URL.RequestURI()``: escaped path (``/`` when empty) and query.

    A bare ``?`` received with no query is kept (Go's ``ForceQuery``).
    """
    path = escaped_path(request) or "/"
    if request.query:
        return path + "?" + request.query
    target = request.request_uri
    force_query = target.endswith("?") and target.count("?") == 1  # as Go's url.Parse sets it
    return path + "?" if force_query else path


def go_path_split(path: str) -> tuple[str, str]:
    """Go's ``path.Split``: directory (with its trailing slash) and file."""
    i = path.rfind("/")
    return path[: i + 1], path[i + 1 :]


def go_path_base(path: str) -> str:
    """Go's ``path.Base``."""
    if not path:
        return "."
    path = path.rstrip("/")
    if not path:
        return "/"
    return path[path.rfind("/") + 1 :]


def go_path_ext(path: str) -> str:
    """Go's ``path.Ext``."""
    for i in range(len(path) - 1, -1, -1):
        ch = path[i]
        if ch == "/":
            break
        if ch == ".":
            return path[i:]
    return ""


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _cookie_value(raw: str) -> str | None:
    if len(raw) > 1 and raw[0] == '"' and raw[-1] == '"':
        raw = raw[1:-1]
    for ch in raw:
        if not (" " <= ch < "\x7f") or ch in '";\\':
            return None
    return raw


def request_cookies(headers: Any) -> list[tuple[str, str]]:
    """Go's ``Request.Cookies()``: the valid (name, value) pairs of every Cookie field."""
    cookies = []
    for line in headers.get_all("Cookie"):
        for part in line.split(";"):
            part = part.strip(" \t\r\n")
            if not part:
                continue
            name, _, value = part.partition("=")
            if not name or any(ch not in _TOKEN for ch in name):
                continue
            parsed = _cookie_value(value)
            if parsed is not None:
                cookies.append((name, parsed))
    return cookies


def remote_addr(request: Any) -> str:
    """Go's ``Request.RemoteAddr`` (``ip:port``, IPv6 in brackets)."""
    remote = request.remote
    if not remote:
        return ""
    host, port = remote[0], remote[1]
    if not host and not port:
        return ""
    return join_host_port(host, str(port))


# -- value sources ------------------------------------------------------------------------


def _go_os() -> str:
    return {"win32": "windows", "cygwin": "windows"}.get(sys.platform, sys.platform.rstrip("0123456789") or sys.platform)


def _go_arch() -> str:
    machine = platform.machine().lower()
    return {
        "x86_64": "amd64",
        "amd64": "amd64",
        "aarch64": "arm64",
        "arm64": "arm64",
        "i386": "386",
        "i686": "386",
        "x86": "386",
        "armv7l": "arm",
        "armv6l": "arm",
        "ppc64le": "ppc64le",
        "s390x": "s390x",
        "riscv64": "riscv64",
    }.get(machine, machine)


def _getcwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return ""


_GLOBAL_EXACT: dict[str, Callable[[], Any]] = {
    "system.hostname": socket.gethostname,
    "system.slash": lambda: os.sep,
    "system.os": _go_os,
    "system.wd": _getcwd,
    "system.arch": _go_arch,
    "time.now": lambda: GoTime(now()),
    "time.now.common_log": lambda: common_log_time(now()),
    "time.now.year": lambda: str(time.localtime(now()).tm_year),
    "time.now.unix": lambda: str(int(now() // 1)),
    "time.now.unix_ms": lambda: str(int(now() * 1000 // 1)),
    # Caddy 2.7+: RFC 1123 time in GMT, as in the Date header
    "time.now.http": lambda: email.utils.formatdate(now(), usegmt=True),
}


def _global_resolver(key: str) -> Resolver | None:
    if key.startswith("env."):
        name = key[4:]
        return lambda request, response: os.environ.get(name, "")
    source = _GLOBAL_EXACT.get(key)
    if source is not None:
        return lambda request, response: source()
    return None


def _error_message(error: Any) -> str:
    """The message as given (an ``error`` directive's may be empty), else the cause's."""
    message = getattr(error, "message", "")
    if message:
        return message
    cause = getattr(error, "cause", None)
    return str(cause) if cause is not None else ""


def _error_string(error: Any) -> str:
    """Go's ``HandlerError.Error()``: ``{id=…} trace: HTTP 404: message``."""
    text = ""
    error_id = getattr(error, "id", "")
    if error_id:
        text += f"{{id={error_id}}}"
    trace = getattr(error, "trace", "")
    if trace:
        text += " " + trace
    status = getattr(error, "status", 0)
    if status:
        text += f": HTTP {status}"
    text += ": " + _error_message(error)
    return text.strip()


def _error_field(field: str) -> Callable[[Any], Any]:
    from txcaddy.http.errors import status_text

    return {
        "status_code": lambda e: getattr(e, "status", 500),
        "status_text": lambda e: status_text(getattr(e, "status", 500)),
        "message": _error_message,
        "id": lambda e: getattr(e, "id", ""),
        "trace": lambda e: getattr(e, "trace", ""),
    }[field]


_ERROR_FIELDS = frozenset({"status_code", "status_text", "message", "id", "trace"})


#: Namespaces whose values a handler publishes lazily, as one object: instead of setting
#: every ``{namespace.*}`` value in ``request.placeholders`` per request (most are never
#: read), it stores an object under ``request.placeholders[namespace]`` whose
#: ``placeholder(name)`` gives ``{namespace.name}`` (or ``UNKNOWN``). A value set under the
#: full key still wins; the namespace alone is no placeholder. ``http.reverse_proxy``:
#: ``reverseproxy/handler.py``.
PROVIDED_NAMESPACES = ("http.reverse_proxy",)


def _provided_resolver(key: str) -> Resolver | None:
    for namespace in PROVIDED_NAMESPACES:
        if key == namespace:
            return lambda request, response: UNKNOWN
        if key.startswith(namespace) and key[len(namespace)] == ".":
            name = key[len(namespace) + 1:]

            def provided(request: Any, response: Any, _ns: str = namespace, _name: str = name) -> Any:
                placeholders = request.placeholders
                value = placeholders.get(key, UNKNOWN)
                if value is UNKNOWN:
                    provider = placeholders.get(_ns)
                    if provider is not None:
                        return provider.placeholder(_name)
                return value

            return provided
    return None


def _static_resolver(key: str) -> Resolver:
    """Values set during the request (Caddy's ``repl.Set``), then the error of an error route."""
    provided = _provided_resolver(key)
    if provided is not None:
        return provided
    if key == "http.error":

        def error_value(request: Any, response: Any) -> Any:
            value = request.placeholders.get(key, UNKNOWN)
            if value is UNKNOWN and request.error is not None:
                return _error_string(request.error)
            return value

        return error_value
    if key.startswith("http.error.") and key[11:] in _ERROR_FIELDS:
        field = _error_field(key[11:])

        def error_field(request: Any, response: Any) -> Any:
            value = request.placeholders.get(key, UNKNOWN)
            if value is UNKNOWN and request.error is not None:
                return field(request.error)
            return value

        return error_field
    return lambda request, response: request.placeholders.get(key, UNKNOWN)


def _request_uuid(request: Any) -> str:
    """One random UUID per request, made on first use (Caddy keeps it in the vars)."""
    value = request.vars.get("uuid")
    if value is None:
        value = str(uuid.uuid4())
        request.vars["uuid"] = value
    return value


def _host(request: Any, response: Any) -> str:
    parts = split_host_port(request.host)
    return request.host if parts is None else parts[0]


def _port(request: Any, response: Any) -> Any:
    parts = split_host_port(request.host)
    port = "" if parts is None else parts[1]
    number = go_atoi(port)
    return port if number is None else number


def _remote_host(request: Any, response: Any) -> str:
    remote = request.remote
    if remote and remote[0] and "[" not in remote[0] and "]" not in remote[0]:
        return remote[0]  # what splitting the joined ``ip:port`` gives back
    addr = remote_addr(request)
    parts = split_host_port(addr)
    return addr if parts is None else parts[0]


def _remote_port(request: Any, response: Any) -> Any:
    parts = split_host_port(remote_addr(request))
    port = "" if parts is None else parts[1]
    number = go_atoi(port)
    return port if number is None else number


def _duration(request: Any) -> GoDuration:
    return GoDuration(int(round((now() - request.start) * 1e9)))


def _body(request: Any, response: Any) -> str:
    """The request body, only when it already arrived whole and nobody consumes it."""
    body = request.body
    chunks = getattr(body, "_chunks", None)
    if body is None or chunks is None or not body.finished or getattr(body, "_consumer", None) is not None:
        return ""
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def _scheme(request: Any, response: Any) -> str:
    return "https" if request.tls is not None else "http"


_REQUEST_EXACT: dict[str, Resolver] = {
    "http.request.method": lambda rq, rs: rq.method,
    "http.request.scheme": _scheme,
    "http.request.proto": lambda rq, rs: rq.proto,
    "http.request.host": _host,
    "http.request.port": _port,
    "http.request.hostport": lambda rq, rs: rq.host,
    "http.request.remote": lambda rq, rs: remote_addr(rq),
    "http.request.remote.host": _remote_host,
    "http.request.remote.port": _remote_port,
    "http.request.uri": lambda rq, rs: request_uri(rq),
    "http.request.uri.path": lambda rq, rs: rq.path,
    "http.request.uri.path.file": lambda rq, rs: go_path_split(rq.path)[1],
    "http.request.uri.path.dir": lambda rq, rs: go_path_split(rq.path)[0],
    "http.request.uri.path.file.base": lambda rq, rs: _file_base(rq.path),
    "http.request.uri.path.file.ext": lambda rq, rs: go_path_ext(rq.path),
    "http.request.uri.query": lambda rq, rs: rq.query,
    "http.request.duration": lambda rq, rs: _duration(rq),
    "http.request.duration_ms": lambda rq, rs: (now() - rq.start) * 1e3,
    "http.request.uuid": lambda rq, rs: _request_uuid(rq),
    "http.request.body": _body,
    "http.request.orig_method": lambda rq, rs: rq.orig_method,
    "http.request.orig_uri": lambda rq, rs: rq.request_uri,
    "http.request.orig_uri.path": lambda rq, rs: rq.orig_path,
    "http.request.orig_uri.path.file": lambda rq, rs: go_path_split(rq.orig_path)[1],
    "http.request.orig_uri.path.dir": lambda rq, rs: go_path_split(rq.orig_path)[0],
    "http.request.orig_uri.query": lambda rq, rs: rq.orig_query,
    "http.shutting_down": lambda rq, rs: bool(getattr(rq.server, "shutdown_at", None)),
    "http.time_until_shutdown": lambda rq, rs: _time_until_shutdown(rq),
}


def _file_base(path: str) -> str:
    base = go_path_base(path)
    ext = go_path_ext(path)
    return base[: -len(ext)] if ext and base.endswith(ext) else base


def _time_until_shutdown(request: Any) -> Any:
    shutdown_at = getattr(request.server, "shutdown_at", None)
    if not shutdown_at:
        return None
    return GoDuration(int(round((shutdown_at - now()) * 1e9)))


def _header_resolver(field: str) -> Resolver:
    name = canonical_key(field)
    if name == "Host":
        # Go moves Host out of the header map into Request.Host
        return lambda request, response: ""
    return lambda request, response: request.headers.joined(name)


def _query_resolver(name: str) -> Resolver:
    def query_value(request: Any, response: Any) -> str:
        values, _ = parse_query(request.query)
        return ",".join(values.get(name, ()))

    return query_value


def _cookie_resolver(name: str) -> Resolver:
    folded = name.lower()

    def cookie(request: Any, response: Any) -> Any:
        if "Cookie" not in request.headers:
            return UNKNOWN
        for cookie_name, value in request_cookies(request.headers):
            if cookie_name.lower() == folded:
                return value
        return UNKNOWN  # Caddy falls through: a missing cookie is an unknown placeholder

    return cookie


def _vars_resolver(name: str) -> Resolver:
    def var(request: Any, response: Any) -> Any:
        value = request.vars.get(name)
        if value is None:
            if name == "uuid":
                return _request_uuid(request)
            if name == "start_time":
                return GoTime(request.start)
        return value

    return var


def _masked_remote_resolver(spec: str) -> Resolver:
    v4_text, comma, v6_text = spec.partition(",")

    def masked(request: Any, response: Any) -> str:
        host = _remote_host(request, response)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host
        bits = go_atoi(v6_text if address.version == 6 and comma else v4_text)
        if bits is None or bits < 0 or bits > address.max_prefixlen:
            return ""
        network_type = ipaddress.IPv6Network if address.version == 6 else ipaddress.IPv4Network
        network = network_type((int(address), bits), strict=False)
        mapped = getattr(network.network_address, "ipv4_mapped", None)
        if mapped is not None:
            return f"::ffff:{mapped}/{bits}"  # Go writes IPv4-mapped addresses dotted
        return str(network)

    return masked


def _host_label_resolver(index_text: str) -> Resolver | None:
    index = go_atoi(index_text)
    if index is None or index < 0:
        return None

    def label(request: Any, response: Any) -> str:
        host = _host(request, response)
        labels = host.split(".")
        return labels[len(labels) - index - 1] if index < len(labels) else ""

    return label


def _path_part_resolver(index_text: str) -> Resolver | None:
    index = go_atoi(index_text)
    if index is None or index < 0:
        return None

    def part(request: Any, response: Any) -> str:
        parts = request.path.split("/")
        if parts and parts[0] == "":
            parts = parts[1:]
        return parts[index] if index < len(parts) else ""

    return part


def _response_header_resolver(field: str) -> Resolver:
    name = canonical_key(field)

    def header(request: Any, response: Any) -> Any:
        if response is None:
            return UNKNOWN
        return response.headers.joined(name)

    return header


def _request_resolver(key: str) -> Resolver | None:
    """The value source of a request/response placeholder; None when Caddy does not know it."""
    if key.startswith("http.request.uri.query."):
        return _query_resolver(key[23:])
    if key.startswith("http.request.header."):
        return _header_resolver(key[20:])
    if key.startswith(">") and len(key) > 1:
        return _header_resolver(key[1:])  # txcaddy: Caddy v1's request-header shorthand
    if key.startswith("http.request.cookie."):
        return _cookie_resolver(key[20:])
    if key.startswith("http.request.tls."):
        return _tls_resolver(key[17:].lower())
    exact = _REQUEST_EXACT.get(key)
    if exact is not None:
        return exact
    if key.startswith("http.request.remote.host/"):
        return _masked_remote_resolver(key[key.index("/") + 1 :])
    if key.startswith("http.request.host.labels."):
        return _host_label_resolver(key[25:])
    if key.startswith("http.request.uri.path."):
        return _path_part_resolver(key[22:])
    if key.startswith("http.vars."):
        return _vars_resolver(key[10:])
    if key.startswith("http.response.header."):
        return _response_header_resolver(key[21:])
    return None


# -- TLS ------------------------------------------------------------------------------------


def _peer_certificate(tls: Any) -> Any:
    cert = getattr(tls, "peer_certificate", None)
    if cert is not None and hasattr(cert, "to_cryptography"):
        cert = cert.to_cryptography()  # pyOpenSSL X509
    return cert


def _public_key_bytes(cert: Any) -> bytes | None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return None


def _der(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.DER)


def _sans(cert: Any, kind: str) -> list[Any]:
    from cryptography import x509

    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    general = {
        "dns_names": x509.DNSName,
        "emails": x509.RFC822Name,
        "ips": x509.IPAddress,
        "uris": x509.UniformResourceIdentifier,
    }[kind]
    return [str(v) for v in extension.get_values_for_type(general)]


def _client_cert_value(cert: Any, field: str) -> Any:
    if field.startswith("client.san."):
        rest = field[11:]
        for kind in ("dns_names", "emails", "ips", "uris"):
            if rest.startswith(kind):
                rest = rest[len(kind) :]
                break
        else:
            return UNKNOWN
        values = _sans(cert, kind)
        if rest == "":
            return values
        if len(rest) < 2 or rest[0] != ".":
            return UNKNOWN
        index = go_atoi(rest[1:])
        if index is None or index < 0:
            return UNKNOWN
        return values[index] if index < len(values) else None
    if field == "client.fingerprint":
        return hashlib.sha256(_der(cert)).hexdigest()
    if field in ("client.public_key", "client.public_key_sha256"):
        key_bytes = _public_key_bytes(cert)
        if key_bytes is None:
            return None
        return hashlib.sha256(key_bytes).hexdigest() if field.endswith("_sha256") else key_bytes.hex()
    if field == "client.issuer":
        return cert.issuer.rfc4514_string()
    if field == "client.subject":
        return cert.subject.rfc4514_string()
    if field == "client.serial":
        return str(cert.serial_number)
    if field == "client.certificate_pem":
        der = base64.b64encode(_der(cert)).decode("ascii")
        lines = [der[i : i + 64] for i in range(0, len(der), 64)]
        return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
    if field == "client.certificate_der_base64":
        return base64.b64encode(_der(cert)).decode("ascii")
    return UNKNOWN


_TLS_FIELDS: dict[str, Callable[[Any], Any]] = {
    "version": lambda tls: getattr(tls, "version", ""),
    "cipher_suite": lambda tls: getattr(tls, "cipher_suite", ""),
    "resumed": lambda tls: bool(getattr(tls, "resumed", False)),
    "proto": lambda tls: getattr(tls, "proto", ""),
    "proto_mutual": lambda tls: True,
    "server_name": lambda tls: getattr(tls, "server_name", ""),
}


def _tls_resolver(field: str) -> Resolver:
    if field.startswith("client."):

        def client(request: Any, response: Any) -> Any:
            tls = request.tls
            if tls is None:
                return UNKNOWN
            cert = _peer_certificate(tls)
            if cert is None:
                return UNKNOWN
            return _client_cert_value(cert, field)

        return client
    source = _TLS_FIELDS.get(field)

    def connection(request: Any, response: Any) -> Any:
        tls = request.tls
        if tls is None or source is None:
            return UNKNOWN
        return source(tls)

    return connection


# -- resolvers by name ---------------------------------------------------------------------

_resolver_cache: dict[str, Resolver] = {}


def resolver(key: str) -> Resolver:
    """The function giving ``key``'s value for a request (UNKNOWN when unknown), in Caddy's order."""
    cached = _resolver_cache.get(key)
    if cached is not None:
        return cached
    found = _global_resolver(key)
    if found is None:
        static = _static_resolver(key)
        computed = _request_resolver(key)
        if computed is None:
            found = static
        else:

            def found(request: Any, response: Any, _static: Resolver = static, _computed: Resolver = computed) -> Any:
                if request.placeholders or request.error is not None:
                    value = _static(request, response)
                    if value is not UNKNOWN:
                        return value
                return _computed(request, response)

    if len(_resolver_cache) < 8192:
        _resolver_cache[key] = found
    return found


def lookup(key: str, request: Any, response: Any = None) -> tuple[Any, bool]:
    """Caddy's ``Replacer.Get``: the raw value of ``key`` and whether it is known."""
    value = resolver(key)(request, response)
    if value is UNKNOWN:
        return None, False
    return value, True


# -- templates ------------------------------------------------------------------------------


class _Slot:
    """A placeholder in a template; ``fallback`` is what ReplaceKnown writes when unknown."""

    __slots__ = ("key", "resolve", "_text", "_start", "_end", "_fallback")

    def __init__(self, key: str, text: str, start: int, end: int) -> None:
        self.key = key
        self.resolve = resolver(key)
        self._text = text
        self._start = start
        self._end = end
        self._fallback: tuple[Any, ...] | None = None

    @property
    def fallback(self) -> tuple[Any, ...]:
        """Caddy rescans from just after the ``{``; built on first need."""
        if self._fallback is None:
            segments, _ = _scan(self._text, self._start + 1, self._end + 1, self._start)
            self._fallback = _merge(segments)
        return self._fallback

    def __repr__(self) -> str:
        return f"_Slot({self.key!r})"


_MAX_UNCLOSED = 100


def _scan(text: str, start: int, stop: int, cursor: int) -> tuple[list[Any], int]:
    """Caddy's replace loop over ``text[start:stop]`` with nothing known.

    Returns the segments (literal strings and slots, literals not merged across
    slots) and the number of unclosed ``{`` seen.
    """
    segments: list[Any] = []
    unclosed = 0
    length = len(text)
    i = start
    while i < stop:
        ch = text[i]
        if i > 0 and text[i - 1] == "\\" and (ch == "{" or ch == "}"):
            segments.append(text[cursor : i - 1])
            cursor = i
            i += 1
            continue
        if ch != "{":
            i += 1
            continue
        end = text.find("}", i)
        if end < 0:
            unclosed += 1
            i += 1
            continue
        closed = True
        while 0 < end < length - 1 and text[end - 1] == "\\":
            next_end = text.find("}", end + 1)
            if next_end < 0:
                closed = False
                break
            end = next_end
        if not closed:
            unclosed += 1
            i += 1
            continue
        segments.append(text[cursor:i])
        segments.append(_Slot(text[i + 1 : end], text, i, end))
        i = end + 1
        cursor = i
    segments.append(text[cursor:stop])
    return [s for s in segments if s != ""], unclosed


def _merge(segments: list[Any]) -> tuple[Any, ...]:
    merged: list[Any] = []
    for segment in segments:
        if merged and segment.__class__ is str and merged[-1].__class__ is str:
            merged[-1] += segment
        else:
            merged.append(segment)
    return tuple(merged)


def _render(
    segments: tuple[Any, ...], out: list[str], request: Any, response: Any, empty_unknown: bool, empty: str,
    transform: Callable[[str], str] | None = None,
) -> None:
    for segment in segments:
        if segment.__class__ is str:
            out.append(segment)
            continue
        value = segment.resolve(request, response)
        if value is UNKNOWN:
            if not empty_unknown:
                _render(segment.fallback, out, request, response, False, empty, transform)
                continue
            text = ""
        elif value.__class__ is str:
            text = value
        else:
            text = to_string(value)
        if transform is not None and text:
            text = transform(text)
        out.append(text or empty)


class Template:
    """A string with placeholders, parsed once.

    ``render(request)`` is Caddy's ``ReplaceKnown`` (unknown placeholders stay
    as written); ``render(request, empty_unknown=True)`` is ``ReplaceAll``.
    ``empty`` replaces values that come out empty, as Caddy's ``empty`` argument.
    """

    __slots__ = ("text", "is_static", "_segments", "_static")

    def __init__(self, text: str) -> None:
        self.text = text
        if "{" not in text:
            self._segments: tuple[Any, ...] = (text,) if text else ()
        else:
            segments, unclosed = _scan(text, 0, len(text), 0)
            # Caddy gives up (empty result) at the 102nd unclosed brace
            self._segments = () if unclosed > _MAX_UNCLOSED + 1 else _merge(segments)
        self.is_static = all(s.__class__ is str for s in self._segments)
        self._static = "".join(self._segments) if self.is_static else ""

    @property
    def keys(self) -> list[str]:
        """The placeholder names at the top level, in order."""
        return [s.key for s in self._segments if s.__class__ is not str]

    def render(
        self, request: Any, response: Any = None, *, empty_unknown: bool = False, empty: str = "",
        transform: Callable[[str], str] | None = None,
    ) -> str:
        """``transform`` rewrites each known value's text (Caddy's ``ReplaceFunc``)."""
        if self.is_static:
            return self._static
        out: list[str] = []
        _render(self._segments, out, request, response, empty_unknown, empty, transform)
        return out[0] if len(out) == 1 else "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


_template_cache: dict[str, Template] = {}


def template(text: str) -> Template:
    """A shared compiled ``Template`` for ``text`` (for strings seen again and again)."""
    compiled = _template_cache.get(text)
    if compiled is None:
        compiled = Template(text)
        if len(_template_cache) < 4096:
            _template_cache[text] = compiled
    return compiled


def replace_known(text: str, request: Any, response: Any = None, empty: str = "") -> str:
    """Caddy's ``ReplaceKnown``: unknown placeholders stay as written."""
    if "{" not in text:
        return text
    return template(text).render(request, response, empty=empty)


def replace_all(text: str, request: Any, response: Any = None, empty: str = "") -> str:
    """Caddy's ``ReplaceAll``: unknown placeholders become empty (or ``empty``)."""
    if "{" not in text:
        return text
    return template(text).render(request, response, empty_unknown=True, empty=empty)


__all__ = [
    "UNKNOWN",
    "GoDuration",
    "GoTime",
    "Template",
    "escaped_path",
    "format_float_f",
    "format_float_g",
    "go_atoi",
    "go_duration",
    "go_escape_path",
    "go_sprint",
    "lookup",
    "parse_query",
    "query_unescape",
    "remote_addr",
    "replace_all",
    "replace_known",
    "request_cookies",
    "request_uri",
    "resolver",
    "split_host_port",
    "template",
    "to_string",
]
