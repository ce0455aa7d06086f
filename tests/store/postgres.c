/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/postgres.c: the PostgreSQL store backend against a real PostgreSQL 15 server
 * (a private cluster that tests/store/postgres.sh starts with scripts/pg-cluster.sh) and
 * the fault-injecting proxy tests/store/tcp_fault. Environment (from the wrapper):
 *   TALLY_PG_URL, TALLY_PG_RO_URL, TALLY_PG_PASSWORD, TALLY_PG_PORT, TALLY_PG_DIR,
 *   TALLY_PG_CLUSTER (the cluster script), TALLY_TCP_FAULT (the proxy program).
 * Without TALLY_PG_URL every check is skipped (TAP "# SKIP").
 *
 * What it checks: exact totals from several writer processes x threads; nothing lost and
 * nothing doubled across `pg_ctl restart -m immediate`; exactly once under every proxy fault
 * (reply cut after the commit, request cut mid-message, refused and slow connections);
 * fencing; a SIGKILLed writer's gauges reaped on the server's clock and its lease crash
 * range; sequence numbers from 4 processes on one lease key with kills and a restart: no
 * duplicates; hostile keys verbatim; a reset lease table refused; a wrong password, a
 * missing database and a read-only role refused with EPERM and a text without the password.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tally/sequence.h>
#include <tally/store.h>

#include "records.h"
#include "../tap.h"
#include "listeners.h"
#include "../threads.h"

static const char *url, *ro_url;

/* ---- helpers ------------------------------------------------------------------------- */

static void sleep_ms(int64_t ms)
{
	struct timespec pause = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };

	while (nanosleep(&pause, &pause) && errno == EINTR)
		;
}

static int64_t now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static struct tally_store *open_store(const char *at, const char *writer_id, int64_t ttl_ms,
				      int64_t timeout_ms)
{
	struct tally_store_options options = { .writer_id = writer_id, .writer_ttl_ms = ttl_ms,
					       .timeout_ms = timeout_ms, .create_schema = true };
	struct tally_store *store = NULL;
	int err = TALLY_EUNAVAIL;

	/* The caller's part: a transient failure (a server restarting) is retried. */
	for (int attempt = 0; attempt < 20 && tally_store_err_transient(err); attempt++) {
		if (attempt)
			sleep_ms(100);
		err = tally_store_open(&store, at, &options);
	}
	if (err)
		printf("# open: %s: %s\n", tally_strerror(err), tally_store_last_error(NULL));
	return store;
}

/* The caller's rule after a failure: re-send the same batch under the same seq. */
static int flush_until_done(struct tally_store *store, const struct tally_store_batch *batch,
			    struct tally_store_flush_result *result, int *retries)
{
	int err;

	for (int attempt = 0; attempt < 40; attempt++) {
		err = tally_store_flush(store, batch, result);
		if (!err || !tally_store_err_transient(err))
			return err;
		if (retries)
			(*retries)++;
		sleep_ms(50);
	}
	return err;
}

static int64_t counter_of(struct tally_store *store, const char *key)
{
	int64_t total = -1;

	if (tally_store_read_counter(store, key, strlen(key), &total) == TALLY_ENOTFOUND)
		return 0;
	return total;
}

static struct tally_store_delta delta(const char *key, int64_t value)
{
	return (struct tally_store_delta){ key, strlen(key), value };
}

/* Runs SQL as the test role over libpq directly (what an operator or an accident does). */
static int admin_sql(const char *sql)
{
	PGconn *conn = PQconnectdb(url);
	PGresult *result;
	int ok;

	if (PQstatus(conn) != CONNECTION_OK) {
		PQfinish(conn);
		return -1;
	}
	result = PQexec(conn, sql);
	ok = PQresultStatus(result) == PGRES_COMMAND_OK || PQresultStatus(result) == PGRES_TUPLES_OK;
	if (!ok)
		printf("# admin sql: %s", PQresultErrorMessage(result));
	PQclear(result);
	PQfinish(conn);
	return ok ? 0 : -1;
}

static char *server_start_time(void)
{
	static char text[2][64];
	static int which;
	PGconn *conn = PQconnectdb(url);
	PGresult *result = PQexec(conn, "SELECT pg_postmaster_start_time()::text");

	which ^= 1;
	snprintf(text[which], sizeof(text[which]), "%s",
		 PQresultStatus(result) == PGRES_TUPLES_OK ? PQgetvalue(result, 0, 0) : "?");
	PQclear(result);
	PQfinish(conn);
	return text[which];
}

static int cluster(const char *action)
{
	char command[1024];

	snprintf(command, sizeof(command), "sh '%s' %s '%s' >/dev/null 2>&1",
		 getenv("TALLY_PG_CLUSTER"), action, getenv("TALLY_PG_DIR"));
	return system(command);
}

/* ---- basics: flush, re-send, fencing, records ------------------------------------------ */

static char first_language[TALLY_SESSION_LANGUAGE_MAX + 1];
static struct tally_session_info session_seen;

static int count_rows(const struct tally_connection_info *c, const char *writer, uint64_t epoch,
		      void *arg)
{
	if ((*(int *)arg)++ == 0)
		snprintf(first_language, sizeof(first_language), "%s", c->target_language);
	return 0;
}

static int session_rows(const struct tally_session_info *s, const char *writer, uint64_t epoch,
			void *arg)
{
	(*(int *)arg)++;
	session_seen = *s;
	return 0;
}

