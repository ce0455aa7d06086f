/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Idle-key expiry for the rate limiter (see tally/ratelimit.h): the sweep call and the
 * optional background thread that runs it.
 *
 * Why a sweep cannot lose an admission: it kills an entry only by CAS from the exact word it
 * judged idle (fresh-equivalent for at least idle_ttl_ns) to RL_DEAD. An allow that charged
 * the entry first changed the word (a fixed-window count or a TAT only grows, so the word
 * never returns to a value seen before), and the sweep's CAS fails. An allow that comes after
 * sees RL_DEAD and starts a fresh entry, which decides exactly as the killed one would have,
 * since the killed one's state was fresh-equivalent.
 *
 * "Fresh-equivalent" is judged at the sweep's clock reading, and a caller may hold an older
 * one (it read the clock, then lost the CPU). Such a caller must not start a fresh entry at
 * its old time: a fresh window at its time would recount a window the killed entry had
 * charged, and a fresh TAT would forget the killed one's. So a sweep raises the limiter's
 * sweep_horizon to its reading before it kills anything (and kills with release), and every
 * allow, after it has found or inserted its entry, moves its reading up to the horizon: a time
 * that has already passed, at which the killed state was fresh. (After, not only before the
 * insert: see limiter.c, tally_ratelimit_allow_result.)
 */
#include "ratelimit/internal.h"

struct sweep_walk {
	struct tally_ratelimit *limiter;
	int64_t now;
	int64_t removed;
};

static bool idle(const struct rl_params *params, struct rl_entry *entry, uint64_t word,
		 int64_t now)
{
	if (params->algorithm == TALLY_RATELIMIT_GCRA)
		return tally__ratelimit_gcra_idle(params, word, now);
	/* After the acquire load of the word (see limiter.c, charge_entry). */
	return tally__ratelimit_window_idle(params, word, rl_entry_newest(params, entry, word),
					    now);
}

static int sweep_entry(struct tally_rcu_map_node *node, void *arg)
{
	struct sweep_walk *walk = arg;
	struct rl_entry *entry = caa_container_of(node, struct rl_entry, node);
	/* acquire: the fixed window's newest_window is read after it (limiter.c). */
	uint64_t word = atomic_load_explicit(&entry->word, memory_order_acquire);

	if (word != RL_DEAD) {
		/* release: publishes the sweep_horizon raised before the walk to the allow
		 * that finds the dead mark (its acquire reload in limiter.c, charge_entry). */
		if (!idle(&walk->limiter->params, entry, word, walk->now) ||
		    !atomic_compare_exchange_strong_explicit(&entry->word, &word, RL_DEAD,
							     memory_order_release,
							     memory_order_relaxed))
			return 0; /* busy, or charged since we looked */
	}
	/* No memory for its retire record (-1): the dead entry waits for the next sweep. */
	walk->removed += tally__ratelimit_unlink_dead(walk->limiter, entry) > 0;
	return 0;
}

static void raise_horizon(struct tally_ratelimit *limiter, int64_t now)
{
	/* acq_rel: keeps the horizon's modification order coherent with the readers' acquire
	 * loads; the edge to them is the release kill below. */
	int64_t seen = atomic_load_explicit(&limiter->sweep_horizon, memory_order_acquire);

	while (seen < now &&
	       !atomic_compare_exchange_weak_explicit(&limiter->sweep_horizon, &seen, now,
						      memory_order_acq_rel, memory_order_acquire))
		;
}

int tally_ratelimit_sweep(struct tally_ratelimit *limiter, int64_t *removed)
{
	struct sweep_walk walk = { .limiter = limiter };

	if (!limiter)
		return TALLY_EINVAL;
	walk.now = tally__ratelimit_now(limiter);
	if (walk.now < 0 || walk.now >= RL_CLOCK_MAX)
		return TALLY_EOVERFLOW;
	raise_horizon(limiter, walk.now);
	tally_rcu_read_lock();
	tally__rcu_map_visit(&limiter->map, sweep_entry, &walk);
	tally_rcu_read_unlock();
	if (removed)
		*removed = walk.removed;
	return TALLY_OK;
}

static void sweep_in_background(void *limiter)
{
	tally_ratelimit_sweep(limiter, NULL);
}

int tally__ratelimit_sweeper_start(struct tally_ratelimit *limiter)
{
	int err = tally__sweeper_init(&limiter->sweeper);

	if (err != TALLY_OK)
		return err;
	err = tally__sweeper_start(&limiter->sweeper, limiter->sweep_interval_ns,
				   sweep_in_background, limiter);
	if (err != TALLY_OK)
		tally__sweeper_destroy(&limiter->sweeper);
	return err;
}

void tally__ratelimit_sweeper_stop(struct tally_ratelimit *limiter)
{
	if (limiter->sweep_interval_ns > 0)
		tally__sweeper_destroy(&limiter->sweeper);
}
