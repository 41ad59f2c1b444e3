"""Caddy's local certificate authority: the ``pki`` app and the ``internal`` issuer.

A CA is a long-lived root (3600 days) and a short-lived intermediate (7 days) that signs
leaf certificates (12 hours) for names no public CA will certify (``localhost``, IPs,
``*.local``).  The root and intermediate are loaded from storage or generated and stored
under ``pki/authorities/<id>/``, so a data directory written by Caddy 2.6.2 serves txcaddy
and the other way round; the intermediate is renewed when a fifth of its life is left,
checked at start and every 10 minutes.  At start each root is also put into the machine's
trust stores (``txcaddy.tls.truststore``, in a thread) unless ``install_trust`` is false.

Follows Caddy 2.6.2 ``modules/caddypki`` (``ca.go``, ``certificates.go``, ``maintain.go``,
``pki.go``, ``crypto.go``) and ``modules/caddytls/internalissuer.go``; the certificate
contents are those of smallstep's x509util profiles and Go's ``x509.CreateCertificate``,
the key types and PEM forms those of certmagic v0.17.2 ``crypto.go``.  Compared with what
``/usr/bin/caddy`` 2.6.2 writes: subjects (``PrintableString`` CNs, empty leaf subject),
128-bit random serials, extension order and criticality, RFC 5280 method-1 key identifiers,
NotBefore = now without backdating, ECDSA P-256 with SHA-256 everywhere.

Time comes from the clock passed in (``clock.seconds()``), never from the system, so the
renewal and clamping rules can be driven by ``twisted.internet.task.Clock`` in tests.

Where txcaddy differs from Caddy 2.6.2, on purpose:

* ``intermediate_lifetime`` (a Caddy 2.7 field) is accepted; 2.6.2 always uses 7 days.
* The root key stays in memory once loaded: Caddy re-reads the root from storage to renew
  the intermediate or to sign with the root, which with a user-supplied root picks (or
  even generates) the wrong one.
* A stored intermediate that the current root did not sign (the root was replaced) is
  regenerated at provision; Caddy keeps serving a chain that cannot verify.
* A leaf whose issuer has already expired is refused instead of being signed expired.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy.config.placeholders import replace_all
from txcaddy.config.values import duration_seconds, string
from txcaddy.errors import ConfigError
from txcaddy.interfaces import ICertificateIssuer, IStorage
from txcaddy.tls import _x509, truststore
from txcaddy.tls.errors import KeyNotFound
from txcaddy.tls.issuers import IssuedCertificate
from txcaddy.tls.keys import (
    PrivateKey,
    load_private_key_pem,
    new_private_key,
    private_key_pem,
)
from txcaddy.tls.storage import ca_authority_prefix

__all__ = [
    "DEFAULT_CA_ID",
    "DEFAULT_CA_NAME",
    "DEFAULT_INTERMEDIATE_COMMON_NAME",
    "DEFAULT_INTERMEDIATE_LIFETIME",
    "DEFAULT_LEAF_LIFETIME",
    "DEFAULT_ROOT_COMMON_NAME",
    "DEFAULT_ROOT_LIFETIME",
    "MAINTENANCE_INTERVAL",
    "RENEWAL_WINDOW_RATIO",
    "CAStorageKeys",
    "CertificateAuthority",
    "InternalIssuer",
    "KeyPairConfig",
    "PKIApp",
    "PKIService",
    "TrustInstaller",
    "ca_storage_keys",
    "load_internal_issuer",
    "load_pki_app",
    "needs_renewal",
    "threaded_trust_installer",
]

log = Logger()

DEFAULT_CA_ID = "local"
DEFAULT_CA_NAME = "Caddy Local Authority"
DEFAULT_ROOT_COMMON_NAME = "{pki.ca.name} - {time.now.year} ECC Root"
DEFAULT_INTERMEDIATE_COMMON_NAME = "{pki.ca.name} - ECC Intermediate"

_DAY = 24 * 3600.0
DEFAULT_ROOT_LIFETIME = 3600 * _DAY
"""Caddy's ``24h * 30 * 12 * 10``: 3600 days, not ten calendar years (seconds)."""
DEFAULT_INTERMEDIATE_LIFETIME = 7 * _DAY
DEFAULT_LEAF_LIFETIME = 12 * 3600.0
RENEWAL_WINDOW_RATIO = 0.2
"""The intermediate is renewed once less than this part of its lifetime is left."""
MAINTENANCE_INTERVAL = 600.0
"""How often (seconds) the PKI app checks its CAs for renewal, as Caddy's ticker."""

