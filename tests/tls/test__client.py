"""HTTPS upstreams: the ``tls`` transport options against a real TLS server, and their loading."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, CertificateOptions, trustRootFromCertificates
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.names import dns
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import server

from tests._net import listen_local, port_number
from tests.reverseproxy._client import (
    ADDR,
    HOST,
    Hello,
    TrackedFactory,
    dns_server,
    fetch,
    load_transport,
)
from txcaddy._reactor import default_reactor
from txcaddy.errors import ConfigError
from txcaddy.reverseproxy._alpn import ALPN_H2_H1
from txcaddy.reverseproxy.transport import (
    DialError,
    HTTPTransport,
    TLSHandshakeError,
    TLSHandshakeTimeout,
    UpstreamAddress,
    UpstreamError,
)
from txcaddy.testing import make_request
from txcaddy.tls._client import _allow_one_renegotiation


def _certificate(subject, issuer_key, issuer_name, key, *, ca=False, dns_names=(), ips=(),
                 client=False):
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        sans = [x509.DNSName(n) for n in dns_names] + [
            x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


class _PKI:
    """A test CA with a server certificate for backend.test / 127.0.0.1, and a client CA."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _certificate("txcaddy test CA", None, None, self.ca_key, ca=True)
        self.server_key = ec.generate_private_key(ec.SECP256R1())
        self.server = _certificate("backend.test", self.ca_key, self.ca.subject, self.server_key,
                                   dns_names=["backend.test"], ips=["127.0.0.1"])
        self.client_ca_key = ec.generate_private_key(ec.SECP256R1())
        self.client_ca = _certificate("txcaddy client CA", None, None, self.client_ca_key, ca=True)
        self.client_key = ec.generate_private_key(ec.SECP256R1())
        self.client = _certificate("proxy", self.client_ca_key, self.client_ca.subject,
                                   self.client_key, client=True)
        self.ca_file = self._write(directory, "ca.pem", self.ca.public_bytes(Encoding.PEM))
        self.client_file = self._write(directory, "client.pem", self.client.public_bytes(Encoding.PEM))
        self.client_key_file = self._write(directory, "client.key", self.client_key.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        self.ca_der_base64 = base64.b64encode(self.ca.public_bytes(Encoding.DER)).decode()

    @staticmethod
    def _write(directory: str, name: str, data: bytes) -> str:
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def server_options(self, require_client_certificate: bool = False) -> CertificateOptions:
        extra = {}
        if require_client_certificate:
            extra["trustRoot"] = trustRootFromCertificates(
                [Certificate(crypto.X509.from_cryptography(self.client_ca))])
        return CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(self.server_key),
            certificate=crypto.X509.from_cryptography(self.server), **extra)


def shared_pki(test: SynchronousTestCase) -> _PKI:
    """The module's one ``_PKI`` (its keys are slow to make), made in the first test's directory."""
    pki = TLSUpstreamTests.made_pki
    if pki is None:
        pki = TLSUpstreamTests.made_pki = _PKI(os.path.abspath(test.mktemp()))
    return pki


