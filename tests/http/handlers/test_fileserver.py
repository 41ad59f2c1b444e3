"""``file_server``: Caddy 2.6.2's static file handler with Go's ServeContent semantics.

Expected values were checked against the real Caddy 2.6.2 where noted.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
from pathlib import Path
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.fs import file_mode
from txcaddy._go.http import http_date
from txcaddy._go.time import time_json
from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.errors import AbortConnection, HandlerError
from txcaddy.http.handlers import fileserver
from txcaddy.http.handlers.fileserver import (
    CHUNK_SIZE,
    FileServer,
    _Hide,
    calculate_etag,
    file_hidden,
    human_size,
    parse_range,
)
from txcaddy.testing import FakeResponse, FakeTLS, make_request, serve

from .support import fixture_handlers

SECRET = b"TOP-SECRET-7f3a9c: this file lives outside the site root"
MTIME_NS = 1_641_092_645_123_456_789  # 2022-01-02T03:04:05.123456789Z
MTIME = "Sun, 02 Jan 2022 03:04:05 GMT"


def load(config: dict[str, Any]) -> FileServer:
    return LoadContext().load_handler({"handler": "file_server", **config})


def next_handler(request, response) -> None:
    response.headers.set("X-Next", "yes")
    response.write(b"from next")


class Site:
    """A site root in a temporary directory, with a secret file beside it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "site"
        root = self.root
        (root / "sub").mkdir(parents=True)
        (root / "empty").mkdir()
        (root / "list" / "zdir").mkdir(parents=True)
        (root / "list" / "Adir").mkdir()
        (base / "secretdir").mkdir()
        (base / "secret.txt").write_bytes(SECRET)
        (base / "secretdir" / "secret2.txt").write_bytes(SECRET)
        files = {
            "a.txt": b"hello world\n",
            "index.html": b"<p>home</p>",
            "page.html": b"<h1>page</h1>",
            "noext": b"plain text without extension",
            "data.unknownext": b"\x00\x01binary",
            "style.css": b"body{color:red}",
            "sub/index.txt": b"sub index",
            "sub/page.txt": b"sub page",
            ".hidden": b"dotfile",
            "x.secret": b"hidden by glob",
            "Caddyfile": b":80 {\n\tfile_server\n}\n",
            "list/b.txt": b"x",
            "list/c.txt": b"yy",
            "list/A <img src=x onerror=alert(1)>&'q.txt": b"xyz",
            "r.bin": b"0123456789abcdef",
        }
        for name, data in files.items():
            (root / name).write_bytes(data)
            os.utime(root / name, ns=(MTIME_NS, MTIME_NS))
        for name in ("list/b.txt", "list/c.txt", "list/A <img src=x onerror=alert(1)>&'q.txt"):
            os.utime(root / name, ns=(MTIME_NS + 10**9 * len(name), MTIME_NS + 10**9 * len(name)))
        os.symlink(base / "secret.txt", root / "escape.txt")
        os.symlink("..", root / "updir")
        os.symlink(base / "secretdir", root / "outdir")
        os.symlink("a.txt", root / "link.txt")
        os.symlink("sub", root / "linkdir")
        os.symlink("../sub", root / "list" / "sublink")
        os.symlink("../../secret.txt", root / "list" / "leak")
        os.symlink("nothere", root / "list" / "broken")

    @property
    def path(self) -> str:
        return str(self.root)


class FileServerTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.site = Site(Path(self.mktemp()))

    def fetch(self, target: str, headers: Any = None, method: str = "GET", config: dict[str, Any] | None = None,
              request_setup: Any = None, tls: Any = None) -> tuple[int, Any, bytes]:
        """Status, header fields and body; a HandlerError gives its status and no fields."""
        handler = load({"root": self.site.path, **(config or {})})
        request = make_request(method, target, headers, tls=tls)
        if request_setup is not None:
            request_setup(request)
        try:
            response = serve(handler, request, next=next_handler)
        except HandlerError as error:
            return error.status, None, b""
        return response.status, response.headers, response.body


