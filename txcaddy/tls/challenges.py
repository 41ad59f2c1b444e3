"""The ACME challenges this process is answering right now (certmagic's challenge memory).

An ACME issuer, while it validates a name, puts what the CA will ask for here: for HTTP-01
the token and its key authorization, served by every HTTP server before its routes (Caddy's
``HandleHTTPChallenge``); for TLS-ALPN-01 a challenge certificate, served in the TLS handshake
to a client that offers only ``acme-tls/1``.  One ``Challenges`` object is shared by the
issuers and the listeners of a service; reloads keep it.
"""

from __future__ import annotations

from dataclasses import dataclass

from txcaddy.tls.certificates import Certificate

__all__ = ["HTTP01_PREFIX", "Challenges"]

HTTP01_PREFIX = "/.well-known/acme-challenge/"


@dataclass(frozen=True)
class _HTTP01:
    identifier: str
    key_authorization: str


class Challenges:
    """Pending HTTP-01 tokens and TLS-ALPN-01 certificates, by token and by name."""

    def __init__(self) -> None:
        self._http01: dict[str, _HTTP01] = {}
        self._tls_alpn01: dict[str, Certificate] = {}

    def __bool__(self) -> bool:
        return True  # an empty one is still the one to add challenges to

    # -- HTTP-01 -------------------------------------------------------------------------

    def add_http01(self, identifier: str, token: str, key_authorization: str) -> None:
        self._http01[token] = _HTTP01(identifier.lower(), key_authorization)

    def remove_http01(self, token: str) -> None:
        self._http01.pop(token, None)

    @property
    def http01_pending(self) -> bool:
        return bool(self._http01)

    def http01_response(self, method: str, host: str, path: str) -> bytes | None:
        """The key authorization for a challenge request, or None when it is not one.

        certmagic's ``solveHTTPChallenge``: a GET of exactly the token's path whose Host,
        without its port, is the name being validated (case-insensitive).
        """
        if method != "GET" or not path.startswith(HTTP01_PREFIX):
            return None
        challenge = self._http01.get(path[len(HTTP01_PREFIX):])
        if challenge is None or _hostname(host) != challenge.identifier:
            return None
        return challenge.key_authorization.encode("ascii")

    # -- TLS-ALPN-01 -----------------------------------------------------------------------

    def add_tls_alpn01(self, identifier: str, certificate: Certificate) -> None:
        self._tls_alpn01[identifier.lower()] = certificate

    def remove_tls_alpn01(self, identifier: str) -> None:
        self._tls_alpn01.pop(identifier.lower(), None)

    def tls_alpn01_certificate(self, server_name: str) -> Certificate | None:
        return self._tls_alpn01.get(server_name.lower())


def _hostname(host: str) -> str:
    """The Host field without its port (and an IPv6 literal without brackets), lower-case."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() else host
