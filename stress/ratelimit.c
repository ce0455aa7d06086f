/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/ratelimit.c: workers hammer a fixed-window and a GCRA limiter (a few hot keys and a
 * stream of cold keys against a key cap) while the clock steps forward and a sweeper expires
 * idle keys with TTL 0, so sweeps race allows on every window change.
 * Invariants: no hot key's window admits more than its limit; each hot GCRA key admits at most
 * burst + span / T over the run; allow returns only OK, ELIMITED or EFULL (cold keys); after
 * the run a final sweep leaves no key (the key count stayed consistent).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "tally/ratelimit.h"
#include "tally/rcu.h"
#include "stress.h"

#define HOT_KEYS 8
#define WINDOW_NS 8000
#define WINDOW_LIMIT 16
#define GCRA_T_NS 100
#define GCRA_BURST 8
#define TICK_NS 1000 /* clock step per tick: 8 ticks per window */

struct run {
	struct stress_run *stress;
	struct tally_ratelimit *window, *gcra;
	_Atomic int64_t now;
	_Atomic int stop;
	int64_t window_slots;                 /* windows tracked per hot key */
	_Atomic int64_t *window_admitted;     /* [key * window_slots + window] */
	_Atomic int64_t *window_low, *window_high; /* lowest/highest reading admitted there */
	_Atomic int64_t *window_stale;        /* admissions there from an earlier window's reading */
	_Atomic int64_t gcra_admitted[HOT_KEYS];
	_Atomic int64_t allows, admitted, refused, full, swept;
};

/* Each thread takes its reading of the shared clock before a call and the limiter's clock
 * returns that reading, so a worker knows exactly which time its call used. */
static _Thread_local int64_t reading;

static int64_t run_clock(void *arg)
{
	return reading;
}

static int64_t take_reading(struct run *run)
{
	reading = atomic_load_explicit(&run->now, memory_order_relaxed);
	return reading;
}

static void check(struct run *run, int err, int full_ok)
{
	if (err == TALLY_OK)
		atomic_fetch_add_explicit(&run->admitted, 1, memory_order_relaxed);
	else if (err == TALLY_ELIMITED)
		atomic_fetch_add_explicit(&run->refused, 1, memory_order_relaxed);
	else if (err == TALLY_EFULL && full_ok) /* cold keys fill the GCRA limiter's cap */
		atomic_fetch_add_explicit(&run->full, 1, memory_order_relaxed);
	else
		stress_violation(run->stress, "allow returned %d", err);
}

static void store_min(_Atomic int64_t *at, int64_t value)
{
	int64_t seen = atomic_load(at);

	while (value < seen && !atomic_compare_exchange_weak(at, &seen, value))
		;
}

static void store_max(_Atomic int64_t *at, int64_t value)
{
	int64_t seen = atomic_load(at);

	while (value > seen && !atomic_compare_exchange_weak(at, &seen, value))
		;
}

struct worker_arg {
	struct run *run;
	int index;
};

