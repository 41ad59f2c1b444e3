"""``headers``: request and response operations, deferred and required ones, as Caddy 2.6.2."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.http.handlers.support import fixture_handlers, load
from txcaddy.errors import ConfigError
from txcaddy.http.handlers.headers import ResponseMatcher, status_code_matches
from txcaddy.http.headers import Headers
from txcaddy.testing import FakeResponse, make_request, serve


def writer(status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    """A next handler that sets ``headers``, writes the status and the body."""

    def next_handler(request: Any, response: Any) -> None:
        for name, value in (headers or {}).items():
            response.headers.set(name, value)
        response.write_head(status)
        if body:
            response.write(body)

    return next_handler


def run(config: dict[str, Any], request: Any = None, response: FakeResponse | None = None, next: Any = None) -> tuple[Any, FakeResponse]:
    request = request or make_request()
    response = response or FakeResponse()
    serve(load({"handler": "headers", **config}), request, response, next=next or writer())
    return request, response


def response_with(**fields: str) -> FakeResponse:
    response = FakeResponse()
    for name, value in fields.items():
        response.headers.add(name.replace("_", "-"), value)
    return response


class ResponseOpsTests(SynchronousTestCase):
    def test_set_add_delete(self) -> None:
        """set replaces a field, add appends a value, delete removes a field by any case."""
        start = response_with(X_Old="1", X_Gone="2", X_List="a")
        _, response = run({"response": {"set": {"X-Old": ["new"]}, "add": {"X-List": ["b"]}, "delete": ["x-gone"]}},
                          response=start)
        self.assertEqual(response.headers.get_all("X-Old"), ["new"])
        self.assertEqual(response.headers.get_all("X-List"), ["a", "b"])
        self.assertNotIn("X-Gone", response.headers)

    def test_order_add_set_delete_replace(self) -> None:
        """Operations apply in Caddy's order: add, set, delete, then replace."""
        config = {"response": {
            "replace": {"X-A": [{"search": "set", "replace": "replaced"}]},
            "delete": ["x-b"],
            "set": {"X-A": ["set"], "X-B": ["b"]},
            "add": {"X-A": ["added"]},
        }}
        _, response = run(config)
        self.assertEqual(response.headers.get_all("X-A"), ["replaced"])
        self.assertNotIn("X-B", response.headers)

    def test_set_joins_values(self) -> None:
        """set with several values writes one field with them joined by commas."""
        _, response = run({"response": {"set": {"Cache-Control": ["no-cache", "no-store"]}}})
        self.assertEqual(response.headers.get_all("Cache-Control"), ["no-cache,no-store"])

    def test_names_canonical(self) -> None:
        """Field names set are written in canonical form."""
        _, response = run({"response": {"set": {"x-lower-case": ["v"]}}})
        self.assertEqual(response.headers.names()[-1], "X-Lower-Case")

    def test_delete_wildcards_case_insensitive(self) -> None:
        """delete takes prefix, suffix and substring wildcards, ignoring case."""
        start = response_with(X_Foo_One="1", X_Foo_Two="2", Bar_Suffix="3", Has_Mid_Dle="4", Keep="5")
        _, response = run({"response": {"delete": ["X-FOO-*", "*-suffix", "*mid*"]}}, response=start)
        self.assertEqual(response.headers.names(), ["Keep"])

    def test_delete_star_alone_drops_connection(self) -> None:
        """delete * alone aborts the connection."""
        from txcaddy.http.errors import AbortConnection

        with self.assertRaises(AbortConnection):
            run({"response": {"delete": ["*"]}})

    def test_replace_substring_and_regexp(self) -> None:
        """replace substitutes substrings or regexp matches, with placeholders in the result."""
        start = response_with(X_Replace="foofoo", Location="http://backend:8080/x", Other="foo")
        config = {"response": {"replace": {
            "x-replace": [{"search_regexp": "^foo", "replace": "bar"}],
            "Location": [{"search": "http://backend:8080", "replace": "https://{http.request.host}"}],
        }}}
        _, response = run(config, make_request(host="example.com"), start)
        self.assertEqual(response.headers.get("X-Replace"), "barfoo")
        self.assertEqual(response.headers.get("Location"), "https://example.com/x")
        self.assertEqual(response.headers.get("Other"), "foo")

    def test_replace_every_field(self) -> None:
        """replace on * edits every field, with $1 standing for a capture."""
        start = response_with(A="x1", B="x2")
        _, response = run({"response": {"replace": {"*": [{"search_regexp": "x(\\d)", "replace": "y$1"}]}}}, response=start)
        self.assertEqual((response.headers.get("A"), response.headers.get("B")), ("y1", "y2"))

    def test_values_replace_known(self) -> None:
        """Values expand known placeholders and keep unknown ones; names expand too."""
        _, response = run({"response": {"set": {"X-M": ["{http.request.method} {bogus}"], "{http.request.method}": ["m"]}}})
        self.assertEqual(response.headers.get("X-M"), "GET {bogus}")
        self.assertEqual(response.headers.get("Get"), "m")

    def test_immediate_ops_stay_for_error_responses(self) -> None:
        """Non-deferred operations apply at once, even when next writes nothing."""
        # Caddy: non-deferred ops change the header map at once, so error routes see them too
        response = FakeResponse()
        handler = load({"handler": "headers", "response": {"set": {"X-Thing": ["a"]}}})
        handler.serve(make_request(), response, lambda rq, rs: None)
        self.assertEqual(response.headers.get("X-Thing"), "a")


