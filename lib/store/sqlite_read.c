/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/sqlite_read.c: the SQLite backend's reads and visitors, and its lease provider
 * (lib/store/sqlite.h). Reads and visitors run on the handle's second, read-only connection
 * (`reader`), so they neither wait for the handle's flushes nor hold them up (WAL readers
 * never block the writer). Each visitor is one SELECT, so it sees one snapshot of the table;
 * the callback runs with the reader's lock held and must not call back into the same
 * handle. Lease operations read and write, so they run on the writing connection.
 *
 * Leases. Marks are uint64 kept in SQLite's int64 by bit pattern, so every comparison is
 * made here in C, inside the BEGIN IMMEDIATE transaction that reads and writes the row.
 * Issue 17's rule: a key absent from the table is "never acquired" only if the table was
 * never reset. Two checks make a reset visible: meta.lease_generation (random, made with
 * the schema) must equal the value this handle saw at open, and meta.lease_rows (raised in
 * the transaction that inserts a key) must equal the number of rows whenever a key is
 * found missing. Anything else is TALLY_ECORRUPT: tally never guesses a mark.
 */
#include <inttypes.h>
#include <string.h>

#include "store/sqlite.h"

/* ---- reads ----------------------------------------------------------------------------- */

int tally__sqlite_read_counter(void *impl, const char *key, size_t key_len, int64_t *total)
{
	struct tally__sqlite *s = tally__sqlite_reader(impl);
	sqlite3_stmt *st = s->stmt[S_COUNTER_GET];
	bool row;
	int err;

	pthread_mutex_lock(&s->lock);
	tally__sqlite_bind_text(st, 1, key, key_len);
	err = tally__sqlite_row(s, S_COUNTER_GET, "read counter", &row);
	if (!err && row) {
		*total = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
	} else if (!err) {
		tally__store_set_error(s, "sqlite: read counter: no delta was ever flushed for "
				       "this key");
		err = TALLY_ENOTFOUND;
	}
	pthread_mutex_unlock(&s->lock);
	return tally__sqlite_read_done(impl, s, err);
}

int tally__sqlite_read_gauge(void *impl, const char *key, size_t key_len, int64_t *value,
			     int64_t *live_writers)
{
	struct tally__sqlite *s = tally__sqlite_reader(impl);
	sqlite3_stmt *st = s->stmt[S_GAUGE_SUM];
	bool row;
	int err;

	pthread_mutex_lock(&s->lock);
	tally__sqlite_bind_text(st, 1, key, key_len);
	sqlite3_bind_int64(st, 2, tally__store_now_ms());
	err = tally__sqlite_row(s, S_GAUGE_SUM, "read gauge", &row);
	if (err && strstr(sqlite3_errmsg(s->db), "integer overflow"))
		err = TALLY_EOVERFLOW;
	*value = row ? sqlite3_column_int64(st, 0) : 0;
	*live_writers = row ? sqlite3_column_int64(st, 1) : 0;
	if (row)
		sqlite3_reset(st);
	pthread_mutex_unlock(&s->lock);
	return tally__sqlite_read_done(impl, s, err);
}

/* ---- visitors -------------------------------------------------------------------------- */

/* Runs statement id (bound by the caller) and calls emit per row until it returns
 * non-zero. emit returns < 0 for a row it cannot decode: ECORRUPT. */
typedef int (*row_fn)(struct tally__sqlite *s, sqlite3_stmt *st, void *ctx);

static int visit(struct tally__sqlite *s, enum tally__sqlite_stmt id, row_fn emit, void *ctx,
		 const char *what)
{
	sqlite3_stmt *st = s->stmt[id];
	bool row;
	int err, stop = 0;

	while (!(err = tally__sqlite_row(s, id, what, &row)) && row) {
		stop = emit(s, st, ctx);
		if (stop)
			break;
	}
	sqlite3_reset(st);
	if (!err && stop < 0) {
		tally__store_set_error(s, "sqlite: %s: a row holds a value out of its range",
				       what);
		err = TALLY_ECORRUPT;
	}
	return err;
}

