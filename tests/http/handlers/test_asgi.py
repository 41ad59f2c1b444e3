"""The ``asgi`` handler: a Starlette app served by a real ``txcaddy run`` child process.

The handler needs Twisted's asyncio reactor, and the suite runs in one process on the
default reactor: so the server runs as a child (``txcaddy run`` installs the asyncio reactor
for a config with an ``asgi`` handler), and these tests talk to it over loopback sockets with
blocking clients (``http.client``; ``wsproto`` as the WebSocket client). The app
(``_asgiapp.py``) prints markers that the tests wait for. What needs no loop (the reactor
check, import errors) is tested in-process.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.handlers.asgi import import_app, load_asgi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 30.0
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv = ['twistd'] + sys.argv[1:]; run()"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A child ``txcaddy run`` (or twistd) on a Caddyfile; its output read up to the markers awaited."""

    def __init__(self, testcase: SynchronousTestCase, site: str, argv: list[str] | None = None,
                 env: dict[str, str] | None = None, wait: bool = True) -> None:
        self.port = _free_port()
        workdir = self.workdir = os.path.abspath(testcase.mktemp())
        os.makedirs(workdir)
        self.write_site(site)
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, ROOT]),
                           XDG_CONFIG_HOME=os.path.join(workdir, "config"), **(env or {}))
        argv = argv or ["-m", "txcaddy.cli", "run", "--config", "Caddyfile"]
        self.process = subprocess.Popen([sys.executable, *argv], cwd=workdir, env=environment,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = b""
        testcase.addCleanup(self.kill)
        if wait:
            self.wait_for(b"listening on [")

    def write_site(self, site: str) -> None:
        """Write the Caddyfile: ``site`` on this server's port."""
        with open(os.path.join(self.workdir, "Caddyfile"), "w") as f:
            # admin off: no child binds localhost:2019, whatever else runs.
            f.write(f"{{\n\tadmin off\n}}\nhttp://127.0.0.1:{self.port} {{\n\tbind 127.0.0.1\n{site}\n}}\n")

    def wait_for(self, marker: bytes, timeout: float = TIMEOUT, start: int = 0) -> None:
        """Read the child's output until ``marker`` appears in it (from offset ``start`` on)."""
        deadline = time.monotonic() + timeout
        stdout = self.process.stdout
        assert stdout is not None
        while self.output.find(marker, start) < 0:
            ready, _, _ = select.select([stdout], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise AssertionError(f"no {marker!r} within {timeout}s; output: {self.output.decode()}")
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"the child ended before {marker!r}: {self.output.decode()}")
            self.output += chunk

    def finish(self, timeout: float = TIMEOUT) -> int:
        """Wait for the child's end, keeping its output; its exit status."""
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([stdout], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise AssertionError(f"the child did not end; output: {self.output.decode()}")
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                break
            self.output += chunk
        return self.process.wait(timeout)

    def stop(self) -> int:
        """SIGTERM the child and wait for its end."""
        self.process.send_signal(signal.SIGTERM)
        return self.finish()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = self.connection()
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


SITE = """\
\thandle_path /api/* {
\t\tasgi _asgiapp:app
\t}
\tasgi _asgiapp:app
\thandle_errors {
\t\trespond "error page {err.status_code}" {err.status_code}
\t}"""


class _WebSocketClient:
    """A blocking WebSocket client on ``wsproto``: the handshake, then messages both ways."""

    def __init__(self, port: int, path: str, subprotocols: list[str] | None = None) -> None:
        from wsproto import WSConnection
        from wsproto.connection import ConnectionType
        from wsproto.events import Request

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target=path, subprotocols=subprotocols or [])))
        self.events: list[Any] = []

    def next_event(self) -> Any:
        while not self.events:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self.events.extend(self.ws.events())
            if not data and not self.events:
                raise AssertionError("the server closed the connection")
        return self.events.pop(0)

    def send(self, event: Any) -> None:
        self.sock.sendall(self.ws.send(event))

    def close(self) -> None:
        self.sock.close()


