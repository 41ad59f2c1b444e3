"""Go's ``encoding/json``: ``Marshal``, ``MarshalIndent``, ``Encoder.Encode`` and what
``Unmarshal`` into ``any`` makes of numbers, as Go 1.19 (Caddy 2.6.2's) writes them.

``caddy adapt`` prints the config with ``Marshal``/``MarshalIndent`` and the file server's
JSON listing comes from ``Encoder.Encode``, so both must match Go byte for byte: strings escape
``<``, ``>``, ``&`` (unless HTML escaping is off), U+2028/U+2029 and control characters as
``\\u00XX`` (``\\b`` and ``\\f`` too: Go 1.22 changed that), floats use ``'f'`` unless below
1e-6 or from 1e21, and maps (:class:`Map`) sort their keys while structs (plain dicts) keep
their field order.
"""

from __future__ import annotations

from json.encoder import c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring as _c_json_string
from typing import Any

from txcaddy._go.errors import GoError
from txcaddy._go.strconv import format_float_e, format_float_f, format_float_g

__all__ = [
    "AnyMap", "Map", "UnmarshalTypeError", "encode_plain", "encode_string", "format_float", "marshal", "to_any",
]


class Map(dict):  # type: ignore[type-arg]
    """A Go map: encoded with its keys sorted (a plain dict is a struct, in field order)."""


class AnyMap(Map):
    """A ``map[string]any`` decoded from JSON: every object inside it is a map too, so keys
    are sorted at every depth."""


def _escape_char(ch: str) -> str:
    if ch == '"':
        return '\\"'
    if ch == "\\":
        return "\\\\"
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    return f"\\u{ord(ch):04x}"


_NEEDS_ESCAPE = frozenset({chr(c) for c in range(0x20)} | {'"', "\\", "\u2028", "\u2029"})
_NEEDS_ESCAPE_HTML = _NEEDS_ESCAPE | {"<", ">", "&"}
_ESCAPES = {ch: _escape_char(ch) for ch in _NEEDS_ESCAPE_HTML}
_ESCAPES_NO_HTML = {ch: _escape_char(ch) for ch in _NEEDS_ESCAPE}


def encode_string(text: str, escape_html: bool = True) -> str:
    """A JSON string as Go's encoder writes it (``SetEscapeHTML(escape_html)``)."""
    needs, escapes = (_NEEDS_ESCAPE_HTML, _ESCAPES) if escape_html else (_NEEDS_ESCAPE, _ESCAPES_NO_HTML)
    if not any(ch in needs for ch in text):
        return f'"{text}"'
    return '"' + "".join(escapes.get(ch, ch) for ch in text) + '"'


def format_float(value: float) -> str:
    """A float64 as Go's encoder writes it; NaN and infinities are Go's ``UnsupportedValueError``."""
    if value - value != 0:
        raise GoError(f"json: unsupported value: {format_float_g(value)}")
    magnitude = abs(value)
    if magnitude and (magnitude < 1e-6 or magnitude >= 1e21):
        text = format_float_e(value)
        if text[-4] == "e" and text[-3] == "-" and text[-2] == "0":  # Go cleans up e-07 to e-7
            text = text[:-2] + text[-1]
        return text
    return format_float_f(value)


def marshal(value: Any, indent: str | None = None, escape_html: bool = True) -> str:
    """``json.Marshal`` (or ``json.MarshalIndent(v, "", indent)``).

    Objects with a ``to_json()`` method are encoded as what it returns (Go's ``Marshaler``).
    """
    parts: list[str] = []
    _encode(value, parts, indent, 0, False, escape_html)
    return "".join(parts)


def _encode(value: Any, out: list[str], indent: str | None, depth: int, sort_all: bool, escape_html: bool) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, str):
        out.append(encode_string(value, escape_html))
    elif isinstance(value, dict):
        sort_all = sort_all or isinstance(value, AnyMap)
        items = sorted(value.items()) if sort_all or isinstance(value, Map) else list(value.items())
        if not items:
            out.append("{}")
            return
        out.append("{")
        for i, (key, item) in enumerate(items):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + indent * (depth + 1))
            out.append(encode_string(str(key), escape_html))
            out.append(": " if indent is not None else ":")
            _encode(item, out, indent, depth + 1, sort_all, escape_html)
        if indent is not None:
            out.append("\n" + indent * depth)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + indent * (depth + 1))
            _encode(item, out, indent, depth + 1, sort_all, escape_html)
        if indent is not None:
            out.append("\n" + indent * depth)
        out.append("]")
    elif hasattr(value, "to_json"):
        _encode(value.to_json(), out, indent, depth, sort_all, escape_html)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


# The C encoder, built once: the same text as Go's for strings (but \b, \f and the HTML
# characters, fixed after), integers, booleans, null, lists and struct-ordered dicts.
_c_encode = c_make_encoder(None, None, _c_json_string, None, ":", ",", False, False, True)


def encode_plain(value: Any) -> bytes:
    """``json.NewEncoder(w).Encode(value)``: compact, HTML characters escaped, a final newline.

    For values without floats (whose text Python writes differently) or maps, as a file
    listing is: the C encoder writes them and only the escapes it words differently from Go
    are rewritten; a ``\\b`` or ``\\f`` in a string takes :func:`marshal`.
    """
    text = "".join(_c_encode(value, 0))
    if "\\" in text and ("\\b" in text or "\\f" in text):
        text = marshal(value)
    else:
        text = (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
                .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return (text + "\n").encode("utf-8")


class UnmarshalTypeError(GoError):
    """``json.UnmarshalTypeError``: a JSON value (``number 1e400``) the Go type cannot hold."""

    def __init__(self, value: str, type_name: str) -> None:
        super().__init__(f"json: cannot unmarshal {value} into Go value of type {type_name}")
        self.value = value
        self.type_name = type_name


def to_any(value: Any) -> Any:
    """What ``json.Unmarshal`` into ``any`` holds for a JSON value: numbers are float64.

    Raises :class:`UnmarshalTypeError` for a number beyond float64's range, as Go's decoder does.
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise UnmarshalTypeError(f"number {value}", "float64") from None
    if isinstance(value, list):
        return [to_any(v) for v in value]
    if isinstance(value, dict):
        return {k: to_any(v) for k, v in value.items()}
    return value
