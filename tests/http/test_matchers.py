"""Request matchers, checked against what Caddy 2.6.2 does.

The tables of requests and expected results were run against the real
``caddy`` 2.6.2 (one route per matcher adding a response header) and agree
with it entry for entry.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from txcaddy._go.strings import to_lower
from txcaddy.config.loader import LoadContext
from txcaddy.config.placeholders import Template
from txcaddy.errors import ConfigError
from txcaddy.http.matchers import (
    MatchPath,
    clean_path,
    clean_path_keep_slashes,
)
from txcaddy.interfaces import IRequestMatcher
from txcaddy.testing import FakeTLS, make_request


def load(matcher_set):
    return LoadContext().load_matcher_set(matcher_set)


def matches(matcher_set, target="/", method="GET", headers=None, **kwargs):
    return load(matcher_set).match(make_request(method, target, headers, **kwargs))


class MatcherTableMixin(SynchronousTestCase):
    """Check a table of (request target, expected) for one matcher set."""

    def check_table(self, matcher_set, table, **kwargs):
        matcher = load(matcher_set)
        for target, expected in table:
            self.assertEqual(matcher.match(make_request("GET", target, **kwargs)), expected, f"{matcher_set} {target!r}")


# -- Caddy's path cleaning ----------------------------------------------------------------------


class CleanPathTests(SynchronousTestCase):
    def test_clean_path_keeps_trailing_slash(self):
        """clean_path cleans like path.Clean but keeps a trailing slash."""
        self.assertEqual(clean_path("/a/b/"), "/a/b/")
        self.assertEqual(clean_path("/a/../"), "/")
        self.assertEqual(clean_path("/a//b/./c/"), "/a/b/c/")
        self.assertEqual(clean_path("/a/.."), "/")

    def test_clean_path_keeping_double_slashes(self):
        """clean_path_keep_slashes keeps repeated slashes unless told to merge them."""
        self.assertEqual(clean_path_keep_slashes("/a//b", False), "/a//b")
        self.assertEqual(clean_path_keep_slashes("/a//b", True), "/a/b")
        self.assertEqual(clean_path_keep_slashes("/a///b/", False), "/a///b/")
        self.assertEqual(clean_path_keep_slashes("/a//../b", False), "/a/b")
        self.assertEqual(clean_path_keep_slashes("//a/./b", False), "//a/b")


# -- path -------------------------------------------------------------------------------------------


class PathMatcherTests(MatcherTableMixin):
    def test_exact_prefix_suffix_substring_glob(self):
        """path patterns match exactly, by prefix, suffix, substring or glob, as Caddy does."""
        self.check_table({"path": ["/admin"]}, [("/admin", True), ("/ADMIN", True), ("/admin/", False), ("/admin.", True), ("/admin..", True), ("/administrator", False), ("/admin?x", True)])
        self.check_table({"path": ["/admin*"]}, [("/admin", True), ("/administrator", True), ("/adm", False)])
        self.check_table({"path": ["*.php"]}, [("/index.php", True), ("/index.PHP", True), ("/index.php.", True), ("/index.php%20", True), ("/index.phps", False)])
        self.check_table({"path": ["*/secret/*"]}, [("/a/secret/b", True), ("/a/b", False)])
        self.check_table({"path": ["/a/*/c"]}, [("/a/b/c", True), ("/a//c", False), ("/a/b/d/c", False), ("/a%2Fb/c", True)])
        self.check_table({"path": ["/x/[a-c]?"]}, [("/x/b1", True), ("/x/d1", False)])
        self.check_table({"path": ["/files/*.txt"]}, [("/files/a.txt", True), ("/files/a/b.txt", False)])
        self.check_table({"path": ["/**"]}, [("/anything", True), ("/", True), ("/a/b", False)])  # a glob: * stops at /
        self.check_table({"path": ["/Foo/Bar"]}, [("/foo/bar", True), ("/FOO/BAR/", False)])
        self.check_table({"path": ["*/"]}, [("/x/", True), ("/x", False), ("/admin/..", True)])

    def test_star_matches_everything(self):
        """A bare * pattern matches every path."""
        self.check_table({"path": ["/nope", "*"]}, [("/x", True), ("*", True)])

    def test_no_patterns_match_nothing(self):
        """A path matcher with no patterns matches nothing."""
        self.assertFalse(matches({"path": []}, "/"))

    def test_unicode_paths(self):
        """Escaped UTF-8 paths are decoded and lower-cased before matching."""
        self.check_table({"path": ["/é*"]}, [("/%C3%A9t%C3%A9", True), ("/%C3%89T%C3%89", True), ("/%ff", False)])

    def test_escaped_glob_characters(self):
        """An escaped * is literal; a malformed glob matches nothing."""
        self.check_table({"path": ["/a\\*b"]}, [("/a*b", True), ("/aXb", False)])
        self.check_table({"path": ["/bad["]}, [("/bad[", False)])

    def test_double_slash_patterns_keep_slashes(self):
        """A pattern with // matches the path with its slashes kept, not merged."""
        self.check_table({"path": ["//admin/*"]}, [("//admin/x", True), ("/%2fadmin/x", True), ("/admin/x", False), ("///admin/x", False)])

    def test_percent_patterns_match_the_escaped_path(self):
        """A pattern with % escapes matches against the escaped path, as Caddy does."""
        table = {
            "/a%2fb": [("/a%2fb", True), ("/a%2Fb", True), ("/A%2fb", False), ("/a/b", False), ("/a%2fb/c", True)],
            "/a%*": [("/a%2fb", True), ("/ab%2Fc", True), ("/ax", True), ("/a%25", True), ("/a", True), ("/a/c", False)],
            "/a%*/c": [("/a/c", True), ("/abc/c", True), ("/a%2fb/c", True), ("/a%2F%2Fc", False)],
            "/%*x": [("/x", True), ("/ax", True), ("/xx/y%2fz", True), ("/a%2fx", True)],
            "/a/%2e%2e": [("/a/%2e%2e", True), ("/a/%2E%2E", True)],
            "/x%20y": [("/x%20y", True)],
            "/*%2f*": [("/a%2fb", True), ("/a%2F%2Fc", True), ("/%41%2f", True), ("/a/b", False)],
            "/a%2F%*": [("/a%2f", True), ("/a%2F%41", True), ("/a%2fb", True), ("/%41%2f", False)],
        }
        for pattern, cases in table.items():
            self.check_table({"path": [pattern]}, cases)

    def test_placeholders_in_patterns(self):
        """Placeholders in patterns are expanded per request; unknown ones are empty."""
        matcher = load({"path": ["/{http.request.header.X-Dir}/*"]})
        self.assertTrue(matcher.match(make_request("GET", "/users/1", {"X-Dir": "users"})))
        self.assertFalse(matcher.match(make_request("GET", "/users/1", {"X-Dir": "other"})))
        # an unknown placeholder is empty: "//*" then keeps double slashes
        self.assertTrue(load({"path": ["/{nope}/*"]}).match(make_request("GET", "//x")))

    def test_pattern_is_lowercased_before_placeholders(self):
        """A pattern is lower-cased before its placeholders expand, placeholder names too."""
        request = make_request("GET", "/A/x")
        request.vars["dir"] = "A"
        request.vars["Dir"] = "other"
        self.assertTrue(MatchPath(["/{http.vars.Dir}/*"]).match(request) is False)  # the name became "dir" → "/A/*"
        request.vars["dir"] = "a"
        self.assertTrue(MatchPath(["/{http.vars.Dir}/*"]).match(request))

    def test_provides_the_interface(self):
        """MatchPath provides IRequestMatcher."""
        verifyObject(IRequestMatcher, MatchPath(["/x"]))


