#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# tests/headers.sh: every public header compiles alone, with nothing included before it, as
# C11 (by $CC and by clang or gcc, whichever is the other) and as C++11, 14, 17 and 20 (by
# $CXX; C++11 and C++20 also by the other C++ compiler), with -Wall -Wextra -Werror. TAP.
# Run by make check with TALLY_TEST_CC, TALLY_TEST_CXX and TALLY_TEST_INCLUDE set (mk/cxx.am).
set -u
cc=${TALLY_TEST_CC:-cc}
cxx=${TALLY_TEST_CXX:-c++}
include=${TALLY_TEST_INCLUDE:-include}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

other() { # other gcc|g++: the other compiler family, if installed
	case "$($1 --version 2>/dev/null | head -1)" in
	*clang*) command -v "$2" ;;
	*) command -v "$3" ;;
	esac
}
other_cc=$(other "$cc" gcc clang)
other_cxx=$(other "$cxx" g++ clang++)

n=0
failed=0
check() { # check HEADER LANG STD COMPILER [FLAGS]
	header=$1 lang=$2 std=$3 compiler=$4
	shift 4
	n=$((n + 1))
	printf '#include <%s>\n' "$header" >"$work/t.$lang"
	if $compiler -std="$std" -Wall -Wextra -Werror "$@" -I"$include" -fsyntax-only \
		"$work/t.$lang" >"$work/out" 2>&1; then
		echo "ok $n - $header alone as $std ($compiler)"
	else
		echo "not ok $n - $header alone as $std ($compiler)"
		sed 's/^/# /' "$work/out"
		failed=$((failed + 1))
	fi
}

headers=$(cd "$include" && find tally -name '*.h' -o -name '*.hpp' | LC_ALL=C sort)
[ -n "$headers" ] || { echo "Bail out! no headers under $include"; exit 1; }
for header in $headers; do
	case $header in
	*.h)
		check "$header" c c11 "$cc" -Wstrict-prototypes -Wmissing-prototypes -Wshadow
		[ -z "$other_cc" ] || check "$header" c c11 "$other_cc" -Wstrict-prototypes
		;;
	esac
	for std in c++11 c++14 c++17 c++20; do
		check "$header" cpp "$std" "$cxx" -Wshadow
	done
	if [ -n "$other_cxx" ]; then
		check "$header" cpp c++11 "$other_cxx"
		check "$header" cpp c++20 "$other_cxx"
	fi
done
echo "1..$n"
[ "$failed" -eq 0 ]
