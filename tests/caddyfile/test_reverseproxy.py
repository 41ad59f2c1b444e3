"""The reverse_proxy family's Caddyfile parsing: what fixtures cannot show.

Fixtures (``fixtures/reverseproxy``) compare whole configs with Caddy 2.6.2.
These tests cover warnings, txcaddy's deliberate extensions (DESIGN.md §1)
and the newer Caddy options that 2.6.2 rejects, so no fixture can record them.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._go.errors import GoError
from txcaddy.caddyfile import directives as _directives  # noqa: F401  (registers them)
from txcaddy.caddyfile._humanize import parse_bytes
from txcaddy.caddyfile.directives.reverseproxy import parse_upstream_dial_address
from txcaddy.caddyfile.dispenser import Dispenser
from txcaddy.caddyfile.helper import GroupCounter, Helper, Route
from txcaddy.caddyfile.jsonenc import GoMap, encode, module_object, weak_string
from txcaddy.caddyfile.registry import DIRECTIVES
from txcaddy.errors import ConfigError, ConfigWarning


def _helper(text: str, warnings: list[ConfigWarning]) -> Helper:
    return Helper(
        Dispenser.from_text(text, "Caddyfile"),
        options={},
        warnings=warnings,
        matcher_defs={},
        parent_block=None,
        group_counter=GroupCounter(),
        state={},
    )


def proxy(text: str) -> tuple[dict[str, Any], list[str]]:
    """Run one directive's parser; return its only handler (as JSON data) and warnings."""
    warnings: list[ConfigWarning] = []
    name = text.split()[0]
    values = DIRECTIVES[name](_helper(text, warnings))
    route = values[0].value
    assert isinstance(route, Route)
    handler = json.loads(encode(route.handle[0]))
    return handler, [w.message for w in warnings]


def proxy_error(text: str) -> str:
    """Run one directive's parser that must fail; return the error's text."""
    warnings: list[ConfigWarning] = []
    name = text.split()[0]
    try:
        DIRECTIVES[name](_helper(text, warnings))
    except ConfigError as e:
        return str(e)
    raise AssertionError(f"no error for {text!r}")


class TransportAliasTests(SynchronousTestCase):
    """txcaddy accepts the tutorial's transport spellings, with a warning."""

    def test_aliases_give_caddy_json(self) -> None:
        """The tutorial's transport spellings give Caddy's JSON, warning with Caddy's spelling."""
        tutorial, warnings = proxy(
            "reverse_proxy localhost:3000 {\n"
            "\ttransport http {\n"
            "\t\tread_buffer_size 8192\n"
            "\t\twrite_buffer_size 4KiB\n"
            "\t\tmax_idle_conns 100\n"
            "\t\tidle_conn_timeout 60s\n"
            "\t}\n"
            "}\n"
        )
        caddy, caddy_warnings = proxy(
            "reverse_proxy localhost:3000 {\n"
            "\ttransport http {\n"
            "\t\tread_buffer 8192\n"
            "\t\twrite_buffer 4KiB\n"
            "\t\tkeepalive_idle_conns 100\n"
            "\t\tkeepalive 60s\n"
            "\t}\n"
            "}\n"
        )
        self.assertEqual(tutorial, caddy)
        self.assertEqual(
            tutorial["transport"],
            {
                "keep_alive": {"idle_timeout": 60_000_000_000, "max_idle_conns": 100},
                "protocol": "http",
                "read_buffer_size": 8192,
                "write_buffer_size": 4096,
            },
        )
        self.assertEqual(caddy_warnings, [])
        self.assertEqual(
            warnings,
            [
                f"transport http: '{alias}' is not a Caddy subdirective; txcaddy accepts it "
                f"as an alias, Caddy spells it '{caddy_name}'"
                for alias, caddy_name in (
                    ("read_buffer_size", "read_buffer"),
                    ("write_buffer_size", "write_buffer"),
                    ("max_idle_conns", "keepalive_idle_conns"),
                    ("idle_conn_timeout", "keepalive"),
                )
            ],
        )

    def test_alias_errors_name_the_alias_value(self) -> None:
        """A bad value under an alias gets Caddy's message for the Caddy spelling, at its line."""
        self.assertEqual(
            proxy_error("reverse_proxy x {\n\ttransport http {\n\t\tread_buffer_size lots\n\t}\n}"),
            "Caddyfile:3 - Error during parsing: invalid read buffer size 'lots': "
            'strconv.ParseFloat: parsing "": invalid syntax',
        )

    def test_idle_conn_timeout_off(self) -> None:
        """``idle_conn_timeout off`` disables keep-alive as ``keepalive off`` does."""
        handler, _ = proxy(
            "reverse_proxy x {\n\ttransport http {\n\t\tidle_conn_timeout off\n\t}\n}"
        )
        self.assertEqual(
            handler["transport"], {"keep_alive": {"enabled": False}, "protocol": "http"}
        )


