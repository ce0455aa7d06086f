/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/store.h: the durable store behind tally's in-process structures, one interface for
 * every backend (SQLite, the embedded default; PostgreSQL; DynamoDB). docs/store.md gives the
 * model, each backend's schema and the exactly-once argument; this header is the contract.
 *
 * Model
 * - A store is opened from a URL: "sqlite:///path/file.db", "postgresql://...",
 *   "dynamodb://..." (each backend's doc lists its options). tally_store_register_backend
 *   adds a scheme.
 * - A handle is at most one *writer*: one process incarnation, named by a writer id (given in
 *   the options, or generated) and an *epoch* the store assigns at tally_store_writer_open,
 *   strictly higher than every earlier epoch of that id. Opening a new epoch fences every
 *   older epoch of the id: their later writes are refused with TALLY_EFENCED.
 * - A writer holds a *lease* in the store: an expiry on the store's clock (the server's clock
 *   where the store has one), renewed by every flush and heartbeat. A writer whose lease has
 *   expired is dead; tally_store_reap removes its gauge contributions and its connection
 *   records (recounting the listeners of its sessions, see Records) and fences it.
 * - Writers send *flushes*: numbered batches (struct tally_store_batch). A flush is applied
 *   exactly once per (writer id, epoch, seq): applying it records seq for the writer in the
 *   same atomic step as its effects (per item on stores without multi-item transactions), and
 *   a flush whose seq the store already holds is acknowledged without effect. Hence the rule
 *   for callers: after any failure, re-send the *same* batch under the *same* seq until it is
 *   acknowledged; new changes go into seq + 1. Seqs must increase by one per acknowledged
 *   flush (seq 1 is the first of an epoch).
 * - Counters: the store keeps one total per key, the sum of every delta ever flushed by any
 *   writer; a writer's death keeps what it flushed.
 * - Gauges: the store keeps each writer's own value per key (absolute, not a delta: a flush
 *   sets the writer's contribution). The global value is the sum over live writers.
 * - Records: session and connection records (the fields of tally/session.h's info structs),
 *   latest state wins per key; each row remembers the writer and epoch that wrote it.
 *   After a writer's records are removed (reap, writer_open fencing older epochs,
 *   writer_close), every session it wrote or had a listener in stores as listenerCount the
 *   number of its listener connections that remain (recounted, not decremented).
 * - Takes: a conditional decrement of a counter's total (never below zero), one atomic store
 *   operation, and its reverse (give). They are for fleet-wide floors and rate limits
 *   (escrow); they are not idempotent under an ambiguous failure (TALLY_EUNAVAIL: the take
 *   may or may not have happened), which the escrow layer above resolves.
 * - Leases for sequences are written through, not behind: tally_store_lease_provider gives a
 *   struct tally_lease_provider (tally/lease.h) whose acquire is durable in the store before
 *   it returns. A key that the store has no record of is "never acquired" only if the
 *   store's lease table was never reset: backends keep a table generation and refuse
 *   (TALLY_ECORRUPT) when it no longer matches what a provider saw.
 *
 * Threads. No registration. Any call may run in any thread, concurrently with any other
 * call on the same handle (the backend serialises or multiplexes them as it needs), except:
 *   tally_store_close           exclusive: no other call on the handle while it runs or
 *                               after it; after every lease provider made from the handle is
 *                               destroyed and every write-behind flusher over it
 *   a visitor callback          must not call into the same handle (tally_store_counters,
 *                               _writers, _sessions, _connections, _leases)
 *   a backend's open and close  each called alone for its impl; every other op must allow
 *                               concurrent calls (struct tally_store_ops)
 * Calls block for store round trips (bounded by options.timeout_ms).
 *
 * Keys are byte strings of 1 to TALLY_STORE_KEY_MAX bytes; any bytes except NUL, stored and
 * returned verbatim (quotes, backslashes, SQL and JSON fragments, UTF-8 or not).
 *
 * Time: every time value carries its unit in its name; `_ms` values are milliseconds, and
 * timestamps are milliseconds since the Unix epoch.
 *
 * Errors (each call lists its own). Transient (tally_store_err_transient returns true: retry
 * with backoff, the data is kept): TALLY_EUNAVAIL (unreachable, connection cut, 5xx,
 * throttled, or an outcome that could not be resolved), TALLY_EBUSY (locked by another
 * process past the busy timeout), TALLY_ETIMEDOUT, TALLY_EIO (an I/O error, disk full).
 * Permanent (report, never spin): TALLY_EINVAL, TALLY_ETOOLONG, TALLY_EPERM (authentication
 * or permission refused), TALLY_ECORRUPT (schema of another version, damaged file, lease
 * table reset), TALLY_EFENCED (this writer's epoch was superseded or reaped: open a new
 * epoch), TALLY_ESTATE (no writer open), TALLY_ENOMEM, TALLY_ENOTFOUND (reads),
 * TALLY_EFLOOR (take). A failing call changes nothing in the store, except where an
 * ambiguous failure (EUNAVAIL, ETIMEDOUT) leaves it unknown whether a flush landed: the
 * re-sent flush resolves it.
 */
