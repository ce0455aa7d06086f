#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/main.sh: the main job. Sets everything up, builds an optimised tally, runs every
# stress program (invariants under threads, processes and crashes) and the benchmarks against
# their peers, and prints the summary. Results land in build/release/bench/results/.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
sh scripts/build.sh release CFLAGS="-O2 -g"
cd build/release
echo "== stress (${STRESS_SECONDS:-10} s per program)"
make -s stress STRESS_SECONDS="${STRESS_SECONDS:-10}"
if grep -q '^bench:' Makefile; then
	echo "== bench"
	make -s bench
fi
