/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Session table (tally/session.h): the table, sessions, the speaker lifecycle and TTL sweeps.
 * Connections and the per-session list live in lib/session/connection.c; the invariants both files
 * keep are written in session/internal.h.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "internal/alloc.h"
#include "session/internal.h"

/* ---- helpers ------------------------------------------------------------------------- */

static int64_t realtime_ms(void *unused)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int64_t tally__session_now(const struct tally_session_table *table)
{
	return table->config.now_ms(table->config.clock_arg);
}

int64_t tally__session_expiry(int64_t now, int64_t ttl, int64_t default_ttl)
{
	if (ttl == 0)
		ttl = default_ttl;
	if (ttl == 0)
		return 0;
	return now > INT64_MAX - ttl ? INT64_MAX : now + ttl;
}

static int expired(int64_t expires_at_ms, int64_t now)
{
	return expires_at_ms != 0 && expires_at_ms <= now;
}

struct session *tally__session_find(struct tally_session_table *table, const char *id,
				    size_t len)
{
	struct tally_rcu_map_node *node = tally__rcu_map_lookup(&table->sessions, id, len);

	return node ? caa_container_of(node, struct session, node) : NULL;
}

/* The session's packed strings after its id (immutable once published). */
static const char *user_id_of(const struct session *session)
{
	return session->text + (session->id_len > SESSION_SHORT_ID ? session->id_len + 1 : 0);
}

static const char *language_of(const struct session *session)
{
	return user_id_of(session) + session->user_len + 1;
}

static const char *tier_of(const struct session *session)
{
	return language_of(session) + session->language_len + 1;
}

/* ---- session objects ------------------------------------------------------------------ */

static void free_speaker_version(struct tally_rcu_head *rcu)
{
	free(caa_container_of(rcu, struct speaker_version, rcu));
}

static struct speaker_version *new_speaker_version(const char *connection_id, size_t len)
{
	struct speaker_version *version =
		malloc(offsetof(struct speaker_version, connection_id) + len + 1);

	if (version) {
		version->len = (uint8_t)len; /* checked: <= TALLY_SESSION_ID_MAX (static assert) */
		tally__session_copy_string(version->connection_id, connection_id, len);
	}
	return version;
}

static void free_session_object(struct session *session)
{
	/* relaxed: reclaim runs after a grace period, which orders every earlier store */
	struct session_cold *cold = tally__session_cold(session);

	free(atomic_load_explicit(&cold->speaker, memory_order_relaxed));
	tally__free_aligned(cold); /* the allocation starts with the cold line */
}

static void free_session(struct tally_rcu_map_node *node)
{
	free_session_object(caa_container_of(node, struct session, node));
}

static void reclaim_session(struct tally_rcu_head *rcu)
{
	struct session_cold *cold = caa_container_of(rcu, struct session_cold, rcu);

	/* F1: a session in the change feed is the flusher's to free (acq_rel: pairs with
	 * tally__session_feed_done's RMW, which frees it then); no RMW when it is not queued,
	 * as in reclaim_connection */
	if ((atomic_load_explicit(&cold->feed_flags, memory_order_acquire) & TALLY_FEED_QUEUED) &&
	    (atomic_fetch_or_explicit(&cold->feed_flags, TALLY_FEED_ZOMBIE,
				      memory_order_acq_rel) &
	     TALLY_FEED_QUEUED))
		return;
	free_session_object(tally__session_of_cold(cold));
}

/* ---- the change feed (session/internal.h F1, F2) -------------------------------------- */

void tally__feed_push(struct __cds_wfcq_head *head, struct cds_wfcq_tail *tail,
		      _Atomic uint8_t *flags, struct cds_wfcq_node *node)
{
	/* acq_rel: the release orders the change before it (F2); only the OR that sets QUEUED
	 * pushes, so an object is in the queue at most once */
	if (atomic_fetch_or_explicit(flags, TALLY_FEED_QUEUED, memory_order_acq_rel) &
	    TALLY_FEED_QUEUED)
		return;
	cds_wfcq_node_init(node);
	cds_wfcq_enqueue(head, tail, node);
}

void tally__session_feed_done(struct session *session)
{
	struct session_cold *cold = tally__session_cold(session);

	/* acq_rel: acquires the changes whose OR saw QUEUED (F2); ZOMBIE: reclaim ran (F1) */
	if (atomic_fetch_and_explicit(&cold->feed_flags, (uint8_t)~TALLY_FEED_QUEUED,
				      memory_order_acq_rel) &
	    TALLY_FEED_ZOMBIE)
		free_session_object(session);
}

