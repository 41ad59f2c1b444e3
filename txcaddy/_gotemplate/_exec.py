"""Executing parsed templates with Go ``text/template``'s rules, and its built-in functions.

Values are Python's: ``str``, ``int``, ``float``, ``bool``, ``None`` (nil), lists (slices),
dicts (maps, ranged in sorted key order) and objects whose public attributes and methods are
the template's fields and methods (``.Req.Method``). A missing map key is Go's invalid value
(:data:`NO_VALUE`, printed ``<no value>``). Functions are Python callables; one that raises
stops execution with ``error calling NAME: …``, as a Go function returning an error does.
Nothing is escaped: this is ``text/template``, not ``html/template``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from txcaddy._go.strconv import quote
from txcaddy._go.url import query_escape
from txcaddy._gotemplate._fmt import NO_VALUE, go_type, sprint, sprint_value, sprintf, sprintln
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
)

__all__ = ["BUILTINS", "ExecError", "execute", "is_true", "typed"]

MAX_DEPTH = 200  # Go allows 100000 nested template calls; Python's stack allows fewer


class ExecError(Exception):
    """A template that fails while executing; its text is Go's (``template: NAME:L:C: executing …``)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


def is_true(value: Any) -> bool:
    """Go's truth: false, 0, nil, an empty string, slice or map are false; structs are true."""
    if value is None or value is NO_VALUE:
        return False
    if isinstance(value, (bool, int, float, str, bytes, list, tuple, dict)):
        return bool(value)
    return True


def _context(node: Node) -> str:
    return str(node)


