"""Automatic HTTPS, phase 1: which servers speak TLS, which names get certificates, redirects.

Caddy does this when the HTTP app is provisioned (``modules/caddyhttp/autohttps.go``,
``automaticHTTPSPhase1`` and ``createAutomationPolicies`` in 2.6.2); so do we, on the JSON,
before the servers are built.  ``plan`` takes the ``http`` and ``tls`` apps' JSON and returns
copies changed as Caddy changes its structs:

- a server whose listeners all use the HTTPS port, or that has qualifying host names, gets an
  empty TLS connection policy (TLS on);
- every qualifying name of a server's top-level host matchers is managed (a certificate is
  obtained and renewed) unless a loaded certificate already covers it; names that cannot have a
  public certificate (``localhost``, ``*.local``, IP addresses…) get an automation policy with
  the ``internal`` issuer, the others fall to the catch-all policy (ACME by default);
- HTTP→HTTPS redirect routes (308, ``Connection: close``) go into the servers already
  listening on the HTTP port, or into a new server ``remaining_auto_https_redirects``.

Go iterates maps in random order where Caddy builds these; we keep the config's order, so the
result is one of Caddy's possible results and always the same one.  Phase 2 (managing the names
once the listeners are up) is the certificate manager's (``txcaddy.tls.manager``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from txcaddy.caddyfile.addresses import AddressError, NetworkAddress
from txcaddy.config.placeholders import replace_known
from txcaddy.errors import ConfigError
from txcaddy.tls.names import subject_qualifies_for_cert, subject_qualifies_for_public_cert

__all__ = ["REDIRECT_SERVER", "AutoHTTPSPlan", "listener_uses_tls", "plan"]

log = Logger()

#: The name of the server Caddy adds for redirects no configured server listens for.
REDIRECT_SERVER = "remaining_auto_https_redirects"
DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443

def _address(text: str) -> NetworkAddress | None:
    try:
        return NetworkAddress.parse(text)
    except AddressError:
        return None


def _uses_port_other_than(listen: list[str], port: int) -> bool:
    """Caddy's ``listenersUseAnyPortOtherThan``."""
    for text in listen:
        address = _address(text)
        if address is not None and not address.start_port <= port <= address.end_port:
            return True
    return False


def listener_uses_tls(server: dict[str, Any], address: NetworkAddress, http_port: int) -> bool:
    """Caddy's rule (``app.go: Start``): TLS policies on the server, and not the HTTP port."""
    return bool(server.get("tls_connection_policies")) and address.start_port != http_port


@dataclass
class AutoHTTPSPlan:
    """What phase 1 decided.

    @ivar http: the ``http`` app's JSON with TLS policies and redirect routes added.
    @ivar tls: the ``tls`` app's JSON with the automation policies phase 1 adds.
    @ivar managed: the names to obtain and renew certificates for, in config order.
    """

    http: dict[str, Any]
    tls: dict[str, Any]
    managed: list[str] = field(default_factory=list)


