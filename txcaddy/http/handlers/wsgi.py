"""``wsgi``: serve a WSGI application (PEP 3333) from a thread pool of its own.

txcaddy's own handler (Caddy has none). ``twisted.web.wsgi`` is the model for
the threading (the app runs in a pool thread, each response chunk is handed to
the reactor thread), but txcaddy's request and response are not twisted.web's,
and two things differ on purpose:

* bodies stream both ways with backpressure: ``wsgi.input`` keeps at most
  ``INPUT_BUFFER`` bytes and pauses the client beyond that (a read in the app
  thread waits for the reactor to deliver more), and each chunk the app yields
  blocks its thread until the client has taken the previous ones;
* each handler has a bounded pool: at most ``threads`` calls of the app run at
  once, at most ``queue`` more wait for a thread, and a request beyond that is
  a 503 at once (a ``HandlerError``, so ``handle_errors`` applies) rather than
  a hang.

An exception from the app is logged with its traceback and becomes a 500
``HandlerError`` when nothing was sent yet; after the head was sent the
connection is aborted so the client sees an incomplete response. A client that
goes away makes the app's next write raise ``ClientDisconnected`` (an
``OSError``); iteration then stops and the iterable's ``close()`` is called.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from txcaddy.config.registry import module
from txcaddy.config.schema import INT, STRING, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.handlers._pyimport import import_app
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IBodyConsumer, IHandler

__all__ = ["ClientDisconnected", "WSGIHandler", "WSGIPool", "build_environ", "load_wsgi"]

#: Request body bytes ``wsgi.input`` keeps before it pauses reading from the client.
INPUT_BUFFER = 64 * 1024
DEFAULT_THREADS = 10
DEFAULT_QUEUE = 100

# Fields a WSGI app must not set (PEP 3333 "hop-by-hop"): the protocol frames the response.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade",
})

_log = Logger(namespace="txcaddy.wsgi")


class ClientDisconnected(OSError):
    """The client went away: what the app writes or reads goes nowhere."""


def _wsgi_str(text: str) -> str:
    """A str as PEP 3333 wants it: the bytes on the wire, one latin-1 character each."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _script_and_path(request: Request, root_path: str) -> tuple[str, str]:
    """``SCRIPT_NAME`` and ``PATH_INFO``.

    With ``root_path`` the script name is that prefix (removed from the path when the
    path still starts with it). Without it, a prefix that ``handle_path`` or
    ``uri strip_prefix`` removed (the original path minus the current one, when the
    current one is its tail) is the script name, so the app builds URLs that work.
    """
    path = request.path
    if root_path:
        script = root_path.rstrip("/")
        if path == script or path.startswith(script + "/"):
            path = path[len(script):]
        return script, path
    orig = request.orig_path
    if path.startswith("/") and len(orig) > len(path) and orig.endswith(path):
        return orig[: len(orig) - len(path)], path
    return "", path


