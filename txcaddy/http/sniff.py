"""Go's ``http.DetectContentType`` as of Go 1.19 (what Caddy 2.6.2 is built with).

Go's server names the type of a response that has no ``Content-Type`` from
its first bytes, and Caddy's ``encode`` does the same before deciding whether
to compress. The signature table is the WHATWG MIME-sniffing one, in Go's
order; exact signatures match at the very start of the data (checked against
the real Caddy: ``"\\n%PDF-"`` is text), and Go 1.19 has no ``.snd`` rule.
"""

from __future__ import annotations

from collections.abc import Callable

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
