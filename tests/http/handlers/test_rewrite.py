"""``rewrite``: method, uri (with Caddy's query rules), strip prefix/suffix, substring, regexp.

Expected values marked "[caddy]" were produced by the real Caddy 2.6.2 with
``respond "[{uri}] [{path}]"`` after the same rewrite.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.http.handlers.support import fixture_handlers, load
from txcaddy.config.placeholders import replace_known
from txcaddy.errors import ConfigError
from txcaddy.http.handlers.rewrite import trim_path_prefix
from txcaddy.testing import make_request, serve


def rewritten(config: dict[str, Any], target: str = "/", headers: dict[str, str] | None = None, method: str = "GET") -> tuple[str, str, Any]:
    """(uri, path) after the rewrite, as Caddy's ``{uri}`` and ``{path}`` show them, and the request."""
    request = make_request(method, target, headers=headers)
    seen: list[Any] = []
    serve(load({"handler": "rewrite", **config}), request, next=lambda rq, rs: seen.append(rq))
    assert seen == [request], "rewrite must call the next handler with the same request"
    return replace_known("{http.request.uri}", request), request.path, request


class URITests(SynchronousTestCase):
    def test_path_and_query(self) -> None:
        """A uri with path and query replaces both."""
        self.assertEqual(rewritten({"uri": "/new?a=1"}, "/old?z=9")[:2], ("/new?a=1", "/new"))

    def test_path_only_keeps_query(self) -> None:
        """A uri with only a path keeps the request's query."""
        self.assertEqual(rewritten({"uri": "/new"}, "/old?z=9")[:2], ("/new?z=9", "/new"))

    def test_query_only_keeps_path(self) -> None:
        """A uri with only a query keeps the path; method is upper-cased."""
        # [caddy] method post + rewrite * ?a=b on /orig?z=1
        uri, path, request = rewritten({"uri": "?a=b", "method": "post"}, "/orig?z=1")
        self.assertEqual((uri, path, request.method), ("/orig?a=b", "/orig", "POST"))

    def test_empty_query_part_clears_query(self) -> None:
        """A uri ending in ? clears the query."""
        _, path, request = rewritten({"uri": "/p?"}, "/o?z=1")
        self.assertEqual((path, request.query, request.raw_path), ("/p", "", "/p"))

    def test_uri_placeholder_uses_decoded_path(self) -> None:
        """{http.request.uri} in a uri brings the decoded path, as Caddy 2.6.2 does."""
        # [caddy] rewrite * /v2{http.request.uri} on /api/a%2Fb?x=1
        self.assertEqual(rewritten({"uri": "/v2{http.request.uri}"}, "/api/a%2Fb?x=1")[:2], ("/v2/api/a/b?x=1", "/v2/api/a/b"))

    def test_query_placeholders(self) -> None:
        """Query placeholders expand as Caddy's: raw as a whole pair, escaped as a value."""
        # [caddy] the unknown placeholder becomes "<nil>"; the whole query is kept raw only as a key
        uri, path, _ = rewritten(
            {"uri": "/x?a={bogus}&{http.request.uri.query}&b={http.request.uri.query}&c={http.request.uri.query.q}"},
            "/p?q=a%20b&r=x+y",
        )
        self.assertEqual(uri, "/x?a=%3Cnil%3E&q=a%20b&r=x+y&b=q%3Da%2520b%26r%3Dx%2By&c=a+b")

    def test_query_keys_and_values_escaped(self) -> None:
        """Placeholder values in query keys and values are query-escaped."""
        # [caddy] rewrite * /search?q={header.X-Q}&{header.X-Q}={query}
        uri, _, _ = rewritten(
            {"uri": "/search?q={http.request.header.X-Q}&{http.request.header.X-Q}={http.request.uri.query}"},
            "/s?k=v",
            {"X-Q": "a b&c"},
        )
        self.assertEqual(uri, "/search?q=a+b%26c&a+b%26c=k%3Dv")

    def test_empty_components_dropped(self) -> None:
        """Empty query parts from empty placeholders are dropped."""
        # [caddy] rewrite * {path}?{query}&z=1
        config = {"uri": "{http.request.uri.path}?{http.request.uri.query}&z=1"}
        self.assertEqual(rewritten(config, "/a/b?x=1")[0], "/a/b?x=1&z=1")
        self.assertEqual(rewritten(config, "/a/b")[0], "/a/b?z=1")
        self.assertEqual(rewritten({"uri": "/new?{http.request.uri.query}"}, "/old")[0], "/new")

    def test_placeholder_question_mark_splits_path(self) -> None:
        """A ? from a placeholder in the path ends the path, as in Caddy 2.6.2."""
        # [caddy] rewrite * /p/{header.X-P}/q: the "?" ends the path; no query part in uri → query unchanged
        uri, path, request = rewritten({"uri": "/p/{http.request.header.X-P}/q"}, "/", {"X-P": "a b/%2F?x=y"})
        self.assertEqual((uri, path), ("/p/a%20b/%252F", "/p/a b/%2F"))
        self.assertEqual(request.query, "")

    def test_injected_query_used_when_uri_query_empty(self) -> None:
        """A query brought by a placeholder is used when the uri's own query is empty."""
        uri, path, _ = rewritten({"uri": "{http.request.header.X-To}?"}, "/o?z=1", {"X-To": "/t?k=a b"})
        self.assertEqual((uri, path), ("/t?k=a b", "/t"))

    def test_fragment_ignored_for_path(self) -> None:
        """A fragment in the uri is dropped."""
        self.assertEqual(rewritten({"uri": "/f#frag"}, "/o?q=1")[:2], ("/f?q=1", "/f"))
        self.assertEqual(rewritten({"uri": "/f?a=1#frag"}, "/o?q=1")[:2], ("/f?a=1", "/f"))

    def test_original_uri_kept(self) -> None:
        """orig_uri placeholders keep the URI from before the rewrite."""
        _, _, request = rewritten({"uri": "/new"}, "/old?x=1")
        self.assertEqual(replace_known("{http.request.orig_uri} {http.request.orig_uri.path}", request), "/old?x=1 /old")

    def test_method_replace_all_and_upper(self) -> None:
        """method expands placeholders and is upper-cased; orig_method keeps the old one."""
        _, _, request = rewritten({"method": "{http.request.header.X-M}"}, "/", {"X-M": "delete"})
        self.assertEqual(request.method, "DELETE")
        self.assertEqual(request.orig_method, "GET")


