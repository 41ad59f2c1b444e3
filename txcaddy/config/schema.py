"""Declarative JSON shapes, checked before any runtime object is built.

Caddy decodes its JSON into typed Go structs, so a string where an int belongs fails at
load with ``json: cannot unmarshal string into Go struct field … of type int``. txcaddy's
loaders read plain dicts; this module gives them the same guarantee with one mechanism:
each app and each registered module declares the shape of its JSON (``Obj``, ``ListOf``,
``STRING``, …, next to its loader; modules pass ``schema=`` to ``registry.module``) and
``check`` walks the whole config against those shapes first. A bad value becomes a
``ConfigError`` naming its JSON path and the expected type, before any loader touches it.

Like Go, a JSON ``null`` field is taken as absent: ``check`` removes such fields, so loaders
never see them (a null list item or map value is an error, but where any value is allowed).
Objects declared ``strict`` reject
unknown fields as Caddy's ``StrictUnmarshalJSON`` does; others only check what they know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from txcaddy.config.values import parse_caddy_duration
from txcaddy.errors import ConfigError

__all__ = [
    "ANY", "BOOL", "DURATION", "INT", "NUMBER", "STRING", "STRINGS", "Spec", "ListOf", "MapOf",
    "Module", "ModuleMap", "Nullable", "Obj", "OneOf", "check", "json_type",
]


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, as Go's errors say it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _mismatch(value: Any, path: str, expected: str) -> ConfigError:
    return ConfigError(f"json: cannot unmarshal {json_type(value)} into {path or 'config'} of type {expected}")


def _field_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Spec:
    """The shape of one JSON value; ``name`` is the type named in errors (Go's spelling)."""

    name = "any"

    def check(self, value: Any, path: str) -> None:
        """Raise ConfigError if ``value`` (found at ``path``) does not have this shape."""

    def accepts_null(self) -> bool:
        """Whether a null list item or map value is fine (Go: only for pointers and interfaces)."""
        return False


class _Any(Spec):
    def accepts_null(self) -> bool:
        return True


class _Scalar(Spec):
    def __init__(self, name: str, test: Callable[[Any], bool]) -> None:
        self.name = name
        self._test = test

    def check(self, value: Any, path: str) -> None:
        if not self._test(value):
            raise _mismatch(value, path, self.name)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Duration(Spec):
    """``caddy.Duration``: integer nanoseconds or a duration string ("1m30s", "2d")."""

    name = "caddy.Duration"

    def check(self, value: Any, path: str) -> None:
        if _is_int(value):
            return
        if not isinstance(value, str):
            raise _mismatch(value, path, self.name)
        try:
            parse_caddy_duration(value)
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from None


ANY: Spec = _Any()
STRING: Spec = _Scalar("string", lambda v: isinstance(v, str))
INT: Spec = _Scalar("int", _is_int)
NUMBER: Spec = _Scalar("float64", _is_number)
BOOL: Spec = _Scalar("bool", lambda v: isinstance(v, bool))
DURATION: Spec = _Duration()


class ListOf(Spec):
    """A JSON array of ``item``."""

    def __init__(self, item: Spec) -> None:
        self.item = item
        self.name = f"[]{item.name}"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, list):
            raise _mismatch(value, path, self.name)
        for i, item in enumerate(value):
            _check_item(self.item, item, f"{path}[{i}]")


class MapOf(Spec):
    """A JSON object with any keys, each value of ``value``."""

    def __init__(self, value: Spec) -> None:
        self.value = value
        self.name = f"map[string]{value.name}"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise _mismatch(value, path, self.name)
        for key, item in value.items():
            _check_item(self.value, item, _field_path(path, key))


