"""Certificates in memory: what a handshake can be answered with (certmagic's cache).

A ``Certificate`` is a parsed chain and key with the names it covers, and the OpenSSL
objects a server context needs, built once.  The ``CertificateCache`` finds the certificate
for a server name the way certmagic v0.17.2 does (``handshake.go: getCertificateFromCache``):
the exact name, then the name with its labels replaced by ``*`` from the left
(``a.b.c`` → ``*.b.c`` → ``*.*.c`` → ``*.*.*``); without SNI, the connection's local IP
address, then ``default_sni``.  Managed certificates (obtained and renewed by the certificate
manager) and certificates loaded from files (``apps.tls.certificates``) live in the same cache.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID
from OpenSSL import crypto

from txcaddy.errors import ConfigError

__all__ = ["Certificate", "CertificateCache", "CertificateError", "load_certificates"]


class CertificateError(ValueError):
    """A certificate or key that cannot be used (unparsable, or the key does not match)."""


@dataclass(eq=False)
class Certificate:
    """One certificate chain with its key, ready for handshakes.

    @ivar names: the DNS names and IP addresses it covers, lower-case (the SANs; the subject's
        common name when there are none, as certmagic).
    @ivar chain: the leaf first, then the intermediates, as given.
    @ivar managed: obtained and renewed by the certificate manager (not loaded from a file).
    @ivar issuer_key: the storage key of the issuer that issued it (managed ones).
    @ivar tags: the ``tags`` of the config that loaded it (for ``certificate_selection``).
    @ivar hash: hex SHA-256 of the chain's DER: one identity per chain.
    """

    chain: list[x509.Certificate]
    private_key: PrivateKeyTypes
    names: tuple[str, ...] = ()
    managed: bool = False
    issuer_key: str = ""
    tags: tuple[str, ...] = ()
    hash: str = ""
    openssl_chain: list[crypto.X509] = field(default_factory=list, repr=False)
    openssl_key: crypto.PKey | None = field(default=None, repr=False)

    @classmethod
    def from_pem(
        cls, certificate_pem: bytes, key_pem: bytes, *, managed: bool = False, issuer_key: str = "",
        tags: Iterable[str] = (),
    ) -> Certificate:
        """Parse a PEM chain (leaf first) and its PEM private key; check that they belong together."""
        try:
            chain = x509.load_pem_x509_certificates(certificate_pem)
        except ValueError as e:
            raise CertificateError(f"no certificate in the PEM data: {e}") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as e:
            raise CertificateError(f"no usable private key in the PEM data: {e}") from None
        return cls.from_objects(chain, key, managed=managed, issuer_key=issuer_key, tags=tags)

    @classmethod
    def from_objects(
        cls, chain: list[x509.Certificate], key: PrivateKeyTypes, *, managed: bool = False,
        issuer_key: str = "", tags: Iterable[str] = (),
    ) -> Certificate:
        if not chain:
            raise CertificateError("no certificate in the PEM data")
        leaf_public = chain[0].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        key_public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if leaf_public != key_public:
            raise CertificateError("private key does not match the certificate's public key")
        digest = hashlib.sha256()
        for cert in chain:
            digest.update(cert.public_bytes(serialization.Encoding.DER))
        try:
            openssl_key = crypto.PKey.from_cryptography_key(key)  # type: ignore[arg-type]
        except TypeError as e:
            raise CertificateError(f"unsupported private key type: {e}") from None
        return cls(
            chain=list(chain),
            private_key=key,
            names=certificate_names(chain[0]),
            managed=managed,
            issuer_key=issuer_key,
            tags=tuple(tags),
            hash=digest.hexdigest(),
            openssl_chain=[crypto.X509.from_cryptography(c) for c in chain],
            openssl_key=openssl_key,
        )

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_before(self) -> float:
        return self.leaf.not_valid_before_utc.timestamp()

    @property
    def not_after(self) -> float:
        return self.leaf.not_valid_after_utc.timestamp()

    def expired(self, now: float) -> bool:
        return now > self.not_after

    def in_renewal_window(self, now: float, ratio: float = 1 / 3) -> bool:
        """certmagic's ``currentlyInRenewalWindow``: less than ``ratio`` of the lifetime left."""
        not_after = int(self.not_after) + 1  # certmagic truncates to the second and adds one
        lifetime = not_after - self.not_before
        return now > not_after - lifetime * ratio

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def __repr__(self) -> str:
        expiry = datetime.fromtimestamp(self.not_after, UTC).isoformat()
        return f"<Certificate {list(self.names)} until {expiry}{' managed' if self.managed else ''}>"


