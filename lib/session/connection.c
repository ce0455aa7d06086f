/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Connections (tally/session.h) and the per-session list that indexes them.
 *
 * The list is doubly linked for O(1) unlink. Readers follow only `next`, an atomic pointer
 * loaded with acquire; writers hold the session's list_lock and store `next` with release, so
 * a reader that reaches a node sees its immutable fields and strings. An unlinked node keeps its `next`, so
 * a reader standing on it walks on; it is freed only after a grace period (I3 in
 * session/internal.h), when no reader can stand on it any more.
 */
#include <stdlib.h>
#include <string.h>
#include "internal/alloc.h"
#include "session/internal.h"

/* ---- list (session->list_lock held) -------------------------------------------------- */

static void list_link(struct session *session, struct connection *connection)
{
	struct connection *first =
		atomic_load_explicit(&session->first, memory_order_relaxed); /* lock held */

	tally__lock_assert_held(&session->list_lock);
	connection->prev = NULL;
	atomic_store_explicit(&connection->next, first, memory_order_relaxed); /* unpublished */
	if (first)
		first->prev = connection;
	/* release: publishes the connection and next; pairs with the acquire loads in the walkers */
	atomic_store_explicit(&session->first, connection, memory_order_release);
}

static void list_unlink(struct session *session, struct connection *connection)
{
	struct connection *next = atomic_load_explicit(&connection->next, memory_order_relaxed);

	tally__lock_assert_held(&session->list_lock);
	/* release: `next` was published already; release keeps the chain of publications
	 * visible to a reader that arrives through the new link (pairs with walker acquires) */
	if (connection->prev)
		atomic_store_explicit(&connection->prev->next, next, memory_order_release);
	else
		atomic_store_explicit(&session->first, next, memory_order_release);
	if (next)
		next->prev = connection->prev;
	/* connection->next stays: a reader standing here still reaches the rest of the list */
}

/* ---- helpers ------------------------------------------------------------------------- */

int tally__connection_matches(const struct connection *connection,
			      const struct tally_connection_filter *filter)
{
	if (!filter)
		return 1;
	if (filter->role && connection->role != filter->role)
		return 0;
	return !filter->target_language ||
	       strcmp(tally__connection_language(connection), filter->target_language) == 0;
}

void tally__connection_info_of(const struct connection *connection,
			       struct tally_connection_info *info)
{
	size_t session_len;
	const char *session_id = tally__session_id(connection->session, &session_len);

	tally__session_copy_string(info->connection_id, tally__connection_id(connection),
				   connection->id_len);
	tally__session_copy_string(info->session_id, session_id, session_len);
	tally__session_copy_string(info->target_language,
				   tally__connection_language(connection),
				   connection->language_len);
	tally__session_copy_string(info->client_address, tally__connection_address(connection),
				   connection->address_len);
	info->role = connection->role;
	info->connected_at_ms = connection->connected_at_ms;
	info->expires_at_ms = connection->expires_at_ms;
}

static int check_filter(const struct tally_connection_filter *filter)
{
	size_t len;

	if (!filter)
		return TALLY_OK;
	if (filter->role != 0 && filter->role != TALLY_ROLE_SPEAKER &&
	    filter->role != TALLY_ROLE_LISTENER)
		return TALLY_EINVAL;
	if (filter->target_language)
		return tally__session_check_string(filter->target_language,
						   TALLY_SESSION_LANGUAGE_MAX, 1, &len);
	return TALLY_OK;
}

void tally__connection_free(struct tally_rcu_map_node *node)
{
	tally__free_aligned(caa_container_of(node, struct connection, node));
}

static void reclaim_connection(struct tally_rcu_head *rcu)
{
	struct connection *connection = caa_container_of(rcu, struct connection, rcu);

	/* F1 (session/internal.h): a queued connection is the flusher's to free. No push can
	 * come after the grace period, so QUEUED only clears now: a load that sees it clear
	 * (acquire: after the flusher's last read) needs no RMW, the path of every connection
	 * of a table without a flusher. */
	if ((atomic_load_explicit(&connection->feed_flags, memory_order_acquire) &
	     TALLY_FEED_QUEUED) &&
	    (atomic_fetch_or_explicit(&connection->feed_flags, TALLY_FEED_ZOMBIE,
				      memory_order_acq_rel) &
	     TALLY_FEED_QUEUED))
		return;
	tally__free_aligned(connection);
}

void tally__connection_feed_done(struct connection *connection)
{
	/* acq_rel: acquires the removal whose OR saw QUEUED (F2); ZOMBIE: reclaim ran (F1) */
	if (atomic_fetch_and_explicit(&connection->feed_flags, (uint8_t)~TALLY_FEED_QUEUED,
				      memory_order_acq_rel) &
	    TALLY_FEED_ZOMBIE)
		tally__free_aligned(connection);
}

