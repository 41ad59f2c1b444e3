"""Graceful reload over real loopback sockets: kept listeners, connections across a reload,
requests in flight, upstream state, reload under load, SIGUSR1 and ``txcaddy reload``."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import treq
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from tests.integration.test_h3 import H3, HTTP3Tests
from tests.integration.test_https import HTTPSTestCase
from tests.integration.test_twistd import CHECKOUT, free_port, http_get, wait_for_output
from txcaddy._reactor import default_reactor
from txcaddy.reverseproxy.hosts import HostRegistry
from txcaddy.service import CaddyService


def config(body: str, port: int = 0, routes: list[Any] | None = None, **server: Any) -> dict[str, Any]:
    return {"apps": {"http": {"servers": {"srv0": {
        "listen": [f"127.0.0.1:{port}"],
        "routes": routes if routes is not None else [{"handle": [{"handler": "static_response", "body": body}]}],
        **server}}}}}


def _recv_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body, read from a keep-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


class _HeldBackend(Protocol):
    """An upstream that answers only when the test says so."""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.factory.held.append(self)  # type: ignore[attr-defined]
        self.factory.arrived.callback(None)  # type: ignore[attr-defined]

    def answer(self, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


class ReloadTests(TestCase):
    timeout = 60

    def start(self, cfg: dict[str, Any]) -> CaddyService:
        service = CaddyService(cfg, reactor=default_reactor())
        service.startService()
        self.addCleanup(service.stopService)
        self.service = service
        return service

    def port(self) -> int:
        (address,) = self.service.boundAddresses()["srv0"]
        return int(address.port)

    @inlineCallbacks
    def get(self, pool: Any = None) -> Any:
        response = yield treq.get(f"http://127.0.0.1:{self.port()}/", pool=pool, persistent=pool is not None)
        body = yield response.content()
        return body

    @inlineCallbacks
    def test_listener_is_kept_and_idle_connections_see_the_new_routes(self) -> Any:
        """After a reload the port is the same socket; a keep-alive connection opened before
        serves its next request with the new routes, as does a new connection."""
        self.start(config("one"))
        port = self.port()
        listener = self.service._listeners[next(iter(self.service._listeners))].port
        sock = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(sock.close)
        sock.setblocking(True)
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        sock.sendall(request)
        reply = yield _threaded(_recv_response, sock)
        self.assertTrue(reply.endswith(b"one"), reply)
        yield self.service.reload(config("two", port))
        self.assertIs(self.service._listeners[next(iter(self.service._listeners))].port, listener)
        self.assertEqual(self.port(), port)
        sock.sendall(request)
        reply = yield _threaded(_recv_response, sock)
        self.assertTrue(reply.endswith(b"two"), reply)
        self.assertEqual((yield self.get()), b"two")

    @inlineCallbacks
    def test_request_in_flight_finishes_under_the_old_config(self) -> Any:
        """A proxied request in flight during a reload completes (then its connection closes)."""
        reactor: Any = default_reactor()
        backend: Any = Factory.forProtocol(_HeldBackend)
        backend.held = []
        backend.arrived = Deferred()
        upstream = reactor.listenTCP(0, backend, interface="127.0.0.1")
        self.addCleanup(upstream.stopListening)
        dial = f"127.0.0.1:{upstream.getHost().port}"
        proxy = [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}]}]
        self.start(config("", routes=proxy))
        response_d = treq.get(f"http://127.0.0.1:{self.port()}/", persistent=False)
        yield backend.arrived
        yield self.service.reload(config("new", self.port()))
        backend.held[0].answer(b"old")
        response = yield response_d
        self.assertEqual((response.code, (yield response.content())), (200, b"old"))
        self.assertEqual((yield self.get()), b"new")

    @inlineCallbacks
    def test_upstream_state_is_carried_over(self) -> Any:
        """The upstream's host state (passive fails, health) survives a reload that keeps it."""
        proxy = [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:9"}]}]}]
        self.start(config("", routes=proxy))
        host = self.service.runtime.get(HostRegistry).get("127.0.0.1:9")
        assert host is not None
        host.fails, host.unhealthy = 2, True
        yield self.service.reload(config("", self.port(), routes=proxy, idle_timeout=60_000_000_000))
        self.assertIs(self.service.runtime.get(HostRegistry).get("127.0.0.1:9"), host)
        self.assertEqual((host.fails, host.unhealthy), (2, True))
        yield self.service.reload(config("gone", self.port()))
        self.assertIsNone(self.service.runtime.get(HostRegistry).get("127.0.0.1:9"))

    @inlineCallbacks
    def test_transport_is_carried_over_while_unchanged(self) -> Any:
        """A reverse_proxy whose transport JSON is unchanged keeps its transport (and pool);
        a changed transport gets a new one and the old one is closed with the old config."""
        def proxy(transport: dict[str, Any]) -> list[Any]:
            return [{"handle": [{"handler": "reverse_proxy", "transport": transport,
                                 "upstreams": [{"dial": "127.0.0.1:9"}]}]}]

        def handler() -> Any:
            assert self.service.http is not None
            return self.service.http.servers["srv0"].routes.routes[0].handlers[0]

        self.start(config("", routes=proxy({"protocol": "http"})))
        first = handler().transport
        yield self.service.reload(config("", self.port(), routes=proxy({"protocol": "http"}), idle_timeout=1))
        self.assertIs(handler().transport, first)
        yield self.service.reload(config("", self.port(), routes=proxy({"protocol": "http", "dial_timeout": 1})))
        self.assertIsNot(handler().transport, first)

    @inlineCallbacks
    def test_new_listeners_open_and_removed_ones_close(self) -> Any:
        """A reload binds the listeners the new config adds and closes the ones it drops."""
        self.start(config("one"))
        port = self.port()
        extra = free_port()
        cfg = config("two", port)
        cfg["apps"]["http"]["servers"]["srv1"] = {
            "listen": [f"127.0.0.1:{extra}"], "routes": [{"handle": [{"handler": "static_response", "body": "x"}]}]}
        yield self.service.reload(cfg)
        response = yield treq.get(f"http://127.0.0.1:{extra}/", persistent=False)
        self.assertEqual((yield response.content()), b"x")
        yield self.service.reload(config("three", port))
        yield self.service.whenRetired()
        self.assertEqual(sorted(self.service.boundAddresses()), ["srv0"])
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", extra)).close()

    @inlineCallbacks
    def test_failed_reload_changes_nothing(self) -> Any:
        """A config that fails to load fails the reload; the old config serves and the hook says False."""
        self.start(config("one"))
        outcomes: list[bool] = []
        self.service.on_reload.append(outcomes.append)
        bad = config("x", self.port())
        bad["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"][0]["handler"] = "nope"
        yield self.assertFailure(self.service.reload(bad), Exception)
        self.assertEqual((yield self.get()), b"one")
        yield self.service.reload(config("two", self.port()))
        self.assertEqual(outcomes, [False, True])

    @inlineCallbacks
    def test_reload_under_load(self) -> Any:
        """10,000 keep-alive requests (8 at a time) and 50 WebSockets while reloading 20 times:
        every request answers 200 and every WebSocket keeps echoing (the issue's full check)."""
        from tests.integration.test_websocket import WebSocketUpstream, connect_client

        upstream = WebSocketUpstream()
        self.addCleanup(upstream.stop)

        def config_n(body: str, port: int = 0) -> dict[str, Any]:
            return _with_grace(config(body, port, routes=[
                {"match": [{"path": ["/ws"]}], "handle": [
                    {"handler": "reverse_proxy", "upstreams": [{"dial": upstream.address}]}]},
                {"handle": [{"handler": "static_response", "body": body}]},
            ]))

        self.start(config_n("v0"))
        port = self.port()
        sockets = [connect_client(f"http://127.0.0.1:{port}") for _ in range(50)]
        clients = yield DeferredList([f.opened for f in sockets], fireOnOneErrback=True, consumeErrors=True)
        clients = [c for _, c in clients]
        self.addCleanup(lambda: [c.transport.loseConnection() for c in clients])

        @inlineCallbacks
        def echo_all(n: int) -> Any:
            for client in clients:
                client.sendMessage(f"m{n}".encode(), isBinary=False)
            for factory in sockets:
                payload, _ = yield factory.messages.get()
                self.assertEqual(payload, f"m{n}".encode())

        pool = HTTPConnectionPool(default_reactor(), persistent=True)
        pool.maxPersistentPerHost = 8
        self.addCleanup(pool.closeCachedConnections)
        total, reloads = 10000, 20
        done = [0]
        failures: list[Any] = []
        bodies: set[bytes] = set()

        @inlineCallbacks
        def client() -> Any:
            while done[0] < total:
                done[0] += 1
                if done[0] % (total // reloads) == 0:
                    n = done[0] // (total // reloads)
                    yield self.service.reload(config_n(f"v{n}", port))
                    yield echo_all(n)
                try:
                    response = yield treq.get(f"http://127.0.0.1:{port}/", pool=pool)
                    body = yield response.content()
                    if response.code != 200:
                        failures.append(response.code)
                    bodies.add(body)
                except Exception as e:  # noqa: BLE001 - counted
                    failures.append(e)

        yield DeferredList([client() for _ in range(8)])
        self.assertEqual(failures, [])
        self.assertEqual(len(bodies), reloads + 1)
        yield echo_all(reloads + 1)
        self.assertFalse(any(f.closed.called for f in sockets))


class ProcessReloadTests(SynchronousTestCase):
    """``txcaddy run`` as a child process: SIGUSR1 reloads its file; ``txcaddy reload`` posts one."""

    def test_sigusr1_and_txcaddy_reload(self) -> None:
        """SIGUSR1 reloads the changed Caddyfile on the same port; txcaddy reload posts another;
        both keep the process serving; autosave.json holds the last config; POST /stop exits 0."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        port, admin = free_port(), free_port()

        def write(answer: str, name: str = "Caddyfile") -> str:
            path = os.path.join(workdir, name)
            with open(path, "w") as f:
                f.write(f"{{\n\tadmin 127.0.0.1:{admin}\n}}\n\n"
                        f"http://127.0.0.1:{port} {{\n\tbind 127.0.0.1\n\trespond \"{answer}\"\n}}\n")
            return path

        write("one")
        env = dict(os.environ, PYTHONPATH=CHECKOUT, XDG_CONFIG_HOME=os.path.join(workdir, "config"))
        process = subprocess.Popen(
            [sys.executable, "-m", "txcaddy.cli", "run", "--config", "Caddyfile"],
            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_for_output(process, b"listening on [", 30)
            self.assertTrue(http_get(port, "/").endswith(b"one"))
            write("two")
            process.send_signal(signal.SIGUSR1)
            wait_for_output(process, b"reloaded Caddyfile", 30)
            self.assertTrue(http_get(port, "/").endswith(b"two"))
            other = write("three", "Other")
            result = subprocess.run(
                [sys.executable, "-m", "txcaddy.cli", "reload", "--config", other, "--adapter", "caddyfile"],
                cwd=workdir, env=env, capture_output=True, timeout=30)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertTrue(http_get(port, "/").endswith(b"three"))
            with open(os.path.join(workdir, "config", "caddy", "autosave.json")) as f:
                saved = json.load(f)
            self.assertIn("three", json.dumps(saved))
            from txcaddy.cli import admin_request

            status, _ = admin_request(f"127.0.0.1:{admin}", "POST", "/stop", b"", {})
            self.assertEqual(status, 200)
            process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.assertEqual(process.returncode, 0)


def _with_grace(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with a one-minute grace period (WebSockets of old configs outlive the test)."""
    cfg["apps"]["http"]["grace_period"] = "1m"
    return cfg


def _threaded(f: Any, *args: Any) -> Deferred[Any]:
    from twisted.internet.threads import deferToThread

    return deferToThread(f, *args)


class HTTPSReloadTests(HTTPSTestCase):
    """A reload of an HTTPS site with HTTP/3: TCP and UDP listeners kept, certificates at once."""

    @inlineCallbacks
    def test_https_and_h3_across_a_reload(self) -> Any:
        """After a reload the same TCP and UDP sockets serve the new routes over HTTP/1.1 and
        HTTP/3, with the managed certificate available for the first handshake."""
        from txcaddy.caddyfile.adapter import adapt

        service = yield self.start('localhost {\n\trespond "one {http.request.proto}"\n}\n', extra=H3)
        udp = [child for child in service if getattr(child, "listener", None) is not None]
        response, body = yield self.get(f"https://localhost:{self.https_port}/", trust=self.root())
        self.assertEqual(body, b"one HTTP/1.1")
        new, _ = adapt(self.globals(H3, True) + 'localhost {\n\trespond "two {http.request.proto}"\n}\n', "Caddyfile")
        yield service.reload(new)
        response, body = yield self.get(f"https://localhost:{self.https_port}/", trust=self.root())
        self.assertEqual(body, b"two HTTP/1.1")
        got = yield HTTP3Tests.exchange(self, b"GET")  # type: ignore[arg-type]
        self.assertEqual((got.status, got.body), (200, b"two HTTP/3.0"))
        self.assertEqual([child for child in service if getattr(child, "listener", None) is not None], udp)
        self.assertEqual(response.headers.getRawHeaders("alt-svc"), [f'h3=":{self.https_port}"; ma=2592000'])
