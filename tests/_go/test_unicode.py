"""Go's ``unicode.IsSpace``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.unicode import SPACE, is_space


class IsSpaceTests(SynchronousTestCase):
    def test_white_space(self) -> None:
        """Python's ``isspace`` less U+001C..U+001F, over every code point."""
        for code in range(0x110000):
            ch = chr(code)
            if is_space(ch) != (ch.isspace() and not "\x1c" <= ch <= "\x1f"):
                self.fail(f"U+{code:04X}")
        self.assertEqual(len(SPACE), 25)

    def test_not_space(self) -> None:
        """The file separators and the zero-width space are not spaces to Go."""
        for ch in "\x1c\x1d\x1e\x1f\u200b\u180e":
            self.assertFalse(is_space(ch), repr(ch))
