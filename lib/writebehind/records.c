/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Session tables behind a flusher (tally/writebehind.h): attaching the change feed
 * (session/internal.h F1, F2), collecting the ids it pushes into the pending set (W3, one
 * entry per kind and id, oldest first), reading each one's latest state into a batch, the
 * tombstone bound, and the reconcile that replaces tombstones dropped past the bound.
 */
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include "writebehind/internal.h"

static int compare_pending(const void *a, const void *b)
{
	const struct wb_pending *x = a, *y = b;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return strcmp(x->id, y->id);
}

static struct wb_pending *find_pending(struct tally_writebehind *wb,
				       enum tally_store_record_kind kind, const char *id)
{
	struct wb_pending probe;
	void *found;

	probe.kind = kind;
	strcpy(probe.id, id); /* ids are checked: <= TALLY_SESSION_ID_MAX */
	found = tfind(&probe, &wb->pending_tree, compare_pending);
	return found ? *(struct wb_pending **)found : NULL;
}

static void set_tombstone(struct tally_writebehind *wb, struct wb_pending *pending,
			  bool tombstone)
{
	if (pending->tombstone != tombstone)
		wb->pending_tombstones += tombstone ? 1 : (size_t)-1;
	pending->tombstone = tombstone;
}

/* Removes `pending` from the set and frees it. */
static void drop_pending(struct tally_writebehind *wb, struct wb_pending *pending)
{
	set_tombstone(wb, pending, false);
	if (pending->prev)
		pending->prev->next = pending->next;
	else
		wb->pending_first = pending->next;
	if (pending->next)
		pending->next->prev = pending->prev;
	else
		wb->pending_last = pending->prev;
	tdelete(pending, &wb->pending_tree, compare_pending);
	wb->pending_records--;
	free(pending->record);
	free(pending);
}

/* The tombstone bound: past it a new delete is not kept but left to the reconcile. */
static bool tombstone_refused(struct tally_writebehind *wb)
{
	if (wb->pending_tombstones < wb->config.max_pending_tombstones)
		return false;
	if (!wb->tombstones_over) {
		wb->tombstones_over = true;
		wb->stats.backpressure_events++;
		wb->backpressure_notify = true; /* the thread calls on_backpressure unlocked */
	}
	wb->tombstones_dropped++;
	return true;
}

/*
 * Queues (kind, id). With a feed, its state is read from the table when a batch takes it;
 * without, `record` (copied) is what will be written. An entry that is there already is
 * updated in place (W3): a feed wins over a copied record, as it reads the newer state.
 */
static int queue_id(struct tally_writebehind *wb, enum tally_store_record_kind kind,
		    struct wb_feed *feed, const char *id, bool tombstone,
		    const struct tally_store_record *record)
{
	struct wb_pending *pending = find_pending(wb, kind, id);

	if (pending) {
		if (feed) {
			pending->feed = feed;
			free(pending->record);
			pending->record = NULL;
		}
		set_tombstone(wb, pending, tombstone);
		return TALLY_OK;
	}
	if (tombstone && tombstone_refused(wb))
		return TALLY_OK; /* counted: the reconcile deletes it from the store */
	if (!(pending = calloc(1, sizeof(*pending))))
		return TALLY_ENOMEM;
	if (!feed && !(pending->record = malloc(sizeof(*record)))) {
		free(pending);
		return TALLY_ENOMEM;
	}
	if (!feed)
		*pending->record = *record;
	pending->kind = kind;
	pending->feed = feed;
	strcpy(pending->id, id);
	if (!tsearch(pending, &wb->pending_tree, compare_pending)) {
		free(pending->record);
		free(pending);
		return TALLY_ENOMEM;
	}
	pending->prev = wb->pending_last;
	if (wb->pending_last)
		wb->pending_last->next = pending;
	else
		wb->pending_first = pending;
	wb->pending_last = pending;
	wb->pending_records++;
	set_tombstone(wb, pending, tombstone);
	return TALLY_OK;
}

/* ---- collecting the feed ---------------------------------------------------------------- */

