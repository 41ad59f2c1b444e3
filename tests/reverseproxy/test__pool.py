"""The upstream connection pool: reuse, idle limits and timeouts, the surplus linger, per-host
limits, dialling, and closing the idle connections at unload."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.python.failure import Failure

from tests.reverseproxy._client import ADDR, HOST, PoolTestCase
from txcaddy.reverseproxy._h1connection import HTTP11Connection
from txcaddy.reverseproxy._pool import SURPLUS_LINGER
from txcaddy.reverseproxy.transport import (
    CHUNKED,
    ConnectionPool,
    DialError,
    ResponseHeaderTimeout,
    UpstreamAddress,
)


class PoolTests(PoolTestCase):
    def test_idle_retirement(self) -> None:
        """An idle connection closes after ``idle_timeout`` and stops counting against the host."""
        pool = self.pool = ConnectionPool(self.reactor, idle_timeout=90.0)
        self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(pool.idle_count(ADDR), 1)
        self.reactor.advance(89)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(pool.idle_count(ADDR), 0)
        self.assertEqual(pool.open_count(ADDR), 0)

    def test_reuse_cancels_idle_timer(self) -> None:
        """A connection reused before its idle timeout is not closed by the stale timer."""
        self.pool = ConnectionPool(self.reactor, idle_timeout=10.0)
        self.start()
        proto, transport = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.reactor.advance(5)
        self.start()
        self.reactor.advance(20)
        self.assertFalse(transport.disconnecting)

    def test_idle_connection_closed_by_server(self) -> None:
        """An idle connection the upstream closes leaves the pool; the next request dials anew."""
        self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.pool.idle_count(ADDR), 0)
        self.assertEqual(self.pool.open_count(ADDR), 0)
        self.start()
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def two_answered_connections(self, surplus_linger: float | None = None) -> tuple[Any, Any, Any, Any]:
        """A pool keeping one idle connection per host, after two requests were answered on
        two connections: (protocol, transport) of the first, then of the second."""
        self.pool = ConnectionPool(self.reactor, max_idle_per_host=1)
        if surplus_linger is not None:
            self.pool.surplus_linger = surplus_linger
        self.start()
        self.start()
        p1, t1 = self.connect(0)
        p2, t2 = self.connect(1)
        p1.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        p2.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        return p1, t1, p2, t2

    def test_max_idle_per_host(self) -> None:
        """With no linger, a connection coming back beyond ``max_idle_per_host`` closes at once."""
        # Go's rule (surplus_linger 0): a connection beyond the idle limit closes at once.
        p1, t1, p2, t2 = self.two_answered_connections(surplus_linger=0)
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertFalse(t1.disconnecting)
        self.assertTrue(t2.disconnecting)

    def test_idle_surplus_lingers_then_the_oldest_closes(self) -> None:
        """The idle surplus stays open for the linger, then the oldest idle connection closes."""
        p1, t1, p2, t2 = self.two_answered_connections()
        self.assertEqual(self.pool.idle_count(ADDR), 2)
        self.assertFalse(t1.disconnecting or t2.disconnecting)
        self.reactor.advance(SURPLUS_LINGER - 0.01)
        self.assertEqual(self.pool.idle_count(ADDR), 2)
        self.reactor.advance(0.01)
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertTrue(t1.disconnecting)
        self.assertFalse(t2.disconnecting)

    def test_idle_surplus_in_use_by_bursts_is_not_closed(self) -> None:
        """A surplus reused by bursts closes only once it has idled a whole linger; no redial."""
        p1, t1, p2, t2 = self.two_answered_connections()  # idle: [p1, p2], one too many
        self.reactor.advance(SURPLUS_LINGER / 2)
        self.start()  # a burst takes both again
        self.start()
        self.reactor.advance(0.1)
        p1.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        p2.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.reactor.advance(SURPLUS_LINGER / 2)  # the first trim: the surplus idled only 0.4 s
        self.assertEqual(self.pool.idle_count(ADDR), 2)
        self.assertFalse(t1.disconnecting or t2.disconnecting)
        self.reactor.advance(SURPLUS_LINGER / 2)  # idle for the whole linger now
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertEqual(len(self.reactor.tcpClients), 2)  # never redialled
        self.assertTrue(t1.disconnecting or t2.disconnecting)
        self.assertFalse(t1.disconnecting and t2.disconnecting)

    def test_idle_surplus_reused_within_the_linger_is_kept(self) -> None:
        """Reuse takes the newest idle connection, and a reused surplus is kept."""
        p1, t1, p2, t2 = self.two_answered_connections()
        t2.clear()
        self.start()  # takes the newest idle connection: no new dial
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertTrue(t2.value().startswith(b"GET "))
        self.reactor.advance(SURPLUS_LINGER)
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.assertFalse(t1.disconnecting or t2.disconnecting)

    def test_max_conns_per_host_queues(self) -> None:
        """Beyond ``max_conns_per_host`` requests wait, then run in order on the freed connection."""
        self.pool = ConnectionPool(self.reactor, max_conns_per_host=1)
        _, body1, _, _ = self.start(target=b"/1")
        _, body2, heads2, _ = self.start(target=b"/2")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        proto, transport = self.connect()
        self.assertNotIn(b"/2", transport.value())
        transport.clear()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        self.assertTrue(body1.finished)
        self.assertTrue(transport.value().startswith(b"GET /2 HTTP/1.1"))
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")
        self.assertEqual(body2.body, b"2")
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_queued_request_dials_after_close(self) -> None:
        """A waiting request dials once the busy connection closes instead of being reused."""
        self.pool = ConnectionPool(self.reactor, max_conns_per_host=1)
        self.start()
        _, _, _, _ = self.start(target=b"/2")
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_dial_timeout(self) -> None:
        """A connect past ``dial_timeout`` is a 502 ``DialError`` and frees the host's slot."""
        _, _, _, failures = self.start()
        self.reactor.advance(2.9)
        self.assertEqual(failures, [])
        self.reactor.advance(0.1)
        self.assertTrue(failures[0].check(DialError))
        self.assertEqual(failures[0].value.status, 502)
        self.assertIn("timeout", str(failures[0].value))
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_dial_refused(self) -> None:
        """A refused connect is a ``DialError`` and leaves no timer behind."""
        _, _, _, failures = self.start()
        _h, _p, factory, _t, _b = self.reactor.tcpClients[0]
        connector = self.reactor.connectors[0]
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
        self.assertTrue(failures[0].check(DialError))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_response_header_timeout(self) -> None:
        """``response_header_timeout`` runs from the end of the request body; expiry is a 504."""
        self.pool = ConnectionPool(self.reactor, response_header_timeout=5.0)
        exchange, _, _, failures = self.start(method=b"POST", body_length=CHUNKED)
        _, transport = self.connect()
        self.reactor.advance(10)  # body not finished: the timer has not started
        self.assertEqual(failures, [])
        exchange.finish_body()
        self.reactor.advance(5)
        self.assertTrue(failures[0].check(ResponseHeaderTimeout))
        self.assertEqual(failures[0].value.status, 504)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_response_header_timer_stops_at_head(self) -> None:
        """The response-header timer stops at the head: a slow body is not cut off."""
        self.pool = ConnectionPool(self.reactor, response_header_timeout=5.0)
        _, body, _, _ = self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")
        self.reactor.advance(60)
        proto.dataReceived(b"abc")
        self.assertIsNone(body.reason)
        self.assertEqual(body.body, b"abc")

    def test_cancel_head_aborts(self) -> None:
        """Cancelling ``head`` aborts the exchange and drops its connection."""
        exchange, _, _, failures = self.start()
        _, transport = self.connect()
        exchange.head.cancel()
        self.assertTrue(failures[0].check(defer.CancelledError))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.open_count(ADDR), 0)

    def test_cancel_while_dialing_keeps_connection(self) -> None:
        """A request cancelled while dialling leaves the new connection idle for others."""
        exchange, _, _, failures = self.start()
        exchange.head.cancel()
        self.assertTrue(failures[0].check(defer.CancelledError))
        _, transport = self.connect()
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.pool.idle_count(ADDR), 1)

    def test_unix_address(self) -> None:
        """A ``unix//path`` upstream is dialled on that Unix socket."""
        address = UpstreamAddress.parse("unix//run/app.sock")
        self.assertEqual((address.network, address.path), ("unix", "/run/app.sock"))
        self.pool.request(address, b"GET", b"/", HOST)
        self.assertEqual(self.reactor.unixClients[0][0], "/run/app.sock")

    def test_host_without_connections_is_forgotten(self) -> None:
        """A host whose last connection is gone (closed or failed dial) leaves the pool."""
        self.start()
        proto, _ = self.connect()
        proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(len(self.pool._hosts), 1)
        proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.pool._hosts, {})
        _, _, _, failures = self.start()
        self.reactor.advance(3)  # dial timeout
        self.assertTrue(failures[0].check(DialError))
        self.assertEqual(self.pool._hosts, {})

    def test_address_parsing(self) -> None:
        """Dial addresses parse (bracketed IPv6, errors), and the key tells ports apart."""
        v6 = UpstreamAddress.parse("[::1]:8080")
        self.assertEqual((v6.host, v6.port), ("::1", 8080))
        self.assertRaises(ValueError, UpstreamAddress.parse, "nope")
        self.assertNotEqual(UpstreamAddress.parse("a:1").key, UpstreamAddress.parse("a:2").key)


