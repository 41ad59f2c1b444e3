"""A long response body moved from the upstream socket to the client's inside the kernel.

Relayed the usual way, every body byte is copied from the kernel into a new Python ``bytes``
by ``recv`` and back into the kernel by ``send``, 64 KiB at a time: on a proxied 1 MiB
download those two copies were a fifth of the proxy's CPU (``perf``), and the ``bytes`` in
flight the memory that a process keeps after large bodies. ``splice(2)`` moves the bytes
from the upstream socket into a pipe and from the pipe into the client's socket without
copying them out of the kernel (the pages the upstream sent are handed on).

Used only where nothing between the two sockets looks at the bytes (``ResponseRelay`` and
``H1Response.direct_body_transport`` decide): an HTTP/1.1 upstream response with a
``Content-Length`` body of at least ``MIN_BODY`` bytes still to come, a plain TCP or UNIX
connection on both sides (no TLS, no HTTP/2 or HTTP/3 client), the body sent to the
client unframed, no handler wrapping the response, nothing waiting to be sent on either
connection. Everything else takes the usual path.

Exactly the body's length is spliced, so the upstream connection stays reusable; backpressure
is the pipe: when the client's socket takes no more, reading from the upstream stops until the
client's socket is writable again (watched on a duplicate of its descriptor, so Twisted's own
registration of both sockets is left alone). The upstream's ``read_timeout`` still applies.
Where the kernel refuses to splice a socket (``EINVAL``: a sandboxed kernel), the body goes the
usual way from where it is and this process stops trying.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._twisted import quick_ack, ready_for_direct_io
from txcaddy.reverseproxy.errors import UpstreamConnectionLost

if TYPE_CHECKING:
    from txcaddy.http.response import Response
    from txcaddy.reverseproxy._h1connection import HTTP11Connection

log = Logger(namespace="txcaddy.reverseproxy")

#: Bodies with fewer bytes than this still to come go the usual way (a splice costs two
#: descriptors' duplication and four ``epoll_ctl`` calls to set up).
MIN_BODY = 128 * 1024
#: The pipe's capacity: how much one ``splice`` call can move.
PIPE_SIZE = 256 * 1024
#: Empty pipes kept for the next body.
KEEP_PIPES = 32
#: The upstream is acknowledged at once once this little is left (see ``HTTP11Connection``).
QUICK_ACK_REMAINING = 65536

_SPLICE: Any = getattr(os, "splice", None)  # Linux, Python 3.10+
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_MORE = getattr(os, "SPLICE_F_MORE", 4)
#: Off where ``splice`` is missing, by ``TXCADDY_KERNEL_COPY=0``, or once the kernel refused it.
enabled = _SPLICE is not None and os.environ.get("TXCADDY_KERNEL_COPY", "1") != "0"
_free_pipes: list[tuple[int, int]] = []


def _take_pipe() -> tuple[int, int] | None:
    if _free_pipes:
        return _free_pipes.pop()
    try:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None  # out of descriptors: the usual path needs none
    try:
        fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # over the user's pipe quota: the default 64 KiB works too, in smaller steps
    return read_end, write_end


def _return_pipe(pipe: tuple[int, int], empty: bool) -> None:
    if empty and len(_free_pipes) < KEEP_PIPES:
        _free_pipes.append(pipe)
    else:
        os.close(pipe[0])
        os.close(pipe[1])


@implementer(IReadDescriptor, IWriteDescriptor)
class _Descriptor:
    """A duplicate of one connection's socket, registered with the reactor for one event."""

    __slots__ = ("fd", "ready", "lost")

    def __init__(self, fd: int, ready: Any, lost: Any) -> None:
        self.fd = fd
        self.ready = ready
        self.lost = lost

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> None:  # noqa: N802 - Twisted's name
        self.ready()

    def doWrite(self) -> None:  # noqa: N802 - Twisted's name
        self.ready()

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        self.lost(reason)

    def logPrefix(self) -> str:  # noqa: N802 - Twisted's name
        return "kernel-copy"


