/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/session.c: the session table against what a user would otherwise write, in one run.
 * Names follow docs/bench.md: BM_<family>_<impl>, impls starting with "tally" are ours.
 *
 * BM_sessionlookup_{tally,tally_inline,rwlock,lfht}/real_time/threads:N
 *	The Sessions-table workload: 10,000 sessions; each iteration picks a random session id
 *	and, 90% of the time, reads its listener count (tally_session_listener_count, the
 *	lightest read); 10% of the time it makes the write a broadcast server makes most: a
 *	listener count change, i.e. a listener join (a connection record added, the count up)
 *	or a listener disconnect (the record removed, the count down). Each thread keeps 256
 *	connection slots; a write flips a random slot (leave if live, else join a random
 *	session), so joins and leaves balance and about 500 connections are live.
 *	Peers do the same logical work with the same payload (session records with the same
 *	fields, hot fields first; connection records = struct tally_connection_info, the
 *	connected-at clock read included):
 *	  rwlock: two chained hash tables (sessions, connections) under one pthread_rwlock_t;
 *	          a read takes the read lock, a join/leave the write lock and updates the record.
 *	  lfht:   raw cds_lfht (memb flavour, FNV-1a hash) for both tables, as a liburcu user
 *	          would write it; the count is an atomic in the session node, updated in place;
 *	          removed connections freed by call_rcu.
 *	Every side is sized for the workload up front: the rwlock table has 16384 buckets
 *	per table, the lfht peer starts its session table at 16384 buckets and its connection
 *	table at 512 (what cds_lfht_new's init_size gives a user who knows the load), and tally
 *	gets the same through its config hints (expected_sessions, expected_connections).
 *	tally does more per write than the peers: keyed SipHash instead of FNV-1a, the
 *	per-session connection list (the secondary index) under the session's mutex, and a
 *	join that is atomic with speaker disconnect. Every join/leave result is checked.
 *	tally_inline is tally with its threads in inline reclamation (tally/rcu.h): each thread
 *	frees its own removed connections, one grace period per 2,048, instead of liburcu's
 *	call_rcu thread (the default, `tally`).
 * BM_sessionchurn_{tally,rwlock,lfht}/real_time/threads:N
 *	Structural churn: 90% the same lookup, 10% delete + re-create the session (tally: a
 *	256-byte aligned allocation for these ids, mutex init, two retires; peers: their own
 *	records).
 * BM_sessionjoin_tally/real_time/threads:N
 *	a listener join + disconnect pair on one session (all threads on the same session).
 * BM_sessionend_tally/<listeners>
 *	speaker disconnect: marking inactive, notifying and deleting <listeners> listeners.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>
#include <tally/rcu.h>
#include <tally/session.h>
#include "harness.h"

#define KEYS 10000
#define KEY_LEN 16
#define WRITE_PERCENT 10
#define SLOTS 256 /* connection slots per thread in the lookup benchmark */

static char keys[KEYS][KEY_LEN];

static void make_keys(void)
{
	for (int i = 0; i < KEYS; i++)
		snprintf(keys[i], KEY_LEN, "session-%05d", i);
}

static unsigned next_random(unsigned *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 17;
	*state ^= *state << 5;
	return *state;
}

static unsigned thread_seed(const struct bench_state *state)
{
	return 2654435761u * (unsigned)(bench_thread_index(state) + 1);
}

static int is_write(unsigned pick)
{
	return (pick >> 20) % 100 < WRITE_PERCENT;
}

static uint64_t fnv1a(const char *key, size_t len)
{
	uint64_t hash = UINT64_C(0xcbf29ce484222325);

	for (size_t i = 0; i < len; i++)
		hash = (hash ^ (unsigned char)key[i]) * UINT64_C(0x100000001b3);
	return hash;
}

static int64_t now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* One thread's connection slots (lookup benchmarks). */
struct slot {
	char id[32];
	int session; /* index into keys while live */
	int live;
};

static void init_slots(struct slot *slots, const struct bench_state *state)
{
	for (int i = 0; i < SLOTS; i++) {
		snprintf(slots[i].id, sizeof(slots[i].id), "conn-%d-%d", bench_thread_index(state),
			 i);
		slots[i].live = 0;
	}
}

/* The session fields every implementation stores (same payload as tally's session). */
struct session_fields {
	char session_id[TALLY_SESSION_ID_MAX + 1];
	char speaker_connection_id[TALLY_SESSION_ID_MAX + 1];
	char speaker_user_id[TALLY_SESSION_ID_MAX + 1];
	char source_language[TALLY_SESSION_LANGUAGE_MAX + 1];
	char quality_tier[TALLY_SESSION_TIER_MAX + 1];
	int64_t created_at_ms;
	int64_t expires_at_ms;
};

static void fill_session(struct session_fields *fields, const char *id)
{
	strcpy(fields->session_id, id);
	strcpy(fields->speaker_connection_id, "speaker");
	strcpy(fields->speaker_user_id, "user");
	strcpy(fields->source_language, "en");
	strcpy(fields->quality_tier, "standard");
	fields->created_at_ms = now_ms();
	fields->expires_at_ms = 0;
}

/* A listener connection record, as tally's join builds it. */
static void fill_connection(struct tally_connection_info *info, const char *id,
			    const char *session_id)
{
	memset(info, 0, sizeof(*info));
	strcpy(info->connection_id, id);
	strcpy(info->session_id, session_id);
	strcpy(info->target_language, "fr");
	strcpy(info->client_address, "192.0.2.1");
	info->role = TALLY_ROLE_LISTENER;
	info->connected_at_ms = now_ms();
	info->expires_at_ms = 0;
}

/* ---- tally --------------------------------------------------------------------------- */

static struct tally_session_table *table;

static void create_session(const char *id)
{
	struct tally_session_params params = { id, "speaker", "user", "en", "standard", 0 };

	tally_session_create(table, &params);
}

/* Both the lookup and the lfht peer size their tables for this load (see the top). */
#define EXPECTED_CONNECTIONS (2 * SLOTS)

static void tally_setup(const struct bench_state *state)
{
	struct tally_session_config config = { .expected_sessions = KEYS,
					       .expected_connections = EXPECTED_CONNECTIONS };

	tally_session_table_create(&table, &config);
	for (int i = 0; i < KEYS; i++)
		create_session(keys[i]);
}

static void tally_teardown(const struct bench_state *state)
{
	tally_session_table_destroy(table);
	table = NULL;
}

/* A join or leave on a random slot; returns 0 if the call did not do what it must. */
static int tally_flip(struct slot *slot, unsigned pick)
{
	struct tally_connection_params params = { slot->id, NULL, "fr", 0, "192.0.2.1", 0 };

	if (slot->live) {
		slot->live = 0;
		return tally_session_leave(table, slot->id) == TALLY_OK;
	}
	slot->session = (int)(pick % KEYS);
	params.session_id = keys[slot->session];
	slot->live = 1;
	return tally_session_join(table, &params) == TALLY_OK;
}

static void lookup_tally(struct bench_state *state, int reclaim)
{
	unsigned seed = thread_seed(state);
	struct slot slots[SLOTS];
	int64_t count = 0, failed = 0;

	init_slots(slots, state);
	tally_rcu_thread_register();
	failed += tally_rcu_thread_set_reclaim(reclaim) != TALLY_OK;
	while (bench_keep_running(state)) {
		unsigned pick = next_random(&seed);

		if (is_write(pick)) {
			unsigned other = next_random(&seed);

			failed += !tally_flip(&slots[other % SLOTS], other >> 8);
		} else {
			failed += tally_session_listener_count(table, keys[pick % KEYS], &count) !=
				  TALLY_OK;
			bench_do_not_optimize(count);
		}
	}
	for (int i = 0; i < SLOTS; i++)
		if (slots[i].live)
			failed += !tally_flip(&slots[i], 0);
	tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_DEFERRED); /* the harness reuses threads */
	bench_set_items_processed(state, bench_iterations(state));
	if (failed)
		bench_skip_with_error(state, "a lookup, join or leave failed");
}

