#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# tests/ffi_ctypes.sh: runs tests/ffi_ctypes.py on the freshly built libtally.so. Skipped
# without python3, without a shared library (--disable-shared), and in sanitizer builds (a
# sanitized library cannot be loaded into an uninstrumented python).
here=$(dirname "$0")
lib=.libs/libtally.so
if ! command -v python3 >/dev/null 2>&1; then
	echo "1..0 # SKIP python3 not installed"
elif [ ! -f "$lib" ]; then
	echo "1..0 # SKIP no shared libtally"
elif [ -n "${TALLY_TEST_SANITIZERS:-}" ]; then
	echo "1..0 # SKIP sanitizer build ($TALLY_TEST_SANITIZERS)"
else
	# dlopen needs room in glibc's static TLS surplus (512 bytes by default) for the
	# initial-exec TLS of libtally (thread index, sequence block cache) and of jemalloc
	# (2.6 KB), or it fails with "cannot allocate memory in static TLS block" (docs/cxx.md).
	GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384${GLIBC_TUNABLES:+:$GLIBC_TUNABLES}
	export GLIBC_TUNABLES
	exec python3 "$here/ffi_ctypes.py" "$lib"
fi
