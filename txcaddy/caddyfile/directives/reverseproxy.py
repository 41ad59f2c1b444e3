"""Caddyfile syntax of the ``reverse_proxy`` family.

Covers ``reverse_proxy`` (with ``transport http``/``transport fastcgi``,
dynamic upstream sources, selection policies, health checks, response
matchers and ``handle_response``), ``copy_response``,
``copy_response_headers``, and the two shortcuts built on top of it,
``php_fastcgi`` and ``forward_auth``.

The output must be what ``caddy adapt`` (2.6.2) prints. Caddy encodes every
handler through ``caddyconfig.JSONModuleObject``, which decodes the handler
into a generic map and encodes it again: every object inside a handler ends
up with sorted keys and every number goes through a float64. That is what
``jsonenc.module_object`` reproduces, so the struct-like dicts built here
only need the right keys and Go's ``omitempty`` rules.

txcaddy-specific extensions (``DESIGN.md`` §1), each announced with a warning
naming Caddy's spelling: ``transport http`` accepts ``read_buffer_size``,
``write_buffer_size``, ``max_idle_conns`` and ``idle_conn_timeout``; a static
upstream written as ``_service._proto.name`` becomes a ``dynamic srv``
source. Newer Caddy options are accepted too: ``health_passes``,
``health_fails`` (Caddy 2.8), ``stream_timeout``, ``stream_close_delay`` and
the ``client_ip_hash``, ``query`` and ``weighted_round_robin`` policies and
the ``fallback`` block of ``header``, ``cookie`` and ``query`` (Caddy 2.7;
weights of 0 from 2.9).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from txcaddy.caddyfile._goparse import (
    GoError,
    go_atoi,
    go_quote,
    parse_bytes,
    parse_caddy_duration,
    weak_string,
)
from txcaddy.caddyfile.addresses import join_host_port, join_network_address, split_host_port
from txcaddy.caddyfile.directives._unmarshal import unmarshal_module
from txcaddy.caddyfile.directives.matchers import (
    PRIVATE_RANGES,
    canonical_header_key,
    parse_named_response_matcher,
    parse_nested_matcher_set,
)
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.helper import (
    MATCHER_PREFIX,
    ConfigValue,
    Helper,
    JSONObject,
    Route,
    Subroute,
)
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.caddyfile.lexer import Token
from txcaddy.caddyfile.registry import directive, handler_directive

__all__ = [
    "apply_header_op",
    "parse_upstream_dial_address",
    "ReverseProxyConfig",
]

# ---------------------------------------------------------------------------
# Go's net/url, as far as upstream addresses need it


def _valid_optional_port(port: str) -> bool:
    if not port:
        return True
    return port[0] == ":" and all("0" <= c <= "9" for c in port[1:])


_HOST_OK = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\""
)
_HEX = "0123456789abcdefABCDEF"


def _unescape_host(host: str) -> str:
    """net/url's unescape(host, encodeHost): %-escapes decoded, odd ASCII refused."""
    out = bytearray()
    i = 0
    raw = host.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c == 0x25:  # '%'
            if i + 2 >= len(raw) or chr(raw[i + 1]) not in _HEX or chr(raw[i + 2]) not in _HEX:
                bad = raw[i : i + 3].decode("utf-8", "replace")
                raise GoError(f"invalid URL escape {go_quote(bad)}")
            if int(chr(raw[i + 1]), 16) < 8 and raw[i : i + 3] != b"%25":
                raise GoError(f"invalid URL escape {go_quote(raw[i : i + 3].decode())}")
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
            continue
        if c < 0x80 and chr(c) not in _HOST_OK:
            raise GoError(f"invalid character {go_quote(chr(c))} in host name")
        out.append(c)
        i += 1
    return out.decode("utf-8", "replace")


class _GoURL:
    """The parts of a net/url.URL that upstream addresses use."""

    def __init__(self, raw: str) -> None:
        try:
            self._parse(raw)
        except ValueError as e:
            raise GoError(f"parse {go_quote(raw)}: {e}")

    def _parse(self, raw: str) -> None:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
            raise GoError("net/url: invalid control character in URL")
        rest, _, self.fragment = raw.partition("#")
        self.scheme = ""
        for i, c in enumerate(rest):
            if c.isascii() and c.isalpha():
                continue
            if c.isdigit() or c in "+-.":
                if i == 0:
                    break
                continue
            if c == ":":
                if i == 0:
                    raise GoError("missing protocol scheme")
                self.scheme, rest = rest[:i].lower(), rest[i + 1 :]
            break
        rest, _, self.raw_query = rest.partition("?")
        self.host = ""
        if rest.startswith("//") and (self.scheme or not rest.startswith("///")):
            authority, slash, path = rest[2:].partition("/")
            rest = slash + path
            at = authority.rfind("@")
            self.host = self._parse_host(authority[at + 1 :] if at >= 0 else authority)
        elif self.scheme and not rest.startswith("/"):
            rest = ""  # opaque; Caddy never looks at it
        self.path = rest

    @staticmethod
    def _parse_host(host: str) -> str:
        if host.startswith("["):
            i = host.rfind("]")
            if i < 0:
                raise GoError("missing ']' in host")
            if not _valid_optional_port(host[i + 1 :]):
                raise GoError(f"invalid port {go_quote(host[i + 1 :])} after host")
        else:
            i = host.rfind(":")
            if i != -1 and not _valid_optional_port(host[i:]):
                raise GoError(f"invalid port {go_quote(host[i:])} after host")
        return _unescape_host(host)

    def _split(self) -> tuple[str, str]:
        host, port = self.host, ""
        colon = host.rfind(":")
        if colon != -1 and _valid_optional_port(host[colon:]):
            host, port = host[:colon], host[colon + 1 :]
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return host, port

    def hostname(self) -> str:
        return self._split()[0]

    def port(self) -> str:
        return self._split()[1]


def _put(obj: JSONObject, key: str, value: Any) -> None:
    """Set ``key`` unless ``omitempty`` would drop ``value`` (plain dicts are non-nil pointers)."""
    if value is None or value is False or value == "" or (isinstance(value, int) and value == 0):
        return
    if isinstance(value, (list, GoMap)) and not value:
        return
    obj[key] = value


def _struct(*pairs: tuple[str, Any]) -> JSONObject:
    out: JSONObject = {}
    for key, value in pairs:
        _put(out, key, value)
    return out


# ---------------------------------------------------------------------------
# Header operations (also used by the ``header``/``request_header`` family)

_HEADER_OPS_ORDER = ("add", "set", "delete", "replace", "require", "deferred")