static void bm_lookup_tally(struct bench_state *state)
{
	lookup_tally(state, TALLY_RCU_RECLAIM_DEFERRED);
}

static void bm_lookup_tally_inline(struct bench_state *state)
{
	lookup_tally(state, TALLY_RCU_RECLAIM_INLINE);
}

/* ---- pthread_rwlock_t + chained hash tables --------------------------------------------- */

#define RW_BUCKETS 16384

struct rw_session {
	struct rw_session *next;
	int64_t listener_count; /* hot fields first, as tally lays them out */
	int active;
	struct session_fields fields;
};

struct rw_connection {
	struct rw_connection *next;
	struct rw_session *session;
	struct tally_connection_info info;
};

static struct {
	pthread_rwlock_t lock;
	struct rw_session *sessions[RW_BUCKETS];
	struct rw_connection *connections[RW_BUCKETS];
} rw;

static struct rw_session **rw_session_slot(const char *key)
{
	struct rw_session **slot = &rw.sessions[fnv1a(key, strlen(key)) % RW_BUCKETS];

	while (*slot && strcmp((*slot)->fields.session_id, key) != 0)
		slot = &(*slot)->next;
	return slot;
}

static struct rw_connection **rw_connection_slot(const char *key)
{
	struct rw_connection **slot = &rw.connections[fnv1a(key, strlen(key)) % RW_BUCKETS];

