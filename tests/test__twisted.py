"""Tests for txcaddy._twisted: batched sends and the fast close, over real loopback sockets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txcaddy import _twisted


class _Collect(Protocol):
    def __init__(self, done: Deferred[bytes]) -> None:
        self.data = bytearray()
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(bytes(self.data))


class _Writer(Protocol):
    """Runs ``script(transport)`` as soon as the connection is up."""

    def __init__(self, script: Callable[[Any], None]) -> None:
        self.script = script

    def connectionMade(self) -> None:
        self.script(self.transport)


class BatchedSendTests(TestCase):
    def exchange(self, script: Callable[[Any], None]) -> Deferred[bytes]:
        """Serve one connection with ``script``; fire with every byte the client got before EOF."""
        server = Factory.forProtocol(lambda: _Writer(script))
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        done: Deferred[bytes] = Deferred()
        client = ClientFactory.forProtocol(lambda: _Collect(done))
        reactor.connectTCP("127.0.0.1", port.getHost().port, client)
        return done

    async def test_batched_data_then_fast_close(self) -> None:
        """Batched writes then a fast close deliver every byte, in order, before EOF."""
        def script(transport: Any) -> None:
            _twisted.send_now(transport, b"head ")
            _twisted.send_sequence_now(transport, [b"body ", b"end"])
            _twisted.lose_connection(transport)
            self.assertIn(transport, _twisted._BATCH.closing)

        self.assertEqual(await self.exchange(script), b"head body end")

    async def test_batched_data_is_sent_before_a_plain_lose_connection(self) -> None:
        """A plain loseConnection after a batched write still sends the batched data."""
        def script(transport: Any) -> None:
            _twisted.send_now(transport, b"all of it")
            transport.loseConnection()

        self.assertEqual(await self.exchange(script), b"all of it")

    async def test_twisted_writes_after_batched_ones_keep_their_order(self) -> None:
        """Direct transport writes mixed with batched ones reach the peer in call order."""
        def script(transport: Any) -> None:
            _twisted.send_now(transport, b"first ")
            transport.write(b"second ")  # straight to Twisted's buffer
            _twisted.send_now(transport, b"third")  # queued behind the batched data
            transport.loseConnection()

        self.assertEqual(await self.exchange(script), b"first second third")

    async def test_more_than_the_kernel_takes_at_once_arrives_whole(self) -> None:
        """A batch larger than the socket buffer arrives whole, the rest via Twisted's buffer."""
        blob = bytes(range(256)) * 40_000  # ~10 MB: the rest goes through Twisted's buffer

        def script(transport: Any) -> None:
            _twisted.send_sequence_now(transport, [b"<", blob, b">"])
            _twisted.lose_connection(transport)

        self.assertEqual(await self.exchange(script), b"<" + blob + b">")

    async def test_fast_close_leaves_the_reactor_consistent(self) -> None:
        """A fast-closed connection is gone from the reactor's books (its descriptor left the
        epoll set with close()); descriptors reused by the next connections work."""
        _twisted._BATCH.install(reactor)
        closed: list[Any] = []

        def script(transport: Any) -> None:
            _twisted.send_now(transport, b"bye")
            _twisted.lose_connection(transport)
            closed.append((transport, transport.fileno()))

        for _ in range(20):
            self.assertEqual(await self.exchange(script), b"bye")
        for transport, fd in closed:
            self.assertFalse(transport.connected)
            self.assertIsNot(reactor._selectables.get(fd), transport)
            self.assertNotIn(transport, reactor.getReaders())


