"""``header`` and ``request_header``: how operations are split into handlers."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.adapter import adapt_to_json
from txcaddy.caddyfile.directives import headers
from txcaddy.caddyfile.directives.headers import apply_header_op
from txcaddy.caddyfile.directives.reverseproxy import _headers as proxy_headers
from txcaddy.caddyfile.jsonenc import encode


def handlers(caddyfile: str) -> list[str]:
    """Every handler of the adapted config, as compact JSON in Caddy's key order."""
    text, _ = adapt_to_json(caddyfile, "Caddyfile")
    routes = json.loads(text)["apps"]["http"]["servers"]["srv0"].get("routes", [])
    return [json.dumps(h, separators=(",", ":")) for route in routes for h in route["handle"]]


class HeaderTests(SynchronousTestCase):
    def test_shared_operation_helper(self) -> None:
        """reverse_proxy and the header directives share one implementation."""
        self.assertIs(proxy_headers.apply_header_op, headers.apply_header_op)

    def test_defaults_go_to_a_second_handler(self) -> None:
        """"?" defaults go to a handler of their own, after the plain operations."""
        self.assertEqual(
            handlers(":8080 {\n\theader {\n\t\t?a 1\n\t\tb 2\n\t}\n}\n"),
            [
                '{"handler":"headers","response":{"set":{"B":["2"]}}}',
                '{"handler":"headers","response":{"require":{"headers":{"a":null}},'
                '"set":{"A":["1"]}}}',
            ],
        )

    def test_delete_defers(self) -> None:
        """Deleting a response header defers the operation, as Caddy does."""
        self.assertEqual(
            handlers(":8080 {\n\theader -Server\n}\n"),
            ['{"handler":"headers","response":{"deferred":true,"delete":["Server"]}}'],
        )

    def test_no_operation_no_route(self) -> None:
        """A header directive with no operation adds no route."""
        self.assertEqual(
            handlers(":8080 {\n\theader /x\n\theader\n\trespond 200\n}\n"),
            ['{"handler":"static_response","status_code":200}'],
        )

    def test_request_header_one_route_per_line(self) -> None:
        """request_header with a regexp becomes one replace operation in its own handler."""
        self.assertEqual(
            handlers(":8080 {\n\trequest_header x-a ^b c\n}\n"),
            ['{"handler":"headers","request":{"replace":{"x-a":[{"replace":"c",'
             '"search_regexp":"^b"}]}}}'],
        )


class HeaderOpTests(SynchronousTestCase):
    """apply_header_op (Caddy's CaddyfileHeaderOp), also used by header_up/header_down."""

    def test_request_ops(self) -> None:
        """Request operations (set, delete, add, replace) land in HeaderOps in Caddy's order."""
        ops: dict[str, Any] = {}
        apply_header_op(ops, "x-set", "a", "")
        apply_header_op(ops, "-X-Gone", "", "")
        apply_header_op(ops, "+x-add", "1", "")
        apply_header_op(ops, "+X-Add", "2", "")
        apply_header_op(ops, "X-Re", "^a", "b")
        self.assertEqual(list(ops), ["add", "set", "delete", "replace"])
        self.assertEqual(
            encode(ops),
            '{"add":{"X-Add":["1","2"]},"set":{"X-Set":["a"]},"delete":["X-Gone"],'
            '"replace":{"X-Re":[{"search_regexp":"^a","replace":"b"}]}}',
        )

    def test_default_refused_for_requests(self) -> None:
        """The ``?`` default modifier is refused on request headers with Caddy's message."""
        with self.assertRaises(ValueError) as caught:
            apply_header_op({}, "?X-Foo", "bar", "")
        self.assertEqual(
            str(caught.exception),
            "?X-Foo: the default header modifier ('?') can only be used on response headers; "
            "for conditional manipulation of request headers, use matchers",
        )

    def test_response_ops(self) -> None:
        """On responses ``?`` sets with a ``require`` guard and ``-`` defers the operations."""
        ops: dict[str, Any] = {}
        apply_header_op(ops, "?x-default", "v", "", response=True)
        apply_header_op(ops, "-Server", "", "", response=True)
        self.assertEqual(
            encode(ops),
            '{"set":{"X-Default":["v"]},"delete":["Server"],'
            '"require":{"headers":{"x-default":null}},"deferred":true}',
        )
