"""Memory under load: 1 GiB each way through the proxy to slow peers, and many idle clients.

Backend, proxy and client all run in this process, so the RSS measured is an
upper bound for the proxy alone. The bounds are generous on purpose: a proxy
that buffered the transfer would grow by hundreds of MiB, one that streams
with backpressure by a few.
"""

from __future__ import annotations

import resource
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from tests._net import listen_local, port_number
from tests.reverseproxy._backends import EchoBackend, site, start_proxy

GIB = 1 << 30
CHUNK = b"\xa5" * (256 << 10)
PAUSE_EVERY = 8 << 20  # the slow peer stops reading after each 8 MiB ...
PAUSE_FOR = 0.005  # ... for 5 ms: slower than the proxy can move data, so buffers would fill


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


class PeakRSS:
    """Samples this process's RSS every 50 ms while a transfer runs."""

    def __init__(self) -> None:
        self.start = rss_mb()
        self.peak = self.start
        self._loop = task.LoopingCall(self._sample)
        self._loop.start(0.05)

    def _sample(self) -> None:
        self.peak = max(self.peak, rss_mb())

    def stop(self) -> float:
        self._sample()
        self._loop.stop()
        return self.peak - self.start


@implementer(IPushProducer)
class _Source:
    """Writes ``total`` bytes to a transport as fast as it takes them."""

    def __init__(self, transport: Any, total: int, done: Any = None) -> None:
        self.transport = transport
        self.remaining = total
        self.paused = False
        self.done = done
        transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.remaining > 0:
            piece = CHUNK if self.remaining >= len(CHUNK) else CHUNK[: self.remaining]
            self.remaining -= len(piece)
            self.transport.write(piece)
        if self.remaining == 0 and self.transport is not None:
            self.transport.unregisterProducer()
            self.transport = None
            if self.done is not None:
                self.done()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.remaining = 0


class _SlowReader:
    """Counts bytes and pauses the transport for a moment after every PAUSE_EVERY bytes."""

    def __init__(self) -> None:
        self.count = 0
        self._since_pause = 0

    def received(self, transport: Any, size: int) -> None:
        self.count += size
        self._since_pause += size
        if self._since_pause >= PAUSE_EVERY:
            self._since_pause = 0
            transport.pauseProducing()
            reactor.callLater(PAUSE_FOR, transport.resumeProducing)


def _after_head(head: bytes, data: bytes) -> tuple[bytes, bytes | None]:
    """Collect a message head; return it and the body bytes in ``data`` (None: head incomplete)."""
    if head.endswith(b"\r\n\r\n"):
        return head, data
    head += data
    end = head.find(b"\r\n\r\n")
    if end < 0:
        return head, None
    return head[: end + 4], head[end + 4:]


class _DownloadBackend(Protocol):
    def dataReceived(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % GIB)
            _Source(self.transport, GIB)


class _DownloadClient(Protocol):
    def __init__(self) -> None:
        self.head = b""
        self.reader = _SlowReader()
        self.finished: defer.Deferred[int] = defer.Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.head, body = _after_head(self.head, data)
        if body is None:
            return
        assert self.transport is not None
        self.reader.received(self.transport, len(body))
        if self.reader.count >= GIB and not self.finished.called:
            self.finished.callback(self.reader.count)
            self.transport.loseConnection()


class _UploadBackend(Protocol):
    def __init__(self) -> None:
        self.head = b""
        self.reader = _SlowReader()

    def dataReceived(self, data: bytes) -> None:
        self.head, body = _after_head(self.head, data)
        if body is None:
            return
        assert self.transport is not None
        self.reader.received(self.transport, len(body))
        if self.reader.count >= GIB:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d" % (len(str(GIB)), self.reader.count))


class _UploadClient(Protocol):
    def __init__(self) -> None:
        self.reply = b""
        self.finished: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % GIB)
        _Source(self.transport, GIB)

    def dataReceived(self, data: bytes) -> None:
        self.reply += data
        if self.reply.endswith(str(GIB).encode()) and not self.finished.called:
            self.finished.callback(self.reply)


class MemoryTests(TestCase):
    timeout = 300

    def _proxy_to(self, protocol: type[Protocol]) -> int:
        backend = listen_local(Factory.forProtocol(protocol))
        self.addCleanup(backend.stopListening)
        base = start_proxy(self, site(f"\treverse_proxy 127.0.0.1:{port_number(backend)}"))
        return int(base.rsplit(":", 1)[1])

    @inlineCallbacks
    def test_download_of_1gib_to_a_slow_client_keeps_rss_flat(self) -> Any:
        """A 1 GiB download to a slow client streams with backpressure: RSS grows under 64 MiB."""
        port = self._proxy_to(_DownloadBackend)
        peak = PeakRSS()
        client = _DownloadClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        received = yield client.finished
        growth = peak.stop()
        self.assertEqual(received, GIB)
        self.assertIn(b"Content-Length: %d" % GIB, client.head)
        self.assertLess(growth, 64, f"RSS grew by {growth:.1f} MiB during a 1 GiB download")

    @inlineCallbacks
    def test_upload_of_1gib_to_a_slow_backend_keeps_rss_flat(self) -> Any:
        """A 1 GiB upload to a slow backend streams with backpressure: RSS grows under 64 MiB."""
        port = self._proxy_to(_UploadBackend)
        peak = PeakRSS()
        client = _UploadClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
        reply = yield client.finished
        growth = peak.stop()
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 OK"), reply[:100])
        self.assertTrue(reply.endswith(str(GIB).encode()))  # the backend counted every byte
        self.assertLess(growth, 64, f"RSS grew by {growth:.1f} MiB during a 1 GiB upload")

    @inlineCallbacks
    def test_2000_idle_keepalive_clients_cost_under_40_mb(self) -> Any:
        """2000 answered keep-alive clients left idle cost under 40 MiB, both ends counted."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = 2000 * 2 + 200
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SkipTest(f"needs {needed} file descriptors, the hard limit is {hard}")
        if soft != resource.RLIM_INFINITY and soft < needed:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        backend = EchoBackend("idle")
        self.addCleanup(backend.stop)
        port = int(start_proxy(self, site(f"\treverse_proxy {backend.address}")).rsplit(":", 1)[1])

        class Client(Protocol):
            def __init__(self) -> None:
                self.answered: defer.Deferred[None] = defer.Deferred()

            def connectionMade(self) -> None:
                assert self.transport is not None
                self.transport.write(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")

            def dataReceived(self, data: bytes) -> None:
                if not self.answered.called and b'"backend": "idle"' in data:
                    self.answered.callback(None)

        # Warm up once so lazily built state is not counted against the connections.
        first = yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Client())
        yield first.answered
        before = rss_mb()
        clients = []
        for _ in range(20):
            batch = [Client() for _ in range(100)]
            yield defer.gatherResults(
                [connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), c) for c in batch])
            yield defer.gatherResults([c.answered for c in batch])
            clients += batch
        after = rss_mb()
        for c in [first, *clients]:
            c.transport.loseConnection()
        # Both ends of each connection live in this process: the proxy's share is below this.
        self.assertLess(after - before, 40, f"2000 idle keep-alive clients cost {after - before:.1f} MiB")
