/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/static/thread_index.h: the per-thread index behind tally's sharded structures.
 * Included by headers whose fast paths are inline; not a public API of its own.
 *
 * Each thread that touches a sharded structure claims a small dense index in
 * [0, TALLY_THREAD_INDEX_MAX) from a process-wide bitmap, initialised on first use with
 * pthread_once. The index is released when the thread exits (a pthread key destructor), and a
 * later thread may reuse it: that is how thread pools never grow memory, and why a slot's
 * contents outlive the thread that wrote them. The release/claim pair is a release/acquire on
 * the bitmap word, so a new owner of an index sees every write of the previous owner.
 *
 * When every index is taken, tally_thread_index() returns -1 and callers use a shared,
 * atomic read-modify-write path: correct, only slower.
 */
#ifndef TALLY_STATIC_THREAD_INDEX_H
#define TALLY_STATIC_THREAD_INDEX_H

#include <tally/static/compat.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_THREAD_INDEX_MAX 1024

/* index + 1 of the calling thread; 0 = not claimed yet; -1 = none available (or exiting).
 * initial-exec: one %fs-relative load, no __tls_get_addr call, also inside libtally.so
 * (costs a few bytes of static TLS, which glibc reserves even for dlopen'ed libraries). */
extern TALLY__THREAD_LOCAL int tally__thread_index_plus1 __attribute__((tls_model("initial-exec")));

/* Slow path: claims an index for the calling thread. Returns it, or -1 if none is free. */
int tally__thread_index_claim(void);

/* The calling thread's index, claimed on first use; -1 when none is available. Wait-free
 * after the first call in a thread (the claim is lock-free). */
TALLY__INLINE int tally_thread_index(void);

#if TALLY__INLINE_BODIES
TALLY__INLINE int tally_thread_index(void)
{
	int plus1 = tally__thread_index_plus1;

	if (TALLY_LIKELY(plus1 > 0))
		return plus1 - 1;
	if (plus1 < 0)
		return -1;
	return tally__thread_index_claim();
}
#endif

#ifdef __cplusplus
}
#endif
#endif