class SurplusLingerTests(SynchronousTestCase):
    """``keepalive_surplus_linger``: txcaddy's ``transport http`` extension (Caddy rejects it)."""

    def test_merges_into_keep_alive(self) -> None:
        """The linger joins the other keep-alive options in one ``keep_alive`` object, in ns."""
        handler, warnings = proxy(
            "reverse_proxy x {\n\ttransport http {\n\t\tkeepalive_surplus_linger 1.5s\n"
            "\t\tkeepalive_idle_conns_per_host 4\n\t\tidle_conn_timeout 30s\n\t}\n}"
        )
        self.assertEqual(
            handler["transport"]["keep_alive"],
            {
                "idle_timeout": 30_000_000_000,
                "max_idle_conns_per_host": 4,
                "surplus_linger": 1_500_000_000,
            },
        )
        self.assertEqual(len(warnings), 1)  # the idle_conn_timeout alias only

    def test_zero_is_written(self) -> None:
        """``0`` (close the surplus at once, as Caddy) is written, unlike omitted zero values."""
        handler, warnings = proxy(
            "reverse_proxy x {\n\ttransport http {\n\t\tkeepalive_surplus_linger 0s\n\t}\n}"
        )
        self.assertEqual(
            handler["transport"], {"keep_alive": {"surplus_linger": 0}, "protocol": "http"}
        )
        self.assertEqual(warnings, [])

    def test_bad_value(self) -> None:
        """A value that is no duration is an error naming the line and the value."""
        self.assertEqual(
            proxy_error(
                "reverse_proxy x {\n\ttransport http {\n\t\tkeepalive_surplus_linger 5x\n\t}\n}"
            ),
            "Caddyfile:3 - Error during parsing: bad duration value '5x': "
            'time: unknown unit "x" in duration "5x"',
        )

    def test_negative_value(self) -> None:
        """A negative linger is refused, naming the line and the value."""
        self.assertEqual(
            proxy_error(
                "reverse_proxy x {\n\ttransport http {\n\t\tkeepalive_surplus_linger -1ms\n\t}\n}"
            ),
            "Caddyfile:3 - Error during parsing: keepalive_surplus_linger must not be negative: "
            "'-1ms'",
        )