class _State:
    def __init__(self, templates: dict[str, Tree], funcs: dict[str, Callable[..., Any]], tree: Tree, out: list[str], depth: int) -> None:
        self.templates = templates
        self.funcs = funcs
        self.tree = tree
        self.out = out
        self.depth = depth
        self.vars: list[tuple[str, Any]] = []
        self.node: Node | None = None

    # -- errors ----------------------------------------------------------------------------

    def error(self, message: str, cause: BaseException | None = None) -> ExecError:
        node = self.node
        name = self.tree.parse_name
        if node is None:
            return ExecError(f"template: {name}: executing {quote(self.tree.name)}: {message}", cause)
        text = self.tree.text
        pos = node.pos
        line = 1 + text.count("\n", 0, pos)
        start = text.rfind("\n", 0, pos) + 1
        col = len(text[start:pos].encode("utf-8", "surrogateescape"))
        return ExecError(
            f"template: {name}:{line}:{col}: executing {quote(self.tree.name)} at <{_context(node)}>: {message}", cause
        )

    fail = error

    # -- variables --------------------------------------------------------------------------

    def var(self, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise self.fail(f"undefined variable: {name}")

    def set_var(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.fail(f"undefined variable: {name}")

    # -- walking ----------------------------------------------------------------------------

    def walk(self, dot: Any, node: Node) -> None:
        self.node = node
        if isinstance(node, TextNode):
            self.out.append(node.text)
        elif isinstance(node, ActionNode):
            value = self.pipeline(dot, node.pipe)
            if not node.pipe.decl:
                self.out.append(self.printable(value))
        elif isinstance(node, ListNode):
            for n in node.nodes:
                self.walk(dot, n)
        elif isinstance(node, BranchNode):
            if node.kind == "range":
                self.walk_range(dot, node)
            else:
                mark = len(self.vars)
                value = self.pipeline(dot, node.pipe)
                if is_true(value):
                    self.walk(value if node.kind == "with" else dot, node.body)
                elif node.else_body is not None:
                    self.walk(dot, node.else_body)
                del self.vars[mark:]
        elif isinstance(node, TemplateNode):
            self.walk_template(dot, node)
        elif isinstance(node, BreakNode):
            raise _Break()
        elif isinstance(node, ContinueNode):
            raise _Continue()
        else:  # pragma: no cover - the parser makes no other node
            raise self.fail(f"unknown node: {node}")

    def printable(self, value: Any) -> str:
        if callable(value) and not isinstance(value, type):
            raise self.fail(f"can't print {self.node} of type {go_type(value)}")
        return sprint_value(value)

    def walk_range(self, dot: Any, node: BranchNode) -> None:
        mark = len(self.vars)
        value = self.pipeline(dot, node.pipe)
        decl = node.pipe.decl
        # the pipeline's own declarations are re-bound per element
        del self.vars[mark:]
        if value is NO_VALUE or value is None:
            items: list[tuple[Any, Any]] = []
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, dict):
            try:
                keys = sorted(value)
            except TypeError:
                keys = sorted(value, key=str)
            items = [(k, value[k]) for k in keys]
        elif isinstance(value, (bytes, bytearray)):
            items = list(enumerate(value))
        else:
            raise self.fail(f"range can't iterate over {sprint_value(value)}")
        if not items:
            if node.else_body is not None:
                self.walk(dot, node.else_body)
            return
        for index, elem in items:
            if len(decl) == 1:
                self.vars.append((decl[0].idents[0], elem))
            elif len(decl) == 2:
                self.vars.append((decl[0].idents[0], index))
                self.vars.append((decl[1].idents[0], elem))
            try:
                self.walk(elem, node.body)
            except _Continue:
                pass
            except _Break:
                del self.vars[mark:]
                break
            del self.vars[mark:]

    def walk_template(self, dot: Any, node: TemplateNode) -> None:
        tree = self.templates.get(node.name)
        if tree is None:
            raise self.fail(f"template {quote(node.name)} not defined")
        value = self.pipeline(dot, node.pipe) if node.pipe is not None else NO_VALUE
        if self.depth >= MAX_DEPTH:
            raise self.fail(f"exceeded maximum template depth ({MAX_DEPTH})")
        state = _State(self.templates, self.funcs, tree, self.out, self.depth + 1)
        state.vars = [("$", value)]
        state.walk(value, tree.root)

    # -- evaluation ---------------------------------------------------------------------------

    def pipeline(self, dot: Any, pipe: PipeNode | None) -> Any:
        if pipe is None:
            return NO_VALUE
        self.node = pipe
        value: Any = _MISSING
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        if value is None:
            value = NO_VALUE  # a nil interface{} result is Go's invalid value: <no value>
        for var in pipe.decl:
            if pipe.is_assign:
                self.set_var(var.idents[0], value)
            else:
                self.vars.append((var.idents[0], value))
        return value

    def command(self, dot: Any, cmd: CommandNode, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, FieldNode):
            self.node = first
            return self.field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, ChainNode):
            self.node = first
            if len(first.fields) == 0:
                raise self.fail("internal error: no fields in chain")
            receiver = self.arg_value(dot, first.node)
            return self.field_chain(dot, receiver, first, first.fields, cmd.args, final)
        if isinstance(first, IdentifierNode):
            return self.function(dot, first, cmd, cmd.args, final)
        if isinstance(first, VariableNode):
            self.node = first
            value = self.var(first.idents[0])
            if len(first.idents) == 1:
                self.not_a_function(cmd.args, final)
                return value
            return self.field_chain(dot, value, first, first.idents[1:], cmd.args, final)
        self.node = first
        self.not_a_function(cmd.args, final)
        if isinstance(first, PipeNode):
            return self.pipeline(dot, first)
        if isinstance(first, ConstNode):
            return first.value
        if isinstance(first, DotNode):
            return dot
        if isinstance(first, NilNode):
            raise self.fail("nil is not a command")
        raise self.fail(f"can't evaluate command {first}")

    def not_a_function(self, args: list[Node], final: Any) -> None:
        if len(args) > 1 or final is not _MISSING:
            raise self.fail(f"can't give argument to non-function {args[0]}")

    def arg_value(self, dot: Any, node: Node) -> Any:
        self.node = node
        if isinstance(node, DotNode):
            return dot
        if isinstance(node, NilNode):
            return None
        if isinstance(node, ConstNode):
            return node.value
        if isinstance(node, FieldNode):
            return self.field_chain(dot, dot, node, node.idents, [node], _MISSING)
        if isinstance(node, VariableNode):
            value = self.var(node.idents[0])
            if len(node.idents) == 1:
                return value
            return self.field_chain(dot, value, node, node.idents[1:], [node], _MISSING)
        if isinstance(node, PipeNode):
            return self.pipeline(dot, node)
        if isinstance(node, IdentifierNode):
            return self.function(dot, node, node, [node], _MISSING)
        if isinstance(node, ChainNode):
            receiver = self.arg_value(dot, node.node)
            return self.field_chain(dot, receiver, node, node.fields, [node], _MISSING)
        raise self.fail(f"can't handle {node} for arg")

    def field_chain(self, dot: Any, receiver: Any, node: Node, idents: list[str], args: list[Node], final: Any) -> Any:
        for name in idents[:-1]:
            receiver = self.field(dot, name, node, [], _MISSING, receiver)
        return self.field(dot, idents[-1], node, args, final, receiver)

    def field(self, dot: Any, name: str, node: Node, args: list[Node], final: Any, receiver: Any) -> Any:
        # no self.node here: Go reports a field error at the node evaluated last
        if receiver is NO_VALUE:
            return NO_VALUE
        if receiver is None:
            raise self.fail(f"nil pointer evaluating interface {{}}.{name}")
        has_args = len(args) > 1 or final is not _MISSING
        if isinstance(receiver, dict) and (type(receiver) is dict or not hasattr(type(receiver), name)):
            if has_args:
                raise self.fail(f"{name} is not a method but has arguments")
            return receiver.get(name, NO_VALUE)
        # only Go's exported names (an upper-case first letter) reach Python attributes
        if name[:1].isupper() and not isinstance(receiver, (str, int, float, bool, list, tuple, bytes)) and (
            not isinstance(receiver, dict) or hasattr(type(receiver), name)
        ):
            getter = getattr(receiver, "go_field", None)
            if getter is not None:
                try:
                    value = getter(name)
                except KeyError:
                    value = _MISSING
            else:
                value = getattr(receiver, name, _MISSING)
            if value is not _MISSING:
                if callable(value) and not isinstance(value, type) and not getattr(value, "go_value", False):
                    return self.call(dot, value, name, node, args, final)
                if has_args:
                    raise self.fail(f"{name} has arguments but cannot be invoked as function")
                return value
        raise self.fail(f"can't evaluate field {name} in type {go_type(receiver)}")

    def function(self, dot: Any, node: IdentifierNode, cmd: Node, args: list[Node], final: Any) -> Any:
        self.node = node
        name = node.name
        if name in _SPECIAL:
            return _SPECIAL[name](self, dot, node, args[1:], final)
        fn = self.funcs.get(name)
        if fn is None:
            raise self.fail(f"{quote(name)} is not a defined function")
        return self.call(dot, fn, name, node, args, final, cmd)

    def check_constant(self, node: Node, kind: str) -> None:
        """Go's ``evalArg`` for a constant given to a typed parameter."""
        if isinstance(node, NilNode):
            raise self.fail(f"cannot assign nil to {kind}")
        assert isinstance(node, ConstNode)
        value = node.value
        if kind == "string" and not isinstance(value, str):
            raise self.fail(f"expected string; found {node}")
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.fail(f"expected integer; found {node}")
        if kind == "bool" and not isinstance(value, bool):
            raise self.fail(f"expected bool; found {node}")
        if kind == "time.Time":
            raise self.fail(f"can't handle {node} for arg of type time.Time")

    def check_value(self, value: Any, kind: str) -> None:
        """Go's ``validateType``: a value must have the parameter's type."""
        if value is NO_VALUE or value is None:
            raise self.fail(f"invalid value; expected {kind}")
        ok = {
            "string": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "time.Time": getattr(value, "go_type_name", "") == "time.Time",
        }.get(kind, True)
        if not ok:
            raise self.fail(f"wrong type for value; expected {kind}; got {go_type(value)}")

    def call(self, dot: Any, fn: Callable[..., Any], name: str, node: Node, args: list[Node], final: Any,
             cmd: Node | None = None) -> Any:
        fixed, variadic = _arity(fn)
        params: tuple[str, ...] = getattr(fn, "go_params", ())
        values = []
        for i, a in enumerate(args[1:]):
            kind = params[i] if i < len(params) else "any"
            if kind != "any" and isinstance(a, (ConstNode, NilNode)):
                self.node = a
                self.check_constant(a, kind)
            value = self.arg_value(dot, a)
            if kind != "any":
                self.node = a
                self.check_value(value, kind)
            values.append(value)
        if final is not _MISSING:
            kind = params[len(values)] if len(values) < len(params) else "any"
            if kind != "any":
                self.check_value(final, kind)
            values.append(final)
        values = [None if v is NO_VALUE else v for v in values]
        if variadic:
            if len(values) < fixed:
                self.node = node
                raise self.fail(f"wrong number of args for {name}: want at least {fixed} got {len(values)}")
        elif len(values) != fixed:
            self.node = node
            raise self.fail(f"wrong number of args for {name}: want {fixed} got {len(values)}")
        try:
            return fn(*values)
        except (_Break, _Continue):
            raise
        except RecursionError:
            raise
        except Exception as e:
            self.node = cmd if cmd is not None else node
            raise self.fail(f"error calling {name}: {_error_text(e)}", e) from None


