/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/sqlite_writer.c: the SQLite backend's writes (lib/store/sqlite.h): writers (open,
 * heartbeat, close), reaping, exactly-once flushes and conditional takes. Each is one
 * BEGIN IMMEDIATE transaction on the handle's writing connection; docs/store.md gives the
 * exactly-once argument step by step.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/sqlite.h"

/* ---- writers --------------------------------------------------------------------------- */

/*
 * A file unlinked or replaced under the handle would take every later commit into an
 * inode nobody will open again: success that silently loses the deltas. One stat per
 * write transaction (under the write lock, so no writer of ours races it) catches it.
 */
static int check_file(struct tally__sqlite *s)
{
	struct stat st;

	if (stat(s->path, &st) != 0) {
		tally__store_set_error(s, "sqlite: the database file %s is gone (%s): reopen the "
				       "store", s->path, strerror(errno));
		return TALLY_EIO;
	}
	if (st.st_dev != s->dev || st.st_ino != s->ino) {
		tally__store_set_error(s, "sqlite: the database file %s was replaced since open: "
				       "reopen the store", s->path);
		return TALLY_EIO;
	}
	return TALLY_OK;
}

int tally__sqlite_begin_write(struct tally__sqlite *s, const char *what)
{
	int err = tally__sqlite_begin(s, what);

	if (!err) {
		err = check_file(s);
		if (err)
			tally__sqlite_rollback(s);
	}
	return err;
}

struct writer_row {
	bool found;
	uint64_t epoch, last_seq;
	int64_t reaped;
};

static int get_writer(struct tally__sqlite *s, const char *writer_id, struct writer_row *w)
{
	sqlite3_stmt *st = s->stmt[S_WRITER_GET];
	int err;

	tally__sqlite_bind_cstr(st, 1, writer_id);
	err = tally__sqlite_row(s, S_WRITER_GET, "writer", &w->found);
	if (err || !w->found)
		return err;
	w->epoch = (uint64_t)sqlite3_column_int64(st, 0);
	w->last_seq = (uint64_t)sqlite3_column_int64(st, 1);
	w->reaped = sqlite3_column_int64(st, 2);
	sqlite3_reset(st);
	return TALLY_OK;
}

/* Inside a write transaction: EFENCED unless (writer_id, epoch) is the id's current,
 * unreaped epoch. */
static int fence(struct tally__sqlite *s, const char *writer_id, uint64_t epoch,
		 struct writer_row *w)
{
	int err = get_writer(s, writer_id, w);

	if (err)
		return err;
	if (!w->found || w->epoch != epoch || w->reaped != TALLY__WRITER_LIVE) {
		tally__store_set_error(s, "sqlite: writer %.64s epoch %" PRIu64 " is fenced (%s)",
				       writer_id, epoch,
				       !w->found ? "unknown id" :
				       w->epoch != epoch ? "a newer epoch exists" :
				       w->reaped == TALLY__WRITER_REAPED ? "reaped" : "closed");
		return TALLY_EFENCED;
	}
	return TALLY_OK;
}

/* Removes the gauge contributions and connections of every epoch of writer_id, and sets
 * the listenerCount of each session it wrote or had a listener in to the listener
 * connections that remain. */
static int remove_contributions(struct tally__sqlite *s, const char *writer_id)
{
	static const enum tally__sqlite_stmt steps[] = {
		S_LISTENERS_FIX, S_CONNECTIONS_OF_WRITER_DEL, S_GAUGES_OF_WRITER_DEL,
	};

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		int err;

		tally__sqlite_bind_cstr(s->stmt[steps[i]], 1, writer_id);
		err = tally__sqlite_run(s, steps[i], "remove a writer's contributions");
		if (err)
			return err;
	}
	return TALLY_OK;
}

static int register_epoch(struct tally__sqlite *s, const char *writer_id, int64_t ttl_ms,
			  struct tally_store_epoch_info *info)
{
	struct writer_row prior;
	sqlite3_stmt *st = s->stmt[S_WRITER_PUT];
	int err = get_writer(s, writer_id, &prior);

	if (err)
		return err;
	if (prior.found) {
		info->prior_epoch = prior.epoch;
		info->prior_last_seq = prior.last_seq;
		info->prior_reaped = prior.reaped == TALLY__WRITER_REAPED;
	}
	info->epoch = prior.found ? prior.epoch + 1 : 1;
	err = remove_contributions(s, writer_id);
	if (err)
		return err;
	tally__sqlite_bind_cstr(st, 1, writer_id);
	sqlite3_bind_int64(st, 2, (int64_t)info->epoch);
	sqlite3_bind_int64(st, 3, tally__store_now_ms() + ttl_ms);
	return tally__sqlite_run(s, S_WRITER_PUT, "writer open");
}