struct counter_visit {
	tally_store_counter_fn fn;
	void *arg;
};

static int emit_counter(struct tally__sqlite *s, sqlite3_stmt *st, void *ctx)
{
	struct counter_visit *v = ctx;
	const char *key = (const char *)sqlite3_column_text(st, 0);
	int stop = v->fn(key, (size_t)sqlite3_column_bytes(st, 0), sqlite3_column_int64(st, 1),
			 v->arg);

	return stop ? 1 : 0;
}

int tally__sqlite_counters(void *impl, tally_store_counter_fn fn, void *arg)
{
	struct tally__sqlite *s = tally__sqlite_reader(impl);
	struct counter_visit v = { fn, arg };
	int err;

	pthread_mutex_lock(&s->lock);
	err = visit(s, S_COUNTERS, emit_counter, &v, "counters");
	pthread_mutex_unlock(&s->lock);
	return tally__sqlite_read_done(impl, s, err);
}

struct writer_visit {
	tally_store_writer_fn fn;
	void *arg;
	int64_t now_ms;
};

static int emit_writer(struct tally__sqlite *s, sqlite3_stmt *st, void *ctx)
{
	struct writer_visit *v = ctx;
	struct tally_store_writer_info info = { 0 };

	if (!tally__sqlite_column_copy(st, 0, info.writer_id, sizeof(info.writer_id)))
		return -1;
	info.epoch = (uint64_t)sqlite3_column_int64(st, 1);
	info.last_seq = (uint64_t)sqlite3_column_int64(st, 2);
	info.expires_at_ms = sqlite3_column_int64(st, 3);
	info.reaped = sqlite3_column_int64(st, 4) != TALLY__WRITER_LIVE;
	info.store_now_ms = v->now_ms;
	info.live = !info.reaped && info.expires_at_ms > v->now_ms;
	return v->fn(&info, v->arg) ? 1 : 0;
}

int tally__sqlite_writers(void *impl, tally_store_writer_fn fn, void *arg)
{
	struct tally__sqlite *s = tally__sqlite_reader(impl);
	struct writer_visit v = { fn, arg, tally__store_now_ms() };
	int err;

	pthread_mutex_lock(&s->lock);
	err = visit(s, S_WRITERS, emit_writer, &v, "writers");
	pthread_mutex_unlock(&s->lock);
	return tally__sqlite_read_done(impl, s, err);
}

struct record_visit {
	tally_store_session_fn session_fn;
	tally_store_connection_fn connection_fn;
	void *arg;
};

#define COPY_COLUMN(st, col, field) tally__sqlite_column_copy((st), (col), (field), sizeof(field))

static int emit_session(struct tally__sqlite *s, sqlite3_stmt *st, void *ctx)
{
	struct record_visit *v = ctx;
	struct tally_session_info info = { 0 };
	char writer_id[TALLY_STORE_WRITER_ID_MAX + 1];

	if (!COPY_COLUMN(st, 0, info.session_id) || !COPY_COLUMN(st, 1, info.speaker_connection_id) ||
	    !COPY_COLUMN(st, 2, info.speaker_user_id) || !COPY_COLUMN(st, 3, info.source_language) ||
	    !COPY_COLUMN(st, 4, info.quality_tier) || !COPY_COLUMN(st, 9, writer_id))
		return -1;
	info.created_at_ms = sqlite3_column_int64(st, 5);
	info.active = sqlite3_column_int64(st, 6) ? 1 : 0;
	info.listener_count = sqlite3_column_int64(st, 7);
	info.expires_at_ms = sqlite3_column_int64(st, 8);
	return v->session_fn(&info, writer_id, (uint64_t)sqlite3_column_int64(st, 10), v->arg)
		       ? 1 : 0;
}

