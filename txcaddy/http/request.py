"""The request as handlers and matchers see it.

One object per request, built by the protocol (HTTP/1.1 or HTTP/2) when the
headers are complete; the body arrives later through ``RequestBody``. Fields
follow Go's ``http.Request``/``url.URL`` where Caddy's semantics depend on
them: ``path`` is decoded, ``raw_path`` keeps the escaping as received,
``uri`` is what ``{http.request.uri}`` shows (path and query as currently
rewritten), ``orig_*`` is what arrived before any rewrite.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from twisted.python.failure import Failure
from zope.interface import classImplements, implementer

from txcaddy._go.url import path_escape
from txcaddy.http.headers import Headers
from txcaddy.interfaces import IBodyConsumer, IHTTPServer, IRequest


class RequestBody:
    """The request body, delivered as it arrives to at most one consumer.

    Until a consumer is attached, data is kept; the protocol pauses reading
    when ``buffered`` grows past its limit, so nothing grows without bound.
    The consumer is an ``IBodyConsumer``, as for upstream response bodies: it
    gets ``body_data(bytes)`` and ``body_finished(reason)`` (``reason`` is None
    at a clean end, else a ``Failure``; request trailers are not delivered).
    """

    __slots__ = ("length", "_chunks", "buffered", "finished", "error", "_consumer", "_on_drain", "received", "producer")

    def __init__(self, length: int | None, on_drain: Callable[[], None] | None = None, producer: Any = None) -> None:
        self.length = length  # Content-Length, or None (chunked, or no body on HTTP/1.0)
        self._chunks: list[bytes] = []
        self.buffered = 0
        self.received = 0
        self.finished = False
        self.error: Failure | None = None  # why the body was cut off
        self._consumer: Any = None
        self._on_drain = on_drain
        # An IPushProducer that pauses reading this body from the client (the
        # connection), for consumers that pass the body on at their own pace.
        self.producer = producer

    # -- the protocol side --------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self._consumer is not None:
            self._consumer.body_data(data)
        else:
            self._chunks.append(data)
            self.buffered += len(data)

    def finish(self, reason: Failure | None = None) -> None:
        """The body ended: completely (``reason`` None), or cut off for ``reason``."""
        if self.finished:
            return
        self.finished = True
        self.error = reason
        consumer = self._consumer
        if consumer is not None:
            self._consumer = _DISCARD  # still taken; no reference back to a consumer that refers to us
            consumer.body_finished(reason)

    # -- the handler side ---------------------------------------------------------

    @property
    def empty(self) -> bool:
        """True when the request has no body at all."""
        return self.length == 0 or (self.finished and self.received == 0)

    def deliver(self, consumer: Any) -> None:
        """Send everything (kept and future) to ``consumer``, an ``IBodyConsumer``."""
        if self._consumer is not None:
            raise RuntimeError("the request body already has a consumer")
        self._consumer = consumer
        chunks, self._chunks, self.buffered = self._chunks, [], 0
        for chunk in chunks:
            consumer.body_data(chunk)
        if self._on_drain is not None:
            self._on_drain()
        if self.finished:
            self._consumer = _DISCARD  # as in finish: no cycle with the consumer
            consumer.body_finished(self.error)

    def discard(self) -> None:
        """Throw the body away (the response does not need it)."""
        if self.length == 0 and self._consumer is None:
            # Nothing can arrive and nothing was kept: no consumer to run (most requests).
            self._consumer = _DISCARD
            return
        self.deliver(_DISCARD)


class _Discard:
    def body_data(self, data: bytes) -> None:
        pass

    def body_trailers(self, trailers: Any) -> None:
        pass

    def body_finished(self, reason: Failure | None) -> None:
        pass


classImplements(_Discard, IBodyConsumer)


_DISCARD = _Discard()  # stateless: one serves every body thrown away or finished


# A regular class even under mypyc (the decorator keeps it one): other modules keep their
# per-request state as attributes on it (the access log, the metrics), which a compiled
# native class would refuse.
@implementer(IRequest)
class Request:
    """An HTTP request being served."""

    #: What the server tells when the handler chain's Deferred fires: an object with
    #: ``done(request, response)`` and ``failed(request, response)``, called before the
    #: server's own bookkeeping. Set by the outermost ``metrics`` wrapper
    #: (``txcaddy.metrics._http``) so it needs no Deferred callbacks of its own; a class
    #: attribute, so other requests pay nothing.
    chain_end: Any = None
    #: When the outermost ``metrics`` wrapper started (its clock), until it has counted the request.
    metrics_start: float | None = None

    def __init__(
        self,
        method: str,
        target: str,
        headers: Headers,
        *,
        proto: str = "HTTP/1.1",
        remote: tuple[str, int] = ("", 0),
        local: tuple[str, int] | Callable[[], tuple[str, int]] = ("", 0),
        tls: Any = None,
        body: RequestBody | None = None,
        server: IHTTPServer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.method = method
        self.orig_method = method
        self.request_uri = target  # the request-target exactly as received
        self.headers = headers
        self.proto = proto
        self.remote = remote
        self._local = local  # or a callable giving it (the connection asks the kernel lazily)
        self.tls = tls
        self.body = body if body is not None else RequestBody(0)
        self.server = server
        self.start = clock()
        self.host = headers.first("Host") or ""
        raw_path, _, query = target.partition("?")
        if "#" in query:
            query = query.partition("#")[0]
        self.set_raw_path(raw_path)
        self.query = query
        self.orig_path = self.path
        self.orig_raw_path = self.raw_path
        self.orig_query = query
        self.vars: dict[str, Any] = {}  # Caddy's request vars (``root``, ``skip_log``, ...)
        # values matchers and handlers publish as placeholders (Caddy's repl.Set),
        # e.g. "http.regexp.name.1", "http.matchers.file.relative"
        self.placeholders: dict[str, Any] = {}
        self.groups: set[str] = set()  # route groups already applied (first match wins)
        self.error: Any = None  # the HandlerError being handled in error routes
        self.trailers: Headers | None = None  # request trailers, once the body ended (HTTP/2 only)

    @property
    def local(self) -> tuple[str, int]:
        """The server's (host, port) the request arrived on."""
        local = self._local
        if callable(local):
            local = self._local = local()
        return local

    # -- the URL ----------------------------------------------------------------------

    def set_raw_path(self, raw_path: str) -> None:
        """Set the path from its escaped form, as Go's URL parser does."""
        self.raw_path = raw_path
        self.path = unquote(raw_path, errors="surrogateescape") if "%" in raw_path else raw_path

    def set_path(self, path: str) -> None:
        """Set the decoded path (rewrites); the escaped form follows."""
        self.path = path
        self.raw_path = path_escape(path)

    def escaped_path(self) -> str:
        return self.raw_path

    @property
    def uri(self) -> str:
        """Path and query as currently rewritten (Go's ``RequestURI()``)."""
        return self.raw_path + ("?" + self.query if self.query else "")

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def hostname(self) -> str:
        """The Host without its port (``[::1]:80`` → ``::1``)."""
        host = self.host
        if host.startswith("["):
            end = host.find("]")
            return host[1:end] if end > 0 else host
        if host.count(":") == 1:
            return host.partition(":")[0]
        return host

    @property
    def port(self) -> str:
        host = self.host
        if host.startswith("["):
            end = host.find("]")
            return host[end + 2 :] if end > 0 and host[end + 1 : end + 2] == ":" else ""
        if host.count(":") == 1:
            return host.partition(":")[2]
        return ""

    @property
    def version(self) -> tuple[int, int]:
        major, _, minor = self.proto.partition("/")[2].partition(".")
        return int(major or 1), int(minor or 0)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri} {self.proto}>"
