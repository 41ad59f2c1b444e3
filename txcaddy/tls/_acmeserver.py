"""The ACME CA behind ``acme_server``: RFC 8555 accounts, orders, challenges and certificates.

Caddy 2.6.2's ``modules/caddypki/acmeserver`` mounts smallstep's ACME server
(``certificates/acme/api``) under ``path_prefix`` and signs with a ``pki`` CA; its
URL layout is smallstep's: ``<prefix><ca>/directory``, ``new-nonce``, ``new-account``,
``new-order``, ``account/<id>``, ``order/<id>``, ``order/<id>/finalize``,
``authz/<id>``, ``challenge/<authz>/<id>``, ``certificate/<id>``. This module is our
own implementation of that protocol surface, transport-free: ``ACMEServer.handle``
takes the method, the path under the prefix, the URL base and the body, and gives a
``Reply``; the handler module (``acmeserver.py``) does HTTP.

State (``ACMEState``) is in memory, one per CA ID, kept by the service's ``Runtime``
across config reloads but not across restarts (Caddy keeps smallstep's database in a
bbolt file under its data dir): after a restart clients register again and start new
orders, which ACME clients do on their own.

Challenges are validated as RFC 8555 §8 says: ``http-01`` fetches
``http://<identifier>/.well-known/acme-challenge/<token>``, ``dns-01`` looks up the
TXT records of ``_acme-challenge.<identifier>``, ``tls-alpn-01`` (RFC 8737) connects
with ALPN ``acme-tls/1`` and checks the self-signed certificate's SAN and
``acmeIdentifier`` extension. Redirects are not followed for ``http-01``. Where the
validation connects is ``ChallengeTargets`` (port, and a hosts-file style override),
which is what tests use to validate names on loopback ports.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import josepy
from acme import jws as acme_jws
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txcaddy.tls import _x509

log = Logger(namespace="txcaddy.acme_server")

__all__ = [
    "ACMEProblem", "ACMEServer", "ACMEState", "ChallengeTargets", "Reply", "check_tls_alpn01", "key_authorization",
]

ERROR_PREFIX = "urn:ietf:params:acme:error:"
NONCE_LIMIT = 10000  # outstanding nonces kept; the oldest are forgotten first
ORDER_LIFETIME = 24 * 3600.0  # smallstep: orders and authorizations expire after a day
ALLOWED_ALGS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})
MAX_BODY = 1 << 20


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_authorization(token: str, jwk: josepy.JWK) -> str:
    """RFC 8555 §8.1: ``token || '.' || base64url(JWK thumbprint)``."""
    return f"{token}.{b64url(jwk.thumbprint())}"


class ACMEProblem(Exception):
    """An RFC 7807 problem document with an ACME error type (RFC 8555 §6.7)."""

    def __init__(self, kind: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status

    def to_json(self) -> dict[str, Any]:
        return {"type": ERROR_PREFIX + self.kind, "detail": self.detail, "status": self.status}


@dataclass
class Reply:
    """What one ACME request answers: status, header fields, body."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


# -- state ----------------------------------------------------------------------------------


@dataclass
class Account:
    id: str
    key: josepy.JWK
    thumbprint: bytes
    contact: list[str]
    status: str = "valid"
    orders: list[str] = field(default_factory=list)


@dataclass
class Challenge:
    id: str
    authz_id: str
    type: str
    token: str
    status: str = "pending"
    validated: float | None = None
    error: dict[str, Any] | None = None


@dataclass
class Authorization:
    id: str
    account_id: str
    identifier: dict[str, str]
    expires: float
    wildcard: bool
    challenges: list[Challenge]
    status: str = "pending"


@dataclass
class Order:
    id: str
    account_id: str
    identifiers: list[dict[str, str]]
    authz_ids: list[str]
    expires: float
    status: str = "pending"
    certificate_id: str | None = None
    error: dict[str, Any] | None = None


