"""The HTTP/2 server protocol, on the sans-IO ``h2`` library.

One ``HTTP2Protocol`` per connection (TLS with ALPN ``h2``, or cleartext h2c
by prior knowledge or ``Upgrade: h2c``). Each stream becomes the same ``Request`` the HTTP/1.1
server makes and an ``H2Response``, handed to ``server.handle`` at header
time, so everything above the protocol is shared (DESIGN.md §3, §5b).

The SETTINGS are Go's (``x/net/http2/server.go``, as Caddy serves them; see
``shared/spec/wave2-caddy-facts.md`` §5.2): 250 concurrent streams, 1 MiB
stream and connection windows, 1 MiB frames, a 1 MiB + 320 header list. They
are changed with ``update_settings()`` after ``initiate_connection()``:
changing ``local_settings`` first advertises the old values and deadlocks
streams at 65,535 bytes.

Flow control is the backpressure, both ways:

* request bodies: received DATA is acknowledged (the peer's window reopened)
  only once the body's consumer has taken it and is not paused, so a slow
  upstream stops the client while at most one window per stream is kept;
* response bodies: what the peer's window does not admit is queued on the
  stream, and the response's producer is paused while more than
  ``SEND_BUFFER_LIMIT`` waits (or while the transport itself is paused), until
  WINDOW_UPDATE lets it drain.

A graceful stop (``close_when_idle``) sends GOAWAY naming the last stream
taken; open streams finish, then the connection closes. ``h2``'s own
``close_connection`` would close the state machine at once, so that GOAWAY
frame is written here with ``hyperframe``.

Abuse limits, per connection, after Go's server (and nginx for resets); see
``docs/http2.md``. A connection that breaks one gets GOAWAY (ENHANCE_YOUR_CALM
for floods, PROTOCOL_ERROR for a malformed or missing preface) and is closed,
aborted if the peer does not read it within ``GOAWAY_TIMEOUT``:

* rapid reset (CVE-2023-44487): more than ``RAPID_RESET_LIMIT`` streams reset
  by the client before their response finished within ``RAPID_RESET_WINDOW``;
* control-frame floods: more than ``MAX_QUEUED_CONTROL_FRAMES`` PING/SETTINGS
  acknowledgements queued while the client is not reading (the transport
  paused us), and more than ``EMPTY_DATA_LIMIT`` empty DATA frames without
  END_STREAM within ``EMPTY_DATA_WINDOW``;
* CONTINUATION floods (CVE-2024-27316): a header block over
  ``MAX_HEADER_LIST_SIZE`` encoded bytes before END_HEADERS (``h2`` itself
  stops at 64 CONTINUATION frames per block);
* no preface and SETTINGS within ``PREFACE_TIMEOUT``.

* a HEADERS frame over MAX_CONCURRENT_STREAMS, counting handlers still running
  for closed streams, resets only that stream (``_ServerConnection``);
* a stream whose queued response has not moved for ``idle_timeout`` is reset.

``Upgrade: h2c`` is taken by the HTTP/1.1 protocol, which hands the connection
and the request (as stream 1) to an ``HTTP2Protocol`` made by
``HTTPFactory.upgrade_h2c`` (Go's ``x/net/http2/h2c``; ``_httpfactory``).

The wire-level pieces (``h2`` subclasses, frames, HPACK) are in ``_h2frames``, field
checks in ``_h2fields``, a stream and its response in ``_h2stream``.

Not here yet: extended CONNECT (WebSocket over h2), server push.
"""


from __future__ import annotations

import base64
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.exceptions
from h2.errors import ErrorCodes
from hyperframe.frame import GoAwayFrame
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._twisted import no_delay
from txcaddy.http._budget import _Budget
from txcaddy.http._h1 import _unmapped
from txcaddy.http._h2fields import (
    _CONNECTION_SPECIFIC,
    _fields,
    _malformed_trailers,
    _request_fields,
)
from txcaddy.http._h2frames import (
    CONNECTION_WINDOW,
    INITIAL_WINDOW_SIZE,
    MAX_CONCURRENT_STREAMS,
    MAX_FRAME_SIZE,
    MAX_HEADER_LIST_SIZE,
    PREFACE,  # noqa: F401  # re-exported: this module was its home (tests)
    IndexedHeaderTable,
    _decoded_field,  # noqa: F401  # re-exported: this module was its home (tests)
    _FrameBuffer,
    _ServerConnection,
)
from txcaddy.http._h2stream import H2Response, _Stream
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request, RequestBody
from txcaddy.interfaces import IHTTPServer, IServerConnection
from txcaddy.tls.context import TLSState

