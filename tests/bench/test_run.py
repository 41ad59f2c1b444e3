"""Tests for bench/: parsing, arithmetic, templates, scenarios and targets.

Nothing here starts wrk, nginx or a proxy: only the parts of the harness that
compute are exercised.
"""

from __future__ import annotations

import json
import os
import sys

from twisted.trial.unittest import SynchronousTestCase

from bench import clients, procs, rendering, run, scenarios, sse_source, stats, tables, targets
from bench.backend import SMALL_BODY
from bench.scenarios import Scenario
from txcaddy.caddyfile.adapter import adapt

WRK_STDOUT = """Running 5s test @ http://127.0.0.1:18081/small
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms  512.00us  20.00ms   90.00%
  80551 requests in 5.01s, 18.44MB read
Requests/sec:  16091.42
Transfer/sec:      3.68MB
BENCH-WRK-RESULT {"requests":80551,"duration_us":5006000,"bytes":19334240,"err_connect":1,\
"err_read":2,"err_write":0,"err_status":3,"err_timeout":4,"mean_us":4100.5,"max_us":20000,\
"p50_us":4186,"p90_us":5000,"p99_us":6567,"p999_us":9000}
"""

#: h2load 1.52.0's output, captured against Caddy 2.6.2 on 127.0.0.1 (h2c,
#: -c 4 -m 10 -D 2 --warm-up-time 1): "finished in" counts the warm-up too.
H2LOAD_STDOUT = """starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 1s of warm-up time and 2s of main duration for measurements.
Warm-up started for thread #0.
progress: 25% of clients started
progress: 50% of clients started
progress: 75% of clients started
progress: 100% of clients started
Application protocol: h2c
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 3.00s, 19487.00 req/s, 647.21KB/s
requests: 38974 total, 38974 started, 38974 done, 38974 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 38988 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 1.26MB (1325496) total, 300.30KB (307506) headers (space savings 95.32%), 659.48KB (675312) data
                     min         max         mean         sd        +/- sd
time for request:      137us     12.05ms      2.00ms      1.30ms    78.16%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :    4633.99     5005.35     4871.25      164.18    75.00%
"""


class WrkTests(SynchronousTestCase):
    def test_result_line_is_parsed(self) -> None:
        """The done() hook's line gives requests, bytes, latency and the duration in seconds."""
        result = clients.parse_wrk_output(WRK_STDOUT)
        self.assertEqual(result["requests"], 80551)
        self.assertEqual(result["bytes"], 19334240)
        self.assertEqual(result["p99_us"], 6567)
        self.assertAlmostEqual(result["duration_s"], 5.006)
        self.assertNotIn("duration_us", result)

    def test_errors_are_the_sum_of_every_kind(self) -> None:
        """errors adds connect, read, write, status and timeout errors."""
        self.assertEqual(clients.parse_wrk_output(WRK_STDOUT)["errors"], 10)

    def test_output_without_result_line_is_refused(self) -> None:
        """wrk output without the hook's line (wrk failed) raises ValueError."""
        self.assertRaises(ValueError, clients.parse_wrk_output, "unable to connect\n")

    def test_post_script_sends_the_body(self) -> None:
        """post16k's script sets the method, a 16 KiB body and its Content-Type."""
        script = clients.wrk_script(scenarios.REGISTRY["post16k"])
        self.assertIn('wrk.method = "POST"', script)
        self.assertIn('wrk.body = string.rep("x", 16384)', script)
        self.assertIn('wrk.headers["Content-Type"] = "application/octet-stream"', script)
        self.assertIn(clients.WRK_MARKER, script)

    def test_close_script_asks_for_a_connection_per_request(self) -> None:
        """close's script sends Connection: close and keeps GET."""
        script = clients.wrk_script(scenarios.REGISTRY["close"])
        self.assertIn('wrk.headers["Connection"] = "close"', script)
        self.assertNotIn("wrk.method", script)

    def test_hook_format_is_lua_not_python(self) -> None:
        """The hook's format string reaches Lua with single percent signs."""
        self.assertIn('"requests":%d', clients.wrk_script(scenarios.REGISTRY["small"]))
        self.assertNotIn("%%", clients.wrk_script(scenarios.REGISTRY["small"]))

    def test_lua_strings_are_escaped(self) -> None:
        """Quotes and backslashes in header values cannot end the Lua string."""
        self.assertEqual(clients.lua_string('a"b\\c'), '"a\\"b\\\\c"')

    def test_command_line_is_bounded_in_time(self) -> None:
        """wrk runs for the given seconds with a request timeout and latency percentiles."""
        argv = clients.wrk_argv("http://127.0.0.1:18081/small", "s.lua", duration=5,
                                connections=64, threads=1, timeout_s=10)
        self.assertEqual(argv, ["wrk", "-t", "1", "-c", "64", "-d", "5s", "--timeout", "10s",
                                "--latency", "-s", "s.lua", "http://127.0.0.1:18081/small"])