def typed(fn: Callable[..., Any], *kinds: str) -> Callable[..., Any]:
    """``fn`` with Go parameter types (``string``, ``int``, ``bool``, ``any``) that calls check."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        return fn(*args)

    wrapper.go_params = kinds  # type: ignore[attr-defined]
    return wrapper


def _error_text(e: BaseException) -> str:
    text = str(e)
    if isinstance(e, KeyError) and e.args:
        text = str(e.args[0])
    return text


_MISSING: Any = object()
_ARITY: dict[Any, tuple[int, bool]] = {}


def _arity(fn: Callable[..., Any]) -> tuple[int, bool]:
    key = getattr(fn, "__func__", fn)
    cached = _ARITY.get(key)
    if cached is not None and not hasattr(fn, "__self__"):
        return cached
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return (0, True)
    fixed = 0
    variadic = False
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            variadic = True
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            fixed += 1
        elif p.default is not p.empty:
            variadic = True
    result = (fixed, variadic)
    if not hasattr(fn, "__self__"):
        _ARITY[key] = result
    return result


# -- the built-ins evaluated lazily (and, or) ----------------------------------------------


def _and_or(want: bool) -> Callable[..., Any]:
    def run(state: _State, dot: Any, node: Node, args: list[Node], final: Any) -> Any:
        count = len(args) + (final is not _MISSING)
        if count < 1:
            raise state.fail(f"wrong number of args for {node}: want at least 1 got 0")
        value: Any = NO_VALUE
        for a in args:
            value = state.arg_value(dot, a)
            if is_true(value) == want:
                return value
        if final is not _MISSING:
            value = final
        return value

    return run


_SPECIAL: dict[str, Callable[..., Any]] = {"and": _and_or(False), "or": _and_or(True)}


# -- the other built-ins -------------------------------------------------------------------


def _not(arg: Any) -> bool:
    return not is_true(arg)


def _basic_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if v is None:
        return "nil"
    return "other"


class _CompareError(ValueError):
    pass


def _eq2(a: Any, b: Any) -> bool:
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka == "other" or kb == "other":
        if ka == "nil" or kb == "nil":
            return a is b or getattr(a if kb == "nil" else b, "go_nil", False)
        raise _CompareError("invalid type for comparison")
    if ka != kb:
        if ka == "nil" or kb == "nil":
            return False
        raise _CompareError("incompatible types for comparison")
    return bool(a == b)


def _eq(arg1: Any, *args: Any) -> bool:
    if not args:
        raise _CompareError("missing argument for comparison")
    return any(_eq2(arg1, b) for b in args)


def _ne(a: Any, b: Any) -> bool:
    return not _eq2(a, b)


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _basic_kind(a), _basic_kind(b)
    if ka in ("bool", "nil", "other") or kb in ("bool", "nil", "other"):
        raise _CompareError("invalid type for comparison")
    if ka != kb:
        raise _CompareError("incompatible types for comparison")
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq2(a, b)


def _gt(a: Any, b: Any) -> bool:
    return not _le(a, b)


def _ge(a: Any, b: Any) -> bool:
    return not _lt(a, b)


def _len(item: Any) -> int:
    if isinstance(item, str):
        return len(item.encode("utf-8", "surrogateescape"))
    if isinstance(item, (list, tuple, dict, bytes)):
        return len(item)
    if item is None:
        raise ValueError("len of nil pointer")
    raise ValueError(f"len of type {go_type(item)}")


def _index_of(item: Any, index: Any, length: int, kind: str = "slice") -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        if index is None:
            raise ValueError("cannot index slice/array with nil")
        raise ValueError(f"cannot index slice/array with type {go_type(index)}")
    if index < 0 or index > length:
        raise ValueError(f"index out of range: {index}")
    if index == length:  # Go's check lets it through; reflect then panics
        raise ValueError(f"reflect: {kind} index out of range")
    return index


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise ValueError("index of untyped nil")
    for index in indexes:
        if isinstance(item, dict):
            item = item.get(index, NO_VALUE)
        elif isinstance(item, (list, tuple)):
            item = item[_index_of(item, index, len(item))]
        elif isinstance(item, str):
            data = item.encode("utf-8", "surrogateescape")
            item = data[_index_of(item, index, len(data), "string")]
        elif item is None:
            raise ValueError("index of nil pointer")
        else:
            raise ValueError(f"can't index item of type {go_type(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise ValueError("slice of untyped nil")
    if len(indexes) > 3:
        raise ValueError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise ValueError("cannot 3-index slice a string")
        data: Any = item.encode("utf-8", "surrogateescape")
        length = len(data)
    elif isinstance(item, (list, tuple)):
        data = item
        length = len(item)
    else:
        raise ValueError(f"can't slice item of type {go_type(item)}")
    idx = [0, length]
    for i, index in enumerate(indexes[:2]):
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"cannot index slice/array with type {go_type(index)}")
        if index < 0 or index > length:
            raise ValueError(f"index out of range: {index}")
        idx[i] = index
    if idx[0] > idx[1]:
        raise ValueError(f"invalid slice index: {idx[0]} > {idx[1]}")
    result = data[idx[0]:idx[1]]
    if isinstance(result, bytes):
        return result.decode("utf-8", "surrogateescape")
    return list(result)


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(*args)


def html_escape(text: str) -> str:
    """``template.HTMLEscapeString``."""
    return (
        text.replace("&", "&amp;").replace("'", "&#39;").replace("<", "&lt;").replace(">", "&gt;")
        .replace('"', "&#34;").replace("\x00", "\ufffd")
    )


def js_escape(text: str) -> str:
    """``template.JSEscapeString`` (Go 1.19)."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == '"':
            out.append('\\"')
        elif ch == "<":
            out.append("\\u003C")
        elif ch == ">":
            out.append("\\u003E")
        elif ch == "&":
            out.append("\\u0026")
        elif ch == "=":
            out.append("\\u003D")
        elif ord(ch) < 0x20 or (ord(ch) >= 0x80 and not ch.isprintable()):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _call(fn: Any, *args: Any) -> Any:
    if fn is None:
        raise ValueError("call of nil")
    if not callable(fn):
        raise ValueError(f"non-function of type {go_type(fn)}")
    return fn(*args)


BUILTINS: dict[str, Callable[..., Any]] = {
    "not": _not,
    "eq": _eq,
    "ne": _ne,
    "lt": _lt,
    "le": _le,
    "gt": _gt,
    "ge": _ge,
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": sprint,
    "printf": typed(sprintf, "string"),
    "println": sprintln,
    "html": lambda *a: html_escape(_eval_args(a)),
    "js": lambda *a: js_escape(_eval_args(a)),
    "urlquery": lambda *a: query_escape(_eval_args(a)),
    "call": _call,
}
BUILTIN_NAMES = frozenset(BUILTINS) | frozenset(_SPECIAL)


def execute(templates: dict[str, Tree], funcs: dict[str, Callable[..., Any]], name: str, data: Any) -> str:
    """Run template ``name`` of the set on ``data``; raises :class:`ExecError`."""
    tree = templates[name]
    out: list[str] = []
    state = _State(templates, funcs, tree, out, 0)
    state.vars = [("$", data)]
    try:
        state.walk(data, tree.root)
    except RecursionError:
        raise ExecError(f"template: {tree.parse_name}: exceeded maximum template depth ({MAX_DEPTH})") from None
    return "".join(out)
