/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/gauge/gauge.c: single-word floor-guarded gauge: every call and error, then threads. */
#include <stdint.h>
#include "tally/gauge.h"
#include "../tap.h"
#include "../threads.h"

#define THREADS 8
#define OPS 100000

static void test_errors(void)
{
	struct tally_gauge gauge = { 0 };
	int64_t value = 0;

	tap_eq(tally_gauge_init(NULL, 0, 0, 10), TALLY_EINVAL, "init(NULL)");
	tap_eq(tally_gauge_init(&gauge, 0, 5, 4), TALLY_EINVAL, "floor above ceiling");
	tap_eq(tally_gauge_init(&gauge, 3, 5, 10), TALLY_EINVAL, "initial below floor");
	tap_eq(tally_gauge_init(&gauge, 11, 5, 10), TALLY_EINVAL, "initial above ceiling");
	tap_eq(tally_gauge_add(&gauge, 1, NULL), TALLY_EDESTROYED, "add before init");
	tap_eq(tally_gauge_add(NULL, 1, NULL), TALLY_EINVAL, "add(NULL)");
	tap_eq(tally_gauge_read(NULL, &value), TALLY_EINVAL, "read(NULL)");

	tap_eq(tally_gauge_init(&gauge, 2, 0, 5), TALLY_OK, "init [0, 5] at 2");
	tap_eq(tally_gauge_read(&gauge, NULL), TALLY_EINVAL, "read into NULL");
	tap_eq(tally_gauge_add(&gauge, 0, NULL), TALLY_EINVAL, "add 0");
	tap_eq(tally_gauge_add(&gauge, -1, NULL), TALLY_EINVAL, "add negative");
	tap_eq(tally_gauge_sub(&gauge, 0, NULL), TALLY_EINVAL, "sub 0");
	tap_eq(tally_gauge_sub(&gauge, -3, NULL), TALLY_EINVAL, "sub negative");
	tap_eq(tally_gauge_sub(&gauge, 3, &value), TALLY_EFLOOR, "sub 3 from 2 hits the floor");
	tally_gauge_read(&gauge, &value);
	tap_eq(value, 2, "the refused sub changed nothing (all or nothing)");
	tap_eq(tally_gauge_add(&gauge, 4, NULL), TALLY_ECEILING, "add 4 to 2 passes ceiling 5");
	tap_eq(tally_gauge_add(&gauge, 3, &value), TALLY_OK, "add up to the ceiling");
	tap_eq(value, 5, "add reports the value it produced");
	tap_eq(tally_gauge_inc(&gauge, NULL), TALLY_ECEILING, "inc at the ceiling");
	tap_eq(tally_gauge_sub(&gauge, 5, &value), TALLY_OK, "sub down to the floor");
	tap_eq(value, 0, "value is the floor");
	tap_eq(tally_gauge_dec(&gauge, NULL), TALLY_EFLOOR, "dec at the floor");
	tap_eq(tally_gauge_inc(&gauge, &value), TALLY_OK, "inc");
	tap_eq(tally_gauge_dec(&gauge, &value), TALLY_OK, "dec");
	tap_eq(value, 0, "inc then dec");
	tap_eq(tally_gauge_destroy(&gauge), TALLY_OK, "destroy");
	tap_eq(tally_gauge_destroy(&gauge), TALLY_EDESTROYED, "destroy twice");
	tap_eq(tally_gauge_inc(&gauge, NULL), TALLY_EDESTROYED, "inc after destroy");

	tally_gauge_init(&gauge, INT64_MAX - 1, INT64_MIN, TALLY_GAUGE_NO_CEILING);
	tap_eq(tally_gauge_add(&gauge, 2, NULL), TALLY_EOVERFLOW, "no ceiling: int64 overflow");
	/* With a ceiling, a sum past int64 is past the ceiling too: ECEILING, as tally_sgauge. */
	tally_gauge_init(&gauge, 10, -100, 100);
	tap_eq(tally_gauge_add(&gauge, INT64_MAX, NULL), TALLY_ECEILING,
	       "ceiling 100, add INT64_MAX: ECEILING, not EOVERFLOW");
	tally_gauge_read(&gauge, &value);
	tap_eq(value, 10, "... and nothing changed");
	tally_gauge_init(&gauge, -10, -10, 10);
	tap_eq(tally_gauge_dec(&gauge, NULL), TALLY_EFLOOR, "negative floor is honoured");
}

struct gauge_run {
	struct tally_gauge gauge;
	_Atomic int64_t successful_decs, successful_incs, below_floor_seen;
};

/* Each thread decrements greedily and increments sometimes: listener joins and leaves. */
static void *churn(struct test_thread *self)
{
	struct gauge_run *run = self->shared;
	int64_t value;

	for (int i = 0; i < OPS; i++) {
		if ((i + self->index) % 3 == 0) {
			if (tally_gauge_inc(&run->gauge, &value) == TALLY_OK)
				atomic_fetch_add(&run->successful_incs, 1);
		} else if (tally_gauge_dec(&run->gauge, &value) == TALLY_OK) {
			atomic_fetch_add(&run->successful_decs, 1);
			if (value < 0)
				atomic_fetch_add(&run->below_floor_seen, 1);
		}
	}
	return NULL;
}

static void test_concurrent(void)
{
	static struct gauge_run run;
	struct test_thread threads[THREADS];
	int64_t value;

	tally_gauge_init(&run.gauge, 100, 0, TALLY_GAUGE_NO_CEILING);
	run_threads(THREADS, churn, &run, threads);
	tally_gauge_read(&run.gauge, &value);
	tap_eq(run.below_floor_seen, 0, "no successful dec ever produced a value below 0");
	tap_eq(value, 100 + run.successful_incs - run.successful_decs,
	       "value = initial + successful incs - successful decs");
	tap_ok(run.successful_decs > 0, "decrements succeeded under contention");
}

int main(void)
{
	test_errors();
	test_concurrent();
	return tap_done();
}
