"""Upgrade requests on the HTTP/1.1 protocol: the hand-over after a 101, or a normal answer and close."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from tests.http.test_h1 import Echo, PathPrefix
from txcaddy.http._h1 import HTTP11Factory
from txcaddy.http.response import ResponseWrapper
from txcaddy.http.routing import MatcherSet, Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.interfaces import IHandler

UPGRADE = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"


class Recorder(Protocol):
    """The protocol a connection is handed to: remembers what it got."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost: Any = None
        self.made = False

    def connectionMade(self) -> None:
        self.made = True

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = reason


class GracefulRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.asked_to_close = 0

    def close_gracefully(self) -> None:
        self.asked_to_close += 1
        assert self.transport is not None
        self.transport.loseConnection()


@implementer(IHandler)
class Deciding:
    """Holds each request until the test answers or switches it."""

    def __init__(self, wrap: bool = False) -> None:
        self.pending: list[tuple[Any, Any, Deferred[None]]] = []
        self.wrap = wrap

    def serve(self, request: Any, response: Any, next: Any) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append((request, ResponseWrapper(response) if self.wrap else response, d))
        return d

    def switch(self, protocol: Protocol, **headers: str) -> Any:
        request, response, d = self.pending.pop(0)
        for name, value in headers.items():
            response.headers.add(name.replace("_", "-"), value)
        response.switch_protocols(protocol)
        d.callback(None)
        return response

    def answer(self, status: int, body: bytes = b"") -> None:
        request, response, d = self.pending.pop(0)
        response.write_head(status)
        response.write(body)
        d.callback(None)


@implementer(IHandler)
class SwitchAtOnce:
    """Switches inside ``serve``, before the parser has finished with the head."""

    def __init__(self) -> None:
        self.protocol = Recorder()

    def serve(self, request: Any, response: Any, next: Any) -> None:
        response.switch_protocols(self.protocol)


