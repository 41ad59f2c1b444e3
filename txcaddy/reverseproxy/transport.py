"""Public face of the upstream transport (implementation in ``_h1client``, ``_transport``,
``_tls`` and ``_resolver``).

Usage::

    transport = HTTPTransport.from_config({"protocol": "http", ...}, reactor)  # or {} for defaults
    exchange = transport.request(UpstreamAddress.parse("127.0.0.1:8080"), b"GET", b"/",
                                 [(b"Host", b"example.com")], body_length=None,
                                 on_informational=forward_1xx, request=client_request)
    exchange.head.addCallback(lambda head: exchange.deliver_body(consumer))

A bare ``ConnectionPool(reactor, ...)`` is the same client without Caddy's option loading.
Failures are ``UpstreamError`` subclasses whose ``status`` is the code Caddy answers with;
only ``DialError`` is a dial error for Caddy's retry rules.
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
    TLSHandshakeError,
    TLSHandshakeTimeout,
    UnsupportedUpstreamProtocol,
    UpstreamAddress,
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamWriteTimeout,
)
from txcaddy.reverseproxy._tls import UpstreamTLS
from txcaddy.reverseproxy._transport import H2C_UNSUPPORTED, HTTPTransport

__all__ = [
    "CHUNKED",
    "ConnectionPool",
    "DialError",
    "Exchange",
    "H2C_UNSUPPORTED",
    "HTTPTransport",
    "RawHeaders",
    "ResponseBodyConsumer",
    "ResponseHead",
    "ResponseHeaderTimeout",
    "TLSHandshakeError",
    "TLSHandshakeTimeout",
    "UnsupportedUpstreamProtocol",
    "UpstreamAddress",
    "UpstreamConnectionLost",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamReadTimeout",
    "UpstreamTLS",
    "UpstreamWriteTimeout",
]
