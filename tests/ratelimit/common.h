/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/ratelimit/common.h: the injectable clocks the rate limiter tests drive.
 * shared_clock: one atomic "now" every thread reads (held fixed or stepped by the test).
 * thread_clock: each thread sets its own reading before a call, so it knows exactly which
 * clock value its call used (and can model stale readers).
 */
#ifndef TALLY_TESTS_RATELIMIT_COMMON_H
#define TALLY_TESTS_RATELIMIT_COMMON_H
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <tally/ratelimit.h>
#include <tally/rcu.h>

static _Atomic int64_t shared_now;
static _Thread_local int64_t thread_now;

__attribute__((unused)) static int64_t shared_clock(void *unused)
{
	return atomic_load(&shared_now);
}

__attribute__((unused)) static int64_t thread_clock(void *unused)
{
	return thread_now;
}

__attribute__((unused))
static struct tally_ratelimit *make_limiter(enum tally_ratelimit_algorithm algorithm,
					    int64_t limit, int64_t period_ns, int64_t burst,
					    tally_ratelimit_now_ns_fn clock)
{
	struct tally_ratelimit_config config = {
		.algorithm = algorithm,
		.limit = limit,
		.period_ns = period_ns,
		.burst = burst,
		.now_ns = clock,
	};
	struct tally_ratelimit *limiter = NULL;

	if (tally_ratelimit_create(&limiter, &config) != TALLY_OK)
		return NULL;
	return limiter;
}

__attribute__((unused))
static int allow_str(struct tally_ratelimit *limiter, const char *key, int64_t cost,
		     struct tally_ratelimit_result *result)
{
	return tally_ratelimit_allow_result(limiter, key, strlen(key), cost, result);
}
#endif
