"""Building and reading X.509 certificates as Go and smallstep write them (for the local CA).

The subjects (``PrintableString`` common names), serials, key identifiers, extension order and
criticality, and PEM forms that ``/usr/bin/caddy`` 2.6.2 writes (see ``txcaddy.tls.internalca``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from txcaddy.tls.keys import PrivateKey

PEM_BLOCK = re.compile(rb"-----BEGIN ([^\r\n-]*)-----\r?\n(.*?)-----END \1-----", re.S)


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """The PEM blocks in ``data`` as (label, DER); headers like ``Proc-Type`` are refused."""
    blocks = []
    for match in PEM_BLOCK.finditer(data):
        body = match.group(2)
        if b":" in body:
            raise ValueError("encrypted or annotated PEM blocks are not supported")
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except binascii.Error:
            raise ValueError("invalid base64 in PEM block") from None
        blocks.append((match.group(1).decode("ascii", "replace"), der))
    return blocks


def pem_encode(label: str, der: bytes) -> bytes:
    """Go's ``pem.Encode``: 64-column base64 lines."""
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"".join([f"-----BEGIN {label}-----\n".encode(), *(line + b"\n" for line in lines), f"-----END {label}-----\n".encode()])


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def single_certificate(data: bytes) -> x509.Certificate:
    """Caddy's ``pemDecodeSingleCert``: exactly one ``CERTIFICATE`` block (whitespace
    around it is forgiven; Caddy also refuses a trailing blank line)."""
    blocks = pem_blocks(data)
    if not blocks:
        raise ValueError("no PEM block found")
    if len(blocks) > 1 or PEM_BLOCK.sub(b"", data).strip():
        raise ValueError("input contained more than a single PEM block")
    label, der = blocks[0]
    if label != "CERTIFICATE":
        raise ValueError(f"expected PEM block type to be CERTIFICATE, but got '{label}'")
    return x509.load_der_x509_certificate(der)


# -- certificate contents -------------------------------------------------------------------

PRINTABLE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 '()+,-./:=?")


def subject(common_name: str) -> x509.Name:
    """A CN-only name encoded as Go does: ``PrintableString`` when every character allows it
    (no ``*`` or ``&``), else ``UTF8String`` (cryptography would always pick UTF8String)."""
    if not common_name:
        return x509.Name([])
    kind = _ASN1Type.PrintableString if set(common_name) <= PRINTABLE else _ASN1Type.UTF8String
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name, kind)])


def serial_number() -> int:
    """smallstep's serials: uniform below 2**128 (zero is not a valid serial)."""
    while True:
        serial = secrets.randbits(128)
        if serial:
            return serial


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """Go's choice of signature algorithm for an issuer key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = key.curve.key_size
        if size == 256:
            return hashes.SHA256()
        if size == 384:
            return hashes.SHA384()
        if size == 521:
            return hashes.SHA512()
        raise ValueError(f"unsupported elliptic curve: {key.curve.name}")
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    raise TypeError(f"unsupported signing key type: {type(key).__name__}")


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def timestamp(moment: datetime) -> float:
    return moment.timestamp()


CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
)


def ca_certificate(
    subject: x509.Name, key: PrivateKey, issuer: x509.Certificate | None, issuer_key: PrivateKey,
    path_length: int, now: int, lifetime: float,
) -> x509.Certificate:
    """smallstep's root (``issuer`` None, path length 1) or intermediate (path length 0)
    profile, with Go's extension order: key usage, basic constraints, SKI, then AKI."""
    builder = (
        x509.CertificateBuilder()
        .serial_number(serial_number())
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .not_valid_before(utc(now))
        .not_valid_after(utc(int(now + lifetime)))
        .add_extension(CA_KEY_USAGE, critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(authority_key_identifier(issuer), critical=False)
    return builder.sign(issuer_key, signature_hash(issuer_key))


def authority_key_identifier(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """Go copies the issuer's SKI (key id only); an issuer without one gets one computed."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def subject_alternative_names(names: Sequence[str]) -> list[x509.GeneralName]:
    """certmagic's CSR sorting of names (IP, e-mail, URI, else DNS in IDNA ASCII), in Go's
    SAN order: DNS names, e-mail addresses, IP addresses, URIs."""
    dns: list[x509.GeneralName] = []
    emails: list[x509.GeneralName] = []
    ips: list[x509.GeneralName] = []
    uris: list[x509.GeneralName] = []
    for name in names:
        address = parse_ip(name)
        if address is not None:
            ips.append(x509.IPAddress(address))
        elif "@" in name:
            emails.append(x509.RFC822Name(name))
        elif "/" in name and is_url(name):
            uris.append(x509.UniformResourceIdentifier(name))
        else:
            dns.append(x509.DNSName(idna_ascii(name)))
    return dns + emails + ips + uris


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Go's ``net.ParseIP``: no zones; IPv4-mapped IPv6 is written as the 4-byte IPv4."""
    if "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_url(text: str) -> bool:
    """Roughly Go's ``url.Parse`` success: no control characters, valid ``%`` escapes."""
    if any(ch < " " or ch == "\x7f" for ch in text):
        return False
    return all(re.fullmatch(r"[0-9A-Fa-f]{2}", piece[:2]) for piece in text.split("%")[1:])


def idna_ascii(name: str) -> str:
    """x/net idna's Punycode profile: non-ASCII labels become ``xn--``, nothing else changes."""
    if name.isascii():
        return name
    labels = []
    for label in name.split("."):
        if label.isascii():
            labels.append(label)
        else:
            labels.append("xn--" + label.encode("punycode").decode("ascii"))
    return ".".join(labels)


def leaf_certificate(
    names: Sequence[str], public_key: Any, issuer: x509.Certificate, issuer_key: PrivateKey, now: int, not_after: int,
) -> x509.Certificate:
    """smallstep's default leaf (what Caddy's internal issuer signs): empty subject, key
    usage digitalSignature (plus keyEncipherment for RSA keys), serverAuth and clientAuth,
    SKI, AKI, and the SANs, critical because the subject is empty (Go's rule)."""
    rsa_key = isinstance(public_key, rsa.RSAPublicKey)
    key_usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=rsa_key, data_encipherment=False,
        key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .serial_number(serial_number())
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .not_valid_before(utc(now))
        .not_valid_after(utc(not_after))
        .add_extension(key_usage, critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_identifier(issuer), critical=False)
        .add_extension(x509.SubjectAlternativeName(subject_alternative_names(names)), critical=True)
        .sign(issuer_key, signature_hash(issuer_key))
    )




def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


# -- storage --------------------------------------------------------------------------------

