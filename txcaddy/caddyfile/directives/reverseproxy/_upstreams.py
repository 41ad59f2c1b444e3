"""Upstreams of ``reverse_proxy``: addresses, ``to``, and ``dynamic a|srv|multi``.

An address is read as Caddy 2.6.2 reads it (``parseUpstreamDialAddress``):
all upstreams of a handler must share one scheme, which the transport later
follows. txcaddy extension (DESIGN.md §1): a port-less upstream written as
``_service._proto.name`` becomes a ``dynamic srv`` source, with a warning.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from txcaddy._go.errors import GoError
from txcaddy._go.net import join_host_port, split_host_port
from txcaddy._go.url import URL
from txcaddy.caddyfile.addresses import join_network_address
from txcaddy.caddyfile.directives._unmarshal import unmarshal_module
from txcaddy.caddyfile.directives.reverseproxy._common import (
    Context,
    ModuleParser,
    SubdirectiveParser,
    struct,
)
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.config.values import parse_caddy_duration

if TYPE_CHECKING:
    from txcaddy.caddyfile.directives.reverseproxy._handler import ReverseProxyConfig


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
            url = URL(address)
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
            url = URL(address)
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
# Static upstreams


def append_upstream(config: ReverseProxyConfig, d: Dispenser, address: str) -> None:
    """One upstream from the directive's arguments or ``to``; checks the common scheme."""
    is_srv = address.startswith("srv+")
    if is_srv:
        address = address[len("srv+") :]
    try:
        dial, scheme = parse_upstream_dial_address(address)
    except ValueError as e:
        raise d.err(str(e))
    if config.common_scheme and scheme != config.common_scheme:
        raise d.err(
            "for now, all proxy upstreams must use the same scheme (transport protocol); "
            f"expecting '{config.common_scheme}://' but got '{scheme}://'"
        )
    config.common_scheme = scheme
    if is_srv:
        try:
            dial = split_host_port(dial)[0]
        except ValueError:
            pass
        config.upstreams.append({"lookup_srv": dial})
        return
    srv_name = _srv_form_name(address)
    if srv_name is not None:
        config.ctx.warn(
            d,
            f"upstream '{address}' has the form of a DNS SRV name, so txcaddy looks up "
            f"its SRV records; Caddy spells this 'dynamic srv {srv_name}' (Caddy itself "
            f"would dial '{dial}')",
        )
        config.srv_upstreams.append((srv_name, d.token()))
        return
    config.upstreams.append({"dial": dial})


def _to(config: ReverseProxyConfig, d: Dispenser) -> None:
    args = d.remaining_args()
    if not args:
        raise d.arg_err()
    for upstream in args:
        append_upstream(config, d, upstream)


def finish_srv_upstreams(config: ReverseProxyConfig) -> None:
    """txcaddy: port-less ``_service._proto.name`` upstreams become ``dynamic srv``."""
    if not config.srv_upstreams:
        return
    name, token = config.srv_upstreams[0]
    at_token = Dispenser([token])
    at_token.next()
    if config.dynamic_upstreams is not None:
        raise at_token.err(
            f"upstream '{name}' is looked up as 'dynamic srv {name}', but dynamic "
            "upstreams are already specified"
        )
    if config.upstreams:
        raise at_token.err(
            f"upstream '{name}' is looked up as 'dynamic srv {name}' and cannot be "
            "mixed with static upstreams"
        )
    sources = [module_object({"name": srv}, "source", "srv") for srv, _ in config.srv_upstreams]
    if len(sources) == 1:
        config.dynamic_upstreams = sources[0]
    else:
        config.dynamic_upstreams = module_object({"sources": sources}, "source", "multi")


# ---------------------------------------------------------------------------
# Dynamic upstream sources (guest modules of http.reverse_proxy.upstreams)


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
        fields["versions"] = struct(*((v, fields["versions"].get(v)) for v in ("ipv4", "ipv6")))
        order += ("versions",)
    return struct(*((key, fields.get(key)) for key in order))


def parse_srv_source(d: Dispenser, ctx: Context) -> JSONObject:
    """``dynamic srv [<name>] { ... }``."""
    return _parse_dns_source(d, "srv")


def parse_a_source(d: Dispenser, ctx: Context) -> JSONObject:
    """``dynamic a [<name> <port>] { ... }``."""
    return _parse_dns_source(d, "a")


def parse_multi_source(d: Dispenser, ctx: Context) -> JSONObject:
    """``dynamic multi { <source> ... }``: every nested source, in order."""
    sources: list[GoMap] = []
    while d.next():
        if d.next_arg():
            raise d.arg_err()
        nesting = d.nesting
        while d.next_block(nesting):
            name = d.val()
            source = unmarshal_module(
                d, "http.reverse_proxy.upstreams", name, UPSTREAM_SOURCES, ctx
            )
            sources.append(module_object(source, "source", name))
    return struct(("sources", sources))


UPSTREAM_SOURCES: dict[str, ModuleParser] = {
    "srv": parse_srv_source,
    "a": parse_a_source,
    "multi": parse_multi_source,
}


def _dynamic(config: ReverseProxyConfig, d: Dispenser) -> None:
    if not d.next_arg():
        raise d.arg_err()
    # Caddy 2.6.2 checks the provisioned field here, which is never
    # set while parsing: a second "dynamic" replaces the first.
    source_name = d.val()
    source = unmarshal_module(
        d, "http.reverse_proxy.upstreams", source_name, UPSTREAM_SOURCES, config.ctx
    )
    config.dynamic_upstreams = module_object(source, "source", source_name)


SUBDIRECTIVES: dict[str, SubdirectiveParser] = {
    "to": _to,
    "dynamic": _dynamic,
}
