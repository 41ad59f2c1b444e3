"""Public face of the upstream transport.

Implementation: ``_transport`` (the ``http`` transport module and its options), ``_pool`` (the
protocol-blind connection pool), ``_h1connection`` (the HTTP/1.1 connection and pool),
``_h1response`` (its response parser), ``_fastcgi`` (the ``fastcgi`` transport), ``_h2connection`` (HTTP/2 connections, h2c), ``_alpn``
(TLS connections that become HTTP/2 or HTTP/1.1 by ALPN), ``_exchange`` (one request/response), ``_dial``
(addresses, connecting, TLS handshake deadlines), ``_tls`` and ``_resolver``; the failures are
in ``errors``.  The interfaces are ``txcaddy.interfaces.IUpstreamTransport``, ``IExchange``
and ``IBodyConsumer``.

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

from txcaddy.reverseproxy._dial import UpstreamAddress
from txcaddy.reverseproxy._exchange import (
    CHUNKED,
    Exchange,
    RawHeaders,
    ResponseBodyConsumer,
    ResponseHead,
)
from txcaddy.reverseproxy._fastcgi import FastCGITransport
from txcaddy.reverseproxy._h1connection import ConnectionPool
from txcaddy.reverseproxy._pool import SURPLUS_LINGER
from txcaddy.reverseproxy._transport import HTTPTransport
from txcaddy.reverseproxy.errors import (
    DialError,
    ResponseHeaderTimeout,
    TLSHandshakeError,
    TLSHandshakeTimeout,
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamWriteTimeout,
)
from txcaddy.tls.context import UpstreamTLS

__all__ = [
    "CHUNKED",
    "ConnectionPool",
    "DialError",
    "Exchange",
    "FastCGITransport",
    "HTTPTransport",
    "RawHeaders",
    "ResponseBodyConsumer",
    "ResponseHead",
    "ResponseHeaderTimeout",
    "SURPLUS_LINGER",
    "TLSHandshakeError",
    "TLSHandshakeTimeout",
    "UpstreamAddress",
    "UpstreamConnectionLost",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamReadTimeout",
    "UpstreamTLS",
    "UpstreamWriteTimeout",
]