static void test_basics(void)
{
	struct tally_store *a = open_store(url, "basic-writer", 5000, 5000), *b;
	struct tally_store_epoch_info info = { 0 }, info_b = { 0 };
	struct tally_store_delta deltas[2] = { delta("basic/x", 5), delta("basic/y", -2) };
	struct tally_store_gauge gauge = { "basic/g", 7, 11 };
	struct tally_store_record records[3] = { 0 };
	struct tally_store_batch batch = { .seq = 1, .counters = deltas, .counter_count = 2,
					   .gauges = &gauge, .gauge_count = 1 };
	struct tally_store_flush_result result = { 0 };
	int64_t value = 0, live = 0;
	int rows = 0;

	tap_ok(a != NULL, "open with create_schema");
	if (!a)
		return;
	tap_eq(tally_store_writer_open(a, &info), TALLY_OK, "writer_open");
	tap_eq(info.prior_epoch, 0, "a new writer id has no prior epoch");
	tap_eq(tally_store_flush(a, &batch, &result), TALLY_OK, "flush seq 1");
	tap_ok(!result.already_applied && result.rows_written == 3, "3 rows written (%lld)",
	       (long long)result.rows_written);
	tap_eq(tally_store_flush(a, &batch, &result), TALLY_OK, "re-send of seq 1");
	tap_ok(result.already_applied, "re-send acknowledged as already applied");
	tap_eq(counter_of(a, "basic/x"), 5, "counter applied once");
	tap_eq(counter_of(a, "basic/y"), -2, "negative delta applied once");
	tap_eq(tally_store_read_gauge(a, "basic/g", 7, &value, &live), TALLY_OK, "read gauge");
	tap_ok(value == 11 && live == 1, "gauge 11 from one live writer");
	batch.seq = 3;
	tap_eq(tally_store_flush(a, &batch, &result), TALLY_EINVAL, "seq beyond last + 1: EINVAL");

	/* Sessions and connections. */
	records[0].kind = TALLY_STORE_SESSION;
	records[0].op = TALLY_STORE_PUT;
	snprintf(records[0].as.session.session_id, TALLY_SESSION_ID_MAX, "sess-1");
	snprintf(records[0].as.session.source_language, TALLY_SESSION_LANGUAGE_MAX, "en-US");
	records[0].as.session.active = 1;
	records[0].as.session.listener_count = 2;
	for (int i = 1; i < 3; i++) {
		records[i].kind = TALLY_STORE_CONNECTION;
		records[i].op = TALLY_STORE_PUT;
		snprintf(records[i].as.connection.connection_id, TALLY_SESSION_ID_MAX, "conn-%d", i);
		snprintf(records[i].as.connection.session_id, TALLY_SESSION_ID_MAX, "sess-1");
		snprintf(records[i].as.connection.target_language, TALLY_SESSION_LANGUAGE_MAX,
			 i == 1 ? "fr" : "de");
	}
	batch = (struct tally_store_batch){ .seq = 2, .records = records, .record_count = 3 };
	tap_eq(tally_store_flush(a, &batch, &result), TALLY_OK, "flush of 3 records");
	tap_eq(tally_store_connections(a, "sess-1", count_rows, &rows), TALLY_OK,
	       "list connections");
	tap_eq(rows, 2, "two connections of the session");
	tap_ok(!strcmp(first_language, "de"), "in (session, language) order");
	rows = 0;
	tally_store_sessions(a, "basic-writer", session_rows, &rows);
	tap_eq(rows, 1, "one session written by this writer");
	tap_ok(!strcmp(session_seen.source_language, "en-US") && session_seen.active &&
	       session_seen.listener_count == 2, "its fields read back");

	/* A second handle with the same writer id opens the next epoch and fences the first. */
	b = open_store(url, "basic-writer", 5000, 5000);
	tap_eq(tally_store_writer_open(b, &info_b), TALLY_OK, "second incarnation opens");
	tap_ok(info_b.epoch == info.epoch + 1 && info_b.prior_epoch == info.epoch &&
	       info_b.prior_last_seq == 2, "epoch %" PRIu64 ", prior %" PRIu64 " at seq %" PRIu64,
	       info_b.epoch, info_b.prior_epoch, info_b.prior_last_seq);
	batch = (struct tally_store_batch){ .seq = 3, .counters = deltas, .counter_count = 1 };
	tap_eq(tally_store_flush(a, &batch, &result), TALLY_EFENCED, "the old epoch is fenced");
	tap_eq(counter_of(a, "basic/x"), 5, "a fenced flush changes nothing");
	tally_store_read_gauge(a, "basic/g", 7, &value, &live);
	tap_ok(value == 0 && live == 0, "the old epoch's gauge went with it");
	rows = 0;
	tally_store_connections(a, "sess-1", count_rows, &rows);
	tap_eq(rows, 0, "and its connection records");
	tap_eq(tally_store_writer_close(b), TALLY_OK, "clean writer close");
	tally_store_close(a);
	tally_store_close(b);
}

/* ---- hostile keys ------------------------------------------------------------------------ */

struct key_seen {
	const char *key;
	size_t len;
	int64_t total;
	bool found;
};

static int find_key(const char *key, size_t key_len, int64_t total, void *arg)
{
	struct key_seen *seen = arg;

	if (key_len == seen->len && !memcmp(key, seen->key, key_len)) {
		seen->found = true;
		seen->total = total;
	}
	return 0;
}

