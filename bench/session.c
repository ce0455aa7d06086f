/*
 * bench/session.c: the session table against what a user would otherwise write, in one run.
 *
 * BM_session_lookup_{tally,rwlock,lfht}/threads:N
 *	10,000 sessions; each iteration is a lookup of a random id that reads its listener count
 *	(90%) or a write (10%): the id is deleted and re-created (a structural write, the
 *	costly kind). Peers: a chained hash table under one pthread_rwlock_t, and a raw cds_lfht
 *	(memb flavour, FNV-1a hash, call_rcu frees) as a liburcu user would write it.
 *	tally also pays SipHash (collision-attack resistance) and its RCU registration check.
 * BM_session_join_leave_tally/threads:N
 *	a listener join + disconnect pair on one session (all threads on the same session).
 * BM_session_speaker_disconnect_tally/<listeners>
 *	marking inactive, notifying and deleting <listeners> listeners; counter ns_per_listener.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>
#include <tally/rcu.h>
#include <tally/session.h>
#include "harness.h"

#define KEYS 10000
#define KEY_LEN 16
#define WRITE_PERCENT 10

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

static uint64_t fnv1a(const char *key, size_t len)
{
	uint64_t hash = UINT64_C(0xcbf29ce484222325);

	for (size_t i = 0; i < len; i++)
		hash = (hash ^ (unsigned char)key[i]) * UINT64_C(0x100000001b3);
	return hash;
}

/* ---- tally --------------------------------------------------------------------------- */

static struct tally_session_table *table;

static void create_session(const char *id)
{
	struct tally_session_params params = { id, "speaker", "user", "en", "standard", 0 };

	tally_session_create(table, &params);
}

static void tally_setup(const struct bench_state *state)
{
	tally_session_table_create(&table, NULL);
	for (int i = 0; i < KEYS; i++)
		create_session(keys[i]);
}

static void tally_teardown(const struct bench_state *state)
{
	tally_session_table_destroy(table);
	table = NULL;
}

static void bm_lookup_tally(struct bench_state *state)
{
	unsigned seed = 2654435761u * (unsigned)(bench_thread_index(state) + 1);
	int64_t count;

	tally_rcu_thread_register();
	while (bench_keep_running(state)) {
		unsigned pick = next_random(&seed);
		const char *id = keys[pick % KEYS];

		if ((pick >> 20) % 100 < WRITE_PERCENT) {
			tally_session_delete(table, id, NULL);
			create_session(id);
		} else {
			tally_session_listener_count(table, id, &count);
			bench_do_not_optimize(count);
		}
	}
	bench_set_items_processed(state, bench_iterations(state));
}

/* ---- pthread_rwlock_t + chained hash ----------------------------------------------------- */

#define RW_BUCKETS 16384

struct rw_entry {
	struct rw_entry *next;
	char key[KEY_LEN];
	int64_t listener_count;
};

static struct {
	pthread_rwlock_t lock;
	struct rw_entry *buckets[RW_BUCKETS];
} rw;

static struct rw_entry **rw_slot(const char *key)
{
	struct rw_entry **slot = &rw.buckets[fnv1a(key, strlen(key)) % RW_BUCKETS];

	while (*slot && strcmp((*slot)->key, key) != 0)
		slot = &(*slot)->next;
	return slot;
}

static void rw_insert(const char *key)
{
	struct rw_entry **slot = rw_slot(key), *entry;

	if (*slot)
		return;
	entry = calloc(1, sizeof(*entry));
	strcpy(entry->key, key);
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
	for (int i = 0; i < RW_BUCKETS; i++)
		while (rw.buckets[i]) {
			struct rw_entry *next = rw.buckets[i]->next;

			free(rw.buckets[i]);
			rw.buckets[i] = next;
		}
	pthread_rwlock_destroy(&rw.lock);
}

static void bm_lookup_rwlock(struct bench_state *state)
{
	unsigned seed = 2654435761u * (unsigned)(bench_thread_index(state) + 1);
	int64_t count = 0;

	while (bench_keep_running(state)) {
		unsigned pick = next_random(&seed);
		const char *id = keys[pick % KEYS];

		if ((pick >> 20) % 100 < WRITE_PERCENT) {
			struct rw_entry **slot, *gone;

			pthread_rwlock_wrlock(&rw.lock);
			slot = rw_slot(id);
			gone = *slot;
			if (gone)
				*slot = gone->next;
			free(gone);
			rw_insert(id);
			pthread_rwlock_unlock(&rw.lock);
		} else {
			struct rw_entry *entry;

			pthread_rwlock_rdlock(&rw.lock);
			entry = *rw_slot(id);
			if (entry)
				count = entry->listener_count;
			pthread_rwlock_unlock(&rw.lock);
			bench_do_not_optimize(count);
		}
	}
	bench_set_items_processed(state, bench_iterations(state));
}

/* ---- raw cds_lfht ---------------------------------------------------------------------- */

