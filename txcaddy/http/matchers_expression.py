"""The ``expression`` matcher (``http.matchers.expression``): Caddy 2.6.2's CEL request matcher.

Follows ``modules/caddyhttp/celmatcher.go`` and the ``CELLibrary`` methods of
``matchers.go`` and ``fileserver/matcher.go``:

* ``{name}`` (the regexp ``{([a-zA-Z][\\w.-]+)}``, applied to the whole text,
  string literals included, as Caddy does) becomes
  ``caddyPlaceholder(request, "name")``, whose value is the placeholder's raw
  value (``null`` when unknown);
* the matcher functions Caddy 2.6.2 registers wrap the ordinary matchers:
  ``host(...)``, ``path(...)``, ``method(...)``, ``remote_ip(...)`` (strings,
  ``"forwarded"`` first to read X-Forwarded-For), ``path_regexp([name,]
  pattern)``, ``header_regexp([name,] field, pattern)``, ``protocol(p)``,
  ``query({...})``, ``header({...})`` (values a string or a list) and
  ``file(...)`` (strings to try, or a map of ``root``/``try_files``/
  ``try_policy``/``split_path``; as in 2.6.2, ``try_policy`` lands in
  ``root``);
* cel-go's string extension (``lowerAscii``, ``split`` …) is provided;
* a syntax error, an unknown function, or a bad constant matcher argument is a
  config error naming the expression; an evaluation error is logged, the
  expression does not match, and the error is left in the ``matchers.error``
  var, so the route list fails the request with a 500 (Caddy's ``routes.go``).

The evaluator is the ``common-expression-language`` package (Rust's
``cel-interpreter`` bound to Python): a typical expression
(``{method} == "GET" && {path}.startsWith("/api")``) evaluates in about 3 µs
where ``cel-python`` takes about 450 µs, and compiles in 35 µs against
400 µs. It has no type checker, so where Caddy also refuses at load an
expression whose result is not a bool or that names an undeclared variable,
txcaddy finds those when evaluating (no match, logged).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from txcaddy.config.placeholders import lookup
from txcaddy.config.registry import module
from txcaddy.config.schema import STRING
from txcaddy.errors import ConfigError
from txcaddy.http.routing import MATCHER_ERROR_VAR
from txcaddy.interfaces import IRequestMatcher

__all__ = ["MatchExpression", "expand_placeholders"]

def _cel() -> Any:
    """The CEL bindings, imported on first use: with what they import (prompt_toolkit…) they
    cost ~10 MB of RSS, which a config without an ``expression`` matcher does not pay."""
    import cel

    return cel


# The bindings also report each failed Python function through the stdlib "cel" logger; the
# matcher logs the evaluation error itself, once, so that copy is dropped.
logging.getLogger("cel").addHandler(logging.NullHandler())
logging.getLogger("cel").propagate = False

_PLACEHOLDER = re.compile(r"\{([a-zA-Z][\w.-]+)\}", re.ASCII)



def expand_placeholders(expression: str) -> str:
    """Caddy's sugar: ``{name}`` becomes ``caddyPlaceholder(request, "name")``."""
    return _PLACEHOLDER.sub(r'caddyPlaceholder(request, "\1")', expression)


# -- cel-go's strings extension (v0.12.5, the one Caddy 2.6.2 builds with) -----------------------


def _char_at(text: str, index: int) -> str:
    if index < 0 or index > len(text):
        raise ValueError(f"index out of range: {index}")
    return text[index : index + 1]


def _index_of(text: str, sub: str, start: int = 0) -> int:
    if start < 0 or start > len(text):
        raise ValueError(f"index out of range: {start}")
    return text.find(sub, start)


def _last_index_of(text: str, sub: str, end: int | None = None) -> int:
    if end is None:
        return text.rfind(sub)
    if end < 0 or end > len(text):
        raise ValueError(f"index out of range: {end}")
    return text.rfind(sub, 0, end + len(sub))


def _replace(text: str, old: str, new: str, count: int = -1) -> str:
    return text.replace(old, new, count)


def _split(text: str, sep: str, count: int = -1) -> list[str]:
    if count == 0:
        return []
    if sep == "":
        pieces = list(text)
        if count > 0 and len(pieces) > count:
            pieces = pieces[: count - 1] + ["".join(pieces[count - 1 :])]
        return pieces
    return text.split(sep, count - 1 if count > 0 else -1)


def _substring(text: str, start: int, end: int | None = None) -> str:
    end = len(text) if end is None else end
    if start < 0 or start > len(text) or end < start or end > len(text):
        raise ValueError(f"index out of range: {start}, {end}")
    return text[start:end]


def _join(items: list[str], sep: str = "") -> str:
    return sep.join(items)


