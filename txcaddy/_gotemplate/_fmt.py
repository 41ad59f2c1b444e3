"""Go's ``fmt.Sprint``, ``Sprintln`` and ``Sprintf`` for template values (``print``/``printf``).

The verbs templates use: ``%v %s %d %q %x %X %o %b %c %t %f %F %e %E %g %G %T %%`` with flags
``-+# 0``, width and precision (``*`` too), Go's ``%!verb(type=value)`` for a bad operand and
``%!verb(MISSING)`` / ``%!(EXTRA …)`` for a count that does not match.
"""

from __future__ import annotations

from typing import Any

from txcaddy._go.fmt import sprint as go_sprint
from txcaddy._go.strconv import format_float_g, quote

__all__ = ["NO_VALUE", "NilSlice", "go_type", "sprint", "sprint_value", "sprintf", "sprintln"]


class _NoValue:
    """Go's invalid ``reflect.Value``: a missing map key; prints ``<no value>``."""

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


NO_VALUE: Any = _NoValue()


class NilSlice(list):  # type: ignore[type-arg]
    """A nil Go slice (``[]any(nil)``): empty, prints ``[]``, equals ``nil``, marshals as ``null``."""

    go_nil = True


def go_type(value: Any) -> str:
    """The Go type name a value stands for, in error messages and ``%T``."""
    if value is None or value is NO_VALUE:
        return "<nil>"
    named = getattr(value, "go_type_name", None)
    if named is not None:
        return str(named)
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray)):
        return "[]uint8"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return getattr(value, "go_type_name", type(value).__name__)


def sprint_value(value: Any) -> str:
    """``%v`` of one value."""
    if value is NO_VALUE:
        return "<no value>"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(sprint_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = sorted(value.items(), key=lambda kv: (not isinstance(kv[0], (int, float)), kv[0] if isinstance(kv[0], (int, float)) else str(kv[0])))
        return "map[" + " ".join(f"{sprint_value(k)}:{sprint_value(v)}" for k, v in pairs) + "]"
    return go_sprint(value)


def sprint(*args: Any) -> str:
    """``fmt.Sprint``: a space between operands when neither is a string."""
    out = []
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(sprint_value(a))
    return "".join(out)


def sprintln(*args: Any) -> str:
    """``fmt.Sprintln``: operands always spaced, a newline at the end."""
    return " ".join(sprint_value(a) for a in args) + "\n"


def _pad(text: str, width: int | None, minus: bool, zero: bool = False) -> str:
    if width is None or len(text) >= width:
        return text
    if minus:
        return text + " " * (width - len(text))
    if zero:
        sign = text[0] if text[:1] in "+-" else ""
        return sign + "0" * (width - len(text)) + text[len(sign):]
    return " " * (width - len(text)) + text


def _bad(verb: str, value: Any) -> str:
    if value is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type(value)}={sprint_value(value)})"


def _fmt_int(value: int, verb: str, flags: str, prec: int | None) -> str:
    base = {"d": 10, "x": 16, "X": 16, "o": 8, "O": 8, "b": 2}[verb]
    neg = value < 0
    digits = format(abs(value), {10: "d", 16: "x", 8: "o", 2: "b"}[base])
    if verb == "X":
        digits = digits.upper()
    if prec is not None and len(digits) < prec:
        digits = "0" * (prec - len(digits)) + digits
    if "#" in flags:
        digits = {"x": "0x", "X": "0X", "o": "0", "b": "0b"}.get(verb, "") + digits
    if verb == "O":
        digits = "0o" + digits
    sign = "-" if neg else ("+" if "+" in flags else (" " if " " in flags else ""))
    return sign + digits


def _fmt_float(value: float, verb: str, flags: str, prec: int | None) -> str:
    if value != value:
        text = "NaN"
    elif value in (float("inf"), float("-inf")):
        text = "+Inf" if value > 0 else "-Inf"
        if value > 0 and "+" not in flags:
            text = "Inf" if " " not in flags else " Inf"
        return text
    elif verb in "fF":
        text = f"{value:.{6 if prec is None else prec}f}"
    elif verb in "eE":
        text = f"{value:.{6 if prec is None else prec}e}"
        if verb == "E":
            text = text.upper()
    else:  # g, G, v
        if prec is None:
            text = format_float_g(value)
        else:
            text = f"{value:.{prec}g}"
        if verb == "G":
            text = text.upper()
    if "+" in flags and not text.startswith("-"):
        text = "+" + text
    elif " " in flags and not text.startswith("-"):
        text = " " + text
    return text


