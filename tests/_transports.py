"""Test doubles for transports shared by the test packages."""

from __future__ import annotations

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.testing import StringTransport
from zope.interface import implementer


@implementer(ITCPTransport)
class TCPStringTransport(StringTransport):
    """A ``StringTransport`` that is a TCP connection and records ``setTcpNoDelay``."""

    no_delay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled
