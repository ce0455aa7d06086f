/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/store_proxy.c: the "stressproxy" backend (stress/store_proxy.h): every op forwards
 * to the real handle through tally/store.h; flush also publishes its phase and, once
 * acknowledged, the watched counters' deltas.
 */
#include "store_proxy.h"
#include "stress.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct store_proxy {
	struct tally_store *inner;
	struct tally_store *outer;
	struct store_proxy_watch *watch;
	char watched[STORE_PROXY_WATCHED_MAX][TALLY_STORE_KEY_MAX + 1];
	int watched_count;
	int64_t hold_us;
	uint64_t counted_epoch; /* flushes counted into acked: (epoch, seq) up to these */
	uint64_t counted_seq;
};

static struct store_proxy *opening; /* the proxy tally_store_open is opening (one at a time) */
static pthread_mutex_t opening_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t monotonic_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static int proxy_open(const char *url, const struct tally_store_options *options, void **impl,
		      char *error, size_t error_size)
{
	if (!opening) {
		snprintf(error, error_size, "stressproxy: opened only by store_proxy_open");
		return TALLY_EINVAL;
	}
	*impl = opening;
	return TALLY_OK;
}

static void proxy_close(void *impl)
{
}

static int proxy_writer_open(void *impl, const char *writer_id, int64_t ttl_ms,
			     struct tally_store_epoch_info *info)
{
	struct store_proxy *p = impl;
	struct tally_store_epoch_info got = { 0 };
	int err = tally_store_writer_open(p->inner, &got);

	if (err == TALLY_OK) {
		atomic_store(&p->watch->epoch, got.epoch);
		p->counted_epoch = got.epoch;
		p->counted_seq = 0;
	}
	if (info)
		*info = got;
	return err;
}

static int proxy_heartbeat(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms)
{
	return tally_store_heartbeat(((struct store_proxy *)impl)->inner);
}

static void hold(const struct store_proxy *p)
{
	if (p->hold_us > 0)
		usleep((useconds_t)p->hold_us);
}

/* Adds an acknowledged batch's watched deltas, once per (epoch, seq). */
static void count_acknowledged(struct store_proxy *p, uint64_t epoch,
			       const struct tally_store_batch *batch)
{
	if (epoch != p->counted_epoch || batch->seq <= p->counted_seq)
		return;
	p->counted_seq = batch->seq;
	for (size_t i = 0; i < batch->counter_count; i++)
		for (int w = 0; w < p->watched_count; w++)
			if (batch->counters[i].key_len == strlen(p->watched[w]) &&
			    !memcmp(batch->counters[i].key, p->watched[w], batch->counters[i].key_len))
				atomic_fetch_add(&p->watch->acked[w], batch->counters[i].delta);
	atomic_fetch_add(&p->watch->flushes, 1);
}

/* An acknowledgement (a resend of an acknowledged seq included) ends the unacknowledged
 * flush: the next attempt starts the next one. */
static void note_acknowledged(struct store_proxy *p, int64_t started_ms)
{
	int64_t now = monotonic_ms();

	atomic_store(&p->watch->acked_call_ms, now - started_ms);
	atomic_store(&p->watch->last_ack_ms, now);
	atomic_store(&p->watch->unacked_since_ms, 0);
}

/* Notes the start of an attempt: the first one after an acknowledgement starts the flush's
 * latency (a resend after a failure continues it). */
static int64_t note_attempt(struct store_proxy *p)
{
	int64_t now = monotonic_ms();
	int64_t none = 0;

	atomic_compare_exchange_strong(&p->watch->unacked_since_ms, &none, now);
	return now;
}

static void note_store_call(struct store_proxy *p, int64_t started_ms, int err)
{
	int64_t took = monotonic_ms() - started_ms;

	if (took > atomic_load(&p->watch->store_call_ms_max))
		atomic_store(&p->watch->store_call_ms_max, took);
	if (err != TALLY_OK)
		atomic_fetch_add(&p->watch->failed_attempts, 1);
}

static int proxy_flush(void *impl, const char *writer_id, uint64_t epoch, int64_t ttl_ms,
		       const struct tally_store_batch *batch, struct tally_store_flush_result *result)
{
	struct store_proxy *p = impl;
	int64_t started_ms = note_attempt(p);
	int err;

	atomic_store(&p->watch->flushing, 1);
	hold(p);
	err = tally_store_flush(p->inner, batch, result);
	note_store_call(p, started_ms, err);
	if (err == TALLY_OK) {
		atomic_store(&p->watch->flushing, 2);
		hold(p); /* committed, not yet acknowledged: the ambiguous moment */
		count_acknowledged(p, epoch, batch);
		note_acknowledged(p, started_ms);
	}
	atomic_store(&p->watch->flushing, 0);
	return err;
}

static int proxy_writer_close(void *impl, const char *writer_id, uint64_t epoch)
{
	return tally_store_writer_close(((struct store_proxy *)impl)->inner);
}

#define INNER(impl) (((struct store_proxy *)(impl))->inner)

static int proxy_read_counter(void *impl, const char *key, size_t key_len, int64_t *total)
{
	return tally_store_read_counter(INNER(impl), key, key_len, total);
}

static int proxy_read_gauge(void *impl, const char *key, size_t key_len, int64_t *value,
			    int64_t *live_writers)
{
	return tally_store_read_gauge(INNER(impl), key, key_len, value, live_writers);
}

