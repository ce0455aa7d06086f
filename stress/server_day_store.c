/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/server_day_store.c: the store half of the "server day" scenario
 * (stress/server_day_store.h). Workers write behind through tally/writebehind.h over the
 * store proxy (stress/store_proxy.h); the parent checks the fleet against the store:
 * - counters: each incarnation's own views key holds exactly what it applied if it lived
 *   to the end; if it was killed, at least what was acknowledged and at most what was
 *   applied (the measured loss, applied - stored, is never above the unacknowledged
 *   amount, the documented bound); the fleet key agrees with the sum within the killed
 *   incarnations' unacknowledged amounts;
 * - gauges: after the reap, the global listener gauge equals the sum of the live workers'
 *   final values;
 * - writers: the abandoned worker's writer is reaped, every other one is live at the
 *   epoch its incarnation got;
 * - records: each stored session's listener count equals its stored listener connections,
 *   an inactive session has none, each live writer's stored connections equal its table's;
 * - leases: each tenant's lease mark covers the highest invoice number issued.
 */
#include "server_day_store.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <tally/store.h>

#include <tally/writebehind.h>
#define ID_MAX (TALLY_SESSION_ID_MAX + 1)

struct day_store {
	struct stress_run *run;
	const struct day_config *config;
	struct fleet_incarnation *me;
	int slot;
	struct fleet_writer writer;
	struct tally_lease_provider *leases;
	char views_key[TALLY_STORE_KEY_MAX + 1];
	char fleet_key[TALLY_STORE_KEY_MAX + 1];
	char listeners_key[TALLY_STORE_KEY_MAX + 1];
};

/* ---- worker side ---------------------------------------------------------------------- */

int day_store_open(struct day_store **out, struct stress_run *run,
		   const struct day_config *config, int slot, int incarnation)
{
	struct day_store *s = calloc(1, sizeof(*s));
	char writer[TALLY_STORE_WRITER_ID_MAX + 1];

	if (!s)
		return 20;
	*s = (struct day_store){ .run = run, .config = config, .slot = slot,
				 .me = &config->shared->fleet.incarnations[incarnation] };
	day_views_key(config, incarnation, s->views_key, sizeof(s->views_key));
	day_fleet_views_key(config, s->fleet_key, sizeof(s->fleet_key));
	day_listeners_key(config, s->listeners_key, sizeof(s->listeners_key));
	day_writer_id(config, slot, writer, sizeof(writer));
	const char *watched[] = { s->views_key, s->fleet_key };
	if (fleet_writer_open(&s->writer, run, s->me, config->store_url, writer,
			      config->writer_ttl_ms, config->flush_interval_ms, watched, 2)) {
		free(s);
		return 21;
	}
	if (tally_store_lease_provider(s->writer.inner, &s->leases)) {
		fleet_writer_close(&s->writer);
		free(s);
		return 21;
	}
	*out = s;
	return 0;
}

struct tally_lease_provider *day_store_lease_provider(struct day_store *store)
{
	return store->leases;
}

int day_store_register(struct day_store *s, struct tally_session_table *table,
		       struct tally_counter *views, struct tally_counter *views_fleet,
		       struct tally_gauge *listeners)
{
	struct tally_writebehind *wb = s->writer.wb;
	int err = tally_writebehind_add_counter(wb, s->views_key, strlen(s->views_key), views);

	if (!err)
		err = tally_writebehind_add_counter(wb, s->fleet_key, strlen(s->fleet_key),
						    views_fleet);
	if (!err)
		err = tally_writebehind_add_gauge(wb, s->listeners_key, strlen(s->listeners_key),
						  listeners);
	if (!err)
		err = tally_writebehind_add_sessions(wb, table);
	if (err)
		fprintf(stderr, "server_day: worker %d: write-behind setup: %s\n", s->slot,
			tally_strerror(err));
	return err ? 22 : 0;
}

