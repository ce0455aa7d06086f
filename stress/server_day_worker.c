/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/server_day_worker.c: one server of the "server day" scenario, a worker process.
 * Its threads serve seeded random requests (speakers open sessions, listeners join in many
 * languages and leave, duplicate disconnects, speaker drops, invoice numbers per tenant,
 * rate-limited client requests); a sweeper expires sessions and connections by TTL; a
 * checker watches the listener gauge's floor and the rate-limit windows; with a store, a
 * write-behind flusher ships the views counter, the listener gauge and the session records
 * (stress/server_day_store.c).
 * Invariants checked here (docs/stress.md): a repeated disconnect changes nothing; the
 * listener gauge never reads below its floor; no client's window admits more than its
 * limit; at the quiescent end, each session's listener count equals its listener
 * connections, an inactive session has none, and the gauge, the sessions' counts and the
 * table's connections agree; views in memory equal the sum the threads applied.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <tally/counter.h>
#include <tally/gauge.h>
#include <tally/ratelimit.h>
#include <tally/rcu.h>
#include <tally/sequence.h>
#include <tally/session.h>
#include <tally/store.h>
#include "server_day.h"
#include "server_day_store.h"

#define SESSION_POOL 64
#define RING 256
#define ID_MAX (TALLY_SESSION_ID_MAX + 1)

static const char *const languages[] = { "en", "fr", "de", "es", "it", "pt-BR", "ja",
					 "zh-Hant-TW", "ar", "hi", "ko", "ru", "sw", "tr" };
#define LANGUAGES (sizeof(languages) / sizeof(languages[0]))

struct worker {
	struct stress_run *run;
	const struct day_config *config;
	struct fleet_incarnation *me;
	int index;                 /* of me, in the fleet's incarnations */
	int slot;
	struct tally_session_table *table;
	struct tally_gauge listeners;
	struct tally_counter views;       /* this incarnation's own key */
	struct tally_counter views_fleet; /* the fleet's key, every worker adds to it */
	struct tally_sequence *seq;
	struct tally_lease_provider *lease;
	struct day_store *store;   /* NULL without --store */
	struct tally_ratelimit *limiter;
	_Atomic int64_t pool[SESSION_POOL]; /* session numbers joins go to; 0 = none */
	_Atomic int64_t sessions_created;
	_Atomic int stop_threads;
	_Atomic int stop_helpers;
	int64_t clock_base_ns;
	int64_t windows;
	_Atomic int32_t *admitted; /* [client * windows + window] */
	int64_t windows_checked;
};

struct thread_state {
	struct worker *w;
	int index;
	struct stress_rng rng;
	int log_fd;
	int64_t ring[RING];
	int ring_len;
	int64_t next_connection;
	int64_t last_left;
	int64_t views;          /* applied by this thread, mirrored in me->applied */
	int64_t requests[DAY_REQUEST_KINDS];
};

/* ---- ids ------------------------------------------------------------------------------ */

static void session_id(const struct worker *w, int64_t n, char *out)
{
	snprintf(out, ID_MAX, "%s-k%d-e%d-s%lld", w->config->run_tag, w->slot, w->me->number,
		 (long long)n);
}

static void connection_id(const struct thread_state *t, int64_t n, char *out)
{
	snprintf(out, ID_MAX, "%s-k%d-e%d-t%d-c%lld", t->w->config->run_tag, t->w->slot,
		 t->w->me->number, t->index, (long long)n);
}

/* ---- the listener gauge: raised before a join, lowered after every removal ------------ */

static void listeners_down(struct worker *w, int64_t n, const char *why)
{
	if (n > 0 && tally_gauge_sub(&w->listeners, n, NULL) != TALLY_OK)
		stress_violation(w->run, "worker %d: %s of %lld listeners would take the listener "
				 "gauge below its floor", w->slot, why, (long long)n);
}

/* ---- requests ------------------------------------------------------------------------- */

static void create_session(struct thread_state *t)
{
	struct worker *w = t->w;
	int64_t n = atomic_fetch_add(&w->sessions_created, 1) + 1;
	char id[ID_MAX], speaker[ID_MAX + 16];

	session_id(w, n, id);
	snprintf(speaker, sizeof(speaker), "%s-speaker", id);
	struct tally_session_params params = {
		id, speaker, "user-7", languages[stress_rng_below(&t->rng, LANGUAGES)],
		stress_rng_below(&t->rng, 4) ? "standard" : "premium",
		w->config->session_ttl_ms / 2 +
			(int64_t)stress_rng_below(&t->rng, (uint64_t)w->config->session_ttl_ms) };
	if (!stress_check(w->run, tally_session_create(w->table, &params) == TALLY_OK,
			  "worker %d: creating fresh session %s failed", w->slot, id))
		return;
	atomic_store(&w->pool[stress_rng_below(&t->rng, SESSION_POOL)], n);
}

