/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/server_day.h: what the "server day" scenario's parent (stress/server_day.c) and its
 * worker processes (stress/server_day_worker.c) share: one mapping made before the first
 * fork. Each worker slot is a server; each start of a slot is an incarnation (a new store
 * epoch of the slot's writer id). Workers write only their own slot and incarnation
 * records; the parent reads them after a kill or at the end (docs/stress.md).
 */
#ifndef TALLY_STRESS_SERVER_DAY_H
#define TALLY_STRESS_SERVER_DAY_H
#include <stdatomic.h>
#include <stdint.h>
#include "stress.h"
#include "store_proxy.h"

#define DAY_INCARNATIONS_MAX 512
#define DAY_TENANTS 4
#define DAY_CLIENTS 64
#define DAY_WINDOW_NS INT64_C(50000000) /* rate-limit window: 50 ms */
#define DAY_WINDOW_LIMIT 20             /* admissions per client and window */

enum day_request {
	DAY_CREATE,       /* a speaker opens a session */
	DAY_JOIN,         /* a listener joins in one of many languages */
	DAY_LEAVE,        /* a listener leaves */
	DAY_DUP_LEAVE,    /* the same disconnect delivered twice */
	DAY_SPEAKER_DROP, /* the speaker drops: listeners notified, connections removed */
	DAY_INVOICE,      /* an invoice number for one of the tenants */
	DAY_RATE,         /* a client request through its rate limit */
	DAY_REQUEST_KINDS
};

/* One incarnation of a worker: written by it, read by the parent once it is dead. */
struct day_incarnation {
	int slot;
	int number;               /* 0, 1, ... within the slot */
	_Atomic int started;      /* the worker registered with the store and began */
	_Atomic int killed;       /* the parent SIGKILLed it */
	_Atomic int killed_mid_flush;
	_Atomic int finished;     /* it passed its final checks and closed cleanly */
	uint64_t epoch;           /* store epoch (0 without a store) */
	/* Views (a counter) applied in memory, per worker thread: applied[t] is exact; while
	 * an add is in progress pending[t] holds its delta (0 otherwise), so a kill between
	 * the add and the accounting leaves either applied or applied + pending in memory. */
	_Atomic int64_t applied[STRESS_THREADS_MAX];
	_Atomic int64_t pending[STRESS_THREADS_MAX];
	/* The store proxy's view of this incarnation's flushes: phase, epoch, acknowledged
	 * views (acked[0] its own key, acked[1] the fleet key). */
	struct store_proxy_watch watch;
	int64_t final_listeners;  /* after the final flush (live ones): its listener gauge */
	int64_t final_connections; /* ... and its table's connections */
	int64_t final_sessions;    /* ... and its table's sessions */
	_Atomic int64_t fenced;    /* its flusher was fenced (its lease ran out while alive) */
};

struct day_slot {
	_Atomic int pid;
	_Atomic int current;      /* index of its live incarnation in day_shared.incarnations */
	_Atomic int abandoned;    /* killed at the end and never restarted: must be reaped */
	_Atomic int reflushed;    /* flushed again after the parent's reap */
	_Atomic int quiesced;     /* stopped, final checks done, final flush acknowledged */
};

struct day_shared {
	_Atomic int stop;         /* parent: stop issuing, quiesce, flush */
	_Atomic int reflush;      /* parent: reaped; flush again (a fenced writer republishes) */
	_Atomic int release;      /* parent: store checks done, close and exit */
	_Atomic int incarnation_count;
	_Atomic int64_t requests[DAY_REQUEST_KINDS];
	struct day_slot slots[STRESS_PROCESSES_MAX];
	struct day_incarnation incarnations[DAY_INCARNATIONS_MAX];
};

struct day_config {
	struct day_shared *shared;
	const char *dir;          /* the run's directory: logs, lease file */
	const char *store_url;    /* NULL without a store */
	int workers;
	int64_t writer_ttl_ms;
	int64_t flush_interval_ms;
	int64_t session_ttl_ms;
	char run_tag[24];         /* names the run's keys and ids: runs sharing a store never meet */
	uint64_t highest_invoice[DAY_TENANTS]; /* parent: from the logs, for the lease check */
};

/* Store keys and writer ids of a run. */
void day_fleet_views_key(const struct day_config *config, char *out, size_t size);
void day_views_key(const struct day_config *config, int incarnation, char *out, size_t size);
void day_listeners_key(const struct day_config *config, char *out, size_t size);
void day_writer_id(const struct day_config *config, int slot, char *out, size_t size);

/* The worker process body (stress_spawn): arg is the struct day_config, index the slot. */
int day_worker(struct stress_run *run, void *arg, int slot);

/* Paths of a worker thread's invoice log, and of the shared lease file. */
void day_invoice_log_path(const struct day_config *config, int incarnation, int thread,
			  char *out, size_t size);
void day_lease_path(const struct day_config *config, char *out, size_t size);
#endif
