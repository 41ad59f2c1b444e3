"""handle_response with a fake transport: replace_status, routes, dropped bodies, copy handlers."""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.reverseproxy.test_handler import HandlerTestCase
from txcaddy.config.placeholders import Template
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.reverseproxy.handle_response import (
    CopyResponseHandler,
    CopyResponseHeadersHandler,
    discard_body,
    status_from,
)
from txcaddy.reverseproxy.transport import ResponseHead
from txcaddy.testing import FakeResponse, make_request

UPSTREAM = [{"dial": "10.0.0.1:80"}]


def _respond(body: str, status: int = 200) -> list[dict[str, Any]]:
    return [{"handle": [{"handler": "static_response", "body": body, "status_code": status}]}]


class _Exchange:
    """Just what discard_body uses of an exchange."""

    def __init__(self, finished: bool = False) -> None:
        self.finished = finished
        self.consumer: Any = None
        self.aborted = False

    def deliver_body(self, consumer: Any) -> None:
        self.consumer = consumer

    def abort(self, reason: BaseException | None = None) -> None:
        self.aborted = True


class DiscardBodyTests(SynchronousTestCase):
    def test_announced_long_body_closes_at_once(self) -> None:
        """A Content-Length over the limit aborts the exchange (the connection is closed)."""
        exchange = _Exchange()
        self.assertFalse(discard_body(exchange, 100_001, limit=100_000))
        self.assertTrue(exchange.aborted)
        self.assertIsNone(exchange.consumer)

    def test_short_body_is_drained(self) -> None:
        """A body within the limit is read to its end and the exchange is not aborted."""
        exchange = _Exchange()
        self.assertTrue(discard_body(exchange, None, limit=10))
        exchange.consumer.body_data(b"0123456789")
        exchange.consumer.body_finished(None)
        self.assertFalse(exchange.aborted)

    def test_body_of_unknown_length_past_the_limit_aborts(self) -> None:
        """A chunked body that turns out longer than the limit closes the connection."""
        exchange = _Exchange()
        discard_body(exchange, None, limit=10)
        exchange.consumer.body_data(b"012345")
        self.assertFalse(exchange.aborted)
        exchange.consumer.body_data(b"6789A")
        self.assertTrue(exchange.aborted)

    def test_finished_exchange_needs_nothing(self) -> None:
        """An exchange already over is left alone."""
        exchange = _Exchange(finished=True)
        self.assertTrue(discard_body(exchange, 5))
        self.assertEqual((exchange.consumer, exchange.aborted), (None, False))


class CopyHandlerTests(SynchronousTestCase):
    def test_status_from_placeholders(self) -> None:
        """A configured status may come from a placeholder; a non-number is a 500."""
        request = make_request(headers={"X-Status": "418"})
        self.assertEqual(status_from(Template("{http.request.header.X-Status}"), request, None), 418)
        with self.assertRaises(HandlerError) as caught:
            status_from(Template("teapot"), request, None)
        self.assertEqual(caught.exception.status, 500)

    def test_copy_handlers_outside_handle_response(self) -> None:
        """copy_response and copy_response_headers outside handle_response routes are 500s."""
        for handler, name in [(CopyResponseHandler(), "copy_response"),
                              (CopyResponseHeadersHandler(), "copy_response_headers")]:
            with self.assertRaises(HandlerError) as caught:
                handler.serve(make_request(), FakeResponse(), lambda rq, rs: None)
            self.assertEqual(caught.exception.status, 500)
            self.assertIn(f"cannot use '{name}' outside of reverse_proxy's handle_response routes",
                          str(caught.exception))

    def test_include_and_exclude_together_refused(self) -> None:
        """copy_response_headers takes include or exclude, not both."""
        with self.assertRaises(ConfigError):
            CopyResponseHeadersHandler(["X-A"], ["X-B"])


