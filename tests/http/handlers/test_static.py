"""``static_response`` and ``error``: statuses, headers, bodies and placeholders as Caddy 2.6.2."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.http.handlers.support import fixture_handlers, load
from txcaddy.errors import ConfigError
from txcaddy.http.errors import HandlerError
from txcaddy.http.handlers.static import AbortConnection
from txcaddy.testing import FakeResponse, make_request, serve


def respond(config: dict[str, Any], request: Any = None) -> FakeResponse:
    return serve(load({"handler": "static_response", **config}), request or make_request())


class StaticResponseTests(SynchronousTestCase):
    def test_text_body(self) -> None:
        """A text body is answered 200 as text/plain; charset=utf-8."""
        response = respond({"body": "hello"})
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get("Content-Type"), "text/plain; charset=utf-8")
        self.assertEqual(response.body, b"hello")

    def test_json_body_gets_json_type(self) -> None:
        """A body that is a JSON object or array is answered as application/json."""
        for body in ('{"a": 1}', "  [1, 2]\n", "[1]"):
            self.assertEqual(respond({"body": body}).headers.get("Content-Type"), "application/json", body)

    def test_not_quite_json_is_text(self) -> None:
        """Bodies that only look like JSON, or are too short for Caddy's test, are text."""
        # "{}" is too short for Caddy's test; the others are not valid JSON
        for body in ("{}", "{a}", "[1,]", "[NaN]", "{\"a\": 1} x"):
            self.assertEqual(respond({"body": body}).headers.get("Content-Type"), "text/plain; charset=utf-8", body)

    def test_json_decision_uses_the_body_as_written(self) -> None:
        """The JSON test looks at the body as configured, before placeholders expand."""
        request = make_request(headers={"X-Part": "not json"})
        response = respond({"body": "[{http.request.header.X-Part}]"}, request)
        self.assertEqual(response.body, b"[not json]")
        self.assertEqual(response.headers.get("Content-Type"), "text/plain; charset=utf-8")

    def test_existing_content_type_kept(self) -> None:
        """A configured Content-Type is kept and not doubled."""
        response = respond({"body": "<b>x</b>", "headers": {"Content-Type": ["text/html"]}})
        self.assertEqual(response.headers.get_all("Content-Type"), ["text/html"])

    def test_no_body_no_content_type(self) -> None:
        """No body means no Content-Type."""
        response = respond({"status_code": 204})
        self.assertEqual(response.status, 204)
        self.assertNotIn("Content-Type", response.headers)
        self.assertEqual(response.body, b"")

    def test_status_number_or_string(self) -> None:
        """status_code may be a number or a numeric string."""
        self.assertEqual(respond({"status_code": 404}).status, 404)
        self.assertEqual(respond({"status_code": "418"}).status, 418)

    def test_status_placeholder(self) -> None:
        """status_code expands placeholders per request."""
        request = make_request(headers={"X-Code": "451"})
        self.assertEqual(respond({"status_code": "{http.request.header.X-Code}"}, request).status, 451)

    def test_status_not_a_number_is_500_error(self) -> None:
        """A status that expands to a non-number is a 500 error."""
        handler = load({"handler": "static_response", "status_code": "{http.request.header.X-Code}"})
        with self.assertRaises(HandlerError) as caught:
            serve(handler, make_request(headers={"X-Code": "abc"}))
        self.assertEqual(caught.exception.status, 500)

    def test_float_status_is_not_an_integer(self) -> None:
        """A float status_code is a 500 error at serve time, as in Caddy."""
        handler = load({"handler": "static_response", "status_code": 404.0})
        with self.assertRaises(HandlerError) as caught:
            serve(handler, make_request())
        self.assertEqual(caught.exception.status, 500)

    def test_impossible_status_drops_the_connection(self) -> None:
        """A status below 100 aborts the connection."""
        with self.assertRaises(AbortConnection):
            respond({"status_code": 99})

    def test_body_replace_known(self) -> None:
        """The body expands known placeholders, keeps unknown ones, and unescapes braces."""
        response = respond({"body": "{http.request.method} {bogus} {http.request.uri.path} \\{x\\}"},
                           make_request("POST", "/a%20b"))
        self.assertEqual(response.body, b"POST {bogus} /a b {x}")

    def test_headers_replace_all(self) -> None:
        """Header names and values expand placeholders; unknown ones become empty."""
        response = respond({"headers": {"X-Host": ["{http.request.host}", "{bogus}!"], "{http.request.method}-Name": ["v"]}},
                           make_request(host="example.com:8080"))
        self.assertEqual(response.headers.get_all("X-Host"), ["example.com", "!"])
        self.assertEqual(response.headers.get("Get-Name"), "v")

    def test_headers_replace_earlier_values(self) -> None:
        """Configured headers replace values already on the response."""
        response = FakeResponse()
        response.headers.add("X-A", "old")
        serve(load({"handler": "static_response", "headers": {"X-A": ["new"]}}), make_request(), response)
        self.assertEqual(response.headers.get_all("X-A"), ["new"])

    def test_close(self) -> None:
        """close adds Connection: close and still sends the body."""
        response = respond({"body": "bye", "close": True})
        self.assertEqual(response.headers.get("Connection"), "close")
        self.assertEqual(response.body, b"bye")

    def test_abort(self) -> None:
        """abort drops the connection without writing a head."""
        response = FakeResponse()
        with self.assertRaises(AbortConnection):
            serve(load({"handler": "static_response", "abort": True}), make_request(), response)
        self.assertFalse(response.head_sent)

    def test_error_status_is_the_default_in_error_routes(self) -> None:
        """In error routes the error's status is the default; a configured one wins."""
        request = make_request()
        request.error = HandlerError(502, "dial failed")
        response = respond({"body": "sorry {http.error.status_code}"}, request)
        self.assertEqual(response.status, 502)
        self.assertEqual(response.body, b"sorry 502")
        self.assertEqual(respond({"status_code": 200}, request).status, 200)

    def test_early_hints_continue_down_the_chain(self) -> None:
        """A 1xx status sends an informational response and the chain goes on."""
        sent: list[tuple[int, list[str]]] = []

        class HintsResponse(FakeResponse):
            def write_informational(self, status: int, headers: Any = None) -> None:
                sent.append((status, headers.get_all("Link")))

        handler = load({"handler": "static_response", "status_code": 103, "headers": {"Link": ["</a.css>; rel=preload"]}})
        reached = []

        def after(request: Any, response: Any) -> None:
            reached.append(True)
            response.write_head(200)
            response.write(b"page")

        response = serve(handler, make_request(), HintsResponse(), next=after)
        self.assertEqual(sent, [(103, ["</a.css>; rel=preload"])])
        self.assertEqual(reached, [True])
        self.assertEqual((response.status, response.body), (200, b"page"))

    def test_does_not_call_next(self) -> None:
        """static_response ends the chain: next is not called."""
        called = []
        serve(load({"handler": "static_response", "body": "x"}), make_request(), next=lambda rq, rs: called.append(1))
        self.assertEqual(called, [])

    def test_every_adapter_fixture_loads(self) -> None:
        """Every static_response in the adapter fixtures loads and answers."""
        configs = list(fixture_handlers("static_response"))
        self.assertGreater(len(configs), 5)
        for where, config in configs:
            handler = load(config)
            if config.get("abort"):
                self.assertRaises(AbortConnection, serve, handler, make_request())
                continue
            request = make_request()
            request.error = HandlerError(503)
            request.vars["code"] = "308"
            self.assertGreaterEqual(serve(handler, request).status, 100, where)

    def test_bad_config(self) -> None:
        """Headers not given as lists, or a status as a list, are configuration errors."""
        with self.assertRaises(ConfigError):
            load({"handler": "static_response", "headers": {"X": "not a list"}})
        with self.assertRaises(ConfigError):
            load({"handler": "static_response", "status_code": [200]})


