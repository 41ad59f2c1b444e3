"""The ACME issuers (``txcaddy.tls.acme``): config, keys, pre-checks, challenge certificates,
accounts in storage; and real issuance from Debian's ``pebble`` on loopback.

The integration tests start ``pebble`` and ``pebble-challtestsrv`` (its DNS, answering
127.0.0.1 for every name) for each test, on free loopback ports, with a directory certificate
from a test CA that the issuer trusts through ``trusted_roots_pem_files``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import stat
from typing import Any, cast

import josepy
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from txcaddy import fromConfig
from txcaddy.errors import ConfigError
from txcaddy.interfaces import ICertificateIssuer
from txcaddy.tls import _acmeissuer, _acmesolvers
from txcaddy.tls._acmeclient import Downloaded, registration_json
from txcaddy.tls.acme import (
    LETS_ENCRYPT_PRODUCTION,
    LETS_ENCRYPT_STAGING,
    ZEROSSL_PRODUCTION,
    ACMEAccount,
    ACMEDirectoryError,
    ACMEProblemError,
    ACMETimeoutError,
    ChainPreference,
    ChallengeFailedError,
    ExternalAccount,
    RateLimitedError,
    ZeroSSLIssuer,
    issuer_key_for,
    load_account,
    load_acme_issuer,
    load_zerossl_issuer,
    save_account,
    select_preferred_chain,
    tls_alpn01_certificate,
)
from txcaddy.tls.certificates import CertificateCache
from txcaddy.tls.challenges import Challenges
from txcaddy.tls.context import ConnectionPolicy, ServerTLS
from txcaddy.tls.keys import new_private_key, private_key_pem
from txcaddy.tls.storage import FileStorage, MemoryStorage

from ._certs import TestCA

PEBBLE = shutil.which("pebble")
CHALLTESTSRV = shutil.which("pebble-challtestsrv")
NO_PEBBLE = "Debian's pebble (pebble, pebble-challtestsrv) is not installed: apt-get install pebble"
ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")
REACTOR: Any = cast(Any, _reactor)  # the global reactor: real sockets, threads and processes
EAB_KEYS = {"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}


def load(config: dict[str, Any], **kwargs: Any) -> Any:
    """An ACME issuer from JSON, with in-memory storage and its own challenges."""
    kwargs.setdefault("storage", MemoryStorage(Clock()))
    kwargs.setdefault("challenges", Challenges())
    kwargs.setdefault("reactor", REACTOR)
    return load_acme_issuer(config, where="issuer", **kwargs)


class ConfigTests(SynchronousTestCase):
    def test_defaults_are_lets_encrypt(self) -> None:
        """An empty config is Let's Encrypt production, staging as test CA, both challenges on 80/443."""
        issuer = load({"module": "acme"})
        self.assertEqual((issuer.ca, issuer.test_ca), (LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING))
        self.assertEqual(issuer.issuer_key, "acme-v02.api.letsencrypt.org-directory")
        self.assertEqual(issuer.disabled_challenges, frozenset())
        self.assertEqual(issuer.challenge_ports, {"http-01": 80, "tls-alpn-01": 443})
        self.assertEqual(issuer.acme_timeout, 300.0)
        self.assertTrue(verifyObject(ICertificateIssuer, issuer))

    def test_other_ca_has_no_test_ca(self) -> None:
        """Only Let's Encrypt production gets a default test CA (certmagic's ``NewACMEIssuer``)."""
        issuer = load({"ca": "https://ca.example/acme/directory"})
        self.assertEqual((issuer.test_ca, issuer.issuer_key), ("", "ca.example-acme-directory"))

    def test_all_fields(self) -> None:
        """Every field of Caddy's ``acme`` issuer JSON is read into the issuer."""
        os.environ["TXCADDY_TEST_ACME_EMAIL"] = "ops@example.com"
        self.addCleanup(os.environ.pop, "TXCADDY_TEST_ACME_EMAIL")
        roots = self.mktemp()
        with open(roots, "wb") as f:
            f.write(TestCA().pem)
        issuer = load({
            "module": "acme", "ca": "https://127.0.0.1:14000/dir", "test_ca": "https://127.0.0.1:14001/dir",
            "email": "{env.TXCADDY_TEST_ACME_EMAIL}",
            "external_account": {"key_id": "kid-1", "mac_key": EAB_KEYS["kid-1"]},
            "acme_timeout": "90s",
            "challenges": {"http": {"alternate_port": 8080}, "tls-alpn": {"disabled": True, "alternate_port": 8443},
                           "bind_host": "127.0.0.1"},
            "trusted_roots_pem_files": [roots],
            "preferred_chains": {"smallest": True, "root_common_name": ["Root X1"]},
        })
        self.assertEqual(issuer.email, "ops@example.com")
        self.assertEqual(issuer.external_account, ExternalAccount("kid-1", EAB_KEYS["kid-1"]))
        self.assertEqual(issuer.acme_timeout, 90.0)
        self.assertEqual(issuer.challenge_ports, {"http-01": 8080, "tls-alpn-01": 8443})
        self.assertEqual((issuer.disabled_challenges, issuer.bind_host), (frozenset({"tls-alpn-01"}), "127.0.0.1"))
        self.assertEqual(issuer.preferred_chains, ChainPreference(True, ("Root X1",), ()))
        self.assertIn(b"BEGIN CERTIFICATE", issuer.trusted_roots_pem)
        self.assertEqual((issuer.test_ca, issuer.issuer_key), ("https://127.0.0.1:14001/dir", "127.0.0.1:14000-dir"))

    def test_dns_challenge_refused(self) -> None:
        """A ``dns`` challenge config is an error: txcaddy has no DNS-01."""
        with self.assertRaises(ConfigError) as raised:
            load({"challenges": {"dns": {"provider": {"name": "cloudflare"}}}})
        self.assertEqual(str(raised.exception), "issuer.challenges.dns: DNS-01 is not supported by txcaddy")

    def test_errors_name_the_field(self) -> None:
        """Unknown fields and wrong types are ConfigErrors naming the JSON path."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"bogus": 1}, 'issuer: unknown field "bogus"'),
            ({"email": 5}, "issuer.email must be a string, got 5"),
            ({"challenges": {"http": {"port": 80}}}, 'issuer.challenges.http: unknown field "port"'),
            ({"challenges": {"http": {"alternate_port": "80"}}}, "issuer.challenges.http.alternate_port must be a port number, got '80'"),
            ({"external_account": {"key_id": "k", "mac_key": "not base64!"}}, "issuer.external_account.mac_key: base64url-decoding MAC key"),
            ({"acme_timeout": "soon"}, "issuer.acme_timeout"),
            ({"trusted_roots_pem_files": ["/nonexistent/root.pem"]},
             "issuer.trusted_roots_pem_files: loading trusted root CA's PEM file: /nonexistent/root.pem"),
            ({"preferred_chains": {"smallest": "yes"}}, "issuer.preferred_chains.smallest must be a boolean"),
            ({"account_key": "not a key"}, "issuer.account_key: failed to decode PEM block"),
            ({"email": "{env.TXCADDY_SURELY_UNSET_VARIABLE}"}, "issuer.email: evaluated placeholder"),
            ({"module": "zerossl"}, "issuer.module: expected 'acme'"),
        ]
        for config, message in cases:
            with self.assertRaises(ConfigError, msg=config) as raised:
                load(config)
            self.assertTrue(str(raised.exception).startswith(message), (config, str(raised.exception)))

    def test_insecure_ca_refused_unless_local(self) -> None:
        """Plain HTTP is refused for a public CA, allowed on loopback and private addresses."""
        with self.assertRaises(ConfigError) as raised:
            load({"ca": "http://ca.example/dir"})
        self.assertIn("insecure CA URL (HTTPS required)", str(raised.exception))
        for ca in ("http://127.0.0.1:14000/dir", "http://localhost/dir", "http://10.1.2.3/dir"):
            self.assertEqual(load({"ca": ca}).ca, ca)

    def test_zerossl(self) -> None:
        """``zerossl`` is the acme issuer at ZeroSSL's directory, plus ``api_key``."""
        issuer = load_zerossl_issuer({"module": "zerossl", "api_key": "abc", "email": "a@example.com"},
                                     storage=MemoryStorage(Clock()), challenges=Challenges(), reactor=REACTOR)
        self.assertIsInstance(issuer, ZeroSSLIssuer)
        self.assertEqual((issuer.ca, issuer.issuer_key, issuer.api_key), (ZEROSSL_PRODUCTION, "acme.zerossl.com-v2-DV90", "abc"))
        self.assertEqual(issuer.test_ca, "")
        with self.assertRaises(ConfigError):
            load_zerossl_issuer({"api_key": 1}, storage=MemoryStorage(Clock()), challenges=Challenges(), reactor=REACTOR)


