"""Dialling upstreams: addresses, the connect and TLS handshake deadlines, socket tuning.

Shared by every upstream protocol: ``Dial`` connects one new connection for one exchange and
hands it to the connection's ``start`` (or back to the pool if the caller gave up meanwhile).
Which failures count as dial errors follows Go's ``http.Transport`` as Caddy configures it:
a refused, unresolvable or timed-out connect is a ``DialError`` (retried for every method); a
failed TLS handshake is not (Go does the handshake after its dial function returned), though
nothing of the request was sent.

The protocol a dial builds comes from the pool's ``connection_factory``; the connection meets
``Dial`` through ``IUpstreamConnection`` (``dial``, ``handshake_ok``, ``lost_reason``).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from twisted.internet import endpoints
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from txcaddy._twisted import connection_under, unwrap_endpoint_protocol
from txcaddy.reverseproxy.errors import (
    DialError,
    TLSHandshakeError,
    TLSHandshakeTimeout,
    UpstreamError,
)

if TYPE_CHECKING:
    from txcaddy.reverseproxy._exchange import Exchange
    from txcaddy.reverseproxy._pool import Connection, HostPool

# Twisted's socket read size; a configured read buffer only ever raises it (see from_config).
DEFAULT_READ_SIZE = 65536


class UpstreamAddress:
    """Where to dial: ``tcp`` host:port or a ``unix`` socket path; also the pool key."""

    __slots__ = ("network", "host", "port", "path", "key")

    def __init__(self, network: str, host: str = "", port: int = 0, path: str = "") -> None:
        self.network = network
        self.host = host
        self.port = port
        self.path = path
        self.key = (network, host, port, path)

    @classmethod
    def parse(cls, dial: str) -> UpstreamAddress:
        """Parse Caddy's dial strings: ``host:port``, ``[v6]:port``, ``unix//path``."""
        if dial.startswith("unix/"):
            return cls("unix", path=dial[len("unix/"):])
        host, sep, port = dial.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"invalid upstream dial address {dial!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return cls("tcp", host=host, port=int(port))

    def endpoint(self, reactor: Any, timeout: float | None = None,
                 attempt_delay: float | None = None) -> Any:
        """A client endpoint for this address (IP literals skip name resolution).

        ``attempt_delay`` is the Happy Eyeballs delay between the addresses of a hostname.
        """
        kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        if self.network == "unix":
            return endpoints.UNIXClientEndpoint(reactor, self.path, **kw)
        if _is_ipv4(self.host):
            return endpoints.TCP4ClientEndpoint(reactor, self.host, self.port, **kw)
        if ":" in self.host:
            return endpoints.TCP6ClientEndpoint(reactor, self.host, self.port, **kw)
        return endpoints.HostnameEndpoint(reactor, self.host, self.port,
                                          attemptDelay=attempt_delay, **kw)

    def __repr__(self) -> str:
        if self.network == "unix":
            return f"UpstreamAddress(unix/{self.path})"
        return f"UpstreamAddress({self.host}:{self.port})"

    def __str__(self) -> str:
        if self.network == "unix":
            return f"unix/{self.path}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _is_ipv4(host: str) -> bool:
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)



def tune_socket(transport: Any, keepalive: float | None, read_size: int | None) -> None:
    """TCP keep-alive probes and the socket read size, on the TCP connection under TLS too."""
    raw: Any = connection_under(transport)  # TLS: tune the TCP connection underneath
    if read_size and hasattr(raw, "bufferSize"):
        raw.bufferSize = read_size
    tcp = ITCPTransport.providedBy(raw)  # (kept apart: raw stays Any, it is an ISystemHandle too)
    if keepalive and tcp:
        raw.setTcpKeepAlive(1)
        sock = raw.getHandle()
        seconds = max(1, int(keepalive))
        for option in ("TCP_KEEPIDLE", "TCP_KEEPINTVL"):
            if hasattr(socket, option):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), seconds)
                except OSError:
                    pass