class H2loadTests(SynchronousTestCase):
    def test_summary_is_parsed(self) -> None:
        """Requests done, total bytes and the protocol come from h2load's summary."""
        result = clients.parse_h2load_output(H2LOAD_STDOUT)
        self.assertEqual(result["requests"], 38974)
        self.assertEqual(result["bytes"], 1325496)
        self.assertEqual(result["protocol"], "h2c")

    def test_duration_leaves_out_the_warm_up(self) -> None:
        """The measured time is requests over h2load's req/s (2 s), not "finished in" (3 s)."""
        self.assertAlmostEqual(clients.parse_h2load_output(H2LOAD_STDOUT)["duration_s"], 2.0,
                               places=3)

    def test_latency_is_mean_sd_max_without_percentiles(self) -> None:
        """h2load gives no percentiles: p50/p99 are None, mean/sd/max/min are in microseconds."""
        result = clients.parse_h2load_output(H2LOAD_STDOUT)
        self.assertEqual((result["p50_us"], result["p99_us"]), (None, None))
        self.assertEqual((result["min_us"], result["max_us"]), (137.0, 12050.0))
        self.assertEqual((result["mean_us"], result["sd_us"]), (2000.0, 1300.0))

    def test_error_counters_map_onto_wrks(self) -> None:
        """failed is every error; errored less timeout is err_read; the rest is err_status."""
        text = H2LOAD_STDOUT.replace("38974 succeeded, 0 failed, 0 errored, 0 timeout",
                                     "38960 succeeded, 14 failed, 9 errored, 2 timeout")
        result = clients.parse_h2load_output(text)
        self.assertEqual((result["errors"], result["err_status"], result["err_read"],
                          result["err_timeout"]), (14, 5, 7, 2))
        self.assertEqual(clients.parse_h2load_output(H2LOAD_STDOUT)["errors"], 0)

    def test_durations_in_every_unit(self) -> None:
        """h2load's us, ms and s suffixes become microseconds; anything else is refused."""
        self.assertEqual([clients.h2load_microseconds(t) for t in ("137us", "12.05ms", "1.5s")],
                         [137.0, 12050.0, 1500000.0])
        self.assertRaises(ValueError, clients.h2load_microseconds, "3min")

    def test_output_without_summary_is_refused(self) -> None:
        """h2load output without its summary (it failed to start) raises ValueError."""
        self.assertRaises(ValueError, clients.parse_h2load_output,
                          "invalid URI: nowhere\n")

    def test_command_line_sets_streams_and_duration(self) -> None:
        """-m carries the scenario's streams, -D the duration, -H the extra header fields."""
        argv = clients.h2load_argv("http://127.0.0.1:18081/small", duration=5, connections=64,
                                   threads=1, streams=100, headers=[("X-A", "1")])
        self.assertEqual(argv, ["h2load", "-t", "1", "-c", "64", "-m", "100", "-D", "5",
                                "-H", "X-A: 1", "http://127.0.0.1:18081/small"])


