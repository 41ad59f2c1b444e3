"""Caddy's logging at run time: the ``logging`` config, access logs and HTTP error logs.

Caddy writes structured entries through zap; txcaddy writes the same entries
through ``twisted.logger``. A ``LogSystem`` is built once per config from
``logging.logs``: each configured log becomes an observer (``CustomLog``) on
the system's own ``LogPublisher`` that keeps the events its level and
``include``/``exclude`` logger names accept, encodes them (``json``,
``console`` or ``filter``) and hands the line to its writer (``file``,
``stdout``, ``stderr``, ``discard``, ``net``). Writers are opened when the
service starts and closed when it stops.

Each HTTP server gets a ``ServerLogger`` built from its ``logs`` object. It
emits Caddy's ``handled request`` entry to logger ``http.log.access[.NAME]``
when the response is done, and the ``http.log.error[.NAME]`` entry for a
handler error. The server calls ``begin`` before its handler chain, so the
request is recorded as it arrived (before rewrites and ``request_header``),
as Caddy does; ``chain_done``/``chain_failed`` and ``finished`` follow.

Entries use Caddy's field names and zap's key order and number formats, so
tools that read Caddy's logs read these. ``docs/logging.md`` says what is
supported.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import json
import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _c_json_string
from typing import Any
from urllib.parse import quote_plus, unquote

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import ILogObserver, Logger, LogLevel, LogPublisher
from zope.interface import implementer

from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.tlsapp import match_wildcard
from txcaddy.config.registry import module

__all__ = [
    "LEVELS",
    "CustomLog",
    "Duration",
    "Entry",
    "LogSystem",
    "ServerLogger",
    "StringArray",
    "logger_allowed",
]

_log = Logger()

# -- levels -----------------------------------------------------------------------------

# zap's levels, lowest first; Caddy's ``level`` option names the lowest one a log keeps.
LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3, "dpanic": 4, "panic": 5, "fatal": 6}
_TWISTED_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "dpanic": LogLevel.critical,
    "panic": LogLevel.critical,
    "fatal": LogLevel.critical,
}
_FROM_TWISTED = {
    LogLevel.debug: "debug",
    LogLevel.info: "info",
    LogLevel.warn: "warn",
    LogLevel.error: "error",
    LogLevel.critical: "fatal",
}
_CONFIG_LEVELS = ("debug", "info", "warn", "error", "panic", "fatal")  # what ``level`` accepts
_LEVEL_COLORS = {"debug": 35, "info": 34, "warn": 33}  # the rest are red (31)


# -- values -----------------------------------------------------------------------------


class Duration(int):
    """Nanoseconds; encoders print it in the log's ``duration_format``."""

    __slots__ = ()


class StringArray(list):  # type: ignore[type-arg]
    """A header's values (Caddy's ``LoggableStringArray``): filters act on each element."""

    __slots__ = ()


class Plain(dict):  # type: ignore[type-arg]
    """A JSON object of strings, ``StringArray``s, ints, bools and ``Plain`` objects only.

    The request and header objects are built as ``Plain`` so that encoders can
    hand them to the C JSON encoder whole (zap's number formats are not needed).
    """

    __slots__ = ()


class Entry:
    """One log entry: zap's entry (level, time, logger, message) and its fields in order."""

    __slots__ = ("level", "time", "logger", "message", "fields")

    def __init__(self, level: str, when: float, logger: str, message: str, fields: list[tuple[str, Any]]) -> None:
        self.level = level
        self.time = when
        self.logger = logger
        self.message = message
        self.fields = fields


# -- Go formatting ------------------------------------------------------------------------

_SLOW_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_SLOW_ESCAPES.update({0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})


def json_string(text: str) -> str:
    """A JSON string as zap writes it (``\\b`` and ``\\f`` as ``\\u00XX``, ``<>&`` as they are)."""
    out: str = _c_json_string(text)
    if "\\" in out and ("\\b" in out or "\\f" in out):
        return '"' + text.translate(_SLOW_ESCAPES) + '"'
    return out


def _format_float_f(value: float) -> str:
    from txcaddy.config.placeholders import format_float_f

    return format_float_f(value)


def _json_float(value: float) -> str:
    """zap's ``AppendFloat64`` (Go's ``'f', -1``): shortest digits, never an exponent;
    NaN and infinities quoted."""
    if value != value or value in (math.inf, -math.inf):
        return '"NaN"' if value != value else ('"+Inf"' if value > 0 else '"-Inf"')
    text = repr(value)  # the same shortest digits, sometimes with an exponent
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        sign = "-" if mantissa[0] == "-" else ""
        mantissa = mantissa.lstrip("-")
        whole, _, fraction = mantissa.partition(".")
        digits = (whole + fraction).lstrip("0") if whole == "0" else whole + fraction
        point = len(whole) + int(exponent)
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits.rstrip('0')}"
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if text.endswith(".0"):
        return text[:-2]
    return text


def _go_v_float(value: float) -> str:
    """``fmt.Sprint`` of a float64 (what the console encoder prints for an epoch time)."""
    if value != value or value in (math.inf, -math.inf):
        return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")
    if value == 0 or 1e-4 <= abs(value) < 1e21:
        return _format_float_f(value)
    mantissa, _, exponent = repr(value).partition("e")  # repr uses an exponent out there
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{abs(int(exponent)):02d}"


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ZONE_KINDS = ("070000", "07:00:00", "0700", "07:00", "07")
_NAMED_LAYOUTS = {
    "rfc3339": "2006-01-02T15:04:05Z07:00",
    "rfc3339_nano": "2006-01-02T15:04:05.999999999Z07:00",
    "wall": "2006/01/02 15:04:05",
    "wall_milli": "2006/01/02 15:04:05.000",
    "wall_nano": "2006/01/02 15:04:05.000000000",
    "common_log": "02/Jan/2006:15:04:05 -0700",
}
_ISO8601 = "2006-01-02T15:04:05.000Z0700"


def _starts_lower(text: str, i: int) -> bool:
    return i < len(text) and "a" <= text[i] <= "z"


def compile_go_layout(layout: str) -> list[Any]:
    """Split a Go time layout (``2006-01-02 15:04:05``) into literals and fields, as Go reads it."""
    parts: list[Any] = []
    literal: list[str] = []
    i, n = 0, len(layout)
    while i < n:
        c = layout[i]
        rest = layout[i : i + 9]
        kind: Any = None
        width = 0
        if c == "J" and rest.startswith("Jan"):
            if rest.startswith("January"):
                kind, width = "January", 7
            elif not _starts_lower(layout, i + 3):
                kind, width = "Jan", 3
        elif c == "M" and (rest.startswith("Mon") or rest.startswith("MST")):
            if rest.startswith("Monday"):
                kind, width = "Monday", 6
            elif rest.startswith("Mon") and not _starts_lower(layout, i + 3):
                kind, width = "Mon", 3
            elif rest.startswith("MST"):
                kind, width = "MST", 3
        elif c == "0":
            if i + 1 < n and "1" <= layout[i + 1] <= "6":
                kind, width = rest[:2], 2
            elif rest.startswith("002"):
                kind, width = "002", 3
        elif c == "1":
            kind, width = ("15", 2) if rest.startswith("15") else ("1", 1)
        elif c == "2":
            kind, width = ("2006", 4) if rest.startswith("2006") else ("2", 1)
        elif c == "_":
            if rest.startswith("_2006"):
                literal.append("_")  # Go reads "_2006" as a literal "_" and the year
                kind, width = "2006", 5
            elif rest.startswith("_2"):
                kind, width = "_2", 2
            elif rest.startswith("__2"):
                kind, width = "__2", 3
        elif c in "345":
            kind, width = c, 1
        elif (c == "P" and rest.startswith("PM")) or (c == "p" and rest.startswith("pm")):
            kind, width = rest[:2], 2
        elif c in "-Z":
            for zone in _ZONE_KINDS:
                if rest.startswith(c + zone):
                    kind, width = c + zone, 1 + len(zone)
                    break
        elif c in ".," and i + 1 < n and layout[i + 1] in "09":
            digit = layout[i + 1]
            j = i + 1
            while j < n and layout[j] == digit:
                j += 1
            if not (j < n and "0" <= layout[j] <= "9"):
                kind, width = ("frac", c, digit == "9", j - i - 1), j - i
        if kind is None:
            literal.append(c)
            i += 1
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append((kind,))
        i += width
    if literal:
        parts.append("".join(literal))
    return parts


