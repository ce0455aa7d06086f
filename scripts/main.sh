#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/main.sh: the main job. Sets everything up, builds an optimised tally, runs the
# benchmarks against their peers, and then the combined "server day" scenario on the embedded
# SQLite store for DAY_SECONDS (default 90); it ends by printing the scenario's summary and
# the benchmark summary table. Results land in build/release/bench/results/ and
# build/release/server_day.json. (Every stress program, in process and on each store, runs in
# the full tests: scripts/check.sh, or `make stress` in build/release.)
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
sh scripts/build.sh release CFLAGS="-O2 -g"
cd build/release
bench=no
if grep -q '^bench:' Makefile; then
	echo "== bench (the table is printed at the end)"
	make -s bench >bench.out 2>&1 && bench=yes || { tail -30 bench.out; exit 1; }
fi

day_dir=$(mktemp -d /tmp/tally-main-XXXXXX)
trap 'rm -rf "$day_dir"' EXIT
trap 'exit 130' INT TERM
echo "== server day on SQLite (${DAY_SECONDS:-90} s)"
status=0
./stress/server_day --seconds "${DAY_SECONDS:-90}" --store "sqlite://$day_dir/day.db" \
	--json server_day.json || status=$?

echo
echo "== server day: summary"
python3 - server_day.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
kinds = ["creates", "joins", "leaves", "duplicate_leaves", "speaker_drops", "invoices",
         "rate_limited_calls"]
s = r["serving_seconds"]
print(f"store: SQLite (embedded), {r['workers']} worker processes x {r['threads']} threads, "
      f"{r['incarnations']} incarnations, {s:.0f} s serving (seed {r['seed']})")
print(f"rates reached: {r['requests_per_s']:,.0f} requests/s, the seeds' bar (1,000/s) "
      f"x {r['seeds_bar_x']:,.0f}")
print("  " + ", ".join(f"{k.replace('_', ' ')} {r[k] / s:,.0f}/s" for k in kinds))
print(f"processes: {r['workers']} workers; kills survived: {r['kills_survived']} "
      f"({r['kills_mid_flush']} aimed into a flush); writers reaped: {r['writers_reaped']}")
print(f"invoice numbers: {r['invoice_numbers']:,} across every process and incarnation, "
      f"{r['duplicate_numbers']} duplicates")
print(f"views: {r['views_applied']:,} applied, {r['views_in_store']:,} in the store, "
      f"lost with killed writers {r['views_lost_measured']:,} (bound "
      f"{r['views_lost_bound']:,})")
print(f"loss window: at most {r['unacked_age_ms_max']} ms from a killed writer's last "
      f"acknowledged flush to its kill; of its parts, the flusher's wait at most "
      f"{r['flusher_wait_ms_max']} ms (checked), the flush in flight at most "
      f"{r['flush_in_flight_ms_max']} ms")
print(f"invariants checked: {r['checks']:,}")
print(f"violations: {r['violations']}")
PY
if [ "$bench" = yes ]; then
	echo
	echo "== bench: summary"
	cat bench/results/summary.txt
fi
[ "$status" -eq 0 ]
