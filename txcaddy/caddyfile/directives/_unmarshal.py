"""Small Go behaviours shared by the log, tls and global-option parsers.

Caddy hands sub-blocks to registered modules (``caddyfile.UnmarshalModule``),
parses sizes with go-humanize and prints ``time.Duration`` values in errors;
these helpers reproduce exactly those results and messages.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from txcaddy.caddyfile._goparse import parse_go_float
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.errors import ConfigError

ModuleParser = Callable[[Dispenser], Any]


def unmarshal_module(
    d: Dispenser, namespace: str, name: str, parsers: Mapping[str, ModuleParser]
) -> Any:
    """Caddy's ``UnmarshalModule``: the module gets the rest of the line and its block.

    ``parsers`` maps the module names Caddy 2.6.2 (as packaged) knows in this
    namespace to their Caddyfile parsers; any other name is reported as Caddy
    reports an unregistered module.
    """
    module_id = f"{namespace}.{name}"
    parser = parsers.get(name)
    if parser is None:
        raise d.err(f"getting module named '{module_id}': module not registered: {module_id}")
    return parser(d.new_from_next_segment())


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


def atoi_error(text: str) -> str:
    """The message of Go's ``strconv.Atoi`` failing on ``text``."""
    digits = text[1:] if text[:1] in "+-" else text
    reason = "value out of range" if digits.isascii() and digits.isdigit() else "invalid syntax"
    return f'strconv.Atoi: parsing "{text}": {reason}'


def plain_error(message: str) -> ConfigError:
    """An error Caddy returns without the file and line (a bare Go error)."""
    return ConfigError(message)
