/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/sqlite.h: the SQLite backend's shared state, between sqlite.c (statements,
 * schema, open), sqlite_writer.c (writers, flushes, reaping, takes) and sqlite_read.c (reads,
 * visitors, leases). Never installed. docs/store.md gives the schema and why each choice was made.
 *
 * Two connections per handle, each behind its own `lock`. One writes: every op that writes is
 * one short BEGIN IMMEDIATE transaction, so a write never has to upgrade a read lock and hit
 * SQLITE_BUSY_SNAPSHOT. The other (`reader`) serves reads and visitors, so a read never
 * waits behind a flush of the same handle. Processes on one host share the file through
 * SQLite's own locking (WAL); the busy timeout bounds the wait for another process's write
 * lock.
 */
#ifndef TALLY_STORE_SQLITE_H
#define TALLY_STORE_SQLITE_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "store/internal.h"

#define TALLY__SQLITE_SCHEMA_VERSION 1
/* Counter deltas per S_COUNTER_ADD_MANY statement: one step and one reset for 32 rows in
 * place of 32 of each (docs/store.md, Costs, has the saving). */
#define TALLY__SQLITE_COUNTER_ROWS 32

/* writers.reaped: why a writer's contributions are gone. */
enum tally__sqlite_writer_state {
	TALLY__WRITER_LIVE = 0,
	TALLY__WRITER_REAPED = 1, /* lease expired, removed by a reaper */
	TALLY__WRITER_CLOSED = 2, /* tally_store_writer_close */
};

enum tally__sqlite_stmt {
	S_BEGIN, S_COMMIT, S_ROLLBACK, S_SYNC_FULL, S_SYNC_NORMAL,
	S_META_GET, S_META_SET,
	S_WRITER_GET, S_WRITER_PUT, S_WRITER_ADVANCE, S_WRITER_RENEW, S_WRITER_END,
	S_EXPIRED,
	S_COUNTER_ADD, S_COUNTER_ADD_MANY, S_COUNTER_GET, S_TAKE,
	S_GAUGE_SET, S_GAUGE_DEL, S_GAUGE_SUM, S_GAUGES_OF_WRITER_DEL,
	S_SESSION_PUT, S_SESSION_DEL, S_SESSION_CONNECTIONS_DEL,
	S_CONNECTION_PUT, S_CONNECTION_DEL,
	S_LISTENERS_FIX, S_CONNECTIONS_OF_WRITER_DEL,
	S_COUNTERS, S_WRITERS, S_SESSIONS_ALL, S_SESSIONS_OF, S_CONNECTIONS_ALL,
	S_CONNECTIONS_OF,
	S_LEASE_GET, S_LEASE_PUT, S_LEASE_COUNT, S_LEASES,
	S_COUNT
};

struct tally__sqlite {
	pthread_mutex_t lock; /* guards db, the statements and every field below */
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
	char *path;
	dev_t dev;            /* the file's identity at open: a flush checks it is unchanged */
	ino_t ino;
	bool sync_normal;     /* synchronous=normal was asked for (leases still sync) */
	bool read_only;
	int64_t lease_generation; /* meta.lease_generation seen at open */
	struct tally__sqlite *reader; /* the handle's read connection (NULL in the reader) */
};

/* The connection reads and visitors use: the reader of s, or s itself if it has none. */
static inline struct tally__sqlite *tally__sqlite_reader(void *impl)
{
	struct tally__sqlite *s = impl;

	return s->reader ? s->reader : s;
}

/* Ends a read on connection r of handle impl: a failure's text moves to the handle, where
 * ops->last_error looks for it. */
static inline int tally__sqlite_read_done(void *impl, struct tally__sqlite *r, int err)
{
	if (err && r != impl)
		tally__store_set_error(impl, "%s", tally__store_error(r));
	return err;
}

/* Maps a SQLite result code to a tally_err (docs/store.md, "SQLite errors"). */
int tally__sqlite_map(int rc);
/* Records "sqlite: WHAT: <sqlite's message>" as the thread's error on s; returns the
 * mapped code of rc. */
int tally__sqlite_fail(struct tally__sqlite *s, int rc, const char *what);
/* Steps a statement that returns no rows; resets it. */
int tally__sqlite_run(struct tally__sqlite *s, enum tally__sqlite_stmt id, const char *what);
/* Steps a statement once: *row = true with the columns readable (the caller resets), or
 * false (reset). */
int tally__sqlite_row(struct tally__sqlite *s, enum tally__sqlite_stmt id, const char *what,
		      bool *row);
/* BEGIN IMMEDIATE / COMMIT / ROLLBACK (rollback is a no-op outside a transaction). */
int tally__sqlite_begin(struct tally__sqlite *s, const char *what);
int tally__sqlite_commit(struct tally__sqlite *s, const char *what);
void tally__sqlite_rollback(struct tally__sqlite *s);
/* BEGIN IMMEDIATE, then checks the file is still the one opened (not unlinked or
 * replaced: EIO, rolled back). */
int tally__sqlite_begin_write(struct tally__sqlite *s, const char *what);
/* Binds bytes as TEXT (SQLite keeps them verbatim, UTF-8 or not; compared as memcmp). */
void tally__sqlite_bind_text(sqlite3_stmt *st, int index, const char *text, size_t len);
static inline void tally__sqlite_bind_cstr(sqlite3_stmt *st, int index, const char *text)
{
	tally__sqlite_bind_text(st, index, text, strlen(text));
}
/* Copies TEXT column col into out[size] (NUL-terminated); false if it does not fit. */
bool tally__sqlite_column_copy(sqlite3_stmt *st, int col, char *out, size_t size);

/* Writes (sqlite_writer.c), the ops of the same names. */
int tally__sqlite_writer_open(void *impl, const char *writer_id, int64_t ttl_ms,
			      struct tally_store_epoch_info *info);
int tally__sqlite_heartbeat(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms);
int tally__sqlite_flush(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms,
			const struct tally_store_batch *batch,
			struct tally_store_flush_result *result);
int tally__sqlite_writer_close(void *impl, const char *writer_id, uint64_t epoch);
int tally__sqlite_reap(void *impl, int64_t *reaped);
int tally__sqlite_take(void *impl, const char *key, size_t key_len, int64_t n,
		       int64_t *remaining);
int tally__sqlite_give(void *impl, const char *key, size_t key_len, int64_t n, int64_t *total);

/* Leases (sqlite_read.c). */
extern const struct tally_lease_ops tally__sqlite_lease_ops;
/* Visitors and reads (sqlite_read.c). */
int tally__sqlite_read_counter(void *impl, const char *key, size_t key_len, int64_t *total);
int tally__sqlite_read_gauge(void *impl, const char *key, size_t key_len, int64_t *value,
			     int64_t *live_writers);
int tally__sqlite_counters(void *impl, tally_store_counter_fn fn, void *arg);
int tally__sqlite_writers(void *impl, tally_store_writer_fn fn, void *arg);
int tally__sqlite_sessions(void *impl, const char *writer_id, tally_store_session_fn fn,
			   void *arg);
int tally__sqlite_connections(void *impl, const char *session_id, tally_store_connection_fn fn,
			      void *arg);
int tally__sqlite_leases(void *impl, tally_store_lease_fn fn, void *arg);

#endif /* TALLY_STORE_SQLITE_H */
