"""Go's ``mime.TypeByExtension`` (Unix): built-in types, then the system's globs2 or mime.types."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.mime import MimeTypes


class MimeTypesTests(SynchronousTestCase):
    def test_builtins_then_globs2(self) -> None:
        """Built-in types win, then the heaviest globs2 entry; glob patterns are skipped."""
        base = Path(self.mktemp())
        base.mkdir()
        globs = base / "globs2"
        globs.write_text("# comment\n80:text/x-python:*.py\n50:text/x-other:*.py\n60:text/plain:*.txt\n"
                         "50:application/x-fake-html:*.html\n40:image/x-glob:*.[ch]\n10:text/x-flowed; format=x:*.fl\n")
        types = base / "mime.types"
        types.write_text("application/x-ignored  py txt\n")
        table = MimeTypes(globs_files=[str(globs)], types_files=[str(types)])
        self.assertEqual(table.by_extension(".py"), "text/x-python; charset=utf-8")  # heaviest first
        self.assertEqual(table.by_extension(".TXT"), "text/plain; charset=utf-8")
        self.assertEqual(table.by_extension(".html"), "text/html; charset=utf-8")  # built-ins win
        self.assertEqual(table.by_extension(".c"), "")  # globs are skipped
        self.assertEqual(table.by_extension(".fl"), "")  # Go's re-formatting empties it
        self.assertEqual(table.by_extension(""), "")

    def test_mime_types_files_when_no_globs2(self) -> None:
        """Without globs2, mime.types files are read in order, later ones overriding."""
        base = Path(self.mktemp())
        base.mkdir()
        first, second = base / "a.types", base / "b.types"
        first.write_text("# x\ntext/markdown md markdown # trailing\napplication/x-a  foo\n")
        second.write_text("application/x-b foo\nimage/png png\n")
        table = MimeTypes(globs_files=[str(base / "missing")], types_files=[str(first), str(second)])
        self.assertEqual(table.by_extension(".md"), "text/markdown; charset=utf-8")
        self.assertEqual(table.by_extension(".markdown"), "text/markdown; charset=utf-8")
        self.assertEqual(table.by_extension(".foo"), "application/x-b")  # later files override
        self.assertEqual(table.by_extension(".png"), "image/png")