_STRING_EXTENSION: dict[str, Callable[..., Any]] = {
    "charAt": _char_at,
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "lowerAscii": lambda text: "".join(c.lower() if c < "\x80" else c for c in text),
    "upperAscii": lambda text: "".join(c.upper() if c < "\x80" else c for c in text),
    "replace": _replace,
    "split": _split,
    "substring": _substring,
    "trim": lambda text: text.strip(" \t\n\r\v\f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"),
    "join": _join,
}

#: Functions and macros of CEL itself that the interpreter provides.
_CEL_BUILTINS = frozenset(
    {
        "size", "matches", "startsWith", "endsWith", "contains", "has", "all", "exists", "exists_one",
        "map", "filter", "int", "uint", "double", "string", "bytes", "bool", "dyn", "type", "duration",
        "timestamp", "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek",
        "getHours", "getMinutes", "getSeconds", "getMilliseconds", "max", "min",
    }
)


# -- the matcher functions --------------------------------------------------------------------


def _strings(args: tuple[Any, ...], name: str) -> list[str]:
    if not args:
        raise ValueError(f"{name}: matcher requires at least one argument")
    if not all(isinstance(a, str) for a in args):
        raise ValueError(f"{name}: matcher arguments must be strings")
    return list(args)


def _string_lists(arg: Any, name: str) -> dict[str, list[str]]:
    """Caddy's ``CELValueToMapStrList``: map values are a string or a list of strings."""
    if not isinstance(arg, dict):
        raise ValueError(f"{name}: matcher requires a map literal argument")
    out: dict[str, list[str]] = {}
    for key, value in arg.items():
        if isinstance(value, str):
            out[key] = [value]
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = value
        else:
            raise ValueError(f"unsupported value type in header match: {value!r}")
    return out


def _remote_ip(args: tuple[Any, ...]) -> dict[str, Any]:
    config: dict[str, Any] = {"ranges": []}
    for value in _strings(args, "remote_ip"):
        if value == "forwarded":
            if config["ranges"]:
                raise ValueError("if used, 'forwarded' must be first argument")
            config["forwarded"] = True
            continue
        config["ranges"].append(value)
    return config


def _regexp(args: tuple[Any, ...], name: str, arity: tuple[int, int]) -> list[str]:
    if len(args) not in arity:
        raise ValueError(f"{name}: wrong number of arguments")
    return _strings(args, name)


def _path_regexp(args: tuple[Any, ...]) -> dict[str, Any]:
    strings = _regexp(args, "path_regexp", (1, 2))
    return {"pattern": strings[-1], **({"name": strings[0]} if len(strings) == 2 else {})}


def _header_regexp(args: tuple[Any, ...]) -> dict[str, Any]:
    strings = _regexp(args, "header_regexp", (2, 3))
    name = strings[0] if len(strings) == 3 else ""
    return {strings[-2]: {"pattern": strings[-1], **({"name": name} if name else {})}}


def _protocol(args: tuple[Any, ...]) -> str:
    if len(args) != 1 or not isinstance(args[0], str):
        raise ValueError("protocol argument was not a string")
    return args[0].lower()


def _one_map(args: tuple[Any, ...], name: str) -> dict[str, list[str]]:
    if len(args) != 1:
        raise ValueError(f"{name}: matcher requires a map literal argument")
    return _string_lists(args[0], name)


def _file(args: tuple[Any, ...]) -> dict[str, Any]:
    if len(args) == 1 and isinstance(args[0], dict):
        values = _string_lists(args[0], "file")
        config: dict[str, Any] = {}
        if values.get("root"):
            config["root"] = values["root"][0]
        if values.get("try_policy"):
            config["root"] = values["try_policy"][0]  # Caddy 2.6.2 stores it in root
        if "try_files" in values:
            config["try_files"] = values["try_files"]
        if "split_path" in values:
            config["split_path"] = values["split_path"]
        return config
    return {"try_files": _strings(args, "file")}


#: CEL function name -> (matcher module name, CEL arguments -> that module's JSON).
_MATCHER_FUNCTIONS: dict[str, tuple[str, Callable[[tuple[Any, ...]], Any]]] = {
    "host": ("host", lambda args: _strings(args, "host")),
    "path": ("path", lambda args: _strings(args, "path")),
    "method": ("method", lambda args: _strings(args, "method")),
    "remote_ip": ("remote_ip", _remote_ip),
    "path_regexp": ("path_regexp", _path_regexp),
    "header_regexp": ("header_regexp", _header_regexp),
    "protocol": ("protocol", _protocol),
    "query": ("query", lambda args: _one_map(args, "query")),
    "header": ("header", lambda args: _one_map(args, "header")),
    "file": ("file", _file),
}

_KNOWN_FUNCTIONS = _CEL_BUILTINS | set(_STRING_EXTENSION) | set(_MATCHER_FUNCTIONS) | {"caddyPlaceholder"}


