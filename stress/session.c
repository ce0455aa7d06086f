/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/session.c: joins, duplicate and concurrent disconnects, speaker disconnects, session
 * delete/re-create and TTL sweeps on a moving injected clock, with readers walking the lists,
 * in rounds. After each round (a quiescent point) it checks:
 * - every session's listener count == its listener connections;
 * - connections present == successful creates - successful removals (exactly-once removal);
 * - no connection survives its session's speaker disconnect (an inactive session has none);
 * - with --store URL, the table is written behind (tally/writebehind.h); after the final
 *   flush each stored session's listener count equals its count in memory and its stored
 *   listener connections, and the store holds exactly the table's connections;
 * and during the rounds that every connection a reader meets belongs to the session it walks.
 * Every choice comes from the run's seed (one stream per thread and round).
 */
#include <stdio.h>
#include <string.h>
#include <tally/rcu.h>
#include <tally/session.h>
#include <unistd.h>
#include <tally/writebehind.h>
#include "fleet.h"
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

/* Ids carry the run's tag (with --store: runs sharing one store never meet). */
static char tag[24];
#define ID_LEN 48

static void session_name(char *out, unsigned pick)
{
	snprintf(out, ID_LEN, "%ss%u", tag, pick % SESSIONS);
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
	return (c->connection_id[strlen(tag) + 1] & 1); /* some "gone" clients */
}

static void one_op(struct shared *shared, struct stress_rng *rng)
{
	unsigned pick = (unsigned)stress_rng_next(rng);
	unsigned op = pick % 100;
	char session[ID_LEN], connection[ID_LEN];

	session_name(session, pick >> 8);
	snprintf(connection, sizeof(connection), "%sc%u", tag, (pick >> 12) % CONNECTION_IDS);
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
	char session[ID_LEN];

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

/* ---- with a store: the table written behind, compared after the final flush ---------- */

struct stored_count {
	int64_t listeners, all;
};

static int count_stored(const struct tally_connection_info *connection, const char *writer_id,
			uint64_t epoch, void *arg)
{
	struct stored_count *count = arg;

	count->all++;
	count->listeners += connection->role == TALLY_ROLE_LISTENER;
	return 0;
}

struct stored_session {
	const char *id;
	int64_t listener_count;
	bool found;
};

static int find_stored(const struct tally_session_info *session, const char *writer_id,
		       uint64_t epoch, void *arg)
{
	struct stored_session *want = arg;

	if (strcmp(session->session_id, want->id))
		return 0;
	want->found = true;
	want->listener_count = session->listener_count;
	return 1;
}

static void check_store(struct shared *shared, struct fleet_writer *writer,
			const char *writer_id)
{
	struct stress_run *stress = shared->stress;
	const struct tally_connection_filter listener = { TALLY_ROLE_LISTENER, NULL };
	int64_t connections = 0, stored_all = 0;
	char session[ID_LEN];

	fleet_writer_flush(writer, "final flush");
	for (unsigned i = 0; i < SESSIONS; i++) {
		struct stored_session want = { session, 0, false };
		struct stored_count count = { 0, 0 };
		int64_t in_memory = -1;
		size_t present = 0;

		session_name(session, i);
		tally_store_connections(writer->inner, session, count_stored, &count);
		stored_all += count.all;
		if (tally_session_listener_count(shared->table, session, &in_memory) != TALLY_OK) {
			stress_check(stress, count.all == 0, "session %s is gone, the store holds "
				     "%lld of its connections", session, (long long)count.all);
			continue;
		}
		tally_session_count_connections(shared->table, session, &listener, &present);
		tally_store_sessions(writer->inner, writer_id, find_stored, &want);
		stress_check(stress, want.found && want.listener_count == in_memory &&
			     count.listeners == (int64_t)present, "session %s: stored %s, count %lld, "
			     "%lld stored listener connections; in memory %lld and %zu", session,
			     want.found ? "yes" : "no", (long long)want.listener_count,
			     (long long)count.listeners, (long long)in_memory, present);
	}
	tally_session_table_counts(shared->table, NULL, &connections);
	stress_check(stress, stored_all == connections, "the store holds %lld connections, the "
		     "table %lld", (long long)stored_all, (long long)connections);
	stress_field_int(stress, "stored_connections", stored_all);
}

int main(int argc, char **argv)
{
	static struct stress_run stress;
	struct tally_session_config config = { .now_ms = stress_clock };
	struct shared shared = { .stress = &stress };
	struct test_thread *threads;
	char session[ID_LEN];

	static struct fleet_incarnation me; /* one writer, never killed: for the proxy's watch */
	struct fleet_writer writer;
	char writer_id[40];

	stress_init(&stress, "session", argc, argv, NULL);
	threads = calloc((size_t)stress.opt.threads, sizeof(*threads));
	if (!threads || tally_session_table_create(&shared.table, &config) != TALLY_OK) {
		stress_violation(&stress, "setup failed");
		return stress_finish(&stress);
	}
	if (stress.opt.store) {
		snprintf(tag, sizeof(tag), "t%d-", (int)getpid());
		snprintf(writer_id, sizeof(writer_id), "%ssession", tag);
		if (fleet_writer_open(&writer, &stress, &me, stress.opt.store, writer_id, 10000, 50,
				      NULL, 0) ||
		    tally_writebehind_add_sessions(writer.wb, shared.table)) {
			stress_violation(&stress, "store setup failed");
			return stress_finish(&stress);
		}
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
	if (stress.opt.store) {
		check_store(&shared, &writer, writer_id);
		fleet_writer_close(&writer);
	}
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