class IssuerKeyTests(SynchronousTestCase):
    def test_issuer_keys(self) -> None:
        """certmagic's ``issuerKey``: host (with port) and the path with slashes made hyphens."""
        self.assertEqual(issuer_key_for(LETS_ENCRYPT_PRODUCTION), "acme-v02.api.letsencrypt.org-directory")
        self.assertEqual(issuer_key_for(LETS_ENCRYPT_STAGING), "acme-staging-v02.api.letsencrypt.org-directory")
        self.assertEqual(issuer_key_for(ZEROSSL_PRODUCTION), "acme.zerossl.com-v2-DV90")
        self.assertEqual(issuer_key_for("https://127.0.0.1:14000/dir/"), "127.0.0.1:14000-dir")
        self.assertEqual(issuer_key_for("https://ca.example"), "ca.example")


class PreCheckTests(SynchronousTestCase):
    def test_public_ca_refuses_internal_names(self) -> None:
        """Let's Encrypt and ZeroSSL are not asked for localhost, IPs or .local names."""
        for ca in (LETS_ENCRYPT_PRODUCTION, ZEROSSL_PRODUCTION):
            issuer = load({"ca": ca})
            issuer.pre_check(["example.com", "*.example.com"])
            for name in ("localhost", "127.0.0.1", "printer.local", "*.com"):
                with self.assertRaises(ValueError) as raised:
                    issuer.pre_check(["example.com", name])
                self.assertEqual(str(raised.exception), f"subject does not qualify for a public certificate: {name}")

    def test_other_ca_takes_any_name(self) -> None:
        """Any other CA (a private one, pebble) is asked for whatever the policy manages."""
        load({"ca": "https://ca.internal.example/dir"}).pre_check(["localhost", "127.0.0.1", "printer.local"])


