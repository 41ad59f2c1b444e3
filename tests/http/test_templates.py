"""``templates`` end to end: pages served by ``file_server`` through the handler, compared with
what Caddy 2.6.2 renders for the same files (``templates_site/expected``, recorded by
``templates_site/record.py``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.handlers.templates import Templates
from txcaddy.http.routing import Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.testing import FakeResponse, FakeServer, make_request, serve

from .handlers.support import fixture_handlers

SITE_DIR = Path(__file__).resolve().parent / "templates_site"
SITE = SITE_DIR / "site"
EXPECTED = SITE_DIR / "expected"
# what record.py sent (http.client adds the Accept-Encoding)
HEADERS = {"Host": "example.test", "User-Agent": "fixture-agent", "Cookie": "flavor=vanilla", "Accept-Encoding": "identity"}
COMPARED = ["Content-Type", "Content-Length", "X-Templated", "X-Multi", "Etag", "Last-Modified", "Accept-Ranges"]


def site_handler(root: Path = SITE) -> Any:
    """The routes ``caddy adapt`` makes of the recording Caddyfile (``templates_site/record.py``)."""
    return LoadContext().load_handler({
        "handler": "subroute",
        "routes": [
            {"handle": [{"handler": "vars", "root": str(root)}, {"handler": "templates"}]},
            {"match": [{"path": ["/delims/*"]}], "handle": [{"handler": "subroute", "routes": [
                {"handle": [{"handler": "templates", "delimiters": ["[[", "]]"]}]},
                {"handle": [{"handler": "file_server"}]},
            ]}]},
            {"handle": [{"handler": "file_server"}]},
        ],
    })


def fetch(path: str, handler: Any = None) -> tuple[FakeResponse, HandlerError | None]:
    """Serve ``path`` as the recording did; the HandlerError it ended with, if any."""
    handler = handler if handler is not None else site_handler()
    server = FakeServer(handler)
    request = make_request("GET", path, HEADERS, host=None, server=server)
    response = FakeResponse()
    try:
        serve(handler, request, response)
    except HandlerError as error:
        return response, error
    return response, None


def _sort_listing(body: str) -> str:
    return re.sub(r"files=\[(.*?)\]", lambda m: "files=[" + " ".join(sorted(m.group(1).split())) + "]", body)


class CaddyFixturesTests(SynchronousTestCase):
    """Every recorded page renders as Caddy rendered it."""

    def setUp(self) -> None:
        os.environ["TXCADDY_TPL_TEST"] = "from-env"
        self.addCleanup(os.environ.pop, "TXCADDY_TPL_TEST", None)

    def check(self, name: str) -> None:
        record = json.loads((EXPECTED / f"{name}.json").read_text())
        response, error = fetch(record["path"])
        if record["status"] >= 400:
            self.assertIsNotNone(error, record["path"])
            assert error is not None
            self.assertEqual(error.status, record["status"])
            if record["status"] == 500:
                self.assertEqual(str(error), record["log"][-1].replace("{SITE}", str(SITE)))
            return
        self.assertIsNone(error, record["path"])
        self.assertEqual(response.status, record["status"])
        body, expected = response.body.decode(), record["body"]
        if name == "context.html":  # listFiles gives the directory's order, which differs per checkout
            body, expected = _sort_listing(body), _sort_listing(expected)
        self.assertEqual(body, expected)
        for name_ in COMPARED:
            actual, recorded = response.headers.get_all(name_), record["headers"].get(name_, [])
            if name_ in ("Etag", "Last-Modified"):
                # Both come from the file's mtime, which is the checkout's, not the recording's.
                self.assertEqual(len(actual), len(recorded), name_)
            else:
                self.assertEqual(actual, recorded, name_)

    def test_basic(self) -> None:
        """Actions, trim markers, variables, control structures, built-ins and printf verbs."""
        self.check("basic.html")

    def test_sprig(self) -> None:
        """Sprig's string, list, dict, math, encoding, regexp, hash and date functions."""
        self.check("sprig.html")

    def test_context(self) -> None:
        """The request views, cookies, response headers, placeholders, env, files, stripHTML, humanize."""
        self.check("context.html")

    def test_include(self) -> None:
        """``include`` runs a file with ``.Args``; its defines stay inside it."""
        self.check("include.html")

    def test_import(self) -> None:
        """``import`` adds a file's defines to the page."""
        self.check("import.html")

    def test_markdown(self) -> None:
        """``markdown`` renders CommonMark with tables, strikethrough and heading ids as goldmark."""
        self.check("markdown.html")

    def test_markdown_more(self) -> None:
        """Heading ids from the source line (non-ASCII dropped, repeats numbered), code blocks, raw HTML."""
        self.check("markdown_more.html")

    def test_markdown_site(self) -> None:
        """Caddy's documented Markdown-site pattern: include, splitFrontMatter, default, markdown."""
        self.check("markdown_site.html")

    def test_front_matter(self) -> None:
        """``splitFrontMatter`` reads YAML, TOML and JSON front matter."""
        self.check("frontmatter.html")

    def test_plain_text(self) -> None:
        """text/plain is templated too."""
        self.check("plain.txt")

    def test_css_untouched(self) -> None:
        """A Content-Type outside ``mime_types`` passes through as the file server wrote it."""
        self.check("style.css")

    def test_delimiters(self) -> None:
        """Custom delimiters inside a route, under the site-wide ``templates`` (both run)."""
        self.check("delims_page.html")

    def test_parse_error(self) -> None:
        """A template that does not parse is a 500 with Go's message."""
        self.check("parse_error.html")

    def test_exec_error(self) -> None:
        """A function error names the template, line, column and command."""
        self.check("exec_error.html")

    def test_field_error(self) -> None:
        """An unknown field of the context is Go's error."""
        self.check("field_error.html")

    def test_undefined_function(self) -> None:
        """An unknown function fails at parse time."""
        self.check("undefined_func.html")

    def test_include_missing(self) -> None:
        """A missing include is Go's ``open … : no such file or directory``."""
        record = json.loads((EXPECTED / "include_missing.html.json").read_text())
        _, error = fetch(record["path"])
        assert error is not None
        self.assertEqual(error.status, 500)
        expected = record["log"][-1].replace("{SITE}", str(SITE))
        self.assertEqual(str(error), expected)

    def test_http_error(self) -> None:
        """``httpError`` answers with its status."""
        self.check("http_error.html")

    def test_http_include(self) -> None:
        """``httpInclude`` of a page whose template fails is ``http 500``."""
        self.check("httpinclude.html")

    def test_http_include_ok(self) -> None:
        """``httpInclude`` runs a virtual GET through the server; its body is executed again."""
        self.check("httpinclude_ok.html")

    def test_http_include_cycle(self) -> None:
        """A page that includes itself stops at the third level: ``virtual request cycle``."""
        self.check("httpinclude_self.html")

    def test_http_include_404(self) -> None:
        """An included request answered with an error status is ``http NNN``."""
        self.check("httpinclude_404.html")

    def test_wrong_args(self) -> None:
        """A function given too many arguments."""
        self.check("wrongargs.html")

    def test_and_without_args(self) -> None:
        """``and`` needs an argument."""
        self.check("and_noargs.html")