def needs_renewal(certificate: x509.Certificate, now: float, ratio: float = RENEWAL_WINDOW_RATIO) -> bool:
    """Caddy's ``needsRenewal``: past the last ``ratio`` of the certificate's lifetime."""
    not_before = _x509.timestamp(certificate.not_valid_before_utc)
    not_after = _x509.timestamp(certificate.not_valid_after_utc)
    return now > not_after - (not_after - not_before) * ratio


@dataclass(frozen=True)
class CAStorageKeys:
    """The four storage keys of one CA."""

    root_certificate: str
    root_key: str
    intermediate_certificate: str
    intermediate_key: str


def ca_storage_keys(ca_id: str) -> CAStorageKeys:
    """Where CA ``ca_id`` keeps its root and intermediate (Caddy's ``storageKey*``)."""
    prefix = ca_authority_prefix(ca_id)
    return CAStorageKeys(
        f"{prefix}/root.crt", f"{prefix}/root.key", f"{prefix}/intermediate.crt", f"{prefix}/intermediate.key"
    )


async def _load_optional(storage: IStorage, key: str) -> bytes | None:
    """The bytes under ``key``, or None when the storage says it is absent."""
    try:
        value: bytes = await storage.load(key)
    except KeyNotFound:
        return None
    return value


# -- the certificate authority --------------------------------------------------------------


@dataclass(frozen=True)
class KeyPairConfig:
    """A user-supplied certificate and key (Caddy's ``KeyPair``); only ``pem_file``."""

    certificate: str
    private_key: str
    format: str = "pem_file"

    def load(self) -> tuple[x509.Certificate, PrivateKey]:
        """Read both files (blocking, at provision time, as Caddy does)."""
        if self.format not in ("", "pem_file"):
            raise ValueError(f"unsupported format: {self.format}")
        with open(self.certificate, "rb") as f:
            certificate_data = f.read()
        with open(self.private_key, "rb") as f:
            key_data = f.read()
        return _x509.single_certificate(certificate_data), load_private_key_pem(key_data)


