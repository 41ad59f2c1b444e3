"""The arithmetic of the summary: medians, spreads, ratios, paired ratios.

A single run on a shared machine varies by 10-30 %; what is worth quoting is
a ratio between targets measured in the same run.  Two are given: the ratio
of the medians over the rounds, and the per-round paired ratio (round k of X
over round k of the reference, whose runs were seconds apart), as
min / median / max.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.scenarios import throughput_field

Result = dict[str, Any]


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that are not None (None if there are none)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass(frozen=True)
class Spread:
    """The lowest, median and highest of a set of values."""

    low: float
    middle: float
    high: float


def spread(values: Iterable[float | None]) -> Spread | None:
    """min / median / max of the values that are not None."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return Spread(min(present), statistics.median(present), max(present))


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, None when either is missing or the reference is 0."""
    if value is None or not reference:
        return None
    return value / reference


def paired_ratios(values: Mapping[int, float], reference: Mapping[int, float]) -> list[float]:
    """Round-by-round ratios, for the rounds both sides have (in round order)."""
    return [values[r] / reference[r] for r in sorted(values)
            if r in reference and reference[r]]


def group(results: Iterable[Result]) -> dict[tuple[str, str], list[Result]]:
    """Measured results by (target, scenario); failed runs are left out."""
    grouped: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if r.get("kind") == "meta" or "failed" in r:
            continue
        grouped.setdefault((r["target"], r["scenario"]), []).append(r)
    return grouped


def by_round(results: Iterable[Result], key: str) -> dict[int, float]:
    """One field of a target's runs keyed by round number, for pairing rounds."""
    return {r["round"]: r[key] for r in results if r.get(key) is not None}


def field_median(results: Iterable[Result], key: str) -> float | None:
    """Median of one field over runs (those that have it)."""
    return median(r.get(key) for r in results)


def field_max(results: Iterable[Result], key: str) -> float | None:
    """Largest value of one field over runs (peak RSS is quoted as the worst round)."""
    present = [r[key] for r in results if r.get(key) is not None]
    return max(present) if present else None


def read_jsonl(path: str) -> tuple[Result | None, list[Result]]:
    """(the meta line or None, the result lines) of a --json-out file.

    A file that several runs appended to keeps the first meta line; the
    result lines of all runs are returned.
    """
    meta: Result | None = None
    results: list[Result] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("kind") == "meta":
                meta = meta or row
            else:
                results.append(row)
    return meta, results


def number(value: float | None, digits: int = 1) -> str:
    """A table cell: '-' for missing, no decimals from 1000 up."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def summary(results: Sequence[Result], targets: Sequence[str], scenarios: Sequence[str],
            reference: str | None) -> str:
    """The plain-text summary printed at the end of a run."""
    grouped = group(results)
    rows: list[tuple[str, ...]] = [("target", "scenario", "req/s median (min..max)", "MiB/s", "p50 ms", "p99 ms",
             "errors", "cpu s/10k", "rss MB")]
    for target in targets:
        for scenario in scenarios:
            runs = grouped.get((target, scenario))
            if not runs:
                continue
            rps = spread(r["rps"] for r in runs)
            assert rps is not None
            rows.append((target, scenario,
                         f"{number(rps.middle)} ({number(rps.low)}..{number(rps.high)})",
                         number(field_median(runs, "mib_s")),
                         number(field_median(runs, "p50_ms"), 2),
                         number(field_median(runs, "p99_ms"), 2),
                         str(sum(r.get("errors", 0) for r in runs)),
                         number(field_median(runs, "cpu_s_per_10k"), 3),
                         number(field_max(runs, "rss_peak_mb"))))
    lines = _columns(rows)
    if reference is not None and reference in targets and len(targets) > 1:
        lines += ["", f"ratios to {reference}: ratio of the medians of req/s (MiB/s in 1m); "
                      "per-round paired ratio min/median/max; p99 ratio of medians"]
        rows = [("target", "scenario", "ratio", "paired min/med/max", "p99 ratio")]
        for target in targets:
            if target == reference:
                continue
            for scenario in scenarios:
                mine = grouped.get((target, scenario))
                theirs = grouped.get((reference, scenario))
                if not mine or not theirs:
                    continue
                key = throughput_field(scenario)
                rps_ratio = ratio(field_median(mine, key), field_median(theirs, key))
                paired = spread(paired_ratios(by_round(mine, key), by_round(theirs, key)))
                p99 = ratio(field_median(mine, "p99_ms"), field_median(theirs, "p99_ms"))
                rows.append((target, scenario, number(rps_ratio, 3),
                             "-" if paired is None else
                             f"{paired.low:.3f}/{paired.middle:.3f}/{paired.high:.3f}",
                             number(p99, 2)))
        lines += _columns(rows)
    return "\n".join(lines)


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned text: first two columns left, the numbers right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("-" * len(out[0]))
    return out
