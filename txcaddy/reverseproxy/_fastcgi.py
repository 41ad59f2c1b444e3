"""The ``fastcgi`` transport of reverse_proxy (what ``php_fastcgi`` expands to), on Twisted.

Follows the FastCGI 1.0 specification (fastcgi-archives: "FastCGI Specification", Open
Market 1996: records, name-value pairs, the Responder role, ``FCGI_KEEP_CONN``) and Caddy
2.6.2's ``modules/caddyhttp/reverseproxy/fastcgi/fastcgi.go`` (the options, their defaults
and the CGI/1.1 environment built per request) and ``client.go`` (how the response is read:
CGI headers on stdout, ``Status`` giving the code, stderr logged).

Written here rather than taken from a FastCGI library: the maintained Python ones
(``flup``, ``fastcgi``) are servers or blocking clients; what a proxy needs is the record
codec (about 80 lines) under the connection pool the HTTP transports already share, so
retries, health checks, ``handle_response`` and the streaming relay work unchanged.

The connection plugs into ``_pool.UpstreamPool`` as an ``IUpstreamConnection`` and its
exchange is an ``_exchange.Exchange`` (``IExchange``) whose body framing is FastCGI
``STDIN`` records.  Differences from Caddy 2.6.2, which dials a new connection per request:
connections are kept (``FCGI_KEEP_CONN``) in the pool.  php-fpm pins one worker to each open
connection, so a new connection may find no free worker: ``_Workers`` closes idle connections
(of every FastCGI pool) for it, and connections that finish while it waits are not kept.
``read_timeout`` and ``write_timeout`` are Caddy's: deadlines set once when the request
starts (the whole response must have been read, the whole request written, by then).
"""

from __future__ import annotations

import struct
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy.config.placeholders import Template
from txcaddy.config.registry import module
from txcaddy.config.schema import BOOL, DURATION, STRING, STRINGS, MapOf, Obj
from txcaddy.config.values import duration_seconds
from txcaddy.errors import ConfigError
from txcaddy.interfaces import IUpstreamConnection, IUpstreamTransport
from txcaddy.reverseproxy._dial import UpstreamAddress
from txcaddy.reverseproxy._exchange import CHUNKED, Exchange, RawHeaders, ResponseHead
from txcaddy.reverseproxy._fastcgienv import build_env
from txcaddy.reverseproxy._fastcgirecords import (
    _MAX_HEAD,
    END_REQUEST,
    REQUEST_COMPLETE,
    REQUEST_ID,
    STDERR,
    STDIN,
    STDOUT,
    FastCGIError,
    RecordParser,
    _head_end,
    begin_request,
    encode_pair,
    encode_params,
    parse_cgi_head,
    record,
    stream_pieces,
    stream_records,
)
from txcaddy.reverseproxy._pool import HostPool, PooledConnection, UpstreamPool
from txcaddy.reverseproxy.errors import (
    UpstreamConnectionLost,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamReadTimeout,
    UpstreamWriteTimeout,
)

__all__ = [
    "FastCGIError",
    "FastCGITransport",
    "RecordParser",
    "build_env",
    "encode_params",
    "encode_pair",
    "parse_cgi_head",
    "record",
    "stream_pieces",
    "stream_records",
]

_WHERE = "reverse_proxy transport fastcgi"
_log = Logger(namespace="txcaddy.reverseproxy.fastcgi")

# -- the exchange and the connection ---------------------------------------------------------------


