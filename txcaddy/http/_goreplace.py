"""Go's ``Regexp.ReplaceAllString`` on a pattern compiled by ``_goregexp``.

Caddy's ``path_regexp`` rewrites and header ``search_regexp`` replacements
use Go's replacement templates (``$1``, ``${name}``, ``$$``; a ``$`` that
starts no valid name stays as text; a missing group is empty) and Go's rule
that an empty match right after the previous match is not replaced. Both
differ from Python's ``re.sub``.
"""

from __future__ import annotations

import re
from collections.abc import Callable


def _is_name_char(ch: str) -> bool:
    return ch == "_" or ch.isalpha() or ch.isdecimal()


Expander = Callable[["re.Match[str]"], str]


def _template_parts(template: str) -> list[str | int]:
    """Go's ``Regexp.Expand`` template as literal strings and group references.

    A name reference is kept as a string key prefixed with NUL to tell it from
    literal text; numbers become ints.
    """
    parts: list[str | int] = []
    literal: list[str] = []
    i = 0
    n = len(template)
    while i < n:
        dollar = template.find("$", i)
        if dollar < 0:
            literal.append(template[i:])
            break
        literal.append(template[i:dollar])
        i = dollar + 1
        if i < n and template[i] == "$":
            literal.append("$")
            i += 1
            continue
        name = ""
        if i < n and template[i] == "{":
            end = template.find("}", i + 1)
            candidate = template[i + 1 : end] if end >= 0 else ""
            if end >= 0 and candidate and all(_is_name_char(c) for c in candidate):
                name = candidate
                i = end + 1
        else:
            j = i
            while j < n and _is_name_char(template[j]):
                j += 1
            if j > i:
                name = template[i:j]
                i = j
        if not name:
            literal.append("$")  # malformed: Go keeps the dollar as text
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        if name.isdigit() and name.isascii():
            parts.append(int(name) if len(name) < 9 else -1)
        else:
            parts.append("\0" + name)
    if literal:
        parts.append("".join(literal))
    return [p for p in parts if p != ""]


def expander(regexp: re.Pattern[str], template: str) -> Expander:
    """A function giving ``template`` expanded for a match, as Go's ``Expand``."""
    if "$" not in template:
        return lambda match: template
    parts = _template_parts(template)
    group_count = regexp.groups
    names = regexp.groupindex

    def expand(match: re.Match[str]) -> str:
        out = []
        for part in parts:
            if part.__class__ is int:
                if 0 <= part <= group_count:  # type: ignore[operator]
                    out.append(match.group(part) or "")
            elif part[0] == "\0":  # type: ignore[index]
                index = names.get(part[1:])  # type: ignore[index]
                if index is not None:
                    out.append(match.group(index) or "")
            else:
                out.append(part)  # type: ignore[arg-type]
        return "".join(out)

    return expand


def replace_all(regexp: re.Pattern[str], text: str, expand: Expander) -> str:
    """Go's ``ReplaceAllString``: an empty match right after a match is not replaced."""
    match = regexp.search(text)
    if match is None:
        return text
    out: list[str] = []
    last = 0  # end of the previous match
    search_from = 0
    length = len(text)
    while True:
        start, end = match.span()
        out.append(text[last:start])
        if end > last or start == 0:
            out.append(expand(match))
        last = end
        # always advance at least one character, as Go does
        search_from = search_from + 1 if search_from + 1 > end else end
        if search_from > length:
            break
        match = regexp.search(text, search_from)
        if match is None:
            break
    out.append(text[last:])
    return "".join(out)


def replace_all_string(regexp: re.Pattern[str], text: str, template: str) -> str:
    """``regexp.ReplaceAllString(text, template)`` with a template known only now."""
    return replace_all(regexp, text, expander(regexp, template))