/* The lengths of a create's strings, measured once by the check. */
struct session_lengths {
	size_t id, speaker, user, language, tier;
};

static int check_session_params(const struct tally_session_params *params,
				struct session_lengths *len)
{
	int err;

	if (!params)
		return TALLY_EINVAL;
	if ((err = tally__session_check_string(params->session_id, TALLY_SESSION_ID_MAX, 1,
					       &len->id)) ||
	    (err = tally__session_check_string(params->speaker_connection_id,
					       TALLY_SESSION_ID_MAX, 1, &len->speaker)) ||
	    (err = tally__session_check_string(params->speaker_user_id, TALLY_SESSION_ID_MAX, 0,
					       &len->user)) ||
	    (err = tally__session_check_string(
		     params->source_language, TALLY_SESSION_LANGUAGE_MAX, 1, &len->language)) ||
	    (err = tally__session_check_string(params->quality_tier, TALLY_SESSION_TIER_MAX, 0,
					       &len->tier)))
		return err;
	return params->ttl_ms < 0 ? TALLY_EINVAL : TALLY_OK;
}

/* The cold line, the first line and the packed strings with their NULs. */
static size_t session_size(const struct session_lengths *len)
{
	return SESSION_COLD_SPACE + sizeof(struct session) +
	       (len->id > SESSION_SHORT_ID ? len->id + 1 : 0) +
	       len->user + 1 + len->language + 1 + len->tier + 1;
}

static struct session *new_session(struct tally_session_table *table,
				   const struct tally_session_params *params,
				   const struct session_lengths *len)
{
	struct session_cold *cold = tally__alloc_aligned(session_size(len));
	struct speaker_version *speaker =
		new_speaker_version(params->speaker_connection_id, len->speaker);
	struct session *session;
	const char *key;
	size_t key_len;
	char *text;

	if (!cold || !speaker) {
		tally__free_aligned(cold);
		free(speaker);
		return NULL;
	}
	session = tally__session_of_cold(cold);
	/* checked lengths: each <= UINT8_MAX (static assert in session/internal.h) */
	session->id_len = (uint8_t)len->id;
	session->user_len = (uint8_t)len->user;
	session->language_len = (uint8_t)len->language;
	cold->tier_len = (uint8_t)len->tier;
	text = session->text;
	if (len->id <= SESSION_SHORT_ID)
		memcpy(session->short_id, params->session_id, len->id);
	else
		text = tally__session_pack_string(text, params->session_id, len->id);
	text = tally__session_pack_string(text, params->speaker_user_id, len->user);
	text = tally__session_pack_string(text, params->source_language, len->language);
	tally__session_pack_string(text, params->quality_tier, len->tier);
	cold->created_at_ms = tally__session_now(table);
	cold->expires_at_ms = tally__session_expiry(cold->created_at_ms, params->ttl_ms,
						    table->config.session_ttl_ms);
	atomic_init(&session->active, 1);
	atomic_init(&cold->speaker, speaker);
	atomic_init(&cold->feed_flags, 0);
	atomic_init(&session->first, NULL);
	atomic_init(&session->listener_count, 0);
	tally__lock_init(&session->list_lock);
	key = tally__session_id(session, &key_len); /* short_id or the packed copy */
	tally__rcu_map_node_init(&session->node, key, key_len);
	return session;
}

/* list_lock held: I2, the one place active goes 1 -> 0 */
static void deactivate_locked(struct tally_session_table *table, struct session *session)
{
	tally__lock_assert_held(&session->list_lock);
	/* release: pairs with the acquire loads of is_active/get/join's fast check */
	atomic_store_explicit(&session->active, 0, memory_order_release);
	tally_session_feed_session(table, session);
}

/* Read lock held. Removes an already looked-up session: ENOTFOUND if another call did. */
static int delete_session(struct tally_session_table *table, struct session *session,
			  int64_t *connections_deleted)
{
	int64_t removed;

	if (tally__rcu_map_remove(&table->sessions, &session->node) != TALLY_OK)
		return TALLY_ENOTFOUND;
	tally__lock_acquire(&session->list_lock);
	deactivate_locked(table, session);
	removed = tally__connection_remove_all(table, session, NULL);
	tally__lock_release(&session->list_lock);
	tally_counter_sub(&table->session_total, 1); /* cannot leave int64: ignored */
	tally__rcu_retire(&tally__session_cold(session)->rcu, reclaim_session); /* I4 */
	if (connections_deleted)
		*connections_deleted = removed;
	return TALLY_OK;
}

