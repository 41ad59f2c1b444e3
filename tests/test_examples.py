"""The bundled example configs (README's quick start, the Python-app example) load and serve."""

from __future__ import annotations

import os
import socket
from typing import Any

import treq
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor
from txcaddy.config.source import load_config
from txcaddy.service import CaddyService
from txcaddy.testing import make_request, serve

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "txcaddy", "examples", "Caddyfile")


class ExampleTests(SynchronousTestCase):
    def test_example_builds_and_answers(self) -> None:
        """The bundled example Caddyfile is formatted, binds 127.0.0.1:8080 and serves its API."""
        config, warnings = load_config(EXAMPLE)
        self.assertEqual(warnings, [])  # it is formatted as `txcaddy fmt` would
        service = CaddyService(config)
        self.assertEqual(service.listenAddresses(), {"srv0": ["127.0.0.1:8080"]})
        assert service.http is not None
        server = service.http.servers["srv0"]
        response = serve(server.routes, make_request("GET", "/api/users", host="localhost"))
        self.assertEqual(response.body, b'{"path": "/users", "method": "GET"}')
        self.assertEqual(response.headers.get("Content-Type"), "application/json")


APP_EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "txcaddy", "examples", "app", "Caddyfile")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class AppExampleTests(TestCase):
    """txcaddy/examples/app: a WSGI app, static files and a proxied twisted.web API."""

    timeout = 30

    def test_formatted_and_adapts(self) -> None:
        """The app example Caddyfile is formatted and has the two sites on 8080 and 8081."""
        config, warnings = load_config(APP_EXAMPLE)
        self.assertEqual(warnings, [])
        service = CaddyService(config)
        self.assertEqual(sorted(a for addresses in service.listenAddresses().values() for a in addresses),
                         ["127.0.0.1:8080", "127.0.0.1:8081"])

    @inlineCallbacks
    def test_each_part_answers(self) -> Any:
        """Run from the repository root, on free ports: the WSGI app, a static file and the proxied API answer."""
        root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
        cwd = os.getcwd()
        os.chdir(root)  # the example's static root is relative to the repository root, as documented
        self.addCleanup(os.chdir, cwd)
        web, api = _free_port(), _free_port()
        with open(APP_EXAMPLE) as f:
            text = f.read().replace("8080", str(web)).replace("8081", str(api))
        service = fromCaddyfile(text, reactor=default_reactor())
        service.startService()
        self.addCleanup(service.stopService)
        base = f"http://127.0.0.1:{web}"
        cases = [
            ("/", b"Hello from WSGI"),
            ("/hello/ann", b"Hello, ann!\n"),
            ("/count", b"".join(b"%d\n" % i for i in range(1, 11))),
            ("/static/style.css", b"font-family"),
            ("/api/users", b'[{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}]'),
        ]
        host: dict[bytes | str, bytes | str] = {"Host": f"localhost:{web}"}
        for path, expected in cases:
            response = yield treq.get(base + path, headers=host, persistent=False)
            body = yield response.content()
            self.assertEqual(response.code, 200, path)
            self.assertIn(expected, body, path)
        response = yield treq.post(base + "/upload", data=b"x" * 300000, headers=host, persistent=False)
        self.assertEqual((yield response.content()), b"received 300000 bytes\n")