static void add_view(struct thread_state *t)
{
	fleet_apply_begin(t->w->me, t->index, 1);
	tally_counter_inc(&t->w->views);
	tally_counter_inc(&t->w->views_fleet);
	fleet_apply_end(t->w->me, t->index, ++t->views);
}

static void ring_push(struct thread_state *t, int64_t n);

static void join(struct thread_state *t)
{
	struct worker *w = t->w;
	int64_t session = atomic_load(&w->pool[stress_rng_below(&t->rng, SESSION_POOL)]);
	char sid[ID_MAX], cid[ID_MAX], address[32];

	if (session == 0)
		return;
	session_id(w, session, sid);
	int64_t n = ++t->next_connection;
	connection_id(t, n, cid);
	snprintf(address, sizeof(address), "198.51.100.%d:%d", (int)(n % 250) + 1,
		 40000 + (int)(n % 20000));
	struct tally_connection_params params = {
		cid, sid, languages[stress_rng_below(&t->rng, LANGUAGES)], TALLY_ROLE_LISTENER,
		address, stress_rng_below(&t->rng, 4) ? 0 : 200 + (int64_t)stress_rng_below(&t->rng,
										       2000) };
	tally_gauge_inc(&w->listeners, NULL);
	int err = tally_session_join(w->table, &params);
	if (err != TALLY_OK) {
		listeners_down(w, 1, "a failed join");
		stress_check(w->run, err == TALLY_ENOTFOUND || err == TALLY_EINACTIVE,
			     "worker %d: join of %s failed with %d", w->slot, cid, err);
		return;
	}
	add_view(t);
	ring_push(t, n);
}

static void leave_number(struct thread_state *t, int64_t n)
{
	char cid[ID_MAX];
	int err;

	connection_id(t, n, cid);
	err = tally_session_leave(t->w->table, cid);
	if (err == TALLY_OK) {
		listeners_down(t->w, 1, "a leave");
		t->last_left = n;
	} else {
		/* gone already: its TTL ran out or its speaker dropped */
		stress_check(t->w->run, err == TALLY_ENOTFOUND, "worker %d: leave of %s failed "
			     "with %d", t->w->slot, cid, err);
	}
}

static void ring_push(struct thread_state *t, int64_t n)
{
	if (t->ring_len == RING) { /* the oldest listener of this thread leaves */
		leave_number(t, t->ring[0]);
		memmove(t->ring, t->ring + 1, (RING - 1) * sizeof(t->ring[0]));
		t->ring_len--;
	}
	t->ring[t->ring_len++] = n;
}

static void leave(struct thread_state *t)
{
	if (t->ring_len == 0)
		return;
	int at = (int)stress_rng_below(&t->rng, (uint64_t)t->ring_len);
	int64_t n = t->ring[at];

	t->ring[at] = t->ring[--t->ring_len];
	leave_number(t, n);
}

/* The same disconnect delivered again: nothing may change. */
static void duplicate_leave(struct thread_state *t)
{
	char cid[ID_MAX];

	if (t->last_left == 0)
		return;
	connection_id(t, t->last_left, cid);
	stress_check(t->w->run, tally_session_leave(t->w->table, cid) == TALLY_ENOTFOUND,
		     "worker %d: a repeated disconnect of %s was not refused", t->w->slot, cid);
}

static int count_notified(const struct tally_connection_info *connection, void *arg)
{
	(*(int64_t *)arg)++;
	return 0;
}

static void speaker_drop(struct thread_state *t)
{
	struct worker *w = t->w;
	_Atomic int64_t *slot = &w->pool[stress_rng_below(&t->rng, SESSION_POOL)];
	int64_t session = atomic_load(slot), notified = 0, deleted = 0;
	struct tally_speaker_disconnect_result result;
	char sid[ID_MAX];

	if (session == 0 || !atomic_compare_exchange_strong(slot, &session, 0))
		return;
	session_id(w, session, sid);
	if (tally_session_speaker_disconnect(w->table, sid, count_notified, &notified,
					     &result) == TALLY_OK)
		listeners_down(w, result.connections_deleted, "a speaker drop");
	if (tally_session_delete(w->table, sid, &deleted) == TALLY_OK)
		listeners_down(w, deleted, "a session delete");
}

