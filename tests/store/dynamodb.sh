#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# tests/store/dynamodb.sh: runs tests/store/dynamodb (TAP) against a private dynalite,
# persisted with --path so the test can restart it mid-run, behind the fault-injecting
# proxy tests/store/http_fault. Both are stopped and their data removed at the end, also
# on failure. Skips (a TAP plan of 0) when node or dynalite (npm ci, scripts/setup.sh) is
# missing, and finds dynalite through TALLY_NODE_MODULES when the tree has none (distcheck).
# Run from the build directory (make check does).
set -u
srcdir=${srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top=$(cd "$srcdir" && pwd)
[ -d "$top/node_modules/dynalite" ] || top=$(cd "$(dirname "$0")/../.." && pwd)
dynalite="$top/scripts/dynalite.sh"
dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-ddb.XXXXXX")
proxy_pid=""

cleanup() {
	[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
	sh "$dynalite" stop "$dir/dynalite" >/dev/null 2>&1
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

sh "$dynalite" start "$dir/dynalite" persist
rc=$?
if [ $rc -eq 77 ]; then
	echo "1..0 # SKIP dynalite not available (node and scripts/setup.sh's npm ci)"
	exit 0 # a TAP plan of 0 with SKIP: the TAP driver counts exit 77 as an error
fi
[ $rc -eq 0 ] || { echo "Bail out! dynalite did not start"; exit 1; }
port=$(cat "$dir/dynalite/port")

./tests/store/http_fault "$port" "$dir/proxy.ports" 2>"$dir/proxy.log" &
proxy_pid=$!
i=0
while [ ! -s "$dir/proxy.ports" ]; do
	i=$((i + 1))
	[ $i -gt 200 ] && { echo "Bail out! the proxy did not start"; cat "$dir/proxy.log"; exit 1; }
	sleep 0.05
done
read -r proxy_port control_port <"$dir/proxy.ports"

# Test credentials: dynalite requires a signed request but does not check the signature.
AWS_ACCESS_KEY_ID=tallytest AWS_SECRET_ACCESS_KEY=tallytestsecret AWS_REGION=us-east-1
unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL
TALLY_DDB_PORT=$port TALLY_DDB_PROXY_PORT=$proxy_port TALLY_DDB_CONTROL_PORT=$control_port
TALLY_DDB_RESTART="sh '$dynalite' restart '$dir/dynalite'" TALLY_DDB_DIR=$dir
TALLY_STORE_WORKER=./tests/store/worker
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION TALLY_DDB_PORT TALLY_DDB_PROXY_PORT \
	TALLY_DDB_CONTROL_PORT TALLY_DDB_RESTART TALLY_DDB_DIR TALLY_STORE_WORKER
./tests/store/dynamodb