static void collect_session(struct tally_writebehind *wb, struct wb_feed *feed,
			    struct cds_wfcq_node *node)
{
	struct session_cold *cold = caa_container_of(node, struct session_cold, feed_node);
	struct session *session = tally__session_of_cold(cold);
	char id[TALLY_SESSION_ID_MAX + 1];
	size_t len;
	const char *key;

	/* acquire: pairs with the push's OR (F2): the session's fields are visible */
	(void)atomic_load_explicit(&cold->feed_flags, memory_order_acquire);
	key = tally__session_id(session, &len);
	tally__session_copy_string(id, key, len);
	/* ENOMEM: the id is lost to this flush; tally_writebehind_stats reports it */
	if (queue_id(wb, TALLY_STORE_SESSION, feed, id,
		     tally__rcu_map_node_removed(&session->node), NULL) != TALLY_OK)
		wb->stats.permanent_errors++;
	tally__session_feed_done(session); /* F1: may free it */
}

static void collect_connection(struct tally_writebehind *wb, struct wb_feed *feed,
			       struct cds_wfcq_node *node)
{
	struct connection *connection = caa_container_of(node, struct connection, feed_node);
	char id[TALLY_SESSION_ID_MAX + 1];

	(void)atomic_load_explicit(&connection->feed_flags, memory_order_acquire); /* F2 */
	tally__session_copy_string(id, tally__connection_id(connection), connection->id_len);
	if (queue_id(wb, TALLY_STORE_CONNECTION, feed, id,
		     tally__rcu_map_node_removed(&connection->node), NULL) != TALLY_OK)
		wb->stats.permanent_errors++;
	tally__connection_feed_done(connection);
}

static void collect_queue(struct tally_writebehind *wb, struct wb_feed *feed,
			  struct __cds_wfcq_head *head, struct cds_wfcq_tail *tail,
			  void (*collect)(struct tally_writebehind *wb, struct wb_feed *feed,
					  struct cds_wfcq_node *node))
{
	struct __cds_wfcq_head taken_head;
	struct cds_wfcq_tail taken_tail;
	struct cds_wfcq_node *node, *next;

	__cds_wfcq_init(&taken_head, &taken_tail);
	/* one consumer (the lock holder): the blocking splice needs no queue lock */
	if (__cds_wfcq_splice_blocking(&taken_head, &taken_tail, head, tail) ==
	    CDS_WFCQ_RET_SRC_EMPTY)
		return;
	tally_rcu_read_lock(); /* node_removed's requirement */
	__cds_wfcq_for_each_blocking_safe(&taken_head, &taken_tail, node, next)
		collect(wb, feed, node); /* may free the node: the loop read next first */
	tally_rcu_read_unlock();
}

static void collect_feed(struct tally_writebehind *wb, struct wb_feed *feed)
{
	collect_queue(wb, feed, &feed->queues.sessions_head, &feed->queues.sessions_tail,
		      collect_session);
	collect_queue(wb, feed, &feed->queues.connections_head, &feed->queues.connections_tail,
		      collect_connection);
}

void tally__wb_collect(struct tally_writebehind *wb)
{
	for (struct wb_feed *feed = wb->feeds; feed; feed = feed->next)
		collect_feed(wb, feed);
}

/* ---- into a batch ------------------------------------------------------------------------ */

/* The record's latest state: the table's copy, or a delete when the table no longer has it. */
static void materialize(const struct wb_pending *pending, struct tally_store_record *record)
{
	struct tally_session_table *table = pending->feed->table;
	int err;

	memset(record, 0, sizeof(*record));
	record->kind = pending->kind;
	if (pending->kind == TALLY_STORE_SESSION) {
		err = tally_session_get(table, pending->id, &record->as.session);
		if (err != TALLY_OK)
			strcpy(record->as.session.session_id, pending->id);
	} else {
		err = tally_connection_get(table, pending->id, &record->as.connection);
		if (err != TALLY_OK)
			strcpy(record->as.connection.connection_id, pending->id);
	}
	record->op = err == TALLY_OK ? TALLY_STORE_PUT : TALLY_STORE_DELETE;
}