class TLSALPNCertificateTests(SynchronousTestCase):
    def test_challenge_certificate(self) -> None:
        """RFC 8737: self-signed, SAN = the name, critical acmeIdentifier = DER of SHA-256(key auth)."""
        authorization = "token123.thumbprint456"
        certificate = tls_alpn01_certificate("a.example.com", authorization, 1_800_000_000)
        leaf = certificate.leaf
        extension = leaf.extensions.get_extension_for_oid(ACME_IDENTIFIER)
        self.assertTrue(extension.critical)
        value = cast(x509.UnrecognizedExtension, extension.value).value
        self.assertEqual(value, b"\x04\x20" + hashlib.sha256(authorization.encode()).digest())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["a.example.com"])
        self.assertEqual(leaf.subject, leaf.issuer)
        leaf.verify_directly_issued_by(leaf)
        self.assertEqual(certificate.names, ("a.example.com",))
        self.assertEqual(leaf.not_valid_before_utc.timestamp(), 1_800_000_000)

    def test_ip_identifier(self) -> None:
        """An IP identifier goes in the SAN as an IP address."""
        leaf = tls_alpn01_certificate("192.0.2.7", "t.k", 0).leaf
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual([str(ip) for ip in san.get_values_for_type(x509.IPAddress)], ["192.0.2.7"])


class AccountStorageTests(SynchronousTestCase):
    def test_layout_and_round_trip(self) -> None:
        """An account is stored as certmagic does (``<local part>.json|.key`` under the email) and read back."""
        storage = FileStorage(self.mktemp(), Clock())
        key = new_private_key("p256")
        registration = {"status": "valid", "contact": ["mailto:Admin@Example.com"], "orders": "https://ca/o/1",
                        "location": "https://ca/acct/1"}
        self.successResultOf(ensureDeferred(save_account(storage, "ca.example-dir", ACMEAccount(key, registration))))
        folder = os.path.join(storage.root, "acme", "ca.example-dir", "users", "admin@example.com")
        self.assertEqual(sorted(os.listdir(folder)), ["admin.json", "admin.key"])
        with open(os.path.join(folder, "admin.json"), "rb") as f:
            self.assertEqual(f.read(), json.dumps(registration, indent="\t").encode())
        with open(os.path.join(folder, "admin.key"), "rb") as f:
            self.assertEqual(f.read(), private_key_pem(key))
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(folder, "admin.key")).st_mode), 0o600)
        loaded = self.successResultOf(ensureDeferred(load_account(storage, "ca.example-dir", "admin@example.com")))
        assert loaded is not None
        self.assertEqual((loaded.registration, loaded.location, loaded.registered), (registration, "https://ca/acct/1", True))
        self.assertEqual(private_key_pem(loaded.key), private_key_pem(key))
        self.assertIsNone(self.successResultOf(ensureDeferred(load_account(storage, "ca.example-dir", "other@example.com"))))

    def test_account_without_email(self) -> None:
        """No contact: the ``default`` folder with ``default.json`` and ``default.key``, as certmagic."""
        storage = MemoryStorage(Clock())
        account = ACMEAccount(new_private_key("p256"), {"status": "valid", "orders": "", "location": "https://ca/a/2"})
        self.successResultOf(ensureDeferred(save_account(storage, "ca", account)))
        self.assertEqual(sorted(storage.values), ["acme/ca/users/default/default.json", "acme/ca/users/default/default.key"])

    def test_caddy_written_account_loads(self) -> None:
        """A registration as Caddy 2.6.2 writes it (with EAB, tab-indented) is read as registered."""
        storage = MemoryStorage(Clock())
        key = ec.generate_private_key(ec.SECP256R1())
        caddy_json = (b'{\n\t"status": "valid",\n\t"contact": [\n\t\t"mailto:me@example.com"\n\t],\n'
                      b'\t"termsOfServiceAgreed": true,\n\t"orders": "",\n\t"location": "https://ca/acct/9"\n}')
        storage.store("acme/ca/users/me@example.com/me.json", caddy_json)
        storage.store("acme/ca/users/me@example.com/me.key", private_key_pem(key))
        loaded = self.successResultOf(ensureDeferred(load_account(storage, "ca", "me@example.com")))
        assert loaded is not None
        self.assertEqual((loaded.location, loaded.primary_contact, loaded.registered), ("https://ca/acct/9", "me@example.com", True))

    def test_registration_json_is_acmez_account(self) -> None:
        """What the CA answered over what was sent, in acmez's field order, omitting empty optionals."""
        merged = registration_json(
            {"contact": ["mailto:a@b.c"], "termsOfServiceAgreed": True, "externalAccountBinding": None},
            {"status": "valid", "key": {"kty": "EC"}, "orders": "https://ca/orders/1", "contact": ["mailto:a@b.c"]},
            "https://ca/acct/1",
        )
        self.assertEqual(list(merged.items()), [
            ("status", "valid"), ("contact", ["mailto:a@b.c"]), ("termsOfServiceAgreed", True),
            ("orders", "https://ca/orders/1"), ("location", "https://ca/acct/1"),
        ])


class ChainPreferenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root_a, self.root_b = TestCA("Root A"), TestCA("Root B")
        leaf_a = self.root_a.leaf(["example.com"])[0]
        leaf_b = self.root_b.leaf(["example.com"])[0] + self.root_b.leaf(["filler"])[0]
        self.chains = [Downloaded("https://ca/cert/1", leaf_a), Downloaded("https://ca/cert/1/alt", leaf_b)]

    def test_first_without_preference(self) -> None:
        """No preference: the CA's default chain (the first)."""
        self.assertEqual(select_preferred_chain(self.chains, ChainPreference()).url, "https://ca/cert/1")

    def test_root_and_any_common_name(self) -> None:
        """A chain whose root (or any issuer) has the preferred common name wins; no match, the first."""
        self.assertEqual(select_preferred_chain(self.chains, ChainPreference(root_common_name=("Root B",))).url,
                         "https://ca/cert/1/alt")
        self.assertEqual(select_preferred_chain(self.chains, ChainPreference(any_common_name=("Root B",))).url,
                         "https://ca/cert/1/alt")
        self.assertEqual(select_preferred_chain(self.chains, ChainPreference(root_common_name=("Root C",))).url,
                         "https://ca/cert/1")

    def test_smallest(self) -> None:
        """``smallest: false`` sorts the largest first, ``true`` the smallest."""
        self.assertEqual(select_preferred_chain(self.chains, ChainPreference(smallest=False)).url, "https://ca/cert/1/alt")
        self.assertEqual(select_preferred_chain(self.chains[::-1], ChainPreference(smallest=True)).url, "https://ca/cert/1")


