"""``acme_server``: the RFC 8555 protocol (``_acmeserver.ACMEServer``) with a clock and fake
validations, and the handler end to end: a txcaddy service on loopback serving the ACME CA
over HTTPS, certbot's ``acme`` client obtaining a certificate from it with ``http-01``
answered by a responder on another loopback port (``ACMEServers.targets``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
from typing import Any, cast

import josepy
import requests
from acme import challenges, client, crypto_util, messages
from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import resource, server
from zope.interface.verify import verifyObject

from tests._net import listen_local, port_number
from tests.tls._certs import TestCA
from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor
from txcaddy.interfaces import IHandler
from txcaddy.service import CaddyService
from txcaddy.tls import _x509
from txcaddy.tls._acmeserver import (
    ACME_IDENTIFIER_OID,
    ACMEProblem,
    ACMEServer,
    ACMEState,
    ChallengeTargets,
    Reply,
    check_tls_alpn01,
    key_authorization,
)
from txcaddy.tls.acmeserver import ACMEServerHandler, ACMEServers, load_acme_server

BASE = "https://ca.test/acme/"
ROOT = BASE + "local/"


def _jwk() -> josepy.JWKEC:
    return josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


class ProtocolTests(SynchronousTestCase):
    """The server object alone: replies as data, validations through fakes."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.ca = TestCA()
        self.served: dict[str, bytes] = {}
        self.server = ACMEServer(
            "local", ACMEState(), lambda: (self.ca.certificate, self.ca.key), lifetime=3600.0,
            http_get=self.http_get, txt_lookup=None, targets=ChallengeTargets(http_port=8080),
            clock=self.clock.seconds)
        self.fetched: list[tuple[str, int, str, str]] = []
        self.key = _jwk()

    def http_get(self, address: str, port: int, host: str, path: str) -> Deferred[bytes]:
        self.fetched.append((address, port, host, path))
        if path in self.served:
            return succeed(self.served[path])
        return fail(ConnectionRefusedError("connection refused"))

    def call(self, method: str, path: str, body: bytes = b"") -> Reply:
        reply = self.server.handle(method, path, BASE, body)
        assert isinstance(reply, Reply)
        return reply

    def nonce(self) -> bytes:
        headers = dict(self.call("HEAD", "local/new-nonce").headers)
        return josepy.decode_b64jose(headers["Replay-Nonce"])

    def post(self, path: str, payload: Any, *, kid: str | None = None, nonce: bytes | None = None,
             key: josepy.JWK | None = None) -> tuple[Reply, Any]:
        data = b"" if payload is None else json.dumps(payload).encode()
        signed = acme_jws.JWS.sign(data, key or self.key, josepy.ES256, nonce if nonce is not None else self.nonce(),
                                   url=ROOT + path, kid=kid)
        reply = self.call("POST", "local/" + path, signed.json_dumps().encode())
        return reply, json.loads(reply.body) if reply.body.startswith(b"{") else reply.body

    def account(self) -> str:
        reply, _ = self.post("new-account", {"termsOfServiceAgreed": True})
        return dict(reply.headers)["Location"]

    def test_directory(self) -> None:
        """The directory names smallstep's endpoint URLs under ``<prefix><ca>/``."""
        reply = self.call("GET", "local/directory")
        self.assertEqual(reply.status, 200)
        self.assertEqual(json.loads(reply.body)["newAccount"], ROOT + "new-account")
        self.assertEqual(json.loads(reply.body)["newNonce"], ROOT + "new-nonce")
        self.assertEqual(self.call("GET", "other/directory").status, 404)

    def test_bad_nonce(self) -> None:
        """A nonce never handed out, or used twice, is a 400 ``badNonce`` problem with a fresh nonce."""
        reply, body = self.post("new-account", {}, nonce=b"never-issued")
        self.assertEqual(reply.status, 400)
        self.assertEqual(dict(reply.headers)["Content-Type"], "application/problem+json")
        self.assertEqual(body["type"], "urn:ietf:params:acme:error:badNonce")
        self.assertIn("Replay-Nonce", dict(reply.headers))
        nonce = self.nonce()
        self.assertEqual(self.post("new-account", {}, nonce=nonce)[0].status, 201)
        self.assertEqual(self.post("new-account", {}, nonce=nonce)[1]["type"], "urn:ietf:params:acme:error:badNonce")

    def test_unknown_account(self) -> None:
        """A kid naming no account is 400 ``accountDoesNotExist``; so is onlyReturnExisting for a new key."""
        reply, body = self.post("new-order", {"identifiers": [{"type": "dns", "value": "a.test"}]},
                                kid=ROOT + "account/nobody")
        self.assertEqual((reply.status, body["type"]), (400, "urn:ietf:params:acme:error:accountDoesNotExist"))
        reply, body = self.post("new-account", {"onlyReturnExisting": True})
        self.assertEqual((reply.status, body["type"]), (400, "urn:ietf:params:acme:error:accountDoesNotExist"))

    def test_same_key_same_account(self) -> None:
        """Registering a key again answers 200 with the same account URL."""
        first = self.account()
        reply, body = self.post("new-account", {"termsOfServiceAgreed": True})
        self.assertEqual((reply.status, dict(reply.headers)["Location"], body["status"]), (200, first, "valid"))

    def test_url_and_signature_checked(self) -> None:
        """A JWS for another URL is refused (401 unauthorized); a tampered signature is malformed."""
        signed = acme_jws.JWS.sign(b"{}", self.key, josepy.ES256, self.nonce(), url=ROOT + "new-order")
        reply = self.call("POST", "local/new-account", signed.json_dumps().encode())
        self.assertEqual(json.loads(reply.body)["type"], "urn:ietf:params:acme:error:unauthorized")
        signed = acme_jws.JWS.sign(b"{}", self.key, josepy.ES256, self.nonce(), url=ROOT + "new-account")
        body = json.loads(signed.json_dumps())
        body["payload"] = josepy.encode_b64jose(b'{"contact": []}')
        reply = self.call("POST", "local/new-account", json.dumps(body).encode())
        self.assertEqual((reply.status, json.loads(reply.body)["type"]), (400, "urn:ietf:params:acme:error:malformed"))

    def _order(self, kid: str, name: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
        reply, order = self.post("new-order", {"identifiers": [{"type": "dns", "value": name}]}, kid=kid)
        self.assertEqual((reply.status, order["status"]), (201, "pending"))
        authz_url = order["authorizations"][0]
        _, authz = self.post(authz_url.removeprefix(ROOT), None, kid=kid)
        return dict(reply.headers)["Location"], order, authz

    def test_http01_issue(self) -> None:
        """http-01 served right: challenge, authorization valid, order ready; finalize signs the CSR's key."""
        kid = self.account()
        order_url, order, authz = self._order(kid, "www.example.test")
        self.assertEqual([c["type"] for c in authz["challenges"]], ["http-01", "dns-01", "tls-alpn-01"])
        challenge = authz["challenges"][0]
        path = "/.well-known/acme-challenge/" + challenge["token"]
        self.served[path] = key_authorization(challenge["token"], self.key).encode() + b"\n"
        # finalizing before the order is ready: 403 orderNotReady
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(
            x509.SubjectAlternativeName([x509.DNSName("www.example.test")]), critical=False).sign(
            leaf_key, hashes.SHA256())
        csr_b64 = josepy.encode_b64jose(csr.public_bytes(serialization.Encoding.DER))
        reply, problem = self.post(order["finalize"].removeprefix(ROOT), {"csr": csr_b64}, kid=kid)
        self.assertEqual((reply.status, problem["type"]), (403, "urn:ietf:params:acme:error:orderNotReady"))
        reply, body = self.post(challenge["url"].removeprefix(ROOT), {}, kid=kid)
        self.assertEqual(body["status"], "valid")
        self.assertEqual(self.fetched, [("www.example.test", 8080, "www.example.test", path)])
        _, order = self.post(order_url.removeprefix(ROOT), None, kid=kid)
        self.assertEqual(order["status"], "ready")
        reply, order = self.post(order["finalize"].removeprefix(ROOT), {"csr": csr_b64}, kid=kid)
        self.assertEqual(order["status"], "valid")
        reply, pem = self.post(order["certificate"].removeprefix(ROOT), None, kid=kid)
        self.assertEqual(dict(reply.headers)["Content-Type"], "application/pem-certificate-chain")
        leaf, issuer = x509.load_pem_x509_certificates(pem)
        self.assertEqual(issuer, self.ca.certificate)
        self.assertTrue(_x509.issued_by(leaf, self.ca.certificate))
        self.assertEqual(leaf.public_key(), leaf_key.public_key())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["www.example.test"])
        self.assertEqual(int((leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds()), 3660)

    def test_failed_challenge_invalidates_order(self) -> None:
        """A challenge whose resource is missing: challenge, authorization and order become invalid."""
        kid = self.account()
        order_url, _, authz = self._order(kid, "gone.example.test")
        _, body = self.post(authz["challenges"][0]["url"].removeprefix(ROOT), {}, kid=kid)
        self.assertEqual(body["status"], "invalid")
        self.assertEqual(body["error"]["type"], "urn:ietf:params:acme:error:connection")
        _, order = self.post(order_url.removeprefix(ROOT), None, kid=kid)
        self.assertEqual(order["status"], "invalid")
        self.assertEqual(order["error"]["type"], "urn:ietf:params:acme:error:connection")

    def test_dns01(self) -> None:
        """dns-01 looks up ``_acme-challenge.<name>`` TXT for the key authorization's digest; wildcards get only dns-01."""
        kid = self.account()
        looked_up: list[str] = []
        records: list[bytes] = []

        def lookup(name: str) -> Deferred[list[bytes]]:
            looked_up.append(name)
            return succeed(records)

        self.server.txt_lookup = lookup
        order_url, _, authz = self._order(kid, "*.wild.example.test")
        self.assertEqual((authz["identifier"]["value"], authz["wildcard"]), ("wild.example.test", True))
        [challenge] = authz["challenges"]
        self.assertEqual(challenge["type"], "dns-01")
        digest = hashlib.sha256(key_authorization(challenge["token"], self.key).encode()).digest()
        records.append(josepy.encode_b64jose(digest).encode())
        _, body = self.post(challenge["url"].removeprefix(ROOT), {}, kid=kid)
        self.assertEqual((body["status"], looked_up), ("valid", ["_acme-challenge.wild.example.test"]))
        _, order = self.post(order_url.removeprefix(ROOT), None, kid=kid)
        self.assertEqual(order["status"], "ready")

    def test_wrong_key_authorization(self) -> None:
        """A served body that is not the key authorization fails with ``incorrectResponse``."""
        kid = self.account()
        _, _, authz = self._order(kid, "wrong.example.test")
        challenge = authz["challenges"][0]
        self.served["/.well-known/acme-challenge/" + challenge["token"]] = b"nope"
        _, body = self.post(challenge["url"].removeprefix(ROOT), {}, kid=kid)
        self.assertEqual((body["status"], body["error"]["type"]),
                         ("invalid", "urn:ietf:params:acme:error:incorrectResponse"))

    def test_other_accounts_objects(self) -> None:
        """An order is not readable with another account's key (401 unauthorized)."""
        kid = self.account()
        order_url, _, _ = self._order(kid, "mine.example.test")
        other = _jwk()
        reply, _ = self.post("new-account", {}, key=other)
        other_kid = dict(reply.headers)["Location"]
        reply, body = self.post(order_url.removeprefix(ROOT), None, kid=other_kid, key=other)
        self.assertEqual((reply.status, body["type"]), (401, "urn:ietf:params:acme:error:unauthorized"))

    def test_order_expires(self) -> None:
        """A pending order past its expiry (a day) reads as invalid."""
        kid = self.account()
        order_url, _, _ = self._order(kid, "late.example.test")
        self.clock.advance(24 * 3600 + 1)
        _, order = self.post(order_url.removeprefix(ROOT), None, kid=kid)
        self.assertEqual(order["status"], "invalid")


class TLSALPNCheckTests(SynchronousTestCase):
    def certificate(self, names: list[str], digest: bytes, critical: bool = True) -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        return (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(x509.Name([]))
                .public_key(key.public_key()).serial_number(1).not_valid_before(now)
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=True)
                .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest), critical=critical)
                .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))

    def test_checks(self) -> None:
        """RFC 8737: the right certificate passes; wrong ALPN, name, digest or a non-critical extension fail."""
        digest = hashlib.sha256(b"tok.thumb").digest()
        check_tls_alpn01("a.test", "tok.thumb", "acme-tls/1", self.certificate(["a.test"], digest))
        failing = [
            ("h2", self.certificate(["a.test"], digest)),
            ("acme-tls/1", self.certificate(["b.test"], digest)),
            ("acme-tls/1", self.certificate(["a.test", "b.test"], digest)),
            ("acme-tls/1", self.certificate(["a.test"], bytes(32))),
            ("acme-tls/1", self.certificate(["a.test"], digest, critical=False)),
        ]
        for alpn, der in failing:
            with self.assertRaises(ACMEProblem) as caught:
                check_tls_alpn01("a.test", "tok.thumb", alpn, der)
            self.assertEqual(caught.exception.kind, "incorrectResponse")


class LoadTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Defaults: CA ``local``, prefix ``/acme/``, lifetime 12h; the handler is an IHandler."""
        context = type("Ctx", (), {"reactor": Clock(), "runtime": None, "want_pki": False})()
        handler = load_acme_server({}, context)
        self.assertTrue(verifyObject(IHandler, handler))
        self.assertEqual((handler.ca_id, handler.path_prefix, handler.lifetime), ("local", "/acme/", 43200.0))
        self.assertTrue(context.want_pki)
        handler = load_acme_server({"ca": "other", "path_prefix": "/x/", "lifetime": "1h"}, context)
        self.assertIsInstance(handler, ACMEServerHandler)
        self.assertEqual((handler.ca_id, handler.path_prefix, handler.lifetime), ("other", "/x/", 3600.0))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Responder(resource.Resource):
    """Serves ``/.well-known/acme-challenge/<token>`` from ``tokens``; records the Host fields."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, str] = {}
        self.hosts: list[str] = []

    def render_GET(self, request: Any) -> bytes:  # noqa: N802 - Twisted's naming
        self.hosts.append(request.getHeader("host"))
        token = request.path.decode().rpartition("/")[2]
        if token not in self.tokens:
            request.setResponseCode(404)
            return b""
        return self.tokens[token].encode()