class FastCGIExchange(Exchange):
    """One request over FastCGI: the ``IExchange`` of ``_exchange`` with ``STDIN`` framing.

    ``head_bytes`` holds ``BEGIN_REQUEST`` and the ``PARAMS`` stream (and the end of
    ``STDIN`` when there is no body).  ``discard_body`` (HEAD, OPTIONS) sends no body, as
    Caddy's client does.
    """

    discard_body = False
    #: A chunked body being read whole (php-fpm needs its length up front), else None.
    _spool: list[bytes] | None = None
    #: Sends the spooled request once its body is complete (set with ``_spool``).
    _send_spooled: Callable[[FastCGIExchange, int], None] | None = None

    @property
    def body_wanted(self) -> bool:
        """Spooling takes the body at once; otherwise the connection must be ready for it."""
        return self._spool is not None or super().body_wanted

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self._spool is not None:
            self._body_producer = producer  # read at the client's pace, never paused here
            self._body_streaming = streaming
            return
        super().registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self._spool is not None:
            self._body_producer = None
            return
        super().unregisterProducer()

    def write(self, data: bytes) -> None:
        if self.body_done or not data:
            return
        if self._spool is not None:
            self._spool.append(data)
            return
        if self.body_length != CHUNKED:
            if len(data) > self.body_remaining:
                raise ValueError("request body longer than its Content-Length")
            self.body_remaining -= len(data)
        if not self.discard_body:
            self._send(stream_pieces(STDIN, REQUEST_ID, data))
        if self.body_length != CHUNKED and self.body_remaining == 0:
            self._body_complete()

    def finish_body(self, trailers: RawHeaders | None = None) -> None:
        if self.body_done:
            return
        if self._spool is not None:
            spool, self._spool = self._spool, None
            self._body_producer = None
            if self.finished:
                return  # aborted while the body was read: nothing is sent
            body = b"".join(spool)
            send, self._send_spooled = self._send_spooled, None
            assert send is not None
            self.body_length = len(body)
            self.body_done = True
            self._pending.extend(stream_records(STDIN, REQUEST_ID, body))
            self._pending.append(record(STDIN, REQUEST_ID))
            send(self, len(body))
        elif self.body_length == CHUNKED:
            self._body_complete()
        else:
            self.abort(UpstreamProtocolError("request body shorter than its Content-Length"))

    def _body_complete(self) -> None:
        self._send([record(STDIN, REQUEST_ID)])
        super()._body_complete()

    def switch_protocol(self, protocol: Any) -> None:
        raise RuntimeError("FastCGI responses never switch protocols")

    def copy_body_to(self, response: Any) -> None:
        """Not done: its body arrives in STDOUT records, not as the socket's bytes."""


# Connection states.
_IDLE, _HEAD, _BODY = 0, 1, 2


