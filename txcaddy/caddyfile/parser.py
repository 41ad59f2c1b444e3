"""The Caddyfile parser: tokens into server blocks, with snippets and imports.

Environment variables (``{$VAR}``, ``{$VAR:default}``) are substituted in the
raw text before lexing, as Caddy does, so a value may become several tokens.
``import`` splices a snippet's or a file's tokens in place, replacing
``{args.N}`` placeholders; import cycles are reported.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from txcaddy._go.fs import path_error
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError
from txcaddy.caddyfile.lexer import Token, tokenize

Segment = list[Token]


@dataclass
class ServerBlock:
    """A block with its keys (site addresses) and its directive segments."""

    keys: list[str] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    has_braces: bool = False
    key_tokens: list[Token] = field(default_factory=list)

    def dispense_directive(self, name: str) -> Dispenser:
        tokens: list[Token] = []
        for segment in self.segments:
            if segment and segment[0].text == name:
                tokens.extend(segment)
        return Dispenser(tokens)


def replace_env_vars(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Substitute ``{$NAME}`` and ``{$NAME:default}`` the way Caddy does."""
    env = os.environ if environ is None else environ
    offset = 0
    while True:
        begin = text.find("{$", offset)
        if begin < 0:
            return text
        end = text.find("}", begin + 2)
        if end < 0:
            return text
        name = text[begin + 2 : end]
        if not name:
            offset = end + 1
            continue
        key, sep, default = name.partition(":")
        value = env.get(key)
        if value is None:
            value = default if sep else ""
        text = text[:begin] + value + text[end + 1 :]
        offset = begin + len(value)


def all_tokens(filename: str, text: str, environ: Mapping[str, str] | None = None) -> list[Token]:
    return tokenize(replace_env_vars(text, environ), filename)


class _ImportGraph:
    """Detects import cycles between files and snippets (Caddy's importGraph)."""

    def __init__(self) -> None:
        self.nodes: set[str] = set()
        self.edges: dict[str, list[str]] = {}

    def add_edges(self, source: str, targets: list[str]) -> None:
        self.nodes.add(source)
        self.nodes.update(targets)
        for target in targets:
            if self._will_cycle(target, source):
                self.nodes.difference_update(targets)
                raise ConfigError(f"a cycle of imports exists between {source} and {target}")
            if target not in self.edges.get(source, []):
                self.edges.setdefault(source, []).append(target)

    def _will_cycle(self, start: str, goal: str) -> bool:
        seen: set[str] = set()
        stack = list(self.edges.get(start, []))
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(self.edges.get(node, []))
        return goal in seen


_ARGS_PLACEHOLDER = re.compile(r"\{args\.(\d+)\}")


def _replace_import_args(text: str, args: list[str]) -> str:
    """Caddy's ReplaceKnown for ``{args.N}`` only; unknown indexes stay verbatim."""
    if "{args." not in text:
        return text

    def sub(match: re.Match[str]) -> str:
        index = int(match.group(1))
        if match.group(1) == str(index) and index < len(args):
            return args[index]
        return match.group(0)

    return _ARGS_PLACEHOLDER.sub(sub, text)


