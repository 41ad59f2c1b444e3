"""reverse_proxy to an h2c upstream end to end: a small h2 server on 127.0.0.1, txcaddy with
``reverse_proxy h2c://…``, and an HTTP/1.1 client."""

from __future__ import annotations

import json
from typing import Any

import treq
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.trial.unittest import TestCase

from tests._net import listen_local, port_number
from tests.reverseproxy._backends import site, start_proxy


class H2Upstream(Protocol):
    """Answers each stream with JSON of what it saw, and a ``grpc-status`` trailer."""

    def connectionMade(self) -> None:
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.h2.initiate_connection()
        self.bodies: dict[int, bytes] = {}
        self.heads: dict[int, Any] = {}
        self.transport.write(self.h2.data_to_send())  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        for event in self.h2.receive_data(data):
            if isinstance(event, RequestReceived):
                self.heads[event.stream_id] = event.headers
                self.bodies[event.stream_id] = b""
            elif isinstance(event, DataReceived):
                self.bodies[event.stream_id] += event.data
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, StreamEnded):
                self.answer(event.stream_id)
        self.transport.write(self.h2.data_to_send())  # type: ignore[union-attr]

    def answer(self, sid: int) -> None:
        seen = {"headers": [[n.decode(), v.decode()] for n, v in self.heads[sid]],
                "body_length": len(self.bodies[sid])}
        body = json.dumps(seen).encode()
        self.h2.send_headers(sid, [(b":status", b"201"), (b"content-type", b"application/json"),
                                   (b"x-upstream", b"h2")])
        while body:
            size = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            self.h2.send_data(sid, body[:size])
            body = body[size:]
        self.h2.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)


class RawClient(Protocol):
    def __init__(self, request: bytes, done: Deferred[bytes]) -> None:
        self.request, self.done, self.received = request, done, b""

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.received.endswith(b"\r\n\r\n") and b"grpc-status" in self.received:
            self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(self.received)


class H2cUpstreamTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        port = listen_local(Factory.forProtocol(H2Upstream))
        self.addCleanup(port.stopListening)
        self.base = start_proxy(self, site(f"\treverse_proxy h2c://127.0.0.1:{port_number(port)}"))

    @inlineCallbacks
    def test_get_and_post(self) -> Any:
        """Status, fields and body of the h2c upstream reach an HTTP/1.1 client; a POST's body arrives."""
        response = yield treq.get(self.base + "/path?q=1", persistent=False)
        seen = json.loads((yield response.content()))
        self.assertEqual(response.code, 201)
        self.assertEqual(response.headers.getRawHeaders("x-upstream"), ["h2"])
        fields = dict(seen["headers"])
        self.assertEqual((fields[":method"], fields[":path"], fields[":scheme"]),
                         ("GET", "/path?q=1", "http"))
        self.assertEqual(fields[":authority"], self.base.split("//")[1])
        body = b"z" * 300_000  # beyond the upstream's initial 65,535-byte window
        response = yield treq.post(self.base + "/up", data=body, persistent=False)
        seen = json.loads((yield response.content()))
        self.assertEqual((response.code, seen["body_length"]), (201, len(body)))

    @inlineCallbacks
    def test_trailers_reach_http1_client(self) -> Any:
        """The upstream's trailers reach an HTTP/1.1 client that sent ``TE: trailers``, chunked."""
        done: Deferred[bytes] = Deferred()
        host, port = self.base.split("//")[1].rsplit(":", 1)
        factory = ClientFactory.forProtocol(lambda: RawClient(
            b"GET / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n", done))
        reactor.connectTCP(host, int(port), factory)  # type: ignore[attr-defined,arg-type]
        raw = yield done
        head, _, rest = raw.partition(b"\r\n\r\n")
        self.assertIn(b"HTTP/1.1 201", head)
        self.assertIn(b"transfer-encoding: chunked", head.lower())
        self.assertIn(b"\r\n0\r\n", rest)
        self.assertIn(b"grpc-status: 0", rest.partition(b"\r\n0\r\n")[2].lower())
