/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/session.c: joins, duplicate and concurrent disconnects, speaker disconnects, session
 * delete/re-create and TTL sweeps on a moving injected clock, with readers walking the lists,
 * in rounds. After each round (a quiescent point) it checks:
 * - every session's listener count == its listener connections;
 * - connections present == successful creates - successful removals (exactly-once removal);
 * and during the rounds that every connection a reader meets belongs to the session it walks.
 * Usage: stress/session [seconds] [threads]
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

static void one_op(struct shared *shared, unsigned *seed)
{
	unsigned pick = test_random(seed);
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
	unsigned seed = 0x9e3779b9u * (unsigned)(self->index + 1) ^
			(unsigned)atomic_load(&shared->ops);

	/* half the threads free their own removals (inline reclamation), half use call_rcu */
	tally_rcu_thread_set_reclaim((self->index & 1) ? TALLY_RCU_RECLAIM_INLINE
						       : TALLY_RCU_RECLAIM_DEFERRED);
	for (int i = 0; i < ROUND_OPS; i++)
		one_op(shared, &seed);
	atomic_fetch_add(&shared->ops, ROUND_OPS);
	return NULL;
}

static int64_t check_quiescent(struct shared *shared)
{
	const struct tally_connection_filter listeners = { TALLY_ROLE_LISTENER, NULL };
	int64_t violations = 0, connections = 0, linked = 0;
	char session[16];

	for (unsigned i = 0; i < SESSIONS; i++) {
		size_t present = 0, all = 0;
		int64_t count = -1;

		session_name(session, i);
		if (tally_session_count_connections(shared->table, session, &listeners, &present) !=
		    TALLY_OK)
			continue;
		tally_session_count_connections(shared->table, session, NULL, &all);
		tally_session_listener_count(shared->table, session, &count);
		if (count != (int64_t)present)
			violations++;
		linked += (int64_t)all;
	}
	tally_session_table_counts(shared->table, NULL, &connections);
	if (connections != atomic_load(&shared->created) - atomic_load(&shared->removed))
		violations++;
	if (connections != linked)
		violations++;
	return violations;
}

int main(int argc, char **argv)
{
	struct stress_args args = stress_parse(argc, argv);
	struct tally_session_config config = { .now_ms = stress_clock };
	struct shared shared = { 0 };
	struct test_thread *threads = calloc((size_t)args.threads, sizeof(*threads));
	double end = stress_now() + args.seconds;
	int64_t violations = 0, rounds = 0;
	char session[16];

	if (!threads || tally_session_table_create(&shared.table, &config) != TALLY_OK) {
		printf("session: setup failed violations=1\n");
		return 1;
	}
	for (unsigned i = 0; i < SESSIONS; i++) {
		session_name(session, i);
		ensure_session(shared.table, session);
	}
	do {
		run_threads(args.threads, worker, &shared, threads);
		violations += check_quiescent(&shared);
		rounds++;
	} while (stress_now() < end);
	violations += atomic_load(&shared.foreign_seen);
	printf("session: threads=%d rounds=%lld ops=%lld created=%lld removed=%lld "
	       "notified=%lld violations=%lld\n", args.threads, (long long)rounds,
	       (long long)atomic_load(&shared.ops), (long long)atomic_load(&shared.created),
	       (long long)atomic_load(&shared.removed), (long long)atomic_load(&shared.notified),
	       (long long)violations);
	if (tally_session_table_destroy(shared.table) != TALLY_OK)
		violations++;
	tally_rcu_barrier();
	free(threads);
	return violations ? 1 : 0;
}