int tally__sqlite_writer_open(void *impl, const char *writer_id, int64_t ttl_ms,
			      struct tally_store_epoch_info *info)
{
	struct tally__sqlite *s = impl;
	int err;

	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&s->lock);
	err = tally__sqlite_begin_write(s, "writer open");
	if (!err) {
		err = register_epoch(s, writer_id, ttl_ms, info);
		if (!err)
			err = tally__sqlite_commit(s, "writer open");
		if (err)
			tally__sqlite_rollback(s);
	}
	pthread_mutex_unlock(&s->lock);
	return err;
}

int tally__sqlite_heartbeat(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms)
{
	struct tally__sqlite *s = impl;
	sqlite3_stmt *st = s->stmt[S_WRITER_RENEW];
	int err;

	pthread_mutex_lock(&s->lock);
	err = check_file(s);
	if (!err) {
		tally__sqlite_bind_cstr(st, 1, writer_id);
		sqlite3_bind_int64(st, 2, (int64_t)epoch);
		sqlite3_bind_int64(st, 3, tally__store_now_ms() + ttl_ms);
		err = tally__sqlite_run(s, S_WRITER_RENEW, "heartbeat");
	}
	if (!err && sqlite3_changes(s->db) == 0) {
		tally__store_set_error(s, "sqlite: writer %.64s epoch %" PRIu64 " is fenced "
				       "(superseded, reaped or closed)", writer_id, epoch);
		err = TALLY_EFENCED;
	}
	pthread_mutex_unlock(&s->lock);
	return err;
}

static int end_writer(struct tally__sqlite *s, const char *writer_id, uint64_t epoch,
		      enum tally__sqlite_writer_state state)
{
	sqlite3_stmt *st = s->stmt[S_WRITER_END];
	int err = remove_contributions(s, writer_id);

	if (err)
		return err;
	tally__sqlite_bind_cstr(st, 1, writer_id);
	sqlite3_bind_int64(st, 2, (int64_t)epoch);
	sqlite3_bind_int64(st, 3, state);
	sqlite3_bind_int64(st, 4, tally__store_now_ms());
	return tally__sqlite_run(s, S_WRITER_END, "end writer");
}

int tally__sqlite_writer_close(void *impl, const char *writer_id, uint64_t epoch)
{
	struct tally__sqlite *s = impl;
	struct writer_row w;
	int err;

	pthread_mutex_lock(&s->lock);
	err = tally__sqlite_begin_write(s, "writer close");
	if (!err) {
		err = fence(s, writer_id, epoch, &w);
		if (!err)
			err = end_writer(s, writer_id, epoch, TALLY__WRITER_CLOSED);
		if (!err)
			err = tally__sqlite_commit(s, "writer close");
		if (err)
			tally__sqlite_rollback(s);
	}
	pthread_mutex_unlock(&s->lock);
	return err;
}

/* ---- reap ------------------------------------------------------------------------------ */

struct expired_writer {
	char id[TALLY_STORE_WRITER_ID_MAX + 1];
	uint64_t epoch;
};

/* Collects the expired, unreaped writers (before changing the table being scanned). */
static int collect_expired(struct tally__sqlite *s, int64_t now_ms,
			   struct expired_writer **list, size_t *count)
{
	sqlite3_stmt *st = s->stmt[S_EXPIRED];
	size_t capacity = 0;
	bool row;
	int err;

	*list = NULL;
	*count = 0;
	sqlite3_bind_int64(st, 1, now_ms);
	while (!(err = tally__sqlite_row(s, S_EXPIRED, "reap", &row)) && row) {
		if (*count == capacity) {
			size_t grown_capacity = capacity ? capacity * 2 : 16;
			struct expired_writer *grown = realloc(*list, grown_capacity * sizeof(*grown));

			if (!grown) {
				sqlite3_reset(st);
				return TALLY_ENOMEM;
			}
			*list = grown;
			capacity = grown_capacity;
		}
		tally__sqlite_column_copy(st, 0, (*list)[*count].id, sizeof((*list)[0].id));
		(*list)[*count].epoch = (uint64_t)sqlite3_column_int64(st, 1);
		(*count)++;
	}
	return err;
}

/* All expired writers are reaped in one transaction: atomic per writer (and for all), and
 * a second reaper finds them reaped = 1 and removes nothing twice. */