def format_go_time(parts: list[Any], timestamp: float, local: bool) -> str:
    """A compiled Go layout applied to a Unix time (UTC unless ``local``)."""
    seconds = math.floor(timestamp)
    # A float clock holds microseconds at best: finer digits would be noise.
    nanos = int(round((timestamp - seconds) * 1e6)) * 1000
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    if local:
        tm = time.localtime(seconds)
        offset, zone = tm.tm_gmtoff or 0, tm.tm_zone or ""
    else:
        tm = time.gmtime(seconds)
        offset, zone = 0, "UTC"
    out = []
    for part in parts:
        if part.__class__ is str:
            out.append(part)
            continue
        kind = part[0]
        if kind.__class__ is tuple:
            _, separator, trim, digits = kind
            out.append(_fraction(nanos, separator, trim, digits))
        elif kind in ("January", "Jan"):
            name = _MONTHS[tm.tm_mon - 1]
            out.append(name if kind == "January" else name[:3])
        elif kind in ("Monday", "Mon"):
            name = _DAYS[tm.tm_wday]
            out.append(name if kind == "Monday" else name[:3])
        elif kind == "1":
            out.append(str(tm.tm_mon))
        elif kind == "01":
            out.append(f"{tm.tm_mon:02d}")
        elif kind == "2":
            out.append(str(tm.tm_mday))
        elif kind == "_2":
            out.append(f"{tm.tm_mday:2d}")
        elif kind == "02":
            out.append(f"{tm.tm_mday:02d}")
        elif kind == "__2":
            out.append(f"{tm.tm_yday:3d}")
        elif kind == "002":
            out.append(f"{tm.tm_yday:03d}")
        elif kind == "2006":
            out.append(f"{tm.tm_year:04d}")
        elif kind == "06":
            out.append(f"{tm.tm_year % 100:02d}")
        elif kind == "15":
            out.append(f"{tm.tm_hour:02d}")
        elif kind in ("3", "03"):
            hour = tm.tm_hour % 12 or 12
            out.append(str(hour) if kind == "3" else f"{hour:02d}")
        elif kind == "4":
            out.append(str(tm.tm_min))
        elif kind == "04":
            out.append(f"{tm.tm_min:02d}")
        elif kind == "5":
            out.append(str(tm.tm_sec))
        elif kind == "05":
            out.append(f"{tm.tm_sec:02d}")
        elif kind in ("PM", "pm"):
            text = "PM" if tm.tm_hour >= 12 else "AM"
            out.append(text if kind == "PM" else text.lower())
        elif kind == "MST":
            out.append(zone or _numeric_zone(offset, "-0700"))
        else:
            out.append(_numeric_zone(offset, kind))
    return "".join(out)


def _fraction(nanos: int, separator: str, trim: bool, digits: int) -> str:
    if trim and (digits == 0 or nanos == 0):
        return ""
    text = f"{nanos:09d}"[:digits]
    if trim:
        text = text.rstrip("0")
        if not text:
            return ""
    return separator + text


def _numeric_zone(offset: int, kind: str) -> str:
    if offset == 0 and kind[0] == "Z":
        return "Z"
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    minutes = offset // 60
    text = f"{sign}{minutes // 60:02d}"
    style = kind[1:]
    if ":" in style:
        text += ":"
    if style != "07":
        text += f"{minutes % 60:02d}"
    if style in ("070000", "07:00:00"):
        text += (":" if ":" in style else "") + f"{offset % 60:02d}"
    return text


# -- encoders -----------------------------------------------------------------------------


def _time_encoder(time_format: str, local: bool) -> Callable[[float], Any]:
    """Caddy's ``time_format`` → a function giving the value zap writes for the entry time."""
    if time_format in ("", "unix_seconds_float"):
        return lambda ts: ts
    if time_format == "unix_milli_float":
        return lambda ts: ts * 1e3
    if time_format == "unix_nano":
        return lambda ts: int(round(ts * 1e9))
    if time_format == "iso8601":
        parts = compile_go_layout(_ISO8601)
        return lambda ts: format_go_time(parts, ts, True)  # zap formats it in local time
    parts = compile_go_layout(_NAMED_LAYOUTS.get(time_format, time_format))
    return lambda ts: format_go_time(parts, ts, local)


def _level_encoder(level_format: str) -> Callable[[str], str] | None:
    if level_format in ("", "lower"):
        return lambda level: level
    if level_format == "upper":
        return str.upper
    if level_format == "color":
        return lambda level: f"\x1b[{_LEVEL_COLORS.get(level, 31)}m{level.upper()}\x1b[0m"
    return None  # zap then writes no level at all


class _ZapEncoder:
    """What Caddy's ``json`` and ``console`` encoders share (``LogEncoderConfig``)."""

    spaced = False

    def __init__(self, config: dict[str, Any], *, time_format: str = "", level_format: str = "") -> None:
        def key(name: str, default: str) -> str:
            value = config.get(name, default)
            return value if isinstance(value, str) else default

        self.message_key = key("message_key", "msg")
        self.level_key = key("level_key", "level")
        self.time_key = key("time_key", "ts")
        self.name_key = key("name_key", "logger")
        self.line_ending = key("line_ending", "\n") or "\n"
        self.encode_time = _time_encoder(config.get("time_format") or time_format, bool(config.get("time_local")))
        self.encode_level = _level_encoder(config.get("level_format") or level_format)
        duration_format = config.get("duration_format") or "seconds"
        self.duration_format = duration_format if duration_format in ("seconds", "nano", "string") else "nano"
        self._separator = ", " if self.spaced else ","
        self._colon = ": " if self.spaced else ":"
        self._keys: dict[str, str] = {}
        self._plain = _plain_json_encoder(self._separator, self._colon)

    def value(self, value: Any) -> str:
        """A field value as JSON, the way zap's JSON encoder writes it."""
        cls = value.__class__
        if cls is str:
            return json_string(value)
        if cls is Plain or cls is StringArray:
            out: str = self._plain(value)
            if "\\" not in out or ("\\b" not in out and "\\f" not in out):
                return out
            # zap writes \b and \f as \u0008 and \u000c: take the slow path below
        if cls is dict or cls is Plain:
            colon = self._colon
            return "{" + self._separator.join(
                json_string(k) + colon + self.value(v) for k, v in value.items()
            ) + "}"
        if cls is StringArray or cls is list or cls is tuple:
            return "[" + self._separator.join(self.value(v) for v in value) + "]"
        if cls is bool:
            return "true" if value else "false"
        if cls is int:
            return str(value)
        if cls is Duration:
            if self.duration_format == "seconds":
                return _json_float(value / 1e9)
            if self.duration_format == "string":
                from txcaddy.config.placeholders import go_duration

                return json_string(go_duration(int(value)))
            return str(int(value))
        if cls is float:
            return _json_float(value)
        if value is None:
            return "null"
        return json_string(str(value))

    def fields(self, fields: Iterable[tuple[str, Any]]) -> str:
        key = self._key
        value = self.value
        return self._separator.join([key(k) + value(v) for k, v in fields])

    def _key(self, name: str) -> str:
        """``"name":`` (cached: keys and logger names repeat)."""
        text = self._keys.get(name)
        if text is None:
            text = json_string(name) + self._colon
            if len(self._keys) < 1024:
                self._keys[name] = text
        return text


