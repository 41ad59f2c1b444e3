"""The tutorial examples (``../shared/seed-examples``) served by ``txcaddy.testing``'s client.

Each example's Caddyfile (and, where the behaviour is the same, Caddy 2.6.2's adapted JSON) is
loaded into a ``CaddyfileClient``/``ConfigClient`` with fake upstreams at its dial addresses;
the tests send requests and check status, body and which upstream got what.  Examples that
need files, DNS or HTTP/2 from the client are skipped with the reason.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from txcaddy.errors import ConfigError
from txcaddy.testing import (
    CaddyfileClient,
    ConfigClient,
    FakeUpstream,
    MemoryClient,
    Reply,
    WebSocketUpstream,
)

SEEDS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "seed-examples")


def seed(name: str) -> str:
    """The text of one seed file (the test is skipped where the folder is not there)."""
    path = os.path.join(SEEDS, name)
    if not os.path.exists(path):
        raise SkipTest(f"{path} is not there (the project's shared folder)")
    with open(path) as f:
        return f.read()


class SeedTestCase(SynchronousTestCase):
    def caddyfile(self, name: str, **upstreams: Any) -> CaddyfileClient:
        """The client for ``<name>.Caddyfile`` with ``upstreams`` (``port_3000=...``)."""
        client = CaddyfileClient(seed(name + ".Caddyfile"), upstreams=_addresses(upstreams))
        self.addCleanup(client.close)
        return client

    def json_config(self, name: str, **upstreams: Any) -> ConfigClient:
        """The client for Caddy 2.6.2's adapted JSON of the example."""
        client = ConfigClient(seed(name + ".caddy-2.6.2.json"), upstreams=_addresses(upstreams))
        self.addCleanup(client.close)
        return client


def _addresses(upstreams: dict[str, Any]) -> dict[str, FakeUpstream]:
    """``localhost_3000=x`` -> ``{"localhost:3000": x}``; ``unix=x`` is the example's socket."""
    out = {}
    for key, upstream in upstreams.items():
        if key == "unix":
            out["unix//run/app.sock"] = upstream
        else:
            host, _, port = key.rpartition("_")
            out[f"{host.replace('_', '-')}:{port}"] = upstream
    return out


class BasicTests(SeedTestCase):
    def check_basic(self, client: MemoryClient, upstream: FakeUpstream) -> None:
        response = client.get("https://example.com/hello?x=1")
        self.assertEqual((response.status, response.body), (200, b"app"))
        self.assertEqual(upstream.last.path, "/hello?x=1")
        self.assertEqual(upstream.last.headers.get("Host"), "example.com")
        self.assertEqual(upstream.last.headers.get("X-Forwarded-Proto"), "https")
        redirect = client.get("http://example.com/hello")
        self.assertEqual((redirect.status, redirect.header("Location")), (308, "https://example.com/hello"))
        self.assertEqual(client.get("https://other.example/").status, 200)  # no route: empty 200
        self.assertEqual(len(upstream.proxied), 1)

    def test_basic(self) -> None:
        """01: example.com is proxied to localhost:3000, with the client's Host and X-Forwarded-Proto."""
        upstream = FakeUpstream(body="app")
        self.check_basic(self.caddyfile("01-basic", localhost_3000=upstream), upstream)

    def test_basic_json(self) -> None:
        """01, Caddy's JSON: the same behaviour as the Caddyfile."""
        upstream = FakeUpstream(body="app")
        self.check_basic(self.json_config("01-basic", localhost_3000=upstream), upstream)

    def test_caddyfile_path(self) -> None:
        """CaddyfileClient takes the path of a Caddyfile as well as its text."""
        seed("01-basic.Caddyfile")
        client = CaddyfileClient(os.path.join(SEEDS, "01-basic.Caddyfile"), upstreams=["localhost:3000"])
        self.addCleanup(client.close)
        self.assertEqual(client.get("https://example.com/p").status, 200)
        self.assertEqual(client.upstream("localhost:3000").last.path, "/p")

    def test_unix_socket(self) -> None:
        """02: the upstream at unix//run/app.sock gets the request."""
        upstream = FakeUpstream(body="over unix")
        client = self.caddyfile("02-unix-socket", unix=upstream)
        self.assertEqual(client.get("https://example.com/").text, "over unix")
        self.assertEqual(upstream.last.address, "unix//run/app.sock")

    def test_upstream_down(self) -> None:
        """01 with nothing at localhost:3000: the dial is refused and the client gets 502."""
        client = self.caddyfile("01-basic")
        self.assertEqual(client.get("https://example.com/").status, 502)
        self.assertEqual(client.network.dials, ["localhost:3000"])