class PathBypassTests(SynchronousTestCase):
    """Attempts to reach ``/admin`` without ``path /admin/*`` or ``path /admin*`` noticing.

    Each row is (request target, matched by ``/admin/*``, matched by ``/admin*``),
    what Caddy 2.6.2 answered. Rows marked "not admin" are not a bypass: the
    cleaned, decoded path does not name the admin directory, so a file server
    (which cleans the same way) or an upstream (which sees the same bytes on
    Linux) does not reach it either.
    """

    TABLE = [
        ("/admin/x", True, True),
        # case: Caddy lower-cases both sides
        ("/ADMIN/x", True, True),
        ("/Admin/", True, True),
        ("/ADMİN/x", True, True),  # dotted capital I lower-cases to i, as in Go
        ("/admın/x", False, False),  # dotless ı is another letter: not admin
        # slashes: merged before matching
        ("//admin/x", True, True),
        ("///admin/x", True, True),
        ("/admin//x", True, True),
        ("/%2fadmin/x", True, True),
        ("/admin%2Fx", True, True),
        ("/admin%2fx", True, True),
        ("/admin%2f%2fx", True, True),
        # dot segments: cleaned after decoding
        ("/public/../admin/x", True, True),
        ("/public/%2e%2e/admin/x", True, True),
        ("/public/%2E%2E/admin/x", True, True),
        ("/./admin/x", True, True),
        ("/admin/.", True, True),
        ("/admin/..", True, True),  # trailing dots are trimmed first: "/admin/"
        ("/admin/x/..", True, True),
        ("/admin/%2e%2e/x", False, False),  # cleans to /x: not admin
        # escaped letters are decoded
        ("/adm%69n/x", True, True),
        ("/%61dmin/x", True, True),
        ("/%41DMIN/x", True, True),
        # trailing dots and spaces of the whole path are trimmed
        ("/admin.", False, True),
        ("/admin%20", False, True),
        ("/admin/x.", True, True),
        # a dot, space, NUL, backslash or ';' inside the segment makes another name: not admin
        ("/admin./x", False, True),
        ("/admin%20/x", False, True),
        ("/admin%00/x", False, True),
        ("/admin%5c/x", False, True),
        ("/admin;x/y", False, True),
        ("/admin%ff/x", False, True),
        # the query is not part of the path
        ("/admin?x=/public", False, True),
        ("/public?/admin/x", False, False),
    ]

    def test_table(self):
        """/admin/* and /admin* match each bypass attempt exactly as Caddy 2.6.2 did."""
        slash_star = load({"path": ["/admin/*"]})
        star = load({"path": ["/admin*"]})
        for target, expect_slash_star, expect_star in self.TABLE:
            request = make_request("GET", target)
            self.assertEqual(slash_star.match(request), expect_slash_star, f"/admin/* {target!r}")
            self.assertEqual(star.match(request), expect_star, f"/admin* {target!r}")

    def test_every_path_naming_admin_is_caught(self):
        """Whenever the cleaned, decoded, lower-cased path is under /admin/, both matchers match."""
        slash_star = load({"path": ["/admin/*"]})
        star = load({"path": ["/admin*"]})
        for target, _, _ in self.TABLE:
            request = make_request("GET", target)
            effective = clean_path(to_lower(request.path).rstrip(". "))
            if effective.startswith("/admin/"):
                self.assertTrue(slash_star.match(request), target)
                self.assertTrue(star.match(request), target)

    def test_a_not_matcher_protects_the_same_paths(self):
        """not path /admin/* matches exactly the rows path /admin/* does not."""
        allowed = load({"not": [{"path": ["/admin/*"]}]})
        for target, expect_slash_star, _ in self.TABLE:
            self.assertEqual(allowed.match(make_request("GET", target)), not expect_slash_star, target)