class LoopReadTests(TestCase):
    timeout = 10

    async def test_reads_by_the_loop(self) -> None:
        """The loop's own reads: data in order, EOF as a clean close, a failing
        dataReceived logged and its connection dropped (as Twisted's doRead does)."""
        _twisted._BATCH.install(reactor)
        received: list[bytes] = []
        lost: Deferred[Any] = Deferred()

        class Server(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(data)
                if b"boom" in data:
                    raise ValueError("boom")

            def connectionLost(self, reason: Any = None) -> None:
                lost.callback([reason])

        port = reactor.listenTCP(0, Factory.forProtocol(Server), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client_done: Deferred[bytes] = Deferred()
        connected: Deferred[Any] = Deferred()

        class Client(_Collect):
            def connectionMade(self) -> None:
                connected.callback(self.transport)

        reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(lambda: Client(client_done)))
        transport = await connected
        transport.write(b"boom")
        (reason,) = await lost
        self.assertEqual(b"".join(received), b"boom")
        self.assertIsInstance(reason.value, ValueError)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(await client_done, b"")  # the client sees the connection close

    async def test_no_read_after_abort_connection(self) -> None:
        """A connection aborted while the loop works through a batch of ready sockets gets no
        more dataReceived (Twisted's abortConnection promises that; both sockets are ready in
        the same poll here, and the abort takes the other out of the reactor's books)."""
        import socket

        loop: Any = reactor  # the epoll reactor, its private parts included
        _twisted._BATCH.install(loop)
        polls: list[set[int]] = []

        class RecordingPoller:
            """The reactor's epoll object, keeping the descriptors each poll reported."""

            def __init__(self, poller: Any) -> None:
                self.poller = poller

            def poll(self, timeout: float, maxevents: int) -> list[tuple[int, int]]:
                ready = self.poller.poll(timeout, maxevents)
                polls.append({fd for fd, _event in ready})
                return ready

            def __getattr__(self, name: str) -> Any:
                return getattr(self.poller, name)

        # The installed loop holds the reactor's poller; run a fresh one over a recording one.
        self.patch(loop, "_poller", RecordingPoller(loop._poller))
        self.patch(loop, "doIteration", _twisted._epoll_iteration(loop, _twisted._BATCH))
        servers: list[Any] = []
        server_fds: list[int] = []
        late: list[bytes] = []
        both_lost: Deferred[None] = Deferred()
        both_up: Deferred[None] = Deferred()

        class Server(Protocol):
            aborted = False

            transport: Any

            def connectionMade(self) -> None:
                servers.append(self)
                server_fds.append(self.transport.fileno())
                if len(servers) == 2:
                    both_up.callback(None)

            def dataReceived(self, data: bytes) -> None:
                if self.aborted:
                    late.append(data)
                    return
                for other in servers:
                    if other is not self and not other.aborted:
                        other.aborted = True
                        other.transport.abortConnection()
                self.transport.loseConnection()

            def connectionLost(self, reason: Any = None) -> None:
                servers.remove(self)
                if not servers and not both_lost.called:
                    both_lost.callback(None)

        port = loop.listenTCP(0, Factory.forProtocol(Server), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        clients = []
        for _ in range(2):  # plain blocking sockets: their sends land before the next poll
            client = socket.create_connection(("127.0.0.1", port.getHost().port))
            self.addCleanup(client.close)
            clients.append(client)
        await both_up
        for client in clients:
            client.sendall(b"x")
        await both_lost
        self.assertEqual(late, [])
        self.assertIn(set(server_fds), [fds & set(server_fds) for fds in polls])

    async def test_eof_read_by_the_loop_is_a_clean_close(self) -> None:
        """EOF read by the loop, after all the data, is a ConnectionDone close."""
        from twisted.internet.error import ConnectionDone

        _twisted._BATCH.install(reactor)
        lost: Deferred[Any] = Deferred()
        got = bytearray()

        class Server(Protocol):
            def dataReceived(self, data: bytes) -> None:
                got.extend(data)

            def connectionLost(self, reason: Any = None) -> None:
                lost.callback([reason])

        port = reactor.listenTCP(0, Factory.forProtocol(Server), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(
            lambda: _Writer(lambda t: (t.write(b"a" * 100_000), t.loseConnection()))))
        (reason,) = await lost
        self.assertEqual(bytes(got), b"a" * 100_000)
        self.assertIsInstance(reason.value, ConnectionDone)


class SocketOptionTests(TestCase):
    timeout = 10

    async def connected_pair(self) -> tuple[Any, Any]:
        """Both ends of a real loopback TCP connection (server transport, client transport)."""
        server_side: Deferred[Any] = Deferred()
        client_side: Deferred[Any] = Deferred()

        class Report(Protocol):
            def __init__(self, d: Deferred[Any]) -> None:
                self.d = d

            def connectionMade(self) -> None:
                self.d.callback(self.transport)

        port = reactor.listenTCP(0, Factory.forProtocol(lambda: Report(server_side)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(lambda: Report(client_side)))
        server, client = await server_side, await client_side
        self.addCleanup(client.loseConnection)
        self.addCleanup(server.loseConnection)
        return server, client

    async def test_no_delay(self) -> None:
        """no_delay turns TCP_NODELAY on for a TCP connection."""
        import socket

        server, _client = await self.connected_pair()
        sock = server.getHandle()
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)
        _twisted.no_delay(server)
        self.assertNotEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)

    async def test_quick_ack(self) -> None:
        """quick_ack sets TCP_QUICKACK on a TCP connection and ignores other transports."""
        import socket

        if not hasattr(socket, "TCP_QUICKACK"):
            raise self.skipTest("TCP_QUICKACK is Linux only")
        server, _client = await self.connected_pair()
        calls: list[tuple[int, int, int]] = []

        class Recording:
            def __init__(self, sock: Any) -> None:
                self.sock = sock

            def setsockopt(self, *args: Any) -> None:
                calls.append(args)
                self.sock.setsockopt(*args)  # the real call must be accepted too

            def __getattr__(self, name: str) -> Any:
                return getattr(self.sock, name)

        self.patch(server, "socket", Recording(server.socket))
        _twisted.quick_ack(server)
        self.assertEqual(calls, [(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)])
        _twisted.quick_ack(StringTransport())  # anything that is no TCP connection: nothing
        self.assertEqual(len(calls), 1)


class OtherTransportTests(SynchronousTestCase):
    def test_other_transports_are_written_normally(self) -> None:
        """Transports that are no TCP connection get plain writes and loseConnection."""
        transport = StringTransport()
        _twisted.send_now(transport, b"a")
        _twisted.send_sequence_now(transport, [b"b", b"c"])
        _twisted.lose_connection(transport)
        self.assertEqual(transport.value(), b"abc")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(_twisted._BATCH.pending, {})