class ServiceCase(TestCase):
    """A txcaddy service serving ``acme_server`` on 127.0.0.1 (``localhost``), a challenge responder."""

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]  # trial waits for the Deferred
        self.storage = os.path.abspath(self.mktemp())
        self.https_port = free_port()
        self.responder = Responder()
        site = server.Site(self.responder)
        site.noisy = False
        listening = listen_local(site)
        self.addCleanup(listening.stopListening)
        caddyfile = (
            f"{{\n\thttp_port {free_port()}\n\thttps_port {self.https_port}\n\tadmin off\n\tskip_install_trust\n"
            f"\tstorage file_system {{\n\t\troot {self.storage}\n\t}}\n}}\n"
            "localhost {\n\tacme_server\n}\n"
        )
        self.service: CaddyService = fromCaddyfile(caddyfile, reactor=default_reactor())
        servers = self.service.runtime.get(ACMEServers)
        servers.targets.http_port = port_number(listening)
        servers.targets.hosts["issued.example.test"] = "127.0.0.1"
        self.service.startService()
        self.addCleanup(self.service.stopService)
        assert self.service.tls is not None and self.service.tls.manager is not None
        yield self.service.tls.manager.ready
        self.root = os.path.join(self.storage, "pki", "authorities", "local", "root.crt")
        self.directory = f"https://localhost:{self.https_port}/acme/local/directory"

    def intermediate(self) -> x509.Certificate:
        with open(os.path.join(self.storage, "pki", "authorities", "local", "intermediate.crt"), "rb") as f:
            return x509.load_pem_x509_certificate(f.read())

    def obtain(self, name: str) -> tuple[str, str]:
        """In a thread: register, order ``name``, answer http-01, finalize; the chain PEM and the
        order status (or the client's exception name when the order failed).

        ``verify_ssl`` goes to requests' ``verify``, which takes a CA bundle path (typed bool in acme).
        """
        key = _jwk()
        net = client.ClientNetwork(key, alg=josepy.ES256, verify_ssl=cast(Any, self.root), user_agent="txcaddy-test")
        directory = client.ClientV2.get_directory(self.directory, net)
        acme = client.ClientV2(directory, net)
        acme.new_account(messages.NewRegistration.from_data(email="test@example.test", terms_of_service_agreed=True))
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        order = acme.new_order(crypto_util.make_csr(pem, [name]))
        for authz in order.authorizations:
            challenge = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
            response, validation = challenge.response_and_validation(key)
            self.responder.tokens[challenge.chall.encode("token")] = validation
            acme.answer_challenge(challenge, response)
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=30)
        try:
            order = acme.poll_and_finalize(order, deadline)
        except Exception as e:  # the order went invalid: report its status
            return "", type(e).__name__
        return order.fullchain_pem, order.body.status.name