	while (*slot && strcmp((*slot)->info.connection_id, key) != 0)
		slot = &(*slot)->next;
	return slot;
}

static void rw_insert(const char *key)
{
	struct rw_session **slot = rw_session_slot(key), *entry;

	if (*slot)
		return;
	entry = calloc(1, sizeof(*entry));
	fill_session(&entry->fields, key);
	entry->active = 1;
	*slot = entry;
}

static void rw_setup(const struct bench_state *state)
{
	pthread_rwlock_init(&rw.lock, NULL);
	for (int i = 0; i < KEYS; i++)
		rw_insert(keys[i]);
}

static void rw_teardown(const struct bench_state *state)
{
	for (int i = 0; i < RW_BUCKETS; i++) {
		while (rw.sessions[i]) {
			struct rw_session *next = rw.sessions[i]->next;

			free(rw.sessions[i]);
			rw.sessions[i] = next;
		}
		while (rw.connections[i]) {
			struct rw_connection *next = rw.connections[i]->next;

			free(rw.connections[i]);
			rw.connections[i] = next;
		}
	}
	pthread_rwlock_destroy(&rw.lock);
}

static int rw_listener_count(const char *id, int64_t *count)
{
	struct rw_session *entry;

	pthread_rwlock_rdlock(&rw.lock);
	entry = *rw_session_slot(id);
	if (entry)
		*count = entry->listener_count;
	pthread_rwlock_unlock(&rw.lock);
	return entry != NULL;
}

static int rw_flip(struct slot *slot, unsigned pick)
{
	struct rw_connection **link, *connection;
	struct rw_session *session;
	int ok;

	if (slot->live) {
		slot->live = 0;
		pthread_rwlock_wrlock(&rw.lock);
		link = rw_connection_slot(slot->id);
		connection = *link;
		if (connection) {
			*link = connection->next;
			connection->session->listener_count--;
		}
		pthread_rwlock_unlock(&rw.lock);
		free(connection);
		return connection != NULL;
	}
	slot->session = (int)(pick % KEYS);
	slot->live = 1;
	connection = malloc(sizeof(*connection));
	fill_connection(&connection->info, slot->id, keys[slot->session]);
	pthread_rwlock_wrlock(&rw.lock);
	session = *rw_session_slot(connection->info.session_id);
	link = rw_connection_slot(slot->id);
	ok = session && session->active && !*link;
	if (ok) {
		connection->session = session;
		connection->next = NULL;
		*link = connection;
		session->listener_count++;
	}
	pthread_rwlock_unlock(&rw.lock);
	if (!ok)
		free(connection);
	return ok;
}

static void bm_lookup_rwlock(struct bench_state *state)
{
	unsigned seed = thread_seed(state);
	struct slot slots[SLOTS];
	int64_t count = 0, failed = 0;

	init_slots(slots, state);
	while (bench_keep_running(state)) {
		unsigned pick = next_random(&seed);

		if (is_write(pick)) {
			unsigned other = next_random(&seed);

			failed += !rw_flip(&slots[other % SLOTS], other >> 8);
		} else {
			failed += !rw_listener_count(keys[pick % KEYS], &count);
			bench_do_not_optimize(count);
		}
	}
	for (int i = 0; i < SLOTS; i++)
		if (slots[i].live)
			failed += !rw_flip(&slots[i], 0);
	bench_set_items_processed(state, bench_iterations(state));
	if (failed)
		bench_skip_with_error(state, "a lookup, join or leave failed");
}