int tally__wb_take_records(struct tally_writebehind *wb)
{
	struct wb_batch *batch = &wb->batch;
	size_t room = wb->config.max_batch_records;

	if (tally__wb_grow((void **)&batch->records, &batch->record_cap,
			   room < wb->pending_records ? room : wb->pending_records,
			   sizeof(*batch->records)) != TALLY_OK)
		return 0; /* ENOMEM: the records wait for the next batch */
	while (wb->pending_first && batch->record_count < room) {
		struct wb_pending *pending = wb->pending_first;
		struct tally_store_record *record = &batch->records[batch->record_count++];

		if (pending->feed)
			materialize(pending, record);
		else
			*record = *pending->record;
		drop_pending(wb, pending);
	}
	return wb->pending_first == NULL;
}

static const char *record_id(const struct tally_store_record *record)
{
	return record->kind == TALLY_STORE_SESSION ? record->as.session.session_id
						  : record->as.connection.connection_id;
}

void tally__wb_requeue_records(struct tally_writebehind *wb)
{
	for (size_t i = 0; i < wb->batch.record_count; i++) {
		const struct tally_store_record *record = &wb->batch.records[i];

		if (queue_id(wb, record->kind, NULL, record_id(record),
			     record->op == TALLY_STORE_DELETE, record) != TALLY_OK)
			wb->stats.permanent_errors++;
	}
}

/* ---- republish (a new epoch, a new feed) ------------------------------------------------ */

struct walk_state {
	struct tally_writebehind *wb;
	struct wb_feed *feed;
	int err;
};

static int queue_session_node(struct tally_rcu_map_node *node, void *arg)
{
	struct walk_state *state = arg;
	struct session *session = caa_container_of(node, struct session, node);
	char id[TALLY_SESSION_ID_MAX + 1];
	size_t len;
	const char *key = tally__session_id(session, &len);

	tally__session_copy_string(id, key, len);
	state->err = queue_id(state->wb, TALLY_STORE_SESSION, state->feed, id, false, NULL);
	return state->err;
}

static int queue_connection_node(struct tally_rcu_map_node *node, void *arg)
{
	struct walk_state *state = arg;
	struct connection *connection = caa_container_of(node, struct connection, node);
	char id[TALLY_SESSION_ID_MAX + 1];

	tally__session_copy_string(id, tally__connection_id(connection), connection->id_len);
	state->err = queue_id(state->wb, TALLY_STORE_CONNECTION, state->feed, id, false, NULL);
	return state->err;
}

/* Queues every session and connection the feed's table holds now. */
static int republish_feed(struct tally_writebehind *wb, struct wb_feed *feed)
{
	struct walk_state state = { wb, feed, TALLY_OK };

	tally_rcu_read_lock();
	tally__rcu_map_visit(&feed->table->sessions, queue_session_node, &state);
	if (state.err == TALLY_OK)
		tally__rcu_map_visit(&feed->table->connections, queue_connection_node, &state);
	tally_rcu_read_unlock();
	return state.err;
}

int tally__wb_republish_records(struct tally_writebehind *wb)
{
	int err;

	for (struct wb_feed *feed = wb->feeds; feed; feed = feed->next)
		if ((err = republish_feed(wb, feed)) != TALLY_OK)
			return err;
	return TALLY_OK;
}

/* ---- attach / detach ---------------------------------------------------------------------- */

int tally_writebehind_add_sessions(struct tally_writebehind *wb,
				   struct tally_session_table *table)
{
	struct tally_session_feed *none = NULL;
	struct wb_feed *feed;
	int err;

