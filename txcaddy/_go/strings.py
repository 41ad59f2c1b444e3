"""Go's ``strings.ToLower``, ``strings.ToUpper`` and ``strings.TrimSpace``.

Go maps case per code point with Unicode's simple mapping (``İ`` lowers to ``i``, ``ß`` has no
upper case, a final sigma is not special) and turns invalid UTF-8 bytes into U+FFFD; Python's
``str.lower``/``str.upper`` use the full mapping. Caddy's ``path`` matcher lowers paths and
``rewrite`` raises methods, so the difference decides what matches. ``TrimSpace`` trims
Go's ``unicode.IsSpace`` set, not Python's.
"""

from __future__ import annotations

from collections.abc import Callable

from txcaddy._go.unicode import SPACE

__all__ = ["to_lower", "to_upper", "trim_space"]


def trim_space(text: str) -> str:
    """``strings.TrimSpace``: leading and trailing ``unicode.IsSpace`` characters removed."""
    return text.strip(SPACE)


def to_lower(text: str) -> str:
    """``strings.ToLower``: per code point, invalid bytes become U+FFFD."""
    if text.isascii():
        return text.lower()
    return _per_code_point(text, str.lower, _SIMPLE_LOWER)


def to_upper(text: str) -> str:
    """``strings.ToUpper``: per code point (``ß`` stays), invalid bytes become U+FFFD."""
    if text.isascii():
        return text.upper()
    return _per_code_point(text, str.upper, {})


# Where Python's full mapping gives several characters but Go's simple one gives one.
_SIMPLE_LOWER = {"\u0130": "i"}


def _per_code_point(text: str, convert: Callable[[str], str], simple: dict[str, str]) -> str:
    """Map each code point alone; one that maps to several keeps ``simple``'s answer or itself."""
    out = []
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            out.append("\ufffd")
            continue
        mapped = convert(ch)
        out.append(mapped if len(mapped) == 1 else simple.get(ch, ch))
    return "".join(out)
