"""The request and response matcher parsers, called directly.

The fixtures (``fixtures/matchers``) compare whole configs with Caddy's;
these tests pin the helpers other directive families reuse and the Go
behaviours they reproduce.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile import registry
from txcaddy.caddyfile.directives import matchers
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.jsonenc import GoMap, encode
from txcaddy.errors import ConfigError


def parse(name: str, text: str) -> object:
    """Run the registered parser of matcher ``name`` over ``text``."""
    return registry.MATCHERS[name](Dispenser.from_text(text))


class RegistryTests(SynchronousTestCase):
    def test_every_caddy_matcher_is_registered(self) -> None:
        """All the http.matchers.* modules of Caddy 2.6.2 have a Caddyfile syntax."""
        for name in (
            "expression", "file", "header", "header_regexp", "host", "method", "not",
            "path", "path_regexp", "protocol", "query", "remote_ip", "vars", "vars_regexp",
        ):
            self.assertIn(name, registry.MATCHERS)


class RequestMatcherTests(SynchronousTestCase):
    def test_string_lists_concatenate_lines(self) -> None:
        """A string-list matcher over several lines gives one list of all their arguments."""
        self.assertEqual(parse("path", "path /a /b\npath /c"), ["/a", "/b", "/c"])

    def test_string_list_without_arguments_is_null(self) -> None:
        """Go's nil slice: ``host`` alone encodes as ``null``."""
        self.assertIsNone(parse("host", "host"))

    def test_header_canonicalizes_except_negation(self) -> None:
        """header canonicalizes field names and merges their values; a negated name is kept."""
        value = parse("header", "header x-foo a\nheader X-FOO b\nheader !x-bar")
        self.assertEqual(encode(value), '{"X-Foo":["a","b"],"x-bar":null}')

    def test_query_error_names_the_last_token(self) -> None:
        """Caddy reports the line's last token, not the malformed one."""
        with self.assertRaises(ConfigError) as caught:
            parse("query", "query bad good=1")
        self.assertEqual(
            str(caught.exception),
            "Testfile:1 - Error during parsing: malformed query matcher token: good=1; "
            "must be in param=val format",
        )

    def test_expression_joins_raw_arguments(self) -> None:
        """expression joins its arguments with their quotes and backticks kept as written."""
        self.assertEqual(
            parse("expression", 'expression {a} == "x" && `y`'), '{a} == "x" && `y`'
        )

    def test_expression_single_quoted_argument(self) -> None:
        """expression with one quoted argument is that argument's text."""
        self.assertEqual(parse("expression", 'expression "a == b"'), "a == b")

    def test_not_parses_nested_sets_recursively(self) -> None:
        """Each not line or block is one matcher set, nested not blocks parsed likewise."""
        value = parse("not", "not path /a\nnot {\n\tnot method GET\n\thost x\n}")
        self.assertEqual(
            encode(value),
            '[{"path":["/a"]},{"host":["x"],"not":[{"method":["GET"]}]}]',
        )

    def test_file_matcher_keeps_struct_order(self) -> None:
        """The file matcher's options encode in the Go struct's field order."""
        value = parse("file", "file a {\n\tsplit_path .php\n\ttry_policy first_exist\n\troot /r\n}")
        self.assertEqual(
            encode(value),
            '{"root":"/r","try_files":["a"],"try_policy":"first_exist","split_path":[".php"]}',
        )

    def test_remote_ip_private_ranges(self) -> None:
        """private_ranges expands to the private ranges; forwarded sets the flag."""
        self.assertEqual(
            parse("remote_ip", "remote_ip forwarded private_ranges"),
            {"ranges": list(matchers.PRIVATE_RANGES), "forwarded": True},
        )

    def test_header_regexp_name_and_pattern(self) -> None:
        """header_regexp keeps an optional name with the pattern, per canonical field."""
        self.assertEqual(
            encode(parse("header_regexp", "header_regexp n Cookie ^a\nheader_regexp X ^b")),
            '{"Cookie":{"name":"n","pattern":"^a"},"X":{"pattern":"^b"}}',
        )


class NestedMatcherSetTests(SynchronousTestCase):
    def test_unknown_matcher(self) -> None:
        """An unknown matcher in a nested set is Caddy's "module not registered" error."""
        d = Dispenser.from_text("not nope 1")
        d.next()
        with self.assertRaises(ConfigError) as caught:
            matchers.parse_nested_matcher_set(d)
        self.assertEqual(
            str(caught.exception),
            "Testfile:1 - Error during parsing: getting matcher module 'nope': "
            "module not registered: http.matchers.nope",
        )


class ResponseMatcherTests(SynchronousTestCase):
    def test_status_classes_and_headers(self) -> None:
        """A response matcher turns 2xx into its class digit and canonicalizes header names."""
        found: dict[str, dict] = {}
        d = Dispenser.from_text("@ok {\n\tstatus 2xx 404\n\theader content-type text/*\n}")
        matchers.parse_named_response_matcher(d, found)
        self.assertEqual(list(found), ["@ok"])
        self.assertEqual(
            encode(found["@ok"]), '{"status_code":[2,404],"headers":{"Content-Type":["text/*"]}}'
        )
        self.assertIsInstance(found["@ok"]["headers"], GoMap)

    def test_empty_matcher(self) -> None:
        """A response matcher with no block is an empty matcher under its name."""
        found: dict[str, dict] = {}
        matchers.parse_named_response_matcher(Dispenser.from_text("match"), found)
        self.assertEqual(found, {"match": {}})