# Response bytes queued on one stream beyond what the peer's window admits
# before the response's producer is paused.
SEND_BUFFER_LIMIT = 64 * 1024

# Abuse limits (module docstring). Go queues at most 10,000 control frames;
# its preface timeout is 10 s, and it waits 1 s for a GOAWAY to go out.
MAX_QUEUED_CONTROL_FRAMES = 10_000
RAPID_RESET_LIMIT = 2 * MAX_CONCURRENT_STREAMS
RAPID_RESET_WINDOW = 10.0
EMPTY_DATA_LIMIT = 1_000
EMPTY_DATA_WINDOW = 10.0
PREFACE_TIMEOUT = 10.0
GOAWAY_TIMEOUT = 1.0


@implementer(IPushProducer, IServerConnection)
class HTTP2Protocol(Protocol):
    """An HTTP/2 connection to one client.

    @ivar closing: a graceful stop began (GOAWAY sent); new streams are refused.
    """

    log = Logger()
    transport: Any

    def __init__(
        self, server: IHTTPServer, clock: Any = None, tls: Any = None, peer: Any = None,
        upgrade: tuple[Request, bytes] | None = None,
    ) -> None:
        """``upgrade``: the HTTP/1.1 request of an ``Upgrade: h2c`` and its decoded
        ``HTTP2-Settings``; the connection starts with that request as stream 1."""
        self.server = server
        self._upgrade = upgrade
        self.reactor = clock
        self.clock = clock.seconds if clock is not None else time.time
        self.tls = tls
        self._peer = peer
        self.closing = False
        self._streams: dict[int, _Stream] = {}
        self._last_stream = 0  # the highest stream id taken
        self._transport_paused = False
        self._remote: tuple[str, int] = ("", 0)
        self._local: tuple[str, int] | None = None
        self._idle_call: Any = None
        self._idle_since: float | None = None  # when the last stream ended; None while busy
        self._preface_call: Any = None
        self._abort_call: Any = None
        self._stall_call: Any = None
        self._abandoned = False  # GOAWAY for abuse sent: input is ignored
        self._abandoned_upgrade = False
        self._resets = _Budget(RAPID_RESET_LIMIT, RAPID_RESET_WINDOW)
        self._empty_data = _Budget(EMPTY_DATA_LIMIT, EMPTY_DATA_WINDOW)
        self._queued_control = 0  # PING/SETTINGS ACKs made while the transport is paused
        # Outbound fields come from _fields (lowercase names, no connection-specific fields):
        # h2 need not check and normalise them again. Inbound fields are checked in one pass
        # while the request is built (``_request_fields``, ``_malformed_trailers``): h2's
        # chain of generators cost ~7 % of the CPU of a proxied HTTP/2 request.
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None,
            validate_outbound_headers=False, normalize_outbound_headers=False,
            validate_inbound_headers=False, normalize_inbound_headers=False,
        )
        self.conn = _ServerConnection(config)
        self.conn.encoder.header_table = IndexedHeaderTable()
        self.conn.incoming_buffer = _FrameBuffer(server=True)

    # -- connection ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        no_delay(transport)
        peer, self._peer = self._peer, None
        if peer is None:
            peer = transport.getPeer()
        self._remote = (_unmapped(getattr(peer, "host", "") or ""), getattr(peer, "port", 0) or 0)
        if self.tls is None and ISSLTransport.providedBy(transport):
            # Chosen at the first bytes, after the handshake: the TLS state is final.
            self.tls = TLSState.from_connection(self.transport.getHandle())
        conn = self.conn
        upgrade, self._upgrade = self._upgrade, None
        if upgrade is None:
            conn.initiate_connection()
        else:
            try:
                conn.initiate_upgrade_connection(base64.urlsafe_b64encode(upgrade[1]))
            except (h2.exceptions.ProtocolError, hyperframe.exceptions.HyperframeError):
                upgrade = None  # settings h2 refuses (a window too large, ...): GOAWAY below
                self._abandoned_upgrade = True
        conn.update_settings({
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW_SIZE,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
        })
        conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        transport.registerProducer(self, True)
        self._write()
        self.server.connection_made(self)
        self._arm_idle_timer()
        if self.reactor is not None:
            self._preface_call = self.reactor.callLater(PREFACE_TIMEOUT, self._preface_timeout)
        if upgrade is not None:
            self._serve_upgraded(upgrade[0])
        elif self._abandoned_upgrade:
            self._abandon(ErrorCodes.PROTOCOL_ERROR, "invalid HTTP2-Settings in the h2c upgrade")

    def _serve_upgraded(self, original: Request) -> None:
        """Serve the request of an ``Upgrade: h2c`` as stream 1 (half-closed: its body was read)."""
        self._stop_idle_timer()
        self._last_stream = 1
        stream = _Stream(1, self)
        stream.remote_ended = True
        self._streams[1] = stream
        headers = Headers.from_raw([
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, values in original.headers.lists()
            if name.lower() not in _CONNECTION_SPECIFIC and name.lower() != "http2-settings"
            for value in values
        ])
        body = RequestBody(0, stream.body_drained, stream)
        stream.body = body
        request = Request(
            original.method,
            original.request_uri,
            headers,
            proto="HTTP/2.0",
            remote=self._remote,
            local=self._local if self._local is not None else self._local_address,
            tls=None,
            body=body,
            server=self.server,
            clock=self.clock,
        )
        stream.request = request
        response = H2Response(self, stream, original.method == "HEAD")
        stream.response = response
        body.finish()
        self.server.handle(request, response)
        self._write()

    def connectionLost(self, reason: Any = None) -> None:
        self._cancel_idle_timer()
        for call in (self._preface_call, self._abort_call, self._stall_call):
            if call is not None and call.active():
                call.cancel()
        self._preface_call = self._abort_call = self._stall_call = None
        error = getattr(reason, "value", reason)
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            self._lose_stream(stream, ConnectionError(f"client went away: {error}"))
        self.transport = None
        self.server.connection_lost(self)

    def _local_address(self) -> tuple[str, int]:
        local = self._local
        if local is None:
            host = self.transport.getHost() if self.transport is not None else None
            local = self._local = (getattr(host, "host", "") or "", getattr(host, "port", 0) or 0)
        return local

    @property
    def idle(self) -> bool:
        return not self._streams

    def close_when_idle(self) -> None:
        """Graceful stop: GOAWAY naming the last stream taken; close once open streams end."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        self._write()
        frame = GoAwayFrame(0)
        frame.last_stream_id = self._last_stream
        frame.error_code = 0
        self.transport.write(frame.serialize())
        if self.idle:
            self.transport.loseConnection()

    # -- idle timeout (one timer per connection, as in HTTP/1.1) -------------------------

    # The idle timer is lazy: a connection whose streams come and go (each request answered
    # before the next arrives) would otherwise schedule and cancel a timer per request. It
    # notes when the connection went idle, and the one timer checks that when it fires.

    def _arm_idle_timer(self) -> None:
        timeout = getattr(self.server, "idle_timeout", 0)
        if timeout and self.reactor is not None:
            self._idle_since = self.clock()
            if self._idle_call is None:
                self._idle_call = self.reactor.callLater(timeout, self._idle_timeout)

    def _stop_idle_timer(self) -> None:
        self._idle_since = None  # busy: the timer, if any, finds that when it fires

    def _cancel_idle_timer(self) -> None:
        self._idle_since = None
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def _idle_timeout(self) -> None:
        self._idle_call = None
        since = self._idle_since
        if since is None or self.transport is None:
            return  # busy: the next idle moment arms it again
        left = since + getattr(self.server, "idle_timeout", 0) - self.clock()
        if left > 0:
            self._idle_call = self.reactor.callLater(left, self._idle_timeout)
        elif self.idle:
            self.close_when_idle()

    # -- abuse limits -------------------------------------------------------------------

    def _preface_timeout(self) -> None:
        self._preface_call = None
        self._abandon(ErrorCodes.PROTOCOL_ERROR, "no preface and SETTINGS within the preface timeout")

    def _abandon(self, code: ErrorCodes, why: str) -> None:
        """Send GOAWAY with ``code`` and close; abort if the peer does not take it in time."""
        transport = self.transport
        if transport is None or self._abandoned:
            return
        self._write()
        self._abandoned = True  # nothing more is written but the GOAWAY
        self.closing = True
        self.log.info("HTTP/2 connection from {remote} closed ({code}): {why}",
                      remote=self._remote, code=code.name, why=why)
        frame = GoAwayFrame(0)
        frame.last_stream_id = self._last_stream
        frame.error_code = code
        transport.write(frame.serialize())
        transport.loseConnection()
        abort = getattr(transport, "abortConnection", None)
        if self.reactor is not None and abort is not None:
            self._abort_call = self.reactor.callLater(GOAWAY_TIMEOUT, abort)

    def _control_frame_queued(self) -> None:
        """A PING or SETTINGS ACK was queued: count it while the client is not reading."""
        if self._transport_paused:
            self._queued_control += 1
            if self._queued_control > MAX_QUEUED_CONTROL_FRAMES:
                self._abandon(ErrorCodes.ENHANCE_YOUR_CALM, "too many control frames queued")

    # -- reading ------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.transport is None or self._abandoned:
            return
        window = self.conn.inbound_flow_control_window
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            # h2 queued a GOAWAY with the error; send it and close.
            self.log.debug("HTTP/2 protocol error from {remote}: {error}", remote=self._remote, error=error)
            self._write()
            self._abandoned = True
            self.transport.loseConnection()
            return
        self._return_unseen_window(window, events)
        refused, self.conn.refused = self.conn.refused, 0
        now = self.clock()
        for _ in range(refused):
            # A refused stream cost us its header block and a reset, as a reset one does.
            if not self._resets.spend(now):
                self._abandon(ErrorCodes.ENHANCE_YOUR_CALM, "too many streams reset or refused (rapid reset)")
                return
        event: Any
        for event in events:
            kind = type(event)
            if kind is h2.events.RequestReceived:
                self._request_received(event)
            elif kind is h2.events.DataReceived:
                self._data_received(event)
            elif kind is h2.events.StreamEnded:
                self._stream_ended(event.stream_id)
            elif kind is h2.events.TrailersReceived:
                self._trailers_received(event)
            elif kind is h2.events.StreamReset:
                self._stream_reset(event)
            elif kind is h2.events.WindowUpdated:
                self._window_opened(event.stream_id)
            elif kind is h2.events.RemoteSettingsChanged:
                if self._preface_call is not None:
                    if self._preface_call.active():
                        self._preface_call.cancel()
                    self._preface_call = None
                self._control_frame_queued()
                self._window_opened(0)
            elif kind is h2.events.PingReceived:
                self._control_frame_queued()
            elif kind is h2.events.ConnectionTerminated:
                # The client's GOAWAY: h2 sends nothing more on this connection.
                self.closing = True
                self.transport.loseConnection()
                return
            if self.transport is None or self._abandoned:
                return
        self._write()
        if self.closing and self.idle and self.transport is not None:
            self.transport.loseConnection()

    def _return_unseen_window(self, window: int, events: list[Any]) -> None:
        """Give back the connection window that DATA on streams we already reset took.

        h2 counts such frames against the connection's window but reports no event for them
        (it answers them with RST_STREAM itself), so nothing would ever acknowledge them: a
        client still sending a body we stopped reading (a response sent before the whole
        request) would stall the connection once the 1 MiB window is gone.
        """
        seen = sum(event.flow_controlled_length for event in events if type(event) is h2.events.DataReceived)
        unseen = window - self.conn.inbound_flow_control_window - seen
        if unseen > 0:
            self.conn.increment_flow_control_window(unseen)

    def _request_received(self, event: Any) -> None:
        stream_id = event.stream_id
        if self.closing:
            self.conn.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        method, path, authority, scheme, pairs, error = _request_fields(event.headers)
        if error is not None:
            # A malformed request is a stream error (RFC 9113 §8.1.1), as in Go's server; it
            # costs us what a reset stream does, so it counts toward the rapid-reset budget.
            self.log.debug("HTTP/2 malformed request from {remote}: {error}", remote=self._remote, error=error)
            self.conn.reset_stream(stream_id, ErrorCodes.PROTOCOL_ERROR)
            if not self._resets.spend(self.clock()):
                self._abandon(ErrorCodes.ENHANCE_YOUR_CALM, "too many malformed or reset streams")
            return
        self._stop_idle_timer()
        self._last_stream = max(self._last_stream, stream_id)
        stream = _Stream(stream_id, self)
        self._streams[stream_id] = stream
        headers = Headers.from_raw(pairs)
        if authority:
            headers.set("Host", authority.decode("latin-1"))
        ended = event.stream_ended is not None
        stream.remote_ended = ended
        length_values = headers.values_of("Content-Length")
        length: int | None = 0 if ended else None
        if length_values and not ended:
            try:
                length = int(length_values[0])
            except ValueError:
                length = None
        body = RequestBody(length, stream.body_drained, stream)
        stream.body = body
        request = Request(
            method.decode("latin-1"),
            (path or authority).decode("latin-1"),  # CONNECT has no :path
            headers,
            proto="HTTP/2.0",
            remote=self._remote,
            local=self._local if self._local is not None else self._local_address,
            tls=self.tls,
            body=body,
            server=self.server,
            clock=self.clock,
        )
        stream.request = request
        response = H2Response(self, stream, method == b"HEAD")
        stream.response = response
        expects = headers.values_of("Expect")
        if expects is not None and expects[0].lower() == "100-continue" and not ended:
            stream.expect_continue = True
        if ended:
            body.finish()
        self.server.handle(request, response)

    def _data_received(self, event: Any) -> None:
        stream = self._streams.get(event.stream_id)
        size = event.flow_controlled_length
        if not size and event.stream_ended is None and not self._empty_data.spend(self.clock()):
            self._abandon(ErrorCodes.ENHANCE_YOUR_CALM, "too many empty DATA frames")
            return
        if stream is None or stream.body is None or stream.body.finished:
            # A stream we reset or finished: the data still counts against the connection.
            if size:
                self.conn.acknowledge_received_data(size, event.stream_id)
            return
        stream.unacked += size
        if event.data:
            stream.body.feed(event.data)
        stream.acknowledge()

    def _stream_ended(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        stream.remote_ended = True
        if stream.body is not None:
            stream.body.finish()
        self._maybe_close(stream)

    def _trailers_received(self, event: Any) -> None:
        stream = self._streams.get(event.stream_id)
        if stream is None or stream.body is None:
            return
        error = _malformed_trailers(event.headers)
        if error is not None:
            self.log.debug("HTTP/2 malformed trailers from {remote}: {error}", remote=self._remote, error=error)
            self._reset(stream, ErrorCodes.PROTOCOL_ERROR)
            self._streams.pop(stream.id, None)
            self._lose_stream(stream, ConnectionAbortedError(error))
            self._after_stream()
            return
        # Kept on the request for handlers that look (``IBodyConsumer`` gets no request trailers yet).
        assert stream.request is not None
        stream.request.trailers = Headers.from_raw(list(event.headers))

    def _stream_reset(self, event: Any) -> None:
        stream = self._streams.pop(event.stream_id, None)
        if stream is not None:
            self._lose_stream(stream, ConnectionError(f"stream reset by the client ({event.error_code!r})"))
            # Reset before its response finished: the work it started was wasted.
            if not self._resets.spend(self.clock()):
                self._abandon(ErrorCodes.ENHANCE_YOUR_CALM, "too many streams reset (rapid reset)")
                return
        self._after_stream()

    def _release_window(self, stream: _Stream) -> None:
        """Give the connection window back for body bytes nobody will take now."""
        size, stream.unacked = stream.unacked, 0
        if size and self.transport is not None:
            self.conn.acknowledge_received_data(size, stream.id)

    def _handler_done(self, stream: _Stream) -> None:
        stream.handler_running = False
        if stream.orphaned:
            stream.orphaned = False
            self.conn.orphans -= 1

    def _lose_stream(self, stream: _Stream, error: BaseException) -> None:
        """The stream is gone (reset, or the connection lost): stop its producers, release it."""
        stream.closed = True
        response = stream.response
        if stream.handler_running and response is not None and not response.finished and not stream.orphaned:
            stream.orphaned = True  # its handler still runs: it counts toward the stream limit
            self.conn.orphans += 1
        self._release_window(stream)
        stream.pending = []
        stream.pending_size = 0
        body = stream.body
        if body is not None and not body.finished:
            body.finish(Failure(error))
        producer, stream.producer = stream.producer, None
        if producer is not None:
            producer.stopProducing()
        response = stream.response
        if response is not None and not response.finished:
            response.connection_lost(error)

    # -- writing ------------------------------------------------------------------------

    def _write(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self._abandoned:
            self.transport.write(data)

    def _send_headers(
        self, stream: _Stream, fields: list[tuple[bytes, bytes]], end: bool, final: bool = False
    ) -> None:
        """Send a head on the stream: a final response head (``final``) or 1xx fields."""
        if stream.closed or self.transport is None:
            return
        try:
            if final:
                self.conn.send_response_headers(stream.id, fields, end)
            else:
                self.conn.send_headers(stream.id, fields, end_stream=end)
        except h2.exceptions.ProtocolError as error:
            self._drop(stream, error)
            return
        self._write()

    def _drop(self, stream: _Stream, error: BaseException) -> None:
        """h2 refused to send on the stream (closed under us): stop serving it."""
        self.log.debug("HTTP/2 stream {id} dropped: {error}", id=stream.id, error=error)
        self._streams.pop(stream.id, None)
        self._lose_stream(stream, ConnectionAbortedError(str(error)))
        self._after_stream()

    def _acknowledge(self, stream: _Stream, size: int) -> None:
        if stream.closed or self.transport is None:
            return
        self.conn.acknowledge_received_data(size, stream.id)
        self._write()

    def _queue(self, stream: _Stream, data: bytes) -> None:
        stream.pending.append(data)
        stream.pending_size += len(data)
        self._flush(stream)

    def _flush(self, stream: _Stream) -> None:
        """Send what the peer's windows admit; end the stream when all is out."""
        if stream.closed or self.transport is None:
            return
        conn = self.conn
        pending = stream.pending
        sent = False
        while pending and not self._transport_paused:
            window = min(conn.local_flow_control_window(stream.id), conn.max_outbound_frame_size)
            if window <= 0:
                break
            data = pending[0]
            if len(data) <= window:
                pending.pop(0)
            else:
                data, pending[0] = data[:window], data[window:]
            stream.pending_size -= len(data)
            # The last piece of a finished response without trailers carries END_STREAM.
            last = not pending and stream.end_pending and not (stream.response and stream.response.trailers)
            try:
                conn.send_response_data(stream.id, data, last)
            except h2.exceptions.ProtocolError as error:
                self._drop(stream, error)
                return
            if last:
                stream.end_pending = False
                self._response_done(stream)  # a RST_STREAM goes in the same write (see below)
                self._write()
                return
            sent = True
        if not pending and stream.end_pending:
            stream.end_pending = False
            response = stream.response
            trailers = response.trailers if response is not None else None
            try:
                if trailers:
                    # Trailers make the same state transition as a head (h2 tells them apart
                    # by the stream's state), so the direct write serves them too.
                    conn.send_response_headers(stream.id, _fields(trailers), True)
                else:
                    conn.end_stream(stream.id)
            except h2.exceptions.ProtocolError as error:
                self._drop(stream, error)
                return
            # The end of the response and the RST_STREAM asking the client to stop sending a
            # body it was not asked for go in one write (one TLS record): curl 7.88 stops
            # reading after a record that completes a response while its upload waits for a
            # window, and would never see a reset sent later.
            self._response_done(stream)
            self._write()
            return
        if sent:
            self._write()
        self._note_stall(stream, sent)
        self._pace(stream)

    def _note_stall(self, stream: _Stream, sent: bool) -> None:
        """Track since when the stream's queued response bytes could not go out."""
        if not stream.pending:
            stream.stalled_since = None
            return
        if sent or stream.stalled_since is None:
            stream.stalled_since = self.clock()
        timeout = getattr(self.server, "idle_timeout", 0)
        if timeout and self.reactor is not None and self._stall_call is None:
            self._stall_call = self.reactor.callLater(timeout, self._stall_timeout)

    def _stall_timeout(self) -> None:
        """Reset streams whose response has not moved for ``idle_timeout`` (a zero window never opened).

        Go without a WriteTimeout (Caddy's default) waits forever; like nginx's
        ``send_timeout`` the stream is given up, and once none is left the idle
        timeout closes the connection.
        """
        self._stall_call = None
        timeout = getattr(self.server, "idle_timeout", 0)
        if not timeout or self.transport is None:
            return
        now = self.clock()
        earliest: float | None = None
        for stream in list(self._streams.values()):
            since = stream.stalled_since
            if since is None or not stream.pending:
                continue
            if now - since >= timeout:
                self.log.debug("HTTP/2 stream {id} from {remote}: response stalled, reset",
                               id=stream.id, remote=self._remote)
                self._reset(stream, ErrorCodes.INTERNAL_ERROR)
            elif earliest is None or since < earliest:
                earliest = since
        if earliest is not None and self.transport is not None and self.reactor is not None:
            self._stall_call = self.reactor.callLater(earliest + timeout - now, self._stall_timeout)

    def _pace(self, stream: _Stream) -> None:
        """Pause or resume the response's producer after the queue changed."""
        producer = stream.producer
        if producer is None:
            return
        if not stream.streaming:
            self._pull(stream)
            return
        full = stream.pending_size > SEND_BUFFER_LIMIT or self._transport_paused
        if full and not stream.producer_paused:
            stream.producer_paused = True
            producer.pauseProducing()
        elif not full and stream.producer_paused:
            stream.producer_paused = False
            producer.resumeProducing()

    def _pull(self, stream: _Stream) -> None:
        """Ask a pull producer for more while its last piece went out whole."""
        if stream._pulling:
            return
        stream._pulling = True
        try:
            while (
                stream.producer is not None and not stream.streaming and not stream.pending
                and not stream.closed and not self._transport_paused
            ):
                response = stream.response
                before = response.size if response is not None else 0
                stream.producer.resumeProducing()
                if response is None or response.size == before:
                    break
        finally:
            stream._pulling = False

    def _window_opened(self, stream_id: int) -> None:
        if stream_id:
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._flush(stream)
            return
        for stream in list(self._streams.values()):
            if stream.pending or stream.end_pending:
                self._flush(stream)

    def _response_done(self, stream: _Stream) -> None:
        """Our side of the stream ended; release it once the client's side did too."""
        body = stream.body
        if body is not None and not body.finished and not stream.remote_ended:
            # A complete response before the whole request: ask the client to stop
            # sending, without error (RFC 9113 §8.1), and drop what is left.
            self._reset(stream, ErrorCodes.NO_ERROR)
            return
        self._maybe_close(stream)

    def _maybe_close(self, stream: _Stream) -> None:
        response = stream.response
        if stream.remote_ended and response is not None and response.finished and not stream.end_pending:
            stream.closed = True
            self._release_window(stream)
            self._streams.pop(stream.id, None)
            self._after_stream()

    def _after_stream(self) -> None:
        if not self._streams and self.transport is not None:
            if self.closing:
                self._write()
                self.transport.loseConnection()
            else:
                self._arm_idle_timer()

    def _reset(self, stream: _Stream, code: ErrorCodes) -> None:
        if stream.closed or self.transport is None:
            return
        try:
            self.conn.reset_stream(stream.id, code)
        except h2.exceptions.ProtocolError:
            pass  # already closed in h2's eyes (the client ended or reset it)
        self._write()
        self._streams.pop(stream.id, None)
        self._lose_stream(stream, ConnectionAbortedError(f"stream reset ({code.name})"))
        self._after_stream()

    # -- IPushProducer: the transport's backpressure pauses every response --------------

    def pauseProducing(self) -> None:
        self._transport_paused = True
        for stream in list(self._streams.values()):
            self._pace(stream)

    def resumeProducing(self) -> None:
        self._transport_paused = False
        self._queued_control = 0  # the client reads again: what was queued is going out
        for stream in list(self._streams.values()):
            self._flush(stream)

    def stopProducing(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()
