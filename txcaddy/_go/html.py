"""Go's ``html.EscapeString``: ``<``, ``>``, ``&``, ``'`` and ``"``, the last two numerically.

``redir … html`` writes its target into the page with it, so the body matches Caddy's byte for
byte; the file server's listing page escapes names the same way.
"""

from __future__ import annotations

__all__ = ["escape_string"]


def escape_string(text: str) -> str:
    """``html.EscapeString``: ``&amp;``, ``&lt;``, ``&gt;``, ``&#39;`` and ``&#34;``."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&#39;").replace('"', "&#34;"))
