"""Body pumps between the client and an upstream exchange, and the flush rules.

Nothing is buffered whole: the request body flows to the upstream as the
client sends it, the response body to the client as the upstream sends it,
and each side's backpressure pauses the other (DESIGN.md §3 item 5).

``flush_interval`` works as in Caddy: responses are written through as they
arrive; what the interval controls is when a head still held back by the
server goes out. ``-1`` (and, whatever the setting, ``text/event-stream`` and
responses of unknown length) sends it at once; a positive interval at most
that much later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import classImplements

from txcaddy._go.http import detect_content_type
from txcaddy.http.headers import Headers
from txcaddy.http.request import RequestBody
from txcaddy.http.response import Response
from txcaddy.interfaces import IBodyConsumer, IExchange
from txcaddy.reverseproxy._decompress import GunzipBody
from txcaddy.reverseproxy.headers import relay_trailers
from txcaddy.reverseproxy.transport import RawHeaders

__all__ = ["RequestBodyPump", "BufferedBody", "ResponseRelay", "effective_flush_interval"]


class RequestBodyPump:
    """Feeds a client's request body into an upstream exchange.

    Registered with the exchange as a streaming producer, it starts taking the
    body only when the upstream connection is up (the exchange resumes it
    then), so a dial failure has consumed nothing and the request can be
    retried; an ``Expect: 100-continue`` client is answered at that moment.
    When the upstream cannot take more, the client connection is paused.
    """

    __slots__ = ("body", "exchange", "started", "_client", "_paused")

    def __init__(self, body: RequestBody, exchange: IExchange) -> None:
        self.body = body
        self.exchange: IExchange | None = exchange
        self.started = False
        self._client = body.producer
        self._paused = False
        exchange.registerProducer(cast(IPushProducer, self), True)  # (classImplements, below)
        if exchange.body_wanted:
            # The exchange got an idle connection at once: the upstream is ready now.
            self.resumeProducing()

    # -- IPushProducer, driven by the upstream connection ------------------------

    def pauseProducing(self) -> None:
        if self.started and not self._paused and self._client is not None:
            self._paused = True
            self._client.pauseProducing()

    def resumeProducing(self) -> None:
        if not self.started:
            self.started = True
            self.body.deliver(self)
            return
        self._resume_client()

    def stopProducing(self) -> None:
        """The exchange is over: stop passing the body on, never leave the client paused."""
        self.exchange = None
        self._resume_client()

    def _resume_client(self) -> None:
        if self._paused:
            self._paused = False
            if self._client is not None:
                self._client.resumeProducing()

    # -- the RequestBody consumer side (IBodyConsumer) ---------------------------

    def body_data(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is not None:
            exchange.write(data)

    def body_trailers(self, trailers: RawHeaders) -> None:
        """Request bodies deliver no trailers (see ``RequestBody``)."""

    def body_finished(self, reason: Failure | None) -> None:
        exchange, self.exchange = self.exchange, None
        self._resume_client()
        if exchange is None:
            return
        if reason is None:
            exchange.finish_body()
        else:
            exchange.abort(reason.value)


class BufferedBody:
    """A request body read into memory first (``buffer_requests``).

    Up to ``limit`` bytes (0: no limit) are kept before the upstream is
    contacted; when the body is longer, the rest streams after them. A body
    that was read completely can be sent again on a retry.
    """

    __slots__ = ("body", "chunks", "size", "complete", "overflow", "error", "_ready", "_sink", "_limit")

    def __init__(self, body: RequestBody, limit: int, ready: Callable[[], None]) -> None:
        self.body = body
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        self.overflow = False  # more than ``limit``: the rest is streamed
        self.error: Failure | None = None
        self._ready: Callable[[], None] | None = ready
        self._sink: IExchange | None = None
        self._limit = limit
        body.deliver(self)

    @property
    def replayable(self) -> bool:
        return self.complete and not self.overflow

    def body_data(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.write(data)
            return
        self.chunks.append(data)
        self.size += len(data)
        if self._limit and self.size >= self._limit and not self.overflow:
            self.overflow = True
            self._fire_ready()

    def body_trailers(self, trailers: RawHeaders) -> None:
        """Request bodies deliver no trailers (see ``RequestBody``)."""

    def body_finished(self, reason: Failure | None) -> None:
        self.complete = True
        self.error = reason
        sink, self._sink = self._sink, None
        if sink is not None:
            if reason is None:
                sink.finish_body()
            else:
                sink.abort(reason.value)
        self._fire_ready()

    def _fire_ready(self) -> None:
        ready, self._ready = self._ready, None
        if ready is not None:
            ready()

    def send_to(self, exchange: IExchange) -> None:
        """Write what is kept to ``exchange``; a body still arriving follows it there."""
        for chunk in self.chunks:
            exchange.write(chunk)
        if self.complete:
            if self.error is None:
                exchange.finish_body()
            else:
                exchange.abort(self.error.value)
        elif self.overflow:
            self.chunks = []
            self._sink = exchange


def effective_flush_interval(configured: float, content_type: str, content_length: int | None) -> float:
    """Caddy's ``flushInterval``: streams of unknown length and SSE are flushed at once."""
    if content_type.partition(";")[0].strip().lower() == "text/event-stream":
        return -1
    if content_length is None:
        return -1
    return configured