static void *worker(void *arg)
{
	struct worker_arg *self = arg;
	struct run *run = self->run;
	struct tally_ratelimit_result res;
	struct stress_rng rng;
	struct stress_pacer pacer;
	char key[32];
	int64_t allows = 0;

	stress_rng_init(&rng, run->stress->opt.seed, (uint64_t)self->index);
	stress_pacer_init(&pacer, run->stress, run->stress->opt.threads);
	int64_t batch = stress_pace_batch(&pacer, 96), since = 0;
	while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
		uint64_t seed = stress_rng_next(&rng);
		int hot = (int)(seed >> 60) % HOT_KEYS;
		int len = snprintf(key, sizeof(key), "hot-%d", hot);
		int64_t now = take_reading(run);
		int err = tally_ratelimit_allow_result(run->window, key, (size_t)len, 1, &res);
		check(run, err, 0);
		if (err == TALLY_OK) {
			/* The window charged ends at now + reset_ns (a stale reading is charged
			 * to the later window stored in the key). */
			int64_t window = (now + res.reset_ns - 1) / WINDOW_NS;
			if (window < run->window_slots) {
				int64_t slot = hot * run->window_slots + window;
				atomic_fetch_add(&run->window_admitted[slot], 1);
				store_min(&run->window_low[slot], now);
				store_max(&run->window_high[slot], now);
				if (now / WINDOW_NS != window)
					atomic_fetch_add(&run->window_stale[slot], 1);
			}
		}
		err = tally_ratelimit_allow(run->gcra, key, (size_t)len, 1, NULL);
		check(run, err, 1);
		if (err == TALLY_OK)
			atomic_fetch_add(&run->gcra_admitted[hot], 1);
		len = snprintf(key, sizeof(key), "cold-%llu", (unsigned long long)(seed >> 40));
		check(run, tally_ratelimit_allow(run->gcra, key, (size_t)len, 1, NULL), 1);
		allows += 3;
		if ((since += 3) >= batch) {
			stress_ops(run->stress, since);
			stress_pace(&pacer, since);
			since = 0;
		}
	}
	stress_ops(run->stress, since);
	atomic_fetch_add(&run->allows, allows);
	return NULL;
}

static void *sweeper(void *arg)
{
	struct run *run = arg;
	int64_t removed;

	while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
		take_reading(run);
		if (tally_ratelimit_sweep(run->window, &removed) == TALLY_OK)
			atomic_fetch_add(&run->swept, removed);
		if (tally_ratelimit_sweep(run->gcra, &removed) == TALLY_OK)
			atomic_fetch_add(&run->swept, removed);
	}
	return NULL;
}

static int make(struct run *run, enum tally_ratelimit_algorithm algorithm, int64_t limit,
		int64_t period, int64_t burst, struct tally_ratelimit **out)
{
	struct tally_ratelimit_config config = {
		.algorithm = algorithm, .limit = limit, .period_ns = period, .burst = burst,
		.max_keys = 4096, .now_ns = run_clock, .clock_arg = run };

	return tally_ratelimit_create(out, &config);
}

