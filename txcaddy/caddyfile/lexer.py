"""The Caddyfile lexer: text in, tokens out, exactly as Caddy 2.6.2 splits them.

Rules worth knowing (they are all Caddy's): ``#`` starts a comment only at the
start of a token; inside ``"..."`` only ``\\"`` is an escape and any other
backslash is kept; backtick strings are fully literal; a backslash before a
newline continues the line (the next line's tokens count as the same line).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from txcaddy._go.unicode import SPACE_SET


@dataclass(frozen=True)
class Token:
    """One Caddyfile token and where it came from."""

    file: str
    line: int
    text: str
    quote: str = ""  # the enclosing quote character ('"' or '`'), if any
    snippet: str | None = None  # the snippet that defined it, if any

    @property
    def quoted(self) -> bool:
        return bool(self.quote)

    def with_text(self, text: str) -> Token:
        return replace(self, text=text)




def tokenize(text: str, filename: str) -> list[Token]:
    """Split Caddyfile text into tokens; never raises."""
    if text.startswith("\ufeff"):
        text = text[1:]
    tokens: list[Token] = []
    append = tokens.append
    line = 1
    skipped_lines = 0
    n = len(text)
    i = 0
    while True:
        val: list[str] = []
        comment = quoted = bt_quoted = escaped = False
        token_line = line
        quote_char = ""
        finished = False
        while i < n:
            ch = text[i]
            i += 1
            if not escaped and not bt_quoted and ch == "\\":
                escaped = True
                continue
            if quoted or bt_quoted:
                if quoted and escaped:
                    if ch != '"':
                        val.append("\\")
                    escaped = False
                else:
                    if quoted and ch == '"':
                        quote_char = '"'
                        finished = True
                        break
                    if bt_quoted and ch == "`":
                        quote_char = "`"
                        finished = True
                        break
                if ch == "\n":
                    line += 1 + skipped_lines
                    skipped_lines = 0
                val.append(ch)
                continue
            if ch in SPACE_SET:  # Go's unicode.IsSpace
                if ch == "\r":
                    continue
                if ch == "\n":
                    if escaped:
                        skipped_lines += 1
                        escaped = False
                    else:
                        line += 1 + skipped_lines
                        skipped_lines = 0
                    comment = False
                if val:
                    finished = True
                    break
                continue
            if ch == "#" and not val:
                comment = True
            if comment:
                continue
            if not val:
                token_line = line
                if ch == '"':
                    quoted = True
                    continue
                if ch == "`":
                    bt_quoted = True
                    continue
            if escaped:
                val.append("\\")
                escaped = False
            val.append(ch)
        if finished:
            append(Token(filename, token_line, "".join(val), quote_char))
            continue
        # end of input
        if val:
            append(Token(filename, token_line, "".join(val)))
        return tokens
