"""The certificate issuers a Caddyfile can configure (caddytls' tls.issuance.*).

``acme``, ``zerossl`` and ``internal`` issuers with their ACME pieces (EAB,
preferred chains, challenge settings) and their Caddyfile parsers, used by
the ``tls`` directive and the ``acme_*``/``cert_issuer`` global options. The
classes mirror caddytls' structs field for field so that their JSON and
their equality (Go's ``reflect.DeepEqual``) behave as in Caddy; ``put`` is
Go's ``omitempty`` for them and for the connection policy structs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from txcaddy._go.strconv import NumError, atoi
from txcaddy.caddyfile.directives._unmarshal import unmarshal_module
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.helper import JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.config.values import parse_caddy_duration


def put(out: JSONObject, key: str, value: Any) -> None:
    """Add ``key`` unless Go's ``omitempty`` would drop ``value``."""
    if value is None or value is False or value == "":
        return
    if type(value) in (int, float) and value == 0:
        return
    if isinstance(value, (list, dict)) and not value:
        return
    out[key] = value.to_json() if hasattr(value, "to_json") else value


# -- ACME pieces ------------------------------------------------------------


@dataclass
class EAB:
    """acme.EAB: both fields are always printed (no omitempty)."""

    key_id: str = ""
    mac_key: str = ""

    def to_json(self) -> JSONObject:
        return {"key_id": self.key_id, "mac_key": self.mac_key}


@dataclass
class ChainPreference:
    smallest: bool | None = None
    root_common_name: list[str] | None = None
    any_common_name: list[str] | None = None

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        if self.smallest is not None:
            out["smallest"] = self.smallest
        put(out, "root_common_name", self.root_common_name)
        put(out, "any_common_name", self.any_common_name)
        return out


def parse_preferred_chains(d: Dispenser) -> ChainPreference:
    """ParseCaddyfilePreferredChainsOptions: ``smallest`` or a block of common names."""
    pref = ChainPreference()
    if d.next_arg():
        if d.val() != "smallest":
            raise d.err(f"Invalid argument '{d.val()}'")
        pref.smallest = True
        if d.next_arg():
            raise d.arg_err()
        if d.next_block(d.nesting):
            raise d.err("No more options are accepted when using the 'smallest' option")
    nesting = d.nesting
    while d.next_block(nesting):
        option = d.val()
        if option == "root_common_name":
            names = d.remaining_args()
            pref.root_common_name = names or None
            if not names:
                raise d.arg_err()
            if pref.any_common_name is not None:
                raise d.err("Can't set root_common_name when any_common_name is already set")
        elif option == "any_common_name":
            names = d.remaining_args()
            pref.any_common_name = names or None
            if not names:
                raise d.arg_err()
            if pref.root_common_name is not None:
                raise d.err("Can't set any_common_name when root_common_name is already set")
        else:
            raise d.err(f"Received unrecognized parameter '{option}'")
    if pref == ChainPreference():
        raise d.err("No options for preferred_chains received")
    return pref


@dataclass
class HTTPChallengeConfig:
    disabled: bool = False
    alternate_port: int = 0

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        put(out, "disabled", self.disabled)
        put(out, "alternate_port", self.alternate_port)
        return out


@dataclass
class DNSChallengeConfig:
    provider: GoMap | None = None
    ttl: int = 0
    propagation_delay: int = 0
    propagation_timeout: int = 0
    resolvers: list[str] | None = None
    override_domain: str = ""

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        put(out, "provider", self.provider)
        put(out, "ttl", self.ttl)
        put(out, "propagation_delay", self.propagation_delay)
        put(out, "propagation_timeout", self.propagation_timeout)
        put(out, "resolvers", self.resolvers)
        put(out, "override_domain", self.override_domain)
        return out


@dataclass
class ChallengesConfig:
    http: HTTPChallengeConfig | None = None
    tls_alpn: HTTPChallengeConfig | None = None
    dns: DNSChallengeConfig | None = None
    bind_host: str = ""

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        if self.http is not None:
            out["http"] = self.http.to_json()
        if self.tls_alpn is not None:
            out["tls-alpn"] = self.tls_alpn.to_json()
        if self.dns is not None:
            out["dns"] = self.dns.to_json()
        put(out, "bind_host", self.bind_host)
        return out


