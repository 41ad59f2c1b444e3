"""Tests for the gRPC scenarios of bench/: messages, h2load and nghttp, backend, targets, plan.

As in test_run, nothing here starts h2load, nghttp, nginx or a proxy; the
client runners are given recorded output through a stand-in subprocess.run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bench import backend, clients, rendering, run, scenarios, targets
from bench.scenarios import Scenario
from txcaddy.caddyfile.adapter import adapt

from .test_run import H2LOAD_STDOUT

UNARY = scenarios.REGISTRY["grpc-unary"]
STREAM = scenarios.REGISTRY["grpc-stream"]

#: nghttp 1.52.0 -v -n, one grpc-stream call through Caddy 2.6.2 (h2c upstream
#: to the bench's nginx), trimmed to the lines the parser reads and a few others.
NGHTTP_STDOUT = """[  0.000] Connected
[  0.000] send HEADERS frame <length=88, flags=0x24, stream_id=13>
          :method: POST
          :path: /bench.Bench/ServerStream
          content-type: application/grpc
          te: trailers
[  0.000] send DATA frame <length=105, flags=0x01, stream_id=13>
          ; END_STREAM
[  0.001] recv SETTINGS frame <length=30, flags=0x00, stream_id=0>
          [SETTINGS_MAX_FRAME_SIZE(0x05):1048576]
[  0.003] recv (stream_id=13) :status: 200
[  0.003] recv (stream_id=13) content-type: application/grpc
[  0.003] recv (stream_id=13) server: Caddy
[  0.003] recv (stream_id=13) server: nginx/1.22.1
[  0.003] recv (stream_id=13) content-length: 10500
[  0.003] recv HEADERS frame <length=105, flags=0x04, stream_id=13>
          ; END_HEADERS
[  0.003] recv DATA frame <length=8192, flags=0x00, stream_id=13>
[  0.003] recv DATA frame <length=2308, flags=0x00, stream_id=13>
[  0.003] recv (stream_id=13) grpc-status: 0
[  0.003] recv HEADERS frame <length=12, flags=0x05, stream_id=13>
          ; END_STREAM | END_HEADERS
[  0.003] send GOAWAY frame <length=8, flags=0x00, stream_id=0>
"""


class MessageTests(SynchronousTestCase):
    def test_message_is_length_prefixed(self) -> None:
        """A gRPC message is flag 0, a 4-byte big-endian length, then the payload."""
        self.assertEqual(scenarios.grpc_message(b"abc"), b"\x00\x00\x00\x00\x03abc")
        self.assertEqual(len(scenarios.GRPC_PAYLOAD), 100)
        self.assertEqual(UNARY.request_body(), b"\x00\x00\x00\x00\x64" + scenarios.GRPC_PAYLOAD)

    def test_grpc_scenarios_are_h2c_posts_outside_the_default(self) -> None:
        """Both POST one message over h2c with gRPC's headers, 4 × 100 streams, opt-in."""
        for scenario, messages in ((UNARY, 1), (STREAM, 100)):
            self.assertEqual((scenario.protocol, scenario.scheme, scenario.method,
                              scenario.body_bytes, scenario.streams, scenario.connections,
                              scenario.grpc_messages), ("h2", "http", "POST", 105, 100, 4, messages))
            self.assertEqual(scenario.request_headers(),
                             [("content-type", "application/grpc"), ("te", "trailers")])
            self.assertNotIn(scenario.name, scenarios.DEFAULT)
        self.assertEqual(clients.client_for(UNARY), "h2load")
        self.assertFalse(scenarios.REGISTRY["h2c-small"].grpc)

    def test_a_grpc_call_must_be_an_h2c_post(self) -> None:
        """A gRPC scenario over HTTP/1.1, TLS or GET is refused at registration."""
        good = dict(description="x", path="/p", method="POST", body_bytes=105, protocol="h2",
                    grpc_messages=1)
        for bad in ({"protocol": "http/1.1"}, {"scheme": "https"}, {"method": "GET"}):
            fields: dict[str, Any] = dict(good, **bad)
            self.assertRaises(ValueError, scenarios.register, Scenario("bad-grpc", **fields))
        self.assertNotIn("bad-grpc", scenarios.REGISTRY)


