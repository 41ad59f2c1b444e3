"""``txcaddy.testing``'s in-memory clients and fake upstreams, and the examples of docs/testing.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Any

from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface.verify import verifyObject

from txcaddy import testing
from txcaddy._testing._websocket import TEXT, FrameReader, accept_key, encode_frame
from txcaddy._testing._wire import ClientResponse, ResponseReader
from txcaddy.interfaces import IExchange, IUpstreamTransport
from txcaddy.reverseproxy.transport import UpstreamAddress
from txcaddy.testing import (
    CaddyfileClient,
    ConfigClient,
    FakeNetwork,
    FakeUpstream,
    Reply,
    ResponseNotReady,
    WebSocketUpstream,
)

ROOT = os.path.join(os.path.dirname(__file__), "..")


def doc_blocks() -> list[str]:
    """The Python blocks of docs/testing.md, in order."""
    with open(os.path.join(ROOT, "docs", "testing.md")) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


PROXY = """
:8080 {
    reverse_proxy localhost:3000
}
"""


class DocsTests(SynchronousTestCase):
    def test_blocks_run(self) -> None:
        """Every Python block of docs/testing.md but the pytest one runs and its asserts hold."""
        blocks = [b for b in doc_blocks() if "import pytest" not in b]
        self.assertGreaterEqual(len(blocks), 5)
        for number, block in enumerate(blocks):
            exec(compile(block, f"docs/testing.md block {number}", "exec"), {})

    def test_pytest_block(self) -> None:
        """The pytest block of docs/testing.md passes under pytest, in a subprocess."""
        try:
            import pytest  # noqa: F401
        except ImportError:
            raise SkipTest("pytest is not installed") from None
        [block] = [b for b in doc_blocks() if "import pytest" in b]
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "test_kit_example.py")
            with open(path, "w") as f:
                f.write(block)
            env = dict(os.environ, PYTHONPATH=os.path.abspath(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path],
                                  capture_output=True, text=True, env=env, cwd=folder, timeout=120)
        self.assertIn("1 passed", done.stdout, done.stdout + done.stderr)


class InterfaceTests(SynchronousTestCase):
    def test_network_is_an_upstream_transport(self) -> None:
        """FakeNetwork provides IUpstreamTransport and its exchanges IExchange."""
        network = FakeNetwork(Clock(), {"localhost:3000": FakeUpstream()})
        self.assertTrue(verifyObject(IUpstreamTransport, network))
        exchange = network.request(UpstreamAddress.parse("127.0.0.1:3000"), b"GET", b"/", [(b"Host", b"x")])
        self.assertTrue(verifyObject(IExchange, exchange))
        self.assertEqual(network.upstreams["127.0.0.1:3000"].requests[0].path, "/")

    def test_view_is_an_upstream_transport(self) -> None:
        """The network seen through a loaded transport provides IUpstreamTransport with its options."""
        client = CaddyfileClient(":8080 {\n\treverse_proxy localhost:3000 {\n\t\ttransport http {\n"
                                 "\t\t\tresponse_header_timeout 7s\n\t\t}\n\t}\n}\n")
        self.addCleanup(client.close)
        [view] = client.network.views
        self.assertTrue(verifyObject(IUpstreamTransport, view))
        self.assertEqual(view.response_header_timeout, 7.0)

    def test_exports(self) -> None:
        """The kit's names are importable from txcaddy.testing."""
        for name in ("CaddyfileClient", "ConfigClient", "FakeUpstream", "FakeNetwork", "Reply", "UpstreamRequest",
                     "UpstreamTunnel", "ClientResponse", "OpenRequest", "ResponseNotReady", "WebSocketClient",
                     "WebSocketUpstream", "UpstreamWebSocket", "MemoryClient"):
            self.assertTrue(hasattr(testing, name), name)


