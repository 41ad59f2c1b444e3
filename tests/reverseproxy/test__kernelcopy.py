"""Kernel-copied response bodies (``_kernelcopy``): real sockets on 127.0.0.1, real splice(2)."""

from __future__ import annotations

import errno
import json
import os
import random
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SkipTest, TestCase

from tests._net import listen_local, port_number
from tests.reverseproxy._backends import site
from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor
from txcaddy.reverseproxy import _kernelcopy
from txcaddy.reverseproxy._kernelcopy import KernelCopy

BODY = random.Random(1).randbytes(3 * 1024 * 1024 + 12345)  # odd length: offsets show
LARGE = BODY * 20  # more than loopback sockets buffer between a proxy and a client


class _Backend(Protocol):
    """Answers each request head with its server's body (Content-Length), or the first
    ``cut`` bytes of it and then nothing (the connection kept open) or a close."""

    transport: Any

    def __init__(self, server: Backend) -> None:
        self.server = server
        self.buffer = b""
        self.requests = 0

    def connectionMade(self) -> None:
        self.server.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.requests += 1
            self.server.requests += 1
            body = self.server.body
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body))
            assert self.transport is not None
            cut = self.server.cut
            self.transport.write(head + (body if cut is None else body[:cut]))
            if cut is not None and self.server.close_at_cut:
                self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.server.lost += 1
        waiters, self.server.lost_waiters = self.server.lost_waiters, []
        for d in waiters:
            d.callback(None)


class Backend:
    def __init__(self, body: bytes = BODY, cut: int | None = None, close_at_cut: bool = False) -> None:
        self.body = body
        self.cut = cut
        self.close_at_cut = close_at_cut
        self.connections: list[_Backend] = []
        self.requests = 0
        self.lost = 0
        self.lost_waiters: list[Deferred[None]] = []
        factory = Factory.forProtocol(lambda: _Backend(self))
        factory.noisy = False
        self.port = listen_local(factory)
        self.address = f"127.0.0.1:{port_number(self.port)}"

    def connection_lost(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.lost:
            d.callback(None)
        else:
            self.lost_waiters.append(d)
        return d


class _Client(Protocol):
    """Sends ``count`` GETs one after the other on one connection; collects the bodies
    (``raw``: only collects the bytes)."""

    def __init__(self, count: int = 1, headers: bytes = b"", raw: bool = False) -> None:
        self.count = count
        self.headers = headers
        self.raw = raw
        self.data = bytearray()
        self.bodies: list[bytes] = []
        self.done: Deferred[list[bytes]] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self._ask()

    def _ask(self) -> None:
        assert self.transport is not None
        self.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n%s\r\n" % self.headers)

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        while not self.raw:
            end = self.data.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.data[:end])
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            if len(self.data) < end + 4 + length:
                return
            self.bodies.append(bytes(self.data[end + 4:end + 4 + length]))
            del self.data[:end + 4 + length]
            if len(self.bodies) == self.count:
                self.done.callback(self.bodies)
                return
            self._ask()

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called and not self.raw:
            self.done.errback(reason)
        self.closed.callback(None)


