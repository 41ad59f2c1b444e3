"""``vars``: request variables set with ReplaceAll placeholders, then the chain goes on."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.http.handlers.support import fixture_handlers, load
from txcaddy.config.placeholders import replace_known
from txcaddy.testing import make_request, serve


class VarsTests(SynchronousTestCase):
    def run_vars(self, config: dict[str, Any], request: Any = None) -> tuple[Any, list[Any]]:
        request = request or make_request()
        seen: list[Any] = []
        serve(load({"handler": "vars", **config}), request, next=lambda rq, rs: seen.append(dict(rq.vars)))
        return request, seen

    def test_root_and_skip_log(self) -> None:
        """vars sets the request's vars before calling next; they are placeholders too."""
        request, seen = self.run_vars({"root": "/srv/www", "skip_log": True})
        self.assertEqual(seen, [{"root": "/srv/www", "skip_log": True}])
        self.assertEqual(replace_known("{http.vars.root}", request), "/srv/www")

    def test_values_replace_all(self) -> None:
        """Var names and string values expand placeholders; unknown ones become empty."""
        request = make_request("GET", "/a/b", host="example.com")
        request, _ = self.run_vars({"site": "/srv/{http.request.host}{bogus}", "{http.request.method}_seen": "yes"}, request)
        self.assertEqual(request.vars["site"], "/srv/example.com")
        self.assertEqual(request.vars["GET_seen"], "yes")

    def test_escaped_braces(self) -> None:
        """Escaped braces in a value become literal braces."""
        request, _ = self.run_vars({"v": "\\{not\\} {http.request.method}"})
        self.assertEqual(request.vars["v"], "{not} GET")

    def test_other_json_values_kept(self) -> None:
        """Non-string values are kept as JSON decoded them, numbers as floats."""
        request, _ = self.run_vars({"n": 3, "f": 1.5, "b": False, "o": {"k": [1, "{x}"]}, "z": None})
        self.assertEqual(request.vars["n"], 3.0)
        self.assertIsInstance(request.vars["n"], float)
        self.assertEqual(request.vars["f"], 1.5)
        self.assertIs(request.vars["b"], False)
        self.assertEqual(request.vars["o"], {"k": [1.0, "{x}"]})
        self.assertIsNone(request.vars["z"])
        self.assertEqual(replace_known("{http.vars.n}", request), "3")

    def test_later_vars_override(self) -> None:
        """A var set again replaces the earlier value."""
        request = make_request()
        request.vars["root"] = "/old"
        request, _ = self.run_vars({"root": "/new"}, request)
        self.assertEqual(request.vars["root"], "/new")

    def test_every_adapter_fixture_loads(self) -> None:
        """Every vars handler in the adapter fixtures loads and calls next once."""
        configs = list(fixture_handlers("vars"))
        self.assertTrue(configs)
        for where, config in configs:
            _, seen = self.run_vars({k: v for k, v in config.items() if k != "handler"})
            self.assertEqual(len(seen), 1, where)
