/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Fixed window (see tally/ratelimit.h): at most `limit` units per key per window.
 *
 * The key word packs (window index, count): index << count_bits | count, with count_bits the
 * bit width of limit + 1 (so a count never fills its field and no word equals RL_DEAD) and the
 * index truncated to the remaining 64 - count_bits >= 32 bits. Because index and count are one
 * word, moving to a new window (count restarts) and charging in the current one are the same
 * CAS: two callers cannot both "reset" a window, and no charge lands in a window it was not
 * checked against.
 *
 * Invariant: for every window, the counts installed for it only grow, by admitted costs, and
 * never exceed `limit`. A caller whose clock reading is stale (it read the clock, then lost the
 * CPU while another caller moved the key to a later window) finds the stored window ahead of
 * its own and is charged against the stored window, never resets it; "ahead" is told from
 * "long idle" by the modular distance (ahead by less than half the index range).
 */
#include "ratelimit/internal.h"

static unsigned bit_width(uint64_t value)
{
	return value ? 64u - (unsigned)__builtin_clzll(value) : 0u;
}

int tally__ratelimit_window_configure(struct rl_params *params,
				      const struct tally_ratelimit_config *config)
{
	if (config->limit <= 0 || config->limit > TALLY_RATELIMIT_WINDOW_LIMIT_MAX ||
	    config->period_ns <= 0 || config->period_ns >= RL_CLOCK_MAX ||
	    (config->burst != 0 && config->burst != config->limit))
		return TALLY_EINVAL;
	params->burst = config->limit;
	params->count_bits = bit_width((uint64_t)config->limit + 1);
	return TALLY_OK;
}

static uint64_t index_mask(const struct rl_params *params)
{
	return (UINT64_C(1) << (64 - params->count_bits)) - 1;
}

uint64_t tally__ratelimit_window_fresh(const struct rl_params *params, int64_t now)
{
	uint64_t now_index = (uint64_t)now / (uint64_t)params->period_ns;

	return (now_index & index_mask(params)) << params->count_bits;
}

bool tally__ratelimit_window_step(const struct rl_params *params, uint64_t word, int64_t now,
				  int64_t cost, uint64_t *next,
				  struct tally_ratelimit_result *result)
{
	const uint64_t period = (uint64_t)params->period_ns, mask = index_mask(params);
	const uint64_t now_index = (uint64_t)now / period;
	const uint64_t count = word & ((UINT64_C(1) << params->count_bits) - 1);
	const uint64_t behind = (now_index - (word >> params->count_bits)) & mask;
	uint64_t window = now_index, used = 0;

	if (behind == 0) {
		used = count;
	} else if (behind > mask / 2) {
		/* Stored window ahead of this reading: charge it there (unless the distance is
		 * impossible for a stale reading, i.e. its end would not fit a clock value). */
		uint64_t ahead = mask + 1 - behind;
		if (ahead < ((uint64_t)RL_CLOCK_MAX - (uint64_t)now) / period) {
			window = now_index + ahead;
			used = count;
		}
	}
	const int64_t window_end = (int64_t)((window + 1) * period);
	result->limit = params->limit;
	if ((int64_t)used + cost > params->limit) {
		result->remaining = params->limit - (int64_t)used;
		result->reset_ns = window_end - now;
		result->retry_after_ns = window_end - now;
		return false;
	}
	used += (uint64_t)cost;
	*next = ((window & mask) << params->count_bits) | used;
	result->remaining = params->limit - (int64_t)used;
	result->reset_ns = used ? window_end - now : 0;
	result->retry_after_ns = 0;
	return true;
}

bool tally__ratelimit_window_idle(const struct rl_params *params, uint64_t word, int64_t now)
{
	const uint64_t period = (uint64_t)params->period_ns, mask = index_mask(params);
	const uint64_t now_index = (uint64_t)now / period;
	const uint64_t behind = (now_index - (word >> params->count_bits)) & mask;

	if (behind == 0 || behind > mask / 2)
		return false; /* current window, or ahead of this reading */
	if (behind > now_index)
		return true;  /* an index from before the clock's zero: a wrapped, ancient state */
	const int64_t window_end = (int64_t)((now_index - behind + 1) * period);
	return now - window_end >= params->idle_ttl_ns;
}
