/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/session.c: the session table against what a user would otherwise write, in one run.
 * Names follow docs/bench.md: BM_<family>_<impl>, impls starting with "tally" are ours.
 *
 * The lookup workload (families sessionlookup, sessionzipf, sessionbig, sessiongrown):
 *	N sessions; each iteration picks a session id and, (100 - W)% of the time, reads its
 *	listener count (tally_session_listener_count, the lightest read); W% of the time it
 *	makes the write a broadcast server makes most: a listener join (a connection record
 *	added, the count up) or a listener disconnect (the record removed, the count down).
 *	Each thread keeps 256 connection slots; a write flips a random slot (leave if live,
 *	else join a picked session), so joins and leaves balance and about 500 connections are
 *	live. Every join/leave result is checked.
 *	  sessionlookup/W   10,000 sessions, uniform keys, W = 1, 10, 50 (99/1, 90/10, 50/50)
 *	  sessionzipf/10    10,000 sessions, Zipfian keys (s = 0.99: the popular sessions take
 *	                    most reads and joins), 90/10
 *	  sessionbig/10     262,144 sessions, uniform: well over the 32 MiB last-level cache
 *	                    for every impl (tally about 60 MB, the peers more), 90/10
 *	  sessiongrown/10   10,000 sessions in tables created without size hints (tally: no
 *	                    expected_sessions / expected_connections; peers: smallest tables),
 *	                    grown by the setup's inserts and the run's joins, 90/10; also
 *	                    tally_sweeper: tally so, with its sweeper running every 100 ms
 *	                    (which grows the maps; tally/session.h)
 *	Only sessionlookup/10 runs every impl (at 1 and 2 threads); the other workloads run
 *	tally, tally_inline and the striped tables at 2 threads.
 *	Impls (same payload: session records with the same fields, hot fields first; connection
 *	records = struct tally_connection_info, the connected-at clock read included):
 *	  tally           tally_session_*, default (call_rcu thread) reclamation
 *	  tally_inline    the same, inline reclamation (tally/rcu.h): each thread frees its own
 *	                  removed connections, one grace period per 2,048
 *	  striped_mutex   the strongest lock peer a good engineer writes in a day: 64 stripes,
 *	                  each a pthread_mutex_t (cache-line aligned) owning its own two chained
 *	                  hash tables (sessions, connections; FNV-1a, the stripe from the hash's
 *	                  top bits, buckets from the low bits, doubling at load 1 under the
 *	                  stripe's lock). A join locks the session's and the connection's
 *	                  stripes in stripe order (one if equal), so the active check, the insert
 *	                  and the count move together; a leave finds the connection, then takes
 *	                  the session's stripe in order (unlocking and retaking both if that
 *	                  stripe is lower).
 *	  striped_rwlock  the same with a pthread_rwlock_t per stripe (reads share it)
 *	  lfht            raw cds_lfht (memb flavour, FNV-1a hash) for both tables, as a liburcu
 *	                  user would write it; the count an atomic in the session node, removed
 *	                  connections freed by call_rcu
 *	  naive_rwlock    two chained tables under one pthread_rwlock_t (the first thing a user
 *	                  writes; its readers sleep in futex waits under writes)
 *	With hints, every side is sized for the load up front: tally through expected_sessions
 *	and expected_connections, the striped tables at one bucket per expected entry, lfht's
 *	init_size the same, the naive table's fixed 16,384 buckets per table.
 *	tally does more per write than the peers: keyed SipHash instead of FNV-1a, the
 *	per-session connection list (the secondary index) under the session's lock, and a join
 *	that is atomic with speaker disconnect.
 *	Latency: every 32nd operation (by iteration count, so reads and writes are sampled in
 *	their proportion) is timed with two CLOCK_MONOTONIC readings, into the histograms
 *	"lookup" and "joinleave" (p50/p99/p99.9 in the output, the clock's own ~20 ns
 *	included). sessionbig reports heap_bytes_per_session and heap_bytes_per_connection:
 *	malloc's in-use bytes (mallinfo2) added by the setup's inserts and by 65,536 joins,
 *	per record (tally's and lfht's bucket arrays come from mmap and are not included; see
 *	docs/bench.md).
 * BM_sessionchurn_{tally,naive_rwlock,lfht}/real_time/threads:N
 *	Structural churn: 90% the same lookup, 10% delete + re-create the session (tally: a
 *	256-byte aligned allocation for these ids, mutex init, two retires; peers: their own
 *	records).
 * BM_sessionjoin_tally/real_time/threads:N
 *	a listener join + disconnect pair on one session (all threads on the same session).
 * BM_sessionend_tally/<listeners>
 *	speaker disconnect: marking inactive, notifying and deleting <listeners> listeners.
 */
