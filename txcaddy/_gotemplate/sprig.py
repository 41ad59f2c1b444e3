"""The common functions of Sprig 3.2 (``sprig.TxtFuncMap``), which Caddy adds to its templates.

Each follows Sprig's Go code: argument order (the value last, so that pipelines work:
``{{ .Name | upper }}``, ``{{ "a,b" | splitList "," }}``), byte-based lengths and indexes,
Go's ``int64`` arithmetic (``div`` truncates), errors swallowed where Sprig swallows them
(``b64dec`` returns the error text, ``regexMatch`` is false). The functions Sprig has and this
module does not are listed in ``docs/templates.md``.
"""

from __future__ import annotations

import base64
import hashlib
import json as _json
import os
import time as _time
import zlib
from collections.abc import Callable
from typing import Any

from txcaddy._go import json as gojson
from txcaddy._go.path import base as path_base
from txcaddy._go.path import clean as path_clean
from txcaddy._go.path import ext as path_ext
from txcaddy._go.path import split as path_split
from txcaddy._go.regexp import compile_regexp, replace_all_string
from txcaddy._go.strconv import quote as go_quote
from txcaddy._go.strings import to_lower, to_upper, trim_space
from txcaddy._go.time import Time, compile_layout, duration_string, format_layout
from txcaddy._go.unicode import is_space
from txcaddy._gotemplate._exec import typed
from txcaddy._gotemplate._fmt import NO_VALUE, go_type, sprint_value

__all__ = ["FUNCS", "GoTime", "strval"]


class GoTime(Time):
    """A ``time.Time`` (Unix seconds, float) with the methods templates call on it."""

    __slots__ = ()
    go_type_name = "time.Time"

    def Format(self, layout: str) -> str:  # noqa: N802 (Go's method name)
        return format_layout(compile_layout(layout), float(self), True)

    def Unix(self) -> int:  # noqa: N802
        return int(float(self) // 1)

    def Year(self) -> int:  # noqa: N802
        return _time.localtime(float(self)).tm_year

    def UTC(self) -> GoTime:  # noqa: N802
        return self


def strval(v: Any) -> str:
    """Sprig's ``strval``: strings as they are, bytes decoded, anything else as ``%v``."""
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "surrogateescape")
    if v is None:
        return "<nil>"
    return sprint_value(v)


