"""Go's ``net/url``: escaping, ``ParseQuery``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.url import (
    parse_query,
    path_escape,
    path_unescape,
    query_escape,
    query_unescape,
    valid_encoded,
)


class UnescapeTests(SynchronousTestCase):
    def test_path_unescape(self) -> None:
        """``%xx`` is decoded and ``+`` kept; a bad escape is an error (None)."""
        self.assertEqual(path_unescape("/a%20b+c%2F"), "/a b+c/")
        self.assertEqual(path_unescape("/plain"), "/plain")
        self.assertIsNone(path_unescape("/a%2"))
        self.assertIsNone(path_unescape("/a%zz"))
        self.assertEqual(path_unescape("/%C3%A9%FF"), "/\u00e9\udcff")

    def test_invalid_utf8_survives(self) -> None:
        """Decoded bytes that are not UTF-8 come back as surrogate escapes, and text around them too."""
        self.assertEqual(path_unescape("/%ff\udcfe%41"), "/\udcff\udcfeA")

    def test_query_unescape(self) -> None:
        """In a query ``+`` is a space; a bad escape is an error (None)."""
        self.assertEqual(query_unescape("a+b%21"), "a b!")
        self.assertIsNone(query_unescape("100%"))


class EscapeTests(SynchronousTestCase):
    def test_path_escape(self) -> None:
        """Path escaping keeps ``/`` and the sub-delimiters Go keeps, escapes the rest as UTF-8."""
        self.assertEqual(path_escape("/a b/é?#"), "/a%20b/%C3%A9%3F%23")
        self.assertEqual(path_escape("/$&+,:;=@"), "/$&+,:;=@")

    def test_query_escape(self) -> None:
        """Query escaping writes a space as ``+`` and escapes ``/``."""
        self.assertEqual(query_escape("a b/c&d"), "a+b%2Fc%26d")

    def test_valid_encoded(self) -> None:
        """An escaped path may hold ``%``, sub-delimiters and ``[]``, not spaces or ``?``."""
        self.assertTrue(valid_encoded("/a%20b/[x]!'()*"))
        self.assertFalse(valid_encoded("/a b"))
        self.assertFalse(valid_encoded("/a?b"))


class ParseQueryTests(SynchronousTestCase):
    def test_values(self) -> None:
        """Repeated keys keep their order; keys without ``=`` have an empty value."""
        values, failed = parse_query("a=1&a=2&b&c=%41")
        self.assertEqual(values, {"a": ("1", "2"), "b": ("",), "c": ("A",)})
        self.assertFalse(failed)

    def test_errors_skip_the_pair(self) -> None:
        """A pair with ``;`` or a bad escape is left out and the error reported."""
        values, failed = parse_query("a=1;b=2&c=%&d=4")
        self.assertEqual(values, {"d": ("4",)})
        self.assertTrue(failed)
