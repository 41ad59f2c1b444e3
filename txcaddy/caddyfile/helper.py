"""The pieces every directive parser works with: routes, config values, Helper.

A directive parser receives a ``Helper`` (a Dispenser over the directive's
tokens plus the site's matcher definitions, the global options and a place to
put warnings) and returns ``ConfigValue`` objects: routes for the HTTP
handler chain, or other classes (``bind``, ``tls.*``, ``custom_log``,
``error_route``) that the server-type code collects per site block.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError, ConfigWarning
from txcaddy.caddyfile.jsonenc import GoMap, ModuleObject, module_object
from txcaddy.caddyfile.lexer import Token

MATCHER_PREFIX = "@"

JSONObject = dict[str, Any]


@dataclass
class Route:
    """caddyhttp.Route: matcher sets (OR of ANDs), handlers, group, terminal."""

    handle: list[JSONObject] = field(default_factory=list)
    match: list[GoMap] = field(default_factory=list)
    group: str = ""
    terminal: bool = False

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        if self.group:
            out["group"] = self.group
        if self.match:
            out["match"] = self.match
        if self.handle:
            out["handle"] = self.handle
        if self.terminal:
            out["terminal"] = True
        return out


@dataclass
class Subroute:
    """caddyhttp.Subroute (the ``subroute`` handler) before it is encoded."""

    routes: list[Route] = field(default_factory=list)
    errors: JSONObject | None = None

    def to_handler(self) -> JSONObject:
        out: JSONObject = ModuleObject(handler="subroute")
        if self.routes:
            out["routes"] = [r.to_json() for r in self.routes]
        if self.errors is not None:
            out["errors"] = self.errors
        return out


@dataclass
class ConfigValue:
    """One result of a directive: ``klass`` says what it is for."""

    klass: str
    value: Any
    directive: str = ""


class GroupCounter:
    """Hands out ``group0``, ``group1``, ... across a whole adaptation."""

    def __init__(self) -> None:
        self.n = 0

    def next_group(self) -> str:
        name = f"group{self.n}"
        self.n += 1
        return name


DirectiveFunc = Callable[["Helper"], list[ConfigValue]]
HandlerFunc = Callable[["Helper"], JSONObject]
GlobalOptionFunc = Callable[[Dispenser, Any], Any]
MatcherFunc = Callable[[Dispenser], Any]


class Helper:
    """What a directive parser gets: tokens (as a Dispenser) and context.

    Dispenser methods (``next``, ``next_arg``, ``err``, ...) are available on
    the helper itself, as with Caddy's embedded Dispenser.
    """

    def __init__(
        self,
        dispenser: Dispenser,
        *,
        options: Mapping[str, Any],
        warnings: list[ConfigWarning],
        matcher_defs: dict[str, GoMap],
        parent_block: Any,
        group_counter: GroupCounter,
        state: dict[str, Any],
    ) -> None:
        self.dispenser = dispenser
        self.options = options
        self.warnings = warnings
        self.matcher_defs = matcher_defs
        self.parent_block = parent_block
        self.group_counter = group_counter
        self.state = state

    def __getattr__(self, name: str) -> Any:
        return getattr(self.dispenser, name)

    def with_dispenser(self, dispenser: Dispenser) -> Helper:
        return Helper(
            dispenser,
            options=self.options,
            warnings=self.warnings,
            matcher_defs=self.matcher_defs,
            parent_block=self.parent_block,
            group_counter=self.group_counter,
            state=self.state,
        )

    def option(self, name: str) -> Any:
        return self.options.get(name)

    def warn(self, message: str, directive: str = "") -> None:
        """Record a warning at the current token."""
        self.warnings.append(
            ConfigWarning(file=self.file(), line=self.line(), directive=directive, message=message)
        )

    def caddyfiles(self) -> list[str]:
        """The Caddyfile(s) the site block came from (to hide them from file_server)."""
        seen: dict[str, None] = {}
        for segment in self.parent_block.segments:
            for tok in segment:
                seen.setdefault(tok.file, None)
        return list(seen)

    def matcher_token(self) -> tuple[GoMap | None, bool]:
        """Read the next argument as a matcher if it is one (``*``, ``/path``, ``@name``)."""
        if not self.next_arg():
            return None, False
        try:
            return matcher_set_from_token(self.token(), self.matcher_defs)
        except ConfigError as e:
            # Caddy's message has no location; ours names the token's file and line.
            raise self.err(str(e)) from None

    def extract_matcher_set(self) -> GoMap | None:
        """Take the matcher argument out of the tokens and rewind."""
        matcher_set, has_matcher = self.matcher_token()
        if has_matcher:
            self.dispenser.delete()
        self.dispenser.reset()
        return matcher_set

    def new_route(self, matcher_set: GoMap | None, handler: JSONObject) -> list[ConfigValue]:
        if not isinstance(handler, ModuleObject):
            # Caddy encodes every handler with JSONModuleObject
            handler = module_object(handler, "handler", handler["handler"])
        route = Route(handle=[handler], match=[matcher_set] if matcher_set is not None else [])
        return [ConfigValue("route", route)]

    def group_routes(self, values: list[ConfigValue]) -> None:
        """Make the routes mutually exclusive if there is more than one."""
        routes = [v.value for v in values if isinstance(v.value, Route)]
        if len(routes) < 2:
            return
        name = self.group_counter.next_group()
        for route in routes:
            route.group = name

    def new_bind_addresses(self, addresses: list[str]) -> list[ConfigValue]:
        return [ConfigValue("bind", addresses)]


def matcher_set_from_token(tok: Token, matcher_defs: Mapping[str, GoMap]) -> tuple[GoMap | None, bool]:
    if tok.text == "*":
        return None, True
    if tok.text.startswith("/"):
        return GoMap(path=[tok.text]), True
    if tok.text.startswith(MATCHER_PREFIX):
        if tok.text not in matcher_defs:
            raise ConfigError(f"unrecognized matcher name: {tok.text}")
        return matcher_defs[tok.text], True
    return None, False


def hide_path(path: str) -> str:
    """A Caddyfile path as file_server's implicit ``hide`` entry (always with a separator)."""
    path = os.path.normpath(path)
    return path if os.sep in path else "." + os.sep + path


@dataclass
class App:
    """A global option's value that is a whole Caddy app (``apps.<name>``)."""

    name: str
    value: Any
