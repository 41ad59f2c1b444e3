"""The byte tunnel behind ``101 Switching Protocols``: WebSocket and every other upgrade.

Once an upstream has answered 101, the client's connection and the upstream
connection are joined by two small protocols that copy bytes both ways,
untouched: subprotocols, extensions (permessage-deflate), pings and close codes
pass through, as with Caddy's two copy loops (``handleUpgradeResponse``). Each
side's transport is the streaming producer of the other side's transport (the
``twisted.protocols.portforward`` idiom), so a peer that reads slowly fills its
write buffer, which pauses reading from the other peer: nothing piles up here.

When either side closes, both are closed. ``Tunnels`` holds the live tunnels of
one handler so that unloading its config closes them; WebSocket peers first get
a close frame with status 1001 "going away", as Caddy sends them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger(namespace="txcaddy.reverseproxy")

#: A WebSocket close frame with status 1001 "going away", as a server sends it (unmasked).
GOING_AWAY_TO_CLIENT = b"\x88\x02\x03\xe9"

#: How long closing peers get to take the bytes still buffered for them before the
#: connections are aborted (a peer that stops reading would otherwise keep them open).
ABORT_AFTER = 5.0


def going_away_to_server(mask: bytes | None = None) -> bytes:
    """The same close frame as a client must send it: masked (RFC 6455 §5.3)."""
    key = os.urandom(4) if mask is None else mask
    return b"\x88\x82" + key + bytes((0x03 ^ key[0], 0xE9 ^ key[1]))


class _End(Protocol):
    """One side of a tunnel: what arrives here is written to the other side."""

    #: Both sides are TCP connections (TLS ones too): the client's, taken from the HTTP
    #: server, and the upstream's, taken from its exchange.
    transport: ITCPTransport | None

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.write_to_peer: Any = None  # the other side's transport.write, once both are connected
        self.pending: list[bytes] = []  # what arrived before the other side was connected
        self.lost = False

    def connectionMade(self) -> None:
        self.tunnel._connected(self)

    def dataReceived(self, data: bytes) -> None:
        write = self.write_to_peer
        if write is None:
            self.pending.append(data)
        else:
            write(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = True
        self.tunnel._lost(self)

    @property
    def open(self) -> bool:
        return bool(self.connected) and not self.lost

    def close_gracefully(self) -> None:
        """The HTTP server is shutting down (see ``H1Response.switch_protocols``)."""
        self.tunnel.close(going_away=True)

    def when_closed(self) -> Deferred[None]:
        """Fires once both sides are closed: the HTTP server's drain waits for it."""
        return self.tunnel.when_closed()


class Tunnel:
    """A client connection and an upstream connection joined after a 101."""

    def __init__(self, tunnels: Tunnels, clock: Any, *, websocket: bool = False, stream_timeout: float = 0) -> None:
        self.tunnels = tunnels
        self.clock = clock
        self.websocket = websocket
        self.client = _End(self)
        self.upstream = _End(self)
        self.started = clock.seconds()
        self.closing = False
        self.closed = False
        self._timers: list[Any] = []
        self._waiters: list[Deferred[None]] = []
        if stream_timeout > 0:
            self._timers.append(clock.callLater(stream_timeout, self._timed_out))

    def when_closed(self) -> Deferred[None]:
        """A Deferred that fires once both connections are closed."""
        d: Deferred[None] = Deferred()
        if self.closed:
            d.callback(None)
        else:
            self._waiters.append(d)
        return d

    def close(self, going_away: bool = False) -> None:
        """Close both connections; ``going_away`` sends WebSocket peers a 1001 close frame first.

        The frame is written between whatever bytes were already forwarded, as Caddy
        does: best effort, for peers that are between messages.
        """
        if self.closing:
            return
        self.closing = True
        client, upstream = self.client, self.upstream
        if going_away and self.websocket:
            if client.open:
                assert client.transport is not None  # open: connected
                client.transport.write(GOING_AWAY_TO_CLIENT)
            if upstream.open:
                assert upstream.transport is not None
                upstream.transport.write(going_away_to_server())
        self._close_ends()

    # -- what the two ends report ---------------------------------------------------------

    def _connected(self, end: _End) -> None:
        if self.closing:
            # The other side is already gone (or the tunnel was closed): so is this one.
            self._close_ends()
            return
        client, upstream = self.client, self.upstream
        if not (client.connected and upstream.connected):
            return
        assert client.transport is not None and upstream.transport is not None  # both connected
        client.write_to_peer = upstream.transport.write
        upstream.write_to_peer = client.transport.write
        _register(client.transport, upstream.transport)
        _register(upstream.transport, client.transport)
        for side in (client, upstream):
            pending, side.pending = side.pending, []
            for data in pending:
                side.write_to_peer(data)

    def _lost(self, end: _End) -> None:
        end.write_to_peer = None
        if not self.closing:
            # Either direction ending ends both (as Caddy): the other side still gets what
            # was forwarded to it, then closes.
            self.closing = True
            self._close_ends()
        if self.client.lost and self.upstream.lost:
            self._finish()

    # -- closing ------------------------------------------------------------------------

    def _close_ends(self) -> None:
        alive = [side for side in (self.client, self.upstream) if side.open]
        for side in alive:
            _close(side.transport)
        if alive:
            self._timers.append(self.clock.callLater(ABORT_AFTER, self._abort))

    def _abort(self) -> None:
        for side in (self.client, self.upstream):
            if side.open:
                assert side.transport is not None  # open: connected
                side.transport.abortConnection()

    def _timed_out(self) -> None:
        log.debug("stream timed out after {seconds}s", seconds=self.clock.seconds() - self.started)
        self.close()

    def _finish(self) -> None:
        if self.closed:
            return
        self.closed = True
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        log.debug("connection closed after {seconds:.3f}s", seconds=self.clock.seconds() - self.started)
        self.tunnels._discard(self)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)


