"""Lexing and parsing Go ``text/template`` source into a tree, as Go 1.19's ``text/template/parse``.

The grammar: text and ``{{ }}`` actions (delimiters configurable) with ``-`` trim markers
(``{{- `` and `` -}}``, which need the space), comments ``{{/* */}}``, pipelines of commands
joined by ``|``, variables declared (``$x :=``) or assigned (``$x =``), and the control actions
``if``/``else``/``else if``/``range``/``with``/``define``/``template``/``block``/``break``/
``continue``/``end``. Errors read as Go's: ``template: NAME:LINE: message``.  The node
classes the parser builds are in ``_nodes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from txcaddy._gotemplate._nodes import (
    ActionNode,
    BranchNode,
    BreakNode,
    ChainNode,
    CommandNode,
    ConstNode,
    ContinueNode,
    DotNode,
    FieldNode,
    IdentifierNode,
    ListNode,
    NilNode,
    Node,
    PipeNode,
    TemplateNode,
    TextNode,
    Tree,
    VariableNode,
    _go_quote,
)

__all__ = ["Node", "ParseError", "Tree", "parse"]


class ParseError(ValueError):
    """A template that does not parse; its text is Go's error text."""


# -- lexing ----------------------------------------------------------------------------------

# token kinds
TEXT, LEFT, RIGHT, IDENT, FIELD, VAR, DOT, STRING, RAW, CHAR, NUMBER, BOOL, NIL = range(13)
PIPE, LPAREN, RPAREN, ASSIGN, DECLARE, SPACE, KEYWORD, EOF, COMMENT, CHAINFIELD, COMMA, OTHER = range(13, 25)

KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}


@dataclass
class Tok:
    kind: int
    val: str
    pos: int


def _is_space(ch: str) -> bool:
    return ch in " \t\r\n"


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


