"""The control channel between the supervisor and its worker processes (``workers N``).

One JSON object per line over a pipe, each with a ``"type"``.  Line-delimited JSON rather
than AMP: every message is one-way (nothing waits for an answer but ``ready``), the
supervisor reads the worker's pipe with a ``ProcessProtocol`` (``childDataReceived``,
not a transport AMP could own), and a line is easy to write in a test.

Supervisor → worker (the worker's stdin):

- ``config``: the first message; the Caddy JSON to serve, ``listeners`` (endpoint
  description → inherited fd), ``marks`` (upstream address → healthy) and the worker's
  ``slot``.
- ``health``: ``address``, ``healthy``: an active health check changed a host's mark.
- ``certificates``: ``names``: certificates for these names were stored; load them again.
- ``stop``: stop accepting, drain within the grace period, exit.

Worker → supervisor (the worker's fd 3):

- ``ready``: the worker serves its config.
- ``log``: one entry for the configured logs (``logger``, ``level``, ``message``,
  ``fields``, ``time``); written once, by the supervisor's log outputs.
- ``event``: one ``twisted.logger`` event, as text (``namespace``, ``level``, ``text``).

Log fields carry txcaddy's value types (``Duration``, ``StringArray``, ``Plain``), which
the encoders format differently from plain ints, lists and dicts: ``wire_value`` tags
them and ``unwire_value`` restores them.
"""

from __future__ import annotations

import json
from typing import Any

from txcaddy.logs._values import Duration, Plain, StringArray

__all__ = ["LineDecoder", "encode_message", "unwire_value", "wire_fields", "unwire_fields", "wire_value"]

MAX_LINE = 64 * 1024 * 1024  # a config can be large; a line longer than this is a broken peer


def encode_message(kind: str, **fields: Any) -> bytes:
    """One message as a line of JSON."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":")).encode() + b"\n"


class LineDecoder:
    """Splits a byte stream into messages; keeps a partial line for the next ``feed``."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buffer = b""
        self.max_line = max_line

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """The complete messages ``data`` ends; raises ValueError on a line that is no message."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > self.max_line:
            raise ValueError("control line too long")
        out = []
        for line in lines:
            if not line.strip():
                continue
            if len(line) > self.max_line:
                raise ValueError("control line too long")
            try:
                message = json.loads(line)
            except RecursionError:  # nested deeper than the parser goes: no message of ours
                raise ValueError(f"control line nested too deep: {line[:80]!r}") from None
            if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                raise ValueError(f"not a control message: {line[:80]!r}")
            out.append(message)
        return out


def wire_value(value: Any) -> Any:
    """``value`` as JSON, txcaddy's log value types tagged (``{"$d": ns}``...)."""
    if isinstance(value, Duration):
        return {"$d": int(value)}
    if isinstance(value, StringArray):
        return {"$s": [wire_value(v) for v in value]}
    if isinstance(value, Plain):
        return {"$p": {k: wire_value(v) for k, v in value.items()}}
    if isinstance(value, dict):
        return {"$o": {str(k): wire_value(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [wire_value(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def unwire_value(value: Any) -> Any:
    """The value ``wire_value`` gave, with its type."""
    if isinstance(value, list):
        return [unwire_value(v) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        (tag, inner), = value.items()
        if tag == "$d":
            return Duration(inner)
        if tag == "$s":
            return StringArray(unwire_value(v) for v in inner)
        if tag == "$p":
            return Plain((k, unwire_value(v)) for k, v in inner.items())
        if tag == "$o":
            return {k: unwire_value(v) for k, v in inner.items()}
    return value


def wire_fields(fields: list[tuple[str, Any]]) -> list[list[Any]]:
    """A log entry's ordered fields as JSON."""
    return [[name, wire_value(value)] for name, value in fields]


def unwire_fields(fields: list[list[Any]]) -> list[tuple[str, Any]]:
    return [(name, unwire_value(value)) for name, value in fields]