class Dial:
    """One new connection for ``exchange``: connect within ``dial_timeout``, then TLS.

    The connection's protocol is the pool's ``connection_factory(pool, host)``; it takes the
    host's slot the pool counted for this dial, and reports back through ``handshake_done``,
    ``handshake_timed_out`` and ``handshake_failed`` while ``conn.dial`` is set.
    """

    __slots__ = ("host", "exchange", "riders", "timer", "timed_out", "handshake_timer",
                 "handshake_expired")

    def __init__(self, host: HostPool, exchange: Exchange) -> None:
        self.host = host
        self.exchange = exchange
        self.riders: list[Exchange] = []  # exchanges waiting for this connection (HTTP/2)
        self.timer: Any = None
        self.timed_out = False
        self.handshake_timer: Any = None
        self.handshake_expired = False

    def start(self) -> None:
        """Connect (and shake hands); the exchange starts on the connection when it is ready."""
        host = self.host
        pool = host.pool
        endpoint = pool.endpoint_factory(host.address)
        if host.tls is not None:
            endpoint = endpoints.wrapClientTLS(host.tls, endpoint)
        new_connection = pool.connection_factory
        factory = Factory.forProtocol(lambda: new_connection(pool, host))
        factory.noisy = False  # no "Starting factory" log line per upstream connection
        dialing = endpoint.connect(factory)
        if pool.dial_timeout is not None:
            def on_timeout() -> None:
                self.timer = None
                self.timed_out = True
                dialing.cancel()

            self.timer = pool.reactor.callLater(max(0.0, pool.dial_timeout), on_timeout)
        dialing.addCallbacks(self._connected, self._failed)

    def _cancel_timer(self) -> None:
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _connected(self, conn: Connection) -> None:
        self._cancel_timer()
        replaced = getattr(conn, "replaced_by", None)
        if replaced is not None:
            conn = replaced  # ALPN picked another protocol during the handshake (``_alpn``)
        if conn.connected:
            unwrap_endpoint_protocol(conn)
        if self.host.tls is None or conn.handshake_ok:
            self._ready(conn)
        elif not conn.connected:
            self.handshake_failed(conn, conn.lost_reason or Failure(ConnectionDone()))
        else:
            conn.dial = self
            timeout = self.host.pool.tls_handshake_timeout
            if timeout:
                self.handshake_timer = self.host.pool.reactor.callLater(
                    timeout, self.handshake_timed_out, conn)

    def _ready(self, conn: Connection) -> None:
        host = self.host
        riders = host.dial_over(self)
        if self.exchange.finished:
            # The caller gave up while we were dialing: keep the connection for others.
            host.connection_done(conn, reusable=True)
        else:
            conn.start(self.exchange)
        for exchange in riders:
            # The new connection offered itself (shared) while it has room; beyond, a new dial.
            if not exchange.finished:
                host.submit(exchange)

    def _failed(self, reason: Failure) -> None:
        self._cancel_timer()
        host = self.host
        if self.timed_out:
            msg = f"dial {host.address}: i/o timeout after {host.pool.dial_timeout}s"
        else:
            msg = f"dial {host.address}: {reason.getErrorMessage()}"
        self._fail_all(DialError(msg))

    def _fail_all(self, error: UpstreamError) -> None:
        """The dial failed: its exchange and every rider fail with ``error`` (as in Go)."""
        host = self.host
        riders = host.dial_over(self)
        host.dial_failed(self.exchange, error)
        for exchange in riders:
            exchange.abort(error)

    def _cancel_handshake_timer(self) -> None:
        timer, self.handshake_timer = self.handshake_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def handshake_done(self, conn: Connection) -> None:
        self._cancel_handshake_timer()
        self._ready(conn)

    def handshake_timed_out(self, conn: Connection) -> None:
        self.handshake_timer = None
        self.handshake_expired = True
        conn.transport.abortConnection()

    def handshake_failed(self, conn: Connection, reason: Failure) -> None:
        self._cancel_handshake_timer()
        host = self.host
        error: TLSHandshakeError
        if self.handshake_expired:
            error = TLSHandshakeTimeout(f"TLS handshake with {host.address}: timeout")
        else:
            error = TLSHandshakeError(
                f"TLS handshake with {host.address}: {tls_failure_text(reason)}")
        self._fail_all(error)


def tls_failure_text(reason: Failure) -> str:
    """OpenSSL's error list as one readable line."""
    value = reason.value
    args = getattr(value, "args", ())
    if args and isinstance(args[0], list) and args[0] and isinstance(args[0][0], tuple):
        return "; ".join(str(entry[-1]) for entry in args[0] if entry and entry[-1])
    return reason.getErrorMessage()

