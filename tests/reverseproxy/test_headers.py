"""Tests for reverse_proxy's header rules (txcaddy.reverseproxy.headers).

Expected values are what Caddy 2.6.2 (Go 1.19) sends and answers, checked live against a
raw-socket backend on 127.0.0.1.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txcaddy.errors import ConfigError
from txcaddy.http.handlers.headers import HeaderOps
from txcaddy.http.headers import Headers
from txcaddy.reverseproxy.headers import (
    ACCEPT_GZIP,
    BadTrailerKey,
    ForwardedHeadersError,
    InvalidHeaderField,
    TrustedProxies,
    announced_trailers,
    apply_request_ops,
    clean_response_headers,
    from_raw,
    gunzip_response_headers,
    prepare_upstream_headers,
    reapply_upgrade,
    relay_trailers,
    to_raw,
    upgrade_accepted,
    upgrade_type,
    wants_gzip,
)
from txcaddy.testing import FakeTLS, make_request

# What the Caddyfile's `trusted_proxies private_ranges` adapts to.
PRIVATE_RANGES = ["192.168.0.0/16", "172.16.0.0/12", "10.0.0.0/8", "127.0.0.1/8", "fd00::/8", "::1"]

FORWARDED = [
    ("X-Forwarded-For", "127.0.0.1"),
    ("X-Forwarded-Proto", "http"),
    ("X-Forwarded-Host", "example.com"),
]


def prepare(fields, *, trusted=None, remote=("127.0.0.1", 54321), host="example.com", tls=None):
    request = make_request("GET", "/", fields, host=host, remote=remote, tls=tls)
    headers, upgrade = prepare_upstream_headers(request, trusted or TrustedProxies())
    return request, headers, upgrade


def items(headers: Headers) -> list[tuple[str, str]]:
    return list(headers.items())


def ops(**config) -> HeaderOps:
    return HeaderOps(config, "reverse_proxy.headers.request")


class HopByHopTests(SynchronousTestCase):
    def test_hop_by_hop_fields_removed(self) -> None:
        """Hop-by-hop fields and Content-Length are not forwarded; the rest keep their order."""
        _, headers, upgrade = prepare([
            ("Accept", "*/*"),
            ("Connection", "close"),
            ("Proxy-Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("Alt-Svc", 'h3=":443"'),
            ("Proxy-Authenticate", "Basic"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Te", "deflate"),
            ("Trailer", "X-Sum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Content-Length", "5"),
            ("X-Custom", "kept"),
        ])
        self.assertIsNone(upgrade)
        self.assertEqual(items(headers), [
            ("Accept", "*/*"),
            ("X-Custom", "kept"),
            ("Host", "example.com"),
            *FORWARDED,
        ])

    def test_connection_listed_fields_removed_any_case(self) -> None:
        """Fields named in any Connection value are removed, names in any case."""
        _, headers, _ = prepare([
            ("Connection", "keep-alive, x-FOO ,close"),
            ("Connection", "X-Baz"),
            ("X-Foo", "1"),
            ("x-baz", "2"),
            ("X-Qux", "3"),
            ("Accept-Encoding", "br"),
        ])
        self.assertEqual(items(headers), [
            ("X-Qux", "3"),
            ("Accept-Encoding", "br"),
            ("Host", "example.com"),
            *FORWARDED,
        ])

    def test_connection_cannot_remove_host(self) -> None:
        """Connection cannot remove the Host field."""
        _, headers, _ = prepare([("Connection", "Host")])
        self.assertEqual(headers.get("Host"), "example.com")

    def test_te_trailers_kept_exactly(self) -> None:
        """A TE naming trailers, in any case, is forwarded as exactly "trailers"."""
        _, headers, _ = prepare([("TE", "gzip, TRAILERS"), ("Te", "deflate")])
        self.assertEqual(headers.get_all("Te"), ["trailers"])

    def test_te_trailers_in_second_value(self) -> None:
        """"trailers" in a second TE value still counts, whitespace trimmed."""
        _, headers, _ = prepare([("TE", "gzip"), ("TE", " trailers\t")])
        self.assertEqual(headers.get_all("Te"), ["trailers"])

    def test_te_with_parameters_is_not_trailers(self) -> None:
        """"trailers" with parameters is not trailers: TE is dropped."""
        _, headers, _ = prepare([("TE", "trailers;q=1")])
        self.assertNotIn("Te", headers)

    def test_te_without_trailers_removed(self) -> None:
        """A TE that does not name trailers is dropped."""
        _, headers, _ = prepare([("TE", "gzip, deflate")])
        self.assertNotIn("Te", headers)

    def test_te_named_by_connection_is_removed_first(self) -> None:
        # Go removes the Connection-listed fields before looking at TE.
        """A TE named by Connection is removed before trailers are looked for, as Go."""
        _, headers, _ = prepare([("Connection", "TE, close"), ("TE", "trailers")])
        self.assertNotIn("Te", headers)

    def test_no_user_agent_added(self) -> None:
        """No User-Agent is added, and Host is written first."""
        _, headers, _ = prepare([("Accept", "*/*")])
        self.assertNotIn("User-Agent", headers)
        self.assertEqual(to_raw(headers)[:2], [(b"Host", b"example.com"), (b"Accept", b"*/*")])

    def test_client_request_untouched(self) -> None:
        """Preparing the upstream fields leaves the client request's fields as they were."""
        request, _, _ = prepare([("Connection", "X-Foo"), ("X-Foo", "1")])
        self.assertEqual(items(request.headers),
                         [("Connection", "X-Foo"), ("X-Foo", "1"), ("Host", "example.com")])

    def test_no_host(self) -> None:
        """Without a Host, X-Forwarded-Host is empty and the dial address is written as Host."""
        _, headers, _ = prepare([], host=None)
        self.assertNotIn("Host", headers)
        self.assertEqual(headers.get("X-Forwarded-Host"), "")
        self.assertEqual(to_raw(headers, default_host="127.0.0.1:9000")[0],
                         (b"Host", b"127.0.0.1:9000"))


