/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/store/postgres_internal.h: what the PostgreSQL backend's files share (docs/store-
 * postgres.md). postgres.c owns the connection pool, the call loop (deadline, reconnect,
 * backoff with full jitter) and the SQLSTATE mapping; postgres_writer.c the writer, flush,
 * reap and takes; postgres_read.c the reads; postgres_lease.c the lease provider;
 * postgres_sql.c the statements; postgres_params.c the parameter encoding.
 *
 * A call runs as pg_run(store, body, arg): it checks a connection out of the pool (one
 * caller per connection), runs body, and if body failed with a retryable outcome (the
 * connection was lost, a serialization failure or deadlock, the server restarting) it
 * drops the connection, sleeps a full-jitter backoff and runs body again until the call's
 * deadline (options.timeout_ms). A body learns from call->after_ambiguous that an earlier
 * attempt of this call may have been applied by the server (its reply was lost): flush
 * resolves that by its guarded statement, writer_open by its token, take and give refuse
 * to guess (TALLY_EUNAVAIL).
 */
#ifndef TALLY_STORE_POSTGRES_INTERNAL_H
#define TALLY_STORE_POSTGRES_INTERNAL_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tally/store.h>

#define PG_POOL_SIZE 4           /* connections per handle (see docs: why a small pool) */
#define PG_SCHEMA_VERSION 1

struct pg_slot {
	PGconn *conn;    /* NULL when not connected */
	bool in_use;     /* owned by one call (under pg_store.lock) */
};

struct pg_store {
	char *conninfo;      /* what libpq gets: a URL or key=value string (holds the password) */
	char *password;      /* the password in it (to scrub from texts); NULL if none */
	int64_t timeout_ms;
	pthread_mutex_t lock; /* the pool's slots */
	pthread_cond_t slot_free;
	struct pg_slot slots[PG_POOL_SIZE];
	uint64_t lease_generation; /* the lease table's generation seen at open; 0: unknown */
};

/* One call in flight: its connection, deadline and what the last attempt found. */
struct pg_call {
	struct pg_store *store;
	PGconn *conn;
	int64_t deadline_ms;   /* CLOCK_MONOTONIC ms */
	int attempt;           /* 0 for the first */
	bool after_ambiguous;  /* an earlier attempt may have been applied */
	bool retry;            /* set by pg_exec: the failure allows another attempt */
	bool ambiguous;        /* set by pg_exec: the statement may have run */
	char sqlstate[6];
};

typedef int (*pg_body_fn)(struct pg_call *call, void *arg);

/* Runs body with a connection, retrying as described above. */
int tally__pg_run(struct pg_store *store, pg_body_fn body, void *arg);

/* Runs the prepared statement `name` with text (formats NULL) or per-parameter formats.
 * Returns the result on PGRES_TUPLES_OK / PGRES_COMMAND_OK; NULL with the tally error in
 * *err (and call->retry, call->ambiguous, call->sqlstate set) otherwise. */
PGresult *tally__pg_exec(struct pg_call *call, const char *name, int count,
			 const char *const *values, const int *lengths, const int *formats,
			 int *err);
/* A statement with no effect beyond itself (a read, or one idempotent update), run under
 * tally__pg_run: *result is the caller's to PQclear (NULL on error). */
int tally__pg_query(struct pg_store *store, const char *name, int count,
		    const char *const *values, const int *lengths, const int *formats,
		    PGresult **result);
/* Runs a plain SQL command without parameters (BEGIN, COMMIT, ROLLBACK). */
int tally__pg_command(struct pg_call *call, const char *sql);

/* Ends the body's transaction after a failure that left it open and healthy; returns err. */
int tally__pg_rollback_with(struct pg_call *call, int err);

/* Records `text` (scrubbed of the password) as the calling thread's last error. */
void tally__pg_set_error(struct pg_store *store, const char *text);
void tally__pg_set_errorf(struct pg_store *store, const char *format, ...)
	__attribute__((format(printf, 2, 3)));

/* A growable buffer for binary-format array parameters (PostgreSQL's array_send layout). */
struct pg_array {
	char *data;
	size_t len, cap;
	uint32_t count;
	bool failed;     /* an allocation failed */
};
void tally__pg_array_begin(struct pg_array *array, uint32_t element_oid);
void tally__pg_array_add(struct pg_array *array, const void *bytes, size_t len);
void tally__pg_array_add_int8(struct pg_array *array, int64_t value);
void tally__pg_array_add_int4(struct pg_array *array, int32_t value);
void tally__pg_array_add_bool(struct pg_array *array, bool value);
/* Fills in the element count; returns 0, or -1 if an allocation failed. */
int tally__pg_array_finish(struct pg_array *array);
void tally__pg_array_free(struct pg_array *array);

/* A number as a text parameter. */
struct pg_number {
	char text[24];
};
const char *tally__pg_u64_text(struct pg_number *buf, uint64_t value);
const char *tally__pg_i64_text(struct pg_number *buf, int64_t value);

/* Decodes a bytea result value in hex output ("\x6162") into out (cap bytes). Returns the
 * length, or -1 if malformed or too long. */
long tally__pg_bytea_decode(const char *text, char *out, size_t cap);
int64_t tally__pg_int8(const PGresult *result, int row, int column);

/* The statements, prepared on every new connection (postgres_sql.c). */
struct pg_statement {
	const char *name;
	const char *sql;
};
extern const struct pg_statement tally__pg_statements[];
extern const char tally__pg_schema_sql[];

extern const struct tally_lease_ops tally__pg_lease_ops;
/* postgres_lease.c: reads the lease table's generation (0 if the table lost it). */
int tally__pg_lease_generation(struct pg_call *call, uint64_t *generation);

/* postgres_writer.c: the ops other than open, close and the leases. */
int tally__pg_writer_open(void *impl, const char *writer_id, int64_t ttl_ms,
			  struct tally_store_epoch_info *info);
int tally__pg_heartbeat(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms);
int tally__pg_flush(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms,
		    const struct tally_store_batch *batch, struct tally_store_flush_result *result);
int tally__pg_writer_close(void *impl, const char *writer_id, uint64_t epoch);
int tally__pg_reap(void *impl, int64_t *reaped);
int tally__pg_take(void *impl, const char *key, size_t key_len, int64_t n, int64_t *remaining);
int tally__pg_give(void *impl, const char *key, size_t key_len, int64_t n, int64_t *total);
/* postgres_read.c */
int tally__pg_read_counter(void *impl, const char *key, size_t key_len, int64_t *total);
int tally__pg_read_gauge(void *impl, const char *key, size_t key_len, int64_t *value,
			 int64_t *live_writers);
int tally__pg_counters(void *impl, tally_store_counter_fn fn, void *arg);
int tally__pg_writers(void *impl, tally_store_writer_fn fn, void *arg);
int tally__pg_sessions(void *impl, const char *writer_id, tally_store_session_fn fn,
		       void *arg);
int tally__pg_connections(void *impl, const char *session_id, tally_store_connection_fn fn,
			  void *arg);
int tally__pg_leases(void *impl, tally_store_lease_fn fn, void *arg);

#endif
