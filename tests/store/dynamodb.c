/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/dynamodb.c: the DynamoDB backend against a real dynalite, through the
 * project's fault-injecting proxy (tests/store/http_fault.c). Run by tests/store/dynamodb.sh,
 * which starts both and sets:
 *   TALLY_DDB_PORT           dynalite's port (direct)
 *   TALLY_DDB_PROXY_PORT     the proxy's port, TALLY_DDB_CONTROL_PORT its control port
 *   TALLY_DDB_RESTART        a shell command that SIGKILLs dynalite and starts it again
 *                            on the same port with the same (--path) data
 *   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (test values)
 * Without them it skips (exit 77).
 *
 * What it checks: exactly-once totals from several writer processes through throttling,
 * 5xx, hangs, dropped responses and a dynalite restart; a writer SIGKILLed mid-flush is
 * reaped, its gauge leaves the sum, its half-applied flush is rolled forward (the total
 * matches prior_last_seq exactly); fencing of a superseded epoch; leases with zero
 * duplicates across processes; hostile keys verbatim; a reset lease table, a missing
 * table and missing credentials reported clearly; no secret in any error text.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <tally/store.h>
#include <time.h>
#include <unistd.h>

#include "records.h"
#include "../tap.h"
#include "listeners.h"
#include "../threads.h"

#define WRITERS 3
#define ROUNDS 16
#define KEYS 12
#define LEASE_SIZE 7

static const char *self_path;

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* TALLY_DDB_URL (a real account: "dynamodb://?region=...") runs the parts that need no
 * proxy, no restart and no raw requests to a loopback server; tables are named
 * TALLY_DDB_PREFIX (default "tallytest_") + the test's own prefix. */
static const char *real_url;

static void url_for(char *out, size_t size, const char *port_var, const char *prefix,
		    const char *extra)
{
	static const char tuning[] = "attempt_timeout_ms=400&backoff_cap_ms=200&clock_skew_ms=100";
	if (real_url) {
		const char *run = getenv("TALLY_DDB_PREFIX") ? getenv("TALLY_DDB_PREFIX") : "tallytest_";
		snprintf(out, size, "%s%stable_prefix=%s%s&%s%s", real_url,
			 strchr(real_url, '?') ? "&" : "?", run, prefix, tuning, extra ? extra : "");
		return;
	}
	snprintf(out, size, "dynamodb://?endpoint=http://127.0.0.1:%s&table_prefix=%s&%s%s",
		 getenv(port_var), prefix, tuning, extra ? extra : "");
}

static int open_store(struct tally_store **store, const char *port_var, const char *prefix,
		      const char *writer_id, int64_t ttl_ms, bool create)
{
	char url[1024];
	url_for(url, sizeof(url), port_var, prefix, NULL);
	struct tally_store_options o = {.writer_id = writer_id, .writer_ttl_ms = ttl_ms,
					.timeout_ms = 3000, .create_schema = create};
	return tally_store_open(store, url, &o);
}

/* One line to the proxy's control port; its one-line answer into reply (may be NULL). */
static int proxy_reply(const char *command, char *reply, size_t size)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)atoi(getenv("TALLY_DDB_CONTROL_PORT")))};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	char buf[256] = "";
	size_t len = 0;
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    write(fd, command, strlen(command)) < 0 || write(fd, "\n", 1) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	for (ssize_t n; len < sizeof(buf) - 1 && !memchr(buf, '\n', len) &&
			(n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0;)
		len += (size_t)n;
	buf[len] = '\0';
	close(fd);
	if (reply)
		snprintf(reply, size, "%s", buf);
	return strncmp(buf, "error", 5) == 0 ? -1 : 0;
}

static void proxy(const char *command)
{
	if (proxy_reply(command, NULL, 0))
		printf("# proxy refused: %s\n", command);
}

/* A flush re-sent until acknowledged (the caller's duty after a failure, store.h). On
 * EFENCED the writer re-opens: the pending flush landed iff prior_epoch/prior_last_seq
 * say so, else it goes again under the new epoch. Returns 0 or the last error. */
static int flush_until_acked(struct tally_store *store, struct tally_store_batch *batch,
			     uint64_t *epoch)
{
	int64_t deadline = now_ms() + 60000;
	int rc = TALLY_EUNAVAIL;
	while (now_ms() < deadline) {
		rc = tally_store_flush(store, batch, NULL);
		if (rc == TALLY_OK)
			return 0;
		if (rc == TALLY_EFENCED) {
			struct tally_store_epoch_info info;
			while ((rc = tally_store_writer_open(store, &info)) && tally_store_err_transient(rc))
				sleep_ms(20);
			if (rc)
				return rc;
			bool landed = info.prior_epoch == *epoch && info.prior_last_seq >= batch->seq;
			*epoch = info.epoch;
			if (landed)
				return 0;
			batch->seq = 1;
			continue;
		}
		if (!tally_store_err_transient(rc))
			return rc;
		sleep_ms(10);
	}
	return rc;
}

/* ---- child processes ------------------------------------------------------------------ */

/* writer ID OUTFILE: ROUNDS flushes of KEYS counters (+round each) and a gauge, one lease
 * block per round; writes each lease base to OUTFILE. */
