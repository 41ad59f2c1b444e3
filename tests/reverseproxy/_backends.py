"""Real upstream servers for the reverse_proxy integration tests (127.0.0.1 only).

``EchoBackend`` is a twisted.web site that answers with what it received
(JSON) and remembers every request; ``RawBackend`` records the exact bytes a
connection carried and answers with a scripted response, for the smuggling
table; ``start_proxy`` runs txcaddy from a Caddyfile on a free port.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.web import resource, server

from tests._net import listen_local, port_number
from txcaddy import fromCaddyfile
from txcaddy._reactor import default_reactor


class _EchoResource(resource.Resource):
    isLeaf = True

    def __init__(self, backend: EchoBackend) -> None:
        super().__init__()
        self.backend = backend

    def render(self, request: Any) -> Any:
        body = request.content.read()
        seen = {
            "backend": self.backend.name,
            "method": request.method.decode("latin-1"),
            "uri": request.uri.decode("latin-1"),
            "headers": [(k.decode("latin-1"), v.decode("latin-1")) for k, vs in request.requestHeaders.getAllRawHeaders() for v in vs],
            "body_length": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        self.backend.requests.append(seen)
        handler = self.backend.handler
        if handler is not None:
            result = handler(request, seen, body)
            if result is not None:
                return result
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"X-Backend", self.backend.name.encode())
        return json.dumps(seen).encode()


class EchoBackend:
    """A twisted.web upstream on 127.0.0.1 that echoes requests as JSON.

    ``handler(request, seen, body)`` may answer instead (return bytes or
    ``server.NOT_DONE_YET``).
    """

    def __init__(self, name: str, handler: Callable[..., Any] | None = None) -> None:
        self.name = name
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        site = server.Site(_EchoResource(self))
        site.noisy = False
        self.port = listen_local(site)
        self.address = f"127.0.0.1:{port_number(self.port)}"

    def stop(self) -> Deferred[None] | None:
        return self.port.stopListening()


class _RawProtocol(Protocol):
    transport: ITransport  # connected from the start: the backend only sees it after connectionMade

    def __init__(self, backend: RawBackend) -> None:
        self.backend = backend
        self.received = bytearray()
        self.consumed = 0

    def connectionMade(self) -> None:
        self.backend.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.backend.on_data(self)

    def connectionLost(self, reason: Any = None) -> None:
        self.backend.on_lost(self)


class RawBackend:
    """Records the bytes of each connection; answers each complete request head
    (and its body, as framed by Content-Length / chunked) with ``reply``."""

    def __init__(self, reply: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") -> None:
        self.reply = reply
        self.connections: list[_RawProtocol] = []
        self.requests: list[bytes] = []  # each request's head and body as received
        self._waiters: list[tuple[int, Deferred[None]]] = []
        factory = Factory.forProtocol(lambda: _RawProtocol(self))
        factory.noisy = False
        self.port = listen_local(factory)
        self.address = f"127.0.0.1:{port_number(self.port)}"

    def on_data(self, conn: _RawProtocol) -> None:
        while True:
            request = _split_request(bytes(conn.received[conn.consumed:]))
            if request is None:
                return
            self.requests.append(request)
            conn.consumed += len(request)
            conn.transport.write(self.reply)
            self._fire()

    def on_lost(self, conn: _RawProtocol) -> None:
        self._fire()

    def wait_requests(self, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiters.append((count, d))
        self._fire()
        return d

    def _fire(self) -> None:
        for entry in list(self._waiters):
            count, d = entry
            if len(self.requests) >= count:
                self._waiters.remove(entry)
                d.callback(None)

    def stop(self) -> Deferred[None] | None:
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.loseConnection()
        return self.port.stopListening()


def _split_request(data: bytes) -> bytes | None:
    """One complete HTTP/1.1 request from the front of ``data`` (None if incomplete)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[: end + 4]
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    rest = data[end + 4:]
    if b"chunked" in fields.get(b"transfer-encoding", b"").lower():
        pos = 0
        while True:
            eol = rest.find(b"\r\n", pos)
            if eol < 0:
                return None
            size = int(rest[pos:eol].split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                trailer_end = rest.find(b"\r\n\r\n", pos - 2)
                if trailer_end < 0:
                    return None
                return head + rest[: trailer_end + 4]
            pos += size + 2
            if pos > len(rest):
                return None
    length = int(fields.get(b"content-length", b"0") or 0)
    if len(rest) < length:
        return None
    return head + rest[:length]


def start_proxy(test: Any, caddyfile: str) -> str:
    """Run txcaddy with ``caddyfile`` (``PORT`` → a free port); return its base URL."""
    service = fromCaddyfile(caddyfile.replace("PORT", "0"), reactor=default_reactor())
    service.startService()
    test.addCleanup(service.stopService)
    (address,) = next(iter(service.boundAddresses().values()))
    return f"http://127.0.0.1:{address.port}"


def site(body: str) -> str:
    """A one-site Caddyfile listening on 127.0.0.1 with ``body`` as its directives."""
    return "http://:PORT {\n\tbind 127.0.0.1\n" + body + "\n}\n"