def apply_header_op(
    ops: JSONObject, field: str, value: str, replacement: str, *, response: bool = False
) -> None:
    """Add one Caddyfile header operation to a ``HeaderOps`` JSON object.

    ``field`` may carry Caddy's prefixes: ``+`` add, ``-`` delete, ``?`` set
    as a default (only when ``response`` is true: ``ops`` is then a
    ``RespHeaderOps`` and ``-`` marks it deferred). A non-empty
    ``replacement`` makes ``value`` a regexp to replace. Raises ValueError
    with Caddy's message; the caller turns it into a parse error.
    """
    if field.startswith("+"):
        add = ops.setdefault("add", GoMap())
        key = canonical_header_key(field[1:])
        add[key] = (add.get(key) or []) + [value]
    elif field.startswith("-"):
        ops.setdefault("delete", []).append(field[1:])
        if response:
            ops["deferred"] = True
    elif field.startswith("?"):
        if not response:
            raise ValueError(
                f"{field}: the default header modifier ('?') can only be used on response "
                "headers; for conditional manipulation of request headers, use matchers"
            )
        field = field[1:]
        ops.setdefault("require", {"headers": GoMap()})["headers"][field] = None
        ops.setdefault("set", GoMap())[canonical_header_key(field)] = [value]
    elif replacement != "":
        field = field.lstrip("+-?")
        ops.setdefault("replace", GoMap()).setdefault(field, []).append(
            _struct(("search_regexp", value), ("replace", replacement))
        )
    else:
        ops.setdefault("set", GoMap())[canonical_header_key(field)] = [value]
    known = [(key, ops.pop(key)) for key in _HEADER_OPS_ORDER if key in ops]
    rest = list(ops.items())
    ops.clear()
    ops.update(known + rest)


# ---------------------------------------------------------------------------
# Upstream addresses


def parse_upstream_dial_address(address: str) -> tuple[str, str]:
    """An upstream as written → (dial address, scheme), as Caddy 2.6.2 reads it.

    Raises :class:`GoError` with Caddy's message.
    """
    network = scheme = host = port = ""
    if "://" in address:
        if "{" in address:
            raise GoError(
                "due to parsing difficulties, placeholders are not allowed when an "
                "upstream address contains a scheme"
            )
        try:
            url = _GoURL(address)
        except ValueError as e:
            raise GoError(f"parsing upstream URL: {e}")
        if url.path or url.raw_query or url.fragment:
            raise GoError(
                "for now, URLs for proxy upstreams only support scheme, host, and port components"
            )
        url_port = url.port()
        if url.scheme == "http" and url_port == "443":
            raise GoError(
                "upstream address has conflicting scheme (http://) and port (:443, the HTTPS port)"
            )
        if url.scheme == "https" and url_port == "80":
            raise GoError(
                "upstream address has conflicting scheme (https://) and port (:80, the HTTP port)"
            )
        if url.scheme == "h2c" and url_port == "443":
            raise GoError(
                "upstream address has conflicting scheme (h2c://) and port (:443, the HTTPS port)"
            )
        if url_port == "":
            default_port = {"": "80", "http": "80", "h2c": "80", "https": "443"}.get(url.scheme, "")
            url.host = join_host_port(url.hostname(), default_port)
        scheme, host, port = url.scheme, url.hostname(), url.port()
    else:
        before, slash, after = address.partition("/")
        if slash:
            network = before.strip().lower()
            address = after
        try:
            host, port = split_host_port(address)
        except ValueError:
            host = address
        if port == "" and "{" not in host:
            port = "80"
    if network == "unix+h2c":
        network, scheme = "unix", "h2c"
    if network:
        return join_network_address(network, host, port), scheme
    if port == "" and "{" in host:
        return host, scheme
    return join_host_port(host, port), scheme


_SRV_NAME = re.compile(r"_[^._:/{}\[\]]+\._[^._:/{}\[\]]+\.[^:/{}\[\]]+\Z")


def _srv_form_name(address: str) -> str | None:
    """The DNS name of a port-less upstream written as ``_service._proto.name``, if it is one."""
    if "{" in address:
        return None
    if "://" in address:
        try:
            url = _GoURL(address)
        except ValueError:
            return None
        if url.port() or url.path or url.raw_query or url.fragment:
            return None
        name = url.hostname()
    else:
        if "/" in address or ":" in address:
            return None
        name = address
    return name if _SRV_NAME.match(name) else None


# ---------------------------------------------------------------------------
# Module registries: the Caddyfile unmarshalers of guest modules


class _Context:
    """What a module parser needs besides its tokens: a way to warn."""

    def __init__(self, helper: Helper) -> None:
        self.helper = helper

    def warn(self, d: Dispenser, message: str) -> None:
        self.helper.with_dispenser(d).warn(message)


ModuleParser = Callable[[Dispenser, _Context], Any]


# -- transports


class HTTPTransport:
    """reverseproxy.HTTPTransport while it is being parsed."""

    go_type = "*reverseproxy.HTTPTransport"

    def __init__(self) -> None:
        self.resolver: JSONObject | None = None
        self.tls: JSONObject | None = None
        self.keep_alive: JSONObject | None = None
        self.compression: bool | None = None
        self.max_conns_per_host = 0
        self.dial_timeout = 0
        self.dial_fallback_delay = 0
        self.response_header_timeout = 0
        self.expect_continue_timeout = 0
        self.max_response_header_size = 0
        self.write_buffer_size = 0
        self.read_buffer_size = 0
        self.read_timeout = 0
        self.write_timeout = 0
        self.versions: list[str] = []

    def tls_enabled(self) -> bool:
        return self.tls is not None

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        _put(out, "resolver", self.resolver)
        if self.tls is not None:
            out["tls"] = _struct(*((k, self.tls.get(k)) for k in _TLS_FIELDS))
        if self.keep_alive is not None:
            keep_alive: JSONObject = {}
            if "enabled" in self.keep_alive:
                keep_alive["enabled"] = self.keep_alive["enabled"]
            for key in (
                "probe_interval",
                "max_idle_conns",
                "max_idle_conns_per_host",
                "idle_timeout",
            ):
                _put(keep_alive, key, self.keep_alive.get(key))
            out["keep_alive"] = keep_alive
        if self.compression is not None:
            out["compression"] = self.compression
        for key in (
            "max_conns_per_host",
            "dial_timeout",
            "dial_fallback_delay",
            "response_header_timeout",
            "expect_continue_timeout",
            "max_response_header_size",
            "write_buffer_size",
            "read_buffer_size",
            "read_timeout",
            "write_timeout",
            "versions",
        ):
            _put(out, key, getattr(self, key))
        return out


_TLS_FIELDS = (
    "root_ca_pool",
    "root_ca_pem_files",
    "client_certificate_file",
    "client_certificate_key_file",
    "client_certificate_automate",
    "insecure_skip_verify",
    "handshake_timeout",
    "server_name",
    "renegotiation",
    "except_ports",
)

# txcaddy's aliases (the tutorial's spellings) → Caddy's subdirective
_HTTP_TRANSPORT_ALIASES = {
    "read_buffer_size": "read_buffer",
    "write_buffer_size": "write_buffer",
    "max_idle_conns": "keepalive_idle_conns",
    "idle_conn_timeout": "keepalive",
}


