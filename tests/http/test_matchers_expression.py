"""The ``expression`` (CEL) matcher, checked against what Caddy 2.6.2 does.

The route results (an evaluation error answering 500, an unknown placeholder
being ``null``, ``lowerAscii``) were seen from ``caddy run`` 2.6.2.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from txcaddy.caddyfile.adapter import adapt
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.matchers_expression import MatchExpression, expand_placeholders
from txcaddy.interfaces import IRequestMatcher
from txcaddy.service import plain_json
from txcaddy.testing import FakeResponse, make_request, serve


def load(expression: str) -> Any:
    return LoadContext().load_matcher_set({"expression": expression})


def matches(expression: str, method: str = "GET", target: str = "/", headers: Any = None, **kwargs: Any) -> bool:
    return bool(load(expression).match(make_request(method, target, headers, **kwargs)))


class PlaceholderTests(SynchronousTestCase):
    def test_expansion_regexp(self) -> None:
        """{name} becomes a caddyPlaceholder call; names must start with a letter and have two characters."""
        self.assertEqual(
            expand_placeholders('{http.request.method} == "{a}" || {x-y_z.1}'),
            'caddyPlaceholder(request, "http.request.method") == "{a}" || caddyPlaceholder(request, "x-y_z.1")',
        )
        self.assertEqual(expand_placeholders("{1abc} {é}"), "{1abc} {é}")

    def test_placeholders_compared(self) -> None:
        """Placeholders read the request's values."""
        expression = '{http.request.method} == "GET" && {http.request.uri.path}.startsWith("/api")'
        self.assertTrue(matches(expression, "GET", "/api/x"))
        self.assertFalse(matches(expression, "POST", "/api/x"))
        self.assertFalse(matches(expression, "GET", "/web"))

    def test_unknown_placeholder_is_null(self) -> None:
        """An unknown placeholder's value is null, as Caddy's Replacer.Get gives nil."""
        self.assertTrue(matches("{nope.nothing} == null"))

    def test_query_placeholder(self) -> None:
        """A query placeholder compares as a string."""
        self.assertTrue(matches("{http.request.uri.query.a} == '1'", target="/?a=1"))
        self.assertFalse(matches("{http.request.uri.query.a} == '1'", target="/?a=2"))

    def test_string_extension(self) -> None:
        """cel-go's strings extension (lowerAscii, split, substring, replace) is there."""
        self.assertTrue(matches('"ABC".lowerAscii() == "abc" && "a,b".split(",") == ["a", "b"]'))
        self.assertTrue(matches('"hello".substring(1, 3) == "el" && "aXa".replace("a", "b") == "bXb"'))
        self.assertTrue(matches('{http.request.uri.path}.upperAscii() == "/X"', target="/x"))


class MatcherFunctionTests(SynchronousTestCase):
    def test_path(self) -> None:
        """path() takes patterns as the path matcher does."""
        self.assertTrue(matches('path("/a*", "/b")', target="/abc"))
        self.assertTrue(matches('path("/a*", "/b")', target="/B"))
        self.assertFalse(matches('path("/a*", "/b")', target="/c"))

    def test_host(self) -> None:
        """host() matches the request's host, wildcards included."""
        self.assertTrue(matches('host("*.example.com")', headers={"Host": "a.example.com"}))
        self.assertFalse(matches('host("*.example.com")', headers={"Host": "example.com"}))

    def test_method(self) -> None:
        """method() lists methods."""
        self.assertTrue(matches('method("PUT", "POST")', "POST"))
        self.assertFalse(matches('method("PUT", "POST")', "GET"))

    def test_header(self) -> None:
        """header() takes a map whose values are a string or a list."""
        self.assertTrue(matches('header({"X-A": "b", "X-C": ["d", "e*"]})', headers={"X-A": "b", "X-C": "eek"}))
        self.assertFalse(matches('header({"X-A": "b", "X-C": ["d", "e*"]})', headers={"X-A": "b"}))

    def test_query(self) -> None:
        """query() takes a map of keys to values."""
        self.assertTrue(matches('query({"q": ["1", "2"]})', target="/?q=2"))
        self.assertFalse(matches('query({"q": ["1", "2"]})', target="/?q=3"))

    def test_path_regexp_named_publishes_captures(self) -> None:
        """path_regexp(name, pattern) sets {http.regexp.name.N} for the rest of the expression."""
        self.assertTrue(matches('path_regexp("n", "^/a(.*)") && {http.regexp.n.1} == "bc"', target="/abc"))
        self.assertTrue(matches('path_regexp("^/a")', target="/abc"))
        self.assertFalse(matches('path_regexp("^/a")', target="/b"))

    def test_header_regexp(self) -> None:
        """header_regexp([name,] field, pattern) matches one field."""
        self.assertTrue(matches('header_regexp("X-A", "^b+$")', headers={"X-A": "bbb"}))
        self.assertTrue(matches('header_regexp("h", "X-A", "^(b)") && {http.regexp.h.1} == "b"', headers={"X-A": "bc"}))
        self.assertFalse(matches('header_regexp("X-A", "^b+$")', headers={"X-A": "c"}))

    def test_protocol(self) -> None:
        """protocol() is case-insensitive and reads the request's version."""
        self.assertTrue(matches('protocol("HTTP/1.1")'))
        self.assertFalse(matches('protocol("https")'))

    def test_remote_ip(self) -> None:
        """remote_ip() takes ranges, with "forwarded" first to read X-Forwarded-For."""
        self.assertTrue(matches('remote_ip("127.0.0.0/8")', remote=("127.0.0.1", 1234)))
        self.assertFalse(matches('remote_ip("10.0.0.0/8")', remote=("127.0.0.1", 1234)))
        self.assertTrue(matches('remote_ip("forwarded", "10.0.0.0/8")', headers={"X-Forwarded-For": "10.1.1.1"}, remote=("127.0.0.1", 1)))

    def test_file(self) -> None:
        """file() tries files under a root, as the file matcher does."""
        root = self.mktemp()
        os.makedirs(root)
        with open(os.path.join(root, "here.txt"), "w") as f:
            f.write("x")
        self.assertTrue(matches(f'file({{"root": "{root}", "try_files": ["/here.txt"]}})'))
        self.assertFalse(matches(f'file({{"root": "{root}", "try_files": ["/gone.txt"]}})'))

    def test_matcher_with_placeholder_argument(self) -> None:
        """A matcher argument built from a placeholder is evaluated per request."""
        expression = 'path("/" + {http.request.header.X-Want})'
        self.assertTrue(matches(expression, target="/a", headers={"X-Want": "a"}))
        self.assertFalse(matches(expression, target="/a", headers={"X-Want": "b"}))