def _register(consumer: Any, producer: Any) -> None:
    """Let ``consumer``'s full write buffer pause reading from ``producer``."""
    try:
        consumer.registerProducer(producer, True)
    except RuntimeError:
        # Something of the HTTP exchange is still registered (a request body pump).
        consumer.unregisterProducer()
        consumer.registerProducer(producer, True)


def _close(transport: Any) -> None:
    """Close after the buffered bytes are written.

    The producer goes first: a transport whose (paused) producer is still registered
    resumes it instead of closing once its buffer is empty.
    """
    try:
        transport.unregisterProducer()
    except RuntimeError:
        pass  # none registered (test transports say so loudly)
    transport.loseConnection()


class Tunnels:
    """The live tunnels of one reverse_proxy handler, closed when its config is unloaded.

    ``close_delay`` is Caddy 2.7's ``stream_close_delay``: how long the tunnels
    stay open after the unload before they are closed.
    """

    def __init__(self, clock: Any, close_delay: float = 0) -> None:
        self.clock = clock
        self.close_delay = close_delay
        self._live: set[Tunnel] = set()
        self._shut = False  # close_all has closed everything: new tunnels close at once
        self._delayed: Any = None
        self._waiters: list[Deferred[None]] = []

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[Tunnel]:
        return iter(list(self._live))

    def close_all(self) -> Deferred[None]:
        """Close every tunnel (after ``close_delay``); fires once all of them are closed."""
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        if self._shut:
            self._maybe_done()
        elif self.close_delay > 0:
            if self._delayed is None:
                self._delayed = self.clock.callLater(self.close_delay, self._close_now)
        else:
            self._close_now()
        return d

    def _close_now(self) -> None:
        self._delayed = None
        self._shut = True
        for tunnel in list(self._live):
            tunnel.close(going_away=True)
        self._maybe_done()

    def _add(self, tunnel: Tunnel) -> None:
        self._live.add(tunnel)

    def _discard(self, tunnel: Tunnel) -> None:
        self._live.discard(tunnel)
        self._maybe_done()

    def _maybe_done(self) -> None:
        if self._shut and not self._live:
            waiters, self._waiters = self._waiters, []
            for d in waiters:
                d.callback(None)


def start_tunnel(
    response: Any,
    exchange: Any,
    tunnels: Tunnels,
    *,
    clock: Any,
    stream_timeout: float = 0,
    websocket: bool = False,
) -> None:
    """Join the client's connection and the upstream's into a tunnel after a 101.

    Called once the upstream answered 101 on ``exchange``, the Upgrade tokens were
    checked and the upstream's header fields copied onto ``response.headers``. The
    client gets the 101 head, then bytes flow both ways until either side closes.
    ``stream_timeout`` (Caddy 2.7+) closes the tunnel after that many seconds;
    ``websocket`` makes shutdowns send 1001 close frames.

    A client connection that cannot switch (HTTP/2, gone, already answered) gets
    nothing written and the upstream connection is closed: the server then ends
    the response as it ends any unwritten one, as Caddy does when it cannot hijack.
    """
    if response.lost is not None:
        exchange.abort(ConnectionAbortedError("the client went away before the upgrade"))
        return
    if not response.can_switch_protocols:
        log.error("cannot switch protocols on this client connection (not an HTTP/1.1 upgrade request)")
        exchange.abort(ConnectionAbortedError("the client connection cannot switch protocols"))
        return
    tunnel = Tunnel(tunnels, clock, websocket=websocket, stream_timeout=stream_timeout)
    tunnels._add(tunnel)
    log.debug("upgrading connection")
    # The client side first: its 101 head must be on the wire before any upstream byte.
    response.switch_protocols(tunnel.client)
    try:
        exchange.switch_protocol(tunnel.upstream)
    except RuntimeError:
        log.failure("the upstream connection cannot be handed over")
        tunnel.upstream.lost = True
        tunnel.close()
        return
    if tunnels._shut:
        tunnel.close(going_away=True)  # the handler was unloaded while this upgrade was on its way