def _bytes(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _from_bytes(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def to_int64(v: Any) -> int:
    """Sprig's ``toInt64`` (cast.ToInt64): numbers truncate, numeric strings parse, else 0."""
    if isinstance(v, bool):
        return 1 if v else 0
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v, 0) if not v.startswith("0") or v in ("0",) or v.startswith(("0x", "0X", "0b", "0o")) else int(v, 8)
        except ValueError:
            try:
                return int(float(v))
            except ValueError:
                return 0
    return 0


def to_float64(v: Any) -> float:
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return 0.0
    return 0.0


def empty(v: Any) -> bool:
    """Sprig's ``empty``: Go's zero value (nil, "", 0, false, empty slice or map)."""
    if v is None or v is NO_VALUE:
        return True
    if isinstance(v, (bool, int, float, str, bytes, list, tuple, dict)):
        return not v
    return False


def _strslice(v: Any) -> list[str]:
    if isinstance(v, (list, tuple)):
        return [strval(x) for x in v if x is not None]
    if v is None:
        return []
    return [strval(v)]


def _title(s: str) -> str:
    out = []
    prev = " "
    for ch in s:
        sep = not (ch.isalnum() or ch == "_") if ord(ch) < 0x80 else is_space(ch)
        prev_sep = not (prev.isalnum() or prev == "_") if ord(prev) < 0x80 else is_space(prev)
        out.append(ch.upper() if prev_sep and not sep else ch)
        prev = ch
    return "".join(out)


def _substr(start: int, end: int, s: str) -> str:
    b = _bytes(s)
    if start < 0:
        return _from_bytes(b[:end])
    if end < 0 or end > len(b):
        return _from_bytes(b[start:])
    return _from_bytes(b[start:end])


def _trunc(c: int, s: str) -> str:
    b = _bytes(s)
    if c < 0 and len(b) + c > 0:
        return _from_bytes(b[len(b) + c:])
    if c >= 0 and len(b) > c:
        return _from_bytes(b[:c])
    return s


def _abbrev(width: int, s: str) -> str:
    if width < 4 or len(s) <= width:
        return s
    return s[: width - 3] + "..."


def _cat(*v: Any) -> str:
    return " ".join(sprint_value(x) for x in v if x is not None)


def _indent(spaces: int, v: str) -> str:
    pad = " " * spaces
    return pad + v.replace("\n", "\n" + pad)


def _default(d: Any, *given: Any) -> Any:
    if not given or empty(given[0]):
        return d
    return given[0]


def _coalesce(*v: Any) -> Any:
    for x in v:
        if not empty(x):
            return x
    return None


def _ternary(vt: Any, vf: Any, v: Any) -> Any:
    return vt if v is True else vf


def _dict(*v: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(v), 2):
        key = strval(v[i])
        out[key] = v[i + 1] if i + 1 < len(v) else ""
    return out


def _get(d: dict[str, Any], key: str) -> Any:
    return d.get(key, "")


def _set(d: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    d[key] = value
    return d


def _unset(d: dict[str, Any], key: str) -> dict[str, Any]:
    d.pop(key, None)
    return d


def _keys(*dicts: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for d in dicts:
        out.extend(d.keys())
    return out


def _values(d: dict[str, Any]) -> list[Any]:
    return list(d.values())


def _list_of(v: Any, fn: str) -> list[Any]:
    if isinstance(v, (list, tuple)):
        return list(v)
    raise ValueError(f"Cannot find {fn} on type {go_type(v)}") if v is not None else ValueError(f"Cannot find {fn} on type <nil>")


def _first(v: Any) -> Any:
    items = _list_of(v, "first")
    return items[0] if items else None


def _last(v: Any) -> Any:
    items = _list_of(v, "last")
    return items[-1] if items else None


def _rest(v: Any) -> Any:
    items = _list_of(v, "rest")
    return items[1:] if items else None


def _initial(v: Any) -> Any:
    items = _list_of(v, "initial")
    return items[:-1] if items else None


def _append(v: Any, x: Any) -> list[Any]:
    return _list_of(v, "append") + [x]


def _prepend(v: Any, x: Any) -> list[Any]:
    return [x] + _list_of(v, "prepend")


def _uniq(v: Any) -> list[Any]:
    out: list[Any] = []
    for x in _list_of(v, "uniq"):
        if x not in out:
            out.append(x)
    return out


def _has(needle: Any, haystack: Any) -> bool:
    if haystack is None:
        return False
    return needle in _list_of(haystack, "has")


def _without(v: Any, *omit: Any) -> list[Any]:
    return [x for x in _list_of(v, "without") if x not in omit]


def _concat(*lists: Any) -> list[Any]:
    out: list[Any] = []
    for v in lists:
        out.extend(_list_of(v, "concat"))
    return out


def _sort_alpha(v: Any) -> list[str]:
    if isinstance(v, (list, tuple)):
        return sorted(strval(x) for x in v)
    return [strval(v)]


def _slice(items: Any, *indices: Any) -> Any:
    """Sprig's ``slice`` (it replaces Go's built-in): lists only."""
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"list should be type of slice or array but {_kind_of(items)}")
    if not items:
        return None
    start = to_int64(indices[0]) if indices else 0
    end = to_int64(indices[1]) if len(indices) > 1 else len(items)
    if not 0 <= start <= end <= len(items):
        raise ValueError("reflect.Value.Slice: slice index out of bounds")
    return list(items[start:end])


def _div(a: Any, b: Any) -> int:
    x, y = to_int64(a), to_int64(b)
    if y == 0:
        raise ZeroDivisionError("runtime error: integer divide by zero")
    q = abs(x) // abs(y)
    return q if (x >= 0) == (y >= 0) else -q


def _mod(a: Any, b: Any) -> int:
    x, y = to_int64(a), to_int64(b)
    if y == 0:
        raise ZeroDivisionError("runtime error: integer divide by zero")
    return x - _div(x, y) * y


def _mul(a: Any, *v: Any) -> int:
    value = to_int64(a)
    for x in v:
        value *= to_int64(x)
    return value


def _max(a: Any, *i: Any) -> int:
    return max([to_int64(a)] + [to_int64(x) for x in i])


def _min(a: Any, *i: Any) -> int:
    return min([to_int64(a)] + [to_int64(x) for x in i])


def _to_time(date: Any) -> float:
    if isinstance(date, (int, float)) and not isinstance(date, bool):
        return float(int(date)) if isinstance(date, int) else float(date)
    return _time.time()


def _date(fmt: str, date: Any) -> str:
    return format_layout(compile_layout(fmt), _to_time(date), True)


def _date_in_zone(fmt: str, date: Any, zone: str) -> str:
    return format_layout(compile_layout(fmt), _to_time(date), zone != "UTC")


def _duration(sec: Any) -> str:
    """Sprig's ``duration``: a string of seconds or an int64; a template's int is neither (0s)."""
    n = 0
    if isinstance(sec, str):
        try:
            n = int(sec)
        except ValueError:
            n = 0
    return duration_string(n * 1_000_000_000)


def _now() -> GoTime:
    return GoTime(_time.time())


_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def _b64dec(v: str) -> str:
    """Sprig returns the decoder's error text as the result (Go's ``CorruptInputError``)."""
    try:
        return _from_bytes(base64.b64decode(_bytes(v), validate=True))
    except ValueError:
        body = v.rstrip("=")
        bad = next((i for i, ch in enumerate(body) if ch not in _B64), None)
        offset = bad if bad is not None else len(body) - len(body) % 4
        return f"illegal base64 data at input byte {offset}"


def _to_go_json(v: Any, indent: str | None = None) -> str:
    try:
        return gojson.marshal(_jsonable(v), indent)
    except (TypeError, ValueError):
        return ""


def _jsonable(v: Any) -> Any:
    if v is NO_VALUE:
        return None
    if getattr(v, "go_nil", False):
        return None
    if isinstance(v, dict):
        return gojson.Map({str(k): _jsonable(x) for k, x in v.items()})
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _from_json(v: str) -> Any:
    try:
        return gojson.to_any(_json.loads(v))
    except ValueError:
        return {}


def _must_compile(regex: str) -> Any:
    """Go's ``regexp.MustCompile``: its panic text is the error."""
    try:
        return compile_regexp(regex)
    except ValueError as e:
        shown = f"`{regex}`" if "`" not in regex and regex.isprintable() else go_quote(regex)
        raise ValueError(f"regexp: Compile({shown}): {e}") from None


def _regex_match(regex: str, s: str) -> bool:
    try:
        return compile_regexp(regex).search(s) is not None
    except ValueError:
        return False


def _regex_find(regex: str, s: str) -> str:
    m = _must_compile(regex).search(s)
    return m.group(0) if m else ""


def _regex_find_all(regex: str, s: str, n: int) -> list[str]:
    found = [m.group(0) for m in _must_compile(regex).finditer(s)]
    return found if n < 0 else found[:n]


def _regex_replace_all(regex: str, s: str, repl: str) -> str:
    return replace_all_string(_must_compile(regex), s, repl)


def _regex_replace_all_literal(regex: str, s: str, repl: str) -> str:
    return _must_compile(regex).sub(lambda m: repl, s)


def _regex_split(regex: str, s: str, n: int) -> list[str]:
    parts = _must_compile(regex).split(s, maxsplit=0 if n < 0 else max(n - 1, 0))
    return parts if n != 0 else []


def _split(sep: str, orig: str) -> dict[str, str]:
    return {f"_{i}": p for i, p in enumerate(orig.split(sep))}


def _plural(one: str, many: str, count: int) -> str:
    return one if count == 1 else many


def _until(count: int) -> list[int]:
    return list(range(count)) if count >= 0 else list(range(0, count, -1))


def _seq(*params: int) -> str:
    if len(params) == 1:
        end = params[0]
        values = list(range(1, end + 1)) if end >= 1 else list(range(1, end - 1, -1))
    elif len(params) == 2:
        start, end = params
        values = list(range(start, end + 1)) if end >= start else list(range(start, end - 1, -1))
    elif len(params) == 3:
        start, step, end = params
        if step == 0 or (end < start and step > 0) or (end > start and step < 0):
            return ""
        values = list(range(start, end + (1 if step > 0 else -1), step))
    else:
        return ""
    return " ".join(str(v) for v in values)


def _fail(msg: str) -> str:
    raise ValueError(msg)


def _required(warn: str, val: Any) -> Any:
    if val is None or (isinstance(val, str) and val == ""):
        raise ValueError(warn)
    return val


def _kind_of(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "slice"
    if isinstance(v, dict):
        return "map"
    if v is None:
        return "invalid"
    return "struct"


def _dir(p: str) -> str:
    return path_clean(path_split(p)[0])


def _atoi(s: str) -> int:
    try:
        return int(s)
    except ValueError:
        return 0


def _wrap(length: int, s: str) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(s, length, break_long_words=False, break_on_hyphens=False))


FUNCS: dict[str, Callable[..., Any]] = {
    # strings
    "upper": lambda s: to_upper(strval(s)),
    "lower": lambda s: to_lower(strval(s)),
    "title": lambda s: _title(strval(s)),
    "trim": lambda s: trim_space(strval(s)),
    "trimAll": lambda cutset, s: s.strip(cutset),
    "trimPrefix": lambda prefix, s: s[len(prefix):] if s.startswith(prefix) else s,
    "trimSuffix": lambda suffix, s: s[: -len(suffix)] if suffix and s.endswith(suffix) else s,
    "replace": lambda old, new, src: src.replace(old, new),
    "contains": lambda substr, s: substr in s,
    "hasPrefix": lambda prefix, s: s.startswith(prefix),
    "hasSuffix": lambda suffix, s: s.endswith(suffix),
    "repeat": lambda count, s: s * max(count, 0),
    "substr": _substr,
    "nospace": lambda s: "".join(ch for ch in s if not is_space(ch)),
    "trunc": _trunc,
    "abbrev": _abbrev,
    "quote": lambda *s: " ".join(go_quote(strval(x)) for x in s if x is not None),
    "squote": lambda *s: " ".join(f"'{strval(x)}'" for x in s if x is not None),
    "cat": _cat,
    "indent": _indent,
    "nindent": lambda spaces, v: "\n" + _indent(spaces, v),
    "splitList": lambda sep, orig: orig.split(sep) if sep else list(orig),
    "split": _split,
    "join": lambda sep, v: sep.join(_strslice(v)),
    "toString": strval,
    "toStrings": lambda v: [strval(x) for x in v] if isinstance(v, (list, tuple)) else [strval(v)],
    "plural": _plural,
    "wrap": _wrap,
    "sha256sum": lambda s: hashlib.sha256(_bytes(s)).hexdigest(),
    "sha1sum": lambda s: hashlib.sha1(_bytes(s)).hexdigest(),
    "adler32sum": lambda s: str(zlib.adler32(_bytes(s))),
    "b64enc": lambda s: base64.b64encode(_bytes(s)).decode("ascii"),
    "b64dec": _b64dec,
    "b32enc": lambda s: base64.b32encode(_bytes(s)).decode("ascii"),
    "b32dec": lambda s: _from_bytes(base64.b32decode(_bytes(s))),
    # defaults and flow
    "default": _default,
    "empty": empty,
    "coalesce": _coalesce,
    "ternary": _ternary,
    "fail": _fail,
    "required": _required,
    # lists and dicts
    "list": lambda *v: list(v),
    "tuple": lambda *v: list(v),
    "dict": _dict,
    "get": _get,
    "set": _set,
    "unset": _unset,
    "keys": _keys,
    "values": _values,
    "hasKey": lambda d, key: key in d,
    "pluck": lambda name, *dicts: [d[name] for d in dicts if name in d],
    "first": _first,
    "last": _last,
    "rest": _rest,
    "initial": _initial,
    "append": _append,
    "push": _append,
    "prepend": _prepend,
    "uniq": _uniq,
    "has": _has,
    "without": _without,
    "concat": _concat,
    "reverse": lambda s: s[::-1],
    "sortAlpha": _sort_alpha,
    "slice": _slice,
    "until": _until,
    "seq": _seq,
    # numbers
    "add": lambda *i: sum(to_int64(x) for x in i),
    "add1": lambda i: to_int64(i) + 1,
    "sub": lambda a, b: to_int64(a) - to_int64(b),
    "mul": _mul,
    "div": _div,
    "mod": _mod,
    "max": _max,
    "min": _min,
    "int": to_int64,
    "int64": to_int64,
    "float64": to_float64,
    "atoi": _atoi,
    "addf": lambda *i: sum(to_float64(x) for x in i),
    "subf": lambda a, *v: to_float64(a) - sum(to_float64(x) for x in v),
    "mulf": lambda a, *v: _mulf(a, v),
    "divf": lambda a, *v: _divf(a, v),
    # dates
    "now": _now,
    "date": _date,
    "dateInZone": _date_in_zone,
    "date_in_zone": _date_in_zone,
    "htmlDate": lambda date: _date("2006-01-02", date),
    "htmlDateInZone": lambda date, zone: _date_in_zone("2006-01-02", date, zone),
    "unixEpoch": lambda date: str(int(float(date) // 1)),
    "ago": lambda date: duration_string(int(round(_time.time() - _to_time(date))) * 1_000_000_000),
    "duration": _duration,
    # encodings
    "toJson": _to_go_json,
    "toPrettyJson": lambda v: _to_go_json(v, "  "),
    "fromJson": _from_json,
    # regular expressions
    "regexMatch": _regex_match,
    "regexFind": _regex_find,
    "regexFindAll": _regex_find_all,
    "regexReplaceAll": _regex_replace_all,
    "regexReplaceAllLiteral": _regex_replace_all_literal,
    "regexSplit": _regex_split,
    # paths, OS, reflection
    "base": path_base,
    "dir": _dir,
    "ext": path_ext,
    "clean": path_clean,
    "isAbs": lambda p: p.startswith("/"),
    "env": lambda name: os.environ.get(name, ""),
    "expandenv": os.path.expandvars,
    "typeOf": go_type,
    "kindOf": _kind_of,
    "kindIs": lambda target, v: _kind_of(v) == target,
    "typeIs": lambda target, v: go_type(v) == target,
    "deepEqual": lambda a, b: a == b,
}


_S, _I = "string", "int"
_PARAMS: dict[str, tuple[str, ...]] = {
    "upper": (_S,), "lower": (_S,), "title": (_S,), "trim": (_S,), "trimAll": (_S, _S), "trimPrefix": (_S, _S),
    "trimSuffix": (_S, _S), "replace": (_S, _S, _S), "contains": (_S, _S), "hasPrefix": (_S, _S),
    "hasSuffix": (_S, _S), "repeat": (_I, _S), "substr": (_I, _I, _S), "nospace": (_S,), "trunc": (_I, _S),
    "abbrev": (_I, _S), "indent": (_I, _S), "nindent": (_I, _S), "splitList": (_S, _S), "split": (_S, _S),
    "join": (_S,), "plural": (_S, _S, _I), "wrap": (_I, _S), "sha256sum": (_S,), "sha1sum": (_S,),
    "adler32sum": (_S,), "b64enc": (_S,), "b64dec": (_S,), "b32enc": (_S,), "b32dec": (_S,),
    "regexMatch": (_S, _S), "regexFind": (_S, _S), "regexFindAll": (_S, _S, _I), "regexReplaceAll": (_S, _S, _S),
    "regexReplaceAllLiteral": (_S, _S, _S), "regexSplit": (_S, _S, _I), "until": (_I,), "base": (_S,),
    "dir": (_S,), "ext": (_S,), "clean": (_S,), "isAbs": (_S,), "env": (_S,), "expandenv": (_S,),
    "fromJson": (_S,), "date": (_S,), "dateInZone": (_S, "any", _S), "date_in_zone": (_S, "any", _S),
    "atoi": (_S,), "fail": (_S,), "required": (_S,), "kindIs": (_S,), "typeIs": (_S,), "hasKey": ("any", _S),
    "htmlDateInZone": ("any", _S), "unixEpoch": ("time.Time",), "get": ("any", _S), "set": ("any", _S), "unset": ("any", _S), "pluck": (_S,), "ternary": ("any", "any", "bool"),
}
FUNCS.update({name: typed(FUNCS[name], *kinds) for name, kinds in _PARAMS.items()})


def _mulf(a: Any, v: tuple[Any, ...]) -> float:
    value = to_float64(a)
    for x in v:
        value *= to_float64(x)
    return value


def _divf(a: Any, v: tuple[Any, ...]) -> float:
    value = to_float64(a)
    for x in v:
        value /= to_float64(x)
    return value
