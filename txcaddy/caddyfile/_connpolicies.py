"""One server's TLS side: HTTP and HTTPS cannot share a listener, and TLS
connection policies with the same matchers are merged (Caddy's
detectConflictingSchemes and consolidateConnPolicies).
"""

from __future__ import annotations

from typing import Any

from txcaddy._go.fmt import sprint
from txcaddy._go.sort import slice_stable
from txcaddy.caddyfile._siteblocks import SiteBlock, key_token, where
from txcaddy.caddyfile.addresses import Address
from txcaddy.caddyfile.errors import ConfigError


def detect_conflicting_schemes(
    listen: list[str], policies: list[Any], site_blocks: list[SiteBlock], http_port: str, https_port: str
) -> None:
    """Refuse a listener that would serve both HTTP and HTTPS sites."""
    state = ""

    def located(message: str, addr: Address) -> ConfigError:
        for sb in site_blocks:
            if addr.original in sb.block.keys:
                return ConfigError(where(key_token(sb.block, addr.original)) + message)
        return ConfigError(message)

    def set_http(addr: Address) -> None:
        nonlocal state
        if state == "HTTPS":
            message = (
                f"server listening on {sprint(listen)} is configured for HTTPS and cannot "
                f"natively multiplex HTTP and HTTPS: {addr.original}"
            )
            if addr.scheme == "" and addr.host == "":
                message += " (try specifying https:// in the address)"
            raise located(message, addr)
        if policies:
            raise located(
                f"server listening on {sprint(listen)} is HTTP, but attempts to configure TLS "
                "connection policies",
                addr,
            )
        state = "HTTP"

    def set_https(addr: Address) -> None:
        nonlocal state
        if state == "HTTP":
            raise located(
                f"server listening on {sprint(listen)} is configured for HTTP and cannot "
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
                            f"{sprint(va)} vs. {sprint(vb)}"
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