def _plain_json_encoder(separator: str, colon: str) -> Callable[[Any], str]:
    """The C JSON encoder, built once (``json.dumps`` builds one per call)."""
    if c_make_encoder is None:  # pragma: no cover - CPython has it
        return json.JSONEncoder(ensure_ascii=False, check_circular=False, separators=(separator, colon)).encode
    iterencode = c_make_encoder(None, None, _c_json_string, None, colon, separator, False, False, True)
    return lambda value: "".join(iterencode(value, 0))


class JSONLogEncoder(_ZapEncoder):
    """``caddy.logging.encoders.json``: one JSON object per line."""

    def encode(self, entry: Entry) -> bytes:
        key = self._key
        parts = []
        if self.level_key and self.encode_level is not None:
            parts.append(key(self.level_key) + json_string(self.encode_level(entry.level)))
        if self.time_key:
            parts.append(key(self.time_key) + self.value(self.encode_time(entry.time)))
        if entry.logger and self.name_key:
            parts.append(key(self.name_key) + json_string(entry.logger))
        if self.message_key:
            parts.append(key(self.message_key) + json_string(entry.message))
        if entry.fields:
            parts.append(self.fields(entry.fields))
        line = "{" + ",".join(parts) + "}" + self.line_ending
        return line.encode("utf-8", "replace")


class ConsoleLogEncoder(_ZapEncoder):
    """``caddy.logging.encoders.console``: tab-separated time, level, logger, message, then JSON."""

    spaced = True

    def encode(self, entry: Entry) -> bytes:
        elements = []
        if self.time_key:
            stamp = self.encode_time(entry.time)
            elements.append(_go_v_float(stamp) if stamp.__class__ is float else str(stamp))
        if self.level_key and self.encode_level is not None:
            elements.append(self.encode_level(entry.level))
        if entry.logger and self.name_key:
            elements.append(entry.logger)
        if self.message_key:
            elements.append(entry.message)
        if entry.fields:
            elements.append("{" + self.fields(entry.fields) + "}")
        line = "\t".join(elements) + self.line_ending
        return line.encode("utf-8", "replace")


class FilterLogEncoder:
    """``caddy.logging.encoders.filter``: field filters in front of another encoder.

    Filters are keyed by field path (``request>headers>Cookie``); a filtered
    object is handed on whole, without the filters below it, as Caddy does.
    """

    def __init__(self, wrapped: Any, filters: dict[str, Any]) -> None:
        self.wrapped = wrapped
        self.filters = filters
        self._parents: set[str] = set()
        for path in filters:
            pieces = path.split(">")
            for i in range(1, len(pieces)):
                self._parents.add(">".join(pieces[:i]))

    def filter_fields(self, fields: Iterable[tuple[str, Any]], prefix: str = "") -> list[tuple[str, Any]]:
        out = []
        for key, value in fields:
            path = prefix + key
            field_filter = self.filters.get(path)
            if field_filter is not None:
                filtered = field_filter.filter(key, value)
                if filtered is not None:
                    out.append(filtered)
            elif (value.__class__ is dict or value.__class__ is Plain) and path in self._parents:
                # filters give strings and string arrays, so a Plain object stays plain
                out.append((key, value.__class__(self.filter_fields(value.items(), path + ">"))))
            else:
                out.append((key, value))
        return out

    def encode(self, entry: Entry) -> bytes:
        fields = self.filter_fields(entry.fields) if entry.fields else entry.fields
        return self.wrapped.encode(Entry(entry.level, entry.time, entry.logger, entry.message, fields))


def default_encoder(colorize: bool, terminal: bool) -> Any:
    """Caddy's encoder for a log without one: console on a terminal, else JSON."""
    if terminal:
        return ConsoleLogEncoder({}, time_format="wall_milli", level_format="color" if colorize else "lower")
    return JSONLogEncoder({})


@module("caddy.logging.encoders.json")
def _json_encoder(config: dict[str, Any], context: Any) -> JSONLogEncoder:
    return JSONLogEncoder(config)


@module("caddy.logging.encoders.console")
def _console_encoder(config: dict[str, Any], context: Any) -> ConsoleLogEncoder:
    return ConsoleLogEncoder(config, time_format="wall_milli", level_format="color")


@module("caddy.logging.encoders.filter")
def _filter_encoder(config: dict[str, Any], context: Any) -> FilterLogEncoder:
    wrap = config.get("wrap")
    if not wrap:
        raise ConfigError('missing "wrap" (must specify an underlying encoder)')
    wrapped = context.load_module("caddy.logging.encoders", wrap, "format")
    filters = {}
    for path, filter_config in (config.get("fields") or {}).items():
        context.path.append(f"fields.{path}")
        try:
            filters[path] = context.load_module("caddy.logging.encoders.filter", filter_config, "filter")
        finally:
            context.path.pop()
    return FilterLogEncoder(wrapped, filters)


# -- field filters --------------------------------------------------------------------------
# Each has ``filter(key, value) -> (key, value) | None`` (None deletes the field). Like
# Caddy's, they change strings and header value arrays and leave other values alone.


def _short_hash(text: str) -> str:
    """Caddy's hash: the first 4 bytes of SHA-256, in hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    if value.__class__ is StringArray:
        return StringArray(change(v) for v in value)
    if value.__class__ is str:
        return change(value)
    return value


class DeleteFilter:
    def filter(self, key: str, value: Any) -> None:
        return None


class ReplaceFilter:
    def __init__(self, value: str) -> None:
        self.replacement = value

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        return key, self.replacement


class RenameFilter:
    def __init__(self, name: str) -> None:
        self.name = name

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        return self.name, value


class HashFilter:
    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        return key, _map_strings(value, _short_hash)


class RegexpFilter:
    def __init__(self, pattern: str, value: str) -> None:
        from txcaddy.http._goregexp import GoRegexpError, compile_go_regexp
        from txcaddy.http._goreplace import expander

        try:
            self.regexp = compile_go_regexp(pattern)
        except GoRegexpError as e:
            raise ConfigError(f"error parsing regexp: {e}") from None
        self.expand = expander(self.regexp, value)

    def _replace(self, text: str) -> str:
        from txcaddy.http._goreplace import replace_all

        return replace_all(self.regexp, text, self.expand)

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        return key, _map_strings(value, self._replace)


class IPMaskFilter:
    """Masks IP addresses (``ip`` or ``ip:port``, comma-separated lists too)."""

    def __init__(self, ipv4_cidr: int, ipv6_cidr: int) -> None:
        # Go's IP.Mask with no mask for the family gives a nil IP, printed "<nil>".
        self.v4 = ((1 << 32) - (1 << (32 - ipv4_cidr))) if 0 < ipv4_cidr <= 32 else None
        self.v6 = ((1 << 128) - (1 << (128 - ipv6_cidr))) if 0 < ipv6_cidr <= 128 else None

    def mask(self, text: str) -> str:
        from txcaddy.config.placeholders import join_host_port, split_host_port

        out = []
        for value in text.split(","):
            value = value.strip(" \t\n\r\v\f")
            parts = split_host_port(value)
            host, port = parts if parts is not None else (value, "")
            address = _parse_go_ip(host)
            if address is None:
                out.append(value)
                continue
            masked: str
            if address.version == 4:
                masked = "<nil>" if self.v4 is None else str(ipaddress.IPv4Address(int(address) & self.v4))
            else:
                masked = "<nil>" if self.v6 is None else str(ipaddress.IPv6Address(int(address) & self.v6))
            out.append(join_host_port(masked, port) if port else masked)
        return ", ".join(out)

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        return key, _map_strings(value, self.mask)


def _parse_go_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Go's ``net.ParseIP``, with IPv4-mapped IPv6 addresses taken as IPv4."""
    if not text or "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:  # type: ignore[union-attr]
        return address.ipv4_mapped  # type: ignore[union-attr]
    return address