class StripTests(SynchronousTestCase):
    def test_prefix_case_insensitive_and_escapes(self) -> None:
        """strip_path_prefix ignores case and matches escaped characters decoded."""
        # [caddy] uri strip_prefix /api on /API/x%2Fy → [/x%2Fy] [/x/y]; on /ap%69x → [x] [x]
        self.assertEqual(rewritten({"strip_path_prefix": "/api"}, "/API/x%2Fy")[:2], ("/x%2Fy", "/x/y"))
        self.assertEqual(rewritten({"strip_path_prefix": "/api"}, "/ap%69x")[:2], ("x", "x"))
        self.assertEqual(rewritten({"strip_path_prefix": "/api"}, "/a")[:2], ("/a", "/a"))

    def test_prefix_cleans_first(self) -> None:
        """strip_path_prefix compares against the cleaned path."""
        # [caddy] uri strip_prefix /a on //a/b → [/b]
        self.assertEqual(rewritten({"strip_path_prefix": "/a"}, "//a/b")[:2], ("/b", "/b"))

    def test_prefix_keeps_escaping_of_rest(self) -> None:
        """What remains after a stripped prefix keeps its escaping."""
        # [caddy] /A%2fb → [%2fb] [/b]; /a(b) → [%28b%29] [(b)]
        self.assertEqual(rewritten({"strip_path_prefix": "/a"}, "/A%2fb")[:2], ("%2fb", "/b"))
        self.assertEqual(rewritten({"strip_path_prefix": "/a"}, "/a(b)")[:2], ("%28b%29", "(b)"))

    def test_whole_path_stripped(self) -> None:
        """Stripping the whole path leaves it empty and keeps the query."""
        uri, path, request = rewritten({"strip_path_prefix": "/api"}, "/api?x=1")
        self.assertEqual((uri, path), ("/?x=1", ""))
        self.assertEqual(request.query, "x=1")

    def test_prefix_placeholder(self) -> None:
        """strip_path_prefix expands placeholders."""
        self.assertEqual(rewritten({"strip_path_prefix": "/{http.request.header.X-T}"}, "/t1/x", {"X-T": "t1"})[1], "/x")

    def test_suffix(self) -> None:
        """strip_path_suffix ignores case but does not match an escaped suffix."""
        # [caddy] uri strip_suffix .html on /a/b.HTML → [/a/b]; on /a/b%2Ehtml nothing happens
        self.assertEqual(rewritten({"strip_path_suffix": ".html"}, "/a/b.HTML")[:2], ("/a/b", "/a/b"))
        self.assertEqual(rewritten({"strip_path_suffix": ".html"}, "/a/b%2Ehtml")[:2], ("/a/b%2Ehtml", "/a/b.html"))