# -- the issuance logic, on a fake ACME client and a fake clock --------------------------------


class FakeACMEClient:
    """Stands in for ``BlockingACMEClient``: one name, one authorization that the test steers."""

    def __init__(self, directory_url: str, log: list[tuple[str, str]], *, status: str = "valid",
                 order_error: Exception | None = None, problem: str = "urn:ietf:params:acme:error:dns") -> None:
        self.directory_url = directory_url
        self.log = log
        self.status = status
        self.order_error = order_error
        self.problem = problem

    def connect(self) -> None:
        self.log.append(("connect", self.directory_url))

    def close(self) -> None:
        pass

    def use_account(self, key: Any, location: str) -> Any:
        return josepy.JWKEC(key=key)

    def register(self, key: Any, contact: list[str], eab: Any) -> dict[str, Any]:
        self.log.append(("register", self.directory_url))
        return {"status": "valid", "contact": contact, "orders": "", "location": self.directory_url + "/acct/1"}

    def _authorization(self, status: str, error: dict[str, Any] | None = None) -> Any:
        challenges: list[dict[str, Any]] = [
            {"type": "http-01", "url": "https://ca/c/1", "status": status, "token": "t" * 43},
                      {"type": "tls-alpn-01", "url": "https://ca/c/2", "status": "pending", "token": "u" * 43}]
        if error:
            challenges = [{**challenges[0], "error": error}]
        return messages.AuthorizationResource(uri="https://ca/authz/1", body=messages.Authorization(
            identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="a.test"),
            challenges=[messages.ChallengeBody.from_json(c) for c in challenges],
            status=messages.Status.from_json(status)))

    def new_order(self, csr_pem: bytes) -> Any:
        self.log.append(("new_order", self.directory_url))
        if self.order_error is not None:
            raise self.order_error
        return messages.OrderResource(uri="https://ca/order/1", authorizations=[self._authorization("pending")],
                                      body=messages.Order(status=messages.STATUS_PENDING, finalize="https://ca/fin"))

    def answer(self, challenge: Any) -> None:
        self.log.append(("answer", challenge.uri))

    def authorization(self, authorization: Any) -> tuple[Any, float | None]:
        if self.status == "invalid":
            return self._authorization("invalid", {"type": self.problem, "detail": "NXDOMAIN"}), None
        return self._authorization(self.status), 2.0

    def finalize(self, order: Any) -> Any:
        return messages.Order(status=messages.STATUS_VALID, certificate=self.directory_url + "/cert/1")

    def download(self, url: str) -> list[Downloaded]:
        self.log.append(("download", url))
        ca = TestCA("Fake Root")
        return [Downloaded(url, ca.leaf(["a.test"])[0] + ca.pem)]


