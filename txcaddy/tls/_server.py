"""TLS for listeners: connection policies, SNI, ALPN, client certificates (Caddy's ``caddytls``).

A server's ``tls_connection_policies`` become ``ConnectionPolicy`` objects, and its TLS
listeners get one ``ServerTLS``: the ``IOpenSSLServerConnectionCreator`` Twisted's
``TLSMemoryBIOFactory`` asks for each connection's ``OpenSSL.SSL.Connection``.

Go picks a whole ``tls.Config`` per ClientHello (``GetConfigForClient``); OpenSSL has no
public hook that early, so the choice happens in the SNI callback, in two steps:

1. the policy: the first whose matchers (``sni``, ``remote_ip``) match, as Caddy; none is a
   handshake failure ("no server TLS configuration available");
2. the certificate, from the ``CertificateCache`` (exact name, wildcard, the local IP, then
   ``default_sni``), and with it a prepared ``SSL.Context`` per (policy, certificate): the
   chain and key, the client-certificate trust and ALPN.  ``Connection.set_context`` switches
   to it; session tickets stay those of the listener's base context, so resumption works
   across names.

By then OpenSSL has chosen the protocol version, so the listener's base context allows the
widest range of its policies and the callback refuses a handshake whose version the chosen
policy does not allow.  The TLS 1.2 cipher suites are the switched-to context's, so each policy
gets its own (``tests/tls/test_context.py`` checks it).  OpenSSL chooses the key exchange group
from its defaults (X25519 and the NIST curves, hybrid ML-KEM with OpenSSL 3.5+): pyOpenSSL can
restrict it to a single NIST curve only, which ``curves`` does when it names one (see
docs/differences.md).  A refused handshake (no policy, no certificate, a version the policy
does not allow) ends with an alert, logged at debug level as Caddy does.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from txcaddy.errors import ConfigError
from txcaddy.tls import _openssl
from txcaddy.tls._names import (
    CIPHER_SUITE_IDS,
    DEFAULT_CIPHER_SUITES,
    GO_CIPHER_NAMES,
    OPENSSL_CIPHER_NAMES,
    PROTOCOLS,
    VERSION_NAMES,
    VERSION_ORDER,
)
from txcaddy.tls.certificates import Certificate, CertificateCache
from txcaddy.tls.names import match_wildcard

__all__ = [
    "ACME_TLS_ALPN",
    "ClientAuthentication",
    "ConnectionPolicy",
    "HandshakeRefused",
    "ServerTLS",
    "TLSState",
    "load_connection_policies",
]

log = Logger()

ACME_TLS_ALPN = b"acme-tls/1"

CURVES = {"x25519": None, "secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(), "secp521r1": ec.SECP521R1()}

_CLIENT_AUTH_MODES = ("request", "require", "verify_if_given", "require_and_verify")
_POLICY_FIELDS = frozenset((
    "match", "certificate_selection", "cipher_suites", "curves", "alpn", "protocol_min",
    "protocol_max", "client_authentication", "default_sni", "insecure_secrets_log",
))
_CONTEXT_CACHE_SIZE = 512
_SESSION_ID_CONTEXT = b"txcaddy"


@dataclass
class TLSState:
    """What a request knows of its TLS connection (``request.tls``; the ``{http.request.tls.*}``
    placeholders and the access log's ``tls`` object)."""

    version: str = ""
    cipher_suite: str = ""
    resumed: bool = False
    proto: str = ""
    server_name: str = ""
    peer_certificate: x509.Certificate | None = None

    @classmethod
    def from_connection(cls, connection: SSL.Connection) -> TLSState:
        version = connection.get_protocol_version_name()
        cipher = connection.get_cipher_name() or ""
        server_name = connection.get_servername()
        proto = connection.get_alpn_proto_negotiated()
        peer = connection.get_peer_certificate(as_cryptography=True)
        return cls(
            version=VERSION_NAMES.get(version, version.lower()),
            cipher_suite=GO_CIPHER_NAMES.get(cipher, cipher),
            resumed=_openssl.session_reused(connection),
            proto=proto.decode("ascii", "replace") if proto else "",
            server_name=server_name.decode("ascii", "replace").lower() if server_name else "",
            peer_certificate=peer,
        )


@dataclass
class ClientAuthentication:
    """``client_authentication``: which client certificates the policy asks for and trusts."""

    mode: str
    trusted_cas: list[x509.Certificate] = field(default_factory=list)
    trusted_leaves: list[x509.Certificate] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> ClientAuthentication | None:
        trusted_cas = [_der_certificate(b64, f"{where}.trusted_ca_certs") for b64 in config.get("trusted_ca_certs") or ()]
        for path in config.get("trusted_ca_certs_pem_files") or ():
            try:
                with open(path, "rb") as f:
                    trusted_cas.extend(x509.load_pem_x509_certificates(f.read()))
            except (OSError, ValueError) as e:
                raise ConfigError(f"{where}.trusted_ca_certs_pem_files: loading {path!r}: {e}") from None
        trusted_leaves = [_der_certificate(b64, f"{where}.trusted_leaf_certs")
                          for b64 in config.get("trusted_leaf_certs") or ()]
        if config.get("verifiers"):
            raise ConfigError(f"{where}.verifiers: client certificate verifier modules are not supported")
        mode = config.get("mode") or ""
        if mode and mode not in _CLIENT_AUTH_MODES:
            raise ConfigError(f"{where}: client auth mode not recognized: {mode}")
        if not mode:
            if not (trusted_cas or trusted_leaves):
                return None  # Caddy's Active() is false: no client authentication at all
            mode = "require_and_verify"
        return cls(mode, trusted_cas, trusted_leaves)

    @property
    def verifies(self) -> bool:
        return self.mode in ("verify_if_given", "require_and_verify")

    def verify_flags(self) -> int:
        flags = SSL.VERIFY_PEER
        if self.mode in ("require", "require_and_verify"):
            flags |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        return flags

    def verify_callback(self) -> Callable[..., bool]:
        leaves = {c.public_bytes(serialization.Encoding.DER) for c in self.trusted_leaves}
        verifies = self.verifies
        leaf_only = bool(leaves) and not self.trusted_cas

        def verify(connection: Any, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
            if not verifies:
                return True  # "request"/"require": any certificate, not checked (Go's modes)
            if leaf_only:
                if depth > 0:
                    return True
                return crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) in leaves
            if not ok:
                return False
            if depth == 0 and leaves:
                return crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) in leaves
            return True

        return verify


