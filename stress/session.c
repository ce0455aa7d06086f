/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/session.c: joins, duplicate and concurrent disconnects, speaker disconnects, session
 * delete/re-create and TTL sweeps on a moving injected clock, with readers walking the lists,
 * in rounds. After each round (a quiescent point) it checks:
 * - every session's listener count == its listener connections;
 * - connections present == successful creates - successful removals (exactly-once removal);
 * - no connection survives its session's speaker disconnect (an inactive session has none);
 * and during the rounds that every connection a reader meets belongs to the session it walks.
 * Every choice comes from the run's seed (one stream per thread and round).
 */
#include <stdio.h>
#include <string.h>
#include <tally/rcu.h>
#include <tally/session.h>
#include "stress.h"
#include "../tests/threads.h"

#define SESSIONS 8
#define CONNECTION_IDS 256
#define ROUND_OPS 20000

static _Atomic int64_t clock_ms = 1000;

static int64_t stress_clock(void *arg)
{
	return atomic_load_explicit(&clock_ms, memory_order_relaxed);
}

struct shared {
	struct stress_run *stress;
	int64_t round;
	struct tally_session_table *table;
	_Atomic int64_t created, removed, ops, foreign_seen, notified;
};

static void session_name(char *out, unsigned pick)
{
	snprintf(out, 16, "s%u", pick % SESSIONS);
}

static int ensure_session(struct tally_session_table *table, const char *id)
{
	struct tally_session_params params = { id, "spk", "user", "en", "standard", 50 };

	return tally_session_create(table, &params);
}

struct walk_check {
	const char *session;
	int64_t foreign;
};

static int check_member(const struct tally_connection_info *c, void *arg)
{
	struct walk_check *check = arg;

	if (strcmp(c->session_id, check->session) != 0 ||
	    (c->role != TALLY_ROLE_LISTENER && c->role != TALLY_ROLE_SPEAKER))
		check->foreign++;
	return 0;
}

static int count_notify(const struct tally_connection_info *c, void *arg)
{
	(*(int64_t *)arg)++;
	return (c->connection_id[1] & 1); /* some "gone" clients */
}

static void one_op(struct shared *shared, struct stress_rng *rng)
{
	unsigned pick = (unsigned)stress_rng_next(rng);
	unsigned op = pick % 100;
	char session[16], connection[16];

	session_name(session, pick >> 8);
	snprintf(connection, sizeof(connection), "c%u", (pick >> 12) % CONNECTION_IDS);
	if (op < 40) {
		struct tally_connection_params params = { connection, session,
			(pick & 0x10000) ? "fr" : "de", (pick & 0x20000) ? TALLY_ROLE_SPEAKER
								     : TALLY_ROLE_LISTENER,
			"203.0.113.9", (pick & 0x40000) ? 3 : 0 };
		if (tally_connection_create(shared->table, &params) == TALLY_OK)
			atomic_fetch_add(&shared->created, 1);
	} else if (op < 75) {
		if (tally_session_leave(shared->table, connection) == TALLY_OK)
			atomic_fetch_add(&shared->removed, 1);
	} else if (op < 88) {
		struct walk_check check = { session, 0 };

		tally_session_visit_connections(shared->table, session, NULL, check_member, &check,
						NULL);
		atomic_fetch_add(&shared->foreign_seen, check.foreign);
	} else if (op < 91) {
		struct tally_speaker_disconnect_result result;
		int64_t notified = 0;

		if (tally_session_speaker_disconnect(shared->table, session, count_notify,
						     &notified, &result) == TALLY_OK)
			atomic_fetch_add(&shared->removed, result.connections_deleted);
		atomic_fetch_add(&shared->notified, notified);
	} else if (op < 94) {
		int64_t deleted = 0;

		if (tally_session_delete(shared->table, session, &deleted) == TALLY_OK)
			atomic_fetch_add(&shared->removed, deleted);
	} else if (op < 97) {
		struct tally_session_sweep_result result;

		atomic_fetch_add(&clock_ms, 1);
		tally_session_table_sweep(shared->table, &result);
		atomic_fetch_add(&shared->removed, result.connections_deleted);
	} else {
		ensure_session(shared->table, session);
	}
}