def certificate_names(certificate: x509.Certificate) -> tuple[str, ...]:
    """The names a leaf covers: DNS and IP SANs, else the subject CN (certmagic's ``fillCertFromLeaf``)."""
    names: list[str] = []
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        names.extend(name.lower() for name in san.get_values_for_type(x509.DNSName))
        names.extend(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        names.extend(uri.lower() for uri in san.get_values_for_type(x509.UniformResourceIdentifier))
    if not names:
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            value = attribute.value
            if isinstance(value, bytes):
                value = value.decode("utf-8", "replace")
            names.append(value.lower())
    return tuple(dict.fromkeys(names))


class CertificateCache:
    """Certificates by the names they cover; what the SNI callback reads.

    Several certificates may cover a name (a renewed one beside the old, a loaded one beside a
    managed one): lookups return the one that expires last among those that match.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, list[Certificate]] = {}
        self._by_hash: dict[str, Certificate] = {}

    def __iter__(self) -> Iterator[Certificate]:
        return iter(list(self._by_hash.values()))

    def __len__(self) -> int:
        return len(self._by_hash)

    def add(self, certificate: Certificate) -> Certificate:
        """Add ``certificate`` (a chain already cached is kept once; its tags are merged)."""
        known = self._by_hash.get(certificate.hash)
        if known is not None:
            known.tags = tuple(dict.fromkeys(known.tags + certificate.tags))
            return known
        self._by_hash[certificate.hash] = certificate
        for name in certificate.names:
            self._by_name.setdefault(name, []).append(certificate)
        return certificate

    def remove(self, certificate: Certificate) -> None:
        if self._by_hash.pop(certificate.hash, None) is None:
            return
        for name in certificate.names:
            entries = self._by_name.get(name)
            if entries is not None:
                entries[:] = [c for c in entries if c.hash != certificate.hash]
                if not entries:
                    del self._by_name[name]

    def replace(self, old: Certificate | None, new: Certificate) -> None:
        """Put ``new`` in place of ``old`` (a renewal): the new one is findable before the old goes."""
        self.add(new)
        if old is not None and old.hash != new.hash:
            self.remove(old)

    def exact(self, name: str, selection: Any = None) -> Certificate | None:
        """The certificate for exactly ``name`` (a ``*.`` name for wildcards), or None."""
        entries = self._by_name.get(name.lower())
        if not entries:
            return None
        if selection is not None:
            entries = [c for c in entries if selection(c)]
            if not entries:
                return None
        return max(entries, key=lambda c: c.not_after)

    def matching(self, name: str, selection: Any = None) -> Certificate | None:
        """certmagic's lookup: the exact name, then with labels replaced by ``*`` from the left."""
        name = name.lower()
        found = self.exact(name, selection)
        if found is not None:
            return found
        labels = name.split(".")
        for i in range(len(labels)):
            labels[i] = "*"
            found = self.exact(".".join(labels), selection)
            if found is not None:
                return found
        return None

    def all_matching(self, name: str) -> list[Certificate]:
        """Every cached certificate that covers ``name`` exactly or by a wildcard (phase 1 asks)."""
        name = name.lower()
        out = list(self._by_name.get(name, ()))
        labels = name.split(".")
        for i in range(len(labels)):
            labels[i] = "*"
            out.extend(self._by_name.get(".".join(labels), ()))
        return list({c.hash: c for c in out}.values())


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"loading {what} {path!r}: {e.strerror or e}") from None


def load_certificates(config: dict[str, Any] | None) -> list[Certificate]:
    """The certificates of ``apps.tls.certificates``: ``load_files``, ``load_pem``, ``load_folders``.

    A file that cannot be read or a key that does not match its certificate is a config error
    naming the file (Caddy refuses such a config too).  ``automate`` is read by the manager.
    """
    config = config or {}
    known = {"load_files", "load_pem", "load_folders", "automate", "load_storage"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"apps.tls.certificates: certificate loader not supported: {unknown[0]}")
    if config.get("load_storage"):
        raise ConfigError("apps.tls.certificates.load_storage is not supported by txcaddy")
    out: list[Certificate] = []
    for i, entry in enumerate(config.get("load_files") or ()):
        where = f"apps.tls.certificates.load_files[{i}]"
        fmt = entry.get("format") or "pem"
        if fmt != "pem":
            raise ConfigError(f"{where}: unrecognized certificate/key encoding format: {fmt}")
        cert_path, key_path = entry.get("certificate") or "", entry.get("key") or ""
        cert_pem = _read(cert_path, "certificate file")
        key_pem = _read(key_path, "key file")
        try:
            out.append(Certificate.from_pem(cert_pem, key_pem, tags=entry.get("tags") or ()))
        except CertificateError as e:
            raise ConfigError(f"{where}: loading certificate {cert_path!r} and key {key_path!r}: {e}") from None
    for i, entry in enumerate(config.get("load_pem") or ()):
        where = f"apps.tls.certificates.load_pem[{i}]"
        try:
            out.append(Certificate.from_pem(
                (entry.get("certificate") or "").encode(), (entry.get("key") or "").encode(),
                tags=entry.get("tags") or ()))
        except CertificateError as e:
            raise ConfigError(f"{where}: {e}") from None
    for folder in config.get("load_folders") or ():
        out.extend(_load_folder(folder))
    return out


def _load_folder(folder: str) -> list[Certificate]:
    """Every ``.pem`` bundle (certificate chain and key in one file) below ``folder``, as Caddy."""
    if not os.path.isdir(folder):
        raise ConfigError(f"loading certificates from folder {folder!r}: not a directory")
    out = []
    for root, _dirs, files in sorted(os.walk(folder)):
        for name in sorted(files):
            if not name.lower().endswith(".pem"):
                continue
            path = os.path.join(root, name)
            bundle = _read(path, "certificate bundle")
            try:
                out.append(Certificate.from_pem(bundle, bundle))
            except CertificateError as e:
                raise ConfigError(f"loading certificate bundle {path!r}: {e}") from None
    return out