class ResponseRelay:
    """Copies an upstream response body onto the client response as it arrives.

    ``done(reason)`` is called once, when the body ended (``reason`` None) or
    was cut off (a ``Failure``).
    """

    __slots__ = ("response", "exchange", "flush_interval", "clock", "trailers", "_done", "_flush",
                 "_timer", "_producing", "_held", "_held_size", "_buffer_limit", "_producer", "_sniff")

    def __init__(
        self,
        response: Response,
        exchange: IExchange,
        flush_interval: float,
        clock: Any,
        done: Callable[[Failure | None], None],
        stream: bool,
        *,
        buffer_limit: int | None = None,
        gunzip: bool = False,
        sniff: bool = False,
    ) -> None:
        self.response = response
        self.exchange = exchange
        self.flush_interval = flush_interval
        self.clock = clock
        self.trailers: Headers | None = None
        self._done: Callable[[Failure | None], None] | None = done
        self._flush: Callable[[], None] = response.flush
        self._timer: Any = None
        self._producing = False
        # ``buffer_responses``: hold the body (up to the limit, 0 = all of it) before writing.
        self._buffer_limit = buffer_limit
        self._held: list[bytes] | None = [] if buffer_limit is not None else None
        self._held_size = 0
        # No Content-Type from the upstream: Go's server guesses one from the first bytes.
        self._sniff = sniff
        if flush_interval < 0 and self._held is None and not sniff:
            self._flush()
        consumer: Any = self
        self._producer: Any = exchange
        if gunzip:
            # The decoder paces itself and the upstream: it is the client's producer.
            consumer = self._producer = GunzipBody(self, producer=exchange)
            stream = True
        if stream and self._held is None:
            # A long body: let the client's pace pause the upstream.
            self._producing = True
            response.register_producer(self._producer, True)
        exchange.deliver_body(consumer)
        if self._producing and consumer is self and not self._sniff:
            # A long body that no one here looks at: the kernel may move the rest of it
            # (only an HTTP/1.1 exchange can; see _kernelcopy).
            copy_body_to = getattr(exchange, "copy_body_to", None)
            if copy_body_to is not None:
                copy_body_to(response)

    def body_data(self, data: bytes) -> None:
        if self._sniff:
            self._sniff = False
            if data and "Content-Type" not in self.response.headers:
                self.response.headers.set("Content-Type", detect_content_type(data[:512]))
            if self.flush_interval < 0 and self._held is None:
                self.response.write(data)
                self._flush()
                return
        held = self._held
        if held is not None:
            held.append(data)
            self._held_size += len(data)
            if self._buffer_limit and self._held_size >= self._buffer_limit:
                self._release_held()
                self._producing = True  # the rest streams, paced by the client
                self.response.register_producer(self._producer, True)
            return
        self.response.write(data)
        interval = self.flush_interval
        if interval > 0 and self._timer is None:
            self._timer = self.clock.callLater(interval, self._timed_flush)

    def _timed_flush(self) -> None:
        self._timer = None
        if not self.response.finished:
            self._flush()

    def body_trailers(self, trailers: RawHeaders) -> None:
        self.trailers = Headers(relay_trailers(trailers))

    def _release_held(self) -> None:
        held, self._held = self._held, None
        for chunk in held or ():
            self.response.write(chunk)

    def body_finished(self, reason: Failure | None) -> None:
        if self._held is not None:
            self._release_held()
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        if self._producing:
            self._producing = False
            self.response.unregister_producer()
        done, self._done = self._done, None
        if done is not None:
            done(reason)


# (Declared after the classes: the compiled build's native classes take no class decorator.)
classImplements(RequestBodyPump, IPushProducer, IBodyConsumer)
classImplements(BufferedBody, IBodyConsumer)
classImplements(ResponseRelay, IBodyConsumer)
