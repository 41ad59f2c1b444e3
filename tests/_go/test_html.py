"""Go's ``html.EscapeString``."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.html import escape_string


class EscapeStringTests(SynchronousTestCase):
    def test_five_characters(self) -> None:
        """``&<>`` as named entities, ``'`` and ``"`` as ``&#39;`` and ``&#34;``; nothing else."""
        self.assertEqual(escape_string("<a href=\"x\">&'é</a>"), "&lt;a href=&#34;x&#34;&gt;&amp;&#39;é&lt;/a&gt;")
        self.assertEqual(escape_string("&amp;"), "&amp;amp;")
