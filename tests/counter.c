/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/counter.c: every call and error of tally_counter, then exact totals under threads. */
#include <stdint.h>
#include "tally/counter.h"
#include "tap.h"
#include "threads.h"

#define THREADS 8
#define ADDS_PER_THREAD 200000

static void test_errors(void)
{
	struct tally_counter counter = { 0 };
	int64_t value;

	tap_eq(tally_counter_init(NULL, 0), TALLY_EINVAL, "init(NULL) is EINVAL");
	tap_eq(tally_counter_init(&counter, TALLY_COUNTER_SLOTS_MAX + 1), TALLY_EINVAL,
	       "init with too many slots is EINVAL");
	tap_eq(tally_counter_add(&counter, 1), TALLY_EDESTROYED, "add before init is EDESTROYED");
	tap_eq(tally_counter_add(NULL, 1), TALLY_EINVAL, "add(NULL) is EINVAL");
	tap_eq(tally_counter_sub(NULL, 1), TALLY_EINVAL, "sub(NULL) is EINVAL");
	tap_eq(tally_counter_read(NULL, &value), TALLY_EINVAL, "read(NULL) is EINVAL");

	tap_eq(tally_counter_init(&counter, 0), TALLY_OK, "init with default slots");
	tap_eq(tally_counter_read(&counter, NULL), TALLY_EINVAL, "read into NULL is EINVAL");
	tap_eq(tally_counter_drain(&counter, NULL), TALLY_EINVAL, "drain into NULL is EINVAL");
	tap_eq(tally_counter_drain(NULL, &value), TALLY_EINVAL, "drain(NULL) is EINVAL");
	tap_eq(tally_counter_undrain(NULL, 1), TALLY_EINVAL, "undrain(NULL) is EINVAL");
	tap_eq(tally_counter_sub(&counter, INT64_MIN), TALLY_EOVERFLOW,
	       "sub(INT64_MIN) is EOVERFLOW");

	tap_eq(tally_counter_add(&counter, INT64_MAX), TALLY_OK, "add INT64_MAX");
	tap_eq(tally_counter_add(&counter, 1), TALLY_EOVERFLOW, "one more overflows");
	tally_counter_read(&counter, &value);
	tap_eq(value, INT64_MAX, "the overflowing add changed nothing");

	tap_eq(tally_counter_destroy(&counter), TALLY_OK, "destroy");
	tap_eq(tally_counter_destroy(&counter), TALLY_EDESTROYED, "second destroy is EDESTROYED");
	tap_eq(tally_counter_add(&counter, 1), TALLY_EDESTROYED, "add after destroy");
	tap_eq(tally_counter_read(&counter, &value), TALLY_EDESTROYED, "read after destroy");
	tap_eq(tally_counter_drain(&counter, &value), TALLY_EDESTROYED, "drain after destroy");
	tap_eq(tally_counter_undrain(&counter, 1), TALLY_EDESTROYED, "undrain after destroy");
}

static void test_single_thread(void)
{
	struct tally_counter counter;
	int64_t value, delta;

	tally_counter_init(&counter, 4);
	tally_counter_inc(&counter);
	tally_counter_add(&counter, 41);
	tally_counter_sub(&counter, 2);
	tally_counter_add(&counter, 0);
	tally_counter_read(&counter, &value);
	tap_eq(value, 40, "inc + add - sub");
	tap_eq(tally_counter_drain(&counter, &delta), TALLY_OK, "drain");
	tap_eq(delta, 40, "first drain hands the whole total");
	tally_counter_add(&counter, -15);
	tally_counter_drain(&counter, &delta);
	tap_eq(delta, -15, "second drain hands only what came since (negative too)");
	tally_counter_drain(&counter, &delta);
	tap_eq(delta, 0, "drain with nothing new is 0");
	tally_counter_read(&counter, &value);
	tap_eq(value, 25, "drain does not change the total");
	tap_eq(tally_counter_undrain(&counter, -15), TALLY_OK, "undrain a failed flush");
	tally_counter_drain(&counter, &delta);
	tap_eq(delta, -15, "an undrained delta comes back on the next drain");
	tally_counter_destroy(&counter);
}

static void *fill(struct test_thread *self)
{
	tally_counter_add(self->shared, 10);
	return NULL;
}

static void *add_through_local(struct test_thread *self)
{
	struct tally_counter_local local;

	if (tally_counter_local_init(self->shared, &local) != TALLY_OK)
		return (void *)1;
	for (int i = 0; i < ADDS_PER_THREAD; i++)
		tally_counter_local_inc(&local);
	return NULL;
}

