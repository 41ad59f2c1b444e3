"""Go's ``text/template``, as Caddy's ``templates`` handler runs it (Go 1.19).

:class:`Template` is a set of named templates sharing functions and delimiters, like Go's
``*template.Template``: ``parse`` adds the trees a text defines (``define``/``block``) and its
main body, ``execute`` runs one on a value. :mod:`.sprig` holds the Sprig functions Caddy adds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from txcaddy._gotemplate._exec import (
    BUILTIN_NAMES,
    BUILTINS,
    ExecError,
    execute,
    html_escape,
    is_true,
    js_escape,
)
from txcaddy._gotemplate._fmt import NO_VALUE, sprint, sprintf
from txcaddy._gotemplate._parse import ParseError, Tree, parse

__all__ = [
    "NO_VALUE",
    "ExecError",
    "ParseError",
    "Template",
    "TemplateError",
    "html_escape",
    "is_true",
    "js_escape",
    "sprint",
    "sprintf",
]

TemplateError = (ParseError, ExecError)


class Template:
    """A named template and the others it defines or imports."""

    def __init__(self, name: str, delims: tuple[str, str] = ("", "")) -> None:
        self.name = name
        self.left, self.right = delims
        self._funcs: dict[str, Callable[..., Any]] = dict(BUILTINS)
        self.trees: dict[str, Tree] = {}

    def delims(self, left: str, right: str) -> Template:
        self.left, self.right = left, right
        return self

    def funcs(self, funcs: Mapping[str, Callable[..., Any]]) -> Template:
        """Add (or replace) functions; built-ins may be overridden, as in Go."""
        self._funcs.update(funcs)
        return self

    def parse(self, text: str) -> Template:
        """Parse ``text`` into this set: its defines are added, its main body too unless empty."""
        names = set(self._funcs) | BUILTIN_NAMES
        trees = parse(self.name, text, self.left, self.right, names)
        for name, tree in trees.items():
            old = self.trees.get(name)
            if old is not None and tree.is_empty():
                continue  # an empty tree never replaces a template (Go's associate rule)
            self.trees[name] = tree
        return self

    def lookup(self, name: str) -> Tree | None:
        return self.trees.get(name)

    def execute(self, data: Any, name: str | None = None) -> str:
        """Run the template (or the one called ``name``) on ``data``."""
        name = self.name if name is None else name
        if name not in self.trees:
            from txcaddy._go.strconv import quote

            if name == self.name:
                raise ExecError(f"template: {quote(name)} is an incomplete or empty template")
            raise ExecError(f"template: no template {quote(name)} associated with template {quote(self.name)}")
        return execute(self.trees, self._funcs, name, data)
