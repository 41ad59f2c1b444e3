"""The HTTP server type: server blocks in, Caddy's JSON config out.

This is txcaddy's port of Caddy's ``httpcaddyfile`` core: global options,
placeholder shorthands, named matchers, running each directive's parser,
grouping site blocks by listener, sorting and grouping routes, and assembling
``apps.http.servers``. The TLS, PKI and logging parts live in ``tlsapp.py``
and ``directives/logging.py``; directive parsers in ``directives/``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from txcaddy._go.net import join_host_port
from txcaddy._go.sort import slice_stable
from txcaddy.caddyfile import registry
from txcaddy.caddyfile.addresses import (
    DEFAULT_HTTP_PORT,
    DEFAULT_HTTPS_PORT,
    Address,
    AddressError,
    NetworkAddress,
    join_network_address,
)
from txcaddy.caddyfile.directives.logging import build_logging
from txcaddy.caddyfile.directives.options import (
    AUTO_HTTPS_FIELDS,
    SERVER_FIELDS,
    SERVER_LOG_FIELDS,
    admin_json,
    apply_server_options,
    in_field_order,
    storage_json,
)
from txcaddy.caddyfile.directives.tls import ConnectionPolicy
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError, ConfigWarning
from txcaddy.caddyfile.helper import (
    MATCHER_PREFIX,
    App,
    ConfigValue,
    GroupCounter,
    Helper,
    Route,
    Subroute,
)
from txcaddy.caddyfile.jsonenc import GoMap
from txcaddy.caddyfile.lexer import Token
from txcaddy.caddyfile.parser import ServerBlock
from txcaddy.caddyfile.tlsapp import build_pki_app, build_tls_app

# -- placeholder shorthands (expanded in site blocks at adapt time) -------------

_SHORTHANDS = (
    ("{dir}", "{http.request.uri.path.dir}"),
    ("{file}", "{http.request.uri.path.file}"),
    ("{host}", "{http.request.host}"),
    ("{hostport}", "{http.request.hostport}"),
    ("{port}", "{http.request.port}"),
    ("{method}", "{http.request.method}"),
    ("{path}", "{http.request.uri.path}"),
    ("{query}", "{http.request.uri.query}"),
    ("{remote}", "{http.request.remote}"),
    ("{remote_host}", "{http.request.remote.host}"),
    ("{remote_port}", "{http.request.remote.port}"),
    ("{scheme}", "{http.request.scheme}"),
    ("{uri}", "{http.request.uri}"),
    ("{tls_cipher}", "{http.request.tls.cipher_suite}"),
    ("{tls_version}", "{http.request.tls.version}"),
    ("{tls_client_fingerprint}", "{http.request.tls.client.fingerprint}"),
    ("{tls_client_issuer}", "{http.request.tls.client.issuer}"),
    ("{tls_client_serial}", "{http.request.tls.client.serial}"),
    ("{tls_client_subject}", "{http.request.tls.client.subject}"),
    ("{tls_client_certificate_pem}", "{http.request.tls.client.certificate_pem}"),
    ("{tls_client_certificate_der_base64}", "{http.request.tls.client.certificate_der_base64}"),
    ("{upstream_hostport}", "{http.reverse_proxy.upstream.hostport}"),
)
_SHORTHAND_MAP = dict(_SHORTHANDS)
# Go's strings.NewReplacer: one left-to-right pass, no re-scanning of output.
_SHORTHAND_RE = re.compile("|".join(re.escape(k) for k, _ in _SHORTHANDS))
_W = r"[0-9A-Za-z_-]"
_REGEXP_SHORTHANDS = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (rf"\{{header\.({_W}*)\}}", r"{http.request.header.\1}"),
        (rf"\{{cookie\.({_W}*)\}}", r"{http.request.cookie.\1}"),
        (rf"\{{labels\.({_W}*)\}}", r"{http.request.host.labels.\1}"),
        (rf"\{{path\.({_W}*)\}}", r"{http.request.uri.path.\1}"),
        (rf"\{{file\.({_W}*)\}}", r"{http.request.uri.path.file.\1}"),
        (rf"\{{query\.({_W}*)\}}", r"{http.request.uri.query.\1}"),
        (rf"\{{re\.({_W}*)\.({_W}*)\}}", r"{http.regexp.\1.\2}"),
        (rf"\{{vars\.({_W}*)\}}", r"{http.vars.\1}"),
        (r"\{rp\.([0-9A-Za-z_\-.]*)\}", r"{http.reverse_proxy.\1}"),
        (r"\{err\.([0-9A-Za-z_\-.]*)\}", r"{http.error.\1}"),
        (rf"\{{file_match\.({_W}*)\}}", r"{http.matchers.file.\1}"),
    )
)


def expand_shorthands(text: str) -> str:
    """Caddyfile placeholder shorthands (``{host}``, ``{header.X}``, ...) in full."""
    if "{" not in text:
        return text
    text = _SHORTHAND_RE.sub(lambda m: _SHORTHAND_MAP[m.group(0)], text)
    for pattern, replacement in _REGEXP_SHORTHANDS:
        text = pattern.sub(replacement, text)
    return text


def was_replaced_placeholder_shorthand(token: str) -> str:
    """The shorthand a token was expanded from, if it is exactly one (for warnings)."""
    bare = token.strip("{}")
    for short, full in _SHORTHANDS:
        if bare == full.strip("{}"):
            return short
    return ""


# -- per-site-block state ----------------------------------------------------------


@dataclass
class SiteBlock:
    """A server block with what its directives produced (Caddy's serverBlock)."""

    block: ServerBlock
    pile: dict[str, list[ConfigValue]] = field(default_factory=dict)
    keys: list[Address] = field(default_factory=list)

    def hosts_from_keys(self, logger_mode: bool) -> list[str]:
        hosts: dict[str, None] = {}
        for addr in self.keys:
            if addr.host == "":
                if not logger_mode:
                    return []
                continue
            if logger_mode and addr.port not in ("", str(DEFAULT_HTTP_PORT), str(DEFAULT_HTTPS_PORT)):
                hosts.setdefault(join_host_port(addr.host, addr.port), None)
            else:
                hosts.setdefault(addr.host, None)
        return list(hosts)

    def hosts_from_keys_not_http(self, http_port: str) -> list[str]:
        hosts: dict[str, None] = {}
        for addr in self.keys:
            if addr.host and addr.scheme != "http" and addr.port != http_port:
                hosts.setdefault(addr.host, None)
        return list(hosts)

    def has_host_catch_all_key(self) -> bool:
        return any(addr.host == "" for addr in self.keys)

    def is_all_http(self) -> bool:
        return all(addr.scheme == "http" for addr in self.keys)


@dataclass
class Pairing:
    """Listener addresses and the site blocks served on them (sbAddrAssociation)."""

    addresses: list[str]
    server_blocks: list[SiteBlock]


# -- matchers ------------------------------------------------------------------------


def parse_matcher_definitions(d: Dispenser, matcher_defs: dict[str, GoMap]) -> None:
    """Compile ``@name ...`` definitions (single line or block) into matcher sets."""
    while d.next():
        name = d.val()
        if name in matcher_defs:
            raise d.err(f"matcher is defined more than once: {name}")
        matcher_set = GoMap()
        matcher_defs[name] = matcher_set
        if d.next_arg():
            if d.token().quoted:
                _make_matcher(matcher_set, "expression", [d.token()])
                continue
            d.prev()
        by_type: dict[str, list[Token]] = {}
        nesting = d.nesting
        while d.next_arg() or d.next_block(nesting):
            matcher_name = d.val()
            by_type.setdefault(matcher_name, []).extend(d.next_segment())
        for matcher_name, tokens in by_type.items():
            _make_matcher(matcher_set, matcher_name, tokens)


def _make_matcher(matcher_set: GoMap, name: str, tokens: list[Token]) -> None:
    func = registry.MATCHERS.get(name)
    if func is None:
        raise ConfigError(
            f"getting matcher module '{name}': module not registered: http.matchers.{name}"
        )
    matcher_set[name] = func(Dispenser(tokens))


# -- directives ------------------------------------------------------------------------


def _directive_order(options: dict[str, Any]) -> list[str]:
    order = options.get("order")
    return list(order) if order else list(registry.DEFAULT_DIRECTIVE_ORDER)


def parse_segment_as_config(h: Helper) -> list[ConfigValue]:
    """Run the directives inside a block (``handle { ... }``) and collect their values."""
    results: list[ConfigValue] = []
    while h.next():
        if h.next_arg():
            raise h.arg_err()
        segments: list[list[Token]] = []
        nesting = h.nesting
        while h.next_block(nesting):
            segments.append(h.next_segment())
        matcher_defs = dict(h.matcher_defs)
        directives = []
        for segment in segments:
            if segment[0].text.startswith(MATCHER_PREFIX):
                parse_matcher_definitions(Dispenser(segment), matcher_defs)
            else:
                directives.append(segment)
        for segment in directives:
            name = segment[0].text
            func = registry.DIRECTIVES.get(name)
            if func is None:
                raise h.err(
                    f"unrecognized directive: {name} - are you sure your Caddyfile structure "
                    "(nesting and braces) is correct?"
                    + _did_you_mean(name)
                )
            sub = h.with_dispenser(Dispenser(segment))
            sub.matcher_defs = matcher_defs
            try:
                values = func(sub)
            except ConfigError as e:
                raise h.err(f"parsing caddyfile tokens for '{name}': {e}") from None
            name = _normalize_directive_name(name)
            for value in values:
                value.directive = name
                results.append(value)
    return results


def parse_segment_as_subroute(h: Helper) -> Subroute:
    """A block of directives as one sorted, grouped subroute (``handle``, ``handle_errors``)."""
    return build_subroute(parse_segment_as_config(h), h.group_counter, h.options)


def _normalize_directive_name(name: str) -> str:
    return "handle" if name == "handle_path" else name


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, list(registry.DIRECTIVES), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _single_path_len(route: Route) -> int:
    if len(route.match) == 1:
        paths = route.match[0].get("path")
        if isinstance(paths, list) and len(paths) == 1:
            return len(paths[0].encode())
    return 0


def sort_routes(values: list[ConfigValue], order: list[str]) -> None:
    """Sort by directive order, then Caddy's path-specificity rules (see spec §9.2)."""
    positions = {name: i for i, name in enumerate(order)}

    def less(a: ConfigValue, b: ConfigValue) -> bool:
        if a.directive != b.directive:
            return positions.get(a.directive, 0) < positions.get(b.directive, 0)
        if not isinstance(a.value, Route) or not isinstance(b.value, Route):
            return False
        a_len, b_len = _single_path_len(a.value), _single_path_len(b.value)
        if a.directive == "vars":
            if a_len > 0 and b_len > 0:
                return a_len < b_len
            return not a.value.match and bool(b.value.match)
        if a_len > 0 and b_len > 0:
            return a_len > b_len
        return bool(a.value.match) and not b.value.match

    slice_stable(values, less)


def build_subroute(
    values: list[ConfigValue], counter: GroupCounter, options: dict[str, Any]
) -> Subroute:
    order = _directive_order(options)
    for value in values:
        if value.directive not in order:
            raise ConfigError(
                f"directive '{value.directive}' is not an ordered HTTP handler, so it cannot be used here"
            )
    sort_routes(values, order)
    group_names: dict[str, str] = {}
    for directive in ("handle", "rewrite", "root"):  # sorted, as Caddy iterates them
        count = sum(1 for v in values if v.directive == directive)
        if count > 1 or directive == "rewrite":
            group_names[directive] = counter.next_group()
    subroute = Subroute()
    for value in values:
        if value.directive in group_names and isinstance(value.value, Route):
            value.value.group = group_names[value.directive]
        if isinstance(value.value, Subroute):
            subroute.routes.extend(value.value.routes)
        elif isinstance(value.value, Route):
            subroute.routes.append(value.value)
    subroute.routes = consolidate_routes(subroute.routes)
    return subroute


def consolidate_routes(routes: list[Route]) -> list[Route]:
    """Merge adjacent routes with the same matchers, terminal flag and group."""
    out: list[Route] = []
    for route in routes:
        if out:
            last = out[-1]
            if (
                last.match == route.match
                and last.terminal == route.terminal
                and last.group == route.group
            ):
                out[-1] = Route(
                    handle=last.handle + route.handle,
                    match=last.match,
                    group=last.group,
                    terminal=last.terminal,
                )
                continue
        out.append(route)
    return out


# -- the whole adaptation -----------------------------------------------------------


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
                    f"{_where(block.key_tokens[0])}cannot define a matcher outside of a site "
                    f"block: '{block.keys[0]}'"
                )
        site_blocks = [SiteBlock(block) for block in blocks]
        site_blocks = self._evaluate_global_options(site_blocks)
        for sb in site_blocks:
            self._run_directives(sb)
        pairings = self._pairings(site_blocks)
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
                f"{_where(first)}server block without any key is global configuration, and if "
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
                    message += _did_you_mean(name)
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
            name = _normalize_directive_name(name)
            for value in values:
                value.directive = name
                sb.pile.setdefault(value.klass, []).append(value)

    # listeners -------------------------------------------------------------------------

    def _ports(self) -> tuple[str, str]:
        http_port = self.options.get("http_port")
        https_port = self.options.get("https_port")
        return (
            str(http_port if isinstance(http_port, int) else DEFAULT_HTTP_PORT),
            str(https_port if isinstance(https_port, int) else DEFAULT_HTTPS_PORT),
        )

    def _listeners_for_key(self, sb: SiteBlock, key: str) -> list[str]:
        try:
            addr = Address.parse(key).normalize()
        except AddressError as e:
            raise AddressError(f"parsing key: {e}") from None
        http_port, https_port = self._ports()
        port = addr.port or (http_port if addr.scheme == "http" else https_port)
        if (addr.scheme == "http" and port == https_port) or (addr.scheme == "https" and port == http_port):
            raise AddressError(f"[{key}] scheme and port violate convention")
        hosts: list[str] = []
        for value in sb.pile.get("bind", []):
            hosts.extend(value.value)
        if not hosts:
            default_bind = self.options.get("default_bind")
            hosts = list(default_bind) if isinstance(default_bind, list) else [""]
        listeners: set[str] = set()
        for host in hosts:
            network, slash, rest = host.partition("/")
            if not slash:
                network, rest = "", network
            rest = rest.strip("[]")
            try:
                parsed = NetworkAddress.parse(join_network_address(network, rest, port))
            except AddressError as e:
                raise AddressError(f"parsing network address: {e}") from None
            listeners.add(str(parsed))
        return sorted(listeners)

    def _pairings(self, site_blocks: list[SiteBlock]) -> list[Pairing]:
        by_address: dict[str, list[SiteBlock]] = {}
        for i, sb in enumerate(site_blocks):
            keys_by_address: dict[str, list[str]] = {}
            for j, key in enumerate(sb.block.keys):
                try:
                    addresses = self._listeners_for_key(sb, key)
                except AddressError as e:
                    raise ConfigError(
                        f"{_where(_key_token(sb.block, key))}server block {i}, key {j} ({key}): "
                        f"determining listener address: {e}"
                    ) from None
                for address in addresses:
                    keys_by_address.setdefault(address, []).append(key)
            for address in sorted(keys_by_address):
                keys = keys_by_address[address]
                parsed = []
                for key in keys:
                    try:
                        parsed.append(Address.parse(key).normalize())
                    except AddressError as e:
                        raise ConfigError(f"parsing key '{key}': {e}") from None
                block = ServerBlock(
                    keys=keys,
                    segments=sb.block.segments,
                    has_braces=sb.block.has_braces,
                    key_tokens=[_key_token(sb.block, key) for key in keys],
                )
                by_address.setdefault(address, []).append(SiteBlock(block, sb.pile, parsed))

        def identity(blocks: list[SiteBlock]) -> list[tuple[int, tuple[str, ...]]]:
            return [(id(b.pile), tuple(b.block.keys)) for b in blocks]

        pairings: list[Pairing] = []
        remaining = dict(by_address)
        for address in list(by_address):
            if address not in remaining:
                continue
            blocks = remaining.pop(address)
            pairing = Pairing([address], blocks)
            for other in list(remaining):
                if identity(remaining[other]) == identity(blocks):
                    pairing.addresses.append(other)
                    del remaining[other]
            pairing.addresses.sort()
            pairings.append(pairing)
        pairings.sort(key=lambda p: p.addresses[0])
        return pairings

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
        http_port, https_port = self._ports()
        auto_https = options.get("auto_https") or "on"

        for j, sb1 in enumerate(p.server_blocks):
            for key in sb1.block.keys:
                for k, sb2 in enumerate(p.server_blocks):
                    if k != j and key in sb2.block.keys:
                        raise ConfigError(
                            f"{_where(_key_token(sb2.block, key))}ambiguous site definition: {key}"
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

        _detect_conflicting_schemes(srv["listen"], policies, p.server_blocks, http_port, https_port)

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


def _where(tok: Token | None) -> str:
    """``file:line: `` for messages Caddy gives without a location."""
    return f"{tok.file}:{tok.line}: " if tok is not None and tok.file else ""


def _key_token(block: ServerBlock, key: str) -> Token | None:
    for tok in block.key_tokens:
        if tok.text == key:
            return tok
    return None


def _go_list(values: list[str]) -> str:
    return "[" + " ".join(values) + "]"


def _detect_conflicting_schemes(
    listen: list[str], policies: list[Any], site_blocks: list[SiteBlock], http_port: str, https_port: str
) -> None:
    state = ""

    def located(message: str, addr: Address) -> ConfigError:
        for sb in site_blocks:
            if addr.original in sb.block.keys:
                return ConfigError(_where(_key_token(sb.block, addr.original)) + message)
        return ConfigError(message)

    def set_http(addr: Address) -> None:
        nonlocal state
        if state == "HTTPS":
            message = (
                f"server listening on {_go_list(listen)} is configured for HTTPS and cannot "
                f"natively multiplex HTTP and HTTPS: {addr.original}"
            )
            if addr.scheme == "" and addr.host == "":
                message += " (try specifying https:// in the address)"
            raise located(message, addr)
        if policies:
            raise located(
                f"server listening on {_go_list(listen)} is HTTP, but attempts to configure TLS "
                "connection policies",
                addr,
            )
        state = "HTTP"

    def set_https(addr: Address) -> None:
        nonlocal state
        if state == "HTTP":
            raise located(
                f"server listening on {_go_list(listen)} is configured for HTTP and cannot "
                f"natively multiplex HTTP and HTTPS: {addr.original}",
                addr,
            )
        state = "HTTPS"

    for sb in site_blocks:
        for addr in sb.keys:
            if addr.scheme == "http" or addr.port == http_port:
                set_http(addr)
            elif addr.scheme == "https" or addr.port == https_port or policies:
                set_https(addr)
            elif addr.host == "":
                set_http(addr)


_POLICY_CONFLICTS = (
    ("alpn", "ALPN"),
    ("cipher_suites", "cipher suites"),
    ("curves", "curves"),
)


def consolidate_conn_policies(policies: list[Any]) -> list[Any]:
    """Merge TLS connection policies with the same matchers (consolidateConnPolicies)."""
    slice_stable(policies, lambda a, b: b.matchers is None and a.matchers is not None)
    i = 0
    while i < len(policies):
        merged = False
        for j in range(len(policies)):
            if j == i:
                continue
            a, b = policies[i], policies[j]
            if a.to_json() == b.to_json():
                del policies[j]
                merged = True
                break
            if a.matchers == b.matchers:
                for attr, label in _POLICY_CONFLICTS:
                    va, vb = getattr(a, attr), getattr(b, attr)
                    if va and vb and va != vb:
                        raise ConfigError(
                            f"two policies with same match criteria have conflicting {label}: "
                            f"{_go_list(va)} vs. {_go_list(vb)}"
                        )
                if a.client_authentication is None and b.client_authentication is not None:
                    # Caddy 2.6.2 rejects this pair outright (its later merge step is unreachable).
                    raise ConfigError(
                        "two policies with same match criteria have conflicting client auth "
                        "configuration"
                    )
                for attr, label in (
                    ("default_sni", "default SNI"),
                    ("protocol_min", "min protocol"),
                    ("protocol_max", "max protocol"),
                ):
                    va, vb = getattr(a, attr), getattr(b, attr)
                    if va and vb and va != vb:
                        raise ConfigError(
                            f"two policies with same match criteria have conflicting {label}: {va} vs. {vb}"
                        )
                if a.cert_selection is not None and b.cert_selection is not None:
                    if not a.cert_selection.compatible_with(b.cert_selection):
                        raise ConfigError(
                            "two policies with same match criteria have conflicting cert selections"
                        )
                for attr in ("alpn", "cipher_suites", "client_authentication", "curves",
                             "default_sni", "protocol_min", "protocol_max"):
                    if not getattr(a, attr) and getattr(b, attr):
                        setattr(a, attr, getattr(b, attr))
                if a.cert_selection is None and b.cert_selection is not None:
                    a.cert_selection = b.cert_selection
                elif a.cert_selection is not None and b.cert_selection is not None:
                    a.cert_selection.merge_any_tags(b.cert_selection)
                del policies[j]
                merged = True
                break
        if merged:
            i -= 1
        i += 1
        if i < 0:
            i = 0
    return policies


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