/* ---- raw cds_lfht ---------------------------------------------------------------------- */

struct lfht_session {
	struct cds_lfht_node node;
	_Atomic int64_t listener_count; /* hot fields first, as tally lays them out */
	_Atomic int active;
	struct session_fields fields;
	struct rcu_head rcu;
};

struct lfht_connection {
	struct cds_lfht_node node;
	struct lfht_session *session;
	struct tally_connection_info info;
	struct rcu_head rcu;
};

static struct cds_lfht *lfht_sessions, *lfht_connections;

static int lfht_session_match(struct cds_lfht_node *node, const void *key)
{
	return strcmp(caa_container_of(node, struct lfht_session, node)->fields.session_id,
		      key) == 0;
}

static int lfht_connection_match(struct cds_lfht_node *node, const void *key)
{
	return strcmp(caa_container_of(node, struct lfht_connection, node)->info.connection_id,
		      key) == 0;
}

static struct lfht_session *lfht_find_session(const char *id)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;

	cds_lfht_lookup(lfht_sessions, fnv1a(id, strlen(id)), lfht_session_match, id, &iter);
	node = cds_lfht_iter_get_node(&iter);
	return node ? caa_container_of(node, struct lfht_session, node) : NULL;
}

/* Read lock held. */
static void lfht_insert(const char *key)
{
	struct lfht_session *entry = calloc(1, sizeof(*entry));

	fill_session(&entry->fields, key);
	atomic_init(&entry->active, 1);
	cds_lfht_node_init(&entry->node);
	if (cds_lfht_add_unique(lfht_sessions, fnv1a(key, strlen(key)), lfht_session_match, key,
				&entry->node) != &entry->node)
		free(entry);
}

static void lfht_free_session(struct rcu_head *rcu)
{
	free(caa_container_of(rcu, struct lfht_session, rcu));
}

static void lfht_free_connection(struct rcu_head *rcu)
{
	free(caa_container_of(rcu, struct lfht_connection, rcu));
}

/* init_size as tally__rcu_map_init_sized picks it: a power of two >= the expected count. */
static struct cds_lfht *lfht_new(unsigned long expected)
{
	unsigned long buckets = 64;

	while (buckets < expected)
		buckets <<= 1;
	return cds_lfht_new_flavor(buckets, 64, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				   &urcu_memb_flavor, NULL);
}

static void lfht_setup(const struct bench_state *state)
{
	tally_rcu_thread_register();
	lfht_sessions = lfht_new(KEYS);
	lfht_connections = lfht_new(EXPECTED_CONNECTIONS);
	urcu_memb_read_lock();
	for (int i = 0; i < KEYS; i++)
		lfht_insert(keys[i]);
	urcu_memb_read_unlock();
}

static void lfht_teardown(const struct bench_state *state)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;

	urcu_memb_barrier();
	urcu_memb_read_lock();
	cds_lfht_for_each(lfht_connections, &iter, node)
		if (cds_lfht_del(lfht_connections, node) == 0)
			free(caa_container_of(node, struct lfht_connection, node));
	cds_lfht_for_each(lfht_sessions, &iter, node)
		if (cds_lfht_del(lfht_sessions, node) == 0)
			free(caa_container_of(node, struct lfht_session, node));
	urcu_memb_read_unlock();
	cds_lfht_destroy(lfht_connections, NULL);
	cds_lfht_destroy(lfht_sessions, NULL);
}

static int lfht_listener_count(const char *id, int64_t *count)
{
	struct lfht_session *session;

	urcu_memb_read_lock();
	session = lfht_find_session(id);
	if (session) /* acquire: pairs with the writers' acq_rel updates */
		*count = atomic_load_explicit(&session->listener_count, memory_order_acquire);
	urcu_memb_read_unlock();
	return session != NULL;
}