struct lfht_entry {
	struct cds_lfht_node node;
	struct rcu_head rcu;
	char key[KEY_LEN];
	_Atomic int64_t listener_count;
};

static struct cds_lfht *lfht;

static int lfht_match(struct cds_lfht_node *node, const void *key)
{
	return strcmp(caa_container_of(node, struct lfht_entry, node)->key, key) == 0;
}

static void lfht_insert(const char *key)
{
	struct lfht_entry *entry = calloc(1, sizeof(*entry));

	strcpy(entry->key, key);
	cds_lfht_node_init(&entry->node);
	if (cds_lfht_add_unique(lfht, fnv1a(key, strlen(key)), lfht_match, key, &entry->node) !=
	    &entry->node)
		free(entry);
}

static void lfht_free(struct rcu_head *rcu)
{
	free(caa_container_of(rcu, struct lfht_entry, rcu));
}

static void lfht_setup(const struct bench_state *state)
{
	tally_rcu_thread_register();
	lfht = cds_lfht_new_flavor(64, 64, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
				   &urcu_memb_flavor, NULL);
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
	cds_lfht_for_each(lfht, &iter, node)
		if (cds_lfht_del(lfht, node) == 0)
			free(caa_container_of(node, struct lfht_entry, node));
	urcu_memb_read_unlock();
	cds_lfht_destroy(lfht, NULL);
}

static void bm_lookup_lfht(struct bench_state *state)
{
	unsigned seed = 2654435761u * (unsigned)(bench_thread_index(state) + 1);
	struct cds_lfht_iter iter;
	struct cds_lfht_node *node;
	int64_t count = 0;

	tally_rcu_thread_register();
	while (bench_keep_running(state)) {
		unsigned pick = next_random(&seed);
		const char *id = keys[pick % KEYS];
		uint64_t hash = fnv1a(id, strlen(id));

		urcu_memb_read_lock();
		cds_lfht_lookup(lfht, hash, lfht_match, id, &iter);
		node = cds_lfht_iter_get_node(&iter);
		if ((pick >> 20) % 100 < WRITE_PERCENT) {
			if (node && cds_lfht_del(lfht, node) == 0)
				urcu_memb_call_rcu(&caa_container_of(node, struct lfht_entry,
								     node)->rcu, lfht_free);
			lfht_insert(id);
		} else if (node) {
			count = atomic_load_explicit(&caa_container_of(node, struct lfht_entry,
						     node)->listener_count, memory_order_acquire);
		}
		urcu_memb_read_unlock();
		bench_do_not_optimize(count);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static void lifecycle_setup(const struct bench_state *state)
{
	tally_session_table_create(&table, NULL);
	create_session("talk");
}

static void bm_join_leave_tally(struct bench_state *state)
{
	char id[32];
	struct tally_connection_params params = { id, "talk", "fr", 0, "192.0.2.1", 0 };

	snprintf(id, sizeof(id), "listener-%d", bench_thread_index(state));
	tally_rcu_thread_register();
	while (bench_keep_running(state)) {
		tally_session_join(table, &params);
		tally_session_leave(table, id);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static int notify_nothing(const struct tally_connection_info *listener, void *arg)
{
	bench_do_not_optimize(listener);
	return 0;
}

static void bm_speaker_disconnect_tally(struct bench_state *state)
{
	int64_t listeners = bench_range(state, 0);
	struct tally_connection_params params = { NULL, "talk", "fr", 0, NULL, 0 };
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
		tally_session_speaker_disconnect(table, "talk", notify_nothing, NULL, NULL);
	}
	bench_set_items_processed(state, bench_iterations(state) * listeners);
	bench_counter(state, "listeners_per_second", (double)(bench_iterations(state) * listeners),
		      BENCH_COUNTER_IS_RATE);
}

int main(int argc, char **argv)
{
	struct bench_def *def;

	make_keys();
	def = bench_register("BM_session_lookup_tally", bm_lookup_tally);
	bench_def_setup(def, tally_setup);
	bench_def_teardown(def, tally_teardown);
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	def = bench_register("BM_session_lookup_rwlock", bm_lookup_rwlock);
	bench_def_setup(def, rw_setup);
	bench_def_teardown(def, rw_teardown);
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	def = bench_register("BM_session_lookup_lfht", bm_lookup_lfht);
	bench_def_setup(def, lfht_setup);
	bench_def_teardown(def, lfht_teardown);
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);

	def = bench_register("BM_session_join_leave_tally", bm_join_leave_tally);
	bench_def_setup(def, lifecycle_setup);
	bench_def_teardown(def, tally_teardown);
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	def = bench_register("BM_session_speaker_disconnect_tally", bm_speaker_disconnect_tally);
	bench_def_setup(def, lifecycle_setup);
	bench_def_teardown(def, tally_teardown);
	bench_def_arg(def, 8);
	bench_def_arg(def, 64);
	bench_def_arg(def, 512);
	return bench_main(argc, argv);
}
