"""Where Caddyfile directives, global options and matchers are registered.

Each directive family lives in ``txcaddy/caddyfile/directives/<family>.py``
and registers itself here at import time; third-party packages can do the
same. The names and the default order are Caddy 2.6.2's.
"""

from __future__ import annotations

from collections.abc import Callable

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
