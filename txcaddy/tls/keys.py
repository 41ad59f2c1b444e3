"""Private keys as certmagic v0.17.2 makes and stores them (``crypto.go``): types and PEM forms."""

from __future__ import annotations

from typing import TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from txcaddy.tls import _x509

__all__ = ["KEY_TYPES", "PrivateKey", "load_private_key_pem", "new_private_key", "private_key_pem"]

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
"""The key types certmagic generates and Go's x509 signs with."""

_NANOSECONDS = 1e9


# -- keys -----------------------------------------------------------------------------------

KEY_TYPES = ("p256", "p384", "rsa2048", "rsa4096", "ed25519")
"""certmagic's key types that Caddy accepts as ``key_type`` (``""`` means ``p256``)."""


def new_private_key(key_type: str = "p256") -> PrivateKey:
    """A fresh private key of one of certmagic's types (``""`` is ``p256``, its default)."""
    if key_type in ("", "p256"):
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unrecognized or unsupported key type: {key_type}")


def private_key_pem(key: PrivateKey) -> bytes:
    """certmagic's ``PEMEncodePrivateKey``: SEC 1 ``EC PRIVATE KEY``, PKCS #1 ``RSA PRIVATE
    KEY``, and PKCS #8 under an ``ED25519 PRIVATE KEY`` label (certmagic v0.17.2's own)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    if isinstance(key, rsa.RSAPrivateKey):
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    if isinstance(key, ed25519.Ed25519PrivateKey):
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return _x509.pem_encode("ED25519 PRIVATE KEY", der)
    raise TypeError(f"unsupported key type: {type(key).__name__}")


def load_private_key_pem(data: bytes) -> PrivateKey:
    """certmagic's ``PEMDecodePrivateKey``: the first PEM block, any ``… PRIVATE KEY``
    label, holding PKCS #1, PKCS #8 or SEC 1 (so Caddy's and OpenSSL's files both load)."""
    blocks = _x509.pem_blocks(data)
    if not blocks:
        raise ValueError("failed to decode PEM block containing private key")
    label, der = blocks[0]
    if label != "PRIVATE KEY" and not label.endswith(" PRIVATE KEY"):
        raise ValueError(f"unknown PEM header {label!r}")
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise ValueError("unknown private key type") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise ValueError(f"found unknown private key type: {type(key).__name__}")
    return key


