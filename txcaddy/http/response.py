"""The response a handler writes: status, header fields, streamed body.

``Response`` is protocol-neutral; the HTTP/1.1 and HTTP/2 protocols subclass
it to put bytes on the wire. Handlers that need to see or change what others
write (``encode``, deferred ``header`` operations) either register an
``on_head`` callback or pass a ``ResponseWrapper`` down the chain, as Caddy
wraps Go's ``ResponseWriter``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import implementer

from txcaddy.http.headers import Headers
from txcaddy.interfaces import IResponse

HeadCallback = Callable[["Response", int], int]


@implementer(IResponse)
class Response(ABC):
    """Base response: subclasses put the head, the body and the end on the wire."""

    #: Set by ``stamp_head``: the clock read just before the head is sent, into ``head_time``
    #: (the ``metrics`` time to first byte). Class attributes, so other responses pay nothing.
    head_clock: Callable[[], float] | None = None
    head_time: float | None = None

    def __init__(self) -> None:
        self.headers = Headers()
        self.status = 0  # the status sent, 0 until the head is written
        self.head_sent = False
        self.finished = False
        self.size = 0  # body bytes written by handlers (before transfer coding)
        self._on_head: list[HeadCallback] = []
        self._finish_waiters: list[Callable[[], Any]] = []
        self.lost: BaseException | None = None  # set when the client went away
        self.trailers: Headers | None = None  # sent after the body where the protocol can

    # -- what handlers call ----------------------------------------------------------

    def on_head(self, callback: HeadCallback) -> None:
        """Call ``callback(response, status) -> status`` just before the head is sent."""
        self._on_head.append(callback)

    def stamp_head(self, clock: Callable[[], float]) -> None:
        """Record ``clock()`` in ``head_time`` when the head is sent (cheaper than an ``on_head`` callback)."""
        self.head_clock = clock

    def write_head(self, status: int) -> None:
        if self.head_sent:
            return
        for callback in self._on_head:
            status = callback(self, status)
        clock = self.head_clock
        if clock is not None:
            self.head_time = clock()
        self.head_sent = True
        self.status = status
        self._send_head(status)

    def write(self, data: bytes) -> None:
        if not self.head_sent:
            self.write_head(200)
        if data and not self.finished:
            self.size += len(data)
            self._send_body(data)

    def finish(self) -> None:
        if self.finished:
            return
        if not self.head_sent:
            self.write_head(200)
        self.finished = True
        self._send_end()
        self._fire_finished()

    def add_trailers(self, trailers: Headers) -> None:
        """Fields to send after the body (HTTP/1.1 chunked responses, HTTP/2)."""
        if self.trailers is None:
            self.trailers = Headers()
        for name, value in trailers.items():
            self.trailers.add(name, value)

    def on_finish(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the response is complete or the client is gone.

        A plain callback rather than a Deferred: the proxy watches every request this way.
        """
        if self.finished or self.lost is not None:
            callback()
        else:
            self._finish_waiters.append(callback)

    def notify_finish(self) -> Deferred[None]:
        """A Deferred that fires when the response is complete or the client is gone."""
        d: Deferred[None] = Deferred()
        self.on_finish(lambda: d.callback(None))
        return d

    @property
    def can_switch_protocols(self) -> bool:
        """Whether ``switch_protocols`` may be called; protocols that can switch say when."""
        return False

    def write_informational(self, status: int, headers: Headers | None = None) -> None:  # noqa: B027 (a default for protocols without it)
        """Send a 1xx response before the final one: a protocol without them drops it."""

    def flush(self) -> None:  # noqa: B027 (a default for protocols without it)
        """Send what is held back now: nothing to do for a response that holds nothing back."""

    def switch_protocols(self, protocol: Any) -> None:
        """Hand the connection to ``protocol`` after a 101: only protocols that can switch can."""
        raise RuntimeError("this response cannot switch protocols")

    def direct_body_transport(self, remaining: int) -> Any:
        """The client's plain socket transport, if the last ``remaining`` bytes of the body may
        be written to it as they are, behind the response's back (``size`` counted by the
        writer); else None.

        Only a response whose protocol sends the body unframed says yes (HTTP/1.x with a
        ``Content-Length``); a wrapper never does, since it must see what is written.
        """
        return None

    def abort_connection(self) -> None:  # noqa: B027 (a default for protocols without it)
        """Close the client connection after what was written: a protocol without one does nothing."""

    def handler_done(self) -> None:  # noqa: B027 (a default for protocols without it)
        """The server's handlers for this response returned, even after the client went away.

        HTTP/2 counts handlers still running for reset streams against its stream limit.
        """

    @abstractmethod
    def register_producer(self, producer: Any, streaming: bool) -> None:
        """Let the client's backpressure pause ``producer``."""

    @abstractmethod
    def unregister_producer(self) -> None:
        """Undo ``register_producer``."""

    # -- for subclasses ----------------------------------------------------------------

    @abstractmethod
    def _send_head(self, status: int) -> None:
        """Put the status line and ``self.headers`` on the wire."""

    @abstractmethod
    def _send_body(self, data: bytes) -> None:
        """Put body bytes on the wire (with the transfer coding in use)."""

    @abstractmethod
    def _send_end(self) -> None:
        """End the response on the wire."""

    def _fire_finished(self) -> None:
        waiters, self._finish_waiters = self._finish_waiters, []
        for callback in waiters:
            callback()

    def connection_lost(self, reason: BaseException) -> None:
        self.lost = reason
        self._fire_finished()


