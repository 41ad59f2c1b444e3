"""The ``json``, ``console`` and ``filter`` log encoders (``caddy.logging.encoders.*``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _c_json_string
from typing import Any

from zope.interface import implementer

from txcaddy._go.strconv import format_float_f, format_float_g
from txcaddy._go.time import compile_layout, duration_string, format_layout
from txcaddy.config.registry import module
from txcaddy.config.schema import BOOL, STRING, MapOf, Module, Obj, Spec
from txcaddy.errors import ConfigError
from txcaddy.interfaces import ILogEncoder
from txcaddy.logs._values import Duration, Entry, Plain, StringArray

# -- zap's formats ----------------------------------------------------------------------------

_SLOW_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_SLOW_ESCAPES.update({0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})


def json_string(text: str) -> str:
    """A JSON string as zap writes it (``\\b`` and ``\\f`` as ``\\u00XX``, ``<>&`` as they are)."""
    out: str = _c_json_string(text)
    if "\\" in out and ("\\b" in out or "\\f" in out):
        return '"' + text.translate(_SLOW_ESCAPES) + '"'
    return out


def _json_float(value: float) -> str:
    """zap's ``AppendFloat64`` (Go's ``'f', -1``): shortest digits, never an exponent;
    NaN and infinities quoted."""
    text = format_float_f(value)
    return text if text[-1] <= "9" else f'"{text}"'  # "NaN", "+Inf", "-Inf"


_NAMED_LAYOUTS = {
    "rfc3339": "2006-01-02T15:04:05Z07:00",
    "rfc3339_nano": "2006-01-02T15:04:05.999999999Z07:00",
    "wall": "2006/01/02 15:04:05",
    "wall_milli": "2006/01/02 15:04:05.000",
    "wall_nano": "2006/01/02 15:04:05.000000000",
    "common_log": "02/Jan/2006:15:04:05 -0700",
}
_ISO8601 = "2006-01-02T15:04:05.000Z0700"



_LEVEL_COLORS = {"debug": 35, "info": 34, "warn": 33}  # the rest are red (31)


def _time_encoder(time_format: str, local: bool) -> Callable[[float], Any]:
    """Caddy's ``time_format`` → a function giving the value zap writes for the entry time."""
    if time_format in ("", "unix_seconds_float"):
        return lambda ts: ts
    if time_format == "unix_milli_float":
        return lambda ts: ts * 1e3
    if time_format == "unix_nano":
        return lambda ts: int(round(ts * 1e9))
    if time_format == "iso8601":
        parts = compile_layout(_ISO8601)
        return lambda ts: format_layout(parts, ts, True)  # zap formats it in local time
    parts = compile_layout(_NAMED_LAYOUTS.get(time_format, time_format))
    return lambda ts: format_layout(parts, ts, local)


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
                return json_string(duration_string(int(value)))
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


@implementer(ILogEncoder)
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


@implementer(ILogEncoder)
class ConsoleLogEncoder(_ZapEncoder):
    """``caddy.logging.encoders.console``: tab-separated time, level, logger, message, then JSON."""

    spaced = True

    def encode(self, entry: Entry) -> bytes:
        elements = []
        if self.time_key:
            stamp = self.encode_time(entry.time)
            # zap prints the time with fmt.Fprint: %v of a float64 is strconv's 'g', -1
            elements.append(format_float_g(stamp) if stamp.__class__ is float else str(stamp))
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


@implementer(ILogEncoder)
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


_ENCODER: Spec = Obj(
    {key: STRING for key in ("message_key", "level_key", "time_key", "name_key", "caller_key",
                             "stacktrace_key", "line_ending", "time_format", "duration_format", "level_format")}
    | {"time_local": BOOL},
    strict=True, name="logging.LogEncoderConfig",
)
_FILTER: Spec = Obj(
    {"wrap": Module("caddy.logging.encoders", "format"),
     "fields": MapOf(Module("caddy.logging.encoders.filter", "filter"))},
    strict=True, name="logging.FilterEncoder",
)


@module("caddy.logging.encoders.json", schema=_ENCODER)
def _json_encoder(config: dict[str, Any], context: Any) -> JSONLogEncoder:
    return JSONLogEncoder(config)


@module("caddy.logging.encoders.console", schema=_ENCODER)
def _console_encoder(config: dict[str, Any], context: Any) -> ConsoleLogEncoder:
    return ConsoleLogEncoder(config, time_format="wall_milli", level_format="color")


@module("caddy.logging.encoders.filter", schema=_FILTER)
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