static void test_hostile_keys(void)
{
	static char binary[255], longest[TALLY_STORE_KEY_MAX + 1];
	const char *keys[] = { "it's", "back\\slash", "\"quoted\"", "'); DROP TABLE tally_counters; --",
			       "{\"json\": [1, 2]}", "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
			       "\xff\xfe not utf-8 \x80", "%s%n\\x00", binary, longest };
	size_t lens[10];
	struct tally_store_delta deltas[10];
	struct tally_store *store = open_store(url, "hostile", 5000, 5000);
	struct tally_store_batch batch = { .seq = 1, .counters = deltas, .counter_count = 10 };
	int verbatim = 0;

	if (!store)
		return;
	for (int i = 0; i < 255; i++)
		binary[i] = (char)(i + 1);
	memset(longest, 'k', TALLY_STORE_KEY_MAX);
	for (int i = 0; i < 10; i++) {
		lens[i] = i == 8 ? sizeof(binary) : strlen(keys[i]);
		deltas[i] = (struct tally_store_delta){ keys[i], lens[i], i + 1 };
	}
	tally_store_writer_open(store, NULL);
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_OK, "flush of 10 hostile keys");
	for (int i = 0; i < 10; i++) {
		struct key_seen seen = { keys[i], lens[i], 0, false };
		int64_t total = 0;

		tally_store_counters(store, find_key, &seen);
		if (seen.found && seen.total == i + 1 &&
		    tally_store_read_counter(store, keys[i], lens[i], &total) == TALLY_OK &&
		    total == i + 1)
			verbatim++;
	}
	tap_eq(verbatim, 10, "every hostile key reads back verbatim, listed and by key");
	tap_eq(admin_sql("SELECT count(*) FROM tally_counters"), 0, "the tables are still there");
	deltas[0] = (struct tally_store_delta){ longest, TALLY_STORE_KEY_MAX + 1, 1 };
	longest[TALLY_STORE_KEY_MAX] = 'k';
	batch = (struct tally_store_batch){ .seq = 2, .counters = deltas, .counter_count = 1 };
	tap_eq(tally_store_flush(store, &batch, NULL), TALLY_ETOOLONG, "a 513-byte key: ETOOLONG");
	tally_store_writer_close(store);
	tally_store_close(store);
}

/* ---- many threads x many keys x several processes --------------------------------------- */

enum { MP_PROCESSES = 3, MP_THREADS = 3, MP_FLUSHES = 15, MP_KEYS = 100, MP_PER_FLUSH = 40 };

static int64_t mp_delta(int process, int thread, int flush, int i)
{
	return (process * 7 + thread * 3 + flush + i) % 11 + 1;
}

static int mp_key(int thread, int flush, int i)
{
	return (flush * 13 + i * 7 + thread) % MP_KEYS; /* distinct for i < MP_KEYS */
}

struct mp_thread_arg {
	int process;
	const char *prefix;
	int64_t pause_ms;
	_Atomic int failures;
};

static void *mp_writer(struct test_thread *self)
{
	struct mp_thread_arg *arg = self->shared;
	char writer_id[64], names[MP_PER_FLUSH][32];
	struct tally_store_delta deltas[MP_PER_FLUSH];
	struct tally_store *store;

	snprintf(writer_id, sizeof(writer_id), "%s-%d-%d", arg->prefix, arg->process, self->index);
	store = open_store(url, writer_id, 10000, 5000);
	if (!store || tally_store_writer_open(store, NULL)) {
		arg->failures++;
		tally_store_close(store);
		return NULL;
	}
	for (int flush = 0; flush < MP_FLUSHES; flush++) {
		struct tally_store_batch batch = { .seq = (uint64_t)flush + 1, .counters = deltas,
						   .counter_count = MP_PER_FLUSH };
		int err;

		for (int i = 0; i < MP_PER_FLUSH; i++) {
			snprintf(names[i], sizeof(names[i]), "%s/%d", arg->prefix,
				 mp_key(self->index, flush, i));
			deltas[i] = delta(names[i], mp_delta(arg->process, self->index, flush, i));
		}
		err = flush_until_done(store, &batch, NULL, NULL);
		if (err) {
			printf("# %s flush %d: %s %s\n", writer_id, flush, tally_strerror(err),
			       tally_store_last_error(store));
			arg->failures++;
			break;
		}
		if (arg->pause_ms)
			sleep_ms(arg->pause_ms);
	}
	tally_store_writer_close(store); /* a clean exit: later reaps find nothing of it */
	tally_store_close(store);
	return NULL;
}

/* Forks `processes` children of MP_THREADS writer threads each; returns how many failed. */
static int run_writer_processes(int processes, const char *prefix, int64_t pause_ms,
				pid_t *pids)
{
	for (int p = 0; p < processes; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			struct mp_thread_arg arg = { .process = p, .prefix = prefix,
						     .pause_ms = pause_ms };
			struct test_thread threads[MP_THREADS];

			run_threads(MP_THREADS, mp_writer, &arg, threads);
			_exit(arg.failures ? 1 : 0);
		}
	}
	return 0;
}

static int wait_children(int count, const pid_t *pids)
{
	int failed = 0;

	for (int p = 0; p < count; p++) {
		int status = 0;

		if (pids[p] <= 0 || waitpid(pids[p], &status, 0) != pids[p] ||
		    !WIFEXITED(status) || WEXITSTATUS(status))
			failed++;
	}
	return failed;
}

