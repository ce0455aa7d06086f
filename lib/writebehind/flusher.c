/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The write-behind flusher (tally/writebehind.h): its thread, the life of a batch (build,
 * send, re-send, acknowledge), epochs and fencing, backoff, flush requests and stats.
 * writebehind/internal.h has the invariants (W1-W3); registry.c and records.c fill a batch.
 *
 * One step of the thread makes at most one store round trip:
 *   no writer      -> writer_open (and resolve a batch left by a fenced epoch)
 *   batch pending  -> re-send it unchanged (W1)
 *   else           -> collect the feeds, build a batch (drains, gauge reads, records) and
 *                     send it; an empty build answers the flush requests made before it
 *   idle           -> reconcile (after backpressure) or heartbeat when due
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "writebehind/internal.h"

int64_t tally__wb_now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static int64_t now_us(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static struct timespec deadline_after_ms(int64_t ms)
{
	struct timespec at;

	clock_gettime(CLOCK_MONOTONIC, &at);
	at.tv_sec += ms / 1000;
	at.tv_nsec += (ms % 1000) * 1000000;
	if (at.tv_nsec >= 1000000000) {
		at.tv_sec++;
		at.tv_nsec -= 1000000000;
	}
	return at;
}

void tally__wb_wake(struct tally_writebehind *wb)
{
	pthread_mutex_lock(&wb->lock);
	pthread_cond_signal(&wb->wake);
	pthread_mutex_unlock(&wb->lock);
}

/* ---- failures and backoff -------------------------------------------------------------- */

/* Full jitter: uniform in [0, min(cap, base * 2^attempt)]. */
static int64_t backoff_ms(struct tally_writebehind *wb)
{
	int64_t bound = wb->config.backoff_base_ms;

	for (int i = 0; i < wb->backoff_attempt && bound < wb->config.backoff_cap_ms; i++)
		bound *= 2;
	if (bound > wb->config.backoff_cap_ms)
		bound = wb->config.backoff_cap_ms;
	return (int64_t)((uint64_t)nrand48(wb->jitter_state) % (uint64_t)(bound + 1));
}

/* Lock held. Records a failed store call; true if it is permanent (on_error is due). */
static bool note_failure(struct tally_writebehind *wb, int err, const char *text)
{
	bool permanent = !tally_store_err_transient(err);

	wb->stats.last_error = err;
	snprintf(wb->stats.last_error_text, sizeof(wb->stats.last_error_text), "%s",
		 text && *text ? text : tally_strerror(err));
	if (!permanent) {
		wb->stats.transient_errors++;
		wb->next_try_ms = tally__wb_now_ms() + backoff_ms(wb);
		wb->backoff_attempt++;
		return false;
	}
	/* never spin: a permanent error waits the whole cap before the next try */
	wb->stats.permanent_errors++;
	wb->permanent_err = err;
	wb->permanent_gen++;
	wb->next_try_ms = tally__wb_now_ms() + wb->config.backoff_cap_ms;
	pthread_cond_broadcast(&wb->done);
	return true;
}

/* Thread, no lock. */
static void report_failure(struct tally_writebehind *wb, int err)
{
	char text[sizeof(wb->stats.last_error_text)];
	bool permanent;

	snprintf(text, sizeof(text), "%s", tally_store_last_error(wb->store));
	pthread_mutex_lock(&wb->lock);
	permanent = note_failure(wb, err, text);
	pthread_mutex_unlock(&wb->lock);
	if (permanent && wb->config.on_error)
		wb->config.on_error(err, text[0] ? text : tally_strerror(err),
				    wb->config.callback_arg);
}

static void note_contact(struct tally_writebehind *wb)
{
	wb->backoff_attempt = 0;
	wb->next_try_ms = 0;
	wb->last_contact_ms = tally__wb_now_ms();
}

/* ---- acknowledgement ------------------------------------------------------------------- */

/* Lock held: the pending batch is in the store (acknowledged now, or found to have landed). */
static void acknowledge(struct tally_writebehind *wb, const struct tally_store_flush_result *r)
{
	struct wb_batch *batch = &wb->batch;

	tally__wb_ack_values(wb);
	wb->last_seq = batch->seq;
	batch->pending = false;
	wb->stats.flushes++;
	wb->stats.keys_written +=
		(int64_t)(batch->delta_count + batch->gauge_count + batch->record_count);
	if (r) {
		wb->stats.rows_written += r->rows_written;
		wb->stats.already_applied += r->already_applied;
	}
	if (batch->complete && batch->gen > wb->done_gen)
		wb->done_gen = batch->gen;
	if (batch->complete)
		wb->durable_ms = batch->built_ms;
	pthread_cond_broadcast(&wb->done);
}

/* ---- epochs ------------------------------------------------------------------------------ */

static const char unresolved_text[] =
	"writer fenced by another handle of its id while a flush was unresolved: the store "
	"keeps no seq of the superseded epoch, so its counter deltas were re-sent (they may "
	"count twice)";

/* Lock held: a new epoch. The pending batch of the old one landed iff the store had applied
 * its seq under that epoch (store.h, struct tally_store_epoch_info); if not, its deltas and
 * records go back to be sent again. Gauges and records are republished either way: the new
 * epoch removed this writer's gauge contributions and connection records. When the prior
 * epoch is not ours (another handle opened the id after us), the store cannot tell whether
 * a batch that failed ambiguously landed: it is re-sent and reported. Returns true then. */
static bool enter_epoch(struct tally_writebehind *wb, const struct tally_store_epoch_info *info)
{
	struct wb_batch *batch = &wb->batch;
	bool had_epoch = wb->epoch != 0, unresolved = false;

	if (batch->pending) {
		if (batch->landed) {
			acknowledge(wb, NULL);
		} else if (info->prior_epoch == batch->epoch && info->prior_last_seq >= batch->seq) {
			acknowledge(wb, NULL);
		} else {
			unresolved = info->prior_epoch != batch->epoch && batch->ambiguous;
			tally__wb_requeue_values(wb);
			tally__wb_requeue_records(wb);
			batch->pending = false;
			wb->stats.resent_after_fence++;
			wb->stats.fence_unresolved += unresolved;
		}
	}
	wb->epoch = info->epoch;
	wb->last_seq = 0;
	wb->writer_open = true;
	wb->stats.epochs++;
	if (had_epoch) {
		tally__wb_republish_gauges(wb);
		wb->republish = true;
	}
	note_contact(wb);
	return unresolved;
}

static void open_writer(struct tally_writebehind *wb)
{
	struct tally_store_epoch_info info;
	int err = tally_store_writer_open(wb->store, &info);
	bool unresolved;

	if (err == TALLY_ESTATE) {
		/* the handle still holds the fenced epoch: let it go, then open anew */
		tally_store_writer_close(wb->store);
		err = tally_store_writer_open(wb->store, &info);
	}
	if (err != TALLY_OK) {
		report_failure(wb, err);
		return;
	}
	if (wb->writer_id[0] == '\0')
		tally_store_writer_identity(wb->store, wb->writer_id, NULL);
	pthread_mutex_lock(&wb->lock);
	unresolved = enter_epoch(wb, &info);
	pthread_mutex_unlock(&wb->lock);
	if (unresolved && wb->config.on_error)
		wb->config.on_error(TALLY_EFENCED, unresolved_text, wb->config.callback_arg);
}

struct writer_row {
	const char *id;
	struct tally_store_writer_info info;
	bool found;
};

static int find_writer_row(const struct tally_store_writer_info *writer, void *arg)
{
	struct writer_row *row = arg;

	if (strcmp(writer->writer_id, row->id) != 0)
		return 0;
	row->info = *writer;
	row->found = true;
	return 1;
}

/* A fenced writer whose pending batch failed ambiguously asks the store, before it opens a
 * new epoch, whether that batch landed. Fenced by a reap, the id's row still holds the old
 * epoch and its last applied seq, and nothing can land under a fenced epoch any more, so
 * the answer is final. Asking before the open matters: once a new epoch exists (ours, from
 * an open whose reply was lost, or another handle's), the row forgets the old epoch's seq.
 * A failed read leaves the batch ambiguous (enter_epoch then decides as it can). */
static void resolve_before_open(struct tally_writebehind *wb)
{
	struct wb_batch *batch = &wb->batch;
	struct writer_row row = { .id = wb->writer_id };

	if (!batch->pending || !batch->ambiguous || wb->writer_id[0] == '\0')
		return;
	if (tally_store_writers(wb->store, find_writer_row, &row) != TALLY_OK || !row.found)
		return;
	if (row.info.epoch != batch->epoch)
		return; /* superseded by another handle: the old epoch's seq is gone */
	pthread_mutex_lock(&wb->lock);
	batch->landed = row.info.last_seq >= batch->seq;
	batch->ambiguous = false; /* resolved: it landed, or it never will */
	pthread_mutex_unlock(&wb->lock);
}

static void fenced(struct tally_writebehind *wb)
{
	static const char text[] = "writer fenced: a newer epoch of its id exists, or it was "
				   "reaped; opening a new epoch";

	pthread_mutex_lock(&wb->lock);
	wb->writer_open = false;
	wb->stats.fenced++;
	wb->stats.last_error = TALLY_EFENCED;
	snprintf(wb->stats.last_error_text, sizeof(wb->stats.last_error_text), "%s", text);
	pthread_mutex_unlock(&wb->lock);
	if (wb->config.on_error)
		wb->config.on_error(TALLY_EFENCED, text, wb->config.callback_arg);
	resolve_before_open(wb);
	open_writer(wb);
}

/* ---- one step ------------------------------------------------------------------------- */

/* Lock held, no batch pending: takes everything there is into a new batch (W1). */
static void build(struct tally_writebehind *wb)
{
	struct wb_batch *batch = &wb->batch;
	uint64_t gen = wb->request_gen;
	int err;

	batch->delta_count = batch->gauge_count = batch->record_count = 0;
	err = tally__wb_take_values(wb);
	if (err != TALLY_OK)
		note_failure(wb, err, "writebehind: a key could not be read (left for later)");
	/* complete: nothing left behind, and no delete dropped past the bound (W3) */
	batch->complete = tally__wb_take_records(wb) && err == TALLY_OK && !wb->tombstones_over;
	batch->built_ms = tally__wb_now_ms();
	batch->gen = gen;
	if (batch->delta_count + batch->gauge_count + batch->record_count == 0) {
		/* Nothing changed since the last acknowledgement. A flush request is answered
		 * only once a heartbeat confirms the epoch still holds what was acknowledged
		 * (a reaped writer's gauges and records are gone from the store). */
		if (batch->complete && gen > wb->done_gen) {
			wb->confirm_gen = gen;
			wb->confirm_ms = batch->built_ms;
		} else if (batch->complete) {
			wb->durable_ms = batch->built_ms;
		}
		return;
	}
	batch->pending = true;
	batch->seq = wb->last_seq + 1;
	batch->epoch = wb->epoch;
	batch->attempts = 0;
	batch->ambiguous = false;
	batch->landed = false;
}

/* Sends the pending batch once. Returns true if more work is ready at once. */
static bool send(struct tally_writebehind *wb)
{
	struct wb_batch *batch = &wb->batch;
	struct tally_store_batch out = {
		.seq = batch->seq,
		.counters = batch->deltas,
		.counter_count = batch->delta_count,
		.gauges = batch->gauges,
		.gauge_count = batch->gauge_count,
		.records = batch->records,
		.record_count = batch->record_count,
	};
	struct tally_store_flush_result result = { 0 };
	int64_t started = now_us();
	int err = tally_store_flush(wb->store, &out, &result);
	bool more;

	pthread_mutex_lock(&wb->lock);
	wb->stats.attempts++;
	if (batch->attempts++ > 0)
		wb->stats.retries++;
	if (err == TALLY_OK) {
		tally__wb_note_latency(wb, now_us() - started);
		note_contact(wb);
		acknowledge(wb, &result);
		more = !batch->complete || wb->request_gen > wb->done_gen;
		pthread_mutex_unlock(&wb->lock);
		return more;
	}
	pthread_mutex_unlock(&wb->lock);
	if (err == TALLY_EFENCED) {
		fenced(wb);
		return true;
	}
	if (err == TALLY_EUNAVAIL || err == TALLY_ETIMEDOUT)
		batch->ambiguous = true; /* it may have landed: only its seq can tell */
	report_failure(wb, err);
	return false;
}

static void heartbeat(struct tally_writebehind *wb)
{
	int err = tally_store_heartbeat(wb->store);

	if (err == TALLY_EFENCED) {
		fenced(wb);
	} else if (err != TALLY_OK) {
		report_failure(wb, err);
	} else {
		pthread_mutex_lock(&wb->lock);
		wb->stats.heartbeats++;
		note_contact(wb);
		if (wb->confirm_gen > wb->done_gen) { /* see build */
			wb->done_gen = wb->confirm_gen;
			wb->durable_ms = wb->confirm_ms;
			pthread_cond_broadcast(&wb->done);
		}
		pthread_mutex_unlock(&wb->lock);
	}
}

/* The callbacks a locked section made due, called without the lock. */
static void notify_backpressure(struct tally_writebehind *wb, bool due, size_t tombstones)
{
	if (due && wb->config.on_backpressure)
		wb->config.on_backpressure(tombstones, wb->config.callback_arg);
}

/* One step (see the top of the file). Returns true if more work is ready at once. */
static bool step(struct tally_writebehind *wb)
{
	bool pending, due, idle, confirm;
	size_t tombstones;
	int err;

	/* the feeds are collected at every step, backing off or not: a queued object that was
	 * deleted waits for its collection to be freed (F1) */
	pthread_mutex_lock(&wb->lock);
	tally__wb_collect(wb);
	due = wb->backpressure_notify;
	wb->backpressure_notify = false;
	tombstones = wb->pending_tombstones;
	pthread_mutex_unlock(&wb->lock);
	notify_backpressure(wb, due, tombstones);
	if (tally__wb_now_ms() < wb->next_try_ms)
		return false;
	if (!wb->writer_open) {
		open_writer(wb);
		return wb->writer_open;
	}
	pthread_mutex_lock(&wb->lock);
	tally__wb_collect(wb);
	if (wb->republish && tally__wb_republish_records(wb) == TALLY_OK)
		wb->republish = false;
	if (!wb->batch.pending)
		build(wb);
	pending = wb->batch.pending;
	confirm = !pending && wb->confirm_gen > wb->done_gen;
	idle = !pending && wb->tombstones_over;
	due = wb->backpressure_notify;
	wb->backpressure_notify = false;
	tombstones = wb->pending_tombstones;
	pthread_mutex_unlock(&wb->lock);
	notify_backpressure(wb, due, tombstones);
	if (pending)
		return send(wb);
	if (idle) {
		if ((err = tally__wb_reconcile(wb)) != TALLY_OK)
			report_failure(wb, err);
		return false;
	}
	if (confirm || tally__wb_now_ms() - wb->last_contact_ms >= wb->config.heartbeat_ms)
		heartbeat(wb);
	return false;
}

/* ---- the thread ------------------------------------------------------------------------ */

/* Lock held: sleeps until the next step is due: an interval (also while backing off), or a
 * request once the backoff is over. With tables attached it wakes every collect_ms between
 * steps to collect their feeds: a deleted object still in a feed waits for its collection
 * to be freed (F1), so the collection period bounds that memory to the deletes of one
 * period, not of one flush interval. */
static void wait_for_step(struct tally_writebehind *wb)
{
	int64_t now = tally__wb_now_ms();
	int64_t due = now + wb->config.interval_ms, collect_at = now + wb->config.collect_ms;
	struct timespec at;

	while (!wb->stopping && now < due) {
		if (wb->request_gen > wb->done_gen && now >= wb->next_try_ms)
			return;
		if (wb->feeds && now >= collect_at) {
			tally__wb_collect(wb);
			collect_at = now + wb->config.collect_ms;
		}
		at = deadline_after_ms((wb->feeds && collect_at < due ? collect_at : due) - now);
		pthread_cond_timedwait(&wb->wake, &wb->lock, &at);
		now = tally__wb_now_ms();
	}
}

static void sleep_ms(int64_t ms)
{
	struct timespec pause = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&pause, &pause) == -1 && errno == EINTR)
		;
}

