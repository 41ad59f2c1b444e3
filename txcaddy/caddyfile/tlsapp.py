"""The ``tls`` and ``pki`` apps of an adapted Caddyfile (Caddy's tlsapp.go and pkiapp.go).

Automation policies are built per site block from the global options and
the ``tls.*`` values its directives produced, split between public and
internal names the way certmagic decides, filled in with the global ACME
defaults and consolidated exactly as Caddy 2.6.2 does, so that the output is
the same JSON ``caddy adapt`` prints. Issuer objects are shared between
policies where Caddy shares pointers, because later steps mutate them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from txcaddy._go.net import join_host_port
from txcaddy._go.sort import slice_stable
from txcaddy.caddyfile.addresses import AddressError, NetworkAddress
from txcaddy.caddyfile.directives.options import (
    DEFAULT_CA_ID,
    PKI,
    CertificateAuthority,
    OCSPConfig,
)
from txcaddy.caddyfile.directives.tls import (
    ACMEIssuer,
    ChallengesConfig,
    DNSChallengeConfig,
    InternalIssuer,
    Issuer,
    ZeroSSLIssuer,
    default_issuers,
    issuer_json,
)
from txcaddy.caddyfile.errors import ConfigError, ConfigWarning
from txcaddy.caddyfile.helper import JSONObject
from txcaddy.caddyfile.jsonenc import GoMap
from txcaddy.tls.names import (
    match_wildcard,
    subject_is_internal,
    subject_is_ip,
    subject_qualifies_for_cert,
    subject_qualifies_for_public_cert,
)

DEFAULT_HTTP_PORT = 80
DEFAULT_HTTPS_PORT = 443


# -- site block helpers (httpcaddyfile/directives.go) --------------------------


def hosts_from_keys(block: Any, logger_mode: bool = False) -> list[str]:
    """The distinct hostnames of a site block's keys; [] if one key has no host.

    In logger mode host-less keys are skipped instead, and a non-standard
    port is kept with the host (``example.com:8443``), as access-log names
    need it. Caddy returns these in Go map order; we keep the keys' order.
    """
    hosts: dict[str, None] = {}
    for addr in block.keys:
        if not addr.host:
            if not logger_mode:
                return []
            continue
        if logger_mode and addr.port and addr.port not in (
            str(DEFAULT_HTTP_PORT),
            str(DEFAULT_HTTPS_PORT),
        ):
            hosts.setdefault(join_host_port(addr.host, addr.port), None)
        else:
            hosts.setdefault(addr.host, None)
    return list(hosts)


def hosts_from_keys_not_http(block: Any, http_port: str) -> list[str]:
    """The hostnames of keys that are neither ``http://`` nor on the HTTP port."""
    hosts: dict[str, None] = {}
    for addr in block.keys:
        if addr.host and addr.scheme != "http" and addr.port != http_port:
            hosts.setdefault(addr.host, None)
    return list(hosts)


def has_host_catch_all_key(block: Any) -> bool:
    return any(not addr.host for addr in block.keys)


def is_all_http(block: Any) -> bool:
    return all(addr.scheme == "http" for addr in block.keys)


def listeners_use_any_port_other_than(addresses: Iterable[str], other_port: str) -> bool:
    """True if some listener address does not include ``other_port``."""
    if not other_port.lstrip("+-").isdigit():
        return False
    port = int(other_port)
    for address in addresses:
        try:
            parsed = NetworkAddress.parse(address)
        except AddressError:
            continue
        if port < 0 or port > parsed.end_port or port < parsed.start_port:
            return True
    return False


# -- certmagic's subject rules -----------------------------------------------

# -- automation policies -----------------------------------------------------