int tally__sqlite_sessions(void *impl, const char *writer_id, tally_store_session_fn fn,
			   void *arg)
{
	struct tally__sqlite *s = tally__sqlite_reader(impl);
	struct record_visit v = { .session_fn = fn, .arg = arg };
	enum tally__sqlite_stmt id = writer_id ? S_SESSIONS_OF : S_SESSIONS_ALL;
	int err;

	pthread_mutex_lock(&s->lock);
	if (writer_id)
		tally__sqlite_bind_text(s->stmt[id], 1, writer_id, strlen(writer_id));
	err = visit(s, id, emit_session, &v, "sessions");
	pthread_mutex_unlock(&s->lock);
	return tally__sqlite_read_done(impl, s, err);
}

static int emit_connection(struct tally__sqlite *s, sqlite3_stmt *st, void *ctx)
{
	struct record_visit *v = ctx;
	struct tally_connection_info info = { 0 };
	char writer_id[TALLY_STORE_WRITER_ID_MAX + 1];

	if (!COPY_COLUMN(st, 0, info.connection_id) || !COPY_COLUMN(st, 1, info.session_id) ||
	    !COPY_COLUMN(st, 2, info.target_language) || !COPY_COLUMN(st, 6, info.client_address) ||
	    !COPY_COLUMN(st, 7, writer_id))
		return -1;
	info.role = (int)sqlite3_column_int64(st, 3);
	info.connected_at_ms = sqlite3_column_int64(st, 4);
	info.expires_at_ms = sqlite3_column_int64(st, 5);
	return v->connection_fn(&info, writer_id, (uint64_t)sqlite3_column_int64(st, 8), v->arg)
		       ? 1 : 0;
}

int tally__sqlite_connections(void *impl, const char *session_id, tally_store_connection_fn fn,
			      void *arg)
{
	struct tally__sqlite *s = tally__sqlite_reader(impl);
	struct record_visit v = { .connection_fn = fn, .arg = arg };
	enum tally__sqlite_stmt id = session_id ? S_CONNECTIONS_OF : S_CONNECTIONS_ALL;
	int err;

	pthread_mutex_lock(&s->lock);
	if (session_id)
		tally__sqlite_bind_text(s->stmt[id], 1, session_id, strlen(session_id));
	err = visit(s, id, emit_connection, &v, "connections");
	pthread_mutex_unlock(&s->lock);
	return tally__sqlite_read_done(impl, s, err);
}

/* ---- leases ---------------------------------------------------------------------------- */

static int meta_value(struct tally__sqlite *s, const char *name, int64_t *value, bool *found)
{
	sqlite3_stmt *st = s->stmt[S_META_GET];
	int err;

	tally__sqlite_bind_text(st, 1, name, strlen(name));
	err = tally__sqlite_row(s, S_META_GET, "lease (meta)", found);
	if (!err && *found) {
		*value = sqlite3_column_int64(st, 0);
		sqlite3_reset(st);
	}
	return err;
}

static int lease_corrupt(struct tally__sqlite *s, const char *why)
{
	tally__store_set_error(s, "sqlite: the lease table was reset (%s): refusing to guess a "
			       "mark (docs/store.md, Leases)", why);
	return TALLY_ECORRUPT;
}

/* Inside a transaction: the generation is the one seen at open. */
static int check_generation(struct tally__sqlite *s)
{
	int64_t generation = 0;
	bool found;
	int err = meta_value(s, "lease_generation", &generation, &found);

	if (err)
		return err;
	return found && generation == s->lease_generation
		       ? TALLY_OK : lease_corrupt(s, "its generation changed");
}

