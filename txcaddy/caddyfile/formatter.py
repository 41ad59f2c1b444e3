"""``txcaddy fmt``: Caddy's Caddyfile formatter (tabs, one brace style, blank lines).

It is a character-level rewrite, like Caddy's, so comments and quoting are
kept exactly; running it on its own output changes nothing.
"""

from __future__ import annotations

from txcaddy._go.strings import trim_space
from txcaddy._go.unicode import is_space


def format_caddyfile(text: str) -> str:
    """Format Caddyfile text the way ``caddy fmt`` does."""
    text = trim_space(text)  # bytes.TrimSpace
    out: list[str] = []
    last = ""
    space = True
    beginning_of_line = True
    open_brace = open_brace_written = open_brace_space = False
    new_lines = 0
    comment = quoted = escaped = False
    nesting = 0

    def write(ch: str) -> None:
        nonlocal last
        out.append(ch)
        last = ch

    def indent() -> None:
        for _ in range(nesting):
            write("\t")

    def next_line() -> None:
        nonlocal beginning_of_line
        write("\n")
        beginning_of_line = True

    for ch in text:
        if comment:
            if ch == "\n":
                comment = False
                space = True
                next_line()
            else:
                write(ch)
            continue
        if not escaped and ch == "\\":
            if space:
                write(" ")
                space = False
            write(ch)
            escaped = True
            continue
        if escaped:
            write(ch)
            escaped = False
            continue
        if quoted:
            if ch == '"':
                quoted = False
            write(ch)
            continue
        if space and ch == '"':
            quoted = True
        if is_space(ch):
            space = True
            if ch == "\n":
                new_lines += 1
            continue
        space_prior = space
        space = False
        if ch == "#":
            comment = True
        if open_brace and space_prior and not open_brace_written:
            if nesting == 0 and last == "}":
                next_line()
                next_line()
            open_brace = False
            if beginning_of_line:
                indent()
            elif not open_brace_space:
                write(" ")
            write("{")
            open_brace_written = True
            next_line()
            new_lines = 0
            if nesting < 10:
                nesting += 1
        if ch == "{":
            open_brace = True
            open_brace_written = False
            open_brace_space = space_prior and not beginning_of_line
            if open_brace_space:
                write(" ")
            continue
        if ch == "}" and (space_prior or not open_brace):
            if last != "\n":
                next_line()
            if nesting > 0:
                nesting -= 1
            indent()
            write("}")
            new_lines = 0
            continue
        for _ in range(min(new_lines, 2)):
            next_line()
        new_lines = 0
        if beginning_of_line:
            indent()
        if nesting == 0 and last == "}" and beginning_of_line:
            next_line()
            next_line()
        if not beginning_of_line and space_prior:
            write(" ")
        if open_brace and not open_brace_written:
            write("{")
            open_brace_written = True
        write(ch)
        beginning_of_line = False
    return "".join(out).strip(" \t\n\v\f\r") + "\n"


def formatting_difference(filename: str, text: str) -> tuple[int, bool]:
    """The first line where ``text`` differs from its formatted form, and whether it does."""
    normalized = text.replace("\r\n", "\n")
    formatted = format_caddyfile(normalized)
    if formatted == normalized:
        return 0, False
    line = 1
    for i, ch in enumerate(normalized):
        if i >= len(formatted) or ch != formatted[i]:
            break
        if ch == "\n":
            line += 1
    return line, True