# -- host ------------------------------------------------------------------------------------------


class HostMatcherTests(MatcherTableMixin):
    def test_hosts(self):
        """host matches names case-insensitively, ignoring the port; * is one label."""
        matcher = {"host": ["example.com", "*.example.org", "EXAMPLE.NET"]}
        cases = [
            ("example.com", True), ("EXAMPLE.com:8080", True), ("a.example.org", True), ("a.b.example.org", False),
            ("example.org", False), ("example.net", True), ("www.example.com", False), ("", False),
        ]
        for host, expected in cases:
            self.assertEqual(matches(matcher, host=host), expected, host)

    def test_wildcard_is_one_whole_label(self):
        """A * in a host pattern stands for one whole label, never part of one."""
        self.assertTrue(matches({"host": ["*.*.com"]}, host="x.y.com"))
        self.assertFalse(matches({"host": ["foo*.com"]}, host="foobar.com"))
        self.assertTrue(matches({"host": ["*.Example.com"]}, host="A.EXAMPLE.COM"))

    def test_ipv6_hosts(self):
        """An IPv6 host matches with or without brackets and port."""
        self.assertTrue(matches({"host": ["::1"]}, host="[::1]:80"))
        self.assertTrue(matches({"host": ["::1"]}, host="[::1]"))

    def test_placeholders(self):
        """Host patterns expand placeholders per request, wildcards included."""
        matcher = load({"host": ["{http.request.header.X-H}"]})
        self.assertTrue(matcher.match(make_request("GET", "/", {"X-H": "dyn.test"}, host="DYN.test")))
        self.assertTrue(matcher.match(make_request("GET", "/", {"X-H": "*.dyn.test"}, host="a.dyn.test")))
        self.assertFalse(matcher.match(make_request("GET", "/", {"X-H": "other"}, host="dyn.test")))

    def test_large_lists(self):
        """Long host lists still match exactly, wildcards and ports included."""
        hosts = [f"host{i}.example.com" for i in range(500)] + ["*.wild.test"]
        matcher = load({"host": hosts})
        self.assertTrue(matcher.match(make_request(host="host321.example.com")))
        self.assertTrue(matcher.match(make_request(host="HOST321.example.com:443")))
        self.assertTrue(matcher.match(make_request(host="x.wild.test")))
        self.assertFalse(matcher.match(make_request(host="host500.example.com")))

    def test_repeated_hosts_are_an_error(self):
        """A host repeated in one matcher, ignoring case, is a configuration error."""
        with self.assertRaises(ConfigError) as caught:
            load({"host": ["a.com", "b.com", "A.com"]})
        self.assertIn("host at index 0 is repeated at index 2: a.com", str(caught.exception))


