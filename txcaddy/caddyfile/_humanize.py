"""go-humanize's ``ParseBytes`` (the version Caddy 2.6.2 vendors), for byte sizes in Caddyfiles.

``10MB`` is 10,000,000 bytes and ``10MiB`` 10,485,760, commas are allowed (``1,000``), and a
bad size fails with the message Caddy prints (``strconv.ParseFloat: parsing "x": invalid
syntax``, ``unhandled size name: zb``).
"""

from __future__ import annotations

import re
import unicodedata

from txcaddy._go.strconv import NumError, parse_float

__all__ = ["MIB", "parse_bytes"]

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
    value: float | None = None
    if number.isascii():
        try:
            value = parse_float(number)
        except NumError:
            pass
    if value is None:
        reason = "value out of range" if _DECIMAL.match(number) else "invalid syntax"
        raise NumError("ParseFloat", number, reason)
    extra = text[digits:].strip().lower()
    if extra not in _SIZE_UNITS:
        raise ValueError(f"unhandled size name: {extra}")
    value *= _SIZE_UNITS[extra]
    if value >= 2.0**64:
        raise ValueError(f"too large: {text}")
    return int(value)
