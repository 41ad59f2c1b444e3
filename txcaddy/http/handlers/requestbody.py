"""``request_body``: limit how much of the request body later handlers may read.

As in Caddy 2.6.2 (Go's ``http.MaxBytesReader``), the limit acts when the
body is *read*: a handler that never reads the body (``respond``) answers as
usual, whatever the Content-Length. A reader gets the body up to ``max_size``
bytes and then the error ``HandlerError(413, "http: request body too large")``
instead of the rest; from then on the response carries ``Connection: close``
so the connection is not reused with an unread body on it. Checked against
the real Caddy: ``respond`` → 200; ``reverse_proxy`` reading a too-large body
→ 413 (chunked) or 502 (Content-Length, the proxy wraps the error).
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from txcaddy.caddyfile.errors import ConfigError
from txcaddy.config.registry import module
from txcaddy.http.errors import HandlerError
from txcaddy.http.request import Request, RequestBody
from txcaddy.http.response import Response
from txcaddy.interfaces import IHandler

__all__ = ["LimitedBody", "RequestBodyLimit", "TOO_LARGE_MESSAGE"]

TOO_LARGE_MESSAGE = "http: request body too large"


class _LimitedConsumer:
    """Passes at most ``limit`` bytes on, then ends the body with a 413 error."""

    __slots__ = ("consumer", "remaining", "response", "failed")

    def __init__(self, consumer: Any, limit: int, response: Response) -> None:
        self.consumer = consumer
        self.remaining = limit
        self.response = response
        self.failed = False

    def data_received(self, data: bytes) -> None:
        if self.failed:
            return
        if len(data) <= self.remaining:
            self.remaining -= len(data)
            self.consumer.data_received(data)
            return
        allowed = self.remaining
        self.remaining = 0
        if allowed:
            self.consumer.data_received(data[:allowed])
        self.failed = True
        if not self.response.head_sent:
            # Go's MaxBytesReader tells the server to close after this response
            self.response.headers.set("Connection", "close")
        self.consumer.body_finished(HandlerError(413, TOO_LARGE_MESSAGE))

    def body_finished(self, error: BaseException | None) -> None:
        if not self.failed:
            self.consumer.body_finished(error)


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
        if self.max_size > 0 and request.body is not None:
            request.body = LimitedBody(request.body, self.max_size, response)  # type: ignore[assignment]
        return next(request, response)


@module("http.handlers.request_body")
def load_request_body(config: dict[str, Any], context: Any) -> RequestBodyLimit:
    max_size = config.get("max_size") or 0
    if isinstance(max_size, bool) or not isinstance(max_size, int):
        raise ConfigError(f"request_body: max_size must be an integer number of bytes, got {max_size!r}")
    return RequestBodyLimit(max_size)