_FILTER_ACTIONS = ("replace", "hash", "delete")


def _actions(config: dict[str, Any], name_key: str) -> list[tuple[str, str, str]]:
    actions = []
    for action in config.get("actions") or ():
        kind = action.get("type")
        if kind not in _FILTER_ACTIONS:
            raise ConfigError("invalid action type")
        actions.append((kind, str(action.get(name_key) or ""), str(action.get("value") or "")))
    return actions


class QueryFilter:
    """Replaces, hashes or deletes query parameters of a URI; the query is re-encoded sorted, as Go's ``Values.Encode``.

    ``hash`` hashes each value of the parameter (Caddy 2.6.2 hashes the
    action's empty ``value`` instead, a bug fixed later; see docs/logging.md).
    """

    def __init__(self, actions: list[tuple[str, str, str]]) -> None:
        self.actions = actions

    def rewrite(self, uri: str) -> str:
        from txcaddy.config.placeholders import escaped_path, parse_query

        rest, hash_mark, fragment = uri.partition("#")
        path, question, query = rest.partition("?")
        if _bad_escape(path):
            return uri  # Go's url.Parse fails; Caddy leaves the field as it is
        values = {k: list(v) for k, v in parse_query(query)[0].items()}
        for kind, name, replacement in self.actions:
            if kind == "delete":
                values.pop(name, None)
            elif name in values:
                if kind == "replace":
                    values[name] = [replacement for _ in values[name]]
                else:
                    values[name] = [_short_hash(v) for v in values[name]]
        encoded = "&".join(
            f"{_query_escape(k)}={_query_escape(v)}" for k in sorted(values) for v in values[k]
        )
        decoded = unquote(path, errors="surrogateescape") if "%" in path else path
        out = escaped_path(_PathView(path, decoded)) if path else ""
        if encoded or (question and not query):
            out += "?" + encoded
        if hash_mark:
            out += "#" + fragment
        return out

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        if value.__class__ is str:
            return key, self.rewrite(value)
        return key, value


class _PathView:
    __slots__ = ("raw_path", "path")

    def __init__(self, raw_path: str, path: str) -> None:
        self.raw_path = raw_path
        self.path = path


def _bad_escape(text: str) -> bool:
    i = text.find("%")
    while i >= 0:
        pair = text[i + 1 : i + 3]
        if len(pair) < 2 or any(c not in "0123456789abcdefABCDEF" for c in pair):
            return True
        i = text.find("%", i + 3)
    return False


def _query_escape(text: str) -> str:
    return quote_plus(text.encode("utf-8", "surrogateescape"), safe="")


_COOKIE_VALUE_BYTES = frozenset(chr(c) for c in range(0x20, 0x7F)) - set('";\\')


class CookieFilter:
    """Replaces, hashes or deletes cookies in a ``Cookie`` header's values."""

    def __init__(self, actions: list[tuple[str, str, str]]) -> None:
        self.actions = actions

    def filter(self, key: str, value: Any) -> tuple[str, Any]:
        if value.__class__ is not StringArray:
            return key, value
        from txcaddy.config.placeholders import request_cookies
        from txcaddy.http.headers import Headers

        cookies = []
        for name, cookie_value in request_cookies(Headers(("Cookie", v) for v in value)):
            for kind, action_name, replacement in self.actions:
                if name != action_name:
                    continue
                if kind == "delete":
                    break
                cookie_value = replacement if kind == "replace" else _short_hash(cookie_value)
                cookies.append(f"{_cookie_name(name)}={_cookie_value(cookie_value)}")
                break
            else:
                cookies.append(f"{_cookie_name(name)}={_cookie_value(cookie_value)}")
        return key, StringArray(["; ".join(cookies)] if cookies else [])


def _cookie_name(name: str) -> str:
    return name.replace("\n", "-").replace("\r", "-")


def _cookie_value(value: str) -> str:
    """Go's ``sanitizeCookieValue``: invalid bytes dropped, quoted when it has a space or comma."""
    value = "".join(c for c in value if c in _COOKIE_VALUE_BYTES)
    return f'"{value}"' if (" " in value or "," in value) else value


@module("caddy.logging.encoders.filter.delete")
def _delete_filter(config: dict[str, Any], context: Any) -> DeleteFilter:
    return DeleteFilter()


@module("caddy.logging.encoders.filter.replace")
def _replace_filter(config: dict[str, Any], context: Any) -> ReplaceFilter:
    return ReplaceFilter(str(config.get("value") or ""))


@module("caddy.logging.encoders.filter.rename")
def _rename_filter(config: dict[str, Any], context: Any) -> RenameFilter:
    return RenameFilter(str(config.get("name") or ""))


@module("caddy.logging.encoders.filter.hash")
def _hash_filter(config: dict[str, Any], context: Any) -> HashFilter:
    return HashFilter()


@module("caddy.logging.encoders.filter.regexp")
def _regexp_filter(config: dict[str, Any], context: Any) -> RegexpFilter:
    return RegexpFilter(str(config.get("regexp") or ""), str(config.get("value") or ""))


@module("caddy.logging.encoders.filter.ip_mask")
def _ip_mask_filter(config: dict[str, Any], context: Any) -> IPMaskFilter:
    return IPMaskFilter(int(config.get("ipv4_cidr") or 0), int(config.get("ipv6_cidr") or 0))


@module("caddy.logging.encoders.filter.query")
def _query_filter(config: dict[str, Any], context: Any) -> QueryFilter:
    return QueryFilter(_actions(config, "parameter"))


@module("caddy.logging.encoders.filter.cookie")
def _cookie_filter(config: dict[str, Any], context: Any) -> CookieFilter:
    return CookieFilter(_actions(config, "name"))


# -- writers ----------------------------------------------------------------------------------
# A writer has ``key`` (logs with the same key share one writer), ``open()``,
# ``write(bytes)`` and ``close()``; ``str(writer)`` says where the lines go.


