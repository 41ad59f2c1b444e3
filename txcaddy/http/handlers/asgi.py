"""``asgi``: serve an ASGI 3 application (Starlette, FastAPI, Django) in the server's process.

Caddy has no such handler; the behaviour follows the ASGI specification (HTTP, WebSocket and
lifespan scopes, spec version 2.3) and uvicorn where the spec leaves a choice (``lifespan``
``auto``; ``root_path`` prepended to ``path``; a 500 when the app fails before sending).

The app runs on the asyncio event loop that Twisted's asyncio reactor drives: each request
is an asyncio task on that loop, bridged with ``Deferred.fromFuture``, so ``receive`` and
``send`` run on the reactor thread and touch the connection directly. Flow control both
ways: the request body is read from the client only as fast as the app awaits ``receive``
(the connection is paused past ``_BODY_HIGH`` bytes queued), and ``send`` waits while the
client's connection has paused the response (the response's producer protocol).

WebSocket requests (an HTTP/1.1 ``Upgrade: websocket``) are upgraded with the response's
``switch_protocols`` once the app accepts; frames are read and written with ``wsproto``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import sys
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from weakref import WeakKeyDictionary, ref

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from txcaddy._reactor import is_asyncio_reactor
from txcaddy.config.registry import module
from txcaddy.config.schema import STRING, Obj
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.interfaces import IBodyConsumer, IHandler

__all__ = ["ASGIHandler", "Lifespan", "import_app", "load_asgi"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_BODY_HIGH = 64 * 1024  # request body bytes queued for the app before the client is paused
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_WS_CLOSE_WAIT = 5.0  # seconds to wait for the client's close frame after ours

_log = Logger(namespace="txcaddy.asgi")
#: The lifespans of each config being loaded (its ``LoadContext``), by app and mode.
_LIFESPANS: WeakKeyDictionary[Any, dict[tuple[str, str], Lifespan]] = WeakKeyDictionary()


def import_app(spec: str) -> ASGIApp:
    """The application named ``module:attribute`` (``attribute`` may be dotted), as uvicorn reads it.

    The current directory is searched first, as ``uvicorn module:app`` does. Any failure to
    import is a ``ConfigError`` naming the module.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"asgi: the app must be 'module:attribute', got {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any error in the app's import is a config error
        raise ConfigError(f"asgi: importing module {module_name!r}: {type(e).__name__}: {e}") from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"asgi: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(target):
        raise ConfigError(f"asgi: {spec} is not callable")
    return target  # type: ignore[no-any-return]


def _latin1(value: str) -> bytes:
    return value.encode("latin-1", "replace")


def _http_version(proto: str) -> str:
    version = proto.partition("/")[2] or "1.1"
    return {"2.0": "2", "3.0": "3"}.get(version, version)


