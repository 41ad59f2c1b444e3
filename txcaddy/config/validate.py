"""Structural checks of a Caddy JSON config before anything runs.

``txcaddy validate`` and ``adapt --validate`` use this to reject what the
server could not load: unknown top-level keys and apps, listener addresses
that do not parse, and handler or matcher modules txcaddy does not know.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from txcaddy.caddyfile.addresses import AddressError, NetworkAddress
from txcaddy.caddyfile.errors import ConfigError

TOP_LEVEL_KEYS = frozenset({"admin", "logging", "storage", "apps"})
KNOWN_APPS = frozenset({"http", "tls", "pki"})
KNOWN_HANDLERS = frozenset(
    {
        "acme_server", "authentication", "copy_response", "copy_response_headers", "encode",
        "error", "file_server", "headers", "map", "metrics", "push", "request_body",
        "reverse_proxy", "rewrite", "static_response", "subroute", "templates", "tracing", "vars",
    }
)
KNOWN_MATCHERS = frozenset(
    {
        "expression", "file", "header", "header_regexp", "host", "method", "not", "path",
        "path_regexp", "protocol", "query", "remote_ip", "vars", "vars_regexp",
    }
)


def validate_config(config: Any) -> None:
    """Raise ConfigError naming the first problem found."""
    import json

    from txcaddy.caddyfile.jsonenc import encode

    if isinstance(config, dict):
        config = json.loads(encode(config))  # adapter objects (routes, policies) to plain JSON
    if not isinstance(config, dict):
        raise ConfigError("config: the top level must be a JSON object")
    for key in config:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f'config: unknown field "{key}"')
    apps = config.get("apps") or {}
    for name in apps:
        if name not in KNOWN_APPS:
            raise ConfigError(f"loading app modules: module not registered: {name}")
    servers = (apps.get("http") or {}).get("servers") or {}
    for server_name, server in servers.items():
        where = f"apps.http.servers.{server_name}"
        for address in server.get("listen") or []:
            try:
                NetworkAddress.parse(address)
            except AddressError as e:
                raise ConfigError(f"{where}: invalid listener address '{address}': {e}") from None
        _check_routes(server.get("routes") or [], f"{where}.routes")
        _check_routes((server.get("errors") or {}).get("routes") or [], f"{where}.errors.routes")


def _check_routes(routes: Iterable[Any], where: str) -> None:
    for i, route in enumerate(routes):
        for matcher_set in route.get("match") or []:
            for name in matcher_set:
                if name not in KNOWN_MATCHERS:
                    raise ConfigError(f"{where}[{i}]: unknown matcher module http.matchers.{name}")
        for handler in route.get("handle") or []:
            name = handler.get("handler")
            if name not in KNOWN_HANDLERS:
                raise ConfigError(f"{where}[{i}]: unknown handler module http.handlers.{name}")
            if name == "subroute":
                _check_routes(handler.get("routes") or [], f"{where}[{i}].handle.routes")
