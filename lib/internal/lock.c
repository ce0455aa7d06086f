/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The contended paths of the futex-word mutex (see lock.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <urcu/futex.h>
#include <ck_pr.h>
#include "internal/lock.h"

/* Long enough for a join's or a leave's critical section to end on the other core, short
 * enough that a preempted holder's waiters soon go to sleep (docs/session.md, Structure). */
#define SPINS 128

static int32_t *futex_word(struct tally_lock *lock)
{
	return (int32_t *)&lock->state; /* an _Atomic int32_t has int32_t's representation */
}

void tally__lock_acquire_contended(struct tally_lock *lock)
{
	for (int spin = 0; spin < SPINS; spin++) {
		int32_t expected = TALLY_LOCK_FREE;

		ck_pr_stall();
		if (atomic_load_explicit(&lock->state, memory_order_relaxed) == TALLY_LOCK_FREE &&
		    atomic_compare_exchange_weak_explicit(&lock->state, &expected,
							  TALLY_LOCK_HELD, memory_order_acquire,
							  memory_order_relaxed))
			return;
	}
	/* Announce a sleeper before sleeping: whoever releases then wakes one. Taking the lock
	 * this way leaves it marked SLEEPERS even if no one else sleeps, which costs at most
	 * one spare wake-up. FUTEX_WAIT returns at once if the word is no longer 2, and may
	 * return spuriously: the exchange decides. */
	while (atomic_exchange_explicit(&lock->state, TALLY_LOCK_SLEEPERS, memory_order_acquire) !=
	       TALLY_LOCK_FREE)
		futex_noasync(futex_word(lock), FUTEX_WAIT, TALLY_LOCK_SLEEPERS, NULL, NULL, 0);
}

void tally__lock_wake_one(struct tally_lock *lock)
{
	futex_noasync(futex_word(lock), FUTEX_WAKE, 1, NULL, NULL, 0);
}

void tally__lock_held_failed(const char *file, int line)
{
	fprintf(stderr, "%s:%d: tally: a lock the code requires held is free\n", file, line);
	abort();
}
