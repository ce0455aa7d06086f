/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/sweeper.c: the background sweep thread shared by the session table and the rate
 * limiter (lib/internal/sweeper.c): it sweeps every interval, start and stop report ESTATE
 * out of turn, stop and destroy join it (no sweep runs after), and racing starts and stops
 * from several threads leave it in a consistent state. Links libtally_internal.la.
 */
#include <stdatomic.h>
#include <time.h>
#include <tally/error.h>
#include "internal/sweeper.h"
#include "tap.h"
#include "threads.h"

static _Atomic int sweeps;

static void count_sweep(void *arg)
{
	(void)arg;
	atomic_fetch_add(&sweeps, 1);
}

static void sleep_ms(int ms)
{
	struct timespec pause = { 0, ms * 1000000L };

	nanosleep(&pause, NULL);
}

/* Waits (at most 5 s) until at least n sweeps ran. */
static int wait_for_sweeps(int n)
{
	for (int i = 0; i < 5000 && atomic_load(&sweeps) < n; i++)
		sleep_ms(1);
	return atomic_load(&sweeps) >= n;
}

static void test_lifecycle(void)
{
	struct tally__sweeper sweeper;
	int after_stop;

	tap_eq(tally__sweeper_init(&sweeper), TALLY_OK, "init");
	tap_ok(!tally__sweeper_running(&sweeper), "not running after init");
	tap_eq(tally__sweeper_stop(&sweeper), TALLY_ESTATE, "stop before start is ESTATE");
	tap_eq(tally__sweeper_start(&sweeper, 1000000, count_sweep, NULL), TALLY_OK, "start, 1 ms");
	tap_eq(tally__sweeper_start(&sweeper, 1000000, count_sweep, NULL), TALLY_ESTATE,
	       "a second start is ESTATE");
	tap_ok(tally__sweeper_running(&sweeper), "running");
	tap_ok(wait_for_sweeps(3), "it sweeps every interval (%d sweeps)", atomic_load(&sweeps));
	tap_eq(tally__sweeper_stop(&sweeper), TALLY_OK, "stop joins it");
	after_stop = atomic_load(&sweeps);
	sleep_ms(20);
	tap_eq(atomic_load(&sweeps), after_stop, "no sweep after stop returned");
	tap_eq(tally__sweeper_stop(&sweeper), TALLY_ESTATE, "a second stop is ESTATE");

	tap_eq(tally__sweeper_start(&sweeper, INT64_MAX, count_sweep, NULL), TALLY_OK,
	       "restart with an interval of 292 years");
	sleep_ms(20);
	tap_eq(atomic_load(&sweeps), after_stop, "which does not sweep");
	tally__sweeper_destroy(&sweeper); /* stops it: the stop wakes the waiter at once */
	tap_ok(1, "destroy of a running sweeper returned (it woke the waiter)");
}

static void *start_stop(struct test_thread *self)
{
	struct tally__sweeper *sweeper = self->shared;
	int ok = 0;

	for (int i = 0; i < 200; i++) {
		int err = i % 2 ? tally__sweeper_stop(sweeper)
				: tally__sweeper_start(sweeper, 100000, count_sweep, NULL);
		ok += err == TALLY_OK || err == TALLY_ESTATE;
	}
	return (void *)(intptr_t)ok;
}

static void test_racing_start_stop(void)
{
	struct tally__sweeper sweeper;
	struct test_thread threads[4];
	int answered = 0;

	tally__sweeper_init(&sweeper);
	run_threads(4, start_stop, &sweeper, threads);
	for (int i = 0; i < 4; i++)
		answered += (int)(intptr_t)threads[i].result;
	tap_eq(answered, 4 * 200, "racing starts and stops each return OK or ESTATE");
	if (tally__sweeper_running(&sweeper))
		tap_eq(tally__sweeper_stop(&sweeper), TALLY_OK, "the last one running stops");
	else
		tap_eq(tally__sweeper_stop(&sweeper), TALLY_ESTATE, "none left running");
	tally__sweeper_destroy(&sweeper);
}

int main(void)
{
	test_lifecycle();
	test_racing_start_stop();
	return tap_done();
}
