"""WSGI apps and twisted.web resources the wsgi / twisted_resource tests mount by module path."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.static import Data, File

#: Set by tests that hold the ``blocking`` app until they release it.
gate = threading.Event()
#: What the apps record for tests to look at (the close() calls, what a streaming app wrote).
seen: dict[str, Any] = {}
#: Deferreds a test puts here to hear when an app reaches a point ("entered", "sent", "closed"):
#: the app fires it on the reactor thread, once, so the test waits on the event itself.
reached: dict[str, Any] = {}


def _reach(point: str) -> None:
    """Fire the Deferred a test waits on for ``point`` (from any thread)."""
    waiter = reached.pop(point, None)
    if waiter is not None:
        reactor.callFromThread(waiter.callback, None)  # type: ignore[attr-defined]


def echo_environ(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers the CGI-ish part of its environ as JSON."""
    keys = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
            "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "HTTP_X_TEST", "wsgi.url_scheme", "HTTPS")
    body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def digest_body(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Reads wsgi.input in 8 KiB pieces and answers the size and sha256 of what it read."""
    stream = environ["wsgi.input"]
    h = hashlib.sha256()
    size = 0
    while True:
        piece = stream.read(8192)
        if not piece:
            break
        size += len(piece)
        h.update(piece)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d %s" % (size, h.hexdigest().encode())]


def read_lines(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers the lines of the body, counted: readline and iteration over wsgi.input."""
    stream = environ["wsgi.input"]
    first = stream.readline()
    rest = list(stream)
    start_response("200 OK", [])
    return [b"%d|%s|%s" % (1 + len(rest), first, b"".join(rest))]


class _Streamed:
    """An iterable with close(): the stream app's response."""

    def __init__(self, count: int, size: int) -> None:
        self.count = count
        self.size = size
        self.sent = 0
        seen["closed"] = False

    def __iter__(self) -> Iterator[bytes]:
        for i in range(self.count):
            self.sent += 1
            seen["sent"] = self.sent
            _reach("sent")
            yield bytes([65 + i % 26]) * self.size

    def close(self) -> None:
        seen["closed"] = True
        _reach("closed")


def stream(environ: dict[str, Any], start_response: Any) -> _Streamed:
    """Yields 50 chunks of 64 KiB without a Content-Length."""
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _Streamed(50, 65536)


def fail_early(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Fails before start_response."""
    raise ZeroDivisionError("early")


def fail_late(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    """Sends its head and some body, then fails."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial"
    raise ZeroDivisionError("late")


def error_page(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Replaces its first head with start_response(exc_info) before anything is sent."""
    start_response("200 OK", [("X-First", "1")])
    try:
        raise ValueError("oops")
    except ValueError:
        import sys

        start_response("503 Service Unavailable", [("X-Second", "1")], sys.exc_info())
    return [b"sorry"]


def write_callable(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Uses the legacy write() callable, then returns more."""
    write = start_response("201 Created", [("Content-Type", "text/plain")])
    write(b"one,")
    write(b"two,")
    return [b"three"]


def blocking(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Waits for ``gate`` (a test releases it), then answers ok."""
    gate.wait(10)
    start_response("200 OK", [])
    return [b"ok"]


def no_start(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Returns without ever calling start_response."""
    return [b"oops"]


def make_app() -> Any:
    """A factory: ``module:make_app()`` gives echo_environ."""
    return echo_environ


def flask_app() -> Any:
    """A small Flask app: routing, url_for under a prefix, uploads, streaming, errors."""
    from flask import Flask, Response, request, stream_with_context, url_for

    app = Flask("txcaddy_test")

    @app.route("/")
    def index() -> Any:
        return {"url": url_for("item", name="x"), "script": request.script_root, "path": request.path}

    @app.route("/items/<name>")
    def item(name: str) -> Any:
        return {"item": name, "q": request.args.get("q")}

    @app.route("/upload", methods=["POST"])
    def upload() -> Any:
        h = hashlib.sha256()
        size = 0
        while True:
            piece = request.stream.read(65536)
            if not piece:
                break
            size += len(piece)
            h.update(piece)
        return {"size": size, "sha256": h.hexdigest()}

    @app.route("/stream")
    def streamed() -> Any:
        def generate() -> Iterator[bytes]:
            for i in range(20):
                yield b"%04d\n" % i

        return Response(stream_with_context(generate()), mimetype="text/plain")

    @app.route("/boom")
    def boom() -> Any:
        raise RuntimeError("boom")

    @app.route("/wait")
    def wait() -> Any:
        seen["entered"] = seen.get("entered", 0) + 1
        _reach("entered")
        gate.wait(10)
        return "waited"

    return app


# -- twisted.web resources ----------------------------------------------------------------------


class _Later(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> Any:
        def finish() -> None:
            request.write(b"later:" + b"/".join(request.prepath) + b"|" + b"/".join(request.postpath))
            request.finish()

        reactor.callLater(0, finish)  # type: ignore[attr-defined]
        return NOT_DONE_YET


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        request.addCookie(b"k", b"v")
        return b"hello " + request.args.get(b"name", [b"?"])[0]

    def render_POST(self, request: Any) -> bytes:
        return b"posted " + request.content.read()


class _Broken(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        raise ZeroDivisionError("broken")


def web_root() -> Resource:
    """A resource tree: /hello, /later (NOT_DONE_YET), /data (static Data), /file (static File), /broken."""
    root = Resource()
    root.putChild(b"hello", _Hello())
    root.putChild(b"later", _Later())
    root.putChild(b"data", Data(b"static data", "text/plain"))
    root.putChild(b"broken", _Broken())
    root.putChild(b"file", File(__file__))
    return root


def klein_app() -> Any:
    """A klein app with a route that builds a URL (so the mount prefix shows)."""
    from klein import Klein

    app = Klein()

    @app.route("/")
    def home(request: Any) -> str:
        return "klein home"

    @app.route("/user/<name>")
    def user(request: Any, name: str) -> Any:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"name": name, "prepath": [p.decode() for p in request.prepath]})

    return app


def long_content_length(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    """Declares a Content-Length of 3, then yields more than that (and records how far it got)."""
    seen["long_yields"] = 0
    start_response("200 OK", [("Content-Length", "3")])
    for chunk in (b"he", b"llo", b"world"):
        seen["long_yields"] += 1
        yield chunk


def short_content_length(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Declares a Content-Length of 10, then sends 5 bytes."""
    start_response("200 OK", [("Content-Length", "10")])
    return [b"hello"]


def bad_content_length(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Declares a Content-Length that is not a number."""
    start_response("200 OK", [("Content-Length", "ten")])
    return [b"hello"]