class SRVFormUpstreamTests(SynchronousTestCase):
    """A port-less ``_service._proto.name`` upstream means SRV lookups in txcaddy."""

    def test_to_srv_name(self) -> None:
        """``to _service._proto.name`` becomes ``dynamic srv``, warning with Caddy's spelling."""
        handler, warnings = proxy(
            "reverse_proxy {\n\tto _api._tcp.example.com\n\tlb_policy round_robin\n}\n"
        )
        self.assertEqual(
            handler,
            {
                "dynamic_upstreams": {"name": "_api._tcp.example.com", "source": "srv"},
                "handler": "reverse_proxy",
                "load_balancing": {"selection_policy": {"policy": "round_robin"}},
            },
        )
        self.assertEqual(
            warnings,
            [
                "upstream '_api._tcp.example.com' has the form of a DNS SRV name, so txcaddy "
                "looks up its SRV records; Caddy spells this 'dynamic srv _api._tcp.example.com' "
                "(Caddy itself would dial '_api._tcp.example.com:80')"
            ],
        )

    def test_same_json_as_dynamic_srv(self) -> None:
        """An SRV-form upstream adapts to the same JSON as ``dynamic srv`` written out."""
        written, _ = proxy("reverse_proxy _api._tcp.example.com\n")
        spelled, _ = proxy("reverse_proxy {\n\tdynamic srv _api._tcp.example.com\n}\n")
        self.assertEqual(written, spelled)

    def test_scheme_is_kept_for_the_transport(self) -> None:
        """An ``https://`` SRV-form upstream still turns the transport's TLS on."""
        handler, _ = proxy("reverse_proxy https://_api._tcp.example.com\n")
        self.assertEqual(
            handler["dynamic_upstreams"], {"name": "_api._tcp.example.com", "source": "srv"}
        )
        self.assertEqual(handler["transport"], {"protocol": "http", "tls": {}})

    def test_several_names_become_multi(self) -> None:
        """Several SRV-form upstreams become one ``dynamic multi`` source, one warning each."""
        handler, warnings = proxy("reverse_proxy _a._tcp.example.com _b._udp.example.com\n")
        self.assertEqual(
            handler["dynamic_upstreams"],
            {
                "source": "multi",
                "sources": [
                    {"name": "_a._tcp.example.com", "source": "srv"},
                    {"name": "_b._udp.example.com", "source": "srv"},
                ],
            },
        )
        self.assertEqual(len(warnings), 2)

    def test_with_port_stays_static(self) -> None:
        """An SRV-looking upstream with a port stays a static dial address, without warning."""
        handler, warnings = proxy("reverse_proxy _api._tcp.example.com:8080\n")
        self.assertEqual(handler["upstreams"], [{"dial": "_api._tcp.example.com:8080"}])
        self.assertEqual(warnings, [])

    def test_not_srv_form(self) -> None:
        """Names that only look similar (no underscore, ``srv+``…) stay static, without warning."""
        for address in (
            "_api.example.com",
            "api._tcp.example.com",
            "_a._b",
            "srv+_api._tcp.example.com",
        ):
            handler, warnings = proxy(f"reverse_proxy {address}\n")
            self.assertNotIn("dynamic_upstreams", handler, address)
            self.assertEqual(warnings, [], address)

    def test_cannot_mix_with_static(self) -> None:
        """SRV-form and static upstreams together are an error at the SRV name's line."""
        self.assertEqual(
            proxy_error("reverse_proxy localhost:1 {\n\tto _api._tcp.example.com\n}\n"),
            "Caddyfile:2 - Error during parsing: upstream '_api._tcp.example.com' is looked up as "
            "'dynamic srv _api._tcp.example.com' and cannot be mixed with static upstreams",
        )

    def test_cannot_mix_with_dynamic(self) -> None:
        """An SRV-form upstream next to ``dynamic`` is an error at the SRV name's line."""
        self.assertEqual(
            proxy_error("reverse_proxy _api._tcp.example.com {\n\tdynamic a example.com\n}\n"),
            "Caddyfile:1 - Error during parsing: upstream '_api._tcp.example.com' is looked up as "
            "'dynamic srv _api._tcp.example.com', but dynamic upstreams are already specified",
        )


