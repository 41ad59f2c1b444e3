"""The one place that touches private parts of Twisted (DESIGN.md §3: keep them together).

Batched sends. Twisted's ``FileDescriptor.write`` queues the data and registers the
socket for writability; the bytes leave in the next reactor iteration after an
``epoll_ctl`` to add the write interest, an ``epoll_wait`` reporting it, a ``doWrite``
wrapped in log-context calls, and another ``epoll_ctl`` to remove the interest: about
a fifth of a small proxied request's CPU. Sending at once instead (``send`` inside the
read handler) was measured slower still: each send then wakes the peer on its own, while
Twisted's deferred writes leave one after the other in a burst.

The fast path is a choice (``install_fast_io``): ``twistd caddy`` and ``txcaddy run`` own the
process and turn it on; an application that embeds txcaddy gets Twisted's own loop unless
it asks (``fromCaddyfile(..., fast_io=True)``; docs/embedding.md says what changes). Without
it, ``send_now`` is ``transport.write`` and ``lose_connection`` is ``loseConnection``.

``send_now`` keeps the burst and drops the epoll round trip: data for a plain TCP or UNIX
connection with nothing queued in Twisted is kept in a batch, and the batch is sent
(one ``send``/``sendmsg`` per connection) right before the reactor polls again: the
reactor's ``doIteration`` is wrapped to do that, so timed calls, which run between two
polls, are covered too and a ``loseConnection`` after a batched write still finds the
data sent first. Whatever the kernel does not take goes to the
transport's own buffer, so Twisted's buffering, producer pausing and error handling
apply to the rest. Any other transport (TLS, test doubles, a closing connection) gets
a plain ``write``. Order is kept: data written through Twisted after batched data is
put behind it when the batch is sent.

The rest, each measured in docs/performance.md: the epoll loop reads plain TCP connections
itself (``_epoll_iteration``) and closes a connection whose last data is sent without a
write-readiness round trip or an ``epoll_ctl`` (``lose_connection``); ``no_delay`` and
``quick_ack`` set the TCP options Go's behaviour needs (also under TLS);
``unwrap_endpoint_protocol`` drops an endpoint's forwarding protocol once connected;
``TLSServerFactory`` makes TLS connections whose records leave through the batch too.
"""

from __future__ import annotations

import select
import socket
import sys
from collections.abc import Sequence
from typing import Any

from OpenSSL.SSL import WantReadError
from twisted.internet import tcp, unix
from twisted.internet.endpoints import _WrappingProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # not Linux: no epoll, the reactor's own loop is used
    EPollReactor = None  # type: ignore[assignment,misc]
from twisted.logger import Logger

_log = Logger(namespace="txcaddy.reactor")

#: Transports whose socket may be written directly (exact types: subclasses may differ).
_DIRECT = frozenset({tcp.Server, tcp.Client, unix.Server, unix.Client})
#: Transports whose reads the loop does itself (UNIX sockets may carry descriptors: Twisted's).
_READ_DIRECT = frozenset({tcp.Server, tcp.Client})
_EPOLLIN = select.EPOLLIN if hasattr(select, "EPOLLIN") else 1
_JOIN_LIMIT = 8192  # batches up to this size are joined and sent with send(), not sendmsg()


