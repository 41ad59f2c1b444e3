"""The public fakes of ``txcaddy.testing``: what they provide, what they record, the docs' examples."""

from __future__ import annotations

import os
import re
import sys
import types
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.reporter import TestResult
from twisted.trial.runner import TestLoader
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from txcaddy.http._h1 import HTTP11Factory, HTTP11Protocol
from txcaddy.http.errors import HandlerError
from txcaddy.interfaces import IHandler, IHTTPServer, IRequest, IResponse
from txcaddy.testing import FakeResponse, FakeServer, make_request, serve

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs")


def doc_examples(page: str) -> list[str]:
    """The Python blocks of ``docs/<page>``, in order."""
    with open(os.path.join(DOCS, page)) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


@implementer(IHandler)
class Greeting:
    """A small handler: a JSON greeting for the name in the query."""

    def serve(self, request: Any, response: Any, next: Any) -> None:
        name = request.query.partition("=")[2] or "world"
        response.headers.set("Content-Type", "application/json")
        response.headers.add("Vary", "Accept")
        response.write_head(201)
        response.write(b'{"hello": "')
        response.write(name.encode())
        response.write(b'"}')


@implementer(IHandler)
class Later:
    """Answers when the test fires ``pending``."""

    def __init__(self) -> None:
        self.pending: Deferred[None] = Deferred()

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        return self.pending.addCallback(lambda _: response.write(b"later"))


@implementer(IHandler)
class Teapot:
    def serve(self, request: Any, response: Any, next: Any) -> None:
        raise HandlerError(418, "teapot")


class ProvidesTests(SynchronousTestCase):
    def test_made_request_provides_irequest(self) -> None:
        """``make_request`` builds an ``IRequest``."""
        self.assertTrue(verifyObject(IRequest, make_request("POST", "/x", body=b"data")))

    def test_fake_response_provides_iresponse(self) -> None:
        """``FakeResponse`` provides ``IResponse``."""
        self.assertTrue(verifyObject(IResponse, FakeResponse()))

    def test_fake_server_provides_ihttpserver(self) -> None:
        """``FakeServer`` provides ``IHTTPServer``."""
        self.assertTrue(verifyObject(IHTTPServer, FakeServer()))


class HandlerTestingTests(SynchronousTestCase):
    """A handler tested end to end with ``make_request``, ``serve`` and ``FakeResponse``."""

    def test_status_headers_and_body_are_recorded(self) -> None:
        """``serve`` returns a finished ``FakeResponse`` with the handler's status, fields and body."""
        response = serve(Greeting(), make_request("GET", "/hello?name=txcaddy"))
        self.assertEqual(response.status, 201)
        self.assertEqual(response.headers.get("Content-Type"), "application/json")
        self.assertEqual(response.headers.get_all("Vary"), ["Accept"])
        self.assertEqual(response.chunks, [b'{"hello": "', b"txcaddy", b'"}'])
        self.assertEqual(response.body, b'{"hello": "txcaddy"}')
        self.assertEqual(response.size, len(response.body))
        self.assertTrue(response.finished)
        self.assertTrue(response.ended)

    def test_request_fields(self) -> None:
        """``make_request`` fills the fields handlers read: Host, path, query, body, server."""
        server = FakeServer()
        request = make_request("POST", "/a%20b?q=1", {"X-A": "1"}, b"data", host="example.com:8080", server=server)
        self.assertEqual((request.method, request.path, request.raw_path, request.query), ("POST", "/a b", "/a%20b", "q=1"))
        self.assertEqual((request.hostname, request.port, request.headers.get("X-A")), ("example.com", "8080", "1"))
        self.assertEqual((request.body.length, request.body.empty), (4, False))
        self.assertIs(request.server, server)

    def test_serve_waits_for_nothing(self) -> None:
        """``serve`` refuses a handler whose Deferred has not fired, rather than finishing early."""
        self.assertRaises(AssertionError, serve, Later(), make_request())

    def test_serve_reraises_handler_errors(self) -> None:
        """A handler's ``HandlerError`` comes out of ``serve`` for the test to assert on."""
        with self.assertRaises(HandlerError) as caught:
            serve(Teapot(), make_request())
        self.assertEqual(caught.exception.status, 418)

    def test_response_part_way(self) -> None:
        """Driving the handler directly, the ``FakeResponse`` shows what is written so far."""
        handler = Later()
        response = FakeResponse()
        handler.serve(make_request(), response, None)
        self.assertEqual((response.head_sent, response.body), (False, b""))
        handler.pending.callback(None)
        self.assertEqual((response.status, response.body, response.finished), (200, b"later", False))


