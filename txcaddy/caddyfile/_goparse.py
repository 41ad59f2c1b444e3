"""Go's parsing and formatting rules (numbers, durations, byte sizes, quoting).

The adapter must accept and reject exactly what Caddy does (``1.5h`` is a
duration, ``1,5h`` is not), print the same values (durations become integer
nanoseconds in JSON) and word its errors as Go's ``strconv``, ``time`` and
go-humanize do.
"""

from __future__ import annotations

import math
import re
import unicodedata

_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+(?:_[0-9]+)*)?\.?[0-9]*(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\Z",
    re.IGNORECASE,
)
_BOOL = {
    "1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
    "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False,
}

INT64_MAX = 2**63 - 1


class GoError(ValueError):
    """A failure whose text is what the Go function would have returned."""


def parse_go_int(text: str) -> int | None:
    """strconv.Atoi: decimal only, optional sign, 64-bit range."""
    if not _INT.match(text):
        return None
    value = int(text)
    if not -(2**63) <= value <= INT64_MAX:
        return None
    return value


def go_quote(text: str) -> str:
    """``strconv.Quote`` for the text found in Caddyfile tokens."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def atoi_error(text: str) -> str:
    """The message of Go's ``strconv.Atoi`` failing on ``text``."""
    digits = text[1:] if text[:1] in "+-" else text
    reason = "value out of range" if digits.isascii() and digits.isdigit() else "invalid syntax"
    return f"strconv.Atoi: parsing {go_quote(text)}: {reason}"


def go_atoi(text: str) -> int:
    """``strconv.Atoi``; raises ValueError with Go's message."""
    value = parse_go_int(text)
    if value is None:
        raise ValueError(atoi_error(text))
    return value


def weak_string(text: str) -> int | bool | str:
    """How ``caddyhttp.WeakString`` marshals: booleans and integers unquoted."""
    if text == "true":
        return True
    if text == "false":
        return False
    value = parse_go_int(text)
    return text if value is None else value


def parse_go_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64) for the decimal forms people write."""
    bare = text.lower().lstrip("+-")
    if bare in ("inf", "infinity", "nan"):
        return float(text.lower().replace("infinity", "inf"))
    if not _FLOAT.match(text) or not any(c.isdigit() for c in text):
        return None
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        return None
    return None if math.isinf(value) else value


def parse_go_bool(text: str) -> bool | None:
    return _BOOL.get(text)


_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5
    "μs": 1_000,  # U+03BC
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]*)")


def parse_go_duration(text: str) -> int:
    """time.ParseDuration, returning nanoseconds; raises ValueError like Go."""
    orig = text
    if not text:
        raise ValueError(f'time: invalid duration "{orig}"')
    neg = False
    if text[0] in "+-":
        neg = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    total_int = 0
    pos = 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        number, unit = m.group(1), m.group(2)
        if not number or number == "." or not any(c.isdigit() for c in number):
            raise ValueError(f'time: invalid duration "{orig}"')
        if not unit:
            raise ValueError(f'time: missing unit in duration "{orig}"')
        if unit not in _UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{orig}"')
        scale = _UNITS[unit]
        whole, _, frac = number.partition(".")
        part = int(whole or "0") * scale
        if frac:
            part += int(int(frac) * scale / (10 ** len(frac)))
        total_int += part
        total += part
        if total_int > INT64_MAX:
            raise ValueError(f'time: invalid duration "{orig}"')
        pos = m.end()
    return -total_int if neg else total_int


def parse_caddy_duration(text: str) -> int:
    """caddy.ParseDuration: Go durations plus a ``d`` (day) unit."""
    if "d" in text:
        # Caddy turns each "<number>d" into hours before parsing.
        def days_to_hours(match: re.Match[str]) -> str:
            value = float(match.group(1))
            hours = value * 24
            return f"{hours:g}h" if hours != int(hours) else f"{int(hours)}h"

        converted = re.sub(r"([0-9]*\.?[0-9]+)d", days_to_hours, text)
        if "d" in converted:
            raise ValueError(f'time: unknown unit "d" in duration "{text}"')
        text = converted
    return parse_go_duration(text)


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": 1 << 10,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": 1 << 20,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": 1 << 30,
    "gib": 1 << 30,
    "t": 1000**4,
    "tb": 1000**4,
    "ti": 1 << 40,
    "tib": 1 << 40,
    "p": 1000**5,
    "pb": 1000**5,
    "pi": 1 << 50,
    "pib": 1 << 50,
    "e": 1000**6,
    "eb": 1000**6,
    "ei": 1 << 60,
    "eib": 1 << 60,
}

MIB = 1 << 20
_DECIMAL = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)\Z")


def parse_bytes(text: str) -> int:
    """go-humanize's ``ParseBytes`` (the version Caddy 2.6.2 vendors).

    Raises ValueError with the message Go would print.
    """
    digits = 0
    has_comma = False
    for ch in text:
        if not (unicodedata.category(ch) == "Nd" or ch in ".,"):
            break
        has_comma = has_comma or ch == ","
        digits += 1
    number = text[:digits]
    if has_comma:
        number = number.replace(",", "")
    value = parse_go_float(number) if number.isascii() else None
    if value is None:
        reason = "value out of range" if _DECIMAL.match(number) else "invalid syntax"
        raise ValueError(f'strconv.ParseFloat: parsing "{number}": {reason}')
    extra = text[digits:].strip().lower()
    if extra not in _SIZE_UNITS:
        raise ValueError(f"unhandled size name: {extra}")
    value *= _SIZE_UNITS[extra]
    if value >= 2.0**64:
        raise ValueError(f"too large: {text}")
    return int(value)


def _fmt_frac(value: int, precision: int) -> tuple[str, int]:
    """Go's fmtFrac: the fraction digits (no trailing zeros) and the integer rest."""
    digits = []
    printing = False
    for _ in range(precision):
        digit = value % 10
        printing = printing or digit != 0
        if printing:
            digits.append(str(digit))
        value //= 10
    if printing:
        return "." + "".join(reversed(digits)), value
    return "", value


def go_duration_string(ns: int) -> str:
    """``time.Duration.String()``, e.g. ``-1h0m0s`` or ``1.5µs``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        if u < 1_000:
            unit, precision = "ns", 0
        elif u < 1_000_000:
            unit, precision = "µs", 3
        else:
            unit, precision = "ms", 6
        frac, whole = _fmt_frac(u, precision)
        return f"{sign}{whole}{frac}{unit}"
    frac, seconds = _fmt_frac(u, 9)
    out = f"{seconds % 60}{frac}s"
    minutes = seconds // 60
    if minutes > 0:
        out = f"{minutes % 60}m{out}"
        hours = minutes // 60
        if hours > 0:
            out = f"{hours}h{out}"
    return sign + out
