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
 * With --store URL: --processes workers (default 3), each a store writer whose counter is
 * written behind, are SIGKILLed at random moments (half of them aimed into a flush) and
 * restarted as new epochs; the last is killed at the end and never restarted (reaped).
 * Checked: each incarnation's store total after the final flush equals what it applied if it
 * lived; for a killed one it lies between what was acknowledged and what was applied, so the
 * loss, applied - stored, is measured exactly and never above the unacknowledged amount
 * (the write-behind's documented bound).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "tally/counter.h"
#include "tally/static/thread_index.h"
#include "tally/writebehind.h"
#include "fleet.h"
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

/* ---- with a store: a fleet of writer processes ---------------------------------------- */

static struct fleet_options options = { .kill_every_s = 1.0, .writer_ttl_ms = 2000,
					.flush_ms = 50 };

struct store_run {
	struct fleet fleet;
	char tag[24];
};

static void incarnation_key(void *arg, int incarnation, char *out, size_t size)
{
	snprintf(out, size, "counter/%s/incarnation-%d", ((struct store_run *)arg)->tag,
		 incarnation);
}

struct store_thread {
	struct stress_run *stress;
	struct tally_counter *counter;
	struct fleet_incarnation *me;
	struct fleet_shared *shared;
	int index;
};

static void *store_writer(void *arg)
{
	struct store_thread *self = arg;
	struct stress_rng rng;
	struct stress_pacer pacer;
	int64_t applied = 0;

	fleet_request_thread_yields();
	stress_rng_init(&rng, self->stress->opt.seed,
			((uint64_t)self->me->slot << 40) | ((uint64_t)self->me->number << 16) |
				(uint64_t)self->index);
	stress_pacer_init(&pacer, self->stress,
			  self->stress->opt.threads * (self->stress->opt.processes ?: 3));
	int64_t batch = stress_pace_batch(&pacer, BATCH);
	while (!fleet_worker_stopping(self->shared)) {
		for (int64_t i = 0; i < batch; i++) {
			int64_t delta = 1 + (int64_t)stress_rng_below(&rng, 8);

			fleet_apply_begin(self->me, self->index, delta);
			tally_counter_add(self->counter, delta);
			fleet_apply_end(self->me, self->index, applied += delta);
		}
		stress_ops(self->stress, batch);
		stress_pace(&pacer, batch);
	}
	return NULL;
}

static int store_worker(struct stress_run *stress, void *arg, int slot)
{
	struct store_run *sr = arg;
	struct fleet_incarnation *me = fleet_worker_me(sr->fleet.shared, slot);
	struct store_thread threads[STRESS_THREADS_MAX];
	pthread_t handles[STRESS_THREADS_MAX];
	struct fleet_writer writer;
	struct tally_counter counter;
	char key[TALLY_STORE_KEY_MAX + 1], writer_id[TALLY_STORE_WRITER_ID_MAX + 1];
	int64_t unflushed = -1;

	incarnation_key(sr, (int)(me - sr->fleet.shared->incarnations), key, sizeof(key));
	snprintf(writer_id, sizeof(writer_id), "%s-counter-%d", sr->tag, slot);
	const char *watched[] = { key };
	if (tally_counter_init(&counter, 0) ||
	    fleet_writer_open(&writer, stress, me, stress->opt.store, writer_id,
			      (int64_t)options.writer_ttl_ms, (int64_t)options.flush_ms, watched, 1) ||
	    tally_writebehind_add_counter(writer.wb, key, strlen(key), &counter))
		return 20;
	atomic_store(&me->started, 1);
	for (int t = 0; t < stress->opt.threads; t++) {
		threads[t] = (struct store_thread){ stress, &counter, me, sr->fleet.shared, t };
		pthread_create(&handles[t], NULL, store_writer, &threads[t]);
	}
	for (int t = 0; t < stress->opt.threads; t++)
		pthread_join(handles[t], NULL);
	fleet_writer_flush(&writer, "final flush");
	tally_writebehind_unflushed_counter(writer.wb, key, strlen(key), &unflushed);
	stress_check(stress, unflushed == 0, "worker %d: %lld unflushed after the final flush",
		     slot, (long long)unflushed);
	fleet_worker_idle(sr->fleet.shared, slot, fleet_writer_reflush, &writer);
	fleet_writer_close(&writer);
	tally_counter_destroy(&counter);
	return 0;
}

static void check_totals(void *arg, struct tally_store *reader)
{
	struct store_run *sr = arg;

	fleet_check_counter(&sr->fleet, reader, "total", incarnation_key, sr);
}

static int run_with_store(struct stress_run *stress)
{
	static struct store_run sr;

	snprintf(sr.tag, sizeof(sr.tag), "c%d", (int)getpid());
	return fleet_run(&sr.fleet, stress, 3, store_worker, &sr, &options, check_totals, NULL);
}

int main(int argc, char **argv)
{
	static struct stress_run stress;
	static struct run run;
	struct writer_arg args[STRESS_THREADS_MAX];
	pthread_t writers[STRESS_THREADS_MAX], drain_thread;

	stress_init(&stress, "counter", argc, argv, fleet_flags(&options));
	if (stress.opt.store)
		return run_with_store(&stress);
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
