"""The values in a log entry: ``Entry`` and the field types encoders know."""

from __future__ import annotations

from typing import Any


class Duration(int):
    """Nanoseconds; encoders print it in the log's ``duration_format``."""

    __slots__ = ()


class StringArray(list):  # type: ignore[type-arg]
    """A header's values (Caddy's ``LoggableStringArray``): filters act on each element."""

    __slots__ = ()


class Plain(dict):  # type: ignore[type-arg]
    """A JSON object of strings, ``StringArray``s, ints, bools and ``Plain`` objects only.

    The request and header objects are built as ``Plain`` so that encoders can
    hand them to the C JSON encoder whole (zap's number formats are not needed).
    """

    __slots__ = ()


class Entry:
    """One log entry: zap's entry (level, time, logger, message) and its fields in order."""

    __slots__ = ("level", "time", "logger", "message", "fields")

    def __init__(self, level: str, when: float, logger: str, message: str, fields: list[tuple[str, Any]]) -> None:
        self.level = level
        self.time = when
        self.logger = logger
        self.message = message
        self.fields = fields