class EndToEndTests(ServiceCase):
    """Certbot's ``acme`` client against the service."""

    @inlineCallbacks
    def test_obtain_certificate(self) -> Any:
        """The ``acme`` client gets a chain whose leaf names the identifier, signed by the local intermediate."""
        chain, status = yield deferToThread(self.obtain, "issued.example.test")
        self.assertEqual(status, "valid")
        leaf, issuer = x509.load_pem_x509_certificates(chain.encode())
        intermediate = self.intermediate()
        self.assertEqual(issuer, intermediate)
        self.assertTrue(_x509.issued_by(leaf, intermediate))
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["issued.example.test"])
        self.assertEqual(self.responder.hosts, ["issued.example.test"])

    @inlineCallbacks
    def test_failed_challenge(self) -> Any:
        """With nothing served for the token, the order ends invalid (the client raises)."""
        self.responder.tokens = _Refusing()
        _, status = yield deferToThread(self.obtain, "issued.example.test")
        self.assertEqual(status, "ValidationError")

    @inlineCallbacks
    def test_directory_and_pass_through(self) -> Any:
        """The directory names URLs on the request's host and port; paths outside ``/acme/`` go to the next handler."""
        base = f"https://localhost:{self.https_port}"

        def get(path: str) -> requests.Response:
            return requests.get(base + path, verify=self.root, timeout=10)

        directory = yield deferToThread(get, "/acme/local/directory")
        self.assertEqual(directory.json()["newOrder"], base + "/acme/local/new-order")
        nonce = yield deferToThread(get, "/acme/local/new-nonce")
        self.assertEqual((nonce.status_code, nonce.headers["Cache-Control"]), (204, "no-store"))
        self.assertEqual(nonce.headers["Link"], f'<{base}/acme/local/directory>;rel="index"')
        other = yield deferToThread(get, "/elsewhere")
        self.assertEqual((other.status_code, other.content, "Replay-Nonce" in other.headers), (200, b"", False))

    @inlineCallbacks
    def test_bad_nonce_over_https(self) -> Any:
        """Over HTTPS a made-up nonce is a 400 ``badNonce`` problem document."""
        url = f"https://localhost:{self.https_port}/acme/local/new-account"
        signed = acme_jws.JWS.sign(b"{}", _jwk(), josepy.ES256, b"made-up", url=url)

        def post() -> requests.Response:
            return requests.post(url, data=signed.json_dumps(), verify=self.root,
                                 headers={"Content-Type": "application/jose+json"}, timeout=10)

        response = yield deferToThread(post)
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.headers["Content-Type"], "application/problem+json")
        self.assertEqual(response.json()["type"], "urn:ietf:params:acme:error:badNonce")
        self.assertTrue(response.headers["Replay-Nonce"])


