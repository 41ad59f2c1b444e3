"""``SO_REUSEPORT`` listening sockets for worker processes (an opt-in, to be measured).

By default every worker inherits the supervisor's one listening socket per listener (one
accept queue; see docs/scaling.md, "Why shared sockets, not SO_REUSEPORT").  With
``TXCADDY_WORKER_SOCKETS=reuseport`` in the supervisor's environment, a TCP listener is
instead N sockets bound to the same address with ``SO_REUSEPORT``, one per worker slot: the
kernel spreads new connections over their N queues (by a hash of the client's address).

The supervisor binds and holds all N and never accepts on them: a worker that dies leaves
its socket, and the connections queued on it, open in the supervisor until its replacement
(same slot, same socket) accepts them.  Socket 1 is the one the supervisor's own Twisted
port adopts, so ``boundAddresses`` and reloads see one listener as before.

Caddy has no such setting (Go serves every core from one process); nginx's ``listen ...
reuseport`` is the model.  Linux semantics: every socket of the group must set the option
before ``bind`` and belong to the same user.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from twisted.internet.defer import Deferred, execute
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from zope.interface import implementer

from txcaddy.errors import ConfigError

__all__ = ["MODES", "SOCKETS_ENV", "ReusePortEndpoint", "reuseport_endpoint", "worker_sockets_mode"]

SOCKETS_ENV = "TXCADDY_WORKER_SOCKETS"
MODES = ("shared", "reuseport")


def worker_sockets_mode(environ: Any = None) -> str:
    """The supervisor's socket mode: ``shared`` (the default) or ``reuseport``."""
    environ = os.environ if environ is None else environ
    mode = (environ.get(SOCKETS_ENV) or "shared").strip().lower()
    if mode not in MODES:
        raise ConfigError(f"{SOCKETS_ENV}: must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """Binds ``count`` ``SO_REUSEPORT`` sockets to one TCP address; the reactor adopts the first.

    The sockets are kept (``sockets``) until ``close``, or until the next ``listen`` replaces
    them; ``fd_for(slot)`` is worker slot's socket.  With port 0 the first socket's port is
    the one the others bind.
    """

    def __init__(self, reactor: Any, family: socket.AddressFamily, interface: str, port: int,
                 backlog: int, count: int) -> None:
        self.reactor = reactor
        self.family = family
        self.interface = interface
        self.port = port
        self.backlog = backlog
        self.count = count
        self.sockets: list[socket.socket] = []

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:  # noqa: N803 - Twisted's name
        return execute(self._listen, protocolFactory)

    def _listen(self, factory: IProtocolFactory) -> IListeningPort:
        self.close()
        sockets = self.bind()
        try:
            port: IListeningPort = self.reactor.adoptStreamPort(sockets[0].fileno(), self.family, factory)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self.sockets = sockets
        return port

    def bind(self) -> list[socket.socket]:
        """``count`` listening sockets on the address (non-blocking, close-on-exec)."""
        sockets: list[socket.socket] = []
        port = self.port
        try:
            for _ in range(self.count):
                sock = socket.socket(self.family, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.set_inheritable(False)  # given to a worker only through spawnProcess's fd map
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((self.interface, port))
                port = sock.getsockname()[1]  # port 0: the others join the port the first got
                sock.listen(self.backlog)
                sock.setblocking(False)
        except OSError as e:
            for sock in sockets:
                sock.close()
            raise CannotListenError(self.interface, port, e) from e
        return sockets

    def fd_for(self, slot: int) -> int | None:
        """Worker ``slot``'s (1..count) socket, or None when not listening."""
        if not self.sockets:
            return None
        return self.sockets[(slot - 1) % len(self.sockets)].fileno()

    def close(self) -> None:
        """Close the held sockets (the adopted port has its own duplicate of the first)."""
        sockets, self.sockets = self.sockets, []
        for sock in sockets:
            sock.close()


def reuseport_endpoint(reactor: Any, endpoint: IStreamServerEndpoint, count: int) -> ReusePortEndpoint | None:
    """The ``SO_REUSEPORT`` group for a TCP endpoint Twisted parsed; None for anything else
    (unix sockets keep the shared socket)."""
    if isinstance(endpoint, TCP6ServerEndpoint):
        family = socket.AF_INET6
    elif isinstance(endpoint, TCP4ServerEndpoint):
        family = socket.AF_INET
    else:
        return None
    fields: Any = endpoint
    interface = fields._interface or ("::" if family == socket.AF_INET6 else "0.0.0.0")
    return ReusePortEndpoint(reactor, family, interface, int(fields._port), int(fields._backlog), count)