static int lfht_flip(struct slot *slot, unsigned pick)
{
	struct lfht_connection *connection;
	struct lfht_session *session;
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;
	const char *id = slot->id;
	int ok = 0;

	if (slot->live) {
		slot->live = 0;
		urcu_memb_read_lock();
		cds_lfht_lookup(lfht_connections, fnv1a(id, strlen(id)), lfht_connection_match, id,
				&iter);
		node = cds_lfht_iter_get_node(&iter);
		if (node && cds_lfht_del(lfht_connections, node) == 0) {
			connection = caa_container_of(node, struct lfht_connection, node);
			atomic_fetch_sub_explicit(&connection->session->listener_count, 1,
						  memory_order_acq_rel);
			urcu_memb_call_rcu(&connection->rcu, lfht_free_connection);
			ok = 1;
		}
		urcu_memb_read_unlock();
		return ok;
	}
	slot->session = (int)(pick % KEYS);
	slot->live = 1;
	connection = malloc(sizeof(*connection));
	fill_connection(&connection->info, id, keys[slot->session]);
	cds_lfht_node_init(&connection->node);
	urcu_memb_read_lock();
	session = lfht_find_session(connection->info.session_id);
	if (session && atomic_load_explicit(&session->active, memory_order_acquire)) {
		connection->session = session;
		ok = cds_lfht_add_unique(lfht_connections, fnv1a(id, strlen(id)),
					 lfht_connection_match, id, &connection->node) ==
		     &connection->node;
		if (ok)
			atomic_fetch_add_explicit(&session->listener_count, 1,
						  memory_order_acq_rel);
	}
	urcu_memb_read_unlock();
	if (!ok)
		free(connection);
	return ok;
}

static void bm_lookup_lfht(struct bench_state *state)
{
	unsigned seed = thread_seed(state);
	struct slot slots[SLOTS];
	int64_t count = 0, failed = 0;

	init_slots(slots, state);
	tally_rcu_thread_register();
	while (bench_keep_running(state)) {
		unsigned pick = next_random(&seed);

		if (is_write(pick)) {
			unsigned other = next_random(&seed);

			failed += !lfht_flip(&slots[other % SLOTS], other >> 8);
		} else {
			failed += !lfht_listener_count(keys[pick % KEYS], &count);
			bench_do_not_optimize(count);
		}
	}
	for (int i = 0; i < SLOTS; i++)
		if (slots[i].live)
			failed += !lfht_flip(&slots[i], 0);
	bench_set_items_processed(state, bench_iterations(state));
	if (failed)
		bench_skip_with_error(state, "a lookup, join or leave failed");
}

/* ---- churn: 10% delete + re-create ------------------------------------------------------ */