class TLSUpstreamTests(TestCase):
    """A real Twisted TLS server on 127.0.0.1 with a CA made for the test."""

    made_pki: _PKI | None = None

    def setUp(self) -> None:
        self.reactor = default_reactor()
        self.pki = shared_pki(self)

    def serve(self, tls=True, require_client_certificate=False):
        """Start a server; return its address and the server names clients sent (SNI)."""
        site = server.Site(Hello(), reactor=self.reactor, timeout=None)
        sni: list[bytes | None] = []
        if tls:
            options = self.pki.server_options(require_client_certificate)
            options.getContext().set_tlsext_servername_callback(
                lambda connection: sni.append(connection.get_servername()))
            factory = TrackedFactory(TLSMemoryBIOFactory(options, False, site))
        else:
            factory = TrackedFactory(site)
        port = listen_local(factory, reactor=self.reactor)
        self.addCleanup(port.stopListening)
        self.addCleanup(factory.all_closed)
        return UpstreamAddress.parse(f"127.0.0.1:{port_number(port)}"), sni

    def transport(self, config):
        transport = HTTPTransport.from_config(config, self.reactor)
        self.addCleanup(transport.close_idle)
        return transport

    @defer.inlineCallbacks
    def test_trusted_by_root_ca_pem_files(self):
        """A CA from ``root_ca_pem_files`` verifies the upstream; an IP address sends no SNI."""
        address, sni = self.serve()
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file]}})
        self.assertTrue(transport.tls)
        self.assertTrue(transport.uses_tls(address))
        result = yield fetch(transport, address)
        self.assertEqual(result, (200, b"hello over tls"))
        self.assertEqual(sni, [None])  # no SNI for an IP address (RFC 6066)

    @defer.inlineCallbacks
    def test_trusted_by_root_ca_pool(self):
        """A CA from ``root_ca_pool`` (base64 DER) verifies the upstream."""
        address, _ = self.serve()
        transport = self.transport({"tls": {"root_ca_pool": [self.pki.ca_der_base64]}})
        result = yield fetch(transport, address)
        self.assertEqual(result, (200, b"hello over tls"))

    @defer.inlineCallbacks
    def test_untrusted_certificate_is_a_502_but_not_a_dial_error(self):
        """An untrusted certificate is a 502 ``TLSHandshakeError``, not a dial error; slot freed."""
        address, _ = self.serve()
        transport = self.transport({"tls": {}})  # system roots do not know the test CA
        error = yield self.assertFailure(fetch(transport, address), TLSHandshakeError)
        self.assertNotIsInstance(error, DialError)
        self.assertEqual(error.status, 502)
        self.assertIn("certificate verify failed", str(error))
        yield deferLater(self.reactor, 0, lambda: None)  # the slot frees after the error
        creator = transport.tls_config.creator_for("127.0.0.1", alpn=ALPN_H2_H1)
        self.assertEqual(transport.alpn_pool.open_count(address, tls=creator), 0)

    @defer.inlineCallbacks
    def test_insecure_skip_verify(self):
        """``insecure_skip_verify`` accepts an unknown certificate."""
        address, _ = self.serve()
        transport = self.transport({"tls": {"insecure_skip_verify": True}})
        result = yield fetch(transport, address)
        self.assertEqual(result, (200, b"hello over tls"))

    @defer.inlineCallbacks
    def test_server_name_is_sent_and_verified(self):
        """``server_name`` is sent as SNI and checked against the certificate."""
        address, sni = self.serve()
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file],
                                            "server_name": "backend.test"}})
        result = yield fetch(transport, address)
        self.assertEqual(result, (200, b"hello over tls"))
        self.assertEqual(sni, [b"backend.test"])

    @defer.inlineCallbacks
    def test_wrong_server_name_fails(self):
        """A ``server_name`` the certificate does not cover fails the handshake (502)."""
        address, sni = self.serve()
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file],
                                            "server_name": "other.test"}})
        error = yield self.assertFailure(fetch(transport, address), TLSHandshakeError)
        self.assertEqual(error.status, 502)
        self.assertIn("other.test", str(error))
        self.assertEqual(sni, [b"other.test"])

    @defer.inlineCallbacks
    def test_client_certificate(self):
        """The client certificate is presented to an upstream that requires one."""
        address, _ = self.serve(require_client_certificate=True)
        transport = self.transport({"tls": {
            "root_ca_pem_files": [self.pki.ca_file],
            "client_certificate_file": self.pki.client_file,
            "client_certificate_key_file": self.pki.client_key_file,
        }})
        result = yield fetch(transport, address)
        self.assertEqual(result, (200, b"hello over tls"))

    @defer.inlineCallbacks
    def test_client_certificate_missing(self):
        """With TLS 1.3 the server rejects it after our side finished: still a 502."""
        address, _ = self.serve(require_client_certificate=True)
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file]}})
        error = yield self.assertFailure(fetch(transport, address), UpstreamError)
        self.assertEqual(error.status, 502)

    @defer.inlineCallbacks
    def test_except_ports_speak_plain_http(self):
        """Ports in ``except_ports`` get plain HTTP."""
        address, _ = self.serve(tls=False)
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file],
                                            "except_ports": [str(address.port)]}})
        self.assertFalse(transport.uses_tls(address))
        result = yield fetch(transport, address)
        self.assertEqual(result, (200, b"hello over plain http"))

    @defer.inlineCallbacks
    def test_host_name_upstream_is_the_server_name(self):
        """Dialled by name (resolved by our DNS server), the name is the SNI and is verified."""
        address, sni = self.serve()
        resolver = dns_server(self, {b"backend.test": [dns.Record_A("127.0.0.1", ttl=60)]})
        transport = self.transport({"tls": {"root_ca_pem_files": [self.pki.ca_file]},
                                    "resolver": {"addresses": [resolver]}})
        result = yield fetch(transport, UpstreamAddress.parse(f"backend.test:{address.port}"))
        self.assertEqual(result, (200, b"hello over tls"))
        self.assertEqual(sni, [b"backend.test"])

    @defer.inlineCallbacks
    def test_connections_reused_per_server_name(self):
        """Connections are pooled per rendered server name: one per name, reused."""
        address, sni = self.serve()
        transport = self.transport({"tls": {"insecure_skip_verify": True,
                                            "server_name": "{http.request.host}"}})
        for host in ("a.test", "b.test", "a.test"):
            result = yield fetch(transport, address, request=make_request(host=host))
            self.assertEqual(result[0], 200)
        self.assertEqual(sni, [b"a.test", b"b.test"])
        # Default versions ("1.1", "2"): the pool of connections offering ALPN h2.
        creator = transport.tls_config.creator_for("127.0.0.1", make_request(host="a.test"),
                                                   ALPN_H2_H1)
        self.assertEqual(transport.alpn_pool.idle_count(address, tls=creator), 1)
        self.assertEqual(transport.alpn_pool.idle_count(address), 0)
        self.assertEqual(transport.pool.idle_count(address), 0)


class TLSConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pki = shared_pki(self)

    def test_https_upstream_defaults(self) -> None:
        """An empty ``tls`` object: verify, no server name or handshake timeout, no renegotiation."""
        transport = load_transport({"tls": {}})
        tls = transport.tls_config
        self.assertEqual((tls.verify, tls.server_name, tls.handshake_timeout, tls.renegotiation,
                          tls.except_ports), (True, "", None, "never", frozenset()))
        self.assertEqual(transport.pool.tls_handshake_timeout, None)
        self.assertEqual(load_transport({"tls": {"handshake_timeout": "10s"}}).pool.tls_handshake_timeout,
                         10.0)

    def test_server_name_placeholders(self) -> None:
        """Placeholders in ``server_name`` render per request; empty falls back to the dial host."""
        tls = load_transport({"tls": {"server_name": "{http.request.host}"}}).tls_config
        self.assertEqual(tls.creator_for("10.0.0.1", make_request(host="app.test")).name, "app.test")
        empty = load_transport({"tls": {"server_name": "{http.vars.unset}"}}).tls_config
        self.assertEqual(empty.creator_for("10.0.0.1", make_request()).name, "10.0.0.1")
        static = load_transport({"tls": {"server_name": "fixed.test"}}).tls_config
        self.assertIs(static.creator_for("10.0.0.1"), static.creator_for("10.0.0.2"))

    def test_creators_equal_by_server_name(self) -> None:
        """Pooled connections are keyed by creator: equal settings and name share them."""
        tls = load_transport({"tls": {"insecure_skip_verify": True}}).tls_config
        first = tls.creator_for("a.test")
        tls._creators.clear()
        again = tls.creator_for("a.test")
        self.assertIsNot(first, again)
        self.assertEqual(first, again)
        self.assertEqual(hash(first), hash(again))
        self.assertNotEqual(first, tls.creator_for("b.test"))
        other = load_transport({"tls": {"insecure_skip_verify": True}}).tls_config
        self.assertNotEqual(first, other.creator_for("a.test"))

    def test_config_errors(self) -> None:
        """Bad TLS settings are config errors with Caddy's messages."""
        cases = [
            ({"client_certificate_file": self.pki.client_file}, "without client_certificate_key_file"),
            ({"client_certificate_key_file": self.pki.client_key_file}, "without client_certificate_file"),
            ({"client_certificate_file": self.pki.client_file,
              "client_certificate_key_file": self.pki.ca_file}, "loading client certificate key pair"),
            ({"client_certificate_automate": "proxy.test"}, "not supported"),
            ({"root_ca_pem_files": ["/nonexistent/ca.pem"]}, "failed reading ca cert"),
            ({"root_ca_pool": ["not base64!"]}, "parsing CA certificate"),
            ({"renegotiation": "twice"}, "invalid TLS renegotiation level: twice"),
        ]
        for config, message in cases:
            error = self.assertRaises(ConfigError, load_transport, {"tls": config})
            self.assertIn(message, str(error))

    def test_key_not_matching_certificate(self) -> None:
        """A client key that does not match its certificate is a config error."""
        other = ec.generate_private_key(ec.SECP256R1())
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(other.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        error = self.assertRaises(ConfigError, load_transport, {"tls": {
            "client_certificate_file": self.pki.client_file, "client_certificate_key_file": path}})
        self.assertIn("loading client certificate key pair", str(error))

    def test_key_that_cannot_sign(self) -> None:
        """A client key file holding a key that cannot sign (X25519) is a config error, as in Go."""
        other = x25519.X25519PrivateKey.generate()
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(other.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        error = self.assertRaises(ConfigError, load_transport, {"tls": {
            "client_certificate_file": self.pki.client_file, "client_certificate_key_file": path}})
        self.assertIn("loading client certificate key pair: tls: found unknown private key type",
                      str(error))

    def connection(self, renegotiation):
        tls = load_transport({"tls": {"insecure_skip_verify": True, "renegotiation": renegotiation}}).tls_config
        factory = TLSMemoryBIOFactory(tls.creator_for("backend.test"), True,
                                      Factory.forProtocol(Protocol))
        protocol = factory.buildProtocol(None)
        return tls.creator_for("backend.test").clientConnectionForTLS(protocol)

    def test_renegotiation(self) -> None:
        """``renegotiation`` ``never`` sets OP_NO_RENEGOTIATION; ``once`` and ``freely`` do not."""
        never = self.connection("never")
        self.assertTrue(never.set_options(0) & SSL.OP_NO_RENEGOTIATION)
        freely = self.connection("freely")
        self.assertFalse(freely.set_options(0) & SSL.OP_NO_RENEGOTIATION)
        once = self.connection("once")
        self.assertFalse(once.set_options(0) & SSL.OP_NO_RENEGOTIATION)

    def test_renegotiation_once(self) -> None:
        """The first handshake and one renegotiation are allowed, then refused."""

        class Connection:
            options = 0

            def set_options(self, options):
                self.options |= options

        callback, connection = _allow_one_renegotiation(), Connection()
        callback(connection, SSL.SSL_CB_HANDSHAKE_START, 1)
        callback(connection, SSL.SSL_CB_HANDSHAKE_DONE, 1)
        self.assertEqual(connection.options, 0)
        callback(connection, SSL.SSL_CB_HANDSHAKE_DONE, 1)
        self.assertEqual(connection.options, SSL.OP_NO_RENEGOTIATION)

    def test_handshake_timeout_is_a_504(self) -> None:
        """``handshake_timeout`` expiring aborts the connection: a 504 ``TLSHandshakeTimeout``."""
        reactor = MemoryReactorClock()
        transport = load_transport({"tls": {"insecure_skip_verify": True, "handshake_timeout": "2s"}},
                          reactor)
        failures: list[Failure] = []
        exchange = transport.request(ADDR, b"GET", b"/", HOST)
        exchange.head.addErrback(failures.append)
        host, port, factory, _t, _b = reactor.tcpClients[0]
        proto = factory.buildProtocol(IPv4Address("TCP", host, port))
        assert proto is not None
        wire = StringTransport()
        proto.makeConnection(wire)
        self.assertTrue(wire.value().startswith(b"\x16\x03"))  # the ClientHello went out
        reactor.advance(1.9)
        self.assertEqual(failures, [])
        reactor.advance(0.1)
        self.assertTrue(wire.disconnected)
        proto.connectionLost(Failure(ConnectionLost("aborted")))
        error = failures[0].value
        assert isinstance(error, TLSHandshakeTimeout), failures[0]
        self.assertEqual(error.status, 504)
        self.assertFalse(exchange.sent_anything)