static int proxy_counters(void *impl, tally_store_counter_fn fn, void *arg)
{
	return tally_store_counters(INNER(impl), fn, arg);
}

static int proxy_writers(void *impl, tally_store_writer_fn fn, void *arg)
{
	return tally_store_writers(INNER(impl), fn, arg);
}

static int proxy_sessions(void *impl, const char *writer_id, tally_store_session_fn fn, void *arg)
{
	return tally_store_sessions(INNER(impl), writer_id, fn, arg);
}

static int proxy_connections(void *impl, const char *session_id, tally_store_connection_fn fn,
			     void *arg)
{
	return tally_store_connections(INNER(impl), session_id, fn, arg);
}

static int proxy_reap(void *impl, int64_t *reaped)
{
	return tally_store_reap(INNER(impl), reaped);
}

static int proxy_take(void *impl, const char *key, size_t key_len, int64_t n, int64_t *remaining)
{
	return tally_store_take(INNER(impl), key, key_len, n, remaining);
}

static int proxy_give(void *impl, const char *key, size_t key_len, int64_t n, int64_t *total)
{
	return tally_store_give(INNER(impl), key, key_len, n, total);
}

static int proxy_leases(void *impl, tally_store_lease_fn fn, void *arg)
{
	return tally_store_leases(INNER(impl), fn, arg);
}

static const char *proxy_last_error(void *impl)
{
	return tally_store_last_error(INNER(impl));
}

static const struct tally_store_ops proxy_ops = {
	.scheme = "stressproxy",
	.open = proxy_open,
	.close = proxy_close,
	.writer_open = proxy_writer_open,
	.heartbeat = proxy_heartbeat,
	.flush = proxy_flush,
	.writer_close = proxy_writer_close,
	.read_counter = proxy_read_counter,
	.read_gauge = proxy_read_gauge,
	.counters = proxy_counters,
	.writers = proxy_writers,
	.sessions = proxy_sessions,
	.connections = proxy_connections,
	.reap = proxy_reap,
	.take = proxy_take,
	.give = proxy_give,
	.lease_ops = NULL, /* leases go to the real handle (tally_store_lease_provider) */
	.leases = proxy_leases,
	.last_error = proxy_last_error,
};

static pthread_once_t registered = PTHREAD_ONCE_INIT;

static void register_proxy(void)
{
	tally_store_register_backend(&proxy_ops);
}

/* tally_store_open, retried while the error is transient (store.h: retry with backoff):
 * several processes opening one new SQLite file at once meet "database is locked" while one
 * of them switches it to WAL. Bounded by 10 s. */
static int open_retrying(struct tally_store **store, const char *url,
			 const struct tally_store_options *options)
{
	useconds_t backoff = 1000;
	int err;

	for (double give_up = stress_now() + 10;;) {
		err = tally_store_open(store, url, options);
		if (err == TALLY_OK || !tally_store_err_transient(err) || stress_now() > give_up)
			return err;
		usleep(backoff + (useconds_t)(rand() % 1000));
		if (backoff < 100000)
			backoff *= 2;
	}
}

static void print_failure(const char *what, int err, struct tally_store *store)
{
	fprintf(stderr, "store_proxy: %s: %s (%s)\n", what, tally_strerror(err),
		tally_store_last_error(store));
}

int store_proxy_open(struct store_proxy **proxy, const char *url, const char *writer_id,
		     int64_t writer_ttl_ms, struct store_proxy_watch *watch,
		     const char *const *watched, int count, int64_t hold_us,
		     struct tally_store **outer, struct tally_store **inner)
{
	struct tally_store_options options = { .writer_id = writer_id,
						.writer_ttl_ms = writer_ttl_ms,
						.create_schema = true };
	struct store_proxy *p = calloc(1, sizeof(*p));
	int err;

	if (!p || count > STORE_PROXY_WATCHED_MAX) {
		free(p);
		return p ? TALLY_EINVAL : TALLY_ENOMEM;
	}
	p->watch = watch;
	p->hold_us = hold_us;
	p->watched_count = count;
	for (int w = 0; w < count; w++)
		snprintf(p->watched[w], sizeof(p->watched[w]), "%s", watched[w]);
	if ((err = open_retrying(&p->inner, url, &options)) != TALLY_OK) {
		print_failure("open", err, NULL);
		free(p);
		return err;
	}
	pthread_once(&registered, register_proxy);
	pthread_mutex_lock(&opening_lock);
	opening = p;
	err = tally_store_open(&p->outer, "stressproxy://forward", &options);
	opening = NULL;
	pthread_mutex_unlock(&opening_lock);
	if (err) {
		print_failure("proxy open", err, NULL);
		tally_store_close(p->inner);
		free(p);
		return err;
	}
	*proxy = p;
	*outer = p->outer;
	*inner = p->inner;
	return TALLY_OK;
}

void store_proxy_close(struct store_proxy *proxy)
{
	if (!proxy)
		return;
	tally_store_close(proxy->outer);
	tally_store_close(proxy->inner);
	free(proxy);
}

int store_proxy_open_reader(const char *url, struct tally_store **store)
{
	struct tally_store_options options = { .create_schema = true };
	int err = open_retrying(store, url, &options);

	if (err)
		print_failure("open", err, NULL);
	return err;
}
