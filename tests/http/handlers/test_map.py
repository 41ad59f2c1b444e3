"""``map``: lazy destinations, exact and regexp inputs, defaults, and the ``vars`` matchers,
as Caddy 2.6.2 (outputs checked against ``caddy run`` 2.6.2 on the same config)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.http.handlers.support import fixture_handlers, load
from txcaddy.caddyfile.adapter import adapt
from txcaddy.config.loader import LoadContext
from txcaddy.config.placeholders import lookup, replace_all, replace_known
from txcaddy.errors import ConfigError
from txcaddy.http.handlers.map import Map
from txcaddy.service import plain_json
from txcaddy.testing import FakeResponse, make_request, serve

# What ``caddy adapt`` 2.6.2 gives for:
#   map {path} {a} {b} {n} {
#       ~^/x/(.*)$ "A-{1}-${1}-$1x" "{http.request.method}"
#       /exact {http.request.method} 42
#       default "dflt-{path}"
#   }
# (``caddy run`` answers "a=A-{1}-foo- b={http.request.method} n=" for /x/foo,
# "a=GET b=42 n=" for /exact and "a=dflt-/other b= n=" for /other.)
CADDY_MAP = {
    "handler": "map",
    "source": "{http.request.uri.path}",
    "destinations": ["{a}", "{b}", "{n}"],
    "defaults": ["dflt-{http.request.uri.path}", "", ""],
    "mappings": [
        {"input_regexp": "^/x/(.*)$", "outputs": ["A-{1}-${1}-$1x", "{http.request.method}", None]},
        {"input": "/exact", "outputs": ["{http.request.method}", 42, None]},
    ],
}

CADDYFILE = """\
:8080 {
\tmap {path} {a} {b} {n} {
\t\t~^/x/(.*)$ "A-{1}-${1}-$1x" "{http.request.method}"
\t\t/exact {http.request.method} 42
\t\tdefault "dflt-{path}"
\t}
\t@m vars {a} dflt-/zzz
\trespond @m "matched a={a} b={b}"
\trespond "a={a} b={b} n={n}"
}
"""


def passed(config: dict[str, Any], request: Any) -> Any:
    """Run the map handler on ``request``; the request as the next handler sees it."""
    seen: list[Any] = []
    serve(load(config), request, next=lambda rq, rs: seen.append(rq))
    return seen[0]


def render(text: str, request: Any) -> str:
    return replace_known(text, request)


class MapValueTests(SynchronousTestCase):
    def test_regexp_output_is_go_expanded_only(self) -> None:
        """A regexp output gets $1/${1} expanded, keeps {1} and placeholders as written."""
        request = passed(CADDY_MAP, make_request(target="/x/foo"))
        self.assertEqual(render("a={a} b={b} n={n}", request), "a=A-{1}-foo- b={http.request.method} n=")

    def test_exact_output_expands_placeholders(self) -> None:
        """An exact input's outputs expand placeholders; a number output is written as Go does."""
        request = passed(CADDY_MAP, make_request("POST", "/exact"))
        self.assertEqual(render("a={a} b={b} n={n}", request), "a=POST b=42 n=")

    def test_json_scalars_written_as_go(self) -> None:
        """Number and boolean outputs are written as Caddy's ToString writes them."""
        config = {"handler": "map", "source": "k", "destinations": ["{f}", "{b}", "{i}"],
                  "mappings": [{"input": "k", "outputs": [2.5, True, 1e21]}]}
        request = passed(config, make_request())
        self.assertEqual(render("{f} {b} {i}", request), "2.5 true 1000000000000000000000")

    def test_default(self) -> None:
        """Without a match the default applies, with its placeholders expanded."""
        request = passed(CADDY_MAP, make_request(target="/other"))
        self.assertEqual(render("a={a} b={b}", request), "a=dflt-/other b=")

    def test_no_default_is_known_nil(self) -> None:
        """Without defaults an unmatched destination is known but nil: empty, not left as written."""
        config = {"handler": "map", "source": "{http.request.method}", "destinations": ["{d}"],
                  "mappings": [{"input": "POST", "outputs": ["p"]}]}
        request = passed(config, make_request())
        self.assertEqual(render("[{d}]", request), "[]")
        self.assertEqual(lookup("d", request), (None, True))
        self.assertEqual(lookup("other", request), (None, False))

    def test_null_output_falls_through(self) -> None:
        """A null output is not a match: the next mapping that gives a value for it wins."""
        config = {"handler": "map", "source": "{http.request.uri.path}", "destinations": ["{a}", "{b}"],
                  "mappings": [
                      {"input": "/p", "outputs": ["first", None]},
                      {"input_regexp": "^/", "outputs": ["second", "from-regexp"]},
                  ]}
        request = passed(config, make_request(target="/p"))
        self.assertEqual(render("{a} {b}", request), "first from-regexp")

    def test_named_capture(self) -> None:
        """A named group is reachable as ${name}."""
        config = {"handler": "map", "source": "{http.request.host}", "destinations": ["{sub}"],
                  "mappings": [{"input_regexp": r"^(?P<s>[a-z]+)\.example\.com$", "outputs": ["${s}-site"]}]}
        request = passed(config, make_request(host="shop.example.com"))
        self.assertEqual(render("{sub}", request), "shop-site")

    def test_evaluated_when_read(self) -> None:
        """The source is read when a destination is read, not when the handler runs."""
        config = {"handler": "map", "source": "{http.request.uri.path}", "destinations": ["{a}"],
                  "mappings": [{"input": "/late", "outputs": ["late"]}], "defaults": ["early"]}
        request = passed(config, make_request(target="/early"))
        self.assertEqual(render("{a}", request), "early")
        request.path = "/late"
        self.assertEqual(render("{a}", request), "late")

    def test_set_values_win(self) -> None:
        """A value set during the request shadows a map destination of the same name."""
        request = passed(CADDY_MAP, make_request(target="/exact"))
        request.placeholders["a"] = "set"
        self.assertEqual(render("{a}", request), "set")

    def test_first_map_wins(self) -> None:
        """With two maps for one name, the one that ran first answers (Caddy's provider order)."""
        first = {"handler": "map", "source": "x", "destinations": ["{d}"], "defaults": ["one"]}
        second = {"handler": "map", "source": "x", "destinations": ["{d}"], "defaults": ["two"]}
        request = passed(second, passed(first, make_request()))
        self.assertEqual(render("{d}", request), "one")

    def test_request_placeholders_unaffected(self) -> None:
        """Request placeholders keep resolving with a map in place."""
        request = passed(CADDY_MAP, make_request(target="/x/1", headers={"X-A": "h"}))
        self.assertEqual(replace_all("{http.request.header.X-A}{http.request.uri.path}{nothing}", request), "h/x/1")

    def test_destination_brace_trim(self) -> None:
        """Destinations are trimmed of every brace at either end, as Go's strings.Trim."""
        handler = load({"handler": "map", "source": "", "destinations": ["{d}}x}"],
                        "mappings": [{"input": "", "outputs": ["v"]}]})
        self.assertIsInstance(handler, Map)
        self.assertEqual(handler.destinations, {"d}}x": 0})


