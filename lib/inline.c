/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/inline.c: the exported twin of every static inline call in the public headers, for
 * languages that call C through a symbol table (Rust, Go, Python ctypes) and for C built with
 * TALLY_NO_INLINE. TALLY__INLINE_DEFINE turns the headers' TALLY__INLINE bodies into ordinary
 * external definitions (tally/static/compat.h), so each export is compiled from the very body
 * that callers inline: one copy of the code, two ways to reach it (liburcu's wrappers around
 * its _LGPL_SOURCE bodies, without a second body to keep in step).
 */
#define TALLY__INLINE_DEFINE 1
#include <tally/counter.h>
#include <tally/sequence.h>
#include <tally/static/thread_index.h>
