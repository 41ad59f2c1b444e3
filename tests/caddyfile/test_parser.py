"""Server blocks, snippets, imports and env substitution (spec/caddyfile.md §3-4)."""

import os

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.parser import parse, replace_env_vars
from txcaddy.errors import ConfigError


def segments(block) -> list[list[str]]:
    return [[t.text for t in seg] for seg in block.segments]


class EnvTests(SynchronousTestCase):
    def test_substitution(self) -> None:
        """{$VAR} is replaced, an unset one by its default or nothing; "" takes the default."""
        env = {"A": "x", "EMPTY": ""}
        self.assertEqual(replace_env_vars("{$A} {$B} {$B:dflt} {$EMPTY:dflt} {$}", env), "x  dflt  {$}")

    def test_value_with_spaces_becomes_several_tokens(self) -> None:
        """An env value with spaces becomes several tokens."""
        (block,) = parse("Caddyfile", ":80 {\n\theader X {$V}\n}", {"V": "a b"})
        self.assertEqual(segments(block), [["header", "X", "a", "b"]])


class BlockTests(SynchronousTestCase):
    def test_keys_with_commas_and_continuation(self) -> None:
        """Site addresses may be split by commas and continued on the next line."""
        (block,) = parse("Caddyfile", "a.com, b.com,\nc.com d.com {\n\trespond hi\n}")
        self.assertEqual(block.keys, ["a.com", "b.com", "c.com", "d.com"])
        self.assertTrue(block.has_braces)

    def test_global_block_has_no_keys(self) -> None:
        """A leading block without keys is the global options block."""
        blocks = parse("Caddyfile", "{\n\tdebug\n}\n:80 {\n\trespond ok\n}")
        self.assertEqual([b.keys for b in blocks], [[], [":80"]])

    def test_block_without_braces_takes_the_rest(self) -> None:
        """A single site without braces takes every following line as its directives."""
        (block,) = parse("Caddyfile", ":80\nrespond ok\nfile_server")
        self.assertFalse(block.has_braces)
        self.assertEqual(segments(block), [["respond", "ok"], ["file_server"]])

    def test_nested_block_is_one_segment(self) -> None:
        """A directive with a block is one segment, braces included."""
        (block,) = parse("Caddyfile", ":80 {\n\thandle /a {\n\t\trespond a\n\t}\n\tfile_server\n}")
        self.assertEqual(segments(block), [["handle", "/a", "{", "respond", "a", "}"], ["file_server"]])

    def test_errors(self) -> None:
        """Unclosed blocks, tokens after "{", braces or commas on addresses: Caddy's errors."""
        cases = {
            ":80 {\n\trespond x {\n": "Caddyfile:2 - Error during parsing: Unexpected EOF",
            ":80 {\n\thandle { respond\n\t}\n}": "Caddyfile:2 - Error during parsing: Unexpected next token after '{' on same line",
            "a.com{\n}": "Caddyfile:1 - Error during parsing: Site addresses cannot end with a curly brace: 'a.com{' - put a space between the token and the brace",
            "a.com,b.com {\n}": "Caddyfile:1 - Error during parsing: Site addresses cannot contain a comma ',': 'a.com,b.com' - put a space after the comma to separate site addresses",
        }
        for source, message in cases.items():
            with self.assertRaises(ConfigError) as caught:
                parse("Caddyfile", source)
            self.assertEqual(str(caught.exception), message, source)


class ImportTests(SynchronousTestCase):
    def test_snippet_with_arguments(self) -> None:
        """import fills {args.N} from its arguments, leaving missing ones, and marks the snippet."""
        source = "(common) {\n\theader X {args.0} {args.1} {args.2}\n}\n:80 {\n\timport common a b\n}"
        (block,) = parse("Caddyfile", source)
        self.assertEqual(segments(block), [["header", "X", "a", "b", "{args.2}"]])
        self.assertEqual(block.segments[0][0].snippet, "common")

    def test_snippet_must_precede_use(self) -> None:
        """Importing a snippet defined later is "File to import not found"."""
        with self.assertRaises(ConfigError) as caught:
            parse("Caddyfile", ":80 {\n\timport later\n}\n(later) {\n\trespond x\n}")
        self.assertEqual(str(caught.exception), "Caddyfile:2 - Error during parsing: File to import not found: later")

    def test_redeclared_snippet(self) -> None:
        """Declaring a snippet twice is an error."""
        with self.assertRaises(ConfigError) as caught:
            parse("Caddyfile", "(s) {\n}\n(s) {\n}")
        self.assertIn("redeclaration of previously declared snippet s", str(caught.exception))

    def _tree(self) -> FilePath:
        root = FilePath(self.mktemp())
        root.makedirs()
        cwd = os.getcwd()
        os.chdir(root.path)
        self.addCleanup(os.chdir, cwd)
        return root

    def test_import_file_and_glob(self) -> None:
        """import of a glob reads the matching files in order, their tokens naming their file."""
        root = self._tree()
        root.child("sites").makedirs()
        root.child("sites").child("a.caddy").setContent(b"a.com {\n\trespond a\n}\n")
        root.child("sites").child("b.caddy").setContent(b"b.com {\n\trespond b\n}\n")
        blocks = parse("Caddyfile", "import sites/*.caddy\n")
        self.assertEqual([b.keys for b in blocks], [["a.com"], ["b.com"]])
        self.assertEqual(blocks[0].segments[0][0].file, root.child("sites").child("a.caddy").path)

    def test_glob_without_match_is_not_an_error(self) -> None:
        """An import glob matching no file imports nothing."""
        self._tree()
        self.assertEqual(parse("Caddyfile", "import nothing/*.caddy\n"), [])

    def test_import_cycle(self) -> None:
        """Files importing each other are reported as an import cycle."""
        root = self._tree()
        root.child("a").setContent(b"import b\n")
        root.child("b").setContent(b"import a\n")
        with self.assertRaises(ConfigError) as caught:
            parse("Caddyfile", "import a\n")
        self.assertIn("a cycle of imports exists between", str(caught.exception))

    def test_too_many_wildcards(self) -> None:
        """An import glob with more than one wildcard is an error."""
        self._tree()
        with self.assertRaises(ConfigError) as caught:
            parse("Caddyfile", "import */*.caddy\n")
        self.assertIn("Glob pattern may only contain one wildcard (*), but has others", str(caught.exception))