int tally__sqlite_reap(void *impl, int64_t *reaped)
{
	struct tally__sqlite *s = impl;
	struct expired_writer *list = NULL;
	size_t count = 0;
	int err;

	*reaped = 0;
	pthread_mutex_lock(&s->lock);
	err = tally__sqlite_begin_write(s, "reap");
	if (!err) {
		err = collect_expired(s, tally__store_now_ms(), &list, &count);
		for (size_t i = 0; i < count && !err; i++)
			err = end_writer(s, list[i].id, list[i].epoch, TALLY__WRITER_REAPED);
		if (!err)
			err = tally__sqlite_commit(s, "reap");
		if (err)
			tally__sqlite_rollback(s);
		else
			*reaped = (int64_t)count;
	}
	pthread_mutex_unlock(&s->lock);
	free(list);
	return err;
}

/* ---- flush ----------------------------------------------------------------------------- */

struct flush_ctx {
	struct tally__sqlite *s;
	const char *writer_id;
	size_t writer_id_len;
	uint64_t epoch;
	struct tally_store_flush_result *result;
};

/* One statement of a flush: counted, and its changes added to rows_written. */
static int flush_step(struct flush_ctx *f, enum tally__sqlite_stmt id, const char *what)
{
	int err = tally__sqlite_run(f->s, id, what);

	f->result->store_calls++;
	if (!err)
		f->result->rows_written += sqlite3_changes(f->s->db);
	return err;
}

/* One statement for rows[0 .. count) (count <= TALLY__SQLITE_COUNTER_ROWS; a full chunk
 * goes through S_COUNTER_ADD_MANY, a shorter tail row by row). first is the index of
 * rows[0] in the batch, for the overflow text. */
static int add_counter_rows(struct flush_ctx *f, const struct tally_store_delta *const *rows,
			    size_t count, size_t first, size_t last)
{
	bool many = count == TALLY__SQLITE_COUNTER_ROWS;
	enum tally__sqlite_stmt id = many ? S_COUNTER_ADD_MANY : S_COUNTER_ADD;
	sqlite3_stmt *st = f->s->stmt[id];
	int err = TALLY_OK;

	for (size_t i = 0; i < count && !err; i++) {
		int column = many ? (int)(2 * i) : 0;

		tally__sqlite_bind_text(st, column + 1, rows[i]->key, rows[i]->key_len);
		sqlite3_bind_int64(st, column + 2, rows[i]->delta);
		if (!many)
			err = flush_step(f, id, "flush (counter)");
	}
	if (many)
		err = flush_step(f, id, "flush (counters)");
	if (err && sqlite3_extended_errcode(f->s->db) == SQLITE_CONSTRAINT_CHECK) {
		tally__store_set_error(f->s, "sqlite: flush: a total of counters[%zu..%zu] would "
				       "leave the int64 range", first, last);
		return TALLY_EOVERFLOW;
	}
	return err;
}

/* Non-zero deltas in chunks of TALLY__SQLITE_COUNTER_ROWS (a zero delta writes nothing). */
static int apply_counters(struct flush_ctx *f, const struct tally_store_batch *batch)
{
	const struct tally_store_delta *rows[TALLY__SQLITE_COUNTER_ROWS];
	size_t count = 0, first = 0;
	int err = TALLY_OK;

	for (size_t i = 0; i < batch->counter_count && !err; i++) {
		if (batch->counters[i].delta == 0)
			continue;
		if (count == 0)
			first = i;
		rows[count++] = &batch->counters[i];
		if (count == TALLY__SQLITE_COUNTER_ROWS) {
			err = add_counter_rows(f, rows, count, first, i);
			count = 0;
		}
	}
	if (!err && count)
		err = add_counter_rows(f, rows, count, first, batch->counter_count - 1);
	return err;
}

/* A gauge set to 0 leaves no row: the table holds only contributions that count. */
static int apply_gauges(struct flush_ctx *f, const struct tally_store_batch *batch)
{
	for (size_t i = 0; i < batch->gauge_count; i++) {
		const struct tally_store_gauge *g = &batch->gauges[i];
		enum tally__sqlite_stmt id = g->value ? S_GAUGE_SET : S_GAUGE_DEL;
		sqlite3_stmt *st = f->s->stmt[id];
		int err;

		tally__sqlite_bind_text(st, 1, g->key, g->key_len);
		tally__sqlite_bind_text(st, 2, f->writer_id, f->writer_id_len);
		if (g->value) {
			sqlite3_bind_int64(st, 3, (int64_t)f->epoch);
			sqlite3_bind_int64(st, 4, g->value);
		}
		err = flush_step(f, id, "flush (gauge)");
		if (err)
			return err;
	}
	return TALLY_OK;
}

