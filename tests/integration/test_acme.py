"""Automatic HTTPS with ACME end to end: txcaddy from a Caddyfile gets its certificates from
Debian's ``pebble`` on loopback, answering the challenges on its own listeners, serves them,
and renews them (pebble issues 8-second certificates for the renewal test)."""

from __future__ import annotations

import os
from typing import Any

from cryptography import x509
from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.task import deferLater
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests._net import connect
from tests.tls.test_acme import CHALLTESTSRV, NO_PEBBLE, PEBBLE, Pebble
from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor

REACTOR = default_reactor()


@implementer(IOpenSSLClientConnectionCreator)
class _SNIOnly:
    """A client that sends SNI and accepts any certificate (the test checks it itself)."""

    def __init__(self, server_name: str) -> None:
        self.server_name = server_name

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:  # noqa: N802
        connection = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
        connection.set_tlsext_host_name(self.server_name.encode())
        connection.set_app_data(tlsProtocol)
        return connection


class _Fetch(Protocol):
    def __init__(self, request: bytes, done: Deferred[tuple[bytes, Any]]) -> None:
        self.request, self.done, self.received = request, done, bytearray()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        peer = None
        transport = self.transport
        if transport is not None:
            peer = transport.getPeerCertificate()  # type: ignore[attr-defined]
        self.done.callback((bytes(self.received), peer.to_cryptography() if peer is not None else None))


def fetch(port: int, server_name: str) -> Deferred[tuple[bytes, Any]]:
    """GET / over TLS with SNI ``server_name``: (the reply, the certificate the server showed)."""
    done: Deferred[tuple[bytes, Any]] = Deferred()
    request = f"GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode()
    factory = ClientFactory.forProtocol(lambda: _Fetch(request, done))
    factory.noisy = False
    connect("127.0.0.1", port, TLSMemoryBIOFactory(_SNIOnly(server_name), True, factory))
    return done


class ACMETests(TestCase):
    timeout = 60
    validity: int | None = None

    if PEBBLE is None or CHALLTESTSRV is None:
        skip = NO_PEBBLE

    async def setUp(self) -> None:  # type: ignore[override]
        self.pebble = Pebble(self, validity=self.validity)
        await self.pebble.start()
        self.storage = os.path.abspath(self.mktemp())

    async def start(self, sites: str, extra: str = "") -> Any:
        pebble = self.pebble
        caddyfile = (
            f"{{\n\thttp_port {pebble.http_port}\n\thttps_port {pebble.tls_port}\n\tadmin off\n"
            f"\tskip_install_trust\n\temail admin@example.com\n\tacme_ca {pebble.directory}\n"
            f"\tacme_ca_root {pebble.roots}\n\tstorage file_system {{\n\t\troot {self.storage}\n\t}}\n{extra}}}\n"
            + sites)
        service = fromCaddyfile(caddyfile, reactor=REACTOR)
        service.startService()
        self.addCleanup(service.stopService)
        assert service.tls is not None and service.tls.manager is not None
        await service.tls.manager.ready
        return service

    def stored(self, name: str) -> x509.Certificate:
        issuer = f"127.0.0.1-{self.pebble.port}-dir"
        path = os.path.join(self.storage, "certificates", issuer, name, f"{name}.crt")
        with open(path, "rb") as f:
            return x509.load_pem_x509_certificates(f.read())[0]


class IssuanceTests(ACMETests):
    async def test_certificates_from_pebble_served(self) -> None:
        """Two sites get certificates from pebble at start (challenges answered by txcaddy's own
        listeners on http_port/https_port) and serve them by SNI; the HTTP port still redirects."""
        await self.start("a.test {\n\trespond \"secure {http.request.tls.server_name}\"\n}\n"
                         "b.test {\n\trespond b\n}\n")
        for name in ("a.test", "b.test"):
            stored = self.stored(name)
            self.assertTrue(stored.issuer.rfc4514_string().startswith("CN=Pebble Intermediate CA"))
            reply, peer = await fetch(self.pebble.tls_port, name)
            self.assertTrue(reply.startswith(b"HTTP/1.1 200 OK"), reply)
            self.assertEqual(peer.serial_number, stored.serial_number)
        reply, _ = await fetch(self.pebble.tls_port, "a.test")
        self.assertTrue(reply.endswith(b"secure a.test"), reply)

    async def test_restart_uses_stored_certificate(self) -> None:
        """A second start with the same storage orders nothing: the stored certificate is served."""
        service = await self.start("a.test {\n\trespond a\n}\n")
        first = self.stored("a.test").serial_number
        await service.stopService()
        orders = self.pebble.count("POST /order-plz")
        await self.start("a.test {\n\trespond a\n}\n")
        self.assertEqual(self.pebble.count("POST /order-plz"), orders)
        _, peer = await fetch(self.pebble.tls_port, "a.test")
        self.assertEqual(peer.serial_number, first)


class RenewalTests(ACMETests):
    validity = 9

    async def test_renewed_before_expiry(self) -> None:
        """A 9-second certificate is renewed once a third of it is left (renew_interval 1s),
        and the new one is served."""
        await self.start("a.test {\n\trespond a\n}\n", extra="\trenew_interval 1s\n")
        first = self.stored("a.test").serial_number
        for _ in range(200):  # up to 10 s: the window opens after ~6 s
            await deferLater(REACTOR, 0.05)
            if self.stored("a.test").serial_number != first:
                break
        renewed = self.stored("a.test")
        self.assertNotEqual(renewed.serial_number, first)
        _, peer = await fetch(self.pebble.tls_port, "a.test")
        self.assertEqual(peer.serial_number, renewed.serial_number)