# Cases where txcaddy knowingly differs (docs/templates.md): only the status is compared.
KNOWN_DIFFERENCES = {
    "/cases/b_yaml_bad.html": "YAML errors are PyYAML's words, not yaml.v3's",
}


class CaddyCasesTests(SynchronousTestCase):
    """Each ``cases/*.html`` page (one construct or one error) renders or fails as in Caddy."""

    def test_cases(self) -> None:
        """Every recorded case: the same body, or the same status and error text."""
        records = sorted(EXPECTED.glob("cases_*.json"))
        self.assertGreater(len(records), 40)
        mismatches = []
        for path in records:
            record = json.loads(path.read_text())
            response, error = fetch(record["path"])
            if record["status"] >= 400:
                got = (error.status, str(error)) if error is not None else (response.status, response.body.decode())
                want = (record["status"], record["log"][-1].replace("{SITE}", str(SITE)))
            else:
                got = (response.status, response.body.decode()) if error is None else (error.status, str(error))
                want = (record["status"], record["body"])
            if record["path"] in KNOWN_DIFFERENCES:
                got, want = (got[0], ""), (want[0], "")
            if got != want:
                mismatches.append(f"{record['path']}:\n  got  {got!r}\n  want {want!r}")
        self.assertEqual(mismatches, [], "\n".join(mismatches))