class CertificateAuthority:
    """One ``apps.pki.certificate_authorities.<id>``: a root and an intermediate.

    ``provision(storage)`` must run (and its Deferred fire) before the certificates are
    used; the intermediate may then be swapped by ``renew_intermediate_if_needed``.

    @ivar id: the CA's id (the key in the config; ``local`` by default).
    @ivar name: the user-facing name, ``{pki.ca.name}`` in the common names.
    @ivar install_trust: whether the root should go into the system trust stores.
    @ivar storage_config: the raw per-CA ``storage`` module config, if any; whoever builds
        the storage passes the right one to ``provision``.
    """

    def __init__(
        self,
        ca_id: str = DEFAULT_CA_ID,
        *,
        clock: IReactorTime,
        name: str = "",
        root_common_name: str = "",
        intermediate_common_name: str = "",
        intermediate_lifetime: float = DEFAULT_INTERMEDIATE_LIFETIME,
        install_trust: bool = True,
        root: KeyPairConfig | None = None,
        intermediate: KeyPairConfig | None = None,
        storage_config: dict[str, Any] | None = None,
    ) -> None:
        if not ca_id:
            raise ValueError("CA ID is required (use 'local' for the default CA)")
        self.id = ca_id
        self.name = name or DEFAULT_CA_NAME
        self.root_common_name = root_common_name or DEFAULT_ROOT_COMMON_NAME
        self.intermediate_common_name = intermediate_common_name or DEFAULT_INTERMEDIATE_COMMON_NAME
        self.intermediate_lifetime = intermediate_lifetime
        self.install_trust = install_trust
        self.root = root
        self.intermediate = intermediate
        self.storage_config = storage_config
        self.storage_keys = ca_storage_keys(ca_id)
        self._clock = clock
        self._root: tuple[x509.Certificate, PrivateKey] | None = None
        self._intermediate: tuple[x509.Certificate, PrivateKey] | None = None

    def __repr__(self) -> str:
        return f"<CertificateAuthority {self.id!r}>"

    # the config

    @classmethod
    def from_config(cls, ca_id: str, config: Any, clock: IReactorTime, where: str) -> CertificateAuthority:
        """Read one CA's JSON; errors are ``ConfigError`` naming the field under ``where``."""
        if not isinstance(config, dict):
            raise ConfigError(f"{where}: a certificate authority must be a JSON object")
        if not ca_id:
            raise ConfigError(f"{where}: CA ID is required (use 'local' for the default CA)")
        known = {
            "name", "root_common_name", "intermediate_common_name", "intermediate_lifetime", "install_trust",
            "root", "intermediate", "storage",
        }
        unknown = sorted(set(config) - known)
        if unknown:
            raise ConfigError(f'{where}: unknown field "{unknown[0]}"')
        lifetime = duration_seconds(config.get("intermediate_lifetime"), f"{where}.intermediate_lifetime")
        if lifetime is None or lifetime == 0:
            lifetime = DEFAULT_INTERMEDIATE_LIFETIME
        elif lifetime < 0:
            raise ConfigError(f"{where}.intermediate_lifetime: must be positive")
        elif lifetime >= DEFAULT_ROOT_LIFETIME:
            raise ConfigError(
                f"{where}.intermediate_lifetime: intermediate certificate lifetime must be less than "
                "root certificate lifetime (86400h0m0s)"
            )
        install_trust = config.get("install_trust", True)
        if install_trust is None:
            install_trust = True
        if not isinstance(install_trust, bool):
            raise ConfigError(f"{where}.install_trust must be a boolean, got {install_trust!r}")
        storage = config.get("storage")
        if storage is not None and not isinstance(storage, dict):
            raise ConfigError(f"{where}.storage: must be a JSON object")
        return cls(
            ca_id,
            clock=clock,
            name=string(config.get("name"), f"{where}.name"),
            root_common_name=string(config.get("root_common_name"), f"{where}.root_common_name"),
            intermediate_common_name=string(config.get("intermediate_common_name"), f"{where}.intermediate_common_name"),
            intermediate_lifetime=lifetime,
            install_trust=install_trust,
            root=_key_pair(config.get("root"), f"{where}.root"),
            intermediate=_key_pair(config.get("intermediate"), f"{where}.intermediate"),
            storage_config=storage,
        )

    # the certificates

    @property
    def provisioned(self) -> bool:
        """Whether the root and intermediate are loaded."""
        return self._root is not None and self._intermediate is not None

    @property
    def root_certificate(self) -> x509.Certificate:
        """The root certificate (the one clients trust)."""
        return self._loaded_root()[0]

    @property
    def intermediate_certificate(self) -> x509.Certificate:
        """The current intermediate certificate (it changes when renewed)."""
        return self._loaded_intermediate()[0]

    @property
    def root_source(self) -> str:
        """Where the root comes from, for messages: its file, or ``storage:<key>`` (Caddy's
        ``rootCertPath``)."""
        return self.root.certificate if self.root is not None else "storage:" + self.storage_keys.root_certificate

    def root_pem(self) -> bytes:
        """The root certificate in PEM, as ``/pki/ca/<id>`` and ``txcaddy trust`` hand it out."""
        return _x509.certificate_pem(self.root_certificate)

    def signer(self, *, with_root: bool = False) -> tuple[x509.Certificate, PrivateKey]:
        """The certificate and key that sign leaves: the intermediate, or the root."""
        return self._loaded_root() if with_root else self._loaded_intermediate()

    def _loaded_root(self) -> tuple[x509.Certificate, PrivateKey]:
        if self._root is None:
            raise RuntimeError(f"certificate authority {self.id!r} is not provisioned")
        return self._root

    def _loaded_intermediate(self) -> tuple[x509.Certificate, PrivateKey]:
        if self._intermediate is None:
            raise RuntimeError(f"certificate authority {self.id!r} is not provisioned")
        return self._intermediate

    def _now(self) -> int:
        """The clock's time in whole seconds (certificates carry no fractions)."""
        return int(self._clock.seconds())

    def _common_name(self, template: str) -> str:
        """Caddy's replacer with ``{pki.ca.name}`` and ``{time.now.year}`` (local time, from our
        clock); the text between them goes through the global placeholders (``{env.*}``...)."""
        values = {
            "{pki.ca.name}": self.name,
            "{time.now.year}": str(time.localtime(self._clock.seconds()).tm_year),
        }
        pieces = re.split(r"(\{pki\.ca\.name\}|\{time\.now\.year\})", template)
        out = []
        for index, piece in enumerate(pieces):
            if index % 2:
                out.append(values[piece])
            elif piece:
                out.append(replace_all(piece, _NO_REQUEST))
        return "".join(out)

    # provisioning and renewal

    def provision(self, storage: IStorage) -> Deferred[None]:
        """Load the root and intermediate: user-supplied, else from ``storage``, else new
        (then stored).  Fails with ``ConfigError`` for unusable files or stored data."""
        return Deferred.fromCoroutine(self._provision(storage))

    async def _provision(self, storage: IStorage) -> None:
        where = f"apps.pki.certificate_authorities.{self.id}"
        if self.root is not None and self.intermediate is not None:
            root = _load_key_pair(self.root, f"{where}.root")
            intermediate = _load_key_pair(self.intermediate, f"{where}.intermediate")
            self._root, self._intermediate = root, intermediate
            return
        # Under the storage's lock: instances sharing a storage (a fleet, workers) that start
        # together would otherwise each make a root, or one would read a root certificate
        # whose key another has not stored yet. (Caddy 2.6.2 takes no lock here.)
        lock = f"pki_ca_{self.id}"
        await storage.lock(lock)
        try:
            if self.root is not None:
                root = _load_key_pair(self.root, f"{where}.root")
            else:
                root = await self._load_or_generate_root(storage)
            if self.intermediate is not None:
                intermediate = _load_key_pair(self.intermediate, f"{where}.intermediate")
            else:
                intermediate = await self._load_or_generate_intermediate(storage, root)
        finally:
            await storage.unlock(lock)
        self._root, self._intermediate = root, intermediate

    async def _load_or_generate_root(self, storage: IStorage) -> tuple[x509.Certificate, PrivateKey]:
        keys = self.storage_keys
        certificate_pem = await _load_optional(storage, keys.root_certificate)
        if certificate_pem is None:
            return await self._generate_root(storage)
        certificate = _decode_stored(_x509.single_certificate, certificate_pem, keys.root_certificate)
        key_pem = await _load_optional(storage, keys.root_key)
        if key_pem is None:
            raise ConfigError(f"certificate authority {self.id!r}: loading root key: {keys.root_key} does not exist")
        return certificate, _decode_stored(load_private_key_pem, key_pem, keys.root_key)

    async def _generate_root(self, storage: IStorage) -> tuple[x509.Certificate, PrivateKey]:
        key = new_private_key("p256")
        subject = _x509.subject(self._common_name(self.root_common_name))
        certificate = _x509.ca_certificate(subject, key, None, key, 1, self._now(), DEFAULT_ROOT_LIFETIME)
        await storage.store(self.storage_keys.root_certificate, _x509.certificate_pem(certificate))
        await storage.store(self.storage_keys.root_key, private_key_pem(key))
        log.info("generated root certificate for CA {ca}: {subject}", ca=self.id, subject=subject.rfc4514_string())
        return certificate, key

    async def _load_or_generate_intermediate(
        self, storage: IStorage, root: tuple[x509.Certificate, PrivateKey]
    ) -> tuple[x509.Certificate, PrivateKey]:
        keys = self.storage_keys
        certificate_pem = await _load_optional(storage, keys.intermediate_certificate)
        if certificate_pem is None:
            return await self._generate_intermediate(storage, root)
        certificate = _decode_stored(_x509.single_certificate, certificate_pem, keys.intermediate_certificate)
        if not _x509.issued_by(certificate, root[0]):
            log.warn("stored intermediate of CA {ca} was not issued by its root; replacing it", ca=self.id)
            return await self._generate_intermediate(storage, root)
        key_pem = await _load_optional(storage, keys.intermediate_key)
        if key_pem is None:
            raise ConfigError(
                f"certificate authority {self.id!r}: loading intermediate key: {keys.intermediate_key} does not exist"
            )
        return certificate, _decode_stored(load_private_key_pem, key_pem, keys.intermediate_key)

    async def _generate_intermediate(
        self, storage: IStorage, root: tuple[x509.Certificate, PrivateKey]
    ) -> tuple[x509.Certificate, PrivateKey]:
        key = new_private_key("p256")
        subject = _x509.subject(self._common_name(self.intermediate_common_name))
        root_certificate, root_key = root
        certificate = _x509.ca_certificate(
            subject, key, root_certificate, root_key, 0, self._now(), self.intermediate_lifetime
        )
        await storage.store(self.storage_keys.intermediate_certificate, _x509.certificate_pem(certificate))
        await storage.store(self.storage_keys.intermediate_key, private_key_pem(key))
        return certificate, key

    def renew_intermediate_if_needed(self, storage: IStorage) -> Deferred[bool]:
        """Replace a generated intermediate once less than 20 % of its life is left (Caddy's
        ``renewCertsForCA``); fires with whether it did.  User-supplied intermediates are
        left alone, and an old root is only warned about (Caddy cannot renew roots either)."""
        return Deferred.fromCoroutine(self._renew_intermediate_if_needed(storage))

    async def _renew_intermediate_if_needed(self, storage: IStorage) -> bool:
        root = self._loaded_root()
        intermediate = self._loaded_intermediate()
        now = self._clock.seconds()
        if self.root is None and needs_renewal(root[0], now):
            log.warn(
                "root certificate of CA {ca} expires soon ({not_after}); root renewal is not implemented",
                ca=self.id, not_after=root[0].not_valid_after_utc.isoformat(),
            )
        if self.intermediate is not None or not needs_renewal(intermediate[0], now):
            return False
        log.info(
            "intermediate of CA {ca} expires soon ({not_after}); renewing",
            ca=self.id, not_after=intermediate[0].not_valid_after_utc.isoformat(),
        )
        self._intermediate = await self._generate_intermediate(storage, root)
        log.info(
            "renewed intermediate of CA {ca}; new expiration {not_after}",
            ca=self.id, not_after=self._intermediate[0].not_valid_after_utc.isoformat(),
        )
        return True


