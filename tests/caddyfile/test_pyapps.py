"""The ``wsgi`` and ``twisted_resource`` directives (txcaddy's own) adapt to their handlers' JSON."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.adapter import adapt_to_json
from txcaddy.errors import ConfigError


def routes(caddyfile: str) -> list[dict[str, Any]]:
    text, _ = adapt_to_json(caddyfile, "Caddyfile")
    result: list[dict[str, Any]] = json.loads(text)["apps"]["http"]["servers"]["srv0"]["routes"]
    return result


class WSGIDirectiveTests(SynchronousTestCase):
    def test_bare(self) -> None:
        """``wsgi module:app`` is a wsgi handler naming the app, no other field."""
        self.assertEqual(routes(":80 {\n\twsgi pkg.mod:app\n}\n"),
                         [{"handle": [{"handler": "wsgi", "app": "pkg.mod:app"}]}])

    def test_options_and_matcher(self) -> None:
        """threads, queue and root_path go to the JSON; a path matcher becomes the route's match."""
        self.assertEqual(
            routes(":80 {\n\twsgi /api/* mod:make_app() {\n\t\tthreads 4\n\t\tqueue 8\n"
                   "\t\troot_path /api\n\t}\n}\n"),
            [{"match": [{"path": ["/api/*"]}],
              "handle": [{"handler": "wsgi", "app": "mod:make_app()", "threads": 4, "queue": 8,
                          "root_path": "/api"}]}])

    def test_inside_handle_path(self) -> None:
        """Under handle_path the wsgi handler follows the prefix-stripping rewrite."""
        (route,) = routes(":80 {\n\thandle_path /app/* {\n\t\twsgi mod:app\n\t}\n}\n")
        subroutes = route["handle"][0]["routes"]
        self.assertEqual(subroutes[0]["handle"], [{"handler": "rewrite", "strip_path_prefix": "/app"}])
        self.assertEqual(subroutes[1]["handle"], [{"handler": "wsgi", "app": "mod:app"}])

    def test_ordered_before_file_server(self) -> None:
        """wsgi sorts before file_server whatever the order written."""
        handled = [r["handle"][0]["handler"] for r in routes(":80 {\n\tfile_server\n\twsgi /x mod:app\n}\n")]
        self.assertEqual(handled, ["wsgi", "file_server"])

    def test_errors(self) -> None:
        """A missing app, extra arguments, bad numbers and unknown options are refused."""
        for text in ("wsgi", "wsgi a:b c:d", "wsgi a:b {\n\t\tthreads 0\n\t}",
                     "wsgi a:b {\n\t\tthreads x\n\t}", "wsgi a:b {\n\t\tqueue -1\n\t}",
                     "wsgi a:b {\n\t\troot_path app\n\t}", "wsgi a:b {\n\t\tworkers 2\n\t}"):
            with self.subTest(text=text):
                self.assertRaises(ConfigError, adapt_to_json, ":80 {\n\t" + text + "\n}\n", "Caddyfile")


class TwistedResourceDirectiveTests(SynchronousTestCase):
    def test_resource(self) -> None:
        """``twisted_resource [<matcher>] module:factory`` is a twisted_resource handler."""
        self.assertEqual(
            routes(":80 {\n\ttwisted_resource /t/* mod:root\n}\n"),
            [{"match": [{"path": ["/t/*"]}], "handle": [{"handler": "twisted_resource", "resource": "mod:root"}]}])

    def test_errors(self) -> None:
        """No resource, two of them, or a block are refused."""
        for text in ("twisted_resource", "twisted_resource a:b c:d", "twisted_resource a:b {\n\t\tx 1\n\t}"):
            with self.subTest(text=text):
                self.assertRaises(ConfigError, adapt_to_json, ":80 {\n\t" + text + "\n}\n", "Caddyfile")
