"""Where Caddyfile directives, global options and matchers are registered.

Each directive family lives in ``txcaddy/caddyfile/directives/<family>.py``
and registers itself here at import time; third-party packages can do the
same. The names and the default order are Caddy 2.6.2's.

Plugins (``ICaddyModule`` objects, ``docs/plugins.md``) need not import this
module: ``load_plugins``, which the adapter calls before it parses, registers
each plugin's ``caddyfile`` hook as a handler directive, a matcher or a module
unmarshaller (``register_unmarshaller``, what ``lb_policy <name>``,
``dynamic <name>``, ``storage <name>``, ``output <name>`` and ``format <name>``
consult for names they do not know, as Caddy's ``UnmarshalModule`` asks the
module itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import (
    ConfigValue,
    DirectiveFunc,
    GlobalOptionFunc,
    HandlerFunc,
    Helper,
    MatcherFunc,
)

# Caddy 2.6.2's default order of HTTP handler directives (httpcaddyfile/directives.go),
# plus txcaddy's own handlers where they belong.
DEFAULT_DIRECTIVE_ORDER: tuple[str, ...] = (
    "tracing",
    "map",
    "vars",
    "root",
    "skip_log",
    "header",
    "copy_response_headers",
    "request_body",
    "redir",
    "method",
    "rewrite",
    "uri",
    "try_files",
    "basicauth",
    "forward_auth",
    "request_header",
    "encode",
    "push",
    "templates",
    "handle",
    "handle_path",
    "route",
    "abort",
    "error",
    "copy_response",
    "respond",
    "metrics",
    "reverse_proxy",
    "php_fastcgi",
    # txcaddy's own terminal handlers (Python applications), beside the other
    # handlers that answer the request themselves:
    "wsgi",
    "asgi",
    "twisted_resource",
    "file_server",
    "acme_server",
)

DIRECTIVES: dict[str, DirectiveFunc] = {}
GLOBAL_OPTIONS: dict[str, GlobalOptionFunc] = {}
MATCHERS: dict[str, MatcherFunc] = {}

#: A module's Caddyfile unmarshaller: a Dispenser whose first token is the module's
#: name (call ``d.next()`` to reach it) → the module's JSON object without its name key.
ModuleUnmarshaller = Callable[[Dispenser], Any]

#: Unmarshallers by full module ID (``http.reverse_proxy.selection_policies.my_policy``),
#: for modules the built-in parsers do not know: plugins', and built-in modules that
#: register their syntax here rather than in a parser table.
UNMARSHALLERS: dict[str, ModuleUnmarshaller] = {}


def register_directive(name: str, func: DirectiveFunc) -> None:
    """Register a directive that returns config values itself."""
    if name in DIRECTIVES:
        raise ValueError(f"directive {name} already registered")
    DIRECTIVES[name] = func


def register_handler_directive(name: str, func: HandlerFunc) -> None:
    """Register a directive that yields one handler, behind an optional matcher.

    ``func`` gets a Helper positioned before the directive name (the matcher
    token already removed) and returns the handler's JSON object, with its
    ``"handler"`` key first.
    """

    def directive(h: Helper) -> list[ConfigValue]:
        if not h.next():
            raise h.arg_err()
        matcher_set = h.extract_matcher_set()
        handler = func(h)
        return h.new_route(matcher_set, handler)

    register_directive(name, directive)


def register_global_option(name: str, func: GlobalOptionFunc) -> None:
    """Register a global option: ``func(dispenser, existing_value) -> value``."""
    if name in GLOBAL_OPTIONS:
        raise ValueError(f"global option {name} already registered")
    GLOBAL_OPTIONS[name] = func


def register_matcher(name: str, func: MatcherFunc) -> None:
    """Register the Caddyfile syntax of matcher ``http.matchers.<name>``.

    ``func`` gets a Dispenser over all the matcher's tokens (several lines
    of the same matcher type are concatenated, as in Caddy) and returns the
    matcher's JSON value.
    """
    if name in MATCHERS:
        raise ValueError(f"matcher {name} already registered")
    MATCHERS[name] = func


def directive(name: str) -> Callable[[DirectiveFunc], DirectiveFunc]:
    """Decorator form of :func:`register_directive`."""

    def deco(func: DirectiveFunc) -> DirectiveFunc:
        register_directive(name, func)
        return func

    return deco


def handler_directive(name: str) -> Callable[[HandlerFunc], HandlerFunc]:
    """Decorator form of :func:`register_handler_directive`."""

    def deco(func: HandlerFunc) -> HandlerFunc:
        register_handler_directive(name, func)
        return func

    return deco


def global_option(name: str) -> Callable[[GlobalOptionFunc], GlobalOptionFunc]:
    def deco(func: GlobalOptionFunc) -> GlobalOptionFunc:
        register_global_option(name, func)
        return func

    return deco


def matcher(name: str) -> Callable[[MatcherFunc], MatcherFunc]:
    def deco(func: MatcherFunc) -> MatcherFunc:
        register_matcher(name, func)
        return func

    return deco


def register_unmarshaller(module_id: str, func: ModuleUnmarshaller) -> None:
    """Register the Caddyfile syntax of module ``module_id`` (any namespace but handlers
    and matchers, which have their own registries)."""
    if module_id in UNMARSHALLERS:
        raise ValueError(f"Caddyfile unmarshaller for {module_id} already registered")
    UNMARSHALLERS[module_id] = func


def register_directive_order(name: str, position: str, other: str) -> None:
    """Put directive ``name`` just ``before`` or ``after`` directive ``other`` in the default
    order (Caddy 2.7's ``RegisterDirectiveOrder``), so that it needs no ``order`` option."""
    global DEFAULT_DIRECTIVE_ORDER
    if position not in ("before", "after"):
        raise ValueError(f"directive order position must be 'before' or 'after', not {position!r}")
    order = list(DEFAULT_DIRECTIVE_ORDER)
    if name in order:
        raise ValueError(f"directive {name} is already ordered")
    if other not in order:
        raise ValueError(f"directive {other} is not in the default order")
    index = order.index(other) + (1 if position == "after" else 0)
    order.insert(index, name)
    DEFAULT_DIRECTIVE_ORDER = tuple(order)


def load_plugins() -> None:
    """Register the Caddyfile hooks of the installed plugin modules (the adapter calls this
    before parsing; registering twice is harmless, and built-in syntax always wins).

    A plugin's ``caddyfile`` attribute is its unmarshaller (``ICaddyModule``'s notes);
    ``directive_order``, on a handler, places its directive in the default order.
    """
    from txcaddy.config import registry as modules

    for plugin in modules.discovered_plugins():  # without importing the runtime modules
        hook = getattr(plugin, "caddyfile", None)
        module_id = getattr(plugin, "moduleID", None)
        if hook is None or not isinstance(module_id, str):
            continue
        namespace, _, name = module_id.rpartition(".")
        if namespace == "http.handlers":
            if name not in DIRECTIVES:
                register_handler_directive(name, hook)
                order = getattr(plugin, "directive_order", None)
                if order is not None and name not in DEFAULT_DIRECTIVE_ORDER:
                    register_directive_order(name, *order)
        elif namespace == "http.matchers":
            if name not in MATCHERS:
                register_matcher(name, hook)
        elif module_id not in UNMARSHALLERS:
            register_unmarshaller(module_id, hook)
