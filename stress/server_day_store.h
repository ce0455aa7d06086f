/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/server_day_store.h: the store half of the "server day" scenario: a worker's
 * write-behind of its views counter, listener gauge and session records, and the parent's
 * fleet-wide checks against the store after the run (stress/server_day_store.c).
 */
#ifndef TALLY_STRESS_SERVER_DAY_STORE_H
#define TALLY_STRESS_SERVER_DAY_STORE_H
#include <tally/counter.h>
#include <tally/gauge.h>
#include <tally/lease.h>
#include <tally/session.h>
#include "server_day.h"

struct day_store;

/* Worker side. open connects incarnation `incarnation` of `slot` to the store through the
 * proxy (its writer opens with the flusher). Returns 0 or a worker exit status. */
int day_store_open(struct day_store **out, struct stress_run *run,
		   const struct day_config *config, int slot, int incarnation);
/* The store's (write-through) lease provider, for the invoice series. */
struct tally_lease_provider *day_store_lease_provider(struct day_store *store);
/* Starts writing behind: views (a counter, under the fleet key and the incarnation's own
 * key), listeners (a gauge) and the table's session and connection records. */
int day_store_register(struct day_store *store, struct tally_session_table *table,
		       struct tally_counter *views, struct tally_counter *views_fleet,
		       struct tally_gauge *listeners);
/* The final flush after the worker quiesced; blocks until durable, then checks that
 * nothing of `views` is unflushed and that the store holds exactly what was applied. */
void day_store_final_flush(struct day_store *store, struct tally_counter *views);
/* Flushes again after the parent's reap (a writer reaped while alive has re-registered
 * and republishes). */
void day_store_reflush(struct day_store *store);
/* Closes the writer cleanly (its gauge and records leave the store) and the handle. */
void day_store_close(struct day_store *store);

/* Parent side, after every worker quiesced (and before they close): counters, gauges,
 * records, leases and writers against what the incarnations applied. Adds summary fields. */
void day_store_check_fleet(struct stress_run *run, struct day_config *config);
#endif