class SseParsingTests(SynchronousTestCase):
    def test_chunked_body_across_reads(self) -> None:
        """A chunked body split at any byte decodes to the same events."""
        wire = b"9;ext=1\r\ndata: 1\n\n\r\n" + b"8\r\ndata: 22\r\n" + b"0\r\n\r\n"
        for cut in range(1, len(wire)):
            decoder = clients.ChunkedDecoder()
            body = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
            self.assertEqual(body, b"data: 1\n\ndata: 22")
            self.assertTrue(decoder.finished)

    def test_events_are_split_on_blank_lines(self) -> None:
        """Complete events come out; a partial one stays for the next read."""
        events, rest = clients.split_events(b"data: 1\n\nevent: end\ndata: 0\n\ndata: 3")
        self.assertEqual(events, [b"data: 1", b"event: end\ndata: 0"])
        self.assertEqual(rest, b"data: 3")

    def test_nearest_rank_percentile(self) -> None:
        """Percentiles pick a measured value; an empty list has none."""
        values = [float(v) for v in range(1, 101)]
        self.assertEqual(clients.percentile(values, 50), 51.0)
        self.assertEqual(clients.percentile(values, 99), 100.0)
        self.assertIsNone(clients.percentile([], 50))

    def test_source_reads_its_schedule_from_the_query(self) -> None:
        """The event source takes n and ms from the query, 100 events every 50 ms by default."""
        self.assertEqual(sse_source.stream_parameters(b"GET /sse?n=40&ms=25 HTTP/1.1"), (40, 0.025))
        self.assertEqual(sse_source.stream_parameters(b"GET /sse HTTP/1.1"), (100, 0.05))


class StatsTests(SynchronousTestCase):
    def test_median_skips_missing_values(self) -> None:
        """None (a value a run did not have) is not counted in a median."""
        self.assertEqual(stats.median([3.0, None, 1.0, 2.0]), 2.0)
        self.assertIsNone(stats.median([None]))

    def test_spread_is_min_median_max(self) -> None:
        """spread gives the lowest, the median and the highest value."""
        self.assertEqual(stats.spread([4.0, 1.0, 3.0, 2.0]), stats.Spread(1.0, 2.5, 4.0))

    def test_ratio_without_reference_is_none(self) -> None:
        """A missing or zero reference gives no ratio instead of an error."""
        self.assertEqual(stats.ratio(3.0, 2.0), 1.5)
        self.assertIsNone(stats.ratio(3.0, 0.0))
        self.assertIsNone(stats.ratio(None, 2.0))

    def test_paired_ratios_pair_rounds(self) -> None:
        """Round k is divided by the reference's round k; unpaired rounds are left out."""
        mine = {1: 110.0, 2: 90.0, 3: 50.0}
        reference = {1: 100.0, 2: 100.0, 4: 100.0}
        self.assertEqual(stats.paired_ratios(mine, reference), [1.1, 0.9])

    def test_ratio_of_medians_differs_from_median_of_pairs(self) -> None:
        """The two quoted numbers are computed independently (they can differ)."""
        mine = {1: 100.0, 2: 300.0, 3: 200.0}
        reference = {1: 50.0, 2: 400.0, 3: 100.0}
        self.assertEqual(stats.ratio(stats.median(mine.values()),
                                     stats.median(reference.values())), 2.0)
        paired = stats.spread(stats.paired_ratios(mine, reference))
        self.assertEqual(paired, stats.Spread(0.75, 2.0, 2.0))

    def test_group_leaves_out_failed_runs_and_meta(self) -> None:
        """Failed runs and the meta line are not results."""
        rows: list[stats.Result] = [{"kind": "meta"}, {"target": "a", "scenario": "small", "rps": 1.0},
                {"target": "a", "scenario": "small", "failed": "boom"}]
        self.assertEqual(stats.group(rows), {("a", "small"): [rows[1]]})

    def test_summary_shows_ratios_to_the_reference(self) -> None:
        """The summary has a ratio row per scenario, paired min/median/max included."""
        rows = []
        for rnd, (a, b) in enumerate([(110.0, 100.0), (90.0, 100.0), (120.0, 100.0)], 1):
            rows.append({"round": rnd, "target": "a", "scenario": "small", "rps": a,
                         "p99_ms": 2.0, "errors": 0})
            rows.append({"round": rnd, "target": "b", "scenario": "small", "rps": b,
                         "p99_ms": 4.0, "errors": 0})
        text = stats.summary(rows, ["a", "b"], ["small"], "b")
        self.assertIn("1.100", text)
        self.assertIn("0.900/1.100/1.200", text)
        self.assertIn("0.50", text)

    def test_bulk_scenario_compares_bytes(self) -> None:
        """1m's ratio is of MiB/s, the others' of req/s."""
        self.assertEqual(scenarios.throughput_field("1m"), "mib_s")
        self.assertEqual(scenarios.throughput_field("small"), "rps")
        self.assertEqual(scenarios.throughput_field("not-registered"), "rps")