class UpgradeTests(SynchronousTestCase):
    def test_websocket_upgrade(self) -> None:
        """An upgrade keeps Connection: Upgrade and the first Upgrade value, lowercased, as Go."""
        _, headers, upgrade = prepare([
            ("Connection", "keep-alive, UPGRADE"),
            ("Upgrade", "WebSocket"),
            ("Upgrade", "h2c"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ])
        self.assertEqual(upgrade, "websocket")
        self.assertEqual(items(headers), [
            ("Sec-Websocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-Websocket-Version", "13"),
            ("Host", "example.com"),
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            *FORWARDED,
        ])

    def test_upgrade_without_connection_token_is_not_an_upgrade(self) -> None:
        """Upgrade without the Connection token is no upgrade: both fields are dropped."""
        _, headers, upgrade = prepare([("Connection", "keep-alive"), ("Upgrade", "websocket")])
        self.assertIsNone(upgrade)
        self.assertNotIn("Upgrade", headers)
        self.assertNotIn("Connection", headers)

    def test_connection_upgrade_without_upgrade_field(self) -> None:
        """Connection: Upgrade without an Upgrade field is no upgrade."""
        _, headers, upgrade = prepare([("Connection", "Upgrade")])
        self.assertIsNone(upgrade)
        self.assertNotIn("Connection", headers)

    def test_tutorial_header_up_then_reapply(self) -> None:
        # header_up Connection {>Connection} / header_up Upgrade {>Upgrade} (DESIGN §1)
        """The tutorial's header_up copies are replaced by the upgrade fields again."""
        request, headers, upgrade = prepare([
            ("Connection", "keep-alive, Upgrade"),
            ("Upgrade", "WebSocket"),
        ])
        header_up = ops(set={"Connection": ["{>Connection}"], "Upgrade": ["{>Upgrade}"]})
        apply_request_ops(header_up, headers, request)
        self.assertEqual(headers.get_all("Connection"), ["keep-alive, Upgrade"])
        self.assertEqual(headers.get_all("Upgrade"), ["WebSocket"])
        reapply_upgrade(headers, upgrade)
        self.assertEqual(headers.get_all("Connection"), ["Upgrade"])
        self.assertEqual(headers.get_all("Upgrade"), ["websocket"])
        self.assertEqual(upgrade_type(headers), "websocket")

    def test_reapply_restores_deleted_upgrade_fields(self) -> None:
        """Upgrade fields deleted by header_up are put back for an upgrade."""
        request, headers, upgrade = prepare([("Connection", "upgrade"), ("Upgrade", "h2c")])
        apply_request_ops(ops(delete=["Connection", "Upgrade"]), headers, request)
        reapply_upgrade(headers, upgrade)
        self.assertEqual((headers.get("Connection"), headers.get("Upgrade")), ("Upgrade", "h2c"))

    def test_reapply_leaves_other_requests_alone(self) -> None:
        """For a request that is no upgrade, header_up's Connection stays as set."""
        request, headers, upgrade = prepare([("Connection", "close")])
        apply_request_ops(ops(set={"Connection": ["{>Connection}"]}), headers, request)
        reapply_upgrade(headers, upgrade)
        self.assertEqual(headers.get_all("Connection"), ["close"])
        self.assertNotIn("Upgrade", headers)

    def test_upgrade_accepted(self) -> None:
        """An upgrade is accepted by Connection: Upgrade naming the same protocol."""
        answer = Headers([("Connection", "Upgrade"), ("Upgrade", "WebSocket")])
        self.assertTrue(upgrade_accepted("websocket", answer))
        self.assertFalse(upgrade_accepted("h2c", answer))
        self.assertFalse(upgrade_accepted("websocket", Headers([("Upgrade", "websocket")])))
        bad = Headers([("Connection", "upgrade"), ("Upgrade", "web\x01socket")])
        self.assertFalse(upgrade_accepted("web\x01socket", bad))


class ForwardedTests(SynchronousTestCase):
    def test_no_trusted_proxies_replaces_client_values(self) -> None:
        """Without trusted proxies the client's X-Forwarded-* values are replaced."""
        _, headers, _ = prepare([
            ("X-Forwarded-For", "9.9.9.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "forged.example"),
        ])
        self.assertEqual(items(headers), [
            ("X-Forwarded-For", "127.0.0.1"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "example.com"),
            ("Host", "example.com"),
        ])

    def test_tls_client(self) -> None:
        """A TLS client is forwarded with X-Forwarded-Proto https."""
        _, headers, _ = prepare([], tls=FakeTLS("example.com"))
        self.assertEqual(headers.get("X-Forwarded-Proto"), "https")

    def test_trusted_peer_keeps_chain(self) -> None:
        """A trusted peer's X-Forwarded-For chain is extended; its last Proto and Host are kept."""
        _, headers, _ = prepare([
            ("X-Forwarded-For", "9.9.9.9"),
            ("X-Forwarded-For", "8.8.8.8, 7.7.7.7"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Proto", "wss"),
            ("X-Forwarded-Host", "first.example"),
            ("X-Forwarded-Host", "orig.example"),
        ], trusted=TrustedProxies.from_config(PRIVATE_RANGES), remote=("10.1.2.3", 4000))
        self.assertEqual(items(headers), [
            ("X-Forwarded-For", "9.9.9.9, 8.8.8.8, 7.7.7.7, 10.1.2.3"),
            ("X-Forwarded-Proto", "wss"),
            ("X-Forwarded-Host", "orig.example"),
            ("Host", "example.com"),
        ])

    def test_trusted_peer_without_client_values(self) -> None:
        """A trusted peer sending empty values gets the usual ones."""
        _, headers, _ = prepare([("X-Forwarded-For", ""), ("X-Forwarded-Proto", "")],
                                trusted=TrustedProxies.from_config(["10.0.0.0/8"]),
                                remote=("10.0.0.7", 1))
        self.assertEqual(headers.get_all("X-Forwarded-For"), ["10.0.0.7"])
        self.assertEqual(headers.get_all("X-Forwarded-Proto"), ["http"])
        self.assertEqual(headers.get_all("X-Forwarded-Host"), ["example.com"])

    def test_untrusted_peer_with_forged_chain(self) -> None:
        """An untrusted peer's forged X-Forwarded-* values are replaced."""
        trusted = TrustedProxies.from_config(PRIVATE_RANGES)
        _, headers, _ = prepare([
            ("X-Forwarded-For", "10.0.0.1, 127.0.0.1"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "admin.internal"),
        ], trusted=trusted, remote=("203.0.113.9", 4000))
        self.assertEqual(items(headers), [
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Host", "example.com"),
            ("Host", "example.com"),
        ])

    def test_private_ranges(self) -> None:
        """private_ranges trusts the private and loopback ranges and no other address."""
        trusted = TrustedProxies.from_config(PRIVATE_RANGES)
        for ip in ("127.0.0.1", "127.200.1.1", "10.255.0.1", "172.31.255.255", "192.168.7.7",
                   "fd12:3456::1", "::1"):
            self.assertTrue(trusted.trusts(ip), ip)
        for ip in ("128.0.0.1", "172.32.0.1", "11.0.0.1", "fe80::1", "::2", "2001:db8::1",
                   "::ffff:10.0.0.1"):
            self.assertFalse(trusted.trusts(ip), ip)

    def test_ipv6_peer(self) -> None:
        """A trusted IPv6 peer is appended to the X-Forwarded-For chain."""
        _, headers, _ = prepare([("X-Forwarded-For", "2001:db8::99")],
                                trusted=TrustedProxies.from_config(["2001:db8::/32"]),
                                remote=("2001:db8::1", 4000))
        self.assertEqual(headers.get_all("X-Forwarded-For"), ["2001:db8::99, 2001:db8::1"])

    def test_ipv6_peer_zone_dropped(self) -> None:
        """An IPv6 peer's zone is left out of X-Forwarded-For."""
        _, headers, _ = prepare([], remote=("fe80::1%eth0", 4000))
        self.assertEqual(headers.get_all("X-Forwarded-For"), ["fe80::1"])

    def test_ipv4_range_does_not_trust_mapped_ipv6_peer(self) -> None:
        """An IPv4 range does not trust an IPv4-mapped IPv6 peer, as Go's netip."""
        _, headers, _ = prepare([("X-Forwarded-For", "1.1.1.1")],
                                trusted=TrustedProxies.from_config(["10.0.0.0/8"]),
                                remote=("::ffff:10.0.0.1", 4000))
        self.assertEqual(headers.get_all("X-Forwarded-For"), ["::ffff:10.0.0.1"])

    def test_peer_without_address_deletes_all_three(self) -> None:
        """A peer without an address gets no X-Forwarded-* fields at all."""
        _, headers, _ = prepare([
            ("X-Forwarded-For", "9.9.9.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "forged.example"),
            ("Accept", "*/*"),
        ], remote=("", 0))
        self.assertEqual(items(headers), [("Accept", "*/*"), ("Host", "example.com")])

    def test_peer_that_is_not_an_ip(self) -> None:
        """A peer address that is no IP is an error worded as Go's."""
        request = make_request("GET", "/", remote=("not-an-ip", 1))
        with self.assertRaises(ForwardedHeadersError) as caught:
            prepare_upstream_headers(request, TrustedProxies())
        self.assertEqual(str(caught.exception),
                         "invalid IP address: 'not-an-ip': ParseAddr(\"not-an-ip\"): unable to parse IP")

    def test_single_ip_entries(self) -> None:
        """Single IP entries trust exactly that address, zones dropped, mapped forms distinct."""
        trusted = TrustedProxies.from_config(["1.2.3.4", "fe80::1%eth0", "::ffff:5.6.7.8"])
        self.assertTrue(trusted.trusts("1.2.3.4"))
        self.assertFalse(trusted.trusts("1.2.3.5"))
        self.assertTrue(trusted.trusts("fe80::1"))
        self.assertTrue(trusted.trusts("::ffff:5.6.7.8"))
        self.assertFalse(trusted.trusts("5.6.7.8"))

    def test_prefix_forms_go_accepts(self) -> None:
        """Prefixes in the forms Go accepts (+8, 024, mapped IPv6) are trusted ranges."""
        trusted = TrustedProxies.from_config(["10.0.0.0/+8", "192.168.1.1/024", "::ffff:1.2.3.0/120"])
        self.assertTrue(trusted.trusts("10.9.9.9"))
        self.assertTrue(trusted.trusts("192.168.1.200"))
        self.assertTrue(trusted.trusts("::ffff:1.2.3.9"))
        self.assertFalse(trusted.trusts("1.2.3.9"))

    def test_empty_list_is_false(self) -> None:
        """No trusted proxies is false; any entry makes it true."""
        self.assertFalse(TrustedProxies.from_config(None))
        self.assertFalse(TrustedProxies.from_config([]))
        self.assertTrue(TrustedProxies.from_config(["::1"]))

    def test_config_errors(self) -> None:
        # Messages as Caddy 2.6.2 (Go 1.19) reports them.
        """Bad trusted_proxies entries fail with Go's netip messages."""
        cases = {
            "foo": "invalid IP address: 'foo': ParseAddr(\"foo\"): unable to parse IP",
            "": "invalid IP address: '': ParseAddr(\"\"): unable to parse IP",
            "01.2.3.4": "invalid IP address: '01.2.3.4': ParseAddr(\"01.2.3.4\"): "
                        "IPv4 field has octet with leading zero",
            "1.2.3.256": "invalid IP address: '1.2.3.256': ParseAddr(\"1.2.3.256\"): "
                         "IPv4 field has value >255",
            "1.2.3": "invalid IP address: '1.2.3': ParseAddr(\"1.2.3\"): IPv4 address too short",
            "1.2.3.4.5": "invalid IP address: '1.2.3.4.5': ParseAddr(\"1.2.3.4.5\"): "
                         "IPv4 address too long",
            "1..2.3": "invalid IP address: '1..2.3': ParseAddr(\"1..2.3\"): "
                      "IPv4 field must have at least one digit (at \".2.3\")",
            "%eth0": "invalid IP address: '%eth0': ParseAddr(\"%eth0\"): missing IPv6 address",
            "1:2": "invalid IP address: '1:2': ParseAddr(\"1:2\"): address string too short",
            "1::2::3": "invalid IP address: '1::2::3': ParseAddr(\"1::2::3\"): "
                       "multiple :: in address (at \":3\")",
            "12345::": "invalid IP address: '12345::': ParseAddr(\"12345::\"): "
                       "IPv6 field has value >=2^16 (at \"12345::\")",
            "10.0.0.0/33": "parsing CIDR expression: '10.0.0.0/33': "
                           "netip.ParsePrefix(\"10.0.0.0/33\"): prefix length out of range",
            "::1/129": "parsing CIDR expression: '::1/129': "
                       "netip.ParsePrefix(\"::1/129\"): prefix length out of range",
            "10.0.0.0/-1": "parsing CIDR expression: '10.0.0.0/-1': "
                           "netip.ParsePrefix(\"10.0.0.0/-1\"): prefix length out of range",
            "bad/8": "parsing CIDR expression: 'bad/8': "
                     "netip.ParsePrefix(\"bad/8\"): ParseAddr(\"bad\"): unable to parse IP",
            "1.2.3.4/x": "parsing CIDR expression: '1.2.3.4/x': "
                         "netip.ParsePrefix(\"1.2.3.4/x\"): bad bits after slash: \"x\"",
            "1.2.3.4/": "parsing CIDR expression: '1.2.3.4/': "
                        "netip.ParsePrefix(\"1.2.3.4/\"): bad bits after slash: \"\"",
            "fe80::1%eth0/64": "parsing CIDR expression: 'fe80::1%eth0/64': "
                               "netip.ParsePrefix(\"fe80::1%eth0/64\"): "
                               "IPv6 zones cannot be present in a prefix",
        }
        for entry, message in cases.items():
            with self.assertRaises(ConfigError, msg=entry) as caught:
                TrustedProxies.from_config(["10.0.0.0/8", entry])
            self.assertEqual(str(caught.exception), message)

    def test_config_not_a_list(self) -> None:
        """trusted_proxies that is no list of strings is a config error."""
        self.assertRaises(ConfigError, TrustedProxies.from_config, "10.0.0.0/8")
        self.assertRaises(ConfigError, TrustedProxies.from_config, [10])


class HeaderUpTests(SynchronousTestCase):
    def test_host_from_upstream_placeholder(self) -> None:
        """header_up Host {upstream hostport} sets the Host sent; X-Forwarded-Host stays."""
        request, headers, _ = prepare([])
        request.placeholders["http.reverse_proxy.upstream.hostport"] = "localhost:9000"
        host = apply_request_ops(
            ops(set={"Host": ["{http.reverse_proxy.upstream.hostport}"]}), headers, request)
        self.assertEqual(host, "localhost:9000")
        self.assertEqual(to_raw(headers, "127.0.0.1:9000")[0], (b"Host", b"localhost:9000"))
        self.assertEqual(headers.get("X-Forwarded-Host"), "example.com")

    def test_added_host_wins(self) -> None:
        """A Host added by header_up is the one sent."""
        request, headers, _ = prepare([])
        self.assertEqual(apply_request_ops(ops(add={"Host": ["extra.example"]}), headers, request),
                         "extra.example")
        self.assertEqual(headers.get_all("Host"), ["extra.example"])

    def test_deleted_host_means_dial_address(self) -> None:
        """Deleting Host with header_up sends the dial address as Host."""
        request, headers, _ = prepare([])
        self.assertEqual(apply_request_ops(ops(delete=["Host"]), headers, request), "")
        self.assertNotIn("Host", headers)
        self.assertEqual(to_raw(headers, "127.0.0.1:18090")[0], (b"Host", b"127.0.0.1:18090"))

    def test_host_replace(self) -> None:
        """header_up replace rewrites the Host with a regexp."""
        request, headers, _ = prepare([])
        replace = {"Host": [{"search_regexp": r"\.com$", "replace": ".internal"}]}
        self.assertEqual(apply_request_ops(ops(replace=replace), headers, request),
                         "example.internal")

    def test_request_header_shorthand_and_delete_default(self) -> None:
        """header_up's {>Field} shorthand works; it may delete a default X-Forwarded-For."""
        request, headers, _ = prepare([("X-Token", "abc")])
        apply_request_ops(ops(set={"X-Copy": ["{>X-Token}/{http.request.header.X-Token}"]},
                              delete=["X-Forwarded-For"]), headers, request)
        self.assertEqual(headers.get("X-Copy"), "abc/abc")
        self.assertNotIn("X-Forwarded-For", headers)

    def test_each_attempt_starts_from_the_prepared_headers(self) -> None:
        """Each attempt applies header_up to a copy of the prepared fields."""
        request, prepared, _ = prepare([])
        header_up = ops(add={"X-Attempt": ["{http.reverse_proxy.upstream.hostport}"]})
        for upstream in ("a:1", "b:2"):
            request.placeholders["http.reverse_proxy.upstream.hostport"] = upstream
            headers = prepared.copy()
            apply_request_ops(header_up, headers, request)
            self.assertEqual(headers.get_all("X-Attempt"), [upstream])
        self.assertNotIn("X-Attempt", prepared)


class ToRawTests(SynchronousTestCase):
    def test_go_writing_rules(self) -> None:
        """Fields are written as Go: Host first, one User-Agent, no framing, values trimmed."""
        headers = Headers([
            ("Accept", "*/*"),
            ("User-Agent", "one"),
            ("User-Agent", "two"),
            ("Content-Length", "9"),
            ("Transfer-Encoding", "chunked"),
            ("Trailer", "X"),
            ("Host", "example.com"),
            ("X-Padded", "  v \t"),
            ("X-Raw", "caf\xe9"),
            ("X-Text", "\u2713"),
        ])
        self.assertEqual(to_raw(headers), [
            (b"Host", b"example.com"),
            (b"User-Agent", b"one"),
            (b"Accept", b"*/*"),
            (b"X-Padded", b"v"),
            (b"X-Raw", b"caf\xe9"),
            (b"X-Text", "\u2713".encode()),
        ])

    def test_empty_user_agent_not_written(self) -> None:
        """An empty first User-Agent means none is written."""
        headers = Headers([("Host", "h"), ("User-Agent", ""), ("User-Agent", "second")])
        self.assertEqual(to_raw(headers), [(b"Host", b"h")])

    def test_host_cleaned_as_go_does(self) -> None:
        """Host is cut at a space or slash and IDNA-encoded, as Go's cleanHost."""
        self.assertEqual(to_raw(Headers([("Host", "a.example b")]))[0], (b"Host", b"a.example"))
        self.assertEqual(to_raw(Headers([("Host", "a.example/x")]))[0], (b"Host", b"a.example"))
        self.assertEqual(to_raw(Headers([("Host", "b\xfccher.example:80")]))[0],
                         (b"Host", b"xn--bcher-kva.example:80"))

    def test_control_characters_refused(self) -> None:
        """A value with CR or LF is refused with Go's error and a 502; a tab is fine."""
        headers = Headers([("Host", "h"), ("X-Ok", "a\tb"), ("X-Bad", "a\r\nX-Injected: 1")])
        with self.assertRaises(InvalidHeaderField) as caught:
            to_raw(headers)
        self.assertEqual(str(caught.exception), 'net/http: invalid header field value for "X-Bad"')
        self.assertEqual(caught.exception.status, 502)
        self.assertEqual(to_raw(Headers([("X-Ok", "a\tb")])), [(b"X-Ok", b"a\tb")])

    def test_invalid_name_refused(self) -> None:
        """An invalid field name is refused with Go's error."""
        with self.assertRaises(InvalidHeaderField) as caught:
            to_raw(Headers([("Bad Name", "x")]))
        self.assertEqual(str(caught.exception), 'net/http: invalid header field name "Bad Name"')

    def test_from_raw_round_trip(self) -> None:
        """Raw fields become canonical names with latin-1 values, order and repeats kept."""
        raw = [(b"content-type", b"text/plain"), (b"X-BYTES", b"\xff\x00\x80"),
               (b"Set-Cookie", b"a=1"), (b"set-cookie", b"b=2")]
        headers = from_raw(raw)
        self.assertEqual(items(headers), [
            ("Content-Type", "text/plain"),
            ("X-Bytes", "\xff\x00\x80"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ])
        value = headers.get("X-Bytes")
        assert value is not None
        self.assertEqual(value.encode("latin-1"), b"\xff\x00\x80")

    def test_view_without(self) -> None:
        """A view without some fields changes apart from the original; its copy apart from it."""
        headers = Headers([("A", "1"), ("B", "2"), ("A", "3"), ("C", "5")])
        view = headers.view_without({"B"})
        self.assertEqual(items(view), [("A", "1"), ("A", "3"), ("C", "5")])
        view.set_canonical("A", "9")  # replacing a field leaves the original alone
        view.delete("C")
        self.assertEqual(items(view), [("A", "9")])
        self.assertEqual(items(headers), [("A", "1"), ("A", "3"), ("B", "2"), ("C", "5")])
        copied = view.copy()  # what header_up works on: appending is safe there
        copied.add("A", "10")
        self.assertEqual(view.get_all("A"), ["9"])

    def test_delete_canonical_either_way_round(self) -> None:
        """Fewer fields than names (a response against the hop-by-hop list) and the reverse."""
        few = Headers([("Keep-Alive", "5"), ("X-A", "1"), ("Connection", "x")])
        few.delete_canonical(frozenset({"Connection", "Keep-Alive", "Te", "Upgrade", "Trailer"}))
        self.assertEqual(items(few), [("X-A", "1")])
        many = Headers([("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")])
        many.delete_canonical(("B", "Missing"))
        self.assertEqual(items(many), [("A", "1"), ("C", "3"), ("D", "4")])

    def test_canonical_name_lookups_and_merge(self) -> None:
        """Lookups take canonical names; merge appends copies of the other's values."""
        headers = Headers([("content-type", "text/plain"), ("X-A", "1"), ("x-a", "2")])
        self.assertEqual(headers.values_of("X-A"), ["1", "2"])
        self.assertIsNone(headers.values_of("x-a"))  # the canonical name is expected
        self.assertEqual(headers.first("Content-Type"), "text/plain")
        self.assertIsNone(headers.first("Missing"))
        out = Headers([("Server", "Caddy"), ("X-A", "0")])
        out.merge(headers)
        self.assertEqual(items(out), [("Server", "Caddy"), ("X-A", "0"), ("X-A", "1"), ("X-A", "2"),
                                      ("Content-Type", "text/plain")])
        out.add("X-A", "3")
        self.assertEqual(headers.values_of("X-A"), ["1", "2"])  # merge copied the lists


class CompressionRequestTests(SynchronousTestCase):
    def test_wants_gzip(self) -> None:
        """gzip is asked for unless the client names an encoding, asks a range, or uses HEAD."""
        self.assertTrue(wants_gzip(Headers([("Host", "h")]), "GET"))
        self.assertTrue(wants_gzip(Headers([("Accept-Encoding", "")]), "POST"))
        self.assertFalse(wants_gzip(Headers([("Accept-Encoding", "br")]), "GET"))
        self.assertFalse(wants_gzip(Headers([("Range", "bytes=0-1")]), "GET"))
        self.assertFalse(wants_gzip(Headers(), "HEAD"))
        self.assertEqual(ACCEPT_GZIP, (b"Accept-Encoding", b"gzip"))

    def test_empty_accept_encoding_still_sent(self) -> None:
        # Go writes the client's empty field and then its own.
        """A client's empty Accept-Encoding is sent, followed by Go's own gzip."""
        headers = Headers([("Host", "h"), ("Accept-Encoding", "")])
        fields = to_raw(headers)
        if wants_gzip(headers, "GET"):
            fields.append(ACCEPT_GZIP)
        self.assertEqual(fields, [(b"Host", b"h"), (b"Accept-Encoding", b""),
                                  (b"Accept-Encoding", b"gzip")])


class ResponseHeaderTests(SynchronousTestCase):
    def test_clean_response_headers(self) -> None:
        """Hop-by-hop fields and those Connection names are removed from the response."""
        headers = from_raw([
            (b"Content-Type", b"text/plain"),
            (b"Connection", b"X-Bar, keep-alive"),
            (b"X-Bar", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Alt-Svc", b'h3=":443"'),
            (b"Proxy-Authenticate", b"Basic"),
            (b"Upgrade", b"foo"),
            (b"Te", b"trailers"),
            (b"Trailer", b"X-T"),
            (b"Content-Length", b"2"),
            (b"Server", b"backend"),
            (b"X-Keep", b"yes"),
        ])
        clean_response_headers(headers)
        self.assertEqual(items(headers), [
            ("Content-Type", "text/plain"),
            ("Content-Length", "2"),
            ("Server", "backend"),
            ("X-Keep", "yes"),
        ])

    def test_response_connection_names_any_field(self) -> None:
        """A response's Connection may name any field, Content-Length included."""
        headers = from_raw([(b"Connection", b"content-LENGTH, x-a"), (b"Connection", b"X-C"),
                            (b"Content-Length", b"3"), (b"X-A", b"1"), (b"X-B", b"2"),
                            (b"x-c", b"3")])
        clean_response_headers(headers)
        self.assertEqual(items(headers), [("X-B", "2")])

    def test_chunked_response_loses_content_length(self) -> None:
        """A chunked response loses its Content-Length."""
        headers = from_raw([(b"Content-Length", b"99"), (b"Transfer-Encoding", b"chunked"),
                            (b"X-A", b"1")])
        clean_response_headers(headers)
        self.assertEqual(items(headers), [("X-A", "1")])

    def test_announced_trailers(self) -> None:
        """A chunked response's Trailer names are canonical and unique; Trailer is removed."""
        headers = from_raw([(b"Trailer", b"x-one, X-Two,"), (b"Trailer", b"x-three, X-ONE"),
                            (b"Transfer-Encoding", b"chunked")])
        self.assertEqual(announced_trailers(headers), ["X-One", "X-Two", "X-Three"])
        clean_response_headers(headers)
        self.assertNotIn("Trailer", headers)

    def test_trailer_announcement_needs_chunked(self) -> None:
        """Trailers are announced only by chunked responses; Trailer is removed either way."""
        headers = from_raw([(b"Trailer", b"X-One"), (b"Content-Length", b"5")])
        self.assertEqual(announced_trailers(headers), [])
        clean_response_headers(headers)
        self.assertEqual(items(headers), [("Content-Length", "5")])

    def test_forbidden_trailer_key(self) -> None:
        """A forbidden trailer name is Go's "bad trailer key" error, a 502."""
        headers = from_raw([(b"Trailer", b"content-length"), (b"Transfer-Encoding", b"chunked")])
        with self.assertRaises(BadTrailerKey) as caught:
            announced_trailers(headers)
        self.assertEqual(str(caught.exception), 'bad trailer key "Content-Length"')
        self.assertEqual(caught.exception.status, 502)

    def test_relay_trailers(self) -> None:
        """Trailers are relayed with canonical names, sorted, repeated values kept."""
        relayed = relay_trailers([(b"X-One", b"1"), (b"X-Other", b"9"), (b"x-other", b"10"),
                                  (b"A-First", b"a")])
        self.assertEqual(relayed, [("A-First", "a"), ("X-One", "1"), ("X-Other", "9"),
                                   ("X-Other", "10")])

    def test_gunzip_fix_up(self) -> None:
        """Decompressing a gzip response drops Content-Encoding and Content-Length."""
        headers = from_raw([(b"Content-Encoding", b"GZIP"), (b"Content-Length", b"25"),
                            (b"Content-Type", b"text/plain")])
        self.assertTrue(gunzip_response_headers(headers, 200))
        self.assertEqual(items(headers), [("Content-Type", "text/plain")])

    def test_gunzip_first_encoding_decides_and_all_go(self) -> None:
        """Only a first encoding of gzip is decompressed, and then every encoding goes."""
        headers = from_raw([(b"Content-Encoding", b"gzip"), (b"Content-Encoding", b"br")])
        self.assertTrue(gunzip_response_headers(headers, 200))
        self.assertNotIn("Content-Encoding", headers)
        headers = from_raw([(b"Content-Encoding", b"br"), (b"Content-Encoding", b"gzip")])
        self.assertFalse(gunzip_response_headers(headers, 200))
        self.assertEqual(headers.get_all("Content-Encoding"), ["br", "gzip"])

    def test_no_gunzip_without_a_body(self) -> None:
        """Bodiless responses (204, 304, 1xx, length 0) are not decompressed."""
        for status, raw in [
            (204, [(b"Content-Encoding", b"gzip")]),
            (304, [(b"Content-Encoding", b"gzip"), (b"Content-Length", b"10")]),
            (103, [(b"Content-Encoding", b"gzip")]),
            (200, [(b"Content-Encoding", b"gzip"), (b"Content-Length", b"0")]),
        ]:
            headers = from_raw(raw)
            self.assertFalse(gunzip_response_headers(headers, status), (status, raw))
            self.assertEqual(headers.get("Content-Encoding"), "gzip")

    def test_gunzip_chunked_with_zero_length(self) -> None:
        """A chunked response is decompressed even with a Content-Length of 0."""
        headers = from_raw([(b"Content-Encoding", b"gzip"), (b"Content-Length", b"0"),
                            (b"Transfer-Encoding", b"chunked")])
        self.assertTrue(gunzip_response_headers(headers, 200))
        self.assertEqual(items(headers), [("Transfer-Encoding", "chunked")])
