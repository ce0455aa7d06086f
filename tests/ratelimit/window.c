/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/ratelimit/window.c: fixed window: counting, costs, boundaries, stale clock readings,
 * and exactness (admitted per window == min(limit, attempts)) under many threads. */
#include <stdio.h>
#include <stdlib.h>
#include "common.h"
#include "../tap.h"
#include "../threads.h"

#define THREADS 8

static void test_counting(void)
{
	struct tally_ratelimit *rl =
		make_limiter(TALLY_RATELIMIT_FIXED_WINDOW, 5, 1000, 0, shared_clock);
	struct tally_ratelimit_result res;
	int64_t retry = -1;
	int ok = 1;

	atomic_store(&shared_now, 10 * 1000 + 200);
	for (int i = 0; i < 5; i++) {
		ok &= allow_str(rl, "alice", 1, &res) == TALLY_OK;
		ok &= res.remaining == 4 - i && res.limit == 5 && res.retry_after_ns == 0 &&
		      res.reset_ns == 800;
	}
	tap_ok(ok, "five admitted in one window, remaining counts down, reset at window end");
	tap_eq(tally_ratelimit_allow(rl, "alice", 5, 1, &retry), TALLY_ELIMITED, "sixth refused");
	tap_eq(retry, 800, "retry-after is the time to the window end");
	tap_eq(allow_str(rl, "alice", 1, &res), TALLY_ELIMITED, "still refused");
	tap_eq(res.remaining, 0, "refused result: remaining 0");
	tap_eq(allow_str(rl, "bob", 1, NULL), TALLY_OK, "another key has its own window");

	atomic_store(&shared_now, 10 * 1000 + 999);
	tap_eq(allow_str(rl, "alice", 1, NULL), TALLY_ELIMITED, "last ns of the window: refused");
	atomic_store(&shared_now, 11 * 1000);
	tap_eq(allow_str(rl, "alice", 1, &res), TALLY_OK, "boundary: new window admits");
	tap_eq(res.remaining, 4, "count restarted at the boundary");

	tap_eq(allow_str(rl, "alice", 3, &res), TALLY_OK, "cost 3 admitted (4 left)");
	tap_eq(allow_str(rl, "alice", 2, &res), TALLY_ELIMITED, "cost 2 refused with 1 left");
	tap_eq(res.remaining, 1, "refusal reports what is left");
	tap_eq(allow_str(rl, "alice", 1, &res), TALLY_OK, "cost 1 still fits");
	tap_eq(allow_str(rl, "alice", 6, &res), TALLY_EINVAL, "cost above the limit is EINVAL");
	tap_eq(allow_str(rl, "alice", 0, &res), TALLY_EINVAL, "cost 0 is EINVAL");

	/* A later window, then a stale (earlier) reading: charged to the later window. */
	atomic_store(&shared_now, 20 * 1000 + 100);
	tap_eq(allow_str(rl, "carol", 4, NULL), TALLY_OK, "carol takes 4 in window 20");
	atomic_store(&shared_now, 19 * 1000 + 500);
	tap_eq(allow_str(rl, "carol", 1, &res), TALLY_OK, "a stale reading is charged...");
	tap_eq(res.reset_ns, 1500, "...to the stored later window, not a reset of it");
	tap_eq(allow_str(rl, "carol", 1, &res), TALLY_ELIMITED, "and the later window is full");
	tally_ratelimit_destroy(rl);
}

static void test_limit_edges(void)
{
	struct tally_ratelimit *one =
		make_limiter(TALLY_RATELIMIT_FIXED_WINDOW, 1, 1, 0, shared_clock);
	struct tally_ratelimit *max = make_limiter(TALLY_RATELIMIT_FIXED_WINDOW,
						   TALLY_RATELIMIT_WINDOW_LIMIT_MAX,
						   INT64_C(1) << 61, 0, shared_clock);
	struct tally_ratelimit_result res;

	atomic_store(&shared_now, (INT64_C(1) << 62) - 2);
	tap_eq(allow_str(one, "k", 1, NULL), TALLY_OK, "limit 1, 1 ns windows, near the clock max");
	tap_eq(allow_str(one, "k", 1, NULL), TALLY_ELIMITED, "second in the same ns refused");
	atomic_store(&shared_now, (INT64_C(1) << 62) - 1);
	tap_eq(allow_str(one, "k", 1, NULL), TALLY_OK, "next ns admits");
	tap_eq(allow_str(max, "k", TALLY_RATELIMIT_WINDOW_LIMIT_MAX, &res), TALLY_OK,
	       "the largest limit in one charge");
	tap_eq(res.remaining, 0, "nothing left");
	tap_eq(allow_str(max, "k", 1, NULL), TALLY_ELIMITED, "and then refused");
	tally_ratelimit_destroy(one);
	tally_ratelimit_destroy(max);
}