class _Parser(Dispenser):
    def __init__(self, tokens: list[Token], environ: Mapping[str, str] | None) -> None:
        super().__init__(tokens)
        self.environ = environ
        self.block = ServerBlock()
        self.eof = False
        self.snippets: dict[str, list[Token]] = {}
        self.parse_nesting = 0
        self.graph = _ImportGraph()

    def parse_all(self) -> list[ServerBlock]:
        blocks: list[ServerBlock] = []
        while self.next():
            self.block = ServerBlock()
            self._begin()
            if self.block.keys or self.block.segments:
                blocks.append(self.block)
            if self.parse_nesting > 0:
                raise self.eof_err()
        return blocks

    def _begin(self) -> None:
        if not self.tokens:
            return
        self._addresses()
        if self.eof:
            return
        keys = self.block.keys
        if len(keys) == 1 and keys[0].startswith("(") and keys[0].endswith(")"):
            name = keys[0][1:-1]
            if name in self.snippets:
                raise self.err(f"redeclaration of previously declared snippet {name}")
            self.snippets[name] = [
                Token(t.file, t.line, t.text, t.quote, name) for t in self._snippet_tokens()
            ]
            self.block.keys = []
            return
        self._block_contents()

    def _addresses(self) -> None:
        expecting_another = False
        while True:
            tok = self.token()
            text = tok.text
            if text == "import" and self.is_new_line():
                self._do_import()
                continue
            if text == "{":
                if expecting_another:
                    raise self.err(
                        f"Expected another address but had '{text}' - check for extra comma"
                    )
                self.block.has_braces = True
                break
            if text.endswith("{"):
                raise self.err(
                    f"Site addresses cannot end with a curly brace: '{text}' - put a space "
                    "between the token and the brace"
                )
            if text != "":
                if text.endswith(","):
                    text = text[:-1]
                    expecting_another = True
                else:
                    expecting_another = False
                if "," in text:
                    raise self.err(
                        f"Site addresses cannot contain a comma ',': '{text}' - put a space "
                        "after the comma to separate site addresses"
                    )
                self.block.keys.append(text)
                self.block.key_tokens.append(tok.with_text(text))
            has_next = self.next()
            if expecting_another and not has_next:
                raise self.eof_err()
            if not has_next:
                self.eof = True
                break
            if not expecting_another and self.is_new_line():
                break

    def _block_contents(self) -> None:
        opened = self.val() == "{"
        if not opened:
            self.cursor -= 1
        self._directives()
        if opened and self.val() != "}":
            raise self.syntax_err("}")

    def _directives(self) -> None:
        while self.next():
            if self.val() == "}":
                break
            if self.val() == "import":
                self._do_import()
                self.cursor -= 1
                continue
            self._directive()

    def _directive(self) -> None:
        segment: Segment = [self.token()]
        while self.next():
            text = self.val()
            tok = self.token()
            if text == "{":
                self.parse_nesting += 1
                if not self.is_next_on_new_line() and not tok.quote:
                    raise self.err("Unexpected next token after '{' on same line")
            elif text == "{}":
                if self.is_next_on_new_line() and not tok.quote:
                    raise self.err("Unexpected '{}' at end of line")
            elif self.is_new_line() and self.parse_nesting == 0:
                self.cursor -= 1
                break
            elif text == "}" and self.parse_nesting > 0:
                self.parse_nesting -= 1
            elif text == "}" and self.parse_nesting == 0:
                raise self.err("Unexpected '}' because no matching opening brace")
            elif text == "import" and self.is_new_line():
                self._do_import()
                self.cursor -= 1
                continue
            segment.append(tok)
        self.block.segments.append(segment)
        if self.parse_nesting > 0:
            raise self.eof_err()

    def _snippet_tokens(self) -> list[Token]:
        if self.val() != "{":
            raise self.syntax_err("{")
        nesting = 1
        tokens: list[Token] = []
        while self.next():
            if self.val() == "}":
                nesting -= 1
                if nesting == 0:
                    break
            if self.val() == "{":
                nesting += 1
            tokens.append(self.token())
        if nesting != 0:
            raise self.syntax_err("}")
        return tokens

    def _do_import(self) -> None:
        import_token = self.token()
        if not self.next_arg():
            raise self.arg_err()
        pattern = self.val()
        if pattern == "":
            raise self.err("Import requires a non-empty filepath")
        args = self.remaining_args()
        before = self.tokens[: self.cursor - 1 - len(args)]
        after = self.tokens[self.cursor + 1 :]
        imported: list[Token] = []
        nodes: list[str] = []
        if self.snippets.get(pattern):
            imported = self.snippets[pattern]
            nodes.append(f"{imported[0].file}:{imported[0].snippet}")
        else:
            abs_file = os.path.abspath(self.file())
            if os.path.isabs(pattern):
                glob_pattern = pattern
            else:
                glob_pattern = os.path.join(os.path.dirname(abs_file), pattern)
            if (
                glob_pattern.count("*") > 1
                or glob_pattern.count("?") > 1
                or ("[" in glob_pattern and "]" in glob_pattern)
            ):
                raise self.err(
                    f"Glob pattern may only contain one wildcard (*), but has others: {glob_pattern}"
                )
            matches = sorted(glob.glob(glob_pattern))
            if not matches and not any(c in glob_pattern for c in "*?[]"):
                raise self.err(f"File to import not found: {pattern}")
            for match in matches:
                imported.extend(self._single_import(match))
            nodes = matches
        node_name = self.file()
        if import_token.snippet is not None:
            node_name += f":{import_token.snippet}"
        try:
            self.graph.add_edges(node_name, nodes)
        except ConfigError as e:
            raise self.err(str(e)) from None
        copied = [t.with_text(_replace_import_args(t.text, args)) for t in imported]
        self.tokens = before + copied + after
        self.cursor -= len(args) + 1

    def _single_import(self, path: str) -> list[Token]:
        if os.path.isdir(path):
            raise self.err(f"Could not import {path}: is a directory")
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as e:
            raise self.err(f"Could not import {path}: {path_error('open', path, e)}") from None
        return all_tokens(os.path.abspath(path), text, self.environ)


def parse(filename: str, text: str, environ: Mapping[str, str] | None = None) -> list[ServerBlock]:
    """Parse Caddyfile text into server blocks (the first may be the global block)."""
    return _Parser(all_tokens(filename, text, environ), environ).parse_all()