# -- header, header_regexp ------------------------------------------------------------------------


class HeaderMatcherTests(SynchronousTestCase):
    def check(self, matcher_set, headers, expected):
        self.assertEqual(matches(matcher_set, headers=headers), expected, f"{matcher_set} {headers}")

    def test_values_and_wildcards(self):
        """header values match exactly or by * wildcard; all fields must match, any value."""
        rows = [
            ({"X-A": ["foo"]}, [("X-A", "foo")], True),
            ({"X-A": ["foo"]}, [("X-A", "Foo")], False),
            ({"x-a": ["*oo"]}, [("X-A", "Foo")], True),
            ({"X-A": ["f*"]}, [("X-A", "foo, baz")], True),
            ({"X-A": ["*o*"]}, [("X-A", "xoo"), ("X-A", "fa")], True),
            ({"X-A": ["*"]}, [("X-A", "")], True),
            ({"X-A": ["*"]}, [], False),
            ({"X-A": ["foo"]}, [("X-A", "foo, baz")], False),
            ({"X-A": ["foo"], "X-B": ["bar"]}, [("X-A", "foo"), ("X-B", "bar")], True),
            ({"X-A": ["foo"], "X-B": ["bar"]}, [("X-A", "foo")], False),
            ({"X-A": ["one", "two"]}, [("X-A", "two")], True),
        ]
        for matcher, headers, expected in rows:
            self.check({"header": matcher}, headers, expected)

    def test_null_means_absent_and_empty_list_means_present(self):
        """A null header value means absent; an empty list means present."""
        self.check({"header": {"X-A": None}}, [], True)
        self.check({"header": {"X-A": None}}, [("X-A", "")], False)
        self.check({"header": {"X-A": []}}, [("X-A", "")], True)
        self.check({"header": {"X-A": []}}, [], False)

    def test_host_field_is_the_request_host(self):
        """The Host field in a header matcher is the request's host."""
        self.assertTrue(matches({"header": {"Host": ["*.example.com"]}}, host="a.example.com"))
        self.assertFalse(matches({"header": {"Host": None}}, host="a.example.com"))
        self.assertTrue(matches({"header": {"Host": None}}, host=None))

    def test_placeholders_in_values(self):
        """header values expand placeholders per request."""
        self.check({"header": {"X-A": ["{http.request.header.X-B}"]}}, [("X-A", "bar"), ("X-B", "bar")], True)
        self.check({"header": {"X-A": ["{http.request.header.X-B}"]}}, [("X-A", "")], True)

    def test_header_regexp(self):
        """header_regexp matches any value of the field and publishes its captures."""
        matcher = load({"header_regexp": {"X-A": {"name": "h", "pattern": "^f(.)o$"}}})
        request = make_request("GET", "/", [("X-A", "xyz"), ("X-A", "f-o")])
        self.assertTrue(matcher.match(request))
        self.assertEqual(request.placeholders, {"http.regexp.h.0": "f-o", "http.regexp.h.1": "-"})
        self.assertFalse(matcher.match(make_request("GET", "/", {"X-A": "foo!"})))
        self.assertFalse(matcher.match(make_request("GET", "/")))

    def test_header_regexp_host(self):
        """header_regexp on Host matches the request's host."""
        self.assertTrue(matches({"header_regexp": {"Host": {"pattern": "^local"}}}, host="localhost:80"))

    def test_header_regexp_all_fields(self):
        """header_regexp needs every named field to match."""
        matcher = load({"header_regexp": {"X-A": {"pattern": "a"}, "X-B": {"pattern": "b"}}})
        self.assertTrue(matcher.match(make_request("GET", "/", {"X-A": "a", "X-B": "b"})))
        self.assertFalse(matcher.match(make_request("GET", "/", {"X-A": "a"})))


