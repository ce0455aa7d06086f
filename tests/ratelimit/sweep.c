/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/ratelimit/sweep.c: idle-key expiry: what a sweep may remove (and when), the background
 * sweeper and its shutdown, and sweeps racing allows without losing an admission. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "common.h"
#include "../tap.h"
#include "../threads.h"

static struct tally_ratelimit *make_ttl(enum tally_ratelimit_algorithm algorithm, int64_t limit,
					int64_t period, int64_t burst, int64_t ttl,
					int64_t interval)
{
	struct tally_ratelimit_config config = {
		.algorithm = algorithm, .limit = limit, .period_ns = period, .burst = burst,
		.idle_ttl_ns = ttl, .sweep_interval_ns = interval, .now_ns = shared_clock };
	struct tally_ratelimit *rl = NULL;

	return tally_ratelimit_create(&rl, &config) == TALLY_OK ? rl : NULL;
}

static int64_t sweep_now(struct tally_ratelimit *rl, int64_t now)
{
	int64_t removed = -1;

	atomic_store(&shared_now, now);
	tally_ratelimit_sweep(rl, &removed);
	return removed;
}

static void test_window_expiry(void)
{
	struct tally_ratelimit *rl = make_ttl(TALLY_RATELIMIT_FIXED_WINDOW, 3, 1000, 0, 500, 0);
	struct tally_ratelimit_result res;
	int64_t count = -1;

	atomic_store(&shared_now, 100);
	allow_str(rl, "old", 3, NULL);
	atomic_store(&shared_now, 1200);
	allow_str(rl, "new", 1, NULL);
	tap_eq(sweep_now(rl, 1200), 0, "nothing idle for the TTL yet");
	tap_eq(sweep_now(rl, 1499), 0, "window 0 ended 499 ns ago: kept");
	tap_eq(sweep_now(rl, 1500), 1, "window 0 ended 500 ns ago: removed");
	tally_ratelimit_key_count(rl, &count);
	tap_eq(count, 1, "one key left");
	tap_eq(tally_ratelimit_peek(rl, "old", 3, &res), TALLY_ENOTFOUND, "old is gone");
	tap_eq(allow_str(rl, "old", 3, NULL), TALLY_OK, "old comes back with a full window");
	tap_eq(sweep_now(rl, 2499), 0, "new's window ended 499 ns ago: kept");
	tap_eq(sweep_now(rl, 2500), 2, "both removed after their TTL");
	tap_eq(tally_ratelimit_sweep(NULL, NULL), TALLY_EINVAL, "sweep NULL");
	tally_ratelimit_destroy(rl);
}

/* A caller whose clock reading is older than a sweep's must not recount the window the sweep
 * expired (the sweep horizon moves it forward). The clock set back emulates a stale reading. */
static void test_stale_reader_after_sweep(void)
{
	struct tally_ratelimit *rl = make_ttl(TALLY_RATELIMIT_FIXED_WINDOW, 4, 1000, 0, 0, 0);
	struct tally_ratelimit_result res;
	int admitted = 0;

	atomic_store(&shared_now, 100);
	allow_str(rl, "s", 4, NULL);
	tap_eq(sweep_now(rl, 1000), 1, "window 0 over: the sweep removes s");
	atomic_store(&shared_now, 500);
	tap_eq(allow_str(rl, "s", 1, &res), TALLY_OK, "a stale reading in window 0 is admitted...");
	tap_eq(res.reset_ns, 1500, "...in window 1, reported from the caller's own reading");
	for (int i = 0; i < 4; i++)
		admitted += allow_str(rl, "s", 1, NULL) == TALLY_OK;
	tap_eq(admitted, 3, "window 0 is not counted again: window 1 fills at 4");
	atomic_store(&shared_now, 1001);
	tap_eq(allow_str(rl, "s", 1, NULL), TALLY_ELIMITED, "a fresh reading in window 1: full");
	tally_ratelimit_destroy(rl);
}

static void test_gcra_expiry(void)
{
	/* T = 100 ns, burst 4, TTL 0: a key is removable once its TAT is not in the future. */
	struct tally_ratelimit *rl = make_ttl(TALLY_RATELIMIT_GCRA, 10, 1000, 4, 0, 0);

	atomic_store(&shared_now, 1000);
	allow_str(rl, "g", 3, NULL); /* TAT = 1300 */
	tap_eq(sweep_now(rl, 1299), 0, "TAT in the future: kept (it still limits)");
	tap_eq(sweep_now(rl, 1300), 1, "TAT reached: the key is fresh, removed");
	tally_ratelimit_destroy(rl);
}

