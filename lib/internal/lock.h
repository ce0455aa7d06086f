/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/internal/lock.h: a mutex in one 4-byte futex word, for a lock that must share a cache
 * line with what it guards. A session's list lock sits on the line a lookup has already
 * brought in, beside the list head and the listener count, so a join or a leave writes one
 * line; a 40-byte pthread_mutex_t did not fit there and cost every join and leave a second
 * line, which on two cores means a second cache-line transfer.
 *
 * States: 0 free, 1 held, 2 held and a thread may be asleep on it (the three-state mutex of
 * Drepper's "Futexes Are Tricky"). The sleep and wake-up are liburcu's futex wrapper.
 * - acquire: acquire ordering; spins briefly, then sleeps (FUTEX_WAIT), so a holder that is
 *   preempted or runs a long callback costs its waiters no CPU.
 * - release: release ordering; a FUTEX_WAKE only when state 2 says someone may sleep.
 * Like PTHREAD_MUTEX_NORMAL: not recursive, no owner check, not robust. Internal only.
 *
 * Debug builds (TALLY_DEBUG defined: the sanitizer builds define it, any build may with
 * CPPFLAGS=-DTALLY_DEBUG): tally__lock_assert_held(lock), placed where code requires the
 * lock held, aborts with its file and line if the word is free. The word has no room for an
 * owner, so the check is that some thread holds the lock, not that the caller does: it
 * catches a path that forgot to take the lock whenever no other thread holds it at that
 * moment (always, in a single-threaded test). Without TALLY_DEBUG it compiles to nothing.
 */
#ifndef TALLY_INTERNAL_LOCK_H
#define TALLY_INTERNAL_LOCK_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct tally_lock {
	_Atomic int32_t state;
};

_Static_assert(sizeof(struct tally_lock) == 4, "a lock shares its line: one 4-byte word");

enum { TALLY_LOCK_FREE = 0, TALLY_LOCK_HELD = 1, TALLY_LOCK_SLEEPERS = 2 };

static inline void tally__lock_init(struct tally_lock *lock)
{
	atomic_init(&lock->state, TALLY_LOCK_FREE);
}

/* The contended paths (lib/internal/lock.c). */
void tally__lock_acquire_contended(struct tally_lock *lock);
void tally__lock_wake_one(struct tally_lock *lock);

static inline void tally__lock_acquire(struct tally_lock *lock)
{
	int32_t expected = TALLY_LOCK_FREE;

	if (!atomic_compare_exchange_strong_explicit(&lock->state, &expected, TALLY_LOCK_HELD,
						     memory_order_acquire, memory_order_relaxed))
		tally__lock_acquire_contended(lock);
}

static inline void tally__lock_release(struct tally_lock *lock)
{
	if (atomic_exchange_explicit(&lock->state, TALLY_LOCK_FREE, memory_order_release) ==
	    TALLY_LOCK_SLEEPERS)
		tally__lock_wake_one(lock);
}

/* Whether some thread holds the lock now (any thread: the word has no owner). Relaxed: a
 * holder asking about its own lock reads its own write; anyone else gets a moment's view. */
static inline bool tally__lock_is_held(const struct tally_lock *lock)
{
	return atomic_load_explicit(&lock->state, memory_order_relaxed) != TALLY_LOCK_FREE;
}

/* Reports the place (file:line) on stderr and aborts (lib/internal/lock.c). */
_Noreturn void tally__lock_held_failed(const char *file, int line);

#ifdef TALLY_DEBUG
#define tally__lock_assert_held(lock) \
	(tally__lock_is_held(lock) ? (void)0 : tally__lock_held_failed(__FILE__, __LINE__))
#else
#define tally__lock_assert_held(lock) ((void)sizeof(tally__lock_is_held(lock)))
#endif

#endif