void day_store_final_flush(struct day_store *s, struct tally_counter *views)
{
	int64_t unflushed = -1, stored = -1, applied;

	fleet_writer_flush(&s->writer, "final flush");
	tally_writebehind_unflushed_counter(s->writer.wb, s->views_key, strlen(s->views_key),
					    &unflushed);
	tally_counter_read(views, &applied);
	stress_check(s->run, unflushed == 0, "worker %d: %lld views unflushed after the final "
		     "flush", s->slot, (long long)unflushed);
	if (tally_store_read_counter(s->writer.inner, s->views_key, strlen(s->views_key), &stored))
		stored = 0;
	stress_check(s->run, stored == applied, "worker %d: store holds %lld views, %lld "
		     "applied", s->slot, (long long)stored, (long long)applied);
}

void day_store_reflush(struct day_store *s)
{
	fleet_writer_flush(&s->writer, "flush after the reap");
}

/* The invoice series are destroyed before this; the lease provider borrows the real store
 * handle, so it goes before the handle closes. */
void day_store_close(struct day_store *s)
{
	tally_lease_provider_destroy(s->leases);
	fleet_writer_close(&s->writer);
	free(s);
}

/* ---- parent side ---------------------------------------------------------------------- */

struct stored_session {
	char id[ID_MAX];
	int64_t listener_count;
	bool active;
};

struct audit {
	struct stress_run *run;
	const struct day_config *config;
	struct fleet *fleet;
	struct tally_store *store;
	size_t tag_len;
	char tag[32];
	/* records, gathered by the visitors */
	struct stored_session *sessions;
	size_t session_len, session_cap;
	char (*listener_of)[ID_MAX]; /* the session id of each stored listener connection */
	size_t listener_len, listener_cap;
	int64_t connections_by_slot[STRESS_PROCESSES_MAX];
};

static bool ours(const struct audit *f, const char *id)
{
	return !strncmp(id, f->tag, f->tag_len);
}

static void views_key_of(void *arg, int incarnation, char *out, size_t size)
{
	day_views_key(arg, incarnation, out, size);
}

/* Views: each incarnation's own key (fleet_check_counter), then the fleet key, which every
 * worker adds to in the same flushes: it agrees with the sum of the incarnations' keys
 * exactly for those that lived, within what was unacknowledged for those killed (a batch
 * drains the two counters one after the other). */
static void check_counters(struct audit *f)
{
	struct fleet_shared *shared = &f->config->shared->fleet;
	int incarnations = atomic_load(&shared->incarnation_count);
	int64_t fleet_acked = 0, applied_hi = 0, slack = 0, fleet_total = 0;
	char key[TALLY_STORE_KEY_MAX + 1];

	int64_t stored_all = fleet_check_counter(f->fleet, f->store,
						 "views", views_key_of, (void *)f->config);
	for (int i = 0; i < incarnations; i++) {
		struct fleet_incarnation *in = &shared->incarnations[i];
		int64_t applied = 0, pending = 0;

		for (int t = 0; t < f->run->opt.threads; t++) {
			applied += atomic_load(&in->applied[t]);
			pending += atomic_load(&in->pending[t]);
		}
		int64_t mine = atomic_load(&in->watch.acked[0]), all = atomic_load(&in->watch.acked[1]);
		fleet_acked += all;
		applied_hi += applied + pending;
		if (atomic_load(&in->killed))
			slack += applied + pending - (mine < all ? mine : all);
	}
	day_fleet_views_key(f->config, key, sizeof(key));
	if (tally_store_read_counter(f->store, key, strlen(key), &fleet_total) != TALLY_OK)
		fleet_total = 0;
	stress_check(f->run, fleet_total >= fleet_acked && fleet_total <= applied_hi,
		     "fleet views %lld outside [acknowledged %lld, applied %lld]",
		     (long long)fleet_total, (long long)fleet_acked, (long long)applied_hi);
	stress_check(f->run, llabs(fleet_total - stored_all) <= slack, "fleet views %lld, the "
		     "incarnations' keys sum to %lld (killed ones allow %lld)",
		     (long long)fleet_total, (long long)stored_all, (long long)slack);
}