	if (!wb || !table)
		return TALLY_EINVAL;
	if (urcu_memb_read_ongoing())
		return TALLY_EBUSY; /* a grace period would wait for ourselves */
	if (!(feed = calloc(1, sizeof(*feed))))
		return TALLY_ENOMEM;
	__cds_wfcq_init(&feed->queues.sessions_head, &feed->queues.sessions_tail);
	__cds_wfcq_init(&feed->queues.connections_head, &feed->queues.connections_tail);
	feed->table = table;
	pthread_mutex_lock(&wb->lock);
	if (wb->stopping) {
		err = TALLY_ESTATE;
	} else if (!atomic_compare_exchange_strong_explicit(&table->feed, &none, &feed->queues,
							    memory_order_release,
							    memory_order_relaxed)) {
		err = TALLY_EEXIST;
	} else {
		feed->next = wb->feeds;
		wb->feeds = feed;
		err = TALLY_OK;
	}
	pthread_mutex_unlock(&wb->lock);
	if (err != TALLY_OK) {
		free(feed);
		return err;
	}
	/* After a grace period every change pushes; the walk then catches all before. */
	urcu_memb_synchronize_rcu();
	pthread_mutex_lock(&wb->lock);
	err = republish_feed(wb, feed);
	if (err != TALLY_OK)
		wb->republish = true; /* the thread walks again (ENOMEM) */
	pthread_mutex_unlock(&wb->lock);
	tally__wb_wake(wb);
	return TALLY_OK;
}

/* Detached: what the feed's entries would have read is copied now. */
static int copy_out(struct tally_writebehind *wb, struct wb_feed *feed)
{
	for (struct wb_pending *pending = wb->pending_first; pending; pending = pending->next) {
		if (pending->feed != feed)
			continue;
		if (!(pending->record = malloc(sizeof(*pending->record))))
			return TALLY_ENOMEM;
		materialize(pending, pending->record);
		pending->feed = NULL;
	}
	return TALLY_OK;
}

static struct wb_feed **find_feed(struct tally_writebehind *wb,
				  struct tally_session_table *table)
{
	struct wb_feed **link = &wb->feeds;

	while (*link && (*link)->table != table)
		link = &(*link)->next;
	return *link ? link : NULL;
}

int tally_writebehind_remove_sessions(struct tally_writebehind *wb,
				      struct tally_session_table *table)
{
	struct wb_feed **link, *feed;
	int err;

	if (!wb || !table)
		return TALLY_EINVAL;
	if (urcu_memb_read_ongoing())
		return TALLY_EBUSY;
	pthread_mutex_lock(&wb->lock);
	while (wb->reconciling) /* it reads the tables */
		pthread_cond_wait(&wb->done, &wb->lock);
	if (!(link = find_feed(wb, table))) {
		pthread_mutex_unlock(&wb->lock);
		return TALLY_ENOTFOUND;
	}
	feed = *link;
	atomic_store_explicit(&table->feed, NULL, memory_order_relaxed);
	pthread_mutex_unlock(&wb->lock);
	urcu_memb_synchronize_rcu(); /* no push is in flight any more */
	pthread_mutex_lock(&wb->lock);
	while (wb->reconciling) /* one may have begun meanwhile, with this table */
		pthread_cond_wait(&wb->done, &wb->lock);
	collect_feed(wb, feed);
	err = copy_out(wb, feed);
	if (err == TALLY_OK) {
		*find_feed(wb, table) = feed->next;
		free(feed);
	} else { /* ENOMEM: stay attached; the changes made meanwhile need a walk */
		atomic_store_explicit(&table->feed, &feed->queues, memory_order_relaxed);
		wb->republish = true;
	}
	pthread_mutex_unlock(&wb->lock);
	return err;
}

void tally__wb_records_free(struct tally_writebehind *wb)
{
	while (wb->pending_first)
		drop_pending(wb, wb->pending_first);
}

/* ---- reconcile (after the tombstone bound was reached) --------------------------------- */

struct stale_id {
	enum tally_store_record_kind kind;
	char id[TALLY_SESSION_ID_MAX + 1];
};

struct reconcile_state {
	struct tally_session_table **tables;
	size_t table_count;
	char writer_id[TALLY_STORE_WRITER_ID_MAX + 1];
	struct stale_id *stale;
	size_t count, room;
	bool stopped; /* the room was filled before the listing ended */
};

static bool held_by_tables(const struct reconcile_state *state,
			   enum tally_store_record_kind kind, const char *id)
{
	struct tally_connection_info info;

	for (size_t i = 0; i < state->table_count; i++) {
		if (kind == TALLY_STORE_SESSION ? tally_session_exists(state->tables[i], id)
						: tally_connection_get(state->tables[i], id, &info) ==
							  TALLY_OK)
			return true;
	}
	return false;
}

