#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The short stress profile (make stress): runs each PROGRAM for SECONDS in process, then each
# of STRESS_STORE_BINS against every store in STRESS_STORES, each store's server started by
# stress/stores.sh with its fault proxy and restarts (sqlite: a fresh file; postgresql: a
# private cluster; dynamodb: a private dynalite, paced), stopped and removed at the end, also
# on failure. A store this machine cannot run (no dynalite) is skipped with a SKIP line
# (and not counted by --count).
# Every run prints its summary line; exits 1 if any failed.
# Usage: run-stress.sh SECONDS PROGRAM...
#        run-stress.sh --count PROGRAM...   how many runs the profile makes (check.sh)
# Environment: STRESS_ARGS (added to every command line, e.g. "--threads 2 --seed 7"),
# STRESS_STORE_BINS, STRESS_STORES ("sqlite postgresql dynamodb"), STRESS_TOP (the source
# tree), STRESS_DYNAMODB_RATE (stress/stores.sh).
top=${STRESS_TOP:-$(dirname "$0")/..}
. "$top/stress/stores.sh"

# The stores this machine can run.
stores() {
	for store in ${STRESS_STORES:-sqlite}; do
		store_available "$store" && echo "$store"
	done
}

if [ "$1" = "--count" ]; then
	shift
	runs=$#
	for store in $(stores); do
		for program in ${STRESS_STORE_BINS:-}; do runs=$((runs + 1)); done
	done
	echo "$runs"
	exit 0
fi

seconds=$1; shift
failed=0
scratch=$(mktemp -d /tmp/tally-stress-XXXXXX)
cleanup() {
	store_stop
	rm -rf "$scratch"
}
trap cleanup EXIT
trap "exit 130" INT TERM # then the EXIT trap cleans up; a TERM trap alone would resume

# run PROGRAM ARGS...: one run, its failure noted.
run() {
	program=$1; shift
	# shellcheck disable=SC2086 # STRESS_ARGS is a list of options
	if ! "./$program" --seconds "$seconds" "$@" ${STRESS_ARGS:-}; then
		echo "FAIL: $program $*" | sed 's|://[^:@/]*:[^@]*@|://***@|' >&2
		failed=1
	fi
}

for program in "$@"; do
	run "$program"
done
for store in ${STRESS_STORES:-sqlite}; do
	if ! store_available "$store"; then
		echo "SKIP: stress on $store: $(store_missing "$store")"
		continue
	fi
	store_start "$store" || { failed=1; store_stop; continue; }
	for program in ${STRESS_STORE_BINS:-}; do
		[ "$program" = stress/sequence ] && store_faults off
		# shellcheck disable=SC2046 # store_args is a list of options
		run "$program" --store "$store_url" $(store_args "$store" "$program")
		[ "$program" = stress/sequence ] && store_faults on
	done
	store_stop
done
exit $failed