/* Validates the id and looks the session up; on TALLY_OK the read lock is held. */
static int find_locked(struct tally_session_table *table, const char *session_id,
		       struct session **session)
{
	size_t len;
	int err;

	if (!table)
		return TALLY_EINVAL;
	if ((err = tally__session_check_string(session_id, TALLY_SESSION_ID_MAX, 1, &len)))
		return err;
	tally__rcu_read_lock();
	*session = tally__session_find(table, session_id, len);
	if (*session)
		return TALLY_OK;
	tally__rcu_read_unlock();
	return TALLY_ENOTFOUND;
}

/* ---- table ----------------------------------------------------------------------------- */

int tally_session_table_create(struct tally_session_table **out,
			       const struct tally_session_config *config)
{
	struct tally_session_table *table;

	if (!out || (config && (config->session_ttl_ms < 0 || config->connection_ttl_ms < 0)))
		return TALLY_EINVAL;
	table = calloc(1, sizeof(*table));
	if (!table)
		return TALLY_ENOMEM;
	if (config)
		table->config = *config;
	if (!table->config.now_ms) {
		table->config.now_ms = realtime_ms;
		table->config.clock_arg = NULL;
	}
	/* Each step undoes the ones before it on failure (a failed create changes nothing). */
	if (tally_counter_init(&table->session_total, 0) != TALLY_OK)
		goto fail_table;
	if (tally_counter_init(&table->connection_total, 0) != TALLY_OK)
		goto fail_session_total;
	if (tally__rcu_map_init_sized(&table->sessions, table->config.expected_sessions) !=
	    TALLY_OK)
		goto fail_connection_total;
	if (tally__rcu_map_init_sized(&table->connections,
				      table->config.expected_connections) != TALLY_OK)
		goto fail_sessions;
	if (tally__sweeper_init(&table->sweeper) != TALLY_OK)
		goto fail_connections;
	*out = table;
	return TALLY_OK;

fail_connections:
	tally__rcu_map_destroy(&table->connections, NULL);
fail_sessions:
	tally__rcu_map_destroy(&table->sessions, NULL);
fail_connection_total:
	tally_counter_destroy(&table->connection_total);
fail_session_total:
	tally_counter_destroy(&table->session_total);
fail_table:
	free(table);
	return TALLY_ENOMEM;
}

int tally_session_table_destroy(struct tally_session_table *table)
{
	int err;

	if (!table)
		return TALLY_EINVAL;
	if (atomic_load_explicit(&table->feed, memory_order_relaxed))
		return TALLY_EBUSY; /* a flusher is attached: it must detach first */
	if ((err = tally_rcu_barrier()) != TALLY_OK)
		return err; /* inside a read-side section: nothing done */
	tally__sweeper_destroy(&table->sweeper); /* stops it first if it runs */
	/* connections first: their reclaims are queued before the sessions they point at */
	tally__rcu_map_destroy(&table->connections, tally__connection_free);
	tally__rcu_map_destroy(&table->sessions, free_session);
	tally_counter_destroy(&table->connection_total);
	tally_counter_destroy(&table->session_total);
	free(table);
	return TALLY_OK;
}

int tally_session_table_counts(struct tally_session_table *table, int64_t *sessions,
			       int64_t *connections)
{
	if (!table)
		return TALLY_EINVAL;
	if (sessions)
		tally_counter_read(&table->session_total, sessions);
	if (connections)
		tally_counter_read(&table->connection_total, connections);
	return TALLY_OK;
}

/* ---- sessions -------------------------------------------------------------------------- */

int tally_session_create(struct tally_session_table *table,
			 const struct tally_session_params *params)
{
	struct session_lengths len;
	struct session *session;
	int err;

	if (!table)
		return TALLY_EINVAL;
	if ((err = check_session_params(params, &len)) != TALLY_OK)
		return err;
	session = new_session(table, params, &len);
	if (!session)
		return TALLY_ENOMEM;
	tally__rcu_read_lock();
	if (tally__rcu_map_insert_unique(&table->sessions, &session->node) != &session->node) {
		err = TALLY_EEXIST;
	} else {
		tally_counter_inc(&table->session_total);
		tally_session_feed_session(table, session);
	}
	tally__rcu_read_unlock();
	if (err != TALLY_OK)
		free_session(&session->node); /* never published */
	return err;
}

int tally_session_get(struct tally_session_table *table, const char *session_id,
		      struct tally_session_info *info)
{
	struct session *session;
	struct session_cold *cold;
	struct speaker_version *speaker;
	const char *id;
	size_t id_len;
	int err;