class RenderingTests(SynchronousTestCase):
    values = {"port": 18081, "host": "127.0.0.1", "backend": "127.0.0.1:18080",
              "workdir": "/tmp/w", "listen": "127.0.0.1:18081"}

    def test_only_known_names_are_replaced(self) -> None:
        """Caddy placeholders and nginx braces survive rendering."""
        text = "{port} {http.request.host} events { x; } {unknown} {host}"
        self.assertEqual(rendering.render(text, self.values),
                         "18081 {http.request.host} events { x; } {unknown} 127.0.0.1")

    def read_template(self, name: str) -> str:
        with open(os.path.join(rendering.TEMPLATES, name)) as f:
            return rendering.render(f.read(), self.values)

    def test_caddyfile_is_a_plain_reverse_proxy(self) -> None:
        """The Caddyfile listens on the port, binds 127.0.0.1 and proxies to the backend."""
        text = self.read_template("Caddyfile")
        for line in ("admin off", "auto_https off", "http://:18081 {", "bind 127.0.0.1",
                     "reverse_proxy 127.0.0.1:18080"):
            self.assertIn(line, text)

    def test_caddyfile_adapts_without_warnings(self) -> None:
        """txcaddy's adapter takes the rendered Caddyfile as it is, warning about nothing."""
        config, warnings = adapt(self.read_template("Caddyfile"), "Caddyfile")
        self.assertEqual(warnings, [])
        self.assertEqual(config["apps"]["http"]["servers"]["srv0"]["listen"],
                         ["127.0.0.1:18081"])

    def test_h2_caddyfile_turns_http2_on_for_every_server(self) -> None:
        """Caddyfile-h2 adapts cleanly, with h1, h2 and h2c on both listeners' servers."""
        values = dict(self.values, tls_port=18086, tls_cert="/tmp/w/c.pem",
                      tls_key="/tmp/w/k.pem")
        with open(os.path.join(rendering.TEMPLATES, "Caddyfile-h2")) as f:
            text = rendering.render(f.read(), values)
        config, warnings = adapt(text, "Caddyfile")
        self.assertEqual(warnings, [])
        servers = config["apps"]["http"]["servers"]
        self.assertEqual(sorted(listen for s in servers.values() for listen in s["listen"]),
                         ["127.0.0.1:18081", "127.0.0.1:18086"])
        for server in servers.values():
            self.assertEqual(server["protocols"], ["h1", "h2", "h2c"])

    def test_nginx_proxy_config_fills_every_name(self) -> None:
        """The nginx target's config keeps no placeholder of the harness."""
        text = self.read_template("nginx-proxy.conf")
        self.assertIn("listen 127.0.0.1:18081", text)
        self.assertIn("server 127.0.0.1:18080;", text)
        self.assertNotIn("{workdir}", text)

    def test_backend_answers_exactly_100_bytes(self) -> None:
        """/small's answer is 100 bytes, escaped for nginx's return directive."""
        self.assertEqual(len(SMALL_BODY), 100)
        with open(os.path.join(rendering.TEMPLATES, "backend-nginx.conf")) as f:
            template = f.read()
        text = rendering.render(template, {"small_body": "x\\n", "dir": "/d", "workers": 1,
                                           "listen": "127.0.0.1:18080", "sse": "127.0.0.1:18082"})
        self.assertIn('return 200 "x\\n";', text)
        self.assertNotIn("{dir}", text)