class LoadBalancingTests(SeedTestCase):
    def test_multiple_upstreams_random(self) -> None:
        """03: the default random policy spreads requests over all three upstreams, one each."""
        ups = {f"localhost_300{i}": FakeUpstream(body=str(i)) for i in range(3)}
        client = self.caddyfile("03-multiple-upstreams", **ups)
        bodies = Counter(client.get("https://example.com/").text for _ in range(60))
        self.assertEqual(set(bodies), {"0", "1", "2"})
        self.assertEqual(sum(len(u.proxied) for u in ups.values()), 60)

    def test_round_robin(self) -> None:
        """04: round_robin takes the upstreams in turn."""
        ups = {f"localhost_300{i}": FakeUpstream(body=str(i)) for i in range(3)}
        client = self.caddyfile("04-lb-policy-round-robin", **ups)
        self.assertEqual([client.get("https://example.com/").text for _ in range(6)], list("012012"))

    def test_round_robin_json(self) -> None:
        """04, Caddy's JSON: the same order."""
        ups = {f"localhost_300{i}": FakeUpstream(body=str(i)) for i in range(3)}
        client = self.json_config("04-lb-policy-round-robin", **ups)
        self.assertEqual([client.get("https://example.com/").text for _ in range(6)], list("012012"))


class HealthCheckTests(SeedTestCase):
    def check_active(self, name: str) -> None:
        a, b = FakeUpstream(body="a"), FakeUpstream(body="b")
        client = self.caddyfile(name, localhost_3000=a, localhost_3001=b)
        self.assertEqual([r.path for r in a.health_checks], ["/healthz"])  # probed at start
        b.reply = Reply(500)
        client.clock.advance(10)
        self.assertEqual(len(b.health_checks), 2)
        self.assertEqual({client.get("https://example.com/").text for _ in range(4)}, {"a"})
        b.reply = Reply(200, body="b")
        client.clock.advance(10)
        self.assertEqual({client.get("https://example.com/").text for _ in range(4)}, {"a", "b"})

    def test_active_health_corrected(self) -> None:
        """05 (health_uri): an upstream failing its /healthz probe gets no traffic until it passes."""
        self.check_active("05-active-health-check.corrected")

    def test_active_health_path_deprecated(self) -> None:
        """05 (health_path): the deprecated spelling works the same and warns."""
        self.check_active("05-active-health-check")
        client = self.caddyfile("05-active-health-check", localhost_3000=FakeUpstream(), localhost_3001=FakeUpstream())
        self.assertTrue(any("health_path" in w.message for w in client.warnings))

    def test_passive_health(self) -> None:
        """17: three 5xx answers within fail_duration take the upstream out for 10s."""
        upstream = FakeUpstream(500)
        client = self.caddyfile("17-passive-health", localhost_3000=upstream)
        self.assertEqual([client.get("https://example.com/").status for _ in range(3)], [500, 500, 500])
        self.assertEqual(client.get("https://example.com/").status, 503)
        self.assertEqual(len(upstream.proxied), 3)
        upstream.reply = Reply(200, body="back")
        client.clock.advance(10)
        self.assertEqual(client.get("https://example.com/").text, "back")

    def test_maintenance_fallback(self) -> None:
        """18: with the upstream down, handle_errors answers 503 (try_files finds no page)."""
        if os.path.exists("/var/www/maintenance/maintenance.html"):
            raise SkipTest("this machine has /var/www/maintenance/maintenance.html")
        client = self.caddyfile("18-maintenance-fallback")
        self.assertEqual(client.get("https://example.com/").status, 503)
        self.assertEqual(client.network.dials, ["localhost:3000"])


