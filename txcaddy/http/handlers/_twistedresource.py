"""``twisted_resource``'s implementation: mount a twisted.web ``IResource`` (a klein app too).

Imported by ``twistedresource`` only when a config uses the handler: ``twisted.web.server``
(MBs of RSS) stays out of every process that does not.

txcaddy's own handler (Caddy has none; DESIGN.md §3 promises it so that the
Twisted web ecosystem keeps working). txcaddy serves HTTP with its own
protocols, so each request is bridged into a real ``twisted.web.server.Request``
sitting on a stand-in channel: traversal (``getChild``, ``prepath``/
``postpath``), ``render_GET``, ``NOT_DONE_YET`` with a later ``finish()``,
producers, ``notifyFinish`` and cookies behave as under ``twisted.web.server.Site``.
The channel forwards the head and body to txcaddy's response (which does the
framing: no chunk coding from twisted.web).

As twisted.web does, the resource renders once the whole request body has
arrived; the body is kept in a ``SpooledTemporaryFile`` (memory up to
``SPOOL_MEMORY`` bytes, then disk), so a large upload is not held in memory.
A prefix that ``handle_path`` stripped becomes the request's ``prepath``, so
URLs the resource builds (``prePathURL``, klein's ``url_for``) include it.
An exception while rendering is logged and becomes a 500 ``HandlerError``
(``handle_errors`` applies) when nothing was sent yet; after that the
connection is aborted.
"""

from __future__ import annotations

import tempfile
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource as _resource
from twisted.web.resource import IResource
from twisted.web.server import Request as _WebRequest
from twisted.web.server import Site
from zope.interface import implementer

from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.request import Request
from txcaddy.http.response import Response
from txcaddy.interfaces import IBodyConsumer, IHandler

__all__ = ["TwistedResourceHandler", "resource_from"]

#: Request body bytes kept in memory before the spool moves to a temporary file.
SPOOL_MEMORY = 1024 * 1024

_log = Logger(namespace="txcaddy.twisted_resource")


def _address(pair: tuple[str, int]) -> IPv4Address | IPv6Address:
    host, port = pair
    if ":" in host:
        return IPv6Address("TCP", host, port)
    return IPv4Address("TCP", host, port)


def _stripped_prefix(request: Request) -> str:
    """The escaped prefix ``handle_path`` (or ``uri strip_prefix``) removed, or ``''``."""
    raw, orig = request.raw_path, request.orig_raw_path
    if raw.startswith("/") and len(orig) > len(raw) and orig.endswith(raw):
        return orig[: len(orig) - len(raw)]
    return ""


class _Transport:
    """``request.transport`` for resources that use it directly."""

    def __init__(self, bridge: _Bridge) -> None:
        self._bridge = bridge
        self.disconnecting = False

    def getPeer(self) -> Any:
        return self._bridge.peer

    def getHost(self) -> Any:
        return self._bridge.local

    def write(self, data: bytes) -> None:
        self._bridge.body(data)

    def writeSequence(self, data: list[bytes]) -> None:
        for chunk in data:
            self._bridge.body(chunk)

    def loseConnection(self) -> None:
        self.disconnecting = True
        self._bridge.response.abort_connection()

    abortConnection = loseConnection

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._bridge.response.register_producer(producer, streaming)

    def unregisterProducer(self) -> None:
        if self._bridge.response.lost is None:
            self._bridge.response.unregister_producer()

    def pauseProducing(self) -> None:
        """Reading the client is txcaddy's business."""

    def resumeProducing(self) -> None:
        """Reading the client is txcaddy's business."""


class _Channel:
    """What a twisted.web ``Request`` asks of its ``HTTPChannel``, forwarded to txcaddy's response."""

    factory = None  # no twisted.web access log: txcaddy logs the request

    def __init__(self, bridge: _Bridge, site: Site) -> None:
        self._bridge = bridge
        self.site = site
        self.transport = _Transport(bridge)

    def getPeer(self) -> Any:
        return self._bridge.peer

    def getHost(self) -> Any:
        return self._bridge.local

    def isSecure(self) -> bool:
        return self._bridge.secure

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        self._bridge.head(int(code), headers)

    def write(self, data: bytes) -> None:
        self._bridge.body(data)

    def writeSequence(self, data: list[bytes]) -> None:
        for chunk in data:
            self._bridge.body(chunk)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def requestDone(self, request: Any) -> None:
        self._bridge.complete()

    def _respondToBadRequestAndDisconnect(self) -> None:
        """twisted.web's answer to a form body it cannot parse: a 400 here."""
        self._bridge.fail(HandlerError(400, "malformed form body"))

    def loseConnection(self) -> None:
        self.transport.loseConnection()