static int writer_main(const char *id, const char *outfile)
{
	struct tally_store *store;
	int rc;
	while ((rc = open_store(&store, "TALLY_DDB_PROXY_PORT", "mp_", id, 10000, false)) &&
	       tally_store_err_transient(rc))
		sleep_ms(50);
	if (rc) {
		fprintf(stderr, "writer %s: open: %s\n", id, tally_store_last_error(NULL));
		return 1;
	}
	struct tally_store_epoch_info info;
	while ((rc = tally_store_writer_open(store, &info)) && tally_store_err_transient(rc))
		sleep_ms(20);
	struct tally_lease_provider *leases = NULL;
	if (rc || tally_store_lease_provider(store, &leases)) {
		fprintf(stderr, "writer %s: writer_open: %s\n", id, tally_store_last_error(store));
		return 1;
	}
	FILE *out = fopen(outfile, "w");
	char names[KEYS][16];
	struct tally_store_delta deltas[KEYS];
	uint64_t epoch = info.epoch, seq = 0;
	for (int r = 1; r <= ROUNDS && out; r++) {
		for (int k = 0; k < KEYS; k++) {
			snprintf(names[k], sizeof(names[k]), "mp/%d", k);
			deltas[k] = (struct tally_store_delta){names[k], strlen(names[k]), r};
		}
		struct tally_store_gauge gauge = {"mp/gauge", 8, r};
		struct tally_store_batch batch = {.seq = ++seq, .counters = deltas,
						  .counter_count = KEYS, .gauges = &gauge,
						  .gauge_count = 1};
		rc = flush_until_acked(store, &batch, &epoch);
		seq = batch.seq;
		if (rc) {
			fprintf(stderr, "writer %s: flush: %s (%s)\n", id, tally_strerror(rc),
				tally_store_last_error(store));
			return 1;
		}
		uint64_t base = 0;
		int64_t deadline = now_ms() + 30000;
		while ((rc = tally_lease_acquire(leases, "mp/seq", 6, 0, LEASE_SIZE, 0, &base)) &&
		       tally_store_err_transient(rc) && now_ms() < deadline)
			sleep_ms(10);
		if (rc) {
			fprintf(stderr, "writer %s: lease: %s\n", id, tally_strerror(rc));
			return 1;
		}
		fprintf(out, "%" PRIu64 "\n", base);
	}
	if (!out || fclose(out))
		return 1;
	tally_lease_provider_destroy(leases);
	tally_store_close(store);
	return 0;
}

/* victim ID: flushes forever (seq s adds s to 12 counters), printing each acked seq. */
static int victim_main(const char *id)
{
	struct tally_store *store;
	struct tally_store_epoch_info info;
	if (open_store(&store, "TALLY_DDB_PORT", "kill_", id, 800, false) ||
	    tally_store_writer_open(store, &info))
		return 1;
	char names[12][16];
	struct tally_store_delta deltas[12];
	for (uint64_t s = 1; s < 100000; s++) {
		for (int k = 0; k < 12; k++) {
			snprintf(names[k], sizeof(names[k]), "victim/%d", k);
			deltas[k] = (struct tally_store_delta){names[k], strlen(names[k]), (int64_t)s};
		}
		struct tally_store_gauge gauge = {"victim/gauge", 12, 7};
		struct tally_store_batch batch = {.seq = s, .counters = deltas, .counter_count = 12,
						  .gauges = &gauge, .gauge_count = 1};
		if (tally_store_flush(store, &batch, NULL))
			return 1;
		printf("%" PRIu64 "\n", s);
		fflush(stdout);
	}
	return 0;
}

static pid_t spawn(char *const argv[], int *stdout_fd)
{
	int fds[2];
	if (stdout_fd && pipe(fds))
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		if (stdout_fd) {
			dup2(fds[1], 1);
			close(fds[0]);
			close(fds[1]);
		}
		execv(self_path, argv);
		_exit(127);
	}
	if (stdout_fd) {
		close(fds[1]);
		*stdout_fd = fds[0];
	}
	return pid;
}

/* Runs another program (tests/store/worker) with its stdout on a pipe. */
static pid_t spawn_program(const char *path, char *const argv[], int *stdout_fd)
{
	int fds[2];
	if (pipe(fds))
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execv(path, argv);
		_exit(127);
	}
	close(fds[1]);
	*stdout_fd = fds[0];
	return pid;
}

/* ---- raw requests (to break the store from outside) ----------------------------------- */

struct reply_buf {
	char *data;
	size_t len, cap;
};

static size_t keep_reply(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct reply_buf *b = arg;
	size_t n = size * nmemb;
	if (b && b->len + n < b->cap) {
		memcpy(b->data + b->len, ptr, n);
		b->len += n;
		b->data[b->len] = '\0';
	}
	return n;
}

/* A signed request straight to dynalite; the reply (cut to `cap`) into `reply`. */
static int raw_request_reply(const char *target, const char *body, char *reply, size_t cap)
{
	CURL *curl = curl_easy_init();
	char url[64], header[96], userpwd[256], sigv4[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%s/", getenv("TALLY_DDB_PORT"));
	snprintf(header, sizeof(header), "X-Amz-Target: DynamoDB_20120810.%s", target);
	snprintf(userpwd, sizeof(userpwd), "%s:%s", getenv("AWS_ACCESS_KEY_ID"),
		 getenv("AWS_SECRET_ACCESS_KEY"));
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:dynamodb", getenv("AWS_REGION"));
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-amz-json-1.0");
	h = curl_slist_append(h, header);
	struct reply_buf buf = {reply, 0, cap};
	if (reply && cap)
		reply[0] = '\0';
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_USERPWD, userpwd);
	curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sigv4);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep_reply);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply ? &buf : NULL);
	long status = 0;
	CURLcode code = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(h);
	curl_easy_cleanup(curl);
	return code == CURLE_OK ? (int)status : -1;
}

static int raw_request(const char *target, const char *body)
{
	return raw_request_reply(target, body, NULL, 0);
}

/* ---- the tests ------------------------------------------------------------------------ */

