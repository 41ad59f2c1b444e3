"""The ``tls`` directive and the TLS values it produces (Caddy's parseTLS).

A site's ``tls`` directive yields certificate loaders, issuers, a key type,
on-demand TLS, certificate managers and always one connection policy; the
server-type code and ``tlsapp.build_tls_app`` turn these into the server's
``tls_connection_policies`` and the ``tls`` app. The issuer and connection
policy classes mirror caddytls' structs field for field so that their JSON
and their equality (Go's ``reflect.DeepEqual``) behave as in Caddy.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from txcaddy._go.strconv import NumError, atoi
from txcaddy.caddyfile.directives._unmarshal import unmarshal_module
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.helper import ConfigValue, Helper, JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.caddyfile.registry import directive
from txcaddy.config.values import parse_caddy_duration

SUPPORTED_PROTOCOLS = ("tls1.2", "tls1.3")
SUPPORTED_CURVES = ("x25519", "secp256r1", "secp384r1", "secp521r1")
# crypto/tls CipherSuites() of the Go release Debian built Caddy 2.6.2 with.
SUPPORTED_CIPHER_SUITES = (
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
)


def _put(out: JSONObject, key: str, value: Any) -> None:
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
        _put(out, "root_common_name", self.root_common_name)
        _put(out, "any_common_name", self.any_common_name)
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
        _put(out, "disabled", self.disabled)
        _put(out, "alternate_port", self.alternate_port)
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
        _put(out, "provider", self.provider)
        _put(out, "ttl", self.ttl)
        _put(out, "propagation_delay", self.propagation_delay)
        _put(out, "propagation_timeout", self.propagation_timeout)
        _put(out, "resolvers", self.resolvers)
        _put(out, "override_domain", self.override_domain)
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
        _put(out, "bind_host", self.bind_host)
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
        _put(out, "ca", self.ca)
        _put(out, "test_ca", self.test_ca)
        _put(out, "email", self.email)
        _put(out, "account_key", self.account_key)
        _put(out, "external_account", self.external_account)
        _put(out, "acme_timeout", self.acme_timeout)
        _put(out, "challenges", self.challenges)
        _put(out, "trusted_roots_pem_files", self.trusted_roots_pem_files)
        _put(out, "preferred_chains", self.preferred_chains)
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
        _put(out, "api_key", self.api_key)
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
        _put(out, "ca", self.ca)
        _put(out, "lifetime", self.lifetime)
        _put(out, "sign_with_root", self.sign_with_root)
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


# -- certificate managers (tls.get_certificate.*) ---------------------------


@dataclass
class CertManager:
    """A ``get_certificate`` module: its name and its JSON settings."""

    name: str
    settings: JSONObject = field(default_factory=dict)

    def to_json(self) -> GoMap:
        return module_object(self.settings, "via", self.name)


def _parse_http_cert_getter(d: Dispenser) -> CertManager:
    url = ""
    while d.next():
        if not d.next_arg():
            raise d.arg_err()
        url = d.val()
        if d.next_arg():
            raise d.arg_err()
        if d.next_block(d.nesting):
            raise d.err("block not allowed here")
    return CertManager("http", {"url": url} if url else {})


def _parse_tailscale(d: Dispenser) -> CertManager:
    while d.next():
        if d.next_arg():
            raise d.arg_err()
    return CertManager("tailscale")


CERT_MANAGER_MODULES = {"http": _parse_http_cert_getter, "tailscale": _parse_tailscale}


# -- certificate loaders (tls.certificates.*) --------------------------------


class FileLoader(list):  # type: ignore[type-arg]
    """tls.certificates.load_files: certificate/key file pairs."""

    module_name = "load_files"


class FolderLoader(list):  # type: ignore[type-arg]
    """tls.certificates.load_folders: folders of PEM files."""

    module_name = "load_folders"


def cert_key_pair(certificate: str, key: str, tags: list[str]) -> JSONObject:
    out: JSONObject = {"certificate": certificate, "key": key}
    if tags:
        out["tags"] = tags
    return out


# -- connection policies ------------------------------------------------------


@dataclass
class CertSelection:
    """caddytls.CustomCertSelectionPolicy (the Caddyfile only sets ``any_tag``)."""

    serial_number: list[Any] | None = None
    subject_organization: list[str] | None = None
    public_key_algorithm: str = ""
    any_tag: list[str] | None = None
    all_tags: list[str] | None = None

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        _put(out, "serial_number", self.serial_number)
        _put(out, "subject_organization", self.subject_organization)
        _put(out, "public_key_algorithm", self.public_key_algorithm)
        _put(out, "any_tag", self.any_tag)
        _put(out, "all_tags", self.all_tags)
        return out

    def compatible_with(self, other: CertSelection) -> bool:
        """Whether two selections can merge (Caddy merges only ``any_tag``)."""
        return (
            self.serial_number == other.serial_number
            and self.subject_organization == other.subject_organization
            and self.public_key_algorithm == other.public_key_algorithm
            and self.all_tags == other.all_tags
        )

    def merge_any_tags(self, other: CertSelection) -> None:
        for tag in other.any_tag or ():
            if tag not in (self.any_tag or ()):
                self.any_tag = (self.any_tag or []) + [tag]


@dataclass
class ClientAuthentication:
    trusted_ca_certs: list[str] | None = None
    trusted_ca_certs_pem_files: list[str] | None = None
    trusted_leaf_certs: list[str] | None = None
    verifiers: list[Any] | None = None
    mode: str = ""

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        _put(out, "trusted_ca_certs", self.trusted_ca_certs)
        _put(out, "trusted_ca_certs_pem_files", self.trusted_ca_certs_pem_files)
        _put(out, "trusted_leaf_certs", self.trusted_leaf_certs)
        _put(out, "verifiers", self.verifiers)
        _put(out, "mode", self.mode)
        return out


@dataclass
class ConnectionPolicy:
    """caddytls.ConnectionPolicy; ``matchers`` is the ``match`` module map."""

    matchers: GoMap | None = None
    cert_selection: CertSelection | None = None
    cipher_suites: list[str] | None = None
    curves: list[str] | None = None
    alpn: list[str] | None = None
    protocol_min: str = ""
    protocol_max: str = ""
    client_authentication: ClientAuthentication | None = None
    default_sni: str = ""
    insecure_secrets_log: str = ""

    def settings_empty(self) -> bool:
        """Go's SettingsEmpty: nothing but (maybe) matchers is set."""
        return (
            self.cert_selection is None
            and self.cipher_suites is None
            and self.curves is None
            and self.alpn is None
            and not self.protocol_min
            and not self.protocol_max
            and self.client_authentication is None
            and not self.default_sni
            and not self.insecure_secrets_log
        )

    def to_json(self) -> JSONObject:
        out: JSONObject = {}
        _put(out, "match", self.matchers)
        _put(out, "certificate_selection", self.cert_selection)
        _put(out, "cipher_suites", self.cipher_suites)
        _put(out, "curves", self.curves)
        _put(out, "alpn", self.alpn)
        _put(out, "protocol_min", self.protocol_min)
        _put(out, "protocol_max", self.protocol_max)
        _put(out, "client_authentication", self.client_authentication)
        _put(out, "default_sni", self.default_sni)
        _put(out, "insecure_secrets_log", self.insecure_secrets_log)
        return out