static int note_stale(struct reconcile_state *state, enum tally_store_record_kind kind,
		      const char *id)
{
	if (held_by_tables(state, kind, id))
		return 0;
	if (state->count == state->room) {
		state->stopped = true;
		return 1;
	}
	state->stale[state->count].kind = kind;
	strcpy(state->stale[state->count++].id, id);
	return 0;
}

static int stale_session(const struct tally_session_info *session, const char *writer_id,
			 uint64_t epoch, void *arg)
{
	return note_stale(arg, TALLY_STORE_SESSION, session->session_id);
}

static int stale_connection(const struct tally_connection_info *connection,
			    const char *writer_id, uint64_t epoch, void *arg)
{
	struct reconcile_state *state = arg;

	if (strcmp(writer_id, state->writer_id) != 0)
		return 0; /* another writer's: not ours to delete */
	return note_stale(state, TALLY_STORE_CONNECTION, connection->connection_id);
}

/* Lock held: a snapshot of the attached tables (detach waits while `reconciling`). */
static int begin_reconcile(struct tally_writebehind *wb, struct reconcile_state *state)
{
	size_t count = 0, i = 0;

	for (struct wb_feed *feed = wb->feeds; feed; feed = feed->next)
		count++;
	state->room = wb->config.max_pending_tombstones - wb->pending_tombstones;
	state->tables = calloc(count ? count : 1, sizeof(*state->tables));
	state->stale = calloc(state->room ? state->room : 1, sizeof(*state->stale));
	if (!state->tables || !state->stale)
		return TALLY_ENOMEM;
	for (struct wb_feed *feed = wb->feeds; feed; feed = feed->next)
		state->tables[i++] = feed->table;
	state->table_count = count;
	wb->reconciling = true;
	return TALLY_OK;
}

static void queue_deletes(struct tally_writebehind *wb, const struct reconcile_state *state)
{
	struct tally_store_record record;

	for (size_t i = 0; i < state->count; i++) {
		memset(&record, 0, sizeof(record));
		record.kind = state->stale[i].kind;
		record.op = TALLY_STORE_DELETE;
		strcpy(record.kind == TALLY_STORE_SESSION ? record.as.session.session_id
							  : record.as.connection.connection_id,
		       state->stale[i].id);
		if (queue_id(wb, record.kind, NULL, state->stale[i].id, true, &record) != TALLY_OK)
			wb->stats.permanent_errors++;
	}
}

/*
 * Lists this writer's records in the store and queues a delete for each one no attached
 * table holds, up to the tombstone room. A pass that finds none, with no delete dropped
 * meanwhile, ends the backpressure episode. Returns a store error (the caller backs off).
 */
int tally__wb_reconcile(struct tally_writebehind *wb)
{
	struct reconcile_state state = { 0 };
	uint64_t dropped, epoch;
	int err;

	pthread_mutex_lock(&wb->lock);
	if (!wb->tombstones_over || wb->batch.pending ||
	    wb->pending_tombstones >= wb->config.max_pending_tombstones) {
		pthread_mutex_unlock(&wb->lock);
		return TALLY_OK; /* nothing to do, or the room is still taken: flush first */
	}
	dropped = wb->tombstones_dropped;
	err = begin_reconcile(wb, &state);
	pthread_mutex_unlock(&wb->lock);
	if (err == TALLY_OK)
		err = tally_store_writer_identity(wb->store, state.writer_id, &epoch);
	if (err == TALLY_OK)
		err = tally_store_sessions(wb->store, state.writer_id, stale_session, &state);
	if (err == TALLY_OK && !state.stopped)
		err = tally_store_connections(wb->store, NULL, stale_connection, &state);
	pthread_mutex_lock(&wb->lock);
	wb->reconciling = false;
	pthread_cond_broadcast(&wb->done);
	if (err == TALLY_OK) {
		queue_deletes(wb, &state);
		if (!state.stopped && state.count == 0 && wb->tombstones_dropped == dropped)
			wb->tombstones_over = false;
	}
	pthread_mutex_unlock(&wb->lock);
	free(state.tables);
	free(state.stale);
	return err;
}
