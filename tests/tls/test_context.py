"""Server TLS (``txcaddy.tls.context``): real OpenSSL handshakes between memory BIOs.

Each test makes a ``ServerTLS`` from connection-policy JSON, a client ``SSL.Connection``
with the SNI, ALPN and versions it wants, and pumps the handshake bytes between them.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.errors import ConfigError
from txcaddy.tls.certificates import Certificate, CertificateCache
from txcaddy.tls.context import ConnectionPolicy, ServerTLS, TLSState

from ._certs import TestCA


def handshake(
    server: ServerTLS,
    server_name: str | None = None,
    *,
    trust: bytes | None = None,
    alpn: list[bytes] | None = None,
    max_version: int | None = None,
    client_certificate: tuple[bytes, bytes] | None = None,
) -> tuple[SSL.Connection, SSL.Connection, Exception | None]:
    """Run a handshake in memory; (client, server, the error that stopped it or None)."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if trust is not None:
        context.get_cert_store().add_cert(crypto.load_certificate(crypto.FILETYPE_PEM, trust))  # type: ignore[union-attr]
        context.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    if max_version is not None:
        context.set_max_proto_version(max_version)
    if client_certificate is not None:
        context.use_certificate(crypto.load_certificate(crypto.FILETYPE_PEM, client_certificate[0]))
        context.use_privatekey(crypto.load_privatekey(crypto.FILETYPE_PEM, client_certificate[1]))
    client = SSL.Connection(context, None)
    client.set_connect_state()
    if server_name:
        client.set_tlsext_host_name(server_name.encode())
    if alpn:
        client.set_alpn_protos(alpn)
    server_side = server.serverConnectionForTLS(None)
    server_side.set_accept_state()
    error: Exception | None = None
    for _ in range(20):
        for side in (client, server_side):
            try:
                side.do_handshake()
            except SSL.WantReadError:
                pass
            except SSL.Error as e:
                error = e
        moved = False
        for source, target in ((client, server_side), (server_side, client)):
            try:
                data = source.bio_read(65536)
            except SSL.WantReadError:
                continue
            if data:
                target.bio_write(data)
                moved = True
        if error is not None and not moved:
            break
        if not moved and error is None:
            break
    if error is None:
        # TLS 1.3: the server learns of a refused client certificate after its Finished.
        try:
            client.write(b"ping")
            server_side.bio_write(client.bio_read(65536))
            server_side.read(4)
        except SSL.Error as e:
            error = e
    return client, server_side, error


class ServerTLSTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.ca = TestCA()
        self.cache = CertificateCache()
        self.example = self.cache.add(self.ca.certificate_for(["example.com", "www.example.com"]))
        self.wildcard = self.cache.add(self.ca.certificate_for(["*.example.net"]))
        self.ip = self.cache.add(self.ca.certificate_for(["127.0.0.1"]))

    def server(self, *policies: dict[str, Any], http2: bool = False) -> ServerTLS:
        return ServerTLS([ConnectionPolicy(p) for p in policies or ({},)], self.cache, http2=http2)

    def served(self, connection: SSL.Connection) -> set[str]:
        peer = connection.get_peer_certificate(as_cryptography=True)
        assert peer is not None
        return set(Certificate.from_objects([peer], _dummy_key_for(peer, self.cache)).names)

    def test_sni_picks_exact_name(self) -> None:
        """The certificate whose SAN is the SNI name answers, verified by the client."""
        client, server, error = handshake(self.server(), "www.example.com", trust=self.ca.pem)
        self.assertIsNone(error)
        self.assertEqual(self.served(client), {"example.com", "www.example.com"})
        state = TLSState.from_connection(server)
        self.assertEqual((state.server_name, state.version), ("www.example.com", "tls1.3"))

    def test_sni_falls_back_to_wildcard(self) -> None:
        """A name without its own certificate gets the wildcard one."""
        client, _, error = handshake(self.server(), "api.example.net", trust=self.ca.pem)
        self.assertIsNone(error)
        self.assertEqual(self.served(client), {"*.example.net"})

    def test_no_sni_uses_local_ip_then_default_sni(self) -> None:
        """Without SNI: no connection address here, so ``default_sni`` decides."""
        _, _, error = handshake(self.server())
        self.assertIsNotNone(error)
        client, _, error = handshake(self.server({"default_sni": "example.com"}), trust=self.ca.pem)
        self.assertIsNone(error)
        self.assertEqual(self.served(client), {"example.com", "www.example.com"})

    def test_unknown_name_fails_the_handshake(self) -> None:
        """No certificate for the name: an alert, not an exception out of the server."""
        _, _, error = handshake(self.server(), "other.org")
        self.assertIsInstance(error, SSL.Error)

    def test_policy_chosen_by_sni(self) -> None:
        """The first policy whose ``sni`` matches applies; a name matching none is refused."""
        server = self.server({"match": {"sni": ["example.com"]}, "protocol_min": "tls1.3"},
                             {"match": {"sni": ["*.example.net"]}})
        _, _, error = handshake(server, "example.com", max_version=SSL.TLS1_2_VERSION)
        self.assertIsInstance(error, SSL.Error)  # tls1.3 only for example.com
        _, server_side, error = handshake(server, "a.example.net", max_version=SSL.TLS1_2_VERSION)
        self.assertIsNone(error)
        self.assertEqual(TLSState.from_connection(server_side).version, "tls1.2")
        _, _, error = handshake(server, "www.example.com")
        self.assertIsInstance(error, SSL.Error)  # matches no policy

    def test_alpn_prefers_server_order(self) -> None:
        """ALPN: http/1.1 until HTTP/2 is served, then h2 first; no overlap means no ALPN."""
        _, server_side, _ = handshake(self.server(), "example.com", alpn=[b"h2", b"http/1.1"])
        self.assertEqual(server_side.get_alpn_proto_negotiated(), b"http/1.1")
        _, server_side, _ = handshake(self.server(http2=True), "example.com", alpn=[b"http/1.1", b"h2"])
        self.assertEqual(server_side.get_alpn_proto_negotiated(), b"h2")
        _, server_side, error = handshake(self.server(), "example.com", alpn=[b"spdy/3"])
        self.assertEqual((error, server_side.get_alpn_proto_negotiated()), (None, b""))

    def test_acme_tls_alpn_challenge_certificate(self) -> None:
        """``acme-tls/1`` with a pending challenge is answered with the challenge certificate."""
        challenge = self.ca.certificate_for(["example.com"], common_name="challenge")
        server = self.server()
        server.challenges = {"example.com": challenge}.get
        client, server_side, error = handshake(server, "example.com", alpn=[b"acme-tls/1"])
        self.assertIsNone(error)
        self.assertEqual(server_side.get_alpn_proto_negotiated(), b"acme-tls/1")
        peer = client.get_peer_certificate(as_cryptography=True)
        assert peer is not None
        self.assertEqual(peer.serial_number, challenge.leaf.serial_number)

    def test_acme_tls_alpn_challenge_without_certificate(self) -> None:
        """A name with no certificate yet but a pending challenge gets the challenge certificate,
        on TLS 1.2 too (whose cipher choice needs a certificate before ALPN is chosen)."""
        challenge = self.ca.certificate_for(["new.example.org"], common_name="challenge")
        server = ServerTLS([ConnectionPolicy({})], CertificateCache(), challenges={"new.example.org": challenge}.get)
        for max_version in (SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION):
            client, server_side, error = handshake(server, "new.example.org", alpn=[b"acme-tls/1"], max_version=max_version)
            self.assertIsNone(error)
            self.assertEqual(server_side.get_alpn_proto_negotiated(), b"acme-tls/1")
            peer = client.get_peer_certificate(as_cryptography=True)
            assert peer is not None
            self.assertEqual(peer.serial_number, challenge.leaf.serial_number)
        _, _, error = handshake(server, "other.example.org", alpn=[b"acme-tls/1"])
        self.assertIsInstance(error, SSL.Error)  # no challenge for that name: still refused

    def test_ciphers_for_tls12(self) -> None:
        """``cipher_suites`` limits TLS 1.2; the state names the suite as Go does."""
        server = self.server({"cipher_suites": ["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"]})
        _, server_side, error = handshake(server, "example.com", max_version=SSL.TLS1_2_VERSION)
        self.assertIsNone(error)
        self.assertEqual(TLSState.from_connection(server_side).cipher_suite,
                         "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")

    def test_client_auth_require_and_verify(self) -> None:
        """Trusted CA certs: a client certificate is required and verified against them."""
        clients = TestCA("Client Root")
        der = base64.b64encode(clients.certificate.public_bytes(serialization.Encoding.DER)).decode()
        server = self.server({"client_authentication": {"trusted_ca_certs": [der]}})
        _, _, error = handshake(server, "example.com")
        self.assertIsInstance(error, SSL.Error)  # none given
        _, _, error = handshake(server, "example.com", client_certificate=TestCA("Other").leaf(["x"], client=True))
        self.assertIsInstance(error, SSL.Error)  # not from the trusted CA
        _, server_side, error = handshake(server, "example.com", client_certificate=clients.leaf(["alice"], client=True))
        self.assertIsNone(error)
        peer = TLSState.from_connection(server_side).peer_certificate
        self.assertIsNotNone(peer)

    def test_client_auth_request_takes_any(self) -> None:
        """``mode request``: a certificate is asked for, not required, not verified."""
        clients = TestCA("Client Root")
        der = base64.b64encode(clients.certificate.public_bytes(serialization.Encoding.DER)).decode()
        server = self.server({"client_authentication": {"trusted_ca_certs": [der], "mode": "request"}})
        _, server_side, error = handshake(server, "example.com")
        self.assertEqual((error, TLSState.from_connection(server_side).peer_certificate), (None, None))
        _, _, error = handshake(server, "example.com", client_certificate=TestCA("Other").leaf(["x"], client=True))
        self.assertIsNone(error)

    def test_certificate_selection_by_tag(self) -> None:
        """``certificate_selection.any_tag`` picks the tagged certificate among several."""
        cert_pem, key_pem = self.ca.leaf(["example.com"], common_name="tagged")
        tagged = self.cache.add(Certificate.from_pem(cert_pem, key_pem, tags=["cert0"]))
        client, _, error = handshake(self.server({"certificate_selection": {"any_tag": ["cert0"]}}), "example.com")
        self.assertIsNone(error)
        peer = client.get_peer_certificate(as_cryptography=True)
        assert peer is not None
        self.assertEqual(peer.serial_number, tagged.leaf.serial_number)

    def test_bad_policies(self) -> None:
        """Unknown fields, suites, protocols and modes are config errors."""
        for config in ({"cipher_suites": ["RC4"]}, {"protocol_min": "tls1.1"},
                       {"protocol_min": "tls1.3", "protocol_max": "tls1.2"},
                       {"client_authentication": {"mode": "sometimes"}}, {"bogus": 1},
                       {"match": {"alpn": ["h2"]}}):
            self.assertRaises(ConfigError, ConnectionPolicy, config)


def _dummy_key_for(peer: Any, cache: CertificateCache) -> Any:
    """The cached key of the certificate the peer presented (for ``Certificate.names``)."""
    for certificate in cache:
        if certificate.leaf.serial_number == peer.serial_number:
            return certificate.private_key
    raise AssertionError("the server presented a certificate that is not cached")
