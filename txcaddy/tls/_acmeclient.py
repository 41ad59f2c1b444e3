"""The blocking half of txcaddy's ACME client: certbot's ``acme`` library, one call at a time.

``BlockingACMEClient`` wraps ``acme.client.ClientV2`` and ``ClientNetwork`` (``requests``
underneath) for one directory.  Every method does network I/O and blocks, so
``txcaddy.tls.acme`` calls each one through Twisted's thread pool and keeps the waiting
(polling intervals, timeouts) and all shared state (storage, challenges) on the reactor
thread.  One client is used by one issuance at a time, so it needs no locks of its own.

Only the library's public API is used (``ClientV2`` methods and ``ClientNetwork.post``).
Where the library falls short of what certmagic v0.17.2 (acmez v1.0.4) does, this module
fills in:

* TLS-ALPN-01 is not in the library any more (it parses as ``UnrecognizedChallenge``), so
  tokens and types are read from the challenge's JSON, whatever its class.
* A challenge is answered with ``{}`` (RFC 8555 §7.5.1), as acmez does.  The object sent
  defines ``__bool__``: josepy objects without fields are falsy and ``ClientNetwork`` would
  then send an empty payload, a POST-as-GET that never starts validation.
* Account registration keeps the server's raw JSON (``orders`` included), so the stored
  registration is the one acmez writes; an existing account for the key (200 instead of 201)
  is accepted as acmez does, where ``ClientV2.new_account`` raises.
* ``trusted_roots_pem_files`` replace the system roots (Go's ``RootCAs``), through an
  ``ssl.SSLContext`` mounted on the session, not a bundle file.
"""

from __future__ import annotations

import datetime
import email.utils
import ssl
from dataclasses import dataclass
from typing import Any

import josepy as jose
import requests
from acme import client as acme_client
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from requests.adapters import HTTPAdapter
from requests.utils import parse_header_links

__all__ = [
    "BlockingACMEClient",
    "Downloaded",
    "account_jwk",
    "challenge_json",
    "key_authorization",
]

HTTP_TIMEOUT = 30
"""Seconds for each HTTP exchange with the CA (certmagic's ``HTTPTimeout``)."""