class Nullable(Spec):
    """``spec``, or null where a list item or map value is (Go: a nil slice or pointer)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.name = spec.name

    def accepts_null(self) -> bool:
        return True

    def check(self, value: Any, path: str) -> None:
        self.spec.check(value, path)


def _check_item(spec: Spec, value: Any, path: str) -> None:
    if value is None and not spec.accepts_null():
        raise _mismatch(value, path, spec.name)
    if value is not None:
        spec.check(value, path)


class Obj(Spec):
    """A JSON object with known fields (a Go struct).

    ``fields`` maps each field to its shape; ``strict`` rejects fields not listed (Caddy's
    ``json: unknown field``); ``required`` fields must be present and not null.
    """

    def __init__(
        self, fields: Mapping[str, Spec], *, strict: bool = False, required: Iterable[str] = (),
        name: str = "object",
    ) -> None:
        self.fields = dict(fields)
        self.strict = strict
        self.required = tuple(required)
        self.name = name

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise _mismatch(value, path, self.name)
        self.check_fields(value, path)

    def check_fields(self, value: dict[str, Any], path: str, skip: str = "") -> None:
        nulls = []
        for key, item in value.items():
            spec = self.fields.get(key)
            if spec is None:
                if self.strict and key != skip:
                    raise ConfigError(f'{path or "config"}: json: unknown field "{key}"')
                continue
            if item is None:
                nulls.append(key)
            else:
                spec.check(item, _field_path(path, key))
        for key in nulls:
            del value[key]  # Go leaves the field at its zero value: as if absent
        for key in self.required:
            if value.get(key) is None:
                raise ConfigError(f"{path or 'config'}: missing required field \"{key}\"")


class OneOf(Spec):
    """A value that may have any of several shapes, tried in order.

    When none fits, the error is that of the first shape of the value's JSON type.
    """

    def __init__(self, *options: Spec, name: str = "") -> None:
        self.options = options
        self.name = name or " or ".join(o.name for o in options)

    def accepts_null(self) -> bool:
        return any(o.accepts_null() for o in self.options)

    def check(self, value: Any, path: str) -> None:
        matching: ConfigError | None = None
        for option in self.options:
            try:
                option.check(value, path)
                return
            except ConfigError as e:
                if matching is None and _json_kind(option) == json_type(value):
                    matching = e  # the shape the value was meant to have says what is wrong
        raise matching or _mismatch(value, path, self.name)


def _json_kind(spec: Spec) -> str:
    if isinstance(spec, (Obj, MapOf, Module, ModuleMap)):
        return "object"
    if isinstance(spec, ListOf):
        return "array"
    return {"string": "string", "int": "number", "float64": "number", "bool": "bool"}.get(spec.name, "")


def _registered_schema(module_id: str) -> Spec | None:
    from txcaddy.config import registry  # the registry imports the modules, which import this

    return registry.schema_for(module_id)


class Module(Spec):
    """A module object: ``inline_key`` names it in ``namespace``; the rest is its own JSON.

    The module's shape is ``schemas[name]`` when given (modules loaded by an app, such as
    TLS issuers), else what the module registered (``registry.module(..., schema=)``).
    Unknown names pass: the loader reports them with Caddy's "module not registered".
    """

    def __init__(self, namespace: str, inline_key: str, schemas: Mapping[str, Spec] | None = None) -> None:
        self.namespace = namespace
        self.inline_key = inline_key
        self.schemas = schemas
        self.name = f"module {namespace}"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise _mismatch(value, path, "object")
        name = value.get(self.inline_key)
        if name is None:
            return  # some namespaces have a default module; the loader decides
        if not isinstance(name, str):
            raise _mismatch(name, _field_path(path, self.inline_key), "string")
        spec = self.schemas.get(name) if self.schemas is not None else _registered_schema(f"{self.namespace}.{name}")
        if isinstance(spec, Obj):
            spec.check_fields(value, path, skip=self.inline_key)
        elif spec is not None:
            spec.check({k: v for k, v in value.items() if k != self.inline_key}, path)


class ModuleMap(Spec):
    """An object whose keys are module names in ``namespace`` (a matcher set, encoders)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.name = f"map of {namespace} modules"

    def check(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise _mismatch(value, path, "object")
        for key, item in value.items():
            spec = _registered_schema(f"{self.namespace}.{key}")
            if spec is not None:
                _check_item(spec, item, _field_path(path, key))


STRINGS: Spec = ListOf(STRING)


def check(spec: Spec, value: Any, path: str = "") -> None:
    """Check ``value`` against ``spec``; raise ConfigError naming the first bad value's path.

    Null fields of objects are removed from ``value`` on the way (Go ignores them).
    """
    _check_item(spec, value, path)


#: ``caddyhttp.Route`` and its parts, shared by servers, ``subroute`` and ``reverse_proxy``.
MATCHER_SET: Spec = ModuleMap("http.matchers")
HANDLER: Spec = Module("http.handlers", "handler")
ROUTE: Spec = Obj(
    {"group": STRING, "match": ListOf(MATCHER_SET), "handle": ListOf(HANDLER), "terminal": BOOL},
    strict=True, name="caddyhttp.Route",
)
ROUTES: Spec = ListOf(ROUTE)