class _Refusing(dict[str, str]):
    def __setitem__(self, key: str, value: str) -> None:
        pass


class OwnIssuerTests(ServiceCase):
    """txcaddy's own ACME issuer (``tls { ca …; ca_root … }``) against the ``acme_server`` of another service."""

    def validated(self, servers: ACMEServers) -> list[str]:
        """The types of the challenges the CA found valid."""
        return [c.type for a in servers.state("local").authzs.values() for c in a.challenges if c.status == "valid"]

    @inlineCallbacks
    def test_txcaddy_issuer_obtains(self) -> Any:
        """A second service gets ``issued.example.test`` from the first over http-01 on its own HTTP port."""
        storage = os.path.abspath(self.mktemp())
        http_port = free_port()
        servers = self.service.runtime.get(ACMEServers)
        servers.targets.http_port = http_port  # the second service answers http-01 there
        caddyfile = (
            f"{{\n\thttp_port {http_port}\n\thttps_port {free_port()}\n\tadmin off\n"
            f"\tstorage file_system {{\n\t\troot {storage}\n\t}}\n}}\n"
            f"issued.example.test {{\n\ttls {{\n\t\tca {self.directory}\n\t\tca_root {self.root}\n\t}}\n"
            "\trespond hi\n}\n"
        )
        other: CaddyService = fromCaddyfile(caddyfile, reactor=default_reactor())
        other.startService()
        self.addCleanup(other.stopService)
        assert other.tls is not None and other.tls.manager is not None
        yield other.tls.manager.ready
        found = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(storage, "certificates"))
                 for f in files if f == "issued.example.test.crt"]
        self.assertEqual(len(found), 1, found)
        self.assertEqual(self.validated(servers), ["http-01"])
        self.assertIn("localhost", found[0])  # the issuer directory is named after the ACME CA's host
        with open(found[0], "rb") as f:
            leaf, issuer = x509.load_pem_x509_certificates(f.read())
        self.assertEqual(issuer, self.intermediate())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["issued.example.test"])

    @inlineCallbacks
    def test_txcaddy_issuer_tls_alpn(self) -> Any:
        """With http-01 disabled the second service answers tls-alpn-01 in its handshakes, and gets the certificate."""
        storage = os.path.abspath(self.mktemp())
        https_port = free_port()
        servers = self.service.runtime.get(ACMEServers)
        servers.targets.http_port = free_port()  # nothing there: only tls-alpn-01 can succeed
        servers.targets.tls_alpn_port = https_port
        caddyfile = (
            f"{{\n\thttp_port {free_port()}\n\thttps_port {https_port}\n\tadmin off\n"
            f"\tstorage file_system {{\n\t\troot {storage}\n\t}}\n}}\n"
            f"issued.example.test {{\n\ttls {{\n\t\tissuer acme {{\n\t\t\tdir {self.directory}\n"
            f"\t\t\ttrusted_roots {self.root}\n\t\t\tdisable_http_challenge\n\t\t}}\n\t}}\n"
            "\trespond hi\n}\n"
        )
        other: CaddyService = fromCaddyfile(caddyfile, reactor=default_reactor())
        other.startService()
        self.addCleanup(other.stopService)
        assert other.tls is not None and other.tls.manager is not None
        yield other.tls.manager.ready
        found = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(storage, "certificates"))
                 for f in files if f == "issued.example.test.crt"]
        self.assertEqual(len(found), 1, found)
        with open(found[0], "rb") as f:
            leaf, issuer = x509.load_pem_x509_certificates(f.read())
        self.assertEqual(issuer, self.intermediate())
        self.assertEqual(self.validated(servers), ["tls-alpn-01"])
