/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/ratelimit.c: the per-key rate limiter against what a server would otherwise write, in
 * one program and one run.
 *
 * Families (docs/bench.md naming; threads:1 for the uncontended cost, threads:2 as issue 7):
 *   BM_ratelimithot_<impl>      every check on one hot key
 *   BM_ratelimitcold_<impl>     every check on one of 65536 cold keys, pseudo-random order
 *   BM_ratelimitmixed_<impl>    issue 7's case: one hot-key check, then one cold-key check
 *   BM_ratelimitrefused_<impl>  the mixed keys with a limit of 1 per hour (burst 1), which the
 *                               setup's check of each key spends: every check is refused (what
 *                               a limiter mostly does under an abusive client or a flood)
 * Impls:
 *   tally_gcra, tally_window      tally_ratelimit_allow, GCRA and fixed window
 *   striped_gcra, striped_window  the strongest peer a good engineer writes in a day, with the
 *                                 same algorithms and arithmetic: 256 stripes, each a
 *                                 cache-line-aligned pthread_mutex_t owning a chained hash
 *                                 table (FNV-1a; the stripe from the hash's top byte, buckets
 *                                 from its low bits, doubling at load 1 under the stripe lock)
 *                                 of compact entries: next pointer, the same 64-bit state word
 *                                 as tally's (TAT, or window index and count), key length and
 *                                 the key bytes, one malloc each (32 bytes for these keys)
 *   naive_mutex                   a token bucket (double tokens) per key in a fixed table
 *                                 behind one pthread_mutex_t: the first thing a user writes
 * Fairness: the same keys, the same per-thread key sequence, one CLOCK_MONOTONIC reading per
 * check on every side, keys created in setup (creation not measured), no resize in the timed
 * loop (tally is created at its final size, expected_keys = 65537, the key count; the striped
 * table grows during the setup's inserts). Rates are high enough in hot/cold/mixed that most checks are
 * admitted (the update path is measured, not only refusals). Every 32nd check is timed (two
 * CLOCK_MONOTONIC readings) into the "check" latency histogram. The cold family reports
 * heap_bytes_per_key: the bytes each side's table holds for the setup's 65,537 keys, per key,
 * bucket arrays included on both sides: malloc's (and jemalloc's, for tally's records) bytes
 * in use added by the setup (allocator size classes and glibc's chunk headers included), plus
 * for tally its bucket array, which comes from mmap and no heap counter sees: 16 bytes per
 * bucket, as many buckets as tally/ratelimit.h says expected_keys gets (tally_bucket_bytes).
 */
#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "harness.h"
#include "heap.h"
#include "internal/hash.h"
#include "tally/ratelimit.h"
#include "tally/rcu.h"

#define COLD_KEYS 65536
#define KEY_BYTES 24
#define RATE_PER_S 1000000000 /* units per second */
#define BURST 1000000
#define REFUSED_LIMIT 1 /* the refusal-heavy run: 1 per hour, spent by the setup's check */
#define REFUSED_PERIOD_NS (3600 * INT64_C(1000000000))
#define REFUSED_BURST 1
#define SAMPLE_EVERY 32

static char cold_keys[COLD_KEYS][KEY_BYTES];
static size_t cold_lens[COLD_KEYS];
static const char hot_key[] = "api-key-hot-0000";

/* --- naive_mutex: token buckets in a chained hash table behind one mutex --- */

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

/* The rule of the run being set up (the setup hook sets it; threads only read it). */
static struct {
	int64_t limit;
	int64_t period_ns;
	int64_t burst;
} rule = { RATE_PER_S, 1000000000, BURST };

static int64_t now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
}

static uint64_t fnv1a(const char *key, size_t len)
{
	return tally__fnv1a64(TALLY__FNV1A64_BASIS, key, len);
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
			bucket->tokens = (double)rule.burst;
			bucket->refilled_ns = now;
			bucket->next = mutex_table.slots[slot];
			mutex_table.slots[slot] = bucket;
		}
	}
	if (bucket) {
		bucket->tokens += (double)(now - bucket->refilled_ns) * (double)rule.limit /
				  (double)rule.period_ns;
		if (bucket->tokens > rule.burst)
			bucket->tokens = rule.burst;
		bucket->refilled_ns = now;
		if (bucket->tokens >= 1) {
			bucket->tokens -= 1;
			admitted = 1;
		}
	}
	pthread_mutex_unlock(&mutex_table.lock);
	return admitted ? 0 : -1;
}

typedef int (*allow_fn)(const char *key, size_t len);