class PathTraversalTests(FileServerTestCase):
    """No request reads anything outside the root (a secret file sits right beside it)."""

    ATTEMPTS = [
        ("/../secret.txt", 404),
        ("/../../secret.txt", 404),
        ("/..%2fsecret.txt", 404),
        ("/..%2Fsecret.txt", 404),
        ("/%2e%2e/secret.txt", 404),
        ("/%2e%2e%2fsecret.txt", 404),
        ("/%2E%2E%2Fsecret.txt", 404),
        ("/.%2e/secret.txt", 404),
        ("/%2e./secret.txt", 404),
        ("/%2e%2e%2f%2e%2e%2fsecret.txt", 404),
        ("/..%5csecret.txt", 404),
        ("/%5c..%5csecret.txt", 404),
        ("/..%5c..%5csecret.txt", 404),
        ("/..\\secret.txt", 404),
        ("//../secret.txt", 404),
        ("///..//..//secret.txt", 404),
        ("/sub/../../secret.txt", 404),
        ("/sub/%2e%2e/%2e%2e/secret.txt", 404),
        ("/sub/..%2f..%2fsecret.txt", 404),
        ("/./../secret.txt", 404),
        ("/.../secret.txt", 404),
        ("/..;/secret.txt", 404),
        ("/%252e%252e/secret.txt", 404),
        ("/%252e%252e%252fsecret.txt", 404),
        ("/secretdir/secret2.txt", 404),
        ("/../secretdir/secret2.txt", 404),
        ("/secret.txt%00", 500),  # Go's stat fails on the NUL byte: Caddy answers 500
        ("/..%00/secret.txt", 500),
        ("/%00/../secret.txt", 404),
        ("/%00../secret.txt", 500),
        ("/escape.txt", 404),  # symlink to the secret file
        ("/updir/secret.txt", 404),  # symlink to the root's parent
        ("/updir/secretdir/secret2.txt", 404),
        ("/outdir/secret2.txt", 404),  # symlink to a directory outside
        ("/outdir/", 404),
        ("/outdir", 404),
        ("/updir/", 404),
        ("/ESCAPE.TXT", 404),  # the file system is case-sensitive
        ("/Secret.txt", 404),
        ("/SECRET.TXT", 404),
        ("/../SECRET.TXT", 404),
        ("/A.TXT", 404),
    ]

    def absolute_attempts(self) -> list[tuple[str, int]]:
        secret = str(self.site.base / "secret.txt")
        return [(secret, 404), ("/" + secret, 404), (secret.replace("/", "%2f"), 404), ("/.." * 12 + secret, 404)]

    def assert_no_leak(self, target: str, expected: int, config: dict[str, Any], headers: Any = None) -> None:
        status, fields, body = self.fetch(target, headers, config=config)
        self.assertEqual(status, expected, (target, config))
        self.assertNotIn(SECRET, body, (target, config))
        self.assertNotIn(b"TOP-SECRET", body, (target, config))
        for _, value in (fields.items() if fields is not None else ()):
            self.assertNotIn("TOP-SECRET", value)

    def test_plain(self) -> None:
        """No traversal attempt, encoded, via symlink or absolute, reads outside the root."""
        for target, expected in self.ATTEMPTS + self.absolute_attempts():
            self.assert_no_leak(target, expected, {})

    def test_with_browse_and_odd_index_names(self) -> None:
        """Listings and index names with .. leak nothing outside the root, in HTML or JSON."""
        config = {"browse": {}, "index_names": ["../secret.txt", "../../secret.txt", "/../secret.txt"]}
        for target, expected in self.ATTEMPTS + self.absolute_attempts():
            self.assert_no_leak(target, expected, config)
            self.assert_no_leak(target, expected, config, {"Accept": "application/json"})

    def test_with_precompressed(self) -> None:
        """A precompressed sidecar that links outside the root is never served."""
        (self.site.base / "secret.txt.gz").write_bytes(SECRET)
        os.symlink(self.site.base / "secret.txt.gz", self.site.root / "a.txt.gz")
        config: dict[str, Any] = {"precompressed": {"gzip": {}}}
        for target, expected in self.ATTEMPTS + [("/a.txt", 200)]:
            self.assert_no_leak(target, expected, config, {"Accept-Encoding": "gzip"})

    def test_with_pass_thru_and_status(self) -> None:
        """With pass_thru a refused traversal goes to the next handler, never to the secret."""
        for target, expected in self.ATTEMPTS:
            status, _, body = self.fetch(target, config={"pass_thru": True, "status_code": 203})
            self.assertNotIn(SECRET, body)
            if expected == 404:
                self.assertEqual((status, body), (200, b"from next"), target)

    def test_listing_does_not_follow_links_out(self) -> None:
        """A listing reports a link out of the root by the link's own size, not the target's."""
        status, _, body = self.fetch("/list/", {"Accept": "application/json"}, config={"browse": {}})
        self.assertEqual(status, 200)
        items = {item["name"]: item for item in json.loads(body)}
        self.assertEqual(items["leak"]["size"], len("../../secret.txt"))  # the link's own size
        self.assertFalse(items["leak"]["is_dir"])
        status, _, body = self.fetch("/", config={"browse": {}, "index_names": []})
        self.assertEqual(status, 200)
        self.assertNotIn(SECRET, body)

    def test_matcher_never_points_outside(self) -> None:
        """The file matcher matches none of the traversal attempts, only paths inside the root."""
        from txcaddy.http.handlers._filematch import FileMatcher

        matcher = FileMatcher(root=self.site.path, try_files=["{http.request.uri.path}", "{http.request.uri.path}/"])
        real_root = os.path.realpath(self.site.root)
        for target, _ in self.ATTEMPTS:  # every one names something outside the root, or nothing
            request = make_request("GET", target)
            self.assertFalse(matcher.match(request), target)
            self.assertNotIn("http.matchers.file.absolute", request.placeholders, target)
        for target in ("/a.txt", "/link.txt", "/linkdir/page.txt", "/sub"):  # what is inside matches
            request = make_request("GET", target)
            self.assertTrue(matcher.match(request), target)
            absolute = request.placeholders["http.matchers.file.absolute"]
            self.assertTrue(os.path.realpath(absolute).startswith(real_root + "/"), target)

    def test_root_itself_through_a_symlink_works(self) -> None:
        """A root that is itself a symlink serves the files inside it."""
        os.symlink(os.path.abspath(self.site.root), self.site.base / "current")
        handler = load({"root": str(self.site.base / "current")})
        response = serve(handler, make_request("GET", "/a.txt"))
        self.assertEqual((response.status, response.body), (200, b"hello world\n"))


