"""``transport http`` and ``transport fastcgi`` of ``reverse_proxy``.

The transport is a guest module (``http.reverse_proxy.transport``). After
all subdirectives are read, the upstreams' common scheme adjusts it as
Caddy does: ``https://`` turns TLS on, ``h2c://`` sets the versions, and a
transport that cannot do TLS is refused for ``https://`` upstreams.

txcaddy extensions (DESIGN.md §1): ``transport http`` accepts the tutorial's
``read_buffer_size``, ``write_buffer_size``, ``max_idle_conns`` and
``idle_conn_timeout`` as aliases, each with a warning naming Caddy's
spelling; and ``keepalive_surplus_linger <duration>`` (no Caddy spelling):
how long idle connections beyond ``keepalive_idle_conns_per_host`` are kept
before they are closed (``0``: at once, as Caddy does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from txcaddy.caddyfile._humanize import parse_bytes
from txcaddy.caddyfile.directives._unmarshal import unmarshal_module
from txcaddy.caddyfile.directives.reverseproxy._common import (
    Context,
    ModuleParser,
    SubdirectiveParser,
    duration_arg,
    integer_arg,
    one_arg,
    put,
    struct,
)
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.config.values import parse_caddy_duration

if TYPE_CHECKING:
    from txcaddy.caddyfile.directives.reverseproxy._handler import ReverseProxyConfig


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
        put(out, "resolver", self.resolver)
        if self.tls is not None:
            out["tls"] = struct(*((k, self.tls.get(k)) for k in _TLS_FIELDS))
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
                put(keep_alive, key, self.keep_alive.get(key))
            # txcaddy: written whenever given, since 0 (close at once) differs from unset (1s)
            if "surplus_linger" in self.keep_alive:
                keep_alive["surplus_linger"] = self.keep_alive["surplus_linger"]
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
            put(out, key, getattr(self, key))
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


def parse_http_transport(d: Dispenser, ctx: Context) -> HTTPTransport:
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

    def duration(message: str) -> int:
        return duration_arg(d, message)

    def integer() -> int:
        return integer_arg(d, "bad integer value '{value}': {err}")

    def size(what: str) -> int:
        value = one_arg(d)
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
                tls()["server_name"] = one_arg(d)
            elif name == "tls_renegotiation":
                tls()
                renegotiation = one_arg(d)
                if renegotiation not in ("never", "once", "freely"):
                    raise d.arg_err()
                tls()["renegotiation"] = renegotiation
            elif name == "tls_except_ports":
                tls()["except_ports"] = d.remaining_args()
                if not tls()["except_ports"]:
                    raise d.arg_err()
            elif name == "keepalive":
                idle = one_arg(d)
                keep_alive()
                if idle == "off":
                    keep_alive()["enabled"] = False
                    continue
                try:
                    keep_alive()["idle_timeout"] = parse_caddy_duration(idle)
                except ValueError as e:
                    raise d.err(f"bad duration value '{idle}': {e}")
            elif name == "keepalive_interval":
                value = duration("bad interval value '{value}': {err}")
                keep_alive()["probe_interval"] = value
            elif name == "keepalive_idle_conns":
                value = integer()
                keep_alive()["max_idle_conns"] = value
            elif name == "keepalive_idle_conns_per_host":
                value = integer()
                keep_alive()["max_idle_conns_per_host"] = value
            elif name == "keepalive_surplus_linger":  # txcaddy extension
                value = duration("bad duration value '{value}': {err}")
                if value < 0:
                    raise d.err(f"keepalive_surplus_linger must not be negative: '{d.val()}'")
                keep_alive()["surplus_linger"] = value
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
        return struct(
            ("root", self.root),
            ("split_path", self.split_path),
            ("resolve_root_symlink", self.resolve_root_symlink),
            ("env", self.env),
            ("dial_timeout", self.dial_timeout),
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
            ("capture_stderr", self.capture_stderr),
        )


def parse_fastcgi_transport(d: Dispenser, ctx: Context) -> FastCGITransport:
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


Transport = HTTPTransport | FastCGITransport

TRANSPORTS: dict[str, ModuleParser] = {
    "http": parse_http_transport,
    "fastcgi": parse_fastcgi_transport,
}


def _transport(config: ReverseProxyConfig, d: Dispenser) -> None:
    if not d.next_arg():
        raise d.arg_err()
    if config.transport_raw is not None:
        raise d.err("transport already specified")
    config.transport_name = d.val()
    config.transport = unmarshal_module(
        d, "http.reverse_proxy.transport", config.transport_name, TRANSPORTS, config.ctx
    )


def finish_transport(config: ReverseProxyConfig, d: Dispenser) -> None:
    """Fit the transport to the upstreams' scheme and encode it (Caddy's end of parsing)."""
    transport = config.transport
    transport_name = config.transport_name
    common_scheme = config.common_scheme
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
            config.transport_raw = module_object(transport_json, "protocol", transport_name)


SUBDIRECTIVES: dict[str, SubdirectiveParser] = {
    "transport": _transport,
}
