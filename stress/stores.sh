# SPDX-License-Identifier: BSD-2-Clause
# stress/stores.sh: the store servers of the stress profiles, sourced by stress/run-stress.sh
# and stress/run-long.sh, which set `top` (the source tree) and `scratch` (a private temp
# directory) and call store_stop from their EXIT trap, so every server started here is
# stopped and its data removed, also on failure.
#
#   store_available STORE      status 0 if this machine can run STORE's server (quiet)
#   store_missing STORE        why not, one line
#   store_start STORE [MODE]   starts its server and sets store_url; MODE "chaos" (default)
#                              also puts the fault proxy in front of the server and exports
#                              STRESS_STORE_RESTART and STRESS_STORE_FAULT (stress/fleet.h);
#                              "plain" talks to the server directly. Status 1 on a failure
#                              (call it only for a store_available STORE).
#   store_args STORE PROGRAM   the extra options PROGRAM takes on STORE (dynalite's pace)
#   store_stop                 stops what store_start started and removes its data
#
# Stores: sqlite (a fresh file), postgresql (a private cluster, scripts/pg-cluster.sh, behind
# tests/store/tcp_fault), dynamodb (a private dynalite persisted with --path so a restart
# keeps its data, scripts/dynalite.sh, behind tests/store/http_fault). The proxies are built
# by `make check` or `make stress`; without one the store runs without faults.
# shellcheck shell=sh disable=SC2154 # top and scratch come from the sourcing script

# dynalite (node) serves about one request at a time; the server day's record writes at the
# short profile's rate keep a 3 s run to about ten seconds with the faults on (docs/stress.md).
STRESS_DYNAMODB_RATE=${STRESS_DYNAMODB_RATE:-500}

pg_dir=
ddb_dir=
proxy_pid=

store_available() {
	case $1 in
	postgresql)
		[ -x "${PG_BINDIR:-/usr/lib/postgresql/15/bin}/initdb" ] &&
			[ -f "$top/scripts/pg-cluster.sh" ] ;;
	dynamodb) sh "$top/scripts/dynalite.sh" check >/dev/null 2>&1 ;;
	*) true ;;
	esac
}

# store_missing STORE: why store_available said no, one line.
store_missing() {
	case $1 in
	postgresql) echo "no PostgreSQL server (${PG_BINDIR:-/usr/lib/postgresql/15/bin}/initdb)" ;;
	dynamodb) sh "$top/scripts/dynalite.sh" check 2>&1 ;;
	esac
}

store_stop() {
	if [ -n "$proxy_pid" ]; then
		kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
	fi
	proxy_pid=
	[ -n "$pg_dir" ] && sh "$top/scripts/pg-cluster.sh" stop "$pg_dir" >/dev/null 2>&1
	pg_dir=
	[ -n "$ddb_dir" ] && sh "$top/scripts/dynalite.sh" stop "$ddb_dir" >/dev/null 2>&1
	ddb_dir=
	unset STRESS_STORE_RESTART STRESS_STORE_FAULT
	rm -f "$scratch"/fault.*
}

