"""The upstream connection pool: idle connections per host, limits, waiters, lingering.

The pool behaves like Go's ``http.Transport`` as Caddy configures it: when a connection is
reused (the newest idle one), how many stay idle per host and in all, how many may be open per
host (requests beyond wait in FIFO order), when an idle one is closed.  It hands out "a way to
send one request": it does not know which protocol its connections speak.  What it holds
provides ``txcaddy.interfaces.IUpstreamConnection``; a new one comes from the
``connection_factory`` it is given, dialled by ``Dial``.  The HTTP/1.1 client (``_h1connection.ConnectionPool``) is this pool with
the HTTP/1.1 connection factory and the request head writer; the HTTP/2 client shares it.

No Deferred and no timer per request: a connection going idle is stamped with the time, and
the idle and trim timers look at the stamps when they fire (cancelling and re-arming a timer
per request cost more than the rest of the pool's work).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from txcaddy._twisted import no_delay
from txcaddy.reverseproxy._dial import Dial, UpstreamAddress, tune_socket
from txcaddy.reverseproxy.errors import UpstreamError

if TYPE_CHECKING:
    from txcaddy.reverseproxy._exchange import Exchange

#: What the pool holds: anything providing ``txcaddy.interfaces.IUpstreamConnection``.
Connection = Any

#: Default seconds an idle connection beyond the per-host idle limit lingers (see
#: ``HostPool._trim_surplus``); ``keep_alive.surplus_linger`` sets it per transport.
SURPLUS_LINGER = 1.0


class HostPool:
    """Connections to one upstream address (and TLS name): idle stack, open count, waiters.

    ``open`` counts the connections held against ``max_conns_per_host``: idle, busy and being
    dialled.  ``idle`` holds those that have nothing to do, oldest first; ``shared`` the busy
    ones of a multiplexing protocol that can take another request now (a free HTTP/2 stream
    slot): they are used before an idle one, and never timed out or trimmed as idle.
    """

    def __init__(self, pool: UpstreamPool, key: Any, address: UpstreamAddress,
                 tls: Any = None) -> None:
        self.pool = pool
        self.key = key
        self.address = address
        self.tls = tls  # the TLS connection creator, or None for plain HTTP
        self.idle: list[Connection] = []  # oldest first; reuse takes the newest
        self.trim_call: Any = None  # closes idle connections beyond max_idle_per_host
        self.open = 0
        self.waiters: deque[Exchange] = deque()
        self.shared: list[Connection] = []  # busy, with room for another exchange
        self.dialing: list[Dial] = []  # dials others may ride (``UpstreamPool.dial_riders``)

    def connection_available(self, conn: Connection) -> None:
        """The busy (multiplexing) ``conn`` can take another exchange: a waiter's, or later."""
        if self.waiters:
            conn.start(self.waiters.popleft())
        elif conn not in self.shared:
            self.shared.append(conn)

    def connection_unavailable(self, conn: Connection) -> None:
        """``conn`` takes no more exchanges for now (full, going away or lost)."""
        if conn in self.shared:
            self.shared.remove(conn)

    def submit(self, exchange: Exchange) -> None:
        """Run ``exchange`` on a shared or idle connection, a new one, or when a slot frees."""
        shared = self.shared
        if shared:
            # A multiplexed connection re-offers itself (connection_available) if it still
            # has room after this exchange.
            shared.pop().start(exchange)
            return
        while self.idle:
            conn = self.idle.pop()
            self.pool._idle_taken(conn)
            if conn.connected:
                conn.start(exchange)
                return
            self.open -= 1
        riders = self.pool.dial_riders
        if riders:
            # A multiplexing protocol: wait for a connection being dialled (Go's http2 pool
            # dials once per address and lets every request that missed wait for it) instead
            # of dialling one per request while the first is not yet up.
            for dial in self.dialing:
                if len(dial.riders) < riders:
                    dial.riders.append(exchange)
                    return
        limit = self.pool.max_conns_per_host
        if limit > 0 and self.open >= limit:
            self.waiters.append(exchange)
            return
        self._dial(exchange)

    def _dial(self, exchange: Exchange) -> None:
        self.open += 1
        dial = Dial(self, exchange)
        if self.pool.dial_riders:
            self.dialing.append(dial)
        dial.start()

    def dial_over(self, dial: Dial) -> list[Exchange]:
        """``dial`` connected or failed: it takes no more riders; those it has, still waiting."""
        if dial in self.dialing:
            self.dialing.remove(dial)
        riders, dial.riders = dial.riders, []
        return [exchange for exchange in riders if not exchange.finished]

    def dial_failed(self, exchange: Exchange, error: UpstreamError) -> None:
        """The dial for ``exchange`` failed: it fails with ``error`` and its slot frees."""
        exchange.abort(error)
        self._slot_freed()

    def redial(self, exchange: Exchange) -> None:
        """Dial a new connection for ``exchange``, taking the slot of the one that just died.

        For a protocol's transparent re-send (HTTP/1.1: a reused connection the upstream had
        already closed); the exchange must be ready to be sent again.
        """
        Dial(self, exchange).start()

    def forget_waiter(self, exchange: Exchange) -> None:
        """``exchange`` was given up while waiting for a slot."""
        if exchange in self.waiters:
            self.waiters.remove(exchange)
            return
        for dial in self.dialing:
            if exchange in dial.riders:
                dial.riders.remove(exchange)
                return

    def connection_done(self, conn: Connection, reusable: bool) -> None:
        """An exchange ended on ``conn`` (the last one, for a multiplexed one); reuse or retire it."""
        if self.shared and conn in self.shared:
            self.shared.remove(conn)
        if reusable and conn.connected:
            if self.waiters:
                conn.start(self.waiters.popleft())
                return
            pool = self.pool
            max_idle = pool.max_idle_per_host
            if max_idle is None or len(self.idle) < max_idle or (max_idle > 0 and pool.surplus_linger > 0):
                self.idle.append(conn)
                conn.idle_since = pool.reactor.seconds()
                if pool.idle_timeout:
                    if conn.idle_timer is None:
                        conn.idle_timer = pool.reactor.callLater(
                            pool.idle_timeout, self._idle_check, conn)
                pool._idle_added(conn)
                if max_idle is not None and len(self.idle) > max_idle and self.trim_call is None:
                    self.trim_call = pool.reactor.callLater(pool.surplus_linger, self._trim_surplus)
                return
            conn.close()
        self._slot_freed()

    def _trim_surplus(self) -> None:
        """Close idle connections beyond ``max_idle_per_host`` that stayed idle ``surplus_linger``.

        A connection that comes back while the host already keeps its share of idle ones is
        not closed at once: under a steady load more requests are in flight at the peak of
        each burst than are idle between bursts, and closing the surplus at once meant
        dialing it again a few milliseconds later (about one request in ten on the
        benchmark's 64 clients). Reuse takes the newest idle connection, so the oldest are
        the surplus; they are closed once nothing needed them for ``surplus_linger``.
        """
        self.trim_call = None
        pool = self.pool
        max_idle = pool.max_idle_per_host or 0
        deadline = pool.reactor.seconds() - pool.surplus_linger
        while len(self.idle) > max_idle:
            oldest = self.idle[0]
            since = oldest.idle_since
            if since is not None and since > deadline:
                # Still used by the bursts: look again when the oldest has idled long enough.
                self.trim_call = pool.reactor.callLater(since - deadline, self._trim_surplus)
                return
            self._retire(oldest)

    def cancel_trim(self) -> None:
        """Stop the surplus trimming (the host is forgotten or closing)."""
        call, self.trim_call = self.trim_call, None
        if call is not None and call.active():
            call.cancel()

    def connection_detached(self, conn: Connection) -> None:
        """The connection left HTTP (101): it no longer counts against the host."""
        self._slot_freed()

    def _slot_freed(self) -> None:
        """One connection less: let a waiter dial; a host with nothing left is forgotten."""
        self.open -= 1
        limit = self.pool.max_conns_per_host
        while self.waiters and (limit <= 0 or self.open < limit):
            self._dial(self.waiters.popleft())
        if self.open <= 0 and not self.waiters:
            self.pool._forget_host(self)

    def _idle_check(self, conn: Connection) -> None:
        """The idle timer fired: retire ``conn`` if it has been idle for the whole timeout."""
        conn.idle_timer = None
        since = conn.idle_since
        if since is None or conn not in self.idle:
            return
        remaining = since + self.pool.idle_timeout - self.pool.reactor.seconds()
        if remaining > 0:
            conn.idle_timer = self.pool.reactor.callLater(remaining, self._idle_check, conn)
            return
        self._retire(conn)

    def _retire(self, conn: Connection) -> None:
        """Close the idle ``conn`` (idle too long, surplus, or beyond ``max_idle_conns``)."""
        timer, conn.idle_timer = conn.idle_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if conn in self.idle:
            self.idle.remove(conn)
            self.pool._idle_taken(conn)
            conn.close()
            self._slot_freed()

    def idle_lost(self, conn: Connection) -> None:
        """The idle ``conn`` was closed by the upstream (or failed)."""
        if conn in self.idle:
            self.idle.remove(conn)
            self.pool._idle_taken(conn)
            self._slot_freed()