class Lifespan(Service):
    """The app's lifespan protocol: startup when the config starts, shutdown when it is unloaded.

    ``mode`` ``auto`` (uvicorn's default) runs it and carries on when the app raises before
    answering startup (apps without lifespan support); ``on`` makes that a failure; ``off``
    skips it. ``lifespan.startup.failed`` is a failure in both ``auto`` and ``on``.

    @ivar ready: a Deferred firing once startup is over (with None; failed when it failed).
    @ivar state: the namespace the app fills at startup, copied into each request's scope.
    """

    def __init__(self, app: ASGIApp, loop: asyncio.AbstractEventLoop, mode: str, name: str) -> None:
        self.app = app
        self.loop = loop
        self.mode = mode
        self.app_name = name
        self.state: dict[str, Any] = {}
        self.ready: Deferred[None] = Deferred()
        self.failed: BaseException | None = None
        self._started = False
        self._startup_answered = False
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._shutdown_done: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.on_failure: Callable[[BaseException], None] | None = None

    def stopService(self) -> None:  # noqa: N802 - Twisted's name
        # Nothing here: the shutdown is the config's unload hook, which runs once the
        # connections have drained (the service stops before that, with the listeners).
        Service.stopService(self)

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        Service.startService(self)
        if self._started:
            return
        self._started = True
        if self.mode == "off":
            self.ready.callback(None)
            return
        self._shutdown_done = self.loop.create_future()
        self._inbox.put_nowait({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": dict(_ASGI), "state": self.state}
        self._task = self.loop.create_task(self._run(scope))

    async def _run(self, scope: Scope) -> None:
        try:
            await self.app(scope, self._inbox.get, self._send)
        except BaseException as e:  # noqa: BLE001 - the app's failure, reported below
            if not self._startup_answered:
                if self.mode == "auto":
                    _log.info("ASGI app {app} does not support lifespan ({error}); going on",
                              app=self.app_name, error=repr(e))
                    self._startup(None)
                else:
                    self._startup(RuntimeError(f"ASGI lifespan startup of {self.app_name} raised {e!r}"))
            else:
                _log.error("ASGI app {app} raised in lifespan: {error!r}", app=self.app_name, error=e)
        finally:
            if not self._startup_answered:
                self._startup(RuntimeError(f"ASGI app {self.app_name} returned before lifespan startup completed")
                              if self.mode == "on" else None)
            done = self._shutdown_done
            if done is not None and not done.done():
                done.set_result(None)

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._startup(None)
        elif kind == "lifespan.startup.failed":
            self._startup(RuntimeError(f"ASGI lifespan startup of {self.app_name} failed: {message.get('message', '')}"))
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if kind == "lifespan.shutdown.failed":
                _log.error("ASGI lifespan shutdown of {app} failed: {message}", app=self.app_name,
                           message=message.get("message", ""))
            if self._shutdown_done is not None and not self._shutdown_done.done():
                self._shutdown_done.set_result(None)
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")

    def _startup(self, error: BaseException | None) -> None:
        if self._startup_answered:
            return
        self._startup_answered = True
        if error is None:
            self.ready.callback(None)
            return
        self.failed = error
        _log.critical("{error}", error=str(error))
        self.ready.errback(Failure(error))
        self.ready.addErrback(lambda _: None)  # the requests waiting each get a 503
        if self.on_failure is not None:
            self.on_failure(error)

    def shutdown(self) -> Deferred[None]:
        """Send ``lifespan.shutdown`` once (after a successful startup) and wait for the answer."""
        task, self._task = self._task, None
        done = self._shutdown_done
        if task is None or done is None or task.done() or self.failed is not None:
            return succeed(None)
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        return Deferred.fromFuture(done)


def _start_fields(message: Message) -> tuple[int, list[tuple[str, str]]]:
    """The status and header fields of an ``http.response.start``; TypeError or ValueError
    for a message the spec does not allow (a status that is no int, a field that is not two bytes)."""
    status = message.get("status")
    if not isinstance(status, int) or isinstance(status, bool):
        raise TypeError(f"http.response.start: status must be an int, got {status!r}")
    if not 100 <= status <= 999:
        raise ValueError(f"http.response.start: status {status} out of range")
    fields = []
    for pair in message.get("headers") or ():
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise TypeError(f"http.response.start: a header must be a [name, value] pair, got {pair!r}") from None
        if not isinstance(name, bytes | bytearray) or not isinstance(value, bytes | bytearray):
            raise TypeError(f"http.response.start: header names and values must be bytes, got {pair!r}")
        fields.append((bytes(name).decode("latin-1"), bytes(value).decode("latin-1")))
    return status, fields


@implementer(IBodyConsumer)
class _HTTPCycle:
    """One HTTP request through the app: its ``receive`` and ``send``, and the response's producer."""

    def __init__(self, request: Any, response: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.response = response
        self.loop = loop
        self._body: deque[bytes] = deque()
        self._queued = 0
        self._body_done = False
        self._end_sent = False  # the message with more_body False went to the app
        self._body_error: Failure | None = None
        self._delivering = False
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None  # receive waiting for data or the end
        self._writable: asyncio.Future[None] | None = None  # send waiting for the client
        self._paused = False
        self.started: Message | None = None
        self._status = 200
        self._fields: list[tuple[str, str]] = []
        self.complete = False
        self.app_done = False
        self.disconnected = False
        response.on_finish(self._response_over)

    # -- receive: the request body ---------------------------------------------------------

    async def receive(self) -> Message:
        if not self._delivering:
            self._delivering = True
            self.request.body.deliver(self)
        while True:
            if self._body:
                chunk = self._body.popleft()
                self._queued -= len(chunk)
                if self._reading_paused and self._queued < _BODY_HIGH:
                    self._resume_reading()
                more = bool(self._body) or not self._body_done
                if not more:
                    self._end_sent = True
                return {"type": "http.request", "body": chunk, "more_body": more}
            if self.disconnected or self._body_error is not None:
                return {"type": "http.disconnect"}
            if self._body_done and not self._end_sent:
                self._end_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            # The body is over (or not here yet): wait for more, or for the client to leave.
            waiter = self._waiter = self.loop.create_future()
            await waiter

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def body_data(self, data: bytes) -> None:
        if self.app_done:
            return  # the app is over: the rest of the body is dropped
        self._body.append(data)
        self._queued += len(data)
        if self._queued >= _BODY_HIGH and not self._reading_paused:
            producer = self.request.body.producer
            if producer is not None:
                self._reading_paused = True
                producer.pauseProducing()
        self._wake()

    def body_trailers(self, trailers: Any) -> None:
        pass

    def body_finished(self, reason: Failure | None) -> None:
        self._body_done = True
        self._body_error = reason
        if reason is not None:
            self._end_sent = True  # a cut-off body ends in http.disconnect
        self._wake()

    def _resume_reading(self) -> None:
        self._reading_paused = False
        producer = self.request.body.producer
        if producer is not None:
            producer.resumeProducing()

    def _response_over(self) -> None:
        if self.response.lost is not None or self.complete:
            self.disconnected = True
        self._wake()
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # -- send: the response ----------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        response = self.response
        if kind == "http.response.start":
            if self.started is not None:
                raise RuntimeError("http.response.start sent twice")
            # Checked here, in the app's send: a bad message raises where the app sent it,
            # and nothing of it reaches the response (a 500 would carry its fields).
            self._status, self._fields = _start_fields(message)
            self.started = message
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r} for an HTTP request")
        if self.started is None:
            raise RuntimeError("http.response.body before http.response.start")
        if self.complete:
            raise RuntimeError("http.response.body sent after the response completed")
        if response.lost is not None:
            return  # the client is gone: dropped, as uvicorn does
        if not response.head_sent:
            self._write_head()
        body = message.get("body", b"")
        if body:
            response.write(bytes(body))
        if not message.get("more_body", False):
            self.complete = True
            response.unregister_producer()
            response.finish()
            return
        response.flush()  # a streamed response: what the app sent goes out now
        if self._paused and response.lost is None:
            writable = self._writable = self.loop.create_future()
            await writable

    def _write_head(self) -> None:
        assert self.started is not None
        response = self.response
        headers = response.headers
        for name, value in self._fields:
            headers.add(name, value)
        response.register_producer(self, True)
        response.write_head(self._status)

    # -- IPushProducer: the client's connection paces ``send`` ------------------------------

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._paused = True

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._paused = False
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name
        self.disconnected = True
        self.resumeProducing()
        self._wake()

    def app_finished(self) -> None:
        """The app returned (or raised): drop the rest of the body and let the client read on."""
        self.app_done = True
        self._body.clear()
        if self._reading_paused:
            self._resume_reading()
        if not self._delivering:
            self._delivering = True
            self.request.body.discard()


class _WebSocketProtocol(Protocol):
    """The upgraded connection: wsproto's frames, fed to and from the app's ``receive``/``send``."""

    def __init__(self, session: _WebSocketSession) -> None:
        from wsproto import ConnectionType
        from wsproto.connection import Connection

        self.session = session
        self.ws = Connection(ConnectionType.SERVER)
        self.closed: Deferred[None] = Deferred()
        self._paused = False
        self._writable: list[asyncio.Future[None]] = []
        self._close_timer: Any = None

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.transport.registerProducer(self, True)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
        from wsproto.utilities import RemoteProtocolError

        try:
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, TextMessage | BytesMessage):
                    self.session.message(event)
                elif isinstance(event, Ping):
                    self._write(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if self.ws.state.name == "REMOTE_CLOSING":
                        self._write(self.ws.send(event.response()))
                    self.session.closed(event.code)
                    self.transport.loseConnection()  # type: ignore[union-attr]
        except RemoteProtocolError:
            # A client that breaks the protocol: 1002 to the app, and the connection closed.
            self.session.closed(1002)
            if self.transport is not None:
                self.transport.loseConnection()

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None:
            self.transport.write(data)

    async def send_message(self, data: str | bytes) -> None:
        from wsproto.events import BytesMessage, TextMessage

        if self.ws.state.name != "OPEN":
            return
        event = TextMessage(data=data) if isinstance(data, str) else BytesMessage(data=data)
        self._write(self.ws.send(event))
        if self._paused:
            waiter: asyncio.Future[None] = self.session.loop.create_future()
            self._writable.append(waiter)
            await waiter

    def close(self, code: int = 1000, reason: str = "") -> None:
        from wsproto.events import CloseConnection

        if self.ws.state.name != "OPEN":
            return
        self._write(self.ws.send(CloseConnection(code=code, reason=reason or None)))
        self._close_timer = self.session.clock.callLater(_WS_CLOSE_WAIT, self._give_up)

    def _give_up(self) -> None:
        self._close_timer = None
        if self.transport is not None:
            self.transport.loseConnection()

    def close_gracefully(self) -> None:
        """The server is stopping: 1001 Going Away."""
        self.close(1001)

    def when_closed(self) -> Deferred[None]:
        return self.closed

    def connectionLost(self, reason: Failure | None = None) -> None:  # noqa: N802 - Twisted's name
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        self._close_timer = None
        self.session.closed(1006)
        self.resumeProducing()
        self.closed.callback(None)

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._paused = True

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        self._paused = False
        waiters, self._writable = self._writable, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name
        self.resumeProducing()


class _WebSocketSession:
    """One WebSocket request through the app, before and after the upgrade."""

    def __init__(self, request: Any, response: Any, loop: asyncio.AbstractEventLoop, clock: Any) -> None:
        self.request = request
        self.response = response
        self.loop = loop
        self.clock = clock
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.protocol: _WebSocketProtocol | None = None
        self.accepted = False
        self.done = False  # closed (by either side) or refused
        self._queued = 0
        self._partial: list[Any] = []

    async def receive(self) -> Message:
        message = await self.inbox.get()
        if message["type"] == "websocket.receive":
            self._queued -= len(message.get("bytes") or message.get("text") or "")
            protocol: Any = self.protocol
            if protocol is not None and self._queued < _BODY_HIGH and protocol.transport is not None:
                protocol.transport.resumeProducing()
        return message

    def message(self, event: Any) -> None:
        from wsproto.events import TextMessage

        if not event.message_finished:
            # A fragment (or a large frame in parts): the app gets whole messages.
            self._partial.append(event.data)
            return
        data = event.data
        if self._partial:
            self._partial.append(data)
            data = "".join(self._partial) if isinstance(data, str) else b"".join(self._partial)
            self._partial = []
        if isinstance(event, TextMessage):
            self.inbox.put_nowait({"type": "websocket.receive", "text": data})
        else:
            self.inbox.put_nowait({"type": "websocket.receive", "bytes": bytes(data)})
        self._queued += len(data)
        protocol: Any = self.protocol
        if self._queued >= _BODY_HIGH and protocol is not None and protocol.transport is not None:
            protocol.transport.pauseProducing()

    def closed(self, code: int) -> None:
        if not self.done:
            self.done = True
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": code})

    async def send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "websocket.accept":
            if self.accepted or self.done:
                raise RuntimeError("websocket.accept after the connection was accepted or closed")
            self._accept(message)
        elif kind == "websocket.send":
            if not self.accepted:
                raise RuntimeError("websocket.send before websocket.accept")
            protocol = self.protocol
            if protocol is None or self.done:
                return
            text = message.get("text")
            await protocol.send_message(text if text is not None else bytes(message.get("bytes") or b""))
        elif kind == "websocket.close":
            if not self.accepted:
                if not self.done:
                    self.done = True
                    self.response.headers.set("Content-Length", "0")
                    self.response.write_head(403)  # refused before the handshake, as the spec says
                    self.response.finish()
                return
            if self.protocol is not None:
                self.protocol.close(int(message.get("code", 1000)), message.get("reason") or "")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} for a WebSocket")

    def _accept(self, message: Message) -> None:
        key = self.request.headers.get("Sec-WebSocket-Key") or ""
        accept = base64.b64encode(hashlib.sha1(key.strip().encode("latin-1") + _WS_GUID).digest())
        headers = self.response.headers
        for name, value in message.get("headers", ()):
            headers.add(bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
        headers.set("Upgrade", "websocket")
        headers.set("Connection", "Upgrade")
        headers.set("Sec-WebSocket-Accept", accept.decode("ascii"))
        if message.get("subprotocol"):
            headers.set("Sec-WebSocket-Protocol", message["subprotocol"])
        self.accepted = True
        self.protocol = _WebSocketProtocol(self)
        self.response.switch_protocols(self.protocol)

    def app_failed(self) -> None:
        """The app raised after accepting: 1011 Internal Error."""
        if self.protocol is not None:
            self.protocol.close(1011)


def _wants_websocket(request: Any) -> bool:
    upgrade = request.headers.get("Upgrade") or ""
    return request.method == "GET" and "websocket" in upgrade.lower()


@implementer(IHandler)
class ASGIHandler:
    """Serves every request it gets with the ASGI app (a terminal handler: ``next`` is not called)."""

    def __init__(self, app: ASGIApp, name: str, loop: asyncio.AbstractEventLoop, clock: Any,
                 lifespan: Lifespan, root_path: str = "") -> None:
        self.app = app
        self.name = name
        self.loop = loop
        self.clock = clock
        self.lifespan = lifespan
        self.root_path = root_path.rstrip("/")

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        ready = self.lifespan.ready
        if ready.called:
            if self.lifespan.failed is not None:
                return fail(self._not_started())
            return self._serve(request, response)
        # Lifespan startup still running: the request waits for it.
        d: Deferred[None] = Deferred()

        def go(result: Any) -> Any:
            if self.lifespan.failed is not None:
                d.errback(self._not_started())
            else:
                self._serve(request, response).chainDeferred(d)
            return result  # ready's own result, unchanged for the other waiters

        ready.addBoth(go)
        return d

    def _not_started(self) -> HandlerError:
        return HandlerError(503, f"ASGI app {self.name} did not start", self.lifespan.failed)

    def scope(self, request: Any, kind: str) -> Scope:
        """The ASGI connection scope of ``request`` (``http`` or ``websocket``)."""
        path, orig = request.path, request.orig_path
        stripped = ""
        if path != orig:
            # What handle_path (strip_path_prefix) took away becomes part of root_path.
            if orig.endswith(path):
                stripped = orig[: len(orig) - len(path)]
            elif path == "/" and not orig.endswith("/"):
                stripped = orig
        root = self.root_path + stripped.rstrip("/")
        headers = [(_latin1(name.lower()), _latin1(value)) for name, values in request.headers.lists()
                   for value in values]
        scope: Scope = {
            "type": kind,
            "asgi": dict(_ASGI),
            "http_version": _http_version(request.proto),
            "scheme": request.scheme if kind == "http" else ("wss" if request.scheme == "https" else "ws"),
            "path": root + path,
            "raw_path": _latin1(root + request.escaped_path()),
            "query_string": _latin1(request.query),
            "root_path": root,
            "headers": headers,
            "client": list(request.remote) if request.remote else None,
            "server": list(request.local) if request.local else None,
            "state": dict(self.lifespan.state),
            "extensions": {},
        }
        if kind == "http":
            scope["method"] = request.method
        else:
            protocols = request.headers.get("Sec-WebSocket-Protocol") or ""
            scope["subprotocols"] = [p.strip() for p in protocols.split(",") if p.strip()]
        return scope

    def _serve(self, request: Any, response: Any) -> Deferred[None]:
        if _wants_websocket(request) and response.can_switch_protocols:
            return self._serve_websocket(request, response)
        cycle = _HTTPCycle(request, response, self.loop)
        task: asyncio.Future[None] = asyncio.ensure_future(
            self.app(self.scope(request, "http"), cycle.receive, cycle.send), loop=self.loop)
        d: Deferred[None] = Deferred.fromFuture(task)

        def done(_: Any) -> None:
            cycle.app_finished()
            if cycle.complete or response.lost is not None:
                return
            if not response.head_sent:
                if cycle.started is None:
                    raise HandlerError(500, f"ASGI app {self.name} returned without a response")
                cycle._write_head()
            # Returned without more_body=False: the response ends here.
            response.unregister_producer()
            response.finish()

        def failed(failure: Failure) -> None:
            cycle.app_finished()
            if cycle.complete:
                # Answered, then raised (Starlette's error middleware sends its 500 and re-raises).
                _log.failure("ASGI app {app} raised after its response", failure, app=self.name)
                return
            if response.head_sent:
                _log.failure("ASGI app {app} raised after the response started", failure, app=self.name)
                response.unregister_producer()
                response.abort_connection()
                return
            _log.failure("ASGI app {app} raised", failure, app=self.name)
            raise HandlerError(500, f"ASGI app {self.name} raised {failure.value!r}", failure.value)

        return d.addCallbacks(done, failed)

    def _serve_websocket(self, request: Any, response: Any) -> Deferred[None]:
        session = _WebSocketSession(request, response, self.loop, self.clock)

        def gone_before_accept() -> None:
            # Before the upgrade the connection is the response's: its loss would never
            # reach the app, whose receive would wait forever.
            if response.lost is not None and not session.accepted:
                session.closed(1006)

        response.on_finish(gone_before_accept)
        task: asyncio.Future[None] = asyncio.ensure_future(
            self.app(self.scope(request, "websocket"), session.receive, session.send), loop=self.loop)
        d: Deferred[None] = Deferred.fromFuture(task)

        def done(_: Any) -> None:
            if not session.accepted and not session.done:
                session.done = True
                response.headers.set("Content-Length", "0")
                response.write_head(403)
                response.finish()
            elif session.protocol is not None:
                session.protocol.close(1000)

        def failed(failure: Failure) -> None:
            if not session.accepted:
                if not response.head_sent:
                    _log.failure("ASGI app {app} raised", failure, app=self.name)
                    raise HandlerError(500, f"ASGI app {self.name} raised {failure.value!r}", failure.value)
                return
            _log.failure("ASGI app {app} raised on a WebSocket", failure, app=self.name)
            session.app_failed()

        return d.addCallbacks(done, failed)


class _ASGIRuntime:
    """What the ``asgi`` modules keep per service (``Runtime.get``): the first config that had one."""

    def __init__(self) -> None:
        self._first: Any = None  # a weak reference to that config's LoadContext

    def first(self, context: Any) -> bool:
        """Whether ``context`` is (or now becomes) the first config with an ``asgi`` handler."""
        if self._first is None:
            self._first = ref(context)
        return self._first() is context


def _lifespan_mode(value: Any) -> str:
    if value is None or value == "":
        return "auto"
    if value not in ("auto", "on", "off"):
        raise ConfigError(f"asgi: lifespan must be auto, on or off, got {value!r}")
    return str(value)


@module("http.handlers.asgi", schema=Obj({"app": STRING, "lifespan": STRING, "root_path": STRING}))
def load_asgi(config: dict[str, Any], context: Any) -> ASGIHandler:
    """``{"handler": "asgi", "app": "module:app", "lifespan": "auto"|"on"|"off", "root_path": "/prefix"}``."""
    spec = config.get("app")
    if not isinstance(spec, str) or not spec:
        raise ConfigError("asgi: the app to serve is missing ('module:attribute')")
    mode = _lifespan_mode(config.get("lifespan"))
    root_path = config.get("root_path") or ""
    if root_path and not root_path.startswith("/"):
        raise ConfigError(f"asgi: root_path must start with '/', got {root_path!r}")
    reactor = context.reactor
    if reactor is None:
        from txcaddy._reactor import default_reactor

        reactor = default_reactor()
    if not is_asyncio_reactor(reactor):
        raise ConfigError(
            f"asgi: the ASGI app {spec} needs Twisted's asyncio reactor, but the running reactor is "
            f"{type(reactor).__name__}: run `twistd --reactor=asyncio caddy ...` (`txcaddy run` picks it "
            "itself), or install twisted.internet.asyncioreactor before the reactor is imported")
    app = import_app(spec)
    # The WebSocket code's imports, now: later (after twistd --uid dropped privileges) the
    # modules may not be readable.
    importlib.import_module("wsproto.connection")
    importlib.import_module("wsproto.events")
    importlib.import_module("wsproto.utilities")
    loop = reactor._asyncioEventloop
    # One lifespan per app in a config, however many routes serve it (as one uvicorn would).
    lifespans = _LIFESPANS.setdefault(context, {})
    lifespan = lifespans.get((spec, mode))
    runtime = getattr(context, "runtime", None)
    if lifespan is None:
        lifespan = lifespans[spec, mode] = Lifespan(app, loop, mode, spec)
        if runtime is not None and runtime.get(_ASGIRuntime).first(context):
            # The config the process starts with: a failed startup stops the process (as uvicorn
            # exits). A later one (a reload) only logs it and answers 503 for that app.
            lifespan.on_failure = lambda error: runtime.fatal(error) if runtime.fatal else None
        context.services.append(lifespan)
        context.on_unload(lifespan.shutdown)
    return ASGIHandler(app, spec, loop, reactor, lifespan, root_path)