class ClientTests(SynchronousTestCase):
    def client(self, text: str = PROXY, **kw: Any) -> CaddyfileClient:
        client = CaddyfileClient(text, **kw)
        self.addCleanup(client.close)
        return client

    def test_real_parsing(self) -> None:
        """Requests go through the HTTP/1.1 server protocol: a bad Content-Length is answered 400."""
        client = self.client('localhost:8080 {\n\trespond "x"\n}\n'.replace("localhost", "http://localhost"))
        self.assertEqual(client.get("http://localhost:8080/", headers={"Content-Length": "nope"}).status, 400)
        self.assertEqual(client.get("http://localhost:8080/").body, b"x")

    def test_plain_clock(self) -> None:
        """A plain Clock is enough: health checks run when it is advanced, nothing is bound."""
        clock = Clock()
        upstream = FakeUpstream()
        client = self.client(":8080 {\n\treverse_proxy localhost:3000 {\n\t\thealth_uri /up\n"
                             "\t\thealth_interval 5s\n\t}\n}\n", upstreams={"localhost:3000": upstream}, clock=clock)
        self.assertIs(client.clock, clock)
        self.assertEqual(client.get("http://localhost:8080/").status, 200)
        clock.advance(5)
        self.assertEqual(len(upstream.health_checks), 2)
        self.assertEqual(client.service.boundAddresses(), {})

    def test_no_listener(self) -> None:
        """A URL whose port has no listener is refused as a closed port is."""
        self.assertRaises(ConnectionRefusedError, self.client().get, "http://localhost:9999/")

    def test_base_url(self) -> None:
        """A bare path goes to base_url, whose host becomes the Host field."""
        upstream = FakeUpstream()
        client = self.client(upstreams={"localhost:3000": upstream}, base_url="http://app.test:8080")
        self.assertEqual(client.get("/x").status, 200)
        self.assertEqual((upstream.last.path, upstream.last.headers.get("Host")), ("/x", "app.test:8080"))

    def test_body_and_headers_forwarded(self) -> None:
        """A POST's body and fields reach the upstream; the upstream's answer reaches the client."""
        upstream = FakeUpstream(201, {"X-Id": "7"}, b"made")
        client = self.client(upstreams={"localhost:3000": upstream})
        response = client.post("http://localhost:8080/items", body="name=a", headers=[("X-Trace", "t1")])
        self.assertEqual((response.status, response.header("X-Id"), response.body), (201, "7", b"made"))
        self.assertEqual((upstream.last.method, upstream.last.body), ("POST", b"name=a"))
        self.assertEqual(upstream.last.headers.get("X-Trace"), "t1")

    def test_not_ready(self) -> None:
        """A response that waits on the clock raises ResponseNotReady; advancing it completes it."""
        client = self.client(upstreams={"localhost:3000": FakeUpstream(body="slow", delay=5)})
        request = client.open("GET", "http://localhost:8080/")
        self.assertRaises(ResponseNotReady, request.result)
        client.clock.advance(5)
        self.assertEqual(request.result().body, b"slow")

    def test_waiting_request_answered_by_hand(self) -> None:
        """A handler returning None leaves the request waiting for request.respond."""
        upstream = FakeUpstream(handler=lambda request: None)
        client = self.client(upstreams={"localhost:3000": upstream})
        d = client.request_deferred("GET", "http://localhost:8080/")
        results: list[Any] = []
        d.addCallback(results.append)
        self.assertEqual(results, [])
        upstream.last.respond(202, body="later")
        self.assertEqual(results[0].status, 202)

    def test_upstream_failure(self) -> None:
        """An upstream that breaks the connection before answering gives the client 502."""
        upstream = FakeUpstream(handler=lambda request: None)
        client = self.client(upstreams={"localhost:3000": upstream})
        request = client.open("GET", "http://localhost:8080/")
        upstream.last.fail()
        self.assertEqual(request.result().status, 502)

    def test_response_cut_off(self) -> None:
        """A body the upstream cuts off ends the client's connection; when_complete fails."""
        upstream = FakeUpstream(handler=lambda request: None)
        client = self.client(upstreams={"localhost:3000": upstream})
        request = client.open("GET", "http://localhost:8080/")
        failures: list[Any] = []
        request.when_complete().addErrback(failures.append)
        upstream.last.respond(200, {"Content-Length": "10"}, b"12345", complete=False)
        upstream.last.fail()
        self.assertTrue(request.closed)
        self.assertTrue(failures and failures[0].check(ConnectionLost))

    def test_refused_then_retried(self) -> None:
        """With passive health, a refused dial marks the upstream down and the retry reaches the other."""
        client = self.client("""
:8080 {
    reverse_proxy localhost:3000 localhost:3001 {
        lb_policy first
        lb_try_duration 1s
        fail_duration 10s
    }
}
""", upstreams=["localhost:3000", "localhost:3001"])
        client.upstream("localhost:3000").refusing = True
        client.upstream("localhost:3001").reply = Reply(body="second")
        d = client.request_deferred("GET", "http://localhost:8080/")
        results: list[Any] = []
        d.addCallback(results.append)
        client.clock.advance(0.25)
        self.assertEqual(results[0].text, "second")
        self.assertEqual(client.network.dials, ["localhost:3000", "localhost:3001"])
        self.assertEqual(client.upstream("localhost:3000").refused, 1)

    def test_head_has_no_body(self) -> None:
        """A HEAD response's Content-Length is not read as a body."""
        client = self.client(upstreams={"localhost:3000": FakeUpstream(body="12345")})
        response = client.head("http://localhost:8080/")
        self.assertEqual((response.status, response.body, response.complete), (200, b"", True))

    def test_config_client(self) -> None:
        """ConfigClient serves Caddy's JSON, given as a dict or as text."""
        config = {"apps": {"http": {"servers": {"s": {"listen": [":8080"], "routes": [
            {"handle": [{"handler": "static_response", "status_code": 418, "body": "{http.request.uri.path}"}]}]}}}}}
        for given in (config, __import__("json").dumps(config)):
            client = ConfigClient(given)
            self.addCleanup(client.close)
            response = client.get("http://localhost:8080/tea")
            self.assertEqual((response.status, response.text), (418, "/tea"))

    def test_json_and_text(self) -> None:
        """ClientResponse.text decodes with the charset; json() parses the body."""
        client = self.client('http://localhost:8080 {\n\theader Content-Type "application/json; charset=latin-1"\n'
                             '\trespond "{\\"a\\": \\"\xe9\\"}"\n}\n')
        response = client.get("http://localhost:8080/")
        self.assertEqual(response.json(), {"a": "\xe9"})
        self.assertEqual(response.text, '{"a": "\xc3\xa9"}')

    def test_health_checks_are_marked(self) -> None:
        """Active health probes are kept apart from proxied requests."""
        upstream = FakeUpstream()
        client = self.client(":8080 {\n\treverse_proxy localhost:3000 {\n\t\thealth_uri /up\n"
                             "\t\thealth_interval 5s\n\t}\n}\n", upstreams={"localhost:3000": upstream})
        client.clock.advance(5)
        client.get("http://localhost:8080/page")
        self.assertEqual([r.path for r in upstream.health_checks], ["/up", "/up"])
        self.assertEqual([r.path for r in upstream.proxied], ["/page"])
        self.assertEqual(upstream.last.path, "/page")


