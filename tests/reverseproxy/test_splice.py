"""The 101 tunnel: a real HTTP/1.1 client connection and a real upstream exchange on StringTransports."""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from txcaddy.http._h1 import HTTP11Factory
from txcaddy.http.routing import Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.interfaces import IHandler
from txcaddy.reverseproxy._splice import (
    ABORT_AFTER,
    GOING_AWAY_TO_CLIENT,
    Tunnels,
    going_away_to_server,
    start_tunnel,
)
from txcaddy.reverseproxy.transport import ConnectionPool, UpstreamAddress
from txcaddy.testing import FakeResponse

ADDR = UpstreamAddress.parse("127.0.0.1:9000")
UPGRADE = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
UPSTREAM_101 = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
DONE = Failure(ConnectionDone())


@implementer(IHandler)
class Held:
    def __init__(self) -> None:
        self.pending: list[tuple[Any, Deferred[None]]] = []

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append((response, d))
        return d


def unmask(frame: bytes) -> tuple[int, bytes]:
    """(opcode byte, payload) of a masked frame with a short payload."""
    assert frame[1] & 0x80, "not masked"
    length = frame[1] & 0x7F
    key = frame[2:6]
    return frame[0], bytes(b ^ key[i % 4] for i, b in enumerate(frame[6:6 + length]))


class TunnelTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.held = Held()
        self.server = HTTPServer("srv0", [":80"], RouteList([Route([self.held])]), reactor=self.clock)
        self.client = HTTP11Factory(self.server, self.clock).buildProtocol(None)
        self.client_transport = StringTransport()
        self.client.makeConnection(self.client_transport)
        self.pool = ConnectionPool(self.clock)
        self.tunnels = Tunnels(self.clock)

    def upgrade(self, client_extra: bytes = b"", upstream_extra: bytes = b"", **kwargs: Any) -> Any:
        """Client upgrade request → upstream 101 → start_tunnel; returns the tunnel."""
        self.client.dataReceived(UPGRADE + client_extra)
        response, self.handler_done = self.held.pending.pop(0)
        self.exchange = self.pool.request(ADDR, b"GET", b"/ws", [(b"Host", b"x")], 0)
        host, port, factory, _, _ = self.clock.tcpClients[-1]
        upstream = factory.buildProtocol(IPv4Address("TCP", host, port))
        assert upstream is not None
        self.upstream = upstream
        self.upstream_transport = StringTransport()
        self.upstream.makeConnection(self.upstream_transport)
        self.upstream_transport.clear()  # the request head
        heads: list[Any] = []
        self.exchange.head.addCallback(heads.append)
        self.upstream.dataReceived(UPSTREAM_101 + upstream_extra)
        self.assertEqual(heads[0].status, 101)
        response.headers.add("Upgrade", "websocket")
        response.headers.add("Connection", "Upgrade")
        start_tunnel(response, self.exchange, self.tunnels, clock=self.clock, **kwargs)
        self.handler_done.callback(None)
        (tunnel,) = list(self.tunnels)
        return tunnel

    def lose_client(self) -> None:
        self.client.connectionLost(DONE)

    def lose_upstream(self) -> None:
        self.upstream.connectionLost(DONE)


