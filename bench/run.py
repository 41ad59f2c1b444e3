#!/usr/bin/env python3
"""txcaddy's reverse-proxy benchmark (Python 3 stdlib; needs wrk and nginx).

    python bench/run.py --compare txcaddy caddy            # the tables of docs/performance.md
    python bench/run.py -t before=txcaddy@/tmp/before -t txcaddy -t caddy --ref caddy

Starts an nginx backend on 127.0.0.1, every target at once on its own port,
and runs each scenario as interleaved rounds (A B, B A, A B, ...) so that the
runs compared are seconds apart.  Per run it records req/s, MiB/s, latency
p50/p99, errors, the proxy's CPU seconds and peak RSS (process tree, /proc),
and the CPU other processes took meanwhile (a disturbed run is repeated).
JSON lines go to stdout (and --json-out), the summary with ratios to the
reference target follows.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

if not __package__:  # run as a script: make the bench package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import scenarios as registry  # noqa: E402
from bench.backend import Backend  # noqa: E402
from bench.clients import (  # noqa: E402
    LoadSettings,
    check_grpc_call,
    client_for,
    run_h2load,
    run_sse,
    run_wrk,
    wrk_script,
)
from bench.procs import (  # noqa: E402
    CLOCK_TICKS,
    CpuTicks,
    MemorySampler,
    check_port,
    cpu_seconds,
    descendants,
    machine_ticks,
    memory_kb,
    parse_cpu_list,
)
from bench.scenarios import Scenario  # noqa: E402
from bench.stats import Result, summary  # noqa: E402
from bench.targets import (  # noqa: E402
    Target,
    TargetSpec,
    builtin_specs,
    checkout_revision,
    load_targets_file,
    make_tls_certificate,
    resolve,
    tls_files,
)

T = TypeVar("T")

#: A target's TLS listener is its plain port plus this.
TLS_PORT_OFFSET = 5
#: Targets listen on --proxy-port, then every this many ports up.
TARGET_PORT_STEP = 10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to measure")
    what.add_argument("-t", "--target", action="append", default=[], metavar="TARGET",
                      help="a target: txcaddy, caddy, nginx, direct, one of --targets-file, "
                           "txcaddy@/path/to/checkout; LABEL=TARGET names it (repeatable)")
    what.add_argument("--compare", nargs=2, metavar=("A", "B"),
                      help="measure A and B interleaved and report A/B (B is the reference)")
    what.add_argument("--ref", help="reference for the ratios (default: B of --compare, "
                                    "else the first target)")
    what.add_argument("--direct", action="store_true",
                      help="also measure the backend alone (the load side's ceiling)")
    what.add_argument("--targets-file", action="append", default=[], metavar="JSON",
                      help="more targets (format in bench/README.md)")
    what.add_argument("-s", "--scenarios", default=",".join(registry.DEFAULT),
                      help="comma list from: " + ",".join(registry.REGISTRY))
    what.add_argument("--list", action="store_true", help="list targets and scenarios")
    how = p.add_argument_group("how long and how hard")
    how.add_argument("--rounds", type=int,
                     help="rounds per scenario (default: 5 with several targets, else 1)")
    how.add_argument("-d", "--duration", type=int, default=5, help="seconds per measured run")
    how.add_argument("--warmup", type=float, default=2.0,
                     help="warm-up seconds before each measured run (a target's own 'warmup' "
                          "replaces it in the first round)")
    how.add_argument("-c", "--connections", type=int, default=64)
    how.add_argument("--threads", type=int, help="wrk threads (default: number of load CPUs)")
    how.add_argument("--wrk-timeout", type=int, default=10,
                     help="a request slower than this (s) counts as an error")
    how.add_argument("--sse-streams", type=int, default=64)
    how.add_argument("--sse-interval-ms", type=float, default=50.0)
    machine = p.add_argument_group("the machine")
    machine.add_argument("--pin", choices=("split", "none"), default="split",
                         help="split: proxies on --proxy-cpus, everything else on --load-cpus")
    machine.add_argument("--proxy-cpus", default="1")
    machine.add_argument("--load-cpus", default="0")
    machine.add_argument("--max-foreign", type=float, default=20.0,
                         help="repeat a run when other processes used more than this %% of a "
                              "core during it")
    machine.add_argument("--retries", type=int, default=2, help="repeats of a disturbed run")
    machine.add_argument("--wait-quiet", type=float, default=120.0,
                         help="before a run, wait up to this many s for a quiet machine (0: no)")
    machine.add_argument("--backend-port", type=int, default=18080)
    machine.add_argument("--sse-port", type=int, default=18082)
    machine.add_argument("--backend-h2c-port", type=int, default=18083,
                         help="the backend's h2c listener (gRPC scenarios only)")
    machine.add_argument("--proxy-port", type=int, default=18081)
    machine.add_argument("--backend-workers", type=int, default=1)
    machine.add_argument("--python", default=sys.executable,
                         help="interpreter for txcaddy targets ({python})")
    out = p.add_argument_group("output")
    out.add_argument("--json-out", metavar="FILE", help="append the JSON lines to FILE")
    out.add_argument("--keep-workdir", action="store_true",
                     help="keep the temporary dir (configs, logs)")
    return p


@dataclass
class Plan:
    """What a run does, decided from the command line before anything starts."""

    specs: list[TargetSpec]
    scenarios: list[Scenario]
    rounds: int
    reference: str | None
    proxy_cpus: set[int] | None
    load_cpus: set[int] | None
    settings: LoadSettings

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def tls(self) -> bool:
        """Whether a scenario needs the targets' TLS listeners (and a certificate).

        HTTP/2 scenarios do: the h2_config template has the TLS listener too.
        """
        return self.h2 or any(s.scheme == "https" for s in self.scenarios)

    @property
    def h2(self) -> bool:
        """Whether a scenario speaks HTTP/2: then every target runs its h2_config."""
        return any(s.protocol == "h2" for s in self.scenarios)

    @property
    def grpc(self) -> bool:
        """Whether a scenario is a gRPC call: then every target runs its grpc_config and
        the backend opens its h2c listener."""
        return any(s.grpc for s in self.scenarios)


def known_targets(args: argparse.Namespace) -> dict[str, TargetSpec]:
    """The built-in targets plus those of --targets-file (which may override them)."""
    known = builtin_specs()
    for path in args.targets_file:
        known.update(load_targets_file(path))
    return known


def make_plan(args: argparse.Namespace) -> Plan:
    """Check the command line; raises ValueError/KeyError/LookupError with a message."""
    known = known_targets(args)
    wanted = list(args.compare or []) + [t for t in args.target if t not in (args.compare or [])]
    if args.direct and "direct" not in wanted:
        wanted.insert(0, "direct")
    if not wanted:
        raise ValueError("nothing to measure: give --compare A B or -t TARGET")
    specs = [resolve(w, known) for w in wanted]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two targets share a name in {names}; label them: LABEL=TARGET")
    reference = args.ref or (specs[1].name if args.compare else names[0])
    if reference not in names:
        raise ValueError(f"--ref {reference} is not one of the targets {names}")
    chosen = registry.select(args.scenarios)
    if not chosen:
        raise ValueError("no scenario selected")
    for scenario in chosen:
        client_for(scenario)  # refuses protocols without a client before anything starts
        if scenario.scheme == "https":
            for spec in specs:
                if not spec.tls_config and not spec.direct:
                    raise LookupError(f"scenario {scenario.name} needs a TLS listener; "
                                      f"target {spec.name} has no tls_config")
        if scenario.protocol == "h2":
            for spec in specs:
                if not spec.h2_config:
                    raise LookupError(f"scenario {scenario.name} speaks HTTP/2; "
                                      f"target {spec.name} has no h2_config")
        if scenario.grpc:
            for spec in specs:
                if not spec.grpc_config:
                    raise LookupError(f"scenario {scenario.name} is a gRPC call; "
                                      f"target {spec.name} has no grpc_config")
    if args.pin == "split":
        proxy_cpus, load_cpus = parse_cpu_list(args.proxy_cpus), parse_cpu_list(args.load_cpus)
    else:
        proxy_cpus = load_cpus = None
    threads = args.threads or (len(load_cpus) if load_cpus else os.cpu_count() or 1)
    settings = LoadSettings(duration=args.duration, connections=args.connections,
                            threads=threads, timeout_s=args.wrk_timeout,
                            sse_streams=args.sse_streams, sse_interval_ms=args.sse_interval_ms)
    rounds = args.rounds or (5 if len(specs) > 1 else 1)
    return Plan(specs, chosen, rounds, reference, proxy_cpus, load_cpus, settings)


def round_order(targets: Sequence[T], round_number: int) -> list[T]:
    """A B C in odd rounds, C B A in even ones: each target's average position is the same."""
    return list(targets) if round_number % 2 else list(reversed(targets))


