"""Go's ``regexp``: RE2 syntax (``regexp.Compile``) on Python's ``re``, and ``ReplaceAllString``.

Caddy's regexp matchers and handlers take Go syntax, which differs from
Python's in ways that change what matches, not only what parses:

* ``$`` is the end of the text (Python's ``$`` also matches before a final
  newline, so ``^/admin$`` would match ``/admin%0A``); ``\\z`` is that end too;
* ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are ASCII-only;
* flags like ``(?i)`` may appear anywhere and last until the group closes;
* ``{`` that does not start a valid repetition is a literal (``a{,3}``);
* ``\\Q…\\E``, ``\\x{10FFFF}``, octal escapes, POSIX ``[[:alpha:]]``,
  Unicode categories ``\\pL`` and the ungreedy flag ``(?U)`` exist;
  back-references, look-around, ``(?<name>…)`` (Go 1.19) and possessive or
  stacked repetitions (``a**``, ``a*+``) are errors.

``translate`` rewrites a Go pattern into an equivalent Python pattern (group
numbers and names are kept) or raises ``RegexpError`` where Go would
refuse it. Unicode scripts (``\\p{Greek}``) and group names starting with a
digit are refused with a clear message: Python's ``re`` cannot express them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache, lru_cache

from txcaddy._go.errors import GoError

__all__ = ["RegexpError", "compile_regexp", "expander", "replace_all", "replace_all_string", "translate"]

MAX_RUNE = 0x10FFFF
_MAX_REPEAT = 1000


class RegexpError(GoError):
    """A pattern Go's ``regexp.Compile`` rejects (or txcaddy cannot express)."""


Ranges = list[tuple[int, int]]

_DIGIT: Ranges = [(0x30, 0x39)]
_SPACE: Ranges = [(0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20)]
_WORD: Ranges = [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]

_PERL: dict[str, tuple[Ranges, bool]] = {
    "d": (_DIGIT, False),
    "D": (_DIGIT, True),
    "s": (_SPACE, False),
    "S": (_SPACE, True),
    "w": (_WORD, False),
    "W": (_WORD, True),
}

