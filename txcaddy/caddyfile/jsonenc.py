"""JSON text exactly as Caddy (Go's encoding/json) prints it.

Go marshals struct fields in declaration order and *maps* with sorted keys;
adapters build plain dicts in struct order and wrap Go maps in ``GoMap`` so
that they are sorted here. Strings are escaped as Go does (``<``, ``>``,
``&``, U+2028/2029 and control characters as ``\\u00XX``).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from txcaddy._go.strconv import NumError, atoi


class GoMap(dict):  # type: ignore[type-arg]
    """A JSON object whose keys Go would sort (a Go map, not a struct)."""


class ModuleObject(GoMap):
    """A module's JSON as Caddy's ``JSONModuleObject`` builds it (see :func:`module_object`).

    The encoder sorts the keys of every object inside it, at every depth, as
    Go does for the ``map[string]any`` that Caddy re-encodes.
    """


def _escape_char(ch: str) -> str:
    code = ord(ch)
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
    return f"\\u{code:04x}"


_NEEDS_ESCAPE = {chr(c) for c in range(0x20)} | {'"', "\\", "<", ">", "&", "\u2028", "\u2029"}
_ESCAPES = {ch: _escape_char(ch) for ch in _NEEDS_ESCAPE}


def encode_string(text: str) -> str:
    if not any(ch in _NEEDS_ESCAPE for ch in text):
        return f'"{text}"'
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in text) + '"'


def _encode_float(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {value}")
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = exp[0] if exp[0] in "+-" else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        if len(digits) < 2:
            digits = "0" + digits
        text = f"{mantissa}e{sign}{digits}"
    return text


def encode(value: Any, indent: str | None = None) -> str:
    """Serialize like ``json.Marshal`` (or ``json.MarshalIndent(v, "", indent)``)."""
    parts: list[str] = []
    _encode(value, parts, indent, 0, False)
    return "".join(parts)


def _encode(value: Any, out: list[str], indent: str | None, depth: int, sort_all: bool) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(_encode_float(value))
    elif isinstance(value, str):
        out.append(encode_string(value))
    elif isinstance(value, dict):
        sort_all = sort_all or isinstance(value, ModuleObject)
        if sort_all or isinstance(value, GoMap):
            items = sorted(value.items())
        else:
            items = list(value.items())
        if not items:
            out.append("{}")
            return
        out.append("{")
        for i, (key, item) in enumerate(items):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + indent * (depth + 1))
            out.append(encode_string(str(key)))
            out.append(": " if indent is not None else ":")
            _encode(item, out, indent, depth + 1, sort_all)
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
            _encode(item, out, indent, depth + 1, sort_all)
        if indent is not None:
            out.append("\n" + indent * depth)
        out.append("]")
    elif hasattr(value, "to_json"):
        _encode(value.to_json(), out, indent, depth, sort_all)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_FLOAT64_EXACT = 2**53


def _through_any(value: Any) -> Any:
    """``value`` as Go holds it after decoding its JSON into ``any``.

    Objects become maps (sorted keys) and numbers float64s, so integers
    beyond 2**53 come back rounded, as Go then prints them.
    """
    if hasattr(value, "to_json") and not isinstance(value, dict):
        value = value.to_json()
    if isinstance(value, dict):
        return GoMap((key, _through_any(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [_through_any(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _FLOAT64_EXACT:
        return int(Decimal(repr(float(value))))
    return value


def module_object(value: Any, inline_key: str, name: str) -> ModuleObject:
    """Caddy's ``caddyconfig.JSONModuleObject``: the module's JSON plus ``inline_key: name``.

    Caddy marshals the module, decodes that into ``map[string]any``, adds the
    module name and marshals again; handlers, issuers, log writers, upstream
    sources and the like are all emitted this way.
    """
    decoded = _through_any(value)
    out = ModuleObject(decoded) if isinstance(decoded, dict) else ModuleObject()
    out[inline_key] = name
    return out


def weak_string(text: str) -> int | bool | str:
    """How ``caddyhttp.WeakString`` marshals: booleans and integers unquoted."""
    if text == "true":
        return True
    if text == "false":
        return False
    try:
        return atoi(text)
    except NumError:
        return text
