"""``apps.http`` at run time: its servers and where they listen.

This is where Caddy's JSON for the HTTP app is read (through the loader)
into ``HTTPServer`` objects, one per ``servers`` entry, with their listener
addresses turned into Twisted endpoint descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from txcaddy.caddyfile.addresses import AddressError, NetworkAddress, join_network_address
from txcaddy.config.loader import LoadContext
from txcaddy.config.schema import (
    ANY,
    BOOL,
    DURATION,
    INT,
    ROUTES,
    STRING,
    STRINGS,
    ListOf,
    MapOf,
    Module,
    Obj,
    Spec,
)
from txcaddy.config.values import duration_seconds
from txcaddy.errors import ConfigError
from txcaddy.http.server import DEFAULT_IDLE_TIMEOUT, HTTPServer
from txcaddy.logs import LogSystem
from txcaddy.metrics import Metrics, instrument_routes

NANOSECONDS = 1e9

#: ``caddytls.ConnectionPolicy`` (a server's ``tls_connection_policies`` entry).
TLS_CONNECTION_POLICY: Spec = Obj(
    {
        "match": Obj({"sni": STRINGS, "remote_ip": Obj({"ranges": STRINGS, "not_ranges": STRINGS})}),
        "certificate_selection": Obj(
            {"serial_number": ListOf(ANY), "subject_organization": STRINGS, "public_key_algorithm": ANY,
             "any_tag": STRINGS, "all_tags": STRINGS}
        ),
        "cipher_suites": STRINGS,
        "curves": STRINGS,
        "alpn": STRINGS,
        "protocol_min": STRING,
        "protocol_max": STRING,
        "client_authentication": Obj(
            {"trusted_ca_certs": STRINGS, "trusted_ca_certs_pem_files": STRINGS,
             "trusted_leaf_certs": STRINGS, "mode": STRING}
        ),
        "default_sni": STRING,
        "fallback_sni": STRING,
        "insecure_secrets_log": STRING,
    },
    name="caddytls.ConnectionPolicy",
)

#: ``caddyhttp.Server``.
SERVER: Spec = Obj(
    {
        "listen": STRINGS,
        "listener_wrappers": ListOf(Module("caddy.listeners", "wrapper")),
        "read_timeout": DURATION,
        "read_header_timeout": DURATION,
        "write_timeout": DURATION,
        "idle_timeout": DURATION,
        "keepalive_interval": DURATION,
        "max_header_bytes": INT,
        "routes": ROUTES,
        "errors": Obj({"routes": ROUTES}),
        "named_routes": MapOf(ANY),
        "tls_connection_policies": ListOf(TLS_CONNECTION_POLICY),
        "automatic_https": Obj(
            {"disable": BOOL, "disable_redirects": BOOL, "disable_certificates": BOOL, "skip": STRINGS,
             "skip_certificates": STRINGS, "ignore_loaded_certificates": BOOL}
        ),
        "strict_sni_host": BOOL,
        "logs": Obj(
            {"default_logger_name": STRING, "logger_names": MapOf(STRING), "skip_hosts": STRINGS,
             "skip_unmapped_hosts": BOOL, "should_log_credentials": BOOL}
        ),
        "protocols": STRINGS,
        "metrics": Obj({}),
        "trusted_proxies": ANY,
        "client_ip_headers": STRINGS,
        "experimental_http3": BOOL,
        "allow_h2c": BOOL,
    },
    name="caddyhttp.Server",
)

#: ``apps.http`` (``caddyhttp.App``).
HTTP_APP: Spec = Obj(
    {"http_port": INT, "https_port": INT, "grace_period": DURATION, "shutdown_delay": DURATION,
     "servers": MapOf(SERVER)},
    name="caddyhttp.App",
)


@dataclass
class Listener:
    """One socket to listen on, as a Twisted endpoint description."""

    address: str  # Caddy's form, e.g. ":8080", "127.0.0.1:80", "unix//run/x.sock"
    endpoint: str  # e.g. "tcp:8080:interface=127.0.0.1", "unix:/run/x.sock"
    tls: bool = False  # served over TLS (Caddy: the server has TLS policies, not the HTTP port)


@dataclass
class HTTPApp:
    servers: dict[str, HTTPServer]
    listeners: dict[str, list[Listener]]
    http_port: int = 80
    https_port: int = 443
    grace_period: float = 0.0
    shutdown_delay: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def endpoint_descriptions(address: str) -> list[Listener]:
    """Caddy listener address → endpoint descriptions (one per port of a range)."""
    try:
        parsed = NetworkAddress.parse(address)
    except AddressError as e:
        raise ConfigError(f"invalid listener address '{address}': {e}") from None
    network = parsed.network
    if network in ("unix", "unixpacket"):
        path = parsed.host.replace(":", "\\:")
        return [Listener(address, f"unix:{path}")]
    if network not in ("tcp", "tcp4", "tcp6"):
        raise ConfigError(f"listener address '{address}': network '{network}' is not supported")
    out = []
    for port in range(parsed.start_port, parsed.end_port + 1):
        description = f"tcp6:{port}" if network == "tcp6" else f"tcp:{port}"
        host = parsed.host
        if host:
            escaped = host.replace(":", "\\:")
            description += f":interface={escaped}"
        elif network == "tcp6":
            description += ":interface=\\:\\:"
        out.append(Listener(address, description))
    return out


def check_listeners_unique(servers: dict[str, Any]) -> None:
    """Refuse two servers (or one twice) on one address, as Caddy's ``App.Validate`` does.

    Without this the second listener service gets Twisted's "two services with the same
    name", or fails to bind only once started.
    """
    claimed: dict[str, str] = {}
    for name, server in servers.items():
        for address in server.get("listen") or ():
            try:
                parsed = NetworkAddress.parse(address)
            except AddressError as e:
                raise ConfigError(f"invalid listener address '{address}': {e}") from None
            ports = range(parsed.start_port, parsed.end_port + 1) if parsed.end_port else [parsed.start_port]
            for port in ports:
                key = join_network_address(parsed.network, parsed.host, str(port) if parsed.end_port else "")
                if key in claimed:
                    raise ConfigError(
                        f"server {name}: listener address repeated: {key} (already claimed by server '{claimed[key]}')"
                    )
                claimed[key] = name


def _strict_sni_host(server: dict[str, Any]) -> bool:
    """``strict_sni_host``, on by default when a TLS policy authenticates clients (Caddy's rule)."""
    value = server.get("strict_sni_host")
    if value is not None:
        return bool(value)
    for policy in server.get("tls_connection_policies") or ():
        auth = policy.get("client_authentication") or {}
        if auth.get("mode") or auth.get("trusted_ca_certs") or auth.get("trusted_ca_certs_pem_files") \
                or auth.get("trusted_leaf_certs"):
            return True
    return False


def _port_of(listener: Listener) -> int:
    """The TCP port of an endpoint description (0 for unix sockets)."""
    if not listener.endpoint.startswith(("tcp:", "tcp6:")):
        return 0
    return int(listener.endpoint.split(":", 2)[1])


def _seconds(value: Any, field: str) -> float:
    return duration_seconds(value, f"apps.http.{field}") or 0.0


def load_http_app(
    config: dict[str, Any], context: LoadContext, *, logs: LogSystem | None = None, challenges: Any = None
) -> HTTPApp:
    """Build the HTTP app from ``apps.http``; with ``logs``, servers write access and error logs.

    ``config`` is the JSON after automatic HTTPS phase 1 (``txcaddy.tls.autohttps.plan``): its
    ``tls_connection_policies`` say which listeners speak TLS.  ``challenges`` (a
    ``txcaddy.tls.challenges.Challenges``) are the ACME HTTP-01 challenges every server answers.
    """
    check_listeners_unique(config.get("servers") or {})
    http_port = int(config.get("http_port") or 80)
    https_port = int(config.get("https_port") or 443)
    servers: dict[str, HTTPServer] = {}
    listeners: dict[str, list[Listener]] = {}
    for name, server_config in (config.get("servers") or {}).items():
        context.path.append(f"apps.http.servers.{name}")
        try:
            listen = list(server_config.get("listen") or ())
            if not listen:
                raise ConfigError(f"{'.'.join(context.path)}: the server has no listener addresses")
            routes = context.load_routes(server_config.get("routes"))
            if server_config.get("metrics") is not None:
                # Decided here, once: servers without ``metrics`` run their handlers unwrapped.
                clock = context.reactor.seconds if context.reactor is not None else None
                http_metrics = context.runtime.get(Metrics).http(clock)
                routes = instrument_routes(routes, server_config.get("routes"), name, http_metrics)
            error_routes_config = (server_config.get("errors") or {}).get("routes")
            errors = context.load_routes(error_routes_config) if error_routes_config else None
            idle = server_config.get("idle_timeout")
            access_log = None
            if logs is not None:
                access_log = logs.server_logger(server_config.get("logs"), error_routes=errors is not None)
            servers[name] = HTTPServer(
                name,
                listen,
                routes,
                errors,
                reactor=context.reactor,
                max_header_bytes=int(server_config.get("max_header_bytes") or 0),
                idle_timeout=_seconds(idle, "servers.idle_timeout") if idle else DEFAULT_IDLE_TIMEOUT,
                access_log=access_log,
                protocols=server_config.get("protocols"),
                challenges=challenges,
                strict_sni_host=_strict_sni_host(server_config),
            )
            tls_on = bool(server_config.get("tls_connection_policies"))
            listeners[name] = [
                Listener(endpoint.address, endpoint.endpoint, tls_on and _port_of(endpoint) != http_port)
                for address in listen
                for endpoint in endpoint_descriptions(address)
            ]
        finally:
            context.path.pop()
    return HTTPApp(
        servers,
        listeners,
        http_port=http_port,
        https_port=https_port,
        grace_period=_seconds(config.get("grace_period"), "grace_period"),
        shutdown_delay=_seconds(config.get("shutdown_delay"), "shutdown_delay"),
    )