_POSIX: dict[str, Ranges] = {
    "alnum": [(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
    "alpha": [(0x41, 0x5A), (0x61, 0x7A)],
    "ascii": [(0x00, 0x7F)],
    "blank": [(0x09, 0x09), (0x20, 0x20)],
    "cntrl": [(0x00, 0x1F), (0x7F, 0x7F)],
    "digit": [(0x30, 0x39)],
    "graph": [(0x21, 0x7E)],
    "lower": [(0x61, 0x7A)],
    "print": [(0x20, 0x7E)],
    "punct": [(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
    "space": [(0x09, 0x0D), (0x20, 0x20)],
    "upper": [(0x41, 0x5A)],
    "word": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "xdigit": [(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
}

_WORD_CLASS = "[0-9A-Z_a-z]"
_WORD_BOUNDARY = f"(?:(?<={_WORD_CLASS})(?!{_WORD_CLASS})|(?<!{_WORD_CLASS})(?={_WORD_CLASS}))"
_NOT_WORD_BOUNDARY = f"(?:(?<={_WORD_CLASS})(?={_WORD_CLASS})|(?<!{_WORD_CLASS})(?!{_WORD_CLASS}))"

_SIMPLE_ESCAPES = {"a": 0x07, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B}


def _clean(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _negate(ranges: Ranges) -> Ranges:
    out: Ranges = []
    next_lo = 0
    for lo, hi in _clean(ranges):
        if next_lo <= lo - 1:
            out.append((next_lo, lo - 1))
        next_lo = hi + 1
    if next_lo <= MAX_RUNE:
        out.append((next_lo, MAX_RUNE))
    return out


def _escape_code_point(cp: int) -> str:
    ch = chr(cp)
    if ch.isascii() and ch.isalnum():
        return ch
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _class_text(ranges: Ranges, negated: bool = False) -> str:
    body = []
    for lo, hi in _clean(ranges):
        if lo == hi:
            body.append(_escape_code_point(lo))
        elif hi == lo + 1:
            body.append(_escape_code_point(lo) + _escape_code_point(hi))
        else:
            body.append(f"{_escape_code_point(lo)}-{_escape_code_point(hi)}")
    if not body:
        # Go allows classes that match nothing (or everything, negated)
        return "[^\\x00-\\U0010ffff]" if not negated else "[\\x00-\\U0010ffff]"
    return "[" + ("^" if negated else "") + "".join(body) + "]"


_CATEGORY_GROUPS = ("L", "M", "N", "P", "S", "Z", "C")


@cache
def _category_ranges(name: str) -> tuple[tuple[int, int], ...]:
    """Code point ranges of a Unicode general category (one or two letters, or ``Any``)."""
    if name == "Any":
        return ((0, MAX_RUNE),)
    if name == "Ascii":
        return ((0, 0x7F),)
    wanted_prefix = name if len(name) == 1 else None
    out: Ranges = []
    start = -1
    for cp in range(MAX_RUNE + 1):
        category = unicodedata.category(chr(cp))
        if wanted_prefix is not None:
            hit = category[0] == wanted_prefix and category != "Cn"
        else:
            hit = category == name
        if hit:
            if start < 0:
                start = cp
        elif start >= 0:
            out.append((start, cp - 1))
            start = -1
    if start >= 0:
        out.append((start, MAX_RUNE))
    return tuple(out)


_TWO_LETTER = frozenset(
    "Lu Ll Lt Lm Lo Mn Mc Me Nd Nl No Pc Pd Ps Pe Pi Pf Po Sm Sc Sk So Zs Zl Zp Cc Cf Co Cs".split()
)


def _unicode_class(name: str, sequence: str) -> Ranges:
    canonical = name.replace("_", "").replace("-", "").replace(" ", "")
    canonical = canonical[:1].upper() + canonical[1:].lower() if canonical else canonical
    if canonical in ("Any", "Ascii") or canonical in _CATEGORY_GROUPS or canonical in _TWO_LETTER:
        return list(_category_ranges(canonical))
    raise RegexpError(
        f"error parsing regexp: invalid character class range: `{sequence}` "
        "(txcaddy supports Unicode categories such as \\pL or \\p{Lu}, not scripts)"
    )


class _Frame:
    """An open group: the flags to restore when it closes, and the flag wrappers opened in it."""

    __slots__ = ("saved_flags", "wrappers")

    def __init__(self, saved_flags: tuple[bool, bool]) -> None:
        self.saved_flags = saved_flags
        self.wrappers: list[str] = []


def _error(code: str, expr: str) -> RegexpError:
    return RegexpError(f"error parsing regexp: {code}: `{expr}`")


class _Translator:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0
        self.out: list[str] = []
        self.multiline = False
        self.ungreedy = False
        self.frames: list[_Frame] = [_Frame((False, False))]
        self.last_repeat = False

    # -- escapes ----------------------------------------------------------------------

    def _escape(self) -> int:
        """A single-character escape at ``pos`` (the backslash); returns its code point."""
        p = self.pattern
        start = self.pos
        if start + 1 >= len(p):
            raise _error("trailing backslash at end of expression", "")
        c = p[start + 1]
        self.pos = start + 2
        if c.isascii() and not c.isalnum():
            return ord(c)
        if c in "1234567" and (self.pos >= len(p) or p[self.pos] not in "01234567"):
            raise _error("invalid escape sequence", p[start : self.pos])
        if c in "01234567":
            value = int(c)
            for _ in range(2):
                if self.pos < len(p) and p[self.pos] in "01234567":
                    value = value * 8 + int(p[self.pos])
                    self.pos += 1
                else:
                    break
            return value
        if c == "x":
            if self.pos < len(p) and p[self.pos] == "{":
                end = p.find("}", self.pos)
                digits = p[self.pos + 1 : end] if end >= 0 else ""
                if end < 0 or not digits or any(d not in "0123456789abcdefABCDEF" for d in digits) or int(digits, 16) > MAX_RUNE:
                    raise _error("invalid escape sequence", p[start : (end + 1 if end >= 0 else len(p))])
                self.pos = end + 1
                return int(digits, 16)
            digits = p[self.pos : self.pos + 2]
            if len(digits) < 2 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise _error("invalid escape sequence", p[start : self.pos + len(digits)])
            self.pos += 2
            return int(digits, 16)
        if c in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[c]
        raise _error("invalid escape sequence", p[start : self.pos])

    def _group_escape(self) -> tuple[Ranges, bool] | None:
        """``\\d``-style or ``\\pL``-style class at ``pos``: (ranges, negated), or None."""
        p = self.pattern
        if self.pos + 1 >= len(p) or p[self.pos] != "\\":
            return None
        c = p[self.pos + 1]
        if c in _PERL:
            self.pos += 2
            return _PERL[c]
        if c in "pP":
            start = self.pos
            negated = c == "P"
            if self.pos + 2 >= len(p):
                raise _error("invalid character class range", p[start:])
            if p[self.pos + 2] == "{":
                end = p.find("}", self.pos)
                if end < 0:
                    raise _error("invalid character class range", p[start:])
                name = p[self.pos + 3 : end]
                self.pos = end + 1
            else:
                name = p[self.pos + 2]
                self.pos += 3
            if name.startswith("^"):
                negated = not negated
                name = name[1:]
            return _unicode_class(name, p[start : self.pos]), negated
        return None

    # -- classes ----------------------------------------------------------------------

    def _class(self) -> str:
        p = self.pattern
        whole_start = self.pos
        self.pos += 1
        negated = False
        if self.pos < len(p) and p[self.pos] == "^":
            negated = True
            self.pos += 1
        ranges: Ranges = []
        first = True
        while self.pos >= len(p) or p[self.pos] != "]" or first:
            if self.pos >= len(p):
                raise _error("missing closing ]", p[whole_start:])
            first = False
            if p.startswith("[:", self.pos):
                end = p.find(":]", self.pos + 2)
                if end >= 0:
                    name = p[self.pos + 2 : end]
                    sequence = p[self.pos : end + 2]
                    group_negated = name.startswith("^")
                    posix = _POSIX.get(name[1:] if group_negated else name)
                    if posix is None:
                        raise _error("invalid character class range", sequence)
                    ranges.extend(_negate(posix) if group_negated else posix)
                    self.pos = end + 2
                    continue
            group = self._group_escape()
            if group is not None:
                group_ranges, group_negated = group
                ranges.extend(_negate(group_ranges) if group_negated else group_ranges)
                continue
            range_start = self.pos
            lo = self._class_char(whole_start)
            hi = lo
            if self.pos + 1 < len(p) and p[self.pos] == "-" and p[self.pos + 1] != "]":
                self.pos += 1
                hi = self._class_char(whole_start)
                if hi < lo:
                    raise _error("invalid character class range", p[range_start : self.pos])
            ranges.append((lo, hi))
        self.pos += 1
        return _class_text(ranges, negated)

    def _class_char(self, whole_start: int) -> int:
        p = self.pattern
        if self.pos >= len(p):
            raise _error("missing closing ]", p[whole_start:])
        if p[self.pos] == "\\":
            return self._escape()
        self.pos += 1
        return ord(p[self.pos - 1])

    # -- groups and flags ---------------------------------------------------------------

    def _perl_group(self) -> None:
        """``(?`` at ``pos``: a named capture, a flag change or a non-capturing group."""
        p = self.pattern
        start = self.pos
        if p.startswith("(?P<", start):
            name_start = start + 4
            end = p.find(">", name_start)
            if end < 0:
                raise _error("invalid named capture", p[start:])
            name = p[name_start:end]
            if not name or any(not (ch.isascii() and (ch.isalnum() or ch == "_")) for ch in name):
                raise _error("invalid named capture", p[start : end + 1])
            if name[0].isdigit():
                raise RegexpError(
                    f"error parsing regexp: capture group name starting with a digit is not supported by txcaddy: `{p[start:end + 1]}`"
                )
            self.pos = end + 1
            self.frames.append(_Frame((self.multiline, self.ungreedy)))
            self.out.append(f"(?P<{name}>")
            return
        i = start + 2
        on: list[str] = []
        off: list[str] = []
        negative = False
        saw_flag = False
        while i < len(p):
            c = p[i]
            i += 1
            if c in "imsU":
                (off if negative else on).append(c)
                saw_flag = True
            elif c == "-" and not negative:
                negative = True
                saw_flag = False
            elif c in ":)":
                if negative and not saw_flag:
                    break
                # Python knows i, m, s; U (swap greedy and lazy) is applied here
                python_on = "".join(f for f in on if f != "U")
                python_off = "".join(f for f in off if f != "U")
                spec = python_on + ("-" + python_off if python_off else "")
                multiline = ("m" in on) or (self.multiline and "m" not in off)
                ungreedy = ("U" in on) or (self.ungreedy and "U" not in off)
                self.pos = i
                if c == ":":
                    self.frames.append(_Frame((self.multiline, self.ungreedy)))
                    self.out.append(f"(?{spec}:" if spec else "(?:")
                elif spec:
                    # the flags last until the enclosing group closes: wrap the rest of it
                    self.frames[-1].wrappers.append(spec)
                    self.out.append(f"(?{spec}:")
                self.multiline = multiline
                self.ungreedy = ungreedy
                return
            else:
                break
        raise _error("invalid or unsupported Perl syntax", p[start:i])

    def _close_group(self) -> None:
        if len(self.frames) < 2:
            raise _error("unexpected )", self.pattern)
        frame = self.frames.pop()
        self.out.append(")" * len(frame.wrappers) + ")")
        self.multiline, self.ungreedy = frame.saved_flags

    def _bar(self) -> None:
        wrappers = self.frames[-1].wrappers
        self.out.append(")" * len(wrappers) + "|" + "".join(f"(?{spec}:" for spec in wrappers))

    # -- repetition -----------------------------------------------------------------------

    def _repeat_braces(self) -> str | None:
        m = re.match(r"\{(0|[1-9][0-9]*)(?:(,)(0|[1-9][0-9]*)?)?\}", self.pattern[self.pos :])
        if m is None:
            return None
        low = int(m.group(1))
        high = low if m.group(2) is None else (int(m.group(3)) if m.group(3) is not None else -1)
        if low > _MAX_REPEAT or high > _MAX_REPEAT or (high >= 0 and low > high):
            raise _error("invalid repeat count", m.group(0))
        self.pos += len(m.group(0))
        return m.group(0)

    def _repeat(self, operator: str) -> None:
        if self.last_repeat:
            raise _error("invalid nested repetition operator", operator)
        lazy = self.pos < len(self.pattern) and self.pattern[self.pos] == "?"
        if lazy:
            self.pos += 1
        if lazy != self.ungreedy:
            operator += "?"
        self.out.append(operator)

    # -- the main loop ----------------------------------------------------------------------

    def run(self) -> str:
        p = self.pattern
        out = self.out
        while self.pos < len(p):
            c = p[self.pos]
            repeat = False
            if c == "(":
                if p.startswith("(?", self.pos):
                    self._perl_group()
                else:
                    self.frames.append(_Frame((self.multiline, self.ungreedy)))
                    out.append("(")
                    self.pos += 1
            elif c == ")":
                self._close_group()
                self.pos += 1
            elif c == "|":
                self._bar()
                self.pos += 1
            elif c == "$":
                out.append("$" if self.multiline else "\\Z")
                self.pos += 1
            elif c in "*+?":
                self.pos += 1
                self._repeat(c)
                repeat = True
            elif c == "{":
                braces = self._repeat_braces()
                if braces is None:
                    out.append("\\{")
                    self.pos += 1
                else:
                    self._repeat(braces)
                    repeat = True
            elif c == "[":
                out.append(self._class())
            elif c == "\\":
                self._backslash()
            else:
                out.append(c)
                self.pos += 1
            self.last_repeat = repeat
        if len(self.frames) > 1:
            raise _error("missing closing )", p)
        out.append(")" * len(self.frames[0].wrappers))
        return "".join(out)

    def _backslash(self) -> None:
        p = self.pattern
        out = self.out
        c = p[self.pos + 1] if self.pos + 1 < len(p) else ""
        if c == "A":
            out.append("\\A")
            self.pos += 2
        elif c == "z":
            out.append("\\Z")
            self.pos += 2
        elif c == "b":
            out.append(_WORD_BOUNDARY)
            self.pos += 2
        elif c == "B":
            out.append(_NOT_WORD_BOUNDARY)
            self.pos += 2
        elif c == "C":
            raise _error("invalid escape sequence", "\\C")
        elif c == "Q":
            end = p.find("\\E", self.pos + 2)
            literal = p[self.pos + 2 :] if end < 0 else p[self.pos + 2 : end]
            self.pos = len(p) if end < 0 else end + 2
            out.append(re.escape(literal))  # a following repetition applies to its last character, as in Go
        else:
            group = self._group_escape()
            if group is not None:
                ranges, negated = group
                out.append(_class_text(ranges, negated))
                return
            out.append(_escape_code_point(self._escape()))


@lru_cache(maxsize=1024)
def translate(pattern: str) -> str:
    """The Python ``re`` pattern equivalent to the Go pattern ``pattern``."""
    return _Translator(pattern).run()


@lru_cache(maxsize=1024)
def compile_regexp(pattern: str) -> re.Pattern[str]:
    """``regexp.Compile(pattern)`` as a Python pattern (cached); ``RegexpError`` when invalid."""
    python_pattern = translate(pattern)
    try:
        return re.compile(python_pattern)
    except re.error as e:
        raise RegexpError(f"error parsing regexp: {e.msg}: `{pattern}`") from None

# -- ReplaceAllString ----------------------------------------------------------------------
#
# Caddy's ``path_regexp`` rewrites and header ``search_regexp`` replacements
# use Go's replacement templates (``$1``, ``${name}``, ``$$``; a ``$`` that
# starts no valid name stays as text; a missing group is empty) and Go's rule
# that an empty match right after the previous match is not replaced. Both
# differ from Python's ``re.sub``.


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
