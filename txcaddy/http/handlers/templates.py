"""``templates``: run the next handler's response through Go's ``text/template``.

A port of Caddy 2.6.2's ``templates.go``: the response of the rest of the chain is buffered
when its Content-Type contains one of ``mime_types`` (default ``text/html``, ``text/plain``,
``text/markdown``), then executed as a template named after the request path, with the
functions of :mod:`._tplcontext` and Sprig's (:mod:`txcaddy._gotemplate.sprig`), and
``delimiters`` if set. The result replaces the body: ``Content-Length`` is set, and
``Accept-Ranges``, ``Last-Modified`` and ``ETag`` are removed. Files are read under
``file_root`` (default ``{http.vars.root}``, then the working directory).

A template that fails to parse or execute is a 500 carrying Go's error text (logged here and
by the server's error log); ``httpError`` gives its own status. ``httpInclude`` sends a
virtual GET through the same server; it must complete without waiting (files, static
responses, other templates), as templates run synchronously.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from txcaddy._gotemplate import ExecError, ParseError
from txcaddy.config.placeholders import Template as Placeholders
from txcaddy.config.registry import module
from txcaddy.config.schema import STRING, STRINGS, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.handlers._tplcontext import RECURSION_HEADER, TemplateContext, handler_error_of
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request
from txcaddy.http.response import Response, ResponseWrapper
from txcaddy.interfaces import IHandler

__all__ = ["DEFAULT_MIME_TYPES", "Templates"]

DEFAULT_MIME_TYPES = ["text/html", "text/plain", "text/markdown"]


class _Recorder(ResponseWrapper):
    """Caddy's ``ResponseRecorder``: decides at the head whether to buffer, then holds the body."""

    def __init__(self, inner: Response, should_buffer: Any) -> None:
        super().__init__(inner)
        self._should_buffer = should_buffer
        self.buffered: bool | None = None  # None until the head is written
        self.held_status = 0
        self.body: list[bytes] = []
        self._producer: Any = None

    def write_head(self, status: int) -> None:
        if self.buffered is not None:
            return
        self.buffered = bool(self._should_buffer(status, self.inner.headers))
        self.held_status = status
        if not self.buffered:
            self.inner.write_head(status)

    def write(self, data: bytes) -> None:
        if self.buffered is None:
            self.write_head(200)
        if self.buffered:
            if data:
                self.body.append(data)
        else:
            self.inner.write(data)

    def finish(self) -> None:
        if self.buffered is None:
            self.write_head(200)
        if not self.buffered:
            self.inner.finish()

    def flush(self) -> None:
        if not self.buffered:
            self.inner.flush()

    def register_producer(self, producer: Any, streaming: bool) -> None:
        if not self.buffered:
            self.inner.register_producer(producer, streaming)
            return
        # buffering: take everything now (a pull producer is pulled until it unregisters)
        self._producer = producer
        if not streaming:
            while self._producer is producer:
                producer.resumeProducing()

    def unregister_producer(self) -> None:
        if not self.buffered:
            self.inner.unregister_producer()
            return
        self._producer = None

    @property
    def head_sent(self) -> bool:  # type: ignore[override]
        return True if self.buffered else self.inner.head_sent


class _VirtualResponse(Response):
    """The response of an ``httpInclude`` request: status and body kept in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self._producer: Any = None

    def register_producer(self, producer: Any, streaming: bool) -> None:
        self._producer = producer
        if not streaming:
            while self._producer is producer:
                producer.resumeProducing()

    def unregister_producer(self) -> None:
        self._producer = None

    def _send_head(self, status: int) -> None:
        pass

    def _send_body(self, data: bytes) -> None:
        self.chunks.append(data)

    def _send_end(self) -> None:
        pass


@implementer(IHandler)
class Templates:
    """``http.handlers.templates``."""

    log = Logger()

    def __init__(self, file_root: str = "", mime_types: list[str] | None = None,
                 delimiters: list[str] | None = None) -> None:
        self.file_root = Placeholders(file_root or "{http.vars.root}")
        self.mime_types = list(mime_types) if mime_types else list(DEFAULT_MIME_TYPES)
        delimiters = list(delimiters or [])
        if delimiters and len(delimiters) != 2:
            raise ConfigError("delimiters must consist of exactly two elements: opening and closing")
        self.delimiters: tuple[str, str] = (delimiters[0], delimiters[1]) if delimiters else ("", "")

    def _should_buffer(self, status: int, headers: Headers) -> bool:
        content_type = headers.get("Content-Type") or ""
        return any(mime in content_type for mime in self.mime_types)

    def serve(self, request: Request, response: Response, next: Any) -> Any:
        recorder = _Recorder(response, self._should_buffer)
        result = next(request, recorder)
        if isinstance(result, Deferred):
            return result.addCallback(lambda _: self._finish(request, response, recorder))
        return self._finish(request, response, recorder)

    def _finish(self, request: Request, response: Response, recorder: _Recorder) -> None:
        if not recorder.buffered:
            return None
        text = b"".join(recorder.body).decode("utf-8", "surrogateescape")
        root = self.file_root.render(request, response, empty_unknown=True) or "."
        context = TemplateContext(root, request, response.headers, self, self.delimiters)
        headers = response.headers
        # the file's validators and length do not describe what the template makes (nor an
        # error: Caddy 2.6.2 leaves the file's Content-Length on its empty 500, we do not)
        for name in ("Content-Length", "Accept-Ranges", "Last-Modified", "Etag"):
            headers.delete(name)
        try:
            output = context.execute_text(request.path, text)
        except (ParseError, ExecError) as error:
            handler_error = handler_error_of(error)
            if handler_error is not None:
                raise handler_error from None
            self.log.error("templates: {uri}: {error}", uri=request.uri, error=str(error))
            raise HandlerError(500, str(error), cause=error) from None
        body = output.encode("utf-8", "surrogateescape")
        headers.set("Content-Length", str(len(body)))
        response.write_head(recorder.held_status or 200)
        response.write(body)
        return None

    def virtual_request(self, request: Request, uri: str, count: int) -> tuple[int, str]:
        """``httpInclude``'s GET of ``uri`` through this request's server: (status, body)."""
        headers = request.headers.copy()
        headers.set("Accept-Encoding", "identity")
        headers.set(RECURSION_HEADER, str(count))
        virtual = Request("GET", uri, headers, proto=request.proto, remote=request.remote,
                          tls=request.tls, server=request.server)
        virtual.host = request.host
        response = _VirtualResponse()
        server = request.server
        handle = getattr(server, "serve_virtual", None) or server.handle  # type: ignore[union-attr]
        handle(virtual, response)
        if not response.finished:
            raise ValueError("httpInclude: the included request did not complete synchronously")
        return response.status, b"".join(response.chunks).decode("utf-8", "surrogateescape")


@module("http.handlers.templates", schema=Obj({"file_root": STRING, "mime_types": STRINGS, "delimiters": STRINGS}))
def load_templates(config: dict[str, Any], context: Any) -> Templates:
    return Templates(config.get("file_root") or "", config.get("mime_types"), config.get("delimiters"))