/* Shutdown: steps until a build after the stop finds nothing, then closes the writer. */
static int final_flush(struct tally_writebehind *wb)
{
	int64_t deadline = tally__wb_now_ms() + wb->config.shutdown_timeout_ms;
	uint64_t gen;
	bool done = false;
	int err;

	pthread_mutex_lock(&wb->lock);
	gen = ++wb->request_gen;
	pthread_mutex_unlock(&wb->lock);
	while (!done && tally__wb_now_ms() < deadline) {
		int64_t wait = wb->next_try_ms - tally__wb_now_ms();

		if (wait > 0)
			sleep_ms(wait < deadline - tally__wb_now_ms() ? wait
								     : deadline - tally__wb_now_ms());
		step(wb);
		pthread_mutex_lock(&wb->lock);
		done = wb->done_gen >= gen;
		pthread_mutex_unlock(&wb->lock);
	}
	if (!done)
		return wb->stats.last_error ? wb->stats.last_error : TALLY_ETIMEDOUT;
	while ((err = tally_store_writer_close(wb->store)) != TALLY_OK &&
	       tally_store_err_transient(err) && tally__wb_now_ms() < deadline)
		sleep_ms(wb->config.backoff_base_ms);
	return err;
}

static void *thread_main(void *arg)
{
	struct tally_writebehind *wb = arg;
	bool more = false;
	int err;

	pthread_mutex_lock(&wb->lock);
	while (!wb->stopping) {
		if (!more)
			wait_for_step(wb);
		if (wb->stopping)
			break;
		pthread_mutex_unlock(&wb->lock);
		more = step(wb);
		pthread_mutex_lock(&wb->lock);
	}
	pthread_mutex_unlock(&wb->lock);
	err = final_flush(wb);
	pthread_mutex_lock(&wb->lock);
	wb->final_err = err;
	wb->stopped = true;
	wb->writer_open = wb->writer_open && err != TALLY_OK;
	pthread_cond_broadcast(&wb->done);
	pthread_mutex_unlock(&wb->lock);
	tally_rcu_thread_unregister(); /* the table reads registered it */
	return NULL;
}