# -- issuers (tls.issuance.*) -----------------------------------------------


@dataclass
class ACMEIssuer:
    """tls.issuance.acme"""

    module_name: ClassVar[str] = "acme"

    ca: str = ""
    test_ca: str = ""
    email: str = ""
    account_key: str = ""
    external_account: EAB | None = None
    acme_timeout: int = 0
    challenges: ChallengesConfig | None = None
    trusted_roots_pem_files: list[str] | None = None
    preferred_chains: ChainPreference | None = None

    def get_acme_issuer(self) -> ACMEIssuer | None:
        return self

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        put(out, "ca", self.ca)
        put(out, "test_ca", self.test_ca)
        put(out, "email", self.email)
        put(out, "account_key", self.account_key)
        put(out, "external_account", self.external_account)
        put(out, "acme_timeout", self.acme_timeout)
        put(out, "challenges", self.challenges)
        put(out, "trusted_roots_pem_files", self.trusted_roots_pem_files)
        put(out, "preferred_chains", self.preferred_chains)
        return out

    def challenges_dns(self) -> DNSChallengeConfig:
        """The DNS challenge settings, created on first use (as Caddy does)."""
        if self.challenges is None:
            self.challenges = ChallengesConfig()
        if self.challenges.dns is None:
            self.challenges.dns = DNSChallengeConfig()
        return self.challenges.dns


@dataclass
class ZeroSSLIssuer:
    """tls.issuance.zerossl: an ACME issuer (embedded, may be nil) plus an API key."""

    module_name: ClassVar[str] = "zerossl"

    acme: ACMEIssuer | None = None
    api_key: str = ""

    def get_acme_issuer(self) -> ACMEIssuer | None:
        return self.acme

    def to_json(self) -> JSONObject:
        out: JSONObject = self.acme.to_json() if self.acme is not None else {}
        put(out, "api_key", self.api_key)
        return out


@dataclass
class InternalIssuer:
    """tls.issuance.internal"""

    module_name: ClassVar[str] = "internal"

    ca: str = ""
    lifetime: int = 0
    sign_with_root: bool = False

    def get_acme_issuer(self) -> None:
        return None

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        put(out, "ca", self.ca)
        put(out, "lifetime", self.lifetime)
        put(out, "sign_with_root", self.sign_with_root)
        return out


Issuer = ACMEIssuer | ZeroSSLIssuer | InternalIssuer


def issuer_json(issuer: Issuer) -> GoMap:
    """An issuer as it appears in an automation policy's ``issuers`` list."""
    return module_object(issuer, "module", issuer.module_name)


def default_issuers() -> list[Issuer]:
    """caddytls.DefaultIssuers: Let's Encrypt then ZeroSSL."""
    return [ACMEIssuer(), ZeroSSLIssuer(acme=ACMEIssuer())]


def _parse_port(d: Dispenser) -> int:
    try:
        return atoi(d.val())
    except NumError as e:
        raise d.err(f"invalid port {d.val()}: {e}") from None