def _inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def _open_inodes() -> set[int]:
    """What this process's descriptors refer to."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            found.add(_inode(int(name)))
        except OSError:
            pass  # the directory's own descriptor, closed by now
    return found


class KernelCopyTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        if not _kernelcopy.enabled:
            raise SkipTest("splice(2) is not available here")
        self.reactor = default_reactor()
        self.copies: list[KernelCopy] = []
        start = KernelCopy.start

        def counted(copy: KernelCopy) -> None:
            self.copies.append(copy)
            start(copy)

        self.patch(KernelCopy, "start", counted)
        self.patch(_kernelcopy, "enabled", True)

    def backend(self, **kw: Any) -> Backend:
        backend = Backend(**kw)
        self.addCleanup(backend.port.stopListening)
        self.addCleanup(lambda: [c.transport.abortConnection() for c in backend.connections if c.transport])
        return backend

    def proxy(self, directives: str, fast_io: bool = False) -> int:
        service = fromCaddyfile(site(directives).replace("PORT", "0"), reactor=self.reactor,
                                fast_io=fast_io)
        service.startService()
        self.addCleanup(service.stopService)
        (address,) = next(iter(service.boundAddresses().values()))
        return address.port

    def connect(self, port: int, client: _Client) -> Deferred[Any]:
        return connectProtocol(TCP4ClientEndpoint(self.reactor, "127.0.0.1", port), client)

    def until(self, condition: Any) -> Deferred[None]:
        """Fires once ``condition()`` holds (checked every 5 ms; the test's timeout bounds it)."""
        done: Deferred[None] = Deferred()

        def check() -> None:
            if condition():
                loop.stop()
                done.callback(None)

        loop = task.LoopingCall(check)
        loop.clock = self.reactor
        loop.start(0.005)
        return done

    @inlineCallbacks
    def stalled_copy(self) -> Any:
        """A ``LARGE`` download to a client that reads nothing, once the copy waits for it:
        fires with (backend, client, copy)."""
        backend = self.backend(body=LARGE)
        port = self.proxy(f"\treverse_proxy {backend.address}")
        client = _Client()
        yield self.connect(port, client)
        client.transport.pauseProducing()  # type: ignore[union-attr]
        yield self.until(lambda: self.copies and self.copies[0].writing)
        return backend, client, self.copies[0]

    @inlineCallbacks
    def _fetch_twice(self, fast_io: bool) -> Any:
        backend = self.backend()
        log = os.path.abspath(self.mktemp())
        port = self.proxy(f"\tlog {{\n\t\toutput file {log}\n\t\tformat json\n\t}}\n"
                          f"\treverse_proxy {backend.address}", fast_io=fast_io)
        client = _Client(count=2)
        yield self.connect(port, client)
        bodies = yield client.done
        self.assertEqual([len(b) for b in bodies], [len(BODY)] * 2)
        self.assertTrue(bodies[0] == BODY and bodies[1] == BODY, "the body arrived changed")
        self.assertEqual(len(self.copies), 2)
        # Exactly the body was spliced: the upstream connection served both requests.
        self.assertEqual((backend.requests, len(backend.connections)), (2, 1))
        self.assertEqual([c.active for c in self.copies], [False, False])
        with open(log) as f:
            sizes = [json.loads(line)["size"] for line in f if '"handled request"' in line]
        self.assertEqual(sizes, [len(BODY)] * 2)

    def test_body_is_spliced_whole_and_the_upstream_connection_reused(self) -> Any:
        """A long Content-Length body reaches the client byte for byte through splice(2);
        the upstream connection is reused and the access log counts every byte."""
        return self._fetch_twice(fast_io=False)

    def test_body_is_spliced_with_the_fast_io_loop(self) -> Any:
        """The same with txcaddy's epoll loop and batched sends (as ``twistd caddy`` runs)."""
        return self._fetch_twice(fast_io=True)

    @inlineCallbacks
    def test_encode_sees_the_bytes_so_no_splice(self) -> Any:
        """A handler that wraps the response (``encode``) gets every byte: no kernel copy."""
        import gzip

        backend = self.backend()
        port = self.proxy(f"\tencode gzip\n\treverse_proxy {backend.address}")
        client = _Client(headers=b"Accept-Encoding: gzip\r\nConnection: close\r\n", raw=True)
        yield self.connect(port, client)
        yield client.closed
        head, _, rest = bytes(client.data).partition(b"\r\n\r\n")
        self.assertIn(b"Content-Encoding: gzip", head)
        self.assertIn(b"Transfer-Encoding: chunked", head)
        body = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            body, rest = body + rest[:size], rest[size + 2:]
            if not size:
                break
        self.assertEqual(gzip.decompress(body), BODY)
        self.assertEqual(self.copies, [])

    @inlineCallbacks
    def test_short_body_goes_the_usual_way(self) -> Any:
        """A body with less than ``MIN_BODY`` to come after the first read is not spliced."""
        small = BODY[:_kernelcopy.MIN_BODY - 1]
        backend = self.backend(body=small)
        port = self.proxy(f"\treverse_proxy {backend.address}")
        client = _Client(count=2)
        yield self.connect(port, client)
        bodies = yield client.done
        self.assertEqual(bodies, [small, small])
        self.assertEqual(self.copies, [])

    @inlineCallbacks
    def test_a_client_that_does_not_read_pauses_the_upstream(self) -> Any:
        """Backpressure: while the client takes nothing, the copy stops reading the upstream
        and waits for the client's socket; then the whole body arrives."""
        _, client, copy = yield self.stalled_copy()
        self.assertFalse(copy.reading)
        self.assertGreater(copy.remaining, 0)
        client.transport.resumeProducing()  # type: ignore[union-attr]
        bodies = yield client.done
        self.assertTrue(bodies[0] == LARGE)
        self.assertFalse(copy.active)

    @inlineCallbacks
    def test_client_gone_mid_body_drops_the_upstream_and_frees_everything(self) -> Any:
        """A client that goes away mid-body: the upstream connection is closed (it still has
        body to send), and the duplicated descriptors and the pipe are released."""
        backend, client, copy = yield self.stalled_copy()
        held = {_inode(copy.upstream.fd), _inode(copy.downstream.fd), _inode(copy.pipe[0])}
        client.transport.abortConnection()  # type: ignore[union-attr]
        yield client.closed
        yield backend.connection_lost()
        # The sockets are closed (no descriptor left on them), the pipe too (it held bytes).
        yield self.until(lambda: not copy.active and not held & _open_inodes())
        self.assertFailure(client.done, Exception)
        yield client.done

    @inlineCallbacks
    def test_upstream_gone_mid_body_closes_the_client(self) -> Any:
        """An upstream that closes before the end of the body: the client's connection is
        closed after what arrived (a short body, as without splicing)."""
        backend = self.backend(cut=1024 * 1024, close_at_cut=True)
        port = self.proxy(f"\treverse_proxy {backend.address}")
        client = _Client(raw=True)
        yield self.connect(port, client)
        yield client.closed
        head, _, body = bytes(client.data).partition(b"\r\n\r\n")
        self.assertIn(b"Content-Length: %d" % len(BODY), head)
        self.assertEqual(body, BODY[:1024 * 1024])
        self.assertEqual(len(self.copies), 1)
        self.assertFalse(self.copies[0].active)
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_read_timeout_applies_while_splicing(self) -> Any:
        """The transport's ``read_timeout`` ends a body that stops arriving mid-splice."""
        backend = self.backend(cut=1024 * 1024)
        port = self.proxy(f"\treverse_proxy {backend.address} {{\n"
                          "\t\ttransport http {\n\t\t\tread_timeout 200ms\n\t\t}\n\t}")
        client = _Client(raw=True)
        yield self.connect(port, client)
        yield client.closed
        body = bytes(client.data).partition(b"\r\n\r\n")[2]
        self.assertEqual(body, BODY[:1024 * 1024])
        self.assertEqual(len(self.copies), 1)
        yield backend.connection_lost()
        self.flushLoggedErrors()

    @inlineCallbacks
    def test_out_of_descriptors_goes_the_usual_way(self) -> Any:
        """No descriptors left to duplicate: the body goes through Python, whole."""
        self.patch(_kernelcopy, "_duplicates", lambda upstream, client: None)
        backend = self.backend()
        port = self.proxy(f"\treverse_proxy {backend.address}")
        client = _Client()
        yield self.connect(port, client)
        bodies = yield client.done
        self.assertTrue(bodies[0] == BODY)
        self.assertEqual(self.copies, [])

    def test_duplicates_keep_nothing_when_the_second_fails(self) -> None:
        """The first duplicate is closed again when the second cannot be made."""
        made: list[int] = []
        real = os.dup

        def dup(fd: int) -> int:
            if made:
                raise OSError(24, "Too many open files")
            made.append(real(fd))
            return made[-1]

        self.patch(os, "dup", dup)
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        self.addCleanup(os.close, write_end)
        self.assertIsNone(_kernelcopy._duplicates(read_end, write_end))
        self.assertRaises(OSError, os.fstat, made[0])

    @inlineCallbacks
    def _refused(self, refuse: Any) -> Any:
        real = _kernelcopy._SPLICE

        def splice(src: int, dst: int, count: int, **kw: Any) -> int:
            if refuse(src, dst):
                raise OSError(errno.EINVAL, "Invalid argument")
            return real(src, dst, count, **kw)

        self.patch(_kernelcopy, "_SPLICE", splice)
        backend = self.backend()
        port = self.proxy(f"\treverse_proxy {backend.address}")
        client = _Client(count=2)
        yield self.connect(port, client)
        bodies = yield client.done
        self.assertTrue(bodies[0] == BODY and bodies[1] == BODY)
        self.assertEqual(len(self.copies), 1)  # then no more tries in this process
        self.assertFalse(_kernelcopy.enabled)
        self.assertEqual(backend.requests, 2)
        self.assertEqual(len(backend.connections), 1)

    def test_kernel_refusing_to_splice_the_upstream_falls_back(self) -> Any:
        """A kernel that refuses to splice sockets: the body goes the usual way, whole."""
        return self._refused(lambda src, dst: True)

    def test_kernel_refusing_to_splice_to_the_client_falls_back_with_the_pipe(self) -> Any:
        """Refused on the client's side with bytes already in the pipe: those are read back
        and sent first, then the rest the usual way."""
        copies = self.copies
        return self._refused(lambda src, dst: bool(copies) and dst == copies[0].downstream.fd)