class ACMEState:
    """One CA's ACME objects, in memory (see the module docstring for why that is enough)."""

    def __init__(self) -> None:
        self.nonces: dict[bytes, None] = {}  # ordered: the oldest first
        self.accounts: dict[str, Account] = {}
        self.by_thumbprint: dict[bytes, str] = {}
        self.orders: dict[str, Order] = {}
        self.authzs: dict[str, Authorization] = {}
        self.certificates: dict[str, bytes] = {}

    def new_nonce(self) -> str:
        nonce = secrets.token_bytes(16)
        self.nonces[nonce] = None
        while len(self.nonces) > NONCE_LIMIT:
            del self.nonces[next(iter(self.nonces))]
        return b64url(nonce)

    def use_nonce(self, nonce: bytes | None) -> bool:
        """True (and forgotten) when ``nonce`` was given out and not used yet."""
        if nonce is None or nonce not in self.nonces:
            return False
        del self.nonces[nonce]
        return True


@dataclass
class ChallengeTargets:
    """Where validations connect: ``hosts`` maps an identifier to the address to use instead
    of resolving it (as ``/etc/hosts`` would); the ports are RFC 8555's 80 and 443 unless set."""

    http_port: int = 80
    tls_alpn_port: int = 443
    hosts: dict[str, str] = field(default_factory=dict)

    def address(self, identifier: str) -> str:
        return self.hosts.get(identifier, identifier)


def _new_id() -> str:
    return b64url(secrets.token_bytes(15))


# -- the server -----------------------------------------------------------------------------