class _NoRequest:
    """What the global placeholders get outside a request: no values of its own."""

    placeholders: dict[str, Any] = {}
    error = None


_NO_REQUEST = _NoRequest()


def _decode_stored(decode: Any, data: bytes, key: str) -> Any:
    try:
        return decode(data)
    except ValueError as e:
        raise ConfigError(f"decoding {key}: {e}") from None


def _load_key_pair(pair: KeyPairConfig, where: str) -> tuple[x509.Certificate, PrivateKey]:
    try:
        return pair.load()
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


# -- the pki app ----------------------------------------------------------------------------


class PKIApp:
    """``apps.pki``: the certificate authorities by id.

    @ivar cas: the configured CAs; ``local`` is added when none is configured, or later by
        ``get_ca`` when something (the internal issuer) asks for it.
    """

    def __init__(self, cas: dict[str, CertificateAuthority], clock: IReactorTime) -> None:
        self.cas = cas
        self._clock = clock

    def get_ca(self, ca_id: str = DEFAULT_CA_ID) -> CertificateAuthority:
        """The CA ``ca_id``; the default one is made on first request (Caddy's ``GetCA``), so
        the internal issuer "just works".  Others must be configured (``ConfigError``)."""
        ca = self.cas.get(ca_id)
        if ca is None:
            if ca_id != DEFAULT_CA_ID:
                raise ConfigError(f"no certificate authority configured with id: {ca_id}")
            ca = self.cas[ca_id] = CertificateAuthority(ca_id, clock=self._clock)
        return ca

    def provision(self, storage: IStorage) -> Deferred[None]:
        """Provision every CA not yet provisioned, in id order; the first failure fails it."""
        return Deferred.fromCoroutine(self._provision(storage))

    async def _provision(self, storage: IStorage) -> None:
        for ca_id, ca in sorted(self.cas.items()):
            if ca.provisioned:
                continue
            try:
                await ca.provision(storage)
            except ConfigError as e:
                raise ConfigError(f"provisioning CA '{ca_id}': {e}") from None

    def renew_certificates(self, storage: IStorage) -> Deferred[list[str]]:
        """Renew what needs it in every provisioned CA; fires with the ids of the CAs whose
        intermediate was renewed.  A failing CA is logged and does not stop the others."""
        return Deferred.fromCoroutine(self._renew_certificates(storage))

    async def _renew_certificates(self, storage: IStorage) -> list[str]:
        renewed = []
        for ca_id, ca in sorted(self.cas.items()):
            if not ca.provisioned:
                continue
            try:
                if await ca.renew_intermediate_if_needed(storage):
                    renewed.append(ca_id)
            except Exception:
                log.failure("renewing intermediate certificates of CA {ca}", ca=ca_id)
        return renewed


