/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/fault.c: the "fault" store backend (see fault.h). It forwards to a
 * real store handle opened on the inner URL, through the public tally_store_* calls, so the
 * inner handle keeps its own writer state (same writer id, same epoch as the outer one: the
 * outer handle's writer calls come only through here).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tally/store.h>

#include "fault.h"

#define SCHEME_PREFIX "fault:"

struct fault_store {
	struct tally_store *inner;
};

static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store_fault_plan plan;
static struct store_fault_counts counts;
static _Thread_local char injected_text[96]; /* the last injected failure of this thread */

void store_fault_set(const struct store_fault_plan *next)
{
	pthread_mutex_lock(&plan_lock);
	memset(&plan, 0, sizeof(plan));
	if (next && next->mode != STORE_FAULT_NONE) {
		plan = *next;
		if (!plan.err)
			plan.err = TALLY_EUNAVAIL;
		if (!plan.calls)
			plan.calls = STORE_FAULT_FLUSH;
		if (!plan.hang_ms)
			plan.hang_ms = 200;
	}
	counts.faults_left = plan.mode == STORE_FAULT_NONE ? 0 : plan.count;
	pthread_mutex_unlock(&plan_lock);
}

void store_fault_counts(struct store_fault_counts *out)
{
	pthread_mutex_lock(&plan_lock);
	*out = counts;
	pthread_mutex_unlock(&plan_lock);
}

void store_fault_reset_counts(void)
{
	pthread_mutex_lock(&plan_lock);
	int64_t left = counts.faults_left;

	memset(&counts, 0, sizeof(counts));
	counts.faults_left = left;
	pthread_mutex_unlock(&plan_lock);
}

/* The fault for one call of kind `call`, taken from the plan (NONE: pass it on). */
static struct store_fault_plan take_fault(unsigned call)
{
	struct store_fault_plan fault = { .mode = STORE_FAULT_NONE };

	pthread_mutex_lock(&plan_lock);
	if (plan.mode != STORE_FAULT_NONE && (plan.calls & call) && counts.faults_left != 0) {
		fault = plan;
		if (counts.faults_left > 0 && --counts.faults_left == 0 && plan.then_down) {
			plan.mode = STORE_FAULT_BEFORE; /* from the next call on: down */
			counts.faults_left = -1;
		}
		if (fault.mode == STORE_FAULT_BEFORE)
			counts.failed_before++;
		else if (fault.mode == STORE_FAULT_AFTER)
			counts.failed_after++;
		else
			counts.hung++;
	}
	pthread_mutex_unlock(&plan_lock);
	return fault;
}

static void sleep_ms(int64_t ms)
{
	struct timespec pause = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&pause, &pause) == -1 && errno == EINTR)
		;
}

static int injected(int err, const char *what)
{
	snprintf(injected_text, sizeof(injected_text), "fault: injected %s", what);
	return err;
}

/* Runs `forward` under the fault the plan has for `call`. */
static int with_fault(unsigned call, int (*forward)(void *arg), void *arg)
{
	struct store_fault_plan fault = take_fault(call);
	int err;

	injected_text[0] = '\0';
	if (fault.mode == STORE_FAULT_BEFORE)
		return injected(fault.err, "failure before the call");
	if (fault.mode == STORE_FAULT_HANG)
		sleep_ms(fault.hang_ms);
	err = forward(arg);
	if (fault.mode == STORE_FAULT_HANG)
		return injected(TALLY_ETIMEDOUT, "hang past the timeout");
	if (fault.mode == STORE_FAULT_AFTER && err == TALLY_OK)
		return injected(fault.err, "failure after the commit");
	return err;
}

/* ---- the writer calls ------------------------------------------------------------------ */

struct writer_call {
	struct fault_store *fault;
	struct tally_store_epoch_info *info;
	const struct tally_store_batch *batch;
	struct tally_store_flush_result *result;
};

static int forward_writer_open(void *arg)
{
	struct writer_call *call = arg;
	int err = tally_store_writer_open(call->fault->inner, call->info);

	if (err == TALLY_ESTATE) {
		/* an earlier open landed but was reported failed (AFTER): end it, open anew */
		tally_store_writer_close(call->fault->inner);
		err = tally_store_writer_open(call->fault->inner, call->info);
	}
	return err;
}

static int fault_writer_open(void *impl, const char *writer_id, int64_t ttl_ms,
			     struct tally_store_epoch_info *info)
{
	struct tally_store_epoch_info local;
	struct writer_call call = { impl, info ? info : &local, NULL, NULL };

	return with_fault(STORE_FAULT_WRITER_OPEN, forward_writer_open, &call);
}

static int forward_heartbeat(void *arg)
{
	return tally_store_heartbeat(((struct writer_call *)arg)->fault->inner);
}