class ScenarioTests(SynchronousTestCase):
    def test_the_six_scenarios_are_registered(self) -> None:
        """small, 64k, 1m, post16k, close and sse run by default."""
        self.assertEqual(scenarios.DEFAULT, ("small", "64k", "1m", "post16k", "close", "sse"))
        self.assertEqual([s.name for s in scenarios.select(",".join(scenarios.DEFAULT))],
                         list(scenarios.DEFAULT))

    def test_select_keeps_order_and_drops_repeats(self) -> None:
        """-s close,small,close gives close then small."""
        self.assertEqual([s.name for s in scenarios.select("close, small,close,")],
                         ["close", "small"])

    def test_unknown_scenario_is_refused(self) -> None:
        """A name not in the registry raises KeyError naming it."""
        error = self.assertRaises(KeyError, scenarios.select, "small,huge")
        self.assertIn("huge", str(error))

    def test_names_are_unique(self) -> None:
        """Registering a second scenario under a taken name fails."""
        self.assertRaises(ValueError, scenarios.register, Scenario("small", "again", "/small"))

    def test_definitions_match_the_earlier_results(self) -> None:
        """Paths, methods and bodies are those behind bench/results/."""
        registry = scenarios.REGISTRY
        self.assertEqual([registry[n].path for n in scenarios.DEFAULT],
                         ["/small", "/64k.bin", "/1m.bin", "/post", "/small", "/sse"])
        self.assertEqual((registry["post16k"].method, registry["post16k"].body_bytes),
                         ("POST", 16384))
        self.assertEqual(registry["close"].request_headers(), [("Connection", "close")])
        self.assertEqual(registry["small"].request_headers(), [])

    def test_client_follows_protocol(self) -> None:
        """HTTP/1.1 loads with wrk, SSE with the event client, HTTP/2 with h2load."""
        self.assertEqual(clients.client_for(scenarios.REGISTRY["small"]), "wrk")
        self.assertEqual(clients.client_for(scenarios.REGISTRY["sse"]), "sse")
        self.assertEqual(clients.client_for(scenarios.REGISTRY["h2c-small"]), "h2load")
        odd = Scenario("small-h3", "GET over HTTP/3", "/small", protocol="h3")
        self.assertRaises(LookupError, clients.client_for, odd)
        self.assertRaises(ValueError, scenarios.register, odd)

    def test_http2_scenarios_are_registered_outside_the_default(self) -> None:
        """h2c-small is cleartext prior knowledge, h2-small TLS; both 100 streams, opt-in."""
        h2c, h2 = scenarios.REGISTRY["h2c-small"], scenarios.REGISTRY["h2-small"]
        self.assertEqual((h2c.protocol, h2c.scheme, h2c.streams, h2c.path),
                         ("h2", "http", 100, "/small"))
        self.assertEqual((h2.protocol, h2.scheme, h2.streams, h2.path),
                         ("h2", "https", 100, "/small"))
        self.assertNotIn("h2c-small", scenarios.DEFAULT)
        self.assertNotIn("h2-small", scenarios.DEFAULT)


class ProcTests(SynchronousTestCase):
    def test_stat_line_with_odd_command_name(self) -> None:
        """A command name with spaces and parentheses does not shift the fields."""
        line = ("123 (we (ird) name) S 7 123 123 0 -1 4194560 100 0 0 0 "
                "250 50 10 5 20 0 1 0 100 1000 300 0")
        stat = procs.parse_stat(line)
        self.assertEqual(stat, procs.StatFields(ppid=7, utime=250, stime=50, cutime=10, cstime=5))
        self.assertEqual(stat.ticks, 315)

    def test_own_stat_is_readable(self) -> None:
        """The running test's /proc entry parses, and its parent is who os says."""
        stat = procs.stat_of(os.getpid())
        assert stat is not None
        self.assertEqual(stat.ppid, os.getppid())

    def test_proc_stat_cpus(self) -> None:
        """Per-CPU lines become busy/steal/total ticks; the all-CPU line is skipped."""
        text = ("cpu  10 0 10 100 0 0 0 0 0 0\n"
                "cpu0 5 1 4 50 2 0 3 1 0 0\n"
                "intr 1 2 3\n")
        cpus = procs.parse_proc_stat(text)
        self.assertEqual(list(cpus), ["cpu0"])
        self.assertEqual(cpus["cpu0"], procs.CpuTicks(total=66, busy=13, steal=1, user=6,
                                                      system=4, softirq=3))

    def test_status_values(self) -> None:
        """VmRSS is read in KiB; a kernel thread without it counts 0."""
        text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"
        self.assertEqual(procs.parse_status_kb(text, "VmRSS"), 1024)
        self.assertEqual(procs.parse_status_kb("Name:\tkthreadd\n", "VmRSS"), 0)

    def test_cpu_lists(self) -> None:
        """CPU lists take single CPUs, ranges and commas; none means unpinned."""
        self.assertEqual(procs.parse_cpu_list("0,2-4"), {0, 2, 3, 4})
        self.assertIsNone(procs.parse_cpu_list("none"))

    def test_ports_outside_the_range_are_refused(self) -> None:
        """Only 18000-18999 may be used."""
        self.assertRaises(ValueError, procs.check_port, 8080)