static void invoice(struct thread_state *t)
{
	struct worker *w = t->w;
	unsigned tenant = (unsigned)stress_rng_below(&t->rng, DAY_TENANTS);
	char name[40];
	struct tally_seq_number number;

	snprintf(name, sizeof(name), "%s-tenant%u", w->config->run_tag, tenant);
	int err = tally_sequence_next(w->seq, name, "INV", &number);
	if (err != TALLY_OK) {
		/* Leases are written through: while the store is down (restarted by the chaos)
		 * a lease extension fails transiently and the number is refused, never guessed. */
		if (tally_store_err_transient(err))
			atomic_fetch_add(&w->config->shared->invoices_refused, 1);
		else
			stress_violation(w->run, "worker %d: no invoice number for %s: %s", w->slot,
					 name, tally_strerror(err));
		return;
	}
	uint64_t logged = ((uint64_t)tenant << 40) | number.counter;
	/* logged right after issue, one write each: a kill loses at most this one */
	if (write(t->log_fd, &logged, sizeof(logged)) != (ssize_t)sizeof(logged))
		stress_violation(w->run, "worker %d: invoice log write failed", w->slot);
}


/* The limiter's clock returns the reading the calling thread took just before its call, so
 * the thread knows which window the limiter charged (as in stress/ratelimit.c). */
static _Thread_local int64_t reading;

static int64_t reading_clock(void *arg)
{
	return reading;
}

static void rate_limited(struct thread_state *t)
{
	struct worker *w = t->w;
	int client = (int)stress_rng_below(&t->rng, DAY_CLIENTS);
	struct tally_ratelimit_result result;
	char key[32];
	int len = snprintf(key, sizeof(key), "client-%d", client);

	reading = (int64_t)((stress_now() * 1e9)) - w->clock_base_ns;
	int err = tally_ratelimit_allow_result(w->limiter, key, (size_t)len, 1, &result);
	if (err == TALLY_OK) {
		int64_t window = (reading + result.reset_ns - 1) / DAY_WINDOW_NS;

		if (window >= 0 && window < w->windows)
			atomic_fetch_add_explicit(&w->admitted[client * w->windows + window], 1,
						  memory_order_relaxed);
	} else {
		stress_check(w->run, err == TALLY_ELIMITED, "worker %d: rate limit call failed "
			     "with %d", w->slot, err);
	}
}

/* Request mix, in percent: create 4, join 40, leave 26, duplicate leave 4, speaker drop 2,
 * invoice 10, rate-limited call 14. */
static enum day_request pick(struct stress_rng *rng)
{
	static const int cumulative[DAY_REQUEST_KINDS] = { 4, 44, 70, 74, 76, 86, 100 };
	int roll = (int)stress_rng_below(rng, 100);
	int kind = 0;

	while (roll >= cumulative[kind])
		kind++;
	return (enum day_request)kind;
}

static void serve(struct thread_state *t, enum day_request kind)
{
	switch (kind) {
	case DAY_CREATE: create_session(t); break;
	case DAY_JOIN: join(t); break;
	case DAY_LEAVE: leave(t); break;
	case DAY_DUP_LEAVE: duplicate_leave(t); break;
	case DAY_SPEAKER_DROP: speaker_drop(t); break;
	case DAY_INVOICE: invoice(t); break;
	default: rate_limited(t); break;
	}
	t->requests[kind]++;
}

static void *request_thread(void *arg)
{
	struct thread_state *t = arg;
	struct worker *w = t->w;
	struct stress_pacer pacer;

	if (w->store)
		fleet_request_thread_yields();
	stress_pacer_init(&pacer, w->run, w->config->workers * w->run->opt.threads);
	int64_t batch = stress_pace_batch(&pacer, 64);
	while (!atomic_load_explicit(&w->stop_threads, memory_order_relaxed)) {
		for (int64_t i = 0; i < batch; i++)
			serve(t, pick(&t->rng));
		stress_ops(w->run, batch);
		/* published per batch: a killed worker's requests count too */
		for (int k = 0; k < DAY_REQUEST_KINDS; k++) {
			atomic_fetch_add_explicit(&w->config->shared->requests[k], t->requests[k],
						  memory_order_relaxed);
			t->requests[k] = 0;
		}
		stress_pace(&pacer, batch);
	}
	return NULL;
}

/* ---- helpers: TTL sweeps, floor and window checks ------------------------------------- */