class StdWriter:
    """``stdout`` / ``stderr``: the process's file descriptor, as Caddy (twistd may have
    replaced ``sys.stdout``/``sys.stderr`` with log redirectors)."""

    def __init__(self, name: str, stream: Any = None) -> None:
        self.name = name
        self.key = "std:out" if name == "stdout" else "std:err"
        self.stream = stream  # a binary file-like object; None means the file descriptor

    def open(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        if self.stream is not None:
            self.stream.write(data)
            return
        fd = 1 if self.name == "stdout" else 2
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def close(self) -> None:
        pass

    def __str__(self) -> str:
        return self.name


class DiscardWriter:
    key = "discard"

    def open(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def __str__(self) -> str:
        return "discard"


_BACKUP_TIME = "%Y-%m-%dT%H-%M-%S"
MEGABYTE = 1024 * 1024


class FileWriter:
    """``file``: appends lines to a file, rolling it by size as Caddy's (lumberjack) does.

    When a write would take the file past ``roll_size_mb``, the file is renamed
    to ``name-<UTC time>.ext`` and a new one started; then backups beyond
    ``roll_keep`` or older than ``roll_keep_days`` are removed and the others
    gzipped (``roll_gzip``), in a thread when one is available.
    """

    def __init__(
        self,
        filename: str,
        *,
        roll: bool = True,
        roll_size_mb: int = 100,
        roll_gzip: bool = True,
        roll_local_time: bool = False,
        roll_keep: int = 10,
        roll_keep_days: int = 90,
        clock: Callable[[], float] = time.time,
        in_thread: Callable[..., Any] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.filename = filename
        self.key = "file:" + filename
        self.roll = roll
        self.max_bytes = max_bytes if max_bytes is not None else (roll_size_mb or 100) * MEGABYTE
        self.gzip = roll_gzip
        self.local_time = roll_local_time
        self.keep = roll_keep
        self.keep_days = roll_keep_days
        self.clock = clock
        self.in_thread = in_thread
        self.file: Any = None
        self.size = 0
        self._mill_lock = threading.Lock()

    def __str__(self) -> str:
        return os.path.abspath(self.filename)

    def open(self) -> None:
        if self.file is not None:
            return
        if not self.roll:
            fd = os.open(self.filename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            self.file = os.fdopen(fd, "ab", buffering=0)
            return
        self._mill()
        try:
            size = os.stat(self.filename).st_size
        except FileNotFoundError:
            self._open_new()
            return
        if size >= self.max_bytes:
            self._rotate()
            return
        self.file = open(self.filename, "ab", buffering=0)  # noqa: SIM115 - kept open until close()
        self.size = size

    def write(self, data: bytes) -> None:
        if self.file is None:
            self.open()
        if self.roll and self.size + len(data) > self.max_bytes and self.size > 0:
            self._rotate()
        self.file.write(data)
        self.size += len(data)

    def close(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            file.close()

    # -- rolling ---------------------------------------------------------------------------

    def _open_new(self) -> None:
        directory = os.path.dirname(self.filename) or "."
        os.makedirs(directory, 0o755, exist_ok=True)
        mode = 0o600
        try:
            mode = os.stat(self.filename).st_mode & 0o777
        except FileNotFoundError:
            pass
        else:
            os.rename(self.filename, self._backup_name())
        fd = os.open(self.filename, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        self.file = os.fdopen(fd, "ab", buffering=0)
        self.size = 0

    def _rotate(self) -> None:
        self.close()
        self._open_new()
        self._mill()

    def _backup_name(self) -> str:
        now = self.clock()
        stamp = time.strftime(_BACKUP_TIME, time.localtime(now) if self.local_time else time.gmtime(now))
        stamp += f".{int(now * 1000) % 1000:03d}"
        directory, base = os.path.split(self.filename)
        stem, ext = os.path.splitext(base)
        return os.path.join(directory, f"{stem}-{stamp}{ext}")

    def backups(self) -> list[tuple[float, str]]:
        """(time, path) of this file's backups, newest first."""
        directory, base = os.path.split(self.filename)
        directory = directory or "."
        stem, ext = os.path.splitext(base)
        prefix = stem + "-"
        found = []
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        for name in names:
            if not name.startswith(prefix):
                continue
            middle = name[len(prefix) :]
            for suffix in (ext + ".gz", ext):
                if middle.endswith(suffix) and len(middle) > len(suffix):
                    stamp = middle[: len(middle) - len(suffix)]
                    when = _parse_backup_time(stamp)
                    if when is not None:
                        found.append((when, os.path.join(directory, name)))
                    break
        found.sort(reverse=True)
        return found

    def _mill(self) -> None:
        if not (self.keep or self.keep_days or self.gzip):
            return
        if self.in_thread is not None:
            self.in_thread(self._mill_now)
        else:
            self._mill_now()

    def _mill_now(self) -> None:
        with self._mill_lock:
            files = self.backups()
            remove = []
            if self.keep and self.keep < len(files):
                kept: set[str] = set()
                remaining = []
                for entry in files:
                    kept.add(entry[1].removesuffix(".gz"))
                    (remove if len(kept) > self.keep else remaining).append(entry)
                files = remaining
            if self.keep_days:
                cutoff = self.clock() - self.keep_days * 86400
                remove += [entry for entry in files if entry[0] < cutoff]
                files = [entry for entry in files if entry[0] >= cutoff]
            for _, path in remove:
                _remove_quietly(path)
            if self.gzip:
                for _, path in files:
                    if not path.endswith(".gz"):
                        _gzip_file(path)


def _parse_backup_time(stamp: str) -> float | None:
    import calendar

    whole, dot, millis = stamp.rpartition(".")
    if not dot or len(millis) != 3 or not millis.isdigit():
        return None
    try:
        parsed = time.strptime(whole, _BACKUP_TIME)
    except ValueError:
        return None
    return calendar.timegm(parsed) + int(millis) / 1000


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _gzip_file(path: str) -> None:
    target = path + ".gz"
    try:
        mode = os.stat(path).st_mode & 0o777
        with open(path, "rb") as source, gzip.open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
        os.chmod(target, mode)
        os.remove(path)
    except OSError as e:
        _log.error("compressing log file {path}: {error}", path=path, error=e)


class _NetProtocol(Protocol):
    def __init__(self, writer: NetWriter) -> None:
        self.writer = writer

    def connectionLost(self, reason: Any = None) -> None:
        self.writer._lost(self)


class NetWriter:
    """``net``: lines to a TCP or Unix socket, or UDP datagrams.

    Lines written while the connection is being made are kept (up to 1 MiB);
    when it is down, lines go to stderr and it is redialled at most every 10
    seconds, as Caddy does.
    """

    REDIAL_INTERVAL = 10.0
    BUFFER_LIMIT = MEGABYTE

    def __init__(self, address: str, dial_timeout: float = 0.0, reactor: Any = None, fallback: Any = None) -> None:
        from txcaddy.caddyfile.addresses import AddressError, NetworkAddress

        try:
            parsed = NetworkAddress.parse(address)
        except AddressError as e:
            raise ConfigError(f"parsing network address '{address}': {e}") from None
        if parsed.network not in ("unix", "unixgram", "unixpacket") and parsed.start_port != parsed.end_port:
            raise ConfigError("multiple ports not supported")
        if dial_timeout < 0:
            raise ConfigError("timeout cannot be less than 0")
        self.network = parsed.network
        self.host = parsed.host
        self.port = parsed.start_port
        self.key = str(parsed)
        if self.network.startswith("udp") and _parse_go_ip(self.host) is None:
            raise ConfigError(f"log address '{address}': a udp log address needs an IP address")
        if self.network not in ("tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix"):
            raise ConfigError(f"log address '{address}': network '{self.network}' is not supported")
        self.dial_timeout = dial_timeout
        self.reactor = reactor
        self.fallback = fallback or StdWriter("stderr")
        self.transport: Any = None
        self._connecting = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._last_dial = -math.inf
        self._closed = False
        self._udp_port: Any = None

    def __str__(self) -> str:
        return self.key

    def open(self) -> None:
        self._closed = False
        self._dial()

    def _dial(self) -> None:
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = self.reactor = default_reactor
        self._last_dial = reactor.seconds()
        if self.network.startswith("udp"):
            self._udp_port = reactor.listenUDP(0, DatagramProtocol())
            self._udp_port.connect(self.host, self.port)
            self.transport = self._udp_port
            return
        from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint

        timeout = self.dial_timeout or 30
        if self.network == "unix":
            endpoint: Any = UNIXClientEndpoint(reactor, self.host, timeout=timeout)
        else:
            endpoint = HostnameEndpoint(reactor, self.host, self.port, timeout=timeout)
        self._connecting = True
        d: Deferred[Any] = endpoint.connect(Factory.forProtocol(lambda: _NetProtocol(self)))
        d.addCallbacks(self._connected, self._dial_failed)

    def _connected(self, protocol: _NetProtocol) -> None:
        self._connecting = False
        if self._closed:
            protocol.transport.loseConnection()
            return
        self.transport = protocol.transport
        pending, self._pending, self._pending_size = self._pending, [], 0
        if pending:
            self.transport.writeSequence(pending)

    def _dial_failed(self, failure: Any) -> None:
        self._connecting = False
        _log.error("dialing log address {address}: {error}", address=self.key, error=failure.value)
        pending, self._pending, self._pending_size = self._pending, [], 0
        for line in pending:
            self.fallback.write(line)

    def _lost(self, protocol: _NetProtocol) -> None:
        if self.transport is protocol.transport:
            self.transport = None

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            return
        if not self._connecting and not self._closed and self.reactor is not None:
            if self.reactor.seconds() - self._last_dial >= self.REDIAL_INTERVAL:
                self._dial()
                if self.transport is not None:
                    self.transport.write(data)
                    return
        if self._connecting and self._pending_size + len(data) <= self.BUFFER_LIMIT:
            self._pending.append(data)
            self._pending_size += len(data)
            return
        self.fallback.write(data)

    def close(self) -> None:
        self._closed = True
        transport, self.transport = self.transport, None
        if self._udp_port is not None:
            self._udp_port.stopListening()
            self._udp_port = None
        elif transport is not None:
            transport.loseConnection()


def _seconds(value: Any) -> float:
    """A Caddy duration (nanoseconds or a string like ``3s``) in seconds."""
    if isinstance(value, bool) or value is None:
        return 0.0
    if isinstance(value, (int, float)):
        return value / 1e9
    from txcaddy.caddyfile._goparse import parse_caddy_duration

    try:
        return parse_caddy_duration(str(value)) / 1e9
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _expand(text: str) -> str:
    """Global placeholders (``{env.LOG_DIR}``) in a filename, level or address."""
    if "{" not in text:
        return text
    from txcaddy.config.placeholders import replace_known

    return replace_known(text, None)


@module("caddy.logging.writers.stdout")
def _stdout_writer(config: dict[str, Any], context: Any) -> StdWriter:
    return StdWriter("stdout")


@module("caddy.logging.writers.stderr")
def _stderr_writer(config: dict[str, Any], context: Any) -> StdWriter:
    return StdWriter("stderr")


@module("caddy.logging.writers.discard")
def _discard_writer(config: dict[str, Any], context: Any) -> DiscardWriter:
    return DiscardWriter()


@module("caddy.logging.writers.file")
def _file_writer(config: dict[str, Any], context: Any) -> FileWriter:
    filename = _expand(str(config.get("filename") or ""))
    if not filename:
        raise ConfigError("a file log needs a filename")
    reactor = getattr(context, "reactor", None)
    seconds = getattr(reactor, "seconds", None)
    in_thread = getattr(reactor, "callInThread", None)
    roll = config.get("roll")
    gzip_rolled = config.get("roll_gzip")
    return FileWriter(
        filename,
        roll=roll is not False,
        roll_size_mb=int(config.get("roll_size_mb") or 100),
        roll_gzip=gzip_rolled is not False,
        roll_local_time=bool(config.get("roll_local_time")),
        roll_keep=int(config.get("roll_keep") or 10),
        roll_keep_days=int(config.get("roll_keep_days") or 90),
        clock=seconds or time.time,
        in_thread=in_thread,
    )


@module("caddy.logging.writers.net")
def _net_writer(config: dict[str, Any], context: Any) -> NetWriter:
    return NetWriter(
        _expand(str(config.get("address") or "")),
        _seconds(config.get("dial_timeout")),
        reactor=getattr(context, "reactor", None),
    )


# -- logs ---------------------------------------------------------------------------------


def logger_allowed(name: str, include: list[str], exclude: list[str]) -> bool:
    """Whether a log with these ``include``/``exclude`` lists takes logger ``name``.

    Names match by dotted prefix (``http.log`` takes ``http.log.access.x``);
    the longest matching namespace of either list wins.
    """
    if not include and not exclude:
        return True
    if name and name not in ("*", "."):
        name += "."
    longest_accept = longest_reject = 0
    for namespace in include:
        if name.startswith(namespace + ".") and len(namespace) > longest_accept:
            longest_accept = len(namespace)
    if include and longest_accept == 0:
        return False
    for namespace in exclude:
        if (namespace == "*" and name != ".") or (namespace == "." and name == "."):
            return False
        if name.startswith(namespace + ".") and len(namespace) > longest_reject:
            longest_reject = len(namespace)
    if exclude and longest_reject > longest_accept:
        return False
    return longest_accept > longest_reject or (not include and longest_reject == 0)


def check_include_exclude(include: list[str], exclude: list[str]) -> None:
    """Caddy's rule: with both lists, each include must nest with an exclude and none be equal."""
    if not include or not exclude:
        return
    for allow in include:
        for deny in exclude:
            if allow == deny:
                raise ConfigError(f"include and exclude must not intersect, but found {allow} in both lists")
    for allow in include:
        if not any((allow + ".").startswith(deny + ".") or (deny + ".").startswith(allow + ".") for deny in exclude):
            raise ConfigError(
                "when both include and exclude are populated, each element must be a superspace or "
                f"subspace of one in the other list; check '{allow}' in include"
            )


class _Sampler:
    """zap's sampler: per level and message, the first N entries of each interval, then every Mth."""

    def __init__(self, interval: float, first: int, thereafter: int) -> None:
        self.interval = interval
        self.first = first
        self.thereafter = thereafter
        self.counts: dict[tuple[str, str], list[float]] = {}

    def allow(self, level: str, message: str, when: float) -> bool:
        key = (level, message)
        counter = self.counts.get(key)
        if counter is None or when >= counter[1]:
            if len(self.counts) > 4096:
                self.counts.clear()
            counter = self.counts[key] = [0, when + self.interval]
        counter[0] += 1
        n = counter[0]
        return n <= self.first or (self.thereafter > 0 and (n - self.first) % self.thereafter == 0)


@implementer(ILogObserver)
class CustomLog:
    """One configured log: an observer keeping the events its level and names accept."""

    def __init__(
        self,
        name: str,
        writer: Any,
        encoder: Any,
        *,
        level: str = "info",
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        sampling: _Sampler | None = None,
    ) -> None:
        self.name = name
        self.writer = writer
        self.encoder = encoder
        self.level = level
        self.min_rank = LEVELS[level]
        self.include = list(include)
        self.exclude = list(exclude)
        self.sampling = sampling
        self._allowed: dict[str, bool] = {}

    def accepts(self, logger: str) -> bool:
        allowed = self._allowed.get(logger)
        if allowed is None:
            allowed = logger_allowed(logger, self.include, self.exclude)
            if len(self._allowed) > 4096:
                self._allowed.clear()
            self._allowed[logger] = allowed
        return allowed

    def wants(self, logger: str, level: str) -> bool:
        return LEVELS[level] >= self.min_rank and self.accepts(logger)

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("caddy_level") or _FROM_TWISTED.get(event.get("log_level"), "info")  # type: ignore[arg-type]
        logger = event.get("log_namespace") or ""
        if LEVELS[level] < self.min_rank or not self.accepts(logger):
            return
        message = event.get("caddy_msg", "")
        when = event.get("log_time")
        if when is None:
            when = time.time()
        if self.sampling is not None and not self.sampling.allow(level, message, when):
            return
        try:
            line = self.encoder.encode(Entry(level, when, logger, message, event.get("caddy_fields") or []))
            self.writer.write(line)
        except Exception:  # noqa: BLE001 - a broken log must not break the request
            _log.failure("writing to log {name} ({writer})", name=self.name, writer=str(self.writer))


class LogSystem:
    """The logs of one config: observers on a private ``LogPublisher``, writers shared by key."""

    def __init__(self, logs: Iterable[CustomLog] = (), *, clock: Callable[[], float] = time.time) -> None:
        self.logs = list(logs)
        self.clock = clock
        self.publisher = LogPublisher(*self.logs)
        self.running = False
        self._wanted: dict[tuple[str, str], bool] = {}

    @property
    def writers(self) -> list[Any]:
        seen: dict[str, Any] = {}
        for log in self.logs:
            seen.setdefault(log.writer.key, log.writer)
        return list(seen.values())

    def start(self) -> None:
        """Open the writers (a file that cannot be opened fails here, loudly)."""
        opened = []
        try:
            for writer in self.writers:
                writer.open()
                opened.append(writer)
        except Exception:
            for writer in opened:
                writer.close()
            raise
        self.running = True

    def stop(self) -> None:
        self.running = False
        for writer in self.writers:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - close every writer
                _log.failure("closing log writer {writer}", writer=str(writer))

    def enabled(self, logger: str, level: str) -> bool:
        """Whether any log would keep an entry (so unwanted entries are never built)."""
        if not self.running:
            return False
        key = (logger, level)
        wanted = self._wanted.get(key)
        if wanted is None:
            wanted = any(log.wants(logger, level) for log in self.logs)
            if len(self._wanted) > 4096:
                self._wanted.clear()
            self._wanted[key] = wanted
        return wanted

    def emit(self, logger: str, level: str, message: str, fields: list[tuple[str, Any]], when: float | None = None) -> None:
        """Publish one entry as a ``twisted.logger`` event to the configured logs."""
        if not self.running:
            return
        self.publisher(
            {
                "log_namespace": logger,
                "log_level": _TWISTED_LEVELS[level],
                "log_time": self.clock() if when is None else when,
                "log_format": "{caddy_msg}",
                "caddy_level": level,
                "caddy_msg": message,
                "caddy_fields": fields,
            }
        )

    def server_logger(self, logs_config: dict[str, Any] | None, *, error_routes: bool = False) -> ServerLogger:
        return ServerLogger(self, logs_config, error_routes=error_routes)

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any] | None,
        context: Any = None,
        *,
        clock: Callable[[], float] | None = None,
        stdout: Any = None,
        stderr: Any = None,
        terminal: bool | None = None,
    ) -> LogSystem:
        """Build the logs of Caddy's ``logging`` object (None: only the default log).

        ``stdout``/``stderr`` replace the process's streams (tests);
        ``terminal`` says whether stdout is a terminal, which picks the default
        encoder as in Caddy (console on a terminal, JSON otherwise).
        """
        if context is None:
            from txcaddy.config.loader import LoadContext

            context = LoadContext()
        reactor = getattr(context, "reactor", None)
        if clock is None:
            clock = getattr(reactor, "seconds", None) or time.time
        if terminal is None:
            terminal = _stdout_is_terminal()
        streams = {"stdout": stdout, "stderr": stderr}
        logs_config = (config or {}).get("logs") or {}
        shared: dict[str, Any] = {}
        logs = []
        for name in ["default", *(n for n in logs_config if n != "default")]:
            log_config = logs_config.get(name)
            if log_config is None:  # Caddy's own default: stderr, INFO
                writer = shared.setdefault("std:err", StdWriter("stderr", stderr))
                logs.append(CustomLog("default", writer, default_encoder(True, terminal)))
                continue
            where = "setting up default log" if name == "default" else f"setting up custom log '{name}'"
            context.path.append(f"logging.logs.{name}")
            try:
                log = _load_log(name, log_config, context, terminal)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            finally:
                context.path.pop()
            if isinstance(log.writer, DiscardWriter):
                continue  # Caddy drops logs that only discard
            if isinstance(log.writer, StdWriter) and streams.get(log.writer.name) is not None:
                log.writer.stream = streams[log.writer.name]
            if isinstance(log.writer, NetWriter):
                log.writer.fallback = shared.setdefault("std:err", StdWriter("stderr", stderr))
            log.writer = shared.setdefault(log.writer.key, log.writer)
            logs.append(log)
        return cls(logs, clock=clock)


def _stdout_is_terminal() -> bool:
    try:
        return os.isatty(1)
    except OSError:
        return False


def _load_log(name: str, config: dict[str, Any], context: Any, terminal: bool) -> CustomLog:
    level = _expand(str(config.get("level") or "")).lower() or "info"
    if level not in _CONFIG_LEVELS:
        raise ConfigError(f"unrecognized log level: {config.get('level')}")
    include = [str(n) for n in config.get("include") or ()]
    exclude = [str(n) for n in config.get("exclude") or ()]
    check_include_exclude(include, exclude)
    writer_config = config.get("writer")
    writer = context.load_module("caddy.logging.writers", writer_config, "output") if writer_config else StdWriter("stderr")
    encoder_config = config.get("encoder")
    if encoder_config:
        encoder = context.load_module("caddy.logging.encoders", encoder_config, "format")
    else:
        encoder = default_encoder(isinstance(writer, StdWriter), terminal)
    sampling = None
    sampling_config = config.get("sampling")
    if sampling_config:
        sampling = _Sampler(
            _seconds(sampling_config.get("interval")) or 1.0,
            int(sampling_config.get("first") or 100),
            int(sampling_config.get("thereafter") or 100),
        )
    return CustomLog(name, writer, encoder, level=level, include=include, exclude=exclude, sampling=sampling)


# -- HTTP access and error logs ----------------------------------------------------------------

_CREDENTIAL_HEADERS = frozenset(("Cookie", "Set-Cookie", "Authorization", "Proxy-Authorization"))
_FRAMING_HEADERS = ("Content-Length", "Transfer-Encoding", "Connection")
_RECORD = "access_log_record"  # the request attribute holding what begin() recorded
_FAILED = "access_log_chain_failed"  # set when the server's handler chain failed

# TLS versions and cipher suites as the numbers Go logs.
_TLS_VERSIONS = {"tls1.0": 0x0301, "tls1.1": 0x0302, "tls1.2": 0x0303, "tls1.3": 0x0304,
                 "tlsv1": 0x0301, "tlsv1.1": 0x0302, "tlsv1.2": 0x0303, "tlsv1.3": 0x0304}
_CIPHER_SUITES = {
    "TLS_AES_128_GCM_SHA256": 0x1301,
    "TLS_AES_256_GCM_SHA384": 0x1302,
    "TLS_CHACHA20_POLY1305_SHA256": 0x1303,
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xC02B,
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": 0xC02F,
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": 0xC02C,
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": 0xC030,
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA9,
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": 0xCCA8,
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-RSA-AES128-GCM-SHA256": 0xC02F,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-RSA-AES256-GCM-SHA384": 0xC030,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
    "ECDHE-RSA-CHACHA20-POLY1305": 0xCCA8,
}


def _wire_text(text: str) -> str:
    """Request bytes (held as latin-1 text) as the UTF-8 zap writes, invalid bytes as U+FFFD."""
    if text.isascii():
        return text
    try:
        return text.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text


def _tls_number(value: Any, table: dict[str, int]) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, str):
        return table.get(value, table.get(value.lower(), 0))
    return 0


def _tls_object(tls: Any) -> Plain:
    out = Plain({
        "resumed": bool(getattr(tls, "resumed", False)),
        "version": _tls_number(getattr(tls, "version", 0), _TLS_VERSIONS),
        "cipher_suite": _tls_number(getattr(tls, "cipher_suite", 0), _CIPHER_SUITES),
        "proto": str(getattr(tls, "proto", "") or ""),
        "server_name": str(getattr(tls, "server_name", "") or ""),
    })
    certificate = getattr(tls, "peer_certificate", None)
    if certificate is not None:
        if hasattr(certificate, "to_cryptography"):
            certificate = certificate.to_cryptography()
        try:
            from cryptography.x509.oid import NameOID

            names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            out["client_common_name"] = str(names[0].value) if names else ""
            out["client_serial"] = str(certificate.serial_number)
        except (AttributeError, ImportError):
            pass
    return out


def _header_object(headers: Any, credentials: bool, skip: tuple[str, ...] = ()) -> Plain:
    out = Plain()
    for name in headers.names():  # canonical names
        if name in skip:
            continue
        if not credentials and name in _CREDENTIAL_HEADERS:
            out[name] = StringArray()
            continue
        values = headers.get_all(name)
        for value in values:
            if not value.isascii():
                values = [_wire_text(v) for v in values]
                break
        out[name] = StringArray(values)
    return out


def request_object(request: Any, credentials: bool = False) -> Plain:
    """Caddy's ``LoggableHTTPRequest`` of the request as it is now."""
    ip, port = request.remote or ("", 0)
    out = Plain({
        "remote_ip": ip or "",
        "remote_port": str(port) if (ip or port) else "",
        "proto": request.proto,
        "method": request.method,
        "host": _wire_text(request.host),
        "uri": _wire_text(request.request_uri),
        # Go keeps Host and Transfer-Encoding out of the header map
        "headers": _header_object(request.headers, credentials, ("Host", "Transfer-Encoding")),
    })
    if request.tls is not None:
        out["tls"] = _tls_object(request.tls)
    return out


class _Record:
    """What is logged about a request from before its handlers ran."""

    __slots__ = ("request", "logger", "unwritten", "resp_headers", "framing")

    def __init__(self, request: Plain, logger: str) -> None:
        self.request = request
        self.logger = logger
        self.unwritten = False  # the handler chain ended without writing a response
        self.resp_headers: Plain | None = None
        self.framing: tuple[str, ...] = _FRAMING_HEADERS  # framing fields a handler set itself

    def head(self, response: Any, status: int) -> int:
        headers = response.headers
        self.framing = tuple(name for name in _FRAMING_HEADERS if name in headers)
        return status


class ServerLogger:
    """A server's access and error logging, from its ``logs`` object (Caddy's ``ServerLogConfig``).

    Called by the server after each response (``access_log``). Without a
    ``logs`` object only handler errors are logged (``http.log.error``).
    """

    def __init__(self, system: LogSystem, config: dict[str, Any] | None, *, error_routes: bool = False) -> None:
        self.system = system
        self.access = config is not None
        config = config or {}
        self.default_name = str(config.get("default_logger_name") or "")
        self.logger_names = {str(k): str(v or "") for k, v in (config.get("logger_names") or {}).items()}
        self.skip_hosts = [str(h) for h in config.get("skip_hosts") or ()]
        self.skip_unmapped_hosts = bool(config.get("skip_unmapped_hosts"))
        self.credentials = bool(config.get("should_log_credentials"))
        self.error_routes = error_routes
        self._names: dict[str, str] = {}

    # -- which requests, which logger ------------------------------------------------------

    def should_log(self, host: str) -> bool:
        if host in self.logger_names:
            return True
        for skipped in self.skip_hosts:
            if match_wildcard(host, skipped):
                return False
        return not self.skip_unmapped_hosts

    def logger_suffix(self, host: str) -> str:
        """``.NAME`` for the request's host (exact, without port, then wildcards), or ``""``."""
        suffix = self._names.get(host)
        if suffix is None:
            name = self._lookup_name(host)
            suffix = "." + name if name else ""
            if len(self._names) > 1024:
                self._names.clear()
            self._names[host] = suffix
        return suffix

    def _lookup_name(self, host: str) -> str:
        from txcaddy.config.placeholders import split_host_port

        names = self.logger_names

        def try_host(key: str) -> str | None:
            if key in names:
                return names[key]
            parts = split_host_port(key)
            if parts is None:
                return None
            return names.get(parts[0])

        if names:
            found = try_host(host)
            if found is not None:
                return found
            labels = host.split(".")
            for i, label in enumerate(labels):
                if not label:
                    continue
                labels[i] = "*"
                found = try_host(".".join(labels))
                if found is not None:
                    return found
        return self.default_name

    # -- the request's life ------------------------------------------------------------------

    def begin(self, request: Any, response: Any) -> None:
        """Record the request as it arrived (Caddy encodes it before the handlers run)."""
        if not self.access:
            return
        host = request.host
        if not self.should_log(host):
            return
        logger = "http.log.access" + self.logger_suffix(host)
        system = self.system
        if not system.enabled(logger, "error"):  # a log that takes info takes error too
            return
        record = _Record(request_object(request, self.credentials), logger)
        setattr(request, _RECORD, record)
        response.on_head(record.head)

    def chain_done(self, request: Any, response: Any) -> None:
        """The handler chain returned: a response nobody wrote is logged with status 0, as Caddy's."""
        record = getattr(request, _RECORD, None)
        if record is not None and not response.head_sent:
            record.unwritten = True
            record.resp_headers = _header_object(response.headers, self.credentials)

    def chain_failed(self, request: Any) -> None:
        """The server's handler chain failed (an error a subroute handled itself is not this)."""
        request.__dict__[_FAILED] = True

    def finished(self, request: Any, response: Any) -> None:
        """The response is complete: write the access (and error) entries."""
        state = request.__dict__
        record = state.pop(_RECORD, None)
        error = request.error if state.pop(_FAILED, False) else None
        if record is None and error is None:
            return
        now = self.system.clock()
        duration = Duration(round((now - request.start) * 1e9))
        if error is not None:
            self._log_error(request, record, error, duration, now)
        if record is None or request.vars.get("skip_log") is True:
            return
        if record.unwritten:
            status, size = 0, 0
            resp_headers = record.resp_headers or Plain()
        else:
            status, size = response.status, response.size
            resp_headers = _header_object(response.headers, self.credentials)
            for name in _FRAMING_HEADERS:
                if name in resp_headers and name not in record.framing:
                    del resp_headers[name]  # added by the protocol, not in Go's header map
        level = "error" if status >= 400 else "info"
        if not self.system.enabled(record.logger, level):
            return
        user = request.placeholders.get("http.auth.user.id", "")
        fields = [
            ("request", record.request),
            ("user_id", user if user.__class__ is str else str(user)),
            ("duration", duration),
            ("size", size),
            ("status", status),
            ("resp_headers", resp_headers),
        ]
        self.system.emit(record.logger, level, "handled request", fields, now)

    def _log_error(self, request: Any, record: _Record | None, error: Any, duration: Duration, now: float) -> None:
        status = getattr(error, "status", 500)
        if self.error_routes:
            level = "debug"  # the error routes answered it
        else:
            level = "error" if status >= 500 else "debug"
        logger = "http.log.error" + (self.logger_suffix(request.host) if self.access else "")
        if not self.system.enabled(logger, level):
            return
        message = getattr(error, "message", None)
        if message is None:
            message = str(error)
        elif not message and getattr(error, "cause", None) is not None:
            message = str(error.cause)
        fields = [
            ("request", record.request if record is not None else _original_request_object(request, self.credentials)),
            ("duration", duration),
            ("status", status),
            ("err_id", str(getattr(error, "id", "") or "")),
            ("err_trace", str(getattr(error, "trace", "") or "")),
        ]
        self.system.emit(logger, level, message, fields, now)


def _original_request_object(request: Any, credentials: bool) -> Plain:
    out = request_object(request, credentials)
    out["method"] = request.orig_method
    return out


