"""A cursor over Caddyfile tokens, the tool every directive parser uses.

It mirrors Caddy's ``caddyfile.Dispenser`` method for method (``next``,
``next_arg``, ``next_block``, ``remaining_args``, ``err``, ...) so that a
directive's parsing code reads like Caddy's and behaves identically: the same
line-based argument rules and the same error messages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from txcaddy._go.strconv import NumError, atoi, parse_bool, parse_float
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.lexer import Token, tokenize

_EMPTY = Token("", 0, "")


class Dispenser:
    """Walks a list of tokens; see Caddy's Dispenser for the semantics."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens: list[Token] = list(tokens)
        self.cursor = -1
        self.nesting = 0

    @classmethod
    def from_text(cls, text: str, filename: str = "Testfile") -> Dispenser:
        """A dispenser over raw Caddyfile text (tests and tools)."""
        # here, not at the top: the parser imports this module (a cycle)
        from txcaddy.caddyfile.parser import replace_env_vars

        return cls(tokenize(replace_env_vars(text), filename))

    # -- moving -----------------------------------------------------------

    def next(self) -> bool:
        """Advance to the next token, wherever it is."""
        if self.cursor < len(self.tokens) - 1:
            self.cursor += 1
            return True
        return False

    def prev(self) -> bool:
        if self.cursor > -1:
            self.cursor -= 1
            return self.cursor > -1
        return False

    def next_arg(self) -> bool:
        """Advance to the next token on the same line, but not onto a ``{``."""
        if not self._next_on_same_line():
            return False
        if self.val() == "{":
            self.cursor -= 1
            return False
        return True

    def _line_breaks(self, index: int) -> int:
        if index < 0 or index >= len(self.tokens):
            return 0
        return self.tokens[index].text.count("\n")

    def _next_on_same_line(self) -> bool:
        if self.cursor < 0:
            self.cursor += 1
            return True
        if self.cursor >= len(self.tokens):
            return False
        if self.cursor < len(self.tokens) - 1:
            cur, nxt = self.tokens[self.cursor], self.tokens[self.cursor + 1]
            if cur.file == nxt.file and cur.line + self._line_breaks(self.cursor) == nxt.line:
                self.cursor += 1
                return True
        return False

    def next_line(self) -> bool:
        """Advance only if the next token starts a new line."""
        if self.cursor < 0:
            self.cursor += 1
            return True
        if self.cursor >= len(self.tokens):
            return False
        if self.cursor < len(self.tokens) - 1:
            cur, nxt = self.tokens[self.cursor], self.tokens[self.cursor + 1]
            if cur.file != nxt.file or cur.line + self._line_breaks(self.cursor) < nxt.line:
                self.cursor += 1
                return True
        return False

    def next_block(self, initial_nesting: int) -> bool:
        """Advance to the next line inside a block opened on this line.

        Use as ``while d.next_block(nesting):`` with ``nesting = d.nesting``
        taken before the loop; it returns False at the block's closing brace.
        """
        if self.nesting > initial_nesting:
            if not self.next():
                return False
            if self.val() == "}" and not self._peek_same_line():
                self.nesting -= 1
            elif self.val() == "{" and not self._peek_same_line():
                self.nesting += 1
            return self.nesting > initial_nesting
        if not self._next_on_same_line():
            return False
        if self.val() != "{":
            self.cursor -= 1
            return False
        self.next()
        if self.val() == "}":
            return False
        self.nesting += 1
        return True

    def _peek_same_line(self) -> bool:
        # Caddy calls nextOnSameLine() here, which *moves* the cursor when it
        # succeeds; reproduce that exactly.
        return self._next_on_same_line()

    # -- reading ----------------------------------------------------------

    def token(self) -> Token:
        if 0 <= self.cursor < len(self.tokens):
            return self.tokens[self.cursor]
        return _EMPTY

    def val(self) -> str:
        return self.token().text

    def val_raw(self) -> str:
        """The token with its quotes put back, if it had any."""
        tok = self.token()
        return f"{tok.quote}{tok.text}{tok.quote}" if tok.quote else tok.text

    def scalar_val(self) -> Any:
        """The token as an int, float, bool or string, like Caddy's ScalarVal."""
        if not 0 <= self.cursor < len(self.tokens):
            return None
        tok = self.tokens[self.cursor]
        if tok.quote:
            return tok.text
        return go_scalar(tok.text)

    def line(self) -> int:
        return self.token().line

    def file(self) -> str:
        return self.token().file

    def args(self, count: int) -> list[str] | None:
        """The next ``count`` arguments, or None if there are fewer."""
        out = []
        for _ in range(count):
            if not self.next_arg():
                return None
            out.append(self.val())
        return out

    def all_args(self, count: int) -> list[str] | None:
        """Exactly ``count`` remaining arguments, or None."""
        out = self.args(count)
        if out is None:
            return None
        if self.next_arg():
            self.prev()
            return None
        return out

    def count_remaining_args(self) -> int:
        count = 0
        while self.next_arg():
            count += 1
        for _ in range(count):
            self.prev()
        return count

    def remaining_args(self) -> list[str]:
        out = []
        while self.next_arg():
            out.append(self.val())
        return out

    def remaining_args_raw(self) -> list[str]:
        out = []
        while self.next_arg():
            out.append(self.val_raw())
        return out

    def next_segment(self) -> list[Token]:
        """The current token, its arguments and its whole block, consumed."""
        tokens = [self.token()]
        while self.next_arg():
            tokens.append(self.token())
        opened = False
        nesting = self.nesting
        while self.next_block(nesting):
            if not opened:
                self.prev()
                tokens.append(self.token())
                self.next()
                opened = True
            tokens.append(self.token())
        if opened:
            tokens.append(self.token())
        return tokens

    def new_from_next_segment(self) -> Dispenser:
        return Dispenser(self.next_segment())

    def reset(self) -> None:
        self.cursor = -1
        self.nesting = 0

    def delete(self) -> list[Token]:
        if 0 <= self.cursor <= len(self.tokens) - 1:
            del self.tokens[self.cursor]
            self.cursor -= 1
        return self.tokens

    # -- line layout (used by the parser) ---------------------------------

    def is_new_line(self) -> bool:
        if self.cursor < 1:
            return True
        if self.cursor > len(self.tokens) - 1:
            return False
        prev, cur = self.tokens[self.cursor - 1], self.tokens[self.cursor]
        if prev.file != cur.file:
            return True
        return prev.line + self._line_breaks(self.cursor - 1) < cur.line

    def is_next_on_new_line(self) -> bool:
        if self.cursor < 0:
            return False
        if self.cursor >= len(self.tokens) - 1:
            return True
        cur, nxt = self.tokens[self.cursor], self.tokens[self.cursor + 1]
        if cur.file != nxt.file:
            return True
        return cur.line + self._line_breaks(self.cursor) < nxt.line

    # -- errors -----------------------------------------------------------

    def err(self, message: str) -> ConfigError:
        """An error at the current token: ``File:Line - Error during parsing: ...``."""
        return ConfigError(f"{self.file()}:{self.line()} - Error during parsing: {message}")

    def errf(self, message: str) -> ConfigError:
        return self.err(message)

    def wrap_err(self, error: Exception) -> ConfigError:
        return self.err(str(error))

    def arg_err(self) -> ConfigError:
        if self.val() == "{":
            return self.err("Unexpected token '{', expecting argument")
        return self.err(f"Wrong argument count or unexpected line ending after '{self.val()}'")

    def syntax_err(self, expected: str) -> ConfigError:
        return ConfigError(
            f"{self.file()}:{self.line()} - Syntax error: Unexpected token "
            f"'{self.val()}', expecting '{expected}'"
        )

    def eof_err(self) -> ConfigError:
        return self.err("Unexpected EOF")


def go_scalar(text: str) -> Any:
    """Interpret an unquoted token as Go's strconv would: int, float, bool, else str."""
    parse: Callable[[str], Any]
    for parse in (atoi, parse_float, parse_bool):
        try:
            return parse(text)
        except NumError:
            pass
    return text
