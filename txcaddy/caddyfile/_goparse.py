"""Go's number, bool and duration parsing rules, which the Caddyfile relies on.

The adapter must accept and reject exactly what Caddy does (``1.5h`` is a
duration, ``1,5h`` is not) and print the same values (durations become
integer nanoseconds in JSON).
"""

from __future__ import annotations

import math
import re

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


def parse_go_int(text: str) -> int | None:
    """strconv.Atoi: decimal only, optional sign, 64-bit range."""
    if not _INT.match(text):
        return None
    value = int(text)
    if not -(2**63) <= value <= INT64_MAX:
        return None
    return value


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
