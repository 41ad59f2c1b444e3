"""The ``asgi`` directive (txcaddy's own): its JSON, its place in the order, its errors."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.adapter import adapt_to_json
from txcaddy.errors import ConfigError


def routes(caddyfile: str) -> list[dict]:
    text, _ = adapt_to_json(caddyfile, "Caddyfile")
    return list(json.loads(text)["apps"]["http"]["servers"]["srv0"]["routes"])


class ASGIDirectiveTests(SynchronousTestCase):
    def test_app_alone(self) -> None:
        """asgi module:app adapts to the handler with only its app."""
        self.assertEqual(routes(":80 {\n\tasgi myapp.main:app\n}\n"),
                         [{"handle": [{"handler": "asgi", "app": "myapp.main:app"}]}])

    def test_matcher_and_options(self) -> None:
        """A path matcher and the lifespan and root_path subdirectives reach the JSON."""
        self.assertEqual(
            routes(":80 {\n\tasgi /app/* pkg:application {\n\t\tlifespan off\n\t\troot_path /mount\n\t}\n}\n"),
            [{"match": [{"path": ["/app/*"]}],
              "handle": [{"handler": "asgi", "app": "pkg:application", "lifespan": "off",
                          "root_path": "/mount"}]}])

    def test_ordered_before_file_server(self) -> None:
        """asgi comes before file_server and after reverse_proxy in the directive order."""
        handle = routes(":80 {\n\tfile_server\n\tasgi a:app\n\treverse_proxy /p localhost:9\n}\n")
        names = [handler["handler"] for route in handle for handler in route["handle"]]
        self.assertEqual(names, ["reverse_proxy", "asgi", "file_server"])

    def test_errors(self) -> None:
        """Missing or malformed apps and bad subdirectives are Caddyfile errors."""
        cases = {
            "\tasgi\n": "Wrong argument count",
            "\tasgi noattribute\n": "module:attribute",
            "\tasgi a:app extra\n": "Wrong argument count",
            "\tasgi a:app {\n\t\tlifespan maybe\n\t}\n": "lifespan must be auto, on or off",
            "\tasgi a:app {\n\t\troot_path mount\n\t}\n": "root_path must start with '/'",
            "\tasgi a:app {\n\t\tworkers 4\n\t}\n": "unrecognized subdirective 'workers'",
            "\tasgi a:app {\n\t\tlifespan\n\t}\n": "Wrong argument count",
        }
        for body, message in cases.items():
            with self.assertRaises(ConfigError, msg=body) as caught:
                routes(":80 {\n" + body + "}\n")
            self.assertIn(message, str(caught.exception), body)
