"""Answering ACME challenges: the TLS-ALPN-01 certificate and the solvers' own listeners.

A challenge is answered from the shared ``Challenges`` object: every txcaddy HTTP server
serves HTTP-01 tokens before its routes, and every TLS listener answers TLS-ALPN-01 in the
handshake.  When no server of ours listens on the port the CA will connect to, certmagic's
solvers (``solvers.go``: ``httpSolver``, ``tlsALPNSolver``, ``robustTryListen``) listen there
themselves for the length of the validation; so does ``ChallengeListeners``:

* it tries to listen on ``bind_host:port``; if the address is in use, it assumes the server
  using it is ours and answers from the same ``Challenges`` (certmagic's "already in use"
  rule), and any other failure fails the challenge;
* listeners are counted per (challenge type, host, port) across all issuers of the process,
  and the last challenge to finish closes it, as certmagic's ``solvers`` map does.

The TLS-ALPN-01 certificate follows RFC 8737 §3 and acmez v1.0.4 ``TLSALPN01ChallengeCert``:
a fresh P-256 key, self-signed, CN "ACME challenge", one-year validity, serverAuth, the
identifier as its only SAN, and the critical acmeIdentifier extension holding the SHA-256
of the key authorization.
"""

from __future__ import annotations

import errno
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IHandshakeListener, IListeningPort, IReactorTCP
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer

from txcaddy.tls import _x509
from txcaddy.tls.certificates import Certificate, CertificateCache
from txcaddy.tls.challenges import Challenges
from txcaddy.tls.context import ConnectionPolicy, ServerTLS

__all__ = [
    "ACME_IDENTIFIER_OID",
    "HTTP_01",
    "TLS_ALPN_01",
    "ChallengeListenerError",
    "ChallengeListeners",
    "tls_alpn01_certificate",
]

log = Logger()

HTTP_01 = "http-01"
TLS_ALPN_01 = "tls-alpn-01"
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
"""id-pe-acmeIdentifier (RFC 8737 §6.1)."""


def tls_alpn01_certificate(identifier: str, key_authorization: str, now: float) -> Certificate:
    """The self-signed certificate that answers a TLS-ALPN-01 challenge for ``identifier``."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    value = b"\x04\x20" + digest  # DER OCTET STRING of the 32-byte digest
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ACME challenge")])
    start = datetime.fromtimestamp(int(now), UTC)
    address = _x509.parse_ip(identifier)
    san: x509.GeneralName = x509.IPAddress(address) if address is not None else x509.DNSName(identifier)
    certificate = (
        x509.CertificateBuilder()
        .serial_number(_x509.serial_number())
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, value), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Certificate.from_objects([certificate], key)


# -- the solvers' own listeners ---------------------------------------------------------------


class ChallengeListenerError(Exception):
    """The challenge port could not be listened on, and nothing else listens there."""


class _HTTP01Resource(Resource):
    """Answers only HTTP-01 requests (certmagic's challenge-only HTTP server)."""

    isLeaf = True

    def __init__(self, challenges: Challenges) -> None:
        super().__init__()
        self._challenges = challenges

    def render(self, request: Request) -> bytes:  # type: ignore[override]
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        body = self._challenges.http01_response(request.method.decode("latin-1"), host, request.path.decode("latin-1"))
        request.setHeader(b"connection", b"close")
        if body is None:
            request.setResponseCode(404)
            return b""
        request.setHeader(b"content-type", b"text/plain")
        return body


@implementer(IHandshakeListener)
class _CloseAfterHandshake(Protocol):
    """The TLS-ALPN-01 exchange is the handshake: close once it is done (certmagic's
    ``handleConn``)."""

    def handshakeCompleted(self) -> None:  # noqa: N802 - Twisted's name
        assert self.transport is not None
        self.transport.loseConnection()


@dataclass
class _Listening:
    port: IListeningPort | None  # None: another server of ours answers on that address
    users: int


class ChallengeListeners:
    """The solvers' temporary listeners, shared by every issuer of the process (on the reactor
    thread only)."""

    _open: dict[tuple[str, str, int], _Listening] = {}

    @classmethod
    def acquire(cls, challenge_type: str, host: str, port: int, *, reactor: IReactorTCP,
                challenges: Challenges) -> None:
        """Make sure something answers ``challenge_type`` on ``host:port`` until ``release``."""
        key = (challenge_type, host, port)
        listening = cls._open.get(key)
        if listening is not None:
            listening.users += 1
            return
        factory: Any = _http01_site(challenges) if challenge_type == HTTP_01 else _tls_alpn01_factory(challenges)
        try:
            port_object = reactor.listenTCP(port, factory, interface=host)
        except CannotListenError as e:
            if getattr(e.socketError, "errno", None) != errno.EADDRINUSE:
                raise ChallengeListenerError(
                    f"could not start listener for challenge server at {host}:{port}: {e.socketError}"
                ) from None
            log.debug("{type} challenge: {host}:{port} is in use; relying on the server listening there",
                      type=challenge_type, host=host, port=port)
            port_object = None
        else:
            log.info("{type} challenge: listening on {host}:{port} until validated",
                     type=challenge_type, host=host, port=port)
        cls._open[key] = _Listening(port_object, 1)

    @classmethod
    async def release(cls, challenge_type: str, host: str, port: int) -> None:
        """One challenge less on that address; the last one closes a listener we opened."""
        key = (challenge_type, host, port)
        listening = cls._open.get(key)
        if listening is None:
            return
        listening.users -= 1
        if listening.users > 0:
            return
        del cls._open[key]
        if listening.port is not None:
            stopped = listening.port.stopListening()
            if stopped is not None:
                await stopped


def _http01_site(challenges: Challenges) -> Site:
    site = Site(_HTTP01Resource(challenges))
    site.displayTracebacks = False
    return site


def _tls_alpn01_factory(challenges: Challenges) -> TLSMemoryBIOFactory:
    tls = ServerTLS([ConnectionPolicy({})], CertificateCache(), challenges=challenges.tls_alpn01_certificate)
    return TLSMemoryBIOFactory(tls, False, Factory.forProtocol(_CloseAfterHandshake))
