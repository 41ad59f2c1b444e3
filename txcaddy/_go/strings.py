"""Go's ``strings.ToLower``, ``strings.ToUpper`` and ``strings.TrimSpace``.

Go maps case per code point with Unicode's simple mapping (``İ`` lowers to ``i``, ``ß`` has no
upper case, a final sigma is not special) and turns invalid UTF-8 bytes into U+FFFD; Python's
``str.lower``/``str.upper`` use the full mapping. Caddy's ``path`` matcher lowers paths and
``rewrite`` raises methods, so the difference decides what matches. ``TrimSpace`` trims
Go's ``unicode.IsSpace`` set, not Python's.
"""

from __future__ import annotations

from txcaddy._go.unicode import SPACE

__all__ = ["to_lower", "to_upper", "trim_space"]


def trim_space(text: str) -> str:
    """``strings.TrimSpace``: leading and trailing ``unicode.IsSpace`` characters removed."""
    return text.strip(SPACE)


def to_lower(text: str) -> str:
    """``strings.ToLower``: per code point, invalid bytes become U+FFFD."""
    if text.isascii():
        return text.lower()
    out = []
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            out.append("\ufffd")
            continue
        lowered = ch.lower()
        out.append(lowered if len(lowered) == 1 else ("i" if ch == "\u0130" else ch))
    return "".join(out)


def to_upper(text: str) -> str:
    """``strings.ToUpper``: per code point (``ß`` stays), invalid bytes become U+FFFD."""
    if text.isascii():
        return text.upper()
    out = []
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            out.append("\ufffd")
            continue
        upper = ch.upper()
        out.append(upper if len(upper) == 1 else ch)
    return "".join(out)