# -- scanning the source (the interpreter has no checker or AST to give us) ---------------------

_STRING_LITERAL = re.compile(
    r"""[rR]?[bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")""",
    re.DOTALL,
)
_CALL = re.compile(r"(\.?)\s*\b([A-Za-z_]\w*)\s*\(")


def _blank_strings(source: str) -> str:
    """``source`` with every string literal's inside blanked (same length), to scan the code."""
    return _STRING_LITERAL.sub(lambda m: '"' + " " * (len(m.group(0)) - 2) + '"', source)


def _calls(source: str) -> list[tuple[str, bool, str]]:
    """Every call in ``source``: (name, is a method, argument text)."""
    blanked = _blank_strings(source)
    found = []
    for call in _CALL.finditer(blanked):
        depth, end = 1, call.end()
        while end < len(blanked) and depth:
            depth += {"(": 1, ")": -1}.get(blanked[end], 0)
            end += 1
        found.append((call.group(2), bool(call.group(1)), source[call.end() : end - 1]))
    return found


# -- the matcher ------------------------------------------------------------------------------

_CACHE_LIMIT = 256


@implementer(IRequestMatcher)
class MatchExpression:
    """``http.matchers.expression``: a CEL expression over the request.

    @ivar expression: the expression as configured.
    @ivar expanded: the expression with its placeholders expanded, as compiled.
    """

    def __init__(self, expression: str, context: Any, log: Logger | None = None) -> None:
        self.expression = expression
        self.expanded = expand_placeholders(expression)
        self._context = context
        self._log = log or Logger()
        self._request: Any = None  # the request being matched (the reactor thread only)
        self._matchers: dict[tuple[str, str], Any] = {}
        try:
            self._program = _cel().compile(self.expanded)
        except ValueError as e:
            raise ConfigError(f"expression {expression!r}: compiling CEL program: {e}") from None
        for name, is_method, arguments in _calls(self.expanded):
            if name not in _KNOWN_FUNCTIONS:
                raise ConfigError(f"expression {expression!r}: compiling CEL program: undeclared reference to '{name}'")
            if name in _MATCHER_FUNCTIONS and not is_method:
                self._prepare(name, arguments)
        env = _cel().Context()
        env.add_variable("request", "http.Request")  # an opaque stand-in: the functions read self._request
        env.add_function("caddyPlaceholder", self._placeholder)
        for name, function in _STRING_EXTENSION.items():
            env.add_function(name, function)
        for name in _MATCHER_FUNCTIONS:
            env.add_function(name, self._matcher_function(name))
        self._env = env

    def _prepare(self, name: str, arguments: str) -> None:
        """Build a matcher whose arguments are constants now, so a bad one fails the load."""
        try:
            values = _cel().compile(f"[{arguments}]").execute(_cel().Context())
        except Exception:
            return  # not constant (placeholders): built when evaluated
        try:
            self._matcher(name, tuple(values))
        except (ConfigError, ValueError) as e:
            raise ConfigError(f"expression {self.expression!r}: {name}(): {e}") from None

    def _matcher(self, name: str, args: tuple[Any, ...]) -> Any:
        key = (name, repr(args))
        matcher = self._matchers.get(key)
        if matcher is None:
            module_name, to_config = _MATCHER_FUNCTIONS[name]
            matcher = self._context.load_matcher_set({module_name: to_config(args)})
            if len(self._matchers) >= _CACHE_LIMIT:  # arguments from placeholders can vary forever
                self._matchers.clear()
            self._matchers[key] = matcher
        return matcher

    def _matcher_function(self, name: str) -> Callable[..., bool]:
        def call(*args: Any) -> bool:
            return bool(self._matcher(name, args).match(self._request))

        return call

    def _placeholder(self, request: Any, name: Any) -> Any:
        if not isinstance(name, str):
            raise ValueError(f"invalid placeholder variable name of type '{type(name).__name__}'")
        value, _ = lookup(name, self._request)
        if value is None or isinstance(value, (str, bool, int, float, bytes, list, dict)):
            return value
        return str(value)

    def match(self, request: Any) -> bool:
        outer, self._request = self._request, request
        try:
            result = self._program.execute(self._env)
        except Exception as e:
            self._log.error("evaluating expression {expression!r}: {error}", expression=self.expression, error=str(e))
            request.vars[MATCHER_ERROR_VAR] = e
            return False
        finally:
            self._request = outer
        return result is True


@module("http.matchers.expression", schema=STRING)
def load_expression(config: Any, context: Any) -> MatchExpression:
    if not isinstance(config, str):
        raise ConfigError(f"expression matcher: expected a JSON string, got {config!r}")
    return MatchExpression(config, context, getattr(context, "log", None))