def parse_http_transport(d: Dispenser, ctx: _Context) -> HTTPTransport:
    """``transport http { ... }``."""
    t = HTTPTransport()

    def tls() -> JSONObject:
        if t.tls is None:
            t.tls = {}
        return t.tls

    def keep_alive() -> JSONObject:
        if t.keep_alive is None:
            t.keep_alive = {}
        return t.keep_alive

    def one_arg() -> str:
        if not d.next_arg():
            raise d.arg_err()
        return d.val()

    def duration(message: str) -> int:
        value = one_arg()
        try:
            return parse_caddy_duration(value)
        except ValueError as e:
            raise d.err(message.format(value=value, err=e))

    def integer() -> int:
        value = one_arg()
        try:
            return go_atoi(value)
        except ValueError as e:
            raise d.err(f"bad integer value '{value}': {e}")

    def size(what: str) -> int:
        value = one_arg()
        try:
            return parse_bytes(value)
        except ValueError as e:
            raise d.err(f"invalid {what} size '{value}': {e}")

    while d.next():
        while d.next_block(0):
            name = d.val()
            if name in _HTTP_TRANSPORT_ALIASES:
                caddy_name = _HTTP_TRANSPORT_ALIASES[name]
                ctx.warn(
                    d,
                    f"transport http: '{name}' is not a Caddy subdirective; txcaddy accepts it "
                    f"as an alias, Caddy spells it '{caddy_name}'",
                )
                name = caddy_name
            if name == "read_buffer":
                t.read_buffer_size = size("read buffer")
            elif name == "write_buffer":
                t.write_buffer_size = size("write buffer")
            elif name == "read_timeout":
                t.read_timeout = duration("invalid read timeout duration '{value}': {err}")
            elif name == "write_timeout":
                t.write_timeout = duration("invalid write timeout duration '{value}': {err}")
            elif name == "max_response_header":
                t.max_response_header_size = size("max response header")
            elif name == "dial_timeout":
                t.dial_timeout = duration("bad timeout value '{value}': {err}")
            elif name == "dial_fallback_delay":
                t.dial_fallback_delay = duration("bad fallback delay value '{value}': {err}")
            elif name == "response_header_timeout":
                t.response_header_timeout = duration("bad timeout value '{value}': {err}")
            elif name == "expect_continue_timeout":
                t.expect_continue_timeout = duration("bad timeout value '{value}': {err}")
            elif name == "resolvers":
                addresses = d.remaining_args()
                t.resolver = {"addresses": addresses}
                if not addresses:
                    raise d.err("must specify at least one resolver address")
            elif name == "tls":
                tls()
            elif name == "tls_client_auth":
                tls()
                args = d.remaining_args()
                if len(args) == 1:
                    tls()["client_certificate_automate"] = args[0]
                elif len(args) == 2:
                    tls()["client_certificate_file"] = args[0]
                    tls()["client_certificate_key_file"] = args[1]
                else:
                    raise d.arg_err()
            elif name == "tls_insecure_skip_verify":
                if d.next_arg():
                    raise d.arg_err()
                tls()["insecure_skip_verify"] = True
            elif name == "tls_timeout":
                value = duration("bad timeout value '{value}': {err}")
                tls()["handshake_timeout"] = value
            elif name == "tls_trusted_ca_certs":
                args = d.remaining_args()
                if not args:
                    raise d.arg_err()
                tls()["root_ca_pem_files"] = args
            elif name == "tls_server_name":
                value = one_arg()
                tls()["server_name"] = value
            elif name == "tls_renegotiation":
                tls()
                value = one_arg()
                if value not in ("never", "once", "freely"):
                    raise d.arg_err()
                tls()["renegotiation"] = value
            elif name == "tls_except_ports":
                tls()["except_ports"] = d.remaining_args()
                if not tls()["except_ports"]:
                    raise d.arg_err()
            elif name == "keepalive":
                value = one_arg()
                keep_alive()
                if value == "off":
                    keep_alive()["enabled"] = False
                    continue
                try:
                    keep_alive()["idle_timeout"] = parse_caddy_duration(value)
                except ValueError as e:
                    raise d.err(f"bad duration value '{value}': {e}")
            elif name == "keepalive_interval":
                value = duration("bad interval value '{value}': {err}")
                keep_alive()["probe_interval"] = value
            elif name == "keepalive_idle_conns":
                value = integer()
                keep_alive()["max_idle_conns"] = value
            elif name == "keepalive_idle_conns_per_host":
                value = integer()
                keep_alive()["max_idle_conns_per_host"] = value
            elif name == "versions":
                t.versions = d.remaining_args()
                if not t.versions:
                    raise d.arg_err()
            elif name == "compression":
                if d.next_arg() and d.val() == "off":
                    t.compression = False
            elif name == "max_conns_per_host":
                t.max_conns_per_host = integer()
            else:
                raise d.err(f"unrecognized subdirective {d.val()}")
    return t


class FastCGITransport:
    """fastcgi.Transport while it is being parsed."""

    go_type = "*fastcgi.Transport"

    def __init__(self) -> None:
        self.root = ""
        self.split_path: list[str] = []
        self.resolve_root_symlink = False
        self.env: GoMap | None = None
        self.dial_timeout = 0
        self.read_timeout = 0
        self.write_timeout = 0
        self.capture_stderr = False

    def to_json(self) -> JSONObject:
        return _struct(
            ("root", self.root),
            ("split_path", self.split_path),
            ("resolve_root_symlink", self.resolve_root_symlink),
            ("env", self.env),
            ("dial_timeout", self.dial_timeout),
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
            ("capture_stderr", self.capture_stderr),
        )


def parse_fastcgi_transport(d: Dispenser, ctx: _Context) -> FastCGITransport:
    """``transport fastcgi { ... }``."""
    t = FastCGITransport()
    while d.next():
        while d.next_block(0):
            name = d.val()
            if name == "root":
                if not d.next_arg():
                    raise d.arg_err()
                t.root = d.val()
            elif name == "split":
                t.split_path = d.remaining_args()
                if not t.split_path:
                    raise d.arg_err()
            elif name == "env":
                args = d.remaining_args()
                if len(args) != 2:
                    raise d.arg_err()
                if t.env is None:
                    t.env = GoMap()
                t.env[args[0]] = args[1]
            elif name == "resolve_root_symlink":
                if d.next_arg():
                    raise d.arg_err()
                t.resolve_root_symlink = True
            elif name in ("dial_timeout", "read_timeout", "write_timeout"):
                if not d.next_arg():
                    raise d.arg_err()
                try:
                    setattr(t, name, parse_caddy_duration(d.val()))
                except ValueError as e:
                    raise d.err(f"bad timeout value {d.val()}: {e}")
            elif name == "capture_stderr":
                if d.next_arg():
                    raise d.arg_err()
                t.capture_stderr = True
            else:
                raise d.err(f"unrecognized subdirective {d.val()}")
    return t


TRANSPORTS: dict[str, ModuleParser] = {
    "http": parse_http_transport,
    "fastcgi": parse_fastcgi_transport,
}

# -- dynamic upstream sources


_DNS_SOURCE_NAMES = {"srv": ("service", "proto", "name"), "a": ("name", "port")}


