/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/lock.c: the futex-word mutex (lib/internal/lock.c): mutual exclusion under
 * contention, waiters that must sleep, and the word's state afterwards. */
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#include "internal/lock.h"
#include "tap.h"
#include "threads.h"

#define THREADS 4
#define ROUNDS 200000
#define SLEEPY_ROUNDS 20

struct guarded {
	struct tally_lock lock;
	int64_t plain_count;   /* written only under the lock: TSan reports a missed exclusion */
	_Atomic int inside;    /* holders at once; must never exceed 1 */
	_Atomic int overlaps;
	long hold_ns;          /* how long each holder stays (0: no wait) */
	int rounds;
};

static void hold_for(long ns)
{
	struct timespec pause = { 0, ns };

	if (ns)
		nanosleep(&pause, NULL);
}

static void *take_turns(struct test_thread *self)
{
	struct guarded *guarded = self->shared;

	for (int i = 0; i < guarded->rounds; i++) {
		tally__lock_acquire(&guarded->lock);
		if (atomic_fetch_add(&guarded->inside, 1) != 0)
			atomic_fetch_add(&guarded->overlaps, 1);
		guarded->plain_count++;
		hold_for(guarded->hold_ns);
		atomic_fetch_sub(&guarded->inside, 1);
		tally__lock_release(&guarded->lock);
	}
	return NULL;
}

static void run(struct guarded *guarded, const char *what)
{
	struct test_thread threads[THREADS];

	tally__lock_init(&guarded->lock);
	run_threads(THREADS, take_turns, guarded, threads);
	tap_eq(atomic_load(&guarded->overlaps), 0, "%s: never two holders at once", what);
	tap_eq(guarded->plain_count, (int64_t)THREADS * guarded->rounds,
	       "%s: every increment under the lock counted", what);
	tap_eq(atomic_load(&guarded->lock.state), TALLY_LOCK_FREE, "%s: free afterwards", what);
}

int main(void)
{
	struct tally_lock lock;
	struct guarded busy = { .rounds = ROUNDS };
	/* 2 ms holds: waiters outlast the spin and sleep in FUTEX_WAIT */
	struct guarded sleepy = { .rounds = SLEEPY_ROUNDS, .hold_ns = 2000000 };

	tally__lock_init(&lock);
	tally__lock_acquire(&lock);
	tap_eq(atomic_load(&lock.state), TALLY_LOCK_HELD, "an uncontended acquire marks it held");
	tally__lock_release(&lock);
	tap_eq(atomic_load(&lock.state), TALLY_LOCK_FREE, "release frees it");
	run(&busy, "short holds");
	run(&sleepy, "long holds");
	return tap_done();
}
