"""The ACME issuers' machinery: accounts, orders, challenges, chains (see ``txcaddy.tls.acme``).

``ACMEIssuer`` drives one issuance on the reactor thread (``async def`` coroutines wrapped in
Deferreds): every blocking call of certbot's ``acme`` library goes through the reactor's thread
pool (``_acmeclient``), every wait is a ``deferLater`` on the reactor, and storage and the shared
``Challenges`` are touched only here, on the reactor thread.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import requests
from acme import errors as acme_errors
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IReactorTCP, IReactorThreads, IReactorTime
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from txcaddy.interfaces import ICertificateIssuer, IStorage
from txcaddy.tls import _x509
from txcaddy.tls._acmeaccount import (
    ACMEAccount,
    load_account,
    most_recent_account_email,
    save_account,
    stored_account_with_key,
)
from txcaddy.tls._acmeclient import (
    BlockingACMEClient,
    Downloaded,
    challenge_json,
    key_authorization,
)
from txcaddy.tls._acmeerrors import (
    ACMEDirectoryError,
    ACMEError,
    ACMEProblemError,
    ACMETimeoutError,
    ChallengeFailedError,
    RateLimitedError,
    _ChallengeFailure,
)
from txcaddy.tls._acmesolvers import (
    HTTP_01,
    TLS_ALPN_01,
    ChallengeListenerError,
    ChallengeListeners,
    tls_alpn01_certificate,
)
from txcaddy.tls.challenges import Challenges
from txcaddy.tls.issuers import IssuedCertificate
from txcaddy.tls.keys import PrivateKey, load_private_key_pem, new_private_key, private_key_pem
from txcaddy.tls.names import subject_qualifies_for_public_cert

__all__ = [
    "ACMEIssuer",
    "IIssuingReactor",
    "ChainPreference",
    "ExternalAccount",
    "issuer_key_for",
    "select_preferred_chain",
]

log = Logger()


LETS_ENCRYPT_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
ZEROSSL_PRODUCTION = "https://acme.zerossl.com/v2/DV90"
HTTP_CHALLENGE_PORT = 80
TLS_ALPN_CHALLENGE_PORT = 443
DEFAULT_ACME_TIMEOUT = 300.0
"""acmez's poll timeout (seconds) when ``acme_timeout`` is not set."""
POLL_INTERVAL = 0.25
"""acmez's first wait between polls (seconds); Retry-After replaces it."""
MAX_ORDER_ATTEMPTS = 3
_RETRYABLE_PROBLEMS = frozenset(("connection", "dns", "serverInternal", "unauthorized", "tls"))
THROTTLE_EVENTS = 10
THROTTLE_WINDOW = 10.0

_T = TypeVar("_T")


class IIssuingReactor(IReactorTCP, IReactorTime, IReactorThreads):
    """What an ACME issuer uses of the reactor: its thread pool for the blocking ACME calls,
    timers for polling, TCP listeners for the challenges when no server of ours answers."""


# -- the issuer's values ----------------------------------------------------------------------


def issuer_key_for(ca: str) -> str:
    """certmagic's ``issuerKey``: the URL's host, then its path with ``/`` made ``-``."""
    parts = urlsplit(ca)
    key = parts.netloc.rpartition("@")[2]
    path = unquote(parts.path)
    if path:
        path = path.replace("/", "-").replace("\\", "-").strip("-")
        if path:
            key += "-" + path
    return key


def _is_public_ca(ca: str) -> bool:
    """certmagic's ``PreCheck`` test: Let's Encrypt's or ZeroSSL's endpoints."""
    return "api.letsencrypt.org" in ca or "acme.zerossl.com" in ca


@dataclass(frozen=True)
class ExternalAccount:
    """``external_account``: the CA's key id and its base64url MAC key (acmez's ``EAB``)."""

    key_id: str
    mac_key: str


@dataclass(frozen=True)
class ChainPreference:
    """``preferred_chains`` (certmagic's ``ChainPreference``)."""

    smallest: bool | None = None
    root_common_name: tuple[str, ...] = ()
    any_common_name: tuple[str, ...] = ()