def plan(
    http: dict[str, Any] | None,
    tls: dict[str, Any] | None,
    has_loaded_certificate: Callable[[str], bool] = lambda name: False,
) -> AutoHTTPSPlan:
    """Phase 1 over copies of the ``http`` and ``tls`` apps' JSON.

    ``has_loaded_certificate(name)`` says whether a certificate loaded from files (the TLS
    app's ``certificates``) already covers ``name``; such names are not managed.
    """
    http = copy.deepcopy(http or {})
    tls = copy.deepcopy(tls or {})
    http_port = int(http.get("http_port") or DEFAULT_HTTP_PORT)
    https_port = int(http.get("https_port") or DEFAULT_HTTPS_PORT)
    servers: dict[str, Any] = http.get("servers") or {}

    managed: dict[str, None] = {}  # ordered set
    redirect_targets: dict[str, list[NetworkAddress]] = {}
    log_config: Any = None

    for name, server in servers.items():
        auto = server.get("automatic_https") or {}
        if auto.get("disable"):
            log.warn("automatic HTTPS is completely disabled for server {server_name}", server_name=name)
            continue
        listen = list(server.get("listen") or ())
        if not _uses_port_other_than(listen, http_port):
            log.warn(
                "server {server_name} is listening only on the HTTP port {http_port}, so no "
                "automatic HTTPS will be applied to this server", server_name=name, http_port=http_port,
            )
            continue
        if server.get("tls_connection_policies") is None and not _uses_port_other_than(listen, https_port):
            server["tls_connection_policies"] = [{}]

        skip = auto.get("skip") or ()
        domains: dict[str, None] = {}
        for route in server.get("routes") or ():
            for matcher_set in route.get("match") or ():
                for host in matcher_set.get("host") or ():
                    host = _global_replace(host, name)
                    if host not in skip:
                        domains[host] = None

        if not domains and not server.get("tls_connection_policies"):
            continue
        if server.get("logs") is not None:
            log_config = copy.deepcopy(server["logs"])

        if auto.get("disable_certificates"):
            log.warn("skipping automated certificate management for server {server_name} because "
                     "it is disabled", server_name=name)
        else:
            skip_certificates = auto.get("skip_certificates") or ()
            for domain in domains:
                if domain.lower().endswith(".ts.net"):
                    continue  # Caddy hands these to Tailscale; txcaddy has no Tailscale manager
                if not subject_qualifies_for_cert(domain) or domain in skip_certificates:
                    continue
                if not auto.get("ignore_loaded_certificates") and has_loaded_certificate(domain):
                    log.info("skipping automatic certificate management for {domain} because one or "
                             "more matching certificates are already loaded", domain=domain)
                    continue
                if "*" in domain and domain.strip(".").count(".") == 1:
                    log.warn("most clients do not trust second-level wildcard certificates (*.tld): "
                             "{domain}", domain=domain)
                managed[domain] = None

        if not server.get("tls_connection_policies"):
            server["tls_connection_policies"] = [{}]

        if auto.get("disable_redirects"):
            log.warn("automatic HTTP->HTTPS redirects are disabled for server {server_name}", server_name=name)
            continue
        for text in listen:
            address = _address(text)
            if address is None:
                hint = ""
                if text.count(":") > 1:
                    hint = (", there are too many colons, so the port is ambiguous. Did you mean to "
                            "wrap the IPv6 address with [] brackets?")
                raise ConfigError(f"{name}: invalid listener address: {text}{hint}")
            if not domains:
                redirect_targets.setdefault("", []).append(address)
                continue
            for domain in domains:
                if domain not in redirect_targets or address.start_port == https_port:
                    redirect_targets[domain] = [address]

    internal = _internal_names(managed, tls)
    _create_automation_policies(tls, http_port if http.get("http_port") else 0,
                                https_port if http.get("https_port") else 0, internal)

    _add_redirects(servers, redirect_targets, bool(managed), http_port, https_port, log_config)
    return AutoHTTPSPlan(http, tls, list(managed))


def _global_replace(host: str, server_name: str) -> str:
    """Host matcher values through the global replacer (``{env.*}`` …), as Caddy does here."""
    if "{" not in host:
        return host
    replaced = replace_known(host, None)
    if not replaced:
        raise ConfigError(f"{server_name}: host matcher {host!r} is empty after placeholders")
    return replaced


def _internal_names(managed: dict[str, None], tls: dict[str, Any]) -> list[str]:
    """The managed names with no explicit automation policy that need the internal issuer."""
    explicit = {
        subject
        for policy in ((tls.get("automation") or {}).get("policies") or ())
        for subject in policy.get("subjects") or ()
    }
    return [
        name for name in managed
        if name not in explicit and not subject_qualifies_for_public_cert(name)
    ]


def _create_automation_policies(tls: dict[str, Any], http_port: int, https_port: int, internal: list[str]) -> None:
    """Caddy's ``createAutomationPolicies``: a catch-all policy, and one for internal names.

    ``http_port``/``https_port`` are the HTTP app's ports when set explicitly (else 0): ACME
    issuers without their own challenge ports get them, as ``fillInACMEIssuer`` does.
    """
    automation = tls.setdefault("automation", {})
    policies: list[dict[str, Any]] = automation.setdefault("policies", [])
    base: dict[str, Any] | None = None
    for policy in policies:
        if policy.get("issuers") is None:
            policy["issuers"] = default_issuers()
        for issuer in policy["issuers"]:
            _fill_in_acme_issuer(issuer, http_port, https_port)
        if base is None and not policy.get("subjects"):
            base = policy
    if base is None:
        base = {"issuers": default_issuers()}
        for issuer in base["issuers"]:
            _fill_in_acme_issuer(issuer, http_port, https_port)
        policies.append(base)
    if internal:
        internal_policy = dict(base)  # a shallow copy, as Caddy's: on_demand, key_type … carry over
        internal_policy["subjects"] = list(internal)
        internal_policy["issuers"] = [{"module": "internal"}]
        policies.append(internal_policy)


