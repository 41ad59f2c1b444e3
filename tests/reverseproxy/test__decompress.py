"""Tests for the transparent gunzip of upstream bodies (txcaddy.reverseproxy._decompress)."""

from __future__ import annotations

import gzip
import random
import zlib

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.reverseproxy._decompress import GunzipBody, GunzipError


def compress(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


class Collector:
    """The downstream consumer: records everything, optionally pauses the wrapper."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.trailers = None
        self.reason: Failure | None = None
        self.finished = 0
        self.wrapper: GunzipBody | None = None
        self.pause_each = False

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def body_data(self, data: bytes) -> None:
        self.chunks.append(data)
        if self.pause_each and self.wrapper is not None:
            self.wrapper.pauseProducing()

    def body_trailers(self, trailers) -> None:
        self.trailers = trailers

    def body_finished(self, reason: Failure | None) -> None:
        self.finished += 1
        self.reason = reason


class Upstream:
    """Stands in for the exchange (an IPushProducer)."""

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.paused = True
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.paused = False
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.stopped = True
        self.calls.append("stop")


class GunzipBodyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.collector = Collector()
        self.upstream = Upstream()
        self.body = GunzipBody(self.collector, self.upstream, piece_size=4096)
        self.collector.wrapper = self.body

    def feed(self, chunks: list[bytes], trailers=None) -> None:
        for chunk in chunks:
            self.body.body_data(chunk)
        if trailers:
            self.body.body_trailers(trailers)
        self.body.body_finished(None)

    def test_multi_chunk_stream_byte_exact(self) -> None:
        """A gzip body in many chunks comes out byte for byte, in pieces of at most piece_size."""
        rng = random.Random(7)
        plain = b"".join(rng.choice([b"alpha ", b"beta ", bytes([rng.randrange(256)])])
                         for _ in range(60000))
        self.feed(split(compress(plain), 1000))
        self.assertEqual(self.collector.body, plain)
        self.assertIsNone(self.collector.reason)
        self.assertEqual(self.collector.finished, 1)
        self.assertTrue(all(len(chunk) <= 4096 for chunk in self.collector.chunks))

    def test_one_byte_at_a_time(self) -> None:
        """A gzip body fed one byte at a time decodes whole."""
        plain = b"hello gzip world " * 50
        self.feed(split(compress(plain), 1))
        self.assertEqual(self.collector.body, plain)
        self.assertIsNone(self.collector.reason)

    def test_concatenated_members_are_one_body(self) -> None:
        """Concatenated gzip members decode to one body, as Go's gzip.Reader does."""
        data = compress(b"one,") + compress(b"two,") + compress(b"three")
        self.feed(split(data, 7))
        self.assertEqual(self.collector.body, b"one,two,three")
        self.assertIsNone(self.collector.reason)

    def test_empty_body(self) -> None:
        """An empty upstream body finishes cleanly with no data."""
        self.feed([])
        self.assertEqual((self.collector.body, self.collector.reason), (b"", None))

    def test_trailers_after_the_data(self) -> None:
        """Upstream trailers are passed on after the decoded data."""
        trailers = [(b"X-Sum", b"abc")]
        self.feed([compress(b"hello trailers")], trailers)
        self.assertEqual(self.collector.body, b"hello trailers")
        self.assertEqual(self.collector.trailers, trailers)

    def assertFailed(self, message: str) -> None:
        self.assertEqual(self.collector.finished, 1)
        reason = self.collector.reason
        assert reason is not None
        self.assertIsInstance(reason.value, GunzipError)
        self.assertEqual(str(reason.value), message)

    def test_corrupt_stream(self) -> None:
        """Corrupt deflate data fails with Go's message after passing on what decoded before it."""
        rng = random.Random(3)
        plain = b" ".join(rng.choice([b"alpha", b"beta", b"gamma", b"delta"])
                          for _ in range(40000))
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        head = compressor.compress(plain) + compressor.flush(zlib.Z_FULL_FLUSH)
        tail = compressor.compress(plain) + compressor.flush()
        # The block after the full flush starts on a byte boundary: make its type invalid.
        data = head + bytes([tail[0] | 0x07]) + tail[1:]
        for chunk in split(data, 1000):
            self.body.body_data(chunk)  # no exception escapes
        self.assertEqual(self.collector.finished, 1)
        reason = self.collector.reason
        assert reason is not None
        self.assertIsInstance(reason.value, GunzipError)
        self.assertEqual(str(reason.value), "flate: corrupt input (invalid block type)")
        # What decoded before the damage was passed on, nothing after it.
        self.assertEqual(self.collector.body, plain[:len(self.collector.body)])
        self.assertGreater(len(self.collector.body), len(plain) // 2)
        self.assertTrue(self.upstream.stopped)
        self.body.body_finished(Failure(ConnectionError("aborted")))  # the exchange's answer
        self.assertEqual(self.collector.finished, 1)

    def test_checksum_mismatch(self) -> None:
        """A wrong CRC-32 fails the body with gzip: invalid checksum."""
        data = bytearray(compress(b"payload" * 100))
        data[-8] ^= 0xFF  # CRC-32 of the member
        self.feed([bytes(data)])
        self.assertFailed("gzip: invalid checksum")

    def test_not_gzip(self) -> None:
        """A body that is not gzip fails with gzip: invalid header and passes nothing on."""
        self.feed([b"plain text"])
        self.assertFailed("gzip: invalid header")
        self.assertEqual(self.collector.body, b"")

    def test_garbage_after_a_member(self) -> None:
        """Garbage after a member fails with invalid header after the member's data."""
        self.feed([compress(b"one,") + b"garbage!!"])
        self.assertEqual(self.collector.body, b"one,")
        self.assertFailed("gzip: invalid header")

    def test_truncated(self) -> None:
        """A body cut inside its trailer fails with unexpected EOF after all its data."""
        self.feed([compress(b"abc" * 1000)[:-6]])
        self.assertEqual(self.collector.body, b"abc" * 1000)
        self.assertFailed("unexpected EOF")

    def test_truncated_second_header(self) -> None:
        """A body ending inside a second member's header fails with unexpected EOF."""
        self.feed([compress(b"abc") + b"\x1f"])
        self.assertEqual(self.collector.body, b"abc")
        self.assertFailed("unexpected EOF")

    def test_upstream_failure_passed_on(self) -> None:
        """An upstream failure is passed on as it is, once."""
        data = compress(b"x" * 10000)
        self.body.body_data(data[:50])
        reason = Failure(ConnectionError("upstream went away"))
        self.body.body_finished(reason)
        self.assertIs(self.collector.reason, reason)
        self.assertEqual(self.collector.finished, 1)

    def test_memory_bounded_per_chunk(self) -> None:
        """A gzip bomb decodes a piece per resume while paused: output never piles up."""
        # 8 MiB of zeros compress to ~8 KiB: one upstream chunk, a thousand pieces out.
        plain_size = 8 << 20
        data = compress(bytes(plain_size))
        self.assertLess(len(data), 16 << 10)
        self.collector.pause_each = True
        self.body.body_data(data)
        # One piece written, then the client side paused it: nothing else is produced and
        # the upstream is paused while compressed input remains.
        self.assertEqual(len(self.collector.chunks), 1)
        self.assertTrue(self.upstream.paused)
        self.body.body_finished(None)
        self.assertEqual(self.collector.finished, 0)
        resumes = 0
        while not self.collector.finished:
            self.assertLessEqual(len(self.body._pending), len(data))
            self.assertLessEqual(len(self.collector.chunks[-1]), 4096)
            self.body.resumeProducing()
            resumes += 1
            self.assertLess(resumes, plain_size)
        self.assertEqual(sum(map(len, self.collector.chunks)), plain_size)
        self.assertEqual(self.collector.body, bytes(plain_size))
        self.assertIsNone(self.collector.reason)
        self.assertGreaterEqual(len(self.collector.chunks), plain_size // 4096)

    def test_client_backpressure_reaches_upstream(self) -> None:
        """pause, resume and stop from the client reach the upstream producer."""
        self.body.pauseProducing()
        self.assertEqual(self.upstream.calls, ["pause"])
        self.body.resumeProducing()
        self.assertEqual(self.upstream.calls, ["pause", "resume"])
        self.body.stopProducing()
        self.assertEqual(self.upstream.calls, ["pause", "resume", "stop"])

    def test_upstream_stays_paused_until_input_is_used(self) -> None:
        """The upstream stays paused until the pending compressed input is used up."""
        self.collector.pause_each = True
        data = compress(random.Random(1).randbytes(20000))
        self.body.body_data(data)
        self.assertEqual(self.upstream.calls, ["pause"])
        self.collector.pause_each = False
        self.body.resumeProducing()
        self.assertEqual(self.upstream.calls, ["pause", "resume"])

    def test_finish_waits_for_paused_output(self) -> None:
        """Trailers and the finish wait until paused output has all been delivered."""
        self.collector.pause_each = True
        plain = random.Random(2).randbytes(10000)
        self.feed([compress(plain)], [(b"X-T", b"1")])
        self.assertEqual(self.collector.finished, 0)
        self.assertIsNone(self.collector.trailers)
        self.collector.pause_each = False
        self.body.resumeProducing()
        self.assertEqual(self.collector.body, plain)
        self.assertEqual(self.collector.trailers, [(b"X-T", b"1")])
        self.assertEqual(self.collector.finished, 1)

    def test_without_producer(self) -> None:
        """Without an upstream producer the body still decodes, and errors raise nothing."""
        collector = Collector()
        body = GunzipBody(collector)
        body.body_data(compress(b"abc"))
        body.body_finished(None)
        self.assertEqual((collector.body, collector.reason), (b"abc", None))
        body = GunzipBody(Collector())
        body.body_data(b"not gzip")  # no producer to stop: still no exception

    def test_zlib_wrapper_is_not_gzip(self) -> None:
        """A zlib-wrapped body is not gzip: invalid header."""
        self.feed([zlib.compress(b"abc")])
        self.assertFailed("gzip: invalid header")
