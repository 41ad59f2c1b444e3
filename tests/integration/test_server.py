"""Real servers on 127.0.0.1, real HTTP clients: the seed examples' routing behaviour."""

from __future__ import annotations

import os
import socket
from typing import Any

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor


class ServerTestCase(TestCase):
    """Starts the Caddyfile from ``caddyfile()`` on a free loopback port."""

    timeout = 30

    def start(self, text: str) -> str:
        service = fromCaddyfile(text.replace("PORT", "0"), reactor=default_reactor())
        service.startService()
        self.addCleanup(service.stopService)
        (address,) = next(iter(service.boundAddresses().values()))
        return f"http://127.0.0.1:{address.port}"

    @inlineCallbacks
    def get(self, url: str, **kwargs: Any) -> Any:
        response = yield treq.get(url, persistent=False, **kwargs)
        body = yield response.content()
        return response, body


class RoutingTests(ServerTestCase):
    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.root, "static"))
        with open(os.path.join(self.root, "index.html"), "w") as f:
            f.write("<h1>home</h1>")
        with open(os.path.join(self.root, "static", "app.js"), "w") as f:
            f.write("console.log(1)")

    @inlineCallbacks
    def test_handle_path_strips_the_prefix(self) -> Any:
        """handle_path strips its prefix before its handlers; other paths fall through."""
        base = self.start(
            "http://127.0.0.1:PORT {\n\tbind 127.0.0.1\n"
            "\thandle_path /api/* {\n\t\trespond \"api saw {http.request.uri}\"\n\t}\n"
            f"\thandle {{\n\t\troot * {self.root}\n\t\tfile_server\n\t}}\n}}\n"
        )
        response, body = yield self.get(base + "/api/users?x=1")
        self.assertEqual((response.code, body), (200, b"api saw /users?x=1"))
        # /api without a slash is not under /api/*: it falls through to the files (404 here)
        response, body = yield self.get(base + "/api")
        self.assertEqual(response.code, 404)
        response, body = yield self.get(base + "/")
        self.assertEqual((response.code, body), (200, b"<h1>home</h1>"))

    @inlineCallbacks
    def test_named_matchers_and_case_sensitive_header(self) -> Any:
        """Named matchers pick the first matching handle; header wildcards are case-sensitive."""
        base = self.start(
            "http://127.0.0.1:PORT {\n\tbind 127.0.0.1\n"
            "\t@api path /api/*\n\t@ws header Connection *Upgrade*\n\t@static path /static/*\n"
            "\thandle @api {\n\t\trespond api\n\t}\n"
            "\thandle @ws {\n\t\trespond ws\n\t}\n"
            f"\thandle @static {{\n\t\troot * {self.root}\n\t\tfile_server\n\t}}\n"
            "\thandle {\n\t\trespond default\n\t}\n}\n"
        )
        cases = [
            ("/api/x", {}, b"api"),
            ("/other", {"Connection": "Upgrade"}, b"ws"),
            ("/other", {"Connection": "upgrade"}, b"default"),  # *Upgrade* is case-sensitive
            ("/static/app.js", {}, b"console.log(1)"),
            ("/api/x", {"Connection": "Upgrade"}, b"api"),  # first matching handle wins
        ]
        for path, headers, expected in cases:
            response, body = yield self.get(base + path, headers=headers)
            self.assertEqual(body, expected, (path, headers))

    @inlineCallbacks
    def test_unknown_host_gets_empty_200(self) -> Any:
        """A request whose Host matches no site gets an empty 200, as Caddy does."""
        base = self.start("http://localhost:PORT {\n\tbind 127.0.0.1\n\trespond hello\n}\n")
        response, body = yield self.get(base + "/", headers={"Host": "nobody.example"})
        self.assertEqual((response.code, body), (200, b""))
        response, body = yield self.get(base + "/", headers={"Host": "localhost"})
        self.assertEqual((response.code, body), (200, b"hello"))

    @inlineCallbacks
    def test_error_routes(self) -> Any:
        """handle_errors routes see the error's status code and message as placeholders."""
        base = self.start(
            "http://127.0.0.1:PORT {\n\tbind 127.0.0.1\n\terror /private* \"Unauthorized\" 403\n"
            "\thandle_errors {\n\t\trespond \"{http.error.status_code} {http.error.message}\"\n\t}\n}\n"
        )
        response, body = yield self.get(base + "/private/x")
        self.assertEqual(body, b"403 Unauthorized")


class RawSocketTests(ServerTestCase):
    """Malformed requests, over a real socket, never reach a handler."""

    @inlineCallbacks
    def test_bad_requests(self) -> Any:
        """A missing Host, an oversized header or obs-fold gets 400/431 and no handler runs."""
        from twisted.internet.threads import deferToThread

        base = self.start("http://127.0.0.1:PORT {\n\tbind 127.0.0.1\n\trespond \"reached\"\n}\n")
        port = int(base.rsplit(":", 1)[1])

        def exchange(raw: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(raw)
                chunks: list[bytes] = []
                while True:
                    data = s.recv(65536)
                    if not data:
                        return b"".join(chunks)
                    chunks.append(data)

        for raw, status in [
            (b"GET / HTTP/1.1\r\n\r\n", b"400"),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (1024 * 1024 + 10) + b"\r\n\r\n", b"431"),
            (b"GET / HTTP/1.1\r\nHost: x\r\n Folded: y\r\n\r\n", b"400"),
        ]:
            out = yield deferToThread(exchange, raw)
            self.assertTrue(out.startswith(b"HTTP/1.1 " + status), out[:100])
            self.assertNotIn(b"reached", out)