class _BridgedRequest(_WebRequest):
    """A twisted.web request whose path prefix comes from txcaddy and whose failures become HandlerErrors."""

    bridge: _Bridge

    def isSecure(self) -> bool:
        return self.bridge.secure

    def process(self) -> None:
        # twisted.web.server.Request.process without the Server/Date fields (txcaddy's
        # response has its own Date) and with the prefix handle_path removed as prepath.
        self.site = self.bridge.handler.site
        prefix = self.bridge.prefix
        self.prepath = [unquote_to_bytes(p) for p in prefix[1:].split("/")] if prefix else []
        rest = self.path[len(prefix.encode("latin-1")):] if prefix else self.path
        self.postpath = [unquote_to_bytes(p) for p in rest[1:].split(b"/")]
        try:
            self.sitepath = self.prepath[:]
            resrc = _resource.getChildForRequest(self.site.resource, self)
            if _resource._IEncodingResource.providedBy(resrc):
                encoder = resrc.getEncoder(self)
                if encoder is not None:
                    self._encoder = encoder
            self.render(resrc)
        except BaseException:
            self.processingFailed(Failure())

    def processingFailed(self, reason: Failure) -> Failure:
        _log.failure("twisted_resource {name} failed on {uri}", reason, name=self.bridge.name,
                     uri=self.bridge.request.uri)
        error = reason.value
        self.bridge.fail(HandlerError(500, f"twisted_resource {self.bridge.name}: {type(error).__name__}: {error}",
                                      cause=error if isinstance(error, BaseException) else None))
        if not self.finished and not self._disconnected:
            self.finished = 1
            self._cleanup()
        return reason


@implementer(IBodyConsumer)
class _Bridge:
    """One txcaddy request served by the resource: spools the body, then renders."""

    def __init__(self, handler: TwistedResourceHandler, request: Request, response: Response) -> None:
        self.handler = handler
        self.name = handler.name
        self.request = request
        self.response = response
        self.done: Deferred[None] = Deferred()
        self.secure = request.tls is not None
        self.peer = _address(request.remote)
        self.local = _address(request.local)
        self.prefix = _stripped_prefix(request)
        self.content = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
        self.web: _BridgedRequest | None = None
        response.on_finish(self._response_over)

    # -- the request body -----------------------------------------------------------------

    def body_data(self, data: bytes) -> None:
        self.content.write(data)

    def body_trailers(self, trailers: Any) -> None:
        """Request bodies deliver no trailers."""

    def body_finished(self, reason: Failure | None) -> None:
        if reason is not None or self.response.lost is not None:
            self.content.close()
            self._fire(None)  # the client is gone: nobody to answer
            return
        try:
            self._render()
        except Exception as e:  # never into the connection's protocol, which delivered the body
            _log.failure("twisted_resource {name} failed on {uri}", Failure(), name=self.name, uri=self.request.uri)
            self._fire(HandlerError(500, f"twisted_resource {self.name}: {type(e).__name__}: {e}", cause=e))

    def _render(self) -> None:
        request = self.request
        web = _BridgedRequest(_Channel(self, self.handler.site))
        web.bridge = self
        self.web = web
        for name, values in request.headers.lists():
            web.requestHeaders.setRawHeaders(name.encode("latin-1"), [v.encode("latin-1") for v in values])
        web.content = self.content
        target = self.prefix + request.raw_path + ("?" + request.query if request.query else "")
        web.requestReceived(request.method.encode("latin-1"), target.encode("latin-1"),
                            request.proto.encode("latin-1"))

    # -- what the twisted.web request writes ------------------------------------------------

    def head(self, code: int, headers: Any) -> None:
        web = self.web
        if web is not None:
            web.chunked = 0  # txcaddy's response frames the body itself
        fields = self.response.headers
        for name, values in headers.getAllRawHeaders():
            if name.lower() in (b"transfer-encoding", b"connection"):
                continue
            text = name.decode("latin-1")
            for value in values:
                fields.add(text, value.decode("latin-1"))
        self.response.write_head(code)

    def body(self, data: bytes) -> None:
        if data and self.response.lost is None:
            self.response.write(data)

    def complete(self) -> None:
        if self.response.lost is None and not self.done.called:
            self.response.finish()
        self._fire(None)

    def fail(self, error: HandlerError) -> None:
        self._fire(error)

    def _fire(self, error: HandlerError | None) -> None:
        if self.done.called:
            return
        if error is None:
            self.done.callback(None)
        else:
            self.done.errback(error)

    def _response_over(self) -> None:
        lost = self.response.lost
        if lost is None:
            return
        web = self.web
        if web is not None and not web.finished and not web._disconnected:
            web.connectionLost(Failure(lost))
        self._fire(None)


def resource_from(obj: Any, where: str) -> Any:
    """An ``IResource`` from what the config named: a resource, a klein app, or a factory of one."""
    if IResource.providedBy(obj):
        return obj
    maker = getattr(obj, "resource", None)
    if callable(maker) and not isinstance(obj, type):
        obj = maker()  # a klein.Klein app
    elif callable(obj):
        obj = obj()
    if not IResource.providedBy(obj):
        raise ConfigError(f"{where}: {obj!r} is not a twisted.web IResource (nor a klein app or a factory of one)")
    return obj


@implementer(IHandler)
class TwistedResourceHandler:
    """``http.handlers.twisted_resource``: every request it gets is rendered by ``resource``."""

    def __init__(self, resource: Any, name: str = "resource") -> None:
        self.name = name
        self.site = Site(resource)
        self.site.displayTracebacks = False

    @property
    def resource(self) -> Any:
        return self.site.resource

    def serve(self, request: Request, response: Response, next: Any) -> Deferred[None]:
        bridge = _Bridge(self, request, response)
        request.body.deliver(bridge)
        return bridge.done
