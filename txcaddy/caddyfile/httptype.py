"""The HTTP server type: server blocks in, Caddy's JSON config out.

This is txcaddy's port of Caddy's ``httpcaddyfile`` core: ``HTTPServerType``
evaluates the global options, runs each site block's directives, builds one
server per group of listeners and assembles the config. Its parts live in
private modules, as Caddy's package splits them: placeholder shorthands in
``_shorthands``, matchers and route sorting and grouping in ``_routes``
(directives.go), site blocks and their listeners in ``_siteblocks``
(addresses.go), a server's TLS connection policies in ``_connpolicies``.
The TLS, PKI and logging parts live in ``tlsapp.py`` and
``directives/logging.py``; directive parsers in ``directives/``.
"""

from __future__ import annotations

from typing import Any

from txcaddy._go.sort import slice_stable
from txcaddy.caddyfile import registry
from txcaddy.caddyfile._connpolicies import consolidate_conn_policies, detect_conflicting_schemes
from txcaddy.caddyfile._routes import (
    build_subroute,
    consolidate_routes,
    did_you_mean,
    normalize_directive_name,
    parse_matcher_definitions,
    parse_segment_as_config,
    parse_segment_as_subroute,
)
from txcaddy.caddyfile._shorthands import expand_shorthands, was_replaced_placeholder_shorthand
from txcaddy.caddyfile._siteblocks import (
    Pairing,
    SiteBlock,
    key_token,
    listener_ports,
    make_pairings,
    where,
)
from txcaddy.caddyfile.addresses import AddressError, NetworkAddress
from txcaddy.caddyfile.directives.logging import build_logging
from txcaddy.caddyfile.directives.options import admin_json, storage_json
from txcaddy.caddyfile.directives.serveroptions import (
    AUTO_HTTPS_FIELDS,
    SERVER_FIELDS,
    SERVER_LOG_FIELDS,
    apply_server_options,
    in_field_order,
)
from txcaddy.caddyfile.directives.tls import ConnectionPolicy
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError, ConfigWarning
from txcaddy.caddyfile.helper import (
    MATCHER_PREFIX,
    App,
    GroupCounter,
    Helper,
    Route,
    Subroute,
)
from txcaddy.caddyfile.jsonenc import GoMap
from txcaddy.caddyfile.parser import ServerBlock
from txcaddy.caddyfile.tlsapp import build_pki_app, build_tls_app

# Caddy's httpcaddyfile exports ParseSegmentAsSubroute and
# WasReplacedPlaceholderShorthand to directive authors, so they stay importable
# from here; txcaddy's own directives import them from _routes and _shorthands,
# which import no directive (no import cycle).
__all__ = [
    "HTTPServerType",
    "parse_segment_as_config",
    "parse_segment_as_subroute",
    "specificity",
    "was_replaced_placeholder_shorthand",
]


