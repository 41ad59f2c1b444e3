"""``vars``: set request variables (``root``, ``skip_log``, user names) for later handlers.

As Caddy's ``VarsMiddleware``: names and string values go through
``ReplaceAll`` (unknown placeholders become empty) when the request passes;
other JSON values (booleans, numbers, objects) are stored as they are, numbers
as floats like Go's JSON decoding gives them.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from txcaddy._go.json import UnmarshalTypeError, to_any
from txcaddy.config.placeholders import Template
from txcaddy.config.registry import module
from txcaddy.errors import ConfigError
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler

__all__ = ["Vars"]


@implementer(IHandler)
class Vars:
    """``http.handlers.vars``."""

    def __init__(self, values: dict[str, Any]) -> None:
        # (name template or plain name, value template or plain value, value is a template)
        self.entries: list[tuple[Any, Any, bool]] = []
        for name, value in values.items():
            name_template = Template(name)
            key: Any = name if name_template.is_static else name_template
            if isinstance(value, str):
                value_template = Template(value)
                if value_template.is_static:
                    self.entries.append((key, value_template.render(None), False))
                else:
                    self.entries.append((key, value_template, True))
            else:
                self.entries.append((key, value, False))

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        variables = request.vars
        for key, value, is_template in self.entries:
            if key.__class__ is not str:
                key = key.render(request, response, empty_unknown=True)
            variables[key] = value.render(request, response, empty_unknown=True) if is_template else value
        return next(request, response)


@module("http.handlers.vars")
def load_vars(config: dict[str, Any], context: Any) -> Vars:
    if not isinstance(config, dict):
        raise ConfigError("vars: expected an object of variable names and values")
    values = {}
    for name, value in config.items():
        try:
            values[name] = to_any(value)
        except UnmarshalTypeError as e:
            raise ConfigError(f"vars: {e.value} is out of range") from None
    return Vars(values)