@dataclass
class AutomationPolicy:
    """caddytls.AutomationPolicy; ``issuers`` are the objects, ``issuers_raw`` their JSON.

    Equality compares every field, as Go's reflect.DeepEqual does (``None``
    and ``[]`` differ, like nil and empty slices).
    """

    subjects: list[str] | None = None
    issuers_raw: list[GoMap] | None = None
    managers_raw: list[GoMap] | None = None
    must_staple: bool = False
    renewal_window_ratio: float = 0
    key_type: str = ""
    storage_raw: GoMap | None = None
    on_demand: bool = False
    disable_ocsp_stapling: bool = False
    ocsp_overrides: dict[str, str] | None = None
    issuers: list[Issuer] | None = None

    def is_empty_besides_subjects(self) -> bool:
        return AutomationPolicy(subjects=self.subjects) == self

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        if self.subjects:
            out["subjects"] = self.subjects
        if self.issuers_raw:
            out["issuers"] = self.issuers_raw
        if self.managers_raw:
            out["get_certificate"] = self.managers_raw
        if self.must_staple:
            out["must_staple"] = True
        if self.renewal_window_ratio:
            out["renewal_window_ratio"] = self.renewal_window_ratio
        if self.key_type:
            out["key_type"] = self.key_type
        if self.storage_raw:
            out["storage"] = self.storage_raw
        if self.on_demand:
            out["on_demand"] = True
        if self.disable_ocsp_stapling:
            out["disable_ocsp_stapling"] = True
        if self.ocsp_overrides:
            out["ocsp_overrides"] = GoMap(self.ocsp_overrides)
        return out


def subject_qualifies_for_public_cert_in(ap: AutomationPolicy, subject: str) -> bool:
    """Caddy's lenient variant: ``*.*.tld`` is fine for on-demand policies."""
    return (
        not subject_is_ip(subject)
        and not subject_is_internal(subject)
        and (subject.count("*.") < 2 or ap.on_demand)
    )


def automation_policy_has_all_public_names(ap: AutomationPolicy) -> bool:
    return all(subject_qualifies_for_public_cert_in(ap, s) for s in ap.subjects or ())


def new_base_automation_policy(
    options: Mapping[str, Any], always: bool
) -> AutomationPolicy | None:
    """A policy carrying the global automation settings (None if there are none)."""
    has_issuers = "cert_issuer" in options
    has_local_certs = "local_certs" in options
    has_key_type = "key_type" in options
    has_ocsp = "ocsp_stapling" in options
    if not (has_issuers or has_local_certs or has_key_type or has_ocsp):
        return AutomationPolicy() if always else None
    ap = AutomationPolicy()
    if has_key_type:
        ap.key_type = options["key_type"]
    if has_issuers and has_local_certs:
        raise ConfigError(
            "global options are ambiguous: local_certs is confusing when combined with "
            "cert_issuer, because local_certs is also a specific kind of issuer"
        )
    if has_issuers:
        ap.issuers = list(options["cert_issuer"])
    elif has_local_certs:
        ap.issuers = [InternalIssuer()]
    if has_ocsp:
        ocsp: OCSPConfig = options["ocsp_stapling"]
        ap.disable_ocsp_stapling = ocsp.disable_stapling
        ap.ocsp_overrides = ocsp.responder_overrides
    return ap


def fill_in_global_acme_defaults(issuer: Issuer, options: Mapping[str, Any]) -> None:
    """Apply ``email``, ``acme_ca``, ``acme_ca_root``, ``acme_dns``, ``acme_eab`` and
    ``preferred_chains`` to an ACME-based issuer where it has no own setting."""
    acme = issuer.get_acme_issuer()
    if acme is None:
        return
    if options.get("email") is not None and not acme.email:
        acme.email = options["email"]
    if options.get("acme_ca") is not None and not acme.ca:
        acme.ca = options["acme_ca"]
    root = options.get("acme_ca_root")
    if root is not None and root not in (acme.trusted_roots_pem_files or ()):
        acme.trusted_roots_pem_files = (acme.trusted_roots_pem_files or []) + [root]
    if options.get("acme_dns") is not None and (
        acme.challenges is None or acme.challenges.dns is None
    ):
        acme.challenges = ChallengesConfig(dns=DNSChallengeConfig(provider=options["acme_dns"]))
    if options.get("acme_eab") is not None and acme.external_account is None:
        acme.external_account = options["acme_eab"]
    if options.get("preferred_chains") is not None and acme.preferred_chains is None:
        acme.preferred_chains = options["preferred_chains"]


