"""Go's ``path`` and ``path/filepath`` (Unix): ``Clean``, ``Match``, ``Glob`` and friends."""

from __future__ import annotations

import os
import random
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.path import (
    Pattern,
    abs_path,
    base,
    clean,
    compile_pattern,
    ext,
    glob,
    match,
    split,
)


class CleanTests(SynchronousTestCase):
    def test_clean(self) -> None:
        """Repeated slashes, ``.`` and ``..`` go; a root ``..`` stays at the root; empty is ``.``."""
        cases = {
            "": ".", "/": "/", "//": "/", "abc": "abc", "abc/def/": "abc/def", "a//b": "a/b",
            "//a//b/": "/a/b", "/../a": "/a", "../../a": "../../a", "a/../..": "..", "a/./b/.": "a/b",
            "./a/./b/": "a/b", "/a/b/../../..": "/", "/a/b/c/../../d": "/a/d", "/a/b/../../../c": "/c",
            "//a": "/a", "./": ".", "//a//b/./c/": "/a/b/c", "./Caddyfile": "Caddyfile",
            "a/b\\..\\c": "a/b\\..\\c",  # a backslash is a name character on Unix
        }
        for given, expected in cases.items():
            self.assertEqual(clean(given), expected, given)

    def test_abs_path(self) -> None:
        """``filepath.Abs``: an absolute path is cleaned, a relative one joined to the cwd."""
        self.assertEqual(abs_path("/a/../b/"), "/b")
        self.assertEqual(abs_path("x/./y"), os.getcwd().rstrip("/") + "/x/y")

    def test_split_base_ext(self) -> None:
        """``Split`` keeps the slash on the directory; ``Base`` and ``Ext`` look at the last element."""
        self.assertEqual(split("/a/b.tar.gz"), ("/a/", "b.tar.gz"))
        self.assertEqual(split("file"), ("", "file"))
        self.assertEqual([base(p) for p in ("", "/", "/a/b/", "a")], [".", "/", "b", "a"])
        self.assertEqual([ext(p) for p in ("/a/b.tar.gz", "/a.d/b", "/a/.x", "")], [".gz", "", ".x", ""])


class MatchTests(SynchronousTestCase):
    def test_go_table(self) -> None:
        """Go's own ``path.Match`` test table, malformed patterns matching nothing."""
        cases = [
            ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True), ("a*", "abc", True),
            ("a*", "ab/c", False), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
            ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
            ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False), ("ab[^c]", "abc", False),
            ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True), ("a\\*b", "a*b", True), ("a\\*b", "ab", False),
            ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True), ("a???b", "a☺b", False), ("a[^a][^a][^a]b", "a☺b", False),
            ("[a-ζ]*", "α", True), ("*[a-ζ]", "A", False), ("a?b", "a/b", False), ("a*b", "a/b", False),
            ("[\\]a]", "]", True), ("[\\-]", "-", True), ("[x\\-]", "x", True), ("[x\\-]", "-", True), ("[x\\-]", "z", False),
            ("[\\-x]", "x", True), ("[\\-x]", "-", True), ("[\\-x]", "a", False),
            ("[]a]", "]", False), ("[-]", "-", False), ("[x-]", "x", False), ("[x-]", "-", False), ("[x-]", "z", False),
            ("[-x]", "x", False), ("[-x]", "-", False), ("[-x]", "a", False),
            ("\\", "a", False), ("[a-b-c]", "a", False), ("[", "a", False), ("[^", "a", False), ("[^bc", "a", False),
            ("a[", "a", False), ("a[", "ab", False), ("a[", "x", False), ("a/b[", "x", False), ("*x", "xxx", True),
        ]
        for pattern, name, expected in cases:
            self.assertEqual(match(pattern, name), expected, f"{pattern!r} {name!r}")

    def test_caddy_uses(self) -> None:
        """``hide`` and ``try_files`` forms: stars stop at ``/``, empty ranges match nothing."""
        cases = [
            ("*.caddy", "site.caddy", True), ("*", "a/b", False), ("/etc/*", "/etc/passwd", True),
            ("a?c", "a/c", False), ("[a-c]x", "bx", True), ("[^a-c]x", "bx", False), ("[]x", "x", False),
            ("[a-", "a", False), ("\\*", "*", True), ("x\\", "x", False), ("[z-a]", "m", False), ("[^z-a]", "m", True),
        ]
        for pattern, name, expected in cases:
            self.assertEqual(match(pattern, name), expected, (pattern, name))

    def test_leftmost_chunk_without_backtracking(self) -> None:
        """Go places each chunk at its leftmost fit and never backtracks, even where a later
        place would match (a class that takes ``/`` makes the difference visible)."""
        self.assertFalse(match("*[^x]/*", "a//b"))
        self.assertTrue(match("*[^x]/*", "a/b"))

    def test_compiled_forms_agree(self) -> None:
        """The regular expression a pattern compiles to answers as Go's chunk walk does."""
        rng = random.Random(5)
        checked = 0
        for _ in range(3000):
            pattern = "".join(rng.choice("ab/*?[]^-\\.") for _ in range(rng.randint(0, 7)))
            compiled = compile_pattern(pattern)
            if not compiled.valid or compiled._fullmatch is None:
                continue
            walk = Pattern(pattern)
            walk._fullmatch = None
            for _ in range(5):
                name = "".join(rng.choice("ab/.") for _ in range(rng.randint(0, 7)))
                self.assertEqual(compiled.match(name), walk.match(name), (pattern, name))
                checked += 1
        self.assertGreater(checked, 1000)

    def test_malformed_pattern(self) -> None:
        """A malformed pattern compiles to one that is not ``valid`` and matches nothing."""
        compiled = compile_pattern("a[")
        self.assertFalse(compiled.valid)
        self.assertFalse(compiled.match("a["))


class GlobTests(SynchronousTestCase):
    def test_glob(self) -> None:
        """``filepath.Glob``: sorted matches per directory, metacharacters in any element."""
        root_path = Path(self.mktemp())
        (root_path / "d1").mkdir(parents=True)
        (root_path / "d2").mkdir()
        for name in ("d1/a.txt", "d1/b.txt", "d2/a.txt", "d2/c.md", "x*y"):
            (root_path / name).write_text(name)
        root = str(root_path)
        self.assertEqual(glob(root + "/d*/a.txt"), [root + "/d1/a.txt", root + "/d2/a.txt"])
        self.assertEqual(glob(root + "/d1/*.txt"), [root + "/d1/a.txt", root + "/d1/b.txt"])
        self.assertEqual(glob(root + "/x\\*y"), [root + "/x*y"])  # an escaped star is literal
        self.assertEqual(glob(root + "/d2"), [root + "/d2"])
        self.assertEqual(glob(root + "/nothing"), [])
        self.assertEqual(glob(root + "/d1/["), [])  # a malformed pattern finds nothing
