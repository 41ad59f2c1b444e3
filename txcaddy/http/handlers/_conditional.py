"""Caddy's ``ETag``, ``http.ServeContent``'s conditional requests and ``Range`` parsing."""

from __future__ import annotations

import os
from typing import Any

from txcaddy._go.http import parse_http_time
from txcaddy._go.strconv import NumError, atoi, format_int
from txcaddy.http.request import Request


def calculate_etag(info: os.stat_result) -> str:
    """Caddy's ``calculateEtag``: modification time (Unix seconds) and size, both base 36."""
    return '"' + format_int(info.st_mtime_ns // 1_000_000_000, 36) + format_int(info.st_size, 36) + '"'


# -- Go's ServeContent conditionals ------------------------------------------------------------

_OWS = " \t\r\n"  # textproto.TrimString


def _scan_etag(text: str) -> tuple[str, str]:
    """Go's ``scanETag``: the first entity tag of ``text`` and the rest; empty when malformed."""
    text = text.strip(_OWS)
    start = 2 if text.startswith("W/") else 0
    if len(text) - start < 2 or text[start] != '"':
        return "", ""
    for i in range(start + 1, len(text)):
        ch = ord(text[i])
        if ch == 0x22:
            return text[: i + 1], text[i + 1 :]
        if not (ch == 0x21 or 0x23 <= ch <= 0x7E or ch >= 0x80):
            return "", ""
    return "", ""


def _strong_match(a: str, b: str) -> bool:
    return a == b and a != "" and a[0] == '"'


def _weak_match(a: str, b: str) -> bool:
    return a.removeprefix("W/") == b.removeprefix("W/")


_COND_NONE, _COND_TRUE, _COND_FALSE = 0, 1, 2


def _check_etags(header: str, etag: str, strong: bool) -> int:
    """If-Match (strong) / If-None-Match (weak): TRUE when a listed tag (or ``*``) matches."""
    rest = header
    while True:
        rest = rest.strip(_OWS)
        if not rest:
            return _COND_FALSE
        if rest[0] == ",":
            rest = rest[1:]
            continue
        if rest[0] == "*":
            return _COND_TRUE
        tag, rest = _scan_etag(rest)
        if not tag:
            return _COND_FALSE
        if (_strong_match(tag, etag) if strong else _weak_match(tag, etag)):
            return _COND_TRUE


class _Preconditions:
    """Go's ``checkPreconditions``: the answer (304/412) or the Range header still to honour."""

    __slots__ = ("status", "range")

    def __init__(self, request: Request, headers: Any, modified_ns: int) -> None:
        self.status = 0
        self.range = ""
        fields = request.headers
        etag = headers.get("Etag") or ""
        known_time = modified_ns != 0
        modified_floor = (modified_ns // 1_000_000_000) * 1_000_000_000
        method = request.method
        condition = _COND_NONE
        if_match = fields.get("If-Match") or ""
        if if_match:
            condition = _check_etags(if_match, etag, strong=True)
        else:
            unmodified_since = fields.get("If-Unmodified-Since") or ""
            if unmodified_since and known_time:
                moment = parse_http_time(unmodified_since)
                if moment is not None:
                    condition = _COND_TRUE if modified_floor <= moment else _COND_FALSE
        if condition == _COND_FALSE:
            self.status = 412
            return
        if_none_match = fields.get("If-None-Match") or ""
        if if_none_match:
            if _check_etags(if_none_match, etag, strong=False) == _COND_TRUE:
                self.status = 304 if method in ("GET", "HEAD") else 412
                return
        elif method in ("GET", "HEAD"):
            modified_since = fields.get("If-Modified-Since") or ""
            if modified_since and known_time:
                moment = parse_http_time(modified_since)
                if moment is not None and modified_floor <= moment:
                    self.status = 304
                    return
        wanted = fields.get("Range") or ""
        if wanted and method in ("GET", "HEAD"):
            if_range = fields.get("If-Range") or ""
            if if_range and not self._if_range_holds(if_range, etag, modified_ns):
                wanted = ""
        self.range = wanted

    @staticmethod
    def _if_range_holds(if_range: str, etag: str, modified_ns: int) -> bool:
        tag, _ = _scan_etag(if_range)
        if tag:
            return _strong_match(tag, etag)
        moment = parse_http_time(if_range)
        if moment is None:
            return False
        return moment // 1_000_000_000 == modified_ns // 1_000_000_000


class _RangeError(Exception):
    pass


def _parse_int64(text: str) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``, None for its error."""
    try:
        return atoi(text)
    except NumError:
        return None


def parse_range(header: str, size: int) -> list[tuple[int, int]]:
    """Go's ``parseRange``: (start, length) pairs; ``_RangeError`` with Go's message when invalid."""
    if not header:
        return []
    if not header.startswith("bytes="):
        raise _RangeError("invalid range")
    ranges: list[tuple[int, int]] = []
    no_overlap = False
    for spec in header[6:].split(","):
        spec = spec.strip(_OWS)
        if not spec:
            continue
        first, dash, last = spec.partition("-")
        if not dash:
            raise _RangeError("invalid range")
        first, last = first.strip(_OWS), last.strip(_OWS)
        if first == "":
            if last == "" or last[0] == "-":
                raise _RangeError("invalid range")
            count = _parse_int64(last)
            if count is None or count < 0:
                raise _RangeError("invalid range")
            count = min(count, size)
            ranges.append((size - count, count))
            continue
        start = _parse_int64(first)
        if start is None or start < 0:
            raise _RangeError("invalid range")
        if start >= size:
            no_overlap = True
            continue
        if last == "":
            ranges.append((start, size - start))
            continue
        end = _parse_int64(last)
        if end is None or start > end:
            raise _RangeError("invalid range")
        end = min(end, size - 1)
        ranges.append((start, end - start + 1))
    if no_overlap and not ranges:
        raise _RangeError("invalid range: failed to overlap")
    return ranges
