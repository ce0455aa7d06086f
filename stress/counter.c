/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/counter.c: writers add seeded random deltas to one sharded counter for the whole
 * run while a flusher drains it continuously and short-lived threads come and go (a thread
 * pool's churn).
 * Invariants:
 * - continuously: the drained sum never exceeds a later read of the total, and the total
 *   never goes down (every delta is positive);
 * - at the end: the drains sum to the total (no update lost or counted twice), the total
 *   equals what the writers say they added, and thread churn did not grow the thread-index
 *   space (slots are reused).
 */
#include <pthread.h>
#include <stdint.h>
#include "tally/counter.h"
#include "tally/static/thread_index.h"
#include "stress.h"

#define BATCH 1024

struct run {
	struct stress_run *stress;
	struct tally_counter counter;
	_Atomic int stop;
	_Atomic int64_t added;
	_Atomic int64_t drained;
	_Atomic int max_index;
	int64_t churned;
};

struct writer_arg {
	struct run *run;
	int index;
};

static void note_index(struct run *run)
{
	int index = tally_thread_index(), seen = atomic_load(&run->max_index);

	while (index > seen && !atomic_compare_exchange_weak(&run->max_index, &seen, index))
		;
}

static void *writer(void *arg)
{
	struct writer_arg *self = arg;
	struct run *run = self->run;
	struct stress_rng rng;
	struct stress_pacer pacer;
	int64_t mine = 0;

	stress_rng_init(&rng, run->stress->opt.seed, (uint64_t)self->index);
	stress_pacer_init(&pacer, run->stress, run->stress->opt.threads);
	int64_t batch = stress_pace_batch(&pacer, BATCH);
	note_index(run);
	while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
		uint64_t bits = stress_rng_next(&rng);

		for (int64_t i = 0; i < batch; i++) {
			int64_t delta = (int64_t)((bits >> (i & 31) * 2) & 7) + 1;

			tally_counter_add(&run->counter, delta);
			mine += delta;
		}
		stress_ops(run->stress, batch);
		stress_pace(&pacer, batch);
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
	stress_ops(run->stress, 1000);
	return NULL;
}

/* Drains continuously; after each drain a read must show at least what was drained. */
static void *flusher(void *arg)
{
	struct run *run = arg;
	int64_t delta, drained = 0, total, last_total = 0, checks = 0;

	while (!atomic_load(&run->stop)) {
		if (tally_counter_drain(&run->counter, &delta) == TALLY_OK)
			drained += delta;
		tally_counter_read(&run->counter, &total);
		if (total < drained || total < last_total)
			stress_violation(run->stress, "counter read %lld after draining %lld "
					 "(previous read %lld)", (long long)total,
					 (long long)drained, (long long)last_total);
		last_total = total;
		if (++checks == 1024) {
			stress_checked(run->stress, checks);
			checks = 0;
		}
	}
	stress_checked(run->stress, checks);
	atomic_store(&run->drained, drained);
	return NULL;
}

static void final_checks(struct run *run)
{
	struct stress_run *stress = run->stress;
	int64_t total, last;

	tally_counter_read(&run->counter, &total);
	tally_counter_drain(&run->counter, &last);
	int64_t added = atomic_load(&run->added), drained = atomic_load(&run->drained) + last;
	stress_check(stress, total == added, "total %lld != added %lld", (long long)total,
		     (long long)added);
	stress_check(stress, drained == total, "drains sum to %lld, total %lld",
		     (long long)drained, (long long)total);
	stress_check(stress, atomic_load(&run->max_index) <= stress->opt.threads + 8,
		     "thread index %d after churn (threads %d): slots not reused",
		     atomic_load(&run->max_index), stress->opt.threads);
	stress_field_int(stress, "updates", total);
	stress_field_int(stress, "churned_threads", run->churned);
	stress_field_int(stress, "max_thread_index", atomic_load(&run->max_index));
	stress_field_int(stress, "lost", added - total);
	stress_field_int(stress, "double_counted_or_lost_in_drain", total - drained);
}

int main(int argc, char **argv)
{
	static struct stress_run stress;
	static struct run run;
	struct writer_arg args[STRESS_THREADS_MAX];
	pthread_t writers[STRESS_THREADS_MAX], drain_thread;

	stress_init(&stress, "counter", argc, argv, NULL);
	run.stress = &stress;
	tally_counter_init(&run.counter, 0);
	for (int i = 0; i < stress.opt.threads; i++) {
		args[i] = (struct writer_arg){ &run, i };
		pthread_create(&writers[i], NULL, writer, &args[i]);
	}
	pthread_create(&drain_thread, NULL, flusher, &run);
	while (stress_running(&stress)) {
		pthread_t pool_thread;

		pthread_create(&pool_thread, NULL, short_lived, &run);
		pthread_join(pool_thread, NULL);
		run.churned++;
		stress_sleep(&stress, 0.001);
	}
	atomic_store(&run.stop, 1);
	for (int i = 0; i < stress.opt.threads; i++)
		pthread_join(writers[i], NULL);
	pthread_join(drain_thread, NULL);
	final_checks(&run);
	tally_counter_destroy(&run.counter);
	return stress_finish(&stress);
}