class SubstringAndRegexpTests(SynchronousTestCase):
    def test_substring_in_path_and_query(self) -> None:
        """uri_substring replaces in both path and query."""
        # [caddy] uri replace foo bar on /foo/foo?foo=1
        self.assertEqual(rewritten({"uri_substring": [{"find": "foo", "replace": "bar"}]}, "/foo/foo?foo=1")[:2],
                         ("/bar/bar?bar=1", "/bar/bar"))

    def test_substring_limit(self) -> None:
        """uri_substring's limit caps replacements in path and query each."""
        config = {"uri_substring": [{"find": "o", "replace": "0", "limit": 2}]}
        self.assertEqual(rewritten(config, "/foo/foo?o=o")[0], "/f00/foo?0=0")

    def test_substring_empty_replace(self) -> None:
        """uri_substring without replace deletes the found text."""
        self.assertEqual(rewritten({"uri_substring": [{"find": "foo"}]}, "/afoo/b")[1], "/a/b")

    def test_regexp_on_escaped_path(self) -> None:
        """path_regexp works on the escaped path."""
        # [caddy] uri path_regexp ^/x/(.*)$ /y/$1 on /x/a%20b
        config = {"path_regexp": [{"find": "^/x/(.*)$", "replace": "/y/$1"}]}
        self.assertEqual(rewritten(config, "/x/a%20b")[:2], ("/y/a%20b", "/y/a b"))

    def test_regexp_named_group_and_placeholder(self) -> None:
        """path_regexp replaces $name groups; placeholders expand first, eating ${n}."""
        config = {"path_regexp": [{"find": "/(?P<n>[a-z]+)$", "replace": "/$n-{http.request.method}"}]}
        self.assertEqual(rewritten(config, "/dir/page")[1], "/dir/page-GET")
        # as in Caddy, placeholders go first: "${n}" loses its "{n}" (unknown → empty), leaving "$"
        config = {"path_regexp": [{"find": "/(?P<n>[a-z]+)$", "replace": "/${n}-{http.request.method}"}]}
        self.assertEqual(rewritten(config, "/dir/page")[1], "/dir/$-GET")

    def test_regexp_go_semantics(self) -> None:
        """path_regexp follows Go: ASCII \\d, no empty match right after a match."""
        # Go: \d is ASCII only, and an empty match right after a match is not replaced
        self.assertEqual(rewritten({"path_regexp": [{"find": "\\d", "replace": "N"}]}, "/a1%D9%A3")[1], "/aN\u0663")
        self.assertEqual(rewritten({"path_regexp": [{"find": "x*", "replace": "-"}]}, "/ax")[1], "-/-a-")

    def test_bad_regexp(self) -> None:
        """Bad or empty path_regexp patterns are configuration errors."""
        for find in ("(", "a(?=b)", "\\1", ""):
            with self.assertRaises(ConfigError, msg=find):
                load({"handler": "rewrite", "path_regexp": [{"find": find, "replace": "x"}]})


class HelperTests(SynchronousTestCase):

    def test_double_slashes_kept_when_the_prefix_has_them(self) -> None:
        """The path is cleaned keeping double slashes only where the prefix has them."""
        self.assertEqual(rewritten({"strip_path_prefix": "/a//"}, "/a//b/../c")[1], "c")
        self.assertEqual(rewritten({"strip_path_prefix": "/a/"}, "/a//b/../c")[1], "c")
        self.assertEqual(rewritten({"uri_substring": [{"find": "//", "replace": "/x/"}]}, "/a//b/./c/")[1], "/a/x/b/c/")

    def test_trim_path_prefix_quirks(self) -> None:
        """trim_path_prefix reproduces Caddy's comparison quirks on escaped paths."""
        self.assertEqual(trim_path_prefix("/%61bc", "/abc"), "")
        # Caddy compares the index in the path with the prefix's length: a short path can "match"
        self.assertEqual(trim_path_prefix("/%61", "/abc"), "")
        self.assertEqual(trim_path_prefix("/%zz", "/a"), "/%zz")
        self.assertEqual(trim_path_prefix("/%C3%A9x", "/\u00e9"), "/%C3%A9x")
        self.assertEqual(trim_path_prefix("/%C3%A9x", "/%c3%a9"), "x")


class LoadTests(SynchronousTestCase):
    def test_every_adapter_fixture_loads(self) -> None:
        """Every rewrite in the adapter fixtures loads and rewrites."""
        configs = list(fixture_handlers("rewrite"))
        self.assertGreater(len(configs), 10)
        for where, config in configs:
            _, path, _ = rewritten({k: v for k, v in config.items() if k != "handler"}, "/prefix/a?b=c")
            self.assertIsInstance(path, str, where)

    def test_bad_config(self) -> None:
        """A non-string uri or a non-numeric limit is refused."""
        with self.assertRaises(ConfigError):
            load({"handler": "rewrite", "uri": 5})
        with self.assertRaises(ConfigError):
            load({"handler": "rewrite", "uri_substring": [{"find": "a", "limit": "x"}]})
