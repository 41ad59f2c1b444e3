"""Go's ``net/http``: the request views Caddy reads, cookies, HTTP dates, status texts and
content sniffing.

``Request.RemoteAddr`` (``ip:port``, IPv6 in brackets), ``Request.Cookies()`` and
``Request.Cookie(name)`` (only valid pairs), ``URL.EscapedPath()`` (the path as received when it
still encodes the current path) and ``URL.RequestURI()``, computed from txcaddy's request
object; ``Cookie.String()``'s sanitizers; ``http.TimeFormat`` and ``http.ParseTime`` (its three
date forms) for ``Last-Modified`` and the conditional headers; ``http.StatusText``.

``http.DetectContentType`` as of Go 1.19 (what Caddy 2.6.2 is built with): Go's server names
the type of a response that has no ``Content-Type`` from its first bytes, and Caddy's
``encode`` does the same before deciding whether to compress. The signature table is the
WHATWG MIME-sniffing one, in Go's order; exact signatures match at the very start of the data
(checked against the real Caddy: ``"\\n%PDF-"`` is text), and Go 1.19 has no ``.snd`` rule.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from txcaddy._go.net import join_host_port
from txcaddy._go.url import BAD_ESCAPE, VALID_ENCODED, path_escape

__all__ = [
    "SNIFF_LENGTH", "detect_content_type", "escaped_path", "http_date", "parse_http_time", "remote_addr",
    "request_cookie", "request_cookies", "request_uri", "sanitize_cookie_name", "sanitize_cookie_value", "status_text",
    "valid_cookie_name",
]

# Go's isCookieNameValid: a non-empty token.
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Go's validCookieValueByte: printable ASCII but '"', ';' and '\'.
_COOKIE_VALUE = re.compile(r"[\x20\x21\x23-\x3a\x3c-\x5b\x5d-\x7e]*\Z")
_COOKIE_VALUE_BYTES = frozenset(chr(c) for c in range(0x20, 0x7F)) - set('";\\')


# Go 1.19's http.StatusText table (Python's HTTPStatus words some differently, and 3.12 renamed
# others); a dict, as looking a status up is part of writing every response head.
_STATUS_TEXT = {
    100: "Continue", 101: "Switching Protocols", 102: "Processing", 103: "Early Hints",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information", 204: "No Content",
    205: "Reset Content", 206: "Partial Content", 207: "Multi-Status", 208: "Already Reported", 226: "IM Used",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Found", 303: "See Other", 304: "Not Modified",
    305: "Use Proxy", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 409: "Conflict", 410: "Gone", 411: "Length Required", 412: "Precondition Failed",
    413: "Request Entity Too Large", 414: "Request URI Too Long", 415: "Unsupported Media Type",
    416: "Requested Range Not Satisfiable", 417: "Expectation Failed", 418: "I'm a teapot",
    421: "Misdirected Request", 422: "Unprocessable Entity", 423: "Locked", 424: "Failed Dependency",
    425: "Too Early", 426: "Upgrade Required", 428: "Precondition Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 451: "Unavailable For Legal Reasons",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout", 505: "HTTP Version Not Supported", 506: "Variant Also Negotiates",
    507: "Insufficient Storage", 508: "Loop Detected", 510: "Not Extended", 511: "Network Authentication Required",
}


def status_text(status: int) -> str:
    """``http.StatusText``: the reason phrase, empty when unknown."""
    text = _STATUS_TEXT.get(status)
    if text is None:
        return ""
    return text


def escaped_path(request: Any) -> str:
    """``URL.EscapedPath()``: the path as received when it is a valid encoding
    of the current path, else the current path escaped."""
    raw = request.raw_path
    path = request.path
    if raw and all(ch in VALID_ENCODED for ch in raw):
        if raw == path or ("%" in raw and not BAD_ESCAPE.search(raw) and unquote(raw, errors="surrogateescape") == path):
            return raw
    if path == "*":
        return "*"
    return path_escape(path)


def request_uri(request: Any) -> str:
    """``URL.RequestURI()``: escaped path (``/`` when empty) and query.

    A bare ``?`` received with no query is kept (Go's ``ForceQuery``).
    """
    path = escaped_path(request) or "/"
    if request.query:
        return path + "?" + request.query
    target = request.request_uri
    force_query = target.endswith("?") and target.count("?") == 1  # as Go's url.Parse sets it
    return path + "?" if force_query else path


def valid_cookie_name(name: str) -> bool:
    """Go's ``isCookieNameValid``: a non-empty token."""
    return _COOKIE_NAME.match(name) is not None


def _cookie_value(raw: str) -> str | None:
    """Go's ``parseCookieValue``: quotes dropped; None when a byte is not a cookie byte."""
    if len(raw) > 1 and raw[0] == '"' and raw[-1] == '"':
        raw = raw[1:-1]
    return raw if _COOKIE_VALUE.match(raw) is not None else None


def request_cookies(headers: Any) -> list[tuple[str, str]]:
    """``Request.Cookies()``: the valid (name, value) pairs of every Cookie field."""
    cookies = []
    for line in headers.get_all("Cookie"):
        for part in line.split(";"):
            part = part.strip(" \t\r\n")
            if not part:
                continue
            name, _, value = part.partition("=")
            if _COOKIE_NAME.match(name) is None:
                continue
            parsed = _cookie_value(value)
            if parsed is not None:
                cookies.append((name, parsed))
    return cookies


def sanitize_cookie_name(name: str) -> str:
    """Go's ``sanitizeCookieName`` (``Cookie.String()``): CR and LF become ``-``."""
    return name.replace("\n", "-").replace("\r", "-")


def sanitize_cookie_value(value: str) -> str:
    """Go's ``sanitizeCookieValue``: invalid bytes dropped, quoted when it has a space or comma."""
    value = "".join(c for c in value if c in _COOKIE_VALUE_BYTES)
    return f'"{value}"' if (" " in value or "," in value) else value


def request_cookie(headers: Any, name: str) -> str | None:
    """``Request.Cookie(name).Value``: the first valid value under exactly this (valid) name;
    None for Go's ``ErrNoCookie``."""
    for line in headers.get_all("Cookie"):
        for part in line.split(";"):
            cookie_name, _, value = part.strip(" \t\r\n").partition("=")
            if cookie_name == name:  # _cookie_value inlined: the cookie policy reads it per request
                if len(value) > 1 and value[0] == '"' and value[-1] == '"':
                    value = value[1:-1]
                if _COOKIE_VALUE.match(value) is not None:
                    return value
    return None


def remote_addr(request: Any) -> str:
    """``Request.RemoteAddr`` (``ip:port``, IPv6 in brackets)."""
    remote = request.remote
    if not remote:
        return ""
    host, port = remote[0], remote[1]
    if not host and not port:
        return ""
    return join_host_port(host, str(port))


# -- http.TimeFormat and http.ParseTime ------------------------------------------------------------

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBERS = {m.lower(): i + 1 for i, m in enumerate(_MONTHS)}
_DAY_ALT = "|".join(_DAYS)
_LONG_DAY_ALT = "Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday"
_MONTH_ALT = "|".join(_MONTHS)
_FRACTION = r"(?:[.,](\d+))?"
# http.TimeFormat, time.RFC850 and time.ANSIC, the three forms http.ParseTime accepts
_IMF_DATE = re.compile(rf"(?i:{_DAY_ALT}), (\d\d) ((?i:{_MONTH_ALT})) (\d{{4}}) (\d\d?):(\d\d):(\d\d){_FRACTION} GMT")
_RFC850_DATE = re.compile(
    rf"(?i:{_LONG_DAY_ALT}), (\d\d)-((?i:{_MONTH_ALT}))-(\d\d) (\d\d?):(\d\d):(\d\d){_FRACTION} (?:[A-Z]{{3}}T?|ChST|MeST)"
)
_ANSIC_DATE = re.compile(rf"(?i:{_DAY_ALT}) ((?i:{_MONTH_ALT})) {{1,2}}(\d\d?) (\d\d?):(\d\d):(\d\d){_FRACTION} (\d{{4}})")


def http_date(seconds: int) -> str:
    """Go's ``time.Format(http.TimeFormat)`` of a UTC time."""
    tm = time.gmtime(seconds)
    return (f"{_DAYS[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} {tm.tm_year:04d} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} GMT")


def parse_http_time(text: str) -> int | None:
    """Go's ``http.ParseTime`` as nanoseconds since the epoch; None when it does not parse."""
    found = _IMF_DATE.fullmatch(text)
    if found is not None:
        day, month, year, hour, minute, second, fraction = found.groups()
    else:
        found = _RFC850_DATE.fullmatch(text)
        if found is not None:
            day, month, short_year, hour, minute, second, fraction = found.groups()
            year = str((1900 if int(short_year) >= 69 else 2000) + int(short_year))
        else:
            found = _ANSIC_DATE.fullmatch(text)
            if found is None:
                return None
            month, day, hour, minute, second, fraction, year = found.groups()
    try:
        moment = calendar.timegm(
            (int(year), _MONTH_NUMBERS[month.lower()], int(day), int(hour), int(minute), int(second), 0, 0, 0)
        )
    except (ValueError, OverflowError):
        return None
    if not (1 <= int(day) <= calendar.monthrange(int(year), _MONTH_NUMBERS[month.lower()])[1]):
        return None
    if int(hour) > 23 or int(minute) > 59 or int(second) > 59:
        return None
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return moment * 1_000_000_000 + nanos


# -- http.DetectContentType ---------------------------------------------------------------

SNIFF_LENGTH = 512

_WHITESPACE = frozenset(b"\t\n\x0c\r ")
_TAG_END = frozenset(b" >")

Signature = Callable[[bytes, int], str]


def _html(tag: bytes) -> Signature:
    def match(data: bytes, first_non_ws: int) -> str:
        data = data[first_non_ws:]
        if len(data) < len(tag) + 1:
            return ""
        for i, b in enumerate(tag):
            db = data[i]
            if 0x41 <= b <= 0x5A:
                db &= 0xDF
            if b != db:
                return ""
        return "text/html; charset=utf-8" if data[len(tag)] in _TAG_END else ""

    return match


def _masked(mask: bytes, pattern: bytes, content_type: str, skip_ws: bool = False) -> Signature:
    def match(data: bytes, first_non_ws: int) -> str:
        if skip_ws:
            data = data[first_non_ws:]
        if len(pattern) != len(mask) or len(data) < len(pattern):
            return ""
        for i, pb in enumerate(pattern):
            if data[i] & mask[i] != pb:
                return ""
        return content_type

    return match


def _exact(signature: bytes, content_type: str) -> Signature:
    def match(data: bytes, first_non_ws: int) -> str:
        return content_type if data.startswith(signature) else ""

    return match


def _mp4(data: bytes, first_non_ws: int) -> str:
    if len(data) < 12:
        return ""
    box_size = int.from_bytes(data[:4], "big")
    if len(data) < box_size or box_size % 4 != 0:
        return ""
    if data[4:8] != b"ftyp":
        return ""
    for start in range(8, box_size, 4):
        if start == 12:
            continue  # the major brand's version number
        if data[start : start + 3] == b"mp4":
            return "video/mp4"
    return ""


def _text(data: bytes, first_non_ws: int) -> str:
    for b in data[first_non_ws:]:
        if b <= 0x08 or b == 0x0B or 0x0E <= b <= 0x1A or 0x1C <= b <= 0x1F:
            return ""
    return "text/plain; charset=utf-8"


_RIFF_MASK = b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF"

_SIGNATURES: tuple[Signature, ...] = (
    *(
        _html(tag)
        for tag in (
            b"<!DOCTYPE HTML", b"<HTML", b"<HEAD", b"<SCRIPT", b"<IFRAME", b"<H1", b"<DIV", b"<FONT",
            b"<TABLE", b"<A", b"<STYLE", b"<TITLE", b"<B", b"<BODY", b"<BR", b"<P", b"<!--",
        )
    ),
    _masked(b"\xFF\xFF\xFF\xFF\xFF", b"<?xml", "text/xml; charset=utf-8", skip_ws=True),
    _exact(b"%PDF-", "application/pdf"),
    _exact(b"%!PS-Adobe-", "application/postscript"),
    _masked(b"\xFF\xFF\x00\x00", b"\xFE\xFF\x00\x00", "text/plain; charset=utf-16be"),
    _masked(b"\xFF\xFF\x00\x00", b"\xFF\xFE\x00\x00", "text/plain; charset=utf-16le"),
    _masked(b"\xFF\xFF\xFF\x00", b"\xEF\xBB\xBF\x00", "text/plain; charset=utf-8"),
    _exact(b"\x00\x00\x01\x00", "image/x-icon"),
    _exact(b"\x00\x00\x02\x00", "image/x-icon"),
    _exact(b"BM", "image/bmp"),
    _exact(b"GIF87a", "image/gif"),
    _exact(b"GIF89a", "image/gif"),
    _masked(b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF\xFF\xFF", b"RIFF\x00\x00\x00\x00WEBPVP", "image/webp"),
    _exact(b"\x89PNG\x0D\x0A\x1A\x0A", "image/png"),
    _exact(b"\xFF\xD8\xFF", "image/jpeg"),
    _masked(_RIFF_MASK, b"FORM\x00\x00\x00\x00AIFF", "audio/aiff"),
    _masked(b"\xFF\xFF\xFF", b"ID3", "audio/mpeg"),
    _masked(b"\xFF\xFF\xFF\xFF\xFF", b"OggS\x00", "application/ogg"),
    _masked(b"\xFF" * 8, b"MThd\x00\x00\x00\x06", "audio/midi"),
    _masked(_RIFF_MASK, b"RIFF\x00\x00\x00\x00AVI ", "video/avi"),
    _masked(_RIFF_MASK, b"RIFF\x00\x00\x00\x00WAVE", "audio/wave"),
    _mp4,
    _exact(b"\x1A\x45\xDF\xA3", "video/webm"),
    _masked(b"\x00" * 34 + b"\xFF\xFF", b"\x00" * 34 + b"LP", "application/vnd.ms-fontobject"),
    _exact(b"\x00\x01\x00\x00", "font/ttf"),
    _exact(b"OTTO", "font/otf"),
    _exact(b"ttcf", "font/collection"),
    _exact(b"wOFF", "font/woff"),
    _exact(b"wOF2", "font/woff2"),
    _exact(b"\x1F\x8B\x08", "application/x-gzip"),
    _exact(b"PK\x03\x04", "application/zip"),
    _exact(b"Rar!\x1A\x07\x00", "application/x-rar-compressed"),
    _exact(b"Rar!\x1A\x07\x01\x00", "application/x-rar-compressed"),
    _exact(b"\x00\x61\x73\x6D", "application/wasm"),
    _text,
)


def detect_content_type(data: bytes) -> str:
    """The MIME type Go's ``http.DetectContentType`` gives ``data`` (first 512 bytes)."""
    data = bytes(data[:SNIFF_LENGTH])
    first_non_ws = 0
    while first_non_ws < len(data) and data[first_non_ws] in _WHITESPACE:
        first_non_ws += 1
    for signature in _SIGNATURES:
        content_type = signature(data, first_non_ws)
        if content_type:
            return content_type
    return "application/octet-stream"
