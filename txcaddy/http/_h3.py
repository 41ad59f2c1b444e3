"""The HTTP/3 server: QUIC on a Twisted UDP port, with the sans-IO ``aioquic`` library.

Caddy serves HTTP/3 (quic-go's ``http3.Server``) on a UDP socket bound to the same
host:port as each TLS listener of a server whose ``protocols`` name ``h3``, and
advertises it with ``Alt-Svc`` (``modules/caddyhttp/server.go: serveHTTP3``,
``listeners.go: ListenQUIC``; ``shared/spec/wave2-caddy-facts.md`` §5.4).

One ``HTTP3Listener`` (a ``DatagramProtocol``) per UDP socket routes datagrams by
destination connection id to an ``HTTP3Connection``, which drives one
``aioquic`` ``QuicConnection`` and its ``H3Connection``: datagrams in, events out,
datagrams to send, and one timer on the passed-in reactor (no asyncio).  Each
request stream becomes the same ``Request`` the HTTP/1.1 and HTTP/2 servers make
(``proto`` ``HTTP/3.0``) and an ``H3Response`` (``_h3stream``: the stream and its
response), handed to ``server.handle`` at header time, as ``_h2`` does.

Certificates: ``aioquic`` takes one certificate per configuration and has no SNI
hook, so each connection's TLS context is given a subclass whose ClientHello
handler reads the server name first and asks the server's ``ServerTLS`` for the
certificate (``quic_certificate``: the same policies and certificate cache as the
TCP listeners' SNI callback) before the handshake goes on.

Limits: 128 concurrent request streams per connection (``aioquic``'s fixed
``MAX_STREAMS``), a 30 s idle timeout (quic-go's default), QUIC v1 and v2, 1 MiB
stream and connection windows; address validation with Retry once ``RETRY_THRESHOLD``
connections are open; a rapid-reset budget as for HTTP/2.  Backpressure on responses: the producer is paused
while more than ``SEND_BUFFER_LIMIT`` bytes of the stream wait unacknowledged.
On request bodies: ``aioquic`` doubles a stream's receive window whenever half of it
is used, whoever took the data; here a request stream's window instead slides over
what the body's consumer has taken (``STREAM_WINDOW`` beyond it), so a paused
consumer (a slow upstream) stops the client with at most one window kept, as for HTTP/2.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, cast

from aioquic.buffer import Buffer
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection
from aioquic.quic.packet import (
    QuicFrameType,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler
from aioquic.tls import AlertHandshakeFailure, Context, pull_client_hello
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy.http._budget import _Budget
from txcaddy.http._h1parse import _unmapped
from txcaddy.http._h2fields import _malformed_trailers, _request_fields
from txcaddy.http._h3stream import H3Response, _Stream
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request, RequestBody
from txcaddy.interfaces import IHTTPServer, IServerConnection
from txcaddy.tls.context import TLSState

__all__ = ["H3Response", "HTTP3Connection", "HTTP3Listener", "alt_svc_value"]

#: Seconds a QUIC connection may sit idle (quic-go's default ``MaxIdleTimeout``).
IDLE_TIMEOUT = 30.0
#: Response bytes sent but not yet acknowledged on one stream before its producer is paused.
SEND_BUFFER_LIMIT = 256 * 1024
#: How far a request stream's window reaches past what the body's consumer took (Go's 1 MiB).
STREAM_WINDOW = 1 << 20
#: A new connection must arrive in a datagram at least this large (RFC 9000 §14.1).
MIN_INITIAL_SIZE = 1200
#: Open connections from which new ones must prove their address with a Retry first (Caddy
#: turns Retry on above 1000 active requests; counted here in connections).
RETRY_THRESHOLD = 1000
#: Streams reset by the client before their response finished, within the window, before the
#: connection is closed with H3_EXCESSIVE_LOAD (rapid reset, as for HTTP/2).
RAPID_RESET_LIMIT = 256
RAPID_RESET_WINDOW = 10.0
#: Bytes a request stream may carry before its header section is complete, unless the server
#: sets ``max_header_bytes`` (Go's default header limit, 1 MiB, plus framing).
MAX_HEADER_BYTES = (1 << 20) + 320
#: Alt-Svc's max age: 30 days, as Caddy.
ALT_SVC_MAX_AGE = 2592000

_GO_CIPHERS = {
    "AES_128_GCM_SHA256": "TLS_AES_128_GCM_SHA256",
    "AES_256_GCM_SHA384": "TLS_AES_256_GCM_SHA384",
    "CHACHA20_POLY1305_SHA256": "TLS_CHACHA20_POLY1305_SHA256",
}

#: (server name, local IP, remote IP) -> the certificate to present; raises to refuse.
CertificateChooser = Callable[[str, str, str], Any]


def alt_svc_value(ports: list[int]) -> str:
    """Caddy's ``Alt-Svc`` value for the server's HTTP/3 ports (one entry each, no ``h3-29``)."""
    return ",".join(f'h3=":{port}"; ma={ALT_SVC_MAX_AGE}' for port in dict.fromkeys(ports))


class _SNIContext(Context):
    """``aioquic``'s TLS context, choosing the certificate from the ClientHello's server name."""

    choose: CertificateChooser
    local_ip: str
    remote_ip: str
    sni: str

    def _server_handle_hello(self, input_buf: Buffer, initial_buf: Buffer, handshake_buf: Buffer) -> None:
        start = input_buf.tell()
        hello = pull_client_hello(Buffer(data=input_buf.data_slice(start, input_buf.capacity)))
        self.sni = (hello.server_name or "").lower()
        try:
            certificate = self.choose(self.sni, self.local_ip, self.remote_ip)
        except Exception as refused:  # noqa: BLE001 - any refusal fails the handshake with an alert
            raise AlertHandshakeFailure(str(refused)) from None
        self.certificate = certificate.chain[0]
        self.certificate_chain = list(certificate.chain[1:])
        self.certificate_private_key = cast(Any, certificate.private_key)
        super()._server_handle_hello(input_buf, initial_buf, handshake_buf)


class _ServerQuicConnection(QuicConnection):
    """A server ``QuicConnection`` whose TLS context chooses certificates by SNI."""

    def __init__(self, *args: Any, choose: CertificateChooser, local_ip: str, remote_ip: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._choose = choose
        self._local_ip = local_ip
        self._remote_ip = remote_ip
        # stream id -> request-body bytes received but not yet taken, or None: aioquic's own rule.
        self.backlog: Callable[[int], int | None] = lambda stream_id: None

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        """MAX_STREAM_DATA for a request body: ``STREAM_WINDOW`` past what its consumer took.

        aioquic's own rule (double the window once half is used) is kept for every other stream.
        """
        backlog = self.backlog(stream.stream_id) if stream.max_stream_data_local else None
        if backlog is None:
            super()._write_stream_limits(builder, space, stream)
            return
        wanted = stream.receiver.highest_offset - backlog + STREAM_WINDOW
        if wanted - stream.max_stream_data_local >= STREAM_WINDOW // 2:  # in steps: fewer frames
            stream.max_stream_data_local = wanted
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(
                QuicFrameType.MAX_STREAM_DATA,
                capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                handler=self._on_max_stream_data_delivery,  # resent if lost
                handler_args=(stream,),
            )
            buf.push_uint_var(stream.stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        context = self.tls
        context.__class__ = _SNIContext
        sni_context = cast(_SNIContext, context)
        sni_context.choose = self._choose
        sni_context.local_ip = self._local_ip
        sni_context.remote_ip = self._remote_ip
        sni_context.sni = ""



@implementer(IServerConnection)
class HTTP3Connection:
    """One QUIC connection serving HTTP/3 to one client.

    ``transport`` is the connection itself while it lives (``loseConnection`` and
    ``abortConnection`` close it, for the server's forced stop), None once closed.
    """

    log = Logger()

    def __init__(self, listener: HTTP3Listener, quic: QuicConnection, addr: tuple[str, int]) -> None:
        self.listener = listener
        self.server = listener.server
        self.quic = quic
        self.reactor = listener.reactor
        self.clock: Callable[[], float] = self.reactor.seconds if self.reactor is not None else time.time
        self.addr = addr
        self.transport: Any = self
        self.closing = False
        self.h3: H3Connection | None = None
        self._streams: dict[int, _Stream] = {}
        self._timer: Any = None
        self._remote = (_unmapped(addr[0]), addr[1])
        self._tls: TLSState | None = None
        self._resets = _Budget(RAPID_RESET_LIMIT, RAPID_RESET_WINDOW)
        # Request streams whose header section is still arriving: bytes so far (aioquic keeps a
        # HEADERS frame whole until it ends and reopens windows meanwhile, so the limit is here).
        self._heading: dict[int, int] = {}
        self._refused: set[int] = set()
        self._header_limit = (getattr(self.server, "max_header_bytes", 0) or MAX_HEADER_BYTES)
        if isinstance(quic, _ServerQuicConnection):
            quic.backlog = self._backlog
        self.server.connection_made(self)

    # -- datagrams and timers -----------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is None:
            return
        self.quic.receive_datagram(data, addr, now=self.clock())
        self._process()
        self._transmit()

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        self.quic.handle_timer(now=self.clock())
        self._process()
        self._transmit()

    def _transmit(self) -> None:
        """Send what QUIC has to send, and set the timer to its next deadline."""
        if self.transport is None:
            return
        now = self.clock()
        for data, addr in self.quic.datagrams_to_send(now=now):
            self.listener.send(data, addr)
        deadline = self.quic.get_timer()
        timer = self._timer
        if timer is not None and timer.active():
            if deadline is not None and abs(timer.getTime() - deadline) < 1e-6:
                return
            timer.cancel()
        self._timer = None
        if deadline is not None and self.reactor is not None:
            self._timer = self.reactor.callLater(max(0.0, deadline - now), self._on_timer)
        self._repace()

    # -- events ---------------------------------------------------------------------------

    def _process(self) -> None:
        quic = self.quic
        while self.transport is not None:
            event: Any = quic.next_event()
            if event is None:
                break
            kind = type(event)
            if kind is quic_events.ConnectionIdIssued:
                self.listener.connection_ids[event.connection_id] = self
            elif kind is quic_events.ConnectionIdRetired:
                self.listener.connection_ids.pop(event.connection_id, None)
            elif kind is quic_events.ProtocolNegotiated:
                self.h3 = H3Connection(quic)
            elif kind is quic_events.HandshakeCompleted:
                self._tls = self._tls_state()
            elif kind is quic_events.ConnectionTerminated:
                self._terminated(f"{event.reason_phrase or 'closed'} (error {event.error_code})")
                return
            elif kind is quic_events.StopSendingReceived:
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    self._cancel(stream, event.error_code)
                    self._count_reset()
            elif kind is quic_events.StreamReset:
                self._heading.pop(event.stream_id, None)
                self._refused.discard(event.stream_id)
                stream = self._streams.pop(event.stream_id, None)
                if stream is not None:
                    self._lose_stream(stream, ConnectionError(f"stream reset by the client ({event.error_code})"))
                    self._after_stream()
                    self._count_reset()
            elif kind is quic_events.StreamDataReceived and self._header_section_too_big(event):
                continue
            if self.h3 is not None:
                for h3_event in self.h3.handle_event(event):
                    self._h3_event(h3_event)

    def _backlog(self, stream_id: int) -> int | None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.body is None or stream.body.finished:
            return None
        return stream.unacked

    def _header_section_too_big(self, event: Any) -> bool:
        """Count bytes on client request streams until their headers arrive; refuse past the limit."""
        stream_id = event.stream_id
        if stream_id in self._refused:
            return True
        if stream_id % 4 != 0 or stream_id in self._streams:
            return False  # not a request stream, or its headers already came
        size = self._heading.get(stream_id, 0) + len(event.data)
        if size <= self._header_limit:
            self._heading[stream_id] = size
            return False
        self._heading.pop(stream_id, None)
        self._refused.add(stream_id)
        self.log.debug("HTTP/3 stream {id}: header section over {limit} bytes", id=stream_id, limit=self._header_limit)
        for action in (self.quic.reset_stream, self.quic.stop_stream):
            try:
                action(stream_id, ErrorCode.H3_EXCESSIVE_LOAD)
            except Exception:  # noqa: BLE001, S110 - that direction already ended
                pass
        return True

    def _count_reset(self) -> None:
        """A stream cancelled by the client before its response finished: the work was wasted."""
        if not self._resets.spend(self.clock()) and self.transport is not None:
            self.log.info("HTTP/3 connection from {remote} closed: too many streams reset (rapid reset)",
                          remote=self._remote)
            self.quic.close(error_code=ErrorCode.H3_EXCESSIVE_LOAD, reason_phrase="too many streams reset")

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            stream = self._streams.get(event.stream_id)
            if stream is None:
                self._request_received(event)
            elif stream.request is not None:
                if _malformed_trailers(event.headers) is not None:
                    self._cancel(stream, ErrorCode.H3_MESSAGE_ERROR)
                    return
                stream.request.trailers = Headers.from_raw(list(event.headers))  # request trailers
                if event.stream_ended:
                    self._stream_ended(stream)
        elif isinstance(event, DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is None or stream.body is None:
                return
            if event.data and not stream.body.finished:
                stream.unacked += len(event.data)
                stream.body.feed(event.data)
                stream.acknowledge(False)  # sent with what this datagram makes us send
            if event.stream_ended:
                self._stream_ended(stream)

    def _tls_state(self) -> TLSState:
        context = self.quic.tls
        suite = getattr(getattr(context, "key_schedule", None), "cipher_suite", None)
        name = getattr(suite, "name", "")
        return TLSState(
            version="tls1.3",
            cipher_suite=_GO_CIPHERS.get(name, name),
            resumed=bool(getattr(context, "session_resumed", False)),
            proto=H3_ALPN[0],
            server_name=getattr(context, "sni", ""),
        )

    def _request_received(self, event: HeadersReceived) -> None:
        stream_id = event.stream_id
        if self.closing:
            self.quic.reset_stream(stream_id, ErrorCode.H3_REQUEST_REJECTED)
            self.quic.stop_stream(stream_id, ErrorCode.H3_REQUEST_REJECTED)
            return
        self._heading.pop(stream_id, None)
        # The same one-pass checks as HTTP/2's (RFC 9114 §4.2-4.3 repeat RFC 9113's rules); a
        # malformed request is a stream error, H3_MESSAGE_ERROR (RFC 9114 §4.1.2).
        method, path, authority, _, pairs, error = _request_fields(event.headers)
        if error is not None:
            self.log.debug("HTTP/3 malformed request from {remote}: {error}", remote=self._remote, error=error)
            for action in (self.quic.reset_stream, self.quic.stop_stream):
                action(stream_id, ErrorCode.H3_MESSAGE_ERROR)
            self._transmit()
            return
        stream = _Stream(stream_id, self)
        self._streams[stream_id] = stream
        headers = Headers.from_raw(pairs)
        if authority:
            headers.set("Host", authority.decode("latin-1"))
        ended = event.stream_ended
        stream.remote_ended = ended
        length: int | None = 0 if ended else None
        length_values = headers.values_of("Content-Length")
        if length_values and not ended:
            try:
                length = int(length_values[0])
            except ValueError:
                length = None
        body = RequestBody(length, stream.body_drained, stream)
        stream.body = body
        if self._tls is None:
            self._tls = self._tls_state()
        host = self.listener.host
        request = Request(
            method.decode("latin-1"),
            (path or authority).decode("latin-1"),  # CONNECT has no :path
            headers,
            proto="HTTP/3.0",
            remote=self._remote,
            local=(host[0], host[1]),
            tls=self._tls,
            body=body,
            server=self.server,
            clock=self.clock,
        )
        stream.request = request
        response = H3Response(self, stream, method == b"HEAD")
        stream.response = response
        if ended:
            body.finish()
        self.server.handle(request, response)

    def _stream_ended(self, stream: _Stream) -> None:
        stream.remote_ended = True
        if stream.body is not None:
            stream.body.finish()
        self._maybe_close(stream)

    # -- writing --------------------------------------------------------------------------

    def _send_headers(self, stream: _Stream, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        if stream.closed or self.h3 is None or self.transport is None:
            return
        try:
            self.h3.send_headers(stream.id, fields, end_stream=end)
        except Exception as error:  # noqa: BLE001 - a stream closed under us
            self._drop(stream, error)
            return
        if end:
            stream.local_ended = True

    def _send_data(self, stream: _Stream, data: bytes, end: bool) -> None:
        if stream.closed or self.h3 is None or self.transport is None:
            return
        try:
            self.h3.send_data(stream.id, data, end_stream=end)
        except Exception as error:  # noqa: BLE001 - a stream closed under us
            self._drop(stream, error)
            return
        if end:
            stream.local_ended = True
        self._pace(stream)

    def _unacked(self, stream: _Stream) -> int:
        """Bytes of the stream's response sent or queued but not yet acknowledged."""
        quic_stream = self.quic._streams.get(stream.id)
        sender = getattr(quic_stream, "sender", None)
        if sender is None:
            return 0
        return len(getattr(sender, "_buffer", b""))

    def _pace(self, stream: _Stream) -> None:
        """Pause or resume the response's producer after the stream's send buffer changed."""
        producer = stream.producer
        if producer is None or stream.closed:
            return
        if not stream.streaming:
            self._pull(stream)
            return
        full = self._unacked(stream) > SEND_BUFFER_LIMIT
        if full and not stream.producer_paused:
            stream.producer_paused = True
            producer.pauseProducing()
        elif not full and stream.producer_paused:
            stream.producer_paused = False
            producer.resumeProducing()

    def _pull(self, stream: _Stream) -> None:
        """Ask a pull producer for more while the stream has room and it keeps writing."""
        if stream.producer_paused:
            return  # called again from inside its own resumeProducing
        stream.producer_paused = True
        try:
            while (
                stream.producer is not None and not stream.closed and stream.response is not None
                and self._unacked(stream) <= SEND_BUFFER_LIMIT
            ):
                before = stream.response.size
                stream.producer.resumeProducing()
                if stream.response.size == before:
                    break
        finally:
            stream.producer_paused = False

    def _repace(self) -> None:
        """After acknowledgements: resume producers whose streams drained."""
        for stream in list(self._streams.values()):
            if stream.producer is not None and (stream.producer_paused or not stream.streaming):
                self._pace(stream)

    def _drop(self, stream: _Stream, error: BaseException) -> None:
        self.log.debug("HTTP/3 stream {id} dropped: {error}", id=stream.id, error=error)
        self._streams.pop(stream.id, None)
        self._lose_stream(stream, ConnectionAbortedError(str(error)))
        self._after_stream()

    def _response_done(self, stream: _Stream) -> None:
        """Our side ended; a request body still arriving is refused without error (RFC 9114 §4.1)."""
        body = stream.body
        if body is not None and not body.finished and not stream.remote_ended:
            try:
                self.quic.stop_stream(stream.id, ErrorCode.H3_NO_ERROR)
            except Exception:  # noqa: BLE001, S110 - the stream already ended on the client's side
                pass
            stream.remote_ended = True
            body.finish(Failure(ConnectionAbortedError("response sent before the whole request")))
            self._transmit()
        self._maybe_close(stream)

    def _maybe_close(self, stream: _Stream) -> None:
        response = stream.response
        if stream.remote_ended and response is not None and response.finished and stream.local_ended:
            stream.closed = True
            self._streams.pop(stream.id, None)
            self._after_stream()

    def _cancel(self, stream: _Stream, code: int) -> None:
        """Reset both directions of the stream and forget it."""
        if stream.closed or self.transport is None:
            return
        for action in (self.quic.reset_stream, self.quic.stop_stream):
            try:
                action(stream.id, code)
            except Exception:  # noqa: BLE001, S110 - that direction already ended
                pass
        self._streams.pop(stream.id, None)
        self._lose_stream(stream, ConnectionAbortedError(f"stream reset ({code:#x})"))
        self._transmit()
        self._after_stream()

    def _lose_stream(self, stream: _Stream, error: BaseException) -> None:
        stream.closed = True
        body = stream.body
        if body is not None and not body.finished:
            body.finish(Failure(error))
        producer, stream.producer = stream.producer, None
        if producer is not None:
            producer.stopProducing()
        response = stream.response
        if response is not None and not response.finished:
            response.connection_lost(error)

    def _after_stream(self) -> None:
        if self.closing and not self._streams and self.transport is not None:
            self.loseConnection()

    # -- closing --------------------------------------------------------------------------

    def close_when_idle(self) -> None:
        """Graceful stop: no new streams; close once the open ones end."""
        if self.closing or self.transport is None:
            return
        self.closing = True
        if not self._streams:
            self.loseConnection()

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name, for HTTPServer's forced stop
        """Close with H3_NO_ERROR (CONNECTION_CLOSE); the connection is forgotten once it is sent."""
        if self.transport is None:
            return
        self.quic.close(error_code=ErrorCode.H3_NO_ERROR, reason_phrase="server closing")
        self._transmit()
        self._process()  # close() queues ConnectionTerminated only after the draining period

    abortConnection = loseConnection  # noqa: N815 - Twisted's name

    def _terminated(self, why: str) -> None:
        if self.transport is None:
            return
        self.transport = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            self._lose_stream(stream, ConnectionError(f"QUIC connection closed: {why}"))
        self.listener.forget(self)
        self.server.connection_lost(self)


class HTTP3Listener(DatagramProtocol):
    """One UDP socket serving HTTP/3 for one server.

    @ivar connection_ids: every connection id in use, to its connection.
    @ivar host: the socket's (host, port), once listening.
    """

    log = Logger()
    transport: Any

    def __init__(
        self,
        server: IHTTPServer,
        reactor: Any,
        choose: CertificateChooser,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.server = server
        self.reactor = reactor
        self.choose = choose
        self.configuration = QuicConfiguration(
            alpn_protocols=list(H3_ALPN),
            is_client=False,
            idle_timeout=idle_timeout,
        )
        # aioquic insists on a certificate per configuration; the real one is chosen per
        # connection from the ClientHello (``_SNIContext``), so this is never sent.
        self.configuration.certificate = cast(Any, _NOT_CHOSEN)
        self.configuration.private_key = cast(Any, _NOT_CHOSEN)
        self.clock: Callable[[], float] = reactor.seconds if reactor is not None else time.time
        self.retry_threshold = RETRY_THRESHOLD
        self._retry = QuicRetryTokenHandler()
        self.connection_ids: dict[bytes, HTTP3Connection] = {}
        self.connections: set[HTTP3Connection] = set()
        self.accepting = True
        self.host: tuple[str, int] = ("", 0)
        self._idle_waiters: list[Deferred[None]] = []

    def startProtocol(self) -> None:  # noqa: N802 - Twisted's name
        address = self.transport.getHost()
        self.host = (getattr(address, "host", ""), getattr(address, "port", 0))

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.write(data, addr)

    def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802 - Twisted's name
        buf = Buffer(data=data)
        config = self.configuration
        try:
            header = pull_quic_header(buf, host_cid_length=config.connection_id_length)
        except ValueError:
            return
        if (
            header.packet_type != QuicPacketType.VERSION_NEGOTIATION
            and header.version is not None
            and header.version not in config.supported_versions
        ):
            self.send(encode_quic_version_negotiation(
                source_cid=header.destination_cid,
                destination_cid=header.source_cid,
                supported_versions=config.supported_versions,
            ), addr)
            return
        connection = self.connection_ids.get(header.destination_cid)
        if connection is None:
            if not (self.accepting and header.packet_type == QuicPacketType.INITIAL and len(data) >= MIN_INITIAL_SIZE):
                return
            original_cid: bytes | None = header.destination_cid
            retry_cid = None
            if len(self.connections) >= self.retry_threshold:
                original_cid = self._validate_address(header, addr)
                if original_cid is None:
                    return
                retry_cid = header.destination_cid
            quic = _ServerQuicConnection(
                configuration=config,
                original_destination_connection_id=original_cid,
                retry_source_connection_id=retry_cid,
                choose=self.choose,
                local_ip=self.host[0],
                remote_ip=_unmapped(addr[0]),
            )
            connection = HTTP3Connection(self, quic, (addr[0], addr[1]))
            self.connections.add(connection)
            self.connection_ids[header.destination_cid] = connection
            self.connection_ids[quic.host_cid] = connection
        connection.datagram_received(data, addr)

    def _validate_address(self, header: Any, addr: Any) -> bytes | None:
        """Under load, a client proves its address first (RFC 9000 §8.1.2): an Initial without a
        token gets a Retry; one with a valid Retry token gives the original connection id."""
        if not header.token:
            source_cid = os.urandom(8)
            token = self._retry.create_token(
                address=addr, original_destination_connection_id=header.destination_cid,
                retry_source_connection_id=source_cid, now=self.clock(),
            )
            self.send(encode_quic_retry(
                version=header.version, source_cid=source_cid, destination_cid=header.source_cid,
                original_destination_cid=header.destination_cid, retry_token=token,
            ), addr)
            return None
        try:
            return self._retry.validate_token(  # type: ignore[no-any-return]
                address=addr, destination_cid=header.destination_cid, token=header.token, now=self.clock(),
            )
        except ValueError:
            return None  # dropped: the client's handshake times out

    def forget(self, connection: HTTP3Connection) -> None:
        self.connections.discard(connection)
        for cid, known in list(self.connection_ids.items()):
            if known is connection:
                del self.connection_ids[cid]
        if not self.connections:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    def close_gracefully(self) -> Deferred[None]:
        """Stop accepting, let open streams finish; fires once every connection closed."""
        self.accepting = False
        d: Deferred[None] = Deferred()
        if not self.connections:
            d.callback(None)
            return d
        self._idle_waiters.append(d)
        for connection in list(self.connections):
            connection.close_when_idle()
        return d

    def close_all(self) -> None:
        """Stop accepting and close every connection now."""
        self.accepting = False
        for connection in list(self.connections):
            connection.loseConnection()
            connection._terminated("listener stopped")


class _NotChosen:
    """The placeholder certificate of the shared configuration (see ``HTTP3Listener``)."""


_NOT_CHOSEN = _NotChosen()
