"""The upstream failures of reverse_proxy, each with the status Caddy answers it with.

Public: a plugin transport (or a test's fake one) fails an exchange with these so that the
proxy loop answers and retries as Caddy does.  Only ``DialError`` is a dial error for Caddy's
retry rules (every method is retried); the others are retried only for GET or a request that
``lb_retry_match`` matches, and only when nothing of a request body reached the upstream.
"""

from __future__ import annotations

__all__ = [
    "DialError",
    "ResponseHeaderTimeout",
    "TLSHandshakeError",
    "TLSHandshakeTimeout",
    "UpstreamConnectionLost",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamReadTimeout",
    "UpstreamWriteTimeout",
]


class UpstreamError(Exception):
    """Base class of upstream failures; the handler maps them to a status."""

    status = 502


class DialError(UpstreamError):
    """Connecting failed (refused, unresolvable, dial timeout): nothing reached the upstream.

    The only error Caddy retries for every method.
    """

    status = 502


class TLSHandshakeError(UpstreamError):
    """The TLS handshake with the upstream failed (e.g. an untrusted certificate).

    Nothing of the request was sent, but, as in Caddy (Go does the handshake after its dial
    function returned), this is *not* a dial error: only GET or ``lb_retry_match`` retries it.
    """

    status = 502


class TLSHandshakeTimeout(TLSHandshakeError):
    """``tls.handshake_timeout`` (or ``read_timeout`` during the handshake) expired."""

    status = 504


class ResponseHeaderTimeout(UpstreamError):
    """The upstream did not send a response head in time."""

    status = 504


class UpstreamReadTimeout(UpstreamError):
    """``read_timeout``: the upstream sent nothing for that long while we were reading.

    502, not 504: Go reports it as a broken connection, which Caddy does not see as a timeout.
    """

    status = 502


class UpstreamWriteTimeout(UpstreamError):
    """``write_timeout``: the upstream took nothing of the request body for that long."""

    status = 502


class UpstreamConnectionLost(UpstreamError):
    """The connection ended before the response was complete."""

    status = 502


class UpstreamProtocolError(UpstreamError):
    """The upstream sent something that is not valid HTTP/1.x."""

    status = 502

