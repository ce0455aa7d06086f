/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/gauge/sgauge.c: sharded floor-guarded gauge: every call and error, gathering,
 * threads. */
#include <stdint.h>
#include "tally/gauge.h"
#include "../tap.h"
#include "../threads.h"

#define THREADS 8
#define OPS 100000

static void test_errors(void)
{
	struct tally_sgauge gauge = { 0 };
	int64_t value = 0;

	tap_eq(tally_sgauge_init(NULL, 0, 0, 10, 0), TALLY_EINVAL, "init(NULL)");
	tap_eq(tally_sgauge_init(&gauge, 0, 5, 4, 0), TALLY_EINVAL, "floor above ceiling");
	tap_eq(tally_sgauge_init(&gauge, 3, 5, 10, 0), TALLY_EINVAL, "initial below floor");
	tap_eq(tally_sgauge_init(&gauge, 0, 0, 10, TALLY_SGAUGE_SHARDS_MAX + 1), TALLY_EINVAL,
	       "too many shards");
	tap_eq(tally_sgauge_init(&gauge, 0, INT64_MIN, 10, 0), TALLY_EINVAL,
	       "a span wider than int64");
	tap_eq(tally_sgauge_add(&gauge, 1), TALLY_EDESTROYED, "add before init");
	tap_eq(tally_sgauge_add(NULL, 1), TALLY_EINVAL, "add(NULL)");

	tap_eq(tally_sgauge_init(&gauge, 2, 0, 5, 4), TALLY_OK, "init [0, 5] at 2, 4 shards");
	tap_eq(tally_sgauge_read(&gauge, NULL), TALLY_EINVAL, "read into NULL");
	tap_eq(tally_sgauge_add(&gauge, 0), TALLY_EINVAL, "add 0");
	tap_eq(tally_sgauge_sub(&gauge, -1), TALLY_EINVAL, "sub negative");
	tap_eq(tally_sgauge_sub(&gauge, 3), TALLY_EFLOOR, "sub 3 from 2 hits the floor");
	tally_sgauge_read(&gauge, &value);
	tap_eq(value, 2, "the refused sub changed nothing");
	tap_eq(tally_sgauge_add(&gauge, 4), TALLY_ECEILING, "add 4 to 2 passes ceiling 5");
	tally_sgauge_read(&gauge, &value);
	tap_eq(value, 2, "the refused add changed nothing");
	tap_eq(tally_sgauge_add(&gauge, 3), TALLY_OK, "add up to the ceiling");
	tap_eq(tally_sgauge_inc(&gauge), TALLY_ECEILING, "inc at the ceiling");
	tap_eq(tally_sgauge_sub(&gauge, 5), TALLY_OK, "sub down to the floor");
	tap_eq(tally_sgauge_dec(&gauge), TALLY_EFLOOR, "dec at the floor");
	tally_sgauge_read(&gauge, &value);
	tap_eq(value, 0, "value is the floor");
	tap_eq(tally_sgauge_destroy(&gauge), TALLY_OK, "destroy");
	tap_eq(tally_sgauge_destroy(&gauge), TALLY_EDESTROYED, "destroy twice");
	tap_eq(tally_sgauge_dec(&gauge), TALLY_EDESTROYED, "dec after destroy");
}

static void *add_one(struct test_thread *self)
{
	tally_sgauge_inc(self->shared);
	return NULL;
}

/* Tokens left on other threads' shards are found by a sub that needs them all at once. */
static void test_gathering(void)
{
	struct tally_sgauge gauge;
	struct test_thread threads[THREADS];
	int64_t value;

	tally_sgauge_init(&gauge, 0, 0, TALLY_GAUGE_NO_CEILING, 4);
	run_threads(THREADS, add_one, &gauge, threads);
	tally_sgauge_read(&gauge, &value);
	tap_eq(value, THREADS, "each thread's add is counted");
	tap_eq(tally_sgauge_sub(&gauge, THREADS), TALLY_OK, "one sub gathers from every shard");
	tap_eq(tally_sgauge_dec(&gauge), TALLY_EFLOOR, "and then the gauge is at its floor");
	tally_sgauge_destroy(&gauge);
}

struct sgauge_run {
	struct tally_sgauge gauge;
	_Atomic int64_t added, subtracted;
};

/* Mixed amounts so that subs must often gather; with a ceiling so adds can fail too. */
static void *churn(struct test_thread *self)
{
	struct sgauge_run *run = self->shared;

	for (int i = 0; i < OPS; i++) {
		int64_t n = 1 + (i + self->index) % 3;
		if ((i * 7 + self->index) % 2 == 0) {
			if (tally_sgauge_add(&run->gauge, n) == TALLY_OK)
				atomic_fetch_add(&run->added, n);
		} else if (tally_sgauge_sub(&run->gauge, n) == TALLY_OK) {
			atomic_fetch_add(&run->subtracted, n);
		}
	}
	return NULL;
}

static void test_concurrent(int64_t ceiling, const char *label)
{
	static struct sgauge_run run;
	struct test_thread threads[THREADS];
	int64_t value;

	atomic_store(&run.added, 0);
	atomic_store(&run.subtracted, 0);
	tally_sgauge_init(&run.gauge, 10, 0, ceiling, 3);
	run_threads(THREADS, churn, &run, threads);
	tally_sgauge_read(&run.gauge, &value);
	tap_eq(value, 10 + run.added - run.subtracted, "%s: value = initial + adds - subs", label);
	tap_ok(value >= 0 && value <= ceiling, "%s: value within [floor, ceiling]", label);
	tap_ok(run.subtracted > 0, "%s: subs succeeded", label);
	if (ceiling != TALLY_GAUGE_NO_CEILING) {
		/* Quiescent: every headroom token is back, so the room left is exact. */
		int64_t room = ceiling - value;
		tap_eq(tally_sgauge_add(&run.gauge, room), TALLY_OK, "%s: add the exact room", label);
		tap_eq(tally_sgauge_inc(&run.gauge), TALLY_ECEILING, "%s: then full", label);
	}
	tally_sgauge_destroy(&run.gauge);
}

int main(void)
{
	test_errors();
	test_gathering();
	test_concurrent(TALLY_GAUGE_NO_CEILING, "no ceiling");
	test_concurrent(40, "ceiling 40");
	return tap_done();
}