class TargetTests(SynchronousTestCase):
    def test_txcaddy_runs_this_checkout_from_source(self) -> None:
        """The txcaddy target runs txcaddy.cli with PYTHONPATH at the repository root."""
        spec = targets.builtin_specs()["txcaddy"]
        self.assertEqual(spec.checkout, targets.REPO_ROOT)
        self.assertEqual(spec.env["PYTHONPATH"].split(os.pathsep)[0], targets.REPO_ROOT)
        self.assertIn("-m txcaddy.cli run --config {config}", spec.cmd or "")

    def test_other_checkout_by_path(self) -> None:
        """txcaddy@PATH names another checkout; LABEL= renames any target."""
        known = targets.builtin_specs()
        spec = targets.resolve(f"before=txcaddy@{targets.REPO_ROOT}", known)
        self.assertEqual((spec.name, spec.checkout), ("before", targets.REPO_ROOT))
        self.assertEqual(targets.resolve("ref=caddy", known).cmd, known["caddy"].cmd)
        self.assertEqual(targets.resolve(f"txcaddy@{targets.REPO_ROOT}", known).name,
                         f"txcaddy@{targets.REPO_ROOT}")

    def test_path_without_txcaddy_is_refused(self) -> None:
        """A directory that is not a txcaddy checkout is an error, not a silent fallback."""
        self.assertRaises(ValueError, targets.resolve, f"txcaddy@{self.mktemp()}",
                          targets.builtin_specs())
        self.assertRaises(KeyError, targets.resolve, "apache", targets.builtin_specs())

    def test_targets_file_paths_are_relative_to_it(self) -> None:
        """A targets file's config and checkout paths are read relative to the file."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "targets.json")
        with open(path, "w") as f:
            json.dump({"_comment": "ignored", "pool": {"cmd": "caddy run --config {config}",
                                                       "config": "pool.caddyfile", "warmup": 8},
                       "mine": {"checkout": os.path.relpath(targets.REPO_ROOT, folder)}}, f)
        specs = targets.load_targets_file(path)
        self.assertEqual(sorted(specs), ["mine", "pool"])
        self.assertEqual(specs["pool"].config, os.path.join(folder, "pool.caddyfile"))
        self.assertEqual(specs["pool"].warmup, 8)
        self.assertEqual(os.path.realpath(specs["mine"].checkout or ""),
                         os.path.realpath(targets.REPO_ROOT))

    def test_unknown_keys_in_targets_file_are_refused(self) -> None:
        """A misspelt key is an error rather than ignored."""
        self.assertRaises(ValueError, targets.spec_from_json, "x", {"comand": "caddy"}, "/")

    def test_command_renders_config_into_the_work_dir(self) -> None:
        """The command gets the rendered config's path; the config gets the ports."""
        workdir = self.mktemp()
        target = targets.Target(targets.builtin_specs()["txcaddy"], workdir, 18081, 18086,
                                18080, sys.executable)
        os.makedirs(target.dir)
        argv = target.command(tls=False)
        config = os.path.join(target.dir, "Caddyfile")
        self.assertEqual(argv, [sys.executable, "-m", "txcaddy.cli", "run", "--config", config,
                                "--adapter", "caddyfile"])
        with open(config) as f:
            self.assertIn("reverse_proxy 127.0.0.1:18080", f.read())

    def test_https_needs_a_tls_listener(self) -> None:
        """An https scenario on a target without tls_config is refused; http uses its port."""
        target = targets.Target(targets.builtin_specs()["nginx"], self.mktemp(), 18081, 18086,
                                18080, sys.executable)
        https = Scenario("small-tls", "GET over TLS", "/small", scheme="https")
        self.assertRaises(LookupError, target.url, https)
        self.assertEqual(target.url(scenarios.REGISTRY["small"]), "http://127.0.0.1:18081/small")

    def test_https_scenarios_use_the_tls_listener(self) -> None:
        """txcaddy and Caddy serve the https-* scenarios from the Caddyfile-tls template's TLS port."""
        for name in ("txcaddy", "caddy"):
            workdir = self.mktemp()
            target = targets.Target(targets.builtin_specs()[name], workdir, 18081, 18086, 18080, sys.executable)
            os.makedirs(target.dir)
            self.assertEqual(target.url(scenarios.REGISTRY["https-small"]), "https://127.0.0.1:18086/small")
            argv = target.command(tls=True)
            with open(argv[argv.index("--config") + 1]) as f:
                rendered = f.read()
            self.assertIn("https://:18086 {", rendered)
            self.assertIn(f"tls {os.path.join(workdir, 'tls', 'cert.pem')}", rendered)

    def test_http2_scenarios_use_the_h2_template(self) -> None:
        """txcaddy and Caddy run Caddyfile-h2 (protocols h1 h2 h2c) for HTTP/2 scenarios."""
        for name in ("txcaddy", "caddy"):
            workdir = self.mktemp()
            target = targets.Target(targets.builtin_specs()[name], workdir, 18081, 18086, 18080,
                                    sys.executable)
            os.makedirs(target.dir)
            self.assertEqual(target.url(scenarios.REGISTRY["h2c-small"]),
                             "http://127.0.0.1:18081/small")
            self.assertEqual(target.url(scenarios.REGISTRY["h2-small"]),
                             "https://127.0.0.1:18086/small")
            argv = target.command(tls=True, h2=True)
            config = argv[argv.index("--config") + 1]
            self.assertEqual(os.path.basename(config), "Caddyfile-h2")
            with open(config) as f:
                rendered = f.read()
            self.assertIn("protocols h1 h2 h2c", rendered)
            self.assertIn("https://:18086 {", rendered)
            argv = target.command(tls=True)
            self.assertEqual(os.path.basename(argv[argv.index("--config") + 1]), "Caddyfile-tls")

    def test_http2_needs_an_h2_config(self) -> None:
        """nginx and direct have no HTTP/2 config: an h2 scenario's URL is refused."""
        for name in ("nginx", "direct"):
            target = targets.Target(targets.builtin_specs()[name], self.mktemp(), 18081, 18086,
                                    18080, sys.executable)
            self.assertRaises(LookupError, target.url, scenarios.REGISTRY["h2c-small"])

    def test_direct_target_is_the_backend(self) -> None:
        """direct measures the backend's own port."""
        target = targets.Target(targets.builtin_specs()["direct"], self.mktemp(), 18081, 18086,
                                18080, sys.executable)
        self.assertEqual(target.url(scenarios.REGISTRY["small"]), "http://127.0.0.1:18080/small")


