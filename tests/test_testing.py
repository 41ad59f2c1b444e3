"""The public fakes of ``txcaddy.testing``: what they provide, what they record, the docs' examples."""

from __future__ import annotations

import os
import re
import sys
import types
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.reporter import TestResult
from twisted.trial.runner import TestLoader
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from txcaddy._reactor import IServingReactor
from txcaddy.http._h1 import HTTP11Factory, HTTP11Protocol
from txcaddy.http.errors import HandlerError
from txcaddy.interfaces import (
    IExchange,
    IHandler,
    IHTTPServer,
    IRequest,
    IResponse,
    IStorage,
    IUpstreamTransport,
)
from txcaddy.reverseproxy.handler import ReverseProxyHandler
from txcaddy.reverseproxy.hosts import Upstream
from txcaddy.reverseproxy.selection import RoundRobinSelection
from txcaddy.reverseproxy.transport import (
    CHUNKED,
    ResponseBodyConsumer,
    UpstreamAddress,
    UpstreamConnectionLost,
)
from txcaddy.testing import (
    FakeExchange,
    FakeResponse,
    FakeServer,
    FakeUpstreamTransport,
    MemoryServingReactor,
    MemoryStorage,
    make_request,
    respond_with,
    serve,
)
from txcaddy.tls import storage

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

    def test_memory_serving_reactor_provides_iservingreactor(self) -> None:
        """``MemoryServingReactor`` provides ``IServingReactor``; its UDP ports are recorded."""
        reactor = MemoryServingReactor()
        self.assertTrue(verifyObject(IServingReactor, reactor))
        protocol = DatagramProtocol()
        port = reactor.listenUDP(0, protocol, "127.0.0.1")
        self.assertEqual(reactor.udpPorts, [(0, protocol, "127.0.0.1", 8192)])
        self.assertTrue(verifyObject(IListeningPort, port))
        self.assertEqual(port.getHost(), IPv4Address("UDP", "127.0.0.1", 0))


    def test_memory_storage_provides_istorage(self) -> None:
        """``MemoryStorage`` is the storage module's, and provides ``IStorage``."""
        self.assertIs(MemoryStorage, storage.MemoryStorage)
        memory = MemoryStorage(Clock())
        self.assertTrue(verifyObject(IStorage, memory))
        self.successResultOf(memory.store("pki/authorities/local/root.crt", b"PEM"))
        self.assertEqual(memory.values, {"pki/authorities/local/root.crt": b"PEM"})


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
        server = FakeServer(Greeting())
        protocol, transport = self.connect(server)
        # Idle after a request (a connection yet to send its first one gets a grace period).
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertFalse(transport.disconnecting)
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

class _Recorder(ResponseBodyConsumer):
    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.trailers: Any = None
        self.reasons: list[Failure | None] = []

    def body_data(self, data: bytes) -> None:
        self.data.append(data)

    def body_trailers(self, trailers: Any) -> None:
        self.trailers = trailers

    def body_finished(self, reason: Failure | None) -> None:
        self.reasons.append(reason)


def _proxy(transport: Any) -> ReverseProxyHandler:
    return ReverseProxyHandler(clock=Clock(), transport=transport, upstreams=[Upstream("127.0.0.1:9000")],
                               policy=RoundRobinSelection())