#ifndef TALLY_STORE_H
#define TALLY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tally/error.h>
#include <tally/lease.h>
#include <tally/session.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_STORE_KEY_MAX 512       /* bytes in a counter, gauge or take key */
#define TALLY_STORE_WRITER_ID_MAX 128 /* bytes in a writer id */
#define TALLY_STORE_URL_MAX 4096
#define TALLY_STORE_DURATION_MAX_MS (INT64_C(1) << 40) /* ~35 years: the options' ceiling */

struct tally_store;

/* Options for tally_store_open; zero-initialise and set what you need. */
struct tally_store_options {
	const char *writer_id;     /* NULL: generated (host name, pid and random bits) */
	int64_t writer_ttl_ms;     /* lease of a writer; 0 = 10000. Reaped after it expires */
	int64_t timeout_ms;        /* bound on one store call, retries inside included; 0 = 5000 */
				   /* both at most TALLY_STORE_DURATION_MAX_MS (else EINVAL) */
	bool create_schema;        /* create tables if missing (default false: set true) */
};

/* One writer as the store sees it (tally_store_writers). */
struct tally_store_writer_info {
	char writer_id[TALLY_STORE_WRITER_ID_MAX + 1];
	uint64_t epoch;         /* the current (highest) epoch of the id */
	uint64_t last_seq;      /* the last flush applied under that epoch */
	int64_t expires_at_ms;  /* lease expiry, store clock */
	int64_t store_now_ms;   /* the store's clock when this was read */
	bool live;              /* expires_at_ms > store_now_ms and not reaped */
	bool reaped;
};

/* ---- a flush -------------------------------------------------------------------------- */

struct tally_store_delta {      /* a counter's delta since the writer's previous flush */
	const char *key;
	size_t key_len;
	int64_t delta;
};

struct tally_store_gauge {      /* the writer's own value of a gauge (absolute) */
	const char *key;
	size_t key_len;
	int64_t value;
};

enum tally_store_record_kind {
	TALLY_STORE_SESSION = 1,
	TALLY_STORE_CONNECTION = 2,
};

enum tally_store_record_op {
	TALLY_STORE_PUT = 1,    /* insert or replace the whole record */
	TALLY_STORE_DELETE = 2, /* remove it (absent is not an error) */
};

struct tally_store_record {
	enum tally_store_record_kind kind;
	enum tally_store_record_op op;
	union {
		struct tally_session_info session;       /* kind SESSION; DELETE reads session_id */
		struct tally_connection_info connection; /* kind CONNECTION; DELETE reads the id */
	} as;
};

/* A flush. Every key at most once per kind (the flusher coalesces); the arrays are read
 * during the call only. Any part may be empty. */
