"""The request-head checks ``HTTP11Protocol`` makes while llhttp parses a request.

Split out of ``_h1`` (the HTTP/1.1 protocol, which re-exports ``_unmapped`` for ``_h2``):
the parser's construction and leniency, the bad-request error its callbacks raise, the
status a parser error maps to, absolute-form targets (RFC 9112 §3.2.2), comma-separated
tokens, the ``Upgrade: h2c`` settings check of Go's ``x/net/http2/h2c`` (RFC 7540 §3.2.1)
and IPv4-mapped client addresses as Go's ``net/http`` (Go 1.19, which Caddy 2.6.2 uses)
reports them.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

import httptools

from txcaddy.http.headers import Headers

if TYPE_CHECKING:
    from txcaddy.http._h1 import HTTP11Protocol


class _BadRequest(Exception):
    """Raised from parser callbacks: answer ``status`` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _new_parser(protocol: HTTP11Protocol) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(protocol)
    # Content-Length beside chunked Transfer-Encoding is served by the chunked
    # framing and the connection closed afterwards (DESIGN.md §1, RFC 9112 §6.1).
    parser.set_dangerous_leniencies(lenient_chunked_length=True)
    return parser


def _has_token(values: list[str] | None, token: str) -> bool:
    return values is not None and any(
        part.strip(" \t").lower() == token for value in values for part in value.split(","))


def _h2c_settings(headers: Headers) -> bytes | None:
    """The SETTINGS payload of an ``Upgrade: h2c`` request, or None if it is not a valid one.

    As Go's ``h2c`` handler: ``Upgrade`` names h2c, ``Connection`` names HTTP2-Settings,
    and there is exactly one ``HTTP2-Settings`` field, base64url (RFC 7540 §3.2.1).
    """
    if not _has_token(headers.values_of("Upgrade"), "h2c") or not _has_token(headers.values_of("Connection"), "http2-settings"):
        return None
    values = headers.values_of("Http2-Settings")
    if values is None or len(values) != 1:
        return None
    value = values[0].strip(" \t").rstrip("=")
    try:
        payload = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(payload) % 6 or base64.urlsafe_b64encode(payload).rstrip(b"=") != value.encode("ascii", "replace"):
        return None  # not base64url, or not whole 6-byte settings
    return payload


def _unmapped(host: str) -> str:
    """IPv4 clients of a dual-stack socket as plain IPv4, as Go reports them."""
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def _status_for_parser_error(message: str) -> int:
    if "Transfer-Encoding" in message and "chunked" not in message.lower():
        return 501 if "unknown" in message.lower() else 400
    return 400


def _origin_form(target: str, headers: Headers) -> str:
    """An absolute-form target (``http://host/path``) as origin-form; the Host follows it."""
    scheme, sep, rest = target.partition("://")
    if not sep:
        raise _BadRequest(400, f"invalid request target {target!r}")
    authority, slash, path = rest.partition("/")
    if authority:
        headers.set("Host", authority)
    return "/" + path if slash else "/"