class UpstreamPool:
    """Connections per upstream address (and TLS server name), whatever their protocol.

    Limits follow Go's ``http.Transport``: ``max_idle_per_host`` None means unlimited,
    ``max_idle_conns`` caps idle connections across all hosts (0 unlimited, the oldest is
    closed first), ``max_conns_per_host`` 0 means unlimited and requests beyond it wait in
    FIFO order.  Idle connections beyond ``max_idle_per_host`` linger ``surplus_linger``
    seconds before they close (0: at once, as Go does).  Timeouts in seconds, 0/None off.

    ``connection_factory(pool, host)`` builds the protocol of each new connection (an
    ``IUpstreamConnection``); ``endpoint_factory(address)`` the endpoint it is dialled with.
    ``tcp_keepalive`` and ``read_size`` tune each new socket (``_dial.tune_socket``).
    """

    def __init__(
        self,
        reactor: Any,
        *,
        connection_factory: Callable[[Any, HostPool], Any],
        max_idle_per_host: int | None = 32,
        idle_timeout: float | None = 120.0,
        max_conns_per_host: int = 0,
        dial_timeout: float | None = 3.0,
        max_idle_conns: int = 0,
        tls_handshake_timeout: float | None = None,
        tcp_keepalive: float | None = None,
        read_size: int | None = None,
        endpoint_factory: Callable[[UpstreamAddress], Any] | None = None,
        surplus_linger: float = SURPLUS_LINGER,
    ) -> None:
        self.reactor = reactor
        self.connection_factory = connection_factory
        self.max_idle_per_host = max_idle_per_host
        #: Seconds an idle connection beyond max_idle_per_host lingers before it is closed
        #: (0: closed at once, as Go does). See ``HostPool._trim_surplus``.
        self.surplus_linger = surplus_linger
        self.idle_timeout = idle_timeout
        self.max_conns_per_host = max_conns_per_host
        self.dial_timeout = dial_timeout
        self.max_idle_conns = max_idle_conns
        self.tls_handshake_timeout = tls_handshake_timeout
        #: Exchanges that may wait for a connection being dialled instead of dialling their
        #: own (0: none, each dials; a multiplexing protocol sets its assumed stream count).
        self.dial_riders = 0
        self.tcp_keepalive = tcp_keepalive
        self.read_size = read_size
        self.endpoint_factory: Callable[[UpstreamAddress], Any] = (
            endpoint_factory or (lambda addr: addr.endpoint(reactor)))
        self._hosts: dict[Any, HostPool] = {}
        # Idle connections of every host, oldest first; kept only when max_idle_conns is set.
        self._idle_lru: OrderedDict[Connection, None] | None = (
            OrderedDict() if max_idle_conns else None)

    def _host(self, address: UpstreamAddress, tls: Any) -> HostPool | None:
        return self._hosts.get(address.key if tls is None else (address.key, tls))

    def idle_count(self, address: UpstreamAddress, tls: Any = None) -> int:
        """Idle connections to the host."""
        host = self._host(address, tls)
        return len(host.idle) if host else 0

    def open_count(self, address: UpstreamAddress, tls: Any = None) -> int:
        """Connections counted against the host (idle, busy and dialing)."""
        host = self._host(address, tls)
        return host.open if host else 0

    def _forget_host(self, host: HostPool) -> None:
        host.cancel_trim()
        if self._hosts.get(host.key) is host:
            del self._hosts[host.key]

    def _idle_added(self, conn: Connection) -> None:
        lru = self._idle_lru
        if lru is None:
            return
        lru[conn] = None
        while len(lru) > max(self.max_idle_conns, 0):
            oldest = next(iter(lru))
            oldest.host._retire(oldest)

    def _idle_taken(self, conn: Connection) -> None:
        if self._idle_lru is not None:
            self._idle_lru.pop(conn, None)

    def close_idle(self) -> Deferred[None]:
        """Close every idle connection (config unload).

        The Deferred fires once all of them are closed (their ``connectionLost`` ran), so a
        stopping service can wait for its sockets.
        """
        closing: list[Deferred[None]] = []
        for host in list(self._hosts.values()):
            host.cancel_trim()
            idle, host.idle = host.idle, []
            for conn in idle:
                self._idle_taken(conn)
                if conn.idle_timer is not None and conn.idle_timer.active():
                    conn.idle_timer.cancel()
                conn.idle_timer = None
                closing.append(conn.when_closed())
                conn.close()
                host._slot_freed()
        if not closing:
            return succeed(None)
        return DeferredList(closing, consumeErrors=True).addCallback(lambda _: None)