struct connection *tally__connection_find(struct tally_session_table *table, const char *id,
					  size_t len)
{
	struct tally_rcu_map_node *node = tally__rcu_map_lookup(&table->connections, id, len);

	return node ? caa_container_of(node, struct connection, node) : NULL;
}

int tally__connection_remove(struct tally_session_table *table, struct connection *connection,
			     int list_locked)
{
	struct session *session = connection->session;

	if (tally__rcu_map_remove(&table->connections, &connection->node) != TALLY_OK)
		return TALLY_ENOTFOUND; /* another remover won: it unlinks and counts (I3) */
	if (!list_locked)
		tally__lock_acquire(&session->list_lock);
	list_unlink(session, connection);
	if (connection->role == TALLY_ROLE_LISTENER)
		tally__session_listeners_move(session, -1); /* matched by the link's inc */
	if (!list_locked)
		tally__lock_release(&session->list_lock);
	tally_counter_sub(&table->connection_total, 1); /* cannot leave int64: ignored */
	tally_session_feed_connection(table, connection);
	tally__rcu_retire(&connection->rcu, reclaim_connection);
	return TALLY_OK;
}

int64_t tally__connection_remove_all(struct tally_session_table *table, struct session *session,
				     const struct tally_connection_filter *filter)
{
	struct connection *connection, *next;
	int64_t removed = 0;

	tally__lock_assert_held(&session->list_lock);
	for (connection = atomic_load_explicit(&session->first, memory_order_relaxed);
	     connection; connection = next) {
		/* relaxed: list_lock held, we are the only writer */
		next = atomic_load_explicit(&connection->next, memory_order_relaxed);
		if (tally__connection_matches(connection, filter) &&
		    tally__connection_remove(table, connection, 1) == TALLY_OK)
			removed++;
		/* ENOTFOUND: a concurrent remover owns it and unlinks it once it gets the lock */
	}
	return removed;
}

/* ---- create / join ------------------------------------------------------------------- */

/* The lengths of a create's strings, measured once by the check. */
struct connection_lengths {
	size_t id, session, language, address;
};

static int check_params(const struct tally_connection_params *params, int role,
			struct connection_lengths *len)
{
	int err;

	if (!params)
		return TALLY_EINVAL;
	if (role != TALLY_ROLE_SPEAKER && role != TALLY_ROLE_LISTENER)
		return TALLY_EINVAL;
	if ((err = tally__session_check_string(params->connection_id, TALLY_SESSION_ID_MAX, 1,
					       &len->id)) ||
	    (err = tally__session_check_string(params->session_id, TALLY_SESSION_ID_MAX, 1,
					       &len->session)) ||
	    (err = tally__session_check_string(params->target_language,
					       TALLY_SESSION_LANGUAGE_MAX,
					       role == TALLY_ROLE_LISTENER, &len->language)) ||
	    (err = tally__session_check_string(params->client_address,
					       TALLY_SESSION_ADDRESS_MAX, 0, &len->address)))
		return err;
	return params->ttl_ms < 0 ? TALLY_EINVAL : TALLY_OK;
}

/* The fixed part and the strings with their NULs, packed. */
static size_t connection_size(const struct connection_lengths *len)
{
	return sizeof(struct connection) + len->id + 1 + len->language + 1 + len->address + 1;
}

static struct connection *new_connection(struct tally_session_table *table,
					 const struct tally_connection_params *params, int role,
					 struct session *session,
					 const struct connection_lengths *len)
{
	struct connection *connection = tally__alloc_aligned(connection_size(len));
	char *text;

	if (!connection)
		return NULL;
	connection->id_len = (uint8_t)len->id; /* checked: <= UINT8_MAX (static assert) */
	connection->language_len = (uint8_t)len->language;
	connection->address_len = (uint8_t)len->address;
	text = tally__session_pack_string(connection->text, params->connection_id, len->id);
	text = tally__session_pack_string(text, params->target_language, len->language);
	tally__session_pack_string(text, params->client_address, len->address);
	connection->role = (uint8_t)role;
	connection->connected_at_ms = tally__session_now(table);
	connection->expires_at_ms = tally__session_expiry(
		connection->connected_at_ms, params->ttl_ms, table->config.connection_ttl_ms);
	connection->session = session;
	atomic_init(&connection->feed_flags, 0);
	tally__rcu_map_node_init(&connection->node, connection->text, len->id);
	return connection;
}

/* Read lock held. I2: the active check, the insert, the link and the increment are one
 * hold of list_lock, so a session going inactive either sees this connection in its sweep or
 * makes this call fail. */
static int insert_connection(struct tally_session_table *table, struct session *session,
			     struct connection *connection)
{
	int err = TALLY_OK;

	tally__lock_acquire(&session->list_lock);
	/* relaxed: active is only written under list_lock, which we hold */
	if (!atomic_load_explicit(&session->active, memory_order_relaxed))
		err = tally__rcu_map_node_removed(&session->node) ? TALLY_ENOTFOUND
								  : TALLY_EINACTIVE;
	else if (tally__rcu_map_insert_unique(&table->connections, &connection->node) !=
		 &connection->node)
		err = TALLY_EEXIST;
	if (err == TALLY_OK) {
		list_link(session, connection);
		if (connection->role == TALLY_ROLE_LISTENER)
			tally__session_listeners_move(session, 1);
	}
	tally__lock_release(&session->list_lock);
	return err;
}

static int create_connection(struct tally_session_table *table,
			     const struct tally_connection_params *params, int role)
{
	struct connection_lengths len;
	struct session *session;
	struct connection *connection;
	int err;

	if (!table)
		return TALLY_EINVAL;
	if ((err = check_params(params, role, &len)) != TALLY_OK)
		return err;
	tally__rcu_read_lock();
	session = tally__session_find(table, params->session_id, len.session);
	if (session) /* the lookup read the lock's line; ask for it writable now, so that the
		      * other cores' copies are invalidated while new_connection runs */
		__builtin_prefetch(&session->list_lock, 1);
	if (!session) {
		err = TALLY_ENOTFOUND;
	} else if (!atomic_load_explicit(&session->active, memory_order_acquire)) {
		err = TALLY_EINACTIVE; /* fast refusal; the locked check below is the real one */
	} else if (!(connection = new_connection(table, params, role, session, &len))) {
		err = TALLY_ENOMEM;
	} else if ((err = insert_connection(table, session, connection)) != TALLY_OK) {
		tally__free_aligned(connection); /* never published */
	} else {
		tally_counter_inc(&table->connection_total);
		tally_session_feed_connection(table, connection); /* after the lock: F2 holds */
	}
	tally__rcu_read_unlock();
	return err;
}

int tally_session_join(struct tally_session_table *table,
		       const struct tally_connection_params *params)
{
	return create_connection(table, params, TALLY_ROLE_LISTENER);
}

int tally_connection_create(struct tally_session_table *table,
			    const struct tally_connection_params *params)
{
	return create_connection(table, params, params ? params->role : 0);
}

/* ---- get / delete -------------------------------------------------------------------- */

int tally_connection_get(struct tally_session_table *table, const char *connection_id,
			 struct tally_connection_info *info)
{
	struct connection *connection;
	size_t len;
	int err;

	if (!table || !info)
		return TALLY_EINVAL;
	if ((err = tally__session_check_string(connection_id, TALLY_SESSION_ID_MAX, 1, &len)))
		return err;
	tally__rcu_read_lock();
	connection = tally__connection_find(table, connection_id, len);
	if (connection)
		tally__connection_info_of(connection, info);
	tally__rcu_read_unlock();
	return connection ? TALLY_OK : TALLY_ENOTFOUND;
}

int tally_session_leave(struct tally_session_table *table, const char *connection_id)
{
	struct connection *connection;
	size_t len;
	int err;

	if (!table)
		return TALLY_EINVAL;
	if ((err = tally__session_check_string(connection_id, TALLY_SESSION_ID_MAX, 1, &len)))
		return err;
	tally__rcu_read_lock();
	connection = tally__connection_find(table, connection_id, len);
	if (connection) /* the session's first line (lock, list, count) is cold here: the
			 * join was long ago; overlap its miss with the map removal */
		__builtin_prefetch(&connection->session->list_lock, 1);
	err = connection ? tally__connection_remove(table, connection, 0) : TALLY_ENOTFOUND;
	tally__rcu_read_unlock();
	return err;
}

int tally_connection_delete(struct tally_session_table *table, const char *connection_id)
{
	return tally_session_leave(table, connection_id);
}

int tally_connection_delete_batch(struct tally_session_table *table,
				  const char *const *connection_ids, size_t count,
				  size_t *deleted)
{
	size_t removed = 0;

	if (!table || (count > 0 && !connection_ids))
		return TALLY_EINVAL;
	for (size_t i = 0; i < count; i++)
		if (tally_session_leave(table, connection_ids[i]) == TALLY_OK)
			removed++;
	if (deleted)
		*deleted = removed;
	return TALLY_OK;
}

/* ---- walks of one session's list ------------------------------------------------------ */

/* Read lock held: calls fn on each matching connection until it returns non-zero. */
static void walk(struct session *session, const struct tally_connection_filter *filter,
		 int (*fn)(struct connection *connection, void *arg), void *arg)
{
	struct connection *connection;

	/* acquire: pairs with the release stores of list_link/list_unlink */
	for (connection = atomic_load_explicit(&session->first, memory_order_acquire); connection;
	     connection = atomic_load_explicit(&connection->next, memory_order_acquire))
		if (tally__connection_matches(connection, filter) && fn(connection, arg))
			break;
}

