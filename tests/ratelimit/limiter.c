/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/ratelimit/limiter.c: the limiter's contract around the algorithms: config and input
 * errors (nothing changes), key length and bytes, the key cap, peek, reset, the creation race,
 * destroy. */
#include <stdio.h>
#include <stdlib.h>
#include "common.h"
#include "../tap.h"
#include "../threads.h"

#define THREADS 8

static int create_err(struct tally_ratelimit_config config)
{
	struct tally_ratelimit *rl = NULL;
	int err = tally_ratelimit_create(&rl, &config);

	if (err == TALLY_OK)
		tally_ratelimit_destroy(rl);
	return err;
}

static void test_config_errors(void)
{
	const struct tally_ratelimit_config window = {
		.algorithm = TALLY_RATELIMIT_FIXED_WINDOW, .limit = 10, .period_ns = 1000 };
	const struct tally_ratelimit_config gcra = {
		.algorithm = TALLY_RATELIMIT_GCRA, .limit = 10, .period_ns = 1000, .burst = 5 };
	struct tally_ratelimit_config c;
	struct tally_ratelimit *rl = NULL;

	tap_eq(create_err(window), TALLY_OK, "a valid window config");
	tap_eq(create_err(gcra), TALLY_OK, "a valid GCRA config");
	tap_eq(tally_ratelimit_create(&rl, NULL), TALLY_EINVAL, "NULL config");
	tap_eq(tally_ratelimit_create(NULL, &window), TALLY_EINVAL, "NULL out pointer");
	c = window; c.algorithm = 0;
	tap_eq(create_err(c), TALLY_EINVAL, "unknown algorithm");
	c = window; c.limit = 0;
	tap_eq(create_err(c), TALLY_EINVAL, "window limit 0");
	c = window; c.limit = -5;
	tap_eq(create_err(c), TALLY_EINVAL, "negative window limit");
	c = window; c.limit = TALLY_RATELIMIT_WINDOW_LIMIT_MAX + 1;
	tap_eq(create_err(c), TALLY_EINVAL, "window limit above the packing's maximum");
	c = window; c.period_ns = 0;
	tap_eq(create_err(c), TALLY_EINVAL, "period 0");
	c = window; c.period_ns = INT64_C(1) << 62;
	tap_eq(create_err(c), TALLY_EINVAL, "window period 2^62: above the largest");
	c = window; c.period_ns = (INT64_C(1) << 62) - 1;
	tap_eq(create_err(c), TALLY_OK, "window period 2^62 - 1: the largest");
	c = window; c.burst = 3;
	tap_eq(create_err(c), TALLY_EINVAL, "a window burst other than the limit");
	c = gcra; c.limit = 0;
	tap_eq(create_err(c), TALLY_EINVAL, "GCRA rate 0");
	c = gcra; c.period_ns = -1;
	tap_eq(create_err(c), TALLY_EINVAL, "GCRA negative period");
	c = gcra; c.burst = -2;
	tap_eq(create_err(c), TALLY_EINVAL, "GCRA negative burst");
	c = gcra; c.period_ns = INT64_C(1) << 61; c.limit = 1; c.burst = 2;
	tap_eq(create_err(c), TALLY_EINVAL, "GCRA burst * T beyond the span maximum");
	c = gcra; c.max_keys = -1;
	tap_eq(create_err(c), TALLY_EINVAL, "negative max_keys");
	c = gcra; c.idle_ttl_ns = -1;
	tap_eq(create_err(c), TALLY_EINVAL, "negative TTL");
	c = gcra; c.sweep_interval_ns = -1;
	tap_eq(create_err(c), TALLY_EINVAL, "negative sweep interval");
	c = gcra; c.expected_keys = -1;
	tap_eq(create_err(c), TALLY_EINVAL, "negative expected_keys");
	c = gcra; c.expected_keys = 100000;
	tap_eq(create_err(c), TALLY_OK, "a table sized for 100000 keys up front");
	c = gcra; c.expected_keys = INT64_MAX;
	tap_eq(create_err(c), TALLY_OK, "an oversized hint is capped, not allocated");
	tap_eq(tally_ratelimit_destroy(NULL), TALLY_EINVAL, "destroy NULL");
}