_connection_log = Logger(namespace="txcaddy.reverseproxy")


class PooledConnection(Protocol):
    """What every pooled upstream connection does the same, whatever its protocol: socket
    options when it connects, and ``when_closed`` waiters fired when it is gone."""

    connected = False
    idle_timer: Any = None
    _closed_waiters: list[Deferred[None]] | None = None

    def makeConnection(self, transport: Any) -> None:
        """Twisted's, with ``connected`` a bool (the compiled build checks it is one)."""
        self.connected = True
        self.transport = transport
        self.connectionMade()

    def prepare_socket(self, pool: Any) -> None:
        """``TCP_NODELAY``, and the pool's TCP keep-alive and read size (best effort)."""
        no_delay(self.transport)
        if pool.tcp_keepalive or pool.read_size:
            try:
                tune_socket(self.transport, pool.tcp_keepalive, pool.read_size)
            except Exception:  # noqa: BLE001 - an exotic transport keeps its defaults
                _connection_log.failure("tuning the upstream socket (keep-alive, read size)")

    def when_closed(self) -> Deferred[None]:
        """A Deferred that fires once the connection is closed (``connectionLost`` ran)."""
        if not self.connected:
            return succeed(None)
        if self._closed_waiters is None:
            self._closed_waiters = []
        d: Deferred[None] = Deferred()
        self._closed_waiters.append(d)
        return d

    def closed(self) -> None:
        """From ``connectionLost``: cancel the idle timer and fire the ``when_closed`` waiters."""
        self.connected = False
        if self.idle_timer is not None and self.idle_timer.active():
            self.idle_timer.cancel()
        self.idle_timer = None
        waiters, self._closed_waiters = self._closed_waiters, None
        for waiter in waiters or ():
            waiter.callback(None)
