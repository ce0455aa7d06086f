/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/writebehind.h: the write-behind flusher. It ships what tally's in-process structures
 * hold to a store (tally/store.h) in numbered, coalesced batches, exactly once, from one
 * background thread. docs/writebehind.md gives the design, the exactly-once argument and the
 * alternatives rejected.
 *
 * What it ships (each registered by key; counter and gauge keys are separate namespaces)
 * - Counters (struct tally_counter): the flusher is the counter's only drainer. Each flush
 *   ships tally_counter_drain's delta (one row per key, never one per increment); while a
 *   batch is unacknowledged nothing is drained, so new increments wait in the counter itself
 *   (memory stays O(keys) however long the store is down).
 * - Gauges (struct tally_gauge and struct tally_sgauge): the store keeps this writer's
 *   absolute value; a flush sends a gauge's value when it differs from the last acknowledged
 *   one, and every gauge after a new epoch (republish).
 * - Session tables (tally/session.h): every session and connection change is written behind
 *   as a record, coalesced per key: the flusher learns which ids changed from a change feed
 *   inside the table and reads each one's latest state when it builds a batch (latest state
 *   wins; a record absent from the table is written as a delete, a "tombstone").
 *
 * Exactly once (store.h's rule). The flusher owns the store handle's writer: it opens it,
 * numbers its flushes 1, 2, ... per epoch and re-sends a failed batch unchanged under the
 * same number until the store acknowledges it; new changes go into the next number. On
 * TALLY_EFENCED (another handle opened the same writer id, or the writer was reaped) it opens
 * a new epoch, learns from struct tally_store_epoch_info whether the pending batch landed,
 * re-sends its counter deltas under the new epoch if it did not, and republishes every gauge
 * and record. So every increment reaches the store total exactly once, whatever fails, with
 * one exception that store.h cannot resolve: a batch whose send failed ambiguously (EUNAVAIL,
 * ETIMEDOUT) when *another handle* opened the same writer id (not a reap). The store then
 * reports the other handle's epoch as the prior one and keeps no seq of ours, so the flusher
 * re-sends (it may count twice), counts it in stats.fence_unresolved and calls on_error.
 * Give every process its own writer id and this cannot happen.
 *
 * What a crash loses. A process killed (kill -9) loses what was added since the last
 * acknowledged flush: at most one interval plus one flush latency of changes while the store
 * is healthy, and everything since the store went away while it is not (stats.lag_ms bounds
 * its age). Gauges and connection records of a dead writer leave the global view when its
 * lease expires and a reaper runs (tally_store_reap).
 *
 * Failures. Transient store errors (tally_store_err_transient) are retried with exponential
 * backoff and full jitter (delay uniform in [0, min(cap, base * 2^attempt)]). Permanent
 * ones go to config.on_error and are retried at the backoff cap, never in a tight loop; the
 * data stays in memory. A heartbeat keeps the lease alive when there is nothing to flush.
 * Deleted records not yet written (pending tombstones) are bounded by
 * config.max_pending_tombstones: past it the flusher stops keeping them one by one, reports
 * backpressure (stats and config.on_backpressure) and, once the store takes writes again,
 * reconciles the store with the tables (it lists its own records in the store and deletes the
 * ones no table holds), so nothing is dropped silently and memory does not grow.
 *
 * Threads and progress. The hot paths (counter adds, gauge moves, session joins and leaves)
 * pay nothing new for a counter or gauge, and for a session table one queue push per
 * connection create or delete and one atomic OR on the session per change, pushing the
 * session only on its first change since the flusher last looked (wait-free, liburcu
 * wfcqueue). The calls here take the flusher's mutex for a bounded time (registration,
 * stats) or block (flush, destroy, add_sessions). Callbacks run on the flusher thread without
 * the mutex held.
 *
 * Threads. No registration. Any call may run in any thread, concurrently with any other
 * call, except:
 *   tally_writebehind_destroy     exclusive: no other call on the flusher while it runs or
 *                                 after it (a flush waiting in another thread included)
 *   on_error, on_backpressure     may read stats but must not call tally_writebehind_flush,
 *                                 _destroy or _remove_sessions (they wait for this thread)
 *   add_sessions, remove_sessions outside an RCU read-side section (they wait for a grace
 *   and destroy                   period)
 *
 * Memory ordering. A change that happens-before tally_writebehind_flush's call is in the
 * store when it returns TALLY_OK. Changes made concurrently with the call may or may not be.
 *
 * Caller duties. The store handle, every registered counter, gauge and table must outlive
 * their registration (remove them, or destroy the flusher, before destroying them); no one
 * else drains a registered counter; no writer may be open on the store handle (the flusher
 * opens it); tally_store_close comes after tally_writebehind_destroy.
 *
 * Errors (each call lists its own): TALLY_EINVAL (NULL, empty key, NUL in a key, bad config),
 * TALLY_ETOOLONG (key over TALLY_STORE_KEY_MAX), TALLY_EEXIST (key or table already
 * registered), TALLY_ENOTFOUND, TALLY_ENOMEM, TALLY_ETHREAD (the thread could not start),
 * TALLY_ETIMEDOUT, TALLY_ESTATE (the flusher is shutting down), and a store's permanent codes
 * as flush reports them.
 */