static void test_input_errors(void)
{
	struct tally_ratelimit *rl = make_limiter(TALLY_RATELIMIT_FIXED_WINDOW, 3, 1000, 0,
						  shared_clock);
	struct tally_ratelimit_result res;
	char key[TALLY_RATELIMIT_KEY_MAX + 2];
	int64_t count = -1, retry = 42;

	memset(key, 'k', sizeof(key));
	atomic_store(&shared_now, 100);
	tap_eq(tally_ratelimit_allow(NULL, "a", 1, 1, NULL), TALLY_EINVAL, "NULL limiter");
	tap_eq(tally_ratelimit_allow(rl, NULL, 1, 1, NULL), TALLY_EINVAL, "NULL key");
	tap_eq(tally_ratelimit_allow(rl, "a", 0, 1, NULL), TALLY_EINVAL, "empty key");
	tap_eq(tally_ratelimit_allow(rl, key, TALLY_RATELIMIT_KEY_MAX + 1, 1, &retry),
	       TALLY_ETOOLONG, "key one byte over the maximum");
	tap_eq(retry, 42, "an error leaves retry-after untouched");
	tap_eq(tally_ratelimit_allow(rl, "a", 1, 4, NULL), TALLY_EINVAL, "cost above the limit");
	tally_ratelimit_key_count(rl, &count);
	tap_eq(count, 0, "no error created a key");
	tap_eq(tally_ratelimit_allow(rl, key, TALLY_RATELIMIT_KEY_MAX, 1, NULL), TALLY_OK,
	       "a key of exactly the maximum length");
	tap_eq(tally_ratelimit_allow(rl, "a\0b", 3, 1, NULL), TALLY_OK, "a key with a NUL byte");
	tap_eq(tally_ratelimit_allow(rl, "a\0c", 3, 1, &retry), TALLY_OK,
	       "differs after the NUL: another key");
	tap_eq(tally_ratelimit_allow(rl, "a", 1, 1, NULL), TALLY_OK, "a prefix: another key");
	tally_ratelimit_key_count(rl, &count);
	tap_eq(count, 4, "four keys held");
	tap_eq(tally_ratelimit_key_count(rl, NULL), TALLY_EINVAL, "key_count NULL out");
	tap_eq(tally_ratelimit_key_count(NULL, &count), TALLY_EINVAL, "key_count NULL limiter");

	tap_eq(tally_ratelimit_peek(rl, "a\0b", 3, &res), TALLY_OK, "peek a held key");
	tap_ok(res.remaining == 2 && res.limit == 3 && res.reset_ns == 900 &&
	       res.retry_after_ns == 0, "peek reports 2 of 3 left, reset at window end");
	tap_eq(tally_ratelimit_peek(rl, "a\0b", 3, &res), TALLY_OK, "peek again");
	tap_eq(res.remaining, 2, "peek charged nothing");
	tap_eq(tally_ratelimit_peek(rl, "zz", 2, &res), TALLY_ENOTFOUND, "peek an unknown key");
	tap_eq(tally_ratelimit_peek(rl, "zz", 2, NULL), TALLY_EINVAL, "peek NULL result");
	tap_eq(tally_ratelimit_peek(rl, key, TALLY_RATELIMIT_KEY_MAX + 1, &res), TALLY_ETOOLONG,
	       "peek a too-long key");

	atomic_store(&shared_now, -1);
	tap_eq(tally_ratelimit_allow(rl, "a", 1, 1, NULL), TALLY_EOVERFLOW,
	       "a clock reading below zero");
	atomic_store(&shared_now, INT64_C(1) << 62);
	tap_eq(tally_ratelimit_allow(rl, "a", 1, 1, NULL), TALLY_EOVERFLOW,
	       "a clock reading at 2^62");
	tap_eq(tally_ratelimit_sweep(rl, NULL), TALLY_EOVERFLOW, "sweep with a bad clock");
	tap_eq(tally_ratelimit_peek(rl, "a\0b", 3, &res), TALLY_EOVERFLOW,
	       "peek reads the clock too: EOVERFLOW");
	atomic_store(&shared_now, 100);
	tap_eq(tally_ratelimit_peek(rl, "a", 1, &res), TALLY_OK, "after the clock errors...");
	tap_eq(res.remaining, 2, "...nothing was charged");

	tally_rcu_read_lock();
	tap_eq(tally_ratelimit_destroy(rl), TALLY_EBUSY, "destroy inside a read-side section");
	tap_eq(tally_ratelimit_allow(rl, "a", 1, 1, NULL), TALLY_OK,
	       "allow inside a read-side section; the limiter survived");
	tally_rcu_read_unlock();
	tap_eq(tally_ratelimit_destroy(rl), TALLY_OK, "destroy");
}

