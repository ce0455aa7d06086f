/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/ratelimit.c: the per-key rate limiter against what a server would otherwise write, a
 * token bucket per key in a hash table behind one pthread_mutex. Same program, same run.
 *
 * Families (docs/bench.md naming; threads:1 for the uncontended cost, threads:2 as issue 7):
 *   BM_ratelimithot_<impl>    every check on one hot key
 *   BM_ratelimitcold_<impl>   every check on one of 65536 cold keys, pseudo-random order
 *   BM_ratelimitmixed_<impl>  issue 7's case: one hot-key check, then one cold-key check
 * Impls: tally_gcra, tally_window (tally_ratelimit_allow), mutex (the peer).
 * Fairness: the same keys, the same per-thread key sequence, one CLOCK_MONOTONIC reading per
 * check on both sides, and the same bucket count (TABLE_SIZE: the peer's fixed table; tally's
 * expected_keys). Rates are high enough that most checks are admitted (the update path is
 * measured, not only refusals). Keys are created in setup, so creation is not measured, and
 * the tally table is created at its final size, so no resize runs during the timed loop.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "harness.h"
#include "tally/ratelimit.h"
#include "tally/rcu.h"

#define COLD_KEYS 65536
#define KEY_BYTES 24
#define RATE_PER_S 1000000000 /* units per second */
#define BURST 1000000

static char cold_keys[COLD_KEYS][KEY_BYTES];
static size_t cold_lens[COLD_KEYS];
static const char hot_key[] = "api-key-hot-0000";

/* --- the peer: token buckets in a chained hash table behind one mutex --- */

struct bucket {
	struct bucket *next;
	double tokens;
	int64_t refilled_ns;
	size_t key_len;
	char key[KEY_BYTES];
};

#define TABLE_SIZE 131072

static struct {
	pthread_mutex_t lock;
	struct bucket *slots[TABLE_SIZE];
} mutex_table = { .lock = PTHREAD_MUTEX_INITIALIZER };

static int64_t now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static uint64_t fnv1a(const char *key, size_t len)
{
	uint64_t hash = 14695981039346656037u;

	for (size_t i = 0; i < len; i++)
		hash = (hash ^ (unsigned char)key[i]) * 1099511628211u;
	return hash;
}

/* 0 if admitted, -1 if refused (or out of memory). */
static int mutex_bucket_allow(const char *key, size_t len)
{
	int64_t now = now_ns();
	uint64_t slot = fnv1a(key, len) & (TABLE_SIZE - 1);
	struct bucket *bucket;
	int admitted = 0;

	pthread_mutex_lock(&mutex_table.lock);
	for (bucket = mutex_table.slots[slot]; bucket; bucket = bucket->next)
		if (bucket->key_len == len && memcmp(bucket->key, key, len) == 0)
			break;
	if (!bucket) {
		bucket = calloc(1, sizeof(*bucket));
		if (bucket) {
			memcpy(bucket->key, key, len);
			bucket->key_len = len;
			bucket->tokens = BURST;
			bucket->refilled_ns = now;
			bucket->next = mutex_table.slots[slot];
			mutex_table.slots[slot] = bucket;
		}
	}
	if (bucket) {
		bucket->tokens += (double)(now - bucket->refilled_ns) * RATE_PER_S / 1e9;
		if (bucket->tokens > BURST)
			bucket->tokens = BURST;
		bucket->refilled_ns = now;
		if (bucket->tokens >= 1) {
			bucket->tokens -= 1;
			admitted = 1;
		}
	}
	pthread_mutex_unlock(&mutex_table.lock);
	return admitted ? 0 : -1;
}

static void mutex_setup(const struct bench_state *state)
{
	mutex_bucket_allow(hot_key, sizeof(hot_key) - 1);
	for (int i = 0; i < COLD_KEYS; i++)
		mutex_bucket_allow(cold_keys[i], cold_lens[i]);
}

static void mutex_teardown(const struct bench_state *state)
{
	for (int i = 0; i < TABLE_SIZE; i++)
		while (mutex_table.slots[i]) {
			struct bucket *next = mutex_table.slots[i]->next;
			free(mutex_table.slots[i]);
			mutex_table.slots[i] = next;
		}
}

/* --- tally --- */

static struct tally_ratelimit *limiter;

static void tally_setup(enum tally_ratelimit_algorithm algorithm)
{
	struct tally_ratelimit_config config = {
		.algorithm = algorithm,
		.limit = RATE_PER_S,
		.period_ns = 1000000000,
		.burst = algorithm == TALLY_RATELIMIT_GCRA ? BURST : 0,
		/* as many buckets as the peer's table (TABLE_SIZE) */
		.expected_keys = TABLE_SIZE,
	};

	if (tally_ratelimit_create(&limiter, &config) != TALLY_OK)
		abort(); /* bench only */
	tally_ratelimit_allow(limiter, hot_key, sizeof(hot_key) - 1, 1, NULL);
	for (int i = 0; i < COLD_KEYS; i++)
		tally_ratelimit_allow(limiter, cold_keys[i], cold_lens[i], 1, NULL);
}