int main(int argc, char **argv)
{
	static struct stress_run stress;
	static struct run run;
	struct worker_arg args[STRESS_THREADS_MAX];
	pthread_t threads[STRESS_THREADS_MAX + 1];
	int64_t over = 0, final_keys = 0, count;

	stress_init(&stress, "ratelimit", argc, argv, NULL);
	run.stress = &stress;
	if (stress.opt.store) {
		fprintf(stderr, "ratelimit: the limiter has no store half yet (fleet-wide limits "
			"come with escrow, a later issue); run without --store\n");
		return 2;
	}

	/* The clock ticks about every 20 us of real time; size the window table for that. */
	run.window_slots = (int64_t)(stress.opt.seconds * 1e6 / 20 / (WINDOW_NS / TICK_NS)) + 16;
	size_t slots = (size_t)(HOT_KEYS * run.window_slots);
	run.window_admitted = calloc(slots, sizeof(int64_t));
	run.window_low = calloc(slots, sizeof(int64_t));
	run.window_high = calloc(slots, sizeof(int64_t));
	run.window_stale = calloc(slots, sizeof(int64_t));
	if (!run.window_admitted || !run.window_low || !run.window_high || !run.window_stale)
		return 2;
	for (size_t i = 0; i < slots; i++)
		atomic_init(&run.window_low[i], INT64_MAX);
	if (
	    make(&run, TALLY_RATELIMIT_FIXED_WINDOW, WINDOW_LIMIT, WINDOW_NS, 0, &run.window) ||
	    make(&run, TALLY_RATELIMIT_GCRA, 1, GCRA_T_NS, GCRA_BURST, &run.gcra))
		return 2;
	for (int i = 0; i < stress.opt.threads; i++)
	{
		args[i] = (struct worker_arg){ &run, i };
		pthread_create(&threads[i], NULL, worker, &args[i]);
	}
	pthread_create(&threads[stress.opt.threads], NULL, sweeper, &run);
	while (stress_running(&stress) &&
	       atomic_load(&run.now) / WINDOW_NS < run.window_slots - 2) {
		nanosleep(&(struct timespec){ 0, 20000 }, NULL);
		atomic_fetch_add(&run.now, TICK_NS);
		stress_progress(&stress);
	}
	atomic_store(&run.stop, 1);
	for (int i = 0; i <= stress.opt.threads; i++)
		pthread_join(threads[i], NULL);

	int64_t span = atomic_load(&run.now), windows = span / WINDOW_NS + 1;
	/* Each failed check is described on stderr: which limiter, key, window, count against
	 * bound, and the clock readings involved, so a rare failure can be diagnosed. */
	for (int64_t i = 0; i < HOT_KEYS * run.window_slots; i++) {
		int64_t admitted = atomic_load(&run.window_admitted[i]);
		stress_checked(&stress, 1);
		if (admitted <= WINDOW_LIMIT)
			continue;
		over++;
		stress_violation(&stress, "window over its limit");
		int64_t window = i % run.window_slots;
		fprintf(stderr, "ratelimit: FAIL window key=hot-%lld window=%lld [%lld, %lld) "
			"admitted=%lld limit=%d readings=[%lld, %lld] stale_readings=%lld "
			"clock_end=%lld\n", (long long)(i / run.window_slots), (long long)window,
			(long long)(window * WINDOW_NS), (long long)((window + 1) * WINDOW_NS),
			(long long)admitted, WINDOW_LIMIT,
			(long long)atomic_load(&run.window_low[i]),
			(long long)atomic_load(&run.window_high[i]),
			(long long)atomic_load(&run.window_stale[i]), (long long)span);
	}
	for (int k = 0; k < HOT_KEYS; k++) {
		int64_t admitted = atomic_load(&run.gcra_admitted[k]);
		stress_checked(&stress, 1);
		if (admitted <= GCRA_BURST + span / GCRA_T_NS)
			continue;
		over++;
		stress_violation(&stress, "gcra key over its bound");
		fprintf(stderr, "ratelimit: FAIL gcra key=hot-%d admitted=%lld bound=%lld "
			"(burst %d + readings [0, %lld] / T %d)\n", k, (long long)admitted,
			(long long)(GCRA_BURST + span / GCRA_T_NS), GCRA_BURST, (long long)span,
			GCRA_T_NS);
	}
	atomic_store(&run.now, span + 1000000);
	take_reading(&run);
	tally_ratelimit_sweep(run.window, NULL);
	tally_ratelimit_sweep(run.gcra, NULL);
	tally_ratelimit_key_count(run.window, &count);
	final_keys += count;
	tally_ratelimit_key_count(run.gcra, &count);
	final_keys += count;
	stress_check(&stress, final_keys == 0, "%lld keys left after the final sweep",
		     (long long)final_keys);
	stress_field_int(&stress, "allows", atomic_load(&run.allows));
	stress_field_int(&stress, "admitted", atomic_load(&run.admitted));
	stress_field_int(&stress, "refused", atomic_load(&run.refused));
	stress_field_int(&stress, "full", atomic_load(&run.full));
	stress_field_int(&stress, "swept", atomic_load(&run.swept));
	stress_field_int(&stress, "windows", windows);
	stress_field_int(&stress, "over_limit", over);
	stress_field_int(&stress, "keys_left", final_keys);
	tally_ratelimit_destroy(run.window);
	tally_ratelimit_destroy(run.gcra);
	free(run.window_admitted);
	free(run.window_low);
	free(run.window_high);
	free(run.window_stale);
	tally_rcu_barrier();
	return stress_finish(&stress);
}
