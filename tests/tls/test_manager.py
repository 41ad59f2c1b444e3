"""The certificate manager (``txcaddy.tls.manager``) with fake issuers, in-memory storage and a Clock."""

from __future__ import annotations

import datetime
import json
import random
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from txcaddy.interfaces import ICertificateIssuer
from txcaddy.testing import MemoryStorage
from txcaddy.tls import storage as keys
from txcaddy.tls.certificates import Certificate, CertificateCache
from txcaddy.tls.issuers import IssuedCertificate
from txcaddy.tls.keys import private_key_pem
from txcaddy.tls.manager import (
    RETRY_INTERVALS,
    AutomationPolicy,
    CertificateManager,
    match_wildcard,
)

from ._certs import NOW, TestCA

DAY = 24 * 3600.0


@implementer(ICertificateIssuer)
class FakeIssuer:
    """Issues from a test CA for ``lifetime`` seconds from the clock's now; can be told to fail."""

    def __init__(self, clock: Clock, issuer_key: str = "fake", lifetime: float = 90 * DAY) -> None:
        self.ca = TestCA(issuer_key)
        self.clock = clock
        self.issuer_key = issuer_key
        self.lifetime = lifetime
        self.calls: list[tuple[list[str], Any]] = []
        self.failures: list[Exception] = []
        self.refuse: set[str] = set()
        self.pending: Deferred[IssuedCertificate] | None = None
        self.hold = False

    def pre_check(self, names: Sequence[str]) -> None:
        if self.refuse & set(names):
            raise ValueError("refused by pre-check")

    def issue(self, names: Sequence[str], private_key: Any, attempt: int = 0) -> Deferred[IssuedCertificate]:
        self.calls.append((list(names), private_key))
        if self.failures:
            return fail(self.failures.pop(0))
        issued = self._issued(names, private_key)
        if self.hold:
            self.pending = Deferred()
            return self.pending.addCallback(lambda _: issued)
        return succeed(issued)

    def _issued(self, names: Sequence[str], private_key: Any) -> IssuedCertificate:
        start = datetime.datetime.fromtimestamp(self.clock.seconds(), datetime.UTC)
        cert_pem, _ = self.ca.leaf(names, days=self.lifetime / DAY, not_before=start)
        # re-sign for the given key: build the leaf with the manager's key
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        leaf = x509.load_pem_x509_certificate(cert_pem)
        builder = (x509.CertificateBuilder().subject_name(leaf.subject).issuer_name(leaf.issuer)
                   .public_key(private_key.public_key()).serial_number(leaf.serial_number)
                   .not_valid_before(leaf.not_valid_before_utc).not_valid_after(leaf.not_valid_after_utc))
        for extension in leaf.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        signed = builder.sign(self.ca.key, hashes.SHA256())
        pem = signed.public_bytes(serialization.Encoding.PEM)
        return IssuedCertificate(pem, private_key_pem(private_key), start.timestamp(),
                                 start.timestamp() + self.lifetime, (signed,), {"issuer": self.issuer_key})


class ManagerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW.timestamp())
        self.storage = MemoryStorage(self.clock)
        self.cache = CertificateCache()
        self.issuer = FakeIssuer(self.clock)

    def manager(self, names: Sequence[str], *issuers: Any, **kwargs: Any) -> CertificateManager:
        policy = AutomationPolicy(issuers=list(issuers or (self.issuer,)), **kwargs)
        manager = CertificateManager(self.cache, self.storage, [policy], names, self.clock, rng=random.Random(1))
        self.addCleanup(lambda: manager.running and manager.stopService())
        return manager

    def store(self, name: str, issuer: FakeIssuer, *, age: float = 0, lifetime: float = 90 * DAY) -> Certificate:
        """Put a certificate for ``name`` issued ``age`` seconds ago in storage, as the manager would."""
        from txcaddy.tls.keys import new_private_key

        saved = self.clock.seconds()
        issuer_clock = Clock()
        issuer_clock.advance(saved - age)
        original = issuer.clock, issuer.lifetime
        issuer.clock, issuer.lifetime = issuer_clock, lifetime
        issued = issuer._issued([name], new_private_key())
        issuer.clock, issuer.lifetime = original
        self.successResultOf(self.storage.store(keys.site_cert(issuer.issuer_key, name), issued.certificate_pem))
        self.successResultOf(self.storage.store(keys.site_private_key(issuer.issuer_key, name), issued.private_key_pem))
        return Certificate.from_pem(issued.certificate_pem, issued.private_key_pem)