/* ---- create / destroy ---------------------------------------------------------------- */

static int apply_defaults(struct tally_writebehind_config *config)
{
	if (config->interval_ms < 0 || config->collect_ms < 0 || config->heartbeat_ms < 0 ||
	    config->backoff_base_ms < 0 ||
	    config->backoff_cap_ms < 0 || config->shutdown_timeout_ms < 0)
		return TALLY_EINVAL;
	if (!config->interval_ms)
		config->interval_ms = 100;
	if (!config->collect_ms)
		config->collect_ms = 2;
	if (!config->heartbeat_ms)
		config->heartbeat_ms = 1000;
	if (!config->backoff_base_ms)
		config->backoff_base_ms = 10;
	if (!config->backoff_cap_ms)
		config->backoff_cap_ms = 5000;
	if (!config->shutdown_timeout_ms)
		config->shutdown_timeout_ms = 10000;
	if (!config->max_batch_records)
		config->max_batch_records = 4096;
	if (!config->max_pending_tombstones)
		config->max_pending_tombstones = 65536;
	if (config->backoff_cap_ms < config->backoff_base_ms)
		return TALLY_EINVAL;
	return TALLY_OK;
}

static void seed_jitter(struct tally_writebehind *wb)
{
	uint64_t seed = wb->config.jitter_seed;

	if (!seed)
		seed = (uint64_t)now_us() ^ ((uint64_t)getpid() << 32);
	wb->jitter_state[0] = (unsigned short)seed;
	wb->jitter_state[1] = (unsigned short)(seed >> 16);
	wb->jitter_state[2] = (unsigned short)(seed >> 32);
}

