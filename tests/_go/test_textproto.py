"""Go's ``textproto.CanonicalMIMEHeaderKey``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.textproto import canonical_mime_header_key


class CanonicalKeyTests(SynchronousTestCase):
    def test_canonical_forms(self) -> None:
        """Each dash-separated word starts upper case and continues lower case."""
        cases = {
            "content-type": "Content-Type",
            "X-FORWARDED-FOR": "X-Forwarded-For",
            "x-foo": "X-Foo",
            "x_y": "X_y",
            "-a--b-": "-A--B-",
        }
        for key, expected in cases.items():
            self.assertEqual(canonical_mime_header_key(key), expected, key)

    def test_invalid_names_are_kept(self) -> None:
        """A name with a byte that cannot be in a header name, or an empty one, is kept as written."""
        for key in ("Two Words", "has space", "{placeholder}", "{http.x}", "ünï", ""):
            self.assertEqual(canonical_mime_header_key(key), key)
