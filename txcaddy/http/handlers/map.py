"""``map``: placeholders whose values are looked up from another placeholder's value.

Follows Caddy 2.6.2's ``modules/caddyhttp/map/map.go``. Nothing is computed when the
request passes the handler: it adds a lazy value source for its destinations, and each
read of a destination evaluates ``source`` at that moment and walks the mappings, so a
value read after a rewrite sees the rewritten request, and a map nobody reads costs
nothing. Quirks kept because configs rely on them:

* an exact ``input`` gives its output with placeholders expanded (``ReplaceAll``);
* an ``input_regexp`` gives its output expanded with Go's ``Regexp.Expand`` only
  (``$1``, ``${1}``, ``${name}``; ``{1}`` stays as written, placeholders are not expanded);
* a ``null`` output is "not mapped here": the walk goes on to the next mapping;
* with no match, the default (placeholders expanded); with no defaults, the destination
  is known but nil (``""`` in text, ``<nil>`` to the ``vars`` matcher).
"""

from __future__ import annotations

import re
from typing import Any

from zope.interface import implementer

from txcaddy._go.json import UnmarshalTypeError, to_any
from txcaddy._go.regexp import RegexpError, compile_regexp, expander
from txcaddy.config.placeholders import UNKNOWN, Template, add_mapped, to_string
from txcaddy.config.registry import module
from txcaddy.config.schema import ANY, STRING, STRINGS, ListOf, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler

__all__ = ["Map", "Mapping"]


class Mapping:
    """One input (exact or regexp) and its outputs, one per destination (None: not mapped)."""

    __slots__ = ("input", "regexp", "outputs")

    def __init__(self, input: str, regexp: re.Pattern[str] | None, outputs: list[Any]) -> None:
        self.input = input
        self.regexp = regexp
        # prepared once: a template (exact input) or a Go expander (regexp), None for null
        self.outputs: list[Any] = []
        for output in outputs:
            if output is None:
                self.outputs.append(None)
            elif regexp is not None:
                self.outputs.append(expander(regexp, to_string(output)))
            else:
                self.outputs.append(Template(to_string(output)))


@implementer(IHandler)
class Map:
    """``http.handlers.map``."""

    def __init__(self, source: str, destinations: list[str], mappings: list[Mapping], defaults: list[str]) -> None:
        self.source = Template(source)
        self.destinations = {name: index for index, name in reversed(list(enumerate(destinations)))}
        self.mappings = mappings
        self.defaults = [Template(d) for d in defaults]

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        add_mapped(request, self.value)
        return next(request, response)

    def value(self, key: str, request: Any, response: Any) -> Any:
        """The value of destination ``key`` now; UNKNOWN for names this map does not set."""
        index = self.destinations.get(key)
        if index is None:
            return UNKNOWN
        text = self.source.render(request, response, empty_unknown=True)
        for mapping in self.mappings:
            output = mapping.outputs[index]
            if output is None:
                continue
            if mapping.regexp is not None:
                found = mapping.regexp.search(text)
                if found is None:
                    continue
                return output(found)
            if text == mapping.input:
                return output.render(request, response, empty_unknown=True)
        if index < len(self.defaults):
            return self.defaults[index].render(request, response, empty_unknown=True)
        return None


_MAPPING = Obj({"input": STRING, "input_regexp": STRING, "outputs": ListOf(ANY)}, strict=True, name="caddyhttp.map.Mapping")


@module("http.handlers.map", schema=Obj(
    {"source": STRING, "destinations": STRINGS, "mappings": ListOf(_MAPPING), "defaults": STRINGS},
    strict=True, name="map.Handler",
))
def load_map(config: dict[str, Any], context: Any) -> Map:
    destinations: list[str] = []
    for dest in config.get("destinations") or []:
        if dest.count("{") != 1 or not dest.startswith("{"):
            raise ConfigError("destination must be a placeholder and only a placeholder")
        destinations.append(dest.strip("{}"))  # Go's strings.Trim: every brace at either end
    raw_mappings = config.get("mappings") or []
    compiled: list[re.Pattern[str] | None] = []
    for i, raw in enumerate(raw_mappings):
        pattern = raw.get("input_regexp") or ""
        if not pattern:
            compiled.append(None)
            continue
        try:
            compiled.append(compile_regexp(pattern))
        except RegexpError as e:
            raise ConfigError(f"compiling regexp for mapping {i}: {e}") from None
    # Validate, after Provision as in Caddy
    defaults = config.get("defaults") or []
    if defaults and len(defaults) != len(destinations):
        raise ConfigError(f"{len(destinations)} destinations != {len(defaults)} defaults")
    seen: dict[str, int] = {}
    mappings: list[Mapping] = []
    for i, raw in enumerate(raw_mappings):
        exact = raw.get("input") or ""
        pattern = raw.get("input_regexp") or ""
        if exact and pattern:
            raise ConfigError(f"mapping {i} has both input and input_regexp fields specified, which is confusing")
        key = pattern or exact
        if key in seen:
            raise ConfigError(f"mapping {i} has a duplicate input '{key}' previously used with mapping {seen[key]}")
        seen[key] = i
        outputs = raw.get("outputs") or []
        if len(outputs) != len(destinations):
            raise ConfigError(
                f"mapping {i} has {len(outputs)} outputs but there are {len(destinations)} destinations defined"
            )
        try:
            values = [to_any(output) for output in outputs]
        except UnmarshalTypeError as e:
            raise ConfigError(f"map: {e.value} is out of range") from None
        mappings.append(Mapping(exact, compiled[i], values))
    return Map(config.get("source") or "", destinations, mappings, defaults)
