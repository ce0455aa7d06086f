/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/writebehind/internal.h: the flusher's state, shared by flusher.c (the thread, the
 * batch's life, retries, epochs, stats), registry.c (registered counters and gauges) and
 * records.c (session tables: the change feed, the pending record set).
 *
 * Locking. wb->lock (a pthread mutex) guards everything below except what a field's comment
 * says; the flusher thread holds it to build a batch and to apply an acknowledgement, never
 * across a store call. The pending batch is the flusher thread's alone between build and
 * acknowledgement: nothing else reads or writes it, and the entries it points into stay
 * allocated until it is acknowledged or re-queued (removed entries wait, see wb_entry).
 *
 * Invariants
 * W1 At most one batch is pending. While one is, nothing is drained and no gauge or record is
 *    taken: it is re-sent unchanged (same seq, same epoch) until the store acknowledges it
 *    or fences the epoch.
 * W2 A counter's unacknowledged increments are exactly: undrained (in the counter) + carry +
 *    in_flight (in the pending batch). Every step moves an amount between these three or
 *    from in_flight to the store, never copies it.
 * W3 A record id is pending at most once per kind (the set coalesces), and is taken into at
 *    most one batch at a time.
 */
#ifndef TALLY_WRITEBEHIND_INTERNAL_H
#define TALLY_WRITEBEHIND_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "tally/writebehind.h"
#include "session/internal.h"

enum wb_kind { WB_COUNTER = 1, WB_GAUGE, WB_SGAUGE };

/* A registered counter or gauge. A removed one keeps its entry (source NULL) until what it
 * owes the store is acknowledged: a counter's carry, a gauge's final 0. */
struct wb_entry {
	enum wb_kind kind;
	union {
		struct tally_counter *counter;
		struct tally_gauge *gauge;
		struct tally_sgauge *sgauge;
		void *any;
	} source;          /* NULL once removed */
	size_t index;      /* in its registry's array */
	int64_t carry;     /* counters: drained, in no batch (W2) */
	int64_t in_flight; /* counters: the delta in the pending batch; gauges: the value */
	bool in_batch;
	bool acked;        /* gauges: acked_value is the store's value for this epoch */
	int64_t acked_value;
	const char *key;   /* NUL-terminated copy in the same allocation (keys hold no NUL) */
	size_t key_len;
};

/* Counters or gauges by key: an array to walk, a tsearch tree to find. */
struct wb_registry {
	struct wb_entry **entries;
	size_t count, cap;
	void *tree;
};

/* A record id waiting for a batch (W3). With a feed it is read from the table when taken
 * (latest state wins); without one (its table detached, or a reconcile's delete) it carries
 * the record to write. */
struct wb_pending {
	struct wb_pending *prev, *next;           /* FIFO: oldest first */
	enum tally_store_record_kind kind;
	struct wb_feed *feed;                     /* NULL: `record` is what to write */
	struct tally_store_record *record;        /* malloc'ed, only without a feed */
	bool tombstone;                           /* known deleted when it was queued */
	char id[TALLY_SESSION_ID_MAX + 1];
};

/* An attached session table. */
struct wb_feed {
	struct tally_session_feed queues; /* what the table pushes onto */
	struct tally_session_table *table;
	struct wb_feed *next;
};

struct wb_batch {
	bool pending;             /* W1 */
	bool complete;            /* it took everything there was (no record left behind) */
	uint64_t seq, epoch;
	uint64_t gen;             /* flush requests it answers (wb->request_gen at build) */
	int64_t built_ms;         /* monotonic ms of the build: what was durable by then */
	int64_t attempts;         /* store calls made for it */
	bool ambiguous;           /* a call failed with an outcome unknown (may have landed) */
	bool landed;              /* found in the store before a new epoch (resolve_before_open) */
	struct tally_store_delta *deltas;
	struct tally_store_gauge *gauges;
	struct tally_store_record *records;
	struct wb_entry **delta_entries, **gauge_entries;
	size_t delta_count, gauge_count, record_count;
	size_t delta_cap, gauge_cap, record_cap;
};

