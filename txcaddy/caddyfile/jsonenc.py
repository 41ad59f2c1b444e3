"""JSON text exactly as Caddy prints it, through Go's encoding/json (``txcaddy._go.json``).

Go marshals struct fields in declaration order and *maps* with sorted keys;
adapters build plain dicts in struct order and wrap Go maps in ``GoMap`` so
that they are sorted; ``ModuleObject`` and ``weak_string`` are Caddy's. ``decimal`` is imported
only for an integer beyond float64's exact range.
"""

from __future__ import annotations

from typing import Any

from txcaddy._go.json import AnyMap, Map, marshal
from txcaddy._go.strconv import NumError, atoi

#: A JSON object whose keys Go would sort (a Go map, not a struct).
GoMap = Map


class ModuleObject(AnyMap):
    """A module's JSON as Caddy's ``JSONModuleObject`` builds it (see :func:`module_object`).

    The encoder sorts the keys of every object inside it, at every depth, as
    Go does for the ``map[string]any`` that Caddy re-encodes.
    """


def encode(value: Any, indent: str | None = None) -> str:
    """Serialize like ``json.Marshal`` (or ``json.MarshalIndent(v, "", indent)``)."""
    return marshal(value, indent)


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
        from decimal import Decimal  # imported on first use (module docstring)

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
