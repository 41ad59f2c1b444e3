"""HTTPS upstreams that speak HTTP/2 or HTTP/1.1, whichever ALPN picks: one pool for both.

Caddy's ``http`` transport with ``"2"`` in ``versions`` (its default ``["1.1", "2"]``) calls
``http2.ConfigureTransport``: every TLS connection offers ALPN ``h2, http/1.1`` and is used for
HTTP/2 when the upstream picks ``h2``, for HTTP/1.1 otherwise
(``modules/caddyhttp/reverseproxy/httptransport.go``: ``NewTransport``; Go's
``net/http/transport.go``: ``TLSNextProto``).  Requests that need HTTP/1.1 (upgrades:
WebSocket) use connections dialled without ``h2`` (Go's ``onlyH1`` key), kept apart in the
plain HTTP/1.1 pool.

Here the connection is dialled as an ``AlpnH1Connection``; when its handshake picked ``h2``
it hands the TLS transport to an ``AlpnH2Connection`` in its place, in the same host of the
same pool (the slot counted for the dial stays taken).  Because the protocol is known only
then, a request waiting in this pool is an ``AlpnExchange``: it keeps what the caller did
(body written, producer, head listeners) and, once a connection takes it, becomes the
HTTP/1.1 ``Exchange`` or the ``H2Exchange`` of that connection and forwards everything to it.
An HTTP/2 connection with a free stream sits in its host's ``shared`` list, so later requests
go to it first, as Go's ``http2`` client pool does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy.interfaces import IExchange, IUpstreamConnection
from txcaddy.reverseproxy._dial import UpstreamAddress
from txcaddy.reverseproxy._exchange import _PENDING, Exchange, HeadWaiters, RawHeaders, ResponseHead
from txcaddy.reverseproxy._h1connection import ConnectionPool, HTTP11Connection
from txcaddy.reverseproxy._h2client import h2_request_headers
from txcaddy.reverseproxy._h2connection import H2Exchange, HTTP2Connection
from txcaddy.reverseproxy._pool import HostPool

#: What a connection that may become HTTP/2 offers.
ALPN_H2_H1 = (b"h2", b"http/1.1")



@implementer(IExchange, IPushProducer)
class AlpnExchange(HeadWaiters):
    """A request waiting for a connection whose protocol is not known yet.

    Until a connection takes it, it records the caller's calls; then it builds the exchange
    of that connection's protocol (``bind``), replays them, and forwards from then on.
    """

    def __init__(self, pool: AlpnPool, host: HostPool, address: UpstreamAddress, method: bytes,
                 target: bytes, headers: RawHeaders, body_length: int | None,
                 on_informational: Callable[[ResponseHead], None] | None) -> None:
        self.pool = pool
        self.host = host
        self.address = address
        self.method = method
        self.target = target
        self.headers = headers
        self.body_length = body_length
        self.on_informational = on_informational
        self.inner: Exchange | None = None
        self._writes: list[bytes] = []
        self._finish: tuple[RawHeaders | None] | None = None  # finish_body's trailers
        self._producer: Any = None
        self._streaming = False
        self._head_result: Any = _PENDING
        self._head_waiters: list[tuple[Callable[[ResponseHead], Any],
                                       Callable[[Failure], Any]]] = []
        self._head_deferred: Deferred[ResponseHead] | None = None
        self._consumer: Any = None
        self._finished = False
        self._done_reason: Failure | None = None

    # -- binding to a connection's protocol ------------------------------------------------

    def bind(self, http2: bool) -> Exchange:
        """The exchange for an HTTP/2 (or HTTP/1.1) connection, with what was done so far."""
        pool = self.pool
        inner: Exchange
        if http2:
            inner = H2Exchange(
                pool, self.host,  # type: ignore[arg-type]
                h2_request_headers(self.address, self.method, self.target, self.headers,
                                   self.body_length, b"https"),
                self.body_length, self.method, self.on_informational)
        else:
            inner = pool.new_exchange(self.host, self.method, self.target, self.headers,
                                      self.body_length, self.on_informational)
        inner.alpn_owner = self
        self.inner = inner
        if self._producer is not None:
            inner.registerProducer(self._producer, self._streaming)
        for data in self._writes:
            inner.write(data)
        if self._finish is not None:
            inner.finish_body(self._finish[0])
        inner.when_head(self._report_head, self._report_head)
        if self._consumer is not None:
            inner.deliver_body(self._consumer)
        return inner

    # -- IExchange -------------------------------------------------------------------------

    @property
    def response(self) -> ResponseHead | None:
        return self.inner.response if self.inner is not None else None

    @property
    def sent_anything(self) -> bool:
        return self.inner is not None and self.inner.sent_anything

    @property
    def body_wanted(self) -> bool:
        return self.inner is not None and self.inner.body_wanted

    @property
    def finished(self) -> bool:
        return self.inner.finished if self.inner is not None else self._finished

    def _cancel(self, _d: Deferred[ResponseHead]) -> None:
        self.abort(CancelledError("request cancelled"))

    def write(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.write(data)
        elif data:
            self._writes.append(bytes(data))

    def finish_body(self, trailers: RawHeaders | None = None) -> None:
        if self.inner is not None:
            self.inner.finish_body(trailers)
        elif self._finish is None:
            self._finish = (trailers,)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.inner is not None:
            self.inner.registerProducer(producer, streaming)
            return
        self._producer = producer
        self._streaming = streaming
        if streaming:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        if self.inner is not None:
            self.inner.unregisterProducer()
        self._producer = None

    def deliver_body(self, consumer: Any) -> None:
        if self.inner is not None:
            self.inner.deliver_body(consumer)
        elif self._finished:
            consumer.body_finished(self._done_reason)
        else:
            self._consumer = consumer

    def switch_protocol(self, protocol: Any) -> None:
        if self.inner is None:
            raise RuntimeError("switch_protocol is only valid after a 101 response")
        self.inner.switch_protocol(protocol)

    def abort(self, reason: BaseException | None = None) -> None:
        if self.inner is not None:
            self.inner.abort(reason)
            return
        if self._finished:
            return
        self._finished = True
        self.host.forget_waiter(self)  # type: ignore[arg-type]
        failure = Failure(reason or CancelledError("exchange aborted"))
        self._done_reason = failure
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
        if self._head_result is _PENDING:
            self._report_head(failure)

    def pauseProducing(self) -> None:
        if self.inner is not None:
            self.inner.pauseProducing()

    def resumeProducing(self) -> None:
        if self.inner is not None:
            self.inner.resumeProducing()

    def stopProducing(self) -> None:
        self.abort(CancelledError("response consumer stopped"))


def _as_exchange(work: Any, http2: bool) -> Any:
    """What a connection of this pool runs: a waiting ``AlpnExchange`` bound to its protocol,
    or an exchange of the other protocol (a transparent re-send) bound again."""
    if isinstance(work, AlpnExchange):
        return work.bind(http2)
    owner = getattr(work, "alpn_owner", None)
    if owner is not None and isinstance(work, H2Exchange) != http2:
        return owner.bind(http2)
    return work


@implementer(IUpstreamConnection)
class AlpnH1Connection(HTTP11Connection):
    """A TLS connection offering ``h2, http/1.1``: HTTP/1.1 unless the handshake picked h2."""

    replaced_by: AlpnH2Connection | None = None

    def handshakeCompleted(self) -> None:
        if getattr(self.transport, "negotiatedProtocol", None) != b"h2":
            super().handshakeCompleted()
            return
        # HTTP/2 from now on: the TLS transport delivers to an HTTP/2 connection instead.
        self._stop_read_timer()
        self.connected = False
        tls = self.transport
        h2conn = self.replaced_by = AlpnH2Connection(self.pool, self.host)  # type: ignore[arg-type]
        h2conn.handshake_ok = True
        tls.wrappedProtocol = h2conn
        h2conn.makeConnection(tls)
        self.transport = None
        dial, self.dial = self.dial, None
        if dial is not None:
            dial.handshake_done(h2conn)

    def start(self, exchange: Any) -> None:
        super().start(_as_exchange(exchange, False))


@implementer(IUpstreamConnection)
class AlpnH2Connection(HTTP2Connection):
    """The HTTP/2 connection an ``AlpnH1Connection`` became after ALPN picked ``h2``."""

    def start(self, exchange: Any) -> None:
        super().start(_as_exchange(exchange, True))


class AlpnPool(ConnectionPool):
    """HTTPS connections offering ALPN ``h2, http/1.1``, each used as the upstream chose.

    Same options as ``ConnectionPool``; the HTTP/1.1 ones (read/write timeouts, 100-continue,
    header size) apply to its HTTP/1.1 connections, the shared ones to both.
    """

    def __init__(self, reactor: Any, **options: Any) -> None:
        super().__init__(reactor, **options)
        self.connection_factory = AlpnH1Connection

    def request(  # type: ignore[override]
        self,
        address: UpstreamAddress,
        method: bytes,
        target: bytes,
        headers: RawHeaders,
        body_length: int | None = None,
        on_informational: Callable[[ResponseHead], None] | None = None,
        tls: Any = None,
    ) -> AlpnExchange:
        """Send a request over TLS (``tls``: a creator offering ``h2, http/1.1``)."""
        key = (address.key, tls)
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = HostPool(self, key, address, tls)
        exchange = AlpnExchange(self, host, address, method, target, headers, body_length,
                                on_informational)
        host.submit(exchange)  # type: ignore[arg-type]
        return exchange