static void nap_ms(int ms)
{
	struct timespec pause = { 0, ms * 1000000L };

	nanosleep(&pause, NULL);
}

static void *sweeper(void *arg)
{
	struct worker *w = arg;
	struct tally_session_sweep_result result;

	while (!atomic_load(&w->stop_helpers)) {
		if (tally_session_table_sweep(w->table, &result) == TALLY_OK)
			listeners_down(w, result.connections_deleted, "a TTL sweep");
		nap_ms(20);
	}
	return NULL;
}

/* Windows that ended at least two windows ago can take no more admissions: check them. */
static void check_windows(struct worker *w, int64_t upto)
{
	if (upto > w->windows)
		upto = w->windows;
	for (int64_t window = w->windows_checked; window < upto; window++)
		for (int client = 0; client < DAY_CLIENTS; client++) {
			int32_t admitted = atomic_load(&w->admitted[client * w->windows + window]);

			stress_check(w->run, admitted <= DAY_WINDOW_LIMIT, "worker %d: client %d's "
				     "window %lld admitted %d, limit %d", w->slot, client,
				     (long long)window, admitted, DAY_WINDOW_LIMIT);
		}
	if (upto > w->windows_checked)
		w->windows_checked = upto;
}

static void *checker(void *arg)
{
	struct worker *w = arg;
	int64_t value;

	while (!atomic_load(&w->stop_helpers)) {
		tally_gauge_read(&w->listeners, &value);
		stress_check(w->run, value >= 0, "worker %d: listener gauge read %lld, below its "
			     "floor 0", w->slot, (long long)value);
		int64_t now = (int64_t)(stress_now() * 1e9) - w->clock_base_ns;
		check_windows(w, now / DAY_WINDOW_NS - 2);
		nap_ms(20);
	}
	return NULL;
}

/* ---- the quiescent end ---------------------------------------------------------------- */

static void final_checks(struct worker *w, int threads)
{
	const struct tally_connection_filter listener = { TALLY_ROLE_LISTENER, NULL };
	int64_t counted = 0, connections = 0, gauge, views, applied = 0;
	char sid[ID_MAX];

	for (int64_t n = 1; n <= atomic_load(&w->sessions_created); n++) {
		struct tally_session_info info;
		size_t present = 0, all = 0;

		session_id(w, n, sid);
		if (tally_session_get(w->table, sid, &info) != TALLY_OK)
			continue;
		tally_session_count_connections(w->table, sid, &listener, &present);
		tally_session_count_connections(w->table, sid, NULL, &all);
		stress_check(w->run, info.listener_count == (int64_t)present, "worker %d: session "
			     "%s counts %lld listeners, has %zu listener connections", w->slot, sid,
			     (long long)info.listener_count, present);
		stress_check(w->run, info.active || all == 0, "worker %d: %zu connections survive "
			     "the speaker disconnect of %s", w->slot, all, sid);
		counted += info.listener_count;
	}
	tally_session_table_counts(w->table, NULL, &connections);
	tally_gauge_read(&w->listeners, &gauge);
	stress_check(w->run, gauge == counted && counted == connections, "worker %d: listener "
		     "gauge %lld, sessions count %lld, table holds %lld connections", w->slot,
		     (long long)gauge, (long long)counted, (long long)connections);
	tally_counter_read(&w->views, &views);
	for (int t = 0; t < threads; t++)
		applied += atomic_load(&w->me->applied[t]);
	stress_check(w->run, views == applied, "worker %d: views %lld in memory, threads "
		     "applied %lld", w->slot, (long long)views, (long long)applied);
	tally_counter_read(&w->views_fleet, &views);
	stress_check(w->run, views == applied, "worker %d: fleet views %lld in memory, threads "
		     "applied %lld", w->slot, (long long)views, (long long)applied);
	w->me->final[DAY_FINAL_LISTENERS] = gauge;
	w->me->final[DAY_FINAL_CONNECTIONS] = connections;
	tally_session_table_counts(w->table, &w->me->final[DAY_FINAL_SESSIONS], NULL);
	w->windows_checked = 0; /* again, all of them: late admissions included */
	check_windows(w, w->windows);
}

/* ---- setup and teardown --------------------------------------------------------------- */