struct tally_store_batch {
	uint64_t seq;                                 /* 1, 2, ... per epoch */
	const struct tally_store_delta *counters;
	size_t counter_count;
	const struct tally_store_gauge *gauges;
	size_t gauge_count;
	const struct tally_store_record *records;
	size_t record_count;
};

/* What a flush did. */
struct tally_store_flush_result {
	bool already_applied;   /* the store held this seq already: acknowledged, no effect */
	int64_t rows_written;   /* rows (items) the backend wrote for this call */
	int64_t store_calls;    /* round trips or statements it took (for stats) */
};

/* ---- opening -------------------------------------------------------------------------- */

/*
 * tally_store_open: connects to the store at `url` (see each backend's doc), checks its
 * schema version and (options->create_schema) creates the schema if missing. options may be
 * NULL (defaults, create_schema false). Opens no writer. Blocking. The URL (which may hold a
 * password) is never logged or copied into an error message.
 * Errors: EINVAL (NULL, unknown scheme, malformed URL or option), ETOOLONG (URL), EPERM,
 * ECORRUPT (schema of another version; damaged file), EUNAVAIL, ETIMEDOUT, EIO, ENOMEM.
 */
int tally_store_open(struct tally_store **out, const char *url,
		     const struct tally_store_options *options);

/* tally_store_close: closes the handle (does not end the writer's lease: a clean shutdown
 * calls tally_store_writer_close first). NULL is a no-op. Exclusive (see "Threads").
 * Blocking. */
int tally_store_close(struct tally_store *store);

/* A static description of the last failure on this handle in this thread, without secrets
 * (e.g. "sqlite: database is locked", "postgresql: could not connect to server"); "" if
 * none. Valid until the thread's next call on the handle. store NULL: the text of this
 * thread's last failed tally_store_open. */
const char *tally_store_last_error(const struct tally_store *store);

/* true for the transient codes listed under Errors above. */
bool tally_store_err_transient(int err);

/* ---- the writer ----------------------------------------------------------------------- */

/* What tally_store_writer_open found and made. The prior fields describe the id's latest
 * epoch before this open (all 0 if the id is new): a flusher that was fenced with a flush
 * of seq S under epoch E still pending knows that flush landed iff prior_epoch == E and
 * prior_last_seq >= S (nothing can land under E once the new epoch exists). */
struct tally_store_epoch_info {
	uint64_t epoch;          /* the new epoch */
	uint64_t prior_epoch;    /* the id's highest epoch before this open; 0 if none */
	uint64_t prior_last_seq; /* the last flush applied under prior_epoch */
	bool prior_reaped;       /* prior_epoch had been reaped (its lease expired) */
};

/*
 * tally_store_writer_open: registers this handle as a new epoch of options.writer_id:
 * epoch = max(every earlier epoch of the id) + 1, lease expiry = store now + writer_ttl_ms,
 * last seq 0. Older epochs of the id are fenced, atomically with the registration, and
 * their gauge contributions and connection records are removed (a new incarnation
 * republishes its own). info (may be NULL) gets the new epoch and the prior one's state.
 * A writer fenced (EFENCED from any call) or closed leaves the handle without a writer, so
 * writer_open may be called again on it for the next epoch.
 * Errors: ESTATE (a writer is already open on this handle), EPERM, EUNAVAIL, ETIMEDOUT,
 * EBUSY, EIO. After EUNAVAIL/ETIMEDOUT the registration may have happened: calling again
 * opens yet another epoch, which is safe (epochs need not be consecutive).
 */
int tally_store_writer_open(struct tally_store *store, struct tally_store_epoch_info *info);

/* The writer id and epoch of this handle. Errors: EINVAL, ESTATE (no writer open). */
int tally_store_writer_identity(const struct tally_store *store,
				char id_out[TALLY_STORE_WRITER_ID_MAX + 1], uint64_t *epoch_out);

/*
 * tally_store_heartbeat: renews the lease (expiry = store now + writer_ttl_ms). Errors:
 * ESTATE, EFENCED (superseded or reaped: its contributions are gone; open a new epoch and
 * republish), EUNAVAIL, ETIMEDOUT, EBUSY, EIO.
 */
