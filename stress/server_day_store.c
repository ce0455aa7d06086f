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

#if __has_include(<tally/writebehind.h>)
#include <tally/writebehind.h>
#define DAY_HAVE_WRITEBEHIND 1
#else
#define DAY_HAVE_WRITEBEHIND 0
#endif

#define PROXY_HOLD_US 300
#define ID_MAX (TALLY_SESSION_ID_MAX + 1)

struct day_store {
	struct stress_run *run;
	const struct day_config *config;
	struct day_incarnation *me;
	int slot;
	struct store_proxy *proxy;
	struct tally_store *outer, *inner;
	struct tally_lease_provider *leases;
#if DAY_HAVE_WRITEBEHIND
	struct tally_writebehind *wb;
#endif
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
				 .me = &config->shared->incarnations[incarnation] };
	day_views_key(config, incarnation, s->views_key, sizeof(s->views_key));
	day_fleet_views_key(config, s->fleet_key, sizeof(s->fleet_key));
	day_listeners_key(config, s->listeners_key, sizeof(s->listeners_key));
	day_writer_id(config, slot, writer, sizeof(writer));
	const char *watched[] = { s->views_key, s->fleet_key };
	if (store_proxy_open(&s->proxy, config->store_url, writer, config->writer_ttl_ms,
			     &s->me->watch, watched, 2, PROXY_HOLD_US, &s->outer, &s->inner) ||
	    tally_store_lease_provider(s->inner, &s->leases)) {
		store_proxy_close(s->proxy);
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

#if DAY_HAVE_WRITEBEHIND
static void on_error(int err, const char *text, void *arg)
{
	struct day_store *s = arg;

	/* A live writer is fenced when its lease ran out (a flusher starved past the TTL on a
	 * loaded machine, and a reaper ran): by design it re-registers and republishes, so
	 * it is counted, and the checks after the reflush hold it to the new epoch. */
	if (err == TALLY_EFENCED) {
		atomic_fetch_add(&s->me->fenced, 1);
		return;
	}
	stress_violation(s->run, "worker %d: flusher reports %s: %s", s->slot,
			 tally_strerror(err), text);
}

int day_store_register(struct day_store *s, struct tally_session_table *table,
		       struct tally_counter *views, struct tally_counter *views_fleet,
		       struct tally_gauge *listeners)
{
	struct tally_writebehind_config config = {
		.interval_ms = s->config->flush_interval_ms,
		.heartbeat_ms = s->config->writer_ttl_ms / 4,
		.on_error = on_error, .callback_arg = s,
		.jitter_seed = s->run->opt.seed ^ (uint64_t)s->slot };
	int err = tally_writebehind_create(&s->wb, s->outer, &config);

	if (!err)
		err = tally_writebehind_add_counter(s->wb, s->views_key, strlen(s->views_key),
						    views);
	if (!err)
		err = tally_writebehind_add_counter(s->wb, s->fleet_key, strlen(s->fleet_key),
						    views_fleet);
	if (!err)
		err = tally_writebehind_add_gauge(s->wb, s->listeners_key,
						  strlen(s->listeners_key), listeners);
	if (!err)
		err = tally_writebehind_add_sessions(s->wb, table);
	if (err)
		fprintf(stderr, "server_day: worker %d: write-behind setup: %s\n", s->slot,
			tally_strerror(err));
	return err ? 22 : 0;
}

void day_store_final_flush(struct day_store *s, struct tally_counter *views)
{
	int64_t unflushed = -1, stored = -1, applied;

	int err = tally_writebehind_flush(s->wb, 60000);
	stress_check(s->run, err == TALLY_OK, "worker %d: final flush: %s", s->slot,
		     tally_strerror(err));
	tally_writebehind_unflushed_counter(s->wb, s->views_key, strlen(s->views_key), &unflushed);
	tally_counter_read(views, &applied);
	stress_check(s->run, unflushed == 0, "worker %d: %lld views unflushed after the final "
		     "flush", s->slot, (long long)unflushed);
	if (tally_store_read_counter(s->inner, s->views_key, strlen(s->views_key), &stored))
		stored = 0;
	stress_check(s->run, stored == applied, "worker %d: store holds %lld views, %lld "
		     "applied", s->slot, (long long)stored, (long long)applied);
}

void day_store_reflush(struct day_store *s)
{
	int err = tally_writebehind_flush(s->wb, 60000);

	stress_check(s->run, err == TALLY_OK, "worker %d: flush after the reap: %s", s->slot,
		     tally_strerror(err));
}

void day_store_close(struct day_store *s)
{
	int err = tally_writebehind_destroy(s->wb);

	stress_check(s->run, err == TALLY_OK, "worker %d: flusher shutdown: %s", s->slot,
		     tally_strerror(err));
	tally_lease_provider_destroy(s->leases);
	store_proxy_close(s->proxy);
	free(s);
}
#else
int day_store_register(struct day_store *s, struct tally_session_table *table,
		       struct tally_counter *views, struct tally_counter *views_fleet,
		       struct tally_gauge *listeners)
{
	fprintf(stderr, "server_day: this build has no write-behind flusher "
		"(tally/writebehind.h); run without --store\n");
	return 23;
}

void day_store_final_flush(struct day_store *s, struct tally_counter *views)
{
}

void day_store_reflush(struct day_store *s)
{
}

void day_store_close(struct day_store *s)
{
	tally_lease_provider_destroy(s->leases);
	store_proxy_close(s->proxy);
	free(s);
}
#endif

/* ---- parent side ---------------------------------------------------------------------- */

struct stored_session {
	char id[ID_MAX];
	int64_t listener_count;
	bool active;
};

struct fleet {
	struct stress_run *run;
	const struct day_config *config;
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

static bool ours(const struct fleet *f, const char *id)
{
	return !strncmp(id, f->tag, f->tag_len);
}

static int64_t stored_counter(struct fleet *f, const char *key)
{
	int64_t total;

	return tally_store_read_counter(f->store, key, strlen(key), &total) == TALLY_OK ? total : 0;
}

/* Views: per incarnation, then the fleet key. */
static void check_counters(struct fleet *f)
{
	struct day_shared *shared = f->config->shared;
	int incarnations = atomic_load(&shared->incarnation_count);
	int64_t applied_all = 0, stored_all = 0, loss = 0, bound = 0, slack = 0, killed = 0;
	int64_t fleet_acked = 0, fleet_applied_hi = 0;
	char key[TALLY_STORE_KEY_MAX + 1];

	for (int i = 0; i < incarnations; i++) {
		struct day_incarnation *in = &shared->incarnations[i];
		int64_t applied = 0, pending = 0;

		for (int t = 0; t < f->run->opt.threads; t++) {
			applied += atomic_load(&in->applied[t]);
			pending += atomic_load(&in->pending[t]);
		}
		day_views_key(f->config, i, key, sizeof(key));
		int64_t stored = stored_counter(f, key), acked = atomic_load(&in->watch.acked[0]);
		applied_all += applied;
		stored_all += stored;
		fleet_acked += atomic_load(&in->watch.acked[1]);
		fleet_applied_hi += applied + pending;
		if (!atomic_load(&in->killed)) {
			stress_check(f->run, stored == applied, "incarnation %d (worker %d) lived: "
				     "store %lld views, applied %lld", i, in->slot,
				     (long long)stored, (long long)applied);
			continue;
		}
		killed++;
		stress_check(f->run, acked <= stored && stored <= applied + pending,
			     "incarnation %d (worker %d) killed: store %lld views outside "
			     "[acknowledged %lld, applied %lld + in progress %lld]", i, in->slot,
			     (long long)stored, (long long)acked, (long long)applied,
			     (long long)pending);
		int64_t lost = applied - stored > 0 ? applied - stored : 0;
		loss += lost;
		bound += applied + pending - acked;
		int64_t fleet_low = atomic_load(&in->watch.acked[1]);
		slack += applied + pending - (acked < fleet_low ? acked : fleet_low);
	}
	day_fleet_views_key(f->config, key, sizeof(key));
	int64_t fleet = stored_counter(f, key);
	stress_check(f->run, fleet >= fleet_acked && fleet <= fleet_applied_hi,
		     "fleet views %lld outside [acknowledged %lld, applied %lld]",
		     (long long)fleet, (long long)fleet_acked, (long long)fleet_applied_hi);
	stress_check(f->run, llabs(fleet - stored_all) <= slack, "fleet views %lld, the "
		     "incarnations' keys sum to %lld (killed ones allow %lld)", (long long)fleet,
		     (long long)stored_all, (long long)slack);
	stress_field_int(f->run, "views_applied", applied_all);
	stress_field_int(f->run, "views_in_store", stored_all);
	stress_field_int(f->run, "killed_incarnations", killed);
	stress_field_int(f->run, "views_lost_measured", loss);
	stress_field_int(f->run, "views_lost_bound", bound);
}

/* Reap the abandoned writer once its lease ran out; then the writers and the gauge. */
static int check_writer(const struct tally_store_writer_info *writer, void *arg)
{
	struct fleet *f = arg;
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
	struct day_slot *state = &f->config->shared->slots[slot];
	struct day_incarnation *in = &f->config->shared->incarnations[atomic_load(&state->current)];
	if (atomic_load(&state->abandoned))
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

/* Waits out the abandoned writer's lease and reaps it; then every other worker flushes
 * again, so a live writer that was reaped too (a starved heartbeat) has republished. */
static void reap(struct fleet *f)
{
	struct day_shared *shared = f->config->shared;
	int64_t reaped = 0, abandoned = 0;

	for (int slot = 0; slot < f->config->workers; slot++)
		abandoned += atomic_load(&shared->slots[slot].abandoned);
	if (abandoned) {
		usleep((useconds_t)(f->config->writer_ttl_ms * 1000 + 300000));
		int err = tally_store_reap(f->store, &reaped);
		stress_check(f->run, err == TALLY_OK && reaped >= abandoned, "reap: %s, %lld "
			     "writers reaped, %lld abandoned", tally_strerror(err),
			     (long long)reaped, (long long)abandoned);
	}
	atomic_store(&shared->reflush, 1);
	for (int slot = 0; slot < f->config->workers; slot++) {
		double give_up = stress_now() + 60;

		while (!atomic_load(&shared->slots[slot].abandoned) &&
		       !atomic_load(&shared->slots[slot].reflushed) && stress_now() < give_up)
			usleep(2000);
	}
	stress_field_int(f->run, "writers_reaped", reaped);
}

static void check_gauge(struct fleet *f)
{
	int64_t value = 0, live_writers = 0, expected = 0, fenced = 0;
	char key[TALLY_STORE_KEY_MAX + 1];

	for (int slot = 0; slot < f->config->workers; slot++) {
		struct day_slot *state = &f->config->shared->slots[slot];

		if (!atomic_load(&state->abandoned))
			expected += f->config->shared->incarnations[atomic_load(&state->current)]
					    .final_listeners;
	}
	for (int i = 0; i < atomic_load(&f->config->shared->incarnation_count); i++)
		fenced += atomic_load(&f->config->shared->incarnations[i].fenced);
	tally_store_writers(f->store, check_writer, f);
	day_listeners_key(f->config, key, sizeof(key));
	tally_store_read_gauge(f->store, key, strlen(key), &value, &live_writers);
	stress_check(f->run, value == expected, "global listener gauge %lld after the reap, the "
		     "live workers hold %lld", (long long)value, (long long)expected);
	stress_field_int(f->run, "listeners_global", value);
	stress_field_int(f->run, "live_writers_fenced", fenced);
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
	struct fleet *f = arg;
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
	struct fleet *f = arg;
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

static void check_records(struct fleet *f)
{
	tally_store_sessions(f->store, NULL, gather_session, f);
	tally_store_connections(f->store, NULL, gather_connection, f);
	qsort(f->listener_of, f->listener_len, ID_MAX, compare_ids);
	for (size_t i = 0; i < f->session_len; i++) {
		struct stored_session *stored = &f->sessions[i];
		int64_t present = occurrences(f->listener_of, f->listener_len, stored->id);

		stress_check(f->run, stored->listener_count == present, "stored session %s counts "
			     "%lld listeners, the store holds %lld listener connections", stored->id,
			     (long long)stored->listener_count, (long long)present);
		stress_check(f->run, stored->active || present == 0, "stored session %s is "
			     "inactive with %lld connections", stored->id, (long long)present);
	}
	for (int slot = 0; slot < f->config->workers; slot++) {
		struct day_slot *state = &f->config->shared->slots[slot];
		struct day_incarnation *in =
			&f->config->shared->incarnations[atomic_load(&state->current)];
		int64_t expected = atomic_load(&state->abandoned) ? 0 : in->final_connections;

		stress_check(f->run, f->connections_by_slot[slot] == expected, "worker %d: the "
			     "store holds %lld of its connections, its table %lld", slot,
			     (long long)f->connections_by_slot[slot], (long long)expected);
	}
	stress_field_int(f->run, "stored_sessions", (int64_t)f->session_len);
	stress_field_int(f->run, "stored_listeners", (int64_t)f->listener_len);
	free(f->sessions);
	free(f->listener_of);
}

/* ---- leases --------------------------------------------------------------------------- */

static int check_lease(const char *key, size_t key_len, const struct tally_lease_record *record,
		       void *arg)
{
	struct fleet *f = arg;
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

void day_store_check_fleet(struct stress_run *run, const struct day_config *config)
{
	struct fleet f = { .run = run, .config = config };

	f.tag_len = (size_t)snprintf(f.tag, sizeof(f.tag), "%s-", config->run_tag);
	if (!stress_check(run, store_proxy_open_reader(config->store_url, &f.store) == TALLY_OK,
			  "the parent cannot open the store"))
		return;
	check_counters(&f);
	reap(&f);
	check_gauge(&f);
	check_records(&f);
	tally_store_leases(f.store, check_lease, &f);
	tally_store_close(f.store);
}