static int mp_check_totals(struct tally_store *store, const char *prefix, int processes)
{
	int64_t want[MP_KEYS] = { 0 };
	int exact = 0;

	for (int p = 0; p < processes; p++)
		for (int t = 0; t < MP_THREADS; t++)
			for (int f = 0; f < MP_FLUSHES; f++)
				for (int i = 0; i < MP_PER_FLUSH; i++)
					want[mp_key(t, f, i)] += mp_delta(p, t, f, i);
	for (int k = 0; k < MP_KEYS; k++) {
		char name[32];

		snprintf(name, sizeof(name), "%s/%d", prefix, k);
		if (counter_of(store, name) == want[k])
			exact++;
		else
			printf("# %s: got %lld want %lld\n", name, (long long)counter_of(store, name),
			       (long long)want[k]);
	}
	return exact;
}

/* Readers and takers on one shared handle while its writers flush (the pool under load). */
struct shared_handle {
	struct tally_store *store;
	_Atomic int64_t taken;
	_Atomic int failures;
};

static void *take_one_at_a_time(struct test_thread *self)
{
	struct shared_handle *shared = self->shared;

	for (int i = 0; i < 400; i++) {
		int err = tally_store_take(shared->store, "take/pool", 9, 3, NULL);

		if (err == TALLY_EFLOOR)
			break;
		if (err)
			shared->failures++;
		else
			shared->taken += 3;
	}
	return NULL;
}

static void test_processes_and_takes(void)
{
	pid_t pids[MP_PROCESSES];
	struct tally_store *store = open_store(url, "taker", 5000, 5000);
	struct shared_handle shared = { .store = store };
	struct test_thread threads[6]; /* more threads than the handle has connections */
	int64_t remaining = -1, total = 0;

	if (!store)
		return;
	run_writer_processes(MP_PROCESSES, "mp", 0, pids);
	tap_eq(tally_store_give(store, "take/pool", 9, 1000, &total), TALLY_OK, "give 1000");
	run_threads(6, take_one_at_a_time, &shared, threads);
	tap_eq(shared.failures, 0, "takes from 6 threads on one handle (4 connections): no errors");
	tap_eq(shared.taken, 999, "999 taken in steps of 3, never below zero");
	tap_eq(tally_store_take(store, "take/pool", 9, 2, &remaining), TALLY_EFLOOR,
	       "take 2 of the 1 left: EFLOOR");
	tap_eq(tally_store_take(store, "take/pool", 9, 1, &remaining), TALLY_OK, "take the last");
	tap_eq(remaining, 0, "remaining 0");
	tap_eq(tally_store_take(store, "take/none", 9, 1, NULL), TALLY_EFLOOR,
	       "take from a key never flushed: EFLOOR");
	tap_eq(wait_children(MP_PROCESSES, pids), 0, "3 writer processes x 3 threads finished");
	tap_eq(mp_check_totals(store, "mp", MP_PROCESSES), MP_KEYS,
	       "all 100 totals exact after 135 concurrent flushes of 40 keys");
	tally_store_close(store);
}

/* ---- the server restarted in the middle -------------------------------------------------- */

static void test_restart(void)
{
	pid_t pids[2];
	struct tally_store *store;
	char before[64];

	snprintf(before, sizeof(before), "%s", server_start_time());
	run_writer_processes(2, "rs", 40, pids);
	sleep_ms(250);
	tap_eq(cluster("restart"), 0, "pg_ctl restart -m immediate while 6 writers flush");
	tap_ok(strcmp(before, server_start_time()) != 0, "the server did restart");
	tap_eq(wait_children(2, pids), 0, "every writer finished (re-sending after errors)");
	store = open_store(url, NULL, 5000, 5000);
	if (!store)
		return;
	tap_eq(mp_check_totals(store, "rs", 2), MP_KEYS,
	       "totals exact across the restart: nothing lost, nothing doubled");
	tally_store_close(store);
}

/* ---- the proxy ----------------------------------------------------------------------------- */

struct proxy {
	pid_t pid;
	char control[108];
	char url[512];
	char dir[64];
};

static long proxy_command(struct proxy *proxy, const char *command)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	char reply[128] = "", line[128];
	const char *cuts;
	int len = snprintf(line, sizeof(line), "%s\n", command);

	snprintf(address.sun_path, sizeof(address.sun_path), "%s", proxy->control);
	if (fd < 0 || connect(fd, (struct sockaddr *)&address, sizeof(address))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (write(fd, line, (size_t)len) != len || read(fd, reply, sizeof(reply) - 1) <= 0) {
		close(fd);
		return -1;
	}
	close(fd);
	cuts = strstr(reply, "cuts=");
	return strncmp(reply, "ok", 2) || !cuts ? -1 : atol(cuts + 5);
}

