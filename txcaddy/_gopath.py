"""Go's path and ``filepath.Match`` rules on Unix, shared by the adapter and the run time.

Caddy's ``hide`` lists, ``try_files`` globs and path cleaning follow Go's
``path/filepath`` exactly (an empty character range is valid and matches
nothing; a leading ``//`` is cleaned away), so both sides use these.
"""

from __future__ import annotations

import os
import posixpath
import re
from functools import lru_cache

__all__ = ["compile_match", "go_abs", "go_clean", "go_match"]


def go_clean(path: str) -> str:
    """Go's ``path.Clean`` (and ``filepath.Clean`` on Unix)."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):  # POSIX keeps a leading "//"; Go does not
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def go_abs(path: str) -> str:
    """Go's ``filepath.Abs``: cleaned, relative paths taken from the working directory."""
    if path.startswith("/"):
        return go_clean(path)
    return go_clean(os.getcwd() + "/" + path)


def _class_char(pattern: str, i: int) -> tuple[str, int] | None:
    """Go's ``getEsc``: one (possibly escaped) character of a character class."""
    n = len(pattern)
    if i >= n or pattern[i] in "-]":
        return None
    if pattern[i] == "\\":
        i += 1
        if i >= n:
            return None
    ch = pattern[i]
    i += 1
    if i >= n:  # a class must be closed
        return None
    return ch, i


@lru_cache(maxsize=1024)
def compile_match(pattern: str) -> re.Pattern[str] | None:
    """A regular expression equivalent to Go's ``filepath.Match(pattern, ·)``; None when malformed."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
            i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "\\":
            if i + 1 >= n:
                return None
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif ch == "[":
            i += 1
            negated = i < n and pattern[i] == "^"
            if negated:
                i += 1
            ranges: list[str] = []
            count = 0
            while True:
                if i < n and pattern[i] == "]" and count:
                    i += 1
                    break
                low = _class_char(pattern, i)
                if low is None:
                    return None
                lo, i = low
                hi = lo
                if pattern[i] == "-":
                    high = _class_char(pattern, i + 1)
                    if high is None:
                        return None
                    hi, i = high
                count += 1
                if lo <= hi:  # Go accepts an empty range; it just never matches
                    ranges.append(re.escape(lo) + ("-" + re.escape(hi) if hi != lo else ""))
            body = "".join(ranges)
            if negated:
                out.append(f"[^{body}]" if body else "[\\s\\S]")
            else:
                out.append(f"[{body}]" if body else "(?!)")
        else:
            out.append(re.escape(ch))
            i += 1
    return re.compile("".join(out), re.DOTALL)


def go_match(pattern: str, name: str) -> bool:
    """Go's ``filepath.Match``; a malformed pattern matches nothing (Caddy ignores the error)."""
    regex = compile_match(pattern)
    return regex is not None and regex.fullmatch(name) is not None