class IssuanceLogicTests(SynchronousTestCase):
    """``ACMEIssuer``'s order handling with the ACME calls faked and time on a fake clock."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.log: list[tuple[str, str]] = []
        self.client_options: dict[str, Any] = {}
        self.patch(_acmeissuer, "_client", lambda issuer, directory: FakeACMEClient(directory, self.log, **self.client_options))
        self.challenges = Challenges()

    def issuer(self, **config: Any) -> Any:
        issuer: Any = load_acme_issuer({"email": "a@example.com", **config}, storage=MemoryStorage(self.reactor),
                                       challenges=self.challenges, reactor=cast(Any, self.reactor))
        issuer._thread = lambda f, *args: maybeDeferred(f, *args)  # no threads: the fake does not block
        return issuer

    def test_timeout_withdraws_the_challenge(self) -> None:
        """An authorization still pending after ``acme_timeout``: ACMETimeoutError, challenge gone."""
        self.client_options["status"] = "pending"
        issuing = self.issuer(acme_timeout="10s").issue(["a.test"], new_private_key("p256"))
        self.reactor.advance(0.25)
        self.assertTrue(self.challenges.http01_pending)  # presented while the CA validates
        self.reactor.pump([2.0] * 6)
        failure = self.failureResultOf(issuing, ACMETimeoutError)
        self.assertIn("a.test: authorization took too long (acme_timeout 10s)", str(failure.value))
        self.assertFalse(self.challenges.http01_pending)
        self.assertEqual(_acmesolvers.ChallengeListeners._open, {})

    def test_failed_type_retried_with_the_other(self) -> None:
        """A ``dns`` problem (one another type might not meet) is retried with the other type on a
        new order a second later; when both fail, the error is the last one's."""
        self.client_options["status"] = "invalid"
        issuing = self.issuer().issue(["a.test"], new_private_key("p256"))
        self.reactor.advance(0.25)
        self.assertEqual([e for e in self.log if e[0] == "new_order"], [("new_order", LETS_ENCRYPT_PRODUCTION)])
        self.reactor.advance(1.0)
        self.reactor.advance(0.25)
        failure = self.failureResultOf(issuing, ChallengeFailedError)
        self.assertEqual([e[1] for e in self.log if e[0] == "answer"], ["https://ca/c/1", "https://ca/c/2"])
        self.assertEqual(failure.value.challenge_type, "tls-alpn-01")

    def test_other_problems_are_not_retried(self) -> None:
        """A problem no other type would fix (``rejectedIdentifier``) fails after one order."""
        self.client_options.update(status="invalid", problem="urn:ietf:params:acme:error:rejectedIdentifier")
        issuing = self.issuer().issue(["a.test"], new_private_key("p256"))
        self.reactor.advance(0.25)
        failure = self.failureResultOf(issuing, ChallengeFailedError)
        self.assertEqual([e for e in self.log if e[0] == "new_order"], [("new_order", LETS_ENCRYPT_PRODUCTION)])
        assert failure.value.problem is not None
        self.assertEqual((failure.value.challenge_type, failure.value.problem.code), ("http-01", "rejectedIdentifier"))
        self.assertFalse(self.challenges.http01_pending)

    def test_retry_validates_with_test_ca_first(self) -> None:
        """On a retry, the names are validated with the test CA, then issued by the real one."""
        issuing = self.issuer().issue(["a.test"], new_private_key("p256"), attempt=1)
        self.reactor.pump([0.25] * 4)
        issued = self.successResultOf(issuing)
        self.assertEqual([d for op, d in self.log if op == "connect"], [LETS_ENCRYPT_STAGING, LETS_ENCRYPT_PRODUCTION])
        self.assertEqual(issued.metadata, {"url": LETS_ENCRYPT_PRODUCTION + "/cert/1"})

    def test_rate_limited(self) -> None:
        """The CA's ``rateLimited`` problem is a RateLimitedError carrying the problem."""
        self.client_options["order_error"] = messages.Error(
            typ="urn:ietf:params:acme:error:rateLimited", detail="too many certificates already issued")
        failure = self.failureResultOf(self.issuer().issue(["a.test"], new_private_key("p256")), RateLimitedError)
        self.assertIn("rate limited by the CA", str(failure.value))
        self.assertIn("too many certificates already issued", str(failure.value))
        self.assertEqual(failure.value.names, ("a.test",))


# -- ZeroSSL's EAB endpoint, faked on loopback ------------------------------------------------


class _FakeZeroSSL(Resource):
    isLeaf = True

    def __init__(self, answer: dict[str, Any], code: int = 200) -> None:
        super().__init__()
        self.answer, self.code = answer, code
        self.requests: list[tuple[bytes, bytes, bytes, bytes]] = []

    def render_POST(self, request: Any) -> bytes:  # noqa: N802 - twisted.web's name
        self.requests.append((request.uri, request.getHeader(b"content-type") or b"", request.content.read(),
                              request.getHeader(b"user-agent") or b""))
        request.setResponseCode(self.code)
        return json.dumps(self.answer).encode()


class ZeroSSLCredentialsTests(TestCase):
    timeout = 10

    def serve(self, answer: dict[str, Any], code: int = 200) -> tuple[_FakeZeroSSL, str]:
        resource = _FakeZeroSSL(answer, code)
        port = REACTOR.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return resource, f"http://127.0.0.1:{port.getHost().port}/acme"

    def issuer(self, api_base: str, **config: Any) -> ZeroSSLIssuer:
        issuer = load_zerossl_issuer(config, storage=MemoryStorage(Clock()), challenges=Challenges(), reactor=REACTOR)
        issuer.api_base = api_base
        return issuer

    async def test_by_email(self) -> None:
        """Without an API key: a form POST of the email to ``/eab-credentials-email``."""
        fake, base = self.serve({"success": True, "eab_kid": "kid-9", "eab_hmac_key": "bWFj"})
        credentials = await self.issuer(base, email="me@example.com").eab_credentials()
        self.assertEqual(credentials, ExternalAccount("kid-9", "bWFj"))
        ((uri, content_type, body, agent),) = fake.requests
        self.assertEqual((uri, content_type, body), (b"/acme/eab-credentials-email",
                                                     b"application/x-www-form-urlencoded", b"email=me%40example.com"))
        self.assertTrue(agent.startswith(b"txcaddy"))

    async def test_by_api_key(self) -> None:
        """With ``api_key``: POST to ``/eab-credentials?access_key=…``, no body."""
        fake, base = self.serve({"success": True, "eab_kid": "kid-1", "eab_hmac_key": "a2V5"})
        credentials = await self.issuer(base, api_key="s3cret").eab_credentials()
        self.assertEqual(credentials, ExternalAccount("kid-1", "a2V5"))
        self.assertEqual(fake.requests[0][:3], (b"/acme/eab-credentials?access_key=s3cret", b"", b""))

    async def test_api_error(self) -> None:
        """An ``error`` object in the answer fails with its type and code."""
        _, base = self.serve({"success": False, "error": {"code": 2900, "type": "invalid_access_key"}}, code=401)
        with self.assertRaises(Exception) as raised:
            await self.issuer(base, api_key="bad").eab_credentials()
        self.assertEqual(str(raised.exception),
                         "failed getting EAB credentials: HTTP 401: invalid_access_key (code 2900)")


# -- pebble ------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port free for both TCP and UDP right now (pebble's DNS uses both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