static void test_reset(void)
{
	struct tally_ratelimit *rl = make_limiter(TALLY_RATELIMIT_GCRA, 1, 1000000, 2,
						  shared_clock);
	int64_t count = -1;

	atomic_store(&shared_now, 5);
	allow_str(rl, "u", 2, NULL);
	tap_eq(allow_str(rl, "u", 1, NULL), TALLY_ELIMITED, "u used its burst");
	tap_eq(tally_ratelimit_reset(rl, "u", 1), TALLY_OK, "reset u");
	tally_ratelimit_key_count(rl, &count);
	tap_eq(count, 0, "reset removed the key");
	tap_eq(tally_ratelimit_reset(rl, "u", 1), TALLY_ENOTFOUND, "second reset: ENOTFOUND");
	tap_eq(allow_str(rl, "u", 2, NULL), TALLY_OK, "full burst after the reset");
	tap_eq(tally_ratelimit_reset(rl, NULL, 1), TALLY_EINVAL, "reset NULL key");
	tally_ratelimit_destroy(rl);
}

static void test_cap(void)
{
	struct tally_ratelimit_config config = {
		.algorithm = TALLY_RATELIMIT_FIXED_WINDOW, .limit = 2, .period_ns = 1000,
		.max_keys = 3, .now_ns = shared_clock };
	struct tally_ratelimit *rl = NULL;
	int64_t count = -1;

	atomic_store(&shared_now, 0);
	tally_ratelimit_create(&rl, &config);
	tap_ok(allow_str(rl, "k1", 1, NULL) == TALLY_OK && allow_str(rl, "k2", 1, NULL) ==
	       TALLY_OK && allow_str(rl, "k3", 1, NULL) == TALLY_OK, "three keys fit the cap");
	tap_eq(allow_str(rl, "k4", 1, NULL), TALLY_EFULL, "a fourth key: EFULL");
	tap_eq(allow_str(rl, "k1", 1, NULL), TALLY_OK, "held keys still work when full");
	tally_ratelimit_key_count(rl, &count);
	tap_eq(count, 3, "still three keys");
	tally_ratelimit_reset(rl, "k2", 2);
	tap_eq(allow_str(rl, "k4", 1, NULL), TALLY_OK, "room again after a key left");
	tally_ratelimit_destroy(rl);
}

struct race {
	struct tally_ratelimit *rl;
	_Atomic int64_t admitted, full;
};

/* Every thread's first call is on the same new keys: one entry per key must win. */
static void *race_body(struct test_thread *self)
{
	struct race *race = self->shared;
	char key[32];

	for (int k = 0; k < 200; k++) {
		int len = snprintf(key, sizeof(key), "new-%d", k);
		for (int i = 0; i < 3; i++) {
			int err = tally_ratelimit_allow(race->rl, key, (size_t)len, 1, NULL);
			if (err == TALLY_OK)
				atomic_fetch_add(&race->admitted, 1);
			else if (err == TALLY_EFULL)
				atomic_fetch_add(&race->full, 1);
		}
	}
	return NULL;
}

static void test_creation_race(int64_t max_keys)
{
	struct test_thread threads[THREADS];
	struct race race = { 0 };
	struct tally_ratelimit_config config = {
		.algorithm = TALLY_RATELIMIT_FIXED_WINDOW, .limit = 5, .period_ns = 1000000,
		.max_keys = max_keys, .now_ns = shared_clock };
	int64_t count = -1;

	atomic_store(&shared_now, 0);
	tally_ratelimit_create(&race.rl, &config);
	run_threads(THREADS, race_body, &race, threads);
	tally_ratelimit_key_count(race.rl, &count);
	if (max_keys == 0) {
		tap_eq(count, 200, "racing creators made one entry per key");
		tap_eq(atomic_load(&race.admitted), 200 * 5, "each key admitted exactly its limit");
		tap_eq(atomic_load(&race.full), 0, "no cap, no EFULL");
	} else {
		tap_ok(count <= max_keys && count > 0, "racing creators under a cap of %lld: %lld keys",
		       (long long)max_keys, (long long)count);
		tap_ok(atomic_load(&race.admitted) <= count * 5 && atomic_load(&race.full) > 0,
		       "at most the limit per held key (%lld admitted), the rest EFULL",
		       (long long)atomic_load(&race.admitted));
	}
	tally_ratelimit_destroy(race.rl);
}

/*
 * key_count under churn never reads above max_keys: 5 threads create (mostly refused at the
 * cap), reset and sweep 40 keys under a cap of 10 while one thread reads the count.
 */
#define CHURN_CAP 10
#if defined(__SANITIZE_THREAD__)
#define CHURN_OPS 4000
#else
#define CHURN_OPS 40000
#endif

struct churn {
	struct tally_ratelimit *rl;
	_Atomic int writers_left;
	int64_t reads, over, highest;
};