def warmup_seconds(spec: TargetSpec, option: float, first_round: bool) -> float:
    """The target's own warm-up applies in full to a scenario's first round only."""
    own = option if spec.warmup is None else spec.warmup
    return own if first_round else min(own, option)


def busy_percent(before: dict[str, CpuTicks], after: dict[str, CpuTicks],
                 seconds: float) -> float:
    """Busy time of all CPUs between two /proc/stat readings, in % of one core."""
    busy = sum(after[c].busy - before[c].busy for c in after if c in before) / CLOCK_TICKS
    return 100.0 * busy / max(seconds, 1e-3)


def per_cpu_percent(before: dict[str, CpuTicks], after: dict[str, CpuTicks],
                    attribute: str) -> dict[str, float]:
    """One /proc/stat counter per CPU, in % of that CPU's time between two readings."""
    out = {}
    for cpu in sorted(after):
        total = max(1, after[cpu].total - before[cpu].total)
        delta = getattr(after[cpu], attribute) - getattr(before[cpu], attribute)
        out[cpu] = round(100.0 * delta / total, 1)
    return out


class Harness:
    """One benchmark run: the backend, the targets, the measured runs."""

    def __init__(self, plan: Plan, args: argparse.Namespace, workdir: str,
                 json_out: TextIO | None) -> None:
        self.plan = plan
        self.args = args
        self.workdir = workdir
        self.json_out = json_out
        self.backend = Backend(workdir, args.backend_port, args.sse_port, args.backend_workers,
                               h2c_port=args.backend_h2c_port if plan.grpc else None)
        self.targets: list[Target] = []
        self.results: list[Result] = []
        self.scripts: dict[str, str] = {}
        #: h2load's request bodies (-d) by scenario name.
        self.bodies: dict[str, str] = {}

    def wait_for_quiet(self, what: str) -> None:
        """Wait (up to --wait-quiet s) while other processes keep the CPUs busy."""
        limit = self.args.wait_quiet
        if limit <= 0:
            return
        deadline = time.monotonic() + limit
        announced = False
        while True:
            before = machine_ticks()
            time.sleep(1.0)
            busy = busy_percent(before, machine_ticks(), 1.0)
            if busy <= self.args.max_foreign:
                return
            if time.monotonic() > deadline:
                log(f"  {what}: machine still {busy:.0f}% busy, measuring anyway")
                return
            if not announced:
                log(f"  {what}: machine {busy:.0f}% busy, waiting up to {limit:.0f} s")
                announced = True

    def load(self, target: Target, scenario: Scenario, duration: float) -> dict[str, Any]:
        """Load ``target`` with the scenario's client for ``duration`` s; the raw result."""
        if client_for(scenario) == "sse":
            return run_sse(target.port, self.plan.settings, duration)
        if client_for(scenario) == "h2load":
            return run_h2load(scenario, target.url(scenario), self.plan.settings,
                              max(1, round(duration)), data=self.bodies.get(scenario.name))
        return run_wrk(scenario, target.url(scenario), self.scripts[scenario.name],
                       self.plan.settings, max(1, round(duration)))

    def measure_once(self, target: Target, scenario: Scenario) -> Result:
        """One measured run: the load, plus what it cost the proxy, the backend and others."""
        root = target.process.pid if target.process else None
        proxy_before = cpu_seconds(descendants(root)) if root else 0.0
        backend_before = self.backend.cpu_seconds()
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        machine_before = machine_ticks()
        started = time.monotonic()
        sampler = MemorySampler(root) if root else None
        if sampler:
            with sampler:
                raw = self.load(target, scenario, self.args.duration)
        else:
            raw = self.load(target, scenario, self.args.duration)
        proxy_tree = descendants(root) if root else []
        proxy_cpu = cpu_seconds(proxy_tree) - proxy_before if root else None
        machine_after = machine_ticks()
        wall = time.monotonic() - started
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        backend_cpu = self.backend.cpu_seconds() - backend_before
        requests, seconds = raw["requests"], raw["duration_s"]
        result: Result = {
            "target": target.name, "scenario": scenario.name, "client": client_for(scenario),
            "rps": requests / seconds if seconds else 0.0,
            "mib_s": raw["bytes"] / seconds / 2**20 if seconds else 0.0,
            "p50_ms": None if raw["p50_us"] is None else raw["p50_us"] / 1000.0,
            "p99_ms": None if raw["p99_us"] is None else raw["p99_us"] / 1000.0,
            "errors": raw["errors"], "requests": requests, "duration_s": round(seconds, 3),
            "backend_cpu_s": round(backend_cpu, 3),
            "proxy_cpu_s": None if proxy_cpu is None else round(proxy_cpu, 3),
            "cpu_s_per_10k": (round(proxy_cpu / requests * 1e4, 4)
                              if proxy_cpu is not None and requests else None),
            "rss_peak_mb": round(sampler.peak_kb / 1024, 1) if sampler else None,
            "rss_hwm_mb": round(memory_kb(proxy_tree)[1] / 1024, 1) if root else None,
            "nprocs": len(set(proxy_tree) | sampler.seen) if sampler else None,
            "cpu_busy_pct": per_cpu_percent(machine_before, machine_after, "busy"),
            "cpu_steal_pct": per_cpu_percent(machine_before, machine_after, "steal"),
        }
        split = [per_cpu_percent(machine_before, machine_after, a)
                 for a in ("user", "system", "softirq")]
        result["cpu_usr_sys_si_pct"] = {cpu: [part[cpu] for part in split] for cpu in split[0]}
        if raw.get("p99_us") is None and raw.get("mean_us") is not None:
            # h2load: no percentiles, so its mean, sd and max of the request times
            for key in ("mean", "sd", "max"):
                result[key + "_ms"] = raw[key + "_us"] / 1000.0
        if raw.get("messages") is not None:
            result["messages_s"] = raw["messages"] / seconds if seconds else 0.0
        for key in ("wrk_cpu_s", "protocol", "status_2xx", "status_3xx", "status_4xx", "status_5xx", "err_connect", "err_read", "err_write", "err_status",
                    "err_timeout", "error_detail", "expected_events"):
            if raw.get(key):
                result[key] = raw[key]
        harness_cpu = (self_after.ru_utime + self_after.ru_stime
                       - self_before.ru_utime - self_before.ru_stime)
        ours = (proxy_cpu or 0.0) + backend_cpu + (raw.get("client_cpu_s") or 0.0) + harness_cpu
        everyone = busy_percent(machine_before, machine_after, wall) * wall / 100.0
        result["foreign_cpu_pct"] = round(max(0.0, 100.0 * (everyone - ours) / wall), 1)
        return result

    def measure(self, target: Target, scenario: Scenario, round_number: int) -> Result:
        """Warm up, then measure; repeat a run that other processes disturbed."""
        what = f"{target.name}/{scenario.name} round {round_number}"
        if scenario.grpc and round_number == 1:
            check_grpc_call(scenario, target.url(scenario), self.bodies[scenario.name])
        self.wait_for_quiet(what)
        warm = warmup_seconds(target.spec, self.args.warmup, round_number == 1)
        if warm > 0:
            self.load(target, scenario, min(warm, 3.0) if client_for(scenario) == "sse" else warm)
        best: Result | None = None
        for attempt in range(1, self.args.retries + 2):
            if attempt > 1:
                self.wait_for_quiet(what + " retry")
            result = self.measure_once(target, scenario)
            result = {"round": round_number, **result, "attempt": attempt}
            if best is None or result["foreign_cpu_pct"] < best["foreign_cpu_pct"]:
                best = result
            if result["foreign_cpu_pct"] <= self.args.max_foreign:
                break
            log(f"  {what}: other processes used {result['foreign_cpu_pct']:.0f}% of a core, "
                + ("repeating" if attempt <= self.args.retries else "keeping the calmest run"))
        assert best is not None
        return best

    def emit(self, result: Result) -> None:
        line = json.dumps(result)
        print(line, flush=True)
        if self.json_out:
            self.json_out.write(line + "\n")
            self.json_out.flush()

    def start_targets(self) -> None:
        """Start every target on its own port; one that fails is left out of the run."""
        for i, spec in enumerate(self.plan.specs):
            port = self.args.proxy_port + TARGET_PORT_STEP * i
            target = Target(spec, self.workdir, port, port + TLS_PORT_OFFSET,
                            self.args.backend_port, self.args.python,
                            backend_h2c_port=self.backend.h2c_port)
            log(f"starting {spec.name}")
            try:
                target.start(self.plan.proxy_cpus, tls=self.plan.tls, h2=self.plan.h2,
                             grpc=self.plan.grpc)
            except Exception as e:
                target.stop()
                log(f"target {spec.name} did not start: {e}")
                continue
            self.targets.append(target)

    def run(self) -> None:
        """Every scenario, as interleaved rounds over the running targets."""
        for scenario in self.plan.scenarios:
            if client_for(scenario) == "wrk":
                path = os.path.join(self.workdir, f"{scenario.name}.lua")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(wrk_script(scenario))
                self.scripts[scenario.name] = path
            elif scenario.body_bytes and client_for(scenario) == "h2load":
                path = os.path.join(self.workdir, f"{scenario.name}.body")
                with open(path, "wb") as body:
                    body.write(scenario.request_body())
                self.bodies[scenario.name] = path
        self.backend.start()
        self.start_targets()
        for scenario in self.plan.scenarios:
            for round_number in range(1, self.plan.rounds + 1):
                for target in round_order(self.targets, round_number):
                    if not target.running():
                        continue
                    try:
                        result = self.measure(target, scenario, round_number)
                    except Exception as e:  # the other targets and scenarios go on
                        result = {"round": round_number, "target": target.name,
                                  "scenario": scenario.name, "failed": repr(e)[:500]}
                        log(f"FAILED {target.name}/{scenario.name}: {e!r}")
                    self.emit(result)
                    self.results.append(result)

    def stop(self) -> None:
        """Stop the targets and the backend (their process groups)."""
        for target in self.targets:
            target.stop()
        self.backend.stop()


