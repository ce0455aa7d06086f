#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# bench/run-bench.sh: what `make bench` runs. Runs each bench program with Google Benchmark
# flags, keeps its JSON in RESULTS/<program>.json (the console table goes to the terminal),
# then prints the tally-vs-peer ratio table (also RESULTS/summary.txt) and draws
# RESULTS/counter.png (items/s against threads) and one plot per family (session.png,
# ratelimit.png, sequence.png: items/s against threads, latency percentiles) when gnuplot is
# installed.
# Usage: run-bench.sh SRCDIR RESULTS MIN_TIME REPETITIONS PROGRAM...
# MIN_TIME defaults to 0.2 s in mk/bench.am (Google Benchmark's default is 0.5 s) so that the
# whole run stays short; the JSON records it in each run's iterations and times.
# Repetitions are randomly interleaved (Google Benchmark's flag of that name): on a shared,
# noisy machine a burst of outside load then lands on tally's and the peers' repetitions
# alike instead of on one benchmark's, and the medians the ratios use stay comparable.
set -u
srcdir=$1 results=$2 min_time=$3 repetitions=$4
shift 4
mkdir -p "$results" || exit 1
status=0
jsons=
for program in "$@"; do
	name=$(basename "$program")
	echo "== $program (min_time ${min_time}s, $repetitions repetitions; aggregates shown)"
	if ! "./$program" --benchmark_min_time="$min_time" \
		--benchmark_repetitions="$repetitions" \
		--benchmark_enable_random_interleaving=true \
		--benchmark_display_aggregates_only=true \
		--benchmark_out="$results/$name.json" --benchmark_out_format=json; then
		echo "FAIL: $program" >&2
		status=1
		continue
	fi
	jsons="$jsons $results/$name.json"
done
[ -n "$jsons" ] || exit 1
echo
# shellcheck disable=SC2086
python3 "$srcdir/bench/summary.py" "$results" $jsons > "$results/summary.txt" || status=1
cat "$results/summary.txt"
if ! command -v gnuplot >/dev/null 2>&1; then
	echo "gnuplot not installed: no plots" >&2
	exit $status
fi
if [ -f "$results/counter.dat" ]; then
	gnuplot -e "datafile='$results/counter.dat'; outfile='$results/counter.png'" \
		"$srcdir/bench/plot.gp" && echo "plot: $results/counter.png"
fi
# One plot per family (plot-family.gp): PNG name, summary.py's file name, title.
while read -r png base what; do
	[ -f "$results/$base.sel.dat" ] && [ -f "$results/$base.latp" ] || continue
	gnuplot -e "base='$results/$base'; outfile='$results/$png'; what='$what'" \
		"$srcdir/bench/plot-family.gp" && echo "plot: $results/$png"
done <<PLOTS
session.png sessionlookup_10 sessions: 90% listener-count reads, 10% join/leave, 10,000 sessions
ratelimit.png ratelimitmixed rate limiter: hot and cold keys mixed, 65,536 keys
sequence.png sequencebyname_10000 by-name strict numbers: 10,000 tenants
PLOTS
exit $status