static void init_conds(struct tally_writebehind *wb)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&wb->wake, &attr);
	pthread_cond_init(&wb->done, &attr);
	pthread_condattr_destroy(&attr);
	pthread_mutex_init(&wb->lock, NULL);
}

static void free_batch(struct wb_batch *batch)
{
	free(batch->deltas);
	free(batch->delta_entries);
	free(batch->gauges);
	free(batch->gauge_entries);
	free(batch->records);
}

static void free_flusher(struct tally_writebehind *wb)
{
	tally__wb_records_free(wb);
	tally__wb_registry_free(wb);
	free_batch(&wb->batch);
	pthread_cond_destroy(&wb->wake);
	pthread_cond_destroy(&wb->done);
	pthread_mutex_destroy(&wb->lock);
	free(wb);
}

int tally_writebehind_create(struct tally_writebehind **out, struct tally_store *store,
			     const struct tally_writebehind_config *config)
{
	struct tally_writebehind *wb;
	int err;

	if (!out || !store)
		return TALLY_EINVAL;
	if (!(wb = calloc(1, sizeof(*wb))))
		return TALLY_ENOMEM;
	if (config)
		wb->config = *config;
	if ((err = apply_defaults(&wb->config)) != TALLY_OK) {
		free(wb);
		return err;
	}
	wb->store = store;
	wb->durable_ms = tally__wb_now_ms();
	seed_jitter(wb);
	init_conds(wb);
	if (pthread_create(&wb->thread, NULL, thread_main, wb) != 0) {
		free_flusher(wb);
		return TALLY_ETHREAD;
	}
	*out = wb;
	return TALLY_OK;
}