class ServeFileTests(FileServerTestCase):
    def test_file(self) -> None:
        """A file is served with Caddy's ETag, type, Last-Modified, Accept-Ranges and length."""
        status, fields, body = self.fetch("/a.txt")
        self.assertEqual((status, body), (200, b"hello world\n"))
        self.assertEqual(list(fields.items()), [
            ("Etag", '"r52b6tc"'),  # Caddy 2.6.2 gives this for the same time and size
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Last-Modified", MTIME),
            ("Accept-Ranges", "bytes"),
            ("Content-Length", "12"),
        ])

    def test_head_has_no_body(self) -> None:
        """HEAD of a file gives its Content-Length and no body."""
        status, fields, body = self.fetch("/a.txt", method="HEAD")
        self.assertEqual((status, body, fields.get("Content-Length")), (200, b"", "12"))

    def test_content_types(self) -> None:
        """Content-Type comes from the extension only; unknown extensions get none."""
        for target, expected in [("/page.html", "text/html; charset=utf-8"), ("/style.css", "text/css; charset=utf-8"),
                                 ("/noext", None), ("/data.unknownext", None)]:
            _, fields, _ = self.fetch(target)
            self.assertEqual(fields.get("Content-Type"), expected, target)  # no sniffing, as Caddy

    def test_content_type_set_earlier_is_kept(self) -> None:
        """A Content-Type set before file_server runs is kept."""
        _, fields, _ = self.fetch("/a.txt", request_setup=None, config={})
        handler = load({"root": self.site.path})
        response = FakeResponse()
        response.headers.set("Content-Type", "application/x-mine")
        serve(handler, make_request("GET", "/a.txt"), response)
        self.assertEqual(response.headers.get("Content-Type"), "application/x-mine")

    def test_etag_form(self) -> None:
        """calculate_etag gives Caddy's ETag: modification time and size in base 36."""
        info = os.stat(self.site.root / "a.txt")
        self.assertEqual(calculate_etag(info), '"r52b6tc"')
        big = self.site.root / "big"
        big.write_bytes(b"x" * 1_000_000)
        os.utime(big, ns=(0, 0))
        self.assertEqual(calculate_etag(os.stat(big)), '"0lfls"')

    def test_symlink_inside_root_is_followed(self) -> None:
        """Symlinks to files and directories inside the root are followed."""
        self.assertEqual(self.fetch("/link.txt")[::2], (200, b"hello world\n"))
        self.assertEqual(self.fetch("/linkdir/page.txt")[::2], (200, b"sub page"))

    def test_not_found_and_pass_thru(self) -> None:
        """Missing files are 404, a file used as a directory too; pass_thru calls next."""
        self.assertEqual(self.fetch("/missing")[0], 404)
        self.assertEqual(self.fetch("/a.txt/")[0], 404)  # "not a directory" means missing
        self.assertEqual(self.fetch("/a.txt/x")[0], 404)
        status, fields, body = self.fetch("/missing", config={"pass_thru": True})
        self.assertEqual((status, fields.get("X-Next"), body), (200, "yes", b"from next"))

    def test_root_from_vars_and_placeholders(self) -> None:
        """The root comes from the root var when unset, and expands placeholders."""
        handler = load({})
        request = make_request("GET", "/a.txt")
        request.vars["root"] = self.site.path
        self.assertEqual(serve(handler, request).body, b"hello world\n")
        handler = load({"root": "{http.vars.site}/sub"})
        request = make_request("GET", "/page.txt")
        request.vars["site"] = self.site.path
        self.assertEqual(serve(handler, request).body, b"sub page")

    def test_permission_denied_is_403(self) -> None:
        """Permission denied opening a file or stating a directory is a 403 with Go's message."""
        real_open, real_stat = os.open, os.stat
        target = str(self.site.root / "page.html")

        def denying_open(path: Any, *args: Any, **kwargs: Any) -> int:
            if path == target:
                raise PermissionError(errno.EACCES, "Permission denied", path)
            return real_open(path, *args, **kwargs)

        self.patch(os, "open", denying_open)
        self.assertEqual(self.fetch("/page.html")[0], 403)

        def denying_stat(path: Any, *args: Any, **kwargs: Any) -> Any:
            if str(path).endswith("/sub"):
                raise PermissionError(errno.EACCES, "Permission denied", path)
            return real_stat(path, *args, **kwargs)

        self.patch(os, "stat", denying_stat)
        error = self.assertRaises(HandlerError, serve, load({"root": self.site.path}), make_request("GET", "/sub"))
        self.assertEqual(error.status, 403)
        self.assertEqual(error.message, f"stat {self.site.path}/sub: permission denied")

    def test_out_of_descriptors(self) -> None:
        """Running out of descriptors: a file reads as missing, a listing is 503 + Retry-After."""
        real_open = os.open

        def exhausted(path: Any, *args: Any, **kwargs: Any) -> int:
            if str(path).endswith(("a.txt", "list/")):
                raise OSError(errno.EMFILE, "Too many open files", path)
            return real_open(path, *args, **kwargs)

        self.patch(os, "open", exhausted)
        # Caddy's mapDirOpenError walks every element, the file too: a regular file reads as missing
        self.assertEqual(self.fetch("/a.txt")[0], 404)
        # a directory opened for a listing: 503, and clients come back at different times
        response = FakeResponse()
        handler = load({"root": self.site.path, "browse": {}})
        error = self.assertRaises(HandlerError, serve, handler, make_request("GET", "/list/"), response)
        self.assertEqual(error.status, 503)
        self.assertIn(response.headers.get("Retry-After"), ("2", "3", "4"))

    def test_fifo_is_not_served_and_does_not_block(self) -> None:
        """A FIFO is not served (404) and opening it does not block."""
        os.mkfifo(self.site.root / "pipe")
        self.assertEqual(self.fetch("/pipe")[0], 404)

    def test_no_descriptor_leaks(self) -> None:
        """Serving, 304s, 412s, 416s, multi-ranges and refusals leave no descriptor open."""
        before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
        for target, headers in [("/a.txt", {}), ("/a.txt", {"If-None-Match": '"r52b6tc"'}),
                                ("/a.txt", {"If-Match": '"x"'}), ("/a.txt", {"Range": "bytes=99-"}),
                                ("/a.txt", {"Range": "bytes=1-2,4-5"}), ("/escape.txt", {}), ("/empty/", {})]:
            self.fetch(target, headers)
            self.fetch(target, headers, method="HEAD")
        if before is not None:
            self.assertEqual(len(os.listdir("/proc/self/fd")), before)


