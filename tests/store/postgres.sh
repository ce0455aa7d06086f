#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# tests/store/postgres.sh: runs tests/store/postgres against a private PostgreSQL 15 cluster
# (scripts/pg-cluster.sh) made for this run in a temp directory, with the fault proxy
# tests/store/tcp_fault; the cluster is stopped and removed when the run ends, also when
# the test fails or is interrupted. TAP on stdout (the program's). fsync is off for the
# test cluster: the restart it does is `pg_ctl restart -m immediate`, a crash of the server
# processes, not of the OS, so the page cache (and every committed transaction) survives.
set -u
srcdir=${srcdir:-$(dirname "$0")/../..}
cluster_script="$srcdir/scripts/pg-cluster.sh"
if [ ! -x "${PG_BINDIR:-/usr/lib/postgresql/15/bin}/initdb" ]; then
	echo "1..0 # SKIP PostgreSQL 15 is not installed (apt-get install postgresql-15)"
	exit 0
fi
dir=$(TALLY_PG_OWNER_PID=$$ sh "$cluster_script" start off) || {
	echo "Bail out! could not start a PostgreSQL cluster"
	exit 1
}
trap 'sh "$cluster_script" stop "$dir"' EXIT
trap 'exit 1' HUP INT TERM
. "$dir/env"
TALLY_PG_CLUSTER=$cluster_script
TALLY_TCP_FAULT=./tests/store/tcp_fault
export TALLY_PG_CLUSTER TALLY_TCP_FAULT
./tests/store/postgres
