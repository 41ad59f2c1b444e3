"""The ``file`` matcher (``try_files``) and the Go path rules behind it (Caddy 2.6.2 matcher.go)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.config.loader import LoadContext
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.handlers._filematch import (
    FileMatcher,
    sanitized_path_join,
    within_root,
)
from txcaddy.testing import make_request

from .support import fixture_handlers


def matcher(config: dict) -> FileMatcher:
    return LoadContext().load_matcher_set({"file": config}).matchers[0]


def placeholders(request) -> dict[str, str]:
    return {k.rpartition(".")[2]: v for k, v in request.placeholders.items() if k.startswith("http.matchers.file.")}


class SanitizedPathJoinTests(SynchronousTestCase):
    def test_sanitized_path_join(self) -> None:
        """sanitized_path_join agrees with Caddy's table: nothing climbs out of the root."""
        # Caddy's TestSanitizedPathJoin, with the paths decoded as Go's URL parser does
        for root, path, expected in [
            ("", "", "."),
            ("", "/", "."),
            ("", "/foo", "foo"),
            ("", "/foo/", "foo/"),
            ("", "/foo/bar", "foo/bar"),
            ("/a", "/foo/bar", "/a/foo/bar"),
            ("", "/foo/../bar", "bar"),
            ("/a/b", "/foo/../bar", "/a/b/bar"),
            ("/a/b", "/../bar", "/a/b/bar"),
            ("/a/b", "/../../", "/a/b/"),
            ("/a/b", "/../../etc/passwd", "/a/b/etc/passwd"),
            ("/a/b", "../..", "/a/b"),
            ("/a/b", "//../x", "/a/b/x"),
            ("/a/b", "/..\\x", "/a/b/..\\x"),  # a backslash is a name character on Unix
            ("/", "/../x", "/x"),
        ]:
            self.assertEqual(sanitized_path_join(root, path), expected, (root, path))