#include <math.h>
#include <pthread.h>
#include <stdalign.h>
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
#include "heap.h"
#include "internal/hash.h"
#include "../tests/random.h"

#define KEYS 10000
#define BIG_KEYS 262144
#define KEY_LEN 16
#define WRITE_PERCENT 10 /* churn */
#define SLOTS 256 /* connection slots per thread in the lookup benchmark */
#define SAMPLE_EVERY 32 /* latency: one operation in 32 is timed */
#define ZIPF_DRAWS (1 << 20)
#define MEMORY_CONNECTIONS 65536

static char keys[BIG_KEYS][KEY_LEN];

/* The workload of the run being set up (the setup hook sets it; threads only read it). */
static struct {
	int key_count;
	bool hints;
	bool zipf;
} load = { KEYS, true, false };

/* Zipfian draws (s = 0.99) over load.key_count keys, precomputed: a thread reads them at a
 * random offset, so a pick costs one read on every impl alike. */
static uint32_t *zipf_draws;

static void make_keys(void)
{
	for (int i = 0; i < BIG_KEYS; i++)
		snprintf(keys[i], KEY_LEN, "session-%06d", i);
}

static void make_zipf(int n, double s)
{
	double *cdf = malloc((size_t)n * sizeof(*cdf)), sum = 0;
	unsigned seed = 12345;

	zipf_draws = malloc(ZIPF_DRAWS * sizeof(*zipf_draws));
	if (!cdf || !zipf_draws)
		abort(); /* bench only */
	for (int i = 0; i < n; i++)
		cdf[i] = sum += 1.0 / pow(i + 1, s);
	for (int d = 0; d < ZIPF_DRAWS; d++) {
		double u = (double)rand_r(&seed) / ((double)RAND_MAX + 1) * sum;
		int lo = 0, hi = n - 1;

		while (lo < hi) {
			int mid = (lo + hi) / 2;
			if (cdf[mid] < u)
				lo = mid + 1;
			else
				hi = mid;
		}
		/* spread the ranks over the ids, so popular sessions are not neighbours */
		zipf_draws[d] = (uint32_t)(((uint64_t)lo * 7919) % (uint64_t)n);
	}
	free(cdf);
}

static inline int pick_key(unsigned pick)
{
	if (load.zipf)
		return (int)zipf_draws[(pick >> 4) & (ZIPF_DRAWS - 1)];
	return (int)(pick % (unsigned)load.key_count);
}

static unsigned next_random(unsigned *state)
{
	return test_random(state);
}

static unsigned thread_seed(const struct bench_state *state)
{
	return 2654435761u * (unsigned)(bench_thread_index(state) + 1);
}

static int is_write(unsigned pick, int percent)
{
	return (pick >> 20) % 100 < (unsigned)percent;
}

static double heap_per_session, heap_per_connection; /* measured by the sessionbig setups */

static uint64_t fnv1a(const char *key, size_t len)
{
	return tally__fnv1a64(TALLY__FNV1A64_BASIS, key, len);
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
	struct tally_session_config config = { .expected_sessions = (size_t)load.key_count,
					       .expected_connections = EXPECTED_CONNECTIONS };

	tally_session_table_create(&table, load.hints ? &config : NULL);
	for (int i = 0; i < load.key_count; i++)
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
	slot->session = pick_key(pick);
	params.session_id = keys[slot->session];
	slot->live = 1;
	return tally_session_join(table, &params) == TALLY_OK;
}