static void test_local_handles(void)
{
	struct tally_counter counter = { 0 };
	struct tally_counter_local local;
	struct test_thread threads[THREADS];
	int64_t total;

	tap_eq(tally_counter_local_init(NULL, &local), TALLY_EINVAL, "local_init(NULL)");
	tap_eq(tally_counter_local_init(&counter, &local), TALLY_EDESTROYED,
	       "local_init before init");
	tally_counter_init(&counter, 4);
	tap_eq(tally_counter_local_init(&counter, NULL), TALLY_EINVAL, "local_init into NULL");
	tap_eq(tally_counter_local_init(&counter, &local), TALLY_OK, "local_init");
	tally_counter_local_add(&local, INT64_MAX);
	tap_eq(tally_counter_local_inc(&local), TALLY_EOVERFLOW, "local add detects overflow");
	tally_counter_add(&counter, -INT64_MAX);
	tally_counter_read(&counter, &total);
	tap_eq(total, 0, "local and plain adds land in the same slot");
	/* 8 threads, 4 slots: some handles are on the shared slot; the total is still exact. */
	run_threads(THREADS, add_through_local, &counter, threads);
	tally_counter_read(&counter, &total);
	tap_eq(total, (int64_t)THREADS * ADDS_PER_THREAD, "local handles under threads: exact");
	tally_counter_destroy(&counter);
}

/* A thread started while the main thread holds index 0 has no slot in a 1-slot counter:
 * its handle is on the shared slot, whose inline CAS path must check overflow and the
 * counter's life like the own-slot path. */
static void *shared_handle_errors(struct test_thread *self)
{
	struct tally_counter *counter = self->shared;
	struct tally_counter_local local;
	int64_t total = 0;
	intptr_t failures = 0;

	failures += tally_counter_local_init(counter, &local) != TALLY_OK;
	failures += tally_counter_local_add(&local, INT64_MAX - 1) != TALLY_OK;
	failures += tally_counter_local_inc(&local) != TALLY_OK;
	failures += tally_counter_local_inc(&local) != TALLY_EOVERFLOW;
	tally_counter_read(counter, &total);
	failures += total != INT64_MAX;
	tally_counter_destroy(counter);
	failures += tally_counter_local_inc(&local) != TALLY_EDESTROYED;
	return (void *)failures;
}

static void test_shared_handle(void)
{
	struct tally_counter counter;
	struct test_thread thread;

	tally_counter_init(&counter, 1);
	tap_ok(tally_thread_index() == 0, "the main thread holds index 0 (the only slot)");
	run_threads(1, shared_handle_errors, &counter, &thread);
	tap_eq((intptr_t)thread.result, 0,
	       "a shared-slot handle adds, refuses overflow unchanged, and sees destroy");
}

static void test_total_overflow(void)
{
	struct tally_counter counter;
	struct test_thread threads[2];
	int64_t value;

	tally_counter_init(&counter, 4);
	tally_counter_add(&counter, INT64_MAX);
	/* Another thread fills its own slot: each slot is in range, the sum is not. */
	run_threads(1, fill, &counter, threads);
	tap_eq(tally_counter_read(&counter, &value), TALLY_EOVERFLOW,
	       "read reports a total beyond int64");
	tap_eq(tally_counter_drain(&counter, &value), TALLY_EOVERFLOW,
	       "drain refuses a total beyond int64");
	tally_counter_destroy(&counter);
}

struct drain_run {
	struct tally_counter counter;
	_Atomic int writers_left;
	int64_t drained_by_drainer;
};

static void *add_known_amounts(struct test_thread *self)
{
	struct drain_run *run = self->shared;

	for (int i = 0; i < ADDS_PER_THREAD; i++) {
		tally_counter_add(&run->counter, 3);
		tally_counter_sub(&run->counter, 1);
	}
	atomic_fetch_sub(&run->writers_left, 1);
	return NULL;
}

static void *drain_while_writing(struct test_thread *self)
{
	struct drain_run *run = self->shared;
	int64_t delta;

	while (atomic_load(&run->writers_left) > 0) {
		if (tally_counter_drain(&run->counter, &delta) == TALLY_OK)
			run->drained_by_drainer += delta;
	}
	return NULL;
}

static void *writer_or_drainer(struct test_thread *self)
{
	return self->index == 0 ? drain_while_writing(self) : add_known_amounts(self);
}

/* slots < threads forces some writers onto the shared CAS slot. */
static void test_concurrent(unsigned slots, const char *label)
{
	static struct drain_run run;
	struct test_thread threads[THREADS + 1];
	int64_t total, last_delta;

	run.drained_by_drainer = 0;
	tally_counter_init(&run.counter, slots);
	atomic_store(&run.writers_left, THREADS);
	run_threads(THREADS + 1, writer_or_drainer, &run, threads);
	tally_counter_read(&run.counter, &total);
	tap_eq(total, (int64_t)THREADS * ADDS_PER_THREAD * 2, "%s: exact total", label);
	tally_counter_drain(&run.counter, &last_delta);
	tap_eq(run.drained_by_drainer + last_delta, total,
	       "%s: concurrent drains sum to the total, nothing lost or doubled", label);
	tally_counter_destroy(&run.counter);
}

int main(void)
{
	test_errors();
	test_single_thread();
	test_total_overflow();
	test_local_handles();
	test_shared_handle();
	test_concurrent(0, "own slots");
	test_concurrent(2, "2 slots for 9 threads");
	return tap_done();
}