def select_preferred_chain(chains: Sequence[Downloaded], preference: ChainPreference) -> Downloaded:
    """certmagic's ``selectPreferredChain``: the only one; else sorted by size if asked, then
    the first with an issuer named in ``any_common_name``, or a root named in
    ``root_common_name``; else the first."""
    if len(chains) == 1:
        return chains[0]
    ordered = list(chains)
    if preference.smallest is not None:
        ordered.sort(key=lambda c: len(c.chain_pem), reverse=not preference.smallest)
    if not (preference.any_common_name or preference.root_common_name):
        return ordered[0]
    decoded: list[list[x509.Certificate]] = []
    for chain in ordered:
        try:
            decoded.append(x509.load_pem_x509_certificates(chain.chain_pem))
        except ValueError:
            decoded.append([])
    for name in preference.any_common_name:
        for chain, certificates in zip(ordered, decoded, strict=True):
            if any(_issuer_common_name(c) == name for c in certificates):
                return chain
    for name in preference.root_common_name:
        for chain, certificates in zip(ordered, decoded, strict=True):
            if certificates and _issuer_common_name(certificates[-1]) == name:
                return chain
    log.warn("did not find chain matching preferences; using first")
    return ordered[0]


def _issuer_common_name(certificate: x509.Certificate) -> str:
    names = certificate.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _csr_pem(names: Sequence[str], private_key: PrivateKey) -> bytes:
    """certmagic's ``generateCSR``: no subject, the names as SANs (IDNs in ASCII)."""
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName(_x509.subject_alternative_names(names)), critical=False)
    )
    csr = builder.sign(private_key, _x509.signature_hash(private_key))
    return csr.public_bytes(serialization.Encoding.PEM)


class _Throttle:
    """certmagic's ring-buffer limiter: at most ``events`` orders per ``window`` seconds."""

    def __init__(self, events: int = THROTTLE_EVENTS, window: float = THROTTLE_WINDOW) -> None:
        self.events = events
        self.window = window
        self._times: deque[float] = deque()

    async def wait(self, reactor: IReactorTime) -> None:
        while True:
            now = reactor.seconds()
            while self._times and now - self._times[0] >= self.window:
                self._times.popleft()
            if len(self._times) < self.events:
                self._times.append(now)
                return
            await deferLater(reactor, self._times[0] + self.window - now)


_throttles: dict[tuple[str, str], _Throttle] = {}


# -- the issuer -------------------------------------------------------------------------------