typedef int (*count_fn)(const char *id, int64_t *count);
typedef int (*flip_fn)(struct slot *slot, unsigned pick);

/* The lookup workload, shared by every impl: inlined with constant count / flip, so each
 * impl's loop calls its own functions directly. Returns the number of failed calls. */
static inline __attribute__((always_inline)) int64_t lookup_loop(struct bench_state *state,
								 count_fn count_of, flip_fn flip)
{
	unsigned seed = thread_seed(state);
	int write_percent = (int)bench_range(state, 0);
	struct slot slots[SLOTS];
	int64_t count = 0, failed = 0;
	uint32_t op = 0;

	init_slots(slots, state);
	while (bench_keep_running(state)) {
		unsigned pick = next_random(&seed);
		bool sampled = (++op & (SAMPLE_EVERY - 1)) == 0;
		int64_t start = sampled ? bench_now_ns() : 0;

		if (is_write(pick, write_percent)) {
			unsigned other = next_random(&seed);

			failed += !flip(&slots[other % SLOTS], other >> 8);
			if (sampled)
				bench_latency_record(state, "joinleave", bench_now_ns() - start);
		} else {
			failed += !count_of(keys[pick_key(pick)], &count);
			bench_do_not_optimize(count);
			if (sampled)
				bench_latency_record(state, "lookup", bench_now_ns() - start);
		}
	}
	for (int i = 0; i < SLOTS; i++)
		if (slots[i].live)
			failed += !flip(&slots[i], 0);
	return failed;
}

static void lookup_report(struct bench_state *state, int64_t failed)
{
	bench_set_items_processed(state, bench_iterations(state));
	if (bench_thread_index(state) == 0 && heap_per_session > 0) {
		bench_counter(state, "heap_bytes_per_session", heap_per_session, 0);
		bench_counter(state, "heap_bytes_per_connection", heap_per_connection, 0);
	}
	if (failed)
		bench_skip_with_error(state, "a lookup, join or leave failed");
}

static int tally_count(const char *id, int64_t *count)
{
	return tally_session_listener_count(table, id, count) == TALLY_OK;
}

static void lookup_tally(struct bench_state *state, int reclaim)
{
	int64_t failed = 0;

	tally_rcu_thread_register();
	failed += tally_rcu_thread_set_reclaim(reclaim) != TALLY_OK;
	failed += lookup_loop(state, tally_count, tally_flip);
	tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_DEFERRED); /* the harness reuses threads */
	lookup_report(state, failed);
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
	for (int i = 0; i < load.key_count; i++)
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
	slot->session = pick_key(pick);
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
	lookup_report(state, lookup_loop(state, rw_listener_count, rw_flip));
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
	unsigned long buckets = 1;

	while (buckets < expected)
		buckets <<= 1;
	return cds_lfht_new_flavor(buckets, 64, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				   &urcu_memb_flavor, NULL);
}

static void lfht_setup(const struct bench_state *state)
{
	tally_rcu_thread_register();
	lfht_sessions = lfht_new(load.hints ? (unsigned long)load.key_count : 1);
	lfht_connections = lfht_new(load.hints ? EXPECTED_CONNECTIONS : 1);
	urcu_memb_read_lock();
	for (int i = 0; i < load.key_count; i++)
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
	slot->session = pick_key(pick);
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
	tally_rcu_thread_register();
	lookup_report(state, lookup_loop(state, lfht_listener_count, lfht_flip));
}

/* ---- striped tables: 64 stripes, a mutex or an rwlock each ------------------------------ */

#define STRIPES 64

struct st_node {
	struct st_node *next;
	uint64_t hash;
};

struct st_session {
	struct st_node node;
	int64_t listener_count; /* hot fields first, as tally lays them out */
	int active;
	struct session_fields fields;
};

struct st_connection {
	struct st_node node;
	struct st_session *session;
	int session_stripe;
	struct tally_connection_info info;
};

/* A chained table owned by one stripe: buckets double at load 1, under the stripe's lock. */
struct st_chain {
	struct st_node **buckets;
	size_t mask;
	size_t count;
};