class HTTPServerType:
    """Turns parsed server blocks into a Caddy config (Caddy's ServerType.Setup)."""

    def __init__(self) -> None:
        self.warnings: list[ConfigWarning] = []
        self.counter = GroupCounter()
        self.state: dict[str, Any] = {}
        self.options: dict[str, Any] = {}

    def setup(self, blocks: list[ServerBlock]) -> dict[str, Any]:
        for block in blocks:
            if block.keys and block.keys[0].startswith(MATCHER_PREFIX):
                raise ConfigError(
                    f"{where(block.key_tokens[0])}cannot define a matcher outside of a site "
                    f"block: '{block.keys[0]}'"
                )
        site_blocks = [SiteBlock(block) for block in blocks]
        site_blocks = self._evaluate_global_options(site_blocks)
        for sb in site_blocks:
            self._run_directives(sb)
        pairings = make_pairings(site_blocks, self.options)
        servers = self._servers_from_pairings(pairings)
        return self._assemble(servers, pairings)

    # global options ---------------------------------------------------------------

    def _evaluate_global_options(self, site_blocks: list[SiteBlock]) -> list[SiteBlock]:
        if not site_blocks or site_blocks[0].block.keys:
            return site_blocks
        options = self.options
        for segment in site_blocks[0].block.segments:
            name = segment[0].text
            func = registry.GLOBAL_OPTIONS.get(name)
            if func is None:
                tok = segment[0]
                raise ConfigError(f"{tok.file}:{tok.line}: unrecognized global option: {name}")
            try:
                value = func(Dispenser(segment), options.get(name))
            except ConfigError as e:
                raise ConfigError(f"parsing caddyfile tokens for '{name}': {e}") from None
            if name in ("servers", "log"):
                existing = options.get(name) or []
                if name == "servers":
                    options[name] = existing + [value]
                else:
                    options[name] = existing + list(value)
                continue
            options[name] = value
        server_options = options.get("servers")
        if server_options:
            server_options.sort(key=lambda so: -len(getattr(so, "listener_address", "")))
            seen: set[str] = set()
            for entry in server_options:
                address = getattr(entry, "listener_address", "")
                if address in seen:
                    raise ConfigError(
                        "cannot have 'servers' global options with duplicate listener "
                        f"addresses: {address}"
                    )
                seen.add(address)
        return site_blocks[1:]

    # directives --------------------------------------------------------------------

    def _run_directives(self, sb: SiteBlock) -> None:
        for segment in sb.block.segments:
            for i, tok in enumerate(segment):
                expanded = expand_shorthands(tok.text)
                if expanded != tok.text:
                    segment[i] = tok.with_text(expanded)
        if not sb.block.keys:
            first = sb.block.segments[0][0] if sb.block.segments else None
            raise ConfigError(
                f"{where(first)}server block without any key is global configuration, and if "
                "used, it must be first"
            )
        matcher_defs: dict[str, GoMap] = {}
        for segment in sb.block.segments:
            name = segment[0].text
            if name.startswith(MATCHER_PREFIX):
                parse_matcher_definitions(sb.block.dispense_directive(name), matcher_defs)
        for segment in sb.block.segments:
            name = segment[0].text
            if name.startswith(MATCHER_PREFIX):
                continue
            func = registry.DIRECTIVES.get(name)
            if func is None:
                tok = segment[0]
                message = f"{tok.file}:{tok.line}: unrecognized directive: {name}"
                if not sb.block.has_braces:
                    message += (
                        "\nDid you mean to define a second site? If so, you must use curly "
                        "braces around each site to separate their configurations."
                    )
                else:
                    message += did_you_mean(name)
                raise ConfigError(message)
            helper = Helper(
                Dispenser(segment),
                options=self.options,
                warnings=self.warnings,
                matcher_defs=matcher_defs,
                parent_block=sb.block,
                group_counter=self.counter,
                state=self.state,
            )
            try:
                values = func(helper)
            except ConfigError as e:
                raise ConfigError(f"parsing caddyfile tokens for '{name}': {e}") from None
            name = normalize_directive_name(name)
            for value in values:
                value.directive = name
                sb.pile.setdefault(value.klass, []).append(value)

    # servers --------------------------------------------------------------------------

    def _servers_from_pairings(self, pairings: list[Pairing]) -> dict[str, dict[str, Any]]:
        servers: dict[str, dict[str, Any]] = {}
        for i, pairing in enumerate(pairings):
            servers[f"srv{i}"] = self._server(pairing, i)
        apply_server_options(servers, self.options, self.warnings)
        return servers

    def _server(self, p: Pairing, index: int) -> dict[str, Any]:
        options = self.options
        default_sni = options.get("default_sni") or ""
        http_port, https_port = listener_ports(self.options)
        auto_https = options.get("auto_https") or "on"

        for j, sb1 in enumerate(p.server_blocks):
            for key in sb1.block.keys:
                for k, sb2 in enumerate(p.server_blocks):
                    if k != j and key in sb2.block.keys:
                        raise ConfigError(
                            f"{where(key_token(sb2.block, key))}ambiguous site definition: {key}"
                        )

        srv: dict[str, Any] = {"listen": p.addresses}
        auto: dict[str, Any] | None = None
        if auto_https != "on":
            auto = {}
            flag = {
                "off": "disable",
                "disable_redirects": "disable_redirects",
                "disable_certs": "disable_certificates",
                "ignore_loaded_certs": "ignore_loaded_certificates",
            }.get(auto_https)
            if flag:
                auto[flag] = True

        for sb in p.server_blocks:
            for addr in sb.keys:
                if addr.path:
                    self.warnings.append(
                        ConfigWarning(
                            message="Using a path in a site address is deprecated; please use "
                            f"the 'handle' directive instead (address: {addr})"
                        )
                    )

        def sort_key_info(sb: SiteBlock) -> tuple[str, str, bool]:
            longest_path = longest_host = ""
            wildcard = False
            for addr in sb.keys:
                if "*" in addr.host or addr.host == "":
                    wildcard = True
                if specificity(addr.host) > specificity(longest_host):
                    longest_host = addr.host
                if specificity(addr.path) > specificity(longest_path):
                    longest_path = addr.path
            return longest_host, longest_path, wildcard

        def less(a: SiteBlock, b: SiteBlock) -> bool:
            a_host, a_path, a_wild = sort_key_info(a)
            b_host, b_path, b_wild = sort_key_info(b)
            if specificity(a_host) == 0:
                return False
            if specificity(b_host) == 0:
                return True
            if a_wild != b_wild:
                return b_wild and not a_wild
            if specificity(a_host) == specificity(b_host):
                return len(a_path.encode()) > len(b_path.encode())
            return specificity(a_host) > specificity(b_host)

        slice_stable(p.server_blocks, less)

        has_catch_all_policy = False
        qualifies_for_tls = False
        will_add_conn_policy = auto_https != "off"
        policies: list[Any] = []
        routes: list[Route] = []
        error_routes: list[Route] | None = None
        logs: dict[str, Any] | None = None
        if any(sb.pile.get("custom_log") for sb in p.server_blocks):
            logs = {}

        for sb in p.server_blocks:
            matcher_sets = self._site_matcher_sets(sb)
            hosts = sb.hosts_from_keys(False)
            for host in hosts:
                if host in ("0.0.0.0", "::"):
                    self.warnings.append(
                        ConfigWarning(
                            message="Site block has an unspecified IP address which only matches "
                            "requests having that Host header; you probably want the 'bind' "
                            f"directive to configure the socket (address: {host})"
                        )
                    )
            for cp_value in sb.pile.get("tls.connection_policy", []):
                cp = cp_value.value
                if default_sni and default_sni in hosts:
                    hosts = hosts + [""]
                    cp.default_sni = default_sni
                if hosts:
                    cp.matchers = GoMap(sni=list(hosts))
                else:
                    cp.default_sni = default_sni
                if not cp.settings_empty():
                    policies.append(cp)
                    has_catch_all_policy = not hosts

            for addr in sb.keys:
                if _listeners_use_any_port_other_than(p.addresses, http_port):
                    if addr.scheme == "http" and addr.host:
                        if auto is None:
                            auto = {}
                        skip = auto.setdefault("skip", [])
                        if addr.host not in skip:
                            skip.append(addr.host)
                if addr.scheme == "https" or (addr.scheme != "http" and addr.host and addr.port != http_port):
                    qualifies_for_tls = True
                will_add_conn_policy = will_add_conn_policy and (
                    addr.port == https_port or (addr.port != http_port and addr.host != "")
                )

            wrappers = [v.value for v in sb.pile.get("listener_wrapper", [])]
            if wrappers:
                srv.setdefault("listener_wrappers", []).extend(wrappers)

            site_subroute = build_subroute(sb.pile.get("route", []), self.counter, options)
            routes = _append_subroute(routes, site_subroute, matcher_sets, p)
            for value in sb.pile.get("error_route", []):
                if error_routes is None:
                    error_routes = []
                error_routes = _append_subroute(error_routes, value.value, matcher_sets, p)

            log_hosts = sb.hosts_from_keys(True)
            for value in sb.pile.get("custom_log", []):
                assert logs is not None
                name = value.value.name
                if sb.has_host_catch_all_key():
                    logs["default_logger_name"] = name
                else:
                    names = logs.setdefault("logger_names", GoMap())
                    for host in log_hosts:
                        names[host] = name
            if logs is not None and not sb.pile.get("custom_log"):
                if not hosts:
                    logs["skip_unmapped_hosts"] = True
                logs.setdefault("skip_hosts", []).extend(log_hosts)

        detect_conflicting_schemes(srv["listen"], policies, p.server_blocks, http_port, https_port)

        if qualifies_for_tls and not has_catch_all_policy and (
            policies or not will_add_conn_policy or default_sni
        ):
            policies.append(ConnectionPolicy(default_sni=default_sni))
        try:
            policies = consolidate_conn_policies(policies)
        except ConfigError as e:
            raise ConfigError(f"consolidating TLS connection policies for server {index}: {e}") from None

        routes = consolidate_routes(routes)
        if routes:
            srv["routes"] = routes
        if error_routes is not None:
            srv["errors"] = {"routes": error_routes} if error_routes else {}
        if policies:
            srv["tls_connection_policies"] = policies
        if auto is not None:
            srv["automatic_https"] = in_field_order(auto, AUTO_HTTPS_FIELDS)
        if logs is not None:
            # omitempty: a name reset to "" or an empty host list is left out
            present = {k: v for k, v in logs.items() if v not in ("", [], None)}
            srv["logs"] = in_field_order(present, SERVER_LOG_FIELDS)
        return srv

    def _site_matcher_sets(self, sb: SiteBlock) -> list[GoMap]:
        pairs: list[dict[str, list[str] | None]] = []
        catch_all = False
        for addr in sb.keys:
            chosen = None
            for pair in pairs:
                paths = pair["path"] or []
                if (not paths and addr.path == "") or (len(paths) == 1 and paths[0] == addr.path):
                    chosen = pair
                    break
            if chosen is None:
                chosen = {"host": None, "path": [addr.path] if addr.path else None}
                pairs.append(chosen)
            if addr.host == "" and not catch_all:
                chosen["host"] = None
                catch_all = True
            if catch_all:
                continue
            if addr.host:
                hosts = chosen["host"] or []
                if addr.host not in hosts:
                    hosts.append(addr.host)
                chosen["host"] = hosts
        out = []
        for pair in pairs:
            matcher_set = GoMap()
            if pair["host"]:
                matcher_set["host"] = pair["host"]
            if pair["path"]:
                matcher_set["path"] = pair["path"]
            if matcher_set:
                out.append(matcher_set)
        return out

    # the config -------------------------------------------------------------------------

    def _assemble(self, servers: dict[str, dict[str, Any]], pairings: list[Pairing]) -> dict[str, Any]:
        options = self.options
        http_app: dict[str, Any] = {}
        for key, field_name in (("http_port", "http_port"), ("https_port", "https_port")):
            value = options.get(key)
            if isinstance(value, int) and value:
                http_app[field_name] = value
        for key in ("grace_period", "shutdown_delay"):
            value = options.get(key)
            if isinstance(value, int) and value:
                http_app[key] = value
        http_app["servers"] = {name: in_field_order(srv, SERVER_FIELDS) for name, srv in servers.items()}

        tls_app = build_tls_app(pairings, options, self.warnings)
        pki_app = build_pki_app(pairings, options, self.warnings)
        apps = GoMap()
        for value in options.values():
            if isinstance(value, App):
                apps[value.name] = value.value
        if servers:
            apps["http"] = http_app
        if tls_app:
            apps["tls"] = tls_app
        if pki_app:
            apps["pki"] = pki_app

        config: dict[str, Any] = {}
        admin = admin_json(options.get("admin"))
        if admin is not None:
            config["admin"] = admin
        logging = build_logging(options, pairings)
        if logging:
            config["logging"] = logging
        storage = storage_json(options.get("storage"))
        if storage is not None:
            config["storage"] = storage
        if "workers" in options:
            config["workers"] = options["workers"]  # txcaddy's own top-level key
        if apps:
            config["apps"] = apps
        return config