static int put_session(struct flush_ctx *f, const struct tally_session_info *info)
{
	sqlite3_stmt *st = f->s->stmt[S_SESSION_PUT];

	tally__sqlite_bind_cstr(st, 1, info->session_id);
	tally__sqlite_bind_cstr(st, 2, info->speaker_connection_id);
	tally__sqlite_bind_cstr(st, 3, info->speaker_user_id);
	tally__sqlite_bind_cstr(st, 4, info->source_language);
	tally__sqlite_bind_cstr(st, 5, info->quality_tier);
	sqlite3_bind_int64(st, 6, info->created_at_ms);
	sqlite3_bind_int64(st, 7, info->active ? 1 : 0);
	sqlite3_bind_int64(st, 8, info->listener_count);
	sqlite3_bind_int64(st, 9, info->expires_at_ms);
	tally__sqlite_bind_text(st, 10, f->writer_id, f->writer_id_len);
	sqlite3_bind_int64(st, 11, (int64_t)f->epoch);
	return flush_step(f, S_SESSION_PUT, "flush (session)");
}

/* A deleted session takes its connections with it, as tally_session_delete does. */
static int delete_session(struct flush_ctx *f, const char *session_id)
{
	int err;

	tally__sqlite_bind_cstr(f->s->stmt[S_SESSION_CONNECTIONS_DEL], 1, session_id);
	err = flush_step(f, S_SESSION_CONNECTIONS_DEL, "flush (session delete)");
	if (err)
		return err;
	tally__sqlite_bind_cstr(f->s->stmt[S_SESSION_DEL], 1, session_id);
	return flush_step(f, S_SESSION_DEL, "flush (session delete)");
}

static int put_connection(struct flush_ctx *f, const struct tally_connection_info *info)
{
	sqlite3_stmt *st = f->s->stmt[S_CONNECTION_PUT];

	tally__sqlite_bind_cstr(st, 1, info->connection_id);
	tally__sqlite_bind_cstr(st, 2, info->session_id);
	tally__sqlite_bind_cstr(st, 3, info->target_language);
	sqlite3_bind_int64(st, 4, info->role);
	sqlite3_bind_int64(st, 5, info->connected_at_ms);
	sqlite3_bind_int64(st, 6, info->expires_at_ms);
	tally__sqlite_bind_cstr(st, 7, info->client_address);
	tally__sqlite_bind_text(st, 8, f->writer_id, f->writer_id_len);
	sqlite3_bind_int64(st, 9, (int64_t)f->epoch);
	return flush_step(f, S_CONNECTION_PUT, "flush (connection)");
}

static int apply_records(struct flush_ctx *f, const struct tally_store_batch *batch)
{
	for (size_t i = 0; i < batch->record_count; i++) {
		const struct tally_store_record *r = &batch->records[i];
		bool put = r->op == TALLY_STORE_PUT;
		int err;

		if (r->kind == TALLY_STORE_SESSION) {
			err = put ? put_session(f, &r->as.session)
				  : delete_session(f, r->as.session.session_id);
		} else {
			tally__sqlite_bind_cstr(f->s->stmt[S_CONNECTION_DEL], 1, r->as.connection.connection_id);
			err = put ? put_connection(f, &r->as.connection)
				  : flush_step(f, S_CONNECTION_DEL, "flush (connection delete)");
		}
		if (err)
			return err;
	}
	return TALLY_OK;
}

/* Records seq and renews the lease: the step that makes the flush's effects and its
 * number one atomic commit. */
static int advance_writer(struct flush_ctx *f, uint64_t seq, int64_t ttl_ms)
{
	sqlite3_stmt *st = f->s->stmt[S_WRITER_ADVANCE];

	tally__sqlite_bind_text(st, 1, f->writer_id, f->writer_id_len);
	sqlite3_bind_int64(st, 2, (int64_t)f->epoch);
	sqlite3_bind_int64(st, 3, (int64_t)seq);
	sqlite3_bind_int64(st, 4, tally__store_now_ms() + ttl_ms);
	return flush_step(f, S_WRITER_ADVANCE, "flush (writer)");
}

/* Inside the write transaction: fence, then apply (seq == last + 1) or acknowledge
 * (seq <= last: the store holds it already). */
