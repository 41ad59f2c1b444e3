"""Public face of the HTTP/1.1 upstream transport (implementation in ``_h1client``).

Usage::

    pool = ConnectionPool(reactor, dial_timeout=3, response_header_timeout=None)
    exchange = pool.request(UpstreamAddress.parse("127.0.0.1:8080"), b"GET", b"/",
                            [(b"Host", b"example.com")], body_length=None,
                            on_informational=forward_1xx)
    exchange.head.addCallback(lambda head: exchange.deliver_body(consumer))

Failures are ``UpstreamError`` subclasses whose ``status`` is the code Caddy answers with.
"""

from txcaddy.reverseproxy._h1client import (
    CHUNKED,
    ConnectionPool,
    DialError,
    Exchange,
    RawHeaders,
    ResponseBodyConsumer,
    ResponseHead,
    ResponseHeaderTimeout,
    UpstreamAddress,
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamProtocolError,
)

__all__ = [
    "CHUNKED",
    "ConnectionPool",
    "DialError",
    "Exchange",
    "RawHeaders",
    "ResponseBodyConsumer",
    "ResponseHead",
    "ResponseHeaderTimeout",
    "UpstreamAddress",
    "UpstreamConnectionLost",
    "UpstreamError",
    "UpstreamProtocolError",
]