def meta_line(plan: Plan, args: argparse.Namespace) -> Result:
    """The first line of a --json-out file: enough to tell later how the run was made."""
    return {
        "kind": "meta", "harness": "txcaddy bench/run.py",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets": plan.names, "reference": plan.reference, "rounds": plan.rounds,
        "scenarios": [s.name for s in plan.scenarios], "pin": args.pin,
        "interleave": "scenario",
        "proxy_cpus": sorted(plan.proxy_cpus) if plan.proxy_cpus else None,
        "load_cpus": sorted(plan.load_cpus) if plan.load_cpus else None,
        "connections": plan.settings.connections, "threads": plan.settings.threads,
        "duration": args.duration, "warmup": args.warmup,
        "sse_streams": plan.settings.sse_streams,
        "sse_interval_ms": plan.settings.sse_interval_ms,
        "cmds": {s.name: s.cmd for s in plan.specs},
        "checkouts": {s.name: {"path": s.checkout, "revision": checkout_revision(s.checkout)}
                      for s in plan.specs if s.checkout},
        "python": args.python, "kernel": platform.release(), "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Check the plan, run it, clean up, print the summary; 130 when interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name, spec in sorted(known_targets(args).items()):
            print(f"target   {name:<12} {spec.cmd or '(no proxy: the backend alone)'}")
        print("target   txcaddy@PATH  txcaddy from another checkout")
        for scenario in registry.REGISTRY.values():
            print(f"scenario {scenario.name:<12} {scenario.description}")
        return 0
    try:
        plan = make_plan(args)
        ports = [args.backend_port, args.sse_port]
        if plan.grpc:
            ports.append(args.backend_h2c_port)
        for i in range(len(plan.specs)):
            port = args.proxy_port + TARGET_PORT_STEP * i
            ports += [port, port + TLS_PORT_OFFSET] if plan.tls else [port]
        if len(set(ports)) != len(ports):
            raise ValueError(f"ports overlap: {ports}")
        for port in ports:
            check_port(port)
    except (ValueError, KeyError, LookupError) as e:
        parser.error(str(e.args[0] if e.args else e))
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (apt-get install -y wrk nginx-light caddy)")
    if plan.h2 and (shutil.which("h2load") is None or
                    (plan.grpc and shutil.which("nghttp") is None)):
        parser.error("h2load/nghttp are not installed (apt-get install -y nghttp2-client)")

    if plan.load_cpus:
        os.sched_setaffinity(0, plan.load_cpus)  # inherited by wrk, the backend, the SSE source
    # SIGTERM stops the run as ^C does: the finally below stops every process group.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = tempfile.mkdtemp(prefix="txcaddy-bench-")
    json_out = open(args.json_out, "a", encoding="utf-8") if args.json_out else None
    log(f"targets {plan.names} (reference {plan.reference}); scenarios "
        f"{[s.name for s in plan.scenarios]}; {plan.rounds} round(s) of {args.duration} s; "
        f"pin {args.pin} (proxy cpus {args.proxy_cpus}, load cpus {args.load_cpus}); "
        f"workdir {workdir}")
    harness = Harness(plan, args, workdir, json_out)
    interrupted = False
    try:
        if json_out:
            json_out.write(json.dumps(meta_line(plan, args)) + "\n")
        if plan.tls:
            make_tls_certificate(*tls_files(workdir))
        harness.run()
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted")
    finally:
        harness.stop()
        if json_out:
            json_out.close()
        if args.keep_workdir:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(summary(harness.results, plan.names, [s.name for s in plan.scenarios], plan.reference))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