class WarningTests(SynchronousTestCase):
    """Warnings Caddy prints while parsing, with their position."""

    def test_health_path(self) -> None:
        """``health_path`` sets the active check's path and warns that it is deprecated."""
        handler, warnings = proxy("reverse_proxy a:1 {\n\thealth_path /healthz\n}\n")
        self.assertEqual(handler["health_checks"], {"active": {"path": "/healthz"}})
        self.assertEqual(
            warnings,
            ["the 'health_path' subdirective is deprecated, please use 'health_uri' instead!"],
        )

    def test_unnecessary_header_up(self) -> None:
        """``header_up`` repeating what the proxy sends anyway warns, naming the canonical field."""
        cases = {
            "Host {hostport}": "Host",
            "host {http.request.hostport}": "Host",
            "X-Forwarded-For {remote}": "X-Forwarded-For",
            "x-forwarded-for {http.request.remote.host}": "X-Forwarded-For",
            "X-Forwarded-For {remote_host}": "X-Forwarded-For",
            "X-Forwarded-Proto {scheme}": "X-Forwarded-Proto",
            "X-Forwarded-Host {host}": "X-Forwarded-Host",
            "X-Forwarded-Host {http.request.hostport}": "X-Forwarded-Host",
        }
        for op, field in cases.items():
            _, warnings = proxy(f"reverse_proxy a:1 {{\n\theader_up {op}\n}}\n")
            self.assertEqual(
                warnings,
                [
                    f"Unnecessary header_up {field}: the reverse proxy's default behavior is to "
                    "pass headers to the upstream"
                ],
                op,
            )

    def test_necessary_header_up(self) -> None:
        """``header_up`` that changes something (other value, delete, replace) does not warn."""
        for op in (
            "Host {upstream_hostport}",
            "X-Real-IP {remote_host}",
            "-X-Forwarded-For",
            "Host {host} x",
        ):
            _, warnings = proxy(f"reverse_proxy a:1 {{\n\theader_up {op}\n}}\n")
            self.assertEqual(warnings, [], op)

    def test_warning_points_at_the_line(self) -> None:
        """A subdirective's warning carries the file and line of that subdirective."""
        warnings: list[ConfigWarning] = []
        DIRECTIVES["reverse_proxy"](
            _helper(
                "reverse_proxy a:1 {\n\tlb_policy first\n\theader_up Host {hostport}\n}\n", warnings
            )
        )
        self.assertEqual((warnings[0].file, warnings[0].line), ("Caddyfile", 3))


class PlaceholderTests(SynchronousTestCase):
    """Placeholders pass through the adapter untouched."""

    def test_request_header_shorthand_kept_as_written(self) -> None:
        """``{>Header}`` placeholders are kept as written in header operations."""
        handler, _ = proxy(
            "reverse_proxy a:1 {\n\theader_up Connection {>Connection}\n"
            "\theader_up Upgrade {>Upgrade}\n\theader_down X-Up {>X-Up}\n}\n"
        )
        self.assertEqual(
            handler["headers"],
            {
                "request": {"set": {"Connection": ["{>Connection}"], "Upgrade": ["{>Upgrade}"]}},
                "response": {"set": {"X-Up": ["{>X-Up}"]}},
            },
        )


class DefaultPolicyTests(SynchronousTestCase):
    """txcaddy's round-robin default (DESIGN.md §1) is a runtime choice, not adapter output."""

    def test_no_selection_policy_unless_given(self) -> None:
        """Upstreams without ``lb_policy`` give no ``load_balancing`` (runtime default)."""
        handler, _ = proxy("reverse_proxy a:1 b:2 c:3\n")
        self.assertEqual(
            handler,
            {
                "handler": "reverse_proxy",
                "upstreams": [{"dial": "a:1"}, {"dial": "b:2"}, {"dial": "c:3"}],
            },
        )


