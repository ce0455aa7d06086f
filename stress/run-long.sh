#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The long stress profile (make stress-long): every structure's program for SECONDS (default
# 60) unthrottled in process, checked against the 1,000,000 requests/s bar; then the
# combined server day per store (STRESS_STORES, servers from stress/stores.sh), straight to
# the server: paced at the seeds' bar (1,000 requests/s) and at the highest rate this machine
# sustains with that store (unthrottled; DynamoDB: paced at STRESS_DYNAMODB_TOP_RATE, what
# dynalite drains as fast as it comes), each reported as the seeds' bar x N; then, for each
# store with a server, the server day at 1,000 requests/s through its fault proxy with
# server restarts. Ends with a table; exits 1 if any run had a violation.
# Usage: run-long.sh SECONDS PROGRAM...   (run from the build directory)
top=${STRESS_TOP:-$(dirname "$0")/..}
. "$top/stress/stores.sh"
seconds=${1:-60}; shift
scratch=$(mktemp -d /tmp/tally-stress-long-XXXXXX)
cleanup() {
	store_stop
	rm -rf "$scratch"
}
trap cleanup EXIT
trap "exit 130" INT TERM # then the EXIT trap cleans up; a TERM trap alone would resume
failed=0
table="$scratch/table"
: >"$table"
# dynalite drains the server day's records at about this rate on the 2-vCPU VM (docs/stress.md)
STRESS_DYNAMODB_TOP_RATE=${STRESS_DYNAMODB_TOP_RATE:-20000}
STRESS_PG_FSYNC=${STRESS_PG_FSYNC:-on} # rates with a durable PostgreSQL

# field NAME FILE: a value from a run's JSON summary ("" when absent).
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
	[ -f "$json" ] || { echo "$label||||no summary" >>"$table"; failed=1; return; }
	rate=$(field requests_per_s "$json") # the server day's serving rate
	[ -n "$rate" ] || rate=$(field ops_per_s "$json")
	echo "$label|$rate|$(field seeds_bar_x "$json")|$(field unacked_age_ms_max "$json")|$(field violations "$json")" >>"$table"
}

# server_days STORE MODE: the server day's rows for one store.
server_days() {
	store_start "$1" "$2" || { failed=1; store_stop; return; }
	if [ "$2" = chaos ]; then
		run "server_day $1, faults, 1000/s" stress/server_day --store "$store_url" --rate 1000
	elif [ "$1" = dynamodb ]; then
		run "server_day $1 at 1000/s" stress/server_day --store "$store_url" --rate 1000
		run "server_day $1 at $STRESS_DYNAMODB_TOP_RATE/s" stress/server_day \
			--store "$store_url" --rate "$STRESS_DYNAMODB_TOP_RATE"
	else
		run "server_day $1 at 1000/s" stress/server_day --store "$store_url" --rate 1000
		run "server_day $1 unthrottled" stress/server_day --store "$store_url"
	fi
	store_stop
}

for program in "$@"; do
	[ "$program" = stress/server_day ] && continue
	run "$(basename "$program") in process" "$program"
done
for store in ${STRESS_STORES:-sqlite}; do
	if ! store_available "$store"; then
		echo "SKIP: stress-long on $store: $(store_missing "$store")"
		echo "server_day $store||||skipped: $(store_missing "$store")" >>"$table"
		continue
	fi
	server_days "$store" plain
done
for store in ${STRESS_STORES:-sqlite}; do
	[ "$store" = sqlite ] && continue # no server to restart, no proxy
	store_available "$store" && server_days "$store" chaos
done

echo
echo "== stress-long: $seconds s per run"
printf '%-36s %14s %9s %11s %10s %s\n' run "requests/s" "bar x N" "loss ms" violations \
	"1M/s bar"
while IFS='|' read -r label rate bar window violations; do
	verdict=
	case $label in
	*"in process") verdict=$(python3 -c "print('met' if float('${rate:-0}' or 0) >= 1e6 else 'below')") ;;
	esac
	case $violations in
	[0-9]*) ;;
	*) verdict=$violations; violations=- ;;
	esac
	[ -n "$bar" ] && bar=$(printf '%.1f' "$bar")
	printf '%-36s %14.0f %9s %11s %10s %s\n' "$label" "${rate:-0}" "${bar:--}" \
		"${window:--}" "$violations" "$verdict"
done <"$table"
exit $failed
