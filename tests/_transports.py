"""Test doubles for transports and reactors shared by the test packages."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IAddress, IListeningPort, ITCPTransport
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import implementer

from txcaddy._reactor import IServingReactor


@implementer(ITCPTransport)
class TCPStringTransport(StringTransport):
    """A ``StringTransport`` that is a TCP connection and records its socket options."""

    no_delay = False
    keep_alive = False
    write_lost = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled

    def getTcpNoDelay(self) -> bool:
        return self.no_delay

    def setTcpKeepAlive(self, enabled: bool) -> None:
        self.keep_alive = enabled

    def getTcpKeepAlive(self) -> bool:
        return self.keep_alive

    def loseWriteConnection(self) -> None:
        self.write_lost = True


@implementer(IListeningPort)
class _MemoryUDPPort:
    """What ``MemoryServingReactor.listenUDP`` returns: a port that opens nothing."""

    def __init__(self, address: IPv4Address) -> None:
        self.address = address
        self.listening = True

    def startListening(self) -> None:
        self.listening = True

    def stopListening(self) -> None:
        self.listening = False

    def getHost(self) -> IAddress:
        return self.address


@implementer(IServingReactor)
class MemoryServingReactor(MemoryReactorClock):
    """A ``MemoryReactorClock`` that is all a ``CaddyService`` runs on: UDP ports are recorded
    in ``udpPorts`` (port, protocol, interface, maxPacketSize) and open nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[tuple[int, DatagramProtocol, str, int]] = []

    def listenUDP(self, port: int, protocol: DatagramProtocol, interface: str = "",
                  maxPacketSize: int = 8192) -> IListeningPort:
        self.udpPorts.append((port, protocol, interface, maxPacketSize))
        return _MemoryUDPPort(IPv4Address("UDP", interface or "0.0.0.0", port))