def load_pki_app(config: dict[str, Any] | None, clock: IReactorTime) -> PKIApp:
    """Read ``apps.pki`` (None when the config has no ``pki`` app, which Caddy still loads
    as soon as the internal issuer is used); ``ConfigError`` names the bad field."""
    where = "apps.pki"
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    unknown = sorted(set(config) - {"certificate_authorities"})
    if unknown:
        raise ConfigError(f'{where}: unknown field "{unknown[0]}"')
    raw = config.get("certificate_authorities")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}.certificate_authorities: must be a JSON object")
    cas = {
        ca_id: CertificateAuthority.from_config(ca_id, ca_config, clock, f"{where}.certificate_authorities.{ca_id}")
        for ca_id, ca_config in raw.items()
    }
    app = PKIApp(cas, clock)
    if not cas:
        app.get_ca(DEFAULT_CA_ID)
    return app


TrustInstaller = Callable[[x509.Certificate], "Deferred[list[str]]"]
"""Puts a root into the trust stores without blocking the reactor; fires with what changed."""


def threaded_trust_installer(
    reactor: Any, install: Callable[[x509.Certificate], list[str]] | None = None
) -> TrustInstaller:
    """A ``TrustInstaller`` running ``install`` (default: ``truststore.install`` as it is when
    called) in ``reactor``'s thread pool: it runs commands, maybe sudo waiting for a password,
    and the server keeps serving meanwhile."""

    def installer(certificate: x509.Certificate) -> Deferred[list[str]]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), install or truststore.install, certificate)

    return installer


