"""systemd integration: socket activation and ``sd_notify`` readiness.

Caddy 2.6.2 has neither (it only sends ``READY=1`` through ``caddy.notify`` on Linux);
txcaddy adds both because a Python server is often run as a unit without root:

- **Socket activation** (``sd_listen_fds(3)``): when systemd starts the process with
  ``LISTEN_PID`` = our pid, ``LISTEN_FDS`` = N (and ``LISTEN_FDNAMES``, which Twisted's
  reading of them requires), fds 3..3+N-1 are listening sockets it
  bound for us (a ``.socket`` unit's ``ListenStream=80``).  A config listener whose
  address is the address an inherited socket is bound to (``getsockname``) adopts that
  socket (Twisted's ``adoptStreamPort``) instead of binding, so the service needs no
  ``CAP_NET_BIND_SERVICE``.  A wildcard listener (``:80``) matches a socket bound to
  ``0.0.0.0`` or ``::`` on that port.  HTTP/3 adopts a UDP socket (``ListenDatagram=443``)
  the same way.  Listeners no socket matches bind as usual.
- **Readiness** (``sd_notify(3)``): ``READY=1`` once the listeners are up, ``STOPPING=1``
  when the service stops, as datagrams to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the
  abstract namespace).  Nothing is sent when the variable is unset.

The protocol is a few lines of sockets, so no libsystemd binding is needed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twisted.application.service import IServiceCollection, Service
from twisted.internet.defer import Deferred, execute
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

__all__ = [
    "AdoptedEndpoint",
    "InheritedSocket",
    "NotifyService",
    "SD_LISTEN_FDS_START",
    "attach_notifier",
    "inherited_sockets",
    "listen_fds",
    "process_sockets",
    "twisted_listen_fds",
    "match_datagram",
    "match_endpoint",
    "notify",
]

SD_LISTEN_FDS_START = 3
"""The first inherited fd (``SD_LISTEN_FDS_START`` in ``sd-daemon.h``)."""

log = Logger()


# -- sd_notify ------------------------------------------------------------------------------------


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to the service manager; False when there is none.

    A failure to send is logged, never raised: a server must not stop for its supervisor.
    """
    environ = os.environ if environ is None else environ
    address = environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # the abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as e:
        log.warn("sd_notify {state} to {address}: {error}", state=state, address=address, error=e)
        return False
    return True


class NotifyService(Service):
    """Tells systemd ``READY=1`` when started and ``STOPPING=1`` when stopped.

    Added as the last child of the service tree, so it starts after the listeners are
    bound (they bind synchronously) and stops first, before the listeners close.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = environ

    def startService(self) -> None:
        super().startService()
        # With workers (``workers N``) the parent is serving once every worker is ready.
        serving = getattr(self.parent, "whenServing", None)
        if serving is None:
            notify("READY=1", self.environ)
        else:
            serving().addCallback(lambda _: notify("READY=1", self.environ) if self.running else None)

    def stopService(self) -> Deferred[None] | None:
        notify("STOPPING=1", self.environ)
        return super().stopService()  # type: ignore[no-any-return]


def attach_notifier(parent: IServiceCollection, environ: Mapping[str, str] | None = None) -> bool:
    """Add a :class:`NotifyService` as ``parent``'s last child when ``$NOTIFY_SOCKET`` is set."""
    environ = os.environ if environ is None else environ
    if not environ.get("NOTIFY_SOCKET"):
        return False
    NotifyService(environ).setServiceParent(parent)
    # A reload (admin API, ``txcaddy reload``, SIGUSR1): RELOADING=1, then READY=1 once the
    # attempt is over (the old config still serves when it failed).
    before, after = getattr(parent, "before_reload", None), getattr(parent, "on_reload", None)
    if before is not None and after is not None:
        before.append(lambda: notify("RELOADING=1", environ))
        after.append(lambda success: notify("READY=1", environ))
    return True


# -- socket activation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InheritedSocket:
    """One listening socket passed by systemd: its fd, family and bound address."""

    fd: int
    family: int
    address: Any  # (host, port[, ...]) for IP, the path for a unix socket
    type: int = socket.SOCK_STREAM  # SOCK_DGRAM for a ``ListenDatagram=`` socket (HTTP/3)


def listen_fds(environ: Mapping[str, str] | None = None, pid: int | None = None) -> list[int]:
    """The fds systemd passed to this process (``sd_listen_fds``); none when not for us."""
    environ = os.environ if environ is None else environ
    pid = os.getpid() if pid is None else pid
    try:
        if int(environ.get("LISTEN_PID", "")) != pid:
            return []
        count = int(environ.get("LISTEN_FDS", ""))
    except ValueError:
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + max(count, 0)))


