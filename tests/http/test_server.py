"""``HTTPServer`` before the routes: ACME HTTP-01 answers and strict SNI host matching."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.http.routing import Route, RouteList
from txcaddy.http.server import HTTPServer
from txcaddy.testing import FakeResponse, FakeTLS, make_request
from txcaddy.tls.challenges import Challenges


class _Hello:
    """A route handler answering 200 "routed"."""

    def serve(self, request: Any, response: Any, next: Any) -> None:
        response.write_head(200)
        response.write(b"routed")


def _server(**kwargs: Any) -> HTTPServer:
    return HTTPServer("srv0", [":443"], RouteList([Route([_Hello()])]), **kwargs)


class StrictSNIHostTests(SynchronousTestCase):
    def test_mismatch_is_421_and_closes(self) -> None:
        """With strict SNI host matching, a Host other than the TLS server name gets 421."""
        server = _server(strict_sni_host=True)
        response = FakeResponse()
        server.handle(make_request(host="b.test:443", tls=FakeTLS(server_name="a.test")), response)
        self.assertEqual((response.status, response.headers.get("Connection")), (421, "close"))

    def test_match_ignores_port_and_case(self) -> None:
        """The Host's port is ignored and names compare case-insensitively."""
        server = _server(strict_sni_host=True)
        response = FakeResponse()
        server.handle(make_request(host="A.Test:8443", tls=FakeTLS(server_name="a.test")), response)
        self.assertEqual((response.status, response.body), (200, b"routed"))

    def test_off_by_default(self) -> None:
        """Without it, the mismatch is routed as usual."""
        response = FakeResponse()
        _server().handle(make_request(host="b.test", tls=FakeTLS(server_name="a.test")), response)
        self.assertEqual(response.status, 200)


class ChallengeTests(SynchronousTestCase):
    def test_http01_answered_before_routes(self) -> None:
        """A pending HTTP-01 token is answered with its key authorization, not routed."""
        challenges = Challenges()
        challenges.add_http01("example.com", "tok", "tok.thumb")
        server = _server(challenges=challenges)
        response = FakeResponse()
        server.handle(make_request(target="/.well-known/acme-challenge/tok", host="EXAMPLE.com:80"), response)
        self.assertEqual((response.status, response.body), (200, b"tok.thumb"))
        self.assertEqual(response.headers.get("Content-Type"), "text/plain")

    def test_other_requests_routed(self) -> None:
        """Another token, another host or a POST is routed as usual."""
        challenges = Challenges()
        challenges.add_http01("example.com", "tok", "tok.thumb")
        server = _server(challenges=challenges)
        for method, target, host in (("GET", "/.well-known/acme-challenge/other", "example.com"),
                                     ("GET", "/.well-known/acme-challenge/tok", "other.com"),
                                     ("POST", "/.well-known/acme-challenge/tok", "example.com")):
            response = FakeResponse()
            server.handle(make_request(method, target, host=host), response)
            self.assertEqual(response.body, b"routed", (method, target, host))
        challenges.remove_http01("tok")
        response = FakeResponse()
        server.handle(make_request(target="/.well-known/acme-challenge/tok", host="example.com"), response)
        self.assertEqual(response.body, b"routed")


class _Connection:
    """A protocol as ``HTTPServer`` sees it: idle or busy, maybe switched (a WebSocket)."""

    def __init__(self, server: HTTPServer, idle: bool, switched: bool = False) -> None:
        self.server = server
        self.idle = idle
        self.closing = False
        self._switched = object() if switched else None
        self.transport = self
        self.aborted = False
        server.connection_made(self)

    def close_when_idle(self) -> None:
        self.closing = True

    def abortConnection(self) -> None:  # noqa: N802 - Twisted's name
        self.aborted = True
        self.server.connection_lost(self)

    loseConnection = abortConnection  # noqa: N815 - Twisted's name


class RetireTests(SynchronousTestCase):
    def test_idle_connections_move_busy_ones_close_websockets_stay(self) -> None:
        """retire() moves idle connections to the successor, asks busy ones to close when done,
        leaves switched ones alone, and fires once the last one is gone."""
        from twisted.internet.task import Clock

        old, new = _server(), _server()
        idle, busy, tunnel = _Connection(old, True), _Connection(old, False), _Connection(old, False, True)
        done = old.retire(new, 30, Clock())
        self.assertIs(idle.server, new)
        self.assertEqual((new.connections, old.connections), ({idle}, {busy, tunnel}))
        self.assertEqual((idle.closing, busy.closing, tunnel.closing), (False, True, False))
        self.assertNoResult(done)
        old.connection_lost(busy)
        old.connection_lost(tunnel)
        self.successResultOf(done)

    def test_grace_period_closes_what_is_left(self) -> None:
        """After the grace period what still runs under the old server is closed."""
        from twisted.internet.task import Clock

        clock = Clock()
        old = _server()
        tunnel = _Connection(old, False, True)
        done = old.retire(None, 5, clock)
        clock.advance(4.9)
        self.assertFalse(tunnel.aborted)
        clock.advance(0.2)
        self.assertTrue(tunnel.aborted)
        self.successResultOf(done)