class PKIService(Service):
    """Keeps the PKI app's CAs usable while running: provisions them at start, checks
    renewal at once and then every ``MAINTENANCE_INTERVAL`` seconds on ``clock``.

    Once provisioned, each CA's root goes into the machine's trust stores through
    ``trust_installer`` unless the CA says ``install_trust: false`` (Caddy's ``Start``);
    a failure is only logged, as Caddy does.  Without an installer nothing is installed
    (tests, embedders managing trust themselves); ``CaddyService`` passes the threaded one.

    @ivar ready: while running, fires (with None; errors are logged) once the start-up
        provisioning and first renewal check are done.  It does not wait for the trust
        stores, which may wait for a sudo password.
    @ivar trusted: while running, fires with ``{ca_id: changed locations}`` for the roots
        installed (a failed one is left out) once every installation has finished.
    """

    def __init__(
        self,
        app: PKIApp,
        storage: IStorage,
        clock: IReactorTime,
        trust_installer: TrustInstaller | None = None,
    ) -> None:
        self.app = app
        self.storage = storage
        self.clock = clock
        self.trust_installer = trust_installer
        self.ready: Deferred[None] | None = None
        self.trusted: Deferred[dict[str, list[str]]] | None = None
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self.trusted = Deferred()
        self.ready = Deferred.fromCoroutine(self._start(self.trusted))

    async def _start(self, trusted: Deferred[dict[str, list[str]]]) -> None:
        try:
            await self.app.provision(self.storage)
        except Exception:
            log.failure("starting the PKI app")
        self._install_roots().chainDeferred(trusted)
        try:
            await self.app.renew_certificates(self.storage)
        except Exception:
            log.failure("starting the PKI app")
        if not self.running:
            return
        loop = self._loop = LoopingCall(self._maintain)
        loop.clock = self.clock
        loop.start(MAINTENANCE_INTERVAL, now=False).addErrback(self._loop_failed)

    def _install_roots(self) -> Deferred[dict[str, list[str]]]:
        """Start installing every provisioned CA's root that wants it, all at once."""
        installer = self.trust_installer
        results: dict[str, list[str]] = {}
        waiting = []
        for ca_id, ca in sorted(self.app.cas.items()):
            if installer is None or not ca.provisioned:
                continue
            path = ca.root_source
            if not ca.install_trust:
                log.info(
                    "root certificate trust store installation disabled for CA {ca}; unconfigured clients "
                    "may show warnings (path: {path})", ca=ca_id, path=path,
                )
                continue
            log.info("installing root certificate of CA {ca} (you might be prompted for password) (path: {path})",
                     ca=ca_id, path=path)
            done = maybeDeferred(installer, ca.root_certificate)
            done.addCallback(self._installed, ca_id, results)
            done.addErrback(self._install_failed, ca_id, path)
            waiting.append(done)
        return gatherResults(waiting).addCallback(lambda _: results)

    def _installed(self, changed: list[str], ca_id: str, results: dict[str, list[str]]) -> None:
        results[ca_id] = changed
        log.info("root certificate of CA {ca} installed in: {changed}", ca=ca_id, changed=", ".join(changed) or "nothing new")

    def _install_failed(self, failure: Failure, ca_id: str, path: str) -> None:
        log.error(
            "failed to install root certificate of CA {ca}: {error} (certificate_file: {path})",
            ca=ca_id, error=failure.getErrorMessage(), path=path,
        )

    def _maintain(self) -> Deferred[list[str]]:
        return self.app.renew_certificates(self.storage)

    def _loop_failed(self, failure: Failure) -> None:
        log.failure("PKI maintenance stopped", failure)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None


