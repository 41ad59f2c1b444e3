"""``txcaddy fmt`` formats as ``caddy fmt`` (expected texts produced by Caddy 2.6.2)."""

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.formatter import format_caddyfile, formatting_difference

CASES = [
    (
        'a{\nb c\n\n\n\nd {e}}\n# comment\nf    "x  y"{\n}\n',
        'a {\n\tb c\n\n\td {e}}\n\t# comment\n\tf "x  y" {\n\t}\n',
    ),
    (
        "example.com {\n    reverse_proxy localhost:3000 {\n        lb_policy   first\n    }\n}\n"
        ":80 {\nrespond `a\\  b` 200\n}",
        "example.com {\n\treverse_proxy localhost:3000 {\n\t\tlb_policy first\n\t}\n}\n"
        ":80 {\n\trespond `a\\  b` 200\n}\n",
    ),
]


class FormatterTests(SynchronousTestCase):
    def test_like_caddy_fmt(self) -> None:
        """format_caddyfile reindents, spaces braces and collapses blank lines as caddy fmt does."""
        for source, expected in CASES:
            self.assertEqual(format_caddyfile(source), expected)

    def test_idempotent(self) -> None:
        """Formatting an already formatted Caddyfile leaves it unchanged."""
        for _, expected in CASES:
            self.assertEqual(format_caddyfile(expected), expected)

    def test_difference_line(self) -> None:
        """formatting_difference gives the first line that formatting changes, and whether any."""
        self.assertEqual(formatting_difference("Caddyfile", ":80 {\n\trespond x\n}\n"), (0, False))
        self.assertEqual(formatting_difference("Caddyfile", ":80 {\n  respond x\n}\n"), (2, True))