def describe(fd: int) -> InheritedSocket | None:
    """The stream or datagram socket at ``fd``, or None for anything else."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        if sock.type not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            return None
        return InheritedSocket(fd, sock.family, sock.getsockname(), sock.type)
    except OSError:
        return None
    finally:
        sock.detach()  # the fd stays open: it is systemd's, and adopted later


def twisted_listen_fds() -> list[int]:
    """The fds Twisted found when ``twisted.internet.endpoints`` was imported.

    Twisted reads ``LISTEN_*`` once, at that import, and *removes* them from
    ``os.environ`` (``ListenFDs.fromEnvironment`` for its ``systemd:`` endpoints), so
    by the time txcaddy looks, only Twisted knows.  It also wants ``LISTEN_FDNAMES``
    (systemd >= 227 always sets it) and otherwise reports no fds.
    """
    from twisted.internet.endpoints import _SystemdParser

    return list(_SystemdParser._sddaemon.inheritedDescriptors())


def inherited_sockets(fds: list[int]) -> list[InheritedSocket]:
    """The stream and datagram sockets among ``fds``, made close-on-exec and non-blocking.

    Non-blocking is what ``adoptStreamPort`` requires: a blocking listener stalls the
    reactor in ``accept`` once the queue is empty (systemd may pass either mode).
    """
    out = []
    for fd in fds:
        found = describe(fd)
        if found is None:
            log.warn("inherited fd {fd} is not a stream or datagram socket: ignored", fd=fd)
            continue
        os.set_inheritable(fd, False)
        os.set_blocking(fd, False)
        out.append(found)
    return out


_process_sockets: list[InheritedSocket] | None = None


def process_sockets() -> list[InheritedSocket]:
    """This process's inherited sockets, read from the environment once."""
    global _process_sockets
    if _process_sockets is None:
        _process_sockets = inherited_sockets(twisted_listen_fds() or listen_fds())
    return _process_sockets


def _split_description(description: str) -> list[str]:
    """A Twisted endpoint description split at its unescaped colons, escapes removed."""
    parts, current, escaped = [], "", False
    for ch in description:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _same_host(wanted: str, bound: str) -> bool:
    if not wanted:
        return bound in ("0.0.0.0", "::")
    try:
        return ipaddress.ip_address(wanted) == ipaddress.ip_address(bound)
    except ValueError:
        return False  # a host name: never matched (Caddy would resolve it when binding)


def match_endpoint(description: str, sockets: list[InheritedSocket]) -> InheritedSocket | None:
    """The inherited socket bound where the endpoint ``description`` would listen, if any.

    Understands the descriptions ``txcaddy.http.app.endpoint_descriptions`` makes:
    ``tcp:PORT[:interface=HOST]``, ``tcp6:PORT[:interface=HOST]``, ``unix:PATH``.
    """
    parts = _split_description(description)
    kind = parts[0]
    sockets = [found for found in sockets if found.type == socket.SOCK_STREAM]
    if kind == "unix" and len(parts) >= 2:
        for found in sockets:
            if found.family == socket.AF_UNIX and found.address == parts[1]:
                return found
        return None
    if kind not in ("tcp", "tcp6") or len(parts) < 2:
        return None
    try:
        port = int(parts[1])
    except ValueError:
        return None
    host = ""
    for option in parts[2:]:
        if option.startswith("interface="):
            host = option[len("interface="):]
    return _match_ip(host, port, sockets)


def _match_ip(host: str, port: int, sockets: list[InheritedSocket]) -> InheritedSocket | None:
    if port == 0:
        return None
    for found in sockets:
        if found.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        if found.address[1] == port and _same_host(host, found.address[0]):
            return found
    return None


def match_datagram(port: int, interface: str, sockets: list[InheritedSocket]) -> InheritedSocket | None:
    """The inherited UDP socket (``ListenDatagram=``) bound where HTTP/3 would listen, if any."""
    return _match_ip(interface, port, [found for found in sockets if found.type == socket.SOCK_DGRAM])


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """Listens by adopting an inherited socket (``IReactorSocket.adoptStreamPort``).

    Unlike Twisted's ``AdoptedStreamServerEndpoint`` it may listen again after its port
    stopped: the reactor works on a duplicate of the fd, and the original stays open,
    so a service that stops and starts (a config reload) adopts the same socket again.
    """

    def __init__(self, reactor: Any, inherited: InheritedSocket) -> None:
        self.reactor = reactor
        self.inherited = inherited

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        return execute(
            self.reactor.adoptStreamPort, self.inherited.fd, self.inherited.family, protocolFactory
        )
