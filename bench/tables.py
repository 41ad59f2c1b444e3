#!/usr/bin/env python3
"""Markdown tables from the JSON lines of bench/run.py (``--json-out``).

    python bench/tables.py bench/results/RUN.jsonl [MORE.jsonl ...] [--ref caddy]

For each file: one table per target against the reference, a row per
scenario, as docs/performance.md shows them (req/s of both, ratio of medians
with the per-round paired min-max, p99, CPU seconds per 10k requests, peak
RSS).  With several files, a table of the runs side by side follows (ratio of
medians per scenario).  Reads the files of the earlier shared harness too
(same field names).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

if not __package__:  # run as a script: make the bench package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.scenarios import throughput_field  # noqa: E402
from bench.stats import (  # noqa: E402
    Result,
    by_round,
    field_max,
    field_median,
    group,
    paired_ratios,
    ratio,
    read_jsonl,
    spread,
)

#: Scenarios whose table cell also shows MiB/s.
BULK = ("64k", "1m")


def thousands(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def milliseconds(value: float | None) -> str:
    """p99 cells: a decimal below 50 ms, whole milliseconds above."""
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 50 else f"{value:.0f}"


def two(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def whole(value: float | None) -> str:
    """Rounded half up (60.5 MB reads 61), as people round."""
    return "-" if value is None else str(math.floor(value + 0.5))


class Run:
    """One --json-out file: its targets, scenarios and results."""

    def __init__(self, path: str, label: str | None = None) -> None:
        meta, results = read_jsonl(path)
        self.path = path
        self.label = label or os.path.splitext(os.path.basename(path))[0]
        self.meta = meta or {}
        self.results: list[Result] = results
        self.grouped = group(results)
        seen_targets = list(dict.fromkeys(r["target"] for r in results if "target" in r))
        seen_scenarios = list(dict.fromkeys(r["scenario"] for r in results if "scenario" in r))
        self.targets: list[str] = self.meta.get("targets") or seen_targets
        self.scenarios: list[str] = self.meta.get("scenarios") or seen_scenarios

    def default_reference(self) -> str:
        """The run's own reference, else caddy, else the last target."""
        if self.meta.get("reference"):
            return str(self.meta["reference"])
        if "caddy" in self.targets:
            return "caddy"
        return self.targets[-1]

    def runs(self, target: str, scenario: str) -> list[Result]:
        return self.grouped.get((target, scenario), [])

    def throughput_ratio(self, target: str, reference: str, scenario: str) -> float | None:
        """Ratio of the medians of req/s (of MiB/s where the scenario quotes that)."""
        key = throughput_field(scenario)
        return ratio(field_median(self.runs(target, scenario), key),
                     field_median(self.runs(reference, scenario), key))

    def p99_ratio(self, target: str, reference: str, scenario: str) -> float | None:
        return ratio(field_median(self.runs(target, scenario), "p99_ms"),
                     field_median(self.runs(reference, scenario), "p99_ms"))

    def load_scenarios(self) -> list[str]:
        """The scenarios measured in requests per second (SSE is about latency)."""
        return [s for s in self.scenarios if s != "sse"]