struct stripe {
	alignas(64) union {
		pthread_mutex_t mutex;
		pthread_rwlock_t rwlock;
	} lock;
	struct st_chain sessions, connections;
};

static struct stripe stripes[STRIPES];

static inline int stripe_of(uint64_t hash)
{
	return (int)(hash >> 58);
}

/* shared (rwlock) is a constant at every call (the impls below), so each impl gets straight-line code. */
static inline void st_lock(int index, bool shared, bool write)
{
	struct stripe *stripe = &stripes[index];

	if (!shared)
		pthread_mutex_lock(&stripe->lock.mutex);
	else if (write)
		pthread_rwlock_wrlock(&stripe->lock.rwlock);
	else
		pthread_rwlock_rdlock(&stripe->lock.rwlock);
}

static inline void st_unlock(int index, bool shared)
{
	if (shared)
		pthread_rwlock_unlock(&stripes[index].lock.rwlock);
	else
		pthread_mutex_unlock(&stripes[index].lock.mutex);
}

static void st_chain_init(struct st_chain *chain, size_t expected)
{
	size_t buckets = 1;

	while (buckets < expected)
		buckets <<= 1;
	chain->buckets = calloc(buckets, sizeof(*chain->buckets));
	if (!chain->buckets)
		abort(); /* bench only */
	chain->mask = buckets - 1;
	chain->count = 0;
}

static void st_chain_grow(struct st_chain *chain)
{
	size_t buckets = (chain->mask + 1) * 2;
	struct st_node **grown = calloc(buckets, sizeof(*grown));

	if (!grown)
		return; /* stays at load > 1: slower, still correct */
	for (size_t b = 0; b <= chain->mask; b++) {
		for (struct st_node *node = chain->buckets[b], *next; node; node = next) {
			next = node->next;
			node->next = grown[node->hash & (buckets - 1)];
			grown[node->hash & (buckets - 1)] = node;
		}
	}
	free(chain->buckets);
	chain->buckets = grown;
	chain->mask = buckets - 1;
}

static void st_chain_add(struct st_chain *chain, struct st_node *node)
{
	struct st_node **head;

	if (chain->count >= chain->mask + 1)
		st_chain_grow(chain);
	head = &chain->buckets[node->hash & chain->mask];
	node->next = *head;
	*head = node;
	chain->count++;
}

static struct st_session *st_find_session(const char *id, uint64_t hash)
{
	struct st_chain *chain = &stripes[stripe_of(hash)].sessions;

	for (struct st_node *node = chain->buckets[hash & chain->mask]; node; node = node->next) {
		struct st_session *session = (struct st_session *)node;
		if (node->hash == hash && strcmp(session->fields.session_id, id) == 0)
			return session;
	}
	return NULL;
}

/* The link that points at the connection, or NULL. */
static struct st_node **st_find_connection(const char *id, uint64_t hash)
{
	struct st_chain *chain = &stripes[stripe_of(hash)].connections;

	for (struct st_node **link = &chain->buckets[hash & chain->mask]; *link;
	     link = &(*link)->next) {
		struct st_connection *connection = (struct st_connection *)*link;
		if ((*link)->hash == hash && strcmp(connection->info.connection_id, id) == 0)
			return link;
	}
	return NULL;
}

static void st_setup(const struct bench_state *state)
{
	size_t sessions = load.hints ? (size_t)load.key_count / STRIPES : 1;
	size_t connections = load.hints ? EXPECTED_CONNECTIONS / STRIPES : 1;

	for (int i = 0; i < STRIPES; i++) {
		pthread_mutex_init(&stripes[i].lock.mutex, NULL);
		st_chain_init(&stripes[i].sessions, sessions);
		st_chain_init(&stripes[i].connections, connections);
	}
	for (int i = 0; i < load.key_count; i++) {
		struct st_session *session = calloc(1, sizeof(*session));

		fill_session(&session->fields, keys[i]);
		session->active = 1;
		session->node.hash = fnv1a(keys[i], strlen(keys[i]));
		st_chain_add(&stripes[stripe_of(session->node.hash)].sessions, &session->node);
	}
}

