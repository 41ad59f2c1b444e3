"""``apps.http`` at run time: its servers and where they listen.

This is where Caddy's JSON for the HTTP app is read (through the loader)
into ``HTTPServer`` objects, one per ``servers`` entry, with their listener
addresses turned into Twisted endpoint descriptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from txcaddy.caddyfile.addresses import AddressError, NetworkAddress
from txcaddy.config.loader import LoadContext
from txcaddy.config.values import duration_seconds
from txcaddy.errors import ConfigError
from txcaddy.http.server import DEFAULT_IDLE_TIMEOUT, HTTPServer
from txcaddy.logs import LogSystem

NANOSECONDS = 1e9


@dataclass
class Listener:
    """One socket to listen on, as a Twisted endpoint description."""

    address: str  # Caddy's form, e.g. ":8080", "127.0.0.1:80", "unix//run/x.sock"
    endpoint: str  # e.g. "tcp:8080:interface=127.0.0.1", "unix:/run/x.sock"


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


def _seconds(value: Any, field: str) -> float:
    return duration_seconds(value, f"apps.http.{field}") or 0.0


def server_needs_tls(server: dict[str, Any], http_port: int, https_port: int) -> bool:
    """Whether Caddy's automatic HTTPS would serve this server over TLS."""
    if server.get("tls_connection_policies"):
        return True
    auto = server.get("automatic_https") or {}
    if auto.get("disable"):
        return False
    ports: set[int] = set()
    for address in server.get("listen") or ():
        try:
            parsed = NetworkAddress.parse(address)
        except AddressError:
            continue
        ports.update(range(parsed.start_port, parsed.end_port + 1))
    if ports and ports <= {http_port}:
        return False
    if https_port in ports:
        return True
    skip = set(auto.get("skip") or ())
    for route in server.get("routes") or ():
        for matcher_set in route.get("match") or ():
            for host in matcher_set.get("host") or ():
                if host not in skip and _qualifies_for_certificate(host):
                    return True
    return False


_BAD_HOST_CHARS = set("()[]{}<> \t\n\"\\!@#$%^&|;'+=")


def _qualifies_for_certificate(host: str) -> bool:
    """certmagic's SubjectQualifiesForCert (v0.17.2)."""
    if not host or host.startswith(".") or host.endswith("."):
        return False
    if "*" in host and not (host == "*" or (host.startswith("*.") and "*" not in host[2:])):
        return False
    return not any(ch in _BAD_HOST_CHARS for ch in host)


def load_http_app(
    config: dict[str, Any], context: LoadContext, *, allow_tls: bool = False, logs: LogSystem | None = None
) -> HTTPApp:
    """Build the HTTP app from ``apps.http``; with ``logs``, servers write access and error logs."""
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
            if not allow_tls and server_needs_tls(server_config, http_port, https_port):
                raise ConfigError(
                    f"server {name} (listen {' '.join(listen)}) would be served over HTTPS by "
                    "automatic HTTPS, which txcaddy does not serve yet: use an http:// site "
                    "address or a port other than the HTTPS port (or 'auto_https off')"
                )
            routes = context.load_routes(server_config.get("routes"))
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
            )
            listeners[name] = [endpoint for address in listen for endpoint in endpoint_descriptions(address)]
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