class ResponseWrapper(Response):
    """A response that forwards to another one; override what you need to change."""

    def __init__(self, inner: Response) -> None:
        self.inner = inner

    # Every attribute not overridden lives on the wrapped response.
    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def headers(self) -> Headers:  # type: ignore[override]
        return self.inner.headers

    @property
    def status(self) -> int:  # type: ignore[override]
        return self.inner.status

    @property
    def head_sent(self) -> bool:  # type: ignore[override]
        return self.inner.head_sent

    @property
    def finished(self) -> bool:  # type: ignore[override]
        return self.inner.finished

    @property
    def size(self) -> int:  # type: ignore[override]
        return self.inner.size

    @property
    def head_time(self) -> float | None:  # type: ignore[override]
        return self.inner.head_time

    def on_head(self, callback: HeadCallback) -> None:
        self.inner.on_head(callback)

    def stamp_head(self, clock: Callable[[], float]) -> None:
        self.inner.stamp_head(clock)

    def write_head(self, status: int) -> None:
        self.inner.write_head(status)

    def write(self, data: bytes) -> None:
        if not self.head_sent:
            self.write_head(200)
        self.inner.write(data)

    def finish(self) -> None:
        if not self.head_sent:
            self.write_head(200)
        self.inner.finish()

    def on_finish(self, callback: Callable[[], Any]) -> None:
        self.inner.on_finish(callback)

    def notify_finish(self) -> Deferred[None]:
        return self.inner.notify_finish()

    def add_trailers(self, trailers: Headers) -> None:
        self.inner.add_trailers(trailers)

    def register_producer(self, producer: Any, streaming: bool) -> None:
        self.inner.register_producer(producer, streaming)

    def unregister_producer(self) -> None:
        self.inner.unregister_producer()

    @property
    def can_switch_protocols(self) -> bool:
        return self.inner.can_switch_protocols

    def write_informational(self, status: int, headers: Headers | None = None) -> None:
        self.inner.write_informational(status, headers)

    def flush(self) -> None:
        self.inner.flush()

    def switch_protocols(self, protocol: Any) -> None:
        self.inner.switch_protocols(protocol)

    def abort_connection(self) -> None:
        self.inner.abort_connection()

    def handler_done(self) -> None:
        self.inner.handler_done()

    # A wrapper never writes to the wire itself: everything goes through ``inner``.
    def _send_head(self, status: int) -> None:
        self.inner._send_head(status)

    def _send_body(self, data: bytes) -> None:
        self.inner._send_body(data)

    def _send_end(self) -> None:
        self.inner._send_end()
