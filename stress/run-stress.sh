#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Runs each stress program for SECONDS and prints its summary line; exits 1 if any failed.
# Usage: run-stress.sh SECONDS PROGRAM...
# STRESS_ARGS (environment) is added to every program's command line, e.g.
#   STRESS_ARGS="--threads 2 --seed 7" or STRESS_ARGS="--store sqlite:///tmp/t.db".
seconds=$1; shift
failed=0
for program in "$@"; do
	# shellcheck disable=SC2086 # STRESS_ARGS is a list of options
	if ! "./$program" --seconds "$seconds" ${STRESS_ARGS:-}; then
		echo "FAIL: $program" >&2
		failed=1
	fi
done
exit $failed
