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
 * its own and is charged against the stored window, never resets it.
 *
 * The word's index is truncated (it wraps after 2^(64 - count_bits) windows, 2^32 for the
 * largest limit), so alone it cannot tell "ahead of this reading" from "idle for a wrap or
 * more". The entry's newest_window holds the highest full index installed: every installer
 * raises it (a max) before its CAS on the word, and that CAS is a release that a reader's
 * acquire load of the word pairs with, so a reader that sees a word also sees a newest at
 * or above the word's full index. The word's full index is then the largest index <= newest
 * agreeing with its truncated one: never below the true index, so a current window is never
 * taken for an old one (which would recount it). It can only be above it if an installer
 * raised newest a whole wrap or more past the word and has not yet swapped the word (or
 * failed to), and then a reader charges against the later window: conservative. So a new
 * window always starts at 0, whatever the idle time, and a stale reading any distance behind
 * is charged to the stored window.
 */
#include "ratelimit/internal.h"

static uint64_t index_mask(const struct rl_params *params)
{
	return (UINT64_C(1) << (64 - params->count_bits)) - 1;
}

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
	/* newest_window only if some reading's index does not fit the word's index field
	 * (large limits with short periods): most rules never wrap, and save its 8 bytes. */
	params->newest_words =
		rl_window_index(params, RL_CLOCK_MAX - 1) > index_mask(params) ? 1 : 0;
	return TALLY_OK;
}

uint64_t rl_window_index(const struct rl_params *params, int64_t now)
{
	return (uint64_t)now / (uint64_t)params->period_ns;
}

uint64_t tally__ratelimit_window_fresh(const struct rl_params *params, int64_t now)
{
	return (rl_window_index(params, now) & index_mask(params)) << params->count_bits;
}

/* The full index of the window stored in `word`: the largest index <= newest that agrees
 * with the word's truncated index (newest is never below it: see the top of the file). */
static uint64_t stored_window(const struct rl_params *params, uint64_t word, uint64_t newest)
{
	return newest - ((newest - (word >> params->count_bits)) & index_mask(params));
}

bool tally__ratelimit_window_step(const struct rl_params *params, uint64_t word,
				  uint64_t *newest, int64_t now, int64_t cost, uint64_t *next,
				  struct tally_ratelimit_result *result)
{
	const uint64_t period = (uint64_t)params->period_ns, now_index = rl_window_index(params, now);
	const uint64_t count = word & ((UINT64_C(1) << params->count_bits) - 1);
	const uint64_t stored = stored_window(params, word, *newest);
	/* The stored window, if it is this reading's or ahead of it (a stale reading is
	 * charged there); else a new window, counted from 0, however long the key was idle. */
	const uint64_t window = stored >= now_index ? stored : now_index;
	uint64_t used = stored >= now_index ? count : 0;
	/* Fits: stored <= newest, an index of a reading below RL_CLOCK_MAX (2^62), and the
	 * period is below 2^62 too. */
	const int64_t window_end = (int64_t)((window + 1) * period);

	result->limit = params->limit;
	if ((int64_t)used + cost > params->limit) {
		result->remaining = params->limit - (int64_t)used;
		result->reset_ns = window_end - now;
		result->retry_after_ns = window_end - now;
		return false;
	}
	used += (uint64_t)cost;
	*next = ((window & index_mask(params)) << params->count_bits) | used;
	if (window > *newest)
		*newest = window;
	result->remaining = params->limit - (int64_t)used;
	result->reset_ns = used ? window_end - now : 0;
	result->retry_after_ns = 0;
	return true;
}

bool tally__ratelimit_window_idle(const struct rl_params *params, uint64_t word, uint64_t newest,
		    int64_t now)
{
	const uint64_t stored = stored_window(params, word, newest);

	if (stored >= rl_window_index(params, now))
		return false; /* current window, or ahead of this reading */
	return now - (int64_t)((stored + 1) * (uint64_t)params->period_ns) >= params->idle_ttl_ns;
}