def _has_global_acme_defaults(options: Mapping[str, Any]) -> bool:
    keys = ("email", "acme_ca", "acme_ca_root", "acme_dns", "acme_eab", "preferred_chains")
    return any(options.get(key) is not None for key in keys)


def automation_policy_is_subset(a: AutomationPolicy, b: AutomationPolicy) -> bool:
    """True if every subject of ``a`` is covered by ``b`` (a catch-all covers all)."""
    if not b.subjects:
        return True
    if not a.subjects:
        return False
    return all(any(match_wildcard(s, w) for w in b.subjects) for s in a.subjects)


def automation_policy_shadows(i: int, aps: list[AutomationPolicy]) -> int:
    for j in range(i + 1, len(aps)):
        if automation_policy_is_subset(aps[i], aps[j]):
            return j
    return -1


def _same_settings(a: AutomationPolicy, b: AutomationPolicy) -> bool:
    return (
        a.issuers_raw == b.issuers_raw
        and a.storage_raw == b.storage_raw
        and a.must_staple == b.must_staple
        and a.key_type == b.key_type
        and a.on_demand == b.on_demand
        and a.renewal_window_ratio == b.renewal_window_ratio
    )


def consolidate_automation_policies(
    aps: list[AutomationPolicy],
) -> list[AutomationPolicy] | None:
    """Sort most specific first, drop empty/duplicate policies, merge equivalent ones."""

    def less(a: AutomationPolicy, b: AutomationPolicy) -> bool:
        if automation_policy_is_subset(a, b):
            return True
        if automation_policy_is_subset(b, a):
            return False
        return len(a.subjects or ()) > len(b.subjects or ())

    aps = list(aps)
    slice_stable(aps, less)

    empty_count = 0
    original_count = len(aps)
    i = 0
    while i < len(aps):
        if aps[i].is_empty_besides_subjects():
            empty_count += 1
            if not automation_policy_has_all_public_names(aps[i]):
                # internal names get the internal issuer implicitly anyway
                del aps[i]
                continue
        i += 1
    if empty_count == original_count:
        return None

    i = 0
    while i < len(aps):
        j = i + 1
        while j < len(aps):
            if aps[i] == aps[j]:
                del aps[j]
                i -= 1
                break
            if _same_settings(aps[i], aps[j]):
                if aps[i].subjects and not aps[j].subjects:
                    # a more specific twin of a catch-all may go, unless it
                    # shadows a less specific policy in between
                    if automation_policy_shadows(i, aps) >= j:
                        del aps[i]
                        i -= 1
                        break
                else:
                    for subject in aps[j].subjects or ():
                        if subject not in (aps[i].subjects or ()):
                            aps[i].subjects = (aps[i].subjects or []) + [subject]
                    del aps[j]
                    j -= 1
            j += 1
        i += 1
    return aps


# -- the tls app ---------------------------------------------------------------


def _http_port(options: Mapping[str, Any]) -> str:
    port = options.get("http_port")
    return str(port) if isinstance(port, int) and not isinstance(port, bool) else str(DEFAULT_HTTP_PORT)


def _issuers_repr(issuers: Iterable[Issuer] | None) -> str:
    names = {
        ACMEIssuer: "caddytls.ACMEIssuer",
        ZeroSSLIssuer: "caddytls.ZeroSSLIssuer",
        InternalIssuer: "caddytls.InternalIssuer",
    }
    if issuers is None:
        return "[]certmagic.Issuer(nil)"
    inner = ", ".join(f"(*{names[type(i)]})" for i in issuers)
    return "[]certmagic.Issuer{" + inner + "}"