class KernelCopy:
    """Splices the rest of one response body from ``conn``'s socket to ``client``'s.

    ``conn`` is paused (``pause("kernel-copy")``) while this runs; at the end of the body it
    is resumed and its response done, as if the parser had counted the bytes. ``stop()``
    (from the connection's ``fail`` or ``connectionLost``) gives everything back.
    """

    def __init__(self, conn: HTTP11Connection, client: Any, response: Response,
                 pipe: tuple[int, int], fds: tuple[int, int]) -> None:
        self.conn = conn
        self.client = client
        self.response = response
        self.reactor = conn.pool.reactor
        self.pipe = pipe
        self.in_pipe = 0
        self.remaining = conn.remaining
        self.moved = False  # bytes left the upstream's socket
        self.sent = False  # bytes reached the client's socket
        self.upstream = _Descriptor(fds[0], self._readable, self._upstream_lost)
        self.downstream = _Descriptor(fds[1], self._writable, self._client_lost)
        self.reading = False
        self.writing = False
        self.active = True

    def start(self) -> None:
        self.conn.pause("kernel-copy")
        self.conn.kernel_copy = self
        self._read_upstream(True)  # (re-arms the read deadline the pause stopped)

    # -- the two events ---------------------------------------------------------------------

    def _readable(self) -> None:
        """The upstream socket has bytes (or an end): move what the pipe takes."""
        try:
            moved = _SPLICE(self.upstream.fd, self.pipe[1], self.remaining, flags=_FLAGS)
        except (BlockingIOError, InterruptedError):
            if self.in_pipe:
                self._drain()  # the pipe was full, not the socket empty
            return
        except OSError as error:
            if error.errno == errno.EINVAL and not self.moved:
                self._refused(error)
                return
            self._upstream_failed(error.strerror or str(error))
            return
        if not moved:
            self._upstream_failed("upstream closed the connection before the end of the body")
            return
        self.moved = True
        self.remaining -= moved
        self.in_pipe += moved
        conn = self.conn
        if conn.read_timer is not None:
            conn.read_timer.reset(conn.pool.read_timeout)
        if self.remaining <= QUICK_ACK_REMAINING:
            quick_ack(conn.transport)
        self._drain()

    def _writable(self) -> None:
        self._drain()

    def _drain(self) -> None:
        """Move what the pipe holds to the client; pace the upstream by what it took."""
        while self.in_pipe:
            flags = _FLAGS | _MORE if self.remaining else _FLAGS
            try:
                sent = _SPLICE(self.pipe[0], self.downstream.fd, self.in_pipe, flags=flags)
            except (BlockingIOError, InterruptedError):
                # The client's socket is full: wait until it takes more, read nothing meanwhile.
                self._read_upstream(False)
                self._watch_client(True)
                return
            except OSError as error:
                if error.errno == errno.EINVAL and not self.sent:
                    self._refused(error)
                    return
                self._client_failed()
                return
            self.in_pipe -= sent
            self.response.size += sent
            self.sent = True
        self._watch_client(False)
        if self.remaining:
            self._read_upstream(True)
        else:
            self._finished()

    # -- registrations ----------------------------------------------------------------------

    def _read_upstream(self, on: bool) -> None:
        if on != self.reading:
            self.reading = on
            if on:
                self.reactor.addReader(self.upstream)
                self.conn._arm_read_timer()
            else:
                self.reactor.removeReader(self.upstream)
                self.conn._stop_read_timer()  # as a paused connection: no deadline meanwhile

    def _watch_client(self, on: bool) -> None:
        if on != self.writing:
            self.writing = on
            if on:
                self.reactor.addWriter(self.downstream)
            else:
                self.reactor.removeWriter(self.downstream)

    # -- endings ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Give back the descriptors and the pipe (removed from the reactor before closing)."""
        if not self.active:
            return
        self.active = False
        self._read_upstream(False)
        self._watch_client(False)
        os.close(self.upstream.fd)
        os.close(self.downstream.fd)
        _return_pipe(self.pipe, empty=not self.in_pipe)
        if self.conn.kernel_copy is self:
            self.conn.kernel_copy = None

    def _finished(self) -> None:
        self.stop()
        conn = self.conn
        conn.remaining = 0
        conn.resume("kernel-copy")
        conn._response_done()

    def _upstream_failed(self, why: str) -> None:
        self.stop()
        self.conn.fail(UpstreamConnectionLost(f"upstream connection lost: {why}"))

    def _upstream_lost(self, reason: Failure) -> None:
        self._upstream_failed(reason.getErrorMessage())

    def _client_failed(self) -> None:
        """The client went away: close its connection; its loss aborts the exchange."""
        self.stop()
        self.client.abortConnection()

    def _client_lost(self, reason: Failure) -> None:
        self._client_failed()

    def _refused(self, error: OSError) -> None:
        """The kernel does not splice these sockets: send the rest the usual way."""
        global enabled
        enabled = False
        log.info("splice(2) refused ({error}); response bodies are copied through Python",
                 error=error.strerror)
        held = b""
        if self.in_pipe:
            held = os.read(self.pipe[0], self.in_pipe)
            self.in_pipe = 0
        self.stop()
        conn = self.conn
        conn.remaining = self.remaining + len(held)
        if held:
            conn.buffer = held  # parsed (and counted) first when the connection resumes
        conn.resume("kernel-copy")


def copy_body(conn: HTTP11Connection, response: Response) -> bool:
    """Splice the rest of ``conn``'s current (Content-Length) body to ``response``'s client.

    False, and nothing changed, where the usual path must be taken.
    """
    if not enabled or conn.remaining < MIN_BODY or conn.buffer:
        return False
    # (Sending what the client's transport holds may resume the connection it had paused.)
    client = response.direct_body_transport(conn.remaining)
    if client is None or conn.pauses or not ready_for_direct_io(conn.transport):
        return False
    pipe = _take_pipe()
    if pipe is None:
        return False
    fds = _duplicates(conn.transport.fileno(), client.fileno())
    if fds is None:
        _return_pipe(pipe, empty=True)
        return False
    KernelCopy(conn, client, response, pipe, fds).start()
    return True


def _duplicates(upstream: int, client: int) -> tuple[int, int] | None:
    """Duplicates of both sockets' descriptors, or None (out of descriptors: nothing kept)."""
    try:
        first = os.dup(upstream)
    except OSError:
        return None
    try:
        return first, os.dup(client)
    except OSError:
        os.close(first)
        return None


__all__ = ["copy_body", "KernelCopy", "MIN_BODY"]
