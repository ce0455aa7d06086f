/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/internal/test_hooks.h: points where a test can run its own code inside a tally call,
 * to force an interleaving that timing alone would hit once in a million runs (jemalloc's
 * test_hooks.h does the same). Each hook is a function pointer, NULL unless a test linked
 * with libtally_internal.la sets it; libtally.so does not export them, so no program can.
 * Cost when unset: one relaxed load and a predicted branch.
 *
 * tally__test_hook_alloc: called at the start of every tally__alloc_aligned and
 * tally__alloc_packed, i.e. where a rate-limit key's creator is between its missed lookup
 * and its insert (tests/ratelimit/create_race.c parks it there).
 */
#ifndef TALLY_INTERNAL_TEST_HOOKS_H
#define TALLY_INTERNAL_TEST_HOOKS_H
#include <stdatomic.h>
#include <stddef.h>
#include "tally/static/compat.h"

typedef void (*tally__test_hook_fn)(void);

extern _Atomic(tally__test_hook_fn) tally__test_hook_alloc;

/* Runs `hook` if a test set it. Relaxed: a test sets its hooks before it starts the threads
 * that reach them (pthread_create orders the store before them). */
#define TALLY__TEST_HOOK(hook)                                                            \
	do {                                                                              \
		tally__test_hook_fn tally__hook_ = atomic_load_explicit(&(hook),          \
									 memory_order_relaxed); \
		if (TALLY_UNLIKELY(tally__hook_ != NULL))                                 \
			tally__hook_();                                                   \
	} while (0)

#endif
