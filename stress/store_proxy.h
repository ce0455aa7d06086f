/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/store_proxy.h: a store backend of the stress suite's own ("stressproxy") that
 * forwards every call to a real store handle (SQLite, PostgreSQL, DynamoDB) and lets the
 * chaos see and time each flush:
 * - `flushing` (in shared memory) is 1 while a flush is in flight before the real store
 *   was called, 2 after the store committed it but before the flusher got the answer; the
 *   proxy holds each phase for `hold_us`, so a parent polling the flag can SIGKILL a worker
 *   inside either (a kill in phase 2 is the ambiguous case: applied, never acknowledged);
 * - acknowledged totals: for each watched counter key, the sum of the deltas of every flush
 *   the store acknowledged (counted once per (epoch, seq), resends included), so after a
 *   kill the parent knows exactly what was acknowledged when it struck;
 * - the epoch the store gave the writer at its latest open.
 * Only this process's flusher uses a proxy; it is not a general wrapper.
 */
#ifndef TALLY_STRESS_STORE_PROXY_H
#define TALLY_STRESS_STORE_PROXY_H
#include <stdatomic.h>
#include <stdint.h>
#include <tally/store.h>

#define STORE_PROXY_WATCHED_MAX 4

/* What a proxy publishes; place it in shared memory (stress_shared) before forking. */
struct store_proxy_watch {
	_Atomic int flushing;          /* 0, 1 (before the store call), 2 (after it) */
	_Atomic int64_t flushes;       /* acknowledged flushes */
	_Atomic uint64_t epoch;        /* the writer's current epoch */
	_Atomic int64_t acked[STORE_PROXY_WATCHED_MAX]; /* per watched key */
	_Atomic int64_t last_ack_ms;   /* CLOCK_MONOTONIC ms of the last acknowledgement */
	/* The timing of the flush not yet acknowledged, which a kill cuts off: when its first
	 * attempt began (0: none since the last acknowledgement) and how long the longest
	 * single store call of the writer took (the store's own share of a flush latency). */
	_Atomic int64_t unacked_since_ms;
	_Atomic int64_t acked_call_ms;     /* how long the last acknowledged store call took */
	_Atomic int64_t store_call_ms_max;
	_Atomic int64_t failed_attempts; /* store calls that returned an error (then retried) */
};

struct store_proxy;

/*
 * store_proxy_open: opens the real store at url (schema created if missing) and a proxy
 * handle over it, both under writer_id with writer_ttl_ms. *outer is what the flusher gets
 * (tally_writebehind_create); *inner is the real handle, for lease providers and reads.
 * watched[0 .. count-1] are counter keys (NUL-terminated) whose acknowledged totals go
 * into watch->acked[]. Transient open errors are retried for up to 10 s. Returns a
 * tally_err; the store's error text is printed on failure.
 */
int store_proxy_open(struct store_proxy **proxy, const char *url, const char *writer_id,
		     int64_t writer_ttl_ms, struct store_proxy_watch *watch,
		     const char *const *watched, int count, int64_t hold_us,
		     struct tally_store **outer, struct tally_store **inner);
/* Closes the proxy handle, then the real one. */
void store_proxy_close(struct store_proxy *proxy);

/* Opens the real store at url with no writer (reads, reaping, lease providers), retrying
 * transient errors for up to 10 s; the store's error text is printed on failure. */
int store_proxy_open_reader(const char *url, struct tally_store **store);
#endif
