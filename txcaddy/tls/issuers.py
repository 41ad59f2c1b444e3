"""What certificate issuers hand the certificate manager, whatever the issuer (local CA, ACME)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

__all__ = ["IssuedCertificate"]


@dataclass(frozen=True)
class IssuedCertificate:
    """What an issuer hands the certificate manager (certmagic's ``IssuedCertificate``).

    ``certificate_pem`` is the chain as Caddy stores it: the leaf, then its issuer (the
    intermediate, or the root with ``sign_with_root``).  Times are POSIX seconds.
    """

    certificate_pem: bytes
    private_key_pem: bytes
    not_before: float
    not_after: float
    chain: tuple[x509.Certificate, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