class NewerCaddyOptionTests(SynchronousTestCase):
    """Options from Caddy 2.7/2.8, in the JSON shape those versions use."""

    def policy(self, text: str) -> dict[str, Any]:
        handler, _ = proxy(f"reverse_proxy a:1 b:2 {{\n\tlb_policy {text}\n}}\n")
        return handler["load_balancing"]["selection_policy"]

    def test_client_ip_hash(self) -> None:
        """``lb_policy client_ip_hash`` (Caddy 2.7) gives its policy module."""
        self.assertEqual(self.policy("client_ip_hash"), {"policy": "client_ip_hash"})

    def test_client_ip_hash_takes_no_argument(self) -> None:
        """``client_ip_hash`` with an argument is an argument-count error."""
        self.assertEqual(
            proxy_error("reverse_proxy a:1 {\n\tlb_policy client_ip_hash x\n}\n"),
            "Caddyfile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'",
        )

    def test_query(self) -> None:
        """``lb_policy query <key>`` (Caddy 2.7) gives the key."""
        self.assertEqual(self.policy("query user"), {"key": "user", "policy": "query"})

    def test_query_fallback(self) -> None:
        """``query``'s ``fallback`` block nests the fallback policy module."""
        self.assertEqual(
            self.policy("query user {\n\t\tfallback random_choose 3\n\t}"),
            {
                "fallback": {"choose": 3, "policy": "random_choose"},
                "key": "user",
                "policy": "query",
            },
        )

    def test_query_errors(self) -> None:
        """``query`` without a key, a second ``fallback`` or an unknown option fails at its line."""
        self.assertEqual(
            proxy_error("reverse_proxy a:1 {\n\tlb_policy query\n}\n"),
            "Caddyfile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'query'",
        )
        self.assertEqual(
            proxy_error(
                "reverse_proxy a:1 {\n\tlb_policy query k {\n\t\tfallback first\n\t\tfallback random\n\t}\n}\n"
            ),
            "Caddyfile:4 - Error during parsing: fallback selection policy already specified",
        )
        self.assertEqual(
            proxy_error("reverse_proxy a:1 {\n\tlb_policy query k {\n\t\tbackup first\n\t}\n}\n"),
            "Caddyfile:3 - Error during parsing: unrecognized option 'backup'",
        )

    def test_dynamic_a_versions(self) -> None:
        """``dynamic a``'s ``versions`` (Caddy 2.7) keeps the chosen IP versions, refuses others."""
        handler, _ = proxy("reverse_proxy {\n\tdynamic a app.example 8080 {\n\t\tversions ipv6\n\t}\n}\n")
        self.assertEqual(
            handler["dynamic_upstreams"],
            {"name": "app.example", "port": "8080", "source": "a", "versions": {"ipv6": True}},
        )
        handler, _ = proxy("reverse_proxy {\n\tdynamic a x {\n\t\tversions ipv4 ipv6\n\t}\n}\n")
        self.assertEqual(handler["dynamic_upstreams"]["versions"], {"ipv4": True, "ipv6": True})
        self.assertEqual(
            proxy_error("reverse_proxy {\n\tdynamic a x {\n\t\tversions ipv5\n\t}\n}\n"),
            "Caddyfile:3 - Error during parsing: unsupported version: 'ipv5'",
        )

    def test_dynamic_srv_grace_period(self) -> None:
        """``grace_period`` (Caddy 2.8) is read for ``dynamic srv``, refused for ``dynamic a``."""
        handler, _ = proxy("reverse_proxy {\n\tdynamic srv _a._tcp.x {\n\t\tgrace_period 30s\n\t}\n}\n")
        self.assertEqual(handler["dynamic_upstreams"],
                         {"grace_period": 30_000_000_000, "name": "_a._tcp.x", "source": "srv"})
        self.assertIn("unrecognized srv option 'grace_period'",
                      proxy_error("reverse_proxy {\n\tdynamic a x {\n\t\tgrace_period 30s\n\t}\n}\n"))

    def test_weighted_round_robin(self) -> None:
        """``weighted_round_robin`` keeps one weight per upstream, 0 included (Caddy 2.9)."""
        self.assertEqual(
            self.policy("weighted_round_robin 3 1 0"),
            {"policy": "weighted_round_robin", "weights": [3, 1, 0]},
        )

    def test_weighted_round_robin_errors(self) -> None:
        """Missing, negative and non-integer weights are errors with Caddy's messages."""
        self.assertEqual(
            proxy_error("reverse_proxy a:1 {\n\tlb_policy weighted_round_robin\n}\n"),
            "Caddyfile:2 - Error during parsing: Wrong argument count or unexpected line ending "
            "after 'weighted_round_robin'",
        )
        self.assertEqual(
            proxy_error("reverse_proxy a:1 {\n\tlb_policy weighted_round_robin 1 -2\n}\n"),
            "Caddyfile:2 - Error during parsing: invalid weight value '-2': weight should be non-negative",
        )
        self.assertEqual(
            proxy_error("reverse_proxy a:1 {\n\tlb_policy weighted_round_robin heavy\n}\n"),
            "Caddyfile:2 - Error during parsing: invalid weight value 'heavy': "
            'strconv.Atoi: parsing "heavy": invalid syntax',
        )

    def test_health_passes_and_fails(self) -> None:
        """``health_passes``/``health_fails`` (Caddy 2.8) are integers, with Caddy's errors."""
        handler, _ = proxy(
            "reverse_proxy a:1 {\n\thealth_uri /h\n\thealth_passes 2\n\thealth_fails 3\n}\n"
        )
        self.assertEqual(
            handler["health_checks"], {"active": {"fails": 3, "passes": 2, "uri": "/h"}}
        )
        self.assertEqual(
            proxy_error("reverse_proxy a:1 {\n\thealth_passes x\n}\n"),
            "Caddyfile:2 - Error during parsing: invalid passes count 'x': "
            'strconv.Atoi: parsing "x": invalid syntax',
        )
        self.assertEqual(
            proxy_error("reverse_proxy a:1 {\n\thealth_fails\n}\n"),
            "Caddyfile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'health_fails'",
        )

    def test_stream_timeout_and_close_delay(self) -> None:
        """``stream_timeout``/``stream_close_delay`` take durations or nanoseconds."""
        handler, _ = proxy(
            "reverse_proxy a:1 {\n\tstream_timeout 24h\n\tstream_close_delay 5000\n}\n"
        )
        self.assertEqual(handler["stream_timeout"], 24 * 3600 * 10**9)
        self.assertEqual(handler["stream_close_delay"], 5000)
        self.assertEqual(
            proxy_error("reverse_proxy a:1 {\n\tstream_timeout forever\n}\n"),
            "Caddyfile:2 - Error during parsing: bad duration value 'forever': "
            'time: invalid duration "forever"',
        )


