/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * examples/ratelimit.c: an HTTP-style front door. Each client address gets 5 requests per
 * second with bursts of 5 (GCRA); refused requests get a 429 with Retry-After and RateLimit-*
 * headers. A background thread expires idle clients every second; at most 100000 clients are
 * tracked (a new client past that is let through: fail open).
 *
 *   cc examples/ratelimit.c $(pkg-config --cflags --libs tally)
 */
#include <stdio.h>
#include <string.h>
#include <tally/ratelimit.h>
#include <tally/rcu.h>

static void handle(struct tally_ratelimit *limiter, const char *client)
{
	struct tally_ratelimit_result quota;
	int err = tally_ratelimit_allow_result(limiter, client, strlen(client), 1, &quota);

	switch (err) {
	case TALLY_OK:
		printf("%-12s 200  RateLimit-Limit: %lld  RateLimit-Remaining: %lld\n", client,
		       (long long)quota.limit, (long long)quota.remaining);
		break;
	case TALLY_ELIMITED:
		/* Retry-After is whole seconds: round up. */
		printf("%-12s 429  Retry-After: %lld\n", client,
		       (long long)((quota.retry_after_ns + 999999999) / 1000000000));
		break;
	case TALLY_EFULL:
		printf("%-12s 200  (not tracked: limiter full, failing open)\n", client);
		break;
	default:
		printf("%-12s 400  %s\n", client, tally_strerror(err));
	}
}

int main(void)
{
	struct tally_ratelimit_config config = {
		.algorithm = TALLY_RATELIMIT_GCRA,
		.limit = 5,
		.period_ns = 1000000000,
		.burst = 5,
		.max_keys = 100000,
		.idle_ttl_ns = 60 * (int64_t)1000000000,
		.sweep_interval_ns = 1000000000,
	};
	struct tally_ratelimit *limiter;
	int err = tally_ratelimit_create(&limiter, &config);

	if (err != TALLY_OK) {
		fprintf(stderr, "create: %s\n", tally_strerror(err));
		return 1;
	}
	for (int i = 0; i < 7; i++)
		handle(limiter, "203.0.113.7");
	handle(limiter, "198.51.100.2");
	handle(limiter, "");
	tally_ratelimit_destroy(limiter);
	tally_rcu_barrier();
	return 0;
}