def _der_certificate(b64: str, where: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(base64.b64decode(b64))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: parsing certificate: {e}") from None


class _SNIMatcher:
    """``tls.handshake_match.sni``: the server name equals one listed (case-insensitive)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = [n.lower() for n in names]

    def match(self, server_name: str, remote_ip: str) -> bool:
        return any(match_wildcard(server_name, name) for name in self.names)


class _RemoteIPMatcher:
    """``tls.handshake_match.remote_ip``: ``ranges`` and not ``not_ranges`` (CIDR or single IPs)."""

    def __init__(self, config: dict[str, Any], where: str) -> None:
        self.ranges = [_network(r, where) for r in config.get("ranges") or ()]
        self.not_ranges = [_network(r, where) for r in config.get("not_ranges") or ()]

    def match(self, server_name: str, remote_ip: str) -> bool:
        try:
            ip = ipaddress.ip_address(remote_ip.split("%", 1)[0])
        except ValueError:
            return False
        if self.ranges and not any(ip in r for r in self.ranges):
            return False
        return not any(ip in r for r in self.not_ranges)


def _network(text: str, where: str) -> Any:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as e:
        raise ConfigError(f"{where}.remote_ip: {e}") from None


class ConnectionPolicy:
    """One ``tls_connection_policies`` entry, loaded and checked."""

    def __init__(self, config: dict[str, Any], where: str = "tls_connection_policies[0]") -> None:
        unknown = sorted(set(config) - _POLICY_FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
        self.matchers: list[Any] = []
        for name, value in (config.get("match") or {}).items():
            if name == "sni":
                self.matchers.append(_SNIMatcher(value or ()))
            elif name == "remote_ip":
                self.matchers.append(_RemoteIPMatcher(value or {}, where))
            else:
                raise ConfigError(f"{where}.match: module not registered: tls.handshake_match.{name}")
        self.selection = _certificate_selection(config.get("certificate_selection"), where)
        suites = list(dict.fromkeys(config.get("cipher_suites") or ()))
        for suite in suites:
            if suite not in CIPHER_SUITE_IDS:
                raise ConfigError(f"{where}: unsupported cipher suite: {suite}")
        self.cipher_suites = tuple(suites) or DEFAULT_CIPHER_SUITES
        curves = list(dict.fromkeys(config.get("curves") or ()))
        for curve in curves:
            if curve not in CURVES:
                raise ConfigError(f"{where}: unsupported curve: {curve}")
        self.curves = tuple(curves)
        self.alpn: tuple[str, ...] | None = tuple(config["alpn"]) if config.get("alpn") else None
        minimum, maximum = config.get("protocol_min") or "tls1.2", config.get("protocol_max") or "tls1.3"
        for value in (minimum, maximum):
            if value not in PROTOCOLS:
                raise ConfigError(f"{where}: unsupported protocol: {value} (tls1.2 and tls1.3 are)")
        if VERSION_ORDER[minimum] > VERSION_ORDER[maximum]:
            raise ConfigError(f"{where}: protocol min ({minimum}) cannot be greater than protocol max ({maximum})")
        self.protocol_min, self.protocol_max = minimum, maximum
        auth = config.get("client_authentication")
        self.client_auth = ClientAuthentication.from_config(auth, f"{where}.client_authentication") if auth else None
        self.default_sni = (config.get("default_sni") or "").lower()
        self.secrets_log = config.get("insecure_secrets_log") or ""

    def matches(self, server_name: str, remote_ip: str) -> bool:
        return all(m.match(server_name, remote_ip) for m in self.matchers)

    def allows_version(self, version: str) -> bool:
        rank = VERSION_ORDER.get(version, 0)
        return VERSION_ORDER[self.protocol_min] <= rank <= VERSION_ORDER[self.protocol_max]

    def alpn_protocols(self, http2: bool) -> list[bytes]:
        """ALPN in preference order: the policy's, else h2 (when served) and http/1.1; acme-tls/1 last."""
        if self.alpn is not None:
            protocols = [p.encode() for p in self.alpn]
        else:
            protocols = [b"h2", b"http/1.1"] if http2 else [b"http/1.1"]
        if ACME_TLS_ALPN not in protocols:
            protocols.append(ACME_TLS_ALPN)
        return protocols


def _certificate_selection(config: dict[str, Any] | None, where: str) -> Callable[[Certificate], bool] | None:
    """``certificate_selection`` (Caddy's ``CustomCertSelectionPolicy``) as a predicate."""
    if not config:
        return None
    serials = [int(s) for s in config.get("serial_number") or ()]
    organizations = list(config.get("subject_organization") or ())
    algorithm = config.get("public_key_algorithm") or ""
    any_tag = set(config.get("any_tag") or ())
    all_tags = set(config.get("all_tags") or ())
    known = {"serial_number", "subject_organization", "public_key_algorithm", "any_tag", "all_tags"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"{where}.certificate_selection: unknown field {unknown[0]!r}")

    def select(certificate: Certificate) -> bool:
        leaf = certificate.leaf
        if serials and leaf.serial_number not in serials:
            return False
        if organizations:
            values = [a.value for a in leaf.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)]
            if not any(o in values for o in organizations):
                return False
        if algorithm and _key_algorithm(leaf) != algorithm:
            return False
        if any_tag and not any_tag & set(certificate.tags):
            return False
        return not (all_tags and not all_tags <= set(certificate.tags))

    return select