/*
 * The largest limit leaves the window index 32 bits, so with 1 ns windows it wraps every
 * 2^32 ns. A key idle for any time, in the second half of a wrap, at an exact multiple of
 * it, or past it, starts its new window at 0; it is never charged against its old count.
 */
static void test_index_wrap(void)
{
	const int64_t limit = TALLY_RATELIMIT_WINDOW_LIMIT_MAX, wrap = INT64_C(1) << 32;
	const int64_t idles[] = { (INT64_C(1) << 31) + 5, wrap - 1, wrap, 3 * wrap,
				  5 * wrap + (INT64_C(1) << 31) };
	struct tally_ratelimit_result res;
	int64_t removed = -1;

	for (size_t i = 0; i < sizeof(idles) / sizeof(idles[0]); i++) {
		struct tally_ratelimit *rl =
			make_limiter(TALLY_RATELIMIT_FIXED_WINDOW, limit, 1, 0, shared_clock);

		atomic_store(&shared_now, 1000);
		tap_eq(allow_str(rl, "k", limit, NULL), TALLY_OK, "the whole limit in window 1000");
		atomic_store(&shared_now, 1000 + idles[i]);
		tap_ok(allow_str(rl, "k", 1, &res) == TALLY_OK && res.remaining == limit - 1 &&
			       res.reset_ns == 1,
		       "idle %lld windows: a new window, counted from 0 (remaining %lld, "
		       "reset %lld ns)", (long long)idles[i], (long long)res.remaining,
		       (long long)res.reset_ns);
		tally_ratelimit_destroy(rl);
	}

	/* The sweep sees such a key as idle too. */
	{
		struct tally_ratelimit *rl =
			make_limiter(TALLY_RATELIMIT_FIXED_WINDOW, limit, 1, 0, shared_clock);

		atomic_store(&shared_now, 1000);
		allow_str(rl, "k", limit, NULL);
		atomic_store(&shared_now, 1000 + wrap);
		tap_ok(tally_ratelimit_peek(rl, "k", 1, &res) == TALLY_OK &&
			       res.remaining == limit,
		       "peek after exactly one wrap: the full quota (%lld)",
		       (long long)res.remaining);
		tally_ratelimit_sweep(rl, &removed);
		tap_eq(removed, 1, "a sweep after exactly one wrap removes the idle key");
		tally_ratelimit_destroy(rl);
	}
	/* A reading stale by more than half a wrap is still charged to the stored window (no
	 * sweep here: its horizon would lift the stale reading). */
	{
		struct tally_ratelimit *rl =
			make_limiter(TALLY_RATELIMIT_FIXED_WINDOW, limit, 1, 0, shared_clock);

		atomic_store(&shared_now, 1000 + wrap);
		allow_str(rl, "s", 10, NULL);
		atomic_store(&shared_now, 1000 + wrap - (INT64_C(1) << 31) - 3);
		tap_ok(allow_str(rl, "s", limit - 10, &res) == TALLY_OK && res.remaining == 0 &&
			       res.reset_ns == (INT64_C(1) << 31) + 4 &&
			       allow_str(rl, "s", 1, NULL) == TALLY_ELIMITED,
		       "a reading 2^31 + 3 windows stale is charged to the stored window");
		tally_ratelimit_destroy(rl);
	}
}

struct fixed_run {
	struct tally_ratelimit *rl;
	int attempts;
	_Atomic int64_t admitted;
};

static void *fixed_body(struct test_thread *self)
{
	struct fixed_run *run = self->shared;

	for (int i = 0; i < run->attempts; i++)
		if (allow_str(run->rl, "hot", 1 + (i % 3 == 0), NULL) == TALLY_OK)
			atomic_fetch_add(&run->admitted, 1 + (i % 3 == 0));
	return NULL;
}