static void st_setup_rwlock(const struct bench_state *state)
{
	st_setup(state);
	for (int i = 0; i < STRIPES; i++)
		pthread_rwlock_init(&stripes[i].lock.rwlock, NULL); /* in place of the mutex */
}

static void st_free_chain(struct st_chain *chain)
{
	for (size_t b = 0; b <= chain->mask; b++)
		for (struct st_node *node = chain->buckets[b], *next; node; node = next) {
			next = node->next;
			free(node);
		}
	free(chain->buckets);
}

static void st_teardown(const struct bench_state *state)
{
	for (int i = 0; i < STRIPES; i++) {
		st_free_chain(&stripes[i].sessions);
		st_free_chain(&stripes[i].connections);
	}
}

static inline int st_count(const char *id, int64_t *count, bool shared)
{
	uint64_t hash = fnv1a(id, strlen(id));
	int index = stripe_of(hash);
	struct st_session *session;

	st_lock(index, shared, false);
	session = st_find_session(id, hash);
	if (session)
		*count = session->listener_count;
	st_unlock(index, shared);
	return session != NULL;
}

static inline void st_lock_pair(int a, int b, bool shared)
{
	st_lock(a < b ? a : b, shared, true);
	if (a != b)
		st_lock(a < b ? b : a, shared, true);
}

static inline void st_unlock_pair(int a, int b, bool shared)
{
	st_unlock(a, shared);
	if (a != b)
		st_unlock(b, shared);
}

static inline int st_join(struct slot *slot, unsigned pick, bool shared)
{
	struct st_connection *connection = malloc(sizeof(*connection));
	uint64_t hash = fnv1a(slot->id, strlen(slot->id)), session_hash;
	int index = stripe_of(hash), session_index;
	struct st_session *session;
	int ok;

	slot->session = pick_key(pick);
	slot->live = 1;
	fill_connection(&connection->info, slot->id, keys[slot->session]);
	session_hash = fnv1a(connection->info.session_id, strlen(connection->info.session_id));
	session_index = stripe_of(session_hash);
	connection->node.hash = hash;
	connection->session_stripe = session_index;
	st_lock_pair(index, session_index, shared);
	session = st_find_session(connection->info.session_id, session_hash);
	ok = session && session->active && !st_find_connection(slot->id, hash);
	if (ok) {
		connection->session = session;
		st_chain_add(&stripes[index].connections, &connection->node);
		session->listener_count++;
	}
	st_unlock_pair(index, session_index, shared);
	if (!ok)
		free(connection);
	return ok;
}

static inline int st_leave(struct slot *slot, bool shared)
{
	uint64_t hash = fnv1a(slot->id, strlen(slot->id));
	int index = stripe_of(hash), session_index;
	struct st_node **link;
	struct st_connection *connection;

	slot->live = 0;
retry:
	st_lock(index, shared, true);
	link = st_find_connection(slot->id, hash);
	if (!link) {
		st_unlock(index, shared);
		return 0;
	}
	session_index = ((struct st_connection *)*link)->session_stripe;
	if (session_index < index) {
		/* lock order: retake both, then look again (another leave may have won) */
		st_unlock(index, shared);
		st_lock_pair(index, session_index, shared);
		link = st_find_connection(slot->id, hash);
	} else if (session_index > index) {
		st_lock(session_index, shared, true);
	}
	connection = link ? (struct st_connection *)*link : NULL;
	if (connection && connection->session_stripe != session_index) {
		st_unlock_pair(index, session_index, shared); /* left and joined elsewhere meanwhile */
		goto retry;
	}
	if (connection) {
		*link = connection->node.next;
		stripes[index].connections.count--;
		connection->session->listener_count--;
	}
	st_unlock_pair(index, session_index, shared);
	free(connection);
	return connection != NULL;
}

static int st_mutex_count(const char *id, int64_t *count)
{
	return st_count(id, count, false);
}

static int st_mutex_flip(struct slot *slot, unsigned pick)
{
	return slot->live ? st_leave(slot, false) : st_join(slot, pick, false);
}

static int st_rwlock_count(const char *id, int64_t *count)
{
	return st_count(id, count, true);
}

