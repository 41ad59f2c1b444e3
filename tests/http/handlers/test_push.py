"""``push``: loads as Caddy's does, says once that nothing is pushed, passes requests through."""

from __future__ import annotations

from typing import Any

from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from txcaddy.caddyfile.adapter import adapt
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.handlers import push
from txcaddy.interfaces import IHandler
from txcaddy.service import plain_json
from txcaddy.testing import FakeResponse, make_request, serve

CADDYFILE = """\
:8080 {
	push /index.html {
		GET /style.css
		HEAD /app.js
		headers {
			X-Pushed yes
		}
	}
	respond "page"
}
"""

#: The push handler caddy adapt 2.6.2 writes for CADDYFILE (``/index.html`` is its path matcher).
CADDY_PUSH = {
    "handler": "push",
    "resources": [{"method": "GET", "target": "/style.css"}, {"method": "HEAD", "target": "/app.js"}],
    "headers": {"set": {"X-Pushed": ["yes"]}},
}


class PushTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.patch(push, "_warned", False)
        self.events: list[dict[str, Any]] = []
        self.context = LoadContext()
        self.context.log.observer = self.events.append  # type: ignore[assignment]

    def routes(self) -> Any:
        config = plain_json(adapt(CADDYFILE)[0])
        return self.context.load_routes(config["apps"]["http"]["servers"]["srv0"]["routes"])

    def test_adapter_matches_caddy(self) -> None:
        """The adapter writes the push handler caddy adapt 2.6.2 writes."""
        config = plain_json(adapt(CADDYFILE)[0])
        handlers = [h for route in config["apps"]["http"]["servers"]["srv0"]["routes"] for h in route["handle"]]
        self.assertIn(CADDY_PUSH, handlers)

    def test_response_passes_through(self) -> None:
        """The response is the next handler's, with no pushes and no Link fields added."""
        response = serve(self.routes(), make_request("GET", "/index.html"), FakeResponse())
        self.assertEqual(response.body, b"page")
        self.assertEqual(response.status, 200)
        self.assertNotIn("Link", response.headers)

    def test_resources_loaded(self) -> None:
        """Resources and header operations load as configured (GET when no method is given)."""
        handler = self.context.load_handler(CADDY_PUSH)
        self.assertTrue(verifyObject(IHandler, handler))
        self.assertEqual(handler.resources, [("GET", "/style.css"), ("HEAD", "/app.js")])
        bare = self.context.load_handler({"handler": "push", "resources": [{"target": "/a.css"}]})
        self.assertEqual(bare.resources, [("GET", "/a.css")])
        self.assertIsNotNone(handler.headers)

    def test_logged_once(self) -> None:
        """Loading push handlers warns once that server push is not done."""
        self.routes()
        self.context.load_handler(CADDY_PUSH)
        warnings = [e for e in self.events if e.get("log_format") == push.NO_PUSH_MESSAGE]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["log_level"], LogLevel.warn)

    def test_unknown_field_refused(self) -> None:
        """An unknown field is refused, as Caddy's strict JSON decoding does."""
        with self.assertRaises(ConfigError):
            self.context.load_handler({"handler": "push", "bogus": 1})