@implementer(ICertificateIssuer)
class ACMEIssuer:
    """The ``acme`` issuer (Caddy's ``ACMEIssuer`` on certmagic's): see the module docstring.

    @ivar ca: the directory URL certificates come from.
    @ivar test_ca: the directory validated against first on retries ("" for none).
    @ivar disabled_challenges: the challenge types not to use.
    @ivar challenge_ports: where each challenge is answered when no server of ours listens
        there (``alternate_port``, else 80 and 443).
    """

    def __init__(
        self,
        *,
        storage: IStorage,
        challenges: Challenges,
        reactor: IIssuingReactor,
        ca: str = LETS_ENCRYPT_PRODUCTION,
        test_ca: str | None = None,
        email: str = "",
        account_key_pem: str = "",
        external_account: ExternalAccount | None = None,
        acme_timeout: float = 0.0,
        disable_http_challenge: bool = False,
        disable_tls_alpn_challenge: bool = False,
        http_port: int = 0,
        tls_alpn_port: int = 0,
        bind_host: str = "",
        trusted_roots_pem: bytes | None = None,
        preferred_chains: ChainPreference | None = None,
    ) -> None:
        self.storage = storage
        self.challenges = challenges
        self.reactor = reactor
        self.ca = ca or LETS_ENCRYPT_PRODUCTION
        if test_ca is None:
            test_ca = LETS_ENCRYPT_STAGING if self.ca == LETS_ENCRYPT_PRODUCTION else ""
        self.test_ca = test_ca
        self.email = email
        self.account_key_pem = account_key_pem
        self.external_account = external_account
        self.acme_timeout = acme_timeout or DEFAULT_ACME_TIMEOUT
        self.disabled_challenges = frozenset(
            t for t, off in ((HTTP_01, disable_http_challenge), (TLS_ALPN_01, disable_tls_alpn_challenge)) if off
        )
        self.challenge_ports = {HTTP_01: http_port or HTTP_CHALLENGE_PORT, TLS_ALPN_01: tls_alpn_port or TLS_ALPN_CHALLENGE_PORT}
        self.bind_host = bind_host
        self.trusted_roots_pem = trusted_roots_pem
        self.preferred_chains = preferred_chains or ChainPreference()
        self._account_lock = DeferredLock()
        self._discovered_email = ""
        self._successes: dict[str, list[int]] = {HTTP_01: [0, 0], TLS_ALPN_01: [0, 0]}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ca={self.ca!r}>"

    # -- ICertificateIssuer ---------------------------------------------------------------

    @property
    def issuer_key(self) -> str:
        return issuer_key_for(self.ca)

    def pre_check(self, names: Sequence[str]) -> None:
        """certmagic's ``PreCheck``: a public CA is not asked for names it cannot certify."""
        if _is_public_ca(self.ca):
            for name in names:
                if not subject_qualifies_for_public_cert(name):
                    raise ValueError(f"subject does not qualify for a public certificate: {name}")

    def issue(self, names: Sequence[str], private_key: PrivateKey, attempt: int = 0) -> Deferred[IssuedCertificate]:
        """Order, validate, finalize and download a certificate for ``names`` and the public
        half of ``private_key``.  ``attempt`` > 0 (a retry) validates with ``test_ca`` first."""
        return Deferred.fromCoroutine(self._issue(list(names), private_key, attempt))

    def revoke(self, certificate_pem: bytes, reason: int = 0) -> Deferred[None]:
        """Revoke the first certificate of ``certificate_pem`` (RFC 5280 ``reason`` code),
        signed by this issuer's account (certmagic's ``Revoke``)."""
        return Deferred.fromCoroutine(self._revoke(certificate_pem, reason))

    # -- issuance -------------------------------------------------------------------------

    async def _issue(self, names: list[str], private_key: PrivateKey, attempt: int) -> IssuedCertificate:
        if not names:
            raise ValueError("no names to issue a certificate for")
        csr_pem = _csr_pem(names, private_key)
        use_test_ca = attempt > 0 and bool(self.test_ca)
        if use_test_ca:
            issued = await self._issue_from(self.test_ca, names, csr_pem, private_key, throttle=False)
            if self.test_ca == self.ca:
                return issued
            # validated with the test CA: now for real (certmagic's retry rule)
        return await self._issue_from(self.ca, names, csr_pem, private_key, throttle=True)

    async def _issue_from(self, directory: str, names: list[str], csr_pem: bytes, private_key: PrivateKey, *,
                          throttle: bool) -> IssuedCertificate:
        client = _client(self, directory)
        context = f"obtaining certificate for {names} from {client.directory_url}"
        try:
            await self._connect(client)
            jwk = await self._with_account(client)
            if throttle:
                email = await self._email(issuer_key_for(client.directory_url))
                await _throttles.setdefault((client.directory_url, email), _Throttle()).wait(self.reactor)
            order = await self._validated_order(client, jwk, names, csr_pem)
            url = await self._finalize(client, order, names)
            chains = await self._thread(client.download, url)
        except ACMEError as e:
            if not e.names:  # an account or solver error: say what it was for
                e.names, e.ca = tuple(names), e.ca or client.directory_url
                e.args = (f"{context}: {e}",)
            raise
        except Exception as e:
            raise _wrap(e, context, names, client.directory_url) from e
        finally:
            client.close()
        if not chains:
            raise ACMEError(f"obtaining certificate for {names}: no certificate chains", names=names, ca=directory)
        chosen = select_preferred_chain(chains, self.preferred_chains)
        try:
            chain = tuple(x509.load_pem_x509_certificates(chosen.chain_pem))
        except ValueError as e:
            raise ACMEError(f"obtaining certificate for {names}: the CA sent an unreadable chain: {e}",
                            names=names, ca=directory) from None
        leaf = chain[0]
        log.info("certificate obtained for {names} from {ca}", names=names, ca=client.directory_url)
        return IssuedCertificate(
            certificate_pem=chosen.chain_pem,
            private_key_pem=private_key_pem(private_key),
            not_before=leaf.not_valid_before_utc.timestamp(),
            not_after=leaf.not_valid_after_utc.timestamp(),
            chain=chain,
            metadata={"url": chosen.url},
        )

    async def _connect(self, client: BlockingACMEClient) -> None:
        try:
            await self._thread(client.connect)
        except Exception as e:
            raise ACMEDirectoryError(f"fetching ACME directory {client.directory_url}: {_cause(e)}",
                                     ca=client.directory_url) from e

    async def _validated_order(self, client: BlockingACMEClient, jwk: Any, names: list[str], csr_pem: bytes) -> messages.OrderResource:
        """An order whose authorizations are all valid (acmez's ``ObtainCertificateUsingCSR``
        loop: a failed challenge type is not tried again for that name)."""
        failed: dict[str, set[str]] = {}
        for attempt in range(1, MAX_ORDER_ATTEMPTS + 1):
            if attempt > 1:
                await deferLater(self.reactor, 1.0)
            order = await self._thread(client.new_order, csr_pem)
            try:
                await self._solve(client, jwk, order, failed)
            except _ChallengeFailure as failure:
                log.error("validating authorization for {identifier} ({attempt}/{max}): {error}",
                          identifier=failure.identifier, attempt=attempt, max=MAX_ORDER_ATTEMPTS,
                          error=failure.describe())
                if failure.retryable and attempt < MAX_ORDER_ATTEMPTS:
                    continue
                raise ChallengeFailedError(
                    f"obtaining certificate for {names} from {client.directory_url}: {failure.describe()}",
                    failure.identifier, failure.challenge_type, failure.problem, names=names, ca=client.directory_url,
                ) from None
            return order
        raise AssertionError("unreachable")

    def _challenge_order(self) -> list[str]:
        """Enabled types, the most successful first (acmez sorts by success ratio)."""
        enabled = [t for t in (HTTP_01, TLS_ALPN_01) if t not in self.disabled_challenges]

        def ratio(challenge_type: str) -> float:
            successes, attempts = self._successes[challenge_type]
            return successes / attempts if attempts else 0.5

        return sorted(enabled, key=ratio, reverse=True)

    def _remaining(self, authorization: messages.AuthorizationResource, failed: set[str]) -> list[messages.ChallengeBody]:
        offered = {challenge_json(c).get("type"): c for c in authorization.body.challenges}
        return [offered[t] for t in self._challenge_order() if t in offered and t not in failed]

    async def _solve(self, client: BlockingACMEClient, jwk: Any, order: messages.OrderResource,
                     failed: dict[str, set[str]]) -> None:
        todo: list[tuple[messages.AuthorizationResource, messages.ChallengeBody]] = []
        for authorization in order.authorizations:
            identifier = authorization.body.identifier.value
            status = authorization.body.status
            if status == messages.STATUS_VALID:
                continue  # validated recently: the CA reuses it
            if status != messages.STATUS_PENDING:
                raise ACMEError(f"authorization for {identifier} is {status}")
            remaining = self._remaining(authorization, failed.get(identifier, set()))
            if not remaining:
                offered = sorted(str(challenge_json(c).get("type")) for c in authorization.body.challenges)
                raise ACMEError(
                    f"{identifier}: no solvers available for remaining challenges (configured="
                    f"{self._challenge_order()} offered={offered} failed={sorted(failed.get(identifier, ()))}); "
                    "txcaddy does not support DNS-01, which wildcard names need"
                )
            todo.append((authorization, remaining[0]))
        withdrawals: list[Callable[[], Deferred[None]]] = []
        try:
            for authorization, challenge in todo:
                withdrawals.append(self._present(authorization.body.identifier.value, challenge, jwk))
            for _, challenge in todo:
                await self._thread(client.answer, challenge)
            for authorization, challenge in todo:
                await self._wait_for_validation(client, authorization, challenge, failed)
        finally:
            for withdraw in reversed(withdrawals):
                try:
                    await withdraw()
                except Exception:
                    log.failure("withdrawing an ACME challenge")

    def _present(self, identifier: str, challenge: messages.ChallengeBody, jwk: Any) -> Callable[[], Deferred[None]]:
        """Make ``challenge`` answerable; returns what withdraws it."""
        body = challenge_json(challenge)
        challenge_type, token = str(body.get("type")), str(body.get("token", ""))
        authorization = key_authorization(token, jwk)
        if challenge_type == HTTP_01:
            self.challenges.add_http01(identifier, token, authorization)

            def withdraw_challenge() -> None:
                self.challenges.remove_http01(token)
        else:
            certificate = tls_alpn01_certificate(identifier, authorization, self.reactor.seconds())
            self.challenges.add_tls_alpn01(identifier, certificate)

            def withdraw_challenge() -> None:
                self.challenges.remove_tls_alpn01(identifier)
        host, port = self.bind_host, self.challenge_ports[challenge_type]
        try:
            ChallengeListeners.acquire(challenge_type, host, port, reactor=self.reactor, challenges=self.challenges)
        except ChallengeListenerError as e:
            withdraw_challenge()
            raise ACMEError(f"{identifier}: presenting {challenge_type} challenge: {e}") from None
        log.info("trying to solve challenge {type} for {identifier}", type=challenge_type, identifier=identifier)

        async def withdraw() -> None:
            withdraw_challenge()
            await ChallengeListeners.release(challenge_type, host, port)

        return lambda: Deferred.fromCoroutine(withdraw())

    async def _wait_for_validation(self, client: BlockingACMEClient, authorization: messages.AuthorizationResource,
                                   challenge: messages.ChallengeBody, failed: dict[str, set[str]]) -> None:
        identifier = authorization.body.identifier.value
        challenge_type = str(challenge_json(challenge).get("type"))
        offered = authorization  # a failed authorization lists only the challenge that failed
        deadline = self.reactor.seconds() + self.acme_timeout
        interval = POLL_INTERVAL
        while True:
            await deferLater(self.reactor, interval)
            authorization, asked = await self._thread(client.authorization, authorization)
            status = authorization.body.status
            if status == messages.STATUS_VALID:
                self._successes[challenge_type][0] += 1
                self._successes[challenge_type][1] += 1
                log.info("authorization finalized for {identifier}: valid", identifier=identifier)
                return
            if status != messages.STATUS_PENDING:
                break
            if self.reactor.seconds() >= deadline:
                raise ACMETimeoutError(
                    f"{identifier}: authorization took too long (acme_timeout {self.acme_timeout:g}s)",
                    ca=client.directory_url,
                )
            interval = asked if asked is not None else interval
        self._successes[challenge_type][1] += 1
        failed.setdefault(identifier, set()).add(challenge_type)
        problem = next((c.error for c in authorization.body.challenges if c.uri == challenge.uri and c.error), None)
        if problem is None:
            problem = next((c.error for c in authorization.body.challenges if c.error), None)
        # acmez retries with another type only after errors that another type might not meet
        retryable = bool(self._remaining(offered, failed[identifier])) and (
            problem is not None and problem.code in _RETRYABLE_PROBLEMS)
        raise _ChallengeFailure(identifier, challenge_type, problem, retryable)

    async def _finalize(self, client: BlockingACMEClient, order: messages.OrderResource, names: list[str]) -> str:
        """Send the CSR and wait for the certificate URL (acmez's ``FinalizeOrder``)."""
        body = await self._thread(client.finalize, order)
        deadline = self.reactor.seconds() + self.acme_timeout
        interval = POLL_INTERVAL
        while True:
            if body.status == messages.STATUS_VALID and body.certificate:
                return str(body.certificate)
            if body.status == messages.STATUS_INVALID:
                cause = str(body.error) if body.error is not None else "no error detail from the CA"
                raise ACMEError(f"obtaining certificate for {names}: order {order.uri} is invalid: {cause}",
                                names=names, ca=client.directory_url)
            if self.reactor.seconds() >= deadline:
                raise ACMETimeoutError(
                    f"obtaining certificate for {names}: order {order.uri} took too long to be issued "
                    f"(acme_timeout {self.acme_timeout:g}s)", names=names, ca=client.directory_url,
                )
            await deferLater(self.reactor, interval)
            if body.status == messages.STATUS_READY:
                body = await self._thread(client.finalize, order)
                continue
            body, asked = await self._thread(client.order, order.uri)
            interval = asked if asked is not None else interval

    # -- accounts -------------------------------------------------------------------------

    async def _email(self, issuer_key: str) -> str:
        """certmagic's ``setEmail``: the configured one, else the newest stored account's."""
        email = self.email or self._discovered_email
        if not email:
            email = await most_recent_account_email(self.storage, issuer_key) or ""
        email = email.strip().lower()
        if email and not self.email:
            self._discovered_email = email
        return email

    async def _with_account(self, client: BlockingACMEClient) -> Any:
        """Load, look up or register the account, then sign with it; returns its JWK."""
        await self._account_lock.acquire()
        try:
            account = await self._account(client)
        finally:
            self._account_lock.release()
        return client.use_account(account.key, account.location)

    async def _account(self, client: BlockingACMEClient) -> ACMEAccount:
        issuer_key = issuer_key_for(client.directory_url)
        if self.account_key_pem:
            key_pem = self.account_key_pem.encode()
            account = await stored_account_with_key(self.storage, issuer_key, key_pem)
            if account is None:
                key = load_private_key_pem(key_pem)
                try:
                    registration = await self._thread(client.look_up, key)
                except Exception as e:
                    raise _wrap(e, "looking up account with server", (), client.directory_url) from e
                account = ACMEAccount(key, registration)
                await save_account(self.storage, issuer_key, account)
        else:
            email = await self._email(issuer_key)
            account = await load_account(self.storage, issuer_key, email)
            if account is None:
                contact = [f"mailto:{email}"] if email else []
                account = ACMEAccount(new_private_key("p256"), {"status": "", "contact": contact})
        if not account.registered:
            account = await self._register(client, issuer_key, account)
        return account

    async def _register(self, client: BlockingACMEClient, issuer_key: str, account: ACMEAccount) -> ACMEAccount:
        account = await self._before_registration(account)
        eab = self.external_account
        try:
            registration = await self._thread(
                client.register, account.key, account.contact, (eab.key_id, eab.mac_key) if eab else None
            )
        except Exception as e:
            contact = " ".join(account.contact)
            raise _wrap(e, f"registering account [{contact}] with server", (), client.directory_url) from e
        account = ACMEAccount(account.key, registration)
        await save_account(self.storage, issuer_key, account)
        log.info("registered ACME account [{contact}] with {ca}", contact=" ".join(account.contact), ca=client.directory_url)
        return account

    async def _before_registration(self, account: ACMEAccount) -> ACMEAccount:
        """A hook for issuers that need something before an account is registered (ZeroSSL)."""
        return account

    # -- revocation -----------------------------------------------------------------------

    async def _revoke(self, certificate_pem: bytes, reason: int) -> None:
        try:
            certificate = x509.load_pem_x509_certificates(certificate_pem)[0]
        except ValueError as e:
            raise ValueError(f"no certificate to revoke: {e}") from None
        client = _client(self, self.ca)
        try:
            await self._connect(client)
            await self._with_account(client)
            await self._thread(client.revoke, certificate, reason)
        except ACMEError:
            raise
        except Exception as e:
            raise _wrap(e, f"revoking certificate {certificate.serial_number:x}", (), client.directory_url) from e
        finally:
            client.close()

    # -- helpers --------------------------------------------------------------------------

    def _thread(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """Run a blocking ``acme`` call in the reactor's thread pool."""
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), f, *args)


