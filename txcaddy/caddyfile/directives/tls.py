"""The ``tls`` directive and the TLS values it produces (Caddy's parseTLS).

A site's ``tls`` directive yields certificate loaders, issuers, a key type,
on-demand TLS, certificate managers and always one connection policy; the
server-type code and ``tlsapp.build_tls_app`` turn these into the server's
``tls_connection_policies`` and the ``tls`` app. The issuer and connection
policy classes mirror caddytls' structs field for field so that their JSON
and their equality (Go's ``reflect.DeepEqual``) behave as in Caddy; they
live in ``_tlsissuers`` (also parsed by the ``acme_*`` and ``cert_issuer``
global options) and ``_tlspolicy``, and are imported from here.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from txcaddy._go.fs import path_error
from txcaddy.caddyfile.directives._tlsissuers import (
    DNS_PROVIDERS,
    EAB,
    ACMEIssuer,
    ChainPreference,
    ChallengesConfig,
    DNSChallengeConfig,
    InternalIssuer,
    Issuer,
    ZeroSSLIssuer,
    default_issuers,
    issuer_json,
    parse_issuer_module,
    parse_preferred_chains,
)
from txcaddy.caddyfile.directives._tlspolicy import (
    CertSelection,
    ClientAuthentication,
    ConnectionPolicy,
)
from txcaddy.caddyfile.directives._unmarshal import unmarshal_module
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.helper import ConfigValue, Helper, JSONObject
from txcaddy.caddyfile.jsonenc import GoMap, module_object
from txcaddy.caddyfile.registry import directive

__all__ = [
    "ACMEIssuer",
    "CertManager",
    "CertSelection",
    "ChainPreference",
    "ChallengesConfig",
    "ClientAuthentication",
    "ConnectionPolicy",
    "DNSChallengeConfig",
    "DNS_PROVIDERS",
    "EAB",
    "FileLoader",
    "FolderLoader",
    "InternalIssuer",
    "Issuer",
    "ZeroSSLIssuer",
    "default_issuers",
    "first_pem_block",
    "issuer_json",
    "parse_issuer_module",
    "parse_preferred_chains",
    "parse_tls",
]

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
        raise ConfigError(path_error("open", filename, e)) from None
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