def build_tls_app(
    pairings: Iterable[Any], options: Mapping[str, Any], warnings: list[ConfigWarning]
) -> JSONObject | None:
    """buildTLSApp: the ``tls`` app JSON, or None when it would be empty."""
    pairings = list(pairings)
    certificates = GoMap()
    policies: list[AutomationPolicy] = []
    automation: dict[str, Any] | None = None
    cert_loaders: list[Any] = []

    http_port = _http_port(options)
    auto_https = options.get("auto_https") if isinstance(options.get("auto_https"), str) else "on"

    # hosts sharing a block with a host-less key never appear in route
    # matchers, so auto-HTTPS would not see them: manage them explicitly
    shared_with_hostless: dict[str, None] = {}
    if auto_https != "off":
        for pairing in pairings:
            for block in pairing.server_blocks:
                for addr in block.keys:
                    if addr.host:
                        continue
                    for other in block.keys:
                        if other.original == addr.original:
                            continue
                        if other.host and other.scheme != "http" and other.port != http_port:
                            shared_with_hostless.setdefault(other.host, None)
                    break

    catch_all = new_base_automation_policy(options, False)
    if catch_all is not None:
        automation = {}
        policies.append(catch_all)

    for pairing in pairings:
        if not listeners_use_any_port_other_than(pairing.addresses, http_port):
            continue
        for block in pairing.server_blocks:
            if is_all_http(block):
                continue
            ap = new_base_automation_policy(options, True)
            assert ap is not None
            block_hosts = hosts_from_keys(block, False)
            if not block_hosts and catch_all is not None:
                ap = catch_all

            pile = block.pile
            if "tls.on_demand" in pile:
                ap.on_demand = True
            if "tls.key_type" in pile:
                ap.key_type = pile["tls.key_type"][0].value
            if "tls.cert_issuer" in pile:
                issuers = [value.value for value in pile["tls.cert_issuer"]]
                if ap is catch_all and ap.issuers != issuers:
                    raise ConfigError(
                        "automation policy from site block is also default/catch-all policy "
                        "because of key without hostname, and the two are in conflict: "
                        f"{_issuers_repr(ap.issuers)} != {_issuers_repr(issuers)}"
                    )
                ap.issuers = issuers
            for manager in pile.get("tls.cert_manager", ()):
                ap.managers_raw = (ap.managers_raw or []) + [manager.value.to_json()]
            for bind in pile.get("bind", ()):
                for issuer in ap.issuers or ():
                    acme = issuer.get_acme_issuer()
                    if acme is None:
                        continue
                    if acme.challenges is None:
                        acme.challenges = ChallengesConfig()
                    if not acme.challenges.bind_host:
                        hosts = bind.value if isinstance(bind.value, list) else []
                        acme.challenges.bind_host = hosts[0] if hosts else ""

            if not block_hosts and catch_all is None:
                # the first host-less block becomes the catch-all policy
                catch_all = ap

            ap.subjects = sorted(hosts_from_keys_not_http(block, http_port))

            # without an explicit issuer, internal names (localhost, IPs, ...)
            # need their own policy with the internal issuer
            ap2: AutomationPolicy | None = None
            if not ap.issuers:
                internal: list[str] = []
                external: list[str] = []
                for subject in ap.subjects:
                    if not subject_qualifies_for_cert(subject):
                        raise ConfigError(f"subject does not qualify for certificate: '{subject}'")
                    if subject_qualifies_for_public_cert_in(ap, subject):
                        external.append(subject)
                    else:
                        internal.append(subject)
                if external and internal:
                    ap.subjects = external
                    ap2 = copy.copy(ap)
                    ap2.subjects = internal
                    ap2.issuers_raw = [GoMap(module="internal")]
            if automation is None:
                automation = {}
            policies.append(ap)
            if ap2 is not None:
                policies.append(ap2)

            for loader in pile.get("tls.cert_loader", ()):
                cert_loaders.append(loader.value)

    # one loader module of each kind, combining every occurrence
    loaders_by_name: dict[str, list[Any]] = {}
    for loader in cert_loaders:
        loaders_by_name.setdefault(loader.module_name, []).extend(loader)
    for name, combined in loaders_by_name.items():
        certificates[name] = combined

    if options.get("on_demand_tls") is not None:
        automation = automation if automation is not None else {}
        automation["on_demand"] = options["on_demand_tls"]
    for key in ("ocsp_interval", "renew_interval", "storage_clean_interval"):
        if isinstance(options.get(key), int):
            automation = automation if automation is not None else {}
            automation[key] = options[key]

    disable_ocsp_stapling = False
    if isinstance(options.get("ocsp_stapling"), OCSPConfig):
        disable_ocsp_stapling = options["ocsp_stapling"].disable_stapling

    automate: list[str] = []
    internal_ap = AutomationPolicy(issuers_raw=[GoMap(module="internal")])
    if auto_https != "off":
        for host in shared_with_hostless:
            automate.append(host)
            if not subject_qualifies_for_public_cert(host):
                internal_ap.subjects = (internal_ap.subjects or []) + [host]
    if automate:
        certificates["automate"] = automate
    if internal_ap.subjects:
        automation = automation if automation is not None else {}
        policies.append(internal_ap)

    final_policies: list[AutomationPolicy] | None = None
    if automation is not None:
        if _has_global_acme_defaults(options):
            for ap in policies:
                if not ap.issuers and automation_policy_has_all_public_names(ap):
                    # public names get the default issuers, completed below
                    ap.issuers = default_issuers()
                    acme_ca = options.get("acme_ca")
                    if acme_ca is not None:
                        if "zerossl" in acme_ca:
                            ap.issuers = [ZeroSSLIssuer(acme=ACMEIssuer())]
                        else:
                            ap.issuers = [ACMEIssuer()]

        for ap in policies:
            for issuer in ap.issuers or ():
                fill_in_global_acme_defaults(issuer, options)
            if ap.issuers and ap.issuers_raw is None:
                ap.issuers_raw = [issuer_json(issuer) for issuer in ap.issuers]

        final_policies = consolidate_automation_policies(policies)

        seen: set[str] = set()
        for ap in final_policies or ():
            for subject in ap.subjects or ():
                if subject in seen:
                    raise ConfigError(
                        "hostname appears in more than one automation policy, making "
                        f"certificate management ambiguous: {subject}"
                    )
                seen.add(subject)

    tls_app: JSONObject = {}
    if certificates:
        tls_app["certificates"] = certificates
    automation_json: JSONObject = {}
    if final_policies:
        automation_json["policies"] = [ap.to_json() for ap in final_policies]
    if automation is not None:
        if automation.get("on_demand") is not None:
            automation_json["on_demand"] = automation["on_demand"]
        for key in ("ocsp_interval", "renew_interval", "storage_clean_interval"):
            if automation.get(key):
                automation_json[key] = automation[key]
    if automation_json:
        tls_app["automation"] = automation_json
    if disable_ocsp_stapling:
        tls_app["disable_ocsp_stapling"] = True
    return tls_app or None


