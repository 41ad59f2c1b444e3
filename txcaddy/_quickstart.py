"""The configs of the one-line servers: ``txcaddy reverse-proxy`` and ``txcaddy file-server``.

Each builds the Caddy JSON config that Caddy 2.6.2's command builds
(``modules/caddyhttp/reverseproxy/command.go: cmdReverseProxy``,
``modules/caddyhttp/fileserver/command.go: cmdFileServer``), keys in the order Go's
encoder writes them, so ``txcaddy`` serves what ``caddy`` would: admin off, nothing
persisted, ``"DEBUG"`` default log with ``--debug``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from txcaddy._go.errors import GoError
from txcaddy.caddyfile.addresses import DEFAULT_HTTP_PORT, DEFAULT_HTTPS_PORT, Address, AddressError
from txcaddy.caddyfile.directives.reverseproxy._upstreams import parse_upstream_dial_address
from txcaddy.errors import ConfigError

__all__ = ["ReverseProxyPlan", "file_server_config", "reverse_proxy_config"]

_ADMIN_OFF = {"disabled": True, "config": {"persist": False}}
_DEBUG_LOGGING = {"logs": {"default": {"level": "DEBUG"}}}
_SECOND = 1_000_000_000  # Caddy's JSON durations are nanoseconds


def _config(http: dict[str, Any], debug: bool, tls: dict[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"admin": dict(_ADMIN_OFF)}
    if debug:
        config["logging"] = _DEBUG_LOGGING
    config["apps"] = {"http": http}
    if tls is not None:
        config["apps"]["tls"] = tls
    return config


@dataclass
class ReverseProxyPlan:
    """What ``reverse-proxy`` serves and what it prints once started."""

    config: dict[str, Any]
    source: str  # the downstream address as Caddy prints it, e.g. "https://example.com"
    upstreams: list[str] = field(default_factory=list)  # the dial addresses


def reverse_proxy_config(
    from_: str,
    to: Sequence[str],
    change_host_header: bool = False,
    insecure: bool = False,
    internal_certs: bool = False,
    debug: bool = False,
) -> ReverseProxyPlan:
    """The config of ``caddy reverse-proxy --from FROM --to TO...``; ``ConfigError`` with Caddy's message."""
    if not to:
        raise ConfigError("--to is required")
    try:
        address = Address.parse(from_)
    except AddressError as e:
        raise ConfigError(f"invalid downstream address {from_}: {e}") from None
    if address.path:
        raise ConfigError(f"paths are not allowed: {from_}")
    scheme, port = address.scheme, address.port
    if not scheme:
        scheme = "http" if port == str(DEFAULT_HTTP_PORT) or not address.host else "https"
    if not port:
        port = {"http": str(DEFAULT_HTTP_PORT), "https": str(DEFAULT_HTTPS_PORT)}.get(scheme, "")
    address = Address(address.original, scheme, address.host, port, address.path)

    dials: list[str] = []
    to_scheme = ""
    for upstream in to:
        try:
            dial, upstream_scheme = parse_upstream_dial_address(upstream)
        except GoError as e:
            raise ConfigError(f"invalid upstream address {upstream}: {e}") from None
        if upstream_scheme and not to_scheme:
            to_scheme = upstream_scheme
        dials.append(dial)

    transport: dict[str, Any] = {"protocol": "http"}
    if to_scheme == "https":
        transport["tls"] = {"insecure_skip_verify": True} if insecure else {}
    handler: dict[str, Any] = {
        "handler": "reverse_proxy",
        "transport": transport,
        "upstreams": [{"dial": dial} for dial in dials],
    }
    if change_host_header:
        handler["headers"] = {"request": {"set": {"Host": ["{http.reverse_proxy.upstream.hostport}"]}}}
    route: dict[str, Any] = {}
    if address.host:
        route["match"] = [{"host": [address.host]}]
    route["handle"] = [handler]
    http = {"servers": {"proxy": {"listen": [":" + port], "routes": [route]}}}
    tls = None
    if internal_certs and address.host:
        tls = {"automation": {"policies": [{"subjects": [address.host], "issuers": [{"module": "internal"}]}]}}
    return ReverseProxyPlan(_config(http, debug, tls), str(address), dials)


def file_server_config(
    root: str = "",
    listen: str = "",
    domain: str = "",
    browse: bool = False,
    templates: bool = False,
    access_log: bool = False,
    debug: bool = False,
) -> tuple[dict[str, Any], str]:
    """The config of ``caddy file-server``, and the listen address it prints."""
    handlers: list[dict[str, Any]] = []
    if templates:
        handlers.append({"handler": "templates", "file_root": root} if root else {"handler": "templates"})
    file_server: dict[str, Any] = {"handler": "file_server"}
    if root:
        file_server["root"] = root
    if browse:
        file_server["browse"] = {}
    route: dict[str, Any] = {}
    if domain:
        route["match"] = [{"host": [domain]}]
    route["handle"] = [*handlers, file_server]
    if not listen:
        listen = f":{DEFAULT_HTTPS_PORT}" if domain else f":{DEFAULT_HTTP_PORT}"
    server: dict[str, Any] = {
        "listen": [listen],
        "read_header_timeout": 10 * _SECOND,
        "idle_timeout": 30 * _SECOND,
        "max_header_bytes": 10 * 1024,
        "routes": [route],
    }
    if access_log:
        server["logs"] = {}
    return _config({"servers": {"static": server}}, debug), listen