# -- path_regexp, vars_regexp ------------------------------------------------------------------


class RegexpMatcherTests(SynchronousTestCase):
    def test_unnamed_captures(self):
        """path_regexp publishes each capture by number and by name."""
        request = make_request("GET", "/img/cat.PNG")
        self.assertTrue(load({"path_regexp": {"pattern": "^/img/(?P<name>\\w+)\\.(png|PNG)$"}}).match(request))
        self.assertEqual(
            request.placeholders,
            {"http.regexp.0": "/img/cat.PNG", "http.regexp.1": "cat", "http.regexp.2": "PNG", "http.regexp.name": "cat"},
        )

    def test_named_captures_and_non_participating_groups(self):
        """Groups that did not take part are empty; unknown capture numbers stay unexpanded."""
        request = make_request("GET", "/y")
        self.assertTrue(load({"path_regexp": {"name": "r", "pattern": "^/(x)?(?P<g>y)"}}).match(request))
        self.assertEqual(request.placeholders, {"http.regexp.r.0": "/y", "http.regexp.r.1": "", "http.regexp.r.2": "y", "http.regexp.r.g": "y"})
        self.assertEqual(Template("{http.regexp.r.g}|{http.regexp.r.1}|{http.regexp.r.3}").render(request), "y||{http.regexp.r.3}")

    def test_against_the_cleaned_case_preserved_path(self):
        """path_regexp matches the decoded, cleaned path with its case kept."""
        request = make_request("GET", "/A//b/../C%2Fd")
        self.assertTrue(load({"path_regexp": {"pattern": "^/A/C/d$"}}).match(request))
        self.assertFalse(load({"path_regexp": {"pattern": "^/admin$"}}).match(make_request("GET", "/admin%0a")))
        self.assertTrue(load({"path_regexp": {"pattern": "(?i)^/ADM"}}).match(make_request("GET", "/admin")))

    def test_no_match_publishes_nothing(self):
        """A path_regexp that does not match publishes no placeholders."""
        request = make_request("GET", "/x")
        self.assertFalse(load({"path_regexp": {"pattern": "^/y"}}).match(request))
        self.assertEqual(request.placeholders, {})

    def test_bad_patterns_and_names(self):
        """Bad patterns and capture-set names are configuration errors with Caddy's messages."""
        with self.assertRaises(ConfigError) as caught:
            load({"path_regexp": {"pattern": "a**"}})
        self.assertIn("compiling matcher regexp a**: error parsing regexp: invalid nested repetition operator", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            load({"path_regexp": {"name": "-.-", "pattern": "x"}})
        self.assertIn("invalid regexp name (must contain only word characters): -.-", str(caught.exception))

    def test_vars_regexp(self):
        """vars_regexp matches a var's expanded value, or a placeholder, and publishes captures."""
        request = make_request("GET", "/", {"X-A": "foobar"})
        request.vars["v"] = "abc-{http.request.header.X-A}"
        matcher = load({"vars_regexp": {"v": {"name": "m", "pattern": "^abc-(foo)"}}})
        self.assertTrue(matcher.match(request))  # the var's value has its placeholders expanded first
        self.assertEqual(request.placeholders["http.regexp.m.1"], "foo")
        by_placeholder = load({"vars_regexp": {"{http.request.header.X-A}": {"pattern": "^foo"}}})
        self.assertTrue(by_placeholder.match(request))
        self.assertFalse(by_placeholder.match(make_request("GET", "/", {"X-A": "bar"})))

    def test_vars_regexp_missing_var_is_nil(self):
        """A missing var is matched by vars_regexp as the text <nil>."""
        self.assertTrue(matches({"vars_regexp": {"nope": {"pattern": "^<nil>$"}}}))


# -- query, method, protocol ---------------------------------------------------------------------


class QueryMatcherTests(SynchronousTestCase):
    def test_table(self):
        """query matches each key's first value exactly or by *, as Caddy 2.6.2 does."""
        rows = [
            ({"a": ["1"]}, "/?a=1", True),
            ({"a": ["1"]}, "/?a=2&a=1", False),  # only the first value counts
            ({"a": ["*"]}, "/?a=", True),
            ({"a": ["*"]}, "/?a", True),
            ({"a": ["*"]}, "/?b=2", False),
            ({"a": ["1"], "b": ["2"]}, "/?b=2", True),  # OR across pairs in 2.6.2
            ({"a b": ["x y"]}, "/?a+b=x+y", True),
            ({"a b": ["x y"]}, "/?a%20b=x%20y", True),
            ({"a": ["1"]}, "/?a=1;b=2", False),  # Go refuses ';' separators: nothing matches
            ({"a": ["*"]}, "/?a=%zz", False),
            ({}, "/", True),
            ({}, "/?", True),
            ({}, "/?&&", True),
            ({}, "/?a=1", False),
            ({}, "/?a=1;b", False),
            ({"a": []}, "/?a=1", False),
        ]
        for pairs, target, expected in rows:
            self.assertEqual(matches({"query": pairs}, target), expected, f"{pairs} {target}")

    def test_placeholders(self):
        """query keys and values expand placeholders per request."""
        matcher = load({"query": {"{http.request.header.X-K}": ["{http.request.header.X-V}"]}})
        self.assertTrue(matcher.match(make_request("GET", "/?k=v", {"X-K": "k", "X-V": "v"})))
        self.assertFalse(matcher.match(make_request("GET", "/?k=w", {"X-K": "k", "X-V": "v"})))


class MethodProtocolTests(SynchronousTestCase):
    def test_method_is_exact(self):
        """method matches case-sensitively."""
        matcher = load({"method": ["POST", "get"]})
        self.assertTrue(matcher.match(make_request("POST")))
        self.assertTrue(matcher.match(make_request("get")))
        self.assertFalse(matcher.match(make_request("GET")))

    def test_protocols(self):
        """protocol matches by scheme, grpc, and exact or minimum HTTP version."""
        h10 = make_request(proto="HTTP/1.0")
        h11 = make_request()
        h2 = make_request(proto="HTTP/2.0", tls=FakeTLS())
        h3 = make_request(proto="HTTP/3.0", tls=FakeTLS())
        grpc = make_request("POST", "/", {"Content-Type": "application/grpc+proto"}, proto="HTTP/2.0")
        table = {
            "http": [h10, h11, grpc],
            "https": [h2, h3],
            "grpc": [grpc],
            "http/1.0": [h10],
            "http/1.0+": [h10, h11, h2, h3, grpc],
            "http/1.1": [h11],
            "http/1.1+": [h11, h2, h3, grpc],
            "http/2": [h2, grpc],
            "http/2+": [h2, h3, grpc],
            "http/3": [h3],
            "http/3+": [h3],
            "HTTP": [],
            "spdy": [],
        }
        for protocol, expected in table.items():
            matcher = load({"protocol": protocol})
            for request in (h10, h11, h2, h3, grpc):
                self.assertEqual(matcher.match(request), request in expected, f"{protocol} {request}")


# -- remote_ip -------------------------------------------------------------------------------------


class RemoteIPTests(SynchronousTestCase):
    def test_ranges_and_single_addresses(self):
        """remote_ip matches the peer against CIDR ranges and single addresses."""
        matcher = load({"remote_ip": {"ranges": ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]}})
        cases = [("10.1.2.3", True), ("11.0.0.1", False), ("192.168.1.7", True), ("192.168.1.8", False), ("2001:db8::1", True), ("::ffff:10.1.2.3", False), ("2001:db9::1", False)]
        for ip, expected in cases:
            self.assertEqual(matcher.match(make_request(remote=(ip, 5555))), expected, ip)

    def test_non_canonical_cidr(self):
        """A CIDR range with host bits set is accepted as its network."""
        self.assertTrue(matches({"remote_ip": {"ranges": ["10.9.9.9/8"]}}, remote=("10.1.1.1", 1)))

    def test_forwarded_uses_first_x_forwarded_for(self):
        """With forwarded, the first X-Forwarded-For address is matched, else the peer."""
        matcher = load({"remote_ip": {"ranges": ["10.0.0.0/8"], "forwarded": True}})
        self.assertTrue(matcher.match(make_request("GET", "/", {"X-Forwarded-For": "10.1.2.3, 127.0.0.1"})))
        self.assertTrue(matcher.match(make_request("GET", "/", {"X-Forwarded-For": " 10.1.2.3:99"})))
        self.assertFalse(matcher.match(make_request("GET", "/", {"X-Forwarded-For": "nonsense"})))
        self.assertFalse(matcher.match(make_request("GET", "/", {"X-Forwarded-For": "127.0.0.1, 10.1.2.3"})))
        self.assertTrue(matcher.match(make_request("GET", "/", remote=("10.0.0.1", 1))))  # no header: the peer

    def test_without_forwarded_the_header_is_ignored(self):
        """Without forwarded, X-Forwarded-For is ignored."""
        self.assertFalse(matches({"remote_ip": {"ranges": ["10.0.0.0/8"]}}, headers={"X-Forwarded-For": "10.1.2.3"}))

    def test_zones(self):
        """A range with a zone matches only that zone; one without matches any zone."""
        matcher = load({"remote_ip": {"ranges": ["fe80::/10%eth0"]}})
        self.assertTrue(matcher.match(make_request(remote=("fe80::1%eth0", 1))))
        self.assertFalse(matcher.match(make_request(remote=("fe80::1%eth1", 1))))
        self.assertTrue(matches({"remote_ip": {"ranges": ["fe80::/10"]}}, remote=("fe80::1%eth1", 1)))

    def test_unparsable_client_never_matches(self):
        """A peer address that does not parse matches no range."""
        self.assertFalse(matches({"remote_ip": {"ranges": ["0.0.0.0/0"]}}, remote=("", 0)))

    def test_bad_ranges(self):
        """Bad ranges are configuration errors with Caddy's messages."""
        with self.assertRaises(ConfigError) as caught:
            load({"remote_ip": {"ranges": ["10.0.0.0/33"]}})
        self.assertIn("parsing CIDR expression '10.0.0.0/33'", str(caught.exception))
        with self.assertRaises(ConfigError) as caught:
            load({"remote_ip": {"ranges": ["private_ranges"]}})
        self.assertIn("invalid IP address: 'private_ranges'", str(caught.exception))