class ASGIHTTPTests(SynchronousTestCase):
    """HTTP requests through the handler to Starlette."""

    server: Server

    def setUp(self) -> None:
        self.server = Server(self, SITE)

    def test_routing_scope_and_lifespan_state(self) -> None:
        """A request reaches its Starlette route with the ASGI scope filled in and the lifespan's state."""
        status, _, body = self.server.get("/hello?q=1", {"X-Test": "yes"})
        self.assertEqual(status, 200)
        answer = json.loads(body)
        self.assertEqual(answer, {
            "greeting": "hello", "path": "/hello", "root_path": "", "raw_path": "/hello",
            "route_path": "/hello", "query": "1", "method": "GET", "http_version": "1.1",
            "scheme": "http", "client": "127.0.0.1", "server_port": self.server.port,
            "x_test": "yes", "asgi": "3.0",
        })

    def test_handle_path_becomes_root_path(self) -> None:
        """What handle_path strips is the scope's root_path; path keeps it in front, as uvicorn's."""
        status, _, body = self.server.get("/api/hello?q=2")
        self.assertEqual(status, 200)
        answer = json.loads(body)
        self.assertEqual((answer["root_path"], answer["path"], answer["route_path"], answer["query"]),
                         ("/api", "/api/hello", "/api/hello", "2"))

    def test_unknown_route_is_starlettes_404(self) -> None:
        """The app answers routes it does not have itself (the handler is terminal)."""
        status, _, body = self.server.get("/nothing-here")
        self.assertEqual((status, body), (404, b"Not Found"))

    def test_streaming_response_arrives_before_the_app_finishes(self) -> None:
        """A StreamingResponse's first chunk reaches the client while the app still waits."""
        conn = self.server.connection()
        conn.request("GET", "/stream")
        response = conn.getresponse()
        self.assertEqual(response.getheader("Transfer-Encoding"), "chunked")
        self.assertEqual(response.readline(), b"first\n")
        self.assertEqual(self.server.get("/release")[2], b"released")
        self.assertEqual(response.read(), b"second\n")
        conn.close()

    def test_slow_client_holds_the_app_back(self) -> None:
        """A client that does not read stops the app's sends (backpressure), and then gets all 128 MiB."""
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=TIMEOUT) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            # The app says when a send first has to wait for this client (the handler held it back).
            self.server.wait_for(b"BIG held back after ")
            self.server.wait_for(b"\n", start=self.server.output.index(b"BIG held back after "))
            stalled = int(self.server.output.split(b"BIG held back after ", 1)[1].split(b"\n", 1)[0])
            self.assertLess(stalled, 512)  # under 32 MiB of 128 MiB sent while nobody reads
            received = 0
            while data := s.recv(1 << 20):
                received += len(data)
        self.assertGreater(received, 2048 * 65536)
        self.assertEqual(int(self.server.get("/big-sent")[2]), 2048)

    def test_large_upload_is_streamed_to_the_app(self) -> None:
        """An 8 MiB upload reaches the app whole, in many chunks as it arrives."""
        size = 8 * 1024 * 1024
        conn = self.server.connection()
        conn.request("POST", "/upload", body=b"x" * size, headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        answer = json.loads(response.read())
        conn.close()
        self.assertEqual(answer["size"], size)
        self.assertGreater(answer["chunks"], 8)

    def test_client_disconnect_reaches_the_app(self) -> None:
        """A client that goes away mid-request makes the app's receive return http.disconnect."""
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=TIMEOUT) as s:
            s.sendall(b"GET /wait HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.server.wait_for(b"WAITING /wait")  # the app has it before the client leaves
        self.server.wait_for(b"DISCONNECTED /wait")

    def test_app_error_runs_handle_errors(self) -> None:
        """An app that raises before answering gives a 500 through handle_errors, and is logged."""
        status, _, body = self.server.get("/raw-boom")
        self.assertEqual((status, body), (500, b"error page 500"))
        self.server.wait_for(b"the raw app failed")
        self.assertEqual(self.server.get("/hello")[0], 200)

    def test_error_answered_by_the_app_is_kept(self) -> None:
        """Starlette answers its own 500 and re-raises: the client gets that answer, the error is logged."""
        conn = self.server.connection()
        conn.request("GET", "/boom")
        response = conn.getresponse()
        self.assertEqual((response.status, response.read()), (500, b"Internal Server Error"))
        self.server.wait_for(b"the app failed")
        # The same connection goes on: the answer was complete.
        conn.request("GET", "/hello")
        self.assertEqual(conn.getresponse().status, 200)
        conn.close()

    def test_websocket_echo(self) -> None:
        """A WebSocket is upgraded and echoes text and bytes; the app's close code reaches the client."""
        from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, TextMessage

        client = _WebSocketClient(self.server.port, "/ws", ["echo"])
        try:
            accepted = client.next_event()
            self.assertIsInstance(accepted, AcceptConnection)
            self.assertEqual(accepted.subprotocol, "echo")
            client.send(TextMessage(data="hi"))
            self.assertEqual(client.next_event().data, "echo:hi")
            client.send(BytesMessage(data=b"\x01\x02\x03" * 30000))
            received = b""
            while len(received) < 90000:
                event = client.next_event()
                self.assertIsInstance(event, BytesMessage)
                received += event.data
            self.assertEqual(received, b"\x03\x02\x01" * 30000)
            client.send(TextMessage(data="bye"))
            closing = client.next_event()
            self.assertIsInstance(closing, CloseConnection)
            self.assertEqual(closing.code, 4000)
        finally:
            client.close()

    def test_websocket_client_close_reaches_the_app(self) -> None:
        """The client's close frame is the app's websocket.disconnect with its code."""
        from wsproto.events import AcceptConnection, CloseConnection

        client = _WebSocketClient(self.server.port, "/ws")
        try:
            self.assertIsInstance(client.next_event(), AcceptConnection)
            client.send(CloseConnection(code=1000))
            self.assertIsInstance(client.next_event(), CloseConnection)
        finally:
            client.close()
        self.server.wait_for(b"WS closed 1000")

    def test_websocket_refused_is_403(self) -> None:
        """A WebSocket the app closes before accepting is answered 403, as the ASGI spec says."""
        status, _, _ = self.server.get("/refuse", {
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        self.assertEqual(status, 403)


class ASGILifespanTests(SynchronousTestCase):
    """Lifespan startup and shutdown, and the process's answer to failures."""

    def test_startup_before_serving_and_shutdown_on_stop(self) -> None:
        """Startup runs once for the config (two routes, one app), shutdown on SIGTERM; exit 0."""
        server = Server(self, SITE)
        server.wait_for(b"LIFESPAN startup")
        self.assertEqual(server.get("/hello")[0], 200)
        self.assertEqual(server.stop(), 0)
        self.assertEqual(server.output.count(b"LIFESPAN startup"), 1)
        self.assertEqual(server.output.count(b"LIFESPAN shutdown"), 1)
        self.assertLess(server.output.index(b"LIFESPAN startup"), server.output.index(b"LIFESPAN shutdown"))

    def test_reload_starts_the_new_config_and_shuts_the_old_down(self) -> None:
        """A reload (SIGUSR1) runs the new config's startup, then the old config's shutdown."""
        server = Server(self, "\tasgi _asgiapp:app")
        server.wait_for(b"LIFESPAN startup")
        server.write_site("\tasgi _asgiapp:app {\n\t\troot_path /mount\n\t}")
        server.process.send_signal(signal.SIGUSR1)
        server.wait_for(b"LIFESPAN shutdown")
        self.assertEqual(server.output.count(b"LIFESPAN startup"), 2)
        self.assertLess(server.output.rindex(b"LIFESPAN startup"), server.output.index(b"LIFESPAN shutdown"))
        status, _, body = server.get("/hello")
        self.assertEqual((status, json.loads(body)["root_path"]), (200, "/mount"))

    def test_stop_closes_websockets_with_1001(self) -> None:
        """Stopping the server sends open WebSockets a 1001 close; the app sees it and the server exits 0."""
        from wsproto.events import AcceptConnection, CloseConnection

        server = Server(self, "\tasgi _asgiapp:app")
        client = _WebSocketClient(server.port, "/ws")
        self.addCleanup(client.close)
        self.assertIsInstance(client.next_event(), AcceptConnection)
        server.process.send_signal(signal.SIGTERM)
        closing = client.next_event()
        self.assertIsInstance(closing, CloseConnection)
        self.assertEqual(closing.code, 1001)
        client.send(closing.response())
        self.assertEqual(server.finish(), 0)
        # The connections drain first, then the app shuts down.
        self.assertLess(server.output.index(b"WS closed 1001"), server.output.index(b"LIFESPAN shutdown"))

    def test_startup_failure_stops_the_server(self) -> None:
        """A failing lifespan startup with lifespan on makes txcaddy run exit 1 with the error."""
        server = Server(self, "\tasgi _asgiapp:app {\n\t\tlifespan on\n\t}", env={"ASGI_FAIL_STARTUP": "1"},
                        wait=False)
        self.assertEqual(server.finish(), 1)
        self.assertIn(b"the database is not there", server.output)

    def test_auto_lifespan_tolerates_apps_without_it(self) -> None:
        """With the default lifespan (auto), an app that raises on the lifespan scope still serves."""
        server = Server(self, "\tasgi _asgiapp:no_lifespan")
        status, _, body = server.get("/")
        self.assertEqual((status, body), (200, b"bare app"))

    def test_import_error_is_a_config_error(self) -> None:
        """An app module that cannot be imported stops txcaddy run with an error naming it."""
        server = Server(self, "\tasgi no_such_module_here:app", wait=False)
        self.assertEqual(server.finish(), 1)
        self.assertIn(b"Error: ", server.output)
        self.assertIn(b"no_such_module_here", server.output)

    def test_validate_loads_the_app(self) -> None:
        """txcaddy validate accepts a config with an asgi handler (on the asyncio reactor) and
        reports an app that cannot be imported."""
        good = Server(self, "\tasgi _asgiapp:app", argv=["-m", "txcaddy.cli", "validate", "--config", "Caddyfile"],
                      wait=False)
        self.assertEqual(good.finish(), 0, good.output)
        self.assertIn(b"Valid configuration", good.output)
        self.assertNotIn(b"LIFESPAN startup", good.output)  # validating starts nothing
        bad = Server(self, "\tasgi _asgiapp:nothing", argv=["-m", "txcaddy.cli", "validate", "--config", "Caddyfile"],
                     wait=False)
        self.assertEqual(bad.finish(), 1)
        self.assertIn(b"module '_asgiapp' has no attribute 'nothing'", bad.output)

    def test_twistd_installs_the_asyncio_reactor(self) -> None:
        """twistd caddy with an asgi handler runs on the asyncio reactor without being told."""
        server = Server(self, "\tasgi _asgiapp:app",
                        argv=["-c", TWISTD, "-n", "--pidfile=", "caddy", "-c", "Caddyfile"])
        status, _, body = server.get("/hello")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["greeting"], "hello")

    def test_twistd_with_another_reactor_is_refused(self) -> None:
        """twistd --reactor=poll with an asgi handler fails with a message naming --reactor=asyncio."""
        server = Server(self, "\tasgi _asgiapp:app",
                        argv=["-c", TWISTD, "--reactor=poll", "-n", "--pidfile=", "caddy", "-c", "Caddyfile"],
                        wait=False)
        self.assertEqual(server.finish(), 1)
        self.assertIn(b"--reactor=asyncio", server.output)


class ASGILoadTests(SynchronousTestCase):
    """Loading the handler in this process (no asyncio loop needed)."""

    def test_needs_the_asyncio_reactor(self) -> None:
        """Loading under another reactor is a ConfigError that says how to run it."""
        with self.assertRaises(ConfigError) as caught:
            load_asgi({"app": "_asgiapp:app"}, LoadContext(reactor=Clock()))
        self.assertIn("asyncio reactor", str(caught.exception))
        self.assertIn("--reactor=asyncio", str(caught.exception))

    def test_uses_asgi_finds_nested_handlers(self) -> None:
        """An asgi handler anywhere (in a subroute, from the Caddyfile adapter) is found; others are not."""
        from txcaddy._reactor import uses_asgi
        from txcaddy.caddyfile.adapter import adapt

        nested, _ = adapt(":80 {\n\thandle /a/* {\n\t\tasgi m:app\n\t}\n}\n", "Caddyfile")
        self.assertTrue(uses_asgi(nested))
        self.assertTrue(uses_asgi({"apps": {"http": {"servers": {"s": {"routes": [
            {"handle": [{"handler": "subroute", "routes": [{"handle": [{"handler": "asgi", "app": "m:a"}]}]}]}]}}}}}))
        plain, _ = adapt(":80 {\n\trespond asgi\n}\n", "Caddyfile")
        self.assertFalse(uses_asgi(plain))

    def test_another_installed_reactor_is_a_config_error(self) -> None:
        """With a reactor other than asyncio's already installed, a config with asgi is refused."""
        from twisted.internet import reactor

        from txcaddy._reactor import install_asyncio_reactor, is_asyncio_reactor

        config = {"apps": {"http": {"servers": {"s": {"routes": [{"handle": [{"handler": "asgi", "app": "m:a"}]}]}}}}}
        install_asyncio_reactor({"apps": {}}, "twistd")  # no asgi: nothing to do, on any reactor
        if is_asyncio_reactor(reactor):
            install_asyncio_reactor(config, "twistd")  # already the right one (trial --reactor=asyncio)
            return
        with self.assertRaises(ConfigError) as caught:
            install_asyncio_reactor(config, "twistd")
        self.assertIn("--reactor=asyncio", str(caught.exception))
        self.assertIn(type(reactor).__name__, str(caught.exception))

    def test_import_error_names_the_module(self) -> None:
        """An app that cannot be imported is a ConfigError naming its module."""
        with self.assertRaises(ConfigError) as caught:
            import_app("no_such_module_here.sub:app")
        self.assertIn("'no_such_module_here.sub'", str(caught.exception))

    def test_missing_attribute_names_it(self) -> None:
        """A module without the app's attribute is a ConfigError naming both."""
        with self.assertRaises(ConfigError) as caught:
            import_app("json:no_app_here")
        self.assertIn("'json'", str(caught.exception))
        self.assertIn("no_app_here", str(caught.exception))

    def test_app_must_name_an_attribute(self) -> None:
        """An app without ':attribute' is refused."""
        self.assertRaises(ConfigError, import_app, "json")

    def test_bad_lifespan_is_refused(self) -> None:
        """lifespan takes auto, on or off only."""
        with self.assertRaises(ConfigError) as caught:
            load_asgi({"app": "json:loads", "lifespan": "maybe"}, LoadContext(reactor=Clock()))
        self.assertIn("lifespan", str(caught.exception))


class _Producer:
    """Records what the handler asks of the client connection's reading."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        self.calls.append("pause")

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        self.calls.append("resume")


class ASGIFlowTests(SynchronousTestCase):
    """The handler's receive and send on a bare asyncio loop (no reactor): flow control and ends."""

    def setUp(self) -> None:
        import asyncio

        from txcaddy.http.handlers.asgi import ASGIHandler, Lifespan

        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)
        self.Handler = ASGIHandler
        self.Lifespan = Lifespan

    def spin(self) -> None:
        """Run the loop until nothing is ready (the app waits on something)."""
        import asyncio

        for _ in range(20):
            self.loop.run_until_complete(asyncio.sleep(0))

    def serve(self, app: Any, request: Any, response: Any) -> Any:
        lifespan = self.Lifespan(app, self.loop, "off", "test:app")
        lifespan.startService()
        handler = self.Handler(app, "test:app", self.loop, Clock(), lifespan)
        return handler.serve(request, response, None)

    def streaming_request(self, producer: _Producer) -> Any:
        from txcaddy.http.headers import Headers
        from txcaddy.http.request import Request, RequestBody

        body = RequestBody(None, producer=producer)
        request = Request("POST", "/up", Headers([("Host", "x")]), body=body)
        return request, body

    def test_request_body_pauses_the_client_while_the_app_does_not_read(self) -> None:
        """Past 64 KiB queued, reading from the client pauses; the app's reads resume it, in order."""
        import asyncio

        from txcaddy.testing import FakeResponse

        gate = asyncio.Event()
        got: list[bytes] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            got.append((await receive())["body"])
            await gate.wait()
            while True:
                message = await receive()
                got.append(message["body"])
                if not message["more_body"]:
                    break
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"%d" % sum(map(len, got))})

        producer = _Producer()
        request, body = self.streaming_request(producer)
        response = FakeResponse()
        done = self.serve(app, request, response)
        body.feed(b"a" * 1000)
        self.spin()
        for _ in range(100):
            body.feed(b"b" * 1000)
        self.assertEqual(producer.calls, ["pause"])
        gate.set()
        self.spin()
        self.assertEqual(producer.calls, ["pause", "resume"])
        body.feed(b"c" * 10)
        body.finish()
        self.spin()
        self.assertTrue(done.called)
        self.assertEqual(b"".join(got), b"a" * 1000 + b"b" * 100000 + b"c" * 10)
        self.assertEqual(response.body, b"101010")

    def test_send_waits_while_the_client_is_paused(self) -> None:
        """A paused response holds the app's send until the client resumes it."""
        from txcaddy.testing import FakeResponse, make_request

        sent: list[int] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
            for i in range(3):
                await send({"type": "http.response.body", "body": b"%d" % i, "more_body": True})
                sent.append(i)
            await send({"type": "http.response.body", "body": b"end"})

        response = FakeResponse()
        done = self.serve(app, make_request(), response)
        self.spin()
        self.assertEqual(sent, [0, 1, 2])
        # Now the same with the client paused after the first chunk.
        sent.clear()
        response = FakeResponse()
        original_write = response._send_body

        def write_and_pause(data: bytes) -> None:
            original_write(data)
            if data == b"0":
                response.producer.pauseProducing()

        response._send_body = write_and_pause  # type: ignore[method-assign]
        done = self.serve(app, make_request(), response)
        self.spin()
        self.assertEqual((sent, response.body, done.called), ([], b"0", False))
        response.producer.resumeProducing()
        self.spin()
        self.assertEqual((sent, response.body, response.finished), ([0, 1, 2], b"012end", True))
        self.assertEqual(response.headers.get("X-A"), "1")
        self.assertTrue(done.called)

    def test_receive_after_the_body_waits_for_the_end(self) -> None:
        """After the last body message, receive waits; once the response is complete it is http.disconnect."""
        import asyncio

        from txcaddy.testing import FakeResponse, make_request

        seen: list[tuple[str, bytes, bool]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            message = await receive()
            seen.append((message["type"], message["body"], message["more_body"]))
            waiting = asyncio.ensure_future(receive())
            await asyncio.sleep(0)
            seen.append(("waiting", b"", waiting.done()))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            seen.append(((await waiting)["type"], b"", False))

        done = self.serve(app, make_request("POST", "/", body=b"data"), FakeResponse())
        self.spin()
        self.assertEqual(seen, [("http.request", b"data", False), ("waiting", b"", False),
                                ("http.disconnect", b"", False)])
        self.assertTrue(done.called)

    def test_client_gone_is_http_disconnect(self) -> None:
        """When the client goes away, the app's pending receive returns http.disconnect."""
        from txcaddy.testing import FakeResponse, make_request

        seen: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            while True:
                message = await receive()
                seen.append(message["type"])
                if message["type"] == "http.disconnect":
                    return

        response = FakeResponse()
        done = self.serve(app, make_request(), response)
        self.spin()
        self.assertEqual(seen, ["http.request"])
        response.connection_lost(ConnectionResetError())
        self.spin()
        self.assertEqual(seen, ["http.request", "http.disconnect"])
        self.assertTrue(done.called)

    def test_error_mid_stream_aborts_the_connection(self) -> None:
        """An app that raises after its response started gets the connection aborted, no 500."""
        from txcaddy.testing import FakeResponse, make_request

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise RuntimeError("mid-stream")

        response = FakeResponse()
        done = self.serve(app, make_request(), response)
        self.spin()
        self.assertTrue(done.called)
        self.assertEqual((response.status, response.body, response.aborted), (200, b"part", True))
        self.flushLoggedErrors(RuntimeError)

    def test_send_after_the_response_completed_raises(self) -> None:
        """A body sent after the response completed raises in the app (nothing is written)."""
        from txcaddy.testing import FakeResponse, make_request

        raised: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"done"})
            try:
                await send({"type": "http.response.body", "body": b"more"})
            except RuntimeError as e:
                raised.append(str(e))

        response = FakeResponse()
        done = self.serve(app, make_request(), response)
        self.spin()
        self.assertTrue(done.called)
        self.assertEqual((response.body, response.ended), (b"done", True))
        self.assertEqual(len(raised), 1)
        self.assertIn("completed", raised[0])

    def test_invalid_start_message_is_a_clean_500(self) -> None:
        """A start message with a bad header raises at once, and the 500 carries none of its fields."""
        from txcaddy.http.errors import HandlerError
        from txcaddy.testing import FakeResponse, make_request

        raised: list[BaseException] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            try:
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"x-ok", b"1"), ("x-str", "not bytes")]})
            except TypeError as e:
                raised.append(e)
                raise

        response = FakeResponse()
        done = self.serve(app, make_request(), response)
        self.spin()
        self.assertEqual(self.failureResultOf(done, HandlerError).value.status, 500)
        self.assertEqual(len(raised), 1)
        self.assertIsNone(response.headers.get("X-Ok"))
        self.flushLoggedErrors(TypeError)

    def test_non_numeric_status_raises_at_start(self) -> None:
        """A status that is no integer raises from the start message itself."""
        from txcaddy.testing import FakeResponse, make_request

        raised: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            try:
                await send({"type": "http.response.start", "status": "abc", "headers": []})
            except (TypeError, ValueError) as e:
                raised.append(type(e).__name__)
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        response = FakeResponse()
        done = self.serve(app, make_request(), response)
        self.spin()
        self.assertTrue(done.called)
        self.assertEqual((raised, response.status), (["TypeError"], 204))

    def test_no_response_is_a_500_handler_error(self) -> None:
        """An app that returns without answering is a HandlerError 500 (handle_errors applies)."""
        from txcaddy.http.errors import HandlerError
        from txcaddy.testing import FakeResponse, make_request

        async def app(scope: Any, receive: Any, send: Any) -> None:
            return None

        response = FakeResponse()
        done = self.serve(app, make_request(), response)
        self.spin()
        failure = self.failureResultOf(done, HandlerError)
        self.assertEqual(failure.value.status, 500)
        self.assertFalse(response.head_sent)

    def test_requests_wait_for_lifespan_startup(self) -> None:
        """Requests that arrive during startup are served once it completes, each its own answer."""
        import asyncio

        from txcaddy.testing import FakeResponse, make_request

        started = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await receive()
                await started.wait()
                scope["state"]["n"] = 7
                await send({"type": "lifespan.startup.complete"})
                await receive()
                await send({"type": "lifespan.shutdown.complete"})
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": scope["path"].encode() + b"%d" % scope["state"]["n"]})

        lifespan = self.Lifespan(app, self.loop, "on", "test:app")
        handler = self.Handler(app, "test:app", self.loop, Clock(), lifespan)
        lifespan.startService()
        self.spin()
        responses = [FakeResponse(), FakeResponse()]
        done = [handler.serve(make_request("GET", f"/{i}"), responses[i], None) for i in range(2)]
        self.spin()
        self.assertEqual([r.head_sent for r in responses], [False, False])
        started.set()
        self.spin()
        self.assertEqual([r.body for r in responses], [b"/07", b"/17"])
        self.assertTrue(all(d.called for d in done))
        shutdown = lifespan.shutdown()
        self.spin()
        self.assertTrue(shutdown.called)

    def test_failed_startup_answers_503(self) -> None:
        """After lifespan.startup.failed, requests get a 503 HandlerError, and on_failure is told."""
        from txcaddy.http.errors import HandlerError
        from txcaddy.testing import FakeResponse, make_request

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})

        errors: list[BaseException] = []
        lifespan = self.Lifespan(app, self.loop, "auto", "test:app")
        lifespan.on_failure = errors.append
        handler = self.Handler(app, "test:app", self.loop, Clock(), lifespan)
        lifespan.startService()
        waiting = handler.serve(make_request(), FakeResponse(), None)
        self.spin()
        self.assertEqual(self.failureResultOf(waiting, HandlerError).value.status, 503)
        later = handler.serve(make_request(), FakeResponse(), None)
        self.assertEqual(self.failureResultOf(later, HandlerError).value.status, 503)
        self.assertEqual([str(e) for e in errors], ["ASGI lifespan startup of test:app failed: no database"])

    def test_websocket_reading_pauses_while_the_app_does_not_receive(self) -> None:
        """Past 64 KiB of messages waiting for the app, the connection stops reading; receiving resumes it."""
        import asyncio

        from wsproto.connection import Connection, ConnectionType
        from wsproto.events import BytesMessage, CloseConnection

        from txcaddy.testing import FakeResponse, make_request

        gate = asyncio.Event()
        got: list[int] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await gate.wait()
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                got.append(len(message["bytes"]))

        request = make_request("GET", "/ws", {"Connection": "Upgrade", "Upgrade": "websocket",
                                              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                              "Sec-WebSocket-Version": "13"})
        response = FakeResponse()
        self.serve(app, request, response)
        self.spin()
        self.assertEqual(response.status, 101)
        self.assertEqual(response.headers.get("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        transport = response.switched_transport
        assert transport is not None
        client = Connection(ConnectionType.CLIENT)  # frames as a client sends them, after the handshake
        frames = b"".join(client.send(BytesMessage(data=b"m" * 1000)) for _ in range(100))
        response.switched_to.dataReceived(frames)
        self.assertEqual(transport.producerState, "paused")
        gate.set()
        self.spin()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(got, [1000] * 100)
        response.switched_to.dataReceived(client.send(CloseConnection(code=1000)))
        self.spin()
        self.assertTrue(transport.disconnecting)

    def test_websocket_client_gone_before_accept_is_a_disconnect(self) -> None:
        """A client that leaves before the app accepted gives the app websocket.disconnect
        (1006) instead of a receive that never returns."""
        from txcaddy.testing import FakeResponse, make_request

        seen: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            seen.append((await receive())["type"])
            message = await receive()
            seen.append((message["type"], message.get("code")))

        request = make_request("GET", "/ws", {"Connection": "Upgrade", "Upgrade": "websocket",
                                              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                              "Sec-WebSocket-Version": "13"})
        response = FakeResponse()
        done = self.serve(app, request, response)
        self.spin()
        self.assertEqual(seen, ["websocket.connect"])
        response.connection_lost(ConnectionResetError())
        self.spin()
        self.assertEqual(seen, ["websocket.connect", ("websocket.disconnect", 1006)])
        self.assertTrue(done.called)