class WebSocketTests(SynchronousTestCase):
    def test_handshake_refused(self) -> None:
        """An upstream that does not upgrade: the client sees its answer and accepted is False."""
        client = CaddyfileClient(PROXY, upstreams={"localhost:3000": FakeUpstream(426)})
        self.addCleanup(client.close)
        socket = client.websocket("http://localhost:8080/ws")
        self.assertEqual((socket.response.status, socket.accepted), (426, False))

    def test_custom_handler_and_ping(self) -> None:
        """on_message answers in its own way; a ping is answered with a pong carrying its payload."""
        upstream = WebSocketUpstream(on_message=lambda socket, message: socket.send(str(message).upper()))
        client = CaddyfileClient(PROXY, upstreams={"localhost:3000": upstream})
        self.addCleanup(client.close)
        socket = client.websocket("http://localhost:8080/ws")
        socket.send("abc")
        socket.ping(b"p1")
        self.assertEqual(socket.messages, ["ABC"])
        self.assertIn((0xA, b"p1"), socket.frames)

    def test_frames(self) -> None:
        """Masked and long frames round-trip; the accept key is RFC 6455's example."""
        self.assertEqual(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        reader = FrameReader()
        data = encode_frame(TEXT, b"a" * 70000, mask=True) + encode_frame(TEXT, b"short", mask=False)
        reader.feed(data[:5])
        reader.feed(data[5:])
        self.assertEqual(reader.messages, ["a" * 70000, "short"])


class ReaderTests(SynchronousTestCase):
    def test_chunked_with_trailers_piecewise(self) -> None:
        """A chunked body with trailers parses when fed one byte at a time."""
        response = ClientResponse("GET")
        reader = ResponseReader(response)
        wire = (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n")
        for i in range(len(wire)):
            reader.feed(wire[i:i + 1])
        self.assertEqual((response.status, response.body, response.complete), (200, b"abcde", True))
        self.assertEqual(response.informational[0][0], 103)
        assert response.trailers is not None
        self.assertEqual(response.trailers.get("X-T"), "1")

    def test_close_delimited(self) -> None:
        """A body without framing ends with the connection."""
        response = ClientResponse("GET")
        reader = ResponseReader(response)
        reader.feed(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        self.assertFalse(response.complete)
        reader.connection_closed()
        self.assertEqual((response.body, response.complete), (b"all of it", True))