class DirectoryTests(FileServerTestCase):
    def test_index_files(self) -> None:
        """A directory serves its first index file; none or no index names gives 404."""
        self.assertEqual(self.fetch("/")[::2], (200, b"<p>home</p>"))
        self.assertEqual(self.fetch("/sub/")[::2], (200, b"sub index"))  # index.txt after index.html
        self.assertEqual(self.fetch("/empty/")[0], 404)
        self.assertEqual(self.fetch("/", config={"index_names": ["page.html"]})[::2], (200, b"<h1>page</h1>"))
        self.assertEqual(self.fetch("/", config={"index_names": []})[0], 404)
        # /index.html is served as it is (Caddy does not redirect it to /)
        self.assertEqual(self.fetch("/index.html")[::2], (200, b"<p>home</p>"))

    def test_canonical_redirect_adds_slash(self) -> None:
        """A directory without its slash is redirected 308 to it, with Caddy 2.6.2's body."""
        status, fields, body = self.fetch("/sub")
        self.assertEqual((status, fields.get("Location"), fields.get("Content-Type")),
                         (308, "/sub/", "text/html; charset=utf-8"))
        self.assertEqual(body, b'<a href="/sub/">Permanent Redirect</a>.\n\n')  # as Caddy 2.6.2
        status, fields, body = self.fetch("/sub", method="HEAD")
        self.assertEqual((status, fields.get("Content-Type"), body), (308, "text/html; charset=utf-8", b""))
        status, fields, body = self.fetch("/sub", method="POST")
        self.assertEqual((status, fields.get("Content-Type"), body), (308, None, b""))
        self.assertEqual(self.fetch("/sub?x=1")[1].get("Location"), "/sub/")  # 2.6.2 drops the query

    def test_canonical_redirect_is_never_open(self) -> None:
        """The slash redirect for //sub is /sub/, never a scheme-relative //sub/."""
        self.assertEqual(self.fetch("//sub")[1].get("Location"), "/sub/")
        self.assertEqual(self.fetch("///sub")[1].get("Location"), "/sub/")

    def test_canonical_redirect_escapes_non_ascii(self) -> None:
        """The slash redirect's Location escapes non-ASCII names in lower-case hex."""
        (self.site.root / "ünï").mkdir()
        (self.site.root / "ünï" / "index.html").write_text("x")
        status, fields, _ = self.fetch("/%C3%BCn%C3%AF")
        self.assertEqual((status, fields.get("Location")), (308, "/%c3%bcn%c3%af/"))

    def test_canonical_redirect_removes_slash_after_rewrite(self) -> None:
        """A file asked for with a trailing slash is redirected to the name without it."""
        status, fields, _ = self.fetch("/a.txt/", request_setup=lambda r: r.set_path("/a.txt"))
        self.assertEqual((status, fields.get("Location")), (308, "/a.txt"))

    def test_no_redirect_when_the_file_name_was_rewritten_or_disabled(self) -> None:
        """No slash redirect after a rewrite of the name, or with canonical_uris off."""
        self.assertEqual(self.fetch("/other", request_setup=lambda r: r.set_path("/sub"))[::2], (200, b"sub index"))
        self.assertEqual(self.fetch("/sub", config={"canonical_uris": False})[::2], (200, b"sub index"))

    def test_hide(self) -> None:
        """hide entries by name, glob, absolute path or placeholder make files 404."""
        config = {"hide": [".hidden", "*.secret", str(self.site.root / "Caddyfile")]}
        for target in ("/.hidden", "/x.secret", "/Caddyfile"):
            self.assertEqual(self.fetch(target)[0], 200, target)
            self.assertEqual(self.fetch(target, config=config)[0], 404, target)
        self.assertEqual(self.fetch("/", config={"hide": ["index.html"]})[0], 404)  # index.txt absent at /
        self.assertEqual(self.fetch("/sub/", config={"hide": ["sub"]})[0], 404)
        self.assertEqual(self.fetch("/sub/page.txt", config={"hide": [str(self.site.root / "sub")]})[0], 404)
        handler = load({"root": self.site.path, "hide": ["{http.vars.hidden}"]})
        request = make_request("GET", "/a.txt")
        request.vars["hidden"] = "a.txt"
        self.assertRaises(HandlerError, serve, handler, request)

    def test_hide_relative_entry_is_from_the_working_directory(self) -> None:
        """A relative hide entry is taken from the working directory, as the adapter writes it."""
        relative = os.path.relpath(self.site.root / "Caddyfile")  # what the adapter adds: ./Caddyfile
        self.assertEqual(self.fetch("/Caddyfile", config={"hide": ["./" + relative]})[0], 404)

    def test_file_hidden_rules(self) -> None:
        """file_hidden agrees with Caddy's TestFileHidden table."""
        # Caddy's TestFileHidden
        for hide, path, expected in [
            ([], "", False), ([".gitignore"], "/.gitignore", True), ([".git"], "/.gitignore", False),
            (["/.git"], "/.gitignore", False), ([".git"], "/.git", True), ([".git"], "/.git/foo", True),
            ([".git"], "/foo/.git/bar", True), (["/prefix"], "/prefix/foo", True),
            (["/foo/*/bar"], "/foo/asdf/bar", True), (["*.txt"], "/foo/bar.txt", True),
            (["/foo/bar/*.txt"], "/foo/bar/baz.txt", True), (["/foo/bar/*.txt"], "/foo/bar.txt", False),
            (["/foo/bar/*.txt"], "/foo/bar/index.html", False), (["/foo"], "/foo", True),
            (["/foo"], "/foobar", False), (["first", "second"], "/second", True), (["["], "/[", False),
        ]:
            self.assertEqual(file_hidden(path, [_Hide(h) for h in hide]), expected, (hide, path))