def _append_subroute(
    routes: list[Route], subroute: Subroute, matcher_sets: list[GoMap], p: Pairing
) -> list[Route]:
    if not matcher_sets and not subroute.routes and subroute.errors is None:
        return routes
    wrap = True
    if not matcher_sets and len(p.server_blocks) == 1:
        wrap = any("host" in ms for route in subroute.routes for ms in route.match)
    if wrap:
        route = Route(terminal=True, match=list(matcher_sets))
        if subroute.routes or subroute.errors is not None:
            route.handle = [subroute.to_handler()]
        if route.match or route.handle:
            routes = routes + [route]
    else:
        routes = routes + subroute.routes
    return routes


def _listeners_use_any_port_other_than(addresses: list[str], other_port: str) -> bool:
    try:
        port = int(other_port)
    except ValueError:
        return False
    for address in addresses:
        try:
            parsed = NetworkAddress.parse(address)
        except AddressError:
            continue
        if port > parsed.end_port or port < parsed.start_port:
            return True
    return False


def specificity(text: str) -> int:
    """How specific a host or path is: its length minus wildcards and placeholders."""
    length = len(text.encode()) - text.count("*")
    while text:
        start = text.find("{")
        if start < 0:
            return length
        close = text.find("}", start)
        if close < 0:
            return length
        end = close + 1
        length -= len(text[start:end].encode())
        text = text[end:]
    return length
