"""Tests for txcaddy.tls.internalca: the local CA (root, intermediate, renewal), the pki app's
config and service, and leaves from the internal issuer, compared with what Caddy 2.6.2 writes."""

from __future__ import annotations

import calendar
import os
import shutil
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from txcaddy.errors import ConfigError
from txcaddy.interfaces import IStorage
from txcaddy.tls.errors import KeyNotFound
from txcaddy.tls.internalca import (
    DEFAULT_INTERMEDIATE_LIFETIME,
    DEFAULT_LEAF_LIFETIME,
    DEFAULT_ROOT_LIFETIME,
    MAINTENANCE_INTERVAL,
    CertificateAuthority,
    InternalIssuer,
    PKIApp,
    PKIService,
    ca_storage_keys,
    load_internal_issuer,
    load_pki_app,
    needs_renewal,
    threaded_trust_installer,
)
from txcaddy.tls.issuers import IssuedCertificate
from txcaddy.tls.keys import load_private_key_pem, new_private_key, private_key_pem

# 2026-07-01 12:00:00 UTC: mid-year, so the root's year is the same in every time zone.
NOW = float(calendar.timegm((2026, 7, 1, 12, 0, 0)))
DAY = 86400.0
PREFIX = "pki/authorities/local/"


@implementer(IStorage)
class MemoryStorage:
    """A dict behind IStorage, recording the keys written, in order."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.stored: list[str] = []

    def store(self, key: str, value: bytes) -> Deferred[None]:
        self.data[key] = value
        self.stored.append(key)
        return succeed(None)

    def load(self, key: str) -> Deferred[bytes]:
        if key not in self.data:
            return fail(KeyNotFound(key))
        return succeed(self.data[key])

    def delete(self, key: str) -> Deferred[None]:
        for name in [k for k in self.data if k == key or k.startswith(key + "/")]:
            del self.data[name]
        return succeed(None)

    def exists(self, key: str) -> Deferred[bool]:
        return succeed(key in self.data)

    def list(self, prefix: str, recursive: bool) -> Deferred[list[str]]:
        return succeed(sorted(k for k in self.data if k.startswith(prefix + "/")))

    def stat(self, key: str) -> Deferred[Any]:
        return succeed(None) if key in self.data else fail(KeyNotFound(key))

    def lock(self, name: str) -> Deferred[None]:
        return succeed(None)

    def unlock(self, name: str) -> Deferred[None]:
        return succeed(None)


class BrokenStorage(MemoryStorage):
    """Every load fails with an I/O error that is not "absent"."""

    def load(self, key: str) -> Deferred[bytes]:
        return fail(OSError("disk on fire"))


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _clock(at: float = NOW) -> Clock:
    clock = Clock()
    clock.advance(at)
    return clock


def _result(d: Deferred[Any]) -> Any:
    """The result of a Deferred that has already fired successfully."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def _failure(d: Deferred[Any]) -> Failure:
    """The failure of a Deferred that has already failed."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results and isinstance(results[0], Failure), f"expected a failure, got {results!r}"
    return results[0]


def _provisioned(clock: Clock, storage: MemoryStorage | None = None, **options: Any) -> CertificateAuthority:
    ca = CertificateAuthority(clock=clock, **options)
    _result(ca.provision(storage if storage is not None else MemoryStorage()))
    return ca


def _extension_names(certificate: x509.Certificate) -> list[tuple[str | None, bool]]:
    return [(extension.oid._name, extension.critical) for extension in certificate.extensions]


def _ski(certificate: x509.Certificate) -> bytes:
    return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def _aki(certificate: x509.Certificate) -> bytes | None:
    return certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier


def _write_key_pair(directory: str, name: str, certificate: x509.Certificate, key: Any) -> dict[str, str]:
    os.makedirs(directory, exist_ok=True)
    certificate_path = os.path.join(directory, name + ".crt")
    key_path = os.path.join(directory, name + ".key")
    with open(certificate_path, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(private_key_pem(key))
    return {"certificate": certificate_path, "private_key": key_path}


class StorageKeyTests(SynchronousTestCase):
    def test_default_keys(self) -> None:
        """The local CA lives under pki/authorities/local/ with Caddy's four file names."""
        keys = ca_storage_keys("local")
        self.assertEqual(
            (keys.root_certificate, keys.root_key, keys.intermediate_certificate, keys.intermediate_key),
            (PREFIX + "root.crt", PREFIX + "root.key", PREFIX + "intermediate.crt", PREFIX + "intermediate.key"),
        )

    def test_safe_id(self) -> None:
        """A CA id is made storage-safe as certmagic's Safe does (lower case, replacements)."""
        self.assertEqual(ca_storage_keys(" My CA:1+*x/../é ").root_key, "pki/authorities/my_ca-1_plus_wildcard_x/root.key")


class SlowStorage(MemoryStorage):
    """Stores complete only when the clock advances (a shared, remote storage), and the lock
    is a real one: a second ``lock`` waits for ``unlock``."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.locks: dict[str, list[Deferred[None]]] = {}

    def store(self, key: str, value: bytes) -> Deferred[None]:
        done: Deferred[None] = Deferred()

        def write() -> None:
            MemoryStorage.store(self, key, value)
            done.callback(None)

        self.clock.callLater(1, write)
        return done

    def lock(self, name: str) -> Deferred[None]:
        if name not in self.locks:
            self.locks[name] = []
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self.locks[name].append(waiter)
        return waiter

    def unlock(self, name: str) -> Deferred[None]:
        waiters = self.locks.get(name, [])
        if waiters:
            waiters.pop(0).callback(None)
        else:
            self.locks.pop(name, None)
        return succeed(None)


class SharedStorageTests(SynchronousTestCase):
    def test_instances_starting_together_make_one_ca(self) -> None:
        """Two instances provisioning the same CA on one slow shared storage end with one root
        and one intermediate: the second waits for the first's lock and loads what it stored."""
        clock = _clock()
        storage = SlowStorage(clock)
        first, second = CertificateAuthority(clock=clock), CertificateAuthority(clock=clock)
        done = [first.provision(storage), second.provision(storage)]
        for _ in range(20):
            clock.advance(1)
        for d in done:
            _result(d)
        self.assertEqual(first.root_certificate, second.root_certificate)
        self.assertEqual(first.intermediate_certificate, second.intermediate_certificate)
        self.assertEqual(storage.stored.count(PREFIX + "root.crt"), 1)


class RootTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = _clock()
        self.storage = MemoryStorage()
        self.ca = _provisioned(self.clock, self.storage)
        self.root = self.ca.root_certificate

    def test_subject(self) -> None:
        """The root is self-issued with CN "Caddy Local Authority - <year> ECC Root" as a
        PrintableString, like Go writes it."""
        year = time.localtime(NOW).tm_year
        self.assertEqual(self.root.subject.rfc4514_string(), f"CN=Caddy Local Authority - {year} ECC Root")
        self.assertEqual(self.root.issuer, self.root.subject)
        self.assertEqual(self.root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]._type, _ASN1Type.PrintableString)

    def test_lifetime(self) -> None:
        """The root is valid from now for exactly 3600 days."""
        self.assertEqual(self.root.not_valid_before_utc.timestamp(), NOW)
        self.assertEqual(self.root.not_valid_after_utc.timestamp() - NOW, 3600 * DAY)
        self.assertEqual(DEFAULT_ROOT_LIFETIME, 3600 * DAY)

    def test_extensions(self) -> None:
        """Key usage (critical, certSign+cRLSign), basic constraints (critical, CA, path
        length 1) and the key's SKI, in that order, and no AKI: as Caddy's root."""
        self.assertEqual(
            _extension_names(self.root),
            [("keyUsage", True), ("basicConstraints", True), ("subjectKeyIdentifier", False)],
        )
        usage = self.root.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertEqual((usage.key_cert_sign, usage.crl_sign, usage.digital_signature), (True, True, False))
        constraints = self.root.extensions.get_extension_for_class(x509.BasicConstraints).value
        self.assertEqual((constraints.ca, constraints.path_length), (True, 1))
        self.assertEqual(_ski(self.root), x509.SubjectKeyIdentifier.from_public_key(self.root.public_key()).digest)

    def test_key_and_signature(self) -> None:
        """ECDSA P-256, signed with ecdsa-with-SHA256, by itself."""
        key = self.root.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        self.assertEqual(key.curve.name, "secp256r1")
        assert self.root.signature_hash_algorithm is not None
        self.assertEqual(self.root.signature_hash_algorithm.name, "sha256")
        self.root.verify_directly_issued_by(self.root)

    def test_serial(self) -> None:
        """Serials are random, positive, and fit in 128 bits (smallstep's)."""
        other = _provisioned(self.clock).root_certificate
        self.assertNotEqual(self.root.serial_number, other.serial_number)
        for serial in (self.root.serial_number, other.serial_number):
            self.assertTrue(0 < serial < 2**128)

    def test_stored(self) -> None:
        """The root and its key are stored as PEM: CERTIFICATE and EC PRIVATE KEY."""
        self.assertEqual(self.storage.data[PREFIX + "root.crt"], self.ca.root_pem())
        self.assertTrue(self.ca.root_pem().startswith(b"-----BEGIN CERTIFICATE-----\n"))
        key_pem = self.storage.data[PREFIX + "root.key"]
        self.assertTrue(key_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----\n"))
        key = load_private_key_pem(key_pem)
        self.assertEqual(
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            self.root.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        )

    def test_root_pem(self) -> None:
        """root_pem() is the PEM of root_certificate."""
        self.assertEqual(x509.load_pem_x509_certificate(self.ca.root_pem()), self.root)


class IntermediateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = _clock()
        self.storage = MemoryStorage()
        self.ca = _provisioned(self.clock, self.storage)
        self.root = self.ca.root_certificate
        self.intermediate = self.ca.intermediate_certificate

    def test_subject(self) -> None:
        """CN "Caddy Local Authority - ECC Intermediate", issued by the root's subject."""
        self.assertEqual(self.intermediate.subject.rfc4514_string(), "CN=Caddy Local Authority - ECC Intermediate")
        self.assertEqual(self.intermediate.issuer, self.root.subject)

    def test_lifetime(self) -> None:
        """Valid from now for 7 days."""
        self.assertEqual(self.intermediate.not_valid_before_utc.timestamp(), NOW)
        self.assertEqual(self.intermediate.not_valid_after_utc.timestamp(), NOW + 7 * DAY)
        self.assertEqual(DEFAULT_INTERMEDIATE_LIFETIME, 7 * DAY)

    def test_extensions(self) -> None:
        """Key usage and basic constraints (CA, path length 0) critical, SKI, then the AKI
        naming the root's SKI."""
        self.assertEqual(
            _extension_names(self.intermediate),
            [("keyUsage", True), ("basicConstraints", True), ("subjectKeyIdentifier", False),
             ("authorityKeyIdentifier", False)],
        )
        constraints = self.intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value
        self.assertEqual((constraints.ca, constraints.path_length), (True, 0))
        usage = self.intermediate.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertEqual((usage.key_cert_sign, usage.crl_sign, usage.digital_signature), (True, True, False))
        self.assertEqual(_aki(self.intermediate), _ski(self.root))
        self.assertEqual(
            _ski(self.intermediate), x509.SubjectKeyIdentifier.from_public_key(self.intermediate.public_key()).digest
        )

    def test_signed_by_root(self) -> None:
        """The intermediate is a P-256 key signed by the root."""
        self.intermediate.verify_directly_issued_by(self.root)
        key = self.intermediate.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        self.assertEqual(key.curve.name, "secp256r1")

    def test_stored(self) -> None:
        """The four keys are written, root first, as Caddy does."""
        self.assertEqual(
            self.storage.stored,
            [PREFIX + "root.crt", PREFIX + "root.key", PREFIX + "intermediate.crt", PREFIX + "intermediate.key"],
        )
        self.assertEqual(x509.load_pem_x509_certificate(self.storage.data[PREFIX + "intermediate.crt"]), self.intermediate)
        self.assertTrue(self.storage.data[PREFIX + "intermediate.key"].startswith(b"-----BEGIN EC PRIVATE KEY-----\n"))

    def test_reloaded_not_regenerated(self) -> None:
        """A second provision from the same storage loads both certificates and writes nothing."""
        self.storage.stored.clear()
        self.clock.advance(3600)
        again = _provisioned(self.clock, self.storage)
        self.assertEqual(again.root_certificate, self.root)
        self.assertEqual(again.intermediate_certificate, self.intermediate)
        self.assertEqual(self.storage.stored, [])

    def test_custom_names(self) -> None:
        """name and the common-name templates are used, with {pki.ca.name} and
        {time.now.year} from the CA's clock; non-printable names become UTF8String."""
        ca = _provisioned(
            self.clock, ca_id="corp", name="Ünïcode & Co",
            root_common_name="{pki.ca.name} root {time.now.year}", intermediate_common_name="Inter {pki.ca.name}",
        )
        year = time.localtime(NOW).tm_year
        root_cn = ca.root_certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
        self.assertEqual(root_cn.value, f"Ünïcode & Co root {year}")
        self.assertEqual(root_cn._type, _ASN1Type.UTF8String)
        self.assertEqual(ca.intermediate_certificate.subject.rfc4514_string(), "CN=Inter Ünïcode & Co")

    def test_global_placeholders(self) -> None:
        """Other placeholders in a common name go through Caddy's global replacer."""
        os.environ["TXCADDY_TEST_CA_WORD"] = "Lab"
        self.addCleanup(os.environ.pop, "TXCADDY_TEST_CA_WORD")
        ca = _provisioned(self.clock, root_common_name="{env.TXCADDY_TEST_CA_WORD} Root{unknown.thing}")
        self.assertEqual(ca.root_certificate.subject.rfc4514_string(), "CN=Lab Root")

    def test_intermediate_lifetime(self) -> None:
        """intermediate_lifetime (a Caddy 2.7 option) sets the generated intermediate's life."""
        ca = _provisioned(self.clock, intermediate_lifetime=2 * DAY)
        self.assertEqual(ca.intermediate_certificate.not_valid_after_utc.timestamp(), NOW + 2 * DAY)

    def test_foreign_intermediate_replaced(self) -> None:
        """A stored intermediate that the root did not sign is regenerated and stored."""
        other = _provisioned(self.clock)
        self.storage.data[PREFIX + "intermediate.crt"] = other.intermediate_certificate.public_bytes(
            serialization.Encoding.PEM
        )
        self.storage.stored.clear()
        ca = _provisioned(self.clock, self.storage)
        ca.intermediate_certificate.verify_directly_issued_by(self.root)
        self.assertEqual(self.storage.stored, [PREFIX + "intermediate.crt", PREFIX + "intermediate.key"])

    def test_missing_root_key(self) -> None:
        """A stored root certificate without its key fails provisioning with ConfigError."""
        del self.storage.data[PREFIX + "root.key"]
        failure = _failure(CertificateAuthority(clock=self.clock).provision(self.storage))
        failure.trap(ConfigError)
        self.assertIn("pki/authorities/local/root.key does not exist", str(failure.value))

    def test_missing_intermediate_key(self) -> None:
        """A stored intermediate certificate without its key fails provisioning."""
        del self.storage.data[PREFIX + "intermediate.key"]
        failure = _failure(CertificateAuthority(clock=self.clock).provision(self.storage))
        failure.trap(ConfigError)
        self.assertIn("loading intermediate key", str(failure.value))

    def test_corrupt_root(self) -> None:
        """Unparseable stored PEM fails provisioning, naming the storage key."""
        self.storage.data[PREFIX + "root.crt"] = b"garbage"
        failure = _failure(CertificateAuthority(clock=self.clock).provision(self.storage))
        failure.trap(ConfigError)
        self.assertEqual(str(failure.value), "decoding pki/authorities/local/root.crt: no PEM block found")

    def test_storage_error(self) -> None:
        """A storage failure other than KeyNotFound is not taken for "absent": nothing is
        generated and the error surfaces."""
        storage = BrokenStorage()
        _failure(CertificateAuthority(clock=self.clock).provision(storage)).trap(OSError)
        self.assertEqual(storage.stored, [])

    def test_unprovisioned(self) -> None:
        """Asking an unprovisioned CA for its certificates is a RuntimeError."""
        ca = CertificateAuthority(clock=self.clock)
        self.assertFalse(ca.provisioned)
        self.assertRaises(RuntimeError, lambda: ca.root_certificate)
        self.assertRaises(RuntimeError, lambda: ca.intermediate_certificate)


class UserSuppliedTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = _clock()
        self.directory = self.mktemp()
        source = _provisioned(self.clock, name="Mine")
        self.root = source.root_certificate
        self.root_files = _write_key_pair(self.directory, "root", self.root, source.signer(with_root=True)[1])
        self.intermediate = source.intermediate_certificate
        self.intermediate_files = _write_key_pair(
            self.directory, "intermediate", self.intermediate, source.signer()[1]
        )

    def _ca(self, config: dict[str, Any]) -> CertificateAuthority:
        return CertificateAuthority.from_config("local", config, self.clock, "apps.pki.certificate_authorities.local")

    def test_root_used_not_stored(self) -> None:
        """A configured root is used as is and never written to storage; the generated
        intermediate is signed by it and stored."""
        storage = MemoryStorage()
        ca = self._ca({"root": {**self.root_files, "format": "pem_file"}})
        _result(ca.provision(storage))
        self.assertEqual(ca.root_certificate, self.root)
        ca.intermediate_certificate.verify_directly_issued_by(self.root)
        self.assertEqual(sorted(storage.data), [PREFIX + "intermediate.crt", PREFIX + "intermediate.key"])

    def test_both_used_nothing_stored(self) -> None:
        """With both pairs configured nothing is generated or stored."""
        storage = MemoryStorage()
        ca = self._ca({"root": self.root_files, "intermediate": self.intermediate_files})
        _result(ca.provision(storage))
        self.assertEqual((ca.root_certificate, ca.intermediate_certificate), (self.root, self.intermediate))
        self.assertEqual(storage.data, {})

    def test_user_intermediate_not_renewed(self) -> None:
        """A configured intermediate is never renewed, even when about to expire."""
        storage = MemoryStorage()
        ca = self._ca({"root": self.root_files, "intermediate": self.intermediate_files})
        _result(ca.provision(storage))
        self.clock.advance(7 * DAY - 60)
        self.assertFalse(_result(ca.renew_intermediate_if_needed(storage)))
        self.assertEqual(ca.intermediate_certificate, self.intermediate)
        self.assertEqual(storage.data, {})

    def test_missing_file(self) -> None:
        """A configured file that cannot be read fails provisioning with the config path."""
        ca = self._ca({"root": {"certificate": self.directory + "/nope.crt", "private_key": self.root_files["private_key"]}})
        failure = _failure(ca.provision(MemoryStorage()))
        failure.trap(ConfigError)
        self.assertTrue(str(failure.value).startswith("apps.pki.certificate_authorities.local.root: "))
        self.assertIn("nope.crt", str(failure.value))

    def test_chain_file_refused(self) -> None:
        """A certificate file with two PEM blocks is refused, as Caddy does."""
        path = os.path.join(self.directory, "chain.crt")
        with open(path, "wb") as f:
            f.write(self.intermediate.public_bytes(serialization.Encoding.PEM) * 2)
        ca = self._ca({"root": {"certificate": path, "private_key": self.root_files["private_key"]}})
        failure = _failure(ca.provision(MemoryStorage()))
        failure.trap(ConfigError)
        self.assertIn("more than a single PEM block", str(failure.value))


class RenewalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = _clock()
        self.storage = MemoryStorage()
        self.ca = _provisioned(self.clock, self.storage)
        self.first = self.ca.intermediate_certificate

    def test_needs_renewal(self) -> None:
        """needs_renewal is true only past the last 20 % of the lifetime."""
        window_start = NOW + 7 * DAY * 0.8
        self.assertFalse(needs_renewal(self.first, window_start))
        self.assertTrue(needs_renewal(self.first, window_start + 1))

    def test_not_renewed_early(self) -> None:
        """With more than 20 % left nothing is renewed or stored."""
        self.storage.stored.clear()
        self.clock.advance(7 * DAY * 0.8)
        self.assertFalse(_result(self.ca.renew_intermediate_if_needed(self.storage)))
        self.assertEqual(self.ca.intermediate_certificate, self.first)
        self.assertEqual(self.storage.stored, [])

    def test_renewed(self) -> None:
        """With less than 20 % left a new intermediate from now is made, signed by the same
        root, stored, and used from then on."""
        self.storage.stored.clear()
        self.clock.advance(7 * DAY * 0.8 + 1)
        self.assertTrue(_result(self.ca.renew_intermediate_if_needed(self.storage)))
        renewed = self.ca.intermediate_certificate
        self.assertNotEqual(renewed.serial_number, self.first.serial_number)
        self.assertEqual(renewed.not_valid_before_utc.timestamp(), self.clock.seconds())
        self.assertEqual(renewed.not_valid_after_utc.timestamp(), self.clock.seconds() + 7 * DAY)
        renewed.verify_directly_issued_by(self.ca.root_certificate)
        self.assertEqual(self.storage.stored, [PREFIX + "intermediate.crt", PREFIX + "intermediate.key"])
        self.assertEqual(x509.load_pem_x509_certificate(self.storage.data[PREFIX + "intermediate.crt"]), renewed)
        leaf = _result(InternalIssuer(self.ca, self.clock).issue(["a.localhost"], new_private_key()))
        self.assertEqual(leaf.chain[1], renewed)


class ServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = _clock()
        self.storage = MemoryStorage()
        self.app = load_pki_app(None, self.clock)
        self.service = PKIService(self.app, self.storage, self.clock)

    def test_start_provisions(self) -> None:
        """Starting provisions the CAs and stores them; ready fires."""
        self.service.startService()
        assert self.service.ready is not None
        self.assertIsNone(_result(self.service.ready))
        self.assertTrue(self.app.get_ca().provisioned)
        self.assertEqual(len(self.storage.data), 4)
        self.service.stopService()

    def test_checks_every_ten_minutes(self) -> None:
        """The intermediate is renewed at the first 10-minute check after 80 % of its life,
        not in between."""
        self.service.startService()
        first = self.app.get_ca().intermediate_certificate
        # the first check after the window opens is the tick at or after 0.8 * 7 days + 1 s
        ticks = int((7 * DAY * 0.8) // MAINTENANCE_INTERVAL) + 1
        for _ in range(ticks - 1):
            self.clock.advance(MAINTENANCE_INTERVAL)
        self.clock.advance(MAINTENANCE_INTERVAL - 1)
        self.assertEqual(self.app.get_ca().intermediate_certificate, first)
        self.clock.advance(1)
        self.assertNotEqual(self.app.get_ca().intermediate_certificate, first)
        self.service.stopService()

    def test_renews_at_start(self) -> None:
        """An intermediate found in storage already in its window is renewed at start."""
        _result(load_pki_app(None, self.clock).provision(self.storage))
        old = self.storage.data[PREFIX + "intermediate.crt"]
        self.clock.advance(6 * DAY)
        self.service.startService()
        self.assertNotEqual(self.storage.data[PREFIX + "intermediate.crt"], old)
        self.service.stopService()

    def test_stop(self) -> None:
        """Stopping cancels the periodic check."""
        self.service.startService()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), NOW + MAINTENANCE_INTERVAL)
        self.service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_start_failure_logged(self) -> None:
        """A storage failure at start is logged, ready still fires, and checks go on."""
        service = PKIService(self.app, BrokenStorage(), self.clock)
        service.startService()
        assert service.ready is not None
        self.assertIsNone(_result(service.ready))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        service.stopService()