class HandleResponseLoopTests(HandlerTestCase):
    def test_replace_status_from_a_placeholder(self) -> None:
        """replace_status renders its placeholders; the upstream body is still relayed."""
        handler = self.load({"upstreams": UPSTREAM, "handle_response": [
            {"match": {"status_code": [404]}, "status_code": "{http.request.header.X-To}"}]})
        response, outcome = self.serve(handler, make_request(headers={"X-To": "200"}))
        self.transport.exchanges[0].respond(404, [(b"Content-Length", b"4")], b"page")
        self.assertEqual(outcome, [None])
        self.assertEqual((response.status, response.body), (200, b"page"))

    def test_bad_replacement_status_is_500_and_not_retried(self) -> None:
        """A replace_status that is no number answers 500, aborts the upstream and is not retried."""
        handler = self.load({"upstreams": UPSTREAM, "load_balancing": {"retries": 3},
                             "handle_response": [{"status_code": "nope"}]})
        response, outcome = self.serve(handler, make_request())
        (exchange,) = self.transport.exchanges
        exchange.respond(200, [(b"Content-Length", b"2")], b"ok")
        self.assertIsInstance(outcome[0], Failure)
        self.assertEqual(outcome[0].value.status, 500)
        self.assertIsNotNone(exchange.aborted)
        self.assertEqual(len(self.transport.exchanges), 1)

    def test_weak_string_status_loads_and_fails_at_request_time(self) -> None:
        """A non-string status (``true``) loads as its JSON text, as Caddy's WeakString, and answers 500."""
        handler = self.load({"upstreams": UPSTREAM, "handle_response": [{"status_code": True}]})
        response, outcome = self.serve(handler, make_request())
        self.transport.exchanges[0].respond(200, [(b"Content-Length", b"2")], b"ok")
        self.assertEqual(outcome[0].value.status, 500)
        self.assertIn('"true"', str(outcome[0].value))

    def test_route_error_is_not_retried(self) -> None:
        """An error from a handle_response route is the request's error; the upstream is not tried again."""
        handler = self.load({"upstreams": UPSTREAM, "load_balancing": {"retries": 3}, "handle_response": [
            {"routes": [{"handle": [{"handler": "error", "status_code": 418}]}]}]})
        response, outcome = self.serve(handler, make_request())
        self.transport.exchanges[0].respond(200, [(b"Content-Length", b"2")], b"ok")
        self.assertEqual(outcome[0].value.status, 418)
        self.assertEqual(len(self.transport.exchanges), 1)
        self.assertEqual(response.body, b"")

    def test_unmatched_entries_fall_back_to_relaying(self) -> None:
        """When no response handler matches, the upstream response is relayed unchanged."""
        handler = self.load({"upstreams": UPSTREAM, "handle_response": [
            {"match": {"status_code": [5]}, "routes": _respond("error page")},
            {"match": {"headers": {"X-Special": None}}, "routes": _respond("absent")}]})
        response, outcome = self.serve(handler, make_request())
        self.transport.exchanges[0].respond(200, [(b"X-Special", b"1"), (b"Content-Length", b"2")], b"ok")
        self.assertEqual((response.status, response.body), (200, b"ok"))

    def test_routes_continue_with_the_next_handler_and_keep_the_request_body(self) -> None:
        """A route without a terminal handler goes on to the handler after the proxy, which can read the body."""
        handler = self.load({"upstreams": UPSTREAM, "rewrite": {"method": "GET", "uri": "/auth"},
                             "handle_response": [{"match": {"status_code": [2]}, "routes": [
                                 {"handle": [{"handler": "vars", "user": "{http.reverse_proxy.header.X-User}"}]}]}]})
        request = make_request("POST", "/app", body=b"payload")
        reached: list[tuple[str, Any]] = []

        def after(rq: Any, rs: Any) -> None:
            reached.append((rq.vars.get("user"), rq.body.finished))

        response = FakeResponse()
        outcome: list[Any] = []
        handler.serve(request, response, after).addBoth(outcome.append)
        (exchange,) = self.transport.exchanges
        self.assertEqual((exchange.method, exchange.target, exchange.body_length), (b"GET", b"/auth", None))
        exchange.respond(200, [(b"X-User", b"alice"), (b"Content-Length", b"4")], b"body")
        self.assertEqual(outcome, [None])
        self.assertEqual(len(reached), 1)
        self.assertEqual(reached[0][0], "alice")
        self.assertIsNone(exchange.aborted)  # the 4-byte body was drained, not cut off
        self.assertEqual(response.body, b"")

    def test_body_dropped_after_routes_that_did_not_copy(self) -> None:
        """Routes that hold a copy_response they never reach leave the body to be drained once they end."""
        handler = self.load({"upstreams": UPSTREAM, "handle_response": [{"routes": [
            {"match": [{"path": ["/never"]}], "handle": [{"handler": "copy_response"}]},
            {"handle": [{"handler": "static_response", "body": "mine"}]},
        ]}]})
        response, outcome = self.serve(handler, make_request())
        exchange = self.transport.exchanges[0]
        exchange.head.callback(ResponseHead(b"HTTP/1.1", 200, b"OK", [(b"Content-Length", b"6")]))
        self.assertEqual(outcome, [None])
        self.assertEqual(response.body, b"mine")
        self.assertIsNotNone(exchange.consumer)  # the body goes to a drain, after the routes
        exchange.consumer.body_data(b"theirs")
        exchange.consumer.body_finished(None)
        self.assertEqual(response.body, b"mine")
        self.assertIsNone(exchange.aborted)

    def test_copy_response_relays_with_its_status(self) -> None:
        """copy_response relays the upstream body with its own status; the call ends when the body does."""
        handler = self.load({"upstreams": UPSTREAM, "handle_response": [{"routes": [
            {"handle": [{"handler": "copy_response", "status_code": 203}]}]}]})
        response, outcome = self.serve(handler, make_request())
        exchange = self.transport.exchanges[0]
        exchange.head.callback(ResponseHead(b"HTTP/1.1", 200, b"OK", [(b"Content-Length", b"6")]))
        self.assertEqual(outcome, [])
        exchange.consumer.body_data(b"theirs")
        exchange.consumer.body_finished(None)
        self.assertEqual(outcome, [None])
        self.assertEqual((response.status, response.body), (203, b"theirs"))