# -- the internal issuer --------------------------------------------------------------------


@implementer(ICertificateIssuer)
class InternalIssuer:
    """The ``internal`` issuer: leaves signed by a local CA (Caddy's ``InternalIssuer``)."""

    def __init__(
        self,
        ca: CertificateAuthority,
        clock: IReactorTime,
        *,
        lifetime: float = DEFAULT_LEAF_LIFETIME,
        sign_with_root: bool = False,
    ) -> None:
        self.ca = ca
        self.clock = clock
        self.lifetime = lifetime
        self.sign_with_root = sign_with_root

    def __repr__(self) -> str:
        return f"<InternalIssuer ca={self.ca.id!r}>"

    @property
    def issuer_key(self) -> str:
        """The storage directory under ``certificates/``: the CA's id."""
        return self.ca.id

    def pre_check(self, names: Sequence[str]) -> None:
        """The local CA signs for any name (Caddy's internal issuer has no pre-check)."""

    def issue(self, names: Sequence[str], private_key: PrivateKey, attempt: int = 0) -> Deferred[IssuedCertificate]:
        """Sign a certificate for ``names`` (DNS names, IPs, e-mails, URIs) and the public half
        of ``private_key``; its lifetime never reaches past the signer's NotAfter."""
        try:
            return succeed(self._issue(names, private_key))
        except Exception:
            return fail()

    def _issue(self, names: Sequence[str], private_key: PrivateKey) -> IssuedCertificate:
        if not names:
            raise ValueError("no names to issue a certificate for")
        issuer, issuer_key = self.ca.signer(with_root=self.sign_with_root)
        now = int(self.clock.seconds())
        issuer_not_after = int(_x509.timestamp(issuer.not_valid_after_utc))
        not_after = int(now + self.lifetime)
        if not_after > issuer_not_after:
            log.warn(
                "cert lifetime would exceed issuer NotAfter, clamping lifetime "
                "(orig_lifetime={orig}s, lifetime={lifetime}s, not_after={not_after})",
                orig=self.lifetime, lifetime=issuer_not_after - now, not_after=issuer.not_valid_after_utc.isoformat(),
            )
            not_after = issuer_not_after
        if not_after <= now:
            raise ValueError(f"the issuer certificate of CA {self.ca.id!r} has expired")
        leaf = _x509.leaf_certificate(names, private_key.public_key(), issuer, issuer_key, now, not_after)
        return IssuedCertificate(
            certificate_pem=_x509.certificate_pem(leaf) + _x509.certificate_pem(issuer),
            private_key_pem=private_key_pem(private_key),
            not_before=float(now),
            not_after=float(not_after),
            chain=(leaf, issuer),
        )