class ConnectedFlagTests(PoolTestCase):
    """``connected`` is a bool from ``makeConnection`` on (the compiled build refuses Twisted's 1)."""

    def test_connected_is_true_then_false(self) -> None:
        """A dialled connection reads ``connected is True``; after its loss, ``False``."""
        self.start()
        wrapper, _transport = self.connect()
        conn = wrapper._wrappedProtocol  # the endpoint's wrapper forwards to the connection
        self.assertIsInstance(conn, HTTP11Connection)
        self.assertIs(conn.connected, True)
        wrapper.connectionLost(Failure(ConnectionDone()))
        self.assertIs(conn.connected, False)


class CloseIdleTests(PoolTestCase):
    """``close_idle`` at unload: every idle connection closed, a Deferred for when they are."""

    def answered(self, count: int) -> list[tuple[Any, Any]]:
        """``count`` connections, each answered once and idle now."""
        for _ in range(count):
            self.start()
        connections = [self.connect(index) for index in range(count)]
        for proto, _transport in connections:
            proto.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(self.pool.idle_count(ADDR), count)
        return connections

    def test_fires_only_after_every_connection_is_lost(self) -> None:
        """The Deferred waits for the last closed connection's ``connectionLost``."""
        (p1, t1), (p2, t2) = self.answered(2)
        closed = self.pool.close_idle()
        self.assertTrue(t1.disconnecting and t2.disconnecting)
        self.assertEqual((self.pool.idle_count(ADDR), self.pool.open_count(ADDR)), (0, 0))
        self.assertNoResult(closed)
        p1.connectionLost(Failure(ConnectionDone()))
        self.assertNoResult(closed)
        p2.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(self.successResultOf(closed))

    def test_fires_at_once_without_idle_connections(self) -> None:
        """Nothing idle (nothing dialled, or only busy connections): already fired."""
        self.assertIsNone(self.successResultOf(self.pool.close_idle()))
        self.start()
        _proto, transport = self.connect()
        self.assertIsNone(self.successResultOf(self.pool.close_idle()))
        self.assertFalse(transport.disconnecting)  # the busy connection is left alone

    def test_connection_lost_with_an_error_still_counts_as_closed(self) -> None:
        """A reset while closing fires the Deferred too (with None, never an error)."""
        ((proto, _transport),) = self.answered(1)
        closed = self.pool.close_idle()
        proto.connectionLost(Failure(ConnectionLost("reset")))
        self.assertIsNone(self.successResultOf(closed))