def build_environ(request: Request, root_path: str, stream: Any, errors: Any) -> dict[str, Any]:
    """The PEP 3333 environ of ``request``, with ``stream`` as ``wsgi.input``."""
    script, path = _script_and_path(request, root_path)
    local = request.local
    scheme = request.scheme
    port = request.port or (str(local[1]) if local and local[1] else ("443" if scheme == "https" else "80"))
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": _wsgi_str(script),
        "PATH_INFO": _wsgi_str(path),
        "QUERY_STRING": request.query,
        "REQUEST_URI": request.request_uri,
        "RAW_URI": request.request_uri,
        "SERVER_NAME": request.hostname or (local[0] if local else "") or "localhost",
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": request.proto,
        "REMOTE_ADDR": str(request.remote[0]),
        "REMOTE_PORT": str(request.remote[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": stream,
        "wsgi.input_terminated": True,  # reads end at the body's end, chunked or not
        "wsgi.errors": errors,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if request.tls is not None:
        environ["HTTPS"] = "on"
    for name, values in request.headers.lists():
        upper = name.upper()
        if "_" in name:
            continue  # HTTP_X_A would be ambiguous with X-A: dropped, as nginx and gunicorn do
        if upper == "CONTENT-TYPE":
            environ["CONTENT_TYPE"] = values[0]
        elif upper == "CONTENT-LENGTH":
            environ["CONTENT_LENGTH"] = values[0]
        else:
            environ["HTTP_" + upper.replace("-", "_")] = ("; " if upper == "COOKIE" else ",").join(values)
    return environ


class _ErrorStream:
    """``wsgi.errors``: what the app writes there goes to the log, a line at a time."""

    def __init__(self, app: str) -> None:
        self.app = app
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
        for line in lines:
            _log.warn("{app}: {line}", app=self.app, line=line)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        with self._lock:
            partial, self._partial = self._partial, ""
        if partial:
            _log.warn("{app}: {line}", app=self.app, line=partial)


@implementer(IBodyConsumer)
class _InputStream:
    """``wsgi.input``: the request body, read in the app thread as the reactor delivers it.

    The body is taken from the request only at the first read (so ``Expect:
    100-continue`` is answered only when the app wants the body). At most
    ``INPUT_BUFFER`` bytes are kept: beyond that the client connection is paused
    until the app has read below the limit. Reads past the end give ``b""``; a
    body cut off (client gone) raises ``ClientDisconnected``.
    """

    def __init__(self, reactor: Any, request: Request) -> None:
        self._reactor = reactor
        self._body = request.body
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._started = False  # app thread: the body was asked for
        self._paused = False  # reactor thread: the client is paused by us
        self._closed = False  # reactor thread: the app is done; drop what arrives

    # -- reactor thread ----------------------------------------------------------------

    def _deliver(self) -> None:
        if not self._closed:
            self._body.deliver(self)

    def body_data(self, data: bytes) -> None:
        if self._closed:
            return
        with self._cond:
            self._chunks.append(data)
            self._buffered += len(data)
            over = self._buffered > INPUT_BUFFER
            self._cond.notify_all()
        if over and not self._paused and self._body.producer is not None:
            self._paused = True
            self._body.producer.pauseProducing()

    def body_trailers(self, trailers: Any) -> None:
        """Request bodies deliver no trailers."""

    def body_finished(self, reason: Failure | None) -> None:
        with self._cond:
            self._eof = True
            if reason is not None and self._error is None:
                self._error = ClientDisconnected(f"request body cut off: {reason.getErrorMessage()}")
            self._cond.notify_all()
        self._resume()

    def _maybe_resume(self) -> None:
        with self._cond:
            low = self._buffered <= INPUT_BUFFER
        if low:
            self._resume()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            if self._body.producer is not None:
                self._body.producer.resumeProducing()

    def abort(self) -> None:
        """The client is gone: a waiting read raises."""
        with self._cond:
            if self._error is None:
                self._error = ClientDisconnected("the client went away")
            self._eof = True
            self._cond.notify_all()

    def close(self) -> None:
        """The app is done: drop what is kept and what still arrives, never leave the client paused."""
        self._closed = True
        with self._cond:
            self._chunks.clear()
            self._buffered = 0
        self._resume()
        if not self._started:
            self._body.discard()

    # -- app thread ----------------------------------------------------------------------

    def _take(self, limit: int, line: bool = False) -> bytes:
        """Up to ``limit`` bytes (any if negative), up to a newline if ``line``; b"" at the end."""
        if not self._started:
            self._started = True
            self._reactor.callFromThread(self._deliver)
        with self._cond:
            while not self._chunks and not self._eof:
                self._cond.wait()
            if not self._chunks:
                if self._error is not None:
                    raise self._error
                return b""
            chunk = self._chunks[0]
            end = len(chunk)
            if line:
                newline = chunk.find(b"\n")
                if newline >= 0:
                    end = newline + 1
            if 0 <= limit < end:
                end = limit
            piece = chunk[:end]
            if end < len(chunk):
                self._chunks[0] = chunk[end:]
            else:
                self._chunks.popleft()
            before = self._buffered
            self._buffered -= len(piece)
            resume = before > INPUT_BUFFER >= self._buffered
        if resume:
            self._reactor.callFromThread(self._maybe_resume)
        return piece

    def read(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        parts = []
        while size != 0:
            piece = self._take(size)
            if not piece:
                break
            parts.append(piece)
            if size > 0:
                size -= len(piece)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        size = -1 if size is None else size
        parts = []
        while size != 0:
            piece = self._take(size, line=True)
            if not piece:
                break
            parts.append(piece)
            if piece.endswith(b"\n"):
                break
            if size > 0:
                size -= len(piece)
        return b"".join(parts)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> _InputStream:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class _DaemonThreadPool(ThreadPool):
    """A ThreadPool whose threads never keep the process alive (an app stuck forever)."""

    threadFactory = staticmethod(lambda *a, **kw: threading.Thread(*a, daemon=True, **kw))  # type: ignore[assignment]


class _PoolService(Service):
    """Starts a ``WSGIPool`` with the config's other services.

    Stopping is left to the config's unload hook: the service tree stops a
    replaced config's services before its servers drain, and the requests still
    in flight (or queued) then must keep their threads.
    """

    def __init__(self, pool: WSGIPool) -> None:
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        self.pool.start()


class WSGIPool:
    """A handler's threads and who may use them: ``threads`` calls at once, ``queue`` waiting.

    Lives on the reactor thread. Started with the config (it is a service of the
    load context, and starts on first use when nothing started it); stopped when
    the config is unloaded (after its servers drained): requests still waiting
    then get a 503, running calls finish and their threads end after them.
    """

    def __init__(self, reactor: Any, threads: int, queue: int, name: str) -> None:
        self.reactor = reactor
        self.threads = threads
        self.queue = queue
        self.name = name
        self.pool = _DaemonThreadPool(minthreads=0, maxthreads=threads, name=name)
        self.running = 0
        self.waiting: deque[_WSGICall] = deque()
        self.stopped = False

    # -- the pool ----------------------------------------------------------------------------

    def start(self) -> None:
        if not self.stopped and not self.pool.started:
            self.pool.start()

    def stop(self) -> None:
        """No new calls; waiting ones get a 503; threads end once the running calls return."""
        if self.stopped:
            return
        self.stopped = True
        waiting, self.waiting = self.waiting, deque()
        for call in waiting:
            call.refuse(HandlerError(503, f"{self.name}: the server is stopping"))
        if self.running == 0:
            self._stop_threads()

    def _stop_threads(self) -> None:
        if self.pool.started:
            self.pool.stop()  # every thread is idle: they end at once

    def submit(self, call: _WSGICall) -> None:
        """Run ``call`` now, queue it, or raise a 503 ``HandlerError`` when neither can be."""
        if self.stopped:
            raise HandlerError(503, f"{self.name}: the server is stopping")
        self.start()
        if self.running < self.threads:
            self.running += 1
            self.pool.callInThread(call.run)
        elif len(self.waiting) < self.queue:
            self.waiting.append(call)
        else:
            raise HandlerError(
                503, f"{self.name}: all {self.threads} threads busy and {len(self.waiting)} requests waiting")

    def call_done(self) -> None:
        """A call returned (reactor thread): the next waiting one gets its thread."""
        self.running -= 1
        while self.waiting and self.running < self.threads:
            call = self.waiting.popleft()
            if call.gone:
                call.refuse(None)
                continue
            self.running += 1
            self.pool.callInThread(call.run)
        if self.stopped and self.running == 0:
            self._stop_threads()


@implementer(IPushProducer)
class _WSGICall:
    """One request through the app: the app-thread side and the reactor side.

    The app thread owns ``_status``/``_headers``/``_head_passed``; everything
    else is touched on the reactor thread only. ``done`` fires when the
    response is over (or fails with the ``HandlerError`` the server answers).
    """

    def __init__(self, handler: WSGIHandler, request: Request, response: Response) -> None:
        self.handler = handler
        self.reactor = handler.reactor
        self.request = request
        self.response = response
        self.done: Deferred[None] = Deferred()
        self.input = _InputStream(self.reactor, request)
        self.environ = build_environ(request, handler.root_path, self.input, handler.errors)
        self.gone = False
        self._paused = False
        self._waiter: Deferred[None] | None = None
        self._producing = False
        # app thread
        self._status: int | None = None
        self._headers: list[tuple[str, str]] = []
        self._head_passed = False
        self._length: int | None = None  # the app's Content-Length
        self._sent = 0  # body bytes passed on, at most ``_length``
        response.on_finish(self._response_over)

    # -- app thread ----------------------------------------------------------------------

    def run(self) -> None:
        outcome: Failure | None = None
        try:
            self._run_app()
        except ClientDisconnected:
            pass
        except BaseException:
            outcome = Failure()
        head = None if self._head_passed or self._status is None else (self._status, self._headers)
        self.reactor.callFromThread(self._finished, outcome, head)

    def _run_app(self) -> None:
        result = self.handler.app(self.environ, self.start_response)
        try:
            for chunk in result:
                self._write(chunk)
                if self._length is not None and self._sent >= self._length:
                    break  # all the app declared was sent: the rest is not read (PEP 3333)
            if self._status is None:
                raise RuntimeError("the WSGI app returned without calling start_response")
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self._head_passed:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self._status is not None:
            raise AssertionError("start_response called a second time without exc_info")
        if not isinstance(status, str) or len(status) < 3 or not status[:3].isdigit():
            raise ValueError(f"bad WSGI status {status!r}")
        for pair in headers:
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(v, str) for v in pair)):
                raise TypeError(f"WSGI header fields must be (str, str) tuples, got {pair!r}")
        lengths = {value.strip() for name, value in headers if name.lower() == "content-length"}
        length = None
        if lengths:
            text = lengths.pop()
            if lengths or not text.isascii() or not text.isdigit():
                raise ValueError(f"bad Content-Length from the WSGI app: {[*lengths, text]!r}")
            length = int(text)
        self._status = int(status[:3])
        self._headers = list(headers)
        self._length = length
        return self._write

    def _write(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"a WSGI app must give bytes, got {type(data).__name__}")
        if self._status is None:
            raise AssertionError("the WSGI app wrote before calling start_response")
        if self._length is not None:
            # More than the app declared would frame the next response on a kept-alive
            # connection: what is past its Content-Length is dropped.
            data = data[: max(0, self._length - self._sent)]
        if not data:
            return  # the head waits for the first non-empty chunk (PEP 3333)
        self._sent += len(data)
        head = None
        if not self._head_passed:
            self._head_passed = True
            head = (self._status, self._headers)
        blockingCallFromThread(self.reactor, self._deliver, head, bytes(data))

    # -- reactor thread --------------------------------------------------------------------

    def _send_head(self, status: int, headers: list[tuple[str, str]], streaming: bool) -> None:
        fields = self.response.headers
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                fields.add(name, value)
        self.response.write_head(status)
        if streaming and self.response.lost is None:
            self._producing = True
            self.response.register_producer(self, True)

    def _deliver(self, head: tuple[int, list[tuple[str, str]]] | None, data: bytes) -> Deferred[None] | None:
        if self.gone:
            raise ClientDisconnected("the client went away")
        if head is not None:
            self._send_head(head[0], head[1], True)
        self.response.write(data)
        if self.gone:
            raise ClientDisconnected("the client went away")
        if self._paused:
            self._waiter = Deferred()
            return self._waiter
        return None

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.callback(None)

    def stopProducing(self) -> None:
        self._lose()

    def _response_over(self) -> None:
        if self.response.lost is not None:
            self._lose()

    def _lose(self) -> None:
        if self.gone:
            return
        self.gone = True
        self.input.abort()
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.errback(ClientDisconnected("the client went away"))

    def refuse(self, error: HandlerError | None) -> None:
        """Never run (the pool stopped, or the client left while queued)."""
        self.input.close()
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)

    def _short(self) -> bool:
        """Whether the body ended short of the app's Content-Length (the app thread is done)."""
        status = self._status or 200
        return (self._length is not None and self._sent < self._length and self.request.method != "HEAD"
                and status >= 200 and status not in (204, 304))

    def _finished(self, outcome: Failure | None, head: tuple[int, list[tuple[str, str]]] | None) -> None:
        self.handler.pool.call_done()
        self.input.close()
        if self._producing:
            self._producing = False
            if self.response.lost is None:
                self.response.unregister_producer()
        if outcome is None and self._short():
            outcome = Failure(RuntimeError(
                f"the WSGI app sent {self._sent} bytes of the {self._length} its Content-Length declared"))
        if outcome is None:
            if not self.gone:
                if head is not None:
                    self._send_head(head[0], head[1], False)
                self.response.finish()
            self.done.callback(None)
            return
        _log.failure("wsgi app {app} failed on {uri}", outcome, app=self.handler.name, uri=self.request.uri)
        if self.gone:
            self.done.callback(None)
            return
        error = outcome.value
        self.done.errback(HandlerError(500, f"wsgi app {self.handler.name}: {type(error).__name__}: {error}", cause=error))


