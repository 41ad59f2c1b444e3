"""WebSocket and other upgrades through reverse_proxy: autobahn peers on both sides, real sockets."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks
from twisted.internet.interfaces import IProtocolNegotiationFactory, ITransport
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import TestCase
from zope.interface import alsoProvides

from tests._net import connect, listen_local, port_number
from tests.reverseproxy._backends import site, start_proxy
from txcaddy._reactor import default_reactor

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "caddyfile", "fixtures", "seed")
MIB = 1024 * 1024


class _Upstream(WebSocketServerProtocol):
    """Picks chat.v2, sets X-Upstream, echoes, and closes with 1008 when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.close_code: Deferred[Any] = Deferred()  # fires with the close code when closed

    def onConnect(self, request: Any) -> Any:
        self.factory.handshakes.append(request)
        return ("chat.v2", {"X-Upstream": "yes"})

    def onOpen(self) -> None:
        self.factory.opened.append(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary and payload == b"close please":
            # autobahn's sendClose refuses 1008; a real server may send it.
            self.sendCloseFrame(code=1008, reasonUtf8=b"policy says bye")
            return
        self.sendMessage(payload, isBinary)

    def onPing(self, payload: bytes) -> None:
        self.factory.pings.append(payload)
        super().onPing(payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        super().onClose(wasClean, code, reason)
        self.close_code.callback(code)


def _accept_deflate(offers: list[Any]) -> Any:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


class _UpstreamFactory(WebSocketServerFactory):
    """Makes ``_Upstream``s and keeps what they saw."""

    protocol = _Upstream
    noisy = False

    def __init__(self) -> None:
        super().__init__()
        self.handshakes: list[Any] = []
        self.opened: list[_Upstream] = []
        self.pings: list[bytes] = []


class WebSocketUpstream:
    def __init__(self, tls: Any = None) -> None:
        factory = _UpstreamFactory()
        factory.setProtocolOptions(perMessageCompressionAccept=_accept_deflate)
        self.factory = factory
        self.port = listen_local(factory if tls is None else _tls(tls, factory))
        self.address = f"127.0.0.1:{port_number(self.port)}"

    def stop(self) -> Deferred[None] | None:
        for protocol in self.factory.opened:
            if protocol.transport is not None:
                protocol.transport.loseConnection()
        return self.port.stopListening()


def _tls(options: Any, factory: Any) -> TLSMemoryBIOFactory:
    """``factory`` behind TLS, answering ALPN ``http/1.1`` as the proxy offers it.

    (A Twisted TLS server whose factory does no ALPN fails a client that offers it.)
    """
    alsoProvides(factory, IProtocolNegotiationFactory)
    factory.acceptableProtocols = lambda: [b"http/1.1"]
    return TLSMemoryBIOFactory(options, False, factory)


class _Client(WebSocketClientProtocol):
    def onConnect(self, response: Any) -> None:
        self.factory.handshake = response

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.messages.put((payload, isBinary))

    def onPong(self, payload: bytes) -> None:
        self.factory.pongs.put(payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"handshake failed: {reason}"))
        self.factory.closed.callback((wasClean, code, reason))


class _ClientFactory(WebSocketClientFactory):
    """Makes a ``_Client`` and hands on what it sees."""

    protocol = _Client
    noisy = False

    def __init__(self, url: str, protocols: list[str]) -> None:
        super().__init__(url, protocols=protocols)
        self.handshake: Any = None
        self.opened: Deferred[_Client] = Deferred()
        self.closed: Deferred[tuple[bool, Any, Any]] = Deferred()
        self.messages: DeferredQueue[tuple[bytes, bool]] = DeferredQueue()
        self.pongs: DeferredQueue[bytes] = DeferredQueue()


def connect_client(base: str, path: str = "/ws", tls: Any = None) -> _ClientFactory:
    """A WebSocket client of ``base``; over TLS (``wss://``) with ``tls``, client TLS options."""
    host_port = base.split("//")[1]
    scheme = "wss" if tls is not None else "ws"
    factory = _ClientFactory(f"{scheme}://{host_port}{path}", protocols=["chat.v1", "chat.v2"])
    factory.setProtocolOptions(
        perMessageCompressionOffers=[PerMessageDeflateOffer()],
        perMessageCompressionAccept=lambda response: (
            PerMessageDeflateResponseAccept(response) if isinstance(response, PerMessageDeflateResponse) else None
        ),
    )
    host, port = host_port.rsplit(":", 1)
    connect("127.0.0.1" if tls is not None else host, int(port),
            factory if tls is None else TLSMemoryBIOFactory(tls, True, factory))
    return factory


class RawClient(Protocol):
    """Sends ``request`` once connected and collects everything until the connection closes."""

    def __init__(self, request: bytes, done: Deferred[bytes]) -> None:
        self.request = request
        self.done = done
        self.received = bytearray()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(bytes(self.received))


def raw_exchange(base: str, request: bytes) -> Deferred[bytes]:
    done: Deferred[bytes] = Deferred()
    factory = ClientFactory.forProtocol(lambda: RawClient(request, done))
    factory.noisy = False
    host, port = base.split("//")[1].rsplit(":", 1)
    connect(host, int(port), factory)
    return done


class WebSocketTestCase(TestCase):
    timeout = 60

    def upstream(self) -> WebSocketUpstream:
        upstream = WebSocketUpstream()
        self.addCleanup(upstream.stop)
        return upstream

    @inlineCallbacks
    def conversation(self, base: str, upstream: WebSocketUpstream, tls: Any = None) -> Any:
        """The full exchange every proxy configuration must pass (over TLS with client ``tls`` options)."""
        factory = connect_client(base, tls=tls)
        client = yield factory.opened
        self.addCleanup(lambda: client.transport.loseConnection())
        # The handshake is the upstream's: its subprotocol choice, its header, deflate end to end.
        self.assertEqual(factory.handshake.protocol, "chat.v2")
        self.assertEqual(factory.handshake.headers.get("x-upstream"), "yes")
        self.assertEqual(len(client.websocket_extensions_in_use), 1)
        (request,) = upstream.factory.handshakes
        self.assertEqual(request.protocols, ["chat.v1", "chat.v2"])
        self.assertIn("permessage-deflate", request.headers.get("sec-websocket-extensions", ""))
        self.assertEqual(len(upstream.factory.opened[0].websocket_extensions_in_use), 1)

        client.sendMessage("héllo".encode(), isBinary=False)
        payload, binary = yield factory.messages.get()
        self.assertEqual((payload, binary), ("héllo".encode(), False))

        big = os.urandom(MIB)
        client.sendMessage(big, isBinary=True)
        payload, binary = yield factory.messages.get()
        self.assertTrue(binary)
        self.assertEqual(hashlib.sha256(payload).hexdigest(), hashlib.sha256(big).hexdigest())

        client.sendPing(b"are you there")
        pong = yield factory.pongs.get()
        self.assertEqual(pong, b"are you there")
        self.assertEqual(upstream.factory.pings, [b"are you there"])  # answered by the upstream

        client.sendMessage(b"close please", isBinary=False)
        was_clean, code, reason = yield factory.closed
        self.assertEqual(code, 1008)
        self.assertEqual(reason, "policy says bye")
        self.assertTrue(was_clean)


class ProxiedWebSocketTests(WebSocketTestCase):
    def test_plain_reverse_proxy(self) -> Any:
        """A WebSocket through reverse_proxy keeps the upstream's handshake, frames and close."""
        upstream = self.upstream()
        base = start_proxy(self, site(f"\treverse_proxy {upstream.address}"))
        return self.conversation(base, upstream)

    def test_upgrade_stays_http11_with_an_h2c_transport(self) -> Any:
        """With an h2c upstream transport (``h2c://``) an upgrade still goes over HTTP/1.1, as Caddy."""
        upstream = self.upstream()
        base = start_proxy(self, site(f"\treverse_proxy h2c://{upstream.address}"))
        return self.conversation(base, upstream)

    def fixture(self, name: str, upstream: WebSocketUpstream) -> str:
        with open(os.path.join(FIXTURES, name)) as f:
            text = f.read()
        text = text.replace("example.com {", "http://:PORT {\n    bind 127.0.0.1")
        return text.replace("localhost:3000", upstream.address)

    def test_seed_example_with_explicit_connection_and_upgrade(self) -> Any:
        # header_up Connection {>Connection} / Upgrade {>Upgrade}: works (DESIGN.md §1).
        """The seed example copying Connection and Upgrade with header_up proxies WebSockets."""
        upstream = self.upstream()
        base = start_proxy(self, self.fixture("11-websocket-explicit.Caddyfile", upstream))
        return self.conversation(base, upstream)

    def test_seed_example_without_options(self) -> Any:
        """The seed example with a bare reverse_proxy proxies WebSockets."""
        upstream = self.upstream()
        base = start_proxy(self, self.fixture("10-websocket-auto.Caddyfile", upstream))
        return self.conversation(base, upstream)

    @inlineCallbacks
    def test_stopping_the_server_sends_going_away(self) -> Any:
        """Stopping the server closes proxied WebSockets with 1001 on both sides."""
        from txcaddy import fromCaddyfile

        upstream = self.upstream()
        service = fromCaddyfile(site(f"\treverse_proxy {upstream.address}").replace("PORT", "0"), reactor=default_reactor())
        service.startService()
        (address,) = next(iter(service.boundAddresses().values()))
        factory = connect_client(f"http://127.0.0.1:{address.port}")
        yield factory.opened
        upstream_protocol = upstream.factory.opened[0]
        yield service.stopService()
        was_clean, code, reason = yield factory.closed
        self.assertEqual(code, 1001)
        code = yield upstream_protocol.close_code
        self.assertEqual(code, 1001)


class _RawUpgradeUpstream(Protocol):
    """Answers any request with a 101 to ``foo``, reports the bytes that came with the head, then echoes."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.switched = False

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.switched:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.switched = True
            data = bytes(self.head[end + 4:])
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n")
            data = b"echo:" + data
        self.transport.write(data)


class OtherUpgradeTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        factory = Factory.forProtocol(_RawUpgradeUpstream)
        factory.noisy = False
        self.port = listen_local(factory)
        self.addCleanup(self.port.stopListening)
        self.upstream = f"127.0.0.1:{port_number(self.port)}"

    @inlineCallbacks
    def test_any_protocol_is_spliced_with_the_bytes_sent_early(self) -> Any:
        """Any upgrade is spliced after the 101, bytes sent after the request head included."""
        base = start_proxy(self, site(f"\treverse_proxy {self.upstream}"))
        received: DeferredQueue[bytes] = DeferredQueue()

        class Client(Protocol):
            def connectionMade(self) -> None:
                assert self.transport is not None
                self.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\nearly")

            def dataReceived(self, data: bytes) -> None:
                received.put(data)

        factory = ClientFactory.forProtocol(Client)
        factory.noisy = False
        host, port = base.split("//")[1].rsplit(":", 1)
        connector = connect(host, int(port), factory)
        self.addCleanup(connector.disconnect)
        data = b""
        while b"echo:early" not in data:
            data += yield received.get()
        head, _, rest = data.partition(b"\r\n\r\n")
        self.assertEqual(
            head.split(b"\r\n"),
            [b"HTTP/1.1 101 Switching Protocols", b"Connection: Upgrade", b"Server: Caddy", b"Upgrade: foo"],
        )
        self.assertEqual(rest, b"echo:early")

    @inlineCallbacks
    def test_upgrade_to_a_route_without_proxy_is_answered_then_closed(self) -> Any:
        """An upgrade request to a non-proxy route is answered, then the connection closed."""
        base = start_proxy(self, site('\trespond "no tunnels here"'))
        request = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        out = yield raw_exchange(base, request + b"GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"), out)
        self.assertTrue(out.endswith(b"\r\n\r\nno tunnels here"), out)
        self.assertEqual(out.count(b"HTTP/1.1"), 1)  # the bytes after the head were not served



class TLSUpstreamTests(WebSocketTestCase):
    def test_websocket_to_a_tls_upstream(self) -> Any:
        """A WebSocket to an https upstream works as over plain TCP."""
        from tests.tls.test__client import _PKI

        pki = _PKI(os.path.abspath(self.mktemp()))
        upstream = WebSocketUpstream(tls=pki.server_options())
        self.addCleanup(upstream.stop)
        base = start_proxy(self, site(
            f"\treverse_proxy https://{upstream.address} {{\n"
            f"\t\ttransport http {{\n\t\t\ttls_trusted_ca_certs {pki.ca_file}\n\t\t}}\n\t}}"
        ))
        return self.conversation(base, upstream)

    @inlineCallbacks
    def test_tunnel_to_a_tls_upstream(self) -> Any:
        """An upgraded tunnel to an https upstream carries the early bytes, then 4 MiB echoed."""
        from tests.tls.test__client import _PKI

        pki = _PKI(os.path.abspath(self.mktemp()))
        factory = Factory.forProtocol(_RawUpgradeUpstream)
        factory.noisy = False
        port = listen_local(_tls(pki.server_options(), factory))
        self.addCleanup(port.stopListening)
        base = start_proxy(self, site(
            f"\treverse_proxy https://127.0.0.1:{port_number(port)} {{\n"
            f"\t\ttransport http {{\n\t\t\ttls_trusted_ca_certs {pki.ca_file}\n\t\t}}\n\t}}"
        ))
        received: DeferredQueue[bytes] = DeferredQueue()
        lost: Deferred[None] = Deferred()
        transports: list[ITransport] = []

        class Client(Protocol):
            def connectionMade(self) -> None:
                assert self.transport is not None
                transports.append(self.transport)
                self.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\nearly")

            def dataReceived(self, data: bytes) -> None:
                received.put(data)

            def connectionLost(self, reason: Any = None) -> None:
                lost.callback(None)

        client_factory = ClientFactory.forProtocol(Client)
        client_factory.noisy = False
        host, client_port = base.split("//")[1].rsplit(":", 1)
        connector = connect(host, int(client_port), client_factory)
        data = b""
        while b"echo:early" not in data:
            data += yield received.get()
        self.assertTrue(data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), data)
        big = os.urandom(4 * MIB)
        transports[0].write(big)
        echoed = b""
        while len(echoed) < len(big):
            echoed += yield received.get()
        self.assertEqual(echoed, big)
        connector.disconnect()
        yield lost