class SurplusLingerTests(PoolTestCase):
    """``surplus_linger``: how long idle connections beyond the per-host limit stay open."""

    def surplus(self, **kw: Any) -> tuple[Any, Any]:
        """Two connections answered with ``max_idle_per_host=1``: the transports, oldest first."""
        self.pool = ConnectionPool(self.reactor, max_idle_per_host=1, **kw)
        self.start()
        self.start()
        (p1, t1), (p2, t2) = self.connect(0), self.connect(1)
        p1.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        p2.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        return t1, t2

    def test_default_is_one_second(self) -> None:
        """By default the surplus stays idle for ``SURPLUS_LINGER`` (1 s), then the oldest closes."""
        self.assertEqual(SURPLUS_LINGER, 1.0)
        t1, t2 = self.surplus()
        self.reactor.advance(0.99)
        self.assertFalse(t1.disconnecting or t2.disconnecting)
        self.reactor.advance(0.01)
        self.assertEqual((t1.disconnecting, t2.disconnecting), (True, False))

    def test_zero_closes_the_surplus_at_once(self) -> None:
        """``surplus_linger=0`` is Go's rule: the connection beyond the limit closes on return."""
        t1, t2 = self.surplus(surplus_linger=0.0)
        self.assertEqual((t1.disconnecting, t2.disconnecting), (False, True))
        self.assertEqual(self.pool.idle_count(ADDR), 1)
        self.reactor.advance(10)
        self.assertFalse(t1.disconnecting)  # the one within the limit stays

    def test_configured_linger(self) -> None:
        """Another linger moves the moment the surplus closes."""
        t1, _t2 = self.surplus(surplus_linger=5.0)
        self.reactor.advance(4.9)
        self.assertFalse(t1.disconnecting)
        self.reactor.advance(0.1)
        self.assertTrue(t1.disconnecting)
