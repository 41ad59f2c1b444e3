"""Directives to routes: matcher definitions, running directive parsers on a
block, sorting by directive order and path specificity, grouping and
consolidating routes (Caddy's parseSegmentAsConfig, sortRoutes,
buildSubroute and consolidateRoutes).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from txcaddy._go.sort import slice_stable
from txcaddy.caddyfile import registry
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.helper import (
    MATCHER_PREFIX,
    ConfigValue,
    GroupCounter,
    Helper,
    Route,
    Subroute,
)
from txcaddy.caddyfile.jsonenc import GoMap
from txcaddy.caddyfile.lexer import Token

# -- matchers ------------------------------------------------------------------------


def parse_matcher_definitions(d: Dispenser, matcher_defs: dict[str, GoMap]) -> None:
    """Compile ``@name ...`` definitions (single line or block) into matcher sets."""
    while d.next():
        name = d.val()
        if name in matcher_defs:
            raise d.err(f"matcher is defined more than once: {name}")
        matcher_set = GoMap()
        matcher_defs[name] = matcher_set
        if d.next_arg():
            if d.token().quoted:
                _make_matcher(matcher_set, "expression", [d.token()])
                continue
            d.prev()
        by_type: dict[str, list[Token]] = {}
        nesting = d.nesting
        while d.next_arg() or d.next_block(nesting):
            matcher_name = d.val()
            by_type.setdefault(matcher_name, []).extend(d.next_segment())
        for matcher_name, tokens in by_type.items():
            _make_matcher(matcher_set, matcher_name, tokens)


def _make_matcher(matcher_set: GoMap, name: str, tokens: list[Token]) -> None:
    func = registry.MATCHERS.get(name)
    if func is None:
        raise ConfigError(
            f"getting matcher module '{name}': module not registered: http.matchers.{name}"
        )
    matcher_set[name] = func(Dispenser(tokens))


# -- directives ------------------------------------------------------------------------


def _directive_order(options: Mapping[str, Any]) -> list[str]:
    order = options.get("order")
    return list(order) if order else list(registry.DEFAULT_DIRECTIVE_ORDER)


def parse_segment_as_config(h: Helper) -> list[ConfigValue]:
    """Run the directives inside a block (``handle { ... }``) and collect their values."""
    results: list[ConfigValue] = []
    while h.next():
        if h.next_arg():
            raise h.arg_err()
        segments: list[list[Token]] = []
        nesting = h.nesting
        while h.next_block(nesting):
            segments.append(h.next_segment())
        matcher_defs = dict(h.matcher_defs)
        directives = []
        for segment in segments:
            if segment[0].text.startswith(MATCHER_PREFIX):
                parse_matcher_definitions(Dispenser(segment), matcher_defs)
            else:
                directives.append(segment)
        for segment in directives:
            name = segment[0].text
            func = registry.DIRECTIVES.get(name)
            if func is None:
                raise h.err(
                    f"unrecognized directive: {name} - are you sure your Caddyfile structure "
                    "(nesting and braces) is correct?"
                    + did_you_mean(name)
                )
            sub = h.with_dispenser(Dispenser(segment))
            sub.matcher_defs = matcher_defs
            try:
                values = func(sub)
            except ConfigError as e:
                raise h.err(f"parsing caddyfile tokens for '{name}': {e}") from None
            name = normalize_directive_name(name)
            for value in values:
                value.directive = name
                results.append(value)
    return results


def parse_segment_as_subroute(h: Helper) -> Subroute:
    """A block of directives as one sorted, grouped subroute (``handle``, ``handle_errors``)."""
    return build_subroute(parse_segment_as_config(h), h.group_counter, h.options)


def normalize_directive_name(name: str) -> str:
    """``handle_path`` values sort and group as ``handle`` (normalizeDirectiveName)."""
    return "handle" if name == "handle_path" else name


def did_you_mean(name: str) -> str:
    """A hint naming the closest registered directive, for unrecognized ones."""
    close = difflib.get_close_matches(name, list(registry.DIRECTIVES), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _single_path_len(route: Route) -> int:
    if len(route.match) == 1:
        paths = route.match[0].get("path")
        if isinstance(paths, list) and len(paths) == 1:
            return len(paths[0].encode())
    return 0


def sort_routes(values: list[ConfigValue], order: list[str]) -> None:
    """Sort by directive order, then Caddy's path-specificity rules (see spec §9.2)."""
    positions = {name: i for i, name in enumerate(order)}

    def less(a: ConfigValue, b: ConfigValue) -> bool:
        if a.directive != b.directive:
            return positions.get(a.directive, 0) < positions.get(b.directive, 0)
        if not isinstance(a.value, Route) or not isinstance(b.value, Route):
            return False
        a_len, b_len = _single_path_len(a.value), _single_path_len(b.value)
        if a.directive == "vars":
            if a_len > 0 and b_len > 0:
                return a_len < b_len
            return not a.value.match and bool(b.value.match)
        if a_len > 0 and b_len > 0:
            return a_len > b_len
        return bool(a.value.match) and not b.value.match

    slice_stable(values, less)


def build_subroute(
    values: list[ConfigValue], counter: GroupCounter, options: Mapping[str, Any]
) -> Subroute:
    order = _directive_order(options)
    for value in values:
        if value.directive not in order:
            raise ConfigError(
                f"directive '{value.directive}' is not an ordered HTTP handler, so it cannot be used here"
            )
    sort_routes(values, order)
    group_names: dict[str, str] = {}
    for directive in ("handle", "rewrite", "root"):  # sorted, as Caddy iterates them
        count = sum(1 for v in values if v.directive == directive)
        if count > 1 or directive == "rewrite":
            group_names[directive] = counter.next_group()
    subroute = Subroute()
    for value in values:
        if value.directive in group_names and isinstance(value.value, Route):
            value.value.group = group_names[value.directive]
        if isinstance(value.value, Subroute):
            subroute.routes.extend(value.value.routes)
        elif isinstance(value.value, Route):
            subroute.routes.append(value.value)
    subroute.routes = consolidate_routes(subroute.routes)
    return subroute


def consolidate_routes(routes: list[Route]) -> list[Route]:
    """Merge adjacent routes with the same matchers, terminal flag and group."""
    out: list[Route] = []
    for route in routes:
        if out:
            last = out[-1]
            if (
                last.match == route.match
                and last.terminal == route.terminal
                and last.group == route.group
            ):
                out[-1] = Route(
                    handle=last.handle + route.handle,
                    match=last.match,
                    group=last.group,
                    terminal=last.terminal,
                )
                continue
        out.append(route)
    return out