def _format_one(verb: str, value: Any, flags: str, width: int | None, prec: int | None) -> str:
    minus, zero = "-" in flags, "0" in flags and "-" not in flags
    if verb == "T":
        return _pad(go_type(value), width, minus)
    if verb == "v":
        if isinstance(value, float) and not isinstance(value, bool):
            return _pad(_fmt_float(value, "g", flags, prec), width, minus, zero)
        if isinstance(value, int) and not isinstance(value, bool):
            return _pad(_fmt_int(value, "d", flags, None), width, minus, zero)
        if "#" in flags and isinstance(value, str):
            return _pad(quote(value), width, minus)
        return _pad(sprint_value(value), width, minus)
    if value is None and verb not in "vT":
        return _bad(verb, value)
    if verb not in "vT" and isinstance(value, (list, tuple)):
        return _pad("[" + " ".join(_format_one(verb, v, flags, None, prec) for v in value) + "]", width, minus)
    if verb not in "vT" and isinstance(value, dict):
        pairs = sorted(value.items(), key=lambda kv: str(kv[0]))
        inner = " ".join(f"{_format_one(verb, k, flags, None, prec)}:{_format_one(verb, v, flags, None, prec)}" for k, v in pairs)
        return _pad("map[" + inner + "]", width, minus)
    if verb == "t":
        if isinstance(value, bool):
            return _pad("true" if value else "false", width, minus)
        return _bad(verb, value)
    if verb in "dboOxXc" and isinstance(value, int) and not isinstance(value, bool):
        if verb == "c":
            return _pad(chr(value), width, minus)
        return _pad(_fmt_int(value, verb, flags, prec), width, minus, zero and prec is None)
    if verb in "xX" and isinstance(value, (str, bytes)):
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        text = data.hex()
        if verb == "X":
            text = text.upper()
        return _pad(text, width, minus)
    if verb in "eEfFgG" and isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, int):
            return _bad(verb, value)
        return _pad(_fmt_float(value, verb, flags, prec), width, minus, zero)
    if verb == "s":
        if isinstance(value, (int, float)) and not isinstance(value, bool) or isinstance(value, bool):
            return _bad(verb, value)
        text = sprint_value(value)
        if prec is not None:
            text = text[:prec]
        return _pad(text, width, minus)
    if verb == "q":
        if isinstance(value, str):
            return _pad(quote(value), width, minus)
        if isinstance(value, int) and not isinstance(value, bool):
            return _pad("'" + chr(value) + "'", width, minus)
        return _bad(verb, value)
    return _bad(verb, value)


def sprintf(fmt: str, *args: Any) -> str:
    """``fmt.Sprintf``."""
    out: list[str] = []
    argi = 0
    i, n = 0, len(fmt)
    while i < n:
        ch = fmt[i]
        if ch != "%":
            j = fmt.find("%", i)
            if j < 0:
                j = n
            out.append(fmt[i:j])
            i = j
            continue
        i += 1
        flags = ""
        while i < n and fmt[i] in "-+# 0":
            flags += fmt[i]
            i += 1
        width: int | None = None
        prec: int | None = None
        if i < n and fmt[i] == "*":
            i += 1
            if argi < len(args) and isinstance(args[argi], int):
                width = args[argi]
                if width < 0:
                    flags += "-"
                    width = -width
            argi += 1
        else:
            start = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > start:
                width = int(fmt[start:i])
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if argi < len(args) and isinstance(args[argi], int):
                    prec = args[argi]
                argi += 1
            else:
                start = i
                while i < n and fmt[i].isdigit():
                    i += 1
                prec = int(fmt[start:i] or "0")
        if i >= n:
            out.append("%!(NOVERB)")
            break
        verb = fmt[i]
        i += 1
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        value = args[argi]
        argi += 1
        out.append(_format_one(verb, value, flags, width, prec))
    if argi < len(args):
        extra = ", ".join(f"{go_type(a)}={sprint_value(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)
