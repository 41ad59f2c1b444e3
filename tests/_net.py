"""Loopback sockets for the tests that use real ones, typed once.

Twisted annotates ``IReactorTCP.listenTCP``'s factory as ``ServerFactory`` and
``connectTCP``'s as ``ClientFactory[P]``, both invariant in the protocol type, so no
concrete factory (``Factory.forProtocol(...)``, a ``Site``, a ``TLSMemoryBIOFactory``)
type-checks although the reactor takes any ``IProtocolFactory``: the ignores for that
live here and nowhere else. A TCP or UDP port's ``getHost()`` is an ``IPv4Address``
(``IAddress`` in the interface); ``port_number`` reads it.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IConnector, IListeningPort, IProtocolFactory, IReactorTCP

from txcaddy._reactor import default_reactor

__all__ = ["connect", "listen_local", "port_number"]


def listen_local(factory: IProtocolFactory, port: int = 0, reactor: IReactorTCP | None = None) -> IListeningPort:
    """``reactor.listenTCP(port, factory, interface="127.0.0.1")``, the global reactor by default."""
    tcp = reactor if reactor is not None else default_reactor()
    # Twisted's annotation admits only ServerFactory[_ProtoWithFactory]; any factory works.
    return tcp.listenTCP(port, factory, interface="127.0.0.1")  # type: ignore[arg-type]


def connect(host: str, port: int, factory: IProtocolFactory, reactor: IReactorTCP | None = None) -> IConnector:
    """``reactor.connectTCP(host, port, factory)``, the global reactor by default."""
    tcp = reactor if reactor is not None else default_reactor()
    # Twisted's annotation admits only ClientFactory[P]; any factory works.
    return tcp.connectTCP(host, port, factory)  # type: ignore[arg-type]


def port_number(port: IListeningPort) -> int:
    """The port number a TCP or UDP ``port`` is bound to."""
    return cast(IPv4Address, port.getHost()).port
