#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# bench/store_dynamodb.sh PROGRAM [ARGS...]: runs the DynamoDB store benchmark PROGRAM against
# a private in-memory dynalite started for this run (scripts/dynalite.sh), stopped and removed
# at the end, also on failure. With TALLY_BENCH_DYNAMODB_URL already set (another server, or
# a real account) it runs against that instead. Without node or dynalite the program runs
# without the URL and registers nothing.
set -u
srcdir=$(cd "$(dirname "$0")/.." && pwd)
program=$1
shift
if [ -n "${TALLY_BENCH_DYNAMODB_URL:-}" ]; then
	exec "$program" "$@"
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-ddb-bench.XXXXXX")
trap 'sh "$srcdir/scripts/dynalite.sh" stop "$dir/dynalite" >/dev/null 2>&1; rm -rf "$dir"' EXIT
trap 'exit 1' HUP INT TERM
if ! sh "$srcdir/scripts/dynalite.sh" start "$dir/dynalite" >/dev/null 2>&1; then
	"$program" "$@"
	exit $?
fi
AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-tallybench} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-tallybench}
AWS_REGION=${AWS_REGION:-us-east-1}
TALLY_BENCH_DYNAMODB_URL="dynamodb://?endpoint=http://127.0.0.1:$(cat "$dir/dynalite/port")&region=$AWS_REGION"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION TALLY_BENCH_DYNAMODB_URL
"$program" "$@"
