"""The bundled example config (README's quick start) loads and serves."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

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