static int flush_in_transaction(struct flush_ctx *f, int64_t ttl_ms,
				const struct tally_store_batch *batch)
{
	struct writer_row w;
	int err = fence(f->s, f->writer_id, f->epoch, &w);

	if (err)
		return err;
	if (batch->seq <= w.last_seq) {
		f->result->already_applied = true;
		return advance_writer(f, w.last_seq, ttl_ms);
	}
	if (batch->seq != w.last_seq + 1) {
		tally__store_set_error(f->s, "sqlite: flush: seq %" PRIu64 " but the store's last "
				       "for this epoch is %" PRIu64 " (the writer row was rolled "
				       "back?)", batch->seq, w.last_seq);
		return TALLY_ECORRUPT;
	}
	err = apply_counters(f, batch);
	if (!err)
		err = apply_gauges(f, batch);
	if (!err)
		err = apply_records(f, batch);
	return err ? err : advance_writer(f, batch->seq, ttl_ms);
}

int tally__sqlite_flush(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms,
			const struct tally_store_batch *batch,
			struct tally_store_flush_result *result)
{
	struct flush_ctx f = { .s = impl, .writer_id = writer_id,
			       .writer_id_len = strlen(writer_id), .epoch = epoch,
			       .result = result };
	int err;

	memset(result, 0, sizeof(*result));
	pthread_mutex_lock(&f.s->lock);
	err = tally__sqlite_begin_write(f.s, "flush");
	if (!err) {
		err = flush_in_transaction(&f, ttl_ms, batch);
		if (!err)
			err = tally__sqlite_commit(f.s, "flush");
		if (err)
			tally__sqlite_rollback(f.s);
		result->store_calls += 2;
	}
	pthread_mutex_unlock(&f.s->lock);
	if (err)
		memset(result, 0, sizeof(*result));
	return err;
}

/* ---- take / give ----------------------------------------------------------------------- */

static int read_total(struct tally__sqlite *s, const char *key, size_t key_len,
		      int64_t *total)
{
	sqlite3_stmt *st = s->stmt[S_COUNTER_GET];
	bool row;
	int err;

	tally__sqlite_bind_text(st, 1, key, key_len);
	err = tally__sqlite_row(s, S_COUNTER_GET, "read counter", &row);
	if (err)
		return err;
	*total = row ? sqlite3_column_int64(st, 0) : 0;
	if (row)
		sqlite3_reset(st);
	return TALLY_OK;
}

static int take_in_transaction(struct tally__sqlite *s, const char *key, size_t key_len,
			       int64_t n, int64_t *remaining)
{
	sqlite3_stmt *st = s->stmt[S_TAKE];
	int err;

	tally__sqlite_bind_text(st, 1, key, key_len);
	sqlite3_bind_int64(st, 2, n);
	err = tally__sqlite_run(s, S_TAKE, "take");
	if (err)
		return err;
	if (sqlite3_changes(s->db) == 0) {
		tally__store_set_error(s, "sqlite: take: fewer than %" PRId64 " left", n);
		return TALLY_EFLOOR;
	}
	return read_total(s, key, key_len, remaining);
}

static int give_in_transaction(struct tally__sqlite *s, const char *key, size_t key_len,
			       int64_t n, int64_t *total)
{
	sqlite3_stmt *st = s->stmt[S_COUNTER_ADD];
	int err;

	tally__sqlite_bind_text(st, 1, key, key_len);
	sqlite3_bind_int64(st, 2, n);
	err = tally__sqlite_run(s, S_COUNTER_ADD, "give");
	if (err && sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_CHECK) {
		tally__store_set_error(s, "sqlite: give: the total would leave the int64 range");
		return TALLY_EOVERFLOW;
	}
	return err ? err : read_total(s, key, key_len, total);
}

typedef int (*counter_change_fn)(struct tally__sqlite *s, const char *key, size_t key_len,
				 int64_t n, int64_t *out);

static int change_counter(void *impl, const char *key, size_t key_len, int64_t n,
			  int64_t *out, counter_change_fn change, const char *what)
{
	struct tally__sqlite *s = impl;
	int err;

	pthread_mutex_lock(&s->lock);
	err = tally__sqlite_begin_write(s, what);
	if (!err) {
		err = change(s, key, key_len, n, out);
		if (!err)
			err = tally__sqlite_commit(s, what);
		if (err)
			tally__sqlite_rollback(s);
	}
	pthread_mutex_unlock(&s->lock);
	return err;
}

int tally__sqlite_take(void *impl, const char *key, size_t key_len, int64_t n,
		       int64_t *remaining)
{
	return change_counter(impl, key, key_len, n, remaining, take_in_transaction, "take");
}

int tally__sqlite_give(void *impl, const char *key, size_t key_len, int64_t n, int64_t *total)
{
	return change_counter(impl, key, key_len, n, total, give_in_transaction, "give");
}
