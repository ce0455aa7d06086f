/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/ratelimit/gcra.c: GCRA: burst, rate, costs, rounding of the emission interval, and
 * the bound (admitted over a span <= burst + span / T) under many threads. */
#include <stdio.h>
#include <stdlib.h>
#include "common.h"
#include "../tap.h"
#include "../threads.h"

#define THREADS 8

static void test_burst_and_rate(void)
{
	/* 10 per 1000 ns: T = 100 ns; burst 3. */
	struct tally_ratelimit *rl = make_limiter(TALLY_RATELIMIT_GCRA, 10, 1000, 3, shared_clock);
	struct tally_ratelimit_result res;
	int64_t retry = -1;

	atomic_store(&shared_now, 1000000);
	tap_eq(allow_str(rl, "k", 1, &res), TALLY_OK, "first of the burst");
	tap_ok(res.limit == 3 && res.remaining == 2 && res.reset_ns == 100,
	       "limit = burst, 2 left, full again in 100 ns");
	tap_eq(allow_str(rl, "k", 2, &res), TALLY_OK, "rest of the burst at once (cost 2)");
	tap_eq(res.remaining, 0, "burst used up");
	tap_eq(tally_ratelimit_allow(rl, "k", 1, 1, &retry), TALLY_ELIMITED, "fourth refused");
	tap_eq(retry, 100, "retry after one emission interval");
	atomic_store(&shared_now, 1000099);
	tap_eq(allow_str(rl, "k", 1, &res), TALLY_ELIMITED, "1 ns early: refused");
	tap_eq(res.retry_after_ns, 1, "retry-after 1 ns");
	atomic_store(&shared_now, 1000100);
	tap_eq(allow_str(rl, "k", 1, NULL), TALLY_OK, "on time: admitted");
	tap_eq(allow_str(rl, "k", 2, &res), TALLY_ELIMITED, "cost 2 with nothing accrued");
	tap_eq(res.retry_after_ns, 200, "cost 2 must wait two intervals");
	atomic_store(&shared_now, 1000000 + 100 + 1000);
	tap_eq(allow_str(rl, "k", 3, &res), TALLY_OK, "after a long idle the full burst is back");
	tap_eq(allow_str(rl, "k", 4, NULL), TALLY_EINVAL, "cost above the burst is EINVAL");
	tap_eq(allow_str(rl, "k", -1, NULL), TALLY_EINVAL, "negative cost is EINVAL");
	tally_ratelimit_destroy(rl);

	/* 3 per 1000 ns: T rounds up to 334 ns, so the rate never exceeds 3 per 1000 ns. */
	rl = make_limiter(TALLY_RATELIMIT_GCRA, 3, 1000, 1, shared_clock);
	atomic_store(&shared_now, 0);
	tap_eq(allow_str(rl, "r", 1, NULL), TALLY_OK, "rounding: first");
	atomic_store(&shared_now, 333);
	tap_eq(allow_str(rl, "r", 1, &res), TALLY_ELIMITED, "rounding: 333 ns is early");
	atomic_store(&shared_now, 334);
	tap_eq(allow_str(rl, "r", 1, NULL), TALLY_OK, "rounding: 334 ns admits");
	tally_ratelimit_destroy(rl);

	/* burst 0 means burst = limit. */
	rl = make_limiter(TALLY_RATELIMIT_GCRA, 4, 4000, 0, shared_clock);
	int admitted = 0;
	for (int i = 0; i < 10; i++)
		admitted += allow_str(rl, "b", 1, NULL) == TALLY_OK;
	tap_eq(admitted, 4, "burst 0 defaults to the limit");
	tally_ratelimit_destroy(rl);
}

struct run {
	struct tally_ratelimit *rl;
	int attempts;
	_Atomic int64_t admitted;
	_Atomic int64_t min_now, max_now;
};

static void *fixed_body(struct test_thread *self)
{
	struct run *run = self->shared;

	for (int i = 0; i < run->attempts; i++)
		if (allow_str(run->rl, "hot", 1, NULL) == TALLY_OK)
			atomic_fetch_add(&run->admitted, 1);
	return NULL;
}

static void test_exact_fixed_clock(void)
{
	struct test_thread threads[THREADS];
	const int64_t bursts[] = { 1, 5, 1000, 40000 };

	atomic_store(&shared_now, 777);
	for (size_t b = 0; b < sizeof(bursts) / sizeof(bursts[0]); b++) {
		struct run run = { .attempts = 2000 };
		run.rl = make_limiter(TALLY_RATELIMIT_GCRA, 100, 1000000, bursts[b], shared_clock);
		run_threads(THREADS, fixed_body, &run, threads);
		int64_t attempted = (int64_t)THREADS * run.attempts;
		tap_eq(atomic_load(&run.admitted), bursts[b] < attempted ? bursts[b] : attempted,
		       "fixed clock, burst %lld: admitted == min(burst, attempts)",
		       (long long)bursts[b]);
		tally_ratelimit_destroy(run.rl);
	}
}

#define T_NS 50
#define SPAN 200000

/* Each thread walks its own clock across [0, SPAN) at its own pace, so threads read stale
 * times relative to each other; the costs vary. */
static void *stepped_body(struct test_thread *self)
{
	struct run *run = self->shared;
	int64_t cost = 1 + self->index % 3;

	for (int64_t t = 0; t < SPAN; t += 3 + self->index * 5) {
		thread_now = t;
		if (allow_str(run->rl, "hot", cost, NULL) == TALLY_OK)
			atomic_fetch_add(&run->admitted, cost);
	}
	return NULL;
}

static void test_bound_stepped(void)
{
	struct test_thread threads[THREADS];
	const int64_t bursts[] = { 3, 10, 64 };

	for (size_t b = 0; b < sizeof(bursts) / sizeof(bursts[0]); b++) {
		struct run run = { 0 };
		/* 1 unit per T_NS; costs go up to 3, so bursts start at 3. */
		int64_t burst = bursts[b];
		run.rl = make_limiter(TALLY_RATELIMIT_GCRA, 1, T_NS, burst, thread_clock);
		run_threads(THREADS, stepped_body, &run, threads);
		int64_t got = atomic_load(&run.admitted), bound = burst + SPAN / T_NS;
		tap_ok(got <= bound && got >= bound / 2,
		       "stale clocks, burst %lld: admitted %lld <= burst + span/T = %lld (and the rate was used)",
		       (long long)burst, (long long)got, (long long)bound);
		tally_ratelimit_destroy(run.rl);
	}
}

int main(void)
{
	test_burst_and_rate();
	test_exact_fixed_clock();
	test_bound_stepped();
	tally_rcu_barrier();
	return tap_done();
}