def account_jwk(key: Any) -> tuple[jose.JWK, jose.JWASignature]:
    """The JWK and JWS algorithm for an account key (ECDSA P-256/P-384 or RSA, as acmez)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algorithms = {256: jose.ES256, 384: jose.ES384, 521: jose.ES512}
        algorithm = algorithms.get(key.curve.key_size)
        if algorithm is None:
            raise ValueError(f"unsupported account key curve: {key.curve.name}")
        return jose.JWKEC(key=key), algorithm
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    raise ValueError(f"unsupported account key type: {type(key).__name__}")


def key_authorization(token: str, jwk: jose.JWK) -> str:
    """RFC 8555 §8.1: the token, a dot, and the base64url SHA-256 thumbprint of the account key."""
    return token + "." + jose.b64encode(jwk.thumbprint()).decode("ascii")


def challenge_json(challenge: messages.ChallengeBody) -> dict[str, Any]:
    """A challenge as the CA sent it (``type``, ``token``, ``url``...), whatever its class."""
    return dict(challenge.chall.to_partial_json())


class _EmptyObject(jose.JSONDeSerializable):
    """``{}``: the payload that asks the CA to validate a challenge."""

    def to_partial_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, jobj: Any) -> _EmptyObject:
        return cls()

    def __bool__(self) -> bool:
        return True  # josepy would send b"" (POST-as-GET) for a falsy object


class _TrustedRootsAdapter(HTTPAdapter):
    """HTTPS that trusts only the given roots (Go's ``tls.Config.RootCAs``)."""

    def __init__(self, roots_pem: bytes) -> None:
        self._context = ssl.create_default_context(cadata=roots_pem.decode("ascii"))
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests would add its default bundle to our context; the roots are ours alone.
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None


@dataclass(frozen=True)
class Downloaded:
    """One certificate chain the CA offered (acmez's ``acme.Certificate``)."""

    url: str
    chain_pem: bytes


class BlockingACMEClient:
    """One ACME directory, spoken to with certbot's ``acme`` (blocking: call from a thread).

    @ivar directory_url: the directory, with ``https://`` added when it had no scheme.
    @ivar directory: the fetched directory (after ``connect``).
    """

    def __init__(
        self, directory_url: str, *, trusted_roots_pem: bytes | None = None, user_agent: str = "txcaddy",
        timeout: int = HTTP_TIMEOUT,
    ) -> None:
        self.directory_url = directory_url
        self._roots = trusted_roots_pem
        self._user_agent = user_agent
        self._timeout = timeout
        self._net: acme_client.ClientNetwork | None = None
        self._client: acme_client.ClientV2 | None = None
        self.directory: messages.Directory | None = None

    # -- set-up ----------------------------------------------------------------------------

    def connect(self) -> None:
        """Fetch the directory (the first request: it fails when the CA cannot be reached)."""
        net = acme_client.ClientNetwork(key=None, user_agent=self._user_agent, timeout=self._timeout)
        if self._roots is not None:
            net.session.mount("https://", _TrustedRootsAdapter(self._roots))
        self.directory = acme_client.ClientV2.get_directory(self.directory_url, net)
        self._net = net
        self._client = acme_client.ClientV2(self.directory, net)

    def close(self) -> None:
        if self._net is not None:
            self._net.session.close()

    @property
    def external_account_required(self) -> bool:
        return bool(self._api.external_account_required())

    @property
    def _api(self) -> acme_client.ClientV2:
        if self._client is None:
            raise RuntimeError("BlockingACMEClient.connect() was not called")
        return self._client

    @property
    def _network(self) -> acme_client.ClientNetwork:
        if self._net is None:
            raise RuntimeError("BlockingACMEClient.connect() was not called")
        return self._net

    def use_account(self, key: Any, location: str) -> jose.JWK:
        """Sign what follows with ``key``, as the account at ``location`` ("" while registering)."""
        jwk, algorithm = account_jwk(key)
        net = self._network
        net.key, net.alg = jwk, algorithm
        net.account = messages.RegistrationResource(uri=location, body=messages.Registration()) if location else None
        return jwk

    def _post(self, url: str, obj: Any) -> requests.Response:
        """A signed POST (``obj`` None: POST-as-GET)."""
        return self._network.post(url, obj, new_nonce_url=self._api.directory["newNonce"])

    # -- accounts --------------------------------------------------------------------------

    def register(self, key: Any, contact: list[str], eab: tuple[str, str] | None) -> dict[str, Any]:
        """Create the account for ``key`` (terms agreed; bound to ``eab`` = (key id, MAC key)
        when given); returns the registration as acmez stores it."""
        jwk = self.use_account(key, "")
        fields: dict[str, Any] = {"terms_of_service_agreed": True}
        if contact:
            fields["contact"] = tuple(contact)
        binding = None
        if eab is not None:
            binding = messages.ExternalAccountBinding.from_data(
                account_public_key=jwk.public_key(), kid=eab[0], hmac_key=eab[1], directory=self._api.directory,
            )
            fields["external_account_binding"] = binding
        request = {"contact": list(contact), "termsOfServiceAgreed": True, "externalAccountBinding": binding}
        response = self._post(self._api.directory["newAccount"], messages.NewRegistration(**fields))
        return self._account_response(key, request, response)

    def look_up(self, key: Any) -> dict[str, Any]:
        """The existing account of ``key`` (``onlyReturnExisting``); fails if there is none."""
        self.use_account(key, "")
        response = self._post(self._api.directory["newAccount"], messages.NewRegistration(only_return_existing=True))
        return self._account_response(key, {}, response)

    def _account_response(self, key: Any, request: dict[str, Any], response: requests.Response) -> dict[str, Any]:
        location = response.headers.get("Location", "")
        self.use_account(key, location)
        return registration_json(request, response.json(), location)

    # -- orders ----------------------------------------------------------------------------

    def new_order(self, csr_pem: bytes) -> messages.OrderResource:
        """Order a certificate for the CSR's names; the authorizations come with it."""
        return self._api.new_order(csr_pem)

    def authorization(self, authorization: messages.AuthorizationResource) -> tuple[messages.AuthorizationResource, float | None]:
        """The authorization as it is now, and the seconds the CA asks to wait (Retry-After)."""
        updated, response = self._api.poll(authorization)
        return updated, retry_after(response)

    def answer(self, challenge: messages.ChallengeBody) -> None:
        """Tell the CA the challenge is ready to be validated."""
        self._api.answer_challenge(challenge, _EmptyObject())  # type: ignore[arg-type]

    def finalize(self, order: messages.OrderResource) -> messages.Order:
        """Send the CSR; the CA answers with the order (``processing`` or ``valid``)."""
        try:
            return self._api.begin_finalization(order).body  # type: ignore[no-any-return]
        except messages.Error as e:
            if e.code != "orderNotReady":
                raise
            order_body, _ = self.order(order.uri)
            return order_body

    def order(self, url: str) -> tuple[messages.Order, float | None]:
        """The order as it is now, and the seconds the CA asks to wait (Retry-After)."""
        response = self._post(url, None)
        return messages.Order.from_json(response.json()), retry_after(response)

    def download(self, certificate_url: str) -> list[Downloaded]:
        """The certificate chain and each alternate chain the CA links (RFC 8555 §7.4.2)."""
        response = self._post(certificate_url, None)
        chains = [Downloaded(certificate_url, response.content)]
        links = parse_header_links(response.headers.get("Link", "")) if "Link" in response.headers else []
        for link in links:
            if link.get("rel") == "alternate" and link.get("url"):
                alternate = self._post(link["url"], None)
                chains.append(Downloaded(link["url"], alternate.content))
        return chains

    def revoke(self, certificate: x509.Certificate, reason: int) -> None:
        self._api.revoke(certificate, reason)


_ACCOUNT_FIELDS = ("status", "contact", "termsOfServiceAgreed", "externalAccountBinding", "orders", "location")


def registration_json(request: dict[str, Any], response: dict[str, Any], location: str) -> dict[str, Any]:
    """acmez's ``acme.Account`` after ``NewAccount``: what was sent, overwritten by what the CA
    answered, plus the account URL; in Go's field order and with its ``omitempty`` rules."""
    merged: dict[str, Any] = {"status": "", "orders": ""}
    merged.update({k: v for k, v in request.items() if v})
    merged.update({k: v for k, v in response.items() if k in _ACCOUNT_FIELDS})
    merged["location"] = location
    out: dict[str, Any] = {}
    for name in _ACCOUNT_FIELDS:
        value = merged.get(name)
        if name in ("status", "orders") or value:
            out[name] = value if value is not None else ""
    return out


def retry_after(response: requests.Response) -> float | None:
    """The Retry-After header in seconds (a number or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(int(value)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())