def _parse_dns_source(d: Dispenser, kind: str) -> JSONObject:
    """``dynamic srv`` and ``dynamic a``, which share most options."""
    names = _DNS_SOURCE_NAMES[kind]
    fields: dict[str, Any] = {}
    while d.next():
        args = d.remaining_args()
        if len(args) > len(names) - (kind == "srv") * 2:
            raise d.arg_err()
        if args:
            fields["name"] = args[0]
            if len(args) == 2:
                fields["port"] = args[1]
        while d.next_block(0):
            option = d.val()
            if option in names:
                if not d.next_arg():
                    raise d.arg_err()
                if fields.get(option):
                    prefix = "srv" if kind == "srv" else "a"
                    raise d.err(f"{prefix} {option} has already been specified")
                fields[option] = d.val()
            elif option == "refresh":
                if not d.next_arg():
                    raise d.arg_err()
                try:
                    fields["refresh"] = parse_caddy_duration(d.val())
                except ValueError as e:
                    raise d.err(f"parsing refresh interval duration: {e}")
            elif option == "resolvers":
                addresses = d.remaining_args()
                fields["resolver"] = {"addresses": addresses}
                if not addresses:
                    raise d.err("must specify at least one resolver address")
            elif option in ("dial_timeout", "dial_fallback_delay"):
                if not d.next_arg():
                    raise d.arg_err()
                try:
                    fields[option] = parse_caddy_duration(d.val())
                except ValueError as e:
                    what = "timeout" if option == "dial_timeout" else "delay"
                    raise d.err(f"bad {what} value '{d.val()}': {e}")
            elif option == "grace_period" and kind == "srv":  # Caddy 2.8
                if not d.next_arg():
                    raise d.arg_err()
                try:
                    fields["grace_period"] = parse_caddy_duration(d.val())
                except ValueError as e:
                    raise d.err(f"bad grace period value '{d.val()}': {e}")
            elif option == "versions" and kind == "a":  # Caddy 2.7
                versions = d.remaining_args()
                if not versions:
                    raise d.err("must specify at least one version")
                chosen = fields.setdefault("versions", {})
                for version in versions:
                    if version not in ("ipv4", "ipv6"):
                        raise d.err(f"unsupported version: '{version}'")
                    chosen[version] = True
            else:
                # Caddy says "srv" for both sources
                raise d.err(f"unrecognized srv option '{d.val()}'")
    order = names + ("refresh", "resolver", "dial_timeout", "dial_fallback_delay", "grace_period")
    if kind == "a" and "versions" in fields:
        fields["versions"] = _struct(*((v, fields["versions"].get(v)) for v in ("ipv4", "ipv6")))
        order += ("versions",)
    return _struct(*((key, fields.get(key)) for key in order))


def parse_srv_source(d: Dispenser, ctx: _Context) -> JSONObject:
    return _parse_dns_source(d, "srv")


def parse_a_source(d: Dispenser, ctx: _Context) -> JSONObject:
    return _parse_dns_source(d, "a")


def parse_multi_source(d: Dispenser, ctx: _Context) -> JSONObject:
    sources: list[GoMap] = []
    while d.next():
        if d.next_arg():
            raise d.arg_err()
        nesting = d.nesting
        while d.next_block(nesting):
            name = d.val()
            source = unmarshal_module(d, "http.reverse_proxy.upstreams", name, UPSTREAM_SOURCES, ctx)
            sources.append(module_object(source, "source", name))
    return _struct(("sources", sources))


UPSTREAM_SOURCES: dict[str, ModuleParser] = {
    "srv": parse_srv_source,
    "a": parse_a_source,
    "multi": parse_multi_source,
}

# -- selection policies


def _policy_without_args(d: Dispenser, ctx: _Context) -> JSONObject:
    while d.next():
        if d.next_arg():
            raise d.arg_err()
    return {}


def _policy_random_choose(d: Dispenser, ctx: _Context) -> JSONObject:
    choose = 0
    while d.next():
        if not d.next_arg():
            raise d.arg_err()
        try:
            choose = go_atoi(d.val())
        except ValueError as e:
            raise d.err(f"invalid choice value '{d.val()}': {e}")
    return _struct(("choose", choose))


def _fallback_option(d: Dispenser, ctx: _Context, current: GoMap | None) -> GoMap:
    """``fallback <policy> [<args>] [{…}]``, the cursor on ``fallback`` (Caddy 2.7)."""
    if not d.next_arg():
        raise d.arg_err()
    if current is not None:
        raise d.err("fallback selection policy already specified")
    name = d.val()
    policy = unmarshal_module(d, "http.reverse_proxy.selection_policies", name, SELECTION_POLICIES, ctx)
    return module_object(policy, "policy", name)


def _policy_fallback(d: Dispenser, ctx: _Context) -> GoMap | None:
    """The ``{ fallback <policy> }`` block of ``header`` and ``query`` (Caddy 2.7)."""
    fallback = None
    while d.next_block(0):
        if d.val() != "fallback":
            raise d.err(f"unrecognized option '{d.val()}'")
        fallback = _fallback_option(d, ctx, fallback)
    return fallback


def _policy_header(d: Dispenser, ctx: _Context) -> JSONObject:
    """``header <field> [{ fallback <policy> }]`` (the block from Caddy 2.7)."""
    d.next()
    if not d.next_arg():
        raise d.arg_err()
    field = d.val()
    # Caddy 2.6.2 reads further arguments in pairs, the last one being the field
    while d.next_arg():
        if not d.next_arg():
            raise d.arg_err()
        field = d.val()
    return _struct(("field", field), ("fallback", _policy_fallback(d, ctx)))


def _policy_cookie(d: Dispenser, ctx: _Context) -> JSONObject:
    """``cookie [<name> [<secret>]] [{ fallback <policy>; max_age <duration> }]``.

    The block is newer than 2.6.2: ``fallback`` from Caddy 2.7, ``max_age`` from 2.9.
    """
    args = d.remaining_args()
    if len(args) not in (1, 2, 3):
        raise d.arg_err()
    name = args[1] if len(args) > 1 else ""
    secret = args[2] if len(args) > 2 else ""
    fallback = None
    max_age = 0
    while d.next_block(0):
        option = d.val()
        if option == "fallback":
            fallback = _fallback_option(d, ctx, fallback)
        elif option == "max_age":
            if not d.next_arg():
                raise d.arg_err()
            if max_age:
                raise d.err("cookie max_age already specified")
            try:
                max_age = parse_caddy_duration(d.val())
            except ValueError:
                raise d.err(f"invalid duration: {d.val()}") from None
            if max_age <= 0:
                raise d.err(f"invalid duration: {d.val()}, max_age should be non-zero and positive")
            if d.next_arg():
                raise d.arg_err()
        else:
            raise d.err(f"unrecognized option '{option}'")
    return _struct(("name", name), ("secret", secret), ("max_age", max_age), ("fallback", fallback))


def _policy_client_ip_hash(d: Dispenser, ctx: _Context) -> JSONObject:
    """Caddy 2.7: hash of the client IP (trusted proxies considered)."""
    d.next()
    if d.next_arg():
        raise d.arg_err()
    return {}


def _policy_query(d: Dispenser, ctx: _Context) -> JSONObject:
    """Caddy 2.7: ``query <key> [{ fallback <policy> }]``."""
    d.next()
    if not d.next_arg():
        raise d.arg_err()
    key = d.val()
    return _struct(("key", key), ("fallback", _policy_fallback(d, ctx)))


