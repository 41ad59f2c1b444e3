"""The ``servers`` global option: per-listener server settings (Caddy's serveroptions.go).

``parse_server_options`` reads one ``servers [<listener>] {...}`` block;
``apply_server_options`` copies the first matching block's settings onto
each built server, keeping caddyhttp.Server's JSON field order
(``SERVER_FIELDS``), which the HTTP server type also builds servers in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from txcaddy.caddyfile._humanize import parse_bytes
from txcaddy.caddyfile.directives._unmarshal import unmarshal_module
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigWarning
from txcaddy.caddyfile.helper import JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.caddyfile.registry import global_option
from txcaddy.config.values import parse_caddy_duration

log = Logger(namespace="caddyfile")


@dataclass
class ServerOptions:
    """One ``servers [<listener>] {...}`` block: overrides for matching servers."""

    listener_address: str = ""
    listener_wrappers: list[GoMap] | None = None
    read_timeout: int = 0
    read_header_timeout: int = 0
    write_timeout: int = 0
    idle_timeout: int = 0
    keepalive_interval: int = 0
    max_header_bytes: int = 0
    protocols: list[str] | None = None
    strict_sni_host: bool | None = None
    should_log_credentials: bool = False
    metrics: bool = False


def _parse_listener_wrapper(d: Dispenser) -> JSONObject:
    return {}  # http_redirect and tls take no settings


LISTENER_WRAPPER_MODULES = {"http_redirect": _parse_listener_wrapper, "tls": _parse_listener_wrapper}

_TIMEOUTS = {
    "read_body": "read_timeout",
    "read_header": "read_header_timeout",
    "write": "write_timeout",
    "idle": "idle_timeout",
}


def _strict_sni_host(d: Dispenser) -> bool:
    if d.next_arg() and d.val() not in ("insecure_off", "on"):
        raise d.err(f"strict_sni_host only supports 'on' or 'insecure_off', got '{d.val()}'")
    return d.val() != "insecure_off"


def _sub_duration(d: Dispenser, what: str) -> int:
    if not d.next_arg():
        raise d.arg_err()
    try:
        return parse_caddy_duration(d.val())
    except ValueError as e:
        raise d.err(f"parsing {what} duration: {e}")


@global_option("servers")
def parse_server_options(d: Dispenser, existing: Any) -> ServerOptions:
    """One ``servers`` block; the core collects them in a list (see ``finalize_server_options``)."""
    opts = ServerOptions()
    while d.next():
        if d.next_arg():
            opts.listener_address = d.val()
            if d.next_arg():
                raise d.arg_err()
        nesting = d.nesting
        while d.next_block(nesting):
            option = d.val()
            if option == "listener_wrappers":
                inner = d.nesting
                while d.next_block(inner):
                    name = d.val()
                    wrapper = unmarshal_module(d, "caddy.listeners", name, LISTENER_WRAPPER_MODULES)
                    opts.listener_wrappers = (opts.listener_wrappers or []) + [
                        module_object(wrapper, "wrapper", name)
                    ]
            elif option == "timeouts":
                inner = d.nesting
                while d.next_block(inner):
                    timeout = d.val()
                    if timeout not in _TIMEOUTS:
                        raise d.err(f"unrecognized timeouts option '{timeout}'")
                    setattr(opts, _TIMEOUTS[timeout], _sub_duration(d, f"{timeout} timeout"))
            elif option == "keepalive_interval":
                opts.keepalive_interval = _sub_duration(d, "keepalive interval")
            elif option == "max_header_size":
                args = d.all_args(1)
                if args is None:
                    raise d.arg_err()
                try:
                    opts.max_header_bytes = parse_bytes(args[0])
                except ValueError as e:
                    raise d.err(f"parsing max_header_size: {e}")
            elif option == "log_credentials":
                if d.next_arg():
                    raise d.arg_err()
                opts.should_log_credentials = True
            elif option == "protocols":
                for proto in d.remaining_args():
                    if proto not in ("h1", "h2", "h2c", "h3"):
                        raise d.err(f"unknown protocol '{proto}': expected h1, h2, h2c, or h3")
                    if proto in (opts.protocols or ()):
                        raise d.err(f"protocol {proto} specified more than once")
                    opts.protocols = (opts.protocols or []) + [proto]
                if d.next_block(d.nesting):
                    raise d.arg_err()
            elif option == "strict_sni_host":
                opts.strict_sni_host = _strict_sni_host(d)
            elif option == "metrics":
                if d.next_arg():
                    raise d.arg_err()
                if d.next_block(d.nesting):
                    raise d.arg_err()
                opts.metrics = True
            elif option == "protocol":
                _parse_deprecated_protocol(d, opts)
            else:
                raise d.err(f"unrecognized servers option '{option}'")
    return opts


def _parse_deprecated_protocol(d: Dispenser, opts: ServerOptions) -> None:
    """The ``protocol { allow_h2c; strict_sni_host }`` block Caddy deprecated in 2.6."""
    log.warn("DEPRECATED: protocol sub-option will be removed soon")
    nesting = d.nesting
    while d.next_block(nesting):
        option = d.val()
        if option == "allow_h2c":
            log.warn("DEPRECATED: allow_h2c will be removed soon; use protocols option instead")
            if d.next_arg():
                raise d.arg_err()
            if "h2c" in (opts.protocols or ()):
                raise d.err("protocol h2c already specified")
            opts.protocols = (opts.protocols or []) + ["h2c"]
        elif option == "strict_sni_host":
            log.warn(
                "DEPRECATED: protocol > strict_sni_host in this position will be removed soon; "
                "move up to the servers block instead"
            )
            opts.strict_sni_host = _strict_sni_host(d)
        else:
            raise d.err(f"unrecognized protocol option '{option}'")


# caddyhttp.Server's JSON field order, and that of two of its structs; the
# HTTP server type builds servers in this order and ``servers`` options keep it.
SERVER_FIELDS = (
    "listen",
    "listener_wrappers",
    "read_timeout",
    "read_header_timeout",
    "write_timeout",
    "idle_timeout",
    "keepalive_interval",
    "max_header_bytes",
    "routes",
    "errors",
    "tls_connection_policies",
    "automatic_https",
    "strict_sni_host",
    "logs",
    "protocols",
    "metrics",
)
AUTO_HTTPS_FIELDS = (
    "disable",
    "disable_redirects",
    "disable_certificates",
    "skip",
    "skip_certificates",
    "ignore_loaded_certificates",
)
SERVER_LOG_FIELDS = (
    "default_logger_name",
    "logger_names",
    "skip_hosts",
    "skip_unmapped_hosts",
    "should_log_credentials",
)


def in_field_order(obj: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """Put a struct's keys in Go's declaration order (unknown keys last), in place; returns ``obj``."""
    known = [(key, obj[key]) for key in fields if key in obj]
    extra = [(key, value) for key, value in obj.items() if key not in fields]
    obj.clear()
    obj.update(known + extra)
    return obj


def apply_server_options(
    servers: Mapping[str, dict[str, Any]],
    options: Mapping[str, Any],
    warnings: list[ConfigWarning],
) -> None:
    """applyServerOptions: copy each server's matching ``servers`` options onto it.

    The first entry whose listener address is one of the server's listeners
    wins, an entry without address matches any server. The server dicts are
    updated in place and keep caddyhttp.Server's field order.
    """
    entries = options.get("servers")
    if not entries:
        return
    for server in servers.values():
        opts = _options_for(server, entries)
        if opts is None:
            continue
        settings: dict[str, Any] = {
            "listener_wrappers": opts.listener_wrappers,
            "read_timeout": opts.read_timeout,
            "read_header_timeout": opts.read_header_timeout,
            "write_timeout": opts.write_timeout,
            "idle_timeout": opts.idle_timeout,
            "keepalive_interval": opts.keepalive_interval,
            "max_header_bytes": opts.max_header_bytes,
            "protocols": opts.protocols,
            "strict_sni_host": opts.strict_sni_host,
            "metrics": {} if opts.metrics else None,
        }
        for key, value in settings.items():
            if value is None or (value == 0 and type(value) is int) or value == []:
                server.pop(key, None)
            else:
                server[key] = value
        if opts.should_log_credentials:
            logs = server.setdefault("logs", {})
            logs["should_log_credentials"] = True
            in_field_order(logs, SERVER_LOG_FIELDS)
        in_field_order(server, SERVER_FIELDS)


def _options_for(server: Mapping[str, Any], entries: list[ServerOptions]) -> ServerOptions | None:
    for entry in entries:
        if not entry.listener_address:
            return entry
        if entry.listener_address in server.get("listen", ()):
            return entry
    return None