static void *churn_body(struct test_thread *self)
{
	struct churn *churn = self->shared;
	char key[16];

	if (self->index == 0) { /* the reader */
		while (atomic_load(&churn->writers_left) > 0) {
			int64_t count = -1;

			tally_ratelimit_key_count(churn->rl, &count);
			churn->reads++;
			churn->over += count > CHURN_CAP || count < 0;
			if (count > churn->highest)
				churn->highest = count;
		}
		return NULL;
	}
	for (int i = 0; i < CHURN_OPS; i++) {
		int len = snprintf(key, sizeof(key), "c%d", (i * 7 + self->index) % 40);

		if (i % 97 == 0)
			tally_ratelimit_reset(churn->rl, key, (size_t)len);
		else if (i % 211 == 0)
			tally_ratelimit_sweep(churn->rl, NULL);
		else /* mostly refused: a new key while the cap is full */
			tally_ratelimit_allow(churn->rl, key, (size_t)len, 1, NULL);
	}
	atomic_fetch_sub(&churn->writers_left, 1);
	return NULL;
}

static void test_count_within_cap(void)
{
	struct test_thread threads[6];
	struct churn churn = { .writers_left = 5 };
	struct tally_ratelimit_config config = {
		.algorithm = TALLY_RATELIMIT_FIXED_WINDOW, .limit = 1000000, .period_ns = 1000,
		.max_keys = CHURN_CAP, .now_ns = shared_clock };
	int64_t count = -1;

	atomic_store(&shared_now, 5000);
	tally_ratelimit_create(&churn.rl, &config);
	run_threads(6, churn_body, &churn, threads);
	tap_ok(churn.over == 0 && churn.highest <= CHURN_CAP,
	       "key_count under create/reset/sweep churn: %lld of %lld reads above the cap "
	       "of %d (highest %lld)", (long long)churn.over, (long long)churn.reads, CHURN_CAP,
	       (long long)churn.highest);
	tally_ratelimit_key_count(churn.rl, &count);
	tap_ok(count >= 0 && count <= CHURN_CAP, "at rest: %lld keys", (long long)count);
	tally_ratelimit_destroy(churn.rl);
}

/*
 * Destroy with many keys (regression: bench/ratelimit crashed in teardown). Deleting the keys
 * makes cds_lfht shrink its table on liburcu's resize worker, whose threads walk the bucket
 * chains under their own read-side sections; a destroy that freed each entry at once, right
 * after unlinking it, let them step on freed memory. Entries must outlive a grace period
 * even in destroy. Under ASan, or with glibc's tcache pointers in freed chunks, the old code
 * faulted in about one run of this test in three.
 */
#define DESTROY_KEYS 65536
#if defined(__SANITIZE_THREAD__)
#define DESTROY_ROUNDS 3 /* TSan is slow, and sees the frees through its own edges */
#else
#define DESTROY_ROUNDS 12
#endif

static void test_destroy_many_keys(void)
{
	int failed = 0;
	char key[32];

	for (int round = 0; round < DESTROY_ROUNDS; round++) {
		struct tally_ratelimit *rl = make_limiter(TALLY_RATELIMIT_GCRA, 1000, 1000000, 10,
							  shared_clock);
		int64_t count = -1;

		if (!rl) {
			failed++;
			continue;
		}
		for (int i = 0; i < DESTROY_KEYS; i++) {
			int len = snprintf(key, sizeof(key), "client-%d-%08x", round,
					   (unsigned)i * 2654435761u);
			failed += tally_ratelimit_allow(rl, key, (size_t)len, 1, NULL) != TALLY_OK;
		}
		tally_ratelimit_key_count(rl, &count);
		failed += count != DESTROY_KEYS;
		failed += tally_ratelimit_destroy(rl) != TALLY_OK;
	}
	tap_eq(failed, 0, "%d rounds of %d keys created and destroyed (table resizing meanwhile)",
	       DESTROY_ROUNDS, DESTROY_KEYS);
}

int main(void)
{
	test_config_errors();
	test_input_errors();
	test_reset();
	test_cap();
	test_creation_race(0);
	test_creation_race(100);
	test_count_within_cap();
	test_destroy_many_keys();
	/* The layout docs/ratelimit.md promises: a 16-byte key's whole entry (node, word, key)
	 * in jemalloc's 48-byte class, a 32-byte key's in one 64-byte line. */
	tap_ok(tally_ratelimit_entry_size() > 0 && tally_ratelimit_entry_size() + 16 <= 48,
	       "entry size %zu bytes plus the key: 48 for 16-byte keys",
	       tally_ratelimit_entry_size());
	tally_rcu_barrier();
	return tap_done();
}
