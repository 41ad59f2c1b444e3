"""The certificate manager: obtains, loads, renews and serves the managed certificates.

Automatic HTTPS phase 2 and certmagic v0.17.2's ``Config.ManageAsync`` and maintenance
(``config.go``, ``async.go``, ``maintain.go``, ``crypto.go``), as a Twisted service:

- at start, every managed name is looked up in storage (each issuer of its automation policy;
  the newest certificate wins); one found is served at once, and renewed in the background if
  it is already in its renewal window; a name with none is obtained in the background;
- obtaining holds the storage lock ``issue_cert_<name>`` (so two instances on one storage never
  order the same name twice), looks in storage again once it has the lock (the other instance
  may just have stored one), reuses a stored private key, and tries the policy's issuers in
  order; the certificate, key and metadata are stored (``certificates/<issuer>/<name>/``) and
  put in the cache before the old one leaves it;
- a failed attempt is retried after 1, 2, 2, 5, 10, 20, 20, 30, 30 minutes, 1, 3, 6 hours and
  then every 6 hours, for up to 30 days (certmagic's ``retryIntervals``); an expiring
  certificate is served until a new one is stored;
- every ``renew_interval`` (10 minutes) certificates with less than ``renewal_window_ratio``
  (a third) of their lifetime left are renewed.  Each certificate's window opens up to 1 % of
  its lifetime early at random, so a fleet sharing storage does not renew all at once
  (certmagic 0.17.2 has no jitter; docs/differences.md).

Everything runs on the reactor thread; issuers do their slow work off it.  Time is the clock's.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txcaddy.interfaces import ICertificateIssuer, IStorage
from txcaddy.tls import storage as keys
from txcaddy.tls.certificates import Certificate, CertificateCache, CertificateError
from txcaddy.tls.errors import KeyNotFound
from txcaddy.tls.issuers import IssuedCertificate
from txcaddy.tls.keys import load_private_key_pem, new_private_key
from txcaddy.tls.names import match_wildcard

__all__ = ["RETRY_INTERVALS", "AutomationPolicy", "CertificateManager"]

log = Logger()

#: certmagic's ``retryIntervals`` (seconds): the waits between background attempts.
RETRY_INTERVALS = (60, 120, 120, 300, 600, 1200, 1200, 1800, 1800, 3600, 3 * 3600, 6 * 3600)
MAX_RETRY_DURATION = 30 * 24 * 3600.0
DEFAULT_RENEW_INTERVAL = 600.0
DEFAULT_RENEWAL_WINDOW_RATIO = 1 / 3
RENEWAL_JITTER = 0.01


@dataclass
class AutomationPolicy:
    """One ``apps.tls.automation.policies`` entry, loaded: which names, which issuers, which key."""

    subjects: list[str] = field(default_factory=list)
    issuers: list[ICertificateIssuer] = field(default_factory=list)
    key_type: str = "p256"
    renewal_window_ratio: float = DEFAULT_RENEWAL_WINDOW_RATIO
    on_demand: bool = False
    storage: IStorage | None = None

    def covers(self, name: str) -> bool:
        return not self.subjects or any(match_wildcard(name, subject) for subject in self.subjects)


class _Attempts:
    """The background obtain/renew of one name: its retry timer and how long it has tried."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.count = 0
        self.timer: IDelayedCall | None = None
        self.first_done: list[Deferred[None]] = []  # waiting for the first attempt's outcome

    def first_attempt_done(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        if self.count > 0:
            waiter.callback(None)
        else:
            self.first_done.append(waiter)
        return waiter

    def attempted(self) -> None:
        waiters, self.first_done = self.first_done, []
        for waiter in waiters:
            waiter.callback(None)


class CertificateManager(Service):
    """Keeps a certificate for every managed name in the cache, obtained and renewed.

    @ivar ready: fires once every name managed at start has had its first attempt (a
        certificate loaded or obtained, or a first failure logged); tests and ``txcaddy run``
        wait on it, handshakes never do.
    """

    def __init__(
        self,
        cache: CertificateCache,
        storage: IStorage,
        policies: Sequence[AutomationPolicy],
        names: Sequence[str],
        clock: IReactorTime,
        *,
        renew_interval: float = DEFAULT_RENEW_INTERVAL,
        rng: random.Random | None = None,
        wait_for: Callable[[], Deferred[Any] | None] | None = None,
    ) -> None:
        self.cache = cache
        self.storage = storage
        self.policies = list(policies)
        self.names = list(dict.fromkeys(names))
        self.clock = clock
        self.renew_interval = renew_interval
        self.ready: Deferred[None] = Deferred()
        self._rng = rng or random.Random()
        self._attempts: dict[str, _Attempts] = {}
        self._jitter: dict[str, float] = {}
        self._held_locks: set[str] = set()
        self._maintenance: LoopingCall | None = None
        self._stopped = False
        self._on_demand: dict[str, list[Deferred[Certificate]]] = {}
        self._wait_for = wait_for  # e.g. the PKI app's provisioning, which the internal issuer needs
        # A worker process (``workers N``) only loads what the supervisor's manager stored:
        # it never obtains nor renews the managed names (on-demand TLS still obtains).
        self.follower = False
        # Called with each name whose certificate was obtained or renewed and stored.
        self.on_stored: list[Callable[[str], Any]] = []

    # -- service -----------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._stopped = False
        before = self._wait_for() if self._wait_for is not None else None
        if before is None:
            self._start_managing()
        else:
            before.addBoth(lambda _: self._start_managing() if not self._stopped else None)

    def _start_managing(self) -> None:
        if self.names:
            log.info("enabling automatic TLS certificate management for {domains}", domains=self.names)
        first = [self._manage(name) for name in self.names]
        DeferredList(first, consumeErrors=True).addCallback(lambda _: self._fire_ready())
        if self.follower:
            return
        loop = self._maintenance = LoopingCall(self.renew_due)
        loop.clock = self.clock
        loop.start(self.renew_interval, now=False).addErrback(
            lambda f: log.failure("certificate maintenance stopped", f))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopped = True
        if self._maintenance is not None and self._maintenance.running:
            self._maintenance.stop()
        for attempts in self._attempts.values():
            if attempts.timer is not None and attempts.timer.active():
                attempts.timer.cancel()
        self._attempts.clear()
        unlocks = [ensureDeferred(self._unlock(name)) for name in list(self._held_locks)]
        return DeferredList(unlocks, consumeErrors=True).addCallback(lambda _: None)

    def _fire_ready(self) -> None:
        if not self.ready.called:
            self.ready.callback(None)

    # -- policy ------------------------------------------------------------------------

    def policy_for(self, name: str) -> AutomationPolicy:
        """The first policy whose subjects cover ``name``, else the catch-all (certmagic's lookup)."""
        for policy in self.policies:
            if policy.subjects and policy.covers(name):
                return policy
        for policy in self.policies:
            if not policy.subjects:
                return policy
        raise LookupError(f"no automation policy for {name!r}")

    def _storage(self, policy: AutomationPolicy) -> IStorage:
        return policy.storage if policy.storage is not None else self.storage

    # -- managing names ------------------------------------------------------------------

    def manage(self, names: Sequence[str]) -> Deferred[Any]:
        """Start managing more names (on-demand TLS and the ``automate`` loader use it)."""
        fresh = [name for name in names if name not in self.names]
        self.names.extend(fresh)
        return DeferredList([self._manage(name) for name in fresh], consumeErrors=True)

    def _manage(self, name: str) -> Deferred[None]:
        return ensureDeferred(self._manage_name(name))

    async def _manage_name(self, name: str) -> None:
        try:
            policy = self.policy_for(name)
            found = await self._load_from_storage(name, policy)
        except Exception:
            log.failure("loading the certificate of {name} from storage", Failure(), name=name)
            found = None
        if found is not None:
            self.cache.add(found)
            if self.follower:
                return
            if self._due(found, policy):
                self._start_attempts(name, found)
            return
        if self.follower:
            return
        self._start_attempts(name, None)
        attempts = self._attempts.get(name)
        if attempts is not None:
            await attempts.first_attempt_done()

    def reload_names(self, names: Sequence[str]) -> Deferred[Any]:
        """Load the certificates of ``names`` from storage again, in place of the cached ones
        (a worker told that the supervisor stored new ones)."""
        return DeferredList([ensureDeferred(self._reload_name(name)) for name in names], consumeErrors=True)

    async def _reload_name(self, name: str) -> None:
        try:
            found = await self._load_from_storage(name, self.policy_for(name))
        except Exception:
            log.failure("loading the certificate of {name} from storage", Failure(), name=name)
            return
        if found is None:
            return
        old = [c for c in self.cache.all_matching(name) if c.managed and name in c.names]
        self.cache.replace(old[0] if old else None, found)
        for stale in old[1:]:
            self.cache.remove(stale)

    def _due(self, certificate: Certificate, policy: AutomationPolicy) -> bool:
        jitter = self._jitter.setdefault(certificate.hash, self._rng.random() * RENEWAL_JITTER)
        ratio = min(1.0, policy.renewal_window_ratio + jitter)
        return certificate.in_renewal_window(self.clock.seconds(), ratio)

    def renew_due(self) -> None:
        """One maintenance pass: start renewing every managed certificate in its window."""
        for certificate in list(self.cache):
            if not certificate.managed:
                continue
            for name in certificate.names:
                if name in self.names and name not in self._attempts:
                    if self._due(certificate, self.policy_for(name)):
                        self._start_attempts(name, certificate)
                    break

    # -- on demand -----------------------------------------------------------------------

    def obtain_on_demand(self, name: str, allowed: Callable[[str], Deferred[bool]],
                         timeout: float = 180.0) -> Deferred[Certificate]:
        """A certificate for ``name`` for a handshake that is waiting (certmagic's on-demand path).

        Storage first (another instance may have one), then ``allowed(name)`` (the ask endpoint
        and the rate limit), then one order; concurrent callers share it.  The Deferred fails
        after ``timeout`` seconds; the order itself is not cancelled.  Once obtained the name
        is managed (renewed) like the configured ones.
        """
        waiter: Deferred[Certificate] = Deferred()
        waiters = self._on_demand.get(name)
        if waiters is None:
            waiters = self._on_demand[name] = []
            ensureDeferred(self._on_demand_order(name, allowed)).addBoth(self._on_demand_done, name)
        waiters.append(waiter)
        timer = self.clock.callLater(timeout, _time_out, waiter, f"on-demand certificate for {name} timed out")
        waiter.addBoth(_cancel_timer, timer)
        return waiter

    async def _on_demand_order(self, name: str, allowed: Callable[[str], Deferred[bool]]) -> Certificate:
        policy = self.policy_for(name)
        stored = await self._load_from_storage(name, policy)
        if stored is None or stored.expired(self.clock.seconds()):
            if not await allowed(name):
                raise PermissionError(f"certificate for {name} not allowed on demand")
            stored = await self.obtain(name)
        else:
            self.cache.add(stored)
        if name not in self.names:
            self.names.append(name)
        return stored

    def _on_demand_done(self, result: Any, name: str) -> None:
        for waiter in self._on_demand.pop(name, []):
            if not waiter.called:
                waiter.errback(result) if isinstance(result, Failure) else waiter.callback(result)
        if isinstance(result, Failure):
            log.error("on-demand certificate for {name}: {error}", name=name, error=_describe(result))

    # -- attempts and retries (certmagic's doWithRetry) -------------------------------------

    def _start_attempts(self, name: str, old: Certificate | None) -> None:
        if name in self._attempts or self._stopped:
            return
        attempts = self._attempts[name] = _Attempts(self.clock.seconds())
        self._attempt(name, old, attempts)

    def _attempt(self, name: str, old: Certificate | None, attempts: _Attempts) -> None:
        attempts.timer = None
        action = "renewing" if old is not None else "obtaining"
        log.info("{action} certificate for {name} (attempt {n})", action=action, name=name, n=attempts.count + 1)
        d = ensureDeferred(self.obtain(name, old, attempt=attempts.count))

        def succeeded(certificate: Certificate) -> None:
            attempts.count += 1
            attempts.attempted()
            if self._attempts.get(name) is attempts:
                del self._attempts[name]
            for hook in list(self.on_stored):
                hook(name)
            log.info("certificate {action} successfully for {name}, valid until {not_after}",
                     action="renewed" if old is not None else "obtained", name=name,
                     not_after=certificate.leaf.not_valid_after_utc.isoformat())

        def failed(failure: Failure) -> None:
            wait = RETRY_INTERVALS[min(attempts.count, len(RETRY_INTERVALS) - 1)]
            attempts.count += 1
            attempts.attempted()
            if self._stopped or self._attempts.get(name) is not attempts:
                return
            elapsed = self.clock.seconds() - attempts.started
            if elapsed + wait > MAX_RETRY_DURATION:
                log.error("{action} certificate for {name}: final attempt failed; giving up: {error}",
                          action=action, name=name, error=_describe(failure))
                self._attempts.pop(name, None)
                return
            log.error("could not get certificate for {name} from any issuer (attempt {n}); retrying in "
                      "{wait}s: {error}", name=name, n=attempts.count, wait=wait, error=_describe(failure))
            attempts.timer = self.clock.callLater(wait, self._attempt, name, old, attempts)

        d.addCallbacks(succeeded, failed)

    # -- obtaining -------------------------------------------------------------------------

    async def obtain(self, name: str, old: Certificate | None = None, *, attempt: int = 0) -> Certificate:
        """Get a certificate for ``name`` now (one attempt), store it and put it in the cache."""
        policy = self.policy_for(name)
        storage = self._storage(policy)
        lock = keys.issue_cert_lock(name)
        await storage.lock(lock)
        self._held_locks.add(lock)
        try:
            # Another instance may have stored one while we waited for the lock.
            stored = await self._load_from_storage(name, policy)
            if stored is not None and (old is None or stored.hash != old.hash) and not self._due(stored, policy):
                self.cache.replace(old, stored)
                return stored
            private_key = await self._reusable_key(name, policy)
            if private_key is None:
                private_key = new_private_key(policy.key_type or "p256")
            issued, issuer = await self._issue(name, policy, private_key, attempt)
            certificate = Certificate.from_pem(issued.certificate_pem, issued.private_key_pem, managed=True,
                                               issuer_key=issuer.issuer_key)
            await self._store(storage, issuer, name, issued)
        finally:
            await self._unlock(lock, storage)
        self.cache.replace(old, certificate)
        return certificate

    async def _issue(self, name: str, policy: AutomationPolicy, private_key: Any,
                     attempt: int = 0) -> tuple[IssuedCertificate, ICertificateIssuer]:
        """certmagic's ``obtainCert``: each issuer in order; the last error if none succeeds."""
        if not policy.issuers:
            raise RuntimeError(f"no issuers configured for {name}")
        last: Exception | None = None
        for issuer in policy.issuers:
            try:
                issuer.pre_check([name])
            except ValueError as e:
                last = e
                continue
            try:
                issued = await issuer.issue([name], private_key, attempt)
            except Exception as e:  # noqa: BLE001 - the next issuer gets its turn
                log.error("could not get certificate for {name} from issuer {issuer}: {error}",
                          name=name, issuer=issuer.issuer_key, error=e)
                last = e
                continue
            return issued, issuer
        assert last is not None
        raise last

    async def _store(self, storage: IStorage, issuer: ICertificateIssuer, name: str, issued: IssuedCertificate) -> None:
        issuer_key = issuer.issuer_key
        meta: dict[str, Any] = {"sans": [name]}
        if issued.metadata:
            meta["issuer_data"] = issued.metadata
        await storage.store(keys.site_private_key(issuer_key, name), issued.private_key_pem)
        await storage.store(keys.site_cert(issuer_key, name), issued.certificate_pem)
        await storage.store(keys.site_meta(issuer_key, name), json.dumps(meta, indent="\t").encode())

    async def _unlock(self, lock: str, storage: IStorage | None = None) -> None:
        if lock not in self._held_locks:
            return  # released already (the service stopped while obtaining)
        self._held_locks.discard(lock)
        try:
            await (storage or self.storage).unlock(lock)
        except Exception:
            log.failure("releasing the storage lock {lock}", Failure(), lock=lock)

    # -- storage ---------------------------------------------------------------------------

    async def _load_from_storage(self, name: str, policy: AutomationPolicy) -> Certificate | None:
        """certmagic's ``loadCertResourceAnyIssuer``: the newest (latest NotBefore) of any issuer."""
        storage = self._storage(policy)
        found: list[Certificate] = []
        for issuer in policy.issuers:
            issuer_key = issuer.issuer_key
            try:
                cert_pem = await storage.load(keys.site_cert(issuer_key, name))
                key_pem = await storage.load(keys.site_private_key(issuer_key, name))
            except KeyNotFound:
                continue
            try:
                found.append(Certificate.from_pem(cert_pem, key_pem, managed=True, issuer_key=issuer_key))
            except CertificateError as e:
                log.error("the stored certificate of {name} ({issuer}) is unusable: {error}",
                          name=name, issuer=issuer_key, error=e)
        if not found:
            return None
        return max(found, key=lambda c: c.not_before)

    async def _reusable_key(self, name: str, policy: AutomationPolicy) -> Any:
        """A private key already stored for ``name`` by any issuer (certmagic reuses it)."""
        storage = self._storage(policy)
        for issuer in policy.issuers:
            try:
                pem = await storage.load(keys.site_private_key(issuer.issuer_key, name))
            except KeyNotFound:
                continue
            try:
                return load_private_key_pem(pem)
            except ValueError:
                continue
        return None


def _time_out(waiter: Deferred[Any], message: str) -> None:
    if not waiter.called:
        waiter.errback(TimeoutError(message))


def _cancel_timer(result: Any, timer: IDelayedCall) -> Any:
    if timer.active():
        timer.cancel()
    return result


def _describe(failure: Failure) -> str:
    value = failure.value
    return f"{type(value).__name__}: {value}" if str(value) else type(value).__name__