static void bm_churn_tally(struct bench_state *state)
{
	unsigned seed = thread_seed(state);
	int64_t count;

	tally_rcu_thread_register();
	while (bench_keep_running(state)) {
		unsigned pick = next_random(&seed);
		const char *id = keys[pick % KEYS];

		if (is_write(pick)) {
			tally_session_delete(table, id, NULL);
			create_session(id);
		} else {
			tally_session_listener_count(table, id, &count);
			bench_do_not_optimize(count);
		}
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_churn_rwlock(struct bench_state *state)
{
	unsigned seed = thread_seed(state);
	int64_t count = 0;

	while (bench_keep_running(state)) {
		unsigned pick = next_random(&seed);
		const char *id = keys[pick % KEYS];

		if (is_write(pick)) {
			struct rw_session **slot, *gone;

			pthread_rwlock_wrlock(&rw.lock);
			slot = rw_session_slot(id);
			gone = *slot;
			if (gone)
				*slot = gone->next;
			free(gone);
			rw_insert(id);
			pthread_rwlock_unlock(&rw.lock);
		} else {
			rw_listener_count(id, &count);
			bench_do_not_optimize(count);
		}
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_churn_lfht(struct bench_state *state)
{
	unsigned seed = thread_seed(state);
	int64_t count = 0;

	tally_rcu_thread_register();
	while (bench_keep_running(state)) {
		unsigned pick = next_random(&seed);
		const char *id = keys[pick % KEYS];

		if (is_write(pick)) {
			struct lfht_session *session;

			urcu_memb_read_lock();
			session = lfht_find_session(id);
			if (session && cds_lfht_del(lfht_sessions, &session->node) == 0)
				urcu_memb_call_rcu(&session->rcu, lfht_free_session);
			lfht_insert(id);
			urcu_memb_read_unlock();
		} else {
			lfht_listener_count(id, &count);
			bench_do_not_optimize(count);
		}
	}
	bench_set_items_processed(state, bench_iterations(state));
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static void lifecycle_setup(const struct bench_state *state)
{
	tally_session_table_create(&table, NULL);
	create_session("talk");
}

static void bm_join_tally(struct bench_state *state)
{
	char id[32];
	struct tally_connection_params params = { id, "talk", "fr", 0, "192.0.2.1", 0 };
	int64_t failed = 0;

	snprintf(id, sizeof(id), "listener-%d", bench_thread_index(state));
	tally_rcu_thread_register();
	while (bench_keep_running(state)) {
		failed += tally_session_join(table, &params) != TALLY_OK;
		failed += tally_session_leave(table, id) != TALLY_OK;
	}
	bench_set_items_processed(state, bench_iterations(state));
	if (failed)
		bench_skip_with_error(state, "a join or leave failed");
}

static int notify_nothing(const struct tally_connection_info *listener, void *arg)
{
	bench_do_not_optimize(listener);
	return 0;
}

static void bm_end_tally(struct bench_state *state)
{
	int64_t listeners = bench_range(state, 0);
	struct tally_connection_params params = { NULL, "talk", "fr", 0, NULL, 0 };
	struct tally_speaker_disconnect_result result;
	int64_t failed = 0;
	char id[32];

	params.connection_id = id;
	tally_rcu_thread_register();
	while (bench_keep_running(state)) {
		bench_pause_timing(state);
		tally_session_delete(table, "talk", NULL);
		create_session("talk");
		for (int64_t i = 0; i < listeners; i++) {
			snprintf(id, sizeof(id), "l%lld", (long long)i);
			params.target_language = (i & 1) ? "fr" : "de";
			tally_session_join(table, &params);
		}
		bench_resume_timing(state);
		tally_session_speaker_disconnect(table, "talk", notify_nothing, NULL, &result);
		failed += result.notified != listeners;
	}
	bench_set_items_processed(state, bench_iterations(state) * listeners);
	bench_counter(state, "listeners_per_second", (double)(bench_iterations(state) * listeners),
		      BENCH_COUNTER_IS_RATE);
	if (failed)
		bench_skip_with_error(state, "speaker disconnect missed a listener");
}

static void register_family(const char *name, bench_fn fn, bench_hook setup,
			    bench_hook teardown)
{
	struct bench_def *def = bench_register(name, fn);

	bench_def_setup(def, setup);
	bench_def_teardown(def, teardown);
	/* real time, as every threaded tally benchmark (docs/bench.md): items/s is then the
	 * aggregate throughput, and a peer whose threads sleep on a lock is not credited with
	 * the CPU time it did not use. */
	bench_def_use_real_time(def);
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
}

int main(int argc, char **argv)
{
	struct bench_def *def;

	make_keys();
	register_family("BM_sessionlookup_tally", bm_lookup_tally, tally_setup, tally_teardown);
	register_family("BM_sessionlookup_tally_inline", bm_lookup_tally_inline, tally_setup,
			tally_teardown);
	register_family("BM_sessionlookup_rwlock", bm_lookup_rwlock, rw_setup, rw_teardown);
	register_family("BM_sessionlookup_lfht", bm_lookup_lfht, lfht_setup, lfht_teardown);
	register_family("BM_sessionchurn_tally", bm_churn_tally, tally_setup, tally_teardown);
	register_family("BM_sessionchurn_rwlock", bm_churn_rwlock, rw_setup, rw_teardown);
	register_family("BM_sessionchurn_lfht", bm_churn_lfht, lfht_setup, lfht_teardown);
	register_family("BM_sessionjoin_tally", bm_join_tally, lifecycle_setup, tally_teardown);

	def = bench_register("BM_sessionend_tally", bm_end_tally);
	bench_def_setup(def, lifecycle_setup);
	bench_def_teardown(def, tally_teardown);
	bench_def_arg(def, 8);
	bench_def_arg(def, 64);
	bench_def_arg(def, 512);
	return bench_main(argc, argv);
}