class _Output(ProcessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802
        self.output += data

    errReceived = outReceived  # noqa: N815

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.ended.callback(None)


class Pebble:
    """``pebble`` and ``pebble-challtestsrv`` for one test, on loopback ports of their own."""

    def __init__(self, testcase: TestCase, *, eab: dict[str, str] | None = None, validity: int | None = None) -> None:
        self.testcase = testcase
        self.eab = eab
        self.validity = validity  # seconds of certificate lifetime (pebble's certificateValidityPeriod)
        self.workdir = os.path.abspath(testcase.mktemp())
        os.makedirs(self.workdir)
        self.port, self.dns_port, self.management_port = free_port(), free_port(), free_port()
        self.http_port, self.tls_port = free_port(), free_port()
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        self.roots = os.path.join(self.workdir, "roots.pem")
        self.processes: list[tuple[Any, _Output]] = []

    @property
    def log(self) -> str:
        return "".join(out.output.decode("utf-8", "replace") for _, out in self.processes)

    def count(self, request: str) -> int:
        """How many times pebble logged a request line such as ``POST /sign-me-up``."""
        return self.log.count(request + " -> calling handler()")

    def root_common_names(self) -> list[str]:
        """The roots of pebble's chains, default first (from its start-up log)."""
        return re.findall(r"Generated issuance chain: (Pebble Root CA \w+) ->", self.log)

    async def start(self) -> None:
        ca = TestCA("pebble directory root")
        now = datetime.datetime.now(datetime.UTC)
        cert_pem, key_pem = ca.leaf(["localhost", "127.0.0.1"], not_before=now - datetime.timedelta(hours=1))
        for name, data in (("roots.pem", ca.pem), ("cert.pem", cert_pem), ("key.pem", key_pem)):
            with open(os.path.join(self.workdir, name), "wb") as f:
                f.write(data)
        config: dict[str, Any] = {
            "listenAddress": f"127.0.0.1:{self.port}", "managementListenAddress": "",
            "certificate": os.path.join(self.workdir, "cert.pem"), "privateKey": os.path.join(self.workdir, "key.pem"),
            "httpPort": self.http_port, "tlsPort": self.tls_port, "ocspResponderURL": "",
            "externalAccountBindingRequired": self.eab is not None,
        }
        if self.eab is not None:
            config["externalAccountMACKeys"] = self.eab
        if self.validity is not None:
            config["certificateValidityPeriod"] = self.validity
        config_file = os.path.join(self.workdir, "pebble.json")
        with open(config_file, "w") as f:
            json.dump({"pebble": config}, f)
        self._spawn(CHALLTESTSRV, ["-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
                                   "-tlsalpn01", "", "-management", f"127.0.0.1:{self.management_port}",
                                   "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""], {})
        self._spawn(PEBBLE, ["-config", config_file, "-dnsserver", f"127.0.0.1:{self.dns_port}"], {
            "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0",
            "PEBBLE_ALTERNATE_ROOTS": "1",
        })
        await self._wait_for(self.port)
        await self._wait_for(self.management_port)

    def _spawn(self, executable: str | None, args: list[str], env: dict[str, str]) -> None:
        assert executable is not None
        output = _Output()
        process = REACTOR.spawnProcess(
            output, executable, [executable, *args], env={**os.environ, **env}, path=self.workdir)
        self.processes.append((process, output))
        self.testcase.addCleanup(self._stop, process, output)

    async def _stop(self, process: Any, output: _Output) -> None:
        if not output.ended.called:
            process.signalProcess("TERM")
        await output.ended

    async def _wait_for(self, port: int) -> None:
        """Until ``port`` accepts connections (at most 10 s, polled every 20 ms)."""
        endpoint = TCP4ClientEndpoint(REACTOR, "127.0.0.1", port)
        factory = Factory.forProtocol(Protocol)
        factory.noisy = False
        for _ in range(500):
            try:
                connected: Any = await endpoint.connect(factory)
            except ConnectError:
                await deferLater(REACTOR, 0.02)
                continue
            connected.transport.loseConnection()
            return
        raise AssertionError(f"nothing listens on 127.0.0.1:{port}; output:\n{self.log}")


class _CountingProtocol(Protocol):
    connections = 0

    def connectionMade(self) -> None:  # noqa: N802
        type(self).connections += 1


class PebbleTestCase(TestCase):
    """Each test gets a running pebble (``self.pebble``) and a txcaddy HTTP server whose
    challenges answer pebble's HTTP-01 requests (``self.challenges``)."""

    timeout = 30
    eab: dict[str, str] | None = None

    if PEBBLE is None or CHALLTESTSRV is None:
        skip = NO_PEBBLE

    async def setUp(self) -> None:  # type: ignore[override]
        self.pebble = Pebble(self, eab=self.eab)
        await self.pebble.start()
        self.service = fromConfig({"apps": {"http": {"servers": {"challenges": {
            "listen": [f"127.0.0.1:{self.pebble.http_port}"], "automatic_https": {"disable": True},
            "routes": [{"handle": [{"handler": "static_response", "body": "not a challenge"}]}],
        }}}}}, reactor=REACTOR)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        self.challenges: Challenges = self.service.challenges
        self.storage = MemoryStorage(REACTOR)

    def issuer(self, **config: Any) -> Any:
        base: dict[str, Any] = {
            "module": "acme", "ca": self.pebble.directory, "email": "admin@example.com",
            "trusted_roots_pem_files": [self.pebble.roots],
            "challenges": {"http": {"alternate_port": self.pebble.http_port},
                           "tls-alpn": {"alternate_port": self.pebble.tls_port}, "bind_host": "127.0.0.1"},
        }
        base.update(config)
        module = base.get("module")
        loader = load_zerossl_issuer if module == "zerossl" else load_acme_issuer
        return loader(base, storage=self.storage, challenges=self.challenges, reactor=REACTOR)

    def assertNothingPending(self) -> None:
        """The challenges are withdrawn and the solvers' listeners closed."""
        self.assertFalse(self.challenges.http01_pending)
        self.assertEqual(self.challenges._tls_alpn01, {})
        self.assertEqual(_acmesolvers.ChallengeListeners._open, {})

    def assertIssued(self, issued: Any, names: list[str], key: Any) -> None:
        leaf = issued.chain[0]
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(sorted(san.get_values_for_type(x509.DNSName)), sorted(names))
        self.assertEqual(leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
                         key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.assertTrue(issued.chain[1].subject.rfc4514_string().startswith("CN=Pebble Intermediate CA"))
        self.assertEqual(issued.certificate_pem, b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issued.chain))
        self.assertEqual(issued.private_key_pem, private_key_pem(key))
        self.assertEqual(issued.not_after, leaf.not_valid_after_utc.timestamp())
        self.assertEqual(list(issued.metadata), ["url"])
        self.assertTrue(issued.metadata["url"].startswith(f"https://127.0.0.1:{self.pebble.port}/"))


class PebbleIssuanceTests(PebbleTestCase):
    async def test_http01(self) -> None:
        """HTTP-01 answered by txcaddy's own HTTP server (the port is in use, so the issuer relies on it)."""
        issuer = self.issuer(challenges={"http": {"alternate_port": self.pebble.http_port}, "tls-alpn": {"disabled": True},
                                         "bind_host": "127.0.0.1"})
        key = new_private_key("p256")
        issued = await issuer.issue(["a.test", "b.test"], key)
        self.assertIssued(issued, ["a.test", "b.test"], key)
        self.assertNothingPending()
        # The account is stored where certmagic keeps it, for this CA and email.
        prefix = f"acme/127.0.0.1-{self.pebble.port}-dir/users/admin@example.com/"
        self.assertEqual(sorted(k for k in self.storage.values if k.startswith("acme/")), [prefix + "admin.json", prefix + "admin.key"])
        registration = json.loads(self.storage.values[prefix + "admin.json"])
        self.assertEqual((registration["status"], registration["contact"]), ("valid", ["mailto:admin@example.com"]))
        self.assertTrue(registration["location"].startswith(f"https://127.0.0.1:{self.pebble.port}/"))

    async def test_tls_alpn01(self) -> None:
        """TLS-ALPN-01 answered in the handshake by a ``ServerTLS`` listener with no certificates."""
        _CountingProtocol.connections = 0
        tls = ServerTLS([ConnectionPolicy({})], CertificateCache(), challenges=self.challenges.tls_alpn01_certificate)
        port = REACTOR.listenTCP(
            self.pebble.tls_port, TLSMemoryBIOFactory(tls, False, Factory.forProtocol(_CountingProtocol)),
            interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        issuer = self.issuer(challenges={"http": {"disabled": True}, "tls-alpn": {"alternate_port": self.pebble.tls_port},
                                         "bind_host": "127.0.0.1"})
        key = new_private_key("p384")
        issued = await issuer.issue(["alpn.test"], key)
        self.assertIssued(issued, ["alpn.test"], key)
        self.assertGreaterEqual(_CountingProtocol.connections, 1)
        self.assertNothingPending()

    async def test_own_listener_when_port_free(self) -> None:
        """Nothing of ours on the HTTP-01 port: the issuer listens there itself, then closes it."""
        await self.service.stopService()
        issued = await self.issuer(challenges={"tls-alpn": {"disabled": True}, "http": {"alternate_port": self.pebble.http_port},
                                               "bind_host": "127.0.0.1"}).issue(["own.test"], new_private_key("p256"))
        self.assertEqual(issued.chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
                         .value.get_values_for_type(x509.DNSName), ["own.test"])
        self.assertNothingPending()
        with socket.socket() as s:  # the port is free again
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.pebble.http_port))

    async def test_account_reused(self) -> None:
        """A second issuer (a restart) reuses the stored account: by email, discovered without one,
        and by ``account_key`` (looked up at the CA for an empty storage); one registration."""
        await self.issuer().issue(["one.test"], new_private_key("p256"))
        self.assertEqual(self.pebble.count("POST /sign-me-up"), 1)
        stored = dict(self.storage.values)
        await self.issuer().issue(["two.test"], new_private_key("p256"))
        await self.issuer(email=None).issue(["three.test"], new_private_key("p256"))
        self.assertEqual(self.pebble.count("POST /sign-me-up"), 1)
        account_files = {k: v for k, v in self.storage.values.items() if k.startswith("acme/")}
        self.assertEqual(account_files, {k: v for k, v in stored.items() if k.startswith("acme/")})
        key_pem = next(v for k, v in account_files.items() if k.endswith(".key")).decode()
        self.storage = MemoryStorage(REACTOR)
        await self.issuer(email=None, account_key=key_pem).issue(["four.test"], new_private_key("p256"))
        self.assertEqual(self.storage.values.keys() & account_files.keys(), account_files.keys())
        self.assertEqual(self.pebble.count("POST /sign-me-up"), 2)  # the lookup (onlyReturnExisting)

    async def test_preferred_chain(self) -> None:
        """With alternate chains offered, ``root_common_name`` picks the chain up to that root."""
        roots = self.pebble.root_common_names()
        self.assertEqual(len(roots), 2)
        default = await self.issuer().issue(["chain.test"], new_private_key("p256"))
        self.assertEqual(default.chain[-1].issuer.rfc4514_string(), f"CN={roots[0]}")
        preferred = await self.issuer(preferred_chains={"root_common_name": [roots[1]]}).issue(
            ["chain.test"], new_private_key("p256"))
        self.assertEqual(preferred.chain[-1].issuer.rfc4514_string(), f"CN={roots[1]}")
        self.assertNotEqual(preferred.metadata["url"], default.metadata["url"])

    async def test_revoke(self) -> None:
        """A certificate is revoked with the issuer's account; revoking it again is the CA's error."""
        issuer = self.issuer()
        issued = await issuer.issue(["revoke.test"], new_private_key("p256"))
        await issuer.revoke(issued.certificate_pem, 4)
        with self.assertRaises(ACMEProblemError) as raised:
            await issuer.revoke(issued.certificate_pem)
        self.assertEqual(raised.exception.problem.code, "alreadyRevoked")
        self.assertIn("alreadyRevoked", str(raised.exception))

    async def test_challenge_fails(self) -> None:
        """Nothing answers where pebble looks: a clear error with the CA's problem, every type tried
        (a new order for the second), and nothing left pending."""
        await self.service.stopService()
        issuer = self.issuer(challenges={"http": {"alternate_port": free_port()}, "tls-alpn": {"alternate_port": free_port()},
                                         "bind_host": "127.0.0.1"})
        with self.assertRaises(ChallengeFailedError) as raised:
            await issuer.issue(["fail.test"], new_private_key("p256"))
        error = raised.exception
        self.assertEqual((error.identifier, error.names), ("fail.test", ("fail.test",)))
        self.assertEqual(error.challenge_type, "tls-alpn-01")  # http-01 failed first, then this one
        self.assertEqual(self.pebble.count("POST /order-plz"), 2)
        assert error.problem is not None
        self.assertEqual(error.problem.code, "unauthorized")  # pebble's code for a refused TLS connection
        self.assertIn("fail.test: tls-alpn-01 challenge failed: urn:ietf:params:acme:error:unauthorized", str(error))
        self.assertIn(f"Failed to connect to 127.0.0.1:{self.pebble.tls_port}", str(error))
        self.assertIn(self.pebble.directory, str(error))
        self.assertNothingPending()


    async def test_untrusted_directory(self) -> None:
        """``trusted_roots_pem_files`` replace the system roots: another root fails the TLS check."""
        other_root = os.path.join(self.pebble.workdir, "other-root.pem")
        with open(other_root, "wb") as f:
            f.write(TestCA("not pebble's").pem)
        with self.assertRaises(ACMEDirectoryError) as raised:
            await self.issuer(trusted_roots_pem_files=[other_root]).issue(["trust.test"], new_private_key("p256"))
        self.assertIn(f"fetching ACME directory {self.pebble.directory}: TLS error", str(raised.exception))
        self.assertIn("CERTIFICATE_VERIFY_FAILED", str(raised.exception))


class PebbleEABTests(PebbleTestCase):
    eab = EAB_KEYS

    async def test_external_account_binding(self) -> None:
        """A CA requiring EAB: refused without ``external_account``, issued with it."""
        with self.assertRaises(ACMEProblemError) as raised:
            await self.issuer().issue(["eab.test"], new_private_key("p256"))
        self.assertEqual(raised.exception.problem.code, "externalAccountRequired")
        self.assertIn("registering account [mailto:admin@example.com] with server", str(raised.exception))
        issuer = self.issuer(external_account={"key_id": "kid-1", "mac_key": EAB_KEYS["kid-1"]})
        key = new_private_key("p256")
        self.assertIssued(await issuer.issue(["eab.test"], key), ["eab.test"], key)

    async def test_zerossl_fetches_credentials(self) -> None:
        """The ``zerossl`` issuer gets EAB credentials from the (fake) ZeroSSL API, then registers."""
        fake = _FakeZeroSSL({"success": True, "eab_kid": "kid-1", "eab_hmac_key": EAB_KEYS["kid-1"]})
        port = REACTOR.listenTCP(0, Site(fake), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        issuer = self.issuer(module="zerossl", email=None)
        issuer.api_base = f"http://127.0.0.1:{port.getHost().port}/acme"
        issued = await issuer.issue(["zerossl.test"], new_private_key("p256"))
        self.assertEqual(issued.metadata["url"][:20], self.pebble.directory[:20])
        self.assertEqual(fake.requests[0][2], b"email=caddy%40zerossl.com")
        prefix = f"acme/127.0.0.1-{self.pebble.port}-dir/users/caddy@zerossl.com/caddy."
        self.assertEqual(sorted(k for k in self.storage.values if k.startswith("acme/")), [prefix + "json", prefix + "key"])


class DirectoryDownTests(TestCase):
    timeout = 10

    async def test_directory_unreachable(self) -> None:
        """Nothing at the CA's address: ACMEDirectoryError naming the names, the URL and the cause."""
        directory = f"https://127.0.0.1:{free_port()}/dir"
        issuer = load_acme_issuer({"ca": directory}, storage=MemoryStorage(REACTOR),
                                  challenges=Challenges(), reactor=REACTOR)
        with self.assertRaises(ACMEDirectoryError) as raised:
            await issuer.issue(["down.test"], new_private_key("p256"))
        message = str(raised.exception)
        self.assertTrue(message.startswith(f"obtaining certificate for ['down.test'] from {directory}: "
                                           f"fetching ACME directory {directory}: cannot connect"), message)
        self.assertEqual(raised.exception.names, ("down.test",))