class DeferredTests(SynchronousTestCase):
    def test_deferred_sees_later_headers(self) -> None:
        """Deferred operations run at the head and see the fields the next handler set."""
        start = response_with(Server="Caddy")
        config = {"response": {"deferred": True, "delete": ["server"], "set": {"X-Status": ["{http.response.header.X-Up}"]}}}
        _, response = run(config, response=start, next=writer(201, b"body", {"X-Up": "from-next"}))
        self.assertNotIn("Server", response.headers)
        self.assertEqual(response.headers.get("X-Status"), "from-next")
        self.assertEqual((response.status, response.body), (201, b"body"))

    def test_deferred_on_implicit_status(self) -> None:
        """Deferred operations run when the head is implied by a first write."""
        def write_only(request: Any, response: Any) -> None:
            response.write(b"x")

        _, response = run({"response": {"deferred": True, "set": {"X-D": ["1"]}}}, next=write_only)
        self.assertEqual((response.status, response.headers.get("X-D")), (200, "1"))

    def test_deferred_not_applied_when_nothing_written_through_it(self) -> None:
        """Deferred operations do not run when nothing is written through the handler."""
        # [caddy] `header -Server` with no handler writing: the server's empty 200 still has Server
        start = response_with(Server="Caddy")
        _, response = run({"response": {"deferred": True, "delete": ["server"]}}, response=start, next=lambda rq, rs: None)
        self.assertEqual(response.headers.get("Server"), "Caddy")

    def test_require_absent(self) -> None:
        """A require on an absent field applies only when the next handler did not set it."""
        config = {"response": {"require": {"headers": {"X-Default": None}}, "set": {"X-Default": ["fallback"]}}}
        _, response = run(config)
        self.assertEqual(response.headers.get("X-Default"), "fallback")
        _, response = run(config, next=writer(headers={"X-Default": "mine"}))
        self.assertEqual(response.headers.get_all("X-Default"), ["mine"])

    def test_require_status(self) -> None:
        """A require on a status class applies only to responses of that class."""
        config = {"response": {"require": {"status_code": [4]}, "set": {"X-Err": ["yes"]}}}
        self.assertNotIn("X-Err", run(config, next=writer(200))[1].headers)
        self.assertEqual(run(config, next=writer(404))[1].headers.get("X-Err"), "yes")

    def test_informational_then_final(self) -> None:
        """Deferred operations apply to a 1xx response and again to the final one."""
        sent: list[int] = []

        class Informational(FakeResponse):
            def write_informational(self, status: int, headers: Any = None) -> None:
                sent.append(status)

        def hints_then_page(request: Any, response: Any) -> None:
            response.write_informational(103, response.headers)
            response.write_head(200)

        config = {"response": {"deferred": True, "add": {"X-Count": ["1"]}}}
        _, response = run(config, response=Informational(), next=hints_then_page)
        self.assertEqual(sent, [103])
        self.assertEqual(response.headers.get_all("X-Count"), ["1", "1"])