class FakeServerTests(SynchronousTestCase):
    """``FakeServer`` behind the real HTTP/1.1 protocol on a ``StringTransport``."""

    def connect(self, server: FakeServer) -> tuple[HTTP11Protocol, StringTransport]:
        protocol = HTTP11Factory(server, MemoryReactorClock()).buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_handler_answers_through_the_protocol(self) -> None:
        """With a handler, each request the protocol hands over is served and its response finished."""
        server = FakeServer(Greeting())
        protocol, transport = self.connect(server)
        protocol.dataReceived(b"GET /?name=h1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        [(request, response)] = server.requests
        self.assertEqual((request.host, request.server), ("example.com", server))
        self.assertTrue(response.finished)
        out = transport.value()
        self.assertTrue(out.startswith(b"HTTP/1.1 201 Created\r\n"), out)
        self.assertTrue(out.endswith(b'\r\n\r\n{"hello": "h1"}'), out)

    def test_without_handler_the_test_answers(self) -> None:
        """Without a handler, requests are only recorded; the test writes the response."""
        server = FakeServer()
        protocol, transport = self.connect(server)
        protocol.dataReceived(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n")
        [(request, response)] = server.requests
        self.assertEqual(transport.value(), b"")
        response.write(b"ok")
        response.finish()
        self.assertTrue(transport.value().endswith(b"\r\n\r\nok"))

    def test_failure_is_recorded_and_answered(self) -> None:
        """A handler's failure is kept in ``failures`` and answered with its status."""
        server = FakeServer(Teapot())
        protocol, transport = self.connect(server)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        [failure] = server.failures
        self.assertIsInstance(failure.value, HandlerError)
        self.assertEqual(getattr(failure.value, "status", None), 418)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 418 "))

    def test_connections_are_tracked(self) -> None:
        """Connections are in ``connections`` from ``connection_made`` to ``connection_lost``."""
        server = FakeServer()
        protocol, transport = self.connect(server)
        self.assertEqual(server.connections, {protocol})
        protocol.connectionLost(None)
        self.assertEqual(server.connections, set())

    def test_drain_closes_idle_connections(self) -> None:
        """``drain`` asks connections to close when idle and fires once the last one is gone."""
        server = FakeServer()
        protocol, transport = self.connect(server)
        done: list[None] = []
        server.drain(10.0, None).addCallback(done.append)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(done, [])
        protocol.connectionLost(None)
        self.assertEqual(done, [None])

    def test_limits_reach_the_protocol(self) -> None:
        """The protocol reads ``max_header_bytes`` from its server: past it, 431."""
        protocol, transport = self.connect(FakeServer(Greeting(), max_header_bytes=64))
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: " + b"x" * 100 + b"\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431 "))


class DocsExampleTests(SynchronousTestCase):
    """The examples of testing a handler in docs/plugins.md and docs/embedding.md run and pass."""

    def test_plugins_example_passes(self) -> None:
        """docs/plugins.md's trial test of the ``hello`` handler passes."""
        plugin_source, test_source = doc_examples("plugins.md")[:2]
        plugin = types.ModuleType("twisted.plugins.hello_plugin")
        exec(plugin_source, plugin.__dict__)  # noqa: S102 - our own docs
        sys.modules[plugin.__name__] = plugin  # where the example's test imports it from
        self.addCleanup(sys.modules.pop, plugin.__name__, None)
        namespace: dict[str, Any] = {"__name__": "test_hello"}
        exec(test_source, namespace)  # noqa: S102 - our own docs
        result = TestResult()
        suite = TestLoader().loadClass(namespace["HelloTests"])
        suite.run(result)
        self.assertEqual((result.testsRun, result.errors, result.failures), (1, [], []))

    def test_embedding_example_runs(self) -> None:
        """docs/embedding.md's handler example runs its own assertions."""
        namespace: dict[str, Any] = {}
        exec(doc_examples("embedding.md")[2], namespace)  # noqa: S102 - our own docs; it asserts itself
        self.assertEqual(namespace["response"].body, b"wait... done")