class StatusTests(FileServerTestCase):
    def test_status_override(self) -> None:
        """status_code replaces 200: 0 or less is ignored, a non-number is 500, 1000 aborts."""
        self.assertEqual(self.fetch("/a.txt", config={"status_code": 404})[::2], (404, b"hello world\n"))
        self.assertEqual(self.fetch("/a.txt", config={"status_code": "0"})[0], 200)
        self.assertEqual(self.fetch("/a.txt", config={"status_code": "-5"})[0], 200)
        status, _, _ = self.fetch("/a.txt", config={"status_code": "{http.vars.code}"},
                                  request_setup=lambda r: r.vars.update(code="410"))
        self.assertEqual(status, 410)
        self.assertEqual(self.fetch("/a.txt", config={"status_code": True})[0], 500)  # "true" is not a number
        self.assertEqual(self.fetch("/a.txt", config={"status_code": "4o4"})[0], 500)
        self.assertRaises(AbortConnection, self.fetch, "/a.txt", config={"status_code": 1000})

    def test_error_routes_use_the_error_status(self) -> None:
        """In error routes the error's status replaces every status ServeContent writes."""
        def in_error_route(request: Any) -> None:
            request.error = HandlerError(502)

        self.assertEqual(self.fetch("/a.txt", request_setup=in_error_route)[::2], (502, b"hello world\n"))
        self.assertEqual(self.fetch("/a.txt", config={"status_code": 201}, request_setup=in_error_route)[0], 201)
        # every status ServeContent writes is replaced, as Caddy's wrapper does
        status, fields, body = self.fetch("/a.txt", {"If-None-Match": '"r52b6tc"'}, request_setup=in_error_route)
        self.assertEqual((status, body, fields.get("Content-Type")), (502, b"", None))
        status, fields, body = self.fetch("/a.txt", {"Range": "bytes=0-4"}, request_setup=in_error_route)
        self.assertEqual((status, body, fields.get("Content-Range")), (502, b"hello", "bytes 0-4/12"))


class ConditionalTests(FileServerTestCase):
    def test_preconditions(self) -> None:
        """If-Match, If-None-Match and the date preconditions give 200, 304 or 412 as Go does."""
        etag = '"r52b6tc"'
        for headers, method, expected in [
            ({"If-None-Match": etag}, "GET", 304),
            ({"If-None-Match": "W/" + etag}, "GET", 304),
            ({"If-None-Match": '"other", ' + etag}, "GET", 304),
            ({"If-None-Match": "*"}, "HEAD", 304),
            ({"If-None-Match": etag}, "POST", 412),
            ({"If-None-Match": '"other"'}, "GET", 200),
            ({"If-None-Match": "garbage"}, "GET", 200),
            ({"If-None-Match": '"other"', "If-Modified-Since": MTIME}, "GET", 200),  # ETags win
            ({"If-Modified-Since": MTIME}, "GET", 304),
            ({"If-Modified-Since": "Sun, 02 Jan 2022 03:04:04 GMT"}, "GET", 200),
            ({"If-Modified-Since": "Sunday, 02-Jan-22 03:04:05 GMT"}, "GET", 304),
            ({"If-Modified-Since": "Sun Jan  2 03:04:05 2022"}, "GET", 304),
            ({"If-Modified-Since": "Sun, 02 Jan 2022 03:04:05.5 GMT"}, "GET", 304),
            ({"If-Modified-Since": "yesterday"}, "GET", 200),
            ({"If-Modified-Since": MTIME}, "POST", 200),
            ({"If-Match": etag}, "GET", 200),
            ({"If-Match": "*"}, "GET", 200),
            ({"If-Match": "W/" + etag}, "GET", 412),  # a weak tag never matches strongly
            ({"If-Match": '"other"'}, "GET", 412),
            ({"If-Match": '"other"'}, "POST", 412),
            ({"If-Unmodified-Since": MTIME}, "GET", 200),
            ({"If-Unmodified-Since": "Sun, 02 Jan 2022 03:04:04 GMT"}, "GET", 412),
            ({"If-Unmodified-Since": "junk"}, "GET", 200),
            ({"If-Match": etag, "If-Unmodified-Since": "Sun, 02 Jan 2022 03:04:04 GMT"}, "GET", 200),
        ]:
            status, fields, body = self.fetch("/a.txt", headers, method=method)
            self.assertEqual(status, expected, (headers, method))
            if status == 304:
                self.assertEqual(body, b"")
                self.assertEqual(fields.get("Etag"), etag)
                for gone in ("Content-Type", "Content-Length", "Last-Modified"):
                    self.assertNotIn(gone, fields)
            if status == 412:
                self.assertEqual(body, b"")


