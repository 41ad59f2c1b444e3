"""The Dispenser walks tokens with Caddy's line and block rules."""

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.dispenser import Dispenser


class DispenserTests(SynchronousTestCase):
    def test_next_arg_stays_on_the_line(self) -> None:
        """next_arg reports no more arguments at a line's end; next moves on to the next line."""
        d = Dispenser.from_text("dir a b\nnext c")
        self.assertTrue(d.next())
        self.assertEqual(d.remaining_args(), ["a", "b"])
        self.assertFalse(d.next_arg())
        self.assertTrue(d.next())
        self.assertEqual(d.val(), "next")

    def test_next_arg_does_not_enter_a_block(self) -> None:
        """Arguments stop at an opening brace; next_block walks the block, leaving nesting 0."""
        d = Dispenser.from_text("dir a {\n\tsub x\n}")
        d.next()
        self.assertEqual(d.remaining_args(), ["a"])
        seen = []
        nesting = d.nesting
        while d.next_block(nesting):
            seen.append([d.val()] + d.remaining_args())
        self.assertEqual(seen, [["sub", "x"]])
        self.assertEqual(d.nesting, 0)

    def test_nested_blocks(self) -> None:
        """next_block with each level's nesting walks an inner block inside an outer one."""
        d = Dispenser.from_text("a {\n\tb {\n\t\tc\n\t}\n\td\n}")
        d.next()
        outer = []
        nesting = d.nesting
        while d.next_block(nesting):
            outer.append(d.val())
            inner_nesting = d.nesting
            while d.next_block(inner_nesting):
                outer.append("in:" + d.val())
        self.assertEqual(outer, ["b", "in:c", "d"])

    def test_empty_block(self) -> None:
        """An empty block yields no entries to next_block."""
        d = Dispenser.from_text("a {\n}")
        d.next()
        self.assertFalse(d.next_block(0))

    def test_multiline_quoted_token_counts_lines(self) -> None:
        """A quoted token spanning lines is one argument, and the next token stays on its line."""
        d = Dispenser.from_text('a "x\ny" b\nc')
        d.next()
        self.assertEqual(d.remaining_args(), ["x\ny", "b"])

    def test_args_helpers(self) -> None:
        """all_args gives the arguments only when their count matches; else None."""
        d = Dispenser.from_text("dir a b c")
        d.next()
        self.assertEqual(d.count_remaining_args(), 3)
        self.assertIsNone(d.all_args(2))
        d.reset()
        d.next()
        self.assertEqual(d.all_args(3), ["a", "b", "c"])

    def test_scalar_val(self) -> None:
        """scalar_val makes unquoted numbers and booleans values; quoted text stays a string."""
        d = Dispenser.from_text('1 1.5 true "2" x')
        values = []
        while d.next():
            values.append(d.scalar_val())
        self.assertEqual(values, [1, 1.5, True, "2", "x"])

    def test_next_segment(self) -> None:
        """next_segment yields a directive's line with its whole block, and stops there."""
        d = Dispenser.from_text("a 1 {\n\tb 2\n}\nc")
        d.next()
        self.assertEqual([t.text for t in d.next_segment()], ["a", "1", "{", "b", "2", "}"])
        self.assertTrue(d.next())
        self.assertEqual(d.val(), "c")

    def test_errors_name_file_and_line(self) -> None:
        """err, arg_err and syntax_err messages name the file and line, worded as Caddy's."""
        d = Dispenser.from_text("a\nb c", "Caddyfile")
        d.next()
        d.next()
        self.assertEqual(str(d.err("boom")), "Caddyfile:2 - Error during parsing: boom")
        self.assertEqual(
            str(d.arg_err()),
            "Caddyfile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'b'",
        )
        self.assertEqual(
            str(d.syntax_err("}")), "Caddyfile:2 - Syntax error: Unexpected token 'b', expecting '}'"
        )
