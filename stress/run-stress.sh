#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# Runs each stress program for SECONDS and prints its summary line; exits 1 if any failed.
# Usage: run-stress.sh SECONDS PROGRAM...
seconds=$1; shift
failed=0
for program in "$@"; do
	if ! "./$program" "$seconds"; then
		echo "FAIL: $program" >&2
		failed=1
	fi
done
exit $failed
