"""The server's connection factory: HTTP/1.1, or HTTP/2 chosen at a connection's first bytes.

TLS connections that negotiated ``h2`` with ALPN, and (when allowed) cleartext connections
opening with the HTTP/2 preface (h2c by prior knowledge, RFC 9113 §3.3), get an
``HTTP2Protocol``; everything else an ``HTTP11Protocol``, which may still switch with
``Upgrade: h2c`` (Go's ``x/net/http2/h2c``, as Caddy serves h2c).

``_h2`` (and with it ``h2``, ``hpack`` and ``hyperframe``, 1.3 MB) is imported by the first
factory that serves HTTP/2 (h2 over TLS, or h2c): a server without it does not carry it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Factory, Protocol

from txcaddy.http._h1 import HTTP11Protocol
from txcaddy.http.request import Request
from txcaddy.interfaces import IHTTPServer

if TYPE_CHECKING:
    from txcaddy.http._h2 import HTTP2Protocol

#: The connection preface of HTTP/2 by prior knowledge (RFC 9113 §3.4); defined here, not in
#: ``_h2frames`` (which re-exports it), so that telling connections apart does not load ``h2``.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Negotiating(Protocol):
    """The protocol of a connection that may turn out to be HTTP/2.

    It serves HTTP/1.1 from the start (the idle timer and the server's
    connection set see an ordinary connection) and decides at the first bytes:
    TLS that negotiated ``h2`` with ALPN, or a cleartext connection opening
    with the h2c preface (when allowed), goes to an ``HTTP2Protocol``; anything
    else stays with the ``HTTP11Protocol``. Afterwards the chosen protocol's
    bound methods replace this object's, so the transport calls it directly.
    """

    def __init__(self, factory: HTTPFactory, addr: Any) -> None:
        self.factory = factory
        self._addr = addr
        self._h1 = HTTP11Protocol(factory.server, factory.reactor, factory.tls, peer=addr)
        self._h1.factory = factory
        if factory.h2c:
            self._h1.upgrade_h2c = factory.upgrade_h2c
        self._buffer = b""

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.connected = 1
        self._h1.makeConnection(transport)
        self.connectionLost = self._h1.connectionLost  # type: ignore[method-assign]

    def dataReceived(self, data: bytes) -> None:
        transport = self.transport
        h2_wanted = False
        if ISSLTransport.providedBy(transport):
            h2_wanted = self.factory.h2 and getattr(transport, "negotiatedProtocol", None) == b"h2"
        elif self.factory.h2c:
            data = self._buffer + data
            if len(data) < len(PREFACE) and PREFACE.startswith(data):
                self._buffer = data  # maybe the preface, not all there yet
                return
            self._buffer = b""
            h2_wanted = data.startswith(PREFACE)
        h1 = self._h1
        if not h2_wanted:
            self.dataReceived = h1.dataReceived  # type: ignore[method-assign]
            h1.dataReceived(data)
            return
        # loaded by HTTPFactory(): see the module docstring
        from txcaddy.http._h2 import HTTP2Protocol

        factory = self.factory
        h2_protocol = HTTP2Protocol(factory.server, factory.reactor, factory.tls, peer=self._addr)
        h2_protocol.factory = factory
        self.dataReceived = h2_protocol.dataReceived  # type: ignore[method-assign]
        self.connectionLost = h2_protocol.connectionLost  # type: ignore[method-assign]
        h2_protocol.makeConnection(transport)
        h1.hand_over()
        h2_protocol.dataReceived(data)


class HTTPFactory(Factory):
    """Builds the protocol for each connection of one server: HTTP/1.1, or HTTP/2 when chosen.

    ``h2``: serve HTTP/2 on TLS connections that negotiated it with ALPN;
    ``h2c``: serve HTTP/2 on cleartext connections that start with its preface.
    With neither, every connection is a plain ``HTTP11Protocol``.
    """

    def __init__(self, server: IHTTPServer, reactor: Any = None, tls: Any = None, *, h2: bool = False, h2c: bool = False) -> None:
        self.server = server
        self.reactor = reactor
        self.tls = tls
        self.h2 = h2
        self.h2c = h2c
        if h2 or h2c:
            # Imported here, not by a connection: see the module docstring.
            import txcaddy.http._h2  # noqa: F401

    def upgrade_h2c(self, request: Request, settings: bytes) -> HTTP2Protocol:
        """The HTTP/2 protocol a cleartext ``Upgrade: h2c`` request switches to."""
        # loaded by HTTPFactory(): see the module docstring
        from txcaddy.http._h2 import HTTP2Protocol

        protocol = HTTP2Protocol(self.server, self.reactor, self.tls, upgrade=(request, settings))
        protocol.factory = self
        return protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        if not (self.h2 or self.h2c):
            protocol: Protocol = HTTP11Protocol(self.server, self.reactor, self.tls, peer=addr)
            protocol.factory = self
            return protocol
        return _Negotiating(self, addr)