@implementer(ILogObserver)
class _Events:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.events.append(event)


class HandlerTests(SynchronousTestCase):
    """The handler around the file server: buffering, headers, errors, configuration."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        self.root.mkdir()

    def handler(self, **templates: Any) -> Any:
        return LoadContext().load_handler({"handler": "subroute", "routes": [{"handle": [
            {"handler": "vars", "root": str(self.root)},
            {"handler": "templates", **templates},
            {"handler": "file_server"},
        ]}]})

    def test_broken_template_is_logged_500_and_serving_goes_on(self) -> None:
        """A template error answers 500 with no body, is logged, and the next request is served."""
        (self.root / "bad.html").write_text("{{ if }}")
        (self.root / "good.html").write_text("{{ 1 }}+{{ 2 }}")
        events = _Events()
        globalLogPublisher.addObserver(events)
        self.addCleanup(globalLogPublisher.removeObserver, events)
        server = FakeServer(self.handler())
        bad = FakeResponse()
        server.handle(make_request("GET", "/bad.html", server=server), bad)
        good = FakeResponse()
        server.handle(make_request("GET", "/good.html", server=server), good)
        self.assertEqual((bad.status, bad.body), (500, b""))
        self.assertIsNone(bad.headers.get("Content-Length"))
        self.assertEqual((good.status, good.body), (200, b"1+2"))
        logged = [e for e in events.events if e.get("log_level") == LogLevel.error and "error" in e]
        self.assertEqual([e["error"] for e in logged], ["template: /bad.html:1: missing value for if"])

    def test_headers_of_the_output(self) -> None:
        """Content-Length is the output's; the file's ETag, Last-Modified and Accept-Ranges go."""
        (self.root / "page.html").write_text("{{ repeat 3 \"ab\" }}")
        response, error = fetch("/page.html", self.handler())
        self.assertIsNone(error)
        self.assertEqual(response.body, b"ababab")
        self.assertEqual(response.headers.get("Content-Length"), "6")
        for name in ("Etag", "Last-Modified", "Accept-Ranges"):
            self.assertIsNone(response.headers.get(name), name)

    def test_other_types_pass_through(self) -> None:
        """A response whose type is not listed is streamed untouched, validators included."""
        (self.root / "x.png").write_bytes(b"\x89PNG{{ not a template }}")
        response, error = fetch("/x.png", self.handler())
        self.assertIsNone(error)
        self.assertEqual(response.body, b"\x89PNG{{ not a template }}")
        self.assertIsNotNone(response.headers.get("Etag"))

    def test_mime_types(self) -> None:
        """``mime_types`` replaces the default list (substring match on Content-Type)."""
        (self.root / "s.css").write_text("a{{ 1 }}")
        (self.root / "p.html").write_text("b{{ 2 }}")
        handler = self.handler(mime_types=["text/css"])
        self.assertEqual(fetch("/s.css", handler)[0].body, b"a1")
        self.assertEqual(fetch("/p.html", handler)[0].body, b"b{{ 2 }}")

    def test_large_file_through_the_producer(self) -> None:
        """A file above the file server's chunk size (sent by a pull producer) is buffered whole."""
        (self.root / "big.txt").write_text("x" * 300_000 + "{{ len \"abc\" }}")
        response, error = fetch("/big.txt", self.handler())
        self.assertIsNone(error)
        self.assertEqual(response.body, b"x" * 300_000 + b"3")
        self.assertEqual(response.headers.get("Content-Length"), "300001")

    def test_file_root(self) -> None:
        """``file_root`` is where include and friends read, not the site root."""
        other = Path(self.mktemp())
        other.mkdir()
        (other / "part.txt").write_text("from {{ .Args }}")
        (self.root / "p.html").write_text("{{ include \"/part.txt\" \"root\" }}|{{ fileExists \"../p.html\" }}")
        response, error = fetch("/p.html", self.handler(file_root=str(other)))
        self.assertIsNone(error)
        self.assertEqual(response.body, b"from [root]|false")

    def test_include_cannot_leave_the_root(self) -> None:
        """``..`` in an included name is cleaned away, as Go's ``http.Dir`` does."""
        (self.root / "secret.txt").write_text("inside")
        (self.root / "p.html").write_text("{{ include \"../../../secret.txt\" }}")
        self.assertEqual(fetch("/p.html", self.handler())[0].body, b"inside")

    def test_http_error_status(self) -> None:
        """``httpError`` is the response's status, through the error routes."""
        (self.root / "p.html").write_text("before {{ httpError 403 }}")
        _, error = fetch("/p.html", self.handler())
        assert error is not None
        self.assertEqual(error.status, 403)

    def test_status_kept(self) -> None:
        """The status the next handler wrote is the status of the templated response."""
        handler = LoadContext().load_handler({"handler": "subroute", "routes": [{"handle": [
            {"handler": "templates"},
            {"handler": "static_response", "status_code": 418, "body": "{{ upper \"tea\" }}",
             "headers": {"Content-Type": ["text/plain"]}},
        ]}]})
        response, error = fetch("/", handler)
        self.assertIsNone(error)
        self.assertEqual((response.status, response.body), (418, b"TEA"))

    def test_delimiters_must_be_two(self) -> None:
        """Any count of delimiters but 0 or 2 is refused at load time, as Caddy's Validate."""
        with self.assertRaises(ConfigError) as caught:
            self.handler(delimiters=["<<"])
        self.assertIn("delimiters must consist of exactly two elements", str(caught.exception))

    def test_defaults(self) -> None:
        """Caddy's defaults: HTML, plain text and Markdown; root from ``{http.vars.root}``."""
        handler = Templates()
        self.assertEqual(handler.mime_types, ["text/html", "text/plain", "text/markdown"])
        self.assertEqual(handler.file_root.text, "{http.vars.root}")