class MatchWildcardTests(SynchronousTestCase):
    def test_match_wildcard(self) -> None:
        """A wildcard label matches one label; names compare case-insensitively."""
        self.assertTrue(match_wildcard("a.example.com", "*.example.com"))
        self.assertTrue(match_wildcard("Example.com", "example.COM"))
        self.assertFalse(match_wildcard("a.b.example.com", "*.example.com"))
        self.assertFalse(match_wildcard("example.com", "*.example.com"))


class ObtainTests(ManagerTestCase):
    def test_fake_issuer_is_an_issuer(self) -> None:
        """The test issuer provides ``ICertificateIssuer`` (so the manager meets the real contract)."""
        self.assertTrue(verifyObject(ICertificateIssuer, self.issuer))

    def test_obtains_stores_and_caches(self) -> None:
        """A name with nothing in storage is obtained at start, stored in Caddy's layout and served."""
        manager = self.manager(["example.com"])
        manager.startService()
        self.successResultOf(manager.ready)
        self.assertEqual([names for names, _ in self.issuer.calls], [["example.com"]])
        served = self.cache.matching("example.com")
        assert served is not None
        self.assertTrue(served.managed)
        stored = self.storage.values
        self.assertEqual(stored[keys.site_cert("fake", "example.com")], served.chain_pem())
        meta = stored[keys.site_meta("fake", "example.com")].decode()
        self.assertEqual(json.loads(meta), {"sans": ["example.com"], "issuer_data": {"issuer": "fake"}})
        self.assertIn('\n\t"sans"', meta)  # Go's MarshalIndent with a tab
        self.assertEqual(self.storage.held, frozenset())  # the issue_cert lock was released

    def test_loads_from_storage_without_issuing(self) -> None:
        """A stored certificate outside its renewal window is served; nothing is ordered."""
        stored = self.store("example.com", self.issuer, age=10 * DAY)
        manager = self.manager(["example.com"])
        manager.startService()
        self.successResultOf(manager.ready)
        self.assertEqual(self.issuer.calls, [])
        served = self.cache.matching("example.com")
        self.assertEqual(served.hash if served else None, stored.hash)

    def test_newest_of_several_issuers_wins(self) -> None:
        """With certificates from two issuers in storage, the latest NotBefore is loaded."""
        other = FakeIssuer(self.clock, "other")
        self.store("example.com", self.issuer, age=20 * DAY)
        newer = self.store("example.com", other, age=5 * DAY)
        manager = self.manager(["example.com"], self.issuer, other)
        manager.startService()
        served = self.cache.matching("example.com")
        self.assertEqual(served.hash if served else None, newer.hash)

    def test_renews_stored_certificate_in_window_reusing_key(self) -> None:
        """A stored certificate with under a third of its life left is served, then renewed with its key."""
        old = self.store("example.com", self.issuer, age=70 * DAY)
        manager = self.manager(["example.com"])
        manager.startService()
        self.assertEqual(len(self.issuer.calls), 1)
        _, key = self.issuer.calls[0]
        self.assertEqual(private_key_pem(key), private_key_pem(old.private_key))  # type: ignore[arg-type]
        served = self.cache.matching("example.com")
        assert served is not None
        self.assertNotEqual(served.hash, old.hash)
        self.assertEqual(len(self.cache), 1)  # the old one left the cache

    def test_issuer_fallback(self) -> None:
        """A failing issuer and a pre-check refusal hand over to the next issuer in order."""
        refusing, failing = FakeIssuer(self.clock, "refusing"), FakeIssuer(self.clock, "failing")
        refusing.refuse.add("example.com")
        failing.failures.append(RuntimeError("CA down"))
        manager = self.manager(["example.com"], refusing, failing, self.issuer)
        manager.startService()
        self.assertEqual((len(refusing.calls), len(failing.calls), len(self.issuer.calls)), (0, 1, 1))
        served = self.cache.matching("example.com")
        self.assertEqual(served.issuer_key if served else None, "fake")
        self.assertIn(keys.site_cert("fake", "example.com"), self.storage.values)

    def test_retries_with_certmagic_intervals(self) -> None:
        """Failed attempts are retried after 1, 2, 2 … minutes; ``ready`` fires after the first."""
        self.issuer.failures.extend([RuntimeError("rate limited")] * 3)
        manager = self.manager(["example.com"])
        manager.startService()
        self.successResultOf(manager.ready)
        self.assertEqual(len(self.issuer.calls), 1)
        for expected_calls, wait in zip((2, 3, 4), RETRY_INTERVALS, strict=False):
            self.clock.advance(wait - 1)
            self.assertEqual(len(self.issuer.calls), expected_calls - 1)
            self.clock.advance(1)
            self.assertEqual(len(self.issuer.calls), expected_calls)
        self.assertIsNotNone(self.cache.matching("example.com"))

    def test_old_certificate_served_while_renewal_fails(self) -> None:
        """An expiring certificate stays in the cache while its renewal keeps failing."""
        old = self.store("example.com", self.issuer, age=80 * DAY)
        self.issuer.failures.extend([RuntimeError("down")] * 5)
        manager = self.manager(["example.com"])
        manager.startService()
        self.clock.advance(3600)
        served = self.cache.matching("example.com")
        self.assertEqual(served.hash if served else None, old.hash)

    def test_gives_up_after_thirty_days(self) -> None:
        """Background attempts stop once 30 days of retries have passed."""
        self.issuer.failures.extend([RuntimeError("down")] * 1000)
        manager = self.manager(["example.com"])
        manager.startService()
        for _ in range(31 * 4):
            self.clock.advance(6 * 3600)
        calls = len(self.issuer.calls)
        self.clock.advance(30 * DAY)
        self.assertEqual(len(self.issuer.calls), calls)
        self.assertLess(calls, 130)

    def test_maintenance_renews_when_window_opens(self) -> None:
        """The 10-minute maintenance renews a certificate once a third of its life is left."""
        self.issuer.lifetime = 3 * DAY
        manager = self.manager(["example.com"])
        manager.startService()
        self.assertEqual(len(self.issuer.calls), 1)
        for _ in range(6 * 24):  # one day: far from the window
            self.clock.advance(600)
        self.assertEqual(len(self.issuer.calls), 1)
        for _ in range(6 * 24 * 2):  # to the end: the window opens at two days
            self.clock.advance(600)
        self.assertEqual(len(self.issuer.calls), 2)

    def test_waits_for_lock_and_uses_what_the_holder_stored(self) -> None:
        """Another instance holding ``issue_cert_<name>``: wait, then use its certificate."""
        self.successResultOf(self.storage.lock(keys.issue_cert_lock("example.com")))
        manager = self.manager(["example.com"])
        manager.startService()
        self.assertEqual(self.issuer.calls, [])
        theirs = self.store("example.com", self.issuer)
        self.successResultOf(self.storage.unlock(keys.issue_cert_lock("example.com")))
        self.assertEqual(self.issuer.calls, [])
        served = self.cache.matching("example.com")
        self.assertEqual(served.hash if served else None, theirs.hash)

    def test_stop_cancels_retries_and_releases_locks(self) -> None:
        """Stopping cancels pending retries and releases the lock of an order in flight."""
        self.issuer.hold = True
        manager = self.manager(["example.com", "b.example.com"])
        self.issuer.failures.append(RuntimeError("down"))
        manager.startService()
        self.assertEqual(self.storage.held, frozenset({keys.issue_cert_lock("b.example.com")}))
        self.successResultOf(manager.stopService())
        self.assertEqual(self.storage.held, frozenset())
        self.clock.advance(3600)
        self.assertEqual(len(self.issuer.calls), 2)

    def test_full_disk_keeps_old_certificate_and_retries(self) -> None:
        """A storage that cannot write (a full disk): the renewal fails and is retried, the old
        certificate stays served, and the lock is released."""
        old = self.store("example.com", self.issuer, age=70 * DAY)
        store = self.storage.store
        failing = [True]

        def full_disk(key: str, value: bytes) -> Deferred[None]:
            if failing[0]:
                return fail(OSError(28, "No space left on device"))
            return store(key, value)

        self.storage.store = full_disk  # type: ignore[method-assign]
        manager = self.manager(["example.com"])
        manager.startService()
        served = self.cache.matching("example.com")
        self.assertEqual(served.hash if served else None, old.hash)
        self.assertEqual(self.storage.held, frozenset())
        failing[0] = False
        self.clock.advance(RETRY_INTERVALS[0])
        served = self.cache.matching("example.com")
        self.assertNotEqual(served.hash if served else None, old.hash)
        self.assertEqual(len(self.issuer.calls), 2)

    def test_policy_for_name(self) -> None:
        """The first policy whose subjects cover the name, else the catch-all."""
        internal, catch_all = FakeIssuer(self.clock, "internal"), FakeIssuer(self.clock, "acme")
        manager = CertificateManager(
            self.cache, self.storage,
            [AutomationPolicy(issuers=[catch_all]), AutomationPolicy(subjects=["*.local"], issuers=[internal])],
            [], self.clock)
        self.assertEqual(manager.policy_for("printer.local").issuers, [internal])
        self.assertEqual(manager.policy_for("example.com").issuers, [catch_all])