class PlanTests(SynchronousTestCase):
    def plan(self, *argv: str) -> run.Plan:
        return run.make_plan(run.build_parser().parse_args(list(argv)))

    def test_compare_defaults(self) -> None:
        """--compare A B: B is the reference, 5 rounds, the six scenarios, split pinning."""
        plan = self.plan("--compare", "txcaddy", "caddy")
        self.assertEqual((plan.names, plan.reference, plan.rounds), (["txcaddy", "caddy"], "caddy", 5))
        self.assertEqual([s.name for s in plan.scenarios], list(scenarios.DEFAULT))
        self.assertEqual((plan.proxy_cpus, plan.load_cpus, plan.settings.threads), ({1}, {0}, 1))

    def test_before_after_plan(self) -> None:
        """Two checkouts and Caddy in one run, ratios to the named reference."""
        plan = self.plan("-t", f"before=txcaddy@{targets.REPO_ROOT}", "-t", "txcaddy",
                         "-t", "caddy", "--ref", "caddy", "-s", "small", "--rounds", "3")
        self.assertEqual(plan.names, ["before", "txcaddy", "caddy"])
        self.assertEqual((plan.reference, plan.rounds), ("caddy", 3))

    def test_http2_plan_runs_the_h2_config_with_a_certificate(self) -> None:
        """An h2 scenario selects h2_config and the TLS listener; without one it is refused."""
        plan = self.plan("--compare", "txcaddy", "caddy", "-s", "h2c-small")
        self.assertEqual((plan.h2, plan.tls), (True, True))
        plan = self.plan("--compare", "txcaddy", "caddy", "-s", "https-small")
        self.assertEqual((plan.h2, plan.tls), (False, True))
        error = self.assertRaises(LookupError, self.plan, "-t", "txcaddy", "-t", "nginx",
                                  "-s", "h2c-small")
        self.assertIn("nginx has no h2_config", str(error))

    def test_same_name_twice_is_refused(self) -> None:
        """Two targets with one name could not be told apart in the results."""
        self.assertRaises(ValueError, self.plan, "-t", "caddy", "-t", "x=txcaddy", "-t", "caddy")

    def test_reference_must_be_measured(self) -> None:
        """--ref names one of the targets."""
        self.assertRaises(ValueError, self.plan, "--compare", "txcaddy", "caddy", "--ref", "nginx")

    def test_rounds_alternate_order(self) -> None:
        """Odd rounds run A B C, even rounds C B A."""
        self.assertEqual(run.round_order(["a", "b", "c"], 1), ["a", "b", "c"])
        self.assertEqual(run.round_order(["a", "b", "c"], 2), ["c", "b", "a"])

    def test_target_warmup_applies_to_the_first_round(self) -> None:
        """A target's own warm-up is used in full once, then capped by --warmup."""
        spec = targets.TargetSpec("pypy", cmd="x", warmup=8.0)
        self.assertEqual(run.warmup_seconds(spec, 2.0, first_round=True), 8.0)
        self.assertEqual(run.warmup_seconds(spec, 2.0, first_round=False), 2.0)
        self.assertEqual(run.warmup_seconds(targets.TargetSpec("c", cmd="x"), 2.0, True), 2.0)

    def test_busy_percent_is_in_cores(self) -> None:
        """Two CPUs fully busy for a second read as 200 % of one core."""
        ticks = procs.CLOCK_TICKS
        before = {c: procs.CpuTicks(0, 0, 0, 0, 0, 0) for c in ("cpu0", "cpu1")}
        after = {c: procs.CpuTicks(ticks, ticks, 0, ticks, 0, 0) for c in ("cpu0", "cpu1")}
        self.assertAlmostEqual(run.busy_percent(before, after, 1.0), 200.0)
        self.assertEqual(run.per_cpu_percent(before, after, "busy"), {"cpu0": 100.0, "cpu1": 100.0})


