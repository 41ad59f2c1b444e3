"""Transparent gunzip of an upstream response body, as Go's transport does it.

When the proxy itself asked for gzip (the client sent no Accept-Encoding, see
``headers.wants_gzip``), a gzip answer is decoded before the client sees it.
``GunzipBody`` sits between the upstream exchange and the real body consumer, with the
same interface (``IBodyConsumer``: ``body_data`` / ``body_trailers`` / ``body_finished``), and streams: it
never holds more than the compressed chunk it was last given plus one output piece of
``piece_size`` bytes, whatever the compression ratio. For that it is also the
``IPushProducer`` the client response should be given: while the client is slow it stops
inflating and keeps the upstream paused, so a small, highly compressed body cannot make it
write megabytes at once.
"""

from __future__ import annotations

import zlib
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy.interfaces import IBodyConsumer
from txcaddy.reverseproxy.transport import RawHeaders, UpstreamError

__all__ = ["GunzipBody", "GunzipError"]

#: Largest piece of decoded body passed on in one ``body_data`` call.
PIECE_SIZE = 64 * 1024

_GZIP = 16 + zlib.MAX_WBITS  # a gzip wrapper, not zlib or raw deflate


class GunzipError(UpstreamError):
    """The upstream's gzip body cannot be decoded (the message is what Go reports)."""

    status = 502


def _error_for(exc: zlib.error) -> GunzipError:
    text = str(exc)
    if "header check" in text or "unknown compression method" in text or "header crc" in text:
        return GunzipError("gzip: invalid header")
    if "data check" in text or "length check" in text:
        return GunzipError("gzip: invalid checksum")
    return GunzipError(f"flate: corrupt input ({text.rpartition(': ')[2]})")


_OPEN = object()  # not finished yet


@implementer(IPushProducer, IBodyConsumer)
class GunzipBody:
    """A response body consumer that decodes gzip for another consumer.

    ``consumer`` gets the decoded body, then the trailers, then ``body_finished``; a body
    that is not valid gzip (bad header, corrupt data, checksum mismatch, truncated,
    garbage after a member) ends with ``body_finished(Failure(GunzipError(...)))`` after
    what decoded cleanly before it, and the upstream ``producer`` (the exchange) is
    stopped. Concatenated gzip members decode as one body; an empty body is an empty body.

    ``producer`` is what to pause while this holds undecoded input (the upstream
    exchange); register this object, not the exchange, as the client response's producer.
    """

    def __init__(self, consumer: Any, producer: Any = None, piece_size: int = PIECE_SIZE) -> None:
        self.consumer = consumer
        self.producer = producer
        self.piece_size = piece_size
        self._inflater = zlib.decompressobj(_GZIP)
        self._in_member = False  # bytes of a member seen and its end not reached
        self._pending = b""  # compressed input not yet inflated
        self._more_output = False  # the inflater may hold output beyond the last piece
        self._paused = False
        self._draining = False
        self._upstream_paused = False
        self._trailers: RawHeaders | None = None
        self._end: Any = _OPEN  # the upstream's finish reason once it came
        self._done = False

    # -- from the upstream -------------------------------------------------------------

    def body_data(self, data: bytes) -> None:
        if self._done or not data:
            return
        self._pending = self._pending + data if self._pending else data
        self._drain()

    def body_trailers(self, trailers: RawHeaders) -> None:
        if not self._done:
            self._trailers = trailers

    def body_finished(self, reason: Failure | None) -> None:
        if self._done:
            return
        self._end = reason
        self._drain()

    # -- IPushProducer, for the client side ------------------------------------------------

    def pauseProducing(self) -> None:
        self._paused = True
        self._pause_upstream()

    def resumeProducing(self) -> None:
        self._paused = False
        self._drain()

    def stopProducing(self) -> None:
        self._done = True
        self._pending = b""
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()

    # -- the work --------------------------------------------------------------------------

    def _pause_upstream(self) -> None:
        if not self._upstream_paused and self.producer is not None and self._end is _OPEN:
            self._upstream_paused = True
            self.producer.pauseProducing()

    def _resume_upstream(self) -> None:
        if self._upstream_paused and self.producer is not None:
            self._upstream_paused = False
            self.producer.resumeProducing()

    def _drain(self) -> None:
        """Inflate what is pending, a piece at a time, while the consumer keeps up."""
        if self._draining:
            return  # re-entered from the consumer (resume inside body_data): the loop goes on
        self._draining = True
        try:
            while (self._pending or self._more_output) and not self._paused and not self._done:
                self._step()
        finally:
            self._draining = False
        if self._done:
            return
        if self._pending or self._more_output:
            self._pause_upstream()
            return
        if self._end is not _OPEN:
            self._finish()
        elif not self._paused:
            self._resume_upstream()

    def _step(self) -> None:
        inflater = self._inflater
        data = self._pending
        if data:
            self._in_member = True
        try:
            out = inflater.decompress(data, self.piece_size)
        except zlib.error as exc:
            self._fail(_error_for(exc))
            return
        self._pending = inflater.unconsumed_tail
        self._more_output = not inflater.eof and len(out) == self.piece_size
        if inflater.eof:
            # A member ended: whatever follows must be another member (Go's multistream).
            rest = inflater.unused_data + self._pending
            self._inflater = zlib.decompressobj(_GZIP)
            self._in_member = False
            self._pending = rest
        if out:
            self.consumer.body_data(out)

    def _finish(self) -> None:
        reason = self._end
        if reason is None and self._in_member:
            reason = Failure(GunzipError("unexpected EOF"))
        self._done = True
        self.producer = None
        if reason is None and self._trailers:
            self.consumer.body_trailers(self._trailers)
        self.consumer.body_finished(reason)

    def _fail(self, error: GunzipError) -> None:
        self._done = True
        self._pending = b""
        producer, self.producer = self.producer, None
        self.consumer.body_finished(Failure(error))
        if producer is not None and self._end is _OPEN:
            producer.stopProducing()
