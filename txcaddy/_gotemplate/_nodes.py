"""The nodes of a parsed Go ``text/template``, as Go 1.19's ``text/template/parse/node.go``.

Split out of ``_parse`` (the lexer and parser that build them, which re-exports ``Node``
and ``Tree``); ``_exec`` walks them.  Each node's ``str()`` gives the source Go's
``String`` method prints, which error messages quote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# -- nodes -----------------------------------------------------------------------------------


@dataclass
class Node:
    pos: int


@dataclass
class TextNode(Node):
    text: str


@dataclass
class FieldNode(Node):
    idents: list[str]

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


@dataclass
class VariableNode(Node):
    idents: list[str]  # "$x", then field names

    def __str__(self) -> str:
        return ".".join(self.idents)


@dataclass
class IdentifierNode(Node):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass
class DotNode(Node):
    def __str__(self) -> str:
        return "."


@dataclass
class NilNode(Node):
    def __str__(self) -> str:
        return "nil"


@dataclass
class ConstNode(Node):
    value: Any
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class ChainNode(Node):
    node: Node
    fields: list[str]

    def __str__(self) -> str:
        inner = str(self.node)
        if isinstance(self.node, PipeNode):
            inner = "(" + inner + ")"
        return inner + "".join("." + f for f in self.fields)


@dataclass
class CommandNode(Node):
    args: list[Node]

    def __str__(self) -> str:
        out = []
        for a in self.args:
            s = str(a)
            out.append("(" + s + ")" if isinstance(a, PipeNode) else s)
        return " ".join(out)


@dataclass
class PipeNode(Node):
    line: int
    decl: list[VariableNode]
    is_assign: bool
    cmds: list[CommandNode]

    def __str__(self) -> str:
        s = ""
        if self.decl:
            s = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return s + " | ".join(str(c) for c in self.cmds)


@dataclass
class ActionNode(Node):
    line: int
    pipe: PipeNode

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass
class ListNode(Node):
    nodes: list[Node] = field(default_factory=list)


@dataclass
class BranchNode(Node):
    kind: str  # if, range, with
    line: int
    pipe: PipeNode
    body: ListNode
    else_body: ListNode | None

    def __str__(self) -> str:
        return "{{" + self.kind + " " + str(self.pipe) + "}}"


@dataclass
class TemplateNode(Node):
    line: int
    name: str
    pipe: PipeNode | None

    def __str__(self) -> str:
        return "{{template " + _go_quote(self.name) + (" " + str(self.pipe) if self.pipe else "") + "}}"


@dataclass
class BreakNode(Node):
    line: int


@dataclass
class ContinueNode(Node):
    line: int


def _go_quote(s: str) -> str:
    from txcaddy._go.strconv import quote

    return quote(s)


@dataclass
class Tree:
    """One named template: its body and the source it came from (for error positions)."""

    name: str
    root: ListNode
    text: str
    parse_name: str  # the name of the top-level template being parsed (Go's ParseName)

    def is_empty(self) -> bool:
        for n in self.root.nodes:
            if isinstance(n, TextNode):
                if n.text.strip(" \t\r\n"):
                    return False
            else:
                return False
        return True