class _SendBatch:
    """Data waiting for the end of the reactor iteration, per transport, in write order.

    One per reactor with the fast path installed (its loop sends the batch before it polls).

    @ivar pending: the chunks of each transport, in write order.
    @ivar closing: pending transports to close once their data is sent.
    @ivar tls: TLS connections with application data to encrypt before the batch is sent.
    @ivar looped: whether the reactor runs ``_epoll_iteration`` (reads plain TCP itself).
    @ivar users: how many ``install_fast_io`` calls are not undone yet.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.pending: dict[Any, list[bytes]] = {}
        self.closing: set[Any] = set()
        self.tls: list[TLSServerProtocol] = []
        self.looped = False
        self.users = 0
        self._replaced: Any = None  # the reactor's own doIteration attribute, if it had one
        self._loop: Any = None  # ours, put in its place

    def add(self, transport: Any, chunks: list[bytes]) -> None:
        pending = self.pending
        queued = pending.get(transport)
        if queued is not None:
            if transport._tempDataLen or transport.dataBuffer:
                # Written through Twisted since: that data goes out after the batch (see
                # _send), and these chunks after that data.
                transport.writeSequence(chunks)
            else:
                queued.extend(chunks)
            return
        if not _idle(transport) or transport.reactor is not self.reactor:
            transport.writeSequence(chunks)
            return
        pending[transport] = chunks

    def wrap(self) -> None:
        """Make the reactor send the batch before it polls."""
        reactor = self.reactor
        self._replaced = vars(reactor).get("doIteration")
        if EPollReactor is not None and isinstance(reactor, EPollReactor):
            self._loop = _epoll_iteration(reactor, self)
            self.looped = True
        else:
            poll = reactor.doIteration

            def doIteration(timeout: float | None) -> None:
                if self.pending or self.tls:
                    self.flush()
                poll(timeout)

            self._loop = doIteration
        reactor.doIteration = self._loop

    def unwrap(self) -> bool:
        """Give the reactor its own loop back; False when something wrapped ours since."""
        reactor = self.reactor
        if vars(reactor).get("doIteration") is not self._loop:
            return False
        self.flush()
        if self._replaced is None:
            del reactor.doIteration
        else:
            reactor.doIteration = self._replaced
        self.looped = False
        return True

    def flush(self) -> None:
        if self.tls:
            tls, self.tls = self.tls, []
            for protocol in tls:
                protocol.send_plain()  # its records join ``pending``
        pending, self.pending = self.pending, {}
        closing, self.closing = self.closing, set()
        for transport, chunks in pending.items():
            _send(transport, chunks)
            if closing and transport in closing:
                _close(transport, self.looped)


#: The batch of each reactor with the fast path installed (``install_fast_io``).
_BATCHES: dict[Any, _SendBatch] = {}
#: The one that batches (the last installed): read by every send with one global lookup, as
#: cheap as the check gets. Twisted runs one reactor per process; connections of another
#: reactor with the fast path on get plain writes (correct, not batched).
_ACTIVE: _SendBatch | None = None
_CLOSED = Failure(ConnectionDone())  # one for every fast close, as Twisted keeps its own


def fast_io_supported(reactor: Any) -> bool:
    """Whether ``reactor`` polls through ``doIteration``, which the fast path wraps.

    The asyncio reactor does not: asyncio's own loop polls, so a batch would never be sent.
    """
    # Not imported: not that reactor (and no import now, which may be after twistd --uid
    # dropped the rights to read the module).
    module = sys.modules.get("twisted.internet.asyncioreactor")
    return module is None or not isinstance(reactor, module.AsyncioSelectorReactor)


def install_fast_io(reactor: Any) -> _SendBatch:
    """Turn the fast path on for ``reactor`` (counted: undo each call with ``uninstall_fast_io``).

    The reactor's ``doIteration`` is replaced: under epoll by ``_epoll_iteration`` (which
    reads plain TCP connections itself and skips Twisted's per-event log context), under
    any other reactor by a wrapper that sends the batch and then polls as before. From then
    on ``send_now``, ``send_sequence_now`` and ``lose_connection`` batch plain TCP and UNIX
    connections of this reactor, whichever protocol writes through them.
    """
    global _ACTIVE
    batch = _BATCHES.get(reactor)
    if batch is None:
        batch = _BATCHES[reactor] = _SendBatch(reactor)
        batch.wrap()
        _ACTIVE = batch
    batch.users += 1
    return batch


def uninstall_fast_io(reactor: Any) -> None:
    """Undo one ``install_fast_io``; the last one sends what is batched and restores the loop.

    When something wrapped the reactor's ``doIteration`` after txcaddy did, ours stays (taking
    it out would take theirs out too) and keeps sending the batch.
    """
    batch = _BATCHES.get(reactor)
    if batch is None:
        return
    batch.users -= 1
    if batch.users > 0:
        return
    global _ACTIVE
    if batch.unwrap():
        del _BATCHES[reactor]
        _ACTIVE = next(reversed(_BATCHES.values()), None)
    else:
        batch.users = 0
        _log.warn("the reactor's doIteration was wrapped after txcaddy's fast path; leaving it on")


def fast_io_installed(reactor: Any) -> bool:
    """Whether ``install_fast_io(reactor)`` is in effect."""
    return reactor in _BATCHES


def _epoll_iteration(reactor: Any, batch: _SendBatch) -> Any:
    """``EPollReactor.doPoll`` that sends the batch first and skips the log context.

    Twisted runs each ready descriptor's handler inside ``log.callWithLogger``, which
    sets a legacy log context (the protocol's ``logPrefix``) for every read and write
    event; the context calls cost a few per cent of a proxied request. Errors are still
    caught and logged here, and ``_doReadOrWrite`` still disconnects a failing selectable.
    """
    poller = reactor._poller
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite
    disconnect = reactor._disconnectSelectable

    def doIteration(timeout: float | None) -> None:
        if batch.pending or batch.tls:
            batch.flush()
        if timeout is None:
            timeout = -1
        try:
            ready = poller.poll(timeout, len(selectables))
        except InterruptedError:
            return
        for fd, event in ready:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if batch.closing and selectable in batch.closing:
                continue  # closing once its last data is sent: nothing more is read
            if event == _EPOLLIN and type(selectable) in _READ_DIRECT:
                # Twisted's doRead for a plain TCP connection, minus three calls per read. (A
                # connection aborted or closed earlier in this batch is no longer in
                # ``selectables``: abortConnection and connectionLost stop reading and writing.)
                try:
                    data = selectable.socket.recv(selectable.bufferSize)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    disconnect(selectable, CONNECTION_LOST, True)
                    continue
                if not data:
                    disconnect(selectable, CONNECTION_DONE, True)
                    continue
                try:
                    selectable.protocol.dataReceived(data)
                except Exception as error:  # noqa: BLE001 - as Twisted: log, then drop the connection
                    _log.failure("unhandled error in dataReceived")
                    disconnect(selectable, error, True)
                continue
            try:
                handle(selectable, fd, event)
            except Exception:  # noqa: BLE001 - as callWithLogger: log and go on
                _log.failure("unhandled error in the reactor loop")

    return doIteration


def connection_under(transport: Any) -> Any:
    """The TCP (or UNIX) connection under ``transport``: itself, or the one a TLS layer wraps."""
    while isinstance(transport, ProtocolWrapper):
        transport = transport.transport
    return transport


def no_delay(transport: Any) -> None:
    """Turn off Nagle's algorithm on a TCP connection (also one under TLS), as Go does.

    Go sets TCP_NODELAY on every TCP connection it accepts or dials, and Caddy's users
    expect its latency: with Nagle on, the last small segment of a response can wait for
    the peer's delayed ACK (40 ms on Linux).
    """
    raw = connection_under(transport)
    if ITCPTransport.providedBy(raw):
        try:
            raw.setTcpNoDelay(True)
        except OSError:  # the connection is already gone
            pass


_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def quick_ack(transport: Any) -> None:
    """Acknowledge what was just read at once instead of delaying the ACK (Linux).

    A receiver in Linux's request/response ("pingpong") mode holds its ACK for up to
    40 ms, hoping to send it with its next request. A proxy reading a response that is not
    complete yet must not: the upstream may be waiting for that ACK to send the rest (a
    sendfile that outgrew its send buffer). Measured on ``64k``: 1-2 % of requests took
    ~40 ms longer (p99 ~2x Caddy's) until the upstream reads did this. The option does not
    stick, so it is set after each read that leaves a response unfinished.
    """
    if _TCP_QUICKACK is None:
        return
    raw = connection_under(transport)
    sock = getattr(raw, "socket", None) if type(raw) in _READ_DIRECT else None
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except OSError:
            pass


def unwrap_endpoint_protocol(protocol: Any) -> None:
    """Let a connection made through an endpoint deliver to ``protocol`` directly.

    Endpoints wrap the protocol in a ``_WrappingProtocol`` that forwards every event
    (one more Python call per read); once the connection is up it has nothing left to do
    for a plain TCP or UNIX connection, so the transport is pointed at ``protocol``.
    """
    transport = protocol.transport
    if type(transport) in _DIRECT:
        wrapper = transport.protocol
        if isinstance(wrapper, _WrappingProtocol) and wrapper._wrappedProtocol is protocol:
            transport.protocol = protocol


def _idle(transport: Any) -> bool:
    """Whether ``transport`` is a plain socket connection with nothing queued in Twisted."""
    return (
        type(transport) in _DIRECT
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._tempDataLen
        and not transport.dataBuffer
        and not transport._writeDisconnected
    )


def _send(transport: Any, chunks: list[bytes]) -> None:
    if not transport.connected or transport._writeDisconnected or transport._aborting:
        return  # Twisted would drop the data too
    if transport.TLS:  # started TLS since: the bytes must go through the TLS layer
        transport.writeSequence(chunks)
        return
    if transport._tempDataLen or transport.dataBuffer:
        # Something was written through Twisted after these chunks (no doWrite has run
        # since they were batched): they go in front of it, in Twisted's buffer. (A
        # loseConnection() alone queues nothing: the chunks are sent below and Twisted
        # closes the connection once it finds its buffer empty.)
        transport._tempDataBuffer[0:0] = chunks
        transport._tempDataLen += sum(len(chunk) for chunk in chunks)
        transport.startWriting()
        return
    sock = transport.socket
    if len(chunks) > 1 and sum(map(len, chunks)) <= _JOIN_LIMIT:
        chunks = [b"".join(chunks)]  # a small copy is cheaper than sendmsg's gathering
    try:
        sent = sock.send(chunks[0]) if len(chunks) == 1 else sock.sendmsg(chunks)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        transport.writeSequence(chunks)  # Twisted finds the error and reports the loss
        return
    for index, chunk in enumerate(chunks):
        if sent < len(chunk):
            rest = [chunk[sent:], *chunks[index + 1:]] if sent else chunks[index:]
            transport.writeSequence(rest)
            return
        sent -= len(chunk)


def _close(transport: Any, looped: bool) -> None:
    """Close a connection whose last data was just sent (see ``lose_connection``).

    ``looped``: the reactor runs ``_epoll_iteration``.
    """
    if not transport.connected:
        return
    if transport.disconnecting or transport._tempDataLen or transport.dataBuffer or transport.producer is not None:
        transport.loseConnection()  # something is left to send: Twisted's way
        return
    # Nothing left to write: what Twisted's loseConnection would reach one reactor turn and
    # two epoll_ctl calls later (register for writing, find the buffer empty, close).
    if looped:
        reactor = transport.reactor
        # Closing the socket takes it out of the epoll set: drop it from the reactor's
        # books only, sparing the epoll_ctl call that connectionLost's stopReading makes.
        fd = transport.fileno()
        if fd in reactor._reads and fd not in reactor._writes:
            reactor._reads.discard(fd)
            reactor._selectables.pop(fd, None)
    transport.connectionLost(_CLOSED)


def lose_connection(transport: Any) -> None:
    """``transport.loseConnection()``, closing right after this iteration's batched sends.

    Reading stops now, as with ``loseConnection``; when the batch has been sent in full the
    connection is closed at once instead of through a write-readiness round trip. Under
    txcaddy's epoll loop a TCP connection stays in the epoll set until it is closed (the
    loop reads nothing more from it): one ``epoll_ctl`` less per closed connection.
    """
    batch = _ACTIVE
    if batch is not None and type(transport) in _DIRECT:
        if (
            transport in batch.pending
            and transport.producer is None
            and transport.connected
            and not transport.disconnecting
        ):
            batch.closing.add(transport)
            if type(transport) not in _READ_DIRECT or not batch.looped:
                transport.stopReading()
            return
    transport.loseConnection()


def send_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, sent at the end of this reactor iteration without epoll.

    Only with the fast path installed on the transport's reactor; else ``write`` itself.
    """
    if data:
        batch = _ACTIVE
        if batch is None:
            transport.write(data)
        else:
            batch.add(transport, [data])


def ready_for_direct_io(transport: Any) -> bool:
    """Whether bytes may now go to or come from ``transport``'s socket behind Twisted's back.

    True for a plain TCP or UNIX connection that is open and has nothing left to send: what
    this iteration batched for it, or what Twisted holds for it, is sent first when the
    socket takes it. (The kernel-copied response bodies use it.)
    """
    if type(transport) not in _DIRECT or transport.TLS or transport._aborting:
        return False
    batch = _ACTIVE
    if batch is not None and transport in batch.pending:
        if transport in batch.closing:
            return False
        _send(transport, batch.pending.pop(transport))
    if (transport._tempDataLen or transport.dataBuffer) and transport.connected \
            and not transport.disconnecting:
        # Twisted's write waits for the next writable event: send now (an error is left
        # for that event to find; a producer paused by a full buffer is resumed if it empties).
        transport.doWrite()
    return _idle(transport)


def send_sequence_now(transport: Any, chunks: Sequence[bytes]) -> None:
    """``transport.writeSequence(chunks)`` the same way (one gathering send)."""
    if chunks:
        batch = _ACTIVE
        if batch is None:
            transport.writeSequence(chunks)
        else:
            batch.add(transport, list(chunks))


class TLSServerProtocol(TLSMemoryBIOProtocol):
    """Twisted's TLS protocol without its write aggregation timer, sending through the batch.

    ``TLSMemoryBIOFactory`` makes ``BufferingTLSTransport``s: every application write waits
    for a ``callLater(0)`` and the encrypted bytes then go out with ``transport.write`` (an
    ``epoll_ctl`` pair and another loop turn).  Here, with the fast path installed, the
    application's writes of one reactor iteration are joined and encrypted together when the
    batch is sent (no timer: the loop sends the batch before it polls), and their records go to
    the TCP connection with the rest of the batch.  Without the fast path each write is
    encrypted and written at once.

    Joining matters beyond speed: HTTP/2 writes a response as several frames (HEADERS, DATA,
    END_STREAM, a RST_STREAM when the request body was not read), and curl 7.88 stops reading
    a connection after a record that completed the response while its upload waits for a
    window, so a RST_STREAM in a later record leaves it uploading forever (docs/http2.md).
    Measured on ``https-small``: see docs/performance.md.

    @ivar _plain: application bytes waiting for the batch, or None when none are.
    """

    _plain: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        batch = _ACTIVE
        if (
            batch is None or not self._handshakeDone or self.disconnecting or self._lostTLSConnection
            or getattr(self.transport, "reactor", None) is not batch.reactor
        ):
            TLSMemoryBIOProtocol.write(self, data)
            return
        plain = self._plain
        if plain is None:
            self._plain = [data]
            batch.tls.append(self)
        else:
            plain.append(data)

    def writeSequence(self, iovec: Sequence[bytes]) -> None:  # noqa: N802 - Twisted's name
        self.write(b"".join(iovec))

    def send_plain(self) -> None:
        """Encrypt and send what ``write`` kept for the batch."""
        plain, self._plain = self._plain, None
        if plain and not self._lostTLSConnection and not self._aborted:
            TLSMemoryBIOProtocol.write(self, plain[0] if len(plain) == 1 else b"".join(plain))

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        self.send_plain()  # the close_notify goes after the data
        TLSMemoryBIOProtocol.loseConnection(self)

    def abortConnection(self) -> None:  # noqa: N802 - Twisted's name
        self._plain = None
        TLSMemoryBIOProtocol.abortConnection(self)

    def _flushSendBIO(self) -> None:  # noqa: N802 - Twisted's (private) name
        try:
            data = self._tlsConnection.bio_read(2**15)
        except WantReadError:
            return  # nothing in the send BIO right now
        send_now(self.transport, data)


class TLSServerFactory(TLSMemoryBIOFactory):
    """``TLSMemoryBIOFactory`` making ``TLSServerProtocol``s (for txcaddy's listeners)."""

    protocol = TLSServerProtocol