/* Validates and finds the session for a walk; read lock held on success. */
static int begin_walk(struct tally_session_table *table, const char *session_id,
		      const struct tally_connection_filter *filter, struct session **session)
{
	size_t len;
	int err;

	if (!table)
		return TALLY_EINVAL;
	if ((err = tally__session_check_string(session_id, TALLY_SESSION_ID_MAX, 1, &len)) ||
	    (err = check_filter(filter)))
		return err;
	tally__rcu_read_lock();
	*session = tally__session_find(table, session_id, len);
	if (!*session) {
		tally__rcu_read_unlock();
		return TALLY_ENOTFOUND;
	}
	return TALLY_OK;
}

struct visit_state {
	tally_connection_fn fn;
	void *arg;
	size_t calls;
};

static int visit_one(struct connection *connection, void *arg)
{
	struct visit_state *state = arg;
	struct tally_connection_info info; /* the callback's copy, valid during the call */

	if (tally__rcu_map_node_removed(&connection->node))
		return 0; /* removed, not yet unlinked: already gone for callers */
	state->calls++;
	if (!state->fn)
		return 0;
	tally__connection_info_of(connection, &info);
	return state->fn(&info, state->arg);
}

size_t tally__connection_visit_session(struct session *session,
				       const struct tally_connection_filter *filter,
				       tally_connection_fn fn, void *arg)
{
	struct visit_state state = { fn, arg, 0 };

	walk(session, filter, visit_one, &state);
	return state.calls;
}

int tally_session_visit_connections(struct tally_session_table *table, const char *session_id,
				    const struct tally_connection_filter *filter,
				    tally_connection_fn fn, void *arg, size_t *visited)
{
	struct visit_state state = { fn, arg, 0 };
	struct session *session;
	int err;

	if (!fn)
		return TALLY_EINVAL;
	if ((err = begin_walk(table, session_id, filter, &session)) != TALLY_OK)
		return err;
	walk(session, filter, visit_one, &state);
	tally__rcu_read_unlock();
	if (visited)
		*visited = state.calls;
	return TALLY_OK;
}

int tally_session_count_connections(struct tally_session_table *table, const char *session_id,
				    const struct tally_connection_filter *filter, size_t *count)
{
	struct visit_state state = { NULL, NULL, 0 };
	struct session *session;
	int err;

	if (!count)
		return TALLY_EINVAL;
	if ((err = begin_walk(table, session_id, filter, &session)) != TALLY_OK)
		return err;
	walk(session, filter, visit_one, &state);
	tally__rcu_read_unlock();
	*count = state.calls;
	return TALLY_OK;
}

struct languages_state {
	char (*languages)[TALLY_SESSION_LANGUAGE_MAX + 1];
	size_t cap, count;
	int full;
};

static int collect_language(struct connection *connection, void *arg)
{
	struct languages_state *state = arg;
	const char *language = tally__connection_language(connection);

	if (tally__rcu_map_node_removed(&connection->node))
		return 0;
	for (size_t i = 0; i < state->count; i++)
		if (strcmp(state->languages[i], language) == 0)
			return 0;
	if (state->count == state->cap) {
		state->full = 1;
		return 1;
	}
	tally__session_copy_string(state->languages[state->count++], language,
				   connection->language_len);
	return 0;
}

int tally_session_target_languages(struct tally_session_table *table, const char *session_id,
				   char (*languages)[TALLY_SESSION_LANGUAGE_MAX + 1], size_t cap,
				   size_t *count)
{
	const struct tally_connection_filter listeners = { TALLY_ROLE_LISTENER, NULL };
	struct languages_state state = { languages, cap, 0, 0 };
	struct session *session;
	int err;

	if (!count || (cap > 0 && !languages))
		return TALLY_EINVAL;
	if ((err = begin_walk(table, session_id, NULL, &session)) != TALLY_OK)
		return err;
	walk(session, &listeners, collect_language, &state);
	tally__rcu_read_unlock();
	*count = state.count;
	return state.full ? TALLY_EFULL : TALLY_OK;
}

int tally_session_delete_connections(struct tally_session_table *table, const char *session_id,
				     const struct tally_connection_filter *filter,
				     int64_t *deleted)
{
	struct session *session;
	int64_t removed;
	int err;

	if ((err = begin_walk(table, session_id, filter, &session)) != TALLY_OK)
		return err;
	tally__lock_acquire(&session->list_lock);
	removed = tally__connection_remove_all(table, session, filter);
	tally__lock_release(&session->list_lock);
	tally__rcu_read_unlock();
	if (deleted)
		*deleted = removed;
	return TALLY_OK;
}