#define WB_LATENCY_WINDOW 1024 /* acknowledged flushes the latency percentiles cover */

struct tally_writebehind {
	struct tally_store *store;             /* borrowed; used by the thread only */
	struct tally_writebehind_config config;/* defaults filled in */
	pthread_mutex_t lock;
	pthread_cond_t wake;                   /* the thread waits here */
	pthread_cond_t done;                   /* flush callers wait here */
	pthread_t thread;
	bool stopping;                         /* destroy has begun */
	bool stopped;                          /* the thread has finished its last flush */
	int final_err;                         /* the last flush's outcome at shutdown */

	struct wb_registry counters, gauges;
	struct wb_feed *feeds;
	struct wb_pending *pending_first, *pending_last;
	void *pending_tree;
	size_t pending_records, pending_tombstones;
	bool tombstones_over;                  /* reached the bound: reconcile when possible */
	uint64_t tombstones_dropped;           /* deletes not kept while over (reconcile finds) */
	size_t free_removed;                   /* removed entries not freed yet */
	bool backpressure_notify;              /* on_backpressure is due (called unlocked) */
	bool reconciling;                      /* the thread reads the tables: detach waits */

	/* the flusher thread's own (no lock needed; read under lock for stats) */
	struct wb_batch batch;
	bool writer_open;
	char writer_id[TALLY_STORE_WRITER_ID_MAX + 1]; /* this writer's id, from the first open */
	bool republish;                        /* walk every table into the pending set */
	uint64_t epoch, last_seq;
	int backoff_attempt;
	int64_t next_try_ms;                   /* monotonic: no store call before */
	int64_t last_contact_ms;               /* last successful store call (heartbeat clock) */
	unsigned short jitter_state[3];        /* nrand48 */

	/* flush requests */
	uint64_t request_gen, done_gen;
	uint64_t confirm_gen;                  /* answered by the next good heartbeat */
	int64_t confirm_ms;
	uint64_t permanent_gen;                /* bumped at each permanent error */
	int permanent_err;
	int64_t durable_ms;                    /* everything before this was acknowledged */

	struct tally_writebehind_stats stats;
	int64_t latency_us[WB_LATENCY_WINDOW]; /* a ring of the last acknowledged flushes */
	uint64_t latency_count;
};

/* flusher.c */
int64_t tally__wb_now_ms(void);
void tally__wb_wake(struct tally_writebehind *wb);

/* stats.c, lock held */
void tally__wb_note_latency(struct tally_writebehind *wb, int64_t us);

/* registry.c: lock held unless said otherwise */
int tally__wb_add(struct tally_writebehind *wb, enum wb_kind kind, const char *key,
		  size_t key_len, void *source);
int tally__wb_remove(struct tally_writebehind *wb, bool counter, const char *key,
		     size_t key_len);
int tally__wb_unflushed(struct tally_writebehind *wb, bool counter, const char *key,
			size_t key_len, int64_t *amount);
int tally__wb_take_values(struct tally_writebehind *wb); /* into wb->batch; W1 */
void tally__wb_ack_values(struct tally_writebehind *wb);
void tally__wb_requeue_values(struct tally_writebehind *wb);
void tally__wb_republish_gauges(struct tally_writebehind *wb);
void tally__wb_registry_free(struct tally_writebehind *wb);
int tally__wb_grow(void **array, size_t *cap, size_t need, size_t size);
int tally__wb_grow_pair(void **a, size_t a_size, void **b, size_t b_size, size_t *cap,
			size_t need);

/* records.c */
void tally__wb_collect(struct tally_writebehind *wb);           /* lock held */
int tally__wb_take_records(struct tally_writebehind *wb);       /* lock held; 1: all taken */
void tally__wb_requeue_records(struct tally_writebehind *wb);   /* lock held */
int tally__wb_republish_records(struct tally_writebehind *wb);  /* lock held */
int tally__wb_reconcile(struct tally_writebehind *wb);          /* thread, no lock */
void tally__wb_records_free(struct tally_writebehind *wb);      /* at destroy */

#endif