class FileMatcherTests(SynchronousTestCase):
    """Caddy's TestFileMatcher and TestPHPFileMatcher on the same file tree."""

    def setUp(self) -> None:
        self.root = Path(self.mktemp())
        (self.root / "foodir").mkdir(parents=True)
        (self.root / "foo.php.php").mkdir()
        for name in ("foo.txt", "foodir/foo.txt", "foodir/bar.txt", "index.php", "remote.php", "notphp.php.txt",
                     "foo.php.php/index.php", "ملف.txt", "%D9%85%D9%84%D9%81.txt", "with:in-name.txt"):
            (self.root / name).write_text(name)

    def run_match(self, config: dict, target: str, **vars_) -> tuple[bool, object]:
        request = make_request("GET", target)
        request.vars.update(vars_)
        return matcher(config).match(request), request

    def test_try_files_file_then_directory(self) -> None:
        """try_files finds files, then directories with a slash, and publishes where."""
        config = {"root": str(self.root), "try_files": ["{http.request.uri.path}", "{http.request.uri.path}/"]}
        for target, expected_path, expected_type in [
            ("/foo.txt", "/foo.txt", "file"),
            ("/foo.txt/", "/foo.txt", "file"),
            ("/foodir", "/foodir/", "directory"),
            ("/foodir/", "/foodir/", "directory"),
            ("/foodir/foo.txt", "/foodir/foo.txt", "file"),
            ("/missingfile.php", None, None),
            ("/" + quote("ملف.txt"), "/ملف.txt", "file"),
            ("/" + quote(quote("ملف.txt")), "/%D9%85%D9%84%D9%81.txt", "file"),
            ("/./with:in-name.txt", "/with:in-name.txt", "file"),
        ]:
            matched, request = self.run_match(config, target)
            self.assertEqual(matched, expected_path is not None, target)
            if expected_path is not None:
                found = placeholders(request)
                self.assertEqual(found["relative"], expected_path, target)
                self.assertEqual(found["type"], expected_type, target)
                self.assertEqual(found["absolute"], str(self.root) + expected_path, target)
                self.assertEqual(found["remainder"], "", target)

    def test_split_path(self) -> None:
        """split_path cuts the path after the first split value; the rest is the remainder."""
        config = {"root": str(self.root), "try_files": ["{http.request.uri.path}", "{http.request.uri.path}/index.php"],
                  "split_path": [".php"]}
        for target, expected_path, remainder in [
            ("/index.php", "/index.php", ""),
            ("/index.php/somewhere", "/index.php", "/somewhere"),
            ("/remote.php", "/remote.php", ""),
            ("/remote.php/somewhere", "/remote.php", "/somewhere"),
            ("/REMOTE.PHP/x", None, None),  # split case-insensitively, but the file system is not
            ("/missingfile.php", None, None),
            ("/notphp.php.txt", "/notphp.php.txt", ""),
            ("/notphp.php.txt/", "/notphp.php.txt", ""),
            ("/notphp.php.txt.suffixed", None, None),
            ("/foo.php.php/index.php", "/foo.php.php/index.php", ""),
            ("/%E2%C3", None, None),
        ]:
            matched, request = self.run_match(config, target)
            self.assertEqual(matched, expected_path is not None, target)
            if expected_path is not None:
                self.assertEqual(placeholders(request)["relative"], expected_path, target)
                self.assertEqual(placeholders(request)["remainder"], remainder, target)

    def test_first_split_is_case_insensitive(self) -> None:
        """Split values match without case, and one that ends the path does not split it."""
        self.assertEqual(FileMatcher(split_path=[".php"])._first_split("index.PHP/somewhere"), ("index.PHP", "/somewhere"))
        # Caddy's search stops one short of the end: a value ending the path does not split it
        self.assertEqual(FileMatcher(split_path=[".php"])._first_split("/a.php"), ("/a.php", ""))

    def test_root_from_vars_and_default(self) -> None:
        """The root comes from the root var, else the working directory with relative paths."""
        matched, request = self.run_match({"try_files": ["/foo.txt"]}, "/", root=str(self.root))
        self.assertTrue(matched)
        self.assertEqual(placeholders(request)["absolute"], str(self.root) + "/foo.txt")
        cwd = os.getcwd()
        # without a root the working directory is used and paths stay relative (Caddy's quirk)
        relative = os.path.relpath(self.root, cwd)
        matched, request = self.run_match({"try_files": [f"/{relative}/foo.txt"]}, "/")
        self.assertTrue(matched)
        self.assertEqual(placeholders(request)["absolute"], f"{relative}/foo.txt")

    def test_default_try_files_is_the_request_path(self) -> None:
        """Without try_files the request path is tried, as a file only."""
        matched, request = self.run_match({"root": str(self.root)}, "/foodir/bar.txt")
        self.assertTrue(matched)
        self.assertEqual(placeholders(request)["relative"], "/foodir/bar.txt")
        self.assertFalse(self.run_match({"root": str(self.root)}, "/foodir")[0])  # a directory needs "/"

    def test_error_status_entries(self) -> None:
        """A =NNN entry in first_exist fails with that status; other = entries are names."""
        config = {"root": str(self.root), "try_files": ["{http.request.uri.path}", "=404"]}
        self.assertTrue(self.run_match(config, "/foo.txt")[0])
        error = self.assertRaises(HandlerError, self.run_match, config, "/nope")
        self.assertEqual((error.status, error.message), (404, "404"))
        error = self.assertRaises(HandlerError, self.run_match, {"root": str(self.root), "try_files": ["=+503"]}, "/")
        self.assertEqual(error.status, 503)
        # not a status: an ordinary (missing) file name
        for entry in ("=abc", "=99", "=1000", "="):
            self.assertFalse(self.run_match({"root": str(self.root), "try_files": [entry]}, "/")[0], entry)
        # only first_exist knows error entries
        self.assertFalse(self.run_match({"root": str(self.root), "try_files": ["=404"], "try_policy": "largest_size"}, "/")[0])

    def test_policies(self) -> None:
        """Each try_policy picks its file, with Caddy's quirks for empty files and directories."""
        sizes = {"a.html": 30, "b.html": 10, "c.html": 20, "empty.html": 0}
        for name, size in sizes.items():
            (self.root / name).write_bytes(b"x" * size)
        for i, name in enumerate(("b.html", "a.html", "c.html", "empty.html")):
            os.utime(self.root / name, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i))
        files = ["/missing.html", "/a.html", "/b.html", "/c.html"]
        for policy, expected in [("first_exist", "/a.html"), ("largest_size", "/a.html"),
                                 ("smallest_size", "/b.html"), ("most_recently_modified", "/c.html")]:
            matched, request = self.run_match({"root": str(self.root), "try_files": files, "try_policy": policy}, "/")
            self.assertTrue(matched, policy)
            self.assertEqual(placeholders(request)["relative"], expected, policy)
        # Caddy's quirks: an empty file never wins largest_size and is replaced in smallest_size
        self.assertFalse(self.run_match({"root": str(self.root), "try_files": ["/empty.html"], "try_policy": "largest_size"}, "/")[0])
        matched, request = self.run_match(
            {"root": str(self.root), "try_files": ["/empty.html", "/a.html"], "try_policy": "smallest_size"}, "/")
        self.assertEqual(placeholders(request)["relative"], "/a.html")
        # size policies accept directories too
        matched, request = self.run_match({"root": str(self.root), "try_files": ["/foodir"], "try_policy": "smallest_size"}, "/")
        self.assertEqual(placeholders(request)["type"], "directory")

    def test_globs_in_entries_but_not_in_placeholder_values(self) -> None:
        """Globs in entries expand; placeholder values are glob-escaped, as in Caddy 2.6.2."""
        matched, request = self.run_match({"root": str(self.root), "try_files": ["/foodir/*.txt"]}, "/")
        self.assertTrue(matched)
        self.assertEqual(placeholders(request)["relative"], "/foodir/bar.txt")  # sorted: bar before foo
        (self.root / "foodir" / "*.txt").write_text("star")
        (self.root / "ab").write_text("ab")
        # checked against Caddy 2.6.2: values are glob-escaped, except backslashes
        for target, expected in [
            ("/foodir/*.txt", "/foodir/*.txt"),
            ("/foodir/%2A.txt", "/foodir/*.txt"),
            ("/foodir/b%3Fr.txt", None),
            ("/foodir/[bf]oo.txt", None),
            ("/foodir/%5C*.txt", None),
            ("/a%5Cb", "/ab"),
        ]:
            matched, request = self.run_match({"root": str(self.root)}, target)
            self.assertEqual(placeholders(request).get("relative"), expected, target)

    def test_placeholders_and_paths_with_dots(self) -> None:
        """Entries expand placeholders, and .. cannot take them above the root."""
        matched, request = self.run_match({"root": str(self.root), "try_files": ["{http.request.uri.path}.txt"]}, "/foo")
        self.assertEqual(placeholders(request)["relative"], "/foo.txt")
        matched, request = self.run_match({"root": str(self.root), "try_files": ["/../../foo.txt"]}, "/")
        self.assertEqual(placeholders(request)["absolute"], str(self.root) + "/foo.txt")

    def test_symlink_outside_root_does_not_exist(self) -> None:
        """A symlink that leads outside the root is treated as missing; one inside is found."""
        outside = Path(self.mktemp())
        outside.mkdir()
        (outside / "secret.txt").write_text("secret")
        os.symlink(outside / "secret.txt", self.root / "leak.txt")
        os.symlink(outside, self.root / "leakdir")
        os.symlink("foo.txt", self.root / "inside.txt")
        config = {"root": str(self.root), "try_files": ["{http.request.uri.path}", "/foo.txt"]}
        for target in ("/leak.txt", "/leakdir/secret.txt"):
            matched, request = self.run_match(config, target)
            self.assertEqual(placeholders(request)["relative"], "/foo.txt", target)  # fell through
        matched, request = self.run_match(config, "/inside.txt")
        self.assertEqual(placeholders(request)["relative"], "/inside.txt")

    def test_within_root(self) -> None:
        """within_root holds for real paths under the root only, not for a sibling like root-x."""
        real_root = os.path.realpath(self.root)
        self.assertTrue(within_root(real_root, str(self.root / "foo.txt")))
        self.assertTrue(within_root(real_root, str(self.root)))
        self.assertFalse(within_root(real_root, str(self.root / "missing")))
        self.assertFalse(within_root(real_root, str(self.root.parent)))
        self.assertFalse(within_root(None, str(self.root / "foo.txt")))
        self.assertTrue(within_root("/", str(self.root / "foo.txt")))
        sibling = Path(str(self.root) + "-sibling")
        sibling.mkdir()
        self.assertFalse(within_root(real_root, str(sibling)))  # a shared name prefix is not containment


class LoadTests(SynchronousTestCase):
    def test_bad_configs(self) -> None:
        """Bad try policies, field types and unknown fields are refused with their names."""
        for config, message in [
            ({"try_policy": "random"}, "unknown try policy random"),
            ({"try_files": "a"}, "try_files of type []string"),
            ({"root": 5}, "root of type string"),
            ({"tryfiles": []}, 'unknown field "tryfiles"'),
            ({"file_system": {"backend": "x"}}, "file_system"),
            ([], "match.file of type object"),
        ]:
            error = self.assertRaises(ConfigError, matcher, config)
            self.assertIn(message, str(error))

    def test_adapter_fixtures_load(self) -> None:
        """Every file matcher in the adapter fixtures loads."""
        loaded = 0
        for where, config in fixture_handlers("subroute"):
            for route in config.get("routes") or []:
                for matcher_set in route.get("match") or []:
                    if "file" in matcher_set:
                        self.assertIsInstance(matcher(matcher_set["file"]), FileMatcher, where)
                        loaded += 1
        self.assertGreater(loaded, 0)
