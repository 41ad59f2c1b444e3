"""The ``SO_REUSEPORT`` socket groups of ``TXCADDY_WORKER_SOCKETS=reuseport`` (real sockets
on 127.0.0.1): the mode's parsing, one bound socket per slot on one port, and closing."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase

from txcaddy._reuseport import ReusePortEndpoint, reuseport_endpoint, worker_sockets_mode
from txcaddy.errors import ConfigError


class FakeAdoptingReactor:
    """Records ``adoptStreamPort`` calls; returns a port-like object."""

    def __init__(self) -> None:
        self.adopted: list[tuple[int, Any]] = []

    def adoptStreamPort(self, fd: int, family: Any, factory: Any) -> Any:  # noqa: N802 - Twisted's name
        self.adopted.append((fd, family))
        return ("port", fd)


class ModeTests(SynchronousTestCase):
    def test_default_and_values(self) -> None:
        """Unset or empty is ``shared``; ``reuseport`` (any case) is itself; other words fail."""
        self.assertEqual(worker_sockets_mode({}), "shared")
        self.assertEqual(worker_sockets_mode({"TXCADDY_WORKER_SOCKETS": ""}), "shared")
        self.assertEqual(worker_sockets_mode({"TXCADDY_WORKER_SOCKETS": "ReusePort"}), "reuseport")
        self.assertRaises(ConfigError, worker_sockets_mode, {"TXCADDY_WORKER_SOCKETS": "each"})


class EndpointTests(SynchronousTestCase):
    def test_port_zero_group_shares_the_first_port(self) -> None:
        """``count`` listening sockets with SO_REUSEPORT and SO_REUSEADDR, non-blocking and
        close-on-exec, all on the port the first got; the reactor adopts the first; slot N is
        socket N."""
        reactor = FakeAdoptingReactor()
        endpoint = ReusePortEndpoint(reactor, socket.AF_INET, "127.0.0.1", 0, 50, 3)
        self.addCleanup(endpoint.close)
        port = self.successResultOf(endpoint.listen(Factory.forProtocol(Protocol)))
        sockets = endpoint.sockets
        self.assertEqual(len(sockets), 3)
        ports = {s.getsockname()[1] for s in sockets}
        self.assertEqual(len(ports), 1)
        self.assertNotEqual(ports, {0})
        for sock in sockets:
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT), 1)
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR), 1)
            self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN), 1)
            self.assertFalse(sock.getblocking())
            self.assertFalse(sock.get_inheritable())
        self.assertEqual(port, ("port", sockets[0].fileno()))
        self.assertEqual(reactor.adopted, [(sockets[0].fileno(), socket.AF_INET)])
        self.assertEqual([endpoint.fd_for(n) for n in (1, 2, 3)], [s.fileno() for s in sockets])
        # The group accepts connections: a client reaches one of the queues.
        with socket.create_connection(("127.0.0.1", ports.pop()), timeout=5):
            pass

    def test_close_releases_the_port(self) -> None:
        """``close`` closes every socket of the group: the port can be bound without
        SO_REUSEPORT again, and ``fd_for`` is None."""
        endpoint = ReusePortEndpoint(FakeAdoptingReactor(), socket.AF_INET, "127.0.0.1", 0, 50, 2)
        self.successResultOf(endpoint.listen(Factory.forProtocol(Protocol)))
        number = endpoint.sockets[0].getsockname()[1]
        endpoint.close()
        self.assertIsNone(endpoint.fd_for(1))
        with socket.socket() as plain:
            plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            plain.bind(("127.0.0.1", number))
            self.assertEqual(plain.getsockname()[1], number)

    def test_address_held_without_reuseport_fails_loudly(self) -> None:
        """A port another socket holds without SO_REUSEPORT fails with CannotListenError and
        leaves no socket of the group open."""
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen(1)
            endpoint = ReusePortEndpoint(FakeAdoptingReactor(), socket.AF_INET, "127.0.0.1",
                                         other.getsockname()[1], 50, 2)
            self.failureResultOf(endpoint.listen(Factory.forProtocol(Protocol)), CannotListenError)
            self.assertEqual(endpoint.sockets, [])

    def test_only_tcp_endpoints_form_groups(self) -> None:
        """A TCP endpoint becomes a group with its interface, port and backlog; a unix one
        does not (it keeps the shared socket)."""
        reactor: Any = FakeAdoptingReactor()
        group = reuseport_endpoint(reactor, TCP4ServerEndpoint(reactor, 8080, 100, "127.0.0.1"), 4)
        assert group is not None
        self.assertEqual((group.interface, group.port, group.backlog, group.count), ("127.0.0.1", 8080, 100, 4))
        wildcard = reuseport_endpoint(reactor, TCP4ServerEndpoint(reactor, 80), 2)
        assert wildcard is not None
        self.assertEqual(wildcard.interface, "0.0.0.0")
        six = reuseport_endpoint(reactor, TCP6ServerEndpoint(reactor, 443), 2)
        assert six is not None
        self.assertEqual((six.family, six.interface, six.port), (socket.AF_INET6, "::", 443))
        self.assertIsNone(reuseport_endpoint(reactor, UNIXServerEndpoint(reactor, "/tmp/x.sock"), 2))