def _policy_weighted_round_robin(d: Dispenser, ctx: _Context) -> JSONObject:
    """Caddy 2.7: ``weighted_round_robin <weight...>``, one weight per upstream."""
    d.next()
    args = d.remaining_args()
    if not args:
        raise d.arg_err()
    weights = []
    for weight in args:
        try:
            value = go_atoi(weight)
        except ValueError as e:
            raise d.err(f"invalid weight value '{weight}': {e}")
        if value < 0:
            raise d.err(f"invalid weight value '{weight}': weight should be non-negative")
        weights.append(value)
    return _struct(("weights", weights))


SELECTION_POLICIES: dict[str, ModuleParser] = {
    "random": _policy_without_args,
    "random_choose": _policy_random_choose,
    "least_conn": _policy_without_args,
    "round_robin": _policy_without_args,
    "first": _policy_without_args,
    "ip_hash": _policy_without_args,
    "uri_hash": _policy_without_args,
    "header": _policy_header,
    "cookie": _policy_cookie,
    "client_ip_hash": _policy_client_ip_hash,
    "query": _policy_query,
    "weighted_round_robin": _policy_weighted_round_robin,
}


def _status_code(text: str) -> int:
    """``404`` or a class like ``4xx`` (→ 4)."""
    if len(text) == 3 and text.endswith("xx"):
        text = text[:1]
    return go_atoi(text)


# ---------------------------------------------------------------------------
# reverse_proxy

_UNNECESSARY_HEADER_UP = (
    ("host", ("{hostport}", "{http.request.hostport}"), "Host"),
    (
        "x-forwarded-for",
        ("{remote}", "{http.request.remote}", "{remote_host}", "{http.request.remote.host}"),
        "X-Forwarded-For",
    ),
    ("x-forwarded-proto", ("{scheme}", "{http.request.scheme}"), "X-Forwarded-Proto"),
    (
        "x-forwarded-host",
        ("{host}", "{http.request.host}", "{hostport}", "{http.request.hostport}"),
        "X-Forwarded-Host",
    ),
)


class ReverseProxyConfig:
    """reverseproxy.Handler while its Caddyfile tokens are read.

    ``parse`` is Caddy's UnmarshalCaddyfile, ``finalize`` its
    FinalizeUnmarshalCaddyfile (``handle_response`` routes need the
    helper), ``to_json`` the handler's JSON module object.
    """

    def __init__(self, helper: Helper) -> None:
        self.helper = helper
        self.ctx = _Context(helper)
        self.transport_raw: JSONObject | None = None
        self.load_balancing: JSONObject | None = None
        self.health_checks: JSONObject | None = None
        self.upstreams: list[JSONObject] = []
        self.dynamic_upstreams: JSONObject | None = None
        self.flush_interval = 0
        self.trusted_proxies: list[str] = []
        self.headers: JSONObject | None = None
        self.buffer_requests = False
        self.buffer_responses = False
        self.max_buffer_size = 0
        self.stream_timeout = 0
        self.stream_close_delay = 0
        self.rewrite: JSONObject | None = None
        self.handle_response: list[JSONObject] = []
        self._response_matchers: dict[str, JSONObject] = {}
        self._handle_response_segments: list[Dispenser] = []
        self._srv_upstreams: list[tuple[str, Token]] = []

    # -- pieces created on first use, as Caddy's pointers are

    def _lb(self) -> JSONObject:
        if self.load_balancing is None:
            self.load_balancing = {}
        return self.load_balancing

    def _active(self) -> JSONObject:
        if self.health_checks is None:
            self.health_checks = {}
        return self.health_checks.setdefault("active", {})

    def _passive(self) -> JSONObject:
        if self.health_checks is None:
            self.health_checks = {}
        return self.health_checks.setdefault("passive", {})

    def _header_ops(self, which: str) -> JSONObject:
        if self.headers is None:
            self.headers = {}
        return self.headers.setdefault(which, {})

    def _rewrite(self) -> JSONObject:
        if self.rewrite is None:
            self.rewrite = {}
        return self.rewrite

    # -- UnmarshalCaddyfile

    def parse(self, d: Dispenser) -> None:
        common_scheme = ""
        transport: Any = None
        transport_name = ""

        def append_upstream(address: str) -> None:
            nonlocal common_scheme
            is_srv = address.startswith("srv+")
            if is_srv:
                address = address[len("srv+") :]
            try:
                dial, scheme = parse_upstream_dial_address(address)
            except ValueError as e:
                raise d.err(str(e))
            if common_scheme and scheme != common_scheme:
                raise d.err(
                    "for now, all proxy upstreams must use the same scheme (transport protocol); "
                    f"expecting '{common_scheme}://' but got '{scheme}://'"
                )
            common_scheme = scheme
            if is_srv:
                try:
                    dial = split_host_port(dial)[0]
                except ValueError:
                    pass
                self.upstreams.append({"lookup_srv": dial})
                return
            srv_name = _srv_form_name(address)
            if srv_name is not None:
                self.ctx.warn(
                    d,
                    f"upstream '{address}' has the form of a DNS SRV name, so txcaddy looks up "
                    f"its SRV records; Caddy spells this 'dynamic srv {srv_name}' (Caddy itself "
                    f"would dial '{dial}')",
                )
                self._srv_upstreams.append((srv_name, d.token()))
                return
            self.upstreams.append({"dial": dial})

        def one_arg() -> str:
            if not d.next_arg():
                raise d.arg_err()
            return d.val()

        def duration(message: str, *, plain_int: bool = False) -> int:
            value = one_arg()
            if plain_int:
                try:
                    return go_atoi(value)
                except ValueError:
                    pass
            try:
                return parse_caddy_duration(value)
            except ValueError as e:
                raise d.err(message.format(value=value, err=e))

        def integer(message: str) -> int:
            value = one_arg()
            try:
                return go_atoi(value)
            except ValueError as e:
                raise d.err(message.format(value=value, err=e))

        while d.next():
            for upstream in d.remaining_args():
                append_upstream(upstream)

            while d.next_block(0):
                name = d.val()
                if name.startswith(MATCHER_PREFIX):
                    parse_named_response_matcher(d.new_from_next_segment(), self._response_matchers)
                    continue

                if name == "to":
                    args = d.remaining_args()
                    if not args:
                        raise d.arg_err()
                    for upstream in args:
                        append_upstream(upstream)

                elif name == "dynamic":
                    if not d.next_arg():
                        raise d.arg_err()
                    # Caddy 2.6.2 checks the provisioned field here, which is never
                    # set while parsing: a second "dynamic" replaces the first.
                    source_name = d.val()
                    source = unmarshal_module(
                        d, "http.reverse_proxy.upstreams", source_name, UPSTREAM_SOURCES, self.ctx
                    )
                    self.dynamic_upstreams = module_object(source, "source", source_name)

                elif name == "lb_policy":
                    if not d.next_arg():
                        raise d.arg_err()
                    if (
                        self.load_balancing is not None
                        and "selection_policy" in self.load_balancing
                    ):
                        raise d.err("load balancing selection policy already specified")
                    policy_name = d.val()
                    policy = unmarshal_module(
                        d,
                        "http.reverse_proxy.selection_policies",
                        policy_name,
                        SELECTION_POLICIES,
                        self.ctx,
                    )
                    self._lb()["selection_policy"] = module_object(policy, "policy", policy_name)

                elif name == "lb_retries":
                    retries = integer("bad lb_retries number '{value}': {err}")
                    self._lb()["retries"] = retries

                elif name == "lb_try_duration":
                    self._lb()["try_duration"] = duration("bad duration value {value}: {err}")

                elif name == "lb_try_interval":
                    self._lb()["try_interval"] = duration("bad interval value '{value}': {err}")

                elif name == "lb_retry_match":
                    try:
                        matcher_set = parse_nested_matcher_set(d)
                    except ConfigError as e:
                        raise d.err(f"failed to parse lb_retry_match: {e}")
                    self._lb().setdefault("retry_match", []).append(matcher_set)

                elif name == "health_uri":
                    self._active()["uri"] = one_arg()

                elif name == "health_path":
                    self._active()["path"] = one_arg()
                    self.ctx.warn(
                        d,
                        "the 'health_path' subdirective is deprecated, please use 'health_uri' instead!",
                    )

                elif name == "health_port":
                    self._active()["port"] = integer("bad port number '{value}': {err}")

                elif name == "health_headers":
                    health_headers = GoMap()
                    nesting = d.nesting
                    while d.next_block(nesting):
                        key = d.val()
                        health_headers[key] = d.remaining_args() or [""]
                    self._active()["headers"] = health_headers

                elif name == "health_interval":
                    self._active()["interval"] = duration("bad interval value {value}: {err}")

                elif name == "health_timeout":
                    self._active()["timeout"] = duration("bad timeout value {value}: {err}")

                elif name == "health_status":
                    value = one_arg()
                    try:
                        self._active()["expect_status"] = _status_code(value)
                    except ValueError as e:
                        raise d.err(f"bad status value '{value}': {e}")

                elif name == "health_body":
                    self._active()["expect_body"] = one_arg()

                elif name == "health_passes":  # Caddy 2.8
                    self._active()["passes"] = integer("invalid passes count '{value}': {err}")

                elif name == "health_fails":  # Caddy 2.8
                    self._active()["fails"] = integer("invalid fails count '{value}': {err}")

                elif name == "max_fails":
                    self._passive()["max_fails"] = integer(
                        "invalid maximum fail count '{value}': {err}"
                    )

                elif name == "fail_duration":
                    self._passive()["fail_duration"] = duration(
                        "bad duration value '{value}': {err}"
                    )

                elif name == "unhealthy_request_count":
                    self._passive()["unhealthy_request_count"] = integer(
                        "invalid maximum connection count '{value}': {err}"
                    )

                elif name == "unhealthy_status":
                    args = d.remaining_args()
                    if not args:
                        raise d.arg_err()
                    passive = self._passive()
                    for arg in args:
                        try:
                            code = _status_code(arg)
                        except ValueError as e:
                            raise d.err(f"bad status value '{d.val()}': {e}")
                        passive.setdefault("unhealthy_status", []).append(code)

                elif name == "unhealthy_latency":
                    self._passive()["unhealthy_latency"] = duration(
                        "bad duration value '{value}': {err}"
                    )

                elif name == "flush_interval":
                    self.flush_interval = duration(
                        "bad duration value '{value}': {err}", plain_int=True
                    )

                elif name == "stream_timeout":  # Caddy 2.7
                    self.stream_timeout = duration(
                        "bad duration value '{value}': {err}", plain_int=True
                    )

                elif name == "stream_close_delay":  # Caddy 2.7
                    self.stream_close_delay = duration(
                        "bad duration value '{value}': {err}", plain_int=True
                    )

                elif name == "buffer_requests":
                    if d.next_arg():
                        raise d.arg_err()
                    self.buffer_requests = True

                elif name == "buffer_responses":
                    if d.next_arg():
                        raise d.arg_err()
                    self.buffer_responses = True

                elif name == "max_buffer_size":
                    value = one_arg()
                    try:
                        size = parse_bytes(value)
                    except ValueError as e:
                        raise d.err(f"invalid byte size '{value}': {e}")
                    if d.next_arg():
                        raise d.arg_err()
                    self.max_buffer_size = size if size < 2**63 else size - 2**64

                elif name == "trusted_proxies":
                    while d.next_arg():
                        if d.val() == "private_ranges":
                            self.trusted_proxies.extend(PRIVATE_RANGES)
                            continue
                        self.trusted_proxies.append(d.val())

                elif name == "header_up":
                    ops = self._header_ops("request")
                    args = d.remaining_args()
                    if len(args) not in (1, 2, 3):
                        raise d.arg_err()
                    if len(args) == 2:
                        for lower_field, values, shown in _UNNECESSARY_HEADER_UP:
                            if args[0].lower() == lower_field and args[1] in values:
                                self.ctx.warn(
                                    d,
                                    f"Unnecessary header_up {shown}: the reverse proxy's default "
                                    "behavior is to pass headers to the upstream",
                                )
                    self._header_op(d, ops, args)

                elif name == "header_down":
                    ops = self._header_ops("response")
                    args = d.remaining_args()
                    if len(args) not in (1, 2, 3):
                        raise d.arg_err()
                    self._header_op(d, ops, args)

                elif name == "method":
                    value = one_arg()
                    self._rewrite()["method"] = value
                    if d.next_arg():
                        raise d.arg_err()

                elif name == "rewrite":
                    value = one_arg()
                    self._rewrite()["uri"] = value
                    if d.next_arg():
                        raise d.arg_err()

                elif name == "transport":
                    if not d.next_arg():
                        raise d.arg_err()
                    if self.transport_raw is not None:
                        raise d.err("transport already specified")
                    transport_name = d.val()
                    transport = unmarshal_module(
                        d, "http.reverse_proxy.transport", transport_name, TRANSPORTS, self.ctx
                    )

                elif name == "handle_response":
                    self._handle_response_segments.append(d.new_from_next_segment())

                elif name == "replace_status":
                    args = d.remaining_args()
                    if len(args) not in (1, 2):
                        raise d.err(
                            "must have one or two arguments: an optional response matcher, "
                            "and a status code"
                        )
                    handler: JSONObject = {}
                    if len(args) == 2:
                        handler["match"] = self._find_response_matcher(d, args[0])
                    handler["status_code"] = args[-1]
                    if d.next_block(1):
                        raise d.err(
                            "cannot define routes for 'replace_status', use 'handle_response' instead."
                        )
                    self.handle_response.append(handler)

                else:
                    raise d.err(f"unrecognized subdirective {d.val()}")

        self._finish_srv_upstreams()

        if common_scheme in ("https", "h2c") and transport is None:
            transport = HTTPTransport()
            transport_name = "http"

        if transport is not None:
            if isinstance(transport, HTTPTransport):
                if common_scheme == "https" and not transport.tls_enabled():
                    transport.tls = {}
                if common_scheme == "http" and transport.tls_enabled():
                    raise d.err(
                        "upstream address scheme is HTTP but transport is configured for "
                        "HTTP+TLS (HTTPS)"
                    )
                if common_scheme == "h2c":
                    transport.versions = ["h2c", "2"]
            elif common_scheme == "https":
                raise d.err(
                    "upstreams are configured for HTTPS but transport module does not support "
                    f"TLS: {transport.go_type}"
                )
            transport_json = transport.to_json()
            if not (isinstance(transport, HTTPTransport) and not transport_json):
                self.transport_raw = module_object(transport_json, "protocol", transport_name)

    def _header_op(self, d: Dispenser, ops: JSONObject, args: list[str]) -> None:
        value = args[1] if len(args) > 1 else ""
        replacement = args[2] if len(args) > 2 else ""
        try:
            apply_header_op(ops, args[0], value, replacement)
        except ValueError as e:
            raise d.err(str(e))

    def _find_response_matcher(self, d: Dispenser, name: str) -> JSONObject:
        if not name.startswith(MATCHER_PREFIX):
            raise d.err("must use a named response matcher, starting with '@'")
        if name not in self._response_matchers:
            raise d.err(f"no named response matcher defined with name '{name[1:]}'")
        return self._response_matchers[name]

    def _finish_srv_upstreams(self) -> None:
        """txcaddy: port-less ``_service._proto.name`` upstreams become ``dynamic srv``."""
        if not self._srv_upstreams:
            return
        name, token = self._srv_upstreams[0]
        at_token = Dispenser([token])
        at_token.next()
        if self.dynamic_upstreams is not None:
            raise at_token.err(
                f"upstream '{name}' is looked up as 'dynamic srv {name}', but dynamic "
                "upstreams are already specified"
            )
        if self.upstreams:
            raise at_token.err(
                f"upstream '{name}' is looked up as 'dynamic srv {name}' and cannot be "
                "mixed with static upstreams"
            )
        sources = [
            module_object({"name": srv}, "source", "srv") for srv, _ in self._srv_upstreams
        ]
        if len(sources) == 1:
            self.dynamic_upstreams = sources[0]
        else:
            self.dynamic_upstreams = module_object({"sources": sources}, "source", "multi")

    # -- FinalizeUnmarshalCaddyfile

    def finalize(self) -> None:
        from txcaddy.caddyfile.httptype import parse_segment_as_subroute

        for d in self._handle_response_segments:
            d.next()
            args = d.remaining_args()
            if len(args) == 2:
                raise d.err(
                    "configuring 'handle_response' for status code replacement is no longer "
                    "supported. Use 'replace_status' instead."
                )
            if len(args) > 1:
                raise d.err(f"too many arguments for 'handle_response': [{' '.join(args)}]")
            matcher = self._find_response_matcher(d, args[0]) if args else None
            subroute = parse_segment_as_subroute(
                self.helper.with_dispenser(d.new_from_next_segment())
            )
            if not isinstance(subroute, Subroute):
                raise self.helper.err("segment was not parsed as a subroute")
            handler: JSONObject = {}
            if matcher is not None:
                handler["match"] = matcher
            handler["routes"] = list(subroute.routes)
            self.handle_response.append(handler)
        with_matchers = [h for h in self.handle_response if "match" in h]
        without = [h for h in self.handle_response if "match" not in h]
        self.handle_response = with_matchers + without
        self._handle_response_segments = []
        self._response_matchers = {}

    # -- JSON

    def to_json(self) -> GoMap:
        """The handler as Caddy encodes it (zero fields omitted, keys sorted)."""
        load_balancing = None
        if self.load_balancing is not None:
            load_balancing = _struct(
                *((key, self.load_balancing.get(key)) for key in _LOAD_BALANCING_FIELDS)
            )
        health_checks = None
        if self.health_checks is not None:
            health_checks = {}
            for kind, fields in (("active", _ACTIVE_FIELDS), ("passive", _PASSIVE_FIELDS)):
                if kind in self.health_checks:
                    checks = self.health_checks[kind]
                    health_checks[kind] = _struct(*((key, checks.get(key)) for key in fields))
        rewrite = None
        if self.rewrite is not None:
            rewrite = _struct(
                ("method", self.rewrite.get("method")), ("uri", self.rewrite.get("uri"))
            )
        handle_response = []
        for entry in self.handle_response:
            response_handler: JSONObject = {}
            if entry.get("match") is not None:
                response_handler["match"] = entry["match"]
            if entry.get("status_code"):
                response_handler["status_code"] = weak_string(entry["status_code"])
            _put(response_handler, "routes", entry.get("routes"))
            handle_response.append(response_handler)
        handler = _struct(
            ("transport", self.transport_raw),
            ("load_balancing", load_balancing),
            ("health_checks", health_checks),
            ("upstreams", [_struct(*upstream.items()) for upstream in self.upstreams]),
            ("dynamic_upstreams", self.dynamic_upstreams),
            ("flush_interval", self.flush_interval),
            ("trusted_proxies", self.trusted_proxies),
            ("headers", self.headers),
            ("buffer_requests", self.buffer_requests),
            ("buffer_responses", self.buffer_responses),
            ("max_buffer_size", self.max_buffer_size),
            ("stream_timeout", self.stream_timeout),
            ("stream_close_delay", self.stream_close_delay),
            ("rewrite", rewrite),
            ("handle_response", handle_response),
        )
        return module_object(handler, "handler", "reverse_proxy")