class TablesTests(SynchronousTestCase):
    def write_run(self) -> str:
        path = self.mktemp()
        rows: list[dict[str, object]] = [{"kind": "meta", "targets": ["txcaddy", "caddy"],
                                          "scenarios": ["small", "1m"], "rounds": 2,
                                          "duration": 5}]
        for rnd in (1, 2):
            for target, rps, mib, rss in (("txcaddy", 110.0, 105.0, 60.5),
                                          ("caddy", 100.0, 100.0, 44.0)):
                for scenario in ("small", "1m"):
                    rows.append({"round": rnd, "target": target, "scenario": scenario,
                                 "rps": rps * rnd, "mib_s": mib * rnd, "p50_ms": 1.0,
                                 "p99_ms": 8.0 if target == "txcaddy" else 10.0, "errors": 0,
                                 "cpu_s_per_10k": 0.5, "rss_peak_mb": rss})
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        return path

    def test_scenario_rows_as_in_performance_md(self) -> None:
        """A row shows both req/s, the ratio with its paired spread, p99, CPU and RSS."""
        text = tables.render([tables.Run(self.write_run())], None, None)
        self.assertIn("| small | 165 | 150 | **1.10** (1.10–1.10) | 8.0 / 10.0 ms (0.80×) | "
                      "0.50 / 0.50 | 61 / 44 |", text)
        self.assertIn("| 1m | 165 (158 MiB/s) | 150 | **1.05**", text)

    def test_several_files_make_a_runs_table(self) -> None:
        """With two files, each run becomes a row of ratios of medians."""
        path = self.write_run()
        text = tables.render([tables.Run(path, "A"), tables.Run(path, "B")], "caddy", None)
        self.assertIn("| A | 1.10 | 1.05 | 0.80–0.80× | 61–61 |", text)
        self.assertIn("| B | 1.10 | 1.05 |", text)