def parse_acme_issuer_into(d: Dispenser, iss: ACMEIssuer) -> ACMEIssuer:
    """ACMEIssuer.UnmarshalCaddyfile."""
    while d.next():
        if d.next_arg():
            iss.ca = d.val()
            if d.next_arg():
                raise d.arg_err()
        nesting = d.nesting
        while d.next_block(nesting):
            option = d.val()
            if option == "dir":
                if iss.ca:
                    raise d.err(f"directory is already specified: {iss.ca}")
                args = d.all_args(1)
                if args is None:
                    raise d.arg_err()
                iss.ca = args[0]
            elif option in ("test_dir", "email"):
                args = d.all_args(1)
                if args is None:
                    raise d.arg_err()
                setattr(iss, "test_ca" if option == "test_dir" else "email", args[0])
            elif option == "timeout":
                args = d.all_args(1)
                if args is None:
                    raise d.arg_err()
                try:
                    iss.acme_timeout = parse_caddy_duration(args[0])
                except ValueError as e:
                    raise d.err(f"invalid timeout duration {args[0]}: {e}")
            elif option in ("disable_http_challenge", "disable_tlsalpn_challenge"):
                if d.next_arg():
                    raise d.arg_err()
                _challenge(iss, option == "disable_http_challenge").disabled = True
            elif option in ("alt_http_port", "alt_tlsalpn_port"):
                if not d.next_arg():
                    raise d.arg_err()
                port = _parse_port(d)
                _challenge(iss, option == "alt_http_port").alternate_port = port
            elif option == "eab":
                args = d.all_args(2)
                if args is None:
                    raise d.arg_err()
                iss.external_account = EAB(args[0], args[1])
            elif option == "trusted_roots":
                iss.trusted_roots_pem_files = d.remaining_args() or None
            elif option == "dns":
                if not d.next_arg():
                    raise d.arg_err()
                provider_name = d.val()
                provider = unmarshal_module(d, "dns.providers", provider_name, DNS_PROVIDERS)
                iss.challenges_dns().provider = module_object(provider, "name", provider_name)
            elif option == "propagation_delay":
                if not d.next_arg():
                    raise d.arg_err()
                text = d.val()
                try:
                    delay = parse_caddy_duration(text)
                except ValueError as e:
                    raise d.err(f"invalid propagation_delay duration {text}: {e}")
                iss.challenges_dns().propagation_delay = delay
            elif option == "propagation_timeout":
                if not d.next_arg():
                    raise d.arg_err()
                text = d.val()
                if text == "-1":
                    timeout = -1
                else:
                    try:
                        timeout = parse_caddy_duration(text)
                    except ValueError as e:
                        raise d.err(f"invalid propagation_timeout duration {text}: {e}")
                iss.challenges_dns().propagation_timeout = timeout
            elif option == "resolvers":
                dns = iss.challenges_dns()
                dns.resolvers = d.remaining_args() or None
                if not dns.resolvers:
                    raise d.arg_err()
            elif option == "dns_challenge_override_domain":
                args = d.remaining_args()
                if len(args) != 1:
                    raise d.arg_err()
                iss.challenges_dns().override_domain = args[0]
            elif option == "preferred_chains":
                iss.preferred_chains = parse_preferred_chains(d)
            else:
                raise d.err(f"unrecognized ACME issuer property: {option}")
    return iss


def _challenge(iss: ACMEIssuer, http: bool) -> HTTPChallengeConfig:
    if iss.challenges is None:
        iss.challenges = ChallengesConfig()
    if http:
        if iss.challenges.http is None:
            iss.challenges.http = HTTPChallengeConfig()
        return iss.challenges.http
    if iss.challenges.tls_alpn is None:
        iss.challenges.tls_alpn = HTTPChallengeConfig()
    return iss.challenges.tls_alpn


def _parse_acme_issuer(d: Dispenser) -> ACMEIssuer:
    return parse_acme_issuer_into(d, ACMEIssuer())


def _parse_zerossl_issuer(d: Dispenser) -> ZeroSSLIssuer:
    iss = ZeroSSLIssuer()
    while d.next():
        if d.next_arg():
            iss.api_key = d.val()
            if d.next_arg():
                raise d.arg_err()
        if iss.acme is None:
            iss.acme = ACMEIssuer()
        parse_acme_issuer_into(d.new_from_next_segment(), iss.acme)
    return iss


def _parse_internal_issuer(d: Dispenser) -> InternalIssuer:
    iss = InternalIssuer()
    while d.next():
        while d.next_block(0):
            option = d.val()
            if option == "ca":
                args = d.all_args(1)
                if args is None:
                    raise d.arg_err()
                iss.ca = args[0]
            elif option == "lifetime":
                if not d.next_arg():
                    raise d.arg_err()
                try:
                    iss.lifetime = parse_caddy_duration(d.val())
                except ValueError as e:
                    raise ConfigError(str(e))
            elif option == "sign_with_root":
                if d.next_arg():
                    raise d.arg_err()
                iss.sign_with_root = True
    return iss


ISSUER_MODULES = {
    "acme": _parse_acme_issuer,
    "zerossl": _parse_zerossl_issuer,
    "internal": _parse_internal_issuer,
}
# No DNS provider modules ship with Caddy 2.6.2.
DNS_PROVIDERS: dict[str, Any] = {}


def parse_issuer_module(d: Dispenser, name: str) -> Issuer:
    """``issuer <name> ...`` / ``cert_issuer <name> ...``: a tls.issuance module."""
    issuer: Issuer = unmarshal_module(d, "tls.issuance", name, ISSUER_MODULES)
    return issuer
