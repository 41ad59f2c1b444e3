"""Caddy's placeholder templates: a string parsed once into literals and value slots.

The parsing reproduces Caddy's ``Replacer`` loop (see ``txcaddy.config.placeholders`` for
its quirks); each slot holds the value source its name picked at build time, so rendering
is a walk over the segments with no string scanning per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from txcaddy._go.fmt import sprint
from txcaddy._go.strconv import format_float_f
from txcaddy.config._resolvers import UNKNOWN, global_resolver, resolver


def to_string(value: Any) -> str:
    """Caddy's ``ToString``: how a placeholder value is written into text."""
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return ""
    if cls is int:
        return str(value)
    if cls is float:
        return format_float_f(value)
    return sprint(value)


# -- templates ------------------------------------------------------------------------------


class _Slot:
    """A placeholder in a template; ``fallback`` is what ReplaceKnown writes when unknown."""

    __slots__ = ("key", "resolve", "_text", "_start", "_end", "_fallback")

    def __init__(self, key: str, text: str, start: int, end: int) -> None:
        self.key = key
        self.resolve = resolver(key)
        self._text = text
        self._start = start
        self._end = end
        self._fallback: tuple[Any, ...] | None = None

    @property
    def fallback(self) -> tuple[Any, ...]:
        """Caddy rescans from just after the ``{``; built on first need."""
        if self._fallback is None:
            segments, _ = _scan(self._text, self._start + 1, self._end + 1, self._start)
            self._fallback = _merge(segments)
        return self._fallback

    def __repr__(self) -> str:
        return f"_Slot({self.key!r})"


_MAX_UNCLOSED = 100


def _scan(text: str, start: int, stop: int, cursor: int) -> tuple[list[Any], int]:
    """Caddy's replace loop over ``text[start:stop]`` with nothing known.

    Returns the segments (literal strings and slots, literals not merged across
    slots) and the number of unclosed ``{`` seen.
    """
    segments: list[Any] = []
    unclosed = 0
    length = len(text)
    i = start
    while i < stop:
        ch = text[i]
        if i > 0 and text[i - 1] == "\\" and (ch == "{" or ch == "}"):
            segments.append(text[cursor : i - 1])
            cursor = i
            i += 1
            continue
        if ch != "{":
            i += 1
            continue
        end = text.find("}", i)
        if end < 0:
            unclosed += 1
            i += 1
            continue
        closed = True
        while 0 < end < length - 1 and text[end - 1] == "\\":
            next_end = text.find("}", end + 1)
            if next_end < 0:
                closed = False
                break
            end = next_end
        if not closed:
            unclosed += 1
            i += 1
            continue
        segments.append(text[cursor:i])
        segments.append(_Slot(text[i + 1 : end], text, i, end))
        i = end + 1
        cursor = i
    segments.append(text[cursor:stop])
    return [s for s in segments if s != ""], unclosed


def _merge(segments: list[Any]) -> tuple[Any, ...]:
    merged: list[Any] = []
    for segment in segments:
        if merged and segment.__class__ is str and merged[-1].__class__ is str:
            merged[-1] += segment
        else:
            merged.append(segment)
    return tuple(merged)


def _render(
    segments: tuple[Any, ...], out: list[str], request: Any, response: Any, empty_unknown: bool, empty: str,
    transform: Callable[[str], str] | None = None,
) -> None:
    for segment in segments:
        if segment.__class__ is str:
            out.append(segment)
            continue
        value = segment.resolve(request, response)
        if value is UNKNOWN:
            if not empty_unknown:
                _render(segment.fallback, out, request, response, False, empty, transform)
                continue
            text = ""
        elif value.__class__ is str:
            text = value
        else:
            text = to_string(value)
        if transform is not None and text:
            text = transform(text)
        out.append(text or empty)


class Template:
    """A string with placeholders, parsed once.

    ``render(request)`` is Caddy's ``ReplaceKnown`` (unknown placeholders stay
    as written); ``render(request, empty_unknown=True)`` is ``ReplaceAll``.
    ``empty`` replaces values that come out empty, as Caddy's ``empty`` argument.
    """

    __slots__ = ("text", "is_static", "_segments", "_static")

    def __init__(self, text: str) -> None:
        self.text = text
        if "{" not in text:
            self._segments: tuple[Any, ...] = (text,) if text else ()
        else:
            segments, unclosed = _scan(text, 0, len(text), 0)
            # Caddy gives up (empty result) at the 102nd unclosed brace
            self._segments = () if unclosed > _MAX_UNCLOSED + 1 else _merge(segments)
        self.is_static = all(s.__class__ is str for s in self._segments)
        self._static = "".join(self._segments) if self.is_static else ""

    @property
    def keys(self) -> list[str]:
        """The placeholder names at the top level, in order."""
        return [s.key for s in self._segments if s.__class__ is not str]

    def render(
        self, request: Any, response: Any = None, *, empty_unknown: bool = False, empty: str = "",
        transform: Callable[[str], str] | None = None,
    ) -> str:
        """``transform`` rewrites each known value's text (Caddy's ``ReplaceFunc``)."""
        if self.is_static:
            return self._static
        out: list[str] = []
        _render(self._segments, out, request, response, empty_unknown, empty, transform)
        return out[0] if len(out) == 1 else "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


_template_cache: dict[str, Template] = {}


def template(text: str) -> Template:
    """A shared compiled ``Template`` for ``text`` (for strings seen again and again)."""
    compiled = _template_cache.get(text)
    if compiled is None:
        compiled = Template(text)
        if len(_template_cache) < 4096:
            _template_cache[text] = compiled
    return compiled


def replace_known(text: str, request: Any, response: Any = None, empty: str = "") -> str:
    """Caddy's ``ReplaceKnown``: unknown placeholders stay as written."""
    if "{" not in text:
        return text
    return template(text).render(request, response, empty=empty)


def replace_all(text: str, request: Any, response: Any = None, empty: str = "") -> str:
    """Caddy's ``ReplaceAll``: unknown placeholders become empty (or ``empty``)."""
    if "{" not in text:
        return text
    return template(text).render(request, response, empty_unknown=True, empty=empty)


def replace_all_global(text: str) -> str:
    """``ReplaceAll`` with only the global values (``env.*``, ``system.*``, ``time.*``).

    What Caddy's modules get from ``caddy.NewReplacer()`` when they provision, outside
    any request: every other placeholder is unknown there, so it becomes empty.
    """
    if "{" not in text:
        return text
    out: list[str] = []
    for segment in template(text)._segments:
        if segment.__class__ is str:
            out.append(segment)
            continue
        source = global_resolver(segment.key)
        if source is not None:
            out.append(to_string(source(None, None)))
    return "".join(out)
