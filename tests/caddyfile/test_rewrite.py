"""``rewrite``, ``uri`` and ``handle_path`` details not obvious from the fixtures."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.adapter import adapt_to_json
from txcaddy.caddyfile.directives.rewrite import rewrite_handler
from txcaddy.caddyfile.jsonenc import encode


def routes(caddyfile: str) -> list[dict]:
    text, _ = adapt_to_json(caddyfile, "Caddyfile")
    return json.loads(text)["apps"]["http"]["servers"]["srv0"]["routes"]


class RewriteHandlerTests(SynchronousTestCase):
    def test_empty_fields_left_out(self) -> None:
        """A rewrite handler leaves its empty fields out of the JSON."""
        self.assertEqual(
            encode(rewrite_handler(uri="/x", method="", path_regexp=[])),
            '{"handler":"rewrite","uri":"/x"}',
        )

    def test_uri_strip_prefix_gets_a_slash(self) -> None:
        """uri strip_prefix without a leading slash gets one."""
        [route] = routes(":8080 {\n\turi strip_prefix api\n}\n")
        self.assertEqual(route["handle"], [{"handler": "rewrite", "strip_path_prefix": "/api"}])

    def test_replace_limit(self) -> None:
        """uri replace takes an optional limit, -1 included."""
        [route] = routes(":8080 {\n\turi replace a b -1\n}\n")
        self.assertEqual(
            route["handle"][0]["uri_substring"], [{"find": "a", "limit": -1, "replace": "b"}]
        )


class HandlePathTests(SynchronousTestCase):
    def test_stripped_prefix(self) -> None:
        """``/a/*`` and ``/a*`` strip ``/a``; a path without ``*`` strips itself."""
        for path, prefix in (("/a/*", "/a"), ("/a*", "/a"), ("/a/b", "/a/b")):
            [route] = routes(":8080 {\n\thandle_path " + path + " {\n\t\trespond x\n\t}\n}\n")
            self.assertEqual(route["match"], [{"path": [path]}])
            subroute = route["handle"][0]
            self.assertEqual(subroute["handler"], "subroute")
            self.assertEqual(
                subroute["routes"][0],
                {"handle": [{"handler": "rewrite", "strip_path_prefix": prefix}]},
            )

    def test_sorted_like_handle(self) -> None:
        """handle_path routes are ordered and grouped as ``handle`` ones."""
        found = routes(
            ":8080 {\n\thandle /b/* {\n\t\trespond b\n\t}\n"
            "\thandle_path /a/* {\n\t\trespond a\n\t}\n}\n"
        )
        self.assertEqual(len({r["group"] for r in found}), 1)
        self.assertEqual(len(found), 2)