class AdapterFixturesTests(SynchronousTestCase):
    """The handler JSON the Caddyfile adapter makes loads with its settings."""

    def test_adapter_fixtures_load(self) -> None:
        """Each ``templates`` object of the adapter fixtures builds a handler carrying its options."""
        loaded = []
        for where, config in fixture_handlers("templates"):
            handler = LoadContext().load_handler(config)
            self.assertIsInstance(handler, Templates, where)
            loaded.append((handler.file_root.text, handler.mime_types, handler.delimiters))
        self.assertIn(("/srv/templates", ["text/html", "text/plain"], ("[[", "]]")), loaded)
        self.assertIn(("{http.vars.root}", ["text/html", "text/plain", "text/markdown"], ("", "")), loaded)


class RealServerTests(SynchronousTestCase):
    """Through txcaddy's ``HTTPServer``: ``httpInclude`` goes through the server's own routes."""

    def test_http_include_and_errors_through_the_server(self) -> None:
        """An httpInclude page renders; a broken page is an empty 500; the next request is fine."""
        server = HTTPServer("srv0", [":80"], RouteList([Route([site_handler()])]))
        results = []
        for path in ("/httpinclude_ok.html", "/cases/nil_cmd.html", "/cases/eq_multi.html"):
            response = FakeResponse()
            server.handle(make_request("GET", path, HEADERS, host=None, server=server), response)
            results.append((response.status, response.body, response.headers.get("Content-Length")))
        expected = json.loads((EXPECTED / "httpinclude_ok.html.json").read_text())["body"].encode()
        self.assertEqual(results, [
            (200, expected, str(len(expected))),
            (500, b"", None),
            (200, b"true true true", "14"),
        ])