	if (!info)
		return TALLY_EINVAL;
	if ((err = find_locked(table, session_id, &session)) != TALLY_OK)
		return err;
	cold = tally__session_cold(session);
	/* the strings are immutable once published; each is copied by its stored length */
	id = tally__session_id(session, &id_len);
	tally__session_copy_string(info->session_id, id, id_len);
	tally__session_copy_string(info->speaker_user_id, user_id_of(session),
				   session->user_len);
	tally__session_copy_string(info->source_language, language_of(session),
				   session->language_len);
	tally__session_copy_string(info->quality_tier, tier_of(session), cold->tier_len);
	info->created_at_ms = cold->created_at_ms;
	info->expires_at_ms = cold->expires_at_ms;
	/* acquire: pairs with set_speaker's exchange, so the version's bytes are visible */
	speaker = atomic_load_explicit(&cold->speaker, memory_order_acquire);
	tally__session_copy_string(info->speaker_connection_id, speaker->connection_id,
				   speaker->len);
	info->active = atomic_load_explicit(&session->active, memory_order_acquire);
	info->listener_count = tally_session_listeners(session);
	tally__rcu_read_unlock();
	return TALLY_OK;
}

bool tally_session_exists(struct tally_session_table *table, const char *session_id)
{
	struct session *session;

	if (find_locked(table, session_id, &session) != TALLY_OK)
		return false;
	tally__rcu_read_unlock();
	return true;
}

bool tally_session_is_active(struct tally_session_table *table, const char *session_id)
{
	struct session *session;
	bool active;

	if (find_locked(table, session_id, &session) != TALLY_OK)
		return false;
	/* acquire: pairs with deactivate_locked's release */
	active = atomic_load_explicit(&session->active, memory_order_acquire);
	tally__rcu_read_unlock();
	return active;
}

int tally_session_listener_count(struct tally_session_table *table, const char *session_id,
				 int64_t *count)
{
	struct session *session;
	int err;

	if (!count)
		return TALLY_EINVAL;
	if ((err = find_locked(table, session_id, &session)) != TALLY_OK)
		return err;
	*count = tally_session_listeners(session);
	tally__rcu_read_unlock();
	return TALLY_OK;
}

int tally_session_set_speaker(struct tally_session_table *table, const char *session_id,
			      const char *speaker_connection_id)
{
	struct session *session;
	struct speaker_version *version, *old;
	size_t len;
	int err;

	if ((err = tally__session_check_string(speaker_connection_id, TALLY_SESSION_ID_MAX, 1,
					       &len)))
		return err;
	if ((err = find_locked(table, session_id, &session)) != TALLY_OK)
		return err;
	if (!atomic_load_explicit(&session->active, memory_order_acquire)) {
		err = TALLY_EINACTIVE;
	} else if (!(version = new_speaker_version(speaker_connection_id, len))) {
		err = TALLY_ENOMEM;
	} else {
		/* acq_rel: release publishes the new bytes (pairs with get's acquire); acquire
		 * orders the old version's last readers before we retire it */
		old = atomic_exchange_explicit(&tally__session_cold(session)->speaker, version,
					       memory_order_acq_rel);
		tally__rcu_retire(&old->rcu, free_speaker_version);
		tally_session_feed_session(table, session);
	}
	tally__rcu_read_unlock();
	return err;
}

int tally_session_mark_inactive(struct tally_session_table *table, const char *session_id)
{
	struct session *session;
	int err;

	if ((err = find_locked(table, session_id, &session)) != TALLY_OK)
		return err;
	tally__lock_acquire(&session->list_lock);
	deactivate_locked(table, session);
	tally__lock_release(&session->list_lock);
	tally__rcu_read_unlock();
	return TALLY_OK;
}

int tally_session_delete(struct tally_session_table *table, const char *session_id,
			 int64_t *connections_deleted)
{
	struct session *session;
	int err;

	if ((err = find_locked(table, session_id, &session)) != TALLY_OK)
		return err;
	err = delete_session(table, session, connections_deleted);
	tally__rcu_read_unlock();
	return err;
}

/* ---- speaker disconnect ---------------------------------------------------------------- */

struct notify_state {
	tally_connection_fn notify;
	void *arg;
	struct tally_speaker_disconnect_result *result;
};

static int notify_listener(const struct tally_connection_info *listener, void *arg)
{
	struct notify_state *state = arg;

	state->result->listeners++;
	if (state->notify && state->notify(listener, state->arg) != 0)
		state->result->notify_failed++; /* a gone client: go on with the rest */
	else
		state->result->notified++;
	return 0;
}