static void *worker(struct test_thread *self)
{
	struct shared *shared = self->shared;
	struct stress_rng rng;
	struct stress_pacer pacer;

	stress_rng_init(&rng, shared->stress->opt.seed,
			(uint64_t)shared->round * STRESS_THREADS_MAX + (uint64_t)self->index);
	stress_pacer_init(&pacer, shared->stress, shared->stress->opt.threads);
	int64_t batch = stress_pace_batch(&pacer, 1000);
	/* half the threads free their own removals (inline reclamation), half use call_rcu */
	tally_rcu_thread_set_reclaim((self->index & 1) ? TALLY_RCU_RECLAIM_INLINE
						       : TALLY_RCU_RECLAIM_DEFERRED);
	for (int done = 0; done < ROUND_OPS; done += (int)batch) {
		for (int64_t i = 0; i < batch; i++)
			one_op(shared, &rng);
		stress_ops(shared->stress, batch);
		stress_pace(&pacer, batch);
	}
	atomic_fetch_add(&shared->ops, ROUND_OPS);
	return NULL;
}

/* At a quiescent point (no worker running): the counts against the lists. */
static void check_quiescent(struct shared *shared)
{
	const struct tally_connection_filter listeners = { TALLY_ROLE_LISTENER, NULL };
	struct stress_run *stress = shared->stress;
	int64_t connections = 0, linked = 0;
	char session[16];

	for (unsigned i = 0; i < SESSIONS; i++) {
		struct tally_session_info info;
		size_t present = 0, all = 0;
		int64_t count = -1;

		session_name(session, i);
		if (tally_session_get(shared->table, session, &info) != TALLY_OK)
			continue;
		tally_session_count_connections(shared->table, session, &listeners, &present);
		tally_session_count_connections(shared->table, session, NULL, &all);
		tally_session_listener_count(shared->table, session, &count);
		stress_check(stress, count == (int64_t)present, "round %lld: session %s counts "
			     "%lld listeners, has %zu listener connections", (long long)shared->round,
			     session, (long long)count, present);
		stress_check(stress, info.active || all == 0, "round %lld: session %s is inactive "
			     "(speaker gone) but %zu connections survive", (long long)shared->round,
			     session, all);
		linked += (int64_t)all;
	}
	tally_session_table_counts(shared->table, NULL, &connections);
	int64_t expected = atomic_load(&shared->created) - atomic_load(&shared->removed);
	stress_check(stress, connections == expected, "round %lld: %lld connections, created - "
		     "removed = %lld", (long long)shared->round, (long long)connections,
		     (long long)expected);
	stress_check(stress, connections == linked, "round %lld: table counts %lld connections, "
		     "sessions link %lld", (long long)shared->round, (long long)connections,
		     (long long)linked);
	int64_t foreign = atomic_exchange(&shared->foreign_seen, 0);
	stress_check(stress, foreign == 0, "round %lld: readers met %lld connections of another "
		     "session", (long long)shared->round, (long long)foreign);
}

int main(int argc, char **argv)
{
	static struct stress_run stress;
	struct tally_session_config config = { .now_ms = stress_clock };
	struct shared shared = { .stress = &stress };
	struct test_thread *threads;
	char session[16];

	stress_init(&stress, "session", argc, argv, NULL);
	threads = calloc((size_t)stress.opt.threads, sizeof(*threads));
	if (!threads || tally_session_table_create(&shared.table, &config) != TALLY_OK) {
		stress_violation(&stress, "setup failed");
		return stress_finish(&stress);
	}
	for (unsigned i = 0; i < SESSIONS; i++) {
		session_name(session, i);
		ensure_session(shared.table, session);
	}
	do {
		run_threads(stress.opt.threads, worker, &shared, threads);
		check_quiescent(&shared);
		shared.round++;
		stress_progress(&stress);
	} while (stress_running(&stress));
	stress_field_int(&stress, "rounds", shared.round);
	stress_field_int(&stress, "created", atomic_load(&shared.created));
	stress_field_int(&stress, "removed", atomic_load(&shared.removed));
	stress_field_int(&stress, "notified", atomic_load(&shared.notified));
	stress_check(&stress, tally_session_table_destroy(shared.table) == TALLY_OK,
		     "table destroy failed");
	tally_rcu_barrier();
	free(threads);
	return stress_finish(&stress);
}
