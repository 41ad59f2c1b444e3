"""The head of an HTTP/1.x response as bytes: status line, Date, header fields.

Go's rules: field names that are not tokens are dropped, and a value with CR
or LF has them turned into spaces so it cannot split the response. Apart from
the protocol in ``_h1`` as a self-contained piece; ``_h1`` imports these
functions as module globals, so writing a head costs the same lookups as
when they lived there.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.utils import formatdate

from txcaddy._go.http import status_text

__all__ = ["DATE", "asks_close", "head_bytes", "status_line"]


class Date:
    """The Date header value, computed at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = ""

    def line(self, seconds: float) -> str:
        """``Date: ...\\r\\n`` as text."""
        second = int(seconds)
        if second != self._second:
            self._second = second
            self._line = "Date: " + formatdate(second, usegmt=True) + "\r\n"
        return self._line


DATE = Date()


_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


_valid_names: dict[str, bool] = {}


def _valid_field_name(name: str) -> bool:
    """Whether ``name`` is an HTTP token (cached: the same few names recur on every response)."""
    valid = _valid_names.get(name)
    if valid is None:
        valid = bool(name) and name.isascii() and all(c in _TOKEN for c in name.encode("ascii"))
        if len(_valid_names) < 4096:
            _valid_names[name] = valid
    return valid


_status_lines: dict[tuple[int, bool], str] = {}


def status_line(status: int, http10: bool) -> str:
    """``HTTP/1.1 200 OK\\r\\n`` (cached per status)."""
    line = _status_lines.get((status, http10))
    if line is None:
        line = f"{'HTTP/1.0' if http10 else 'HTTP/1.1'} {status} {status_text(status)}\r\n"
        if len(_status_lines) < 1024:
            _status_lines[(status, http10)] = line
    return line


def _clean_line(line: str) -> str:
    """A header line with CR and LF inside its value turned into spaces."""
    body = line[:-2] if line.endswith("\r\n") else line
    return body.replace("\r", " ").replace("\n", " ") + "\r\n"


def asks_close(values: list[str]) -> bool:
    """Whether Connection values name ``close``."""
    for value in values:
        for token in value.split(","):
            if token.strip().lower() == "close":
                return True
    return False


def head_bytes(lines: list[str], fields: Iterable[tuple[str, list[str]]]) -> bytes:
    """``lines`` (a status line, or a chunked body's last-chunk line) with the header fields
    and the blank line after them, as bytes.

    Go drops fields whose names are not tokens. The head is built as text and encoded once;
    a value with CR or LF (which would split the response) is caught by counting line ends,
    and then every value has them turned into spaces.
    """
    valid = _valid_names
    for name, values in fields:
        ok = valid.get(name)
        if ok is None:
            ok = _valid_field_name(name)
        if ok:
            for value in values:
                lines.append(name + ": " + value + "\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        text = "".join(_clean_line(line) for line in lines[:-1]) + "\r\n"
    return text.encode("latin-1", "replace")