int tally_session_speaker_disconnect(struct tally_session_table *table, const char *session_id,
				     tally_connection_fn notify, void *notify_arg,
				     struct tally_speaker_disconnect_result *result)
{
	const struct tally_connection_filter listeners = { TALLY_ROLE_LISTENER, NULL };
	struct tally_speaker_disconnect_result local = { 0 };
	struct notify_state state = { notify, notify_arg, &local };
	struct session *session;
	int err;

	if ((err = find_locked(table, session_id, &session)) != TALLY_OK)
		return err;
	/* 1. No join lands after this (I2), so the set notified below only shrinks. */
	tally__lock_acquire(&session->list_lock);
	deactivate_locked(table, session);
	tally__lock_release(&session->list_lock);
	/* 2. Notify without the lock: a callback may disconnect connections itself. */
	tally__connection_visit_session(session, &listeners, notify_listener, &state);
	/* 3. Remove everything that is left (listeners and the speaker's own connection). */
	tally__lock_acquire(&session->list_lock);
	local.connections_deleted = tally__connection_remove_all(table, session, NULL);
	tally__lock_release(&session->list_lock);
	local.duration_ms =
		tally__session_now(table) - tally__session_cold(session)->created_at_ms;
	tally__rcu_read_unlock();
	if (result)
		*result = local;
	return TALLY_OK;
}

/* ---- TTL sweeps ------------------------------------------------------------------------ */

struct sweep_state {
	struct tally_session_table *table;
	int64_t now;
	struct tally_session_sweep_result result;
};

static int sweep_connection(struct tally_rcu_map_node *node, void *arg)
{
	struct sweep_state *state = arg;
	struct connection *connection = caa_container_of(node, struct connection, node);

	if (expired(connection->expires_at_ms, state->now) &&
	    tally__connection_remove(state->table, connection, 0) == TALLY_OK)
		state->result.connections_deleted++;
	return 0;
}

static int sweep_session(struct tally_rcu_map_node *node, void *arg)
{
	struct sweep_state *state = arg;
	struct session *session = caa_container_of(node, struct session, node);
	int64_t removed = 0;

	if (expired(tally__session_cold(session)->expires_at_ms, state->now) &&
	    delete_session(state->table, session, &removed) == TALLY_OK) {
		state->result.sessions_deleted++;
		state->result.connections_deleted += removed;
	}
	return 0;
}

int tally_session_table_sweep(struct tally_session_table *table,
			      struct tally_session_sweep_result *result)
{
	struct sweep_state state = { table, 0, { 0, 0 } };

	if (!table)
		return TALLY_EINVAL;
	state.now = tally__session_now(table);
	tally__rcu_read_lock();
	tally__rcu_map_visit(&table->connections, sweep_connection, &state);
	tally__rcu_map_visit(&table->sessions, sweep_session, &state);
	tally__rcu_read_unlock();
	if (result)
		*result = state.result;
	return TALLY_OK;
}

/* The sweeper thread may block, unlike every table call: it grows the maps to one bucket
 * per entry (tally__rcu_map_grow_for, a synchronous cds_lfht_resize), which liburcu's own
 * lazy resize leaves at up to 8 entries per bucket, and so a table created without size
 * hints reaches the hinted table's chain lengths (docs/session.md, "Growth"). A no-op once
 * the maps are that large. */
static void grow_in_background(struct tally_session_table *table)
{
	int64_t sessions, connections;

	/* cds_lfht_resize takes read-side sections in this thread: it must be registered (the
	 * first sweep, which would register it, comes after) */
	tally__rcu_ensure_registered();
	tally_session_table_counts(table, &sessions, &connections);
	tally__rcu_map_grow_for(&table->sessions, sessions > 0 ? (size_t)sessions : 0);
	tally__rcu_map_grow_for(&table->connections, connections > 0 ? (size_t)connections : 0);
}

static void sweep_in_background(void *table)
{
	grow_in_background(table);
	tally_session_table_sweep(table, NULL);
}

int tally_session_sweeper_start(struct tally_session_table *table, int64_t interval_ms)
{
	if (!table || interval_ms <= 0)
		return TALLY_EINVAL;
	/* ms to ns; an interval past INT64_MAX ns (292 years) is as good as never. */
	return tally__sweeper_start(&table->sweeper,
				    interval_ms > INT64_MAX / 1000000 ? INT64_MAX
								       : interval_ms * 1000000,
				    sweep_in_background, table);
}

int tally_session_sweeper_stop(struct tally_session_table *table)
{
	return table ? tally__sweeper_stop(&table->sweeper) : TALLY_EINVAL;
}