class ForwardingTests(TunnelTestCase):
    def test_bytes_flow_both_ways(self) -> None:
        """After the 101, bytes flow both ways, early ones from either side included."""
        self.upgrade(client_extra=b"early-client", upstream_extra=b"early-upstream")
        self.assertEqual(
            self.client_transport.value(),
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nServer: Caddy\r\n"
            b"Upgrade: websocket\r\n\r\nearly-upstream",
        )
        self.assertEqual(self.upstream_transport.value(), b"early-client")
        self.client_transport.clear()
        self.upstream_transport.clear()
        self.client.dataReceived(b"\x81\x85abcd....")
        self.upstream.dataReceived(b"\x81\x05hello")
        self.assertEqual(self.upstream_transport.value(), b"\x81\x85abcd....")
        self.assertEqual(self.client_transport.value(), b"\x81\x05hello")

    def test_each_transport_is_the_others_streaming_producer(self) -> None:
        """Each side's transport is registered as the other's streaming producer."""
        self.upgrade()
        self.assertIs(self.client_transport.producer, self.upstream_transport)
        self.assertIs(self.upstream_transport.producer, self.client_transport)
        self.assertTrue(self.client_transport.streaming)
        self.assertTrue(self.upstream_transport.streaming)

    def test_a_slow_client_pauses_reading_the_upstream(self) -> None:
        """A client that cannot keep up pauses reading from the upstream, and resumes it."""
        self.upgrade()
        producer = self.client_transport.producer
        assert producer is not None
        producer.pauseProducing()  # the client's write buffer is full
        self.assertEqual(self.upstream_transport.producerState, "paused")
        self.assertEqual(self.client_transport.producerState, "producing")
        producer.resumeProducing()
        self.assertEqual(self.upstream_transport.producerState, "producing")

    def test_a_slow_upstream_pauses_reading_the_client(self) -> None:
        """An upstream that cannot keep up pauses reading from the client, and resumes it."""
        self.upgrade()
        producer = self.upstream_transport.producer
        assert producer is not None
        producer.pauseProducing()
        self.assertEqual(self.client_transport.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(self.client_transport.producerState, "producing")

    def test_a_producer_left_from_the_http_exchange_is_replaced(self) -> None:
        """A producer left registered by the HTTP exchange is replaced by the tunnel's."""
        leftover = object()
        self.client.dataReceived(UPGRADE)
        response, _ = self.held.pending.pop(0)
        self.client_transport.registerProducer(leftover, True)
        exchange = FakeExchange()
        exchange.transport.registerProducer(leftover, True)
        start_tunnel(response, exchange, self.tunnels, clock=self.clock)
        self.assertIs(self.client_transport.producer, exchange.transport)
        self.assertIs(exchange.transport.producer, self.client_transport)

    def test_with_a_fake_response(self) -> None:
        """start_tunnel works on a FakeResponse: 101, finished, bytes relayed both ways."""
        response = FakeResponse()
        response.headers.set("Upgrade", "websocket")
        exchange = FakeExchange(buffered=b"from-upstream")
        start_tunnel(response, exchange, self.tunnels, clock=self.clock)
        self.assertEqual(response.status, 101)
        self.assertTrue(response.finished)
        assert response.switched_transport is not None
        self.assertEqual(response.switched_transport.value(), b"from-upstream")
        response.switched_to.dataReceived(b"from-client")
        self.assertEqual(exchange.transport.value(), b"from-client")


class FakeExchange:
    """An upstream exchange after a 101: hands its transport over, then replays what it buffered."""

    def __init__(self, buffered: bytes = b"") -> None:
        self.transport = StringTransport()
        self.buffered = buffered
        self.aborted: BaseException | None = None

    def switch_protocol(self, protocol: Any) -> None:
        protocol.makeConnection(self.transport)
        if self.buffered:
            protocol.dataReceived(self.buffered)

    def abort(self, reason: BaseException | None = None) -> None:
        self.aborted = reason


class ClosingTests(TunnelTestCase):
    def test_upstream_closing_closes_the_client_after_its_last_bytes(self) -> None:
        """The upstream closing closes the client after its last bytes; the tunnel ends then."""
        tunnel = self.upgrade()
        closed = tunnel.when_closed()
        self.client_transport.clear()
        self.upstream.dataReceived(b"\x88\x02\x03\xf0")  # close frame 1008
        self.lose_upstream()
        self.assertEqual(self.client_transport.value(), b"\x88\x02\x03\xf0")
        self.assertTrue(self.client_transport.disconnecting)
        self.assertIsNone(self.client_transport.producer)  # else a paused producer keeps it open
        self.assertNoResult(closed)
        self.assertEqual(len(self.tunnels), 1)
        self.lose_client()
        self.successResultOf(closed)
        self.assertEqual(len(self.tunnels), 0)
        self.assertNotIn(self.client, self.server.connections)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_client_closing_closes_the_upstream(self) -> None:
        """The client closing closes the upstream, and the tunnel then is closed."""
        tunnel = self.upgrade()
        self.lose_client()
        self.assertTrue(self.upstream_transport.disconnecting)
        self.assertIsNone(self.upstream_transport.producer)
        self.lose_upstream()
        self.assertTrue(tunnel.closed)

    def test_peers_that_do_not_take_their_last_bytes_are_aborted(self) -> None:
        """A peer that does not take its last bytes is aborted after ABORT_AFTER."""
        self.upgrade()
        self.lose_upstream()
        aborted: list[bool] = []
        self.client_transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        self.clock.advance(ABORT_AFTER)
        self.assertEqual(aborted, [True])

    def test_close_all_sends_websocket_peers_going_away(self) -> None:
        """close_all sends WebSocket peers a 1001 close frame, masked upstream, then closes."""
        self.upgrade(websocket=True)
        self.client_transport.clear()
        done = self.tunnels.close_all()
        self.assertEqual(self.client_transport.value(), GOING_AWAY_TO_CLIENT)
        opcode, payload = unmask(self.upstream_transport.value())
        self.assertEqual((opcode, payload), (0x88, b"\x03\xe9"))  # FIN + close, 1001
        self.assertTrue(self.client_transport.disconnecting)
        self.assertTrue(self.upstream_transport.disconnecting)
        self.assertNoResult(done)
        self.lose_client()
        self.lose_upstream()
        self.successResultOf(done)

    def test_close_all_closes_other_upgrades_without_frames(self) -> None:
        """close_all closes non-WebSocket tunnels without writing frames."""
        self.upgrade(websocket=False)
        self.client_transport.clear()
        self.tunnels.close_all()
        self.assertEqual(self.client_transport.value(), b"")
        self.assertEqual(self.upstream_transport.value(), b"")
        self.assertTrue(self.client_transport.disconnecting)
        self.assertTrue(self.upstream_transport.disconnecting)

    def test_close_all_without_tunnels(self) -> None:
        """close_all with no tunnels fires at once."""
        self.successResultOf(self.tunnels.close_all())

    def test_stream_close_delay(self) -> None:
        """With close_delay, close_all waits that long before closing the tunnels."""
        self.tunnels = Tunnels(self.clock, close_delay=30)
        self.upgrade(websocket=True)
        done = self.tunnels.close_all()
        self.clock.advance(29)
        self.assertFalse(self.client_transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.client_transport.disconnecting)
        self.assertTrue(self.upstream_transport.disconnecting)
        self.lose_client()
        self.lose_upstream()
        self.successResultOf(done)

    def test_upgrade_finishing_after_the_unload_closes_at_once(self) -> None:
        """An upgrade finished after close_all is closed at once, with going-away."""
        self.successResultOf(self.tunnels.close_all())
        self.upgrade(websocket=True)
        self.assertTrue(self.client_transport.value().endswith(GOING_AWAY_TO_CLIENT))
        self.assertTrue(self.client_transport.disconnecting)
        self.assertTrue(self.upstream_transport.disconnecting)

    def test_stream_timeout(self) -> None:
        """stream_timeout closes a tunnel after that long, without going-away frames."""
        tunnel = self.upgrade(stream_timeout=60, websocket=True)
        self.client_transport.clear()
        self.clock.advance(59)
        self.assertFalse(self.client_transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(self.client_transport.disconnecting)
        self.assertTrue(self.upstream_transport.disconnecting)
        self.assertEqual(self.client_transport.value(), b"")  # a timeout is not a shutdown
        self.lose_client()
        self.lose_upstream()
        self.assertTrue(tunnel.closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_server_drain_closes_the_tunnel_with_going_away(self) -> None:
        """A server drain closes tunnels with going-away and waits for both sides."""
        self.upgrade(websocket=True)
        self.client_transport.clear()
        drained = self.server.drain(10, self.clock)
        self.assertEqual(self.client_transport.value(), GOING_AWAY_TO_CLIENT)
        self.assertEqual(unmask(self.upstream_transport.value()), (0x88, b"\x03\xe9"))
        self.assertNoResult(drained)
        self.lose_client()
        self.assertNoResult(drained)  # the upstream side is still closing
        self.lose_upstream()
        self.successResultOf(drained)

    def test_drain_waits_for_the_upstream_side_of_a_tunnel_the_client_ended(self) -> None:
        """A drain waits for the upstream side of a tunnel whose client already left."""
        self.upgrade()
        self.lose_client()
        self.assertIn(self.client, self.server.connections)
        drained = self.server.drain(1, self.clock)
        self.clock.advance(1)  # the forced close finds no client connection to abort
        self.assertNoResult(drained)
        self.lose_upstream()
        self.successResultOf(drained)
        self.assertEqual(self.server.connections, set())


class CannotSwitchTests(TunnelTestCase):
    def test_client_gone_closes_the_upstream(self) -> None:
        """If the client is gone the upstream exchange is aborted and no tunnel is made."""
        response = FakeResponse()
        response.connection_lost(ConnectionError("gone"))
        exchange = FakeExchange()
        start_tunnel(response, exchange, self.tunnels, clock=self.clock)
        self.assertIsInstance(exchange.aborted, ConnectionAbortedError)
        self.assertEqual(len(self.tunnels), 0)

    def test_a_response_that_cannot_switch_writes_nothing(self) -> None:
        """A response that cannot switch aborts the upstream and writes nothing."""
        response = FakeResponse()
        response.can_switch_protocols = False
        exchange = FakeExchange()
        start_tunnel(response, exchange, self.tunnels, clock=self.clock)
        self.assertIsInstance(exchange.aborted, ConnectionAbortedError)
        self.assertFalse(response.head_sent)
        self.assertEqual(len(self.tunnels), 0)
        self.flushLoggedErrors()

    def test_going_away_frame_to_server_is_masked(self) -> None:
        """going_away_to_server builds a masked 1001 close frame."""
        frame = going_away_to_server(b"\x01\x02\x03\x04")
        self.assertEqual(frame, b"\x88\x82\x01\x02\x03\x04\x02\xeb")
        self.assertEqual(unmask(frame), (0x88, b"\x03\xe9"))