class RangeTests(FileServerTestCase):
    def test_single_ranges(self) -> None:
        """A single range gives 206 with its slice, Content-Range and Content-Length."""
        for value, body, content_range in [
            ("bytes=2-4", b"234", "bytes 2-4/16"),
            ("bytes=-3", b"def", "bytes 13-15/16"),
            ("bytes=10-", b"abcdef", "bytes 10-15/16"),
            ("bytes=14-100", b"ef", "bytes 14-15/16"),
            ("bytes= 1 - 2 ", b"12", "bytes 1-2/16"),
            ("bytes=-100", b"0123456789abcdef", "bytes 0-15/16"),
            ("bytes=99-,3-3", b"3", "bytes 3-3/16"),
        ]:
            status, fields, got = self.fetch("/r.bin", {"Range": value})
            self.assertEqual((status, got, fields.get("Content-Range"), fields.get("Content-Length")),
                             (206, body, content_range, str(len(body))), value)

    def test_invalid_and_unsatisfiable(self) -> None:
        """Bad or unsatisfiable ranges are 416 with Go's text body and headers."""
        for value, message in [("bytes=20-", "invalid range: failed to overlap\n"), ("chars=1-2", "invalid range\n"),
                               ("bytes=5-2", "invalid range\n"), ("bytes=x-y", "invalid range\n"),
                               ("bytes=--1", "invalid range\n"), ("bytes=1", "invalid range\n")]:
            status, fields, body = self.fetch("/r.bin", {"Range": value})
            self.assertEqual((status, body.decode()), (416, message), value)
            self.assertEqual(fields.get("Content-Type"), "text/plain; charset=utf-8")
            self.assertEqual(fields.get("X-Content-Type-Options"), "nosniff")
            self.assertEqual(fields.get("Content-Range"), "bytes */16" if "overlap" in message else None)

    def test_ignored_ranges(self) -> None:
        """Ranges larger than the file, or with a stale If-Range, are ignored: 200 whole."""
        for headers in [{"Range": "bytes=0-10,0-10"},  # more than the file: ignored
                        {"Range": "bytes=1-2", "If-Range": '"other"'},
                        {"Range": "bytes=1-2", "If-Range": "Sun, 02 Jan 2022 03:04:06 GMT"},
                        {"Range": ""}]:
            status, _, body = self.fetch("/r.bin", headers)
            self.assertEqual((status, body), (200, b"0123456789abcdef"), headers)
        for if_range in ('"tp4hlug"', MTIME):
            etag = calculate_etag(os.stat(self.site.root / "r.bin"))
            value = etag if if_range.startswith('"') else if_range
            status, _, body = self.fetch("/r.bin", {"Range": "bytes=1-2", "If-Range": value})
            self.assertEqual((status, body), (206, b"12"), value)
        # a range for other methods too, as Go does
        self.assertEqual(self.fetch("/r.bin", {"Range": "bytes=1-2"}, method="POST")[::2], (206, b"12"))

    def test_multiple_ranges(self) -> None:
        """Several ranges give a multipart/byteranges body byte for byte as Caddy 2.6.2's."""
        status, fields, body = self.fetch("/r.bin", {"Range": "bytes=2-4,10-"})
        self.assertEqual(status, 206)
        content_type = fields.get("Content-Type")
        boundary = content_type.partition("boundary=")[2]
        self.assertEqual(content_type, "multipart/byteranges; boundary=" + boundary)
        self.assertTrue(re.fullmatch("[0-9a-f]{60}", boundary))
        expected = (f"--{boundary}\r\nContent-Range: bytes 2-4/16\r\nContent-Type: \r\n\r\n234\r\n"
                    f"--{boundary}\r\nContent-Range: bytes 10-15/16\r\nContent-Type: \r\n\r\nabcdef\r\n"
                    f"--{boundary}--\r\n").encode()
        self.assertEqual(body, expected)  # byte for byte Caddy 2.6.2's, but for the boundary
        self.assertEqual(fields.get("Content-Length"), str(len(expected)))
        status, fields, body = self.fetch("/a.txt", {"Range": "bytes=0-0,-1"})
        self.assertIn(b"Content-Type: text/plain; charset=utf-8\r\n", body)
        status, fields, body = self.fetch("/a.txt", {"Range": "bytes=0-0,-1"}, method="HEAD")
        self.assertEqual((status, body), (206, b""))
        self.assertGreater(int(fields.get("Content-Length")), 100)

    def test_parse_range(self) -> None:
        """parse_range skips empty parts, takes signs, and refuses overflowing numbers."""
        self.assertEqual(parse_range("", 10), [])
        self.assertEqual(parse_range("bytes=0-0, 5-", 10), [(0, 1), (5, 5)])
        self.assertEqual(parse_range("bytes=-0", 10), [(10, 0)])
        self.assertEqual(parse_range("bytes=+1-+2", 10), [(1, 2)])  # Go's ParseInt takes a sign
        self.assertEqual(parse_range("bytes=,,1-2,", 10), [(1, 2)])
        self.assertRaises(fileserver._RangeError, parse_range, "bytes=99999999999999999999-", 10)


