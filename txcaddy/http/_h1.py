"""The HTTP/1.1 server protocol: httptools (llhttp) parsing, routing at header time.

One ``HTTP11Protocol`` per client connection. The request is handed to the
server as soon as its headers are complete; its body follows through
``RequestBody`` while handlers already run. Responses are framed here
(Content-Length, chunked, or close-delimited for HTTP/1.0), keep-alive and
pipelining are handled here, and anything llhttp rejects gets a 4xx and never
reaches a handler.

An upgrade request (``Connection: Upgrade`` with ``Upgrade``, or CONNECT) is
the last one read as HTTP: llhttp stops after its head, the bytes after it are
kept unparsed and reading pauses until the handler decides. A handler that
answers normally gets its response sent and the connection closed; one that
calls ``response.switch_protocols(protocol)`` gets a ``101`` written and the
connection handed to ``protocol`` (the reverse proxy's tunnel). On servers
allowing h2c, a bodyless ``Upgrade: h2c`` request with valid ``HTTP2-Settings``
never reaches a handler here: it gets the ``101`` and becomes stream 1 of the
HTTP/2 protocol ``upgrade_h2c`` makes (Go's ``x/net/http2/h2c``).

The protocol, its response and its exchange queue stay in this one module: one
state machine per connection on the per-request hot path, kept together as
Twisted keeps ``_newclient.py``. The response head writer is in ``_h1head``, the
request-head checks in ``_h1parse``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from typing import Any

import httptools
from twisted.internet.interfaces import IProtocol, IPushProducer, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements

from txcaddy._go.http import status_text
from txcaddy._twisted import (
    lose_connection,
    no_delay,
    ready_for_direct_io,
    send_now,
    send_sequence_now,
)
from txcaddy.http._h1head import DATE, asks_close, head_bytes, status_line
from txcaddy.http._h1parse import (
    _BadRequest,
    _h2c_settings,
    _new_parser,
    _origin_form,
    _status_for_parser_error,
    _unmapped,
)
from txcaddy.http.errors import HandlerError
from txcaddy.http.headers import Headers
from txcaddy.http.request import Request, RequestBody
from txcaddy.http.response import Response
from txcaddy.interfaces import IHTTPServer, IServerConnection
from txcaddy.tls.context import TLSState

# Keep at most this much of a request body that nobody has asked for yet
# before pausing the client (the body is streamed, never buffered whole).
BODY_BUFFER_LIMIT = 256 * 1024
# After a response, read and drop at most this much unread request body to
# keep the connection (as Go does); more than that closes it.
DISCARD_LIMIT = 256 * 1024
DEFAULT_MAX_HEADER_BYTES = 1024 * 1024  # Go's http.DefaultMaxHeaderBytes
# Go's ``http.Server.Shutdown`` closes a connection that has not sent its first request
# only once it is 5 s old: the request may be on its way (accepted just before the stop: a
# worker rolled out by a reload), and a client does not retry on a fresh connection.
FRESH_CONNECTION_GRACE = 5.0

_NO_BODY_STATUSES = frozenset({204, 304})


class _Exchange:
    """A request and its response on one connection (pipelined ones queue up)."""

    __slots__ = ("request", "response", "complete", "close_after", "expect_continue", "upgrade")

    def __init__(self, request: Request, response: H1Response, close_after: bool, expect_continue: bool) -> None:
        self.request = request
        self.response = response
        self.complete = False  # the request has been read to its end
        self.close_after = close_after
        self.expect_continue = expect_continue
        self.upgrade = False  # an upgrade request the handler may answer with switch_protocols


class H1Response(Response):
    """A response framed for HTTP/1.x on the protocol's transport.

    Like Go's server, the head is held back until the body passes 2 KiB or the
    response ends: a short response then gets a Content-Length instead of
    chunked coding. ``flush`` sends what is held at once (streaming).
    """

    HOLD_LIMIT = 2048

    def __init__(self, protocol: HTTP11Protocol, request: Request, http10: bool, head_only: bool) -> None:
        super().__init__()
        self._protocol = protocol
        self._request = request
        self._http10 = http10
        self._head_only = head_only
        self._chunked = False
        self._body_allowed = True
        self._holding = False  # head decided but not yet on the wire
        self._held: list[bytes] = []
        self._held_size = 0
        self.close_connection = False

    def _send_head(self, status: int) -> None:
        self._body_allowed = not (self._head_only or status in _NO_BODY_STATUSES or 100 <= status < 200)
        self._holding = True

    def _emit_head(self, content_length: int | None) -> None:
        """Put the status line and header fields on the wire, with the framing decided now."""
        self._holding = False
        protocol = self._protocol
        status = self.status
        headers = self.headers
        exchanges = protocol._exchanges
        if protocol.closing or (exchanges and exchanges[0].response is self and exchanges[0].close_after):
            self.close_connection = True
        elif not exchanges or exchanges[0].response is not self:
            exchange = protocol._exchange_of(self)
            if exchange is not None and exchange.close_after:
                self.close_connection = True
        connection = headers.values_of("Connection")
        if connection is not None and asks_close(connection):
            self.close_connection = True
        if status in _NO_BODY_STATUSES or 100 <= status < 200:
            headers.delete_canonical(("Content-Length", "Transfer-Encoding"))
        elif headers.values_of("Content-Length") is None:
            if content_length is not None and (content_length > 0 or not self._head_only):
                headers.set("Content-Length", str(content_length))
            elif not self._head_only:
                if self._http10:
                    self.close_connection = True
                else:
                    self._chunked = True
                    headers.set("Transfer-Encoding", "chunked")
        if self.close_connection:
            headers.set("Connection", "close")
        elif self._http10:
            headers.set("Connection", "keep-alive")
        lines = [status_line(status, self._http10)]
        if headers.values_of("Date") is None:
            lines.append(DATE.line(protocol.clock()))
        data = head_bytes(lines, headers.lists())
        held, self._held = self._held, []
        if not held or not self._body_allowed:
            send_now(protocol.transport, data)
        elif self._chunked:
            send_sequence_now(protocol.transport, [data, b"%x\r\n" % self._held_size, *held, b"\r\n"])
        else:
            # Head and body leave in one gathering send, without copying the body.
            send_sequence_now(protocol.transport, [data, *held])

    def flush(self) -> None:
        """Send the head and anything held back now (for streamed responses)."""
        if self._holding and self._protocol.transport is not None:
            self._emit_head(None)

    def _send_body(self, data: bytes) -> None:
        transport = self._protocol.transport
        if transport is None:
            return
        if self._holding:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size > self.HOLD_LIMIT:
                self._emit_head(None)
            return
        if not self._body_allowed:
            return
        if self._chunked:
            send_sequence_now(transport, [b"%x\r\n" % len(data), data, b"\r\n"])
        else:
            send_now(transport, data)

    def direct_body_transport(self, remaining: int) -> Any:
        """The socket transport once the head and all written so far are sent, for a body
        framed by a ``Content-Length`` that ``remaining`` more bytes complete (not chunked,
        not dropped as for HEAD/204/304)."""
        protocol = self._protocol
        transport = protocol.transport
        if (self._holding or self._chunked or not self._body_allowed or self.finished
                or transport is None or protocol._switched is not None
                or not protocol._exchanges or protocol._exchanges[0].response is not self):
            return None
        declared = self.headers.values_of("Content-Length")
        if not declared or declared[0] != str(self.size + remaining):
            return None
        return transport if ready_for_direct_io(transport) else None

    def _send_end(self) -> None:
        if self._protocol.transport is None:
            return
        if self._holding:
            self._emit_head(self._held_size)
        elif self._chunked and self._body_allowed:
            if self.trailers:
                send_now(self._protocol.transport, head_bytes(["0\r\n"], self.trailers.lists()))
            else:
                send_now(self._protocol.transport, b"0\r\n\r\n")
        self._protocol._response_finished(self)

    def register_producer(self, producer: Any, streaming: bool) -> None:
        self.flush()
        self._protocol.transport.registerProducer(producer, streaming)

    def unregister_producer(self) -> None:
        self._protocol.transport.unregisterProducer()

    def abort_connection(self) -> None:
        """Close the connection after what was written (Go's ``ErrAbortHandler``)."""
        transport = self._protocol.transport
        if transport is not None:
            transport.loseConnection()

    def write_informational(self, status: int, headers: Headers | None = None) -> None:
        """Send a 1xx response (100 Continue, 103 Early Hints) before the final one."""
        if self.head_sent or self._http10:
            return
        fields = headers.lists() if headers is not None else ()
        send_now(self._protocol.transport, head_bytes([status_line(status, False)], fields))

    @property
    def can_switch_protocols(self) -> bool:
        """Whether ``switch_protocols`` may be called: an upgrade request, nothing answered yet."""
        return self._protocol._switchable(self) is not None

    def switch_protocols(self, protocol: IProtocol) -> None:
        """Answer ``101 Switching Protocols`` and give the connection to ``protocol``.

        The head carries ``self.headers`` (fields already set on the response, such
        as ``Server``, and whatever the handler copied from an upstream's 101), sorted
        by name as Go writes them. The response is then finished with status 101 (for
        the access log); ``protocol`` gets ``makeConnection(transport)``, the bytes
        the client sent after the request head, and every later ``dataReceived`` and
        ``connectionLost``. On graceful shutdown the server calls
        ``protocol.close_gracefully()`` if it has one, else closes the connection;
        if it has ``when_closed()`` (a Deferred), the server counts the connection
        as open until that fires (a tunnel's other side closing too).
        """
        self._protocol._switch_protocols(self, protocol)


class HTTP11Protocol(Protocol):
    """An HTTP/1.1 connection to one client."""

    @property
    def log(self) -> Logger:
        """A logger for this connection, made when something is logged.

        (Not a class attribute ``Logger()``: the compiled build makes class attributes
        per instance, a ``Logger`` and a look at the caller's frame per connection.)
        """
        return Logger(namespace="txcaddy.http._h1.HTTP11Protocol", source=self)
    # A TCP or TLS transport: an ITransport that is also the IConsumer and IPushProducer
    # used for flow control, which no one Twisted interface names; None when gone.
    transport: Any

    #: Set by ``HTTPFactory`` on cleartext connections whose server allows h2c: makes the
    #: HTTP/2 protocol an ``Upgrade: h2c`` request switches to, from the request and the
    #: decoded ``HTTP2-Settings`` payload.
    upgrade_h2c: Callable[[Request, bytes], Any] | None = None

    def __init__(self, server: IHTTPServer, clock: Any = None, tls: Any = None, peer: Any = None) -> None:
        self.server = server
        self._peer = peer  # the client's address as the factory was given it (else asked for)
        self.clock = clock.seconds if clock is not None else time.time
        self.reactor = clock
        self.tls = tls
        self._tls_pending = False  # a TLS transport whose state is read at the first request
        self.max_header_bytes = getattr(server, "max_header_bytes", 0) or DEFAULT_MAX_HEADER_BYTES
        self.closing = False
        self._requested = False  # a request head has arrived on this connection
        self._fresh_call: Any = None  # a graceful stop's wait for a fresh connection's first request
        self._parser: httptools.HttpRequestParser | None = _new_parser(self)
        self._exchanges: deque[_Exchange] = deque()
        self._parsing: _Exchange | None = None  # the exchange whose request is being read
        self._url = bytearray()
        self._header_pairs: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._paused_reasons: set[str] = set()
        self._buffered_input = bytearray()  # bytes held back while a response is being written
        self._remote: tuple[str, int] = ("", 0)
        self._local: tuple[str, int] | None = None  # asked for when first needed (a syscall)
        self._error_status = 0
        self._idle_call: Any = None
        self._idle_since: float | None = None
        # After an upgrade request's head nothing is parsed as HTTP: what arrives goes here
        # instead (kept until the handler decides, then the new protocol, or dropped).
        self._divert_to: Any = None
        self._upgrade_data: bytearray | None = None  # bytes after an upgrade request's head
        self._switched: Any = None  # the protocol the connection was handed to after a 101
        # An upgrade request with a body (llhttp skips such bodies) and the framing
        # field it had: the body is read after the head with a fresh parser.
        self._body_after_upgrade: tuple[_Exchange, bytes] | None = None
        self._resuming_body: _Exchange | None = None
        self._h2c: tuple[Request, bytes] | None = None  # an accepted Upgrade: h2c request, until llhttp stops

    # -- connection ---------------------------------------------------------------------

    def connectionMade(self) -> None:
        no_delay(self.transport)
        peer, self._peer = self._peer, None
        if peer is None:
            peer = self.transport.getPeer()
        self._remote = (_unmapped(getattr(peer, "host", "") or ""), getattr(peer, "port", 0) or 0)
        if self.tls is None and ISSLTransport.providedBy(self.transport):
            self._tls_pending = True
        self.server.connection_made(self)
        self._arm_idle_timer()

    def _read_tls_state(self) -> Any:
        """The TLS connection's details, read once the handshake is done (the first request)."""
        self._tls_pending = False
        handle = self.transport.getHandle()
        self.tls = TLSState.from_connection(handle)
        return self.tls

    def connectionLost(self, reason: Any = None) -> None:
        self._stop_idle_timer()
        if self._fresh_call is not None:
            if self._fresh_call.active():
                self._fresh_call.cancel()
            self._fresh_call = None
        # The parser calls back into this protocol (a reference cycle per connection that
        # only the garbage collector would free); nothing more is parsed from here on.
        self.closing = True
        self._parser = None
        switched = self._switched
        if switched is not None:
            switched.connectionLost(reason)
            self.transport = None  # gone: nothing left here for a forced close to abort
            when_closed = getattr(switched, "when_closed", None)
            if when_closed is None:
                self.server.connection_lost(self)
            else:
                # A tunnel: the server's drain also waits for its other side to close.
                when_closed().addBoth(lambda _: self.server.connection_lost(self))
            return
        error = getattr(reason, "value", reason)
        if self._parsing is not None and not self._parsing.complete:
            self._parsing.request.body.finish(Failure(ConnectionError(f"client went away: {error}")))
        for exchange in self._exchanges:
            if not exchange.complete:
                exchange.request.body.finish(Failure(ConnectionError(f"client went away: {error}")))
            exchange.response.connection_lost(ConnectionError(str(error)))
        self._exchanges.clear()
        self.server.connection_lost(self)

    def _local_address(self) -> tuple[str, int]:
        """This end of the connection, asked for once (``getHost`` is a ``getsockname`` call)."""
        local = self._local
        if local is None:
            host = self.transport.getHost() if self.transport is not None else None
            local = self._local = (getattr(host, "host", "") or "", getattr(host, "port", 0) or 0)
        return local

    @property
    def idle(self) -> bool:
        return not self._exchanges and self._parsing is None and self._switched is None

    def hand_over(self) -> None:
        """The connection went to another protocol before any request (HTTP/2 chosen at
        its first bytes): stop the idle timer and leave the server's connection set."""
        self._stop_idle_timer()
        self._parser = None
        self.closing = True
        self.server.connection_lost(self)

    def close_when_idle(self) -> None:
        """Graceful shutdown: finish what is in flight, then close.

        A connection handed to another protocol (a tunnel) is closed now, as Caddy
        closes its upgraded connections when it stops: through the protocol's
        ``close_gracefully()`` (WebSocket tunnels send a 1001 close frame first).
        A connection that has not sent a request yet gets ``FRESH_CONNECTION_GRACE`` seconds
        for its first one, which is served and answered with ``Connection: close``.
        """
        if not self._requested and self.idle and not self.closing and self.reactor is not None \
                and self.transport is not None:
            if self._fresh_call is None:
                self._fresh_call = self.reactor.callLater(FRESH_CONNECTION_GRACE, self._fresh_expired)
            return
        self.closing = True
        switched = self._switched
        if switched is not None:
            close = getattr(switched, "close_gracefully", None)
            if close is not None:
                close()
            elif self.transport is not None:
                self.transport.loseConnection()
            return
        if self.idle and self.transport is not None:
            self.transport.loseConnection()

    def _fresh_expired(self) -> None:
        self._fresh_call = None
        self._requested = True  # no longer given the benefit of the doubt
        self.close_when_idle()

    # -- idle timeout ---------------------------------------------------------------------

    # One timer per connection, not one per request: a keep-alive connection that serves
    # many requests only records when it became idle, and the timer, when it fires early,
    # waits for the rest (callLater/cancel per request cost ~7 % of a small proxied request).

    def _arm_idle_timer(self) -> None:
        timeout = getattr(self.server, "idle_timeout", 0)
        if timeout and self.reactor is not None:
            self._idle_since = self.reactor.seconds()
            if self._idle_call is None:
                self._idle_call = self.reactor.callLater(timeout, self._idle_timeout)

    def _cancel_idle_timer(self) -> None:
        """The connection is busy again (the pending timer, if any, will notice)."""
        self._idle_since = None

    def _stop_idle_timer(self) -> None:
        self._idle_since = None
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None

    def _idle_timeout(self) -> None:
        self._idle_call = None
        since = self._idle_since
        if since is None:
            return  # busy: the next _arm_idle_timer starts a new wait
        remaining = since + getattr(self.server, "idle_timeout", 0) - self.reactor.seconds()
        if remaining > 0:
            self._idle_call = self.reactor.callLater(remaining, self._idle_timeout)
            return
        if self.idle and self.transport is not None:
            self.transport.loseConnection()

    # -- reading ------------------------------------------------------------------------------

    def _pause_reading(self, reason: str) -> None:
        if not self._paused_reasons and self.transport is not None:
            self.transport.pauseProducing()
        self._paused_reasons.add(reason)

    def _resume_reading(self, reason: str) -> None:
        if reason in self._paused_reasons:
            self._paused_reasons.discard(reason)
            if not self._paused_reasons and self.transport is not None:
                self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        divert = self._divert_to
        if divert is not None:
            divert(data)
            return
        parser = self._parser
        if self._error_status or parser is None:
            return
        self._cancel_idle_timer()
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade_requested(data[upgrade.args[0]:])
        except httptools.HttpParserCallbackError as e:
            cause = e.__context__
            if isinstance(cause, _BadRequest):
                self._reject(cause.status, cause.reason)
            else:
                self.log.error("error while reading a request: {error!r}", error=cause)
                self._reject(400, "bad request")
        except httptools.HttpParserInvalidMethodError:
            self._reject(501, "unsupported method")
        except httptools.HttpParserError as e:
            self._reject(_status_for_parser_error(str(e)), str(e))

    def _reject(self, status: int, reason: str) -> None:
        """Answer a malformed request and close: nothing of it reaches a handler as valid."""
        self._error_status = status
        self.closing = True
        self.log.debug("rejecting request from {remote}: {status} {reason}", remote=self._remote, status=status, reason=reason)
        parsing = self._parsing
        if parsing is not None and not parsing.complete:
            # The head was fine but the body is not: whoever reads it gets a 400.
            self._parsing = None
            parsing.close_after = True
            if self._exchanges and self._exchanges[0] is not parsing:
                self._exchanges.remove(parsing)  # pipelined, never dispatched: drop it
            parsing.request.body.finish(Failure(HandlerError(400, f"malformed request body: {reason}")))
            return
        if self.transport is None:
            return
        if not self._exchanges:
            body = f"{status} {status_text(status)}: {reason}\n".encode("latin-1", "replace")
            self.transport.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (status, status_text(status).encode("ascii"), len(body), body)
            )
            self.transport.loseConnection()
        # else: the response in progress finishes, then the connection closes.

    # httptools callbacks

    def on_message_begin(self) -> None:
        self._url = bytearray()
        self._header_pairs = []
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.max_header_bytes:
            raise _BadRequest(431, "request header fields too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes + len(self._url) > self.max_header_bytes:
            raise _BadRequest(431, "request header fields too large")
        self._header_pairs.append((name, value))

    def on_headers_complete(self) -> None:
        if self._resuming_body is not None:
            # The stand-in head of an upgrade request's body (see _upgrade_requested).
            self._parsing, self._resuming_body = self._resuming_body, None
            return
        if self.closing:
            # The connection is closing (e.g. after an ambiguous framing): nothing more
            # that arrives on it is served.
            self._parsing = None
            return
        if not self._requested:
            self._requested = True
            if self._fresh_call is not None:  # stopping: this first request is the last
                self._fresh_call.cancel()
                self._fresh_call = None
                self.closing = True
        parser = self._parser
        if parser is None:  # lost while this data was parsed
            return
        version = parser.get_http_version()
        method = parser.get_method().decode("ascii")
        headers = Headers.from_raw(self._header_pairs)
        http10 = version == "1.0"
        if version not in ("1.1", "1.0"):
            # HTTP/0.9 has no head to route on; other majors are not HTTP/1 (Go answers the same).
            if version.startswith("0."):
                raise _BadRequest(400, "malformed HTTP version")
            raise _BadRequest(505, "unsupported protocol version")
        hosts = headers.values_of("Host")
        if hosts is None:
            if version == "1.1":
                raise _BadRequest(400, "missing required Host header")
        elif len(hosts) > 1:
            raise _BadRequest(400, "too many Host headers")
        target = self._url.decode("latin-1")
        if not target.startswith("/") and not (method == "OPTIONS" and target == "*"):
            target = _origin_form(target, headers)
        length_values = headers.values_of("Content-Length")
        codings = headers.values_of("Transfer-Encoding")
        chunked = bool(codings)
        if codings and (len(codings) != 1 or codings[0].strip(" \t").lower() != "chunked"):
            # Like Go: chunked is the only transfer coding served; anything else (gzip,
            # unknown codings, several fields) is refused before a handler sees it.
            raise _BadRequest(501, "unsupported transfer encoding")
        smuggling_risk = False
        if chunked:
            length: int | None = None
            if length_values:
                headers.delete("Content-Length")
                smuggling_risk = True
        elif length_values:
            length = int(length_values[0])
        else:
            length = 0

        body = RequestBody(length, self._body_drained, self)
        request = Request(
            method,
            target,
            headers,
            proto=f"HTTP/{version}",
            remote=self._remote,
            local=self._local if self._local is not None else self._local_address,
            tls=self.tls if not self._tls_pending else self._read_tls_state(),
            body=body,
            server=self.server,
            clock=self.clock,
        )
        keep_alive = parser.should_keep_alive() and not self.closing and not smuggling_risk
        response = H1Response(self, request, http10, method == "HEAD")
        expects = headers.values_of("Expect")
        expect = expects is not None and expects[0].lower() == "100-continue" and not http10
        exchange = _Exchange(request, response, not keep_alive, expect)
        if parser.should_upgrade():
            if length == 0 and self.upgrade_h2c is not None and not self._exchanges and self.tls is None:
                settings = _h2c_settings(headers)
                if settings is not None:
                    # Served as HTTP/2 stream 1 after the 101 (see _upgrade_requested).
                    self._h2c = (request, settings)
                    self._parsing = exchange
                    return
            if length == 0:
                # Whatever the answer, nothing after this head is HTTP: a normal
                # response closes the connection, a 101 hands it over.
                exchange.upgrade = True
                exchange.close_after = True
            else:
                framing = b"Transfer-Encoding: chunked" if length is None else b"Content-Length: %d" % length
                self._body_after_upgrade = (exchange, framing)
        self._parsing = exchange
        self._exchanges.append(exchange)
        if expect:

            def continue_then_read() -> None:
                self._send_continue(exchange)
                self._body_drained()

            body._on_drain = continue_then_read
        if len(self._exchanges) == 1:
            self._dispatch(exchange)
        else:
            self._pause_reading("pipeline")

    def _body_drained(self) -> None:
        """A request body's consumer took what was kept: read from the client again."""
        self._resume_reading("body")

    def on_body(self, data: bytes) -> None:
        exchange = self._parsing
        if exchange is None:
            return
        body = exchange.request.body
        body.feed(data)
        if body.buffered > BODY_BUFFER_LIMIT:
            self._pause_reading("body")

    def on_message_complete(self) -> None:
        exchange = self._parsing
        if self._body_after_upgrade is not None and self._body_after_upgrade[0] is exchange:
            return  # llhttp skipped this upgrade request's body: it is read next
        self._parsing = None
        if exchange is None:
            return
        exchange.complete = True
        exchange.request.body.finish()
        if exchange.response.finished and self._exchanges and self._exchanges[0] is exchange:
            self._next_exchange()

    # -- upgrades ------------------------------------------------------------------------

    def _upgrade_requested(self, rest: bytes) -> None:
        """llhttp stopped after an upgrade request's head; ``rest`` is what followed it."""
        h2c = self._h2c
        if h2c is not None:
            self._h2c = None
            self._switch_to_h2c(h2c[0], h2c[1], rest)
            return
        pending = self._body_after_upgrade
        if pending is not None:
            # An upgrade request with a body is served as a plain request (it cannot
            # switch): read its body, and the requests after it, with a fresh parser
            # primed with a stand-in head that carries the body's framing.
            self._body_after_upgrade = None
            exchange, framing = pending
            self._resuming_body = exchange
            self._parser = _new_parser(self)
            self.dataReceived(b"PUT / HTTP/1.1\r\nHost: body\r\n" + framing + b"\r\n\r\n" + rest)
            return
        switched = self._switched
        if switched is not None:
            # The handler switched before the head was fully parsed (synchronously).
            if rest:
                switched.dataReceived(rest)
            return
        self._upgrade_data = bytearray(rest)
        self._divert_to = self._upgrade_data.extend
        if not getattr(self.transport, "disconnecting", False):  # else answered and closing already
            self._pause_reading("upgrade")

    def _switch_to_h2c(self, request: Request, settings: bytes, rest: bytes) -> None:
        """``Upgrade: h2c`` (Go's h2c handler): 101, then HTTP/2 with the request as stream 1."""
        assert self.upgrade_h2c is not None
        transport = self.transport
        send_now(transport, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
        protocol = self.upgrade_h2c(request, settings)
        self.hand_over()  # the HTTP/2 protocol joins the server's connections itself
        self._switched = protocol
        self._divert_to = protocol.dataReceived
        protocol.makeConnection(transport)
        if rest:
            protocol.dataReceived(rest)

    def _switchable(self, response: H1Response) -> _Exchange | None:
        exchanges = self._exchanges
        if not exchanges or response.head_sent or self._switched is not None:
            return None
        exchange = exchanges[0]
        if exchange.response is not response or not exchange.upgrade:
            return None
        return exchange

    def _switch_protocols(self, response: H1Response, protocol: Any) -> None:
        exchange = self._switchable(response)
        if exchange is None:
            raise RuntimeError("switch_protocols needs the connection's upgrade request, before any response")
        fields = sorted(response.headers.lists(), key=itemgetter(0))  # by name, as Go writes them
        transport = self.transport
        send_now(transport, head_bytes(["HTTP/1.1 101 Switching Protocols\r\n"], fields))
        response.head_sent = True
        response.status = 101
        response.finished = True
        self._exchanges.clear()
        self._stop_idle_timer()
        # From now on the connection is ``protocol``'s: no parsing, no idle timer.
        self._switched = protocol
        self._divert_to = protocol.dataReceived
        kept, self._upgrade_data = self._upgrade_data, None
        if self._paused_reasons:
            self._paused_reasons.clear()
            transport.resumeProducing()
        protocol.makeConnection(transport)
        if kept:
            protocol.dataReceived(bytes(kept))
        response._fire_finished()
        if self.closing:
            self.close_when_idle()  # switched while the server drains: the tunnel closes at once

    # -- dispatching -----------------------------------------------------------------------

    def _send_continue(self, exchange: _Exchange) -> None:
        if exchange.expect_continue and not exchange.response.head_sent and not exchange.complete:
            exchange.expect_continue = False
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _dispatch(self, exchange: _Exchange) -> None:
        self.server.handle(exchange.request, exchange.response)

    def _exchange_of(self, response: Response) -> _Exchange | None:
        for exchange in self._exchanges:
            if exchange.response is response:
                return exchange
        return None

    def _response_finished(self, response: H1Response) -> None:
        if not self._exchanges or self._exchanges[0].response is not response:
            return
        exchange = self._exchanges[0]
        if response.close_connection or self._error_status or (self.closing and exchange.complete):
            self._exchanges.popleft()
            self.closing = True
            lose_connection(self.transport)
            return
        if not exchange.complete:
            body = exchange.request.body
            remaining = None if body.length is None else body.length - body.received
            if exchange.expect_continue or remaining is None or remaining > DISCARD_LIMIT:
                # Unread body we won't wait for: close rather than read it all.
                self._exchanges.popleft()
                self.closing = True
                self.transport.loseConnection()
                return
            if not body._consumer:
                body.discard()
            return  # on_message_complete moves on
        self._next_exchange()

    def _next_exchange(self) -> None:
        self._exchanges.popleft()
        if self.closing:
            self.transport.loseConnection()
            return
        if self._exchanges:
            self._dispatch(self._exchanges[0])
            if len(self._exchanges) == 1:
                self._resume_reading("pipeline")
        else:
            self._resume_reading("pipeline")
            self._arm_idle_timer()

    # -- IPushProducer (not used for reading; the transport is paused directly) --------

    def pauseProducing(self) -> None:
        if self._switched is None:  # a tunnel does its own flow control
            self._pause_reading("consumer")

    def resumeProducing(self) -> None:
        if self._switched is None:
            self._resume_reading("consumer")

    def stopProducing(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()


classImplements(HTTP11Protocol, IPushProducer, IServerConnection)


class HTTP11Factory(Factory):
    """Builds an ``HTTP11Protocol`` per connection for one server."""

    def __init__(self, server: IHTTPServer, reactor: Any = None, tls: Any = None) -> None:
        self.server = server
        self.reactor = reactor
        self.tls = tls

    def buildProtocol(self, addr: Any) -> HTTP11Protocol:
        protocol = HTTP11Protocol(self.server, self.reactor, self.tls, peer=addr)
        protocol.factory = self
        return protocol