static void gcra_setup(const struct bench_state *state)
{
	tally_setup(TALLY_RATELIMIT_GCRA);
}

static void window_setup(const struct bench_state *state)
{
	tally_setup(TALLY_RATELIMIT_FIXED_WINDOW);
}

static void tally_teardown(const struct bench_state *state)
{
	tally_ratelimit_destroy(limiter);
	limiter = NULL;
	tally_rcu_barrier();
}

static int tally_allow(const char *key, size_t len)
{
	return tally_ratelimit_allow(limiter, key, len, 1, NULL) == TALLY_OK ? 0 : -1;
}

/* --- the loops, shared by every impl --- */

typedef int (*allow_fn)(const char *key, size_t len);

static void report(struct bench_state *state, int64_t admitted)
{
	bench_set_items_processed(state, bench_iterations(state));
	bench_counter(state, "admitted", (double)admitted, BENCH_COUNTER_DEFAULT);
}

static void run_hot(struct bench_state *state, allow_fn allow)
{
	int64_t admitted = 0;

	while (bench_keep_running(state))
		admitted += allow(hot_key, sizeof(hot_key) - 1) == 0;
	report(state, admitted);
}

static void run_cold(struct bench_state *state, allow_fn allow)
{
	uint32_t index = 2654435761u * (uint32_t)(bench_thread_index(state) + 1);
	int64_t admitted = 0;

	while (bench_keep_running(state)) {
		index = index * 1664525u + 1013904223u;
		uint32_t key = (index >> 8) & (COLD_KEYS - 1);
		admitted += allow(cold_keys[key], cold_lens[key]) == 0;
	}
	report(state, admitted);
}

static void run_hotcold(struct bench_state *state, allow_fn allow)
{
	uint32_t index = 2654435761u * (uint32_t)(bench_thread_index(state) + 1);
	int64_t admitted = 0, round = 0;

	while (bench_keep_running(state)) {
		if (round++ & 1) {
			index = index * 1664525u + 1013904223u;
			uint32_t key = (index >> 8) & (COLD_KEYS - 1);
			admitted += allow(cold_keys[key], cold_lens[key]) == 0;
		} else {
			admitted += allow(hot_key, sizeof(hot_key) - 1) == 0;
		}
	}
	report(state, admitted);
}

#define BENCH_IMPL(impl, fn)                                                              \
	static void bm_hot_##impl(struct bench_state *s) { run_hot(s, fn); }              \
	static void bm_cold_##impl(struct bench_state *s) { run_cold(s, fn); }            \
	static void bm_hotcold_##impl(struct bench_state *s) { run_hotcold(s, fn); }

BENCH_IMPL(tally_gcra, tally_allow)
BENCH_IMPL(tally_window, tally_allow)
BENCH_IMPL(mutex, mutex_bucket_allow)

static void add(const char *name, bench_fn fn, bench_hook setup, bench_hook teardown)
{
	struct bench_def *def = bench_register(name, fn);

	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	bench_def_setup(def, setup);
	bench_def_teardown(def, teardown);
	bench_def_use_real_time(def);
}

int main(int argc, char **argv)
{
	for (int i = 0; i < COLD_KEYS; i++) {
		int len = snprintf(cold_keys[i], KEY_BYTES, "client-%08x", (unsigned)i * 2654435761u);
		cold_lens[i] = (size_t)len;
	}
	add("BM_ratelimithot_tally_gcra", bm_hot_tally_gcra, gcra_setup, tally_teardown);
	add("BM_ratelimithot_tally_window", bm_hot_tally_window, window_setup, tally_teardown);
	add("BM_ratelimithot_mutex", bm_hot_mutex, mutex_setup, mutex_teardown);
	add("BM_ratelimitcold_tally_gcra", bm_cold_tally_gcra, gcra_setup, tally_teardown);
	add("BM_ratelimitcold_tally_window", bm_cold_tally_window, window_setup, tally_teardown);
	add("BM_ratelimitcold_mutex", bm_cold_mutex, mutex_setup, mutex_teardown);
	add("BM_ratelimitmixed_tally_gcra", bm_hotcold_tally_gcra, gcra_setup, tally_teardown);
	add("BM_ratelimitmixed_tally_window", bm_hotcold_tally_window, window_setup,
	    tally_teardown);
	add("BM_ratelimitmixed_mutex", bm_hotcold_mutex, mutex_setup, mutex_teardown);
	return bench_main(argc, argv);
}
