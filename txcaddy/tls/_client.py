"""TLS to upstreams: the ``tls`` object of the ``http`` transport (Caddy's ``TLSConfig``).

Everything that reads files or builds an OpenSSL context happens once, at config load; per
connection we only pick the server name (SNI and the name the certificate must carry) and
hand Twisted a connection creator for it.  Creators are cached per name so the pool can key
connections on them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

import idna
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy.config.placeholders import Template
from txcaddy.errors import ConfigError

#: ALPN offered to upstreams by default: HTTP/1.1 connections (``versions`` without "2", and
#: upgrades); a creator for HTTP/2-capable connections offers ``h2, http/1.1`` instead.
ALPN = (b"http/1.1",)

_RENEGOTIATION = ("never", "once", "freely")

#: The private keys OpenSSL can sign a client handshake with (``PKey.from_cryptography_key``
#: takes these); an X25519, X448 or DH key in the key file is a config error.
_SIGNING_KEYS = (
    rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey, dsa.DSAPrivateKey,
)
_FIELDS = frozenset((
    "root_ca_pool", "root_ca_pem_files", "client_certificate_file", "client_certificate_key_file",
    "client_certificate_automate", "insecure_skip_verify", "handshake_timeout", "server_name",
    "renegotiation", "except_ports",
))
_MAX_CACHED_NAMES = 1024


class _NoServerName(Exception):
    """A unix-socket upstream has no host name to check the certificate against."""


@implementer(IOpenSSLClientConnectionCreator)
class UpstreamConnectionCreator:
    """Makes the OpenSSL connection for one server name: SNI, verification, renegotiation."""

    def __init__(self, options: CertificateOptions, name: str, verify: bool,
                 renegotiation: str, alpn: tuple[bytes, ...] = ()) -> None:
        self.name = name
        #: Protocols offered by ALPN (HTTP/2 to TLS upstreams: ``h2, http/1.1``); empty: the
        #: options' own (``http/1.1``).
        self.alpn = alpn
        self._options = options
        self._renegotiation = renegotiation
        is_ip = isIPAddress(name) or isIPv6Address(name)
        # RFC 6066: SNI carries host names only, never IP literals (Go and Twisted agree).
        self._sni = _idna(name) if name and not is_ip else None
        self._verify = verify
        self._service_id: Any = None
        if verify and name:
            self._service_id = IPAddress_ID(name) if is_ip else DNS_ID(name)

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        if self._sni is not None:
            connection.set_tlsext_host_name(self._sni)
        if self.alpn:
            connection.set_alpn_protos(list(self.alpn))
        if self._renegotiation == "never":
            connection.set_options(SSL.OP_NO_RENEGOTIATION)
        elif self._renegotiation == "once":
            connection.set_info_callback(_allow_one_renegotiation())
        if self._verify:
            connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                                  self._verifier(tlsProtocol))
        return connection

    def _verifier(self, tlsProtocol: Any) -> Any:
        service_id = self._service_id
        protocol = [tlsProtocol]  # dropped after use: no cycle through the OpenSSL callback

        def verify(connection: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
            if not ok:
                return False  # the chain does not lead to a trusted root: OpenSSL says why
            if depth != 0:
                return True
            try:
                if service_id is None:
                    raise _NoServerName(
                        "no server name to verify the upstream certificate against; "
                        "set tls_server_name (transport tls.server_name)")
                verify_service_identity(extract_patterns(cert), [service_id], [])
            except (VerificationError, _NoServerName):
                if protocol:
                    protocol.pop().failVerification(Failure())
                return False
            return True

        return verify

    def __eq__(self, other: object) -> bool:
        # Equal creators share pooled connections: same settings, same server name.
        return (isinstance(other, UpstreamConnectionCreator) and other.name == self.name
                and other._options is self._options and other.alpn == self.alpn)

    def __hash__(self) -> int:
        return hash((self.name, id(self._options), self.alpn))

    def __repr__(self) -> str:
        return f"<UpstreamConnectionCreator {self.name!r}>"


def _allow_one_renegotiation() -> Any:
    """Info callback letting the server renegotiate once, then refusing (Go's ``once``)."""
    handshakes = [0]

    def callback(connection: SSL.Connection, where: int, _ret: int) -> None:
        if where & SSL.SSL_CB_HANDSHAKE_DONE:
            handshakes[0] += 1
            if handshakes[0] >= 2:
                connection.set_options(SSL.OP_NO_RENEGOTIATION)

    return callback


def _idna(name: str) -> bytes:
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        return idna.encode(name)


class UpstreamTLS:
    """The loaded ``tls`` object: one OpenSSL context, creators per server name."""

    def __init__(
        self,
        options: CertificateOptions,
        *,
        verify: bool = True,
        server_name: str = "",
        handshake_timeout: float | None = None,
        renegotiation: str = "never",
        except_ports: frozenset[int] = frozenset(),
    ) -> None:
        self.options = options
        self.verify = verify
        self.server_name = server_name
        self._server_name = Template(server_name) if server_name else None
        self.handshake_timeout = handshake_timeout
        self.renegotiation = renegotiation
        self.except_ports = except_ports
        self._creators: dict[tuple[str, tuple[bytes, ...]], UpstreamConnectionCreator] = {}

    @classmethod
    def from_config(cls, config: Any, parse_duration: Callable[[str, Any], float | None]) -> UpstreamTLS:
        """Load Caddy's JSON ``tls`` object; file and format errors are ConfigErrors.

        ``parse_duration(field, value)`` reads a Caddy duration (seconds, None when unset).
        """
        if not isinstance(config, dict):
            raise ConfigError("reverse_proxy transport http: tls must be a JSON object")
        unknown = sorted(set(config) - _FIELDS)
        if unknown:
            raise ConfigError(f'reverse_proxy transport http: tls: unknown field "{unknown[0]}"')
        if config.get("client_certificate_automate"):
            raise ConfigError(
                "reverse_proxy transport http: tls: client_certificate_automate (tls_client_auth "
                "with one argument) is not supported by txcaddy; give a certificate and key file")
        cert_file = _string(config, "client_certificate_file")
        key_file = _string(config, "client_certificate_key_file")
        if cert_file and not key_file:
            raise ConfigError("making TLS client config: client_certificate_file specified "
                              "without client_certificate_key_file")
        if key_file and not cert_file:
            raise ConfigError("making TLS client config: client_certificate_key_file specified "
                              "without client_certificate_file")
        renegotiation = _string(config, "renegotiation") or "never"
        if renegotiation not in _RENEGOTIATION:
            raise ConfigError(
                f"making TLS client config: invalid TLS renegotiation level: {renegotiation}")
        insecure = config.get("insecure_skip_verify", False)
        if not isinstance(insecure, bool):
            raise ConfigError("reverse_proxy transport http: tls.insecure_skip_verify must be a boolean")

        kwargs: dict[str, Any] = {"acceptableProtocols": list(ALPN)}
        if cert_file:
            key, certificate, chain = _load_key_pair(cert_file, key_file)
            kwargs.update(privateKey=key, certificate=certificate, extraCertChain=chain)
        roots = _load_roots(config)
        if insecure:
            kwargs["verify"] = False
        else:
            kwargs["trustRoot"] = (trustRootFromCertificates(roots) if roots is not None
                                   else platformTrust())
        options = CertificateOptions(**kwargs)
        try:
            options.getContext()  # a key not matching its certificate fails here, at load
        except SSL.Error as e:
            raise ConfigError(f"making TLS client config: loading client certificate key pair: {e}") from None

        except_ports = config.get("except_ports") or []
        if not isinstance(except_ports, list) or not all(isinstance(p, str) for p in except_ports):
            raise ConfigError("reverse_proxy transport http: tls.except_ports must be a list of strings")
        return cls(
            options,
            verify=not insecure,
            server_name=_string(config, "server_name"),
            handshake_timeout=parse_duration("tls.handshake_timeout", config.get("handshake_timeout")),
            renegotiation=renegotiation,
            except_ports=frozenset(int(p) for p in except_ports if p.isdigit()),
        )

    def applies_to(self, port: int) -> bool:
        """Whether a request to ``port`` uses TLS (``except_ports`` go plain HTTP)."""
        return port not in self.except_ports

    def creator_for(self, host: str, request: Any = None,
                    alpn: tuple[bytes, ...] = ()) -> UpstreamConnectionCreator:
        """The connection creator for an upstream host (a unix upstream passes "").

        ``alpn``: the protocols to offer (empty: ``http/1.1`` only, the options' own).
        """
        name = host
        template = self._server_name
        if template is not None:
            if template.is_static:
                name = self.server_name
            elif request is not None:
                # Caddy renders it per request with ReplaceAll; empty → the dial host.
                name = template.render(request, empty_unknown=True) or host
        creator = self._creators.get((name, alpn))
        if creator is None:
            if len(self._creators) >= _MAX_CACHED_NAMES:
                self._creators.clear()
            creator = self._creators[(name, alpn)] = UpstreamConnectionCreator(
                self.options, name, self.verify, self.renegotiation, alpn)
        return creator


def _string(config: dict[str, Any], key: str) -> str:
    value = config.get(key) or ""
    if not isinstance(value, str):
        raise ConfigError(f"reverse_proxy transport http: tls.{key} must be a string")
    return value


def _load_roots(config: dict[str, Any]) -> list[Certificate] | None:
    """``root_ca_pool`` (base64 DER) and ``root_ca_pem_files``: None means the system roots."""
    pool = config.get("root_ca_pool") or []
    files = config.get("root_ca_pem_files") or []
    for key, value in (("root_ca_pool", pool), ("root_ca_pem_files", files)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"reverse_proxy transport http: tls.{key} must be a list of strings")
    if not pool and not files:
        return None
    roots: list[Certificate] = []
    for encoded in pool:
        try:
            der = base64.b64decode(encoded, validate=True)
            cert = x509.load_der_x509_certificate(der)
        except (binascii.Error, ValueError) as e:
            raise ConfigError(f"making TLS client config: parsing CA certificate: {e}") from None
        roots.append(Certificate(crypto.X509.from_cryptography(cert)))
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConfigError(f"making TLS client config: failed reading ca cert: {e}") from None
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            certs = []  # like Go's AppendCertsFromPEM: a file without certificates adds none
        roots.extend(Certificate(crypto.X509.from_cryptography(c)) for c in certs)
    return roots


def _load_key_pair(cert_file: str, key_file: str) -> tuple[Any, Any, list[Any]]:
    """The client key, its certificate and the rest of the chain in the certificate file."""
    try:
        with open(cert_file, "rb") as f:
            cert_data = f.read()
        with open(key_file, "rb") as f:
            key_data = f.read()
    except OSError as e:
        raise ConfigError(
            f"making TLS client config: loading client certificate key pair: {e}") from None
    try:
        certs = x509.load_pem_x509_certificates(cert_data)
        key = load_pem_private_key(key_data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(
            f"making TLS client config: loading client certificate key pair: {e}") from None
    if not isinstance(key, _SIGNING_KEYS):
        # Go's tls.X509KeyPair refuses these key types with this error.
        raise ConfigError("making TLS client config: loading client certificate key pair: "
                          "tls: found unknown private key type in PKCS#8 wrapping")
    return (
        crypto.PKey.from_cryptography_key(key),
        crypto.X509.from_cryptography(certs[0]),
        [crypto.X509.from_cryptography(c) for c in certs[1:]],
    )