class RequestOpsTests(SynchronousTestCase):
    def test_request_ops(self) -> None:
        """Request operations set, add, delete and replace the request's fields."""
        request = make_request(headers={"X-Removed": "1", "X-Replace": "foobar"})
        request, _ = run({"request": {"set": {"X-Lower-Case": ["value"]}, "add": {"X-Added": ["one"]}, "delete": ["x-removed"],
                                      "replace": {"x-replace": [{"search_regexp": "^foo", "replace": "bar"}]}}}, request)
        headers = request.headers
        self.assertEqual(headers.get("X-Lower-Case"), "value")
        self.assertEqual(headers.get("X-Added"), "one")
        self.assertNotIn("X-Removed", headers)
        self.assertEqual(headers.get("X-Replace"), "barbar")

    def test_host_is_a_field(self) -> None:
        """Setting Host changes the request's host as well as its field."""
        request, _ = run({"request": {"set": {"Host": ["backend.internal:8080"]}}}, make_request(host="example.com"))
        self.assertEqual(request.host, "backend.internal:8080")
        self.assertEqual(request.headers.get("Host"), "backend.internal:8080")

    def test_host_replace_and_delete(self) -> None:
        """replace and wildcard delete act on Host like any field."""
        request, _ = run({"request": {"replace": {"Host": [{"search": ".com", "replace": ".org"}]}}}, make_request(host="a.com"))
        self.assertEqual(request.host, "a.org")
        request, _ = run({"request": {"delete": ["*o*"]}}, make_request(host="a.com"))
        self.assertEqual(request.host, "")
        self.assertNotIn("Host", request.headers)

    def test_placeholders_from_request(self) -> None:
        """Request values expand placeholders such as vars."""
        request = make_request()
        request.vars["token"] = "s3cret"
        request, _ = run({"request": {"set": {"Authorization": ["Bearer {http.vars.token}"]}}}, request)
        self.assertEqual(request.headers.get("Authorization"), "Bearer s3cret")


class ResponseMatcherTests(SynchronousTestCase):
    def test_status_classes(self) -> None:
        """A one-digit status matches its class, a three-digit one exactly; 0 matches none."""
        self.assertTrue(status_code_matches(404, 4))
        self.assertTrue(status_code_matches(404, 404))
        self.assertFalse(status_code_matches(500, 4))
        self.assertFalse(status_code_matches(0, 2))

    def test_headers(self) -> None:
        """Response header matchers take wildcards; null means absent, [] means present."""
        headers = Headers([("Content-Type", "text/html; charset=utf-8")])
        self.assertTrue(ResponseMatcher(headers={"content-type": ["text/*"]}).match(200, headers))
        self.assertTrue(ResponseMatcher(headers={"Content-Type": ["*html*"]}).match(200, headers))
        self.assertTrue(ResponseMatcher(headers={"Content-Type": ["*utf-8"]}).match(200, headers))
        self.assertFalse(ResponseMatcher(headers={"Content-Type": ["text/plain"]}).match(200, headers))
        self.assertTrue(ResponseMatcher(headers={"Content-Type": []}).match(200, headers))
        self.assertFalse(ResponseMatcher(headers={"Content-Type": None}).match(200, headers))
        self.assertTrue(ResponseMatcher(headers={"X-None": None}).match(200, headers))
        self.assertFalse(ResponseMatcher(headers={"X-None": []}).match(200, headers))
        self.assertFalse(ResponseMatcher([2], {"Content-Type": ["*"]}).match(301, headers))


class LoadTests(SynchronousTestCase):
    def test_every_adapter_fixture_loads(self) -> None:
        """Every headers handler in the adapter fixtures loads and serves."""
        configs = list(fixture_handlers("headers"))
        self.assertGreater(len(configs), 10)
        for where, config in configs:
            request, response = run({k: v for k, v in config.items() if k != "handler"}, next=writer(200, b"x"))
            self.assertEqual(response.status, 200, where)

    def test_bad_config(self) -> None:
        """Both search forms, a bad regexp, or values not in a list are refused."""
        with self.assertRaises(ConfigError):
            load({"handler": "headers", "response": {"replace": {"X": [{"search": "a", "search_regexp": "b"}]}}})
        with self.assertRaises(ConfigError):
            load({"handler": "headers", "response": {"replace": {"X": [{"search_regexp": "("}]}}})
        with self.assertRaises(ConfigError):
            load({"handler": "headers", "request": {"set": {"X": "v"}}})