int tally_store_heartbeat(struct tally_store *store);

/*
 * tally_store_flush: applies `batch` exactly once (see Model) and renews the lease, under
 * the handle's writer. result may be NULL. batch->seq must be the last acknowledged seq + 1,
 * or a re-send of the last one (acknowledged with already_applied).
 * Errors: EINVAL (NULL, seq 0, seq beyond last + 1, a key empty, NUL inside a key, a
 * duplicate key), ETOOLONG, ESTATE, EFENCED, EPERM, EUNAVAIL/ETIMEDOUT (outcome unknown:
 * re-send the same batch), EBUSY, EIO, ECORRUPT, ENOMEM.
 */
int tally_store_flush(struct tally_store *store, const struct tally_store_batch *batch,
		      struct tally_store_flush_result *result);

/*
 * tally_store_writer_close: a clean shutdown: removes the writer's gauge contributions and
 * connection records and ends its lease (the counter deltas it flushed stay). Call after the
 * final flush. Errors: ESTATE, EFENCED, EUNAVAIL, ETIMEDOUT, EBUSY, EIO.
 */
int tally_store_writer_close(struct tally_store *store);

/* ---- reads (need no writer) ----------------------------------------------------------- */

/* *total = the counter's store total. ENOTFOUND if no delta was ever flushed for it. */
int tally_store_read_counter(struct tally_store *store, const char *key, size_t key_len,
			     int64_t *total);

/* *value = sum of the live writers' contributions to the gauge (0 with none: a gauge whose
 * writers all died reads 0, not ENOTFOUND). *live_writers (may be NULL) = how many
 * contributed. */
int tally_store_read_gauge(struct tally_store *store, const char *key, size_t key_len,
			   int64_t *value, int64_t *live_writers);

/* Visitors: called once per row, in key order where the backend can; return non-zero to
 * stop. Strings and keys are valid only during the call. A callback must not call into the
 * same handle (the backend may hold the handle's connection for the whole visit). */
typedef int (*tally_store_counter_fn)(const char *key, size_t key_len, int64_t total, void *arg);
typedef int (*tally_store_writer_fn)(const struct tally_store_writer_info *writer, void *arg);
typedef int (*tally_store_session_fn)(const struct tally_session_info *session,
				      const char *writer_id, uint64_t epoch, void *arg);
typedef int (*tally_store_connection_fn)(const struct tally_connection_info *connection,
					 const char *writer_id, uint64_t epoch, void *arg);

int tally_store_counters(struct tally_store *store, tally_store_counter_fn fn, void *arg);
int tally_store_writers(struct tally_store *store, tally_store_writer_fn fn, void *arg);
/* writer_id NULL: every session; else only those last written by that writer id (what a
 * restarted writer reloads). */
int tally_store_sessions(struct tally_store *store, const char *writer_id,
			 tally_store_session_fn fn, void *arg);
/* session_id NULL: every connection; else that session's, in (session, language) order. */
int tally_store_connections(struct tally_store *store, const char *session_id,
			    tally_store_connection_fn fn, void *arg);

/*
 * tally_store_reap: for every writer whose lease has expired on the store's clock and is
 * not yet reaped: removes its gauge contributions and connection records and marks it
 * reaped (fenced), atomically per writer. *reaped (may be NULL) = how many writers. Any
 * process may reap; two reapers never double-remove. Errors: EUNAVAIL, ETIMEDOUT, EBUSY,
 * EIO, EPERM.
 */
int tally_store_reap(struct tally_store *store, int64_t *reaped);

/* ---- conditional take (escrow) -------------------------------------------------------- */

/*
 * tally_store_take: if the counter's total is >= n (n > 0), subtracts n and sets
 * *remaining (may be NULL) to the new total; else TALLY_EFLOOR and nothing changes. One
 * atomic store operation, linearizable with flushes of the same key. A key never flushed
 * has total 0. Errors: EINVAL, ETOOLONG, EFLOOR, EOVERFLOW, EPERM, EUNAVAIL/ETIMEDOUT (the
 * take may or may not have happened), EBUSY, EIO.
 */
