#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/pg-cluster.sh: a private, throw-away PostgreSQL 15 cluster for tally's tests and
# benchmarks (docs/store-postgres.md, "Tests").
#
#   pg-cluster.sh start [fsync]  makes a cluster in a new temp directory, starts it on
#                                127.0.0.1 at a free port and on a Unix socket in that
#                                directory, prints the directory. fsync: "on" (default, for
#                                benchmarks) or "off" (tests: an immediate restart kills
#                                processes, not the OS, so the page cache survives anyway).
#   pg-cluster.sh stop DIR       stops the cluster (immediate) and removes DIR.
#   pg-cluster.sh restart DIR    pg_ctl restart -m immediate (a server crash and recovery).
#   pg-cluster.sh kill DIR       stops it immediately and leaves it down (start-again DIR).
#   pg-cluster.sh start-again DIR
#
# DIR/env holds shell assignments the callers source:
#   TALLY_PG_URL       postgresql://tally_test:PASSWORD@127.0.0.1:PORT/tally_test
#   TALLY_PG_RO_URL    the same database as tally_ro, a role that may only read
#   TALLY_PG_ADMIN_URL the bootstrap superuser over the Unix socket (no password)
#   TALLY_PG_HOST, TALLY_PG_PORT, TALLY_PG_PASSWORD, TALLY_PG_DIR
# Passwords are random per cluster and live only in DIR (mode 0700). TALLY_PG_OWNER_PID: see
# watch_owner below. Run as root, the
# server runs as the `postgres` user (PostgreSQL refuses root): DIR is chowned to it.
set -eu
bindir=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

as_server_user() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + $$ % 30000))
}

random_password() {
	od -An -N12 -tx1 /dev/urandom | tr -d ' \n'
}

psql_admin() { # psql_admin DIR SQL
	as_server_user "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$1" -p "$(cat "$1/port")" \
		-U tally_admin -d postgres -c "$2" >/dev/null
}

start_server() { # start_server DIR
	as_server_user "$bindir/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 30 \
		-o "-p $(cat "$1/port")" start >/dev/null
}

start() {
	fsync=${1:-on}
	[ -x "$bindir/initdb" ] || { echo "pg-cluster: no $bindir/initdb" >&2; exit 77; }
	dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-pg.XXXXXX")
	chmod 0700 "$dir"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$dir"
	fi
	password=$(random_password)
	ro_password=$(random_password)
	as_server_user "$bindir/initdb" -D "$dir/data" -U tally_admin --auth-local=trust \
		--auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1; }
	as_server_user sh -c "cat >> '$dir/data/postgresql.conf'" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = $fsync
max_connections = 60
shared_buffers = 64MB
log_min_messages = warning
EOF
	for attempt in 1 2 3 4 5; do
		free_port | as_server_user sh -c "cat > '$dir/port'"
		if start_server "$dir" 2>>"$dir/start.log"; then
			break
		fi
		[ "$attempt" -lt 5 ] || { cat "$dir/server.log" >&2; stop "$dir"; exit 1; }
	done
	port=$(cat "$dir/port")
	psql_admin "$dir" "CREATE ROLE tally_test LOGIN PASSWORD '$password'" &&
		psql_admin "$dir" "CREATE ROLE tally_ro LOGIN PASSWORD '$ro_password'" &&
		psql_admin "$dir" "CREATE DATABASE tally_test OWNER tally_test" ||
		{ stop "$dir"; exit 1; }
	as_server_user "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" \
		-U tally_admin -d tally_test -c "REVOKE CREATE ON SCHEMA public FROM PUBLIC;
		GRANT CREATE, USAGE ON SCHEMA public TO tally_test;
		ALTER DEFAULT PRIVILEGES FOR ROLE tally_test IN SCHEMA public
			GRANT SELECT ON TABLES TO tally_ro;" >/dev/null || { stop "$dir"; exit 1; }
	as_server_user sh -c "cat > '$dir/env'" <<EOF
TALLY_PG_DIR='$dir'
TALLY_PG_HOST=127.0.0.1
TALLY_PG_PORT=$port
TALLY_PG_PASSWORD=$password
TALLY_PG_URL='postgresql://tally_test:$password@127.0.0.1:$port/tally_test'
TALLY_PG_RO_URL='postgresql://tally_ro:$ro_password@127.0.0.1:$port/tally_test'
TALLY_PG_ADMIN_URL='postgresql:host=$dir port=$port user=tally_admin dbname=tally_test'
export TALLY_PG_DIR TALLY_PG_HOST TALLY_PG_PORT TALLY_PG_PASSWORD TALLY_PG_URL
export TALLY_PG_RO_URL TALLY_PG_ADMIN_URL
EOF
	watch_owner "$dir"
	echo "$dir"
}

# With TALLY_PG_OWNER_PID set (the wrappers pass their own pid), a watcher stops and removes
# the cluster once that process is gone, even if it was SIGKILLed and its trap never ran.
watch_owner() { # watch_owner DIR
	[ -n "${TALLY_PG_OWNER_PID:-}" ] || return 0
	(
		while kill -0 "$TALLY_PG_OWNER_PID" 2>/dev/null && [ -d "$1" ]; do
			sleep 2
		done
		[ -d "$1" ] && stop "$1"
	) </dev/null >/dev/null 2>&1 &
}

stop() { # stop DIR: never fails, so it is safe in a trap
	case ${1:-} in
	"${TMPDIR:-/tmp}"/tally-pg.*) ;;
	*) echo "pg-cluster: refusing to remove '${1:-}'" >&2; return 1 ;;
	esac
	if [ -f "$1/data/postmaster.pid" ]; then
		as_server_user "$bindir/pg_ctl" -D "$1/data" -m immediate -w -t 30 stop \
			>/dev/null 2>&1 || true
	fi
	rm -rf "$1"
}

case ${1:-} in
start) start "${2:-on}" ;;
stop) stop "${2:-}" ;;
restart)
	as_server_user "$bindir/pg_ctl" -D "$2/data" -l "$2/server.log" -m immediate -w -t 30 \
		-o "-p $(cat "$2/port")" restart >/dev/null ;;
kill) as_server_user "$bindir/pg_ctl" -D "$2/data" -m immediate -w -t 30 stop >/dev/null ;;
start-again) start_server "$2" ;;
*) echo "usage: pg-cluster.sh start [on|off] | stop DIR | restart DIR | kill DIR | start-again DIR" >&2
   exit 2 ;;
esac