class PrecompressedTests(FileServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        root = self.site.root
        self.plain = b"body{color:red}" * 4
        (root / "app.css").write_bytes(self.plain)
        (root / "app.css.gz").write_bytes(gzip.compress(self.plain))
        (root / "app.css.br").write_bytes(b"brotli-bytes")
        (root / "app.css.zst").write_bytes(b"zstd-bytes")
        (root / "dir.css.gz").mkdir()
        (root / "dir.css").write_bytes(b"x")
        self.config = {"precompressed": {"gzip": {}, "br": {}, "zstd": {}}, "precompressed_order": ["br", "zstd", "gzip"]}

    def test_chosen_by_accept_encoding(self) -> None:
        """The sidecar is chosen by Accept-Encoding q-values, then order; Vary and ETag follow."""
        for accept, encoding, body in [
            ("gzip", "gzip", gzip.compress(self.plain)),
            ("gzip, br", "br", b"brotli-bytes"),  # same q: the configured order
            ("gzip, zstd", "zstd", b"zstd-bytes"),
            ("br;q=0.5, gzip", "gzip", gzip.compress(self.plain)),
            ("br;q=0, zstd;q=0", None, self.plain),
            ("deflate", None, self.plain),
            ("", None, self.plain),
        ]:
            status, fields, got = self.fetch("/app.css", {"Accept-Encoding": accept} if accept else None, config=self.config)
            self.assertEqual((status, fields.get("Content-Encoding"), got), (200, encoding, body), accept)
            self.assertEqual(fields.get("Content-Type"), "text/css; charset=utf-8")
            self.assertEqual(fields.get("Last-Modified"), http_date(os.stat(self.site.root / "app.css").st_mtime_ns // 10**9))
            self.assertEqual(fields.get("Accept-Ranges"), "bytes")  # Caddy deletes it, ServeContent sets it again
            if encoding:
                suffix = {"gzip": ".gz", "br": ".br", "zstd": ".zst"}[encoding]
                self.assertEqual(fields.get("Vary"), "Accept-Encoding")
                self.assertEqual(fields.get("Etag"), calculate_etag(os.stat(self.site.root / ("app.css" + suffix))))
                self.assertIsNone(fields.get("Content-Length"))  # Go leaves it to the server
            else:
                self.assertIsNone(fields.get("Vary"))
                self.assertEqual(fields.get("Content-Length"), str(len(self.plain)))

    def test_not_configured_or_not_a_file(self) -> None:
        """No sidecar without precompressed, nor when the sidecar is a directory."""
        _, fields, _ = self.fetch("/app.css", {"Accept-Encoding": "gzip"})
        self.assertIsNone(fields.get("Content-Encoding"))
        _, fields, body = self.fetch("/dir.css", {"Accept-Encoding": "gzip"}, config=self.config)
        self.assertEqual((fields.get("Content-Encoding"), body), (None, b"x"))

    def test_not_modified_drops_content_encoding(self) -> None:
        """A 304 for a sidecar keeps Vary but drops Content-Encoding."""
        etag = calculate_etag(os.stat(self.site.root / "app.css.gz"))
        status, fields, _ = self.fetch("/app.css", {"Accept-Encoding": "gzip", "If-None-Match": etag}, config=self.config)
        self.assertEqual((status, fields.get("Content-Encoding"), fields.get("Vary")), (304, None, "Accept-Encoding"))


class StreamingTests(FileServerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.data = bytes(range(256)) * (3 * CHUNK_SIZE // 256) + b"tail!"
        (self.site.root / "big.bin").write_bytes(self.data)

    def test_large_file_streams_in_chunks(self) -> None:
        """A large file is written in CHUNK_SIZE pieces and the Deferred fires at the end."""
        handler = load({"root": self.site.path})
        response = FakeResponse()
        result = handler.serve(make_request("GET", "/big.bin"), response, next_handler)
        self.assertIsInstance(result, Deferred)
        fired: list[Any] = []
        result.addBoth(fired.append)
        self.assertEqual(fired, [None])
        self.assertEqual(response.body, self.data)
        self.assertEqual(max(len(c) for c in response.chunks), CHUNK_SIZE)
        self.assertGreaterEqual(len(response.chunks), 4)
        self.assertIsNone(response.producer)
        self.assertEqual(response.headers.get("Content-Length"), str(len(self.data)))

    def test_small_file_is_written_at_once(self) -> None:
        """A small file is written in one piece, synchronously."""
        handler = load({"root": self.site.path})
        response = FakeResponse()
        self.assertIsNone(handler.serve(make_request("GET", "/a.txt"), response, next_handler))
        self.assertEqual(response.chunks, [b"hello world\n"])

    def test_large_ranges_stream(self) -> None:
        """Large multi-range answers stream each part whole."""
        last = len(self.data) - 1
        status, _, body = self.fetch("/big.bin", {"Range": f"bytes=1-{CHUNK_SIZE + 1},{last - 3}-"})
        self.assertEqual(status, 206)
        self.assertIn(self.data[1 : CHUNK_SIZE + 2], body)
        self.assertTrue(body.endswith(b"\r\n\r\nail!\r\n" + body[-66:]))

    def test_client_going_away_releases_the_file(self) -> None:
        """stopProducing closes the file and ends the request; later resumes write nothing."""
        class Paused(FakeResponse):
            def register_producer(self, producer: Any, streaming: bool) -> None:
                self.producer = producer  # the client pulls nothing yet

        handler = load({"root": self.site.path})
        response = Paused()
        result = handler.serve(make_request("GET", "/big.bin"), response, next_handler)
        producer = response.producer
        producer.resumeProducing()
        self.assertEqual(len(response.body), CHUNK_SIZE)
        fired: list[Any] = []
        result.addBoth(fired.append)
        producer.stopProducing()
        self.assertEqual(fired, [None])
        self.assertIsNone(producer._fd)
        producer.resumeProducing()  # late calls are harmless
        self.assertEqual(len(response.body), CHUNK_SIZE)

    def test_file_shrinking_while_sent_fails_the_request(self) -> None:
        """A file that shrinks while being sent fails the request with a 500."""
        class Paused(FakeResponse):
            def register_producer(self, producer: Any, streaming: bool) -> None:
                self.producer = producer

        handler = load({"root": self.site.path})
        response = Paused()
        result = handler.serve(make_request("GET", "/big.bin"), response, next_handler)
        (self.site.root / "big.bin").write_bytes(b"short")
        response.producer.resumeProducing()  # what is left: 5 bytes
        self.assertNoResult(result)
        response.producer.resumeProducing()
        failure = self.failureResultOf(result, HandlerError)
        self.assertEqual(failure.value.status, 500)


class BrowseTests(FileServerTestCase):
    config = {"browse": {}, "hide": ["Caddyfile"]}

    def listing(self, target: str = "/list/", headers: Any = None, **kwargs: Any) -> tuple[int, Any, Any]:
        status, fields, body = self.fetch(target, {"Accept": "application/json", **(headers or {})},
                                          config=self.config, **kwargs)
        return status, fields, json.loads(body) if status == 200 else None

    def test_json_listing(self) -> None:
        """The JSON listing has Caddy's fields, directories first, links shown as links."""
        status, fields, items = self.listing()
        self.assertEqual((status, fields.get("Content-Type")), (200, "application/json; charset=utf-8"))
        self.assertEqual([item["name"] for item in items],
                         ["Adir/", "sublink/", "zdir/", "A <img src=x onerror=alert(1)>&'q.txt", "b.txt", "broken",
                          "c.txt", "leak"])
        by_name = {item["name"]: item for item in items}
        self.assertEqual(by_name["b.txt"], {
            "name": "b.txt", "size": 1, "url": "./b.txt", "mod_time": time_json(MTIME_NS + 10**9 * len("list/b.txt")),
            "mode": file_mode(os.stat(self.site.root / "list" / "b.txt").st_mode),
            "is_dir": False, "is_symlink": False,
        })
        self.assertEqual(by_name["sublink/"]["is_symlink"], True)
        self.assertEqual(by_name["sublink/"]["mode"] & (1 << 27), 1 << 27)
        self.assertEqual(by_name["broken"]["size"], len("nothere"))
        self.assertEqual(by_name["A <img src=x onerror=alert(1)>&'q.txt"]["url"],
                         "./A%20%3Cimg%20src=x%20onerror=alert%281%29%3E&%27q.txt")

    def test_json_escapes_html_characters_as_go(self) -> None:
        """The JSON listing escapes <, > and & as Go's encoder does."""
        _, _, body = self.fetch("/list/", {"Accept": "application/json"}, config=self.config)
        self.assertIn(b'"A \\u003cimg src=x onerror=alert(1)\\u003e\\u0026\'q.txt"', body)
        self.assertTrue(body.endswith(b"]\n"))

    def test_sorting_limits_and_cookies(self) -> None:
        """sort, order, limit and offset apply, are remembered in cookies, Secure on TLS."""
        status, fields, items = self.listing("/list/?sort=size&order=desc&limit=3&offset=1")
        # files by size, largest first (leak=16, broken=7, xyz=3, ...), directories last; 1 skipped, 3 shown
        self.assertEqual([i["name"] for i in items], ["broken", "A <img src=x onerror=alert(1)>&'q.txt", "c.txt"])
        self.assertEqual(fields.get_all("Set-Cookie"), ["sort=size", "order=desc"])
        _, _, items = self.listing("/list/?sort=name&order=desc")
        self.assertEqual(items[0]["name"], "zdir/")
        _, _, items = self.listing("/list/", {"Cookie": "sort=name; order=desc"})
        self.assertEqual(items[0]["name"], "zdir/")
        _, fields, items = self.listing("/list/?sort=bogus")
        self.assertEqual(fields.get_all("Set-Cookie"), [])
        self.assertEqual(items[0]["name"], "A <img src=x onerror=alert(1)>&'q.txt")  # unsorted: as read (by name)
        _, _, items = self.listing("/list/?sort=time")
        times = [i["mod_time"] for i in items]
        self.assertEqual(times, sorted(times))
        _, fields, _ = self.listing("/list/?sort=name", tls=FakeTLS())
        self.assertEqual(fields.get_all("Set-Cookie"), ["sort=name; Secure"])

    def test_html_listing_escapes_names(self) -> None:
        """The HTML listing escapes names and URLs and shows breadcrumbs and counts."""
        status, fields, body = self.fetch("/list/", config=self.config)
        self.assertEqual((status, fields.get("Content-Type")), (200, "text/html; charset=utf-8"))
        text = body.decode()
        self.assertNotIn("<img", text)
        self.assertIn("A &lt;img src=x onerror=alert(1)&gt;&amp;&#39;q.txt", text)
        self.assertIn('href="./A%20%3Cimg%20src=x%20onerror=alert%281%29%3E&amp;%27q.txt"', text)
        self.assertIn("<title>list</title>", text)
        self.assertIn('<a href="../">/</a><a href="">list</a>/', text)
        self.assertIn("3 directories, 5 files", text)  # sublink/ counts as a directory
        self.assertIn('<a href="..">', text)  # can go up

    def test_redirect_to_trailing_slash_and_hidden(self) -> None:
        """Listings redirect to the slash form, prefer index files and leave hidden files out."""
        status, fields, _ = self.fetch("/list", config=self.config)
        self.assertEqual((status, fields.get("Location")), (308, "/list/"))
        self.assertEqual(self.fetch("/", config={"browse": {}})[::2], (200, b"<p>home</p>"))  # index first
        status, _, items = self.listing("/empty/")
        self.assertEqual((status, items), (200, []))
        # a rewrite that changed the last element: no redirect, the listing is served
        status, _, items = self.listing("/other", request_setup=lambda r: r.set_path("/empty"))
        self.assertEqual((status, items), (200, []))
        self.assertEqual(self.fetch("/list/", config={"browse": {}, "hide": ["list"]})[0], 404)
        status, _, body = self.fetch("/sub/", {"Accept": "application/json"},
                                     config={"browse": {}, "index_names": [], "hide": ["page.txt"]})
        self.assertEqual([i["name"] for i in json.loads(body)], ["index.txt"])

    def test_root_listing_hides_the_caddyfile(self) -> None:
        """The root listing leaves out a hidden Caddyfile and shows the rest."""
        _, _, body = self.fetch("/", {"Accept": "application/json"}, config={**self.config, "index_names": []})
        names = [item["name"] for item in json.loads(body)]
        self.assertNotIn("Caddyfile", names)
        self.assertIn("a.txt", names)

    def test_helpers(self) -> None:
        """human_size formats sizes as Caddy's browse template does."""
        self.assertEqual([human_size(n) for n in (0, 9, 10, 1023, 1024, 1536, 10 * 1024, 5 * 1024**3)],
                         ["0 B", "9 B", "10 B", "1023 B", "1.0 KiB", "1.5 KiB", "10 KiB", "5.0 GiB"])


class LoadTests(SynchronousTestCase):
    def test_bad_configs(self) -> None:
        """Unknown or wrongly shaped file_server fields are configuration errors naming them."""
        for config, message in [
            ({"roots": "/x"}, 'unknown field "roots"'),
            ({"file_system": {"backend": "x"}}, "file_system"),
            ({"hide": "x"}, "hide of type []string"),
            ({"index_names": [1]}, "index_names[0] of type string"),
            ({"precompressed": {"lz4": {}}}, "http.precompressed.lz4"),
            ({"root": 3}, "root of type string"),
            ({"browse": True}, "browse of type object"),
        ]:
            error = self.assertRaises(ConfigError, load, config)
            self.assertIn(message, str(error))

    def test_template_file_falls_back_to_the_built_in_listing(self) -> None:
        """A browse template_file is warned about and ignored: directories get the built-in list."""
        site = Site(Path(self.mktemp()))
        events: list[dict[str, Any]] = []
        context = LoadContext(log=Logger(namespace="txcaddy", observer=cast(ILogObserver, events.append)))
        config = {"handler": "file_server", "root": site.path, "browse": {"template_file": "/tpl/browse.html"}}
        handler = context.load_handler(config)
        self.assertIs(handler.browse, True)
        [warning] = events
        self.assertEqual((warning["log_level"], warning["template"]), (LogLevel.warn, "/tpl/browse.html"))
        self.assertIn("using the built-in listing", warning["log_format"])
        response = serve(handler, make_request("GET", "/list/"))
        self.assertEqual((response.status, response.headers.get("Content-Type")), (200, "text/html; charset=utf-8"))
        self.assertIn(b"<title>list</title>", response.body)
        self.assertIn(b"3 directories, 5 files", response.body)

    def test_adapter_fixtures_load(self) -> None:
        """Every file_server in the adapter fixtures loads."""
        loaded = [load({k: v for k, v in config.items() if k != "handler"}) for _, config in fixture_handlers("file_server")]
        self.assertGreater(len(loaded), 5)
        self.assertTrue(all(isinstance(h, FileServer) for h in loaded))
