/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/server_day.h: what the "server day" scenario's parent (stress/server_day.c) and its
 * worker processes (stress/server_day_worker.c) share: one mapping made before the first
 * fork: the fleet's slots and incarnations (stress/fleet.h) and the request counts. Each
 * worker slot is a server; each start of a slot is an incarnation (a new store epoch of the
 * slot's writer id).
 */
#ifndef TALLY_STRESS_SERVER_DAY_H
#define TALLY_STRESS_SERVER_DAY_H
#include <stdatomic.h>
#include <stdint.h>
#include "stress.h"
#include "fleet.h"

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

/* What each incarnation leaves in fleet_incarnation.final after its final flush. */
enum day_final { DAY_FINAL_LISTENERS, DAY_FINAL_CONNECTIONS, DAY_FINAL_SESSIONS };

struct day_shared {
	struct fleet_shared fleet;
	_Atomic int64_t requests[DAY_REQUEST_KINDS];
	_Atomic int64_t invoices_refused; /* lease extension failed while the store was down */
};

struct day_config {
	struct day_shared *shared;
	const char *dir;          /* the run's directory: logs, lease file */
	const char *store_url;    /* NULL without a store */
	struct fleet fleet;       /* the parent's handle (workers read only .workers) */
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
