"""``request_body``: limit how much of the request body later handlers may read.

A request whose Content-Length already exceeds ``max_size`` is answered 413
at once, before any later handler (or a backend) sees it, and the connection
is closed instead of reading the body. Caddy 2.6.2 only notices when the body
is read (a ``respond`` answers 200, a ``reverse_proxy`` 502): txcaddy's answer
is the one a user setting a limit expects (``docs/differences.md``).

A body of unknown length (chunked) is limited as it is read, as Go's
``http.MaxBytesReader`` does: the reader gets ``max_size`` bytes and then the
error ``HandlerError(413, "http: request body too large")``; the response
then carries ``Connection: close`` so the connection is not reused with an
unread body on it.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy.config.registry import module
from txcaddy.config.schema import INT, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.request import Request, RequestBody
from txcaddy.http.response import Response
from txcaddy.interfaces import IBodyConsumer, IHandler

__all__ = ["LimitedBody", "RequestBodyLimit", "TOO_LARGE_MESSAGE"]

TOO_LARGE_MESSAGE = "http: request body too large"


@implementer(IBodyConsumer)
class _LimitedConsumer:
    """Passes at most ``limit`` bytes on, then ends the body with a 413 error."""

    __slots__ = ("consumer", "remaining", "response", "failed")

    def __init__(self, consumer: Any, limit: int, response: Response) -> None:
        self.consumer = consumer
        self.remaining = limit
        self.response = response
        self.failed = False

    def body_data(self, data: bytes) -> None:
        if self.failed:
            return
        if len(data) <= self.remaining:
            self.remaining -= len(data)
            self.consumer.body_data(data)
            return
        allowed = self.remaining
        self.remaining = 0
        if allowed:
            self.consumer.body_data(data[:allowed])
        self.failed = True
        if not self.response.head_sent:
            # Go's MaxBytesReader tells the server to close after this response
            self.response.headers.set("Connection", "close")
        self.consumer.body_finished(Failure(HandlerError(413, TOO_LARGE_MESSAGE)))

    def body_trailers(self, trailers: Any) -> None:
        if not self.failed:
            self.consumer.body_trailers(trailers)

    def body_finished(self, reason: Failure | None) -> None:
        if not self.failed:
            self.consumer.body_finished(reason)


class LimitedBody:
    """A ``RequestBody`` seen through a size limit; everything else is the real body's."""

    __slots__ = ("_body", "_limit", "_response")

    def __init__(self, body: RequestBody, limit: int, response: Response) -> None:
        self._body = body
        self._limit = limit
        self._response = response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)

    def deliver(self, consumer: Any) -> None:
        self._body.deliver(_LimitedConsumer(consumer, self._limit, self._response))

    def discard(self) -> None:
        # throwing the rest away is the server's business, not a read by a handler
        self._body.discard()


@implementer(IHandler)
class RequestBodyLimit:
    """``http.handlers.request_body``."""

    def __init__(self, max_size: int = 0) -> None:
        self.max_size = max_size

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        if self.max_size > 0 and request.body is not None and (request.body.length or 0) > self.max_size:
            response.headers.set("Connection", "close")
            raise HandlerError(413, TOO_LARGE_MESSAGE)
        if self.max_size > 0 and request.body is not None:
            request.body = LimitedBody(request.body, self.max_size, response)  # type: ignore[assignment]
        return next(request, response)


@module("http.handlers.request_body", schema=Obj({"max_size": INT}))
def load_request_body(config: dict[str, Any], context: Any) -> RequestBodyLimit:
    max_size = config.get("max_size") or 0
    if isinstance(max_size, bool) or not isinstance(max_size, int):
        raise ConfigError(f"request_body: max_size must be an integer number of bytes, got {max_size!r}")
    return RequestBodyLimit(max_size)
