"""The configs of the one-line servers: ``txcaddy reverse-proxy``, ``file-server``, ``respond``.

Each builds the Caddy JSON config that Caddy 2.6.2's command builds
(``modules/caddyhttp/reverseproxy/command.go: cmdReverseProxy``,
``modules/caddyhttp/fileserver/command.go: cmdFileServer``,
``modules/caddyhttp/staticresp.go: cmdRespond``), keys in the order Go's
encoder writes them, so ``txcaddy`` serves what ``caddy`` would: admin off, nothing
persisted, ``"DEBUG"`` default log with ``--debug``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from txcaddy._go.errors import GoError
from txcaddy._go.net import join_host_port
from txcaddy._go.textproto import canonical_mime_header_key
from txcaddy.caddyfile.addresses import (
    DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_PORT,
    Address,
    AddressError,
    NetworkAddress,
)
from txcaddy.caddyfile.directives.reverseproxy._upstreams import parse_upstream_dial_address
from txcaddy.errors import ConfigError

__all__ = ["ReverseProxyPlan", "file_server_config", "respond_config", "reverse_proxy_config"]

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


_TEMPLATE_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_TEMPLATE_FIELD = re.compile(r"^-?\s*\.(N|Port|Address)\s*-?$")


def _render_body(body: str, values: dict[str, str]) -> str:
    """The body with ``{{.N}}``, ``{{.Port}}``, ``{{.Address}}`` filled in.

    Caddy runs the body through Go's text/template; txcaddy knows these three fields
    (all Caddy documents) and refuses any other action rather than send it literally.
    """

    def field_value(match: re.Match[str]) -> str:
        found = _TEMPLATE_FIELD.match(match.group(1).strip())
        if found is None:
            raise ConfigError(f"template: body: txcaddy supports only {{{{.N}}}}, {{{{.Port}}}} and "
                              f"{{{{.Address}}}}, not {match.group(0)}")
        return values[found.group(1)]

    return _TEMPLATE_ACTION.sub(field_value, body)


def _go_atoi(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None


def respond_config(
    listen: str = ":0",
    status: int | None = None,
    body: str = "",
    headers: Sequence[str] = (),
    argument: str | None = None,
    access_log: bool = False,
    debug: bool = False,
    stdin_body: str | None = None,
) -> dict[str, Any]:
    """The config of ``caddy respond``: one static responder per port of ``listen``.

    ``status`` is None when ``--status`` was not given; ``argument`` is the final
    unflagged one (a 3-digit status or a body); ``stdin_body`` is what a pipe on
    stdin holds (the body when neither flag nor argument gives one).
    """
    status_code = 200 if status is None else status
    if argument:
        if body and status is not None:
            raise ConfigError(f'unflagged argument "{argument}" is overridden by flags')
        number = _go_atoi(argument)
        if number is not None and status is None:
            if 100 <= number <= 999:
                status_code = number
        elif not body:
            body = argument
    if not body and stdin_body is not None:
        body = stdin_body
    fields: dict[str, list[str]] = {}
    for i, header in enumerate(headers):
        key, found, value = header.partition(":")
        key, value = key.strip(), value.strip()
        if not found or not key or not value:
            raise ConfigError(f'header {i}: invalid format "{header}" (expecting "Field: value")')
        fields[canonical_mime_header_key(key)] = [value]
    try:
        address = NetworkAddress.parse(listen)
    except AddressError as e:
        raise ConfigError(str(e)) from None
    if address.network in ("unix", "unixgram", "unixpacket"):
        addresses = [(address.host, 0)]
    else:
        end = address.end_port or address.start_port
        addresses = [
            (join_host_port(address.host, str(port)), port) for port in range(address.start_port, end + 1)
        ]
    servers: dict[str, Any] = {}
    for n, (addr, port) in enumerate(addresses):
        handler: dict[str, Any] = {"handler": "static_response", "status_code": str(status_code)}
        if fields:
            handler["headers"] = fields
        rendered = _render_body(body, {"N": str(n), "Port": str(port), "Address": addr})
        if rendered:
            handler["body"] = rendered
        server: dict[str, Any] = {
            "listen": [addr],
            "read_header_timeout": 10 * _SECOND,
            "idle_timeout": 30 * _SECOND,
            "max_header_bytes": 10 * 1024,
            "routes": [{"handle": [handler]}],
            "automatic_https": {"disable_redirects": True},
        }
        if access_log:
            server["logs"] = {}
        servers[f"static{n}"] = server
    return _config({"servers": servers}, debug)
