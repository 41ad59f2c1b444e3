"""Go's ``strings.ToLower`` and ``strings.ToUpper`` (simple case mapping, invalid bytes) and ``TrimSpace``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.strings import to_lower, to_upper, trim_space


class CaseTests(SynchronousTestCase):
    def test_to_lower(self) -> None:
        """Per code point: ``İ`` lowers to ``i``, no final sigma, invalid bytes become U+FFFD."""
        self.assertEqual(to_lower("/ADMIN"), "/admin")
        self.assertEqual(to_lower("/ÉTÉ"), "/été")
        self.assertEqual(to_lower("/ADMİN"), "/admin")  # Go maps İ to i, Python to i + combining dot
        self.assertEqual(to_lower("/ΑΣ"), "/ασ")  # no final sigma in Go
        self.assertEqual(to_lower("/a\udcffB"), "/a\ufffdb")  # an invalid byte becomes U+FFFD

    def test_to_upper(self) -> None:
        """Per code point: ``ß`` has no single upper case and stays; invalid bytes become U+FFFD."""
        self.assertEqual(to_upper("get"), "GET")
        self.assertEqual(to_upper("straße"), "STRAßE")
        self.assertEqual(to_upper("é\udcff"), "É\ufffd")


class TrimSpaceTests(SynchronousTestCase):
    def test_unicode_spaces(self) -> None:
        """Go's ``unicode.IsSpace`` set is trimmed (NEL, NBSP, U+3000), the file separators are not."""
        self.assertEqual(trim_space("\x85\xa0\u3000 {x} \t\n\u2029"), "{x}")
        self.assertEqual(trim_space("\x1c{x}\x1f"), "\x1c{x}\x1f")
        self.assertEqual(trim_space("\udcff x"), "\udcff x")
