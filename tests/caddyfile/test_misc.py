"""encode, request_body, map, push, templates, basicauth, metrics, acme_server, tracing.

Most behaviour is compared with Caddy in ``fixtures/misc``; ``tracing`` is
tested here because the Debian build of Caddy 2.6.2 lacks the module, so
its fixtures cannot be recorded (the expected JSON follows Caddy's source
and the upstream corpus file ``tracing.txt``).
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.caddyfile.adapter import adapt, adapt_to_json
from txcaddy.caddyfile.directives.options import CertificateAuthority
from txcaddy.errors import ConfigError


def handlers(caddyfile: str) -> list[dict]:
    text, _ = adapt_to_json(caddyfile, "Caddyfile")
    routes = json.loads(text)["apps"]["http"]["servers"]["srv0"]["routes"]
    return [h for route in routes for h in route["handle"]]


class TracingTests(SynchronousTestCase):
    def test_span(self) -> None:
        """tracing with a matcher and span adapts to Caddy's tracing handler JSON."""
        text, _ = adapt_to_json(":80 {\n\ttracing /x {\n\t\tspan my-span\n\t}\n}\n", "Caddyfile")
        self.assertEqual(
            text,
            '{"apps":{"http":{"servers":{"srv0":{"listen":[":80"],"routes":[{"match":'
            '[{"path":["/x"]}],"handle":[{"handler":"tracing","span":"my-span"}]}]}}}}}',
        )

    def test_span_is_always_present(self) -> None:
        """tracing alone still encodes an empty span."""
        self.assertEqual(handlers(":80 {\n\ttracing\n}\n"), [{"handler": "tracing", "span": ""}])

    def test_ordered_first(self) -> None:
        """tracing runs before the other handlers of a route, whatever the order written."""
        found = handlers(":80 {\n\trespond 200\n\ttracing\n}\n")
        self.assertEqual([h["handler"] for h in found], ["tracing", "static_response"])

    def test_errors(self) -> None:
        """tracing's argument count errors name the line and token, as Caddy's."""
        cases = {
            "tracing x": "Caddyfile:2 - Error during parsing: Wrong argument count or "
            "unexpected line ending after 'x'",
            "tracing {\n\t\tspan\n\t}": "Caddyfile:3 - Error during parsing: Wrong argument "
            "count or unexpected line ending after 'span'",
            "tracing {\n\t\tspan a b\n\t}": "Caddyfile:3 - Error during parsing: Wrong argument "
            "count or unexpected line ending after 'b'",
            "tracing {\n\t\tname a\n\t}": "Caddyfile:3 - Error during parsing: Wrong argument "
            "count or unexpected line ending after 'name'",
        }
        for body, message in cases.items():
            with self.assertRaises(ConfigError) as caught:
                adapt(":80 {\n\t" + body + "\n}\n", "Caddyfile")
            self.assertEqual(
                str(caught.exception), f"parsing caddyfile tokens for 'tracing': {message}"
            )


class ACMEServerTests(SynchronousTestCase):
    def test_ca_goes_to_pki_app(self) -> None:
        """acme_server's ca makes an empty authority in the pki app and names it in the handler."""
        text, _ = adapt_to_json(":80 {\n\tacme_server {\n\t\tca mine\n\t}\n}\n", "Caddyfile")
        data = json.loads(text)
        self.assertEqual(data["apps"]["pki"], {"certificate_authorities": {"mine": {}}})
        self.assertEqual(
            data["apps"]["http"]["servers"]["srv0"]["routes"][0]["handle"],
            [{"ca": "mine", "handler": "acme_server"}],
        )

    def test_pki_value_is_a_certificate_authority(self) -> None:
        """acme_server yields a route and a pki.ca value holding the authority."""
        from txcaddy.caddyfile import registry
        from txcaddy.caddyfile.dispenser import Dispenser
        from txcaddy.caddyfile.helper import GroupCounter, Helper

        helper = Helper(
            Dispenser.from_text("acme_server {\n\tca mine\n}"),
            options={}, warnings=[], matcher_defs={}, parent_block=None,
            group_counter=GroupCounter(), state={},
        )
        values = registry.DIRECTIVES["acme_server"](helper)
        self.assertEqual([v.klass for v in values], ["route", "pki.ca"])
        self.assertEqual(values[1].value, CertificateAuthority(id="mine"))


class MapTests(SynchronousTestCase):
    def test_scalar_outputs(self) -> None:
        """map outputs become numbers and booleans when unquoted, and "-" becomes null."""
        [handler] = handlers(
            ":80 {\n\tmap {host} {a} {b} {c} {\n\t\tx 1 2.5 false\n\t\ty \"1\" - `-`\n\t}\n}\n"
        )
        self.assertEqual(
            handler["mappings"],
            [{"input": "x", "outputs": [1, 2.5, False]}, {"input": "y", "outputs": ["1", None, None]}],
        )


class EncodeTests(SynchronousTestCase):
    def test_block_and_arguments_keep_order(self) -> None:
        """encode lists its argument and block encodings in written order, with options."""
        [handler] = handlers(":80 {\n\tencode zstd {\n\t\tgzip 4\n\t}\n}\n")
        self.assertEqual(handler["prefer"], ["zstd", "gzip"])
        self.assertEqual(handler["encodings"], {"gzip": {"level": 4}, "zstd": {}})
