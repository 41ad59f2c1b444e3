#!/usr/bin/env bash
# The worker curve of issue 16 (docs/scaling.md): txcaddy with 1, 2, 4 and 8 worker processes
# against Caddy on the same cores (GOMAXPROCS follows the CPUs it is pinned to), wrk and the
# nginx backend on the CPUs above them.  One prepared run for a lent many-core machine:
#
#   bench/worker_curve.sh [OUT.jsonl]
#
# Needs wrk, nginx and caddy on PATH, txcaddy's dependencies importable by python3 (or
# PYTHON=...), and more CPUs than the largest size (the rest carry wrk and nginx: on 16 CPUs,
# 8; with too few of them the load generator, not the proxy, is measured).  With the defaults (SIZES="1 2 4 8", SCENARIOS=small, ROUNDS=3,
# DURATION=5) it takes about 4 minutes; each size is one bench/run.py run of txcaddy and Caddy
# in interleaved rounds, appended to OUT (default bench/results/DATE-worker-curve.jsonl), and the
# tables come at the end.  Connections: 100, or 64 per core above two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
sizes=${SIZES:-1 2 4 8}
scenarios=${SCENARIOS:-small}
rounds=${ROUNDS:-3}
duration=${DURATION:-5}
out=${1:-bench/results/$(date +%F)-worker-curve.jsonl}

for tool in wrk nginx caddy "$python"; do
  command -v "$tool" >/dev/null || { echo "worker_curve: $tool not found" >&2; exit 2; }
done
largest=0
for n in $sizes; do [ "$n" -gt "$largest" ] && largest=$n; done
cpus=$(nproc)
if [ "$largest" -ge "$cpus" ]; then
  echo "worker_curve: $largest workers need more than $largest CPUs; this machine has $cpus" >&2
  exit 2
fi
load=${LOAD_CPUS:-$largest-$((cpus - 1))}

for n in $sizes; do
  target=txcaddy
  [ "$n" -gt 1 ] && target=txcaddy-w$n
  connections=$(( n > 2 ? 64 * n : 100 ))
  echo "== $n: $target and caddy on CPUs 0-$((n - 1)), load on $load, $connections connections"
  "$python" bench/run.py --python "$python" --targets-file bench/workers-targets.json \
    -t "$target" -t caddy --ref caddy -s "$scenarios" --rounds "$rounds" -d "$duration" \
    -c "$connections" --pin split --proxy-cpus "0-$((n - 1))" --load-cpus "$load" \
    --json-out "$out" | tail -n 3
done
"$python" bench/tables.py "$out" --ref caddy