static void test_background_sweeper(void)
{
	struct tally_ratelimit *rl = make_ttl(TALLY_RATELIMIT_GCRA, 10, 1000, 4, 0, 1000000);
	int64_t count = -1;
	char key[16];

	tap_ok(rl != NULL, "a limiter with a 1 ms background sweeper");
	atomic_store(&shared_now, 1000);
	for (int i = 0; i < 100; i++) {
		int len = snprintf(key, sizeof(key), "bg-%d", i);
		tally_ratelimit_allow(rl, key, (size_t)len, 1, NULL);
	}
	atomic_store(&shared_now, 1000000);
	/* Wait (bounded) for the sweeper to notice the keys went idle. */
	for (int waited = 0; waited < 5000; waited++) {
		tally_ratelimit_key_count(rl, &count);
		if (count == 0)
			break;
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	tap_eq(count, 0, "the background sweeper removed the idle keys");
	tap_eq(tally_ratelimit_destroy(rl), TALLY_OK, "destroy stops and joins the sweeper");
}

#define WORKERS 4
#define KEYS 16
#define PHASES 40
#define TRIES 8

struct race {
	struct tally_ratelimit *rl;
	int64_t quota;     /* limit per window, or burst */
	int64_t phase_ns;  /* clock step between phases (>= window / tau) */
	pthread_barrier_t phase;
	_Atomic int done;
	_Atomic int64_t admitted[PHASES][KEYS];
	_Atomic int64_t swept;
};

/* Thread 0 sweeps without pause; the workers charge every key in each phase (the clock is
 * held fixed during a phase and stepped between phases, so every key from the previous phase
 * is idle and a sweep races to kill it while the workers charge it). */
static void *race_body(struct test_thread *self)
{
	struct race *race = self->shared;
	char key[16];

	if (self->index == 0) {
		while (!atomic_load(&race->done)) {
			int64_t removed = 0;
			tally_ratelimit_sweep(race->rl, &removed);
			atomic_fetch_add(&race->swept, removed);
		}
		return NULL;
	}
	for (int p = 0; p < PHASES; p++) {
		if (self->index == 1)
			atomic_store(&shared_now, race->phase_ns * (p + 1));
		pthread_barrier_wait(&race->phase);
		for (int t = 0; t < TRIES; t++)
			for (int k = 0; k < KEYS; k++) {
				int len = snprintf(key, sizeof(key), "key-%d", k);
				if (tally_ratelimit_allow(race->rl, key, (size_t)len, 1, NULL) ==
				    TALLY_OK)
					atomic_fetch_add(&race->admitted[p][k], 1);
			}
		pthread_barrier_wait(&race->phase);
	}
	atomic_store(&race->done, 1);
	return NULL;
}

static void run_race(const char *name, struct tally_ratelimit *rl, int64_t quota,
		     int64_t phase_ns)
{
	static struct race race;
	struct test_thread threads[WORKERS + 1];
	int64_t wrong = 0;

	memset(&race, 0, sizeof(race));
	race.rl = rl;
	race.quota = quota;
	race.phase_ns = phase_ns;
	pthread_barrier_init(&race.phase, NULL, WORKERS);
	atomic_store(&shared_now, phase_ns); /* the clock never runs back during a run */
	run_threads(WORKERS + 1, race_body, &race, threads);
	for (int p = 0; p < PHASES; p++)
		for (int k = 0; k < KEYS; k++)
			wrong += atomic_load(&race.admitted[p][k]) != quota;
	tap_eq(wrong, 0, "%s: sweeps racing allows: every key admitted exactly %lld per phase",
	       name, (long long)quota);
	int64_t count = -1;
	atomic_store(&shared_now, phase_ns * (PHASES + 2));
	tally_ratelimit_sweep(rl, NULL);
	tally_ratelimit_key_count(rl, &count);
	tap_eq(count, 0, "%s: a final sweep leaves no key (the racing sweeper removed %lld)",
	       name, (long long)atomic_load(&race.swept));
	pthread_barrier_destroy(&race.phase);
	tally_ratelimit_destroy(rl);
}

int main(void)
{
	test_window_expiry();
	test_stale_reader_after_sweep();
	test_gcra_expiry();
	test_background_sweeper();
	run_race("fixed window", make_ttl(TALLY_RATELIMIT_FIXED_WINDOW, 10, 1000, 0, 0, 0), 10,
		 1000);
	run_race("GCRA", make_ttl(TALLY_RATELIMIT_GCRA, 1, 100, 10, 0, 0), 10, 1000);
	tally_rcu_barrier();
	return tap_done();
}
