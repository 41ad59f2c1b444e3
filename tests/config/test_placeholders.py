"""Placeholders: Caddy's replacer parsing and every value source.

Expected values were checked against Caddy 2.6.2 (a ``static_response`` body
for ReplaceKnown, ``vars`` values for ReplaceAll) with the same requests.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import socket
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.config import _resolvers, placeholders
from txcaddy.config.placeholders import (
    UNKNOWN,
    Template,
    lookup,
    replace_all,
    replace_known,
    to_string,
)
from txcaddy.http.errors import HandlerError
from txcaddy.testing import FakeResponse, FakeTLS, make_request

COOKIES = 'sess=abc; q="quoted"; bad=a"b'


def sample_request():
    """The request Caddy was asked about for the reference values."""
    return make_request(
        "GET",
        "/a/b/file.tar.gz?a=1&a=2&b",
        [("Host", "www.Example.co.uk:8080"), ("X-A", "one"), ("X-A", "two"), ("Cookie", COOKIES), ("Cookie", "x=1")],
        remote=("127.0.0.1", 40000),
    )


def known(text, request, response=None):
    return Template(text).render(request, response)


def everything(text, request, response=None):
    return Template(text).render(request, response, empty_unknown=True)


class ParsingTests(SynchronousTestCase):
    """How a string is split into text and placeholders (Caddy's replace loop)."""

    def setUp(self):
        self.request = make_request("GET", "/")

    def check(self, text, replace_known_result, replace_all_result):
        self.assertEqual(known(text, self.request), replace_known_result, f"ReplaceKnown {text!r}")
        self.assertEqual(everything(text, self.request), replace_all_result, f"ReplaceAll {text!r}")

    def test_escaped_braces_are_literal(self):
        """``\\{`` and ``\\}`` are literal braces once the string has a ``{``."""
        self.check("\\{http.request.method\\}", "{http.request.method}", "{http.request.method}")

    def test_escapes_untouched_without_any_open_brace(self):
        """A string without ``{`` comes back untouched, backslashes included."""
        self.check("a\\}b", "a\\}b", "a\\}b")

    def test_escape_applies_once_an_open_brace_exists(self):
        """An escaped ``}`` is unescaped as soon as a ``{`` appears anywhere."""
        self.check("a\\}b{", "a}b{", "a}b{")

    def test_unknown_placeholder_is_rescanned_from_its_brace(self):
        """After an unknown placeholder scanning resumes just after its ``{``."""
        self.check("{a{http.request.method}}", "{aGET}", "}")

    def test_double_braces(self):
        """``{{name}}`` is a literal brace around the inner placeholder."""
        self.check("{{http.request.method}}", "{GET}", "}")

    def test_escaped_close_brace_inside_a_placeholder(self):
        """A placeholder ends at the first ``}`` not preceded by a backslash."""
        self.check("{x\\}y}", "{x}y}", "")
        self.check("{http.request.method\\}x}", "{http.request.method}x}", "")

    def test_empty_and_blank_names_are_unknown(self):
        """``{}`` and ``{ }`` are unknown placeholders."""
        self.check("{}", "{}", "")
        self.check("{ }", "{ }", "")

    def test_close_before_open_is_text(self):
        """A ``}`` before any ``{`` is text."""
        self.check("}{", "}{", "}{")

    def test_unclosed_placeholder_is_text(self):
        """An unclosed ``{`` is text."""
        self.check("{http.request.method", "{http.request.method", "{http.request.method")

    def test_escaped_backslash_before_brace(self):
        """A backslash before an escaped brace is kept as text."""
        self.check("\\\\{http.request.method}", "\\{http.request.method}", "\\{http.request.method}")

    def test_trailing_backslash_kept(self):
        """A trailing backslash is kept."""
        self.check("{http.request.method}\\", "GET\\", "GET\\")

    def test_json_body_stays_intact_with_replace_known(self):
        """JSON text survives ReplaceKnown (unknown names stay as written)."""
        self.check('{"json": {"k": 1}}', '{"json": {"k": 1}}', "}")

    def test_more_than_101_unclosed_braces_empty_the_result(self):
        """The 102nd unclosed ``{`` makes the whole result empty, as in Caddy."""
        self.assertEqual(known("x" + "{" * 101, self.request), "x" + "{" * 101)
        self.assertEqual(known("x" + "{" * 102, self.request), "")
        self.assertEqual(everything("{http.request.method}" + "{" * 102, self.request), "")

    def test_static_templates(self):
        """A template without placeholders is static and renders without a request."""
        self.assertTrue(Template("plain text").is_static)
        self.assertTrue(Template("\\{not a placeholder\\}").is_static)
        self.assertEqual(Template("\\{x\\}").render(None), "{x}")
        self.assertFalse(Template("a {http.request.method}").is_static)
        self.assertEqual(Template("").render(None), "")

    def test_keys(self):
        """``keys`` lists the top-level placeholder names in order."""
        self.assertEqual(Template("{a}-{http.request.host}\\{c\\}").keys, ["a", "http.request.host"])

    def test_empty_values_take_the_empty_argument(self):
        """Values that come out empty are replaced by the ``empty`` argument."""
        request = make_request("GET", "/")
        self.assertEqual(Template("[{http.request.uri.query}]").render(request, empty="-"), "[-]")
        self.assertEqual(Template("[{nope}]").render(request, empty_unknown=True, empty="-"), "[-]")
        self.assertEqual(Template("[{nope}]").render(request, empty="-"), "[{nope}]")

    def test_replace_helpers(self):
        """``replace_known`` keeps unknown placeholders; ``replace_all`` empties them."""
        request = make_request("PUT", "/x")
        self.assertEqual(replace_known("{http.request.method} {nope}", request), "PUT {nope}")
        self.assertEqual(replace_all("{http.request.method} {nope}", request), "PUT ")
        self.assertEqual(replace_all("no braces \\}", request), "no braces \\}")


class RequestPlaceholderTests(SynchronousTestCase):
    def setUp(self):
        self.request = sample_request()

    def assertValues(self, request, expected, mode=known):
        for text, value in expected.items():
            self.assertEqual(mode(text, request), value, text)

    def test_request_line_and_host(self):
        """Method, host, port, hostport and scheme come from the request line and Host."""
        self.assertValues(
            self.request,
            {
                "{http.request.method}": "GET",
                "{http.request.scheme}": "http",
                "{http.request.proto}": "HTTP/1.1",
                "{http.request.host}": "www.Example.co.uk",
                "{http.request.hostport}": "www.Example.co.uk:8080",
                "{http.request.port}": "8080",
                "{http.request.host.labels.0}": "uk",
                "{http.request.host.labels.1}": "co",
                "{http.request.host.labels.3}": "www",
                "{http.request.host.labels.5}": "",
                "{http.request.host.labels.-1}": "{http.request.host.labels.-1}",
                "{http.request.host.labels.x}": "{http.request.host.labels.x}",
            },
        )

    def test_uri_parts(self):
        """The URI, its path, directory, file, base, extension and query parts."""
        self.assertValues(
            self.request,
            {
                "{http.request.uri}": "/a/b/file.tar.gz?a=1&a=2&b",
                "{http.request.uri.path}": "/a/b/file.tar.gz",
                "{http.request.uri.path.file}": "file.tar.gz",
                "{http.request.uri.path.dir}": "/a/b/",
                "{http.request.uri.path.file.base}": "file.tar",
                "{http.request.uri.path.file.ext}": ".gz",
                "{http.request.uri.path.0}": "a",
                "{http.request.uri.path.1}": "b",
                "{http.request.uri.path.2}": "file.tar.gz",
                "{http.request.uri.path.9}": "",
                "{http.request.uri.path.-1}": "{http.request.uri.path.-1}",
                "{http.request.uri.path.x}": "{http.request.uri.path.x}",
                "{http.request.uri.query}": "a=1&a=2&b",
                "{http.request.uri.query.a}": "1,2",
                "{http.request.uri.query.b}": "",
                "{http.request.uri.query.zz}": "",
            },
        )

    def test_decoded_path_and_escaped_uri(self):
        """``uri.path`` is decoded while ``uri`` keeps the escaping the client sent."""
        request = make_request("GET", "/%C3%A9t%C3%A9%20x/%2e%2e/y.")
        self.assertValues(
            request,
            {
                "{http.request.uri}": "/%C3%A9t%C3%A9%20x/%2e%2e/y.",
                "{http.request.uri.path}": "/été x/../y.",
                "{http.request.uri.path.file}": "y.",
                "{http.request.uri.path.dir}": "/été x/../",
                "{http.request.uri.path.file.base}": "y",
                "{http.request.uri.path.file.ext}": ".",
                "{http.request.uri.path.0}": "été x",
                "{http.request.uri.path.1}": "..",
                "{http.request.host}": "localhost",
                "{http.request.hostport}": "localhost",
                "{http.request.port}": "",
                "{http.request.host.labels.0}": "localhost",
                "{http.request.host.labels.1}": "",
            },
        )

    def test_directory_path(self):
        """A path ending in ``/`` has an empty file and itself as directory."""
        request = make_request("POST", "/dir/", host="[::1]:99")
        self.assertValues(
            request,
            {
                "{http.request.method}": "POST",
                "{http.request.host}": "::1",
                "{http.request.hostport}": "[::1]:99",
                "{http.request.port}": "99",
                "{http.request.host.labels.0}": "::1",
                "{http.request.uri.path.file}": "",
                "{http.request.uri.path.dir}": "/dir/",
                "{http.request.uri.path.file.base}": "dir",
                "{http.request.uri.path.file.ext}": "",
                "{http.request.uri.path.0}": "dir",
                "{http.request.uri.path.1}": "",
                "{http.request.uri}": "/dir/",
            },
        )

    def test_host_forms(self):
        """Host and port split as Go's ``SplitHostPort``; where it fails the host is the whole field."""
        cases = {
            "plain": ("plain", "", "plain"),
            "h:": ("h", "", "h:"),
            "h:0080": ("h", "80", "h:0080"),
            "h:abc": ("h", "abc", "h:abc"),
            "[::1]": ("[::1]", "", "[::1]"),
            "::1": ("::1", "", "::1"),
            "": ("", "", ""),
        }
        for host, (name, port, hostport) in cases.items():
            request = make_request("GET", "/", host=host)
            self.assertEqual(known("{http.request.host}|{http.request.port}|{http.request.hostport}", request), f"{name}|{port}|{hostport}", host)

    def test_bare_question_mark_kept_in_uri(self):
        """A bare ``?`` received with no query stays in ``{http.request.uri}``."""
        request = make_request("GET", "/x?")
        self.assertEqual(known("{http.request.uri}|{http.request.uri.query}", request), "/x?|")

    def test_uri_follows_rewrites_orig_uri_does_not(self):
        """``uri`` follows rewrites while ``orig_uri`` keeps what was received."""
        request = make_request("GET", "/old/p%20q?x=1")
        request.set_path("/new/r s")
        request.query = "y=2"
        request.method = "POST"
        self.assertValues(
            request,
            {
                "{http.request.uri}": "/new/r%20s?y=2",
                "{http.request.uri.path}": "/new/r s",
                "{http.request.uri.query}": "y=2",
                "{http.request.method}": "POST",
                "{http.request.orig_uri}": "/old/p%20q?x=1",
                "{http.request.orig_uri.path}": "/old/p q",
                "{http.request.orig_uri.path.file}": "p q",
                "{http.request.orig_uri.path.dir}": "/old/",
                "{http.request.orig_uri.query}": "x=1",
                "{http.request.orig_method}": "GET",
            },
        )

    def test_headers(self):
        """Request header values are joined with commas; Host is not a header."""
        self.assertValues(
            self.request,
            {
                "{http.request.header.X-A}": "one,two",
                "{http.request.header.x-a}": "one,two",
                "{http.request.header.Nope}": "",
                # Go keeps Host out of the header map
                "{http.request.header.Host}": "",
            },
        )

    def test_request_header_shorthand(self):
        """txcaddy's ``{>Name}`` (DESIGN.md §1): the request header, like Caddy v1."""
        self.assertValues(self.request, {"{>X-A}": "one,two", "{>x-a}": "one,two", "{>Nope}": "", "{>}": "{>}"})
        self.assertEqual(everything("{>Nope}|{>}", self.request), "|")

    def test_cookies(self):
        """Cookie values by name, case-insensitively; a missing cookie is unknown."""
        self.assertValues(
            self.request,
            {
                "{http.request.cookie.sess}": "abc",
                "{http.request.cookie.SESS}": "abc",
                "{http.request.cookie.q}": "quoted",
                "{http.request.cookie.x}": "1",
                # missing or invalid cookies are unknown placeholders in Caddy
                "{http.request.cookie.missing}": "{http.request.cookie.missing}",
                "{http.request.cookie.bad}": "{http.request.cookie.bad}",
            },
        )
        self.assertEqual(everything("[{http.request.cookie.missing}]", self.request), "[]")
        no_cookies = make_request("GET", "/")
        self.assertEqual(known("{http.request.cookie.sess}", no_cookies), "{http.request.cookie.sess}")

    def test_remote(self):
        """The peer's address, host and port."""
        self.assertValues(
            self.request,
            {
                "{http.request.remote}": "127.0.0.1:40000",
                "{http.request.remote.host}": "127.0.0.1",
                "{http.request.remote.port}": "40000",
                "{http.request.remote.host/24}": "127.0.0.0/24",
                "{http.request.remote.host/8,64}": "127.0.0.0/8",
                "{http.request.remote.host/x}": "",
                "{http.request.remote.host/40}": "",
                "{http.request.remote.host/-1}": "",
            },
        )

    def test_remote_ipv6(self):
        """An IPv6 peer is bracketed in ``remote``; ``remote.host/v4,v6`` masks it with the IPv6 length."""
        request = make_request("GET", "/", remote=("2001:db8:1:2::3", 5))
        self.assertValues(
            request,
            {
                "{http.request.remote}": "[2001:db8:1:2::3]:5",
                "{http.request.remote.host}": "2001:db8:1:2::3",
                "{http.request.remote.port}": "5",
                "{http.request.remote.host/24,48}": "2001:db8:1::/48",
                "{http.request.remote.host/24}": "2001:d00::/24",
                "{http.request.remote.host/24,200}": "",
            },
        )
        mapped = make_request("GET", "/", remote=("::ffff:10.1.2.3", 5))
        self.assertEqual(known("{http.request.remote.host/8,120}", mapped), "::ffff:10.1.2.0/120")

    def test_no_remote(self):
        """Without a peer address the remote placeholders are empty."""
        request = make_request("GET", "/", remote=("", 0))
        self.assertEqual(known("[{http.request.remote}|{http.request.remote.host}|{http.request.remote.port}]", request), "[||]")

    def test_vars(self):
        """``http.vars.*`` values print as Caddy prints them (floats without exponent, nil empty)."""
        request = make_request("GET", "/")
        request.vars.update({"root": "/srv", "n": 3, "f": 1.5, "big": 1e21, "t": True, "none": None})
        self.assertValues(
            request,
            {
                "{http.vars.root}": "/srv",
                "{http.vars.n}": "3",
                "{http.vars.f}": "1.5",
                "{http.vars.big}": "1000000000000000000000",
                "{http.vars.t}": "true",
                "{http.vars.none}": "",
                "{http.vars.nope}": "",
            },
        )

    def test_caddyfile_shorthands_are_not_runtime_placeholders(self):
        """Caddyfile shorthands like ``{vars.x}`` are unknown at run time."""
        request = make_request("GET", "/")
        request.vars["x"] = "1"
        self.assertEqual(known("{vars.x}|{re.a.b}|{path}|{host}", request), "{vars.x}|{re.a.b}|{path}|{host}")
        self.assertEqual(everything("{vars.x}|{re.a.b}|{path}", request), "||")

    def test_values_set_by_matchers_and_handlers(self):
        """Values set during the request (regexp captures, file matcher) are found."""
        request = make_request("GET", "/")
        request.placeholders.update({"http.regexp.name.1": "cap", "http.matchers.file.relative": "/index.html", "custom": 7})
        self.assertEqual(known("{http.regexp.name.1}|{http.matchers.file.relative}|{custom}|{http.regexp.name.2}", request), "cap|/index.html|7|{http.regexp.name.2}")

    def test_set_values_come_before_request_values(self):
        """A value set during the request wins over the request's own value."""
        request = make_request("GET", "/")
        request.placeholders["http.request.method"] = "OVERRIDDEN"
        self.assertEqual(known("{http.request.method}", request), "OVERRIDDEN")

    def test_uuid_is_stable_per_request(self):
        """``{http.request.uuid}`` is made once per request and then stays."""
        request = make_request("GET", "/")
        first = known("{http.request.uuid}", request)
        self.assertRegex(first, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertEqual(known("{http.request.uuid}", request), first)
        self.assertEqual(known("{http.vars.uuid}", request), first)
        self.assertNotEqual(known("{http.request.uuid}", make_request("GET", "/")), first)

    def test_body_when_already_received(self):
        """The body is given only when it already arrived whole."""
        request = make_request("POST", "/", body=b"hello body")
        self.assertEqual(known("{http.request.body}", request), "hello body")
        self.assertEqual(known("[{http.request.body}]", make_request("GET", "/")), "[]")

    def test_proto_and_scheme(self):
        """Protocol version and scheme (https with TLS)."""
        request = make_request("GET", "/", proto="HTTP/2.0", tls=FakeTLS())
        self.assertEqual(known("{http.request.proto} {http.request.scheme}", request), "HTTP/2.0 https")


class ResponseAndErrorTests(SynchronousTestCase):
    def test_response_headers(self):
        """``http.response.header.*`` reads the response being written."""
        request = make_request("GET", "/")
        response = FakeResponse()
        response.headers.add("X-Out", "a")
        response.headers.add("X-Out", "b")
        self.assertEqual(known("{http.response.header.x-out}|{http.response.header.Nope}", request, response), "a,b|")

    def test_response_headers_unknown_without_a_response(self):
        """Without a response, response headers are unknown placeholders."""
        request = make_request("GET", "/")
        self.assertEqual(known("{http.response.header.X-Out}", request), "{http.response.header.X-Out}")

    def test_error_placeholders(self):
        """An error route sees the error's status, text, message, id and trace."""
        request = make_request("GET", "/")
        error = HandlerError(404, "nope")
        error.id = "9dk04rvx9"
        request.error = error
        self.assertEqual(
            known("{http.error.status_code}|{http.error.status_text}|{http.error.message}|{http.error.id}|{http.error.trace}|{http.error}", request),
            "404|Not Found|nope|9dk04rvx9||{id=9dk04rvx9}: HTTP 404: nope",
        )

    def test_error_with_empty_message(self):
        """An error with an empty message gives an empty ``{http.error.message}``."""
        request = make_request("GET", "/")
        error = HandlerError(418, "")
        error.id = "b8fdwttmf"
        request.error = error
        self.assertEqual(known("{http.error.status_text}|{http.error.message}|{http.error}", request), "I'm a teapot||{id=b8fdwttmf}: HTTP 418:")

    def test_error_message_from_cause(self):
        """Without a message of its own the error's message is its cause's."""
        request = make_request("GET", "/")
        request.error = HandlerError(502, "", cause=ConnectionRefusedError("connection refused"))
        self.assertEqual(known("{http.error.status_code} {http.error.message}", request), "502 connection refused")

    def test_error_placeholders_unknown_outside_error_routes(self):
        """Outside an error route the error placeholders are unknown."""
        request = make_request("GET", "/")
        self.assertEqual(known("{http.error.status_code}|{http.error}", request), "{http.error.status_code}|{http.error}")
        self.assertEqual(everything("[{http.error.message}]", request), "[]")


class GlobalPlaceholderTests(SynchronousTestCase):
    def setUp(self):
        self.request = make_request("GET", "/")
        self.patch(_resolvers, "now", lambda: 1700000000.25)
        old_tz = os.environ.get("TZ")
        os.environ["TZ"] = "XYZ-2"  # a POSIX zone 2 hours east of UTC, no tz database needed
        time.tzset()
        self.addCleanup(self._restore_tz, old_tz)

    def _restore_tz(self, old_tz):
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()

    def test_environment(self):
        """``{env.NAME}`` is the variable, empty when unset."""
        self.patch(os, "environ", {**os.environ, "TXC_TEST": "envvalue"})
        self.assertEqual(known("{env.TXC_TEST}|{env.TXC_NOPE_NOT_SET}", self.request), "envvalue|")

    def test_system(self):
        """``system.*`` values: separator, host name, OS, architecture, working directory."""
        self.assertEqual(known("{system.slash}", self.request), os.sep)
        self.assertEqual(known("{system.hostname}", self.request), socket.gethostname())
        self.assertEqual(known("{system.wd}", self.request), os.getcwd())
        self.assertEqual(known("{system.os}", self.request), "linux")
        self.assertIn(known("{system.arch}", self.request), {"amd64", "arm64", "386", "arm", "ppc64le", "s390x", "riscv64"})

    def test_time(self):
        """``time.now.*`` forms read the clock at render time, in local time."""
        self.assertEqual(
            known("{time.now.unix}|{time.now.unix_ms}|{time.now.year}|{time.now.common_log}|{time.now.http}", self.request),
            "1700000000|1700000000250|2023|15/Nov/2023:00:13:20 +0200|Tue, 14 Nov 2023 22:13:20 GMT",
        )
        self.assertEqual(known("{time.now}", self.request), "2023-11-15 00:13:20.25 +0200 XYZ")

    def test_duration(self):
        """``{http.request.duration}`` prints as Go's Duration, ``duration_ms`` as milliseconds."""
        self.patch(_resolvers, "now", lambda: 1000.25)  # small numbers keep microsecond precision
        self.request.start = 1000.25 - 0.000151105
        self.assertEqual(known("{http.request.duration}", self.request), "151.105µs")
        self.request.start = 1000.25 - 0.5
        self.assertEqual(known("{http.request.duration}|{http.request.duration_ms}", self.request), "500ms|500")
        self.request.start = 1000.25 - 3725.5
        self.assertEqual(known("{http.request.duration}", self.request), "1h2m5.5s")

    def test_start_time_var(self):
        """``{http.vars.start_time}`` prints the request start as Go's ``Time.String()``."""
        self.request.start = 1700000000.0
        self.assertEqual(known("{http.vars.start_time}", self.request), "2023-11-15 00:13:20 +0200 XYZ")

    def test_globals_cannot_be_overridden(self):
        """Global values come first: a request value cannot hide them."""
        self.request.placeholders["time.now.year"] = "1999"
        self.assertEqual(known("{time.now.year}", self.request), "2023")


def client_certificate():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(123456789)
        .not_valid_before(datetime.datetime(2024, 1, 1))
        .not_valid_after(datetime.datetime(2034, 1, 1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("a.example"), x509.DNSName("b.example"), x509.RFC822Name("me@example.com")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


class TLSPlaceholderTests(SynchronousTestCase):
    def test_connection_details(self):
        """TLS connection values: version, cipher suite, protocol, server name, resumption."""
        request = make_request("GET", "/", tls=FakeTLS(server_name="example.com", version="tls1.3", cipher_suite="TLS_AES_128_GCM_SHA256", proto="h2"))
        self.assertEqual(
            known(
                "{http.request.tls.version}|{http.request.tls.cipher_suite}|{http.request.tls.proto}|{http.request.tls.proto_mutual}|"
                "{http.request.tls.server_name}|{http.request.tls.resumed}|{http.request.tls.SERVER_NAME}",
                request,
            ),
            "tls1.3|TLS_AES_128_GCM_SHA256|h2|true|example.com|false|example.com",
        )

    def test_unknown_without_tls(self):
        """Without TLS the TLS placeholders are unknown."""
        request = make_request("GET", "/")
        self.assertEqual(known("{http.request.tls.version}", request), "{http.request.tls.version}")
        self.assertEqual(everything("[{http.request.tls.version}]", request), "[]")

    def test_client_certificate(self):
        """Client certificate values: subject, issuer, serial, SANs, keys and encodings."""
        cert, key = client_certificate()
        tls = FakeTLS()
        tls.peer_certificate = cert
        request = make_request("GET", "/", tls=tls)
        der = cert.public_bytes(serialization.Encoding.DER)
        point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        self.assertEqual(known("{http.request.tls.client.fingerprint}", request), hashlib.sha256(der).hexdigest())
        self.assertEqual(known("{http.request.tls.client.public_key}", request), point.hex())
        self.assertEqual(known("{http.request.tls.client.public_key_sha256}", request), hashlib.sha256(point).hexdigest())
        self.assertEqual(known("{http.request.tls.client.serial}", request), "123456789")
        self.assertEqual(known("{http.request.tls.client.subject}", request), "O=Acme,CN=client")
        self.assertEqual(known("{http.request.tls.client.issuer}", request), "CN=Test CA")
        self.assertEqual(known("{http.request.tls.client.certificate_der_base64}", request), base64.b64encode(der).decode())
        self.assertEqual(
            known("{http.request.tls.client.certificate_pem}", request),
            cert.public_bytes(serialization.Encoding.PEM).decode(),
        )
        self.assertEqual(
            known(
                "{http.request.tls.client.san.dns_names}|{http.request.tls.client.san.dns_names.1}|"
                "{http.request.tls.client.san.dns_names.5}|{http.request.tls.client.san.emails.0}|{http.request.tls.client.san.ips}",
                request,
            ),
            "[a.example b.example]|b.example||me@example.com|[]",
        )
        self.assertEqual(known("{http.request.tls.client.san.dns_names.x}", request), "{http.request.tls.client.san.dns_names.x}")
        self.assertEqual(known("{http.request.tls.client.nope}", request), "{http.request.tls.client.nope}")

    def test_client_fields_unknown_without_a_certificate(self):
        """Without a client certificate its placeholders are unknown."""
        request = make_request("GET", "/", tls=FakeTLS())
        self.assertEqual(known("{http.request.tls.client.subject}", request), "{http.request.tls.client.subject}")


class LookupTests(SynchronousTestCase):
    def test_lookup_gives_raw_values(self):
        """``lookup`` returns raw values (a port as an int) and whether the name is known."""
        request = make_request("GET", "/", host="h:8080")
        self.assertEqual(lookup("http.request.port", request), (8080, True))
        self.assertEqual(lookup("http.request.host", request), ("h", True))
        self.assertEqual(lookup("nope", request), (None, False))
        self.assertIs(placeholders.resolver("nope")(request, None), UNKNOWN)


class ToStringTests(SynchronousTestCase):
    def test_to_string(self):
        """Caddy's ``ToString``: nil is empty, floats without exponent, slices as ``[a b]``."""
        self.assertEqual(to_string(None), "")
        self.assertEqual(to_string(True), "true")
        self.assertEqual(to_string(12), "12")
        self.assertEqual(to_string(0.1), "0.1")
        self.assertEqual(to_string(3.0), "3")
        self.assertEqual(to_string(1e21), "1000000000000000000000")
        self.assertEqual(to_string(1e-7), "0.0000001")
        self.assertEqual(to_string(b"bytes"), "bytes")
        self.assertEqual(to_string(["a", "b"]), "[a b]")