/* Inside a transaction, for a key found missing: every key ever inserted is still there. */
static int check_rows(struct tally__sqlite *s, int64_t *rows)
{
	int64_t counted = -1;
	bool found, row;
	int err = meta_value(s, "lease_rows", rows, &found);

	if (!err && !found)
		return lease_corrupt(s, "its row count is missing");
	if (!err)
		err = tally__sqlite_row(s, S_LEASE_COUNT, "lease (count)", &row);
	if (err)
		return err;
	if (row) {
		counted = sqlite3_column_int64(s->stmt[S_LEASE_COUNT], 0);
		sqlite3_reset(s->stmt[S_LEASE_COUNT]);
	}
	return counted == *rows ? TALLY_OK : lease_corrupt(s, "rows are missing");
}

/* Reads key's record; *found false (ENOTFOUND-able) only after both reset checks. */
static int lease_get(struct tally__sqlite *s, const char *key, size_t key_len,
		     struct tally_lease_record *record, bool *found, int64_t *rows)
{
	sqlite3_stmt *st = s->stmt[S_LEASE_GET];
	int err = check_generation(s);

	if (err)
		return err;
	tally__sqlite_bind_text(st, 1, key, key_len);
	err = tally__sqlite_row(s, S_LEASE_GET, "lease", found);
	if (err)
		return err;
	if (!*found)
		return check_rows(s, rows);
	record->mark = (uint64_t)sqlite3_column_int64(st, 0);
	record->issued = (uint64_t)sqlite3_column_int64(st, 1);
	record->flags = (uint32_t)sqlite3_column_int64(st, 2);
	sqlite3_reset(st);
	return TALLY_OK;
}

static int lease_put(struct tally__sqlite *s, const char *key, size_t key_len,
		     const struct tally_lease_record *record, bool is_new, int64_t rows)
{
	sqlite3_stmt *st = s->stmt[S_LEASE_PUT];
	int err;

	tally__sqlite_bind_text(st, 1, key, key_len);
	sqlite3_bind_int64(st, 2, (int64_t)record->mark);
	sqlite3_bind_int64(st, 3, (int64_t)record->issued);
	sqlite3_bind_int64(st, 4, record->flags);
	err = tally__sqlite_run(s, S_LEASE_PUT, "lease (write)");
	if (err || !is_new)
		return err;
	st = s->stmt[S_META_SET];
	tally__sqlite_bind_text(st, 1, "lease_rows", strlen("lease_rows"));
	sqlite3_bind_int64(st, 2, rows + 1);
	return tally__sqlite_run(s, S_META_SET, "lease (row count)");
}

enum lease_op { LEASE_ACQUIRE, LEASE_CLOSE, LEASE_READ };

struct lease_args {
	enum lease_op op;
	uint64_t min_start, size, issued, leased_hi;
	uint64_t *base_out;
	struct tally_lease_record *read_out;
};

/* The body of one lease operation, inside its transaction (as lease_file.c's file_op). */
static int lease_apply(struct tally__sqlite *s, const char *key, size_t key_len,
		       const struct lease_args *a)
{
	struct tally_lease_record record = { 0 };
	int64_t rows = 0;
	bool found;
	uint64_t base;
	int err = lease_get(s, key, key_len, &record, &found, &rows);

	if (err)
		return err;
	if (!found && a->op != LEASE_ACQUIRE) {
		tally__store_set_error(s, "sqlite: lease: key never acquired");
		return TALLY_ENOTFOUND;
	}
	switch (a->op) {
	case LEASE_READ:
		*a->read_out = record;
		return TALLY_OK;
	case LEASE_CLOSE:
		if (record.mark != a->leased_hi || a->issued > a->leased_hi)
			return TALLY_OK; /* someone leased after the caller: the record is theirs */
		record = (struct tally_lease_record){ a->issued, a->issued, TALLY_LEASE_CLEAN };
		return lease_put(s, key, key_len, &record, false, rows);
	case LEASE_ACQUIRE:
	default:
		base = record.mark > a->min_start ? record.mark : a->min_start;
		if (base > UINT64_MAX - a->size) {
			tally__store_set_error(s, "sqlite: lease: mark out of range");
			return TALLY_EINVAL;
		}
		record = (struct tally_lease_record){ base + a->size, a->issued, 0 };
		err = lease_put(s, key, key_len, &record, !found, rows);
		if (!err)
			*a->base_out = base;
		return err;
	}
}