Signer = Callable[[], tuple[x509.Certificate, Any]]
HTTPGet = Callable[[str, int, str, str], Deferred[bytes]]  # (address, port, host, path) -> body
TXTLookup = Callable[[str], Deferred[list[bytes]]]
# (address, port, server name) -> (the negotiated ALPN protocol, the peer certificate's DER)
TLSALPNGet = Callable[[str, int, str], Deferred[tuple[str | None, bytes]]]
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def check_tls_alpn01(identifier: str, key_auth: str, alpn: str | None, der: bytes) -> None:
    """RFC 8737 §3: ``acme-tls/1`` negotiated; the certificate names exactly ``identifier`` and
    carries a critical ``acmeIdentifier`` whose value is SHA-256 of the key authorization."""
    if alpn != "acme-tls/1":
        raise ACMEProblem("incorrectResponse", f"tls-alpn-01: ALPN protocol {alpn!r}, not acme-tls/1", 403)
    try:
        certificate = x509.load_der_x509_certificate(der)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        extension = certificate.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except (ValueError, x509.ExtensionNotFound) as e:
        raise ACMEProblem("incorrectResponse", f"tls-alpn-01: unusable certificate: {e}", 403) from None
    names = [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    if names != [identifier]:
        raise ACMEProblem("incorrectResponse", f"tls-alpn-01: the certificate names {names}, not {identifier!r}", 403)
    value = extension.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    if not extension.critical or raw != b"\x04\x20" + hashlib.sha256(key_auth.encode()).digest():
        raise ACMEProblem("incorrectResponse", "tls-alpn-01: the acmeIdentifier does not match", 403)


class ACMEServer:
    """RFC 8555 over one ``ACMEState``, signing with ``signer()`` (the CA's intermediate, or root).

    @ivar lifetime: the issued leaves' lifetime in seconds (clamped to the signer's NotAfter).
    @ivar http_get: fetches an ``http-01`` resource; ``txt_lookup`` the ``dns-01`` records.
    """

    def __init__(
        self,
        ca_id: str,
        state: ACMEState,
        signer: Signer,
        *,
        lifetime: float,
        http_get: HTTPGet,
        txt_lookup: TXTLookup | None,
        tls_alpn_get: TLSALPNGet | None = None,
        targets: ChallengeTargets,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ca_id = ca_id
        self.state = state
        self.signer = signer
        self.lifetime = lifetime
        self.http_get = http_get
        self.txt_lookup = txt_lookup
        self.tls_alpn_get = tls_alpn_get
        self.targets = targets
        self.clock = clock

    # -- dispatch ----------------------------------------------------------------------------

    def handle(self, method: str, path: str, base: str, body: bytes) -> Deferred[Reply] | Reply:
        """Answer one request; ``path`` is what follows the prefix (``local/directory``) and
        ``base`` the URL of the prefix (``https://host/acme/``)."""
        root = f"{base}{self.ca_id}/"
        links = [("Link", f'<{root}directory>;rel="index"')]
        try:
            ca, _, rest = path.partition("/")
            if ca != self.ca_id:
                raise ACMEProblem("malformed", f"unknown provisioner {ca!r}", 404)
            if rest == "directory" and method in ("GET", "HEAD"):
                return self._json(200, self._directory(root), [])
            if rest == "new-nonce" and method in ("GET", "HEAD"):
                return Reply(200 if method == "HEAD" else 204, [
                    *links, ("Replay-Nonce", self.state.new_nonce()), ("Cache-Control", "no-store")])
            if method != "POST":
                raise ACMEProblem("malformed", f"{method} {rest} is not an ACME endpoint", 405
                                  if rest in _POST_ENDPOINTS else 404)
            if len(body) > MAX_BODY:
                raise ACMEProblem("malformed", "request body too large")
            result = self._post(root, rest, body)
        except ACMEProblem as problem:
            return self._problem(problem, links)
        if isinstance(result, Deferred):
            return result.addErrback(self._failed, links)
        return result

    def _failed(self, failure: Failure, links: list[tuple[str, str]]) -> Reply:
        if isinstance(failure.value, ACMEProblem):
            return self._problem(failure.value, links)
        log.failure("acme_server: internal error", failure)
        return self._problem(ACMEProblem("serverInternal", "the ACME server failed", 500), links)

    def _problem(self, problem: ACMEProblem, links: list[tuple[str, str]]) -> Reply:
        headers = [*links, ("Content-Type", "application/problem+json"), ("Replay-Nonce", self.state.new_nonce())]
        return Reply(problem.status, headers, json.dumps(problem.to_json()).encode())

    def _json(self, status: int, value: Any, headers: list[tuple[str, str]]) -> Reply:
        return Reply(status, [*headers, ("Content-Type", "application/json")], json.dumps(value, indent=2).encode())

    def _directory(self, root: str) -> dict[str, Any]:
        return {
            "newNonce": root + "new-nonce",
            "newAccount": root + "new-account",
            "newOrder": root + "new-order",
            "revokeCert": root + "revoke-cert",
            "keyChange": root + "key-change",
        }

    # -- JWS -----------------------------------------------------------------------------------

    def _verify(self, root: str, url: str, body: bytes, *, new_account: bool = False) -> tuple[bytes, Account | None,
                                                                                               josepy.JWK]:
        """Check the JWS (RFC 8555 §6.2-6.5); returns the payload, the account (None for
        ``new-account``) and the key that signed."""
        try:
            parsed = json.loads(body)
            if not isinstance(parsed, dict) or set(parsed) - {"protected", "payload", "signature"}:
                raise ValueError("not a flattened JWS")
            signed = acme_jws.JWS.from_json(parsed)
        except (ValueError, josepy.DeserializationError) as e:
            raise ACMEProblem("malformed", f"the request body is not a flattened JWS: {e}") from None
        if len(signed.signatures) != 1:
            raise ACMEProblem("malformed", "the JWS must have exactly one signature")
        signature = signed.signatures[0]
        header: Any = signature.combined  # acme.jws.Header: url, nonce, kid besides josepy's fields
        protected = json.loads(b64url_decode(parsed["protected"]))
        alg = protected.get("alg")
        if alg not in ALLOWED_ALGS:
            raise ACMEProblem("badSignatureAlgorithm", f"unsupported JWS algorithm {alg!r}")
        if header.url != url:
            raise ACMEProblem("unauthorized", f"the JWS url {header.url!r} is not the request URL {url!r}", 401)
        if not self.state.use_nonce(header.nonce):
            raise ACMEProblem("badNonce", "the JWS nonce is unknown or used already")
        if (header.jwk is None) == (header.kid is None):
            raise ACMEProblem("malformed", "the JWS must have exactly one of jwk and kid")
        account: Account | None = None
        if new_account:
            if header.jwk is None:
                raise ACMEProblem("malformed", "new-account requests are signed with a jwk")
            key = header.jwk
        else:
            if header.kid is None:
                raise ACMEProblem("malformed", "requests other than new-account are signed with a kid")
            prefix = root + "account/"
            account = self.state.accounts.get(header.kid[len(prefix):]) if header.kid.startswith(prefix) else None
            if account is None:
                raise ACMEProblem("accountDoesNotExist", f"no account {header.kid!r}")
            if account.status != "valid":
                raise ACMEProblem("unauthorized", f"the account is {account.status}", 401)
            key = account.key
        try:
            ok = signed.verify(key)
        except (InvalidSignature, josepy.Error, ValueError, TypeError):
            ok = False
        if not ok:
            raise ACMEProblem("malformed", "the JWS signature does not verify")
        return signed.payload, account, key

    @staticmethod
    def _payload(payload: bytes) -> dict[str, Any]:
        try:
            value = json.loads(payload)
        except ValueError:
            raise ACMEProblem("malformed", "the JWS payload is not JSON") from None
        if not isinstance(value, dict):
            raise ACMEProblem("malformed", "the JWS payload is not a JSON object")
        return value

    # -- POST endpoints ------------------------------------------------------------------------

    def _post(self, root: str, rest: str, body: bytes) -> Reply | Deferred[Reply]:
        url = root + rest
        parts = rest.split("/")
        if rest == "new-account":
            payload, _, key = self._verify(root, url, body, new_account=True)
            return self._new_account(root, self._payload(payload), key)
        if rest in ("revoke-cert", "key-change"):
            raise ACMEProblem("malformed", f"{rest} is not supported by this server", 501)
        if not (rest == "new-order" or (len(parts) in _POST_PATHS.get(parts[0], ()))):
            raise ACMEProblem("malformed", f"no such endpoint {rest!r}", 404)
        payload, account, _ = self._verify(root, url, body)
        assert account is not None
        nonce = [("Replay-Nonce", self.state.new_nonce()), ("Link", f'<{root}directory>;rel="index"')]
        if rest == "new-order":
            return self._new_order(root, account, self._payload(payload), nonce)
        kind = parts[0]
        if kind == "account":
            if parts[1] == account.id and len(parts) == 2:
                if payload:
                    self._update_account(account, self._payload(payload))
                return self._json(200, self._account_json(root, account), [*nonce, ("Location", url)])
            if parts[1] == account.id and parts[2:] == ["orders"]:
                return self._json(200, {"orders": [f"{root}order/{o}" for o in account.orders]}, nonce)
            raise ACMEProblem("unauthorized", "the account is not the signer's", 401)
        if kind == "order":
            order = self._owned(self.state.orders.get(parts[1]), account, "order")
            if len(parts) == 3:
                if parts[2] != "finalize":
                    raise ACMEProblem("malformed", f"no such endpoint {rest!r}", 404)
                self._finalize(order, self._payload(payload))
            self._refresh_order(order)
            return self._json(200, self._order_json(root, order), [*nonce, ("Location", f"{root}order/{order.id}")])
        if kind == "authz":
            authz = self._owned(self.state.authzs.get(parts[1]), account, "authorization")
            self._expire_authz(authz)
            return self._json(200, self._authz_json(root, authz), nonce)
        if kind == "challenge":
            authz = self._owned(self.state.authzs.get(parts[1]), account, "authorization")
            challenge = next((c for c in authz.challenges if c.id == parts[2]), None)
            if challenge is None:
                raise ACMEProblem("malformed", "no such challenge", 404)
            if payload and challenge.status == "pending":  # ``{}`` asks for validation; empty is POST-as-GET
                self._payload(payload)
                self._expire_authz(authz)
                if authz.status == "pending":
                    challenge.status = "processing"
                    self._validate(authz, challenge, account)
            up = ("Link", f'<{root}authz/{authz.id}>;rel="up"')
            return self._json(200, self._challenge_json(root, challenge), [*nonce, up])
        # certificate
        pem = self.state.certificates.get(parts[1])
        owner = next((o for o in self.state.orders.values() if o.certificate_id == parts[1]), None)
        if pem is None or owner is None or owner.account_id != account.id:
            raise ACMEProblem("malformed", "no such certificate", 404)
        return Reply(200, [*nonce, ("Content-Type", "application/pem-certificate-chain")], pem)

    @staticmethod
    def _owned(thing: Any, account: Account, what: str) -> Any:
        if thing is None:
            raise ACMEProblem("malformed", f"no such {what}", 404)
        if thing.account_id != account.id:
            raise ACMEProblem("unauthorized", f"the {what} belongs to another account", 401)
        return thing

    def _new_account(self, root: str, payload: dict[str, Any], key: josepy.JWK) -> Reply:
        thumbprint = key.thumbprint()
        existing = self.state.by_thumbprint.get(thumbprint)
        nonce = [("Replay-Nonce", self.state.new_nonce()), ("Link", f'<{root}directory>;rel="index"')]
        if existing is not None:
            account = self.state.accounts[existing]
            location = ("Location", f"{root}account/{account.id}")
            return self._json(200, self._account_json(root, account), [*nonce, location])
        if payload.get("onlyReturnExisting"):
            raise ACMEProblem("accountDoesNotExist", "no account for this key")
        contact = payload.get("contact") or []
        if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
            raise ACMEProblem("malformed", "contact must be a list of URLs")
        for c in contact:
            if not c.startswith("mailto:"):
                raise ACMEProblem("unsupportedContact", f"unsupported contact {c!r}")
        account = Account(_new_id(), key, thumbprint, list(contact))
        self.state.accounts[account.id] = account
        self.state.by_thumbprint[thumbprint] = account.id
        location = ("Location", f"{root}account/{account.id}")
        return self._json(201, self._account_json(root, account), [*nonce, location])

    def _update_account(self, account: Account, payload: dict[str, Any]) -> None:
        if "contact" in payload:
            contact = payload["contact"]
            if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
                raise ACMEProblem("malformed", "contact must be a list of URLs")
            account.contact = list(contact)
        if payload.get("status") == "deactivated":
            account.status = "deactivated"

    def _new_order(self, root: str, account: Account, payload: dict[str, Any], nonce: list[tuple[str, str]]) -> Reply:
        identifiers = payload.get("identifiers")
        if not isinstance(identifiers, list) or not identifiers:
            raise ACMEProblem("malformed", "an order needs identifiers")
        now = self.clock()
        expires = now + ORDER_LIFETIME
        authz_ids = []
        cleaned = []
        for identifier in identifiers:
            if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
                raise ACMEProblem("malformed", "an identifier is an object with type and value")
            kind, value = identifier.get("type"), identifier["value"].lower().rstrip(".")
            if kind == "ip":
                if _x509.parse_ip(value) is None:
                    raise ACMEProblem("rejectedIdentifier", f"{value!r} is not an IP address")
                types = ["http-01", "tls-alpn-01"]
            elif kind == "dns":
                if not value or " " in value or "/" in value:
                    raise ACMEProblem("rejectedIdentifier", f"{value!r} is not a DNS name")
                types = ["dns-01"] if value.startswith("*.") else ["http-01", "dns-01", "tls-alpn-01"]
            else:
                raise ACMEProblem("unsupportedIdentifier", f"identifier type {kind!r} is not supported")
            cleaned.append({"type": kind, "value": value})
            wildcard = value.startswith("*.")
            authz = Authorization(
                _new_id(), account.id, {"type": kind, "value": value.removeprefix("*.")}, expires, wildcard, [])
            token = b64url(secrets.token_bytes(32))
            authz.challenges = [Challenge(_new_id(), authz.id, t, token) for t in types]
            self.state.authzs[authz.id] = authz
            authz_ids.append(authz.id)
        order = Order(_new_id(), account.id, cleaned, authz_ids, expires)
        self.state.orders[order.id] = order
        account.orders.append(order.id)
        location = ("Location", f"{root}order/{order.id}")
        return self._json(201, self._order_json(root, order), [*nonce, location])

    # -- status transitions (RFC 8555 §7.1.6) ----------------------------------------------------

    def _expire_authz(self, authz: Authorization) -> None:
        if authz.status == "pending" and self.clock() >= authz.expires:
            authz.status = "expired"

    def _refresh_order(self, order: Order) -> None:
        """pending → ready once every authorization is valid; → invalid when one is not
        (invalid, expired, deactivated, revoked) or the order expired unfinished."""
        if order.status not in ("pending", "ready"):
            return
        if self.clock() >= order.expires:
            order.status = "invalid"
            order.error = ACMEProblem("malformed", "the order expired").to_json()
            return
        statuses = []
        for authz_id in order.authz_ids:
            authz = self.state.authzs[authz_id]
            self._expire_authz(authz)
            statuses.append(authz.status)
        if any(s not in ("pending", "valid") for s in statuses):
            order.status = "invalid"
            failed = next(self.state.authzs[a] for a in order.authz_ids if self.state.authzs[a].status != "valid"
                          and self.state.authzs[a].status != "pending")
            error = next((c.error for c in failed.challenges if c.error), None)
            order.error = error or ACMEProblem("unauthorized", f"authorization {failed.status}", 403).to_json()
        elif all(s == "valid" for s in statuses):
            order.status = "ready"

    def _validate(self, authz: Authorization, challenge: Challenge, account: Account) -> None:
        key_auth = key_authorization(challenge.token, account.key)
        identifier = authz.identifier["value"]
        d = maybeDeferred(self._check, challenge.type, identifier, challenge.token, key_auth)

        def done(_: object) -> None:
            challenge.status = "valid"
            challenge.validated = self.clock()
            if authz.status == "pending":
                authz.status = "valid"

        def failed(failure: Failure) -> None:
            problem = failure.value if isinstance(failure.value, ACMEProblem) else ACMEProblem(
                "connection" if challenge.type != "dns-01" else "dns", f"{challenge.type}: {failure.getErrorMessage()}")
            challenge.status = "invalid"
            challenge.error = problem.to_json()
            if authz.status == "pending":
                authz.status = "invalid"
            log.info("acme_server: {type} challenge for {identifier} failed: {detail}",
                     type=challenge.type, identifier=identifier, detail=problem.detail)

        d.addCallbacks(done, failed)

    def _check(self, kind: str, identifier: str, token: str, key_auth: str) -> Deferred[None] | None:
        if kind == "http-01":
            target = self.targets.address(identifier)
            d = self.http_get(target, self.targets.http_port, identifier, f"/.well-known/acme-challenge/{token}")

            def compare(body: bytes) -> None:
                if body.strip() != key_auth.encode():
                    raise ACMEProblem("incorrectResponse", "http-01: the key authorization served does not match",
                                      403)

            return d.addCallback(compare)
        if kind == "dns-01":
            if self.txt_lookup is None:
                raise ACMEProblem("dns", "dns-01: no resolver")
            expected = b64url(hashlib.sha256(key_auth.encode()).digest()).encode()

            def found(records: list[bytes]) -> None:
                if expected not in records:
                    raise ACMEProblem("incorrectResponse", "dns-01: no TXT record has the key authorization digest",
                                      403)

            return self.txt_lookup("_acme-challenge." + identifier).addCallback(found)
        if kind == "tls-alpn-01" and self.tls_alpn_get is not None:
            ip = _x509.parse_ip(identifier)
            server_name = ip.reverse_pointer if ip is not None else identifier  # RFC 8738 §6
            got = self.tls_alpn_get(self.targets.address(identifier), self.targets.tls_alpn_port, server_name)
            return got.addCallback(lambda result: check_tls_alpn01(identifier, key_auth, *result))
        raise ACMEProblem("connection", f"{kind} validation is not available")

    def _finalize(self, order: Order, payload: dict[str, Any]) -> None:
        self._refresh_order(order)
        if order.status != "ready":
            raise ACMEProblem("orderNotReady", f"the order is {order.status}, not ready", 403)
        csr_text = payload.get("csr")
        if not isinstance(csr_text, str):
            raise ACMEProblem("malformed", "finalize needs a csr")
        try:
            csr = x509.load_der_x509_csr(b64url_decode(csr_text))
        except ValueError:
            raise ACMEProblem("badCSR", "the CSR does not parse") from None
        if not csr.is_signature_valid:
            raise ACMEProblem("badCSR", "the CSR signature does not verify")
        names: set[str] = set()
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names.update(n.lower() for n in san.get_values_for_type(x509.DNSName))
            names.update(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            pass
        names.update(str(a.value).lower() for a in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME))
        wanted = {i["value"] for i in order.identifiers}
        if names != wanted:
            raise ACMEProblem("badCSR", f"the CSR names {sorted(names)}, the order {sorted(wanted)}")
        issuer, issuer_key = self.signer()
        now = int(self.clock())
        not_after = min(int(now + self.lifetime), int(_x509.timestamp(issuer.not_valid_after_utc)))
        if not_after <= now:
            raise ACMEProblem("serverInternal", "the CA's signing certificate has expired", 500)
        ordered = [i["value"] for i in order.identifiers]
        leaf = _x509.leaf_certificate(ordered, csr.public_key(), issuer, issuer_key, now - 60, not_after)
        certificate_id = _new_id()
        self.state.certificates[certificate_id] = _x509.certificate_pem(leaf) + _x509.certificate_pem(issuer)
        order.certificate_id = certificate_id
        order.status = "valid"

    # -- JSON views --------------------------------------------------------------------------------

    def _account_json(self, root: str, account: Account) -> dict[str, Any]:
        return {"status": account.status, "contact": account.contact, "orders": f"{root}account/{account.id}/orders",
                "key": account.key.to_partial_json()}

    def _order_json(self, root: str, order: Order) -> dict[str, Any]:
        value: dict[str, Any] = {
            "status": order.status,
            "expires": rfc3339(order.expires),
            "identifiers": order.identifiers,
            "authorizations": [f"{root}authz/{a}" for a in order.authz_ids],
            "finalize": f"{root}order/{order.id}/finalize",
        }
        if order.certificate_id:
            value["certificate"] = f"{root}certificate/{order.certificate_id}"
        if order.error:
            value["error"] = order.error
        return value

    def _authz_json(self, root: str, authz: Authorization) -> dict[str, Any]:
        value: dict[str, Any] = {
            "identifier": authz.identifier,
            "status": authz.status,
            "expires": rfc3339(authz.expires),
            "challenges": [self._challenge_json(root, c) for c in authz.challenges],
        }
        if authz.wildcard:
            value["wildcard"] = True
        return value

    def _challenge_json(self, root: str, challenge: Challenge) -> dict[str, Any]:
        value: dict[str, Any] = {
            "type": challenge.type,
            "url": f"{root}challenge/{challenge.authz_id}/{challenge.id}",
            "status": challenge.status,
            "token": challenge.token,
        }
        if challenge.validated is not None:
            value["validated"] = rfc3339(challenge.validated)
        if challenge.error:
            value["error"] = challenge.error
        return value


_POST_ENDPOINTS = frozenset({"new-account", "new-order", "revoke-cert", "key-change"})
# POST paths with an ID: the number of path segments each has (account/<id>/orders also).
_POST_PATHS = {"account": (2, 3), "order": (2, 3), "authz": (2,), "challenge": (3,), "certificate": (2,)}
