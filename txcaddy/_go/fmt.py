"""Go's ``fmt``: ``Sprint``/``%v`` of the values placeholders hold.

Caddy compares and writes some values as ``fmt.Sprintf("%v", v)`` (the ``vars`` matcher,
query values in ``rewrite``), so slices print as ``[a b]``, maps as ``map[k:v]``, nil as
``<nil>`` and floats in ``%g``'s shortest form.
"""

from __future__ import annotations

from typing import Any

from txcaddy._go.strconv import format_float_g

__all__ = ["sprint"]


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