class FakeUpstreamTransportTests(SynchronousTestCase):
    """``FakeUpstreamTransport`` and ``FakeExchange``: a proxy route tested without sockets."""

    def test_provides_the_interfaces(self) -> None:
        """The fakes provide ``IUpstreamTransport`` and ``IExchange``."""
        transport = FakeUpstreamTransport()
        self.assertTrue(verifyObject(IUpstreamTransport, transport))
        exchange = transport.request(UpstreamAddress.parse("127.0.0.1:9000"), b"GET", b"/", [])
        self.assertTrue(verifyObject(IExchange, exchange))

    def test_canned_response_through_the_proxy(self) -> None:
        """A responder answers at once; the request the upstream got is recorded."""
        transport = FakeUpstreamTransport(respond_with(200, [(b"Content-Type", b"text/plain")], b"hi"))
        response = serve(_proxy(transport), make_request("GET", "/path?q=1", headers={"Host": "example.com"}))
        self.assertEqual((response.status, response.body), (200, b"hi"))
        (exchange,) = transport.exchanges
        self.assertEqual((exchange.method, exchange.target), (b"GET", b"/path?q=1"))
        self.assertEqual(str(exchange.address), "127.0.0.1:9000")
        self.assertIn((b"Host", b"example.com"), exchange.headers)

    def test_request_body_reaches_the_fake_upstream(self) -> None:
        """A request body streams into the exchange before the responder answers."""
        seen: list[bytes] = []

        def responder(exchange: FakeExchange) -> None:
            seen.append(bytes(exchange.body))
            exchange.respond(201, body=b"made")

        transport = FakeUpstreamTransport(responder)
        response = serve(_proxy(transport), make_request("POST", "/", body=b"payload"))
        self.assertEqual((response.status, response.body, seen), (201, b"made", [b"payload"]))
        self.assertEqual(transport.exchanges[0].body_length, 7)
        self.assertTrue(transport.exchanges[0].body_done)

    def test_answered_by_the_test_later(self) -> None:
        """Without a responder the exchange waits until the test connects and answers it."""
        transport = FakeUpstreamTransport()
        request = make_request("POST", "/", headers={"Transfer-Encoding": "chunked"}, body=b"abc")
        request.body.length = None
        response = FakeResponse()
        outcome: list[Any] = []
        _proxy(transport).serve(request, response, None).addBoth(outcome.append)
        (exchange,) = transport.exchanges
        self.assertEqual((exchange.body_length, bytes(exchange.body), outcome), (CHUNKED, b"", []))
        exchange.connect()
        self.assertEqual(bytes(exchange.body), b"abc")
        exchange.respond(200, body=b"ok", complete=False)
        exchange.send_body(b"!")
        self.assertEqual(outcome, [])
        exchange.end_body([(b"X-Sum", b"1")])
        self.assertEqual(outcome, [None])
        self.assertEqual(response.body, b"ok!")

    def test_failure_is_answered_with_its_status(self) -> None:
        """``fail`` with an ``UpstreamError`` makes the proxy answer that error's status."""
        from txcaddy.http.errors import HandlerError

        transport = FakeUpstreamTransport()
        outcome: list[Any] = []
        _proxy(transport).serve(make_request(), FakeResponse(), None).addBoth(outcome.append)
        transport.exchanges[0].fail(UpstreamConnectionLost("reset"))
        [failure] = outcome
        self.assertIsInstance(failure.value, HandlerError)
        self.assertEqual(failure.value.status, 502)

    def test_body_cut_off_reaches_the_consumer(self) -> None:
        """A failure after the head ends the body with that failure, after the bytes sent."""
        exchange = FakeUpstreamTransport().request(UpstreamAddress.parse("127.0.0.1:9000"), b"GET", b"/", [])
        exchange.respond(200, body=b"part", complete=False)
        exchange.fail(UpstreamConnectionLost("reset"))
        recorder = _Recorder()
        exchange.deliver_body(recorder)
        self.assertEqual(recorder.data, [b"part"])
        [reason] = recorder.reasons
        assert reason is not None
        self.assertIsInstance(reason.value, UpstreamConnectionLost)

    def test_pause_holds_the_body(self) -> None:
        """While paused the fake delivers nothing; resuming delivers the rest and the end."""
        exchange = FakeUpstreamTransport().request(UpstreamAddress.parse("127.0.0.1:9000"), b"GET", b"/", [])
        recorder = _Recorder()
        exchange.respond(200, complete=False)
        exchange.deliver_body(recorder)
        exchange.pauseProducing()
        exchange.send_body(b"a")
        exchange.end_body()
        self.assertEqual((recorder.data, recorder.reasons), ([], []))
        exchange.resumeProducing()
        self.assertEqual((recorder.data, recorder.reasons), ([b"a"], [None]))

    def test_abort_before_the_head(self) -> None:
        """``abort`` fails the head with the reason given and records it."""
        exchange = FakeUpstreamTransport().request(UpstreamAddress.parse("127.0.0.1:9000"), b"GET", b"/", [])
        failures: list[Failure] = []
        exchange.when_head(lambda head: None, failures.append)
        error = ValueError("stop")
        exchange.abort(error)
        self.assertIs(exchange.aborted, error)
        self.assertIs(failures[0].value, error)
        self.assertTrue(exchange.finished)

    def test_switch_protocol_after_101(self) -> None:
        """After a 101 the protocol given is connected to ``upstream_transport``."""
        from twisted.internet.protocol import Protocol

        exchange = FakeUpstreamTransport().request(UpstreamAddress.parse("127.0.0.1:9000"), b"GET", b"/", [])
        self.assertRaises(RuntimeError, exchange.switch_protocol, Protocol())
        exchange.respond(101, [(b"Upgrade", b"websocket")], complete=False)
        protocol = Protocol()
        exchange.switch_protocol(protocol)
        self.assertIs(protocol.transport, exchange.upstream_transport)

    def test_close_idle_fires_at_once(self) -> None:
        """``close_idle`` counts the call and returns a fired Deferred."""
        transport = FakeUpstreamTransport()
        self.assertIsNone(self.successResultOf(transport.close_idle()))
        self.assertEqual(transport.idle_closed, 1)

    def test_embedding_guide_example(self) -> None:
        """The proxy-route example of docs/embedding.md runs (it asserts itself)."""
        import os
        import re

        docs = os.path.join(os.path.dirname(__file__), "..", "docs", "embedding.md")
        with open(docs) as f:
            (example,) = [block for block in re.findall(r"```python\n(.*?)```", f.read(), re.S)
                          if "FakeUpstreamTransport" in block]
        namespace: dict[str, Any] = {}
        exec(example, namespace)  # noqa: S102 - our own docs
        self.assertEqual(namespace["response"].status, 200)