class CompileErrorTests(SynchronousTestCase):
    def check(self, expression: str, message: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            load(expression)
        self.assertIn(repr(expression), str(caught.exception))
        self.assertIn(message, str(caught.exception))

    def test_syntax_error(self) -> None:
        """A syntax error is a config error naming the expression."""
        self.check('{http.request.method} ==', "compiling CEL program")

    def test_unknown_function(self) -> None:
        """An undeclared function is refused at load."""
        self.check('nope("x")', "undeclared reference to 'nope'")

    def test_bad_constant_matcher_argument(self) -> None:
        """A constant matcher argument the matcher refuses fails the load."""
        self.check('path_regexp("[")', "compiling matcher regexp [")
        self.check('remote_ip("10.0.0.0/8", "forwarded")', "'forwarded' must be first argument")

    def test_not_a_string(self) -> None:
        """The JSON value must be a string."""
        with self.assertRaises(ConfigError):
            load(["a"])  # type: ignore[arg-type]


class EvaluationErrorTests(SynchronousTestCase):
    def test_error_is_no_match_and_kept(self) -> None:
        """An evaluation error does not match and is left in the matchers.error var."""
        request = make_request("GET", "/?n=x")
        matcher = load("int({http.request.uri.query.n}) == 1")
        self.assertFalse(matcher.match(request))
        self.assertIn("matchers.error", request.vars)

    def test_non_bool_result_does_not_match(self) -> None:
        """A result that is not a bool does not match."""
        self.assertFalse(matches('"yes"'))

    def test_interface(self) -> None:
        """MatchExpression provides IRequestMatcher."""
        self.assertTrue(verifyObject(IRequestMatcher, MatchExpression("true", LoadContext())))


CADDYFILE = """\
:8080 {
	@api expression {method} == "GET" && {path}.startsWith("/api")
	respond @api "api"
	@hdr expression `header({"X-A": "b"}) || path("/h*")`
	respond @hdr "hdr"
	@err expression `{path} == "/err" && int({query.n}) == 1`
	respond @err "err"
	respond "other"
}
"""

#: What caddy adapt 2.6.2 writes for the first two matchers.
CADDY_EXPRESSIONS = [
    '{http.request.method} == "GET" && {http.request.uri.path}.startsWith("/api")',
    'header({"X-A": "b"}) || path("/h*")',
]


class RouteTests(SynchronousTestCase):
    def setUp(self) -> None:
        config = plain_json(adapt(CADDYFILE)[0])
        self.server = config["apps"]["http"]["servers"]["srv0"]
        self.routes = LoadContext().load_routes(self.server["routes"])

    def body(self, method: str, target: str, headers: Any = None) -> bytes:
        return bytes(serve(self.routes, make_request(method, target, headers), FakeResponse()).body)

    def test_adapter_matches_caddy(self) -> None:
        """The adapter expands the shorthands and keeps the expressions as caddy adapt does."""
        expressions = [route["match"][0]["expression"] for route in self.server["routes"] if "match" in route]
        self.assertEqual(expressions[:2], CADDY_EXPRESSIONS)

    def test_routes(self) -> None:
        """Each respond runs when its expression matches."""
        self.assertEqual(self.body("GET", "/api/x"), b"api")
        self.assertEqual(self.body("POST", "/api/x"), b"other")
        self.assertEqual(self.body("POST", "/x", {"X-A": "b"}), b"hdr")
        self.assertEqual(self.body("POST", "/hello"), b"hdr")
        self.assertEqual(self.body("GET", "/err?n=1"), b"err")

    def test_evaluation_error_is_500(self) -> None:
        """An evaluation error fails the request with a 500, as caddy run answers."""
        with self.assertRaises(HandlerError) as caught:
            self.body("GET", "/err?n=x")
        self.assertEqual(caught.exception.status, 500)
