"""Go's ``time``: durations (``ParseDuration``, ``Duration.String``), ``Time.String`` and layouts.

Caddy writes durations as Go prints them (``1.5ms``, ``2m0s``) in placeholders and logs, reads
them with Go's grammar (``1.5h`` yes, ``1,5h`` no), and formats log times with Go layouts
(``2006-01-02T15:04:05Z07:00``), which are read the way Go reads them (``Jan`` is the month,
``Janx`` is text).
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

from txcaddy._go.errors import GoError
from txcaddy._go.strconv import INT64_MAX

__all__ = [
    "Duration",
    "Time",
    "compile_layout",
    "duration_string",
    "format_layout",
    "parse_duration",
    "time_json",
    "time_string",
    "zone_offset",
]


def duration_string(nanoseconds: int) -> str:
    """``time.Duration.String()`` (``1.5ms``, ``2m0s``, ``0s``)."""
    if nanoseconds == 0:
        return "0s"
    negative = nanoseconds < 0
    u = -nanoseconds if negative else nanoseconds

    def frac(v: int, precision: int) -> tuple[str, int]:
        scale = 10**precision
        digits = f"{v % scale:0{precision}d}".rstrip("0")
        return ("." + digits if digits else ""), v // scale

    if u < 1_000_000_000:
        if u < 1_000:
            text = f"{u}ns"
        elif u < 1_000_000:
            fraction, whole = frac(u, 3)
            text = f"{whole}{fraction}µs"
        else:
            fraction, whole = frac(u, 6)
            text = f"{whole}{fraction}ms"
    else:
        fraction, seconds = frac(u, 9)
        text = f"{seconds % 60}{fraction}s"
        minutes = seconds // 60
        if minutes:
            text = f"{minutes % 60}m{text}"
            hours = minutes // 60
            if hours:
                text = f"{hours}h{text}"
    return "-" + text if negative else text


def zone_offset(tm: time.struct_time) -> str:
    """The ``-0700`` of Go's layouts for a local time."""
    offset = tm.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    offset = abs(offset) // 60
    return f"{sign}{offset // 60:02d}{offset % 60:02d}"


def time_string(timestamp: float) -> str:
    """``time.Time.String()`` in local time (without the monotonic reading)."""
    tm = time.localtime(timestamp)
    micros = int(round(timestamp * 1_000_000)) % 1_000_000
    fraction = f".{micros * 1000:09d}".rstrip("0") if micros else ""
    zone = tm.tm_zone or zone_offset(tm)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', tm)}{fraction} {zone_offset(tm)} {zone}"


def time_json(nanoseconds: int) -> str:
    """``Time.MarshalJSON`` of a UTC time (RFC 3339 with trailing zeros of the fraction dropped)."""
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    tm = time.gmtime(seconds)
    text = (f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


class Duration(int):
    """Nanoseconds that print like Go's ``time.Duration``."""

    __slots__ = ()

    def __str__(self) -> str:
        return duration_string(int(self))


class Time(float):
    """A timestamp that prints like Go's ``time.Time``."""

    __slots__ = ()

    def __str__(self) -> str:
        return time_string(float(self))


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


def parse_duration(text: str) -> int:
    """``time.ParseDuration``, returning nanoseconds; raises GoError with Go's message."""
    orig = text
    if not text:
        raise GoError(f'time: invalid duration "{orig}"')
    neg = False
    if text[0] in "+-":
        neg = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise GoError(f'time: invalid duration "{orig}"')
    total = 0.0
    total_int = 0
    pos = 0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        assert m is not None  # every part of the pattern is optional
        number, unit = m.group(1), m.group(2)
        if not number or number == "." or not any(c.isdigit() for c in number):
            raise GoError(f'time: invalid duration "{orig}"')
        if not unit:
            raise GoError(f'time: missing unit in duration "{orig}"')
        if unit not in _UNITS:
            raise GoError(f'time: unknown unit "{unit}" in duration "{orig}"')
        scale = _UNITS[unit]
        whole, _, frac = number.partition(".")
        part = int(whole or "0") * scale
        if frac:
            part += int(int(frac) * scale / (10 ** len(frac)))
        total_int += part
        total += part
        if total_int > INT64_MAX:
            raise GoError(f'time: invalid duration "{orig}"')
        pos = m.end()
    return -total_int if neg else total_int


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ZONE_KINDS = ("070000", "07:00:00", "0700", "07:00", "07")
def _starts_lower(text: str, i: int) -> bool:
    return i < len(text) and "a" <= text[i] <= "z"


def compile_layout(layout: str) -> list[Any]:
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


def format_layout(parts: list[Any], timestamp: float, local: bool) -> str:
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