class TrustInstallTests(SynchronousTestCase):
    """PKIService puts each CA's root into the trust stores at start (Caddy's ``PKI.Start``)."""

    def setUp(self) -> None:
        self.clock = _clock()
        self.storage = MemoryStorage()
        self.calls: list[x509.Certificate] = []
        self.pending: list[Deferred[list[str]]] = []

    def installer(self, certificate: x509.Certificate) -> Deferred[list[str]]:
        self.calls.append(certificate)
        d: Deferred[list[str]] = Deferred()
        self.pending.append(d)
        return d

    def start(self, config: Any = None, installer: Any = None) -> PKIService:
        app = load_pki_app(config, self.clock)
        service = PKIService(app, self.storage, self.clock, installer or self.installer)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def test_installs_each_root_after_provisioning(self) -> None:
        """Each provisioned CA's root goes to the installer; ``ready`` does not wait for it,
        ``trusted`` fires with what each installation changed."""
        service = self.start({"certificate_authorities": {"local": {}, "other": {"name": "Other"}}})
        app = service.app
        self.assertEqual(self.calls, [app.get_ca("local").root_certificate, app.get_ca("other").root_certificate])
        assert service.ready is not None and service.trusted is not None
        self.assertIsNone(_result(service.ready))
        self.assertNoResult(service.trusted)
        self.pending[0].callback(["sql:/home/u/.pki/nssdb"])
        self.assertNoResult(service.trusted)
        self.pending[1].callback([])
        self.assertEqual(_result(service.trusted), {"local": ["sql:/home/u/.pki/nssdb"], "other": []})

    def test_install_trust_false(self) -> None:
        """A CA with ``install_trust: false`` (Caddyfile ``skip_install_trust``) is not installed."""
        service = self.start({"certificate_authorities": {"local": {"install_trust": False}}})
        self.assertEqual(self.calls, [])
        assert service.trusted is not None
        self.assertEqual(_result(service.trusted), {})

    def test_failure_is_only_logged(self) -> None:
        """A failed installation is logged; the service runs on, ``trusted`` leaves that CA out."""
        from twisted.logger import globalLogPublisher

        events: list[dict[str, Any]] = []
        observer = events.append
        globalLogPublisher.addObserver(observer)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, observer)  # type: ignore[arg-type]

        def broken(certificate: x509.Certificate) -> list[str]:
            raise RuntimeError("no sudo here")

        service = self.start(installer=broken)
        assert service.trusted is not None
        self.assertEqual(_result(service.trusted), {})
        errors = [e for e in events if e.get("log_format", "").startswith("failed to install root certificate")]
        self.assertEqual(len(errors), 1)
        self.assertEqual((errors[0]["ca"], errors[0]["error"], errors[0]["path"]),
                         ("local", "no sudo here", "storage:pki/authorities/local/root.crt"))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # maintenance still scheduled

    def test_no_installer(self) -> None:
        """Without an installer (the default) the trust stores are left alone."""
        service = PKIService(load_pki_app(None, self.clock), self.storage, self.clock)
        service.startService()
        self.addCleanup(service.stopService)
        assert service.trusted is not None
        self.assertEqual(_result(service.trusted), {})

    def test_unprovisioned_ca_not_installed(self) -> None:
        """A CA whose provisioning failed is not installed."""
        self.storage = BrokenStorage()
        service = self.start()
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.calls, [])
        assert service.trusted is not None
        self.assertEqual(_result(service.trusted), {})

    def test_threaded_installer(self) -> None:
        """``threaded_trust_installer`` runs the install function in the reactor's thread pool
        and hands its result back through the reactor thread."""
        log: list[str] = []

        class Pool:
            def callInThreadWithCallback(self, on_result: Any, f: Any, *args: Any) -> None:
                log.append("in pool")
                on_result(True, f(*args))

        class Reactor:
            def getThreadPool(self) -> Pool:
                return Pool()

            def callFromThread(self, f: Any, *args: Any) -> None:
                log.append("back in reactor")
                f(*args)

        root = _provisioned(self.clock).root_certificate

        def install(certificate: x509.Certificate) -> list[str]:
            log.append("install")
            self.assertIs(certificate, root)
            return ["/etc/x.crt"]

        d = threaded_trust_installer(Reactor(), install)(root)
        self.assertEqual(_result(d), ["/etc/x.crt"])
        self.assertEqual(log, ["in pool", "install", "back in reactor"])


class LeafTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = _clock()
        self.ca = _provisioned(self.clock)
        self.key = new_private_key()
        self.issuer = InternalIssuer(self.ca, self.clock)
        self.issued: IssuedCertificate = _result(self.issuer.issue(["localhost", "127.0.0.1", "::1"], self.key))
        self.leaf = self.issued.chain[0]

    def test_issuer_key(self) -> None:
        """The issuer key (storage folder under certificates/) is the CA id."""
        self.assertEqual(self.issuer.issuer_key, "local")

    def test_profile(self) -> None:
        """Empty subject; key usage digitalSignature (critical), EKU serverAuth+clientAuth,
        SKI, AKI, then SANs (critical): the extensions and order of Caddy's leaves, with no
        basic constraints."""
        self.assertEqual(self.leaf.subject, x509.Name([]))
        self.assertEqual(self.leaf.issuer, self.ca.intermediate_certificate.subject)
        self.assertEqual(
            _extension_names(self.leaf),
            [("keyUsage", True), ("extendedKeyUsage", False), ("subjectKeyIdentifier", False),
             ("authorityKeyIdentifier", False), ("subjectAltName", True)],
        )
        usage = self.leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertEqual((usage.digital_signature, usage.key_encipherment, usage.key_cert_sign), (True, False, False))
        self.assertEqual(
            list(self.leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value),
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        )
        self.assertEqual(_aki(self.leaf), _ski(self.ca.intermediate_certificate))
        self.assertTrue(0 < self.leaf.serial_number < 2**128)

    def test_sans(self) -> None:
        """DNS names and IP addresses go in the SAN extension."""
        san = self.leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual([str(ip) for ip in san.get_values_for_type(x509.IPAddress)], ["127.0.0.1", "::1"])

    def test_other_names(self) -> None:
        """certmagic's sorting: e-mails, URIs, IDNs in punycode, IPv4-mapped IPv6 as IPv4,
        grouped in Go's order (DNS, e-mail, IP, URI)."""
        issued = _result(self.issuer.issue(
            ["spiffe://x/y", "bücher.localhost", "::ffff:10.0.0.1", "me@example.com", "b.localhost"], self.key
        ))
        san = issued.chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(
            [type(name).__name__ + ":" + str(name.value) for name in san],
            ["DNSName:xn--bcher-kva.localhost", "DNSName:b.localhost", "RFC822Name:me@example.com",
             "IPAddress:10.0.0.1", "UniformResourceIdentifier:spiffe://x/y"],
        )

    def test_lifetime(self) -> None:
        """Valid from now for 12 hours by default."""
        self.assertEqual(DEFAULT_LEAF_LIFETIME, 12 * 3600)
        self.assertEqual((self.issued.not_before, self.issued.not_after), (NOW, NOW + 12 * 3600))
        self.assertEqual(self.leaf.not_valid_before_utc.timestamp(), NOW)
        self.assertEqual(self.leaf.not_valid_after_utc.timestamp(), NOW + 12 * 3600)

    def test_chain_pem(self) -> None:
        """certificate_pem is the leaf then the intermediate, as Caddy stores it; the key PEM
        is the given key in certmagic's form; metadata is empty."""
        certificates = x509.load_pem_x509_certificates(self.issued.certificate_pem)
        self.assertEqual(certificates, [self.leaf, self.ca.intermediate_certificate])
        self.assertEqual(self.issued.certificate_pem.count(b"-----BEGIN CERTIFICATE-----"), 2)
        self.assertEqual(self.issued.private_key_pem, private_key_pem(self.key))
        self.assertEqual(self.issued.metadata, {})

    def test_chain_verifies(self) -> None:
        """Each certificate is signed by the next: leaf by intermediate by root."""
        self.leaf.verify_directly_issued_by(self.ca.intermediate_certificate)
        self.ca.intermediate_certificate.verify_directly_issued_by(self.ca.root_certificate)
        self.assertEqual(
            self.leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            self.key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        )

    def test_openssl_verify(self) -> None:
        """openssl verify accepts the leaf with the root trusted and the intermediate
        untrusted, for localhost and 127.0.0.1, at the issuing time."""
        openssl = shutil.which("openssl")
        if openssl is None:
            self.skipTest("no openssl")
        directory = self.mktemp()
        os.makedirs(directory)
        paths = {}
        for name, data in (
            ("root", self.ca.root_pem()),
            ("intermediate", self.ca.intermediate_certificate.public_bytes(serialization.Encoding.PEM)),
            ("leaf", self.leaf.public_bytes(serialization.Encoding.PEM)),
        ):
            paths[name] = os.path.join(directory, name + ".pem")
            with open(paths[name], "wb") as f:
                f.write(data)
        command = [
            openssl, "verify", "-attime", str(int(NOW) + 60), "-purpose", "sslserver", "-CAfile", paths["root"],
            "-untrusted", paths["intermediate"], "-verify_hostname", "localhost", "-verify_ip", "127.0.0.1", paths["leaf"],
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        self.assertEqual((done.returncode, done.stdout.strip()), (0, paths["leaf"] + ": OK"), done.stderr)
        late = subprocess.run(
            [*command[:3], str(int(NOW) + 13 * 3600), *command[4:]], capture_output=True, text=True, timeout=30
        )
        self.assertNotEqual(late.returncode, 0)

    def test_rsa_key(self) -> None:
        """An RSA leaf key also gets keyEncipherment (smallstep's default leaf)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        leaf = _result(self.issuer.issue(["localhost"], key)).chain[0]
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertEqual((usage.digital_signature, usage.key_encipherment), (True, True))

    def test_lifetime_clamped(self) -> None:
        """A lifetime past the intermediate's NotAfter is cut to it."""
        issuer = InternalIssuer(self.ca, self.clock, lifetime=30 * DAY)
        issued = _result(issuer.issue(["localhost"], self.key))
        self.assertEqual(issued.not_after, self.ca.intermediate_certificate.not_valid_after_utc.timestamp())
        self.assertEqual(issued.chain[0].not_valid_after_utc.timestamp(), NOW + 7 * DAY)

    def test_clamped_near_expiry(self) -> None:
        """Even the default 12 hours is clamped when the intermediate ends sooner."""
        self.clock.advance(7 * DAY - 3600)
        issued = _result(self.issuer.issue(["localhost"], self.key))
        self.assertEqual(issued.not_after - issued.not_before, 3600)

    def test_expired_issuer(self) -> None:
        """Past the signer's NotAfter, issuing fails instead of signing an expired leaf."""
        self.clock.advance(7 * DAY)
        _failure(self.issuer.issue(["localhost"], self.key)).trap(ValueError)

    def test_sign_with_root(self) -> None:
        """sign_with_root: signed by the root, stored chain is leaf + root, lifetime not
        clamped to the intermediate."""
        issuer = InternalIssuer(self.ca, self.clock, lifetime=30 * DAY, sign_with_root=True)
        issued = _result(issuer.issue(["localhost"], self.key))
        leaf = issued.chain[0]
        leaf.verify_directly_issued_by(self.ca.root_certificate)
        self.assertEqual(leaf.issuer, self.ca.root_certificate.subject)
        self.assertEqual(_aki(leaf), _ski(self.ca.root_certificate))
        self.assertEqual(x509.load_pem_x509_certificates(issued.certificate_pem), [leaf, self.ca.root_certificate])
        self.assertEqual(issued.not_after, NOW + 30 * DAY)

    def test_no_names(self) -> None:
        """Issuing for no names fails."""
        _failure(self.issuer.issue([], self.key)).trap(ValueError)

    def test_unprovisioned_ca(self) -> None:
        """Issuing from a CA that was never provisioned fails with RuntimeError."""
        issuer = InternalIssuer(CertificateAuthority(clock=self.clock), self.clock)
        _failure(issuer.issue(["localhost"], self.key)).trap(RuntimeError)

    def test_other_leaf_key_types(self) -> None:
        """P-384 and Ed25519 leaf keys are certified (the CA still signs with P-256/SHA-256)."""
        for key_type in ("p384", "ed25519"):
            key = new_private_key(key_type)
            leaf = _result(self.issuer.issue(["localhost"], key)).chain[0]
            leaf.verify_directly_issued_by(self.ca.intermediate_certificate)
            assert leaf.signature_hash_algorithm is not None
            self.assertEqual(leaf.signature_hash_algorithm.name, "sha256")


class KeyTests(SynchronousTestCase):
    def test_key_types(self) -> None:
        """certmagic's key types, p256 by default and for ""."""
        def describe(key: Any) -> str:
            if isinstance(key, ec.EllipticCurvePrivateKey):
                return key.curve.name
            if isinstance(key, rsa.RSAPrivateKey):
                return f"rsa{key.key_size}"
            return type(key).__name__

        self.assertEqual(
            [describe(new_private_key(t)) for t in ("", "p256", "p384", "rsa2048", "ed25519")],
            ["secp256r1", "secp256r1", "secp384r1", "rsa2048", "Ed25519PrivateKey"],
        )
        self.assertEqual(describe(new_private_key()), "secp256r1")
        self.assertRaises(ValueError, new_private_key, "rsa1024")

    def test_pem_labels(self) -> None:
        """EC keys are SEC 1 "EC PRIVATE KEY", RSA PKCS #1 "RSA PRIVATE KEY", Ed25519 PKCS #8
        under certmagic v0.17.2's "ED25519 PRIVATE KEY"; each loads back."""
        for key_type, label in (("p256", b"EC"), ("rsa2048", b"RSA"), ("ed25519", b"ED25519")):
            key = new_private_key(key_type)
            pem = private_key_pem(key)
            self.assertTrue(pem.startswith(b"-----BEGIN " + label + b" PRIVATE KEY-----\n"), pem[:40])
            self.assertEqual(private_key_pem(load_private_key_pem(pem)), pem)

    def test_load_pkcs8(self) -> None:
        """A PKCS #8 "PRIVATE KEY" (OpenSSL's default) loads too."""
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        self.assertEqual(private_key_pem(load_private_key_pem(pem)), private_key_pem(key))
        ed = ed25519.Ed25519PrivateKey.generate()
        pem = ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        self.assertIsInstance(load_private_key_pem(pem), ed25519.Ed25519PrivateKey)

    def test_load_refused(self) -> None:
        """Non-key PEM blocks and garbage are refused with ValueError."""
        self.assertRaises(ValueError, load_private_key_pem, b"nothing here")
        self.assertRaises(
            ValueError, load_private_key_pem, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        self.assertRaises(
            ValueError, load_private_key_pem, b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"
        )

    def test_rsa_issuer_hash(self) -> None:
        """A user-supplied RSA root signs with SHA-256 (Go's choice)."""
        clock = _clock()
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "RSA Root")])
        root = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(_utc(NOW)).not_valid_after(_utc(NOW + 365 * DAY))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        files = _write_key_pair(self.mktemp(), "root", root, key)
        ca = CertificateAuthority.from_config("rsa", {"root": files}, clock, "ca")
        _result(ca.provision(MemoryStorage()))
        intermediate = ca.intermediate_certificate
        intermediate.verify_directly_issued_by(root)
        assert intermediate.signature_hash_algorithm is not None
        self.assertEqual(intermediate.signature_hash_algorithm.name, "sha256")
        # the root has no SKI: the AKI is computed from its key
        self.assertEqual(_aki(intermediate), x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest)


class PKIConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = _clock()

    def assertConfigError(self, config: Any, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            load_pki_app(config, self.clock)
        self.assertEqual(str(caught.exception), message)

    def test_default_local(self) -> None:
        """No pki app, or one without CAs, still has the default local CA with Caddy's names."""
        configs: list[Any] = [None, {}, {"certificate_authorities": {}}]
        for config in configs:
            app = load_pki_app(config, self.clock)
            self.assertIsInstance(app, PKIApp)
            self.assertEqual(list(app.cas), ["local"])
            ca = app.cas["local"]
            self.assertEqual((ca.id, ca.name, ca.install_trust), ("local", "Caddy Local Authority", True))
            self.assertEqual(ca.root_common_name, "{pki.ca.name} - {time.now.year} ECC Root")
            self.assertEqual(ca.intermediate_common_name, "{pki.ca.name} - ECC Intermediate")

    def test_configured(self) -> None:
        """Every field of a CA is read; lifetimes in nanoseconds or duration strings."""
        app = load_pki_app({"certificate_authorities": {
            "corp": {
                "name": "Corp", "root_common_name": "R", "intermediate_common_name": "I",
                "intermediate_lifetime": 3 * 86400 * 10**9, "install_trust": False,
                "root": {"certificate": "/r.crt", "private_key": "/r.key", "format": "pem_file"},
                "intermediate": {"certificate": "/i.crt", "private_key": "/i.key"},
                "storage": {"module": "file_system", "root": "/x"},
            },
            "short": {"intermediate_lifetime": "1d12h"},
        }}, self.clock)
        self.assertEqual(sorted(app.cas), ["corp", "short"])
        corp = app.cas["corp"]
        self.assertEqual(
            (corp.name, corp.root_common_name, corp.intermediate_common_name, corp.intermediate_lifetime, corp.install_trust),
            ("Corp", "R", "I", 3 * DAY, False),
        )
        assert corp.root is not None and corp.intermediate is not None
        self.assertEqual((corp.root.certificate, corp.root.private_key), ("/r.crt", "/r.key"))
        self.assertEqual(corp.intermediate.certificate, "/i.crt")
        self.assertEqual(corp.storage_config, {"module": "file_system", "root": "/x"})
        self.assertEqual(app.cas["short"].intermediate_lifetime, 1.5 * DAY)

    def test_get_ca(self) -> None:
        """get_ca makes the default CA on demand; other unknown ids are a ConfigError."""
        app = load_pki_app({"certificate_authorities": {"corp": {}}}, self.clock)
        self.assertEqual(list(app.cas), ["corp"])
        local = app.get_ca("local")
        self.assertIs(app.get_ca(), local)
        self.assertEqual(sorted(app.cas), ["corp", "local"])
        with self.assertRaises(ConfigError) as caught:
            app.get_ca("other")
        self.assertEqual(str(caught.exception), "no certificate authority configured with id: other")

    def test_provision_all(self) -> None:
        """provision() provisions every CA, each under its own storage folder."""
        storage = MemoryStorage()
        app = load_pki_app({"certificate_authorities": {"a": {}, "b": {}}}, self.clock)
        _result(app.provision(storage))
        self.assertEqual(
            sorted({key.rsplit("/", 1)[0] for key in storage.data}), ["pki/authorities/a", "pki/authorities/b"]
        )
        self.assertNotEqual(app.cas["a"].root_certificate, app.cas["b"].root_certificate)

    def test_bad_configs(self) -> None:
        """Bad values are ConfigErrors naming the JSON path."""
        base = "apps.pki.certificate_authorities.local"
        cases: list[tuple[Any, str]] = [
            ([], "apps.pki: must be a JSON object"),
            ({"cas": {}}, 'apps.pki: unknown field "cas"'),
            ({"certificate_authorities": []}, "apps.pki.certificate_authorities: must be a JSON object"),
            ({"certificate_authorities": {"local": None}}, f"{base}: a certificate authority must be a JSON object"),
            ({"certificate_authorities": {"": {}}}, "apps.pki.certificate_authorities.: CA ID is required (use 'local' for the default CA)"),
            ({"certificate_authorities": {"local": {"nmae": "x"}}}, f'{base}: unknown field "nmae"'),
            ({"certificate_authorities": {"local": {"name": 5}}}, f"{base}.name must be a string, got 5"),
            ({"certificate_authorities": {"local": {"install_trust": "no"}}}, f"{base}.install_trust must be a boolean, got 'no'"),
            ({"certificate_authorities": {"local": {"intermediate_lifetime": "soon"}}}, f'{base}.intermediate_lifetime: time: invalid duration "soon"'),
            ({"certificate_authorities": {"local": {"intermediate_lifetime": -1}}}, f"{base}.intermediate_lifetime: must be positive"),
            ({"certificate_authorities": {"local": {"intermediate_lifetime": "3600d"}}},
             f"{base}.intermediate_lifetime: intermediate certificate lifetime must be less than root certificate lifetime (86400h0m0s)"),
            ({"certificate_authorities": {"local": {"root": "file.pem"}}}, f"{base}.root: must be a JSON object"),
            ({"certificate_authorities": {"local": {"root": {"certificate": "a", "private_key": "b", "format": "der"}}}},
             f"{base}.root.format: unsupported format: der"),
            ({"certificate_authorities": {"local": {"intermediate": {"certificate": "a"}}}},
             f"{base}.intermediate: both certificate and private_key are required"),
            ({"certificate_authorities": {"local": {"root": {"certificate": "a", "key": "b"}}}}, f'{base}.root: unknown field "key"'),
            ({"certificate_authorities": {"local": {"storage": "file"}}}, f"{base}.storage: must be a JSON object"),
        ]
        for config, message in cases:
            self.assertConfigError(config, message)


class IssuerConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = _clock()
        self.pki = load_pki_app({"certificate_authorities": {"corp": {}}}, self.clock)

    def test_defaults(self) -> None:
        """The default issuer uses (and creates) the local CA, 12 h, the intermediate."""
        issuer = load_internal_issuer({"module": "internal"}, self.pki, self.clock)
        self.assertIs(issuer.ca, self.pki.cas["local"])
        self.assertEqual((issuer.issuer_key, issuer.lifetime, issuer.sign_with_root), ("local", 12 * 3600.0, False))

    def test_options(self) -> None:
        """ca, lifetime (nanoseconds or a duration string) and sign_with_root are read."""
        issuer = load_internal_issuer(
            {"module": "internal", "ca": "corp", "lifetime": 3600 * 10**9, "sign_with_root": True}, self.pki, self.clock
        )
        self.assertEqual((issuer.issuer_key, issuer.lifetime, issuer.sign_with_root), ("corp", 3600.0, True))
        self.assertEqual(load_internal_issuer({"lifetime": "1d"}, self.pki, self.clock).lifetime, DAY)

    def test_bad_configs(self) -> None:
        """Bad issuer configs are ConfigErrors naming the field."""
        where = "apps.tls.automation.policies.0.issuers.0"
        cases: list[tuple[Any, str]] = [
            ("internal", f"{where}: must be a JSON object"),
            ({"module": "acme"}, f"{where}.module: expected 'internal', got 'acme'"),
            ({"ca": "nope"}, f"{where}.ca: no certificate authority configured with id: nope"),
            ({"ca": 1}, f"{where}.ca must be a string, got 1"),
            ({"lifetime": "12"}, f'{where}.lifetime: time: missing unit in duration "12"'),
            ({"lifetime": -5}, f"{where}.lifetime: must be positive"),
            ({"sign_with_root": "yes"}, f"{where}.sign_with_root must be a boolean, got 'yes'"),
            ({"lifetim": 5}, f'{where}: unknown field "lifetim"'),
        ]
        for config, message in cases:
            with self.assertRaises(ConfigError) as caught:
                load_internal_issuer(config, self.pki, self.clock, where)
            self.assertEqual(str(caught.exception), message)


class InterfaceTests(SynchronousTestCase):
    def test_fake_storage(self) -> None:
        """The test storage provides IStorage, so the CA is exercised through the interface."""
        self.assertTrue(verifyObject(IStorage, MemoryStorage()))

    def test_key_not_found(self) -> None:
        """The storage backends raise the KeyNotFound the CA treats as "absent"."""
        from txcaddy.tls import storage

        self.assertIs(storage.KeyNotFound, KeyNotFound)
