#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The long stress profile (make stress-long): every structure's program for SECONDS (default
# 60) unthrottled in process, checked against the 1,000,000 requests/s bar; then the
# combined server day per store (STRESS_STORES), paced at the seeds' bar (1,000 requests/s)
# and unthrottled (the highest rate this machine sustains with that store, reported as the
# seeds' bar x N). Ends with a table; exits 1 if any run had a violation.
# Usage: run-long.sh SECONDS PROGRAM...   (run from the build directory)
top=${STRESS_TOP:-$(dirname "$0")/..}
seconds=${1:-60}; shift
scratch=$(mktemp -d /tmp/tally-stress-long-XXXXXX)
pg_dir=
cleanup() {
	[ -n "$pg_dir" ] && sh "$top/scripts/pg-cluster.sh" stop "$pg_dir" >/dev/null 2>&1
	rm -rf "$scratch"
}
trap cleanup EXIT
trap "exit 130" INT TERM # then the EXIT trap cleans up; a TERM trap alone would resume
failed=0
table="$scratch/table"

# field NAME FILE: a number from a run's JSON summary.
field() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[2])).get(sys.argv[1], ""))' \
		"$1" "$2"
}

# run LABEL PROGRAM ARGS...: one run with a JSON summary, one table row.
run() {
	label=$1; program=$2; shift 2
	json="$scratch/$(echo "$label" | tr ' /' '__').json"
	# shellcheck disable=SC2086 # STRESS_ARGS is a list of options
	"./$program" --seconds "$seconds" --json "$json" "$@" ${STRESS_ARGS:-} || failed=1
	[ -f "$json" ] || { echo "$label | no summary" >>"$table"; failed=1; return; }
	rate=$(field requests_per_s "$json") # the server day's serving rate
	[ -n "$rate" ] || rate=$(field ops_per_s "$json")
	echo "$label|$rate|$(field seeds_bar_x "$json")|$(field violations "$json")" >>"$table"
}

for program in "$@"; do
	[ "$program" = stress/server_day ] && continue
	run "$(basename "$program") in process" "$program"
done
for store in ${STRESS_STORES:-sqlite}; do
	case $store in
	sqlite) url="sqlite://$scratch/day.db" ;;
	postgresql)
		[ -x "${PG_BINDIR:-/usr/lib/postgresql/15/bin}/initdb" ] || continue
		pg_dir=$(sh "$top/scripts/pg-cluster.sh" start on) || { failed=1; continue; }
		url=$(. "$pg_dir/env" && echo "$TALLY_PG_URL") ;;
	*) continue ;;
	esac
	run "server_day $store at 1000/s" stress/server_day --store "$url" --rate 1000
	run "server_day $store unthrottled" stress/server_day --store "$url"
done

echo
echo "== stress-long: $seconds s per run"
printf '%-34s %16s %10s %11s %s\n' run "requests/s" "bar x N" violations "1M/s bar"
while IFS='|' read -r label rate bar violations; do
	verdict=
	case $label in
	*"in process") verdict=$(python3 -c "print('met' if float('${rate:-0}' or 0) >= 1e6 else 'below')") ;;
	esac
	printf '%-34s %16.0f %10s %11s %s\n' "$label" "${rate:-0}" "${bar:--}" "$violations" "$verdict"
done <"$table"
exit $failed