# -- the pki app -----------------------------------------------------------------


def _as_ca(value: Any) -> CertificateAuthority:
    """A ``pki.ca`` config value (from ``acme_server``) as a CertificateAuthority."""
    if isinstance(value, CertificateAuthority):
        return value
    if isinstance(value, str):
        return CertificateAuthority(id=value)
    if isinstance(value, Mapping):
        return CertificateAuthority(id=value.get("id") or value.get("ca", ""))
    return CertificateAuthority(id=getattr(value, "id", ""))


def build_pki_app(
    pairings: Iterable[Any], options: Mapping[str, Any], warnings: list[ConfigWarning]
) -> JSONObject | None:
    """buildPKIApp: the ``pki`` app JSON from the ``pki`` option and ``acme_server`` CAs."""
    skip_install_trust = "skip_install_trust" in options
    pki = options.get("pki")
    if not isinstance(pki, PKI):
        pki = PKI()
    if skip_install_trust:
        for ca in pki.cas.values():
            ca.install_trust = False
    for pairing in pairings:
        for block in pairing.server_blocks:
            for value in block.pile.get("pki.ca", ()):
                ca = _as_ca(value.value)
                if skip_install_trust:
                    ca.install_trust = False
                pki.cas.setdefault(ca.id, ca)
    if not pki.cas and skip_install_trust:
        pki.cas[DEFAULT_CA_ID] = CertificateAuthority(id=DEFAULT_CA_ID, install_trust=False)
    return pki.to_json() or None