@implementer(IUpstreamConnection)
class FastCGIConnection(PooledConnection):
    """One connection to a FastCGI server: one request at a time (request id 1), kept open.

    Reports each exchange's end to its ``HostPool`` like the HTTP/1.1 connection; the
    response's stdout becomes the head then the body, stderr is collected and logged.

    States: ``_IDLE`` (no exchange; any byte received drops the connection) → ``start`` →
    ``_HEAD`` (stdout is collected until the blank line ending the CGI headers) → ``_BODY``
    (stdout is the body: to the consumer, or kept while there is none) → ``FCGI_END_REQUEST``
    → ``_IDLE``, kept in the pool or closed.  A failure, a timeout or the connection's loss in
    any state ends the exchange and the connection.  Reading stops while ``pauses`` is not
    empty (``"no-consumer"``: nobody takes the body yet; ``"consumer"``: the client is slow);
    records already received wait in ``pending``.
    """

    transport: Any = None

    def __init__(self, pool: FastCGIPool, host: HostPool) -> None:
        self.pool = pool
        self.host = host
        self.exchange: FastCGIExchange | None = None
        self.state = _IDLE
        self.parser = RecordParser()
        self.head_buffer = b""
        self.body_buffer: list[bytes] = []
        self.stderr: list[bytes] = []
        self.stderr_size = 0
        self.ended = False
        self.pauses: set[str] = set()
        #: Records received but not handled yet (reading is paused).
        self.pending: deque[tuple[int, int, bytes]] = deque()
        self.read_timer: Any = None
        self.write_timer: Any = None
        self.idle_timer: Any = None
        self.idle_since: float | None = None
        self.dial: Any = None
        self.handshake_ok = False
        self.lost_reason: Failure | None = None
        self.requests = 0
        self.responded = False
        self.worker_wait = False  # counted in ``pool.workers.waiting``

    # -- lifecycle ------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = True
        self.prepare_socket(self.pool)

    def start(self, exchange: FastCGIExchange) -> None:
        self.idle_since = None
        self.exchange = exchange
        self.state = _HEAD
        self.head_buffer = b""
        self.body_buffer = []
        self.stderr = []
        self.stderr_size = 0
        self.ended = False
        self.responded = False
        self.requests += 1
        if self.requests == 1:
            # A new connection: php-fpm may have no free worker for it yet.
            self.worker_wait = True
            self.pool.workers.waiting_started(self.host.address.key)
        reactor = self.pool.reactor
        if self.pool.read_timeout:
            self.read_timer = reactor.callLater(self.pool.read_timeout, self._read_timed_out)
        if self.pool.write_timeout and not exchange.body_done:
            self.write_timer = reactor.callLater(self.pool.write_timeout, self._write_timed_out)
        exchange._attach(self)  # the same connection interface

    def _responding(self) -> None:
        """The first byte of the response arrived: no longer waiting for a worker."""
        if not self.responded:
            self.responded = True
            self._unwait()

    def _unwait(self) -> None:
        if self.worker_wait:
            self.worker_wait = False
            self.pool.workers.waiting_ended(self.host.address.key)

    def request_written(self) -> None:
        self._stop("write_timer")

    def register_body_producer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregister_body_producer(self) -> None:
        self.transport.unregisterProducer()

    def _stop(self, name: str) -> None:
        timer = getattr(self, name)
        setattr(self, name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _read_timed_out(self) -> None:
        self.read_timer = None
        self.fail(UpstreamReadTimeout(
            f"read from {self.host.address}: i/o timeout after {self.pool.read_timeout}s"))

    def _write_timed_out(self) -> None:
        self.write_timer = None
        self.fail(UpstreamWriteTimeout(
            f"write to {self.host.address}: i/o timeout after {self.pool.write_timeout}s"))

    def _end_exchange(self) -> FastCGIExchange | None:
        exchange, self.exchange = self.exchange, None
        self._unwait()
        self.responded = False
        self.state = _IDLE
        self._stop("read_timer")
        self._stop("write_timer")
        if exchange is not None and exchange._body_producer is not None:
            exchange._body_producer = None
            if self.transport is not None:
                self.transport.unregisterProducer()
        return exchange

    def fail(self, exc: BaseException) -> None:
        """Abort the current exchange with ``exc`` and drop the connection."""
        exchange = self._end_exchange()
        if self.transport is not None:
            self.transport.abortConnection()
        if exchange is not None:
            self._log_stderr(exchange, 502)
            exchange._fail(Failure(exc))
            self.host.connection_done(self, reusable=False)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost_reason = reason
        self.closed()
        if self.exchange is not None and self.pending:
            # Records held back by a pause arrived before the close: handle them first.
            self.pauses.clear()
            self._process()
        exchange = self.exchange
        if exchange is None:
            self.host.idle_lost(self)
            return
        if (self.state == _HEAD and not self.responded and self.requests > 1
                and exchange.replayable and not exchange.retried and not exchange.finished):
            # php-fpm closed the kept connection (pm.max_requests, a restart) before our
            # request reached it: send it again on a new connection.
            self._end_exchange()
            exchange._rewind()
            self.host.redial(exchange)
            return
        self._end_exchange()
        exchange._fail(Failure(UpstreamConnectionLost(
            f"FastCGI connection lost: {reason.getErrorMessage()}")))
        self.host.connection_done(self, reusable=False)

    def close(self) -> None:
        self.transport.loseConnection()

    # -- flow control ---------------------------------------------------------------------

    def pause(self, why: str) -> None:
        if not self.pauses and self.transport is not None:
            self.transport.pauseProducing()
        self.pauses.add(why)

    def resume(self, why: str) -> None:
        if why not in self.pauses:
            return
        self.pauses.discard(why)
        if why == "no-consumer":
            self._flush_body()
        if not self.pauses and self.exchange is not None:
            if self.transport is not None:
                self.transport.resumeProducing()
            if self.pending:
                self._process()

    def _flush_body(self) -> None:
        exchange = self.exchange
        if exchange is None or exchange._consumer is None:
            return
        chunks, self.body_buffer = self.body_buffer, []
        for chunk in chunks:
            if self.exchange is not exchange or exchange._consumer is None:
                return
            exchange._consumer.body_data(chunk)
        if self.ended and self.exchange is exchange:
            self._finish()

    # -- reading ----------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.exchange is None:
            # Bytes nobody asked for: the connection is in no known state.
            if self.transport is not None:
                self.transport.abortConnection()
            return
        try:
            self.pending.extend(self.parser.feed(data))
        except FastCGIError as error:
            self._invalid(error)
            return
        if not self.pauses:
            self._process()

    def _invalid(self, error: FastCGIError) -> None:
        _log.warn("FastCGI server {address} sent an invalid response: {error}",
                  address=str(self.host.address), error=str(error))
        self.pending.clear()
        self.fail(error)

    def _process(self) -> None:
        """Handle the received records until the response ends or reading is paused."""
        pending = self.pending
        try:
            while pending and not self.pauses:
                if self.exchange is None:
                    raise FastCGIError("data after the end of the request")
                rtype, request_id, content = pending.popleft()
                if request_id != REQUEST_ID:
                    if request_id == 0:
                        continue  # a management record: not ours to answer
                    raise FastCGIError(f"record for unknown request id {request_id}")
                self._responding()
                if rtype == STDOUT:
                    self._stdout(content)
                elif rtype == STDERR:
                    self._stderr(content)
                elif rtype == END_REQUEST:
                    self._end_request(content)
                    return
                else:
                    raise FastCGIError(f"unexpected FastCGI record type {rtype}")
        except FastCGIError as error:
            self._invalid(error)

    def _stdout(self, content: bytes) -> None:
        if not content:
            return
        if self.state == _HEAD:
            buffered = self.head_buffer + content
            end, body_at = _head_end(buffered)
            if end == -1:
                if len(buffered) > _MAX_HEAD:
                    raise FastCGIError("CGI response headers too large")
                self.head_buffer = buffered
                return
            self.head_buffer = b""
            self._head(buffered[:end])
            content = buffered[body_at:]
            if not content or self.exchange is None:
                return
        exchange = self.exchange
        assert exchange is not None
        if exchange.is_head_request:
            return
        if exchange._consumer is not None and not self.body_buffer:
            exchange._consumer.body_data(content)
        else:
            self.body_buffer.append(content)
            self.pause("no-consumer")

    def _head(self, block: bytes) -> None:
        head = parse_cgi_head(block)
        exchange = self.exchange
        assert exchange is not None
        self.state = _BODY
        exchange.response = head
        exchange._report_head(head)
        if self.exchange is exchange and exchange._consumer is None:
            self.pause("no-consumer")

    def _stderr(self, content: bytes) -> None:
        if content and self.stderr_size < 65536:
            self.stderr.append(content)
            self.stderr_size += len(content)

    def _end_request(self, content: bytes) -> None:
        if len(content) < 5:
            raise FastCGIError("short FCGI_END_REQUEST record")
        app_status, protocol_status = struct.unpack_from(">IB", content)
        if protocol_status != REQUEST_COMPLETE and self.state == _HEAD and not self.head_buffer:
            raise FastCGIError(f"FastCGI request refused (protocol status {protocol_status})")
        if self.state == _HEAD:
            # Go reads headers up to EOF too: whatever stdout held is the head.
            self._head(self.head_buffer)
            self.head_buffer = b""
        self.ended = True
        # Anything after the end of the request leaves the connection in no known state.
        self.keep = not self.pending and not self.parser.buffer
        self.pending.clear()
        self.parser.buffer = b""
        exchange = self.exchange
        if exchange is not None and exchange._consumer is not None and not self.body_buffer:
            self._finish()

    keep = True

    def _finish(self) -> None:
        """The response is complete and delivered: release the connection, then report."""
        exchange = self._end_exchange()
        if exchange is None:
            return
        status = exchange.response.status if exchange.response is not None else 200
        self._log_stderr(exchange, status)
        if self.pauses:
            self.pauses.clear()
            if self.transport is not None:
                self.transport.resumeProducing()
        # php-fpm pins a worker to a kept connection: keep it only while no other request
        # to this server waits for a worker.
        reusable = (self.keep and self.pool.keep_conn and exchange.body_done and self.connected
                    and not self.pool.workers.waiting.get(self.host.address.key))
        if not reusable and self.transport is not None:
            self.transport.loseConnection()
        self.host.connection_done(self, reusable=reusable)
        exchange._succeed()

    def _log_stderr(self, exchange: FastCGIExchange, status: int) -> None:
        if not self.stderr:
            return
        text = b"".join(self.stderr).decode("utf-8", "replace")
        self.stderr = []
        self.stderr_size = 0
        if not self.pool.capture_stderr:
            _log.debug("FastCGI stderr: {stderr}", stderr=text)
        elif status >= 400:
            _log.error("stderr", stderr=text, status=status)
        else:
            _log.warn("stderr", stderr=text, status=status)


class _Workers:
    """The FastCGI pools of one reactor, and per upstream address how many requests wait on a
    new connection for their first response byte.

    php-fpm gives each connection a worker for as long as it stays open: a kept idle
    connection, in any pool (two sites proxying to one php-fpm), holds a worker that a new
    connection may be waiting for.  So a request starting on a new connection closes one idle
    connection to the same address, and while such requests wait, finished connections are
    closed rather than kept.
    """

    _by_reactor: weakref.WeakKeyDictionary[Any, _Workers] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.pools: weakref.WeakSet[FastCGIPool] = weakref.WeakSet()
        self.waiting: dict[Any, int] = {}

    @classmethod
    def of(cls, reactor: Any) -> _Workers:
        try:
            return cls._by_reactor[reactor]
        except KeyError:
            workers = cls._by_reactor[reactor] = cls()
            return workers
        except TypeError:  # a reactor that takes no weak reference: one registry per pool
            return cls()

    def waiting_started(self, key: Any) -> None:
        self.waiting[key] = self.waiting.get(key, 0) + 1
        for pool in list(self.pools):
            host = pool._hosts.get(key)
            if host is not None and host.idle:
                host._retire(host.idle[0])  # the oldest: its worker can take the new one
                return

    def waiting_ended(self, key: Any) -> None:
        count = self.waiting.get(key, 0) - 1
        if count > 0:
            self.waiting[key] = count
        else:
            self.waiting.pop(key, None)


class FastCGIPool(UpstreamPool):
    """The shared pool with FastCGI connections and the FastCGI transport's timeouts."""

    def __init__(self, reactor: Any, *, read_timeout: float | None = None,
                 write_timeout: float | None = None, keep_conn: bool = True,
                 capture_stderr: bool = False, **options: Any) -> None:
        super().__init__(reactor, connection_factory=FastCGIConnection, **options)
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.keep_conn = keep_conn
        self.capture_stderr = capture_stderr
        #: What every FastCGI pool on this reactor knows of php-fpm's workers.
        self.workers = _Workers.of(reactor)
        self.workers.pools.add(self)

    def submit(self, address: UpstreamAddress, exchange: FastCGIExchange) -> None:
        key = address.key
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = HostPool(self, key, address)
        exchange.host = host
        exchange.address = address
        host.submit(exchange)


# -- the transport ---------------------------------------------------------------------------------

_FIELDS = frozenset((
    "protocol", "root", "split_path", "resolve_root_symlink", "env", "dial_timeout",
    "read_timeout", "write_timeout", "capture_stderr"))
DEFAULT_DIAL_TIMEOUT = 3.0


@implementer(IUpstreamTransport)
class FastCGITransport:
    """Caddy's ``fastcgi`` transport: the CGI environment and a pool of FastCGI connections."""

    compression = False  # only the http transport asks upstreams for gzip
    unsupported_reason: str | None = None

    def __init__(
        self,
        reactor: Any,
        *,
        root: str = "{http.vars.root}",
        split_path: list[str] | None = None,
        resolve_root_symlink: bool = False,
        env: dict[str, str] | None = None,
        dial_timeout: float = DEFAULT_DIAL_TIMEOUT,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        capture_stderr: bool = False,
        keep_conn: bool = True,
        endpoint_factory: Callable[[UpstreamAddress], Any] | None = None,
    ) -> None:
        self.reactor = reactor
        self.root = Template(root or "{http.vars.root}")
        self.split_path = list(split_path or [])
        self.resolve_root_symlink = resolve_root_symlink
        self.env = [(k, Template(v)) for k, v in (env or {}).items()]
        self.pool = FastCGIPool(
            reactor, read_timeout=read_timeout, write_timeout=write_timeout,
            keep_conn=keep_conn, capture_stderr=capture_stderr, dial_timeout=dial_timeout,
            endpoint_factory=endpoint_factory, max_idle_per_host=32, idle_timeout=120.0)

    @classmethod
    def from_config(cls, config: dict[str, Any], reactor: Any) -> FastCGITransport:
        """Load the JSON ``transport`` object with ``"protocol": "fastcgi"``."""
        if not isinstance(config, dict):
            raise ConfigError(f"{_WHERE}: the transport must be a JSON object")
        unknown = sorted(set(config) - _FIELDS)
        if unknown:
            raise ConfigError(f'{_WHERE}: unknown field "{unknown[0]}"')

        def seconds(field: str) -> float | None:
            value = duration_seconds(config.get(field), f"{_WHERE}: {field}")
            return value if value is not None and value > 0 else None

        split = config.get("split_path") or []
        env = config.get("env") or {}
        if not isinstance(split, list) or not all(isinstance(s, str) for s in split):
            raise ConfigError(f"{_WHERE}: split_path must be a list of strings")
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ConfigError(f"{_WHERE}: env must be an object of strings")
        root = config.get("root") or ""
        if not isinstance(root, str):
            raise ConfigError(f"{_WHERE}: root must be a string")
        dial = duration_seconds(config.get("dial_timeout"), f"{_WHERE}: dial_timeout")
        return cls(
            reactor, root=root, split_path=split,
            resolve_root_symlink=bool(config.get("resolve_root_symlink")), env=env,
            dial_timeout=dial if dial else DEFAULT_DIAL_TIMEOUT,
            read_timeout=seconds("read_timeout"), write_timeout=seconds("write_timeout"),
            capture_stderr=bool(config.get("capture_stderr")))

    def request(
        self,
        address: UpstreamAddress,
        method: bytes,
        target: bytes,
        headers: RawHeaders,
        body_length: int | None = None,
        on_informational: Callable[[ResponseHead], None] | None = None,
        request: Any = None,
    ) -> FastCGIExchange:
        """Send one request as a FastCGI Responder request (see ``IUpstreamTransport``)."""
        if b"\0" in target.partition(b"?")[0] or b"%00" in target.partition(b"?")[0]:
            return self._failed(method, _BadRequest("invalid request path"))
        try:
            env = build_env(self, request, method, target, headers, body_length)
        except OSError as error:
            return self._failed(method, UpstreamError(f"building environment: {error}"))
        no_body = method in (b"HEAD", b"OPTIONS")
        if body_length == CHUNKED and not no_body:
            # php-fpm reads CONTENT_LENGTH bytes of stdin and hangs on Caddy's "-1": read the
            # body whole first, then send it with its length (as nginx does).
            exchange = FastCGIExchange(self.pool, None,  # type: ignore[arg-type]
                                       b"", body_length, method, on_informational)
            exchange._pending = []
            exchange._spool = []

            def send(spooled: FastCGIExchange, length: int) -> None:
                try:
                    env = build_env(self, request, method, target, headers, length)
                except OSError as error:
                    spooled._fail(Failure(UpstreamError(f"building environment: {error}")))
                    return
                head = begin_request(REQUEST_ID, self.pool.keep_conn) + encode_params(REQUEST_ID, env)
                spooled._head_bytes = head
                spooled._pending.insert(0, head)
                self.pool.submit(address, spooled)

            exchange._send_spooled = send
            return exchange
        head = [begin_request(REQUEST_ID, self.pool.keep_conn), encode_params(REQUEST_ID, env)]
        if not body_length:
            head.append(record(STDIN, REQUEST_ID))
        exchange = FastCGIExchange(self.pool, None,  # type: ignore[arg-type]
                                   b"".join(head), body_length, method,
                                   on_informational)
        exchange.discard_body = no_body
        exchange.replayable = not body_length and method in (b"GET", b"HEAD", b"OPTIONS")
        self.pool.submit(address, exchange)
        return exchange

    def _failed(self, method: bytes, error: BaseException) -> FastCGIExchange:
        exchange = FastCGIExchange(self.pool, None,  # type: ignore[arg-type]
                                   b"", None, method, None)
        exchange._fail(Failure(error))
        return exchange

    def close_idle(self) -> Deferred[None]:
        """Close idle FastCGI connections (the config is unloaded)."""
        return self.pool.close_idle()


class _BadRequest(UpstreamError):
    """A NUL byte in the path: PHP could run a non-PHP file (Caddy answers 400)."""

    status = 400


@module("http.reverse_proxy.transport.fastcgi", schema=Obj({
    "root": STRING, "split_path": STRINGS, "resolve_root_symlink": BOOL,
    "env": MapOf(STRING),
    "dial_timeout": DURATION, "read_timeout": DURATION, "write_timeout": DURATION,
    "capture_stderr": BOOL,
}))
def load_fastcgi_transport(config: dict[str, Any], context: Any) -> FastCGITransport:
    return FastCGITransport.from_config(config, context.reactor)