class H2loadGrpcTests(SynchronousTestCase):
    def fake_h2load(self, stdout: str) -> list[list[str]]:
        """Make clients.subprocess.run answer ``stdout``; returns the argv lists it was given."""
        calls: list[list[str]] = []

        def fake_run(argv: list[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
            calls.append(argv)
            return subprocess.CompletedProcess(argv, 0, stdout, "")

        self.patch(clients.subprocess, "run", fake_run)
        return calls

    settings = clients.LoadSettings(duration=3, connections=64, threads=1, timeout_s=10,
                                    sse_streams=1, sse_interval_ms=50.0)

    def test_command_line_posts_the_body_file(self) -> None:
        """-d carries the body file, after the gRPC header fields."""
        argv = clients.h2load_argv("http://127.0.0.1:18081/bench.Bench/Unary", duration=3,
                                   connections=4, threads=1, streams=100,
                                   headers=UNARY.request_headers(), data="/w/grpc-unary.body")
        self.assertEqual(argv, ["h2load", "-t", "1", "-c", "4", "-m", "100", "-D", "3",
                                "-H", "content-type: application/grpc", "-H", "te: trailers",
                                "-d", "/w/grpc-unary.body",
                                "http://127.0.0.1:18081/bench.Bench/Unary"])

    def test_status_codes_are_parsed(self) -> None:
        """h2load's status-code line and its succeeded count are in the result."""
        result = clients.parse_h2load_output(H2LOAD_STDOUT)
        self.assertEqual((result["succeeded"], result["status_2xx"], result["status_4xx"]),
                         (38974, 38988, 0))

    def test_stream_run_counts_messages(self) -> None:
        """A grpc-stream run's messages are its 2xx calls times 100; h2load got -d and -c 4."""
        calls = self.fake_h2load(H2LOAD_STDOUT)
        result = clients.run_h2load(STREAM, "http://127.0.0.1:18081/bench.Bench/ServerStream",
                                    self.settings, 3, data="/w/grpc-stream.body")
        self.assertEqual(result["messages"], 38974 * 100)
        self.assertEqual(calls[0][calls[0].index("-d") + 1], "/w/grpc-stream.body")
        self.assertEqual(calls[0][calls[0].index("-c") + 1], "4")

    def test_run_without_a_2xx_answer_fails(self) -> None:
        """Every answer an error status (a 404 from the backend): a failure, not a result."""
        text = H2LOAD_STDOUT.replace("38974 succeeded, 0 failed", "0 succeeded, 38974 failed")
        text = text.replace("38988 2xx, 0 3xx, 0 4xx", "0 2xx, 0 3xx, 38988 4xx")
        self.fake_h2load(text)
        error = self.assertRaises(RuntimeError, clients.run_h2load, UNARY,
                                  "http://127.0.0.1:18081/bench.Bench/Unary", self.settings, 3,
                                  data="/w/b")
        self.assertIn("no 2xx answer (0 2xx, 0 3xx, 38988 4xx, 0 5xx)", str(error))

    def test_body_without_its_file_is_refused(self) -> None:
        """A scenario with a body run without -d would measure GETs: refused before h2load runs."""
        calls = self.fake_h2load(H2LOAD_STDOUT)
        self.assertRaises(RuntimeError, clients.run_h2load, UNARY,
                          "http://127.0.0.1:18081/bench.Bench/Unary", self.settings, 3)
        self.assertEqual(calls, [])


class NghttpCheckTests(SynchronousTestCase):
    def test_call_is_parsed(self) -> None:
        """Status, fields before the body, DATA bytes and the fields after it (trailers)."""
        call = clients.parse_nghttp_call(NGHTTP_STDOUT)
        self.assertEqual((call["status"], call["body_bytes"], call["trailers"]),
                         (200, 10500, {"grpc-status": "0"}))
        self.assertEqual(call["headers"]["content-type"], "application/grpc")
        self.assertNotIn("grpc-status", call["headers"])
        self.assertIsNone(clients.grpc_call_problem(call, STREAM))

    def test_lost_trailer_is_a_problem(self) -> None:
        """A proxy that drops the grpc-status trailer fails the check."""
        text = NGHTTP_STDOUT.replace("recv (stream_id=13) grpc-status: 0", "")
        problem = clients.grpc_call_problem(clients.parse_nghttp_call(text), STREAM)
        self.assertEqual(problem, "trailers {}, no grpc-status: 0")

    def test_wrong_answer_is_a_problem(self) -> None:
        """A short body, another status or content-type each fail the check."""
        call = clients.parse_nghttp_call(NGHTTP_STDOUT)
        self.assertEqual(clients.grpc_call_problem(call, UNARY), "10500 body bytes, not 105")
        self.assertEqual(clients.grpc_call_problem(dict(call, status=404), STREAM), "status 404")
        other = dict(call, headers={"content-type": "text/html"})
        self.assertEqual(clients.grpc_call_problem(other, STREAM), "content-type 'text/html'")

    def test_check_runs_nghttp_and_raises(self) -> None:
        """check_grpc_call sends the body with gRPC's headers and raises on a bad answer."""
        calls: list[list[str]] = []

        def fake_run(argv: list[str], **_kwargs: object) -> subprocess.CompletedProcess[str]:
            calls.append(argv)
            return subprocess.CompletedProcess(argv, 0, NGHTTP_STDOUT, "")

        self.patch(clients.subprocess, "run", fake_run)
        url = "http://127.0.0.1:18081/bench.Bench/ServerStream"
        clients.check_grpc_call(STREAM, url, "/w/b")
        self.assertEqual(calls[0], ["nghttp", "-v", "-n", "-d", "/w/b", "-H",
                                    "content-type: application/grpc", "-H", "te: trailers", url])
        self.assertRaises(RuntimeError, clients.check_grpc_call, UNARY, url, "/w/b")


class BackendGrpcTests(SynchronousTestCase):
    def prepare(self, h2c_port: int | None) -> tuple[backend.Backend, str]:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        server = backend.Backend(workdir, 18080, 18082, h2c_port=h2c_port)
        with open(server._prepare()) as f:
            return server, f.read()

    def test_h2c_listener_serves_the_grpc_answers(self) -> None:
        """With h2c_port: an http2 listener, application/grpc, the trailer, the answer files."""
        server, conf = self.prepare(18083)
        self.assertIn("listen 127.0.0.1:18083 http2 backlog=4096;", conf)
        self.assertIn("add_trailer grpc-status 0 always;", conf)
        self.assertIn("default_type application/grpc;", conf)
        self.assertIn("error_page 405 =200 $uri;", conf)
        self.assertNotRegex(conf, r"\{[a-z_]+\}")
        for scenario in (UNARY, STREAM):
            with open(os.path.join(server.dir, "grpc", scenario.path.lstrip("/")), "rb") as f:
                body = f.read()
            self.assertEqual(body, scenarios.grpc_message() * scenario.grpc_messages)
        self.assertEqual(len(backend.grpc_answers()[STREAM.path]), 10500)

    def test_without_h2c_port_no_grpc_server(self) -> None:
        """Runs without gRPC scenarios get the backend as before: no h2c listener, no files."""
        server, conf = self.prepare(None)
        self.assertNotIn("http2", conf)
        self.assertNotIn("{grpc_server}", conf)
        self.assertFalse(os.path.exists(os.path.join(server.dir, "grpc")))


class TargetGrpcTests(SynchronousTestCase):
    def test_grpc_template_proxies_over_h2c(self) -> None:
        """txcaddy and Caddy run Caddyfile-grpc: HTTP/2 on, upstream the backend's h2c listener."""
        for name in ("txcaddy", "caddy"):
            target = targets.Target(targets.builtin_specs()[name], self.mktemp(), 18081, 18086,
                                    18080, sys.executable, backend_h2c_port=18083)
            os.makedirs(target.dir)
            self.assertEqual(target.url(UNARY), "http://127.0.0.1:18081/bench.Bench/Unary")
            argv = target.command(tls=True, h2=True, grpc=True)
            config = argv[argv.index("--config") + 1]
            self.assertEqual(os.path.basename(config), "Caddyfile-grpc")
            with open(config) as f:
                rendered = f.read()
            self.assertIn("reverse_proxy 127.0.0.1:18083 {", rendered)
            self.assertIn("versions h2c", rendered)

    def test_grpc_caddyfile_adapts_to_an_h2c_transport(self) -> None:
        """txcaddy's adapter reads Caddyfile-grpc cleanly: h2c upstream, h1 h2 h2c listeners."""
        values = {"port": 18081, "host": "127.0.0.1", "backend_grpc": "127.0.0.1:18083",
                  "workdir": "/tmp/w", "tls_port": 18086, "tls_cert": "/tmp/w/c.pem",
                  "tls_key": "/tmp/w/k.pem"}
        with open(os.path.join(rendering.TEMPLATES, "Caddyfile-grpc")) as f:
            config, warnings = adapt(rendering.render(f.read(), values), "Caddyfile")
        self.assertEqual(warnings, [])
        for server in config["apps"]["http"]["servers"].values():
            self.assertEqual(server["protocols"], ["h1", "h2", "h2c"])
            handler = server["routes"][0].handle[0]
            self.assertEqual(handler["upstreams"], [{"dial": "127.0.0.1:18083"}])
            self.assertEqual(handler["transport"]["versions"], ["h2c"])

    def test_grpc_needs_a_grpc_config(self) -> None:
        """nginx and direct have no gRPC config; a targets file may give one."""
        for name in ("nginx", "direct"):
            target = targets.Target(targets.builtin_specs()[name], self.mktemp(), 18081, 18086,
                                    18080, sys.executable)
            self.assertRaises(LookupError, target.url, UNARY)
        spec = targets.spec_from_json("x", {"cmd": "caddy run", "h2_config": "h2",
                                            "grpc_config": "g"}, "/etc")
        self.assertEqual(spec.grpc_config, "/etc/g")


class PlanGrpcTests(SynchronousTestCase):
    def plan(self, *argv: str) -> run.Plan:
        return run.make_plan(run.build_parser().parse_args(list(argv)))

    def test_grpc_plan(self) -> None:
        """A gRPC scenario selects the gRPC config (HTTP/2, TLS listener); nginx is refused."""
        plan = self.plan("--compare", "txcaddy", "caddy", "-s", "grpc-unary,grpc-stream")
        self.assertEqual((plan.grpc, plan.h2, plan.tls), (True, True, True))
        self.assertFalse(self.plan("--compare", "txcaddy", "caddy", "-s", "h2c-small").grpc)
        bare = targets.TargetSpec("bare", cmd="caddy run", h2_config="h2")
        self.patch(run, "builtin_specs", lambda: {"bare": bare})
        error = self.assertRaises(LookupError, self.plan, "-t", "bare", "-s", "grpc-unary")
        self.assertIn("bare has no grpc_config", str(error))

    def test_backend_h2c_port_option(self) -> None:
        """--backend-h2c-port defaults to 18083, inside the harness's port range."""
        args = run.build_parser().parse_args(["-t", "caddy"])
        self.assertEqual(args.backend_h2c_port, 18083)