def _key_algorithm(certificate: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, rsa

    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa"
    return ""


def load_connection_policies(config: list[dict[str, Any]] | None, where: str) -> list[ConnectionPolicy]:
    return [ConnectionPolicy(c or {}, f"{where}.tls_connection_policies[{i}]") for i, c in enumerate(config or ())]


class _Handshake:
    """What the SNI callback chose for a connection, for the ALPN callback after it."""

    __slots__ = ("policy", "certificate")

    def __init__(self, policy: ConnectionPolicy, certificate: Certificate) -> None:
        self.policy = policy
        self.certificate = certificate


def _addresses(connection: SSL.Connection) -> tuple[str, str]:
    """(local IP, remote IP) of the TCP connection under ``connection``, or empty strings.

    Twisted makes the ``TLSMemoryBIOProtocol`` the connection's app data.
    """
    transport = getattr(connection.get_app_data(), "transport", None)
    if transport is None:
        return "", ""
    host, peer = transport.getHost(), transport.getPeer()
    return getattr(host, "host", ""), getattr(peer, "host", "")


class HandshakeRefused(Exception):
    """Why the SNI callback refused a handshake (logged at debug; the client sees an alert)."""


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """The TLS side of one server's listeners: policies, certificates, ALPN.

    @ivar challenges: a callable giving the ``acme-tls/1`` challenge certificate for a name
        (or None); the certificate manager sets it when ACME's TLS-ALPN-01 is in play.
    """

    def __init__(
        self,
        policies: list[ConnectionPolicy],
        certificates: CertificateCache,
        *,
        http2: bool = False,
        challenges: Callable[[str], Certificate | None] | None = None,
    ) -> None:
        if not policies:
            raise ConfigError("a TLS listener needs at least one connection policy")
        self.policies = policies
        self.certificates = certificates
        self.http2 = http2
        self.challenges = challenges
        self._contexts: OrderedDict[tuple[int, str], SSL.Context] = OrderedDict()
        self._handshakes: weakref.WeakKeyDictionary[SSL.Connection, _Handshake] = weakref.WeakKeyDictionary()
        self._base = self._base_context()

    # -- contexts ----------------------------------------------------------------------

    def _base_context(self) -> SSL.Context:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        minimum = min(VERSION_ORDER[p.protocol_min] for p in self.policies)
        maximum = max(VERSION_ORDER[p.protocol_max] for p in self.policies)
        by_rank = {rank: name for name, rank in VERSION_ORDER.items()}
        context.set_min_proto_version(PROTOCOLS[by_rank[minimum]])
        context.set_max_proto_version(PROTOCOLS[by_rank[maximum]])
        self._configure(context, self.policies[0])
        suites = list(dict.fromkeys(s for p in self.policies for s in p.cipher_suites))
        context.set_cipher_list(_openssl_ciphers(suites))
        context.set_tlsext_servername_callback(self._on_server_name)
        return context

    def _configure(self, context: SSL.Context, policy: ConnectionPolicy) -> None:
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION)
        context.set_cipher_list(_openssl_ciphers(policy.cipher_suites))
        curves = policy.curves
        if len(curves) == 1 and CURVES[curves[0]] is not None:
            context.set_tmp_ecdh(CURVES[curves[0]])  # type: ignore[arg-type]
        context.set_session_id(_SESSION_ID_CONTEXT)
        context.set_alpn_select_callback(self._select_alpn)
        if policy.secrets_log:
            context.set_keylog_callback(_secrets_logger(policy.secrets_log))

    def _context_for(self, index: int, certificate: Certificate) -> SSL.Context:
        key = (index, certificate.hash)
        context = self._contexts.get(key)
        if context is not None:
            self._contexts.move_to_end(key)
            return context
        policy = self.policies[index]
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._configure(context, policy)
        assert certificate.openssl_key is not None
        context.use_certificate(certificate.openssl_chain[0])
        context.use_privatekey(certificate.openssl_key)
        for extra in certificate.openssl_chain[1:]:
            context.add_extra_chain_cert(extra)
        auth = policy.client_auth
        if auth is not None:
            store = context.get_cert_store()
            assert store is not None
            for ca in auth.trusted_cas:
                store.add_cert(crypto.X509.from_cryptography(ca))
            if auth.trusted_cas:
                context.set_client_ca_list([crypto.X509.from_cryptography(ca).get_subject() for ca in auth.trusted_cas])
        self._contexts[key] = context
        if len(self._contexts) > _CONTEXT_CACHE_SIZE:
            self._contexts.popitem(last=False)
        return context

    # -- IOpenSSLServerConnectionCreator ---------------------------------------------------

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802 - Twisted's name
        return SSL.Connection(self._base, None)

    # -- callbacks (on the reactor thread, inside the handshake) ---------------------------

    def _on_server_name(self, connection: SSL.Connection) -> None:
        try:
            self._choose(connection)
        except HandshakeRefused as refused:
            # The base context has no certificate: OpenSSL fails this handshake with an alert,
            # as Go does when GetCertificate errors; nothing is raised into Twisted.
            log.debug("TLS handshake refused: {reason}", reason=str(refused))

    def _choose(self, connection: SSL.Connection) -> None:
        """Pick the policy and the certificate for this ClientHello; switch to their context."""
        raw = connection.get_servername()
        server_name = raw.decode("ascii", "replace").lower() if raw else ""
        local_ip, remote_ip = _addresses(connection)
        index = next((i for i, p in enumerate(self.policies) if p.matches(server_name, remote_ip)), -1)
        if index < 0:
            raise HandshakeRefused(f"no server TLS configuration available for ClientHello with SNI {server_name!r}")
        policy = self.policies[index]
        version = VERSION_NAMES.get(connection.get_protocol_version_name(), "")
        if not policy.allows_version(version):
            raise HandshakeRefused(f"protocol {version} not allowed for {server_name!r}")
        certificate = self._certificate(server_name, local_ip, policy)
        if certificate is None and server_name and self.challenges is not None:
            # A name we have no certificate for yet, being validated with TLS-ALPN-01: the CA's
            # ClientHello offers only acme-tls/1, which this callback cannot see, and TLS 1.2
            # picks its cipher suite (which needs a certificate) before ALPN is chosen, so the
            # challenge certificate must be in place now (certmagic answers from GetCertificate).
            certificate = self.challenges(server_name)
        if certificate is None:
            raise HandshakeRefused(f"no certificate available for {server_name or local_ip!r}")
        self._handshakes[connection] = _Handshake(policy, certificate)
        connection.set_context(self._context_for(index, certificate))
        if policy.client_auth is not None:
            connection.set_verify(policy.client_auth.verify_flags(), policy.client_auth.verify_callback())

    def quic_certificate(self, server_name: str, local_ip: str, remote_ip: str) -> Certificate:
        """The certificate for a QUIC (HTTP/3) handshake, chosen as ``_choose`` chooses for TLS.

        QUIC is always TLS 1.3, so a policy whose ``protocol_max`` is lower refuses it; a policy
        that authenticates clients refuses it too (the QUIC stack cannot verify client
        certificates, and HTTP/3 must not become a way around them).  Raises ``HandshakeRefused``.
        """
        server_name = server_name.lower()
        index = next((i for i, p in enumerate(self.policies) if p.matches(server_name, remote_ip)), -1)
        if index < 0:
            raise HandshakeRefused(f"no server TLS configuration available for ClientHello with SNI {server_name!r}")
        policy = self.policies[index]
        if not policy.allows_version("tls1.3"):
            raise HandshakeRefused(f"protocol tls1.3 (QUIC) not allowed for {server_name!r}")
        if policy.client_auth is not None:
            raise HandshakeRefused(f"client authentication is not offered over QUIC ({server_name!r})")
        certificate = self._certificate(server_name, local_ip, policy)
        if certificate is None:
            raise HandshakeRefused(f"no certificate available for {server_name or local_ip!r}")
        return certificate

    def _certificate(self, server_name: str, local_ip: str, policy: ConnectionPolicy) -> Certificate | None:
        """certmagic's ``getCertificateFromCache`` with the policy's selection."""
        cache, selection = self.certificates, policy.selection
        name = server_name or local_ip
        found = cache.matching(name, selection) if name else None
        if found is None and policy.default_sni:
            found = cache.matching(policy.default_sni, selection)
        return found

    def _select_alpn(self, connection: SSL.Connection, offered: list[bytes]) -> Any:
        state = self._handshakes.get(connection)
        if ACME_TLS_ALPN in offered and self.challenges is not None:
            raw = connection.get_servername()
            challenge = self.challenges(raw.decode("ascii", "replace").lower()) if raw else None
            if challenge is not None:
                assert challenge.openssl_key is not None
                connection.use_certificate(challenge.openssl_chain[0])
                connection.use_privatekey(challenge.openssl_key)
                return ACME_TLS_ALPN
        policy = state.policy if state is not None else self.policies[0]
        for protocol in policy.alpn_protocols(self.http2):
            if protocol != ACME_TLS_ALPN and protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS


def _openssl_ciphers(suites: Iterable[str]) -> bytes:
    """OpenSSL's cipher string for Go's TLS 1.2 suite names (TLS 1.3 suites are OpenSSL's defaults)."""
    return ":".join(OPENSSL_CIPHER_NAMES[s] for s in suites if s in OPENSSL_CIPHER_NAMES).encode() or b"DEFAULT"


def _secrets_logger(path: str) -> Callable[[Any, bytes], None]:
    """``insecure_secrets_log``: NSS key log lines appended to ``path`` (0600), as Caddy."""
    filename = os.path.abspath(path)
    log.warn("TLS SECURITY COMPROMISED: secrets logging is enabled! log_filename={filename}", filename=filename)

    def write(connection: Any, line: bytes) -> None:
        fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line + b"\n")
        finally:
            os.close(fd)

    return write