/*
 * A lease is durable before it returns, whatever synchronous the URL chose: under
 * synchronous=normal the connection switches to FULL around the transaction (a WAL commit
 * under FULL syncs the WAL, which also makes every earlier commit durable).
 */
static int lease_op(void *impl, const char *key, size_t key_len, const struct lease_args *a)
{
	struct tally__sqlite *s = impl;
	bool writes = a->op != LEASE_READ;
	int err = TALLY_OK;

	pthread_mutex_lock(&s->lock);
	if (writes && s->sync_normal)
		err = tally__sqlite_run(s, S_SYNC_FULL, "lease (synchronous)");
	if (!err)
		err = writes ? tally__sqlite_begin_write(s, "lease") : tally__sqlite_begin(s, "lease");
	if (!err) {
		err = lease_apply(s, key, key_len, a);
		if (!err)
			err = tally__sqlite_commit(s, "lease");
		if (err)
			tally__sqlite_rollback(s);
	}
	if (writes && s->sync_normal)
		tally__sqlite_run(s, S_SYNC_NORMAL, "lease (synchronous)");
	pthread_mutex_unlock(&s->lock);
	return err;
}

static int sqlite_lease_acquire(void *impl, const char *key, size_t key_len, uint64_t min_start,
				uint64_t size, uint64_t issued, uint64_t *base_out)
{
	struct lease_args a = { .op = LEASE_ACQUIRE, .min_start = min_start, .size = size,
				.issued = issued, .base_out = base_out };

	return lease_op(impl, key, key_len, &a);
}

static int sqlite_lease_close(void *impl, const char *key, size_t key_len, uint64_t leased_hi,
			      uint64_t issued)
{
	struct lease_args a = { .op = LEASE_CLOSE, .leased_hi = leased_hi, .issued = issued };

	return lease_op(impl, key, key_len, &a);
}

static int sqlite_lease_read(void *impl, const char *key, size_t key_len,
			     struct tally_lease_record *out)
{
	struct lease_args a = { .op = LEASE_READ, .read_out = out };

	return lease_op(impl, key, key_len, &a);
}

const struct tally_lease_ops tally__sqlite_lease_ops = {
	.acquire = sqlite_lease_acquire,
	.close = sqlite_lease_close,
	.read = sqlite_lease_read,
	.destroy = NULL, /* the store's provider wrapper owns itself; the impl is the store's */
};

struct lease_visit {
	tally_store_lease_fn fn;
	void *arg;
};

static int emit_lease(struct tally__sqlite *s, sqlite3_stmt *st, void *ctx)
{
	struct lease_visit *v = ctx;
	struct tally_lease_record record = {
		.mark = (uint64_t)sqlite3_column_int64(st, 1),
		.issued = (uint64_t)sqlite3_column_int64(st, 2),
		.flags = (uint32_t)sqlite3_column_int64(st, 3),
	};
	const char *key = (const char *)sqlite3_column_text(st, 0);

	return v->fn(key, (size_t)sqlite3_column_bytes(st, 0), &record, v->arg) ? 1 : 0;
}

int tally__sqlite_leases(void *impl, tally_store_lease_fn fn, void *arg)
{
	struct tally__sqlite *s = tally__sqlite_reader(impl);
	struct lease_visit v = { fn, arg };
	int err;

	pthread_mutex_lock(&s->lock);
	err = visit(s, S_LEASES, emit_lease, &v, "leases");
	pthread_mutex_unlock(&s->lock);
	return tally__sqlite_read_done(impl, s, err);
}