def _client(issuer: ACMEIssuer, directory: str) -> BlockingACMEClient:
    from txcaddy import __version__

    url = directory if "://" in directory else "https://" + directory
    return BlockingACMEClient(url, trusted_roots_pem=issuer.trusted_roots_pem,
                              user_agent=f"txcaddy/{__version__} CertMagic")


def _cause(e: BaseException) -> str:
    """A readable cause for an error from ``acme`` or ``requests``."""
    if isinstance(e, messages.Error):
        return str(e)
    if isinstance(e, requests.exceptions.ConnectionError):
        # requests nests urllib3's errors: the innermost reason says what happened
        reason = getattr(e.args[0], "reason", None) if e.args else None
        text = re.sub(r"^\w*Connection(Pool)?\([^)]*\): ", "", str(reason or e))
        return ("TLS error: " if isinstance(e, requests.exceptions.SSLError) else "cannot connect: ") + text
    if isinstance(e, requests.exceptions.Timeout):
        return f"timed out: {e}"
    if isinstance(e, acme_errors.ClientError) and e.args and isinstance(e.args[0], requests.Response):
        response = e.args[0]
        return f"unexpected response: HTTP {response.status_code} from {response.url}"
    return str(e) or type(e).__name__


def _wrap(e: BaseException, context: str, names: Sequence[str], ca: str) -> ACMEError:
    """An ``ACMEError`` for a failure of the ``acme`` library or the network."""
    if isinstance(e, ACMEError):
        return e
    message = f"{context}: {_cause(e)} (ca={ca})"
    if isinstance(e, messages.Error):
        if e.code == "rateLimited":
            return RateLimitedError(f"{context}: rate limited by the CA: {e} (ca={ca})", e, names=names, ca=ca)
        return ACMEProblemError(message, e, names=names, ca=ca)
    return ACMEError(message, names=names, ca=ca)


class _NoRequest:
    """What the global placeholders get outside a request."""

    placeholders: dict[str, Any] = {}
    error = None


_NO_REQUEST = _NoRequest()