class GoBehaviourTests(SynchronousTestCase):
    """The Go library behaviour the adapter ports (net/url, net, go-humanize, encoding/json)."""

    def test_dial_addresses(self) -> None:
        """Upstream addresses become Caddy 2.6.2's dial address and scheme."""
        cases = {
            "localhost": ("localhost:80", ""),
            "[::1]": ("[[::1]]:80", ""),
            "unix//run/a.sock": ("unix//run/a.sock", ""),
            "unix+h2c//run/a.sock": ("unix//run/a.sock", "h2c"),
            "TCP4/host": ("tcp4/host:80", ""),
            "https://host": ("host:443", "https"),
            "h2c://host": ("host:80", "h2c"),
            "HTTP://Host:81": ("Host:81", "http"),
            "ws://host": ("host:", "ws"),
            "{vars.up}": ("{vars.up}", ""),
            "{vars.host}:81": ("{vars.host}:81", ""),
        }
        for written, expected in cases.items():
            self.assertEqual(parse_upstream_dial_address(written), expected, written)

    def test_dial_address_errors(self) -> None:
        """A bad port in an upstream URL is net/url's error, wrapped as Caddy wraps it."""
        with self.assertRaises(GoError) as caught:
            parse_upstream_dial_address("https://h:abc")
        self.assertEqual(
            str(caught.exception),
            'parsing upstream URL: parse "https://h:abc": invalid port ":abc" after host',
        )

    def test_parse_bytes(self) -> None:
        """Byte sizes follow go-humanize, errors included."""
        self.assertEqual(parse_bytes("10MB"), 10_000_000)
        self.assertEqual(parse_bytes("1.5 KiB"), 1536)
        self.assertEqual(parse_bytes("1,024"), 1024)
        with self.assertRaises(ValueError) as caught:
            parse_bytes("12parsecs")
        self.assertEqual(str(caught.exception), "unhandled size name: parsecs")

    def test_weak_string(self) -> None:
        """WeakString marshals integers and booleans unquoted."""
        self.assertEqual(
            [weak_string(s) for s in ("404", "+5", "true", "false", "{x}", "")],
            [404, 5, True, False, "{x}", ""],
        )

    def test_module_object_goes_through_float64(self) -> None:
        """module_object sorts keys and rounds numbers through float64 (JSONModuleObject)."""
        handler = module_object(
            {"b": {"z": 1, "a": 2}, "interval": 4444441200000000001}, "handler", "x"
        )
        self.assertIsInstance(handler, GoMap)
        self.assertEqual(
            encode(handler), '{"b":{"a":2,"z":1},"handler":"x","interval":4444441200000000000}'
        )
