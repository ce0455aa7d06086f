#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# bench/store_postgres.sh PROGRAM [ARGS...]: runs the PostgreSQL store benchmark PROGRAM
# against a private PostgreSQL 15 cluster made for this run (scripts/pg-cluster.sh, fsync on:
# the benchmark measures durable commits), stopped and removed at the end, also on failure.
# Without PostgreSQL 15 the program runs without TALLY_PG_URL and registers nothing.
set -u
srcdir=$(dirname "$0")/..
program=$1
shift
if [ ! -x "${PG_BINDIR:-/usr/lib/postgresql/15/bin}/initdb" ]; then
	exec "$program" "$@"
fi
dir=$(TALLY_PG_OWNER_PID=$$ sh "$srcdir/scripts/pg-cluster.sh" start on) || exit 1
trap 'sh "$srcdir/scripts/pg-cluster.sh" stop "$dir"' EXIT
trap 'exit 1' HUP INT TERM
. "$dir/env"
"$program" "$@"