# -- the directive ------------------------------------------------------------

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)


def first_pem_block(data: bytes) -> tuple[str, bytes] | None:
    """The type and DER bytes of the first PEM block, like Go's ``pem.Decode``."""
    for match in _PEM_BLOCK.finditer(data):
        if match.start() and data[match.start() - 1 : match.start()] not in (b"\n",):
            continue
        body = match.group(2)
        lines = body.splitlines()
        if lines and b":" in lines[0]:
            # skip RFC 1421 headers up to the blank line
            while lines and lines[0].strip():
                lines.pop(0)
        try:
            der = base64.b64decode(b"".join(line.strip() for line in lines), validate=True)
        except (binascii.Error, ValueError):
            continue
        return match.group(1).decode("latin-1"), der
    return None


def _read_cert_file(h: Helper, filename: str) -> str:
    try:
        with open(filename, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise ConfigError(f"read {filename}: is a directory")
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise ConfigError(f"open {filename}: {reason[:1].lower()}{reason[1:]}")
    block = first_pem_block(data)
    if block is None or block[0] != "CERTIFICATE":
        raise h.err(f"no CERTIFICATE pem block found in {h.val()}")
    return base64.b64encode(block[1]).decode("ascii")


def _parse_client_auth(h: Helper) -> ClientAuthentication:
    auth = ClientAuthentication()
    nesting = h.nesting
    while h.next_block(nesting):
        subdir = h.val()
        if subdir == "mode":
            args = h.args(1)
            if args is None:
                raise h.arg_err()
            auth.mode = args[0]
            if h.next_arg():
                raise h.arg_err()
        elif subdir in ("trusted_ca_cert", "trusted_leaf_cert"):
            if not h.next_arg():
                raise h.arg_err()
            _append_trusted(auth, subdir, h.val())
        elif subdir in ("trusted_ca_cert_file", "trusted_leaf_cert_file"):
            if not h.next_arg():
                raise h.arg_err()
            _append_trusted(auth, subdir, _read_cert_file(h, h.val()))
        else:
            raise h.err(f"unknown subdirective for client_auth: {subdir}")
    return auth


def _append_trusted(auth: ClientAuthentication, subdir: str, cert: str) -> None:
    if subdir.startswith("trusted_ca_cert"):
        auth.trusted_ca_certs = (auth.trusted_ca_certs or []) + [cert]
    else:
        auth.trusted_leaf_certs = (auth.trusted_leaf_certs or []) + [cert]


@directive("tls")
def parse_tls(h: Helper) -> list[ConfigValue]:
    """parseTLS: ``tls [internal|<email>|<cert> <key>] { ... }``."""
    cp = ConnectionPolicy()
    file_loader = FileLoader()
    folder_loader = FolderLoader()
    any_tags: list[str] = []
    acme_issuer: ACMEIssuer | None = None
    internal_issuer: InternalIssuer | None = None
    key_type = ""
    issuers: list[Issuer] = []
    cert_managers: list[CertManager] = []
    on_demand = False

    def acme() -> ACMEIssuer:
        nonlocal acme_issuer
        if acme_issuer is None:
            acme_issuer = ACMEIssuer()
        return acme_issuer

    while h.next():
        first_line = h.remaining_args()
        if len(first_line) == 1:
            if first_line[0] == "internal":
                internal_issuer = InternalIssuer()
            elif "@" not in first_line[0]:
                raise h.err("single argument must either be 'internal' or an email address")
            else:
                acme().email = first_line[0]
        elif len(first_line) == 2:
            cert_file, key_file = first_line
            # One tag per certificate file across the whole Caddyfile, so a
            # file loaded for several sites keeps a single tag.
            tags: dict[str, str] = h.state.setdefault("tlsCertTags", {})
            tag = tags.get(cert_file)
            if tag is None:
                tag = f"cert{len(tags)}"
                file_loader.append(cert_key_pair(cert_file, key_file, [tag]))
                tags[cert_file] = tag
            any_tags.append(tag)
        elif len(first_line) > 2:
            raise h.arg_err()

        has_block = False
        nesting = h.nesting
        while h.next_block(nesting):
            has_block = True
            option = h.val()
            if option == "protocols":
                args = h.remaining_args()
                if not args:
                    raise h.syntax_err("one or two protocols")
                for index, name in enumerate(args[:2]):
                    if name not in SUPPORTED_PROTOCOLS:
                        raise h.err(f"Wrong protocol name or protocol not supported: '{name}'")
                    if index == 0:
                        cp.protocol_min = name
                    else:
                        cp.protocol_max = name
            elif option == "ciphers":
                while h.next_arg():
                    if h.val() not in SUPPORTED_CIPHER_SUITES:
                        raise h.err(
                            f"Wrong cipher suite name or cipher suite not supported: '{h.val()}'"
                        )
                    cp.cipher_suites = (cp.cipher_suites or []) + [h.val()]
            elif option == "curves":
                while h.next_arg():
                    if h.val() not in SUPPORTED_CURVES:
                        raise h.err(f"Wrong curve name or curve not supported: '{h.val()}'")
                    cp.curves = (cp.curves or []) + [h.val()]
            elif option == "client_auth":
                cp.client_authentication = _parse_client_auth(h)
            elif option == "alpn":
                args = h.remaining_args()
                if not args:
                    raise h.arg_err()
                cp.alpn = args
            elif option == "load":
                folder_loader.extend(h.remaining_args())
            elif option == "ca":
                args = h.remaining_args()
                if len(args) != 1:
                    raise h.arg_err()
                acme().ca = args[0]
            elif option == "key_type":
                args = h.remaining_args()
                if len(args) != 1:
                    raise h.arg_err()
                key_type = args[0]
            elif option == "eab":
                args = h.remaining_args()
                if len(args) != 2:
                    raise h.arg_err()
                acme().external_account = EAB(args[0], args[1])
            elif option == "issuer":
                if not h.next_arg():
                    raise h.arg_err()
                issuers.append(parse_issuer_module(h.dispenser, h.val()))
            elif option == "get_certificate":
                if not h.next_arg():
                    raise h.arg_err()
                cert_managers.append(
                    unmarshal_module(
                        h.dispenser, "tls.get_certificate", h.val(), CERT_MANAGER_MODULES
                    )
                )
            elif option == "dns":
                if not h.next_arg():
                    raise h.arg_err()
                provider_name = h.val()
                acme().challenges_dns()  # created before the provider fails, as in Caddy
                provider = unmarshal_module(h.dispenser, "dns.providers", provider_name, DNS_PROVIDERS)
                acme().challenges_dns().provider = module_object(provider, "name", provider_name)
            elif option == "resolvers":
                args = h.remaining_args()
                if not args:
                    raise h.arg_err()
                acme().challenges_dns().resolvers = args
            elif option == "dns_challenge_override_domain":
                args = h.remaining_args()
                if len(args) != 1:
                    raise h.arg_err()
                acme().challenges_dns().override_domain = args[0]
            elif option == "ca_root":
                args = h.remaining_args()
                if len(args) != 1:
                    raise h.arg_err()
                issuer = acme()
                issuer.trusted_roots_pem_files = (issuer.trusted_roots_pem_files or []) + args
            elif option == "on_demand":
                if h.next_arg():
                    raise h.arg_err()
                on_demand = True
            elif option == "insecure_secrets_log":
                if not h.next_arg():
                    raise h.arg_err()
                cp.insecure_secrets_log = h.val()
            else:
                raise h.err(f"unknown subdirective: {option}")

        if not first_line and not has_block:
            raise h.arg_err()

    values: list[ConfigValue] = []
    if file_loader:
        values.append(ConfigValue("tls.cert_loader", file_loader))
    if folder_loader:
        values.append(ConfigValue("tls.cert_loader", folder_loader))

    if issuers and (acme_issuer is not None or internal_issuer is not None):
        raise h.err(
            "cannot mix issuer subdirective (explicit issuers) with other "
            "issuer-specific subdirectives (implicit issuers)"
        )
    if acme_issuer is not None and internal_issuer is not None:
        raise h.err("cannot create both ACME and internal certificate issuers")

    if issuers:
        values.extend(ConfigValue("tls.cert_issuer", issuer) for issuer in issuers)
    elif acme_issuer is not None:
        # Implicit ACME settings apply to both default CAs, unless a CA was named.
        implicit: list[Issuer] = (
            [acme_issuer] if acme_issuer.ca else [acme_issuer, ZeroSSLIssuer(acme=acme_issuer)]
        )
        values.extend(ConfigValue("tls.cert_issuer", issuer) for issuer in implicit)
    elif internal_issuer is not None:
        values.append(ConfigValue("tls.cert_issuer", internal_issuer))

    if key_type:
        values.append(ConfigValue("tls.key_type", key_type))
    if on_demand:
        values.append(ConfigValue("tls.on_demand", True))
    values.extend(ConfigValue("tls.cert_manager", manager) for manager in cert_managers)
    if any_tags:
        cp.cert_selection = CertSelection(any_tag=any_tags)
    # Always present: using the directive turns TLS on even for a host-less key.
    values.append(ConfigValue("tls.connection_policy", cp))
    return values