class MapConfigTests(SynchronousTestCase):
    def check_error(self, config: dict[str, Any], message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            load({"handler": "map", **config})
        self.assertIn(message, str(caught.exception))

    def test_destination_must_be_a_placeholder(self) -> None:
        """A destination that is not exactly one placeholder is refused."""
        for dest in ("a", "{a}{b}", "x{a}"):
            self.check_error({"destinations": [dest]}, "destination must be a placeholder and only a placeholder")

    def test_defaults_count(self) -> None:
        """Defaults, when given, must match the destinations one to one."""
        self.check_error({"destinations": ["{a}", "{b}"], "defaults": ["x"]}, "2 destinations != 1 defaults")

    def test_outputs_count(self) -> None:
        """Each mapping has as many outputs as there are destinations."""
        self.check_error({"destinations": ["{a}"], "mappings": [{"input": "x", "outputs": []}]},
                         "mapping 0 has 0 outputs but there are 1 destinations defined")

    def test_input_and_regexp(self) -> None:
        """A mapping may not have both input and input_regexp."""
        self.check_error({"destinations": ["{a}"], "mappings": [{"input": "x", "input_regexp": "y", "outputs": ["1"]}]},
                         "mapping 0 has both input and input_regexp")

    def test_duplicate_input(self) -> None:
        """Two mappings with the same input are refused."""
        self.check_error({"destinations": ["{a}"], "mappings": [{"input": "x", "outputs": ["1"]},
                                                                  {"input_regexp": "x", "outputs": ["2"]}]},
                         "mapping 1 has a duplicate input 'x' previously used with mapping 0")

    def test_bad_regexp(self) -> None:
        """A regexp Go cannot compile is refused."""
        self.check_error({"destinations": ["{a}"], "mappings": [{"input_regexp": "(", "outputs": ["1"]}]},
                         "compiling regexp for mapping 0")

    def test_unknown_field(self) -> None:
        """Unknown fields are refused, as Caddy's strict decoding does."""
        self.check_error({"destinations": ["{a}"], "mappings": [{"input": "x", "output": ["1"]}]}, 'unknown field "output"')

    def test_every_adapter_fixture_loads(self) -> None:
        """The adapter fixtures' map handlers load, but the one caddy validate 2.6.2 refuses."""
        found = 0
        for where, config in fixture_handlers("map"):
            found += 1
            if len(config.get("mappings", [])) == 6:
                # two mappings with an empty input: caddy validate says exactly this
                with self.assertRaises(ConfigError) as caught:
                    load(dict(config))
                self.assertIn("mapping 5 has a duplicate input '' previously used with mapping 3", str(caught.exception))
                continue
            self.assertIsInstance(load(dict(config)), Map, where)
        self.assertEqual(found, 4)


class MapRouteTests(SynchronousTestCase):
    def serve_caddyfile(self, target: str) -> bytes:
        config = plain_json(adapt(CADDYFILE)[0])
        server = config["apps"]["http"]["servers"]["srv0"]
        routes = LoadContext().load_routes(server["routes"])
        response = serve(routes, make_request(target=target), FakeResponse())
        return response.body

    def test_adapter_matches_caddy(self) -> None:
        """The adapter writes the map handler caddy adapt 2.6.2 writes."""
        config = plain_json(adapt(CADDYFILE)[0])
        handlers = [h for h in config["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"] if h["handler"] == "map"]
        self.assertEqual(handlers, [CADDY_MAP])

    def test_vars_matcher_reads_destination(self) -> None:
        """A vars matcher later in the route sees the map's destination (as caddy run answers)."""
        self.assertEqual(self.serve_caddyfile("/zzz"), b"matched a=dflt-/zzz b=")
        self.assertEqual(self.serve_caddyfile("/x/foo"), b"a=A-{1}-foo- b={http.request.method} n=")
        self.assertEqual(self.serve_caddyfile("/exact"), b"a=GET b=42 n=")

    def test_vars_regexp_matcher_reads_destination(self) -> None:
        """A vars_regexp matcher on a {placeholder} key matches the map's value, captures included."""
        routes = LoadContext().load_routes([
            {"handle": [{"handler": "map", "source": "{http.request.uri.path}", "destinations": ["{kind}"],
                         "mappings": [{"input_regexp": "^/img/", "outputs": ["image-file"]}], "defaults": ["other"]}]},
            {"match": [{"vars_regexp": {"{kind}": {"name": "k", "pattern": "^(image)-"}}}],
             "handle": [{"handler": "static_response", "body": "kind {http.regexp.k.1}"}]},
            {"handle": [{"handler": "static_response", "body": "no {kind}"}]},
        ])
        self.assertEqual(serve(routes, make_request(target="/img/a.png")).body, b"kind image")
        self.assertEqual(serve(routes, make_request(target="/doc")).body, b"no other")

    def test_vars_matcher_nil_destination(self) -> None:
        """An unmatched destination without default prints as <nil> to the vars matcher, as in Go."""
        routes = LoadContext().load_routes([
            {"handle": [{"handler": "map", "source": "{http.request.uri.path}", "destinations": ["{d}"],
                         "mappings": [{"input": "/a", "outputs": ["A"]}]}]},
            {"match": [{"vars": {"{d}": ["<nil>"]}}], "handle": [{"handler": "static_response", "body": "nil"}]},
            {"handle": [{"handler": "static_response", "body": "d={d}"}]},
        ])
        self.assertEqual(serve(routes, make_request(target="/b")).body, b"nil")
        self.assertEqual(serve(routes, make_request(target="/a")).body, b"d=A")
