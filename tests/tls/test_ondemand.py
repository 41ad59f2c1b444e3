"""On-demand TLS (``txcaddy.tls.ondemand``): ClientHello parsing, the rate limit, the gate.

A real server obtaining certificates during handshakes is in ``tests/integration/test_https.py``."""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.tls.ondemand import (
    ClientHelloGate,
    IncompleteHello,
    OnDemandGateFactory,
    RateLimiter,
    client_hello_server_name,
)


def client_hello(server_name: str | None, *, padding: int = 0) -> bytes:
    """The first flight of a real OpenSSL client (one ClientHello), with SNI ``server_name``."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    connection = SSL.Connection(context, None)
    connection.set_connect_state()
    if server_name:
        connection.set_tlsext_host_name(server_name.encode())
    if padding:
        connection.set_alpn_protos([b"x" * 200] * padding)  # a ClientHello longer than one read
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    return connection.bio_read(65536)


class ClientHelloTests(SynchronousTestCase):
    def test_server_name(self) -> None:
        """The SNI of a real ClientHello is read, lower-cased."""
        self.assertEqual(client_hello_server_name(client_hello("Shop.Example.COM")), "shop.example.com")

    def test_no_server_name(self) -> None:
        """A ClientHello without SNI gives None."""
        self.assertIsNone(client_hello_server_name(client_hello(None)))

    def test_incomplete(self) -> None:
        """Every prefix of a ClientHello is incomplete; the whole one is read."""
        hello = client_hello("a.test", padding=20)
        for cut in (1, 4, 5, 100, len(hello) - 1):
            self.assertRaises(IncompleteHello, client_hello_server_name, hello[:cut])
        self.assertEqual(client_hello_server_name(hello), "a.test")

    def test_not_tls(self) -> None:
        """Plain HTTP bytes are not a ClientHello."""
        self.assertRaises(ValueError, client_hello_server_name, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


class RateLimiterTests(SynchronousTestCase):
    def test_burst_per_interval(self) -> None:
        """At most ``burst`` in any sliding ``interval``; zero means unlimited."""
        clock = Clock()
        limiter = RateLimiter(60, 2, clock)
        self.assertEqual([limiter.allow() for _ in range(3)], [True, True, False])
        clock.advance(59)
        self.assertFalse(limiter.allow())
        clock.advance(1)
        self.assertTrue(limiter.allow())
        unlimited = RateLimiter(0, 0, clock)
        self.assertTrue(all(unlimited.allow() for _ in range(100)))


class _Recorder:
    """Stands in for the TLS protocol behind the gate: records what reaches it."""

    def __init__(self) -> None:
        self.received = bytearray()

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        pass


class GateTests(SynchronousTestCase):
    def gate(self, prepare: Any) -> tuple[ClientHelloGate, _Recorder, StringTransport]:
        recorder = _Recorder()
        factory = OnDemandGateFactory(None, prepare)
        gate = ClientHelloGate(factory, recorder)
        transport = StringTransport()
        gate.makeConnection(transport)
        return gate, recorder, transport

    def test_holds_until_ready(self) -> None:
        """The ClientHello waits (reading paused) until the certificate is ready, then passes on."""
        ready: Deferred[None] = Deferred()
        names: list[str] = []

        def prepare(name: str) -> Deferred[None]:
            names.append(name)
            return ready

        gate, recorder, transport = self.gate(prepare)
        hello = client_hello("new.test")
        gate.dataReceived(hello[:10])
        gate.dataReceived(hello[10:])
        self.assertEqual((names, bytes(recorder.received), transport.producerState), (["new.test"], b"", "paused"))
        gate.dataReceived(b"more")
        ready.callback(None)
        self.assertEqual(bytes(recorder.received), hello + b"more")
        self.assertEqual(transport.producerState, "producing")
        gate.dataReceived(b"later")
        self.assertTrue(bytes(recorder.received).endswith(b"later"))

    def test_passes_through_when_nothing_to_do(self) -> None:
        """A name needing nothing (and bytes that are not TLS) go straight through."""
        gate, recorder, _ = self.gate(lambda name: None)
        hello = client_hello("known.test")
        gate.dataReceived(hello)
        self.assertEqual(bytes(recorder.received), hello)
        gate, recorder, _ = self.gate(lambda name: self.fail("asked"))
        gate.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(bytes(recorder.received), b"GET / HTTP/1.1\r\n\r\n")