int tally_writebehind_destroy(struct tally_writebehind *wb)
{
	struct tally_session_table *table;
	int err;

	if (!wb)
		return TALLY_OK;
	pthread_mutex_lock(&wb->lock);
	wb->stopping = true;
	pthread_cond_signal(&wb->wake);
	pthread_mutex_unlock(&wb->lock);
	pthread_join(wb->thread, NULL);
	while (wb->feeds) { /* detach: clears every QUEUED, frees the zombies (F1) */
		table = wb->feeds->table;
		if (tally_writebehind_remove_sessions(wb, table) != TALLY_OK) {
			atomic_store_explicit(&table->feed, NULL, memory_order_relaxed);
			wb->feeds = wb->feeds->next; /* ENOMEM copying out: nothing more to write */
		}
	}
	err = wb->final_err;
	free_flusher(wb);
	return err;
}

/* ---- flush ----------------------------------------------------------------- */

int tally_writebehind_flush(struct tally_writebehind *wb, int64_t timeout_ms)
{
	struct timespec at;
	uint64_t gen, permanent_gen;
	int err = TALLY_OK;

	if (!wb || (timeout_ms < 0 && timeout_ms != TALLY_WRITEBEHIND_FOREVER))
		return TALLY_EINVAL;
	at = deadline_after_ms(timeout_ms > 0 ? timeout_ms : 0);
	pthread_mutex_lock(&wb->lock);
	if (wb->stopping) {
		pthread_mutex_unlock(&wb->lock);
		return TALLY_ESTATE;
	}
	gen = ++wb->request_gen;
	permanent_gen = wb->permanent_gen;
	pthread_cond_signal(&wb->wake);
	while (wb->done_gen < gen && err == TALLY_OK) {
		if (wb->permanent_gen != permanent_gen)
			err = wb->permanent_err;
		else if (wb->stopped)
			err = TALLY_ESTATE;
		else if (timeout_ms == TALLY_WRITEBEHIND_FOREVER)
			pthread_cond_wait(&wb->done, &wb->lock);
		else if (pthread_cond_timedwait(&wb->done, &wb->lock, &at) == ETIMEDOUT &&
			 wb->done_gen < gen)
			err = TALLY_ETIMEDOUT;
	}
	pthread_mutex_unlock(&wb->lock);
	return err;
}