static void test_open_errors(void)
{
	struct tally_store *store = NULL;
	int rc = open_store(&store, "TALLY_DDB_PORT", "missing_", NULL, 0, false);
	tap_eq(rc, TALLY_ECORRUPT, "open without create_schema on missing tables: ECORRUPT");
	tap_ok(strstr(tally_store_last_error(NULL), "missing_counters") &&
	       strstr(tally_store_last_error(NULL), "does not exist"),
	       "the error names the missing table (%s)", tally_store_last_error(NULL));

	char url[1024];
	url_for(url, sizeof(url), "TALLY_DDB_PORT", "x_",
		"&secret_access_key=SuperSecret123&bogus_option=1");
	rc = tally_store_open(&store, url, NULL);
	tap_eq(rc, TALLY_EINVAL, "unknown URL option: EINVAL");
	tap_ok(!strstr(tally_store_last_error(NULL), "SuperSecret123"),
	       "the error text holds no secret (%s)", tally_store_last_error(NULL));

	/* dynalite checks that a request is signed but not the signature: what can be tested
	 * is a client without credentials, refused before any request. */
	char *key = strdup(getenv("AWS_ACCESS_KEY_ID"));
	unsetenv("AWS_ACCESS_KEY_ID");
	rc = open_store(&store, "TALLY_DDB_PORT", "x_", NULL, 0, true);
	tap_eq(rc, TALLY_EPERM, "no credentials: EPERM");
	tap_ok(strstr(tally_store_last_error(NULL), "credentials") != NULL,
	       "the error says credentials are missing (%s)", tally_store_last_error(NULL));
	setenv("AWS_ACCESS_KEY_ID", key, 1);
	free(key);
}

struct found_key {
	const char *key;
	size_t len;
	int64_t total;
	bool found;
};

static int find_counter(const char *key, size_t key_len, int64_t total, void *arg)
{
	struct found_key *want = arg;
	if (key_len == want->len && memcmp(key, want->key, key_len) == 0) {
		want->found = true;
		want->total = total;
	}
	return 0;
}

struct record_seen {
	char languages[4][TALLY_SESSION_LANGUAGE_MAX + 1];
	int connections, sessions;
	struct tally_session_info session;
	char writer[TALLY_STORE_WRITER_ID_MAX + 1];
};

static int see_connection(const struct tally_connection_info *c, const char *writer_id,
			  uint64_t epoch, void *arg)
{
	struct record_seen *seen = arg;
	if (seen->connections < 4)
		snprintf(seen->languages[seen->connections], sizeof(seen->languages[0]), "%s",
			 c->target_language);
	seen->connections++;
	return 0;
}

static int see_session(const struct tally_session_info *session, const char *writer_id,
		       uint64_t epoch, void *arg)
{
	struct record_seen *seen = arg;
	seen->session = *session;
	snprintf(seen->writer, sizeof(seen->writer), "%s", writer_id);
	seen->sessions++;
	return 0;
}

static void test_basics_and_hostile_keys(void)
{
	struct tally_store *store;
	int rc = open_store(&store, "TALLY_DDB_PORT", "basic_", "basic-writer", 5000, true);
	tap_eq(rc, TALLY_OK, "open with create_schema (%s)", tally_store_last_error(NULL));
	if (rc)
		return;
	struct tally_store_epoch_info info;
	tap_eq(tally_store_writer_open(store, &info), TALLY_OK, "writer_open");
	tap_eq(info.epoch, 1, "the first epoch is 1");

	char long_key[TALLY_STORE_KEY_MAX];
	memset(long_key, 'L', sizeof(long_key));
	long_key[7] = '"';
	static const char *const hostile[] = {
		"quote\"d", "back\\slash", "{\"json\": [1, 2]}", "\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
		"not utf-8: \xff\xfe\x80", "' OR 1=1; --", "#w = :f", "\x01\x02\x7f",
	};
	size_t n = sizeof(hostile) / sizeof(hostile[0]);
	struct tally_store_delta deltas[16];
	for (size_t i = 0; i < n; i++)
		deltas[i] = (struct tally_store_delta){hostile[i], strlen(hostile[i]), (int64_t)i + 1};
	deltas[n] = (struct tally_store_delta){long_key, sizeof(long_key), 1000};
	struct tally_store_gauge gauge = {"\"g\\", 3, 42};
	struct tally_store_batch batch = {.seq = 1, .counters = deltas, .counter_count = n + 1,
					  .gauges = &gauge, .gauge_count = 1};
	struct tally_store_flush_result result;
	rc = tally_store_flush(store, &batch, &result);
	tap_eq(rc, TALLY_OK, "flush of hostile keys (%s)", tally_store_last_error(store));
	tap_ok(!result.already_applied && result.rows_written == (int64_t)n + 2,
	       "rows written: %" PRId64, result.rows_written);
	rc = tally_store_flush(store, &batch, &result);
	tap_ok(rc == TALLY_OK && result.already_applied, "a re-sent flush is acknowledged without effect");
	bool all = true;
	for (size_t i = 0; i <= n; i++) {
		int64_t total = -1;
		struct found_key want = {deltas[i].key, deltas[i].key_len, 0, false};
		tally_store_read_counter(store, deltas[i].key, deltas[i].key_len, &total);
		tally_store_counters(store, find_counter, &want);
		if (total != deltas[i].delta || !want.found || want.total != deltas[i].delta) {
			all = false;
			printf("# key %zu: read %" PRId64 ", visited %d\n", i, total, want.found);
		}
	}
	tap_ok(all, "every hostile key reads back verbatim with its total, once");
	int64_t value = 0, live = 0;
	rc = tally_store_read_gauge(store, "\"g\\", 3, &value, &live);
	tap_ok(rc == TALLY_OK && value == 42 && live == 1, "gauge read: %" PRId64 " from %" PRId64,
	       value, live);
	int64_t total;
	tap_eq(tally_store_read_counter(store, "never", 5, &total), TALLY_ENOTFOUND,
	       "a counter never flushed: ENOTFOUND");

	int64_t remaining = -1;
	tap_eq(tally_store_take(store, "quote\"d", 7, 2, &remaining), TALLY_EFLOOR,
	       "take more than the total: EFLOOR");
	rc = tally_store_take(store, "back\\slash", 10, 2, &remaining);
	tap_ok(rc == TALLY_OK && remaining == 0, "take 2 of 2: remaining %" PRId64, remaining);
	rc = tally_store_give(store, "back\\slash", 10, 5, &remaining);
	tap_ok(rc == TALLY_OK && remaining == 5, "give 5: total %" PRId64, remaining);
	tap_eq(tally_store_take(store, "nothing", 7, 1, NULL), TALLY_EFLOOR,
	       "take from a key never flushed: EFLOOR");

	/* Records: a session and two connections, read back by session in language order. */
	struct tally_store_record records[3] = {0};
	records[0].kind = TALLY_STORE_SESSION;
	records[0].op = TALLY_STORE_PUT;
	snprintf(records[0].as.session.session_id, TALLY_SESSION_ID_MAX, "s\"1");
	snprintf(records[0].as.session.source_language, TALLY_SESSION_LANGUAGE_MAX, "en");
	records[0].as.session.active = 1;
	records[0].as.session.listener_count = 2;
	for (int i = 1; i < 3; i++) {
		records[i].kind = TALLY_STORE_CONNECTION;
		records[i].op = TALLY_STORE_PUT;
		snprintf(records[i].as.connection.connection_id, TALLY_SESSION_ID_MAX, "c%d", i);
		snprintf(records[i].as.connection.session_id, TALLY_SESSION_ID_MAX, "s\"1");
		snprintf(records[i].as.connection.target_language, TALLY_SESSION_LANGUAGE_MAX,
			 i == 1 ? "fr" : "de");
		records[i].as.connection.role = 2;
	}
	struct tally_store_batch rb = {.seq = 2, .records = records, .record_count = 3};
	tap_eq(tally_store_flush(store, &rb, NULL), TALLY_OK, "flush of records (%s)",
	       tally_store_last_error(store));
	struct record_seen seen = {0};
	tally_store_connections(store, "s\"1", see_connection, &seen);
	tap_ok(seen.connections == 2 && strcmp(seen.languages[0], "de") == 0 &&
	       strcmp(seen.languages[1], "fr") == 0,
	       "the session's connections, in language order (%d)", seen.connections);
	tally_store_sessions(store, "basic-writer", see_session, &seen);
	tap_ok(seen.sessions == 1 && strcmp(seen.session.session_id, "s\"1") == 0 &&
	       strcmp(seen.session.source_language, "en") == 0 && seen.session.active == 1 &&
	       seen.session.listener_count == 2 && strcmp(seen.writer, "basic-writer") == 0,
	       "the writer's session reads back with its fields");
	tap_eq(tally_store_writer_close(store), TALLY_OK, "writer_close");
	if (!real_url) {
		static char scan[65536];
		raw_request_reply("Scan", "{\"TableName\":\"basic_writers\"}", scan, sizeof(scan));
		int items = 0;
		for (const char *p = scan; (p = strstr(p, "YmFzaWMtd3JpdGVy")); p++)
			items++; /* base64("basic-writer") */
		tap_eq(items, 1, "a closed writer keeps its writer item, no intent chunks");
	}
	tally_store_close(store);
}

