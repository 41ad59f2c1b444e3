"""Go's ``strconv``: integers, floats and booleans as Go parses and prints them, and ``Quote``.

Caddy's configs and placeholders go through ``strconv`` (``Atoi`` reads ports, status codes
and limits; ``FormatFloat`` writes placeholder values), so txcaddy accepts, refuses and
prints exactly what Go does, and words the errors as ``strconv.NumError`` does.
"""

from __future__ import annotations

import math
import re
import struct

from txcaddy._go.errors import GoError

__all__ = [
    "INT64_MAX",
    "NumError",
    "atoi",
    "format_float_e",
    "format_float_f",
    "format_float_g",
    "format_int",
    "parse_bool",
    "parse_float",
    "parse_uint",
    "quote",
]

INT64_MAX = 2**63 - 1

_INT = re.compile(r"[+-]?[0-9]+\Z")
_DECIMAL_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_HEX_FLOAT = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+\Z")
_SPECIAL_FLOATS = {"inf": float("inf"), "+inf": float("inf"), "-inf": float("-inf"), "infinity": float("inf"),
                   "+infinity": float("inf"), "-infinity": float("-inf"), "nan": float("nan")}
_BOOL = {
    "1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
    "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False,
}
_NAMED_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v"}


def quote(text: str) -> str:
    """``strconv.Quote``: a double-quoted Go string literal; invalid UTF-8 bytes (surrogate
    escapes) as ``\\xNN``."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[ch])
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


class NumError(GoError):
    """``strconv.NumError``: the function, the text and the reason, worded as Go's ``Error()``.

    The message is built only when printed: callers that try a conversion and fall back pay
    for no quoting.
    """

    def __init__(self, func: str, num: str, reason: str) -> None:
        super().__init__(func, num, reason)
        self.func = func
        self.num = num
        self.reason = reason

    def __str__(self) -> str:
        return f"strconv.{self.func}: parsing {quote(self.num)}: {self.reason}"


def atoi(text: str) -> int:
    """``strconv.Atoi``: decimal only, an optional sign, the 64-bit range; raises NumError."""
    if _INT.match(text) is not None:
        value = int(text)
        if -(2**63) <= value <= INT64_MAX:
            return value
        raise NumError("Atoi", text, "value out of range")
    raise NumError("Atoi", text, "invalid syntax")


_DIGITS36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def format_int(value: int, base: int) -> str:
    """``strconv.FormatInt(value, base)``: lower-case digits, a leading ``-`` when negative."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    value = abs(value)
    out = []
    while value:
        value, rest = divmod(value, base)
        out.append(_DIGITS36[rest])
    return sign + "".join(reversed(out))


def parse_uint(text: str, bit_size: int = 64) -> int:
    """``strconv.ParseUint(text, 10, bit_size)``: ASCII digits only (no sign); a value past the
    range fails as soon as its digits do, before a bad character after them. Raises NumError."""
    if not text:
        raise NumError("ParseUint", text, "invalid syntax")
    max_value = (1 << bit_size) - 1
    value = 0
    for ch in text:
        if not "0" <= ch <= "9":
            raise NumError("ParseUint", text, "invalid syntax")
        value = value * 10 + ord(ch) - 48
        if value > max_value:
            raise NumError("ParseUint", text, "value out of range")
    return value


def parse_float(text: str, bit_size: int = 64) -> float:
    """``strconv.ParseFloat(text, bit_size)``: decimal, hexadecimal (``0x1p-2``), ``Inf`` and
    ``NaN``; a 32-bit result is rounded to float32. Raises NumError."""
    special = _SPECIAL_FLOATS.get(text.lower())
    if special is not None:
        return special
    if _DECIMAL_FLOAT.match(text):
        value = float(text)
    elif _HEX_FLOAT.match(text):
        try:
            value = float.fromhex(text)
        except OverflowError:
            raise NumError("ParseFloat", text, "value out of range") from None
    else:
        raise NumError("ParseFloat", text, "invalid syntax")
    if bit_size == 32:
        try:
            rounded: float = struct.unpack("f", struct.pack("f", value))[0]
        except OverflowError:
            raise NumError("ParseFloat", text, "value out of range") from None
        value, overflowed = rounded, math.isinf(rounded) and not math.isinf(value)
    else:
        overflowed = math.isinf(value)
    if overflowed:
        raise NumError("ParseFloat", text, "value out of range")
    return value


def parse_bool(text: str) -> bool:
    """``strconv.ParseBool``; raises NumError."""
    value = _BOOL.get(text)
    if value is None:
        raise NumError("ParseBool", text, "invalid syntax")
    return value


_SPECIAL_REPRS = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


def _float_digits(text: str) -> tuple[str, str, int]:
    """Sign, shortest round-tripping digits and decimal-point position (Go's ``decimal``) of
    ``repr(value)``, which has those digits (Python and Go both print the shortest)."""
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return sign, "0", 1
    point = len(whole) + (int(exponent) if exponent else 0) - (len(whole) + len(fraction) - len(digits))
    return sign, digits.rstrip("0"), point


def format_float_f(value: float) -> str:
    """``strconv.FormatFloat(v, 'f', -1, 64)`` (what Caddy's ``ToString`` and zap's
    ``AppendFloat64`` use): shortest digits, never an exponent."""
    text = repr(value)
    if "e" not in text:  # repr has Go's digits and layout but for a trailing ".0" and specials
        if text.endswith(".0"):
            return text[:-2]
        if "n" in text:
            return _SPECIAL_REPRS[text]
        return text
    sign, digits, point = _float_digits(text)
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def format_float_e(value: float) -> str:
    """``strconv.FormatFloat(v, 'e', -1, 64)``: shortest digits as ``d.ddde±dd``."""
    if value - value != 0:
        return format_float_f(value)  # NaN, +Inf, -Inf
    sign, digits, point = _float_digits(repr(value))
    return _exponent_form(sign, digits, point - 1 if digits != "0" else 0)


def _exponent_form(sign: str, digits: str, exponent: int) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


def format_float_g(value: float) -> str:
    """``strconv.FormatFloat(v, 'g', -1, 64)``, which is ``fmt.Sprint`` of a float64
    (shortest digits, an exponent below 1e-04 and from 1e+06)."""
    if value and value - value == 0:  # neither zero nor an infinity nor NaN
        text = repr(value)
        sign, digits, point = _float_digits(text)
        exponent = point - 1
        if exponent < -4 or exponent >= 6:
            return _exponent_form(sign, digits, exponent)
        return text[:-2] if text.endswith(".0") else text  # repr has no exponent in this range
    return format_float_f(value)