/* Reap the abandoned writer once its lease ran out; then the writers and the gauge. */
static int check_writer(const struct tally_store_writer_info *writer, void *arg)
{
	struct audit *f = arg;
	int slot;
	char id[TALLY_STORE_WRITER_ID_MAX + 1];

	if (!ours(f, writer->writer_id))
		return 0;
	for (slot = 0; slot < f->config->workers; slot++) {
		day_writer_id(f->config, slot, id, sizeof(id));
		if (!strcmp(id, writer->writer_id))
			break;
	}
	if (slot == f->config->workers)
		return 0;
	const struct fleet *fleet = &f->config->fleet;
	struct fleet_incarnation *in = fleet_current(fleet, slot);
	if (fleet_abandoned(fleet, slot))
		stress_check(f->run, !writer->live && writer->reaped, "writer %s of the abandoned "
			     "worker is %s after the reap", writer->writer_id,
			     writer->live ? "live" : "not reaped");
	else
		stress_check(f->run, writer->live && writer->epoch == atomic_load(&in->watch.epoch),
			     "writer %s: live %d at epoch %llu, its incarnation has epoch %llu",
			     writer->writer_id, writer->live, (unsigned long long)writer->epoch,
			     (unsigned long long)atomic_load(&in->watch.epoch));
	return 0;
}

static void check_gauge(struct audit *f)
{
	const struct fleet *fleet = &f->config->fleet;
	int64_t value = 0, live_writers = 0, expected = 0;
	char key[TALLY_STORE_KEY_MAX + 1];

	for (int slot = 0; slot < f->config->workers; slot++)
		if (!fleet_abandoned(fleet, slot))
			expected += fleet_current(fleet, slot)->final[DAY_FINAL_LISTENERS];
	tally_store_writers(f->store, check_writer, f);
	day_listeners_key(f->config, key, sizeof(key));
	tally_store_read_gauge(f->store, key, strlen(key), &value, &live_writers);
	stress_check(f->run, value == expected, "global listener gauge %lld after the reap, the "
		     "live workers hold %lld", (long long)value, (long long)expected);
	stress_field_int(f->run, "listeners_global", value);
}

/* ---- records -------------------------------------------------------------------------- */

static void *grow(void *array, size_t *cap, size_t len, size_t size)
{
	if (len < *cap)
		return array;
	*cap = *cap ? *cap * 2 : 1024;
	array = realloc(array, *cap * size);
	if (!array) {
		perror("server_day: realloc");
		exit(2);
	}
	return array;
}

static int gather_session(const struct tally_session_info *session, const char *writer_id,
			  uint64_t epoch, void *arg)
{
	struct audit *f = arg;
	struct stored_session *stored;

	if (!ours(f, session->session_id))
		return 0;
	f->sessions = grow(f->sessions, &f->session_cap, f->session_len, sizeof(*f->sessions));
	stored = &f->sessions[f->session_len++];
	snprintf(stored->id, sizeof(stored->id), "%s", session->session_id);
	stored->listener_count = session->listener_count;
	stored->active = session->active;
	return 0;
}

static int gather_connection(const struct tally_connection_info *connection,
			     const char *writer_id, uint64_t epoch, void *arg)
{
	struct audit *f = arg;
	char id[TALLY_STORE_WRITER_ID_MAX + 1];

	if (!ours(f, connection->connection_id))
		return 0;
	for (int slot = 0; slot < f->config->workers; slot++) {
		day_writer_id(f->config, slot, id, sizeof(id));
		if (!strcmp(id, writer_id))
			f->connections_by_slot[slot]++;
	}
	if (connection->role != TALLY_ROLE_LISTENER)
		return 0;
	f->listener_of = grow(f->listener_of, &f->listener_cap, f->listener_len,
			      sizeof(*f->listener_of));
	snprintf(f->listener_of[f->listener_len++], ID_MAX, "%s", connection->session_id);
	return 0;
}