class ErrorTests(SynchronousTestCase):
    def fail_with(self, config: dict[str, Any], request: Any = None) -> HandlerError:
        with self.assertRaises(HandlerError) as caught:
            serve(load({"handler": "error", **config}), request or make_request())
        return caught.exception

    def test_default_500(self) -> None:
        """error fails the request with 500 and its message by default."""
        error = self.fail_with({"error": "boom"})
        self.assertEqual((error.status, error.message), (500, "boom"))

    def test_status_and_placeholder(self) -> None:
        """error takes its status as a number or from a placeholder."""
        self.assertEqual(self.fail_with({"status_code": 403}).status, 403)
        request = make_request(headers={"X-Code": "429"})
        self.assertEqual(self.fail_with({"status_code": "{http.request.header.X-Code}"}, request).status, 429)

    def test_bad_status_is_500(self) -> None:
        """An error status that is not a number becomes 500."""
        error = self.fail_with({"status_code": "{bogus}", "error": "x"})
        self.assertEqual(error.status, 500)

    def test_message_is_not_a_template(self) -> None:
        """The error message is kept as written, placeholders unexpanded."""
        self.assertEqual(self.fail_with({"error": "{http.request.method}"}).message, "{http.request.method}")

    def test_every_adapter_fixture_loads(self) -> None:
        """Every error handler in the adapter fixtures fails the request with a 4xx or 5xx."""
        configs = list(fixture_handlers("error"))
        self.assertTrue(configs)
        for where, config in configs:
            self.assertGreaterEqual(self.fail_with({k: v for k, v in config.items() if k != "handler"}).status, 400, where)
