"""Fakes for testing handlers, matchers and whole route lists without sockets.

    request = make_request("GET", "/api/users", headers={"Host": "example.com"})
    response = serve(handler, request)
    assert response.status == 200 and response.body == b"..."

``serve`` drives the handler (and whatever it returns) to completion; with a
``Clock`` passed to the code under test, time moves only when the test says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from txcaddy.http.headers import Headers
from txcaddy.http.request import Request, RequestBody
from txcaddy.http.response import Response
from txcaddy.http.routing import finish_chain


class FakeTLS:
    """Stands in for a TLS connection's details (``request.tls``)."""

    def __init__(self, server_name: str = "", version: str = "tls1.3", cipher_suite: str = "TLS_AES_128_GCM_SHA256", proto: str = "http/1.1") -> None:
        self.server_name = server_name
        self.version = version
        self.cipher_suite = cipher_suite
        self.proto = proto
        self.resumed = False
        self.peer_certificate = None


def make_request(
    method: str = "GET",
    target: str = "/",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    host: str | None = "localhost",
    remote: tuple[str, int] = ("127.0.0.1", 54321),
    proto: str = "HTTP/1.1",
    tls: Any = None,
) -> Request:
    """A complete request with an in-memory body."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    fields = Headers(pairs)
    if host is not None and "Host" not in fields:
        fields.set("Host", host)
    request_body = RequestBody(len(body))
    if body:
        request_body.feed(body)
    request_body.finish()
    return Request(method, target, fields, proto=proto, remote=remote, tls=tls, body=request_body)


class FakeResponse(Response):
    """A response that keeps everything written in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.producer: Any = None
        self.ended = False
        # Protocol switching (a 101 tunnel): whether it is allowed, to what it switched,
        # and the transport standing in for the client connection afterwards.
        self.can_switch_protocols = True
        self.switched_to: Any = None
        self.switched_transport: StringTransport | None = None

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def register_producer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        if not streaming:
            while self.producer is producer and not self.finished:
                producer.resumeProducing()

    def unregister_producer(self) -> None:
        self.producer = None

    def switch_protocols(self, protocol: Any) -> None:
        """Like the HTTP/1.1 response's: status 101, the connection handed to ``protocol``.

        ``protocol`` is connected to ``switched_transport``, a ``StringTransport``
        that shows what it sends the client; feed it client bytes with
        ``protocol.dataReceived``.
        """
        if not self.can_switch_protocols or self.head_sent:
            raise RuntimeError("switch_protocols needs an upgrade request, before any response")
        self.can_switch_protocols = False
        self.status = 101
        self.head_sent = True
        self.finished = True
        self.ended = True
        self.switched_to = protocol
        self.switched_transport = StringTransport()
        protocol.makeConnection(self.switched_transport)
        self._fire_finished()

    def _send_head(self, status: int) -> None:
        pass

    def _send_body(self, data: bytes) -> None:
        self.chunks.append(bytes(data))

    def _send_end(self) -> None:
        self.ended = True


def serve(handler: Any, request: Request, response: FakeResponse | None = None, next: Any = finish_chain) -> FakeResponse:
    """Run ``handler.serve`` to completion and finish the response, like the server does.

    A ``HandlerError`` from the handler is re-raised (after the Deferred, if any,
    has fired), so tests can assert on it.
    """
    response = response if response is not None else FakeResponse()
    result = handler.serve(request, response, next)
    if isinstance(result, Deferred):
        outcome: list[Any] = []
        result.addBoth(outcome.append)
        if not outcome:
            raise AssertionError("the handler's Deferred has not fired; drive the clock or peer first")
        if hasattr(outcome[0], "raiseException"):
            outcome[0].raiseException()
    response.finish()
    return response
