"""Go's and zap's formats: JSON strings, floats, Go time layouts and ``net.ParseIP``."""

from __future__ import annotations

import ipaddress
import math
import time
from json.encoder import encode_basestring as _c_json_string
from typing import Any

_SLOW_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_SLOW_ESCAPES.update({0x22: '\\"', 0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})


def json_string(text: str) -> str:
    """A JSON string as zap writes it (``\\b`` and ``\\f`` as ``\\u00XX``, ``<>&`` as they are)."""
    out: str = _c_json_string(text)
    if "\\" in out and ("\\b" in out or "\\f" in out):
        return '"' + text.translate(_SLOW_ESCAPES) + '"'
    return out


def _format_float_f(value: float) -> str:
    from txcaddy.config.placeholders import format_float_f

    return format_float_f(value)


def _json_float(value: float) -> str:
    """zap's ``AppendFloat64`` (Go's ``'f', -1``): shortest digits, never an exponent;
    NaN and infinities quoted."""
    if value != value or value in (math.inf, -math.inf):
        return '"NaN"' if value != value else ('"+Inf"' if value > 0 else '"-Inf"')
    text = repr(value)  # the same shortest digits, sometimes with an exponent
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        sign = "-" if mantissa[0] == "-" else ""
        mantissa = mantissa.lstrip("-")
        whole, _, fraction = mantissa.partition(".")
        digits = (whole + fraction).lstrip("0") if whole == "0" else whole + fraction
        point = len(whole) + int(exponent)
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits.rstrip('0')}"
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if text.endswith(".0"):
        return text[:-2]
    return text


def _go_v_float(value: float) -> str:
    """``fmt.Sprint`` of a float64 (what the console encoder prints for an epoch time)."""
    if value != value or value in (math.inf, -math.inf):
        return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")
    if value == 0 or 1e-4 <= abs(value) < 1e21:
        return _format_float_f(value)
    mantissa, _, exponent = repr(value).partition("e")  # repr uses an exponent out there
    if mantissa.endswith(".0"):
        mantissa = mantissa[:-2]
    sign = "-" if exponent.startswith("-") else "+"
    return f"{mantissa}e{sign}{abs(int(exponent)):02d}"


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ZONE_KINDS = ("070000", "07:00:00", "0700", "07:00", "07")
_NAMED_LAYOUTS = {
    "rfc3339": "2006-01-02T15:04:05Z07:00",
    "rfc3339_nano": "2006-01-02T15:04:05.999999999Z07:00",
    "wall": "2006/01/02 15:04:05",
    "wall_milli": "2006/01/02 15:04:05.000",
    "wall_nano": "2006/01/02 15:04:05.000000000",
    "common_log": "02/Jan/2006:15:04:05 -0700",
}
_ISO8601 = "2006-01-02T15:04:05.000Z0700"


def _starts_lower(text: str, i: int) -> bool:
    return i < len(text) and "a" <= text[i] <= "z"


def compile_go_layout(layout: str) -> list[Any]:
    """Split a Go time layout (``2006-01-02 15:04:05``) into literals and fields, as Go reads it."""
    parts: list[Any] = []
    literal: list[str] = []
    i, n = 0, len(layout)
    while i < n:
        c = layout[i]
        rest = layout[i : i + 9]
        kind: Any = None
        width = 0
        if c == "J" and rest.startswith("Jan"):
            if rest.startswith("January"):
                kind, width = "January", 7
            elif not _starts_lower(layout, i + 3):
                kind, width = "Jan", 3
        elif c == "M" and (rest.startswith("Mon") or rest.startswith("MST")):
            if rest.startswith("Monday"):
                kind, width = "Monday", 6
            elif rest.startswith("Mon") and not _starts_lower(layout, i + 3):
                kind, width = "Mon", 3
            elif rest.startswith("MST"):
                kind, width = "MST", 3
        elif c == "0":
            if i + 1 < n and "1" <= layout[i + 1] <= "6":
                kind, width = rest[:2], 2
            elif rest.startswith("002"):
                kind, width = "002", 3
        elif c == "1":
            kind, width = ("15", 2) if rest.startswith("15") else ("1", 1)
        elif c == "2":
            kind, width = ("2006", 4) if rest.startswith("2006") else ("2", 1)
        elif c == "_":
            if rest.startswith("_2006"):
                literal.append("_")  # Go reads "_2006" as a literal "_" and the year
                kind, width = "2006", 5
            elif rest.startswith("_2"):
                kind, width = "_2", 2
            elif rest.startswith("__2"):
                kind, width = "__2", 3
        elif c in "345":
            kind, width = c, 1
        elif (c == "P" and rest.startswith("PM")) or (c == "p" and rest.startswith("pm")):
            kind, width = rest[:2], 2
        elif c in "-Z":
            for zone in _ZONE_KINDS:
                if rest.startswith(c + zone):
                    kind, width = c + zone, 1 + len(zone)
                    break
        elif c in ".," and i + 1 < n and layout[i + 1] in "09":
            digit = layout[i + 1]
            j = i + 1
            while j < n and layout[j] == digit:
                j += 1
            if not (j < n and "0" <= layout[j] <= "9"):
                kind, width = ("frac", c, digit == "9", j - i - 1), j - i
        if kind is None:
            literal.append(c)
            i += 1
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append((kind,))
        i += width
    if literal:
        parts.append("".join(literal))
    return parts