class _Lexer:
    def __init__(self, name: str, text: str, left: str, right: str) -> None:
        self.name = name
        self.text = text
        self.left = left or "{{"
        self.right = right or "}}"
        self.toks: list[Tok] = []

    def error(self, pos: int, msg: str) -> ParseError:
        line = 1 + self.text.count("\n", 0, pos)
        return ParseError(f"template: {self.name}:{line}: {msg}")

    def run(self) -> list[Tok]:
        text, left = self.text, self.left
        pos = 0
        trim_next = False
        while True:
            i = text.find(left, pos)
            if i < 0:
                chunk = text[pos:]
                if trim_next:
                    chunk = chunk.lstrip(" \t\r\n")
                if chunk:
                    self.toks.append(Tok(TEXT, chunk, pos))
                break
            chunk = text[pos:i]
            after = i + len(left)
            trim_left = text.startswith("-", after) and after + 1 < len(text) and _is_space(text[after + 1])
            if trim_next:
                chunk = chunk.lstrip(" \t\r\n")
            if trim_left:
                chunk = chunk.rstrip(" \t\r\n")
            if chunk:
                self.toks.append(Tok(TEXT, chunk, pos))
            start = after + (2 if trim_left else 0)
            self.toks.append(Tok(LEFT, left, i))
            pos, trim_next = self.action(start)
        self.toks.append(Tok(EOF, "", len(text)))
        return self.toks

    def _at_right(self, i: int) -> tuple[bool, bool]:
        """(closes here, with a trim marker) at ``i``."""
        text = self.text
        if text.startswith(" -" + self.right, i) or (
            i < len(text) and _is_space(text[i]) and text.startswith("-" + self.right, i + 1)
        ):
            return True, True
        if text.startswith(self.right, i):
            return True, False
        return False, False

    def action(self, i: int) -> tuple[int, bool]:
        text = self.text
        # comment right after the delimiter
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise self.error(i, "unclosed comment")
            j = end + 2
            closes, trim = self._at_right(j)
            if not closes:
                raise self.error(i, "comment ends before closing delimiter")
            self.toks.append(Tok(COMMENT, text[i:j], i))
            self.toks.append(Tok(RIGHT, self.right, j))
            return j + (2 if trim else 0) + len(self.right), trim
        depth = 0
        while True:
            closes, trim = self._at_right(i)
            if closes and depth == 0:
                if trim:
                    # the space before "-}}" is consumed
                    i += 2
                self.toks.append(Tok(RIGHT, self.right, i))
                return i + len(self.right), trim
            if i >= len(text):
                raise self.error(i, "unclosed action")
            ch = text[i]
            if _is_space(ch):
                j = i
                while j < len(text) and _is_space(text[j]) and not self._at_right(j)[1]:
                    j += 1
                if j == i:  # the space of " -}}"
                    j += 1
                self.toks.append(Tok(SPACE, text[i:j], i))
                i = j
                continue
            if ch == "=":
                self.toks.append(Tok(ASSIGN, "=", i))
                i += 1
            elif ch == ":":
                if not text.startswith(":=", i):
                    raise self.error(i, "expected :=")
                self.toks.append(Tok(DECLARE, ":=", i))
                i += 2
            elif ch == ",":
                self.toks.append(Tok(COMMA, ",", i))
                i += 1
            elif ch == "|":
                self.toks.append(Tok(PIPE, "|", i))
                i += 1
            elif ch == '"':
                j = i + 1
                while True:
                    if j >= len(text) or text[j] == "\n":
                        raise self.error(i, "unterminated quoted string")
                    if text[j] == "\\":
                        j += 2
                        continue
                    if text[j] == '"':
                        break
                    j += 1
                self.toks.append(Tok(STRING, text[i:j + 1], i))
                i = j + 1
            elif ch == "`":
                j = text.find("`", i + 1)
                if j < 0:
                    raise self.error(i, "unterminated raw quoted string")
                self.toks.append(Tok(RAW, text[i:j + 1], i))
                i = j + 1
            elif ch == "'":
                j = i + 1
                while True:
                    if j >= len(text) or text[j] == "\n":
                        raise self.error(i, "unterminated character constant")
                    if text[j] == "\\":
                        j += 2
                        continue
                    if text[j] == "'":
                        break
                    j += 1
                self.toks.append(Tok(CHAR, text[i:j + 1], i))
                i = j + 1
            elif ch == "$":
                j = i + 1
                while j < len(text) and _is_alnum(text[j]):
                    j += 1
                self.toks.append(Tok(VAR, text[i:j], i))
                i = j
            elif ch == ".":
                if i + 1 < len(text) and text[i + 1].isdigit():
                    i = self.number(i)
                    continue
                j = i + 1
                while j < len(text) and _is_alnum(text[j]):
                    j += 1
                if j == i + 1:
                    self.toks.append(Tok(DOT, ".", i))
                else:
                    prev = self.toks[-1].kind if self.toks else SPACE
                    kind = CHAINFIELD if prev in _TERM_ENDS else FIELD
                    self.toks.append(Tok(kind, text[i:j], i))
                i = j
            elif ch in "+-" or ch.isdigit():
                i = self.number(i)
            elif _is_alnum(ch):
                j = i
                while j < len(text) and _is_alnum(text[j]):
                    j += 1
                word = text[i:j]
                if word in KEYWORDS:
                    kind = KEYWORD
                elif word in ("true", "false"):
                    kind = BOOL
                elif word == "nil":
                    kind = NIL
                else:
                    kind = IDENT
                self.toks.append(Tok(kind, word, i))
                i = j
            elif ch == "(":
                depth += 1
                self.toks.append(Tok(LPAREN, "(", i))
                i += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    raise self.error(i, "unexpected right paren U+0029 ')'")
                self.toks.append(Tok(RPAREN, ")", i))
                i += 1
            elif ch.isascii() and ch.isprintable():
                self.toks.append(Tok(OTHER, ch, i))  # Go's itemChar: the parser refuses it
                i += 1
            else:
                raise self.error(i, f"unrecognized character in action: {_quote_rune(ch)}")

    def number(self, i: int) -> int:
        """Go's ``scanNumber``: a number followed by a letter or digit is bad syntax."""
        text = self.text
        j = i
        if j < len(text) and text[j] in "+-":
            j += 1
        digits = "0123456789_"
        if text.startswith(("0x", "0X"), j):
            j += 2
            digits = "0123456789abcdefABCDEF_"
        elif text.startswith(("0o", "0O"), j):
            j += 2
            digits = "01234567_"
        elif text.startswith(("0b", "0B"), j):
            j += 2
            digits = "01_"
        while j < len(text) and text[j] in digits:
            j += 1
        if j < len(text) and text[j] == ".":
            j += 1
            while j < len(text) and text[j] in digits:
                j += 1
        exponent = "pP" if digits.startswith("0123456789abcdef") else "eE"
        if len(digits) > 3 and j < len(text) and text[j] in exponent:
            j += 1
            if j < len(text) and text[j] in "+-":
                j += 1
            while j < len(text) and text[j] in "0123456789_":
                j += 1
        if j < len(text) and text[j] == "i":
            j += 1
        if j < len(text) and _is_alnum(text[j]):
            raise self.error(i, f"bad number syntax: {_go_quote(text[i:j + 1])}")
        self.toks.append(Tok(NUMBER, text[i:j], i))
        return j


