/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/ratelimit/create_race.c: a key's creator that is preempted between its missed lookup
 * and its insert, while another caller creates the key, fills it and a sweep kills it at a
 * newer reading, must not charge its stale reading to the new entry (that recounts the killed
 * entry's full window, or restarts its GCRA TAT lower).
 *
 * The pause is deterministic: libtally allocates the entry between the lookup and the insert,
 * and this program sets the allocator's test hook (lib/internal/test_hooks.h), which parks
 * the armed thread there until the main thread has run the other caller and the sweep. The
 * hook is built into every build, so the race also runs under TSan and ASan. Links
 * libtally_internal.la (the hook is not exported from libtally.so).
 */
#include <pthread.h>
#include <stdio.h>
#include "internal/test_hooks.h"
#include "common.h"
#include "../tap.h"

enum { IDLE, ARMED, PAUSED, RESUMED, DONE };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int state;
static _Thread_local int armed;

static void set_state(int next)
{
	pthread_mutex_lock(&lock);
	state = next;
	pthread_cond_broadcast(&changed);
	pthread_mutex_unlock(&lock);
}

static void wait_state(int a, int b)
{
	pthread_mutex_lock(&lock);
	while (state != a && state != b)
		pthread_cond_wait(&changed, &lock);
	pthread_mutex_unlock(&lock);
}

/* The allocator's test hook: parks the armed thread (only it) at its allocation. */
static void park_if_armed(void)
{
	if (armed) {
		armed = 0;
		set_state(PAUSED);
		wait_state(RESUMED, RESUMED);
	}
}

struct stale_caller {
	struct tally_ratelimit *rl;
	int64_t reading;
	int err;
	struct tally_ratelimit_result res;
};

static void *stale_main(void *arg)
{
	struct stale_caller *caller = arg;

	thread_now = caller->reading;
	armed = 1;
	caller->err = allow_str(caller->rl, "k", 1, &caller->res);
	armed = 0;
	set_state(DONE);
	return NULL;
}

/* Starts the stale caller and returns once it is parked before its insert (1), or finished
 * without reaching the allocation (0: the race cannot be staged, a failure). */
static int start_stale(struct stale_caller *caller, pthread_t *thread)
{
	set_state(ARMED);
	pthread_create(thread, NULL, stale_main, caller);
	wait_state(PAUSED, DONE);
	pthread_mutex_lock(&lock);
	int paused = state == PAUSED;
	pthread_mutex_unlock(&lock);
	return paused;
}

static void finish_stale(pthread_t thread)
{
	set_state(RESUMED);
	pthread_join(thread, NULL);
}

static struct tally_ratelimit *make(enum tally_ratelimit_algorithm algorithm, int64_t limit,
				    int64_t burst)
{
	/* TTL 0, no background sweeper: the test runs every sweep itself. */
	return make_limiter(algorithm, limit, 1000, burst, thread_clock);
}

static void test_window(void)
{
	struct tally_ratelimit *rl = make(TALLY_RATELIMIT_FIXED_WINDOW, 4, 0);
	struct stale_caller caller = { .rl = rl, .reading = 500 };
	int64_t removed = 0;
	int admitted = 0;
	pthread_t thread;

	if (!tap_ok(start_stale(&caller, &thread), "window: the creator parks at its allocation")) {
		pthread_join(thread, NULL);
		tally_ratelimit_destroy(rl);
		return;
	}
	thread_now = 100;
	tap_eq(allow_str(rl, "k", 4, NULL), TALLY_OK, "another caller fills window 0");
	thread_now = 1000;
	tally_ratelimit_sweep(rl, &removed);
	tap_eq(removed, 1, "a sweep at 1000 kills and unlinks the full window-0 entry");
	finish_stale(thread);
	tap_eq(caller.err, TALLY_OK, "the parked creator (reading 500) is admitted...");
	tap_eq(caller.res.reset_ns, 1500, "...in window 1, not again in the full window 0");
	thread_now = 1500;
	for (int i = 0; i < 5; i++)
		admitted += allow_str(rl, "k", 1, NULL) == TALLY_OK;
	tap_eq(admitted, 3, "window 1 holds the creator's unit: 3 more fit");
	tally_ratelimit_destroy(rl);
}

static void test_gcra(void)
{
	/* T = 100 ns, burst 4. */
	struct tally_ratelimit *rl = make(TALLY_RATELIMIT_GCRA, 10, 4);
	struct stale_caller caller = { .rl = rl, .reading = 100 };
	int64_t removed = 0;
	int admitted = 0;
	pthread_t thread;

	if (!tap_ok(start_stale(&caller, &thread), "gcra: the creator parks at its allocation")) {
		pthread_join(thread, NULL);
		tally_ratelimit_destroy(rl);
		return;
	}
	thread_now = 100;
	tap_eq(allow_str(rl, "k", 4, NULL), TALLY_OK, "another caller takes the burst: TAT 500");
	thread_now = 500;
	tally_ratelimit_sweep(rl, &removed);
	tap_eq(removed, 1, "a sweep at 500 kills and unlinks the caught-up entry");
	finish_stale(thread);
	tap_eq(caller.err, TALLY_OK, "the parked creator (reading 100) is admitted...");
	tap_eq(caller.res.reset_ns, 500, "...at the horizon 500 (TAT 600), not at 100");
	for (int i = 0; i < 5; i++)
		admitted += allow_str(rl, "k", 1, NULL) == TALLY_OK;
	/* Readings span [100, 500]: at most burst + 400 / T = 8 units, 5 already. */
	tap_eq(admitted, 3, "at 500 only 3 more: the killed entry's TAT is not forgotten");
	tally_ratelimit_destroy(rl);
}

int main(void)
{
	atomic_store(&tally__test_hook_alloc, park_if_armed);
	test_window();
	test_gcra();
	tally_rcu_barrier();
	return tap_done();
}