static int compare_ids(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* How many entries of the sorted ids equal id. */
static int64_t occurrences(char (*sorted)[ID_MAX], size_t len, const char *id)
{
	char (*hit)[ID_MAX] = bsearch(id, sorted, len, ID_MAX, compare_ids);
	int64_t n = 0;

	if (!hit)
		return 0;
	while (hit > sorted && !strcmp(hit[-1], id))
		hit--;
	for (; hit < sorted + len && !strcmp(*hit, id); hit++)
		n++;
	return n;
}

static void check_records(struct audit *f)
{
	tally_store_sessions(f->store, NULL, gather_session, f);
	tally_store_connections(f->store, NULL, gather_connection, f);
	qsort(f->listener_of, f->listener_len, ID_MAX, compare_ids);
	int64_t miscounted = 0;
	for (size_t i = 0; i < f->session_len; i++) {
		struct stored_session *stored = &f->sessions[i];
		int64_t present = occurrences(f->listener_of, f->listener_len, stored->id);

		miscounted += stored->listener_count != present;
		stress_check(f->run, stored->listener_count == present, "stored session %s counts "
			     "%lld listeners, the store holds %lld listener connections", stored->id,
			     (long long)stored->listener_count, (long long)present);
		stress_check(f->run, stored->active || present == 0, "stored session %s is "
			     "inactive with %lld connections", stored->id, (long long)present);
	}
	for (int slot = 0; slot < f->config->workers; slot++) {
		const struct fleet *fleet = &f->config->fleet;
		int64_t expected = fleet_abandoned(fleet, slot)
					   ? 0 : fleet_current(fleet, slot)->final[DAY_FINAL_CONNECTIONS];

		stress_check(f->run, f->connections_by_slot[slot] == expected, "worker %d: the "
			     "store holds %lld of its connections, its table %lld", slot,
			     (long long)f->connections_by_slot[slot], (long long)expected);
	}
	stress_field_int(f->run, "stored_sessions", (int64_t)f->session_len);
	stress_field_int(f->run, "stored_sessions_miscounted", miscounted);
	stress_field_int(f->run, "stored_listeners", (int64_t)f->listener_len);
	free(f->sessions);
	free(f->listener_of);
}

/* ---- leases --------------------------------------------------------------------------- */

static int check_lease(const char *key, size_t key_len, const struct tally_lease_record *record,
		       void *arg)
{
	struct audit *f = arg;
	char name[64];

	for (unsigned tenant = 0; tenant < DAY_TENANTS; tenant++) {
		int len = snprintf(name, sizeof(name), "%s-tenant%u", f->config->run_tag, tenant);

		if (key_len != (size_t)len + 4 || memcmp(key, name, (size_t)len) ||
		    memcmp(key + len, "\0INV", 4))
			continue;
		uint64_t mark = record->mark & ((UINT64_C(1) << 40) - 1);
		stress_check(f->run, f->config->highest_invoice[tenant] <= mark, "tenant %u issued "
			     "%llu, above its stored lease mark %llu", tenant,
			     (unsigned long long)f->config->highest_invoice[tenant],
			     (unsigned long long)mark);
	}
	return 0;
}

void day_store_check_fleet(struct stress_run *run, struct day_config *config)
{
	struct audit f = { .run = run, .config = config, .fleet = &config->fleet };

	f.tag_len = (size_t)snprintf(f.tag, sizeof(f.tag), "%s-", config->run_tag);
	if (!stress_check(run, store_proxy_open_reader(config->store_url, &f.store) == TALLY_OK,
			  "the parent cannot open the store"))
		return;
	check_counters(&f);
	fleet_reap(f.fleet, f.store);
	check_gauge(&f);
	check_records(&f);
	tally_store_leases(f.store, check_lease, &f);
	tally_store_close(f.store);
}
