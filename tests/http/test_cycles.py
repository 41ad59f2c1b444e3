"""Requests answered by the server's own handlers, errors included, leave no reference cycle.

An error raised by a handler carries a traceback whose frames refer to the request; kept on
the request for the error routes (``request.error``), it made a cycle per failed request.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests._gc import garbage_of
from txcaddy.http._h1 import HTTP11Protocol
from txcaddy.service import fromCaddyfile
from txcaddy.testing import MemoryServingReactor


class ReferenceCycleTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = FilePath(self.mktemp())
        root.makedirs()
        root.child("index.html").setContent(b"<h1>hi</h1>")
        self.reactor = MemoryServingReactor()
        service = fromCaddyfile(
            "http://:18081 {\n"
            "\tbind 127.0.0.1\n"
            "\thandle /respond {\n\t\trespond \"hello {http.request.uri}\"\n\t}\n"
            f"\thandle_path /files/* {{\n\t\troot * {root.path}\n\t\tfile_server\n\t}}\n"
            "\tredir /old /new 301\n"
            "\thandle /err {\n\t\terror \"nope\" 418\n\t}\n"
            "\thandle_errors {\n\t\trespond \"error {http.error.status_code}\"\n\t}\n"
            "}\n",
            reactor=self.reactor,
        )
        self.addCleanup(service.context.unload)
        assert service.http is not None
        self.server = next(iter(service.http.servers.values()))

    def get(self, path: bytes) -> bytes:
        protocol = HTTP11Protocol(self.server, self.reactor)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.reactor.advance(0)
        protocol.connectionLost(None)
        return transport.value()

    def assertNoCycles(self, path: bytes, status_line: bytes, body: bytes) -> None:
        out = self.get(path)  # warm up: caches filled, modules imported
        self.assertTrue(out.startswith(status_line + b"\r\n"), out[:60])
        self.assertTrue(out.endswith(b"\r\n\r\n" + body), out[-60:])

        def work() -> None:
            for _ in range(10):
                self.get(path)

        self.assertEqual(garbage_of(work), Counter(), path)

    def test_static_response(self) -> None:
        """A respond answer leaves no reference cycle behind."""
        self.assertNoCycles(b"/respond", b"HTTP/1.1 200 OK", b"hello /respond")

    def test_file_server(self) -> None:
        """A file_server answer leaves no reference cycle behind."""
        self.assertNoCycles(b"/files/index.html", b"HTTP/1.1 200 OK", b"<h1>hi</h1>")

    def test_redirect(self) -> None:
        """A redir answer leaves no reference cycle behind."""
        self.assertNoCycles(b"/old", b"HTTP/1.1 301 Moved Permanently", b"")

    def test_raised_error_answered_by_the_error_routes(self) -> None:
        """An error raised by a handler and answered by handle_errors leaves no cycle."""
        self.assertNoCycles(b"/err", b"HTTP/1.1 418 I'm a teapot", b"error 418")

    def test_file_not_found_answered_by_the_error_routes(self) -> None:
        """A file_server 404 answered by handle_errors leaves no reference cycle."""
        self.assertNoCycles(b"/files/missing", b"HTTP/1.1 404 Not Found", b"error 404")


class ReleaseFramesTests(SynchronousTestCase):
    def test_the_whole_chain_loses_its_tracebacks(self) -> None:
        """release_frames drops the tracebacks of an error, its causes and its wrapped cause."""
        from txcaddy.http.errors import HandlerError, release_frames

        try:
            try:
                try:
                    raise OSError("disk")
                except OSError as cause:
                    raise HandlerError(404, "not found", cause=cause) from cause
            except HandlerError as handled:
                raise RuntimeError("while answering") from handled
        except RuntimeError as error:
            caught = error
        chain = [caught, caught.__cause__, caught.__cause__.cause]  # type: ignore[union-attr]
        self.assertTrue(all(e.__traceback__ is not None for e in chain))
        release_frames(caught)
        self.assertEqual([e.__traceback__ for e in chain], [None, None, None])
        self.assertEqual(str(chain[2]), "disk")  # the errors themselves are kept
