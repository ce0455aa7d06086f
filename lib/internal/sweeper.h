/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/internal/sweeper.h: the background thread that runs a table's sweep every interval
 * (the session table's and the rate limiter's). One waiter on a CLOCK_MONOTONIC condition
 * variable, woken early only to stop; the sweep runs with the lock dropped, so stop waits at
 * most for the sweep in progress. The thread registers with RCU on its first table call and
 * unregisters before it exits.
 *
 * init/destroy: by the table's create/destroy (not thread-safe with anything else). start and
 * stop may race each other from any threads: the state (running, stop) is under `lock`.
 */
#ifndef TALLY_INTERNAL_SWEEPER_H
#define TALLY_INTERNAL_SWEEPER_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct tally__sweeper {
	pthread_mutex_t lock;
	pthread_cond_t wake;        /* CLOCK_MONOTONIC; signalled by stop */
	pthread_t thread;           /* valid while running */
	void (*sweep)(void *arg);   /* set by start, read by the thread */
	void *arg;
	int64_t interval_ns;        /* set by start, under lock */
	bool running;               /* under lock: started and not yet joined */
	bool stop;                  /* under lock: stop requested */
};

/* Prepares the lock and condition variable. TALLY_OK or TALLY_ENOMEM (a pthread init
 * failed; nothing is left to destroy). */
int tally__sweeper_init(struct tally__sweeper *sweeper);

/* Stops the thread if it runs, then frees the lock and condition variable. */
void tally__sweeper_destroy(struct tally__sweeper *sweeper);

/* Starts a thread that calls sweep(arg) every interval_ns (> 0). Errors: ESTATE (already
 * running), ETHREAD (pthread_create failed; nothing changed). */
int tally__sweeper_start(struct tally__sweeper *sweeper, int64_t interval_ns,
			 void (*sweep)(void *arg), void *arg);

/* Stops the thread and joins it (it finishes a sweep in progress). Blocking. Errors: ESTATE
 * (not running, or another stop is in progress). */
int tally__sweeper_stop(struct tally__sweeper *sweeper);

/* Whether a thread is running (a snapshot, under the lock). */
bool tally__sweeper_running(struct tally__sweeper *sweeper);

#endif