static int fault_heartbeat(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms)
{
	struct writer_call call = { impl, NULL, NULL, NULL };

	return with_fault(STORE_FAULT_HEARTBEAT, forward_heartbeat, &call);
}

static int forward_flush(void *arg)
{
	struct writer_call *call = arg;
	int err = tally_store_flush(call->fault->inner, call->batch, call->result);

	if (err == TALLY_OK) {
		pthread_mutex_lock(&plan_lock);
		counts.flushes_passed++;
		if (!call->result->already_applied)
			counts.flushes_applied++;
		pthread_mutex_unlock(&plan_lock);
	}
	return err;
}

static int fault_flush(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms,
		       const struct tally_store_batch *batch,
		       struct tally_store_flush_result *result)
{
	struct tally_store_flush_result local = { 0 };
	struct writer_call call = { impl, NULL, batch, result ? result : &local };

	return with_fault(STORE_FAULT_FLUSH, forward_flush, &call);
}

static int forward_writer_close(void *arg)
{
	return tally_store_writer_close(((struct writer_call *)arg)->fault->inner);
}

static int fault_writer_close(void *impl, const char *writer_id, uint64_t epoch)
{
	struct writer_call call = { impl, NULL, NULL, NULL };

	return with_fault(STORE_FAULT_WRITER_CLOSE, forward_writer_close, &call);
}

/* ---- everything else passes straight on ----------------------------------------------- */

static struct tally_store *inner_of(void *impl)
{
	return ((struct fault_store *)impl)->inner;
}

static int fault_open(const char *url, const struct tally_store_options *options, void **impl,
		      char *error, size_t error_size)
{
	struct fault_store *fault;
	int err;

	if (strncmp(url, SCHEME_PREFIX, strlen(SCHEME_PREFIX)) != 0)
		return TALLY_EINVAL;
	if (!(fault = calloc(1, sizeof(*fault))))
		return TALLY_ENOMEM;
	err = tally_store_open(&fault->inner, url + strlen(SCHEME_PREFIX), options);
	if (err != TALLY_OK) {
		snprintf(error, error_size, "fault: inner store: %s", tally_store_last_error(NULL));
		free(fault);
		return err;
	}
	*impl = fault;
	return TALLY_OK;
}

static void fault_close(void *impl)
{
	tally_store_close(inner_of(impl));
	free(impl);
}

static int fault_read_counter(void *impl, const char *key, size_t key_len, int64_t *total)
{
	return tally_store_read_counter(inner_of(impl), key, key_len, total);
}

static int fault_read_gauge(void *impl, const char *key, size_t key_len, int64_t *value,
			    int64_t *live_writers)
{
	return tally_store_read_gauge(inner_of(impl), key, key_len, value, live_writers);
}

static int fault_counters(void *impl, tally_store_counter_fn fn, void *arg)
{
	return tally_store_counters(inner_of(impl), fn, arg);
}

static int fault_writers(void *impl, tally_store_writer_fn fn, void *arg)
{
	return tally_store_writers(inner_of(impl), fn, arg);
}

static int fault_sessions(void *impl, const char *writer_id, tally_store_session_fn fn,
			  void *arg)
{
	return tally_store_sessions(inner_of(impl), writer_id, fn, arg);
}

static int fault_connections(void *impl, const char *session_id, tally_store_connection_fn fn,
			     void *arg)
{
	return tally_store_connections(inner_of(impl), session_id, fn, arg);
}

static int fault_reap(void *impl, int64_t *reaped)
{
	return tally_store_reap(inner_of(impl), reaped);
}

static int fault_take(void *impl, const char *key, size_t key_len, int64_t n,
		      int64_t *remaining)
{
	return tally_store_take(inner_of(impl), key, key_len, n, remaining);
}

static int fault_give(void *impl, const char *key, size_t key_len, int64_t n, int64_t *total)
{
	return tally_store_give(inner_of(impl), key, key_len, n, total);
}

static const char *fault_last_error(void *impl)
{
	return injected_text[0] ? injected_text : tally_store_last_error(inner_of(impl));
}

static const struct tally_store_ops fault_ops = {
	.scheme = "fault",
	.open = fault_open,
	.close = fault_close,
	.writer_open = fault_writer_open,
	.heartbeat = fault_heartbeat,
	.flush = fault_flush,
	.writer_close = fault_writer_close,
	.read_counter = fault_read_counter,
	.read_gauge = fault_read_gauge,
	.counters = fault_counters,
	.writers = fault_writers,
	.sessions = fault_sessions,
	.connections = fault_connections,
	.reap = fault_reap,
	.take = fault_take,
	.give = fault_give,
	.lease_ops = NULL, /* leases are written through, not behind: not under test here */
	.leases = NULL,
	.last_error = fault_last_error,
};

int store_fault_register(void)
{
	int err = tally_store_register_backend(&fault_ops);

	return err == TALLY_EEXIST ? TALLY_OK : err;
}