static int count_connection(const struct tally_connection_info *c, const char *writer_id,
			    uint64_t epoch, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static void test_fencing(void)
{
	struct tally_store *a, *b;
	if (open_store(&a, "TALLY_DDB_PORT", "basic_", "fenced", 5000, false) ||
	    open_store(&b, "TALLY_DDB_PORT", "basic_", "fenced", 5000, false)) {
		tap_ok(0, "open two handles");
		return;
	}
	struct tally_store_epoch_info ia, ib;
	tally_store_writer_open(a, &ia);
	struct tally_store_gauge g = {"fence/gauge", 11, 5};
	struct tally_store_record conn = {.kind = TALLY_STORE_CONNECTION, .op = TALLY_STORE_PUT};
	snprintf(conn.as.connection.connection_id, TALLY_SESSION_ID_MAX, "fenced-conn");
	snprintf(conn.as.connection.session_id, TALLY_SESSION_ID_MAX, "fence-session");
	struct tally_store_batch batch = {.seq = 1, .gauges = &g, .gauge_count = 1,
					  .records = &conn, .record_count = 1};
	tap_eq(tally_store_flush(a, &batch, NULL), TALLY_OK, "epoch A flushes a gauge and a connection");
	tap_eq(tally_store_writer_open(b, &ib), TALLY_OK, "a second handle opens the same id");
	tap_ok(ib.epoch == ia.epoch + 1 && ib.prior_epoch == ia.epoch && ib.prior_last_seq == 1,
	       "new epoch %" PRIu64 ", prior %" PRIu64 "/%" PRIu64, ib.epoch, ib.prior_epoch,
	       ib.prior_last_seq);
	batch.seq = 2;
	tap_eq(tally_store_flush(a, &batch, NULL), TALLY_EFENCED, "the old epoch is fenced");
	int64_t value = -1, live = -1;
	tally_store_read_gauge(b, "fence/gauge", 11, &value, &live);
	tap_ok(value == 0 && live == 0, "the fenced epoch's gauge left the sum (%" PRId64 ")", value);
	int connections = 0;
	tally_store_connections(b, "fence-session", count_connection, &connections);
	tap_eq(connections, 0, "the fenced epoch's connections were removed");
	tally_store_close(a);
	tally_store_close(b);

	/* A live writer stalled past its lease is reaped, then fenced; it re-registers. */
	struct tally_store *slow, *reaper;
	open_store(&slow, "TALLY_DDB_PORT", "basic_", "stalled", 300, false);
	open_store(&reaper, "TALLY_DDB_PORT", "basic_", NULL, 0, false);
	tally_store_writer_open(slow, NULL);
	struct tally_store_gauge sg = {"stall/gauge", 11, 3};
	struct tally_store_batch sb = {.seq = 1, .gauges = &sg, .gauge_count = 1};
	tally_store_flush(slow, &sb, NULL);
	sleep_ms(450); /* ttl 300 + clock_skew_ms 100 */
	int64_t reaped = 0;
	tally_store_reap(reaper, &reaped);
	tally_store_read_gauge(reaper, "stall/gauge", 11, &value, &live);
	tap_ok(reaped >= 1 && value == 0, "a writer stalled past its lease is reaped, its gauge gone");
	sb.seq = 2;
	tap_eq(tally_store_flush(slow, &sb, NULL), TALLY_EFENCED, "its next flush is fenced");
	struct tally_store_epoch_info info = {0};
	int rc = tally_store_writer_open(slow, &info);
	tap_ok(rc == TALLY_OK && info.prior_reaped && info.prior_epoch == 1 && info.prior_last_seq == 1,
	       "it re-registers: epoch %" PRIu64 ", prior reaped, prior last seq %" PRIu64,
	       info.epoch, info.prior_last_seq);
	sb.seq = 1;
	tally_store_flush(slow, &sb, NULL);
	tally_store_read_gauge(reaper, "stall/gauge", 11, &value, &live);
	tap_ok(value == 3 && live == 1, "and republishes its gauge");
	tally_store_close(slow);
	tally_store_close(reaper);
}

/* After a writer's records leave (reap, a newer epoch, close), each session counts the
 * listener connections that remain (tests/store/listeners.h). */
static void test_listener_recount(void)
{
	struct tally_store *w = NULL, *w_again = NULL, *x = NULL;

	if (tap_ok(!open_store(&w, "TALLY_DDB_PORT", "basic_", "recount-w", 300, false) &&
		   !open_store(&w_again, "TALLY_DDB_PORT", "basic_", "recount-w", 300, false) &&
		   !open_store(&x, "TALLY_DDB_PORT", "basic_", "recount-x", 10000, false),
		   "recount: three handles"))
		listeners_recount_case("recount", w, w_again, x, 450); /* ttl + clock_skew_ms */
	tally_store_close(w);
	tally_store_close(w_again);
	tally_store_close(x);
}

static long proxy_requests(void)
{
	char stats[128] = "";
	long requests = -1;
	proxy_reply("stats", stats, sizeof(stats));
	sscanf(stats, "requests %ld", &requests);
	return requests;
}

/* Permanent errors come back at once, after one request: never a retry loop. */
static void test_permanent_errors(void)
{
	struct tally_store *store;
	if (open_store(&store, "TALLY_DDB_PROXY_PORT", "basic_", NULL, 0, false)) {
		tap_ok(0, "open through the proxy (%s)", tally_store_last_error(NULL));
		return;
	}
	static const struct { const char *kind; int err; const char *text; } cases[] = {
		{"denied", TALLY_EPERM, "AccessDeniedException"},
		{"invalid", TALLY_EINVAL, "ValidationException"},
	};
	for (size_t i = 0; i < 2; i++) {
		char command[64];
		snprintf(command, sizeof(command), "next %s 1", cases[i].kind);
		long before = proxy_requests();
		proxy(command);
		int64_t total, start = now_ms();
		int rc = tally_store_read_counter(store, "quote\"d", 7, &total);
		int64_t took = now_ms() - start;
		long sent = proxy_requests() - before; /* control lines are not counted */
		tap_ok(rc == cases[i].err && sent == 1 && took < 300 &&
		       strstr(tally_store_last_error(store), cases[i].text),
		       "%s: %s after %ld request(s) in %" PRId64 " ms (%s)", cases[i].text,
		       tally_strerror(rc), sent, took, tally_store_last_error(store));
	}
	/* A take whose answer is lost after dynalite applied it: EUNAVAIL, and it happened
	 * once (a silent retry would have taken twice). */
	int64_t before_total = 0, after_total = 0;
	tally_store_give(store, "take/lost", 9, 10, &before_total);
	proxy("next drop 1");
	int rc0 = tally_store_take(store, "take/lost", 9, 3, NULL);
	tally_store_read_counter(store, "take/lost", 9, &after_total);
	tap_ok(tally_store_err_transient(rc0) && after_total == before_total - 3,
	       "a take with its answer lost: %s, taken once (%" PRId64 " -> %" PRId64 ")",
	       tally_strerror(rc0), before_total, after_total);
	/* writer_open whose epoch switch landed but whose answer was lost: the re-sent switch
	 * fails its condition, and the token shows it was this call's: one new epoch, and the
	 * prior epoch's state (not a ghost epoch's). */
	struct tally_store *first, *second;
	struct tally_store_epoch_info info = {0};
	open_store(&first, "TALLY_DDB_PORT", "basic_", "ambiguous", 5000, false);
	open_store(&second, "TALLY_DDB_PROXY_PORT", "basic_", "ambiguous", 5000, false);
	tally_store_writer_open(first, NULL);
	struct tally_store_delta d = {"ambiguous/x", 11, 1};
	struct tally_store_batch batch = {.seq = 1, .counters = &d, .counter_count = 1};
	tally_store_flush(first, &batch, NULL);
	proxy("next drop 1 1"); /* the GetItem passes, the switch's answer is dropped */
	int rc1 = tally_store_writer_open(second, &info);
	tap_ok(rc1 == TALLY_OK && info.epoch == 2 && info.prior_epoch == 1 && info.prior_last_seq == 1,
	       "writer_open with its answer lost: epoch %" PRIu64 ", prior %" PRIu64 "/%" PRIu64
	       " (%s)", info.epoch, info.prior_epoch, info.prior_last_seq, tally_strerror(rc1));
	tally_store_close(first);
	tally_store_close(second);
	proxy("next throttle 3");
	int64_t total = 0;
	int rc = tally_store_read_counter(store, "quote\"d", 7, &total);
	tap_ok(rc == TALLY_OK && total == 1, "three throttled answers, then the read succeeds");
	tally_store_close(store);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Several threads on one handle: gives, takes and leases at once (the client's pool of
 * curl multi handles, the lease generation cache). */
#define THREAD_OPS 30
struct thread_shared {
	struct tally_store *store;
	struct tally_lease_provider *leases;
	uint64_t bases[4][THREAD_OPS];
	int errors;
};

static void *thread_body(struct test_thread *self)
{
	struct thread_shared *sh = self->shared;
	for (int i = 0; i < THREAD_OPS; i++) {
		int rc = tally_store_give(sh->store, "thr/x", 5, 2, NULL);
		if (rc == TALLY_OK)
			rc = tally_store_take(sh->store, "thr/x", 5, 1, NULL);
		if (rc == TALLY_OK)
			rc = tally_lease_acquire(sh->leases, "thr/seq", 7, 0, 1, 0,
						 &sh->bases[self->index][i]);
		if (rc)
			__atomic_fetch_add(&sh->errors, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_threads(void)
{
	struct thread_shared sh = {0};
	if (open_store(&sh.store, "TALLY_DDB_PORT", "basic_", NULL, 0, false) ||
	    tally_store_lease_provider(sh.store, &sh.leases)) {
		tap_ok(0, "open for threads");
		return;
	}
	struct test_thread threads[4];
	run_threads(4, thread_body, &sh, threads);
	int64_t total = 0;
	tally_store_read_counter(sh.store, "thr/x", 5, &total);
	tap_ok(sh.errors == 0 && total == 4 * THREAD_OPS,
	       "4 threads on one handle: %d errors, total %" PRId64, sh.errors, total);
	uint64_t all[4 * THREAD_OPS];
	memcpy(all, sh.bases, sizeof(all));
	qsort(all, 4 * THREAD_OPS, sizeof(all[0]), cmp_u64);
	bool distinct = true;
	for (int i = 1; i < 4 * THREAD_OPS; i++)
		distinct = distinct && all[i] != all[i - 1];
	tap_ok(distinct, "lease blocks from 4 threads are distinct");
	tally_lease_provider_destroy(sh.leases);
	tally_store_close(sh.store);
}

/* Handles opened at once on tables nobody made yet: each one that finds a table another
 * is still creating (CREATING: its writes fail with ResourceNotFoundException) must wait
 * for it to be ACTIVE, as the creator does (a regression: the open failed with ECORRUPT). */
#define FIRST_OPENERS 6
struct first_open {
	char prefix[32];
	_Atomic int failures;
};

static void *first_open_body(struct test_thread *self)
{
	struct first_open *race = self->shared;
	struct tally_store *store = NULL;

	/* staggered, so the later ones arrive while a table is CREATING (dynalite: 50 ms) */
	usleep((useconds_t)self->index * 10000);
	if (open_store(&store, "TALLY_DDB_PORT", race->prefix, NULL, 0, true)) {
		printf("# first open %d: %s\n", self->index, tally_store_last_error(NULL));
		atomic_fetch_add(&race->failures, 1);
	}
	tally_store_close(store);
	return NULL;
}

static void test_concurrent_first_open(void)
{
	struct test_thread threads[FIRST_OPENERS];
	int failures = 0;

	for (int round = 0; round < 3; round++) {
		struct first_open race = {0};

		snprintf(race.prefix, sizeof(race.prefix), "first%d_%d_", (int)getpid(), round);
		run_threads(FIRST_OPENERS, first_open_body, &race, threads);
		failures += atomic_load(&race.failures);
	}
	tap_ok(failures == 0, "%d handles at once on new tables, 3 rounds: %d opens failed",
	       FIRST_OPENERS, failures);
}

/* tally_sequence series (store_worker's series mode: 2 threads each, lease size 20) in three
 * processes over this backend's lease provider, strict and cached on one tenant: every
 * number issued once. */
#define SERIES_COUNT 150
static void test_series(void)
{
	const char *worker = getenv("TALLY_STORE_WORKER");
	if (!worker || access(worker, X_OK)) {
		tap_ok(1, "# SKIP tests/store/worker not built");
		return;
	}
	char url[1024];
	url_for(url, sizeof(url), "TALLY_DDB_PORT", "basic_", NULL);
	static const char *const modes[3] = {"cached", "strict", "cached"};
	FILE *out[3];
	pid_t pids[3];
	for (int i = 0; i < 3; i++) {
		char id[32], count[16];
		snprintf(id, sizeof(id), "series-%d", i);
		snprintf(count, sizeof(count), "%d", SERIES_COUNT);
		char *argv[] = {"store_worker", url, id, "series", "tenant\"1", (char *)modes[i], count, NULL};
		int fd = -1;
		pids[i] = spawn_program(worker, argv, &fd);
		out[i] = fdopen(fd, "r");
	}
	static uint64_t numbers[3 * SERIES_COUNT];
	size_t n = 0;
	int done = 0;
	char line[128];
	for (int i = 0; i < 3; i++) {
		while (out[i] && fgets(line, sizeof(line), out[i])) {
			if (strncmp(line, "n ", 2) == 0 && n < 3 * SERIES_COUNT)
				numbers[n++] = strtoull(line + 2, NULL, 10);
			else if (strncmp(line, "done", 4) == 0)
				done++;
			else
				printf("# store_worker: %s", line);
		}
		if (out[i])
			fclose(out[i]);
		waitpid(pids[i], NULL, 0);
	}
	qsort(numbers, n, sizeof(numbers[0]), cmp_u64);
	size_t duplicates = 0;
	for (size_t i = 1; i < n; i++)
		duplicates += numbers[i] == numbers[i - 1];
	tap_ok(done == 3 && n == 3 * SERIES_COUNT && duplicates == 0,
	       "strict and cached series in 3 processes: %zu numbers, %zu duplicates", n, duplicates);
}

/* A closed writer's flush numbers leave the counter items once cleanup_delay_ms passed
 * (items are capped at 400 KB); the totals stay. */
static void test_attribute_cleanup(void)
{
	struct tally_store *w, *reaper;
	if (open_store(&w, "TALLY_DDB_PORT", "basic_", "short-lived", 5000, false)) {
		tap_ok(0, "open short-lived");
		return;
	}
	tally_store_writer_open(w, NULL);
	struct tally_store_delta d = {"attr/x", 6, 9};
	struct tally_store_batch batch = {.seq = 1, .counters = &d, .counter_count = 1};
	tally_store_flush(w, &batch, NULL);
	tally_store_writer_close(w);
	tally_store_close(w);
	static const char get[] = "{\"TableName\":\"basic_counters\",\"ConsistentRead\":true,"
				  "\"Key\":{\"k\":{\"B\":\"YXR0ci94\"}}}"; /* base64("attr/x") */
	char before[2048], after[2048];
	raw_request_reply("GetItem", get, before, sizeof(before));
	char url[1024];
	url_for(url, sizeof(url), "TALLY_DDB_PORT", "basic_", "&cleanup_delay_ms=0");
	int rc = tally_store_open(&reaper, url, NULL);
	sleep_ms(5);
	int64_t reaped = -1, total = 0;
	if (rc == TALLY_OK)
		rc = tally_store_reap(reaper, &reaped);
	raw_request_reply("GetItem", get, after, sizeof(after));
	tap_ok(rc == TALLY_OK && strstr(before, "\"w") && !strstr(after, "\"w"),
	       "reap removed the closed writer's flush number from the counter item");
	tally_store_read_counter(reaper, "attr/x", 6, &total);
	tap_eq(total, 9, "the counter keeps its total");
	tally_store_close(reaper);
}

static void test_lease_reset_and_missing_table(void)
{
	struct tally_store *store;
	if (open_store(&store, "TALLY_DDB_PORT", "reset_", NULL, 0, true)) {
		tap_ok(0, "open reset_ (%s)", tally_store_last_error(NULL));
		return;
	}
	struct tally_lease_provider *p;
	tally_store_lease_provider(store, &p);
	uint64_t base = 99;
	int rc = tally_lease_acquire(p, "a", 1, 0, 10, 0, &base);
	tap_ok(rc == TALLY_OK && base == 0, "first lease of a key starts at 0");
	rc = tally_lease_acquire(p, "a", 1, 50, 10, 0, &base);
	tap_ok(rc == TALLY_OK && base == 50, "min_start lifts the mark: base %" PRIu64, base);
	rc = tally_lease_acquire(p, "a", 1, 0, 10, 0, &base);
	tap_ok(rc == TALLY_OK && base == 60, "the next lease continues: base %" PRIu64, base);
	struct tally_lease_record record;
	rc = tally_lease_read(p, "a", 1, &record);
	tap_ok(rc == TALLY_OK && record.mark == 70, "read: mark %" PRIu64, record.mark);
	rc = tally_lease_close(p, "a", 1, 70, 65);
	tap_ok(rc == TALLY_OK && tally_lease_read(p, "a", 1, &record) == TALLY_OK &&
	       record.mark == 65 && record.flags == TALLY_LEASE_CLEAN,
	       "a clean close gives back the unused part");
	tap_eq(tally_lease_read(p, "never", 5, &record), TALLY_ENOTFOUND,
	       "a key never acquired: ENOTFOUND");
	/* Empty the table from outside: the generation item and the key go. */
	raw_request("DeleteItem", "{\"TableName\":\"reset_leases\",\"Key\":{\"k\":{\"B\":\"AGdlbmVyYXRpb24=\"}}}");
	raw_request("DeleteItem", "{\"TableName\":\"reset_leases\",\"Key\":{\"k\":{\"B\":\"YQ==\"}}}");
	rc = tally_lease_acquire(p, "a", 1, 0, 10, 0, &base);
	tap_eq(rc, TALLY_ECORRUPT, "an emptied lease table: ECORRUPT, not \"never acquired\"");
	tap_ok(strstr(tally_store_last_error(store), "reset") != NULL, "the error says so (%s)",
	       tally_store_last_error(store));
	tally_lease_provider_destroy(p);

	raw_request("DeleteTable", "{\"TableName\":\"reset_counters\"}");
	sleep_ms(200);
	int64_t total;
	rc = tally_store_read_counter(store, "x", 1, &total);
	tap_eq(rc, TALLY_ECORRUPT, "a table deleted under a running store: a permanent error");
	tap_ok(strstr(tally_store_last_error(store), "ResourceNotFound") != NULL,
	       "the error names it (%s)", tally_store_last_error(store));
	tally_store_close(store);
}

static void test_killed_writer(void)
{
	struct tally_store *store;
	if (open_store(&store, "TALLY_DDB_PORT", "kill_", NULL, 0, true)) {
		tap_ok(0, "open kill_");
		return;
	}
	int fd = -1;
	char *argv[] = {"store_dynamodb", "victim", "victim-1", NULL};
	pid_t pid = spawn(argv, &fd);
	FILE *in = fdopen(fd, "r");
	char line[64];
	uint64_t acked = 0;
	int64_t value = 0, live = 0;
	unsigned seed = (unsigned)time(NULL);
	int stop_after = 8 + rand_r(&seed) % 8;
	while (fgets(line, sizeof(line), in)) {
		acked = strtoull(line, NULL, 10);
		if (acked == 3)
			tally_store_read_gauge(store, "victim/gauge", 12, &value, &live);
		if ((int)acked >= stop_after) {
			sleep_ms(rand_r(&seed) % 15); /* somewhere inside the next flush */
			kill(pid, SIGKILL);
			break;
		}
	}
	fclose(in);
	waitpid(pid, NULL, 0);
	tap_ok(value == 7 && live == 1, "the live victim's gauge counts (%" PRId64 ")", value);
	int64_t reaped = 0, deadline = now_ms() + 10000;
	while (reaped == 0 && now_ms() < deadline) {
		sleep_ms(100);
		tally_store_reap(store, &reaped);
	}
	tap_eq(reaped, 1, "the SIGKILLed writer is reaped after its lease expires");
	tally_store_read_gauge(store, "victim/gauge", 12, &value, &live);
	tap_ok(value == 0 && live == 0, "its gauge left the sum");
	struct tally_store *again;
	struct tally_store_epoch_info info = {0};
	open_store(&again, "TALLY_DDB_PORT", "kill_", "victim-1", 5000, false);
	tap_eq(tally_store_writer_open(again, &info), TALLY_OK, "the id opens a new epoch");
	tap_ok(info.prior_reaped && info.prior_epoch == 1 && info.prior_last_seq >= acked,
	       "prior: epoch %" PRIu64 ", last seq %" PRIu64 " (acked %" PRIu64 "), reaped",
	       info.prior_epoch, info.prior_last_seq, acked);
	int64_t want = (int64_t)(info.prior_last_seq * (info.prior_last_seq + 1) / 2);
	bool exact = true;
	for (int k = 0; k < 12; k++) {
		char key[16];
		int64_t total = -1;
		snprintf(key, sizeof(key), "victim/%d", k);
		tally_store_read_counter(again, key, strlen(key), &total);
		if (total != want) {
			exact = false;
			printf("# %s: %" PRId64 ", want %" PRId64 "\n", key, total, want);
		}
	}
	tap_ok(exact, "every counter holds exactly the flushes up to prior_last_seq (the kill "
	       "mid-flush was rolled forward or not applied, never half)");
	tally_store_close(again);
	tally_store_close(store);
}

static void test_writers_through_faults(const char *dir)
{
	struct tally_store *store;
	if (open_store(&store, "TALLY_DDB_PORT", "mp_", NULL, 0, true)) {
		tap_ok(0, "open mp_ (%s)", tally_store_last_error(NULL));
		return;
	}
	if (!real_url) {
		proxy("hang_ms 600");
		proxy("rates 30 20 20 20 4 40"); /* per mille: throttle pte 500 503 hang drop */
	}
	pid_t pids[WRITERS];
	char ids[WRITERS][32], files[WRITERS][512];
	for (int w = 0; w < WRITERS; w++) {
		snprintf(ids[w], sizeof(ids[w]), "writer-%d", w);
		snprintf(files[w], sizeof(files[w]), "%s/leases.%d", dir, w);
		char *argv[] = {"store_dynamodb", "writer", ids[w], files[w], NULL};
		pids[w] = spawn(argv, NULL);
	}
	sleep_ms(700);
	if (!real_url) {
		int restart = system(getenv("TALLY_DDB_RESTART"));
		tap_eq(restart, 0, "dynalite restarted mid-run (SIGKILL, same --path data)");
	}
	bool ok = true;
	for (int w = 0; w < WRITERS; w++) {
		int status;
		waitpid(pids[w], &status, 0);
		ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	if (!real_url) {
		char stats[128] = "";
		long requests = 0, faults = 0, dropped = 0;
		proxy("clear");
		proxy_reply("stats", stats, sizeof(stats));
		sscanf(stats, "requests %ld faults %ld dropped %ld", &requests, &faults, &dropped);
		tap_ok(faults >= 10 && dropped >= 3, "the proxy injected faults: %ld of %ld requests, "
		       "%ld answers dropped after dynalite applied them", faults, requests, dropped);
	}
	tap_ok(ok, "every writer process finished all its flushes");
	int64_t want = (int64_t)WRITERS * ROUNDS * (ROUNDS + 1) / 2;
	bool exact = true;
	for (int k = 0; k < KEYS; k++) {
		char key[16];
		int64_t total = -1;
		snprintf(key, sizeof(key), "mp/%d", k);
		int rc = tally_store_read_counter(store, key, strlen(key), &total);
		if (rc || total != want) {
			exact = false;
			printf("# %s: %" PRId64 " want %" PRId64 " (%s)\n", key, total, want,
			       tally_strerror(rc));
		}
	}
	tap_ok(exact, "every total exact through throttling, 5xx, hangs, dropped answers, a restart");
	int64_t value = 0, live = 0;
	tally_store_read_gauge(store, "mp/gauge", 8, &value, &live);
	tap_ok(value == (int64_t)WRITERS * ROUNDS && live == WRITERS,
	       "the gauge sums the live writers' last values (%" PRId64 ")", value);
	uint64_t bases[WRITERS * ROUNDS];
	size_t n = 0;
	for (int w = 0; w < WRITERS; w++) {
		FILE *f = fopen(files[w], "r");
		while (f && n < WRITERS * ROUNDS && fscanf(f, "%" SCNu64, &bases[n]) == 1)
			n++;
		if (f)
			fclose(f);
	}
	qsort(bases, n, sizeof(bases[0]), cmp_u64);
	bool disjoint = n == WRITERS * ROUNDS;
	for (size_t i = 1; i < n; i++)
		disjoint = disjoint && bases[i] >= bases[i - 1] + LEASE_SIZE;
	tap_ok(disjoint, "%zu lease blocks from %d processes, none overlapping (zero duplicates)",
	       n, WRITERS);
	tally_store_close(store);
}

int main(int argc, char **argv)
{
	self_path = argv[0];
	if (argc >= 4 && strcmp(argv[1], "writer") == 0)
		return writer_main(argv[2], argv[3]);
	if (argc >= 3 && strcmp(argv[1], "victim") == 0)
		return victim_main(argv[2]);
	real_url = getenv("TALLY_DDB_URL");
	if (!real_url && (!getenv("TALLY_DDB_PORT") || !getenv("TALLY_DDB_PROXY_PORT") ||
			  !getenv("TALLY_DDB_RESTART") || !getenv("TALLY_DDB_DIR"))) {
		printf("1..0 # SKIP run through tests/store/dynamodb.sh (needs dynalite)\n");
		return 77;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int64_t t0 = now_ms();
	test_open_errors();
	test_basics_and_hostile_keys();
	test_fencing();
	test_listener_recount();
	test_threads();
	if (!real_url)
		test_concurrent_first_open();
	test_series();
	if (!real_url)
		test_permanent_errors();
	if (!real_url)
		test_attribute_cleanup();
	printf("# basics: %" PRId64 " ms\n", now_ms() - t0);
	t0 = now_ms();
	if (!real_url)
		test_lease_reset_and_missing_table();
	printf("# leases: %" PRId64 " ms\n", now_ms() - t0);
	t0 = now_ms();
	test_killed_writer();
	printf("# killed writer: %" PRId64 " ms\n", now_ms() - t0);
	t0 = now_ms();
	test_writers_through_faults(real_url ? "/tmp" : getenv("TALLY_DDB_DIR"));
	printf("# writers through faults: %" PRId64 " ms\n", now_ms() - t0);
	curl_global_cleanup();
	return tap_done();
}
