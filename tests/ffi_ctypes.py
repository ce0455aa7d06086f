#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
# tests/ffi_ctypes.py LIBTALLY.so: Python calls tally's inline fast paths through their
# exported symbols (lib/inline.c) with ctypes, as a program in another language would. TAP.
import ctypes
import sys

lib = ctypes.CDLL(sys.argv[1])
n = 0
failed = 0


def ok(cond, name):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok"), n, "-", name)
    failed += 0 if cond else 1


i64 = ctypes.c_int64
# struct tally_counter is 24 bytes (tests/abi_layouts.h); give it a cache line.
counter = ctypes.create_string_buffer(64)
for name, args in [("tally_counter_init", [ctypes.c_void_p, ctypes.c_uint]),
                   ("tally_counter_add", [ctypes.c_void_p, i64]),
                   ("tally_counter_sub", [ctypes.c_void_p, i64]),
                   ("tally_counter_inc", [ctypes.c_void_p]),
                   ("tally_counter_read", [ctypes.c_void_p, ctypes.POINTER(i64)]),
                   ("tally_counter_destroy", [ctypes.c_void_p])]:
    getattr(lib, name).argtypes = args
lib.tally_strerror.restype = ctypes.c_char_p

ok(lib.tally_counter_init(counter, 4) == 0, "tally_counter_init")
ok(lib.tally_counter_add(counter, 40) == 0, "tally_counter_add (the inline call's export)")
ok(lib.tally_counter_sub(counter, 2) == 0, "tally_counter_sub")
ok(lib.tally_counter_inc(counter) == 0, "tally_counter_inc")
total = i64(-1)
ok(lib.tally_counter_read(counter, ctypes.byref(total)) == 0 and total.value == 39,
   "tally_counter_read sees 39 (got %d)" % total.value)
err = lib.tally_counter_add(counter, 2**63 - 1)
ok(err == 3 and lib.tally_strerror(err), "overflow is TALLY_EOVERFLOW (%d)" % err)
ok(lib.tally_thread_index() >= 0, "tally_thread_index")
ok(lib.tally_counter_destroy(counter) == 0, "tally_counter_destroy")
print("1..%d" % n)
sys.exit(1 if failed else 0)
