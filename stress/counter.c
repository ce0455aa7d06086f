/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/counter.c: writers add to one sharded counter for the whole run while a flusher
 * drains it continuously and short-lived threads come and go (a thread pool's churn).
 * Invariants: the drains sum to the final total (no update lost or counted twice), the
 * total equals what the writers say they added, and thread churn does not grow the
 * thread-index space (slot reuse).
 */
#include <pthread.h>
#include <stdint.h>
#include "tally/counter.h"
#include "tally/static/thread_index.h"
#include "stress.h"

struct run {
	struct tally_counter counter;
	_Atomic int stop;
	_Atomic int64_t added;
	_Atomic int max_index;
	int64_t drained;
};

static void note_index(struct run *run)
{
	int index = tally_thread_index(), seen = atomic_load(&run->max_index);

	while (index > seen && !atomic_compare_exchange_weak(&run->max_index, &seen, index))
		;
}

static void *writer(void *arg)
{
	struct run *run = arg;
	int64_t mine = 0;

	note_index(run);
	while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
		for (int i = 0; i < 1024; i++)
			tally_counter_add(&run->counter, (i & 7) + 1);
		mine += 1024 * 9 / 2; /* sum of (i & 7) + 1 over 1024 i */
	}
	atomic_fetch_add(&run->added, mine);
	return NULL;
}

static void *short_lived(void *arg)
{
	struct run *run = arg;

	note_index(run);
	for (int i = 0; i < 1000; i++)
		tally_counter_inc(&run->counter);
	atomic_fetch_add(&run->added, 1000);
	return NULL;
}

static void *flusher(void *arg)
{
	struct run *run = arg;
	int64_t delta;

	while (!atomic_load(&run->stop))
		if (tally_counter_drain(&run->counter, &delta) == TALLY_OK)
			run->drained += delta;
	return NULL;
}

int main(int argc, char **argv)
{
	struct stress_args args = stress_parse(argc, argv);
	static struct run run;
	pthread_t writers[256], drain_thread;
	long churned = 0;
	int64_t total, last;
	double start = stress_now();

	tally_counter_init(&run.counter, 0);
	for (int i = 0; i < args.threads; i++)
		pthread_create(&writers[i], NULL, writer, &run);
	pthread_create(&drain_thread, NULL, flusher, &run);
	while (stress_now() - start < args.seconds) {
		pthread_t pool_thread;
		pthread_create(&pool_thread, NULL, short_lived, &run);
		pthread_join(pool_thread, NULL);
		churned++;
	}
	atomic_store(&run.stop, 1);
	for (int i = 0; i < args.threads; i++)
		pthread_join(writers[i], NULL);
	pthread_join(drain_thread, NULL);
	double elapsed = stress_now() - start;

	tally_counter_read(&run.counter, &total);
	tally_counter_drain(&run.counter, &last);
	int violations = (total != run.added) + (run.drained + last != total) +
			 (atomic_load(&run.max_index) > args.threads + 8);
	printf("counter: threads=%d seconds=%.1f updates=%lld updates_per_s=%.0f "
	       "churned_threads=%ld max_thread_index=%d lost=%lld double_counted_or_lost_in_drain=%lld "
	       "violations=%d\n",
	       args.threads, elapsed, (long long)total, (double)total / elapsed, churned,
	       atomic_load(&run.max_index), (long long)(run.added - total),
	       (long long)(total - run.drained - last), violations);
	tally_counter_destroy(&run.counter);
	return violations ? EXIT_FAILURE : EXIT_SUCCESS;
}