#ifndef TALLY_WRITEBEHIND_H
#define TALLY_WRITEBEHIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tally/error.h>
#include <tally/store.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_WRITEBEHIND_FOREVER (-1) /* a timeout_ms that never expires */

struct tally_writebehind;
/* Registered objects are only pointed to (tally/counter.h, tally/gauge.h, tally/session.h),
 * so this header needs none of their layouts. */
struct tally_counter;
struct tally_gauge;
struct tally_sgauge;
struct tally_session_table;

/* Configuration; zero-initialise and set what you need. Every 0 means the default. */
struct tally_writebehind_config {
	int64_t interval_ms;        /* flush period; default 100 */
	int64_t collect_ms;         /* session feeds are collected this often; default 2 */
	int64_t heartbeat_ms;       /* lease renewal when idle; default 1000 (keep <= ttl / 3) */
	int64_t backoff_base_ms;    /* first retry delay bound; default 10 */
	int64_t backoff_cap_ms;     /* largest retry delay; default 5000 */
	int64_t shutdown_timeout_ms;/* destroy's final flush bound; default 10000 */
	size_t max_batch_records;   /* records per flush (more wait for the next); default 4096 */
	size_t max_pending_tombstones; /* see Failures above; default 65536 */
	/* Called on the flusher thread for each permanent error (and for EFENCED) with a text
	 * free of secrets; may be NULL. */
	void (*on_error)(int err, const char *text, void *arg);
	/* Called when the pending tombstones reach their bound (once per episode); may be NULL. */
	void (*on_backpressure)(size_t pending_tombstones, void *arg);
	void *callback_arg;
	uint64_t jitter_seed;       /* 0: seeded from the clock and pid */
};

/*
 * tally_writebehind_create: starts a flusher over `store` (which it borrows; no writer may be
 * open on it) and its thread. The thread opens the writer (retrying as it would a flush), so
 * create does not wait for the store. config may be NULL. Blocking only for the thread start.
 * Errors: EINVAL, ENOMEM, ETHREAD.
 */
int tally_writebehind_create(struct tally_writebehind **out, struct tally_store *store,
			     const struct tally_writebehind_config *config);

/*
 * tally_writebehind_destroy: flushes everything (bounded by config.shutdown_timeout_ms), and
 * if all of it was acknowledged closes the writer (tally_store_writer_close: its gauges and
 * connection records leave the store), then stops the thread and frees the flusher. The
 * registered objects are no longer touched when it returns. NULL is a no-op. Exclusive (see
 * "Threads"). Returns OK, or the error that kept the final flush from completing
 * (ETIMEDOUT, a store code): then the unflushed changes are lost with the process and the
 * writer's lease is left to expire.
 */
int tally_writebehind_destroy(struct tally_writebehind *wb);

/* ---- registration (any thread, any time) --------------------------------------------- */

/* Registers `counter` under key (1 to TALLY_STORE_KEY_MAX bytes, no NUL). Its whole value
 * since its last drain is shipped. Errors: EINVAL, ETOOLONG, EEXIST, ENOMEM, ESTATE. */
int tally_writebehind_add_counter(struct tally_writebehind *wb, const char *key, size_t key_len,
				  struct tally_counter *counter);
/* Registers a gauge (single word or sharded) under key. Errors: as add_counter. */
int tally_writebehind_add_gauge(struct tally_writebehind *wb, const char *key, size_t key_len,
				struct tally_gauge *gauge);
int tally_writebehind_add_sgauge(struct tally_writebehind *wb, const char *key, size_t key_len,
				 struct tally_sgauge *gauge);