# wait_for_file FILE: up to 5 s for FILE to be non-empty.
wait_for_file() {
	for _ in $(seq 100); do
		[ -s "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

# control COMMAND...: the shell command that sends one line to a fault proxy's control
# socket (tcp_fault: a Unix socket path; http_fault: a loopback port).
control() {
	printf '%s\n' "python3 -c 'import socket, sys; a = sys.argv[1]; s = socket.socket(socket.AF_UNIX) if a.startswith(\"/\") else socket.create_connection((\"127.0.0.1\", int(a))); a.startswith(\"/\") and s.connect(a); s.sendall(sys.argv[2].encode() + b\"\\n\"); s.recv(200)' $1 '$2'"
}

start_postgresql() {
	if ! pg_dir=$(sh "$top/scripts/pg-cluster.sh" start "${STRESS_PG_FSYNC:-off}"); then
		pg_dir=
		echo "FAIL: no PostgreSQL cluster" >&2
		return 1
	fi
	store_url=$(. "$pg_dir/env" && echo "$TALLY_PG_URL")
	[ "$1" = chaos ] || return 0
	# the chaos restarts the server mid-run (pg_ctl restart -m immediate) and, through the
	# fault proxy, cuts every connection
	STRESS_STORE_RESTART="sh $top/scripts/pg-cluster.sh restart $pg_dir >/dev/null"
	export STRESS_STORE_RESTART
	[ -x ./tests/store/tcp_fault ] || return 0
	pg_port=$(. "$pg_dir/env" && echo "$TALLY_PG_PORT")
	port=
	./tests/store/tcp_fault "$scratch/fault.sock" 127.0.0.1 "$pg_port" \
		>"$scratch/fault.port" 2>/dev/null &
	proxy_pid=$!
	for _ in $(seq 50); do
		port=$(sed -n 's/^port //p' "$scratch/fault.port")
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || return 0
	store_url=$(. "$pg_dir/env" && echo "postgresql://tally_test:$TALLY_PG_PASSWORD@127.0.0.1:$port/tally_test?sslmode=disable&gssencmode=disable")
	STRESS_STORE_FAULT=$(control "$scratch/fault.sock" drop)
	export STRESS_STORE_FAULT
}

# Background faults on every request, per mille: throttling 10, ProvisionedThroughput 5,
# 500 5, 503 5, a 300 ms hang 2, a dropped answer (applied, never answered) 5; the chaos's
# fault step drops the next 8 answers at once.
DYNAMODB_FAULT_RATES="rates 10 5 5 5 2 5"

start_dynamodb() {
	ddb_dir=$scratch/dynalite
	sh "$top/scripts/dynalite.sh" start "$ddb_dir" persist >"$scratch/dynalite.out" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		echo "FAIL: dynalite did not start" >&2
		cat "$scratch/dynalite.out" >&2
		ddb_dir=
		return 1
	fi
	port=$(cat "$ddb_dir/port")
	# test credentials: dynalite requires signed requests but checks no signature
	AWS_ACCESS_KEY_ID=tallystress AWS_SECRET_ACCESS_KEY=tallystress AWS_REGION=us-east-1
	export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION
	unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL
	# clock_skew_ms: reapers and writers share this host's clock (docs/store-dynamodb.md)
	options="table_prefix=stress_&clock_skew_ms=200"
	store_url="dynamodb://?endpoint=http://127.0.0.1:$port&$options"
	[ "$1" = chaos ] || return 0
	STRESS_STORE_RESTART="sh $top/scripts/dynalite.sh restart $ddb_dir"
	export STRESS_STORE_RESTART
	[ -x ./tests/store/http_fault ] || return 0
	./tests/store/http_fault "$port" "$scratch/fault.ports" 2>"$scratch/fault.log" &
	proxy_pid=$!
	wait_for_file "$scratch/fault.ports" || { echo "FAIL: http_fault did not start" >&2; return 1; }
	read -r proxy_port control_port <"$scratch/fault.ports"
	store_url="dynamodb://?endpoint=http://127.0.0.1:$proxy_port&$options"
	sh -c "$(control "$control_port" "hang_ms 300")" &&
		sh -c "$(control "$control_port" "$DYNAMODB_FAULT_RATES")" ||
		{ echo "FAIL: http_fault does not answer" >&2; return 1; }
	STRESS_STORE_FAULT=$(control "$control_port" "next drop 8")
	export STRESS_STORE_FAULT
	DYNAMODB_CONTROL=$control_port
}

store_start() {
	store_url=
	DYNAMODB_CONTROL=
	case $1 in
	sqlite) rm -f "$scratch"/stress.db*; store_url="sqlite://$scratch/stress.db" ;;
	postgresql) start_postgresql "${2:-chaos}" ;;
	dynamodb) start_dynamodb "${2:-chaos}" ;;
	*) echo "FAIL: unknown store $1" >&2; return 1 ;;
	esac
}

# The sequence program's strict series refuses a number when a lease write fails, and a
# lease write whose answer was lost may have moved the mark (a gap the strict-gap check
# would count): it runs without the background faults; the chaos steps still apply.
store_args() {
	case $1/$2 in
	dynamodb/*server_day) echo "--rate $STRESS_DYNAMODB_RATE" ;;
	esac
}

# store_faults on|off: the background fault rates of the dynamodb proxy (none elsewhere).
store_faults() {
	[ -n "${DYNAMODB_CONTROL:-}" ] || return 0
	if [ "$1" = on ]; then
		sh -c "$(control "$DYNAMODB_CONTROL" "$DYNAMODB_FAULT_RATES")"
	else
		sh -c "$(control "$DYNAMODB_CONTROL" clear)"
	fi
}
