"""Tests for txcaddy._twisted: batched sends and the fast close, over real loopback sockets."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol, ServerFactory
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests._net import connect, listen_local, port_number
from txcaddy import _twisted

if TYPE_CHECKING:
    from twisted.internet.epollreactor import EPollReactor


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

    def __init__(self, script: Callable[[Any], object]) -> None:
        self.script = script

    def connectionMade(self) -> None:
        self.script(self.transport)


def fast_io(testcase: SynchronousTestCase) -> Any:
    """Turn txcaddy's fast path on for trial's reactor until the end of ``testcase``."""
    batch = _twisted.install_fast_io(reactor)
    testcase.addCleanup(_twisted.uninstall_fast_io, reactor)
    return batch


def serve_one(testcase: TestCase, script: Callable[[Any], None]) -> Deferred[bytes]:
    """Serve one connection with ``script``; fire with every byte the client got before EOF."""
    server = Factory.forProtocol(lambda: _Writer(script))
    port = listen_local(server)
    testcase.addCleanup(port.stopListening)
    done: Deferred[bytes] = Deferred()
    client = ClientFactory.forProtocol(lambda: _Collect(done))
    connect("127.0.0.1", port_number(port), client)
    return done


class BatchedSendTests(TestCase):
    def setUp(self) -> None:
        self.batch = fast_io(self)

    def exchange(self, script: Callable[[Any], None]) -> Deferred[bytes]:
        return serve_one(self, script)

    async def test_batched_data_then_fast_close(self) -> None:
        """Batched writes then a fast close deliver every byte, in order, before EOF."""
        def script(transport: Any) -> None:
            _twisted.send_now(transport, b"head ")
            _twisted.send_sequence_now(transport, [b"body ", b"end"])
            _twisted.lose_connection(transport)
            self.assertIn(transport, self.batch.closing)

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
        closed: list[Any] = []

        def script(transport: Any) -> None:
            _twisted.send_now(transport, b"bye")
            _twisted.lose_connection(transport)
            closed.append((transport, transport.fileno()))

        for _ in range(20):
            self.assertEqual(await self.exchange(script), b"bye")
        for transport, fd in closed:
            self.assertFalse(transport.connected)
            # trial runs these on Linux's epoll reactor; _selectables is its descriptor map.
            self.assertIsNot(cast("EPollReactor", reactor)._selectables.get(fd), transport)
            self.assertNotIn(transport, reactor.getReaders())


class LoopReadTests(TestCase):
    timeout = 10

    def setUp(self) -> None:
        self.batch = fast_io(self)

    async def test_reads_by_the_loop(self) -> None:
        """The loop's own reads: data in order, EOF as a clean close, a failing
        dataReceived logged and its connection dropped (as Twisted's doRead does)."""
        received: list[bytes] = []
        lost: Deferred[Any] = Deferred()

        class Server(Protocol):
            def dataReceived(self, data: bytes) -> None:
                received.append(data)
                if b"boom" in data:
                    raise ValueError("boom")

            def connectionLost(self, reason: Any = None) -> None:
                lost.callback([reason])

        port = listen_local(Factory.forProtocol(Server))
        self.addCleanup(port.stopListening)
        client_done: Deferred[bytes] = Deferred()
        connected: Deferred[Any] = Deferred()

        class Client(_Collect):
            def connectionMade(self) -> None:
                connected.callback(self.transport)

        connect("127.0.0.1", port_number(port), ClientFactory.forProtocol(lambda: Client(client_done)))
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
        self.patch(loop, "doIteration", _twisted._epoll_iteration(loop, self.batch))
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

        port = listen_local(Factory.forProtocol(Server), reactor=loop)
        self.addCleanup(port.stopListening)
        clients = []
        for _ in range(2):  # plain blocking sockets: their sends land before the next poll
            client = socket.create_connection(("127.0.0.1", port_number(port)))
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

        lost: Deferred[Any] = Deferred()
        got = bytearray()

        class Server(Protocol):
            def dataReceived(self, data: bytes) -> None:
                got.extend(data)

            def connectionLost(self, reason: Any = None) -> None:
                lost.callback([reason])

        port = listen_local(Factory.forProtocol(Server))
        self.addCleanup(port.stopListening)
        connect("127.0.0.1", port_number(port), ClientFactory.forProtocol(
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

        port = listen_local(Factory.forProtocol(lambda: Report(server_side)))
        self.addCleanup(port.stopListening)
        connect("127.0.0.1", port_number(port), ClientFactory.forProtocol(lambda: Report(client_side)))
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
        """With the fast path on, transports that are no TCP connection get plain writes and
        loseConnection."""
        batch = fast_io(self)
        transport = StringTransport()
        _twisted.send_now(transport, b"a")
        _twisted.send_sequence_now(transport, [b"b", b"c"])
        _twisted.lose_connection(transport)
        self.assertEqual(transport.value(), b"abc")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(batch.pending, {})


class _Loop:
    """A reactor's loop, as much as ``install_fast_io`` touches of one that is not epoll."""

    def __init__(self) -> None:
        self.polls: list[float | None] = []

    def doIteration(self, timeout: float | None) -> None:
        self.polls.append(timeout)


class FastIOChoiceTests(SynchronousTestCase):
    """The fast path is installed only when asked for, and undone."""

    def test_off_by_default(self) -> None:
        """A reactor nobody installed the fast path on keeps Twisted's own loop."""
        loop = _Loop()
        self.assertFalse(_twisted.fast_io_installed(loop))
        self.assertNotIn("doIteration", vars(loop))

    def test_install_wraps_the_loop_and_uninstall_restores_it(self) -> None:
        """Installing replaces doIteration with one that polls through the original; the last
        uninstall puts the original back (installs are counted)."""
        loop = _Loop()
        batch = _twisted.install_fast_io(loop)
        self.assertIs(_twisted.install_fast_io(loop), batch)
        self.assertIn("doIteration", vars(loop))
        loop.doIteration(0.5)
        self.assertEqual(loop.polls, [0.5])
        _twisted.uninstall_fast_io(loop)
        self.assertTrue(_twisted.fast_io_installed(loop))
        _twisted.uninstall_fast_io(loop)
        self.assertFalse(_twisted.fast_io_installed(loop))
        self.assertNotIn("doIteration", vars(loop))

    def test_epoll_reactor_gets_the_own_loop(self) -> None:
        """On trial's epoll reactor the loop is txcaddy's (it reads plain TCP itself); uninstalling
        gives the reactor its class's doIteration back."""
        from twisted.internet.epollreactor import EPollReactor

        if not isinstance(reactor, EPollReactor):
            raise self.skipTest("the reactor is not epoll")
        self.assertNotIn("doIteration", vars(reactor))
        batch = _twisted.install_fast_io(reactor)
        try:
            self.assertTrue(batch.looped)
            self.assertIn("doIteration", vars(reactor))
        finally:
            _twisted.uninstall_fast_io(reactor)
        self.assertNotIn("doIteration", vars(reactor))

    def test_the_last_installed_reactor_batches(self) -> None:
        """With the fast path on two reactors, the last one installed batches; when it is
        uninstalled the other one does again."""
        first, second = _Loop(), _Loop()
        first_batch = _twisted.install_fast_io(first)
        self.addCleanup(_twisted.uninstall_fast_io, first)
        second_batch = _twisted.install_fast_io(second)
        self.assertIs(_twisted._ACTIVE, second_batch)
        _twisted.uninstall_fast_io(second)
        self.assertIs(_twisted._ACTIVE, first_batch)

    def test_a_later_wrapper_is_left_in_place(self) -> None:
        """When something wrapped doIteration after txcaddy, uninstalling keeps both (and logs)."""
        loop = _Loop()
        _twisted.install_fast_io(loop)
        ours = loop.doIteration
        loop.doIteration = lambda timeout: ours(timeout)  # type: ignore[method-assign]
        _twisted.uninstall_fast_io(loop)
        self.assertTrue(_twisted.fast_io_installed(loop))
        self.assertEqual(len(self.flushLoggedErrors()), 0)


class PlainWriteTests(TestCase):
    """Without the fast path, the send helpers are Twisted's own calls."""

    timeout = 10

    async def test_send_now_is_write_without_fast_io(self) -> None:
        """On a reactor without the fast path, send_now queues in Twisted's buffer as write does."""
        await self.plain_writes()

    async def test_connections_of_another_reactor_are_not_batched(self) -> None:
        """The fast path on some other reactor leaves this reactor's connections to write()."""
        other = _Loop()
        _twisted.install_fast_io(other)
        self.addCleanup(_twisted.uninstall_fast_io, other)
        await self.plain_writes()

    async def plain_writes(self) -> None:
        self.assertFalse(_twisted.fast_io_installed(reactor))
        server_side: Deferred[Any] = Deferred()
        done: Deferred[bytes] = Deferred()

        def script(transport: Any) -> None:
            _twisted.send_now(transport, b"plain ")
            _twisted.send_sequence_now(transport, [b"write", b"s"])
            server_side.callback(transport._tempDataLen)
            _twisted.lose_connection(transport)

        port = listen_local(Factory.forProtocol(lambda: _Writer(script)))
        self.addCleanup(port.stopListening)
        connect("127.0.0.1", port_number(port), ClientFactory.forProtocol(lambda: _Collect(done)))
        self.assertEqual(await server_side, len(b"plain writes"))
        self.assertEqual(await done, b"plain writes")


def _tls12_server_options() -> Any:
    """A throwaway self-signed certificate, TLS 1.2 at most: after the handshake every record
    of type 23 (application data) carries application bytes, so records can be counted."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from OpenSSL import crypto
    from twisted.internet.ssl import CertificateOptions, TLSVersion

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "batch.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1)).sign(key, hashes.SHA256())
    )
    return CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),
        certificate=crypto.X509.from_cryptography(certificate),
        lowerMaximumSecurityTo=TLSVersion.TLSv1_2,
    )


def _application_records(raw: bytes) -> int:
    """How many TLS application-data records (type 23) ``raw`` holds."""
    count = offset = 0
    while offset + 5 <= len(raw):
        if raw[offset] == 23:
            count += 1
        offset += 5 + int.from_bytes(raw[offset + 3:offset + 5], "big")
    return count


class TLSBatchTests(TestCase):
    """TLS connections of txcaddy's listeners encrypt one iteration's writes together."""

    timeout = 10

    async def records_for(self, script: Callable[[Any], None]) -> tuple[bytes, int]:
        """Serve one TLS connection with ``script``; the plaintext and application records the
        client got before the connection closed."""
        from twisted.internet.ssl import CertificateOptions
        from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

        server = _twisted.TLSServerFactory(_tls12_server_options(), False,
                                           Factory.forProtocol(lambda: _Writer(script)))
        port = listen_local(server)
        self.addCleanup(port.stopListening)
        raw = bytearray()

        class RawRecording(TLSMemoryBIOProtocol):
            def dataReceived(self, data: bytes) -> None:
                raw.extend(data)
                super().dataReceived(data)

        done: Deferred[bytes] = Deferred()
        client = TLSMemoryBIOFactory(CertificateOptions(), True,
                                     ClientFactory.forProtocol(lambda: _Collect(done)))
        client.protocol = RawRecording
        connect("127.0.0.1", port_number(port), client)
        plain = await done
        return plain, _application_records(bytes(raw))

    @staticmethod
    def three_writes(transport: Any) -> None:
        """After the handshake (the first write waits for it), three writes in one iteration."""
        def later() -> None:
            transport.write(b"HEADERS ")
            transport.write(b"DATA ")
            transport.writeSequence([b"RST", b"_STREAM"])
            transport.loseConnection()

        reactor.callLater(0.05, later)

    async def test_writes_of_one_iteration_are_one_record(self) -> None:
        """With the fast path, three writes in one iteration arrive as one TLS record, before the
        close_notify (curl 7.88 stops reading after a record that ends a response: docs/http2.md)."""
        fast_io(self)
        plain, records = await self.records_for(self.three_writes)
        self.assertEqual(plain, b"HEADERS DATA RST_STREAM")
        self.assertEqual(records, 1)  # (the close_notify after it is an alert record, type 21)

    async def test_without_the_fast_path_each_write_is_a_record(self) -> None:
        """Without the fast path each write is encrypted at once, as Twisted's own protocol does."""
        plain, records = await self.records_for(self.three_writes)
        self.assertEqual(plain, b"HEADERS DATA RST_STREAM")
        self.assertEqual(records, 3)


class DirectIOTests(TestCase):
    """``ready_for_direct_io``: a socket may be written behind Twisted's back once all that
    was written through Twisted or the batch has left."""

    def exchange(self, script: Callable[[Any], None]) -> Deferred[bytes]:
        return serve_one(self, script)

    async def test_batched_data_leaves_first(self) -> None:
        """With the fast path, the transport's batched bytes are sent before it says yes."""
        batch = fast_io(self)

        def script(transport: Any) -> None:
            _twisted.send_now(transport, b"head ")
            self.assertTrue(_twisted.ready_for_direct_io(transport))
            self.assertNotIn(transport, batch.pending)
            transport.socket.send(b"direct")
            transport.loseConnection()

        self.assertEqual(await self.exchange(script), b"head direct")

    async def test_twisted_buffer_leaves_first(self) -> None:
        """Without it, what Twisted holds is sent at once (not at the next writable event)."""
        def script(transport: Any) -> None:
            transport.write(b"queued ")
            self.assertTrue(_twisted.ready_for_direct_io(transport))
            self.assertEqual((transport._tempDataLen, transport.dataBuffer), (0, b""))
            transport.socket.send(b"direct")
            transport.loseConnection()

        self.assertEqual(await self.exchange(script), b"queued direct")

    async def test_a_closing_connection_is_not_ready(self) -> None:
        """A connection closing after its batch, or aborted, is left alone."""
        fast_io(self)
        answers: list[bool] = []

        def script(transport: Any) -> None:
            _twisted.send_now(transport, b"last")
            _twisted.lose_connection(transport)
            answers.append(_twisted.ready_for_direct_io(transport))

        self.assertEqual(await self.exchange(script), b"last")
        self.assertEqual(answers, [False])

    def test_other_transports_are_not_ready(self) -> None:
        """Test doubles and TLS transports are never written directly."""
        self.assertFalse(_twisted.ready_for_direct_io(StringTransport()))


class PrivateTwistedNamesTests(SynchronousTestCase):
    """The private parts of Twisted that _twisted.py relies on are still there, with their shape.

    Twisted is pinned below its next major version (setup.cfg); a minor release may still
    rename one of these. Each failure names the attribute, so the fix starts at the right place.
    """

    def require(self, owner: Any, name: str, kind: type | tuple[type, ...] | None = None) -> Any:
        where = getattr(owner, "__name__", type(owner).__name__)
        if not hasattr(owner, name):
            self.fail(f"Twisted changed: {where}.{name} is gone (txcaddy/_twisted.py needs it)")
        value = getattr(owner, name)
        if kind is not None and not isinstance(value, kind):
            self.fail(f"Twisted changed: {where}.{name} is a {type(value).__name__}, not {kind}")
        return value

    def test_module_names(self) -> None:
        """The classes and constants _twisted.py imports exist and are what it expects."""
        from twisted.internet import endpoints, main, tcp, unix

        for module, name in [(tcp, "Server"), (tcp, "Client"), (unix, "Server"), (unix, "Client"),
                             (endpoints, "_WrappingProtocol")]:
            self.require(module, name, type)
        self.require(main, "CONNECTION_DONE")
        self.require(main, "CONNECTION_LOST")
        self.assertTrue(hasattr(endpoints._WrappingProtocol(Deferred(), Protocol()), "_wrappedProtocol"),
                        "Twisted changed: _WrappingProtocol._wrappedProtocol is gone")

    def test_connection_attributes(self) -> None:
        """A TCP connection has the buffers, flags and methods that the batch reads and calls."""
        import socket

        from twisted.internet import tcp

        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        self.addCleanup(client.close)
        accepted, address = listener.accept()
        self.addCleanup(accepted.close)
        accepted.setblocking(False)
        books = MemoryReactor()  # registers the reader: kept out of trial's reactor
        listening = tcp.Port(0, ServerFactory(), interface="127.0.0.1", reactor=books)  # never started
        transport = tcp.Server(accepted, Protocol(), address, listening, 1, books)
        for name, kind in [("_tempDataLen", int), ("_tempDataBuffer", list), ("dataBuffer", bytes),
                           ("_writeDisconnected", bool), ("TLS", bool), ("connected", int),
                           ("disconnecting", int), ("bufferSize", int), ("socket", socket.socket),
                           ("producerPaused", bool)]:
            self.require(transport, name, kind)
        self.require(transport, "producer")
        self.require(transport, "reactor")
        self.assertIs(transport.reactor, books)
        for name in ("_aborting",):
            self.require(type(transport), name, bool)  # a class default, set per instance on abort
        for name in ("writeSequence", "startWriting", "stopReading", "connectionLost", "fileno",
                     "loseConnection", "abortConnection", "setTcpNoDelay", "doWrite"):
            self.require(transport, name)

    def test_epoll_reactor_internals(self) -> None:
        """The epoll reactor's poller, books and handlers that _epoll_iteration uses directly."""
        from twisted.internet.epollreactor import EPollReactor

        if not isinstance(reactor, EPollReactor):
            raise self.skipTest("the reactor is not epoll")
        import select

        self.require(reactor, "_poller", type(select.epoll()))
        for name, kind in [("_selectables", dict), ("_reads", set), ("_writes", set)]:
            self.require(reactor, name, kind)
        for name in ("_doReadOrWrite", "_disconnectSelectable", "doIteration"):
            self.require(reactor, name)
        self.require(reactor._poller, "poll")