int tally_store_take(struct tally_store *store, const char *key, size_t key_len, int64_t n,
		     int64_t *remaining);

/* tally_store_give: adds n > 0 back (the reverse of a take). Errors: as take, without
 * EFLOOR. */
int tally_store_give(struct tally_store *store, const char *key, size_t key_len, int64_t n,
		     int64_t *total);

/* ---- sequence leases (write-through) -------------------------------------------------- */

/*
 * tally_store_lease_provider: a lease provider (tally/lease.h) over this store; acquire and
 * close are durable in the store before they return, so strict and cached series stay
 * collision-free across every process sharing the store. The provider borrows the handle:
 * destroy it (tally_lease_provider_destroy) before closing the store.
 * Errors: EINVAL, ENOMEM.
 */
int tally_store_lease_provider(struct tally_store *store, struct tally_lease_provider **out);

/* One lease key as the store holds it (tally_store_leases): the crash range of a key whose
 * owner did not close it cleanly is (issued, mark]. */
typedef int (*tally_store_lease_fn)(const char *key, size_t key_len,
				    const struct tally_lease_record *record, void *arg);
int tally_store_leases(struct tally_store *store, tally_store_lease_fn fn, void *arg);

/* ---- backends ------------------------------------------------------------------------- */

/*
 * A backend implements these; tally_store_* validate arguments, keep the writer state and
 * call them. Each op returns a tally_err. `impl` is what open returned. Every op but open
 * and close must be safe to call from several threads at once. The exactly-once rule is the
 * backend's: flush must be idempotent per (writer_id, epoch, seq), and must refuse
 * (EFENCED) a writer whose epoch is not the id's current one or was reaped.
 */
struct tally_store_ops {
	const char *scheme; /* "sqlite", "postgresql", "dynamodb", ... */
	int (*open)(const char *url, const struct tally_store_options *options, void **impl,
		    char *error, size_t error_size);
	void (*close)(void *impl);
	int (*writer_open)(void *impl, const char *writer_id, int64_t ttl_ms,
			   struct tally_store_epoch_info *info);
	int (*heartbeat)(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms);
	int (*flush)(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms,
		     const struct tally_store_batch *batch, struct tally_store_flush_result *result);
	int (*writer_close)(void *impl, const char *writer_id, uint64_t epoch);
	int (*read_counter)(void *impl, const char *key, size_t key_len, int64_t *total);
	int (*read_gauge)(void *impl, const char *key, size_t key_len, int64_t *value,
			  int64_t *live_writers);
	int (*counters)(void *impl, tally_store_counter_fn fn, void *arg);
	int (*writers)(void *impl, tally_store_writer_fn fn, void *arg);
	int (*sessions)(void *impl, const char *writer_id, tally_store_session_fn fn, void *arg);
	int (*connections)(void *impl, const char *session_id, tally_store_connection_fn fn,
			   void *arg);
	int (*reap)(void *impl, int64_t *reaped);
	int (*take)(void *impl, const char *key, size_t key_len, int64_t n, int64_t *remaining);
	int (*give)(void *impl, const char *key, size_t key_len, int64_t n, int64_t *total);
	const struct tally_lease_ops *lease_ops; /* impl is the backend's impl */
	int (*leases)(void *impl, tally_store_lease_fn fn, void *arg);
	/* The last error text of the calling thread on this impl (no secrets); may be NULL. */
	const char *(*last_error)(void *impl);
};

/* Adds a backend for ops->scheme (the ops must outlive every store opened through them).
 * Thread-safe. Errors: EINVAL, EEXIST (scheme taken), EFULL (more than 16 schemes). */
int tally_store_register_backend(const struct tally_store_ops *ops);

#ifdef __cplusplus
}
#endif
#endif /* TALLY_STORE_H */