_TERM_ENDS = frozenset({RPAREN, FIELD, VAR, CHAINFIELD, IDENT, STRING, RAW, NUMBER, CHAR, BOOL, NIL, DOT})


def _quote_rune(ch: str) -> str:
    return f"U+{ord(ch):04X} '{ch}'"


# -- parsing ---------------------------------------------------------------------------------


def _unquote(tok: Tok, lexer: _Lexer) -> str:
    s = tok.val
    if tok.kind == RAW:
        return s[1:-1].replace("\r", "")
    body = s[1:-1]
    out: list[str] = []
    i = 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        e = body[i + 1] if i + 1 < len(body) else ""
        if e in simple:
            out.append(simple[e])
            i += 2
        elif e == "x":
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif e == "u":
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        elif e == "U":
            out.append(chr(int(body[i + 2:i + 10], 16)))
            i += 10
        elif e in "01234567":
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise lexer.error(tok.pos, f"invalid syntax: {s}")
    return "".join(out)


def _number(tok: Tok, lexer: _Lexer) -> Any:
    text = tok.val.replace("_", "")
    try:
        if tok.kind == CHAR:
            return ord(_unquote(Tok(STRING, '"' + tok.val[1:-1] + '"', tok.pos), lexer))
        low = text.lower()
        sign = -1 if low.startswith("-") else 1
        body = low.lstrip("+-")
        if body.startswith("0x") and "p" not in body and "." not in body:
            return sign * int(body[2:], 16)
        if body.startswith("0b"):
            return sign * int(body[2:], 2)
        if body.startswith("0o"):
            return sign * int(body[2:], 8)
        if body.isdigit():
            if len(body) > 1 and body.startswith("0"):
                return sign * int(body, 8)
            return sign * int(body)
        if body.startswith("0x"):
            return sign * float.fromhex(body)
        if body.endswith("i"):
            raise ValueError
        value = float(body)
        return sign * value
    except (ValueError, IndexError):
        raise lexer.error(tok.pos, f"illegal number syntax: {tok.val!r}".replace("'", '"')) from None