class WorkerTests(ManagerTestCase):
    """The manager in a worker process (``workers N``) and the supervisor's hook."""

    def test_follower_loads_but_never_obtains_or_renews(self) -> None:
        """A follower serves what storage holds, orders nothing for a missing name nor for
        a certificate in its renewal window, and runs no maintenance."""
        old = self.store("old.example", self.issuer, age=70 * DAY)
        manager = self.manager(["old.example", "missing.example"])
        manager.follower = True
        manager.startService()
        self.successResultOf(manager.ready)
        self.clock.advance(30 * DAY)
        self.assertEqual(self.issuer.calls, [])
        served = self.cache.matching("old.example")
        self.assertEqual(served.hash if served else None, old.hash)
        self.assertIsNone(self.cache.matching("missing.example"))

    def test_reload_names_replaces_the_cached_certificate(self) -> None:
        """Told that a name's certificate was stored, a follower serves the stored one in
        place of the one it cached."""
        self.store("example.com", self.issuer, age=70 * DAY)
        manager = self.manager(["example.com"])
        manager.follower = True
        manager.startService()
        newer = self.store("example.com", self.issuer, age=0)
        self.successResultOf(manager.reload_names(["example.com"]))
        served = self.cache.matching("example.com")
        self.assertEqual(served.hash if served else None, newer.hash)
        self.assertEqual(len(self.cache), 1)

    def test_on_stored_is_told_each_obtained_name(self) -> None:
        """The supervisor's hook hears each name whose certificate was obtained and stored."""
        told: list[str] = []
        manager = self.manager(["example.com"])
        manager.on_stored.append(told.append)
        manager.startService()
        self.successResultOf(manager.ready)
        self.assertEqual(told, ["example.com"])