_LOAD_BALANCING_FIELDS = (
    "selection_policy",
    "retries",
    "try_duration",
    "try_interval",
    "retry_match",
)
_ACTIVE_FIELDS = (
    "path",
    "uri",
    "port",
    "headers",
    "interval",
    "timeout",
    "passes",
    "fails",
    "max_size",
    "expect_status",
    "expect_body",
)
_PASSIVE_FIELDS = (
    "fail_duration",
    "max_fails",
    "unhealthy_request_count",
    "unhealthy_status",
    "unhealthy_latency",
)


def _new_config(h: Helper) -> ReverseProxyConfig:
    return ReverseProxyConfig(h)


@handler_directive("reverse_proxy")
def parse_reverse_proxy(h: Helper) -> JSONObject:
    """``reverse_proxy [<matcher>] [<upstreams...>] { ... }``."""
    config = _new_config(h)
    config.parse(h.dispenser)
    config.finalize()
    return config.to_json()


@handler_directive("copy_response")
def parse_copy_response(h: Helper) -> JSONObject:
    """``copy_response [<matcher>] [<status>] { status <status> }`` (inside handle_response)."""
    d: Dispenser = h.dispenser
    status = ""
    while d.next():
        args = d.remaining_args()
        if len(args) == 1:
            try:
                number = go_atoi(args[0])
            except ValueError:
                number = 0
            if number > 0:
                status = args[0]
                break
        while d.next_block(0):
            if d.val() == "status":
                if not d.next_arg():
                    raise d.arg_err()
                status = d.val()
            else:
                raise d.err(f"unrecognized subdirective '{d.val()}'")
    handler: JSONObject = {}
    if status:
        handler["status_code"] = weak_string(status)
    return module_object(handler, "handler", "copy_response")