class HeaderTests(SeedTestCase):
    def test_header_up(self) -> None:
        """06: header_up sets Host to the upstream's address and X-Real-IP/X-Forwarded-* from the client."""
        upstream = FakeUpstream()
        client = self.caddyfile("06-header-up", localhost_3000=upstream)
        self.assertEqual(client.get("https://example.com/").status, 200)
        headers = upstream.last.headers
        self.assertEqual(headers.get("Host"), "localhost:3000")
        self.assertEqual(headers.get("X-Real-IP"), "127.0.0.1")
        self.assertEqual(headers.get_all("X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(headers.get("X-Forwarded-Proto"), "https")

    def test_header_down_wrapped(self) -> None:
        """07 (wrapped in a site): the upstream's Server and X-Powered-By do not reach the client."""
        upstream = FakeUpstream(headers={"Server": "gunicorn", "X-Powered-By": "PHP", "X-Kept": "1"}, body="x")
        client = self.caddyfile("07-header-down-bare.wrapped", localhost_3000=upstream)
        response = client.get("http://127.0.0.1:17007/")
        self.assertEqual(response.status, 200)
        self.assertIsNone(response.header("X-Powered-By"))
        self.assertEqual(response.headers.get_all("Server"), ["Caddy"])
        self.assertEqual(response.header("X-Kept"), "1")

    def test_header_down_wrapped_json(self) -> None:
        """07, Caddy's JSON (the wrapped site): the same headers removed."""
        upstream = FakeUpstream(headers={"X-Powered-By": "PHP"}, body="x")
        client = self.json_config("07-header-down-bare", localhost_3000=upstream)
        response = client.get("http://127.0.0.1:17007/")
        self.assertEqual((response.status, response.header("X-Powered-By")), (200, None))

    def test_bare_directives_are_site_addresses(self) -> None:
        """07 and 15 bare: the first line is read as site addresses, so the next line is an error."""
        for name in ("07-header-down-bare", "15-flush-periodic-bare"):
            self.assertRaises(ConfigError, CaddyfileClient, seed(name + ".Caddyfile"))


class RoutingTests(SeedTestCase):
    def test_path_routing_handle(self) -> None:
        """08: /api/* goes to localhost:8080 with its path; other paths do not reach it."""
        upstream = FakeUpstream(body="api")
        client = self.caddyfile("08-path-routing-handle", localhost_8080=upstream)
        self.assertEqual(client.get("https://example.com/api/users").text, "api")
        self.assertEqual(upstream.last.path, "/api/users")
        if not os.path.isdir("/var/www/html"):
            self.assertEqual(client.get("https://example.com/index.html").status, 404)
        self.assertEqual(len(upstream.proxied), 1)

    def test_strip_prefix(self) -> None:
        """09: uri strip_prefix /api sends /api/users?a=1 to the upstream as /users?a=1."""
        upstream = FakeUpstream(body="stripped")
        client = self.caddyfile("09-strip-prefix", localhost_3000=upstream)
        self.assertEqual(client.get("https://example.com/api/users?a=1").text, "stripped")
        self.assertEqual(upstream.last.path, "/users?a=1")
        self.assertEqual(client.get("https://example.com/other").status, 200)
        self.assertEqual(len(upstream.proxied), 1)

    def test_conditional_routing(self) -> None:
        """19: /api/* to api-server, Connection: Upgrade to ws-server, everything else to web-server."""
        api, ws, web = FakeUpstream(body="api"), WebSocketUpstream(body="ws"), FakeUpstream(body="web")
        client = self.caddyfile("19-conditional-routing", api_server_8080=api, ws_server_3000=ws,
                                web_server_3001=web)
        self.assertEqual(client.get("https://example.com/api/x").text, "api")
        self.assertEqual(client.get("https://example.com/page").text, "web")
        socket = client.websocket("https://example.com/live")
        self.assertTrue(socket.accepted)
        socket.send("ping")
        self.assertEqual(socket.messages, ["ping"])
        self.assertEqual([len(u.proxied) for u in (api, ws, web)], [1, 1, 1])


class StreamingTests(SeedTestCase):
    def check_websocket(self, name: str) -> None:
        upstream = WebSocketUpstream()
        client = self.caddyfile(name, localhost_3000=upstream)
        socket = client.websocket("https://example.com/socket")
        self.assertTrue(socket.accepted)
        socket.send("hi")
        socket.send(b"\x01\x02")
        self.assertEqual(socket.messages, ["hi", b"\x01\x02"])
        self.assertEqual(upstream.last.headers.get("Upgrade"), "websocket")
        socket.close(1000)
        self.assertEqual(upstream.sockets[0].close_code, 1000)

    def test_websocket_auto(self) -> None:
        """10: a WebSocket passes through a plain reverse_proxy (the 101 tunnel)."""
        self.check_websocket("10-websocket-auto")

    def test_websocket_explicit(self) -> None:
        """11: header_up Connection/Upgrade with {>Connection} changes nothing for WebSocket."""
        self.check_websocket("11-websocket-explicit")

    def test_websocket_explicit_corrected(self) -> None:
        """11 corrected: the long placeholder names, the same."""
        self.check_websocket("11-websocket-explicit.corrected")

    def test_flush_immediately(self) -> None:
        """14: flush_interval -1 writes each piece of the upstream's body as it comes."""
        upstream = FakeUpstream(handler=lambda request: None)
        client = self.caddyfile("14-streaming-flush-minus1", localhost_3000=upstream)
        request = client.open("GET", "https://example.com/events")
        upstream.last.respond(200, {"Content-Type": "text/plain"}, b"one\n", complete=False)
        self.assertEqual(request.response.body, b"one\n")
        upstream.last.send_body(b"two\n")
        self.assertEqual(request.response.chunks, [b"one\n", b"two\n"])
        self.assertFalse(request.response.complete)
        upstream.last.end_body()
        self.assertTrue(request.response.complete)

    def test_flush_periodic(self) -> None:
        """15 wrapped: with flush_interval 1s a piece of a sized body reaches the client a second later."""
        upstream = FakeUpstream(handler=lambda request: None)
        client = self.caddyfile("15-flush-periodic-bare.wrapped", localhost_3000=upstream)
        request = client.open("GET", "http://127.0.0.1:17015/")
        # A known length: not a stream in Caddy's eyes, so the 1s interval applies.
        upstream.last.respond(200, {"Content-Length": "20"}, b"x" * 10, complete=False)
        self.assertEqual(request.response.body, b"")
        client.clock.advance(1)
        self.assertEqual(request.response.body, b"x" * 10)
        upstream.last.send_body(b"y" * 10)
        upstream.last.end_body()
        self.assertEqual(request.response.body, b"x" * 10 + b"y" * 10)
        self.assertTrue(request.response.complete)


class TransportTests(SeedTestCase):
    def test_custom_transport(self) -> None:
        """13 corrected: the transport options load; the request is proxied (the fake network dials)."""
        upstream = FakeUpstream(body="ok")
        client = self.caddyfile("13-custom-transport.corrected", localhost_3000=upstream)
        self.assertEqual(client.get("https://example.com/").text, "ok")

    def test_response_header_timeout(self) -> None:
        """13 corrected: an upstream silent for response_header_timeout (30s) gets the client a 504."""
        upstream = FakeUpstream(body="too late", delay=60)
        client = self.caddyfile("13-custom-transport.corrected", localhost_3000=upstream)
        request = client.open("GET", "https://example.com/")
        client.clock.advance(29)
        self.assertIsNone(request.response.status)
        client.clock.advance(1)
        self.assertEqual(request.result().status, 504)
        client.clock.advance(30)  # the late answer goes nowhere
        self.assertEqual(request.response.body, b"")

    def test_custom_transport_misspelled(self) -> None:
        """13 as written: Go's field names are accepted as aliases with a warning each."""
        client = self.caddyfile("13-custom-transport", localhost_3000=FakeUpstream(body="ok"))
        self.assertEqual(client.get("https://example.com/").text, "ok")
        self.assertEqual(sum("is not a Caddy subdirective" in w.message for w in client.warnings), 4)

    def test_grpc_h2c(self) -> None:
        """12: gRPC needs HTTP/2 from the client, which the in-memory client does not speak."""
        self.caddyfile("12-grpc-h2c")  # it loads
        raise SkipTest("the in-memory client speaks HTTP/1.1 only; gRPC is tested in tests/integration")

    def test_dynamic_srv(self) -> None:
        """16: SRV upstreams need a DNS server."""
        self.caddyfile("16-dynamic-srv-to")  # both spellings load
        self.caddyfile("16-dynamic-srv-to.corrected")
        raise SkipTest("dynamic upstreams look up DNS; tested in tests/reverseproxy with a fake resolver")


class ExampleCoverageTests(SynchronousTestCase):
    def test_every_example_has_json_or_is_known(self) -> None:
        """Every seed Caddyfile is named by a test here (a new example shows up as a failure)."""
        if not os.path.isdir(SEEDS):
            raise SkipTest("no seed examples")
        names = {f[:-len(".Caddyfile")] for f in os.listdir(SEEDS) if f.endswith(".Caddyfile")}
        with open(__file__) as f:
            source = f.read()
        self.assertEqual(sorted(n for n in names if f'"{n}' not in source), [])
        self.assertTrue(json.loads(seed("01-basic.caddy-2.6.2.json"))["apps"]["http"]["servers"])