def default_issuers() -> list[dict[str, Any]]:
    """Caddy's default issuers: Let's Encrypt, then ZeroSSL (``caddytls.DefaultIssuers``)."""
    return [{"module": "acme"}, {"module": "zerossl"}]


def _fill_in_acme_issuer(issuer: dict[str, Any], http_port: int, https_port: int) -> None:
    if issuer.get("module") not in ("acme", "zerossl") or not (http_port or https_port):
        return
    challenges = issuer.setdefault("challenges", {})
    if http_port:
        http = challenges.setdefault("http", {})
        if not http.get("alternate_port"):
            http["alternate_port"] = http_port
    if https_port:
        tls_alpn = challenges.setdefault("tls-alpn", {})
        if not tls_alpn.get("alternate_port"):
            tls_alpn["alternate_port"] = https_port


def redirect_route(port: int, hosts: list[str] | None, http_port: int, https_port: int) -> dict[str, Any]:
    """Caddy's ``makeRedirRoute``: 308 to ``https://{host}[:port]{uri}``, connection closed.

    The port is left out when it is 80, 443, or the app's HTTP or HTTPS port: ``https_port``
    describes the inside of a port mapping, so outside the site is on 443.
    """
    location = "https://{http.request.host}"
    if port not in (http_port, https_port, DEFAULT_HTTP_PORT, DEFAULT_HTTPS_PORT):
        location += f":{port}"
    location += "{http.request.uri}"
    matcher: dict[str, Any] = {"protocol": "http"}
    if hosts:
        matcher["host"] = list(hosts)
    return {
        "match": [matcher],
        "handle": [{
            "handler": "static_response",
            "status_code": 308,
            "headers": {"Location": [location]},
            "close": True,
        }],
    }


def _add_redirects(
    servers: dict[str, Any],
    targets: dict[str, list[NetworkAddress]],
    have_certificate_names: bool,
    http_port: int,
    https_port: int,
    log_config: Any,
) -> None:
    by_address: dict[str, list[str]] = {}
    for domain, addresses in targets.items():
        for address in addresses:
            by_address.setdefault(str(address), []).append(domain)

    routes_by_listener: dict[str, list[dict[str, Any]]] = {}
    for address_text, domains in by_address.items():
        address = NetworkAddress.parse(address_text)
        hosts = None if domains == [""] else domains
        route = redirect_route(address.start_port, hosts, http_port, https_port)
        listener = str(NetworkAddress(address.network, address.host, http_port, http_port))
        routes_by_listener.setdefault(listener, []).append(route)

    def catch_all() -> dict[str, Any]:
        return redirect_route(https_port, None, http_port, https_port)

    leftover_addresses: list[str] = []
    leftover_routes: list[dict[str, Any]] = []
    for listener, routes in routes_by_listener.items():
        for server in servers.values():
            if not _has_listener_address(server, listener):
                continue
            server_routes: list[dict[str, Any]] = list(server.get("routes") or [])
            if have_certificate_names:
                at = _after_last_host_route(server_routes)
                server_routes[at:at] = routes
            server_routes.append(catch_all())
            server["routes"] = server_routes
            break
        else:
            leftover_addresses.append(listener)
            leftover_routes.extend(routes)
    if leftover_addresses:
        redirect_server: dict[str, Any] = {"listen": leftover_addresses, "routes": leftover_routes + [catch_all()]}
        if log_config is not None:
            redirect_server["logs"] = log_config
        servers[REDIRECT_SERVER] = redirect_server


def _has_listener_address(server: dict[str, Any], text: str) -> bool:
    """Caddy's ``hasListenerAddress`` on Linux: same network, port in range, any host."""
    wanted = _address(text)
    if wanted is None or wanted.start_port != wanted.end_port:
        return False
    for listen in server.get("listen") or ():
        address = _address(listen)
        if address is None or address.network != wanted.network:
            continue
        if address.start_port <= wanted.start_port <= address.end_port:
            return True
    return False


def _after_last_host_route(routes: list[dict[str, Any]]) -> int:
    """Caddy's ``findLastRouteWithHostMatcher``: just after the last route matching on host."""
    index = 0
    for i, route in enumerate(routes):
        if any("host" in matcher_set for matcher_set in route.get("match") or ()):
            index = i + 1
    return index
