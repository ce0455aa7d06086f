/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/sqlite.h: the SQLite backend's shared state, between sqlite.c (open, schema,
 * writers, flushes, reaping, takes) and sqlite_read.c (reads, visitors, leases). Never
 * installed. docs/store.md gives the schema and why each choice was made.
 *
 * One connection per handle, behind `lock`: a SQLite connection runs one transaction at a
 * time, and every op is one short transaction (BEGIN IMMEDIATE for writes, so a write never
 * has to upgrade a read lock and hit SQLITE_BUSY_SNAPSHOT). Processes on one host share the
 * file through SQLite's own locking (WAL); the busy timeout bounds the wait for another
 * process's write lock.
 */
#ifndef TALLY_STORE_SQLITE_H
#define TALLY_STORE_SQLITE_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "store/internal.h"

#define TALLY__SQLITE_SCHEMA_VERSION 1

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
	S_COUNTER_ADD, S_COUNTER_GET, S_TAKE,
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
};

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
/* Copies TEXT column col into out[size] (NUL-terminated); false if it does not fit. */
bool tally__sqlite_column_copy(sqlite3_stmt *st, int col, char *out, size_t size);

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