def load_internal_issuer(config: Any, pki: PKIApp, clock: IReactorTime, where: str = "issuer") -> InternalIssuer:
    """Read ``{"module": "internal", "ca": …, "lifetime": …, "sign_with_root": …}``; the CA
    comes from ``pki`` (the default one is created there if needed)."""
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    unknown = sorted(set(config) - {"module", "ca", "lifetime", "sign_with_root"})
    if unknown:
        raise ConfigError(f'{where}: unknown field "{unknown[0]}"')
    module = config.get("module", "internal")
    if module != "internal":
        raise ConfigError(f"{where}.module: expected 'internal', got {module!r}")
    ca_id = string(config.get("ca"), f"{where}.ca") or DEFAULT_CA_ID
    lifetime = duration_seconds(config.get("lifetime"), f"{where}.lifetime")
    if lifetime is None or lifetime == 0:
        lifetime = DEFAULT_LEAF_LIFETIME
    elif lifetime < 0:
        raise ConfigError(f"{where}.lifetime: must be positive")
    sign_with_root = config.get("sign_with_root", False)
    if sign_with_root is None:
        sign_with_root = False
    if not isinstance(sign_with_root, bool):
        raise ConfigError(f"{where}.sign_with_root must be a boolean, got {sign_with_root!r}")
    try:
        ca = pki.get_ca(ca_id)
    except ConfigError as e:
        raise ConfigError(f"{where}.ca: {e}") from None
    return InternalIssuer(ca, clock, lifetime=lifetime, sign_with_root=sign_with_root)


# -- config values --------------------------------------------------------------------------






def _key_pair(value: Any, where: str) -> KeyPairConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a JSON object")
    unknown = sorted(set(value) - {"certificate", "private_key", "format"})
    if unknown:
        raise ConfigError(f'{where}: unknown field "{unknown[0]}"')
    format_ = string(value.get("format"), f"{where}.format") or "pem_file"
    if format_ != "pem_file":
        raise ConfigError(f"{where}.format: unsupported format: {format_}")
    certificate = string(value.get("certificate"), f"{where}.certificate")
    private_key = string(value.get("private_key"), f"{where}.private_key")
    if not certificate or not private_key:
        raise ConfigError(f"{where}: both certificate and private_key are required")
    return KeyPairConfig(certificate, private_key, format_)