static int setup(struct worker *w)
{
	struct tally_session_config table = { .expected_sessions = 4096,
					      .expected_connections = 16384 };
	struct tally_ratelimit_config limit = {
		.algorithm = TALLY_RATELIMIT_FIXED_WINDOW, .limit = DAY_WINDOW_LIMIT,
		.period_ns = DAY_WINDOW_NS, .max_keys = 4 * DAY_CLIENTS, .now_ns = reading_clock };
	struct tally_series_config invoices = { .format = "INV-{counter:08}",
						.mode = TALLY_SEQ_STRICT, .lease_size = 100 };
	char path[256], name[40];

	w->clock_base_ns = (int64_t)(stress_now() * 1e9);
	w->windows = (int64_t)((w->run->opt.seconds + 60) * 1e9 / DAY_WINDOW_NS) + 2;
	w->admitted = calloc((size_t)(DAY_CLIENTS * w->windows), sizeof(*w->admitted));
	if (!w->admitted || tally_session_table_create(&w->table, &table) ||
	    tally_gauge_init(&w->listeners, 0, 0, TALLY_GAUGE_NO_CEILING) ||
	    tally_counter_init(&w->views, 0) || tally_counter_init(&w->views_fleet, 0) ||
	    tally_ratelimit_create(&w->limiter, &limit) ||
	    tally_sequence_create(&w->seq, NULL))
		return 10;
	if (w->config->store_url) {
		int err = day_store_open(&w->store, w->run, w->config, w->slot, w->index);

		if (err)
			return err;
		w->lease = day_store_lease_provider(w->store);
	} else {
		day_lease_path(w->config, path, sizeof(path));
		if (tally_lease_file_open(&w->lease, path))
			return 11;
	}
	invoices.lease = w->lease;
	for (unsigned tenant = 0; tenant < DAY_TENANTS; tenant++) {
		snprintf(name, sizeof(name), "%s-tenant%u", w->config->run_tag, tenant);
		if (tally_sequence_series_create(w->seq, name, "INV", &invoices, NULL))
			return 12;
	}
	if (w->store)
		return day_store_register(w->store, w->table, &w->views, &w->views_fleet,
					  &w->listeners);
	return 0;
}

static void teardown(struct worker *w)
{
	tally_sequence_destroy(w->seq);
	if (w->store) {
		day_store_close(w->store);
	} else {
		tally_lease_provider_destroy(w->lease);
	}
	tally_ratelimit_destroy(w->limiter);
	tally_session_table_destroy(w->table);
	tally_counter_destroy(&w->views);
	tally_counter_destroy(&w->views_fleet);
	tally_gauge_destroy(&w->listeners);
	tally_rcu_barrier();
	free(w->admitted);
}

static void reflush(void *arg)
{
	day_store_reflush(((struct worker *)arg)->store);
}

int day_worker(struct stress_run *run, void *arg, int slot)
{
	const struct day_config *config = arg;
	struct day_shared *shared = config->shared;
	static struct worker w;
	int threads = run->opt.threads;
	struct thread_state *states = calloc((size_t)threads, sizeof(*states));
	pthread_t handles[STRESS_THREADS_MAX], sweep_thread, check_thread;
	int err = 0;

	w = (struct worker){ .run = run, .config = config, .slot = slot };
	w.me = fleet_worker_me(&shared->fleet, slot);
	w.index = (int)(w.me - shared->fleet.incarnations);
	if (!states || (err = setup(&w)) != 0)
		return err ? err : 10;
	atomic_store(&w.me->started, 1);
	for (int t = 0; t < threads; t++) {
		char path[256];

		states[t] = (struct thread_state){ .w = &w, .index = t };
		stress_rng_init(&states[t].rng, run->opt.seed,
				((uint64_t)slot << 40) | ((uint64_t)w.me->number << 16) |
					(uint64_t)t);
		day_invoice_log_path(config, w.index, t, path, sizeof(path));
		states[t].log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (states[t].log_fd < 0)
			return 13;
		pthread_create(&handles[t], NULL, request_thread, &states[t]);
	}
	pthread_create(&sweep_thread, NULL, sweeper, &w);
	pthread_create(&check_thread, NULL, checker, &w);
	while (!fleet_worker_stopping(&shared->fleet))
		nap_ms(5);
	atomic_store(&w.stop_threads, 1);
	for (int t = 0; t < threads; t++) {
		pthread_join(handles[t], NULL);
		close(states[t].log_fd);
	}
	atomic_store(&w.stop_helpers, 1);
	pthread_join(sweep_thread, NULL);
	pthread_join(check_thread, NULL);
	final_checks(&w, threads);
	if (w.store)
		day_store_final_flush(w.store, &w.views);
	fleet_worker_idle(&shared->fleet, slot, w.store ? reflush : NULL, &w);
	teardown(&w);
	free(states);
	return 0;
}
