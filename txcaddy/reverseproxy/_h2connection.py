"""The HTTP/2 cleartext (h2c, prior knowledge) upstream client on the sans-IO ``h2`` library.

Caddy's ``http`` transport with ``"h2c"`` in ``versions`` (Caddyfile ``h2c://host:port``)
sends every plain-HTTP request over HTTP/2 with prior knowledge, without an HTTP/1.1 fallback
(``modules/caddyhttp/reverseproxy/httptransport.go``: ``RoundTrip`` hands ``http`` requests to
an ``http2.Transport`` with ``AllowHTTP``).  Here one TCP connection (``HTTP2Connection``)
carries many exchanges (``H2Exchange``), one stream each; it shares the protocol-blind pool
(``_pool``): while it has a free stream slot (the peer's ``MAX_CONCURRENT_STREAMS``) it sits in
its host's ``shared`` list, and it goes to the idle stack once its last stream ended.

Flow control is the backpressure: request body bytes go out only as far as the upstream's
windows allow (the body's producer is paused meanwhile), and response bytes are acknowledged
(``acknowledge_received_data``) only as the exchange's consumer takes them.  Trailers pass
both ways (gRPC's ``grpc-status``).  A stream the upstream refused (``REFUSED_STREAM``, or
above a GOAWAY's last stream id) never reached it: it fails with ``StreamRefused``, a
``DialError``, so the handler may retry it like a failed dial.

Requests that find no connection with room wait for one being dialled (``H2Pool.dial_riders``,
as Go's http2 pool dials once per address) instead of dialling one each.  The hot path avoids
``h2``'s generic machinery where it costs most and does the same work (``_ClientConnection``):
request HEADERS/DATA are written as bytes, response fields are checked in one pass, ended
streams leave ``h2``'s table at once (``_h2client``); docs/performance.md has the measurements.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from h2.config import H2Configuration
from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import (
    ProtocolError,
    StreamClosedError,
)
from h2.settings import SettingCodes
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._twisted import send_now
from txcaddy.interfaces import IUpstreamConnection
from txcaddy.reverseproxy._dial import Dial, UpstreamAddress
from txcaddy.reverseproxy._exchange import CHUNKED, Exchange, RawHeaders, ResponseHead
from txcaddy.reverseproxy._h2client import _ClientConnection, h2_request_headers
from txcaddy.reverseproxy._pool import SURPLUS_LINGER, HostPool, PooledConnection, UpstreamPool
from txcaddy.reverseproxy.errors import (
    DialError,
    ResponseHeaderTimeout,
    UpstreamConnectionLost,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamWriteTimeout,
)

_log = Logger(namespace="txcaddy.reverseproxy")

#: Streams assumed before the upstream's SETTINGS arrive (Go's http2 client: 100).
INITIAL_MAX_STREAMS = 100
#: Streams used when the upstream sets no limit (Go's http2 client: 1000).
UNLIMITED_MAX_STREAMS = 1000
#: Our receive window per stream and the connection's (bytes the upstream may send unread).
STREAM_WINDOW = 1 << 20
CONNECTION_WINDOW = 16 << 20



class StreamRefused(DialError):
    """The upstream refused the stream (REFUSED_STREAM, or above a GOAWAY's last stream id).

    Nothing of the request was processed, so it counts as a dial error for the retry rules.
    """


class H2Exchange(Exchange):
    """One request/response on a stream of an ``HTTP2Connection`` (an ``IExchange``).

    The head callbacks, ``head``, ``_fail`` and ``_succeed`` are the HTTP/1.1 exchange's; the
    body goes through the stream's flow-control windows instead of a byte stream.
    """

    def __init__(self, pool: H2Pool, host: HostPool | None, request_headers: RawHeaders,
                 body_length: int | None, method: bytes,
                 on_informational: Callable[[ResponseHead], None] | None) -> None:
        super().__init__(pool, host, b"", body_length, method, on_informational)  # type: ignore[arg-type]
        self._pending = []
        self.request_headers = request_headers
        self.stream_id: int | None = None
        self._h2conn: HTTP2Connection | None = None
        self._outbox: deque[bytes] = deque()  # request body the upstream's window held back
        self._end_pending = self.body_done  # the body is complete: END_STREAM once sent
        self._end_sent = False
        self._trailers_out: RawHeaders | None = None
        self._producer_paused = False
        self._pumping = False
        self._inbox: deque[tuple[bytes, int]] = deque()  # (data, flow-controlled length)
        self._trailers_in: RawHeaders | None = None
        self._ended = False  # the upstream ended the stream
        self._paused = False  # the consumer asked for no more now
        self._header_timer: Any = None

    # -- request ---------------------------------------------------------------------------

    @property
    def body_wanted(self) -> bool:
        """The stream is open and the upstream's window took everything written so far."""
        return self._h2conn is not None and not self.finished and not self._outbox

    def write(self, data: bytes) -> None:
        """Queue request body bytes; they go out as the flow-control windows allow."""
        if self.body_done or not data or self.finished:
            return
        if self.body_length != CHUNKED and self.body_length is not None:
            if len(data) > self.body_remaining:
                raise ValueError("request body longer than its Content-Length")
            self.body_remaining -= len(data)
            if self.body_remaining == 0:
                self.body_done = self._end_pending = True
        self._outbox.append(bytes(data))
        self._pump_body()

    def finish_body(self, trailers: RawHeaders | None = None) -> None:
        """End the request body (with trailer fields, sent as a final HEADERS frame)."""
        if self.body_done:
            return
        if self.body_length != CHUNKED and self.body_remaining > 0:
            self.abort(UpstreamProtocolError("request body shorter than its Content-Length"))
            return
        self.body_done = self._end_pending = True
        self._trailers_out = [(n.lower(), v) for n, v in trailers or ()] or None
        self._pump_body()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._body_producer = producer
        self._body_streaming = streaming
        if streaming and not self.body_wanted:
            producer.pauseProducing()
            self._producer_paused = self._h2conn is not None

    def unregisterProducer(self) -> None:
        self._body_producer = None
        self._producer_paused = False

    def _attach_stream(self, conn: HTTP2Connection, stream_id: int) -> None:
        """The connection opened our stream: send what was written and start the body."""
        self._h2conn = conn
        self.stream_id = stream_id
        self.sent_anything = True
        self._pump_body()
        producer = self._body_producer
        if producer is not None and self._body_streaming and not self._outbox \
                and not self.finished:
            producer.resumeProducing()

    def _pump_body(self) -> None:
        """Send queued body bytes within the windows; pause or resume the body's producer."""
        conn = self._h2conn
        sid = self.stream_id
        if conn is None or sid is None or self._pumping or self.finished or self._end_sent:
            return
        h2 = conn.h2
        outbox = self._outbox
        self._pumping = True
        try:
            while outbox:
                room = min(h2.local_flow_control_window(sid), h2.max_outbound_frame_size)
                if room <= 0:
                    break
                chunk = outbox[0]
                if len(chunk) <= room:
                    outbox.popleft()
                    # The last piece of a body without trailers carries END_STREAM itself.
                    end = not outbox and self._end_pending and not self._trailers_out
                    h2.send_request_data(sid, chunk, end)
                    if end:
                        self._end_sent = True
                        self._request_written()
                else:
                    outbox[0] = chunk[room:]
                    h2.send_request_data(sid, chunk[:room], False)
            if not outbox and self._end_pending and not self._end_sent:
                self._end_sent = True
                if self._trailers_out:
                    h2.send_headers(sid, self._trailers_out, end_stream=True)
                else:
                    h2.end_stream(sid)
                self._request_written()
        except StreamClosedError:
            outbox.clear()  # the upstream closed or reset the stream: the rest is not wanted
        finally:
            self._pumping = False
        conn.flush()
        producer = self._body_producer
        if producer is not None and self._body_streaming:
            if outbox and not self._producer_paused:
                self._producer_paused = True
                producer.pauseProducing()
            elif not outbox and self._producer_paused:
                self._producer_paused = False
                producer.resumeProducing()

    def _request_written(self) -> None:
        timeout = self.pool.response_header_timeout
        if timeout and self.response is None and self._header_timer is None:
            self._header_timer = self.pool.reactor.callLater(timeout, self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        self.abort(ResponseHeaderTimeout("timeout awaiting response headers"))

    def _stop_header_timer(self) -> None:
        timer, self._header_timer = self._header_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    # -- response --------------------------------------------------------------------------

    def _got_headers(self, headers: RawHeaders, informational: bool, ended: bool = False) -> None:
        status = 0
        fields: RawHeaders = []
        has_length = False
        for name, value in headers:
            if name[:1] == b":":
                if name == b":status":
                    status = int(value)
            else:
                fields.append((name, value))
                has_length = has_length or name == b"content-length"
        if ended and not has_length and not informational:
            # HEADERS with END_STREAM (gRPC's Trailers-Only): a known empty body, as Go's client
            # reports it (ContentLength 0), so the proxy does not flush a head early and the
            # client gets one HEADERS frame that ends the stream, with grpc-status in it.
            fields.append((b"content-length", b"0"))
        head = ResponseHead(b"HTTP/2.0", status, b"", fields)
        if informational:
            if self.on_informational is not None and status != 101:
                self.on_informational(head)
            return
        self._stop_header_timer()
        self.response = head
        self._report_head(head)

    def _got_data(self, data: bytes, flow_length: int) -> None:
        self._inbox.append((data, flow_length))
        self._drain()

    def _got_trailers(self, trailers: RawHeaders) -> None:
        self._trailers_in = trailers

    def _got_end(self) -> None:
        self._ended = True
        self._drain()

    def _drain(self) -> None:
        """Give the consumer what it can take now; acknowledge exactly that to the upstream."""
        conn = self._h2conn
        inbox = self._inbox
        acked = 0
        while inbox and self._consumer is not None and not self._paused and not self.finished:
            data, flow_length = inbox.popleft()
            acked += flow_length
            if data:
                self._consumer.body_data(data)
        if conn is not None and acked:
            conn.acknowledge(self.stream_id, acked)
        if self._ended and not inbox and self._consumer is not None and not self.finished:
            trailers, self._trailers_in = self._trailers_in, None
            if trailers:
                self._consumer.body_trailers(trailers)
            if conn is not None:
                conn.stream_done(self)
            self._body_producer = None
            self._succeed()

    def deliver_body(self, consumer: Any) -> None:
        """Feed the response body (kept bytes first) to ``consumer``, an ``IBodyConsumer``."""
        if self.finished:
            consumer.body_finished(self._done_reason)
            return
        self._consumer = consumer
        self._drain()

    def switch_protocol(self, protocol: Any) -> None:
        raise RuntimeError("an HTTP/2 stream cannot switch protocols (no 101 over HTTP/2)")

    def copy_body_to(self, response: Any) -> None:
        """Not done: its body arrives in DATA frames, not as the socket's bytes."""

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        if self._paused:
            self._paused = False
            self._drain()

    def abort(self, reason: BaseException | None = None) -> None:
        """Give up: the stream is reset (CANCEL), or the waiting request forgotten."""
        if self.finished:
            return
        exc = reason or CancelledError("exchange aborted")
        conn = self._h2conn
        if conn is not None:
            conn.reset(self, ErrorCodes.CANCEL)
        else:
            self._forget()
        self._fail(Failure(exc))

    def _cancel(self, _d: Deferred) -> None:
        self.abort(CancelledError("request cancelled"))

    def _fail(self, failure: Failure) -> None:
        self._stop_header_timer()
        self._outbox.clear()
        super()._fail(failure)

    def _rewind_refused(self) -> bool:
        """Make a refused bodyless request ready to go on another stream, once (Go's http2
        client retries a refused stream the upstream never processed); False if it may not."""
        if self.retried or (self.body_length is not None and self.body_length != 0) \
                or self.response is not None or self.finished:
            return False
        self.retried = True
        self._stop_header_timer()
        self._h2conn = None
        self.stream_id = None
        self._end_sent = False
        self.sent_anything = False
        self._inbox.clear()
        return True

    def _unacknowledged(self) -> int:
        """Flow-controlled bytes received but not given to the consumer (dropped on reset)."""
        total = sum(length for _, length in self._inbox)
        self._inbox.clear()
        return total


@implementer(IUpstreamConnection)
class HTTP2Connection(PooledConnection):
    """One h2c connection to an upstream: many exchanges, one stream each.

    The pool sees it like an HTTP/1.1 connection with room for more than one exchange: it
    offers itself (``host.connection_available``) while it has a free stream slot, and reports
    ``host.connection_done`` once its last stream ended (idle) or when it is gone (its slot).
    """

    transport: Any = None
    read_timer: Any = None  # read_timeout: reset by every read, fires after that long idle
    write_timer: Any = None  # write_timeout: runs while the transport refuses more bytes

    def __init__(self, pool: H2Pool, host: HostPool) -> None:
        self.pool = pool
        self.host = host
        self.h2 = _ClientConnection(H2Configuration(
            client_side=True, header_encoding=None,
            validate_inbound_headers=False, normalize_inbound_headers=False))
        self.streams: dict[int, H2Exchange] = {}
        self.settings_received = False
        self.going_away = False
        self.released = False  # the pool's slot for this connection was given back
        self.idle_timer: Any = None
        self.idle_since: float | None = None
        self.dial: Dial | None = None
        self.handshake_ok = False
        self.lost_reason: Failure | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        self.prepare_socket(self.pool)
        h2 = self.h2
        h2.initiate_connection()
        # Settings change through update_settings *after* the preface: setting
        # local_settings first advertises the old window and stalls streams at 65,535 bytes.
        h2.update_settings({SettingCodes.ENABLE_PUSH: 0,
                            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW})
        h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        pool = self.pool
        if pool.read_timeout:
            self.read_timer = pool.reactor.callLater(pool.read_timeout, self._read_timed_out)
        if pool.write_timeout and self.transport is not None:
            self.transport.registerProducer(self, True)  # to see when it stops taking bytes
        self.flush()

    # -- read / write deadlines (Go sets them on every Read and Write of the connection) ----

    def _read_timed_out(self) -> None:
        """Nothing came for ``read_timeout``: Go's read loop fails, and every stream with it."""
        self.read_timer = None
        self._fail_all(UpstreamReadTimeout(
            f"read from {self.host.address}: i/o timeout after {self.pool.read_timeout}s"))

    def pauseProducing(self) -> None:
        """The transport's buffer is full: a write is blocked, ``write_timeout`` runs."""
        if self.write_timer is None and self.connected:
            self.write_timer = self.pool.reactor.callLater(
                self.pool.write_timeout, self._write_timed_out)

    def resumeProducing(self) -> None:
        self._stop_write_timer()

    def stopProducing(self) -> None:
        self._stop_write_timer()

    def _stop_write_timer(self) -> None:
        timer, self.write_timer = self.write_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _write_timed_out(self) -> None:
        self.write_timer = None
        self._fail_all(UpstreamWriteTimeout(
            f"write to {self.host.address}: i/o timeout after {self.pool.write_timeout}s"))

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None:
            send_now(self.transport, data)  # sent with the rest of this reactor turn's writes

    def max_streams(self) -> int:
        if not self.settings_received:
            return INITIAL_MAX_STREAMS
        limit = self.h2.remote_settings.max_concurrent_streams
        return UNLIMITED_MAX_STREAMS if limit > UNLIMITED_MAX_STREAMS else limit

    def has_room(self) -> bool:
        """Whether another stream may be opened now."""
        limit = self.max_streams()
        busy = len(self.streams)
        h2 = self.h2
        if len(h2.streams) >= limit:
            # h2 may count a stream we are done with as open still; walking its streams
            # (which also drops the closed ones) is needed only when the count could matter.
            busy = max(busy, h2.open_outbound_streams)
        return self.connected and not self.going_away and busy < limit

    def start(self, exchange: H2Exchange) -> None:  # type: ignore[override]
        """Open a stream for ``exchange`` (the pool gives it only while there is room)."""
        self.idle_since = None
        if exchange.finished:
            self._after_stream()
            return
        if not self.has_room():
            # Lost or told to go away between the offer and now: nothing was sent.
            exchange._fail(Failure(StreamRefused(
                f"{self.host.address}: the HTTP/2 connection takes no new streams")))
            self._after_stream()
            return
        h2 = self.h2
        sid = h2.get_next_available_stream_id()
        self.streams[sid] = exchange
        end = exchange._end_pending and not exchange._outbox and not exchange._trailers_out
        fields = exchange.request_headers
        h2.send_request_headers(sid, fields, end, fields[0][1], fields[2][1])
        if end:
            exchange._end_sent = True
            exchange._request_written()
        exchange._attach_stream(self, sid)
        self.flush()
        if not exchange.finished and self.has_room() and self.streams:
            self.host.connection_available(self)

    def acknowledge(self, stream_id: int | None, length: int) -> None:
        """The consumer took ``length`` flow-controlled bytes: let the upstream send more."""
        if stream_id is not None and self.connected:
            self.h2.acknowledge_received_data(length, stream_id)
            self.flush()

    def reset(self, exchange: H2Exchange, code: ErrorCodes) -> None:
        """Reset ``exchange``'s stream (the client went away, a timeout)."""
        sid = exchange.stream_id
        if sid is None or self.streams.get(sid) is not exchange:
            return
        unacked = exchange._unacknowledged()
        exchange._end_sent = True
        if self.connected:
            try:
                self.h2.reset_stream(sid, code)
            except (StreamClosedError, ProtocolError):
                pass
            if unacked:
                self.h2.acknowledge_received_data(unacked, sid)
            self.flush()
        self.stream_done(exchange)

    def stream_done(self, exchange: H2Exchange) -> None:
        """``exchange``'s stream is over: free its slot in the pool's eyes."""
        sid = exchange.stream_id
        if sid is not None and self.streams.get(sid) is exchange:
            del self.streams[sid]
            if exchange._body_producer is not None:
                exchange._body_producer = None
            if not exchange._end_sent and self.connected:
                # The response ended before the request body: the upstream wants no more.
                exchange._end_sent = True
                try:
                    self.h2.reset_stream(sid, ErrorCodes.CANCEL)
                except (StreamClosedError, ProtocolError):
                    pass
                self.flush()
            self.h2.forget_closed(sid)
            self._after_stream()

    def _after_stream(self) -> None:
        """A stream ended (or was never opened): tell the pool what the connection can do."""
        if not self.connected or self.released:
            return
        if self.streams:
            if self.has_room():
                self.host.connection_available(self)
            return
        if self.going_away or not self.pool.keep_alive:
            self._release_and_close()
            return
        self.host.connection_done(self, reusable=True)

    def _release_and_close(self) -> None:
        self.released = True
        self.host.connection_done(self, reusable=False)
        if self.transport is not None:
            self.transport.loseConnection()

    def close(self) -> None:
        """Say GOAWAY and close once what was written is sent (the pool retires it)."""
        if self.connected:
            try:
                self.h2.close_connection()
            except ProtocolError:
                pass
            self.flush()
        if self.transport is not None:
            self.transport.loseConnection()


    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost_reason = reason
        timer, self.read_timer = self.read_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        self._stop_write_timer()
        self.closed()
        streams, self.streams = self.streams, {}
        for exchange in streams.values():
            exchange._fail(Failure(UpstreamConnectionLost(
                f"upstream connection lost: {reason.getErrorMessage()}")))
        if self.released:
            return
        self.released = True
        host = self.host
        if self in host.idle:
            host.idle_lost(self)
        else:
            host.connection_done(self, reusable=False)

    def _fail_all(self, exc: Exception) -> None:
        """A connection error: every stream fails with ``exc`` and the connection is dropped."""
        streams, self.streams = self.streams, {}
        for exchange in streams.values():
            exchange._fail(Failure(exc))
        if self.transport is not None:
            self.transport.abortConnection()

    # -- events ----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.read_timer is not None:
            self.read_timer.reset(self.pool.read_timeout)
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:
            self.flush()  # the GOAWAY h2 queued
            self._fail_all(UpstreamProtocolError(f"HTTP/2 protocol error from upstream: {exc}"))
            return
        streams = self.streams
        for event in events:
            if isinstance(event, DataReceived):
                exchange = streams.get(event.stream_id)
                if exchange is not None:
                    exchange._got_data(event.data, event.flow_controlled_length)
                elif event.flow_controlled_length:
                    self.h2.acknowledge_received_data(event.flow_controlled_length,
                                                      event.stream_id)
            elif isinstance(event, ResponseReceived):
                exchange = streams.get(event.stream_id)
                if exchange is not None:
                    exchange._got_headers(event.headers, False, event.stream_ended is not None)
            elif isinstance(event, StreamEnded):
                exchange = streams.get(event.stream_id)
                if exchange is not None:
                    exchange._got_end()
            elif isinstance(event, TrailersReceived):
                exchange = streams.get(event.stream_id)
                if exchange is not None:
                    exchange._got_trailers(event.headers)
            elif isinstance(event, InformationalResponseReceived):
                exchange = streams.get(event.stream_id)
                if exchange is not None:
                    exchange._got_headers(event.headers, True)
            elif isinstance(event, StreamReset):
                self._stream_reset(event.stream_id, event.error_code)
            elif isinstance(event, WindowUpdated):
                if event.stream_id:
                    exchange = streams.get(event.stream_id)
                    if exchange is not None:
                        exchange._pump_body()
                else:
                    self._pump_all()
            elif isinstance(event, RemoteSettingsChanged):
                self.settings_received = True
                self._pump_all()
                if self.streams:
                    if self.has_room():
                        self.host.connection_available(self)
                    else:  # a lower MAX_CONCURRENT_STREAMS than assumed: full already
                        self.host.connection_unavailable(self)
            elif isinstance(event, ConnectionTerminated):
                self._go_away(event.last_stream_id or 0, event.error_code)
        self.flush()

    def _pump_all(self) -> None:
        for exchange in list(self.streams.values()):
            exchange._pump_body()

    def _stream_reset(self, stream_id: int, code: Any) -> None:
        exchange = self.streams.get(stream_id)
        if exchange is None:
            return
        exchange._unacknowledged()  # h2 gives the connection window back for a reset stream
        del self.streams[stream_id]
        self.h2.forget_closed(stream_id)
        if code == ErrorCodes.REFUSED_STREAM:
            if exchange._rewind_refused():
                # Refused before it was processed (often: more streams than the upstream's
                # SETTINGS allow, sent before they arrived): send it again, like Go.
                self._after_stream()
                self.host.submit(exchange)
                return
            error: Exception = StreamRefused(f"{self.host.address}: upstream refused the stream")
        else:
            name = getattr(code, "name", code)
            error = UpstreamConnectionLost(f"upstream reset the stream: {name}")
        exchange._fail(Failure(error))
        self._after_stream()

    def _go_away(self, last_stream_id: int, code: Any) -> None:
        """GOAWAY: streams above ``last_stream_id`` were never processed; no new ones."""
        self.going_away = True
        host = self.host
        host.connection_unavailable(self)
        retry: list[H2Exchange] = []
        for sid in [s for s in self.streams if s > last_stream_id]:
            exchange = self.streams.pop(sid)
            if exchange._rewind_refused():
                retry.append(exchange)  # never processed: sent again on another connection
                continue
            exchange._fail(Failure(StreamRefused(
                f"{host.address}: upstream going away (GOAWAY {getattr(code, 'name', code)})")))
        if self.streams:
            # h2 closes its state machine on a received GOAWAY, refusing every later frame;
            # the streams the upstream still answers need it open (we start no new ones).
            self.h2.state_machine.state = ConnectionState.CLIENT_OPEN
        elif not self.released:
            if self in host.idle:
                self.released = True
                host.idle_lost(self)
                if self.transport is not None:
                    self.transport.loseConnection()
            else:
                self._release_and_close()
        if retry:
            # The host may have been forgotten with its last connection: it is in use again.
            live = host.pool._hosts.setdefault(host.key, host)
            for exchange in retry:
                live.submit(exchange)


class H2Pool(UpstreamPool):
    """The pool with HTTP/2 (h2c) connections: one request per stream, many per connection."""

    def __init__(
        self,
        reactor: Any,
        *,
        response_header_timeout: float | None = None,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        keep_alive: bool = True,
        max_idle_per_host: int | None = 32,
        idle_timeout: float | None = 120.0,
        max_conns_per_host: int = 0,
        dial_timeout: float | None = 3.0,
        max_idle_conns: int = 0,
        tcp_keepalive: float | None = None,
        read_size: int | None = None,
        endpoint_factory: Callable[[UpstreamAddress], Any] | None = None,
        surplus_linger: float = SURPLUS_LINGER,
    ) -> None:
        super().__init__(
            reactor,
            connection_factory=HTTP2Connection,
            max_idle_per_host=max_idle_per_host,
            idle_timeout=idle_timeout,
            max_conns_per_host=max_conns_per_host,
            dial_timeout=dial_timeout,
            max_idle_conns=max_idle_conns,
            tcp_keepalive=tcp_keepalive,
            read_size=read_size,
            endpoint_factory=endpoint_factory,
            surplus_linger=surplus_linger,
        )
        self.response_header_timeout = response_header_timeout
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.keep_alive = keep_alive
        # Requests that miss a connection wait for the one being dialled, up to the streams
        # it is assumed to take (one of them is the dialling request's).
        self.dial_riders = INITIAL_MAX_STREAMS - 1

    def request(
        self,
        address: UpstreamAddress,
        method: bytes,
        target: bytes,
        headers: RawHeaders,
        body_length: int | None = None,
        on_informational: Callable[[ResponseHead], None] | None = None,
    ) -> H2Exchange:
        """Send a request on a stream (same arguments as ``ConnectionPool.request``)."""
        request_headers = h2_request_headers(address, method, target, headers, body_length)
        key = address.key
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = HostPool(self, key, address)
        exchange = H2Exchange(self, host, request_headers, body_length, method, on_informational)
        host.submit(exchange)
        return exchange