static bool proxy_start(struct proxy *proxy)
{
	int out[2];
	char line[64] = "";
	FILE *from;
	int port = 0;

	snprintf(proxy->dir, sizeof(proxy->dir), "/tmp/tally-proxy.XXXXXX");
	if (!mkdtemp(proxy->dir) || pipe(out))
		return false;
	snprintf(proxy->control, sizeof(proxy->control), "%s/control", proxy->dir);
	proxy->pid = fork();
	if (proxy->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM); /* a crashed test leaves no proxy behind */
		dup2(out[1], 1);
		close(out[0]);
		execl(getenv("TALLY_TCP_FAULT"), "tcp_fault", proxy->control, "127.0.0.1",
		      getenv("TALLY_PG_PORT"), (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	from = fdopen(out[0], "r");
	if (!from || !fgets(line, sizeof(line), from) || sscanf(line, "port %d", &port) != 1)
		return false;
	fclose(from);
	snprintf(proxy->url, sizeof(proxy->url),
		 "postgresql://tally_test:%s@127.0.0.1:%d/tally_test?sslmode=disable&gssencmode=disable",
		 getenv("TALLY_PG_PASSWORD"), port);
	return true;
}

static void proxy_stop(struct proxy *proxy)
{
	if (proxy->pid > 0) {
		proxy_command(proxy, "quit");
		kill(proxy->pid, SIGTERM);
		waitpid(proxy->pid, NULL, 0);
	}
	unlink(proxy->control);
	rmdir(proxy->dir);
}

static void test_proxy_faults(void)
{
	struct proxy proxy = { 0 };
	struct tally_store *store, *direct;
	struct tally_store_delta d = delta("proxy/total", 1);
	struct tally_store_batch batch = { .seq = 1, .counters = &d, .counter_count = 1 };
	struct tally_store_flush_result result = { 0 };
	struct tally_store_epoch_info info = { 0 }, again = { 0 };
	int64_t want = 0, remaining = 0;
	int err;

	if (!getenv("TALLY_TCP_FAULT") || !proxy_start(&proxy)) {
		tap_ok(0, "the proxy starts");
		proxy_stop(&proxy);
		return;
	}
	store = open_store(proxy.url, "proxied", 10000, 1500);
	direct = open_store(url, NULL, 5000, 5000);
	if (!store || !direct) {
		tap_ok(0, "open through the proxy");
		proxy_stop(&proxy);
		return;
	}
	/* writer_open whose COMMIT reply is cut: resolved by its token, one epoch made. */
	tally_store_writer_open(store, &info);
	tally_store_writer_close(store);
	tap_eq(proxy_command(&proxy, "cut-reply COMMIT"), 0, "arm: cut the reply to COMMIT");
	tap_eq(tally_store_writer_open(store, &again), TALLY_OK, "writer_open with its reply cut");
	tap_eq(proxy_command(&proxy, "stats"), 1, "the proxy cut one reply");
	tap_ok(again.epoch == info.epoch + 1 && again.prior_epoch == info.epoch,
	       "exactly one new epoch (%" PRIu64 " after %" PRIu64 "), the prior one reported",
	       again.epoch, info.epoch);

	/* The ambiguous flush: committed on the server, the reply lost. */
	tap_eq(proxy_command(&proxy, "cut-reply tally_flush"), 1, "arm: cut the flush's reply");
	err = tally_store_flush(store, &batch, &result);
	want += 1;
	tap_eq(err, TALLY_OK, "flush whose reply was cut after the commit");
	tap_ok(result.already_applied, "resolved from the recorded last_seq: applied, once");
	tap_eq(proxy_command(&proxy, "stats"), 2, "the proxy cut it");
	tap_eq(counter_of(direct, "proxy/total"), want, "applied exactly once");

	/* A request cut in the middle: the server runs nothing, the retry applies it. */
	batch.seq = 2;
	tap_eq(proxy_command(&proxy, "cut-request tally_flush"), 2, "arm: cut the flush mid-way");
	err = tally_store_flush(store, &batch, &result);
	want += 1;
	tap_ok(err == TALLY_OK && !result.already_applied, "flush cut mid-message, retried: %s",
	       tally_strerror(err));
	tap_eq(proxy_command(&proxy, "stats"), 3, "the proxy cut it");
	tap_eq(counter_of(direct, "proxy/total"), want, "applied exactly once");

	/* Refused: EUNAVAIL within the timeout; the same seq re-sent later lands once. */
	batch.seq = 3;
	proxy_command(&proxy, "refuse");
	proxy_command(&proxy, "drop");
	err = tally_store_flush(store, &batch, &result);
	tap_eq(tally_store_err_transient(err), 1, "refused: a transient error (%s)",
	       tally_strerror(err));
	proxy_command(&proxy, "pass");
	err = flush_until_done(store, &batch, &result, NULL);
	want += 1;
	tap_eq(err, TALLY_OK, "re-sent after the server is back");
	tap_eq(counter_of(direct, "proxy/total"), want, "applied exactly once");

	/* Slow: past the timeout the outcome is unknown (ETIMEDOUT); re-sending resolves it. */
	batch.seq = 4;
	proxy_command(&proxy, "delay 1700");
	err = tally_store_flush(store, &batch, &result);
	tap_ok(err == TALLY_ETIMEDOUT || err == TALLY_EUNAVAIL, "slow link: %s",
	       tally_strerror(err));
	proxy_command(&proxy, "pass");
	err = flush_until_done(store, &batch, &result, NULL);
	want += 1;
	tap_eq(err, TALLY_OK, "re-sent after the timeout");
	tap_eq(counter_of(direct, "proxy/total"), want, "applied exactly once");

	/* A take whose reply is lost: never guessed, EUNAVAIL; it did happen once. */
	tally_store_give(direct, "proxy/take", 10, 10, NULL);
	proxy_command(&proxy, "cut-reply tally_take");
	tap_eq(tally_store_take(store, "proxy/take", 10, 4, &remaining), TALLY_EUNAVAIL,
	       "a take with its reply cut: EUNAVAIL (outcome unknown)");
	tap_eq(counter_of(direct, "proxy/take"), 6, "the take happened once, not retried");

	/* A lease acquire whose reply is cut: the retry leaves a gap, never an overlap. */
	{
		struct tally_lease_provider *lease = NULL;
		uint64_t first = 0, second = 0, third = 0;

		tally_store_lease_provider(store, &lease);
		tally_lease_acquire(lease, "proxy/lease", 11, 0, 100, 0, &first);
		proxy_command(&proxy, "cut-reply COMMIT");
		tap_eq(tally_lease_acquire(lease, "proxy/lease", 11, 0, 100, 0, &second), TALLY_OK,
		       "lease acquire with its COMMIT reply cut");
		tally_lease_acquire(lease, "proxy/lease", 11, 0, 100, 0, &third);
		tap_ok(second >= first + 100 && third >= second + 100,
		       "blocks never overlap (%" PRIu64 ", %" PRIu64 ", %" PRIu64 ")", first, second,
		       third);
		tally_lease_provider_destroy(lease);
	}
	tally_store_writer_close(store);
	tally_store_close(store);
	tally_store_close(direct);
	proxy_stop(&proxy);
}

/* ---- a SIGKILLed writer ------------------------------------------------------------------- */

struct live_state {
	const char *id;
	bool live, reaped, found;
};

static int find_writer(const struct tally_store_writer_info *w, void *arg)
{
	struct live_state *state = arg;

	if (!strcmp(w->writer_id, state->id)) {
		state->found = true;
		state->live = w->live;
		state->reaped = w->reaped;
	}
	return 0;
}

struct unclean {
	int count;
	uint64_t issued, mark;
};

static int find_unclean(const char *key, size_t key_len, const struct tally_lease_record *r,
			void *arg)
{
	struct unclean *found = arg;

	if (key_len >= 6 && !memcmp(key + key_len - 6, "killed", 6) &&
	    !(r->flags & TALLY_LEASE_CLEAN)) {
		found->count++;
		found->issued = r->issued;
		found->mark = r->mark;
	}
	return 0;
}

static struct tally_series_config series_config(struct tally_lease_provider *lease,
						uint32_t lease_size)
{
	return (struct tally_series_config){ .format = "INV-{counter}", .mode = TALLY_SEQ_STRICT,
					     .lease = lease, .lease_size = lease_size };
}

static void killed_child(int ready)
{
	struct tally_store *store = open_store(url, "killed-writer", 1500, 5000);
	struct tally_store_gauge gauge = { "kill/gauge", 10, 7 };
	struct tally_store_batch batch = { .seq = 1, .gauges = &gauge, .gauge_count = 1 };
	struct tally_lease_provider *lease = NULL;
	struct tally_sequence *seq = NULL;
	struct tally_series_config config;
	struct tally_seq_number number;

	if (!store || tally_store_writer_open(store, NULL) || tally_store_flush(store, &batch, NULL))
		_exit(1);
	tally_store_lease_provider(store, &lease);
	tally_sequence_create(&seq, NULL);
	config = series_config(lease, 100);
	if (tally_sequence_series_create(seq, "kill", "killed", &config, NULL))
		_exit(1);
	for (int i = 0; i < 130; i++)
		tally_sequence_next(seq, "kill", "killed", &number);
	if (write(ready, "r", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

/* After a writer's records leave (reap, a newer epoch, close), each session counts the
 * listener connections that remain (tests/store/listeners.h). */
static void test_listener_recount(void)
{
	struct tally_store *w = open_store(url, "recount-w", 300, 5000);
	struct tally_store *w_again = open_store(url, "recount-w", 300, 5000);
	struct tally_store *x = open_store(url, "recount-x", 10000, 5000);

	if (tap_ok(w && w_again && x, "recount: three handles"))
		listeners_recount_case("recount", w, w_again, x, 450);
	tally_store_close(w);
	tally_store_close(w_again);
	tally_store_close(x);
}

static void test_killed_writer(void)
{
	struct tally_store *store = open_store(url, NULL, 5000, 5000);
	struct live_state state = { .id = "killed-writer" };
	struct unclean crash = { 0 };
	int ready[2];
	char byte;
	int64_t value = -1, live = -1, reaped = -1;
	pid_t pid;

	if (!store || pipe(ready))
		return;
	pid = fork();
	if (pid == 0)
		killed_child(ready[1]);
	close(ready[1]);
	tap_eq(read(ready[0], &byte, 1), 1, "the writer flushed its gauge and issued numbers");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	tally_store_read_gauge(store, "kill/gauge", 10, &value, &live);
	tap_ok(value == 7 && live == 1, "until its lease expires, its gauge still counts");
	tap_eq(tally_store_reap(store, NULL), TALLY_OK, "reap (earlier tests' writers)");
	tally_store_writers(store, find_writer, &state);
	tap_ok(state.found && state.live && !state.reaped,
	       "a reap before its expiry (server clock) leaves the killed writer alone");
	for (int64_t until = now_ms() + 6000; now_ms() < until; sleep_ms(100)) {
		tally_store_writers(store, find_writer, &state);
		if (state.found && !state.live)
			break;
	}
	tap_ok(state.found && !state.live, "the server's clock says the writer died");
	tap_eq(tally_store_reap(store, &reaped), TALLY_OK, "reap");
	tap_ok(reaped >= 1, "the dead writer reaped (%lld)", (long long)reaped);
	tally_store_read_gauge(store, "kill/gauge", 10, &value, &live);
	tap_ok(value == 0 && live == 0, "its gauge contribution is gone");
	tally_store_writers(store, find_writer, &state);
	tap_ok(state.reaped, "listed as reaped");
	tally_store_reap(store, &reaped);
	tap_eq(reaped, 0, "a second reap removes nothing more");
	tally_store_leases(store, find_unclean, &crash);
	tap_ok(crash.count == 1 && crash.issued < crash.mark && crash.mark - crash.issued <= 100,
	       "its lease key is unclean with a crash range (%" PRIu64 ", %" PRIu64 "]",
	       crash.issued, crash.mark);
	{
		struct tally_lease_provider *lease = NULL;
		struct tally_sequence *seq = NULL;
		struct tally_series_config config;
		struct tally_seq_recovery recovery = { 0 };

		tally_store_lease_provider(store, &lease);
		tally_sequence_create(&seq, NULL);
		config = series_config(lease, 100);
		tap_eq(tally_sequence_series_create(seq, "kill", "killed", &config, &recovery),
		       TALLY_OK, "the next owner creates the series");
		tap_ok(recovery.unclean && recovery.count > 0 && recovery.last_counter >= 130,
		       "and is told of the unaccounted range %" PRIu64 "..%" PRIu64,
		       recovery.first_counter, recovery.last_counter);
		tally_sequence_destroy(seq);
		tally_lease_provider_destroy(lease);
	}
	close(ready[0]);
	tally_store_close(store);
}

/* ---- sequences from 4 processes on one key, with kills and a restart ---------------------- */

enum { SEQ_PROCESSES = 4, SEQ_NUMBERS = 120 };

/* Issues SEQ_NUMBERS numbers (or stalls, holding its lease, after `stall_after`: the parent
 * SIGKILLs it there), writing each to `out` as it is handed out. */
static void sequence_child(int out, int stall_after)
{
	struct tally_store *store = open_store(url, NULL, 5000, 5000);
	struct tally_lease_provider *lease = NULL;
	struct tally_sequence *seq = NULL;
	struct tally_series_config config;

	if (!store || tally_store_lease_provider(store, &lease) || tally_sequence_create(&seq, NULL))
		_exit(1);
	config = series_config(lease, 25);
	if (tally_sequence_series_create(seq, "shared", "inv", &config, NULL))
		_exit(1);
	for (int i = 0; i < SEQ_NUMBERS; i++) {
		struct tally_seq_number number;
		int err;

		for (int attempt = 0; attempt < 40; attempt++) {
			err = tally_sequence_next(seq, "shared", "inv", &number);
			if (err != TALLY_EIO && err != TALLY_EUNAVAIL && err != TALLY_ETIMEDOUT)
				break;
			sleep_ms(50);
		}
		if (err)
			_exit(2);
		if (write(out, &number.counter, sizeof(number.counter)) != sizeof(number.counter))
			_exit(3);
		while (i + 1 == stall_after)
			pause();
	}
	tally_sequence_destroy(seq);
	tally_lease_provider_destroy(lease);
	tally_store_close(store);
	_exit(0);
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* One round: 4 processes; the first `kills` are SIGKILLed after 30 numbers. Appends every
 * number handed out to numbers[*count]. Returns the number of clean exits. */
static int sequence_round(int kills, bool restart, uint64_t *numbers, size_t *count)
{
	int pipes[SEQ_PROCESSES][2], clean = 0;
	pid_t pids[SEQ_PROCESSES];

	for (int p = 0; p < SEQ_PROCESSES; p++) {
		if (pipe(pipes[p]))
			return 0;
		pids[p] = fork();
		if (pids[p] == 0) {
			close(pipes[p][0]);
			sequence_child(pipes[p][1], p < kills ? 30 : 0);
		}
		close(pipes[p][1]);
	}
	for (int p = 0; p < kills; p++) {
		for (int got = 0; got < 30; got++)
			if (read(pipes[p][0], &numbers[*count], sizeof(uint64_t)) == sizeof(uint64_t))
				(*count)++;
		kill(pids[p], SIGKILL);
	}
	if (restart)
		cluster("restart");
	for (int p = 0; p < SEQ_PROCESSES; p++) {
		int status = 0;

		while (read(pipes[p][0], &numbers[*count], sizeof(uint64_t)) == sizeof(uint64_t))
			(*count)++;
		close(pipes[p][0]);
		waitpid(pids[p], &status, 0);
		clean += WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	return clean;
}

static void test_sequences(void)
{
	static uint64_t numbers[3 * SEQ_PROCESSES * SEQ_NUMBERS];
	size_t count = 0, duplicates = 0;

	tap_eq(sequence_round(2, false, numbers, &count), 2, "round 1: 2 of 4 killed, 2 finish");
	tap_eq(sequence_round(1, true, numbers, &count), 3,
	       "round 2: 1 killed, a server restart, 3 finish");
	tap_eq(sequence_round(0, false, numbers, &count), 4, "round 3: 4 finish");
	qsort(numbers, count, sizeof(numbers[0]), compare_u64);
	for (size_t i = 1; i < count; i++)
		duplicates += numbers[i] == numbers[i - 1];
	tap_ok(count >= 9 * SEQ_NUMBERS + 90, "%zu numbers handed out by 12 processes", count);
	tap_eq(duplicates, 0, "zero duplicates across processes, kills and the restart");
}

/* ---- refusals: auth, database, permission, a reset lease table --------------------------- */

static void test_refusals(void)
{
	char bad[512];
	const char *port = getenv("TALLY_PG_PORT");
	struct tally_store *store = NULL;
	struct tally_store_options options = { .create_schema = true, .timeout_ms = 3000 };
	int err;

	snprintf(bad, sizeof(bad), "postgresql://tally_test:Wr0ng-S3cret-xyz@127.0.0.1:%s/tally_test",
		 port);
	err = tally_store_open(&store, bad, &options);
	tap_eq(err, TALLY_EPERM, "a wrong password: EPERM");
	tap_ok(strstr(tally_store_last_error(NULL), "password authentication failed") &&
	       !strstr(tally_store_last_error(NULL), "Wr0ng-S3cret-xyz"),
	       "a clear text without the password: \"%s\"", tally_store_last_error(NULL));
	snprintf(bad, sizeof(bad), "postgresql://tally_test:%s@127.0.0.1:%s/no_such_database",
		 getenv("TALLY_PG_PASSWORD"), port);
	err = tally_store_open(&store, bad, &options);
	tap_eq(err, TALLY_EPERM, "a missing database: EPERM");
	tap_ok(strstr(tally_store_last_error(NULL), "does not exist") &&
	       !strstr(tally_store_last_error(NULL), getenv("TALLY_PG_PASSWORD")),
	       "a clear text without the password: \"%s\"", tally_store_last_error(NULL));
	snprintf(bad, sizeof(bad), "postgresql:host=127.0.0.1 port=%s no_such_option=1", port);
	err = tally_store_open(&store, bad, &options);
	tap_eq(err, TALLY_EINVAL, "an unknown conninfo option: EINVAL (%s)", tally_store_last_error(NULL));

	/* The conninfo form, and a libpq option passing through (sslmode). */
	snprintf(bad, sizeof(bad), "postgresql:host=127.0.0.1 port=%s user=tally_test password=%s"
		 " dbname=tally_test application_name=conninfo-test", port,
		 getenv("TALLY_PG_PASSWORD"));
	store = open_store(bad, NULL, 5000, 3000);
	tap_ok(store && counter_of(store, "basic/x") == 5, "a libpq conninfo after postgresql:");
	tally_store_close(store);
	store = NULL;
	snprintf(bad, sizeof(bad), "postgresql://tally_test:%s@127.0.0.1:%s/tally_test?sslmode=require",
		 getenv("TALLY_PG_PASSWORD"), port);
	err = tally_store_open(&store, bad, &options);
	tap_ok(err == TALLY_EPERM && strstr(tally_store_last_error(NULL), "SSL"),
	       "sslmode=require reaches libpq: this server has no TLS (%s)",
	       tally_store_last_error(NULL));

	store = open_store(ro_url, "read-only", 5000, 3000);
	tap_ok(store != NULL, "the read-only role opens the existing schema");
	if (store) {
		int64_t total = 0;

		tap_eq(tally_store_writer_open(store, NULL), TALLY_EPERM,
		       "the read-only role cannot register a writer: EPERM");
		tap_ok(strstr(tally_store_last_error(store), "permission denied") != NULL,
		       "\"%s\"", tally_store_last_error(store));
		tap_eq(tally_store_read_counter(store, "basic/x", 7, &total), TALLY_OK,
		       "but it reads");
		tap_eq(total, 5, "what the writers wrote, unchanged");
		tap_eq(tally_store_give(store, "basic/x", 7, 1, NULL), TALLY_EPERM, "give: EPERM");
		tally_store_close(store);
	}
}

static void test_lease_reset(void)
{
	struct tally_store *store = open_store(url, NULL, 5000, 5000), *later;
	struct tally_lease_provider *lease = NULL;
	struct tally_lease_record record;
	uint64_t base = 0;

	if (!store)
		return;
	tally_store_lease_provider(store, &lease);
	tap_eq(tally_lease_acquire(lease, "reset/a", 7, 0, 10, 0, &base), TALLY_OK, "acquire a");
	tap_eq(tally_lease_read(lease, "reset/never", 11, &record), TALLY_ENOTFOUND,
	       "a key never acquired: ENOTFOUND");
	admin_sql("DELETE FROM tally_leases WHERE k = 'reset/a'::bytea");
	tap_eq(tally_lease_read(lease, "reset/a", 7, &record), TALLY_ECORRUPT,
	       "a deleted lease row is not \"never acquired\": ECORRUPT");
	tap_eq(tally_lease_acquire(lease, "reset/a", 7, 0, 10, 0, &base), TALLY_ECORRUPT,
	       "and is not re-created from 0");
	admin_sql("TRUNCATE tally_leases");
	tap_eq(tally_lease_acquire(lease, "reset/b", 7, 0, 10, 0, &base), TALLY_ECORRUPT,
	       "an emptied lease table: ECORRUPT");
	later = open_store(url, NULL, 5000, 5000);
	if (later) {
		struct tally_lease_provider *later_lease = NULL;

		tally_store_lease_provider(later, &later_lease);
		tap_eq(tally_lease_read(later_lease, "reset/b", 7, &record), TALLY_ECORRUPT,
		       "also for a handle opened after the reset");
		tally_lease_provider_destroy(later_lease);
		tally_store_close(later);
	}
	tally_lease_provider_destroy(lease);
	tally_store_close(store);
}

int main(void)
{
	url = getenv("TALLY_PG_URL");
	ro_url = getenv("TALLY_PG_RO_URL");
	if (!url || !ro_url) {
		printf("1..0 # SKIP no PostgreSQL server (TALLY_PG_URL unset)\n");
		return 0;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	test_basics();
	test_hostile_keys();
	test_processes_and_takes();
	test_restart();
	test_proxy_faults();
	test_listener_recount();
	test_killed_writer();
	test_sequences();
	test_refusals();
	test_lease_reset(); /* last: it empties the lease table */
	return tap_done();
}