@handler_directive("copy_response_headers")
def parse_copy_response_headers(h: Helper) -> JSONObject:
    """``copy_response_headers [<matcher>] { include <fields...>; exclude <fields...> }``."""
    d: Dispenser = h.dispenser
    include: list[str] = []
    exclude: list[str] = []
    while d.next():
        if d.remaining_args():
            raise d.arg_err()
        while d.next_block(0):
            if d.val() == "include":
                include.extend(d.remaining_args())
            elif d.val() == "exclude":
                exclude.extend(d.remaining_args())
            else:
                raise d.err(f"unrecognized subdirective '{d.val()}'")
    handler = _struct(("include", include), ("exclude", exclude))
    return module_object(handler, "handler", "copy_response_headers")


# ---------------------------------------------------------------------------
# php_fastcgi


def _delete_args(dispenser: Dispenser, args: list[str]) -> None:
    """Remove a subdirective and its arguments (the cursor is on the last argument)."""
    dispenser.delete()
    for _ in args:
        dispenser.delete()


@directive("php_fastcgi")
def parse_php_fastcgi(h: Helper) -> list[ConfigValue]:
    """``php_fastcgi``: try_files-style rewrites plus reverse_proxy over FastCGI."""
    if not h.next():
        raise h.arg_err()
    transport = FastCGITransport()
    extensions = [".php"]
    index_file = "index.php"
    try_files: list[str] = []

    user_matcher_set = h.extract_matcher_set()
    dispenser = h.new_from_next_segment()

    while dispenser.next():
        while dispenser.next_block(0):
            if dispenser.nesting != 1:
                continue
            name = dispenser.val()
            if name == "root":
                if not dispenser.next_arg():
                    raise dispenser.arg_err()
                transport.root = dispenser.val()
                dispenser.delete()
                dispenser.delete()
            elif name == "split":
                extensions = dispenser.remaining_args()
                _delete_args(dispenser, extensions)
                if not extensions:
                    raise dispenser.arg_err()
            elif name == "env":
                args = dispenser.remaining_args()
                _delete_args(dispenser, args)
                if len(args) != 2:
                    raise dispenser.arg_err()
                if transport.env is None:
                    transport.env = GoMap()
                transport.env[args[0]] = args[1]
            elif name == "index":
                args = dispenser.remaining_args()
                _delete_args(dispenser, args)
                if len(args) != 1:
                    raise dispenser.arg_err()
                index_file = args[0]
            elif name == "try_files":
                args = dispenser.remaining_args()
                _delete_args(dispenser, args)
                if not args:
                    raise dispenser.arg_err()
                try_files = args
            elif name == "resolve_root_symlink":
                args = dispenser.remaining_args()
                _delete_args(dispenser, args)
                transport.resolve_root_symlink = True
            elif name in ("dial_timeout", "read_timeout", "write_timeout"):
                if not dispenser.next_arg():
                    raise dispenser.arg_err()
                try:
                    setattr(transport, name, parse_caddy_duration(dispenser.val()))
                except ValueError as e:
                    raise dispenser.err(f"bad timeout value {dispenser.val()}: {e}")
                dispenser.delete()
                dispenser.delete()
            elif name == "capture_stderr":
                args = dispenser.remaining_args()
                _delete_args(dispenser, args)
                transport.capture_stderr = True

    dispenser.reset()
    transport.split_path = extensions
    routes: list[Route] = []

    if index_file != "off":
        redirect_matcher = GoMap(
            file={"try_files": ["{http.request.uri.path}/" + index_file]},
            **{"not": [GoMap(path=["*/"])]},
        )
        redirect_handler = module_object(
            {
                "status_code": 308,
                "headers": GoMap(Location=["{http.request.orig_uri.path}/"]),
            },
            "handler",
            "static_response",
        )
        routes.append(Route(handle=[redirect_handler], match=[redirect_matcher]))
        if not try_files:
            try_files = [
                "{http.request.uri.path}",
                "{http.request.uri.path}/" + index_file,
                index_file,
            ]
        rewrite_matcher = GoMap(file={"try_files": try_files, "split_path": extensions})
        rewrite_handler = module_object(
            {"uri": "{http.matchers.file.relative}"}, "handler", "rewrite"
        )
        routes.append(Route(handle=[rewrite_handler], match=[rewrite_matcher]))

    proxy_matcher = GoMap(path=["*" + ext for ext in extensions])
    config = _new_config(h)
    config.transport_raw = module_object(transport.to_json(), "protocol", "fastcgi")
    config.parse(dispenser)
    config.finalize()
    routes.append(Route(handle=[config.to_json()], match=[proxy_matcher]))
    subroute = Subroute(routes=routes)

    if user_matcher_set is not None:
        wrapped = module_object(subroute.to_handler(), "handler", "subroute")
        return [ConfigValue("route", Route(handle=[wrapped], match=[user_matcher_set]))]
    return [ConfigValue("route", subroute)]


# ---------------------------------------------------------------------------
# forward_auth


@directive("forward_auth")
def parse_forward_auth(h: Helper) -> list[ConfigValue]:
    """``forward_auth``: ask an auth server first, copy some of its headers, then go on."""
    if not h.next():
        raise h.arg_err()
    user_matcher_set = h.extract_matcher_set()
    dispenser = h.new_from_next_segment()

    config = _new_config(h)
    config.headers = {
        "request": {
            "set": GoMap(
                {
                    "X-Forwarded-Method": ["{http.request.method}"],
                    "X-Forwarded-Uri": ["{http.request.uri}"],
                }
            )
        }
    }
    config.rewrite = {"method": "GET"}
    headers_to_copy: dict[str, str] = {}

    while dispenser.next():
        while dispenser.next_block(0):
            if dispenser.nesting != 1:
                continue
            name = dispenser.val()
            if name == "uri":
                if not dispenser.next_arg():
                    raise dispenser.arg_err()
                config.rewrite["uri"] = dispenser.val()
                dispenser.delete()
                dispenser.delete()
            elif name == "copy_headers":
                args = dispenser.remaining_args()
                had_block = False
                nesting = dispenser.nesting
                while dispenser.next_block(nesting):
                    had_block = True
                    args.append(dispenser.val())
                dispenser.delete()
                if had_block:
                    dispenser.delete()
                    dispenser.delete()
                for _ in args:
                    dispenser.delete()
                for field in args:
                    if ">" in field:
                        parts = field.split(">")
                        headers_to_copy[parts[0]] = parts[1]
                    else:
                        headers_to_copy[field] = field
                if not headers_to_copy:
                    raise dispenser.arg_err()

    dispenser.reset()
    if not config.rewrite.get("uri"):
        raise dispenser.err("the 'uri' subdirective is required")

    copy_set = GoMap()
    for source, target in headers_to_copy.items():
        copy_set[canonical_header_key(target)] = [
            "{http.reverse_proxy.header." + canonical_header_key(source) + "}"
        ]
    copy_handler = module_object({"request": _struct(("set", copy_set))}, "handler", "headers")
    config.handle_response.append(
        {"match": {"status_code": [2]}, "routes": [Route(handle=[copy_handler])]}
    )

    config.parse(dispenser)
    config.finalize()
    route = Route(handle=[config.to_json()])
    if user_matcher_set is not None:
        route.match = [user_matcher_set]
    return [ConfigValue("route", route)]
