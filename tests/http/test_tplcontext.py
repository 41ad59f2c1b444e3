"""The pure parts of Caddy's template context: ``stripHTML``, front matter, ``humanize``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.http.handlers._tplcontext import (
    extract_front_matter,
    humanize_bytes,
    humanize_time,
    markdown,
    strip_html,
)


class ContextFunctionTests(SynchronousTestCase):
    """Caddy 2.6.2's helpers, ported."""

    def test_strip_html(self) -> None:
        """Tags go, quoted ``>`` stays inside the tag, an unclosed tag is kept."""
        self.assertEqual(strip_html('<p class="a>b">Hi <b>x</b></p> <open'), "Hi x <open")

    def test_front_matter(self) -> None:
        """YAML, TOML and JSON fences; none gives the text back; an open fence fails."""
        self.assertEqual(extract_front_matter("---\na: 1\n---\nbody"), ({"a": 1}, "\nbody"))
        self.assertEqual(extract_front_matter('+++\na = "t"\n+++\nb'), ({"a": "t"}, "\nb"))
        self.assertEqual(extract_front_matter('{\n"a": 2\n}\nc'), ({"a": 2}, "\nc"))
        self.assertEqual(extract_front_matter("plain"), (None, "plain"))
        self.assertRaisesRegex(ValueError, "unterminated front matter", extract_front_matter, "---\na: 1\n")

    def test_humanize(self) -> None:
        """go-humanize's SI sizes and relative times."""
        self.assertEqual([humanize_bytes(n) for n in (5, 2048, 1234567, 83_000_000)], ["5 B", "2.0 kB", "1.2 MB", "83 MB"])
        self.assertEqual(humanize_time(1000, 1000 + 3 * 86400), "3 days ago")
        self.assertEqual(humanize_time(1000 + 3600, 1000), "1 hour from now")
        self.assertEqual(humanize_time(1000, 1000), "now")

    def test_markdown_heading_ids(self) -> None:
        """Headings get goldmark's automatic ids, made unique."""
        self.assertEqual(markdown("# A b!\n# A b"), '<h1 id="a-b">A b!</h1>\n<h1 id="a-b-1">A b</h1>\n')