class _Parser:
    def __init__(self, name: str, text: str, left: str, right: str, funcs: Any) -> None:
        self.name = name
        self.text = text
        self.lexer = _Lexer(name, text, left, right)
        self.toks = [t for t in self.lexer.run() if t.kind != COMMENT]
        self.i = 0
        self.funcs = funcs
        self.trees: dict[str, Tree] = {}
        self.vars: list[str] = ["$"]
        self.range_depth = 0

    # token helpers
    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def next_non_space(self) -> Tok:
        tok = self.next()
        while tok.kind == SPACE:
            tok = self.next()
        return tok

    def peek_non_space(self) -> Tok:
        j = self.i
        while self.toks[j].kind == SPACE:
            j += 1
        return self.toks[j]

    def line(self, pos: int) -> int:
        return 1 + self.text.count("\n", 0, pos)

    def error(self, msg: str, pos: int | None = None) -> ParseError:
        if pos is None:
            pos = self.toks[max(self.i - 1, 0)].pos
        return ParseError(f"template: {self.name}:{self.line(pos)}: {msg}")

    def unexpected(self, tok: Tok, context: str) -> ParseError:
        return self.error(f"unexpected {_describe(tok)} in {context}", tok.pos)

    def expect_right(self, context: str) -> None:
        tok = self.next_non_space()
        if tok.kind != RIGHT:
            raise self.unexpected(tok, context)

    # grammar
    def parse(self) -> dict[str, Tree]:
        root = ListNode(0)
        while self.peek().kind != EOF:
            if self.peek().kind == LEFT and self._peek_keyword() == "define":
                self.next()  # {{
                self.next_non_space()  # define
                self.parse_define()
                continue
            node = self.text_or_action()
            if isinstance(node, _End):
                raise self.error(f"unexpected {node.what}", node.pos)
            if node is not None:
                root.nodes.append(node)
        main = Tree(self.name, root, self.text, self.name)
        self.add(main)
        return self.trees

    def add(self, tree: Tree) -> None:
        old = self.trees.get(tree.name)
        if old is None or old.is_empty():
            self.trees[tree.name] = tree
        elif not tree.is_empty():
            raise self.error(f"template: multiple definition of template {_go_quote(tree.name)}")

    def _peek_keyword(self) -> str:
        j = self.i + 1
        while self.toks[j].kind == SPACE:
            j += 1
        tok = self.toks[j]
        return tok.val if tok.kind == KEYWORD else ""

    def parse_define(self) -> None:
        tok = self.next_non_space()
        if tok.kind not in (STRING, RAW):
            raise self.unexpected(tok, "define clause")
        name = _unquote(tok, self.lexer)
        self.expect_right("define clause")
        saved_vars = self.vars
        self.vars = ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if end.what != "{{end}}":
            raise self.error(f"unexpected {end.what}", end.pos)
        self.add(Tree(name, body, self.text, self.name))

    def item_list(self) -> tuple[ListNode, _End]:
        """Nodes up to an ``{{end}}`` or ``{{else}}``."""
        lst = ListNode(self.peek().pos)
        while True:
            if self.peek().kind == EOF:
                raise self.error("unexpected EOF", self.peek().pos)
            node = self.text_or_action()
            if isinstance(node, _End):
                return lst, node
            if node is not None:
                lst.nodes.append(node)

    def text_or_action(self) -> Node | _End | None:
        tok = self.next()
        if tok.kind == TEXT:
            return TextNode(tok.pos, tok.val)
        if tok.kind == LEFT:
            return self.action()
        raise self.unexpected(tok, "input")

    def action(self) -> Node | _End | None:
        tok = self.next_non_space()
        if tok.kind == RIGHT:
            self._empty_or_comment(tok)
            return None
        if tok.kind == KEYWORD:
            kw = tok.val
            if kw == "end":
                self.expect_right("end")
                return _End("{{end}}", tok.pos)
            if kw == "else":
                nxt = self.peek_non_space()
                if nxt.kind == KEYWORD and nxt.val == "if":
                    return _End("{{else if}}", tok.pos)
                self.expect_right("else")
                return _End("{{else}}", tok.pos)
            if kw in ("if", "range", "with"):
                return self.control(kw, tok)
            if kw == "template":
                return self.template_control(tok)
            if kw == "block":
                return self.block_control(tok)
            if kw in ("break", "continue"):
                if self.range_depth == 0:
                    raise self.error(f"{{{{{kw}}}}} outside {{{{range}}}}", tok.pos)
                self.expect_right(kw)
                return BreakNode(tok.pos, self.line(tok.pos)) if kw == "break" else ContinueNode(tok.pos, self.line(tok.pos))
            if kw == "define":
                raise self.error("unexpected <define> in command", tok.pos)
        self.i -= 1
        pipe = self.pipeline("command", RIGHT)
        return ActionNode(tok.pos, self.line(tok.pos), pipe)

    def _empty_or_comment(self, tok: Tok) -> None:
        # a comment was removed from the token list: "{{" "}}" with a comment between is fine
        start = self.toks[self.i - 2]
        between = self.text[start.pos + len(self.lexer.left):tok.pos]
        if "/*" not in between:
            raise self.error("missing value for command", tok.pos)
        return None

    def control(self, kind: str, tok: Tok) -> BranchNode:
        saved = len(self.vars)
        pipe = self.pipeline(kind, RIGHT)
        if kind == "range":
            self.range_depth += 1
        body, end = self.item_list()
        if kind == "range":
            self.range_depth -= 1
        else_body: ListNode | None = None
        if end.what == "{{else if}}" and kind != "if":
            # Go 1.19 has "else if" in if only; elsewhere the "if" is a stray keyword
            raise self.error("unexpected <if> in input", self.peek_non_space().pos)
        if end.what == "{{else if}}":
            # {{else if x}} is {{else}}{{if x}}…{{end}}{{end}}, sharing one {{end}}
            self.next_non_space()  # "if"
            inner_tok = self.toks[self.i - 1]
            inner = self.control("if", inner_tok)
            else_body = ListNode(inner.pos, [inner])
        elif end.what == "{{else}}":
            else_body, end = self.item_list()
            if end.what != "{{end}}":
                raise self.error(f"expected end; found {end.what}", end.pos)
        del self.vars[saved:]
        return BranchNode(tok.pos, kind, self.line(tok.pos), pipe, body, else_body)

    def template_control(self, tok: Tok) -> TemplateNode:
        name_tok = self.next_non_space()
        if name_tok.kind not in (STRING, RAW):
            raise self.unexpected(name_tok, "template clause")
        name = _unquote(name_tok, self.lexer)
        pipe = None
        if self.peek_non_space().kind != RIGHT:
            pipe = self.pipeline("template clause", RIGHT)
        else:
            self.next_non_space()
        return TemplateNode(name_tok.pos, self.line(name_tok.pos), name, pipe)

    def block_control(self, tok: Tok) -> TemplateNode:
        name_tok = self.next_non_space()
        if name_tok.kind not in (STRING, RAW):
            raise self.unexpected(name_tok, "block clause")
        name = _unquote(name_tok, self.lexer)
        pipe = None
        if self.peek_non_space().kind != RIGHT:
            pipe = self.pipeline("block clause", RIGHT)
        else:
            self.next_non_space()
        saved_vars = self.vars
        self.vars = ["$"]
        body, end = self.item_list()
        self.vars = saved_vars
        if end.what != "{{end}}":
            raise self.error(f"unexpected {end.what} in block clause", end.pos)
        self.add(Tree(name, body, self.text, self.name))
        return TemplateNode(name_tok.pos, self.line(name_tok.pos), name, pipe)

    def pipeline(self, context: str, end: int) -> PipeNode:
        start = self.peek_non_space()
        decl: list[VariableNode] = []
        is_assign = False
        # declarations: "$x :=", "$x =", and in range "$i, $v :="
        j = self.i
        while self.toks[j].kind == SPACE:
            j += 1
        names: list[Tok] = []
        k = j
        while self.toks[k].kind == VAR:
            names.append(self.toks[k])
            k += 1
            while self.toks[k].kind == SPACE:
                k += 1
            if self.toks[k].kind == COMMA and context == "range" and len(names) == 1:
                k += 1
                while self.toks[k].kind == SPACE:
                    k += 1
                continue
            break
        if names and self.toks[k].kind in (DECLARE, ASSIGN) and (len(names) == 1 or self.toks[k].kind == DECLARE):
            self.i = k + 1
            is_assign = self.toks[k].kind == ASSIGN
            for var in names:
                decl.append(VariableNode(var.pos, [var.val]))
                if not is_assign:  # an assignment to an unknown variable fails when executed
                    self.vars.append(var.val)
        elif len(names) > 1:
            raise self.error(f"too many declarations in {context}", names[0].pos)
        cmds: list[CommandNode] = []
        while True:
            tok = self.peek_non_space()
            if tok.kind == end:
                self.next_non_space()
                if not cmds:
                    raise self.error(f"missing value for {context}", tok.pos)
                break
            if tok.kind in (EOF,):
                raise self.unexpected(tok, context)
            cmds.append(self.command(end))
        for i, c in enumerate(cmds[1:], 1):
            first = c.args[0]
            if isinstance(first, (ConstNode, NilNode)):
                raise self.error(f"non executable command in pipeline stage {i + 1}", first.pos)
        return PipeNode(start.pos, self.line(start.pos), decl, is_assign, cmds)

    def command(self, end: int) -> CommandNode:
        args: list[Node] = []
        pos = self.peek_non_space().pos
        while True:
            tok = self.peek_non_space()
            if tok.kind == end or tok.kind == EOF:
                break
            if tok.kind == PIPE:
                self.next_non_space()
                break
            arg = self.operand()
            args.append(arg)
            nxt = self.peek()
            if nxt.kind not in (SPACE, end, PIPE, EOF):
                if nxt.kind == RPAREN and end == RPAREN:
                    continue
                raise self.unexpected(nxt, "operand")
        if not args:
            raise self.error("missing value for command", pos)
        return CommandNode(pos, args)

    def operand(self) -> Node:
        node = self.term()
        if self.peek().kind == CHAINFIELD:
            chain_pos = self.peek().pos
            fields = []
            while self.peek().kind == CHAINFIELD:
                fields.append(self.next().val[1:])
            if isinstance(node, FieldNode):
                node = FieldNode(chain_pos, node.idents + fields)
            elif isinstance(node, VariableNode):
                node = VariableNode(chain_pos, node.idents + fields)
            elif isinstance(node, (ConstNode, NilNode, DotNode)):
                raise self.error(f"unexpected . after term {_go_quote(str(node))}", node.pos)
            else:
                node = ChainNode(chain_pos, node, fields)
        return node

    def term(self) -> Node:
        tok = self.next_non_space()
        k = tok.kind
        if k == IDENT:
            if self.funcs is not None and tok.val not in self.funcs:
                raise self.error(f"function {_go_quote(tok.val)} not defined", tok.pos)
            return IdentifierNode(tok.pos, tok.val)
        if k == DOT:
            return DotNode(tok.pos)
        if k == NIL:
            return NilNode(tok.pos)
        if k == VAR:
            if tok.val not in self.vars:
                raise self.error(f"undefined variable {_go_quote(tok.val)}", tok.pos)
            return VariableNode(tok.pos, [tok.val])
        if k == FIELD:
            return FieldNode(tok.pos, [tok.val[1:]])
        if k == BOOL:
            return ConstNode(tok.pos, tok.val == "true", tok.val)
        if k in (NUMBER, CHAR):
            return ConstNode(tok.pos, _number(tok, self.lexer), tok.val)
        if k in (STRING, RAW):
            return ConstNode(tok.pos, _unquote(tok, self.lexer), tok.val)
        if k == LPAREN:
            pipe = self.pipeline("parenthesized pipeline", RPAREN)
            return pipe
        raise self.unexpected(tok, "operand")


@dataclass
class _End:
    what: str
    pos: int


def _describe(tok: Tok) -> str:
    if tok.kind == EOF:
        return "EOF"
    if tok.kind == RIGHT:
        return f'"{tok.val}"'
    if tok.kind == KEYWORD:
        return f"<{tok.val}>"
    if tok.kind == SPACE:
        return "space"
    return f'"{tok.val}"'


def parse(name: str, text: str, left: str = "", right: str = "", funcs: Any = None) -> dict[str, Tree]:
    """Parse ``text`` as template ``name``: the trees it defines, ``name`` among them."""
    return _Parser(name, text, left, right, funcs).parse()