# -- not, vars, expression, loading --------------------------------------------------------------


class NotMatcherTests(SynchronousTestCase):
    def test_not(self):
        """not matches when none of its matcher sets matches."""
        matcher = load({"not": [{"path": ["/a*"]}, {"method": ["POST"]}]})
        self.assertTrue(matcher.match(make_request("GET", "/x")))
        self.assertFalse(matcher.match(make_request("GET", "/abc")))
        self.assertFalse(matcher.match(make_request("POST", "/x")))

    def test_set_inside_not_is_an_and(self):
        """The matchers in one set inside not must all match for not to fail."""
        matcher = load({"not": [{"path": ["/a*"], "method": ["POST"]}]})
        self.assertTrue(matcher.match(make_request("GET", "/abc")))
        self.assertFalse(matcher.match(make_request("POST", "/abc")))

    def test_empty_not_matches(self):
        """An empty not matches every request."""
        self.assertTrue(matches({"not": []}))

    def test_must_be_a_list(self):
        """not must be given a list of matcher sets."""
        with self.assertRaises(ConfigError):
            load({"not": {"path": ["/a"]}})


class VarsMatcherTests(SynchronousTestCase):
    def test_vars(self):
        """vars compares a var's or placeholder's value as Go formats it; missing is <nil>."""
        request = make_request("GET", "/", host="h:8080")
        request.vars.update({"debug": "1", "n": 2, "f": 1e6})
        rows = [
            ({"debug": ["0", "1"]}, True),
            ({"debug": ["2"]}, False),
            ({"n": ["2"]}, True),
            ({"f": ["1e+06"]}, True),  # Go's %v of a float64
            ({"missing": ["<nil>"]}, True),
            ({"missing": [""]}, False),
            ({"{http.request.method}": ["GET"]}, True),
            ({"{http.request.port}": ["8080"]}, True),
            ({"{nope}": ["<nil>"]}, True),
            ({"debug": ["{http.request.header.X-D}"]}, False),
            ({}, True),
        ]
        for fields, expected in rows:
            self.assertEqual(load({"vars": fields}).match(request), expected, fields)
        request.headers.set("X-D", "1")
        self.assertTrue(load({"vars": {"debug": ["{http.request.header.X-D}"]}}).match(request))