class AccessLog:
    """Records the status each finished request is logged with."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, int]] = []

    def begin(self, request: Any, response: Any) -> None:
        pass

    def chain_done(self, request: Any, response: Any) -> None:
        pass

    def chain_failed(self, request: Any) -> None:
        pass

    def finished(self, request: Any, response: Any) -> None:
        self.entries.append((request.path, response.status))


class UpgradeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.deciding = Deciding()
        self.echo = Echo()
        self.at_once = SwitchAtOnce()
        routes = RouteList(
            [
                Route([self.echo], [MatcherSet([PathPrefix("/echo")])], terminal=True),
                Route([self.at_once], [MatcherSet([PathPrefix("/now")])], terminal=True),
                Route([self.deciding]),
            ]
        )
        self.access_log = AccessLog()
        self.server = HTTPServer("srv0", [":80"], routes, reactor=self.clock, access_log=self.access_log)
        self.connect()

    def connect(self) -> None:
        self.protocol = HTTP11Factory(self.server, self.clock).buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> bytes:
        self.protocol.dataReceived(data)
        out = self.transport.value()
        self.transport.clear()
        return out

    # -- switching ----------------------------------------------------------------------

    def test_bytes_after_the_head_are_kept_and_reading_pauses(self) -> None:
        """Reading pauses on an upgrade head; bytes read meanwhile go to the new protocol."""
        self.assertEqual(self.send(UPGRADE + b"early bytes"), b"")
        self.assertEqual(len(self.deciding.pending), 1)
        self.assertEqual(self.transport.producerState, "paused")
        self.send(b" and more")  # a transport may still deliver a little after the pause
        tunnel = Recorder()
        self.deciding.switch(tunnel, Upgrade="websocket", Connection="Upgrade", X_Up="yes")
        self.assertTrue(tunnel.made)
        self.assertIs(tunnel.transport, self.transport)
        self.assertEqual(bytes(tunnel.received), b"early bytes and more")
        self.assertEqual(self.transport.producerState, "producing")

    def test_101_head_carries_the_response_fields_sorted_and_nothing_else(self) -> None:
        """The 101 head holds exactly the response's fields, sorted, plus Server."""
        self.send(UPGRADE)
        self.deciding.switch(Recorder(), Upgrade="websocket", Connection="Upgrade", Sec_Websocket_Accept="abc=")
        self.assertEqual(
            self.transport.value(),
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Connection: Upgrade\r\nSec-Websocket-Accept: abc=\r\nServer: Caddy\r\nUpgrade: websocket\r\n\r\n",
        )

    def test_nothing_after_the_switch_is_parsed_as_http(self) -> None:
        """After the switch every byte goes to the new protocol, none is parsed as HTTP."""
        self.send(UPGRADE + b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        tunnel = Recorder()
        self.deciding.switch(tunnel)
        self.transport.clear()
        out = self.send(b"GET /echo/2 HTTP/1.1\r\nHost: x\r\n\r\n\x81\x05hello")
        self.assertEqual(out, b"")
        self.assertEqual(self.echo.seen, [])
        self.assertEqual(
            bytes(tunnel.received),
            b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /echo/2 HTTP/1.1\r\nHost: x\r\n\r\n\x81\x05hello",
        )

    def test_the_new_protocol_writes_to_the_client(self) -> None:
        """The new protocol writes straight to the client's transport."""
        self.send(UPGRADE)
        tunnel = Recorder()
        self.deciding.switch(tunnel)
        self.transport.clear()
        assert tunnel.transport is not None
        tunnel.transport.write(b"frame")
        self.assertEqual(self.transport.value(), b"frame")

    def test_head_split_over_reads(self) -> None:
        """An upgrade head split over several reads still hands only the bytes after it over."""
        for piece in (UPGRADE[:10], UPGRADE[10:40], UPGRADE[40:] + b"tail"):
            self.send(piece)
        tunnel = Recorder()
        self.deciding.switch(tunnel)
        self.assertEqual(bytes(tunnel.received), b"tail")

    def test_connection_lost_reaches_the_new_protocol_and_the_server_forgets_it(self) -> None:
        """Losing a switched connection tells the new protocol and drops it from the server."""
        self.send(UPGRADE)
        tunnel = Recorder()
        self.deciding.switch(tunnel)
        self.assertIn(self.protocol, self.server.connections)
        reason = Failure(ConnectionError("bye"))
        self.protocol.connectionLost(reason)
        self.assertIs(tunnel.lost, reason)
        self.assertNotIn(self.protocol, self.server.connections)

    def test_access_log_sees_101(self) -> None:
        """A switch finishes the response with status 101, and the access log records it."""
        self.send(UPGRADE)
        response = self.deciding.switch(Recorder())
        self.assertEqual(self.access_log.entries, [("/ws", 101)])
        self.assertTrue(response.finished)
        self.assertEqual(response.status, 101)

    def test_notify_finish_fires_on_switch(self) -> None:
        """notify_finish fires when the response switches protocols."""
        self.send(UPGRADE)
        _, response, _ = self.deciding.pending[0]
        finished = response.notify_finish()
        self.assertNoResult(finished)
        self.deciding.switch(Recorder())
        self.successResultOf(finished)

    def test_through_a_response_wrapper(self) -> None:
        """A ResponseWrapper can switch protocols on behalf of the response it wraps."""
        self.deciding.wrap = True
        self.send(UPGRADE + b"x")
        _, wrapper, _ = self.deciding.pending[0]
        self.assertTrue(wrapper.can_switch_protocols)
        tunnel = Recorder()
        self.deciding.switch(tunnel)
        self.assertTrue(self.transport.value().startswith(b"HTTP/1.1 101 Switching Protocols\r\n"))
        self.assertEqual(bytes(tunnel.received), b"x")
        self.assertEqual(wrapper.status, 101)

    def test_switch_inside_serve_before_the_head_is_done(self) -> None:
        """A switch inside serve, while the head is still being parsed, hands over what follows."""
        out = self.send(UPGRADE.replace(b"/ws", b"/now") + b"after")
        self.assertEqual(out, b"HTTP/1.1 101 Switching Protocols\r\nServer: Caddy\r\n\r\n")
        self.assertEqual(bytes(self.at_once.protocol.received), b"after")
        self.send(b" more")
        self.assertEqual(bytes(self.at_once.protocol.received), b"after more")

    def test_no_idle_timeout_after_the_switch(self) -> None:
        """A switched connection has no idle timeout left scheduled."""
        self.server.idle_timeout = 30
        self.connect()
        self.send(UPGRADE)
        self.deciding.switch(Recorder())
        self.clock.advance(3600)
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_pipelined_upgrade_switches_after_the_request_before_it(self) -> None:
        """A pipelined upgrade waits for the request before it, then switches with its own bytes."""
        self.send(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n" + UPGRADE + b"tunnel")
        self.assertEqual(len(self.deciding.pending), 1)
        self.deciding.answer(200, b"one")
        self.assertIn(b"one", self.transport.value())
        self.transport.clear()
        self.assertEqual(len(self.deciding.pending), 1)  # the upgrade request, dispatched now
        self.assertEqual(self.transport.producerState, "paused")  # still waiting for its answer
        tunnel = Recorder()
        self.deciding.switch(tunnel)
        self.assertEqual(bytes(tunnel.received), b"tunnel")
        self.assertEqual(self.transport.producerState, "producing")

    # -- what cannot switch ---------------------------------------------------------------

    def test_ordinary_request_cannot_switch(self) -> None:
        """A request without Upgrade cannot switch protocols; trying raises RuntimeError."""
        self.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _, response, _ = self.deciding.pending[0]
        self.assertFalse(response.can_switch_protocols)
        self.assertRaises(RuntimeError, response.switch_protocols, Recorder())

    def test_cannot_switch_after_the_head_was_sent(self) -> None:
        """Once a response head has been sent the request can no longer switch protocols."""
        self.send(UPGRADE)
        _, response, _ = self.deciding.pending[0]
        response.write_head(200)
        response.flush()
        self.assertFalse(response.can_switch_protocols)
        self.assertRaises(RuntimeError, response.switch_protocols, Recorder())

    def test_client_gone_before_the_decision(self) -> None:
        """If the client goes before the handler decides, the response is lost and cannot switch."""
        self.send(UPGRADE)
        _, response, _ = self.deciding.pending[0]
        self.protocol.connectionLost(Failure(ConnectionError("gone")))
        self.assertIsNotNone(response.lost)
        self.assertFalse(response.can_switch_protocols)

    # -- answered without a switch -----------------------------------------------------

    def test_normal_answer_closes_and_never_parses_the_rest(self) -> None:
        """An upgrade answered normally closes the connection; later bytes are never served."""
        self.send(UPGRADE + b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        self.deciding.answer(403, b"no")
        out = self.transport.value()
        self.assertTrue(out.startswith(b"HTTP/1.1 403 Forbidden\r\n"))
        self.assertIn(b"\r\nConnection: close\r\n", out)
        self.assertTrue(out.endswith(b"\r\n\r\nno"))
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.echo.seen, [])

    def test_handler_answering_at_once_then_close(self) -> None:
        """An upgrade a handler answers at once is served plainly, then the connection closes."""
        # What a route without reverse_proxy (respond, file_server, ...) does: serve it
        # as a plain request, then close; the bytes after the head are not requests.
        out = self.send(UPGRADE.replace(b"/ws", b"/echo") + b"GET /echo/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"\r\nConnection: close\r\n", out)
        self.assertTrue(out.endswith(b"GET /echo "))
        self.assertEqual([r.path for r in self.echo.seen], ["/echo"])
        self.assertTrue(self.transport.disconnecting)

    def test_upgrade_request_with_a_body_is_served_as_a_plain_request(self) -> None:
        """An upgrade request with a body is a plain request; the connection stays reusable."""
        # llhttp skips such a body; it is read after the head, and what follows is HTTP.
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        out = self.send(head + b"Content-Length: 5\r\n\r\nhelloGET /echo/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(out.count(b"HTTP/1.1 200 OK\r\n"), 2)
        self.assertIn(b"POST /echo hello", out)
        self.assertTrue(out.endswith(b"GET /echo/2 "))
        self.assertFalse(self.transport.disconnecting)

    def test_upgrade_request_with_a_chunked_body(self) -> None:
        """An upgrade request with a chunked body has the body read and served plainly."""
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        out = self.send(head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel")
        self.assertEqual(out, b"")
        out = self.send(b"lo\r\n0\r\n\r\n")
        self.assertIn(b"POST /echo hello", out)

    def test_upgrade_request_with_a_body_cannot_switch(self) -> None:
        """An upgrade request with a body cannot switch, and reading is not paused."""
        self.send(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nhi")
        _, response, _ = self.deciding.pending[0]
        self.assertFalse(response.can_switch_protocols)
        self.assertNotEqual(self.transport.producerState, "paused")

    # -- shutdown -----------------------------------------------------------------------

    def test_drain_closes_tunnels_through_close_gracefully(self) -> None:
        """drain asks a tunnel to close_gracefully and fires once its connection is lost."""
        self.send(UPGRADE)
        tunnel = GracefulRecorder()
        self.deciding.switch(tunnel)
        self.assertFalse(self.protocol.idle)
        drained = self.server.drain(10, self.clock)
        self.assertEqual(tunnel.asked_to_close, 1)
        self.assertTrue(self.transport.disconnecting)
        self.assertNoResult(drained)
        self.protocol.connectionLost(Failure(ConnectionError("closed")))
        self.successResultOf(drained)

    def test_drain_closes_a_tunnel_without_close_gracefully(self) -> None:
        """drain closes the connection of a tunnel that has no close_gracefully."""
        self.send(UPGRADE)
        self.deciding.switch(Recorder())
        self.server.drain(10, self.clock)
        self.assertTrue(self.transport.disconnecting)

    def test_switch_while_draining_closes_at_once(self) -> None:
        """A drain waits for an in-flight upgrade, then closes the tunnel it switched to."""
        self.send(UPGRADE)
        self.server.drain(10, self.clock)
        self.assertFalse(self.transport.disconnecting)  # the upgrade is in flight
        tunnel = GracefulRecorder()
        self.deciding.switch(tunnel)
        self.assertEqual(tunnel.asked_to_close, 1)

    def test_force_close_after_grace_aborts_the_tunnel(self) -> None:
        """A tunnel still open when the drain's grace period ends is aborted."""
        self.send(UPGRADE)
        tunnel = Recorder()
        self.deciding.switch(tunnel)
        self.transport.loseConnection = lambda: None  # type: ignore[method-assign]  # a peer that never goes
        aborted: list[bool] = []
        self.transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        self.server.drain(5, self.clock)
        self.clock.advance(5)
        self.assertEqual(aborted, [True])
