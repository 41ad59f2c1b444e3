"""Reading Caddy's JSON value types the same way in every module's loader."""

from __future__ import annotations

from typing import Any

from txcaddy.errors import ConfigError


def duration_seconds(value: Any, where: str) -> float | None:
    """A ``caddy.Duration`` (integer nanoseconds or a duration string like "1m30s") in
    seconds; None when the field is absent. ``where`` names the field in errors."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):  # Go: an int64 or a string
        raise ConfigError(f"{where}: invalid duration {value!r}")
    if isinstance(value, str):
        from txcaddy.caddyfile._goparse import parse_caddy_duration

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