class LoadingTests(SynchronousTestCase):
    def test_bad_expression_is_refused_naming_it(self):
        """An expression that does not compile is refused with a message quoting it."""
        with self.assertRaises(ConfigError) as caught:
            load({"expression": "{http.request.method} =="})
        self.assertIn("expression '{http.request.method} ==': compiling CEL program", str(caught.exception))

    def test_config_shape_errors(self):
        """A matcher given the wrong JSON shape is a configuration error."""
        for bad in [{"path": "/x"}, {"host": [1]}, {"header": {"X": "v"}}, {"query": {"a": "1"}}, {"protocol": ["http"]}, {"path_regexp": "^/x"}, {"method": "GET"}]:
            with self.assertRaises(ConfigError, msg=str(bad)):
                load(bad)

    def test_every_matcher_provides_the_interface(self):
        """Every matcher module provides IRequestMatcher."""
        configs = {
            "host": ["a"], "path": ["/"], "path_regexp": {"pattern": "x"}, "method": ["GET"], "query": {}, "header": {},
            "header_regexp": {}, "protocol": "http", "remote_ip": {"ranges": []}, "not": [], "vars": {}, "vars_regexp": {},
        }
        for name, config in configs.items():
            matcher_set = load({name: config})
            verifyObject(IRequestMatcher, matcher_set.matchers[0])

    def test_matchers_in_a_set_are_anded(self):
        """All matchers in one set must match."""
        matcher = load({"host": ["localhost"], "path": ["/admin*"]})
        self.assertTrue(matcher.match(make_request("GET", "/admin")))
        self.assertFalse(matcher.match(make_request("GET", "/admin", host="other")))
