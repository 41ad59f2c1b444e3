"""The admin API's ``/config/[path]`` operations on the raw JSON config, and its ``@id`` index.

Follows Caddy 2.6.2's ``admin.go`` (``unsyncedConfigAccess``, ``indexConfigObjects``,
``etagHasher``): a path walks objects by key and arrays by index; GET reads, POST sets (or
appends to an array, each element with a trailing ``/...``), PUT creates (inserts into an
array), PATCH replaces what exists, DELETE removes. Unlike Caddy, a client error is a
``ConfigPathError`` with a 4xx status (Caddy answers most of them with 500).
"""

from __future__ import annotations

import copy
import json
from typing import Any

_MISSING = object()


class ConfigPathError(Exception):
    """A ``/config`` request that cannot be applied; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def encode(value: Any) -> bytes:
    """JSON as Go's ``json.Encoder`` writes it: compact, sorted keys, HTML characters escaped, newline."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode("utf-8") + b"\n"


def fnv32a(data: bytes) -> int:
    """The 32-bit FNV-1a hash Caddy's ETags use."""
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def etag(path: str, body: bytes) -> str:
    """``"<path> <hash>"``: Caddy's ETag for the body of a GET on ``path``."""
    return f'"{path} {fnv32a(body):x}"'


def access(raw: dict[str, Any], method: str, path: str, body: Any = _MISSING) -> Any:
    """Apply ``method`` at ``path`` (``/config/...``) to ``raw`` (``{"config": cfg}``) in place.

    Returns the value read for GET; raises ``ConfigPathError`` for a path or method that
    does not apply. Mutating callers pass a deep copy and keep it only if loading works.
    """
    value = None if body is _MISSING else body
    clean = path.strip("/")
    if not clean:
        raise ConfigPathError(400, "no traversable path")
    parts = clean.split("/")
    ellipses = parts[-1] == "..."
    if ellipses:
        parts = parts[:-1]
    if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        raise ConfigPathError(405, f"unrecognized method {method}")
    ptr: Any = raw
    for i, part in enumerate(parts):
        if isinstance(ptr, dict):
            child = ptr.get(part, _MISSING)
            if isinstance(child, list) and i == len(parts) - 2:
                return _array_target(ptr, part, child, parts[-1], method, path, value, ellipses)
            if i == len(parts) - 1:
                return _object_target(ptr, part, child, method, path, value, ellipses)
            if child is _MISSING and method == "PUT":
                child = ptr[part] = {}
            ptr = None if child is _MISSING else child
        elif isinstance(ptr, list):
            index = _index(part, f"/{'/'.join(parts[:i + 1])}")
            if not 0 <= index < len(ptr):
                raise ConfigPathError(404, f"[/{'/'.join(parts[:i + 1])}] array index out of bounds: {part}")
            if i == len(parts) - 1:  # a path ending in an element of a nested array
                return _element(ptr, index, method, path, value)
            ptr = ptr[index]
        else:
            raise ConfigPathError(404, f"invalid traversal path at: {'/'.join(parts[:i + 1])}")
    return None


def _index(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigPathError(400, f"[{where}] invalid array index '{text}'") from None


def _array_target(
    parent: dict[str, Any], key: str, array: list[Any], last: str, method: str, path: str, value: Any,
    ellipses: bool,
) -> Any:
    if method == "POST":
        _append(parent, key, array, value, ellipses)
        return None
    index = _index(last, path)
    if index < 0 or index > len(array) or (method != "PUT" and index >= len(array)):
        raise ConfigPathError(404, f"[{path}] array index out of bounds: {last}")
    if method == "GET":
        return array[index]
    if method == "PUT":
        array.insert(index, value)
    elif method == "PATCH":
        array[index] = value
    else:
        del array[index]
    return None


def _element(array: list[Any], index: int, method: str, path: str, value: Any) -> Any:
    if method == "GET":
        return array[index]
    if method in ("PATCH", "POST"):
        array[index] = value
    elif method == "PUT":
        array.insert(index, value)
    else:
        del array[index]
    return None


def _append(parent: dict[str, Any], key: str, array: list[Any], value: Any, ellipses: bool) -> None:
    if ellipses:
        if not isinstance(value, list):
            raise ConfigPathError(400, "final element is not an array")
        array.extend(value)
    else:
        array.append(value)
    parent[key] = array


def _object_target(
    parent: dict[str, Any], key: str, current: Any, method: str, path: str, value: Any, ellipses: bool
) -> Any:
    if method == "GET":
        return None if current is _MISSING else current
    if method == "POST":
        if isinstance(current, list):
            _append(parent, key, current, value, ellipses)
        else:
            parent[key] = value
    elif method == "PUT":
        if current is not _MISSING:
            raise ConfigPathError(409, f"[{path}] key already exists: {key}")
        parent[key] = value
    elif method == "PATCH":
        if current is _MISSING:
            raise ConfigPathError(404, f"[{path}] key does not exist: {key}")
        parent[key] = value
    else:
        parent.pop(key, None)
    return None


def mutated(raw: dict[str, Any], method: str, path: str, body: Any) -> dict[str, Any]:
    """A copy of ``raw`` with the change applied (``raw`` itself is left alone)."""
    changed = copy.deepcopy(raw)
    access(changed, method, path, copy.deepcopy(body))
    return changed


def index_ids(config: Any, prefix: str = "/config") -> dict[str, str]:
    """Every ``@id`` (string or number) in ``config`` -> the ``/config/...`` path of its object."""
    out: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            ident = value.get("@id")
            if isinstance(ident, str) or (isinstance(ident, int | float) and not isinstance(ident, bool)):
                key = ident if isinstance(ident, str) else _number(ident)
                out[key] = path
            for k, v in value.items():
                walk(v, f"{path}/{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}/{i}")

    walk(config, prefix)
    return out


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def strip_ids(config: Any) -> Any:
    """``config`` without its ``@id`` fields (modules never see them, as in Caddy)."""
    if isinstance(config, dict):
        return {k: strip_ids(v) for k, v in config.items() if k != "@id"}
    if isinstance(config, list):
        return [strip_ids(v) for v in config]
    return config
