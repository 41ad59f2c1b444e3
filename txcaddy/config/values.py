"""Reading Caddy's JSON value types the same way in every module's loader."""

from __future__ import annotations

import re
from typing import Any

from txcaddy._go.time import parse_duration
from txcaddy.errors import ConfigError


def parse_caddy_duration(text: str) -> int:
    """``caddy.ParseDuration``: Go's durations plus a ``d`` (day) unit; nanoseconds."""
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
    return parse_duration(text)


def duration_seconds(value: Any, where: str) -> float | None:
    """A ``caddy.Duration`` (integer nanoseconds or a duration string like "1m30s") in
    seconds; None when the field is absent. ``where`` names the field in errors."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):  # Go: an int64 or a string
        raise ConfigError(f"{where}: invalid duration {value!r}")
    if isinstance(value, str):
        try:
            value = parse_caddy_duration(value)
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    return value / 1e9


def integer(value: Any, where: str) -> int:
    """A JSON integer field (0 when absent)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    return value


def string(value: Any, where: str) -> str:
    """A JSON string field ("" when absent); ``where`` names the field in errors."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value
