#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# The short stress profile (make stress): runs each PROGRAM for SECONDS in process, then each
# of STRESS_STORE_BINS against every store in STRESS_STORES (sqlite: a fresh file;
# postgresql: a private cluster from scripts/pg-cluster.sh, stopped and removed at the end,
# also on failure). Every run prints its summary line; exits 1 if any failed.
# Usage: run-stress.sh SECONDS PROGRAM...
#        run-stress.sh --count PROGRAM...   how many runs the profile makes (check.sh)
# Environment: STRESS_ARGS (added to every command line, e.g. "--threads 2 --seed 7"),
# STRESS_STORE_BINS, STRESS_STORES ("sqlite postgresql"), STRESS_TOP (the source tree).
top=${STRESS_TOP:-$(dirname "$0")/..}

# The stores this machine can run: postgresql needs its server binaries and the script.
stores() {
	for store in ${STRESS_STORES:-sqlite}; do
		case $store in
		postgresql)
			[ -x "${PG_BINDIR:-/usr/lib/postgresql/15/bin}/initdb" ] &&
				[ -f "$top/scripts/pg-cluster.sh" ] && echo postgresql ;;
		*) echo "$store" ;;
		esac
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
pg_dir=
proxy_pid=
cleanup() {
	[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
	[ -n "$pg_dir" ] && sh "$top/scripts/pg-cluster.sh" stop "$pg_dir" >/dev/null 2>&1
	rm -rf "$scratch"
}

# fault_proxy: starts tests/store/tcp_fault (built by make check) in front of the cluster
# and sets `proxied` to the URL through it; leaves it empty when the proxy is not built.
# Called in this shell, never in a command substitution: proxy_pid must reach cleanup.
fault_proxy() {
	proxied=
	[ -x ./tests/store/tcp_fault ] || return 0
	./tests/store/tcp_fault "$scratch/fault.sock" 127.0.0.1 "$TALLY_PG_PORT" \
		>"$scratch/fault.port" 2>/dev/null &
	proxy_pid=$!
	port=
	for _ in $(seq 50); do
		port=$(sed -n 's/^port //p' "$scratch/fault.port")
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] && proxied="postgresql://tally_test:$TALLY_PG_PASSWORD@127.0.0.1:$port/tally_test?sslmode=disable&gssencmode=disable"
	return 0
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
for store in $(stores); do
	case $store in
	sqlite) url="sqlite://$scratch/stress.db" ;;
	postgresql)
		if ! pg_dir=$(sh "$top/scripts/pg-cluster.sh" start off); then
			echo "FAIL: no PostgreSQL cluster" >&2
			failed=1
			continue
		fi
		. "$pg_dir/env"
		url=$TALLY_PG_URL
		# the chaos also restarts the server mid-run (pg_ctl restart -m immediate) and,
		# through the fault proxy, cuts every connection
		STRESS_STORE_RESTART="sh $top/scripts/pg-cluster.sh restart $pg_dir >/dev/null"
		export STRESS_STORE_RESTART
		fault_proxy
		if [ -n "$proxied" ]; then
			url=$proxied
			STRESS_STORE_FAULT="python3 -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b\"drop\\n\"); s.recv(200)' $scratch/fault.sock"
			export STRESS_STORE_FAULT
		fi ;;
	esac
	for program in ${STRESS_STORE_BINS:-}; do
		run "$program" --store "$url"
	done
	unset STRESS_STORE_RESTART STRESS_STORE_FAULT
done
exit $failed
