/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * GCRA, the generic cell rate algorithm (see tally/ratelimit.h), as a single word per key:
 * the theoretical arrival time TAT (ns on the limiter's clock). A unit costs T ns of TAT; a
 * request of `cost` units at `now` is admitted iff max(TAT, now) + cost * T - now <= tau,
 * where tau = burst * T, and then TAT becomes max(TAT, now) + cost * T.
 *
 * Invariant: TAT only grows, by cost * T per admission, and never exceeds the admitting
 * caller's clock reading plus tau. So over any span [t0, t1] of clock readings the admitted
 * units number at most burst + (t1 - t0) / T, however the CASes interleave: the first
 * admission in the span leaves TAT >= t0 + its cost * T, each later one adds its cost * T,
 * and the last leaves TAT <= t1 + tau. A stale clock reading only makes a caller stricter
 * (max(TAT, now) is taken against the newer TAT).
 */
#include "ratelimit/internal.h"

int tally__ratelimit_gcra_configure(struct rl_params *params,
				    const struct tally_ratelimit_config *config)
{
	int64_t burst = config->burst ? config->burst : config->limit;

	if (config->limit <= 0 || config->period_ns <= 0 || config->period_ns >= RL_CLOCK_MAX ||
	    burst <= 0)
		return TALLY_EINVAL;
	/* T = ceil(period / limit): rounding up keeps the rate at or below limit/period. */
	params->interval_ns = config->period_ns / config->limit +
			      (config->period_ns % config->limit != 0);
	if (burst > (RL_CLOCK_MAX - 1) / params->interval_ns)
		return TALLY_EINVAL;
	params->burst = burst;
	params->tolerance_ns = burst * params->interval_ns;
	return TALLY_OK;
}

uint64_t tally__ratelimit_gcra_fresh(const struct rl_params *params, int64_t now)
{
	return 0; /* a TAT in the past: the full burst is available */
}

bool tally__ratelimit_gcra_step(const struct rl_params *params, uint64_t word, int64_t now,
				int64_t cost, uint64_t *next,
				struct tally_ratelimit_result *result)
{
	const int64_t interval = params->interval_ns, tolerance = params->tolerance_ns;
	/* TAT <= (a past reading) + tau < 2^63; base + cost * T <= base + tau < 2^63. */
	const int64_t base = (int64_t)word > now ? (int64_t)word : now;
	const int64_t ahead = base - now; /* <= tau */

	result->limit = params->burst;
	if (ahead + cost * interval > tolerance) {
		result->remaining = (tolerance - ahead) / interval;
		result->reset_ns = ahead;
		result->retry_after_ns = ahead + cost * interval - tolerance;
		return false;
	}
	*next = (uint64_t)(base + cost * interval);
	result->remaining = (tolerance - ahead - cost * interval) / interval;
	result->reset_ns = ahead + cost * interval;
	result->retry_after_ns = 0;
	return true;
}

bool tally__ratelimit_gcra_idle(const struct rl_params *params, uint64_t word, int64_t now)
{
	return (int64_t)word <= now && now - (int64_t)word >= params->idle_ttl_ns;
}