/* Unregisters: a counter's last delta (taken now) and a gauge's value 0 are still shipped by
 * the next flushes; the object itself is not touched after the call returns.
 * Errors: EINVAL, ENOTFOUND. */
int tally_writebehind_remove_counter(struct tally_writebehind *wb, const char *key,
				     size_t key_len);
int tally_writebehind_remove_gauge(struct tally_writebehind *wb, const char *key,
				   size_t key_len);

/*
 * tally_writebehind_add_sessions: attaches the table's change feed and queues every session
 * and connection it holds now, so the store gets all of them, then every change. Blocking (one
 * RCU grace period); not inside a read-side section. At most one flusher per table.
 * Errors: EINVAL, EEXIST (a flusher is attached), ENOMEM, ESTATE, EBUSY (inside a read-side
 * section).
 */
int tally_writebehind_add_sessions(struct tally_writebehind *wb,
				   struct tally_session_table *table);
/* Detaches the feed; changes already seen are still written (their latest state is read now).
 * Blocking (a grace period). Errors: EINVAL, ENOTFOUND, ENOMEM, EBUSY. */
int tally_writebehind_remove_sessions(struct tally_writebehind *wb,
				      struct tally_session_table *table);

/* ---- flushing ------------------------------------------------------------------------ */

/*
 * tally_writebehind_flush: wakes the flusher and blocks until every change that happens-
 * before this call is acknowledged by the store, or timeout_ms passes
 * (TALLY_WRITEBEHIND_FOREVER: no bound). Errors: EINVAL, ETIMEDOUT (the changes are kept and
 * flushed later), ESTATE (shutting down), or a permanent store error hit while waiting (the
 * flusher keeps retrying at the backoff cap).
 */
int tally_writebehind_flush(struct tally_writebehind *wb, int64_t timeout_ms);

/* ---- observing ----------------------------------------------------------------------- */

struct tally_writebehind_stats {
	int64_t flushes;            /* acknowledged batches */
	int64_t already_applied;    /* ... of which the store had applied before (resolved) */
	int64_t attempts;           /* flush calls made (acknowledged or not) */
	int64_t retries;            /* re-sends of an unacknowledged batch */
	int64_t keys_written;       /* counter + gauge keys + records in acknowledged batches */
	int64_t rows_written;       /* rows the store reported writing */
	int64_t heartbeats;
	int64_t epochs;             /* writer epochs opened (1 + recoveries) */
	int64_t fenced;             /* EFENCED recoveries */
	int64_t resent_after_fence; /* pending batches whose deltas were re-sent in a new epoch */
	int64_t fence_unresolved;   /* ... of them possibly landed before (see Exactly once) */
	int64_t transient_errors;
	int64_t permanent_errors;
	int last_error;             /* enum tally_err of the last failure, 0 if none */
	char last_error_text[128];  /* its text, without secrets */
	int64_t flush_latency_p50_us; /* the last 1024 acknowledged flush calls */
	int64_t flush_latency_p99_us;
	int64_t flush_latency_max_us; /* over the flusher's life */
	/* Upper bound on the age of the oldest change not yet acknowledged: now minus the last
	 * moment by which everything was durable (0 right after a complete flush). */
	int64_t lag_ms;
	int64_t pending_records;    /* record ids waiting for a batch */
	int64_t pending_tombstones; /* ... of them deletions */
	int64_t backpressure_events;/* times the tombstone bound was reached */
	bool backpressure;          /* tombstones are over the bound now (reconcile pending) */
	bool writer_open;
	uint64_t epoch;             /* current writer epoch (0 before the first open) */
	uint64_t last_seq;          /* last acknowledged seq in that epoch */
};

/* A consistent copy of the stats. Errors: EINVAL. */
int tally_writebehind_get_stats(struct tally_writebehind *wb, struct tally_writebehind_stats *stats);

/* *amount = the counter's increments not yet acknowledged by the store (exact: what a crash
 * now would lose of it). Errors: EINVAL, ENOTFOUND. */
int tally_writebehind_unflushed_counter(struct tally_writebehind *wb, const char *key,
					size_t key_len, int64_t *amount);
/* *amount = the gauge's value now minus the value last acknowledged (its whole value before
 * the first acknowledgement of the epoch). Errors: EINVAL, ENOTFOUND. */
int tally_writebehind_unflushed_gauge(struct tally_writebehind *wb, const char *key,
				      size_t key_len, int64_t *amount);

#ifdef __cplusplus
}
#endif
#endif /* TALLY_WRITEBEHIND_H */
