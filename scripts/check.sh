#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# scripts/check.sh: the full test suite. Sets everything up, then builds and tests tally three
# ways: optimised (-O2) with `make distcheck`, ThreadSanitizer, and AddressSanitizer + UBSan.
# Each way runs the unit tests (TAP, every case counted) and the short stress suite.
# Ends with one line "N passed, N failed"; exits non-zero if anything failed.
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
sh scripts/setup.sh || exit 1

passed=0
failed=0
STRESS_SECONDS=${STRESS_SECONDS:-3}
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 ${TSAN_EXTRA_OPTIONS:-}"
export ASAN_OPTIONS="detect_leaks=1 abort_on_error=0 ${ASAN_EXTRA_OPTIONS:-}"
export TALLY_NODE_MODULES="$top/node_modules" # dynalite, for the distcheck tree too
export UBSAN_OPTIONS="print_stacktrace=1 halt_on_error=1"

# count_suite DIR: adds the TAP totals of DIR's last `make check` to passed/failed.
count_suite() {
	log="$1/test-suite.log"
	if [ ! -f "$log" ]; then
		failed=$((failed + 1))
		return
	fi
	p=$(sed -n 's/^# PASS: *//p' "$log" | head -1)
	f=0
	for field in FAIL XPASS ERROR; do
		n=$(sed -n "s/^# $field: *//p" "$log" | head -1)
		f=$((f + ${n:-0}))
	done
	passed=$((passed + ${p:-0}))
	failed=$((failed + f))
}

# run_way NAME CONFIGURE-ARGS...: build, make check, short stress.
run_way() {
	name=$1; shift
	echo "== $name: build"
	if ! sh scripts/build.sh "$name" "$@"; then
		echo "== $name: BUILD FAILED"
		failed=$((failed + 1))
		return
	fi
	echo "== $name: make check"
	rm -f "build/$name/test-suite.log"
	(cd "build/$name" && make -j"$(nproc)" check >check.out 2>&1)
	grep -E '^(FAIL|ERROR|XPASS):' "build/$name/check.out"
	grep -E '^# (TOTAL|PASS|FAIL|ERROR):' "build/$name/check.out" | tr '\n' ' '; echo
	count_suite "build/$name"
	if grep -qE '^# (FAIL|ERROR): *[1-9]' "build/$name/check.out"; then
		cat "build/$name/test-suite.log" | grep -vE '^(ok|PASS)' | head -80
	fi
	echo "== $name: stress (${STRESS_SECONDS} s each)"
	(cd "build/$name" && make -s stress STRESS_SECONDS="$STRESS_SECONDS" >stress.out 2>&1)
	cat "build/$name/stress.out" | grep -vE '^make' | head -40
	ok=$(grep -c 'violations=0$' "build/$name/stress.out")
	programs=$(cd "build/$name" && make -s -f Makefile print-stress-count 2>/dev/null || echo "$ok")
	passed=$((passed + ok))
	failed=$((failed + programs - ok))
}

run_way release CFLAGS="-O2 -g"
echo "== release: make distcheck"
if (cd build/release && make -j"$(nproc)" distcheck >distcheck.out 2>&1); then
	passed=$((passed + 1))
else
	tail -40 build/release/distcheck.out
	failed=$((failed + 1))
fi
echo "== release: make install, then build and run a C and a C++ example against the installed tally"
prefix="$top/build/prefix"
rm -rf "$prefix"
if (cd build/release && make -s install prefix="$prefix" >install.out 2>&1) &&
   cc -std=c11 -O2 -o build/listeners-installed examples/listeners.c \
	$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --define-prefix --cflags --libs tally) \
	-Wl,-rpath,"$prefix/lib" &&
   build/listeners-installed | grep -q "ADD 400000" &&
   c++ -std=c++11 -Wall -Wextra -Werror -O2 -o build/frontdoor-installed examples/frontdoor.cpp \
	$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --define-prefix --cflags --libs tally) \
	-pthread -Wl,-rpath,"$prefix/lib" &&
   build/frontdoor-installed | grep -q "^served "; then
	passed=$((passed + 1))
else
	echo "install test FAILED"
	failed=$((failed + 1))
fi
run_way tsan --enable-sanitizers=thread CFLAGS="-O1 -g"
run_way asan --enable-sanitizers=address,undefined CFLAGS="-O1 -g"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