def format_go_time(parts: list[Any], timestamp: float, local: bool) -> str:
    """A compiled Go layout applied to a Unix time (UTC unless ``local``)."""
    seconds = math.floor(timestamp)
    # A float clock holds microseconds at best: finer digits would be noise.
    nanos = int(round((timestamp - seconds) * 1e6)) * 1000
    if nanos >= 1_000_000_000:
        seconds, nanos = seconds + 1, nanos - 1_000_000_000
    if local:
        tm = time.localtime(seconds)
        offset, zone = tm.tm_gmtoff or 0, tm.tm_zone or ""
    else:
        tm = time.gmtime(seconds)
        offset, zone = 0, "UTC"
    out = []
    for part in parts:
        if part.__class__ is str:
            out.append(part)
            continue
        kind = part[0]
        if kind.__class__ is tuple:
            _, separator, trim, digits = kind
            out.append(_fraction(nanos, separator, trim, digits))
        elif kind in ("January", "Jan"):
            name = _MONTHS[tm.tm_mon - 1]
            out.append(name if kind == "January" else name[:3])
        elif kind in ("Monday", "Mon"):
            name = _DAYS[tm.tm_wday]
            out.append(name if kind == "Monday" else name[:3])
        elif kind == "1":
            out.append(str(tm.tm_mon))
        elif kind == "01":
            out.append(f"{tm.tm_mon:02d}")
        elif kind == "2":
            out.append(str(tm.tm_mday))
        elif kind == "_2":
            out.append(f"{tm.tm_mday:2d}")
        elif kind == "02":
            out.append(f"{tm.tm_mday:02d}")
        elif kind == "__2":
            out.append(f"{tm.tm_yday:3d}")
        elif kind == "002":
            out.append(f"{tm.tm_yday:03d}")
        elif kind == "2006":
            out.append(f"{tm.tm_year:04d}")
        elif kind == "06":
            out.append(f"{tm.tm_year % 100:02d}")
        elif kind == "15":
            out.append(f"{tm.tm_hour:02d}")
        elif kind in ("3", "03"):
            hour = tm.tm_hour % 12 or 12
            out.append(str(hour) if kind == "3" else f"{hour:02d}")
        elif kind == "4":
            out.append(str(tm.tm_min))
        elif kind == "04":
            out.append(f"{tm.tm_min:02d}")
        elif kind == "5":
            out.append(str(tm.tm_sec))
        elif kind == "05":
            out.append(f"{tm.tm_sec:02d}")
        elif kind in ("PM", "pm"):
            text = "PM" if tm.tm_hour >= 12 else "AM"
            out.append(text if kind == "PM" else text.lower())
        elif kind == "MST":
            out.append(zone or _numeric_zone(offset, "-0700"))
        else:
            out.append(_numeric_zone(offset, kind))
    return "".join(out)


def _fraction(nanos: int, separator: str, trim: bool, digits: int) -> str:
    if trim and (digits == 0 or nanos == 0):
        return ""
    text = f"{nanos:09d}"[:digits]
    if trim:
        text = text.rstrip("0")
        if not text:
            return ""
    return separator + text


def _numeric_zone(offset: int, kind: str) -> str:
    if offset == 0 and kind[0] == "Z":
        return "Z"
    sign = "-" if offset < 0 else "+"
    offset = abs(offset)
    minutes = offset // 60
    text = f"{sign}{minutes // 60:02d}"
    style = kind[1:]
    if ":" in style:
        text += ":"
    if style != "07":
        text += f"{minutes % 60:02d}"
    if style in ("070000", "07:00:00"):
        text += (":" if ":" in style else "") + f"{offset % 60:02d}"
    return text


def _parse_go_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Go's ``net.ParseIP``, with IPv4-mapped IPv6 addresses taken as IPv4."""
    if not text or "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:  # type: ignore[union-attr]
        return address.ipv4_mapped  # type: ignore[union-attr]
    return address