def target_table(run: Run, target: str, reference: str) -> list[str]:
    """A row per scenario: target against reference, as in docs/performance.md."""
    lines = [f"| scenario | {target} req/s | {reference} req/s | ratio of medians "
             f"(per-round min–max) | p99 {target} / {reference} | CPU s per 10k, "
             f"{target} / {reference} | peak RSS MB, {target} / {reference} |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for scenario in run.load_scenarios():
        mine, theirs = run.runs(target, scenario), run.runs(reference, scenario)
        if not mine or not theirs:
            continue
        rps = thousands(field_median(mine, "rps"))
        if scenario in BULK:
            rps += f" ({thousands(field_median(mine, 'mib_s'))} MiB/s)"
        key = throughput_field(scenario)
        paired = spread(paired_ratios(by_round(mine, key), by_round(theirs, key)))
        ratios = f"**{two(run.throughput_ratio(target, reference, scenario))}**"
        if paired is not None:
            ratios += f" ({two(paired.low)}–{two(paired.high)})"
        p99_ratio = run.p99_ratio(target, reference, scenario)
        p99 = (f"{milliseconds(field_median(mine, 'p99_ms'))} / "
               f"{milliseconds(field_median(theirs, 'p99_ms'))} ms")
        if p99_ratio is not None:
            p99 += f" ({p99_ratio:.2f}×)"
        cpu = (f"{two(field_median(mine, 'cpu_s_per_10k'))} / "
               f"{two(field_median(theirs, 'cpu_s_per_10k'))}")
        rss = f"{whole(field_max(mine, 'rss_peak_mb'))} / {whole(field_max(theirs, 'rss_peak_mb'))}"
        lines.append(f"| {scenario} | {rps} | {thousands(field_median(theirs, 'rps'))} | "
                     f"{ratios} | {p99} | {cpu} | {rss} |")
    if "sse" in run.scenarios and run.runs(target, "sse") and run.runs(reference, "sse"):
        mine, theirs = run.runs(target, "sse"), run.runs(reference, "sse")
        lines.append("")
        lines.append(f"SSE event delivery p50 / p99: {target} "
                     f"{two(field_median(mine, 'p50_ms'))} / {two(field_median(mine, 'p99_ms'))} ms, "
                     f"{reference} {two(field_median(theirs, 'p50_ms'))} / "
                     f"{two(field_median(theirs, 'p99_ms'))} ms; errors "
                     f"{sum(r.get('errors', 0) for r in mine)} / "
                     f"{sum(r.get('errors', 0) for r in theirs)}.")
    return lines


def runs_table(runs: Sequence[Run], target: str, reference: str) -> list[str]:
    """A row per run: ratio of medians per scenario, the p99 ratios' range, peak RSS range."""
    scenarios = list(dict.fromkeys(s for run in runs for s in run.load_scenarios()))
    lines = [f"| run | {' | '.join(scenarios)} | p99 / {reference}'s | peak RSS MB |",
             "|---|" + "---:|" * (len(scenarios) + 2)]
    for run in runs:
        cells = [two(run.throughput_ratio(target, reference, s)) for s in scenarios]
        p99 = [r for r in (run.p99_ratio(target, reference, s) for s in scenarios)
               if r is not None]
        rss = [r for r in (field_max(run.runs(target, s), "rss_peak_mb") for s in scenarios)
               if r is not None]
        p99_cell = f"{min(p99):.2f}–{max(p99):.2f}×" if p99 else "-"
        rss_cell = f"{whole(min(rss))}–{whole(max(rss))}" if rss else "-"
        lines.append(f"| {run.label} | {' | '.join(cells)} | {p99_cell} | {rss_cell} |")
    return lines


def render(runs: Sequence[Run], reference: str | None, only: str | None) -> str:
    """All tables for these runs, against ``reference`` (or each run's default)."""
    out: list[str] = []
    for run in runs:
        ref = reference or run.default_reference()
        rounds = run.meta.get("rounds", "?")
        out.append(f"### {run.label}: {rounds} rounds of {run.meta.get('duration', '?')} s, "
                   f"ratios to {ref}")
        for target in run.targets:
            if target == ref or target == "direct" or (only and target != only):
                continue
            out += ["", *target_table(run, target, ref)]
        failed = [r for r in run.results if "failed" in r]
        disturbed = [r for r in run.results if r.get("foreign_cpu_pct", 0) > 20]
        out += ["", f"({len(run.results) - len(failed)} measured runs, {len(failed)} failed, "
                    f"{len(disturbed)} kept with other processes above 20 % of a core.)", ""]
    if len(runs) > 1:
        ref = reference or runs[0].default_reference()
        for target in runs[0].targets:
            if target == ref or target == "direct" or (only and target != only):
                continue
            out += [f"### {target}: ratio of medians to {ref}, run by run", "",
                    *runs_table(runs, target, ref), ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="--json-out files of bench/run.py")
    parser.add_argument("--ref", help="reference target (default: the run's reference, "
                                      "else caddy, else the last target)")
    parser.add_argument("--target", help="only this target's tables")
    parser.add_argument("--labels", help="comma list naming the runs (default: file names)")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [None] * len(args.files)
    if len(labels) != len(args.files):
        parser.error("--labels needs one label per file")
    runs = [Run(path, label) for path, label in zip(args.files, labels, strict=True)]
    sys.stdout.write(render(runs, args.ref, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
