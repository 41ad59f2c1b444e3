"""Go's ``unicode.IsSpace``: the Unicode White_Space characters.

Python's ``str.isspace`` also counts U+001C..U+001F, Go does not; the Caddyfile lexer and
formatter split on Go's set, and ``strings.TrimSpace`` trims it.
"""

from __future__ import annotations

__all__ = ["SPACE", "SPACE_SET", "is_space"]

#: Every character ``unicode.IsSpace`` accepts, as one string (for ``str.strip``).
SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
#: The same, as a set (for ``in`` tests character by character).
SPACE_SET = frozenset(SPACE)


def is_space(ch: str) -> bool:
    """``unicode.IsSpace`` of one character."""
    return ch in SPACE_SET