static double heap_per_key; /* measured by the last setup */

/* Creates every key with one check each, measuring the bytes that added per key. */
static void create_keys(allow_fn allow)
{
	size_t before = bench_heap_bytes();

	allow(hot_key, sizeof(hot_key) - 1);
	for (int i = 0; i < COLD_KEYS; i++)
		allow(cold_keys[i], cold_lens[i]);
	heap_per_key = (double)(bench_heap_bytes() - before) / (COLD_KEYS + 1);
}

static void set_rule(bool refused)
{
	rule.limit = refused ? REFUSED_LIMIT : RATE_PER_S;
	rule.period_ns = refused ? REFUSED_PERIOD_NS : 1000000000;
	rule.burst = refused ? REFUSED_BURST : BURST;
}

static void mutex_setup_rule(bool refused)
{
	set_rule(refused);
	create_keys(mutex_bucket_allow);
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

/* --- striped_gcra / striped_window: 256 stripes of compact entries, the same algorithms --- */

#define STRIPES 256

struct rl_entry {
	struct rl_entry *next;
	uint64_t state;   /* GCRA: TAT in ns; window: window index << 32 | count */
	uint8_t key_len;  /* keys here are < 256 bytes; tally's maximum is 256 */
	char key[];
};

static struct rl_stripe {
	alignas(64) pthread_mutex_t lock;
	struct rl_entry **buckets;
	size_t mask;
	size_t count;
} rl_stripes[STRIPES];

static struct {
	bool gcra;
	int64_t interval_ns;  /* GCRA: T = ceil(period / limit) */
	int64_t tolerance_ns; /* GCRA: burst * T */
	int64_t period_ns;    /* window */
	int64_t limit;        /* window */
} rl_rule;

static void rl_grow(struct rl_stripe *stripe)
{
	size_t buckets = (stripe->mask + 1) * 2;
	struct rl_entry **grown = calloc(buckets, sizeof(*grown));

	if (!grown)
		return;
	for (size_t b = 0; b <= stripe->mask; b++)
		for (struct rl_entry *entry = stripe->buckets[b], *next; entry; entry = next) {
			size_t at = fnv1a(entry->key, entry->key_len) & (buckets - 1);

			next = entry->next;
			entry->next = grown[at];
			grown[at] = entry;
		}
	free(stripe->buckets);
	stripe->buckets = grown;
	stripe->mask = buckets - 1;
}

/* The same decisions as lib/ratelimit: GCRA admits while TAT - now + cost * T <= tau; the
 * window admits while count + cost <= limit within the window now / period. */
static inline bool rl_step(uint64_t *state, int64_t now, int64_t *retry_after_ns)
{
	if (rl_rule.gcra) {
		int64_t base = (int64_t)*state > now ? (int64_t)*state : now;

		if (base - now + rl_rule.interval_ns > rl_rule.tolerance_ns) {
			*retry_after_ns = base - now + rl_rule.interval_ns - rl_rule.tolerance_ns;
			return false;
		}
		*state = (uint64_t)(base + rl_rule.interval_ns);
	} else {
		uint64_t window = (uint64_t)(now / rl_rule.period_ns);
		uint64_t count = (*state >> 32) == window ? (*state & 0xffffffffu) : 0;

		if ((int64_t)count + 1 > rl_rule.limit) {
			*retry_after_ns = (int64_t)(window + 1) * rl_rule.period_ns - now;
			return false;
		}
		*state = window << 32 | (count + 1);
	}
	*retry_after_ns = 0;
	return true;
}

static int striped_allow(const char *key, size_t len)
{
	int64_t now = now_ns(), retry_after = 0;
	uint64_t hash = fnv1a(key, len);
	struct rl_stripe *stripe = &rl_stripes[hash >> 56];
	struct rl_entry *entry;
	bool admitted = false;

	pthread_mutex_lock(&stripe->lock);
	for (entry = stripe->buckets[hash & stripe->mask]; entry; entry = entry->next)
		if (entry->key_len == len && memcmp(entry->key, key, len) == 0)
			break;
	if (!entry && (entry = malloc(sizeof(*entry) + len))) {
		struct rl_entry **head;

		if (stripe->count >= stripe->mask + 1)
			rl_grow(stripe);
		head = &stripe->buckets[hash & stripe->mask];
		memcpy(entry->key, key, len);
		entry->key_len = (uint8_t)len;
		entry->state = 0; /* fresh: TAT in the past; window 0, count 0 */
		entry->next = *head;
		*head = entry;
		stripe->count++;
	}
	if (entry)
		admitted = rl_step(&entry->state, now, &retry_after);
	pthread_mutex_unlock(&stripe->lock);
	bench_do_not_optimize(retry_after);
	return admitted ? 0 : -1;
}

static void striped_setup_rule(bool gcra, bool refused)
{
	set_rule(refused);
	rl_rule.gcra = gcra;
	rl_rule.interval_ns = (rule.period_ns + rule.limit - 1) / rule.limit;
	rl_rule.tolerance_ns = rule.burst * rl_rule.interval_ns;
	rl_rule.period_ns = rule.period_ns;
	rl_rule.limit = rule.limit;
	for (int i = 0; i < STRIPES; i++) {
		pthread_mutex_init(&rl_stripes[i].lock, NULL);
		rl_stripes[i].buckets = calloc(1, sizeof(*rl_stripes[i].buckets));
		rl_stripes[i].mask = 0;
		rl_stripes[i].count = 0;
		if (!rl_stripes[i].buckets)
			abort(); /* bench only */
	}
	create_keys(striped_allow);
}

static void striped_teardown(const struct bench_state *state)
{
	for (int i = 0; i < STRIPES; i++) {
		for (size_t b = 0; b <= rl_stripes[i].mask; b++)
			for (struct rl_entry *entry = rl_stripes[i].buckets[b], *next; entry;
			     entry = next) {
				next = entry->next;
				free(entry);
			}
		free(rl_stripes[i].buckets);
		pthread_mutex_destroy(&rl_stripes[i].lock);
	}
}

/* --- tally --- */

static struct tally_ratelimit *limiter;

/* tally's bucket array for `expected_keys` (tally/ratelimit.h, expected_keys): the power of
 * two nearest the count (by ratio), 64 at least, 16 bytes (a cds_lfht_node) per bucket. */
static double tally_bucket_bytes(int64_t expected_keys)
{
	double buckets = 64;

	while (buckets < (double)expected_keys)
		buckets *= 2;
	if (buckets > 64 && buckets * buckets > 2.0 * (double)expected_keys * expected_keys)
		buckets /= 2;
	return 16 * buckets;
}

static int tally_allow(const char *key, size_t len)
{
	return tally_ratelimit_allow(limiter, key, len, 1, NULL) == TALLY_OK ? 0 : -1;
}

static void tally_setup_rule(enum tally_ratelimit_algorithm algorithm, bool refused)
{
	struct tally_ratelimit_config config = {
		.algorithm = algorithm,
		.limit = refused ? REFUSED_LIMIT : RATE_PER_S,
		.period_ns = refused ? REFUSED_PERIOD_NS : 1000000000,
		.burst = algorithm == TALLY_RATELIMIT_GCRA ? (refused ? REFUSED_BURST : BURST) : 0,
		/* the key count a user would state: the cold keys and the hot one */
		.expected_keys = COLD_KEYS + 1,
	};

	set_rule(refused);
	if (tally_ratelimit_create(&limiter, &config) != TALLY_OK)
		abort(); /* bench only */
	create_keys(tally_allow);
	heap_per_key += tally_bucket_bytes(config.expected_keys) / (COLD_KEYS + 1);
}

static void tally_teardown(const struct bench_state *state)
{
	tally_ratelimit_destroy(limiter);
	limiter = NULL;
	tally_rcu_barrier();
}

#define SETUPS(suffix, refused)                                                               \
	static void gcra_setup##suffix(const struct bench_state *s)                           \
	{ tally_setup_rule(TALLY_RATELIMIT_GCRA, refused); }                                  \
	static void window_setup##suffix(const struct bench_state *s)                         \
	{ tally_setup_rule(TALLY_RATELIMIT_FIXED_WINDOW, refused); }                          \
	static void striped_gcra_setup##suffix(const struct bench_state *s)                   \
	{ striped_setup_rule(true, refused); }                                                 \
	static void striped_window_setup##suffix(const struct bench_state *s)                 \
	{ striped_setup_rule(false, refused); }                                                \
	static void mutex_setup##suffix(const struct bench_state *s)                          \
	{ mutex_setup_rule(refused); }

SETUPS(, false)
SETUPS(_refused, true)

/* --- the loops, shared by every impl (inlined with a constant allow: direct calls) --- */

static void report(struct bench_state *state, int64_t admitted)
{
	bench_set_items_processed(state, bench_iterations(state));
	bench_counter(state, "admitted", (double)admitted, BENCH_COUNTER_DEFAULT);
	if (bench_thread_index(state) == 0)
		bench_counter(state, "heap_bytes_per_key", heap_per_key, BENCH_COUNTER_DEFAULT);
}

/* One check, every SAMPLE_EVERY-th timed. */
static inline __attribute__((always_inline)) int64_t check(struct bench_state *state,
							   allow_fn allow, const char *key,
							   size_t len, uint32_t *op)
{
	if ((++*op & (SAMPLE_EVERY - 1)) == 0) {
		int64_t start = bench_now_ns();
		int64_t admitted = allow(key, len) == 0;

		bench_latency_record(state, "check", bench_now_ns() - start);
		return admitted;
	}
	return allow(key, len) == 0;
}

static inline __attribute__((always_inline)) void run_hot(struct bench_state *state,
							  allow_fn allow)
{
	int64_t admitted = 0;
	uint32_t op = 0;

	while (bench_keep_running(state))
		admitted += check(state, allow, hot_key, sizeof(hot_key) - 1, &op);
	report(state, admitted);
}

static inline __attribute__((always_inline)) void run_cold(struct bench_state *state,
							   allow_fn allow)
{
	uint32_t index = 2654435761u * (uint32_t)(bench_thread_index(state) + 1), op = 0;
	int64_t admitted = 0;

	while (bench_keep_running(state)) {
		index = index * 1664525u + 1013904223u;
		uint32_t key = (index >> 8) & (COLD_KEYS - 1);
		admitted += check(state, allow, cold_keys[key], cold_lens[key], &op);
	}
	report(state, admitted);
}

static inline __attribute__((always_inline)) void run_hotcold(struct bench_state *state,
							      allow_fn allow)
{
	uint32_t index = 2654435761u * (uint32_t)(bench_thread_index(state) + 1), op = 0;
	int64_t admitted = 0, round = 0;

	while (bench_keep_running(state)) {
		if (round++ & 1) {
			index = index * 1664525u + 1013904223u;
			uint32_t key = (index >> 8) & (COLD_KEYS - 1);
			admitted += check(state, allow, cold_keys[key], cold_lens[key], &op);
		} else {
			admitted += check(state, allow, hot_key, sizeof(hot_key) - 1, &op);
		}
	}
	report(state, admitted);
}

#define BENCH_IMPL(impl, fn)                                                              \
	static void bm_hot_##impl(struct bench_state *s) { run_hot(s, fn); }              \
	static void bm_cold_##impl(struct bench_state *s) { run_cold(s, fn); }            \
	static void bm_hotcold_##impl(struct bench_state *s) { run_hotcold(s, fn); }

BENCH_IMPL(tally, tally_allow)
BENCH_IMPL(striped, striped_allow)
BENCH_IMPL(mutex, mutex_bucket_allow)

static void add(const char *family, const char *impl, bench_fn fn, bench_hook setup,
		bench_hook teardown)
{
	char name[96];
	struct bench_def *def;

	snprintf(name, sizeof(name), "BM_%s_%s", family, impl);
	def = bench_register(name, fn);
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	bench_def_setup(def, setup);
	bench_def_teardown(def, teardown);
	bench_def_use_real_time(def);
}

/* Every impl of one family: its loop, with the setups for its rule. */
#define FAMILY(family, loop, suffix)                                                          \
	do {                                                                                  \
		add(family, "tally_gcra", bm_##loop##_tally, gcra_setup##suffix, tally_teardown);  \
		add(family, "tally_window", bm_##loop##_tally, window_setup##suffix,            \
		    tally_teardown);                                                          \
		add(family, "striped_gcra", bm_##loop##_striped, striped_gcra_setup##suffix,     \
		    striped_teardown);                                                        \
		add(family, "striped_window", bm_##loop##_striped,                             \
		    striped_window_setup##suffix, striped_teardown);                          \
		add(family, "naive_mutex", bm_##loop##_mutex, mutex_setup##suffix,               \
		    mutex_teardown);                                                          \
	} while (0)

int main(int argc, char **argv)
{
	for (int i = 0; i < COLD_KEYS; i++) {
		int len = snprintf(cold_keys[i], KEY_BYTES, "client-%08x", (unsigned)i * 2654435761u);
		cold_lens[i] = (size_t)len;
	}
	FAMILY("ratelimithot", hot, );
	FAMILY("ratelimitcold", cold, );
	FAMILY("ratelimitmixed", hotcold, );
	FAMILY("ratelimitrefused", hotcold, _refused);
	return bench_main(argc, argv);
}