/* Clock held fixed: the window admits exactly min(limit, attempted cost). */
static void test_exact_fixed_clock(void)
{
	struct test_thread threads[THREADS];
	const int64_t limits[] = { 1, 7, 1000, 100000 };

	atomic_store(&shared_now, 123456789);
	for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
		struct fixed_run run = { .attempts = 3000 };
		run.rl = make_limiter(TALLY_RATELIMIT_FIXED_WINDOW, limits[l], 1000000, 0,
				      shared_clock);
		run_threads(THREADS, fixed_body, &run, threads);
		/* Costs are 1 or 2: a full window may stop one short of the limit. */
		int64_t attempted = (int64_t)THREADS * (run.attempts + (run.attempts + 2) / 3);
		int64_t want = limits[l] < attempted ? limits[l] : attempted;
		int64_t got = atomic_load(&run.admitted);
		tap_ok(got <= want && got >= want - 1,
		       "fixed clock, limit %lld: admitted %lld of %lld attempted (limit-exact)",
		       (long long)limits[l], (long long)got, (long long)attempted);
		tally_ratelimit_destroy(run.rl);
	}
}

/* Exactly min(limit, attempts) with unit costs. */
static void *unit_body(struct test_thread *self)
{
	struct fixed_run *run = self->shared;

	for (int i = 0; i < run->attempts; i++)
		if (allow_str(run->rl, "hot", 1, NULL) == TALLY_OK)
			atomic_fetch_add(&run->admitted, 1);
	return NULL;
}

static void test_exact_unit(void)
{
	struct test_thread threads[THREADS];
	const int64_t limits[] = { 1, 999, 16000, 50000 };

	atomic_store(&shared_now, 5);
	for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++) {
		struct fixed_run run = { .attempts = 2000 };
		run.rl = make_limiter(TALLY_RATELIMIT_FIXED_WINDOW, limits[l], 1000, 0,
				      shared_clock);
		run_threads(THREADS, unit_body, &run, threads);
		int64_t attempted = (int64_t)THREADS * run.attempts;
		tap_eq(atomic_load(&run.admitted), limits[l] < attempted ? limits[l] : attempted,
		       "unit costs, limit %lld: admitted == min(limit, attempts)",
		       (long long)limits[l]);
		tally_ratelimit_destroy(run.rl);
	}
}

#define WINDOWS 64
#define PERIOD 1000

struct stepped_run {
	struct tally_ratelimit *rl;
	int64_t limit;
	_Atomic int64_t per_window[WINDOWS + 2];
	_Atomic int64_t refused_early; /* refused while its window had room: must stay 0 */
};

/*
 * Each thread walks its own clock through the windows at its own pace (thread i lags by
 * i * 37 ns per step), so threads constantly read stale times relative to each other. The
 * window an admission was charged to is read back from the result (now + reset_ns is its end).
 */
static void *stepped_body(struct test_thread *self)
{
	struct stepped_run *run = self->shared;
	struct tally_ratelimit_result res;

	for (int64_t t = 0; t < WINDOWS * PERIOD; t += 7 + self->index) {
		thread_now = t;
		int err = allow_str(run->rl, "hot", 1, &res);
		if (err == TALLY_OK) {
			int64_t window = (t + res.reset_ns) / PERIOD - 1;
			if (window >= 0 && window < WINDOWS + 2)
				atomic_fetch_add(&run->per_window[window], 1);
		}
	}
	return NULL;
}

static void test_exact_stepped(void)
{
	struct test_thread threads[THREADS];
	static struct stepped_run run;
	int64_t over = 0, total = 0, full = 0;

	run.limit = 20;
	run.rl = make_limiter(TALLY_RATELIMIT_FIXED_WINDOW, run.limit, PERIOD, 0, thread_clock);
	run_threads(THREADS, stepped_body, &run, threads);
	for (int w = 0; w < WINDOWS + 2; w++) {
		int64_t n = atomic_load(&run.per_window[w]);
		over += n > run.limit;
		full += n == run.limit;
		total += n;
	}
	tap_eq(over, 0, "stale per-thread clocks: no window admitted more than its limit");
	tap_ok(full >= WINDOWS - 1, "and the windows filled (%lld of %d full, %lld admitted)",
	       (long long)full, WINDOWS, (long long)total);
	tally_ratelimit_destroy(run.rl);
}

int main(void)
{
	test_counting();
	test_limit_edges();
	test_index_wrap();
	test_exact_fixed_clock();
	test_exact_unit();
	test_exact_stepped();
	tally_rcu_barrier();
	return tap_done();
}
