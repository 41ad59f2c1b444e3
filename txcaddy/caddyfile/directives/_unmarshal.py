"""Caddy's ``caddyfile.UnmarshalModule`` and bare Go errors, for the module parsers.

Caddy hands sub-blocks to registered modules and reports unknown ones in its
own words; some of its parsers return Go errors without file and line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from txcaddy.caddyfile import registry
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.helper import Helper

ModuleParser = Callable[..., Any]


def unmarshal_module(
    d: Dispenser | Helper, namespace: str, name: str, parsers: Mapping[str, ModuleParser], *extra: Any
) -> Any:
    """Caddy's ``UnmarshalModule``: the module gets the rest of the line and its block.

    ``parsers`` maps the module names Caddy 2.6.2 (as packaged) knows in this
    namespace to their Caddyfile parsers, which get the new Dispenser and
    ``extra``; any other name is reported as Caddy reports an unregistered module.
    ``d`` may be a directive's Helper, which reads its tokens through its Dispenser.
    A name not in ``parsers`` may have an unmarshaller in ``registry.UNMARSHALLERS`` (a
    plugin's, or a built-in module's registered there); it gets the Dispenser alone.
    """
    module_id = f"{namespace}.{name}"
    parser = parsers.get(name)
    if parser is None:
        registered = registry.UNMARSHALLERS.get(module_id)
        if registered is None:
            raise d.err(f"getting module named '{module_id}': module not registered: {module_id}")
        return registered(d.new_from_next_segment())
    return parser(d.new_from_next_segment(), *extra)


def plain_error(message: str) -> ConfigError:
    """An error Caddy returns without the file and line (a bare Go error)."""
    return ConfigError(message)