static int st_rwlock_flip(struct slot *slot, unsigned pick)
{
	return slot->live ? st_leave(slot, true) : st_join(slot, pick, true);
}

static void bm_lookup_striped_mutex(struct bench_state *state)
{
	lookup_report(state, lookup_loop(state, st_mutex_count, st_mutex_flip));
}

static void bm_lookup_striped_rwlock(struct bench_state *state)
{
	lookup_report(state, lookup_loop(state, st_rwlock_count, st_rwlock_flip));
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

		if (is_write(pick, WRITE_PERCENT)) {
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

		if (is_write(pick, WRITE_PERCENT)) {
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

		if (is_write(pick, WRITE_PERCENT)) {
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

/* ---- workloads and registration ------------------------------------------------------- */

/* Runs an impl's setup for `keys` sessions, then (sessionbig only, on the impl's first
 * setup: every try runs the setup, and the figure does not change) measures malloc's bytes
 * per session and, with MEMORY_CONNECTIONS joins and their leaves, per connection. */
static void setup_load(const struct bench_state *state, int keys_wanted, bool hints, bool zipf,
		       bench_hook setup, flip_fn flip, double measured[2])
{
	size_t before = bench_heap_bytes(), after;

	load.key_count = keys_wanted;
	load.hints = hints;
	load.zipf = zipf;
	heap_per_session = keys_wanted == BIG_KEYS ? measured[0] : 0;
	heap_per_connection = keys_wanted == BIG_KEYS ? measured[1] : 0;
	setup(state);
	if (keys_wanted != BIG_KEYS || measured[0] > 0)
		return;
	after = bench_heap_bytes();
	heap_per_session = measured[0] = (double)(after - before) / keys_wanted;
	{
		static struct slot memory_slots[MEMORY_CONNECTIONS];
		size_t joined_from = bench_heap_bytes();

		for (int i = 0; i < MEMORY_CONNECTIONS; i++) {
			snprintf(memory_slots[i].id, sizeof(memory_slots[i].id), "mem-%d", i);
			memory_slots[i].live = 0;
			flip(&memory_slots[i], (unsigned)i * 2654435761u);
		}
		heap_per_connection = measured[1] =
			(double)(bench_heap_bytes() - joined_from) / MEMORY_CONNECTIONS;
		for (int i = 0; i < MEMORY_CONNECTIONS; i++)
			flip(&memory_slots[i], 0);
	}
}

static int tally_flip_fn(struct slot *slot, unsigned pick)
{
	return tally_flip(slot, pick);
}

/* Memory per impl (session, connection), measured once: [tally, mutex, rwlock, lfht, naive]. */
static double measured[5][2];

#define WORKLOAD(name, keys_wanted, hints, zipf)                                              \
	static void name##_tally(const struct bench_state *s)                                 \
	{ setup_load(s, keys_wanted, hints, zipf, tally_setup, tally_flip_fn, measured[0]); }   \
	static void name##_mutex(const struct bench_state *s)                                 \
	{ setup_load(s, keys_wanted, hints, zipf, st_setup, st_mutex_flip, measured[1]); }      \
	static void name##_rwlock(const struct bench_state *s)                                \
	{ setup_load(s, keys_wanted, hints, zipf, st_setup_rwlock, st_rwlock_flip,             \
		     measured[2]); }                                                          \
	static void name##_lfht(const struct bench_state *s)                                  \
	{ setup_load(s, keys_wanted, hints, zipf, lfht_setup, lfht_flip, measured[3]); }        \
	static void name##_naive(const struct bench_state *s)                                 \
	{ setup_load(s, keys_wanted, hints, zipf, rw_setup, rw_flip, measured[4]); }

WORKLOAD(uniform, KEYS, true, false)
WORKLOAD(zipfian, KEYS, true, true)
WORKLOAD(big, BIG_KEYS, true, false)
WORKLOAD(grown, KEYS, false, false)

/* sessiongrown's tally_sweeper: the unhinted table with its background sweeper running
 * (every 100 ms: a sweep of the 10,000 sessions takes 0.22 ms of CPU, so the third thread
 * takes 0.2 % of a CPU from the two benchmark threads), which grows the maps to one bucket
 * per entry as they fill; what a server with TTLs runs. */
#define GROWN_SWEEP_MS 100
static void grown_tally_sweeper(const struct bench_state *s)
{
	struct timespec first_sweeps = { 0, 3 * GROWN_SWEEP_MS * 1000000 };

	grown_tally(s);
	tally_session_sweeper_start(table, GROWN_SWEEP_MS);
	nanosleep(&first_sweeps, NULL); /* the setup's inserts grown for, as the run begins */
}

struct impl {
	const char *name;
	bench_fn fn;
	bench_hook teardown;
};

static const struct impl impls[] = {
	{ "tally", bm_lookup_tally, tally_teardown },
	{ "tally_inline", bm_lookup_tally_inline, tally_teardown },
	{ "striped_mutex", bm_lookup_striped_mutex, st_teardown },
	{ "striped_rwlock", bm_lookup_striped_rwlock, st_teardown },
	{ "lfht", bm_lookup_lfht, lfht_teardown },
	{ "naive_rwlock", bm_lookup_rwlock, rw_teardown },
};

/* The setups of one workload, in the order of impls[] (tally and tally_inline share one). */
#define SETUPS(name) { name##_tally, name##_tally, name##_mutex, name##_rwlock, name##_lfht, \
		       name##_naive }

/* Registers every impl of impls[0..count) for `family` with one write percentage and the
 * thread counts given (0-terminated). */
static void register_workload(const char *family, const bench_hook setups[], int count,
			      int64_t write_percent, const int *threads)
{
	for (int i = 0; i < count; i++) {
		char name[96];
		struct bench_def *def;

		snprintf(name, sizeof(name), "BM_%s_%s", family, impls[i].name);
		def = bench_register(name, impls[i].fn);
		bench_def_setup(def, setups[i]);
		bench_def_teardown(def, impls[i].teardown);
		bench_def_arg(def, write_percent);
		bench_def_use_real_time(def);
		for (const int *t = threads; *t; t++)
			bench_def_threads(def, *t);
	}
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

	static const bench_hook uniform[] = SETUPS(uniform), zipfian[] = SETUPS(zipfian),
				big[] = SETUPS(big), grown[] = SETUPS(grown);
	static const int one_two[] = { 1, 2, 0 }, two[] = { 2, 0 };
	/* the other workloads: tally and the striped tables (impls[0..4)), to keep make bench
	 * short; lfht and the naive table run the 90/10 mix */
	const int all = (int)(sizeof(impls) / sizeof(impls[0])), striped = 4;

	make_keys();
	make_zipf(KEYS, 0.99);
	register_workload("sessionlookup", uniform, all, 10, one_two);
	register_workload("sessionlookup", uniform, striped, 1, two);
	register_workload("sessionlookup", uniform, striped, 50, two);
	register_workload("sessionzipf", zipfian, striped, 10, two);
	register_workload("sessionbig", big, striped, 10, two);
	register_workload("sessiongrown", grown, striped, 10, two);
	def = bench_register("BM_sessiongrown_tally_sweeper", bm_lookup_tally);
	bench_def_setup(def, grown_tally_sweeper);
	bench_def_teardown(def, tally_teardown);
	bench_def_arg(def, 10);
	bench_def_use_real_time(def);
	bench_def_threads(def, 2);
	register_family("BM_sessionchurn_tally", bm_churn_tally, uniform_tally, tally_teardown);
	register_family("BM_sessionchurn_naive_rwlock", bm_churn_rwlock, uniform_naive,
			rw_teardown);
	register_family("BM_sessionchurn_lfht", bm_churn_lfht, uniform_lfht, lfht_teardown);
	register_family("BM_sessionjoin_tally", bm_join_tally, lifecycle_setup, tally_teardown);

	def = bench_register("BM_sessionend_tally", bm_end_tally);
	bench_def_setup(def, lifecycle_setup);
	bench_def_teardown(def, tally_teardown);
	bench_def_arg(def, 8);
	bench_def_arg(def, 64);
	bench_def_arg(def, 512);
	return bench_main(argc, argv);
}
