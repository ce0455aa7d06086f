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
#include <errno.h>
#include <time.h>
#include "ratelimit/internal.h"

struct sweep_walk {
	struct tally_ratelimit *limiter;
	int64_t now;
	int64_t removed;
};

static bool idle(const struct rl_params *params, uint64_t word, int64_t now)
{
	if (params->algorithm == TALLY_RATELIMIT_GCRA)
		return tally__ratelimit_gcra_idle(params, word, now);
	return tally__ratelimit_window_idle(params, word, now);
}

static int sweep_entry(struct tally_rcu_map_node *node, void *arg)
{
	struct sweep_walk *walk = arg;
	struct rl_entry *entry = caa_container_of(node, struct rl_entry, node);
	/* relaxed: the word carries no other data (see limiter.c, charge_entry). */
	uint64_t word = atomic_load_explicit(&entry->word, memory_order_relaxed);

	if (word != RL_DEAD) {
		/* release: publishes the sweep_horizon raised before the walk to the allow
		 * that finds the dead mark (its acquire reload in limiter.c, charge_entry). */
		if (!idle(&walk->limiter->params, word, walk->now) ||
		    !atomic_compare_exchange_strong_explicit(&entry->word, &word, RL_DEAD,
							     memory_order_release,
							     memory_order_relaxed))
			return 0; /* busy, or charged since we looked */
	}
	walk->removed += tally__ratelimit_unlink_dead(walk->limiter, entry);
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

static struct timespec deadline_after(int64_t ns)
{
	struct timespec at;

	clock_gettime(CLOCK_MONOTONIC, &at);
	at.tv_sec += (time_t)(ns / 1000000000);
	at.tv_nsec += (long)(ns % 1000000000);
	if (at.tv_nsec >= 1000000000) {
		at.tv_sec++;
		at.tv_nsec -= 1000000000;
	}
	return at;
}

static void *sweeper_main(void *arg)
{
	struct tally_ratelimit *limiter = arg;

	pthread_mutex_lock(&limiter->sweeper_lock);
	while (!limiter->sweeper_stop) {
		struct timespec at = deadline_after(limiter->sweep_interval_ns);
		int wait = 0;
		while (!limiter->sweeper_stop && wait != ETIMEDOUT)
			wait = pthread_cond_timedwait(&limiter->sweeper_wake,
						      &limiter->sweeper_lock, &at);
		if (limiter->sweeper_stop)
			break;
		pthread_mutex_unlock(&limiter->sweeper_lock);
		tally_ratelimit_sweep(limiter, NULL);
		pthread_mutex_lock(&limiter->sweeper_lock);
	}
	pthread_mutex_unlock(&limiter->sweeper_lock);
	/* The RCU registration this thread picked up is dropped at thread exit (tally/rcu.h). */
	return NULL;
}

int tally__ratelimit_sweeper_start(struct tally_ratelimit *limiter)
{
	pthread_condattr_t attr;

	if (pthread_condattr_init(&attr))
		return TALLY_ENOMEM;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (pthread_cond_init(&limiter->sweeper_wake, &attr)) {
		pthread_condattr_destroy(&attr);
		return TALLY_ENOMEM;
	}
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&limiter->sweeper_lock, NULL);
	limiter->sweeper_stop = false;
	if (pthread_create(&limiter->sweeper, NULL, sweeper_main, limiter)) {
		pthread_cond_destroy(&limiter->sweeper_wake);
		pthread_mutex_destroy(&limiter->sweeper_lock);
		return TALLY_ETHREAD;
	}
	limiter->sweeper_running = true;
	return TALLY_OK;
}

void tally__ratelimit_sweeper_stop(struct tally_ratelimit *limiter)
{
	if (!limiter->sweeper_running)
		return;
	pthread_mutex_lock(&limiter->sweeper_lock);
	limiter->sweeper_stop = true;
	pthread_cond_signal(&limiter->sweeper_wake);
	pthread_mutex_unlock(&limiter->sweeper_lock);
	pthread_join(limiter->sweeper, NULL);
	pthread_cond_destroy(&limiter->sweeper_wake);
	pthread_mutex_destroy(&limiter->sweeper_lock);
	limiter->sweeper_running = false;
}
