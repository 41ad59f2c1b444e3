"""Go's ``fmt``: ``Sprint``/``%v`` of the values placeholders hold, and ``%#v`` of a string list.

Caddy compares and writes some values as ``fmt.Sprintf("%v", v)`` (the ``vars`` matcher,
query values in ``rewrite``, listener addresses in adapter errors), so slices print as
``[a b]``, maps as ``map[k:v]``, nil as ``<nil>`` and floats in ``%g``'s shortest form.
"""

from __future__ import annotations

from typing import Any

from txcaddy._go.strconv import format_float_g, quote

__all__ = ["sprint", "sprint_go_syntax"]


def sprint(value: Any) -> str:
    """``fmt.Sprintf("%v", value)``; other objects print as their ``str()`` (Go's ``String()``)."""
    if value is None:
        return "<nil>"
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[no-any-return]
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        return str(value)
    if cls is float:
        return format_float_g(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(sprint(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "map[" + " ".join(f"{sprint(k)}:{sprint(v)}" for k, v in pairs) + "]"
    return str(value)


def sprint_go_syntax(value: object) -> str:
    """``fmt.Sprintf("%#v", value)`` for a string list (``[]string{"a", "b"}``); other values,
    which have no Go type here, print as their ``repr()``."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(quote(v) for v in value) + "}"
    return repr(value)
