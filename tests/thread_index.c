/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/thread_index.c: dense indices, unique among live threads, reused after exit. */
#include <stdint.h>
#include "tally/static/thread_index.h"
#include "tap.h"
#include "threads.h"

#define THREADS 8

static int live_indices[THREADS];
static pthread_barrier_t all_claimed;

static void *claim_and_hold(struct test_thread *self)
{
	live_indices[self->index] = tally_thread_index();
	pthread_barrier_wait(&all_claimed); /* every thread holds its index at once */
	return NULL;
}

static void *claim_once(struct test_thread *self)
{
	return (void *)(intptr_t)tally_thread_index();
}

int main(void)
{
	struct test_thread threads[THREADS];
	int mine = tally_thread_index(), distinct = 1, in_range = 1;

	tap_ok(mine >= 0 && mine < TALLY_THREAD_INDEX_MAX, "main thread gets an index");
	tap_eq(tally_thread_index(), mine, "the index is stable within a thread");

	pthread_barrier_init(&all_claimed, NULL, THREADS);
	run_threads(THREADS, claim_and_hold, NULL, threads);
	for (int i = 0; i < THREADS; i++) {
		if (live_indices[i] < 0 || live_indices[i] >= TALLY_THREAD_INDEX_MAX ||
		    live_indices[i] == mine)
			in_range = 0;
		for (int j = 0; j < i; j++)
			if (live_indices[i] == live_indices[j])
				distinct = 0;
	}
	tap_ok(in_range, "live threads get valid indices other than main's");
	tap_ok(distinct, "live threads never share an index");

	/* Threads that come and go reuse released indices: 200 sequential threads stay low. */
	int highest = 0;
	for (int round = 0; round < 200; round++) {
		run_threads(1, claim_once, NULL, threads);
		int got = (int)(intptr_t)threads[0].result;
		if (got > highest)
			highest = got;
	}
	tap_ok(highest < THREADS + 2, "indices are reused after exit (highest %d)", highest);
	pthread_barrier_destroy(&all_claimed);
	return tap_done();
}