@implementer(IHandler)
class WSGIHandler:
    """``http.handlers.wsgi``: answers every request it gets with the WSGI ``app``."""

    def __init__(self, app: Callable[..., Any], reactor: Any, *, name: str = "app", threads: int = DEFAULT_THREADS,
                 queue: int = DEFAULT_QUEUE, root_path: str = "") -> None:
        self.app = app
        self.reactor = reactor
        self.name = name
        self.root_path = root_path
        self.pool = WSGIPool(reactor, threads, queue, f"wsgi:{name}")
        self.errors = _ErrorStream(name)

    def serve(self, request: Request, response: Response, next: Any) -> Deferred[None]:
        call = _WSGICall(self, request, response)
        try:
            self.pool.submit(call)
        except HandlerError:
            call.input.close()
            raise
        return call.done


@module("http.handlers.wsgi", schema=Obj({"app": STRING, "threads": INT, "queue": INT, "root_path": STRING}))
def load_wsgi(config: dict[str, Any], context: Any) -> WSGIHandler:
    """Import the app now (a missing module is a config error) and give the pool to the config's services."""
    spec = config.get("app")
    if not spec:
        raise ConfigError("wsgi: app is required ('module:app')")
    app = import_app(spec, "wsgi")
    if not callable(app):
        raise ConfigError(f"wsgi: {spec} is not callable (a WSGI app is)")
    threads = config.get("threads", DEFAULT_THREADS)
    queue = config.get("queue", DEFAULT_QUEUE)
    if threads < 1:
        raise ConfigError(f"wsgi: threads must be at least 1, got {threads}")
    if queue < 0:
        raise ConfigError(f"wsgi: queue must not be negative, got {queue}")
    root_path = config.get("root_path") or ""
    if root_path and not root_path.startswith("/"):
        raise ConfigError(f"wsgi: root_path must start with '/', got {root_path!r}")
    reactor = context.reactor
    if reactor is None:
        from twisted.internet import reactor as default  # the edge: no reactor was given

        reactor = default
    handler = WSGIHandler(app, reactor, name=spec, threads=threads, queue=queue, root_path=root_path)
    context.services.append(_PoolService(handler.pool))
    context.on_unload(handler.pool.stop)
    return handler
