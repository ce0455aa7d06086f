/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/store_dynamodb.c: counting events into DynamoDB (dynalite), tally's way against the
 * seeds' way, same program, same run, same server.
 *
 *   BM_dynamodb_tally/KEYS       threads increment tally counters (KEYS keys) in memory; a
 *                                flusher thread drains them every 100 ms and writes one
 *                                exactly-once flush (tally_store_flush: one conditional
 *                                UpdateItem per dirty key, all in flight at once)
 *   BM_dynamodb_updateitem/KEYS  what the seeds do: one "UpdateItem ... ADD v :1" per
 *                                increment (libcurl, SigV4, a keep-alive connection per
 *                                thread), at-least-once on retry and never coalesced
 *
 * items/s is increments per second for both. The tally variant also reports flushes,
 * UpdateItems per flush, flush latency p50/p99 (ms), the request bound in flight
 * (max_in_flight) and the effective parallelism (UpdateItems per flush x one serial
 * request's latency, measured at setup / the flush latency). After each tally run the store total of every
 * key is checked against the increments made: a wrong total fails the run.
 *
 * Needs TALLY_BENCH_DYNAMODB_URL (e.g. dynamodb://?endpoint=http://127.0.0.1:PORT&
 * region=us-east-1, credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); without it
 * the program registers nothing and exits 0 ("skipped").
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tally/counter.h>
#include <tally/store.h>

#include "harness.h"

#define MAX_KEYS 1000
#define FLUSH_INTERVAL_MS 100
#define MAX_FLUSHES 4096

static const char *base_url;
static char endpoint[256];

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- tally: counters in memory, a flusher every 100 ms -------------------------------- */

static struct {
	struct tally_store *store;
	struct tally_counter counters[MAX_KEYS];
	char names[MAX_KEYS][32];
	int64_t flushed[MAX_KEYS]; /* what the flusher acknowledged, per key */
	int64_t base[MAX_KEYS];    /* store totals before this run */
	int keys;
	pthread_t flusher;
	atomic_bool stop;
	uint64_t seq;
	int64_t latency_us[MAX_FLUSHES];
	int64_t update_items;
	int flushes;
	int failed;
	char run_tag[32];
} t;

static double round_trip_us; /* one serial request (a GetItem), measured at setup */

static int flush_once(void)
{
	struct tally_store_delta deltas[MAX_KEYS];
	int index[MAX_KEYS];
	size_t n = 0;
	for (int k = 0; k < t.keys; k++) {
		int64_t d = 0;
		tally_counter_drain(&t.counters[k], &d);
		if (d) {
			index[n] = k;
			deltas[n++] = (struct tally_store_delta){t.names[k], strlen(t.names[k]), d};
		}
	}
	if (n == 0)
		return 0;
	struct tally_store_batch batch = {.seq = ++t.seq, .counters = deltas, .counter_count = n};
	struct tally_store_flush_result result = {0};
	int64_t start = now_us();
	int rc;
	for (int attempt = 0; attempt < 100; attempt++) {
		rc = tally_store_flush(t.store, &batch, &result);
		if (rc == TALLY_OK || !tally_store_err_transient(rc))
			break;
		usleep(10000); /* the same batch again: exactly once */
	}
	if (rc) {
		fprintf(stderr, "flush: %s\n", tally_store_last_error(t.store));
		t.failed = 1;
		return rc;
	}
	if (t.flushes < MAX_FLUSHES)
		t.latency_us[t.flushes] = now_us() - start;
	t.flushes++;
	t.update_items += (int64_t)n;
	for (size_t i = 0; i < n; i++)
		t.flushed[index[i]] += deltas[i].delta;
	return 0;
}

static void *flusher_main(void *arg)
{
	(void)arg;
	while (!atomic_load(&t.stop)) {
		int64_t start = now_us();
		if (flush_once())
			break;
		int64_t left = FLUSH_INTERVAL_MS * 1000 - (now_us() - start);
		if (left > 0)
			usleep((useconds_t)left);
	}
	return NULL;
}

static int64_t read_total(const char *key)
{
	int64_t total = 0;
	tally_store_read_counter(t.store, key, strlen(key), &total);
	return total;
}

static void tally_setup(const struct bench_state *state)
{
	static int run;
	t.keys = (int)bench_range(state, 0);
	snprintf(t.run_tag, sizeof(t.run_tag), "%d-%d", (int)getpid(), run++);
	struct tally_store_options o = {.writer_ttl_ms = 30000, .timeout_ms = 10000,
					.create_schema = true};
	t.failed = tally_store_open(&t.store, base_url, &o) != TALLY_OK;
	if (t.failed || tally_store_writer_open(t.store, NULL)) {
		fprintf(stderr, "open: %s\n", tally_store_last_error(t.store));
		t.failed = 1;
		return;
	}
	int64_t start = now_us();
	for (int k = 0; k < t.keys; k++) {
		tally_counter_init(&t.counters[k], 0);
		snprintf(t.names[k], sizeof(t.names[k]), "bench/%d", k);
		t.flushed[k] = 0;
		t.base[k] = read_total(t.names[k]); /* one GetItem each, one after the other */
	}
	round_trip_us = (double)(now_us() - start) / t.keys;
	t.seq = 0;
	t.flushes = 0;
	t.update_items = 0;
	atomic_store(&t.stop, false);
	pthread_create(&t.flusher, NULL, flusher_main, NULL);
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

static void tally_teardown(const struct bench_state *state)
{
	(void)state;
	if (!t.store)
		return;
	tally_store_writer_close(t.store);
	for (int k = 0; k < t.keys; k++)
		tally_counter_destroy(&t.counters[k]);
	tally_store_close(t.store);
	t.store = NULL;
}

/* Stops the flusher, makes the final flush, checks every store total, reports. */
static void tally_finish(struct bench_state *state, int64_t increments)
{
	atomic_store(&t.stop, true);
	pthread_join(t.flusher, NULL);
	if (!t.failed)
		flush_once();
	int64_t counted = 0;
	for (int k = 0; k < t.keys && !t.failed; k++) {
		int64_t total = read_total(t.names[k]) - t.base[k];
		counted += total;
		if (total != t.flushed[k])
			t.failed = 1;
	}
	if (t.failed || counted != increments) {
		bench_skip_with_error(state, "store totals differ from the increments made");
		return;
	}
	int n = t.flushes < MAX_FLUSHES ? t.flushes : MAX_FLUSHES;
	qsort(t.latency_us, (size_t)n, sizeof(t.latency_us[0]), cmp_i64);
	double p50 = n ? t.latency_us[n / 2] / 1000.0 : 0;
	double p99 = n ? t.latency_us[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] / 1000.0 : 0;
	double per_flush = t.flushes ? (double)t.update_items / t.flushes : 0;
	bench_counter(state, "flushes", t.flushes, BENCH_COUNTER_DEFAULT);
	bench_counter(state, "updateitems_per_flush", per_flush, BENCH_COUNTER_DEFAULT);
	bench_counter(state, "flush_p50_ms", p50, BENCH_COUNTER_DEFAULT);
	bench_counter(state, "flush_p99_ms", p99, BENCH_COUNTER_DEFAULT);
	bench_counter(state, "max_in_flight", 32, BENCH_COUNTER_DEFAULT);
	if (p50 > 0)
		bench_counter(state, "parallelism", per_flush * round_trip_us / (p50 * 1000.0),
			      BENCH_COUNTER_DEFAULT);
	bench_counter(state, "round_trip_us", round_trip_us, BENCH_COUNTER_DEFAULT);
}

static void bm_tally(struct bench_state *state)
{
	int keys = (int)bench_range(state, 0), k = bench_thread_index(state) * 7919 % keys;
	int64_t n = 0;
	while (bench_keep_running(state)) {
		tally_counter_inc(&t.counters[k]);
		if (++k == keys)
			k = 0;
		n++;
	}
	/* Thread 0 checks after every thread's loop: the harness stops them behind a barrier,
	 * and the increments of all threads are bench_iterations x threads. */
	if (bench_thread_index(state) == 0)
		tally_finish(state, bench_iterations(state) * bench_threads(state));
	bench_set_items_processed(state, n);
}

/* ---- the peer: one UpdateItem ADD per increment --------------------------------------- */

/* A curl handle for the peer: a SigV4-signed POST of `target` to the endpoint, its answers
 * discarded. The peer's requests are what the seeds' service sends; tally's go through the
 * backend. The credentials are wiped here once curl holds its own copy. */
struct peer_handle {
	CURL *curl;
	struct curl_slist *headers;
	FILE *sink;
};

static void peer_open(struct peer_handle *peer, const char *target)
{
	char userpwd[512], sigv4[96], target_header[96];

	snprintf(userpwd, sizeof(userpwd), "%s:%s", getenv("AWS_ACCESS_KEY_ID"),
		 getenv("AWS_SECRET_ACCESS_KEY"));
	snprintf(sigv4, sizeof(sigv4), "aws:amz:%s:dynamodb",
		 getenv("AWS_REGION") ? getenv("AWS_REGION") : "us-east-1");
	snprintf(target_header, sizeof(target_header), "X-Amz-Target: DynamoDB_20120810.%s",
		 target);
	peer->curl = curl_easy_init();
	peer->headers = curl_slist_append(NULL, "Content-Type: application/x-amz-json-1.0");
	peer->headers = curl_slist_append(peer->headers, target_header);
	peer->sink = fopen("/dev/null", "w");
	curl_easy_setopt(peer->curl, CURLOPT_URL, endpoint);
	curl_easy_setopt(peer->curl, CURLOPT_HTTPHEADER, peer->headers);
	curl_easy_setopt(peer->curl, CURLOPT_USERPWD, userpwd);
	curl_easy_setopt(peer->curl, CURLOPT_AWS_SIGV4, sigv4);
	curl_easy_setopt(peer->curl, CURLOPT_WRITEDATA, peer->sink);
	curl_easy_setopt(peer->curl, CURLOPT_TCP_NODELAY, 1L);
	explicit_bzero(userpwd, sizeof(userpwd)); /* curl keeps its own copy */
}

static void peer_close(struct peer_handle *peer)
{
	fclose(peer->sink);
	curl_slist_free_all(peer->headers);
	curl_easy_cleanup(peer->curl);
}

static void bm_updateitem(struct bench_state *state)
{
	int keys = (int)bench_range(state, 0), k = bench_thread_index(state) * 7919 % keys;
	struct peer_handle peer;
	char body[256];

	peer_open(&peer, "UpdateItem");
	int64_t n = 0, errors = 0, start = now_us();
	while (bench_keep_running(state)) {
		/* base64 of "peer/K" is not needed to be pretty: a string key table of its own */
		snprintf(body, sizeof(body),
			 "{\"TableName\":\"seed_counters\",\"Key\":{\"k\":{\"S\":\"peer/%d\"}},"
			 "\"UpdateExpression\":\"ADD v :one\","
			 "\"ExpressionAttributeValues\":{\":one\":{\"N\":\"1\"}}}", k);
		curl_easy_setopt(peer.curl, CURLOPT_POSTFIELDS, body);
		long status = 0;
		if (curl_easy_perform(peer.curl) != CURLE_OK ||
		    (curl_easy_getinfo(peer.curl, CURLINFO_RESPONSE_CODE, &status), status != 200))
			errors++;
		if (++k == keys)
			k = 0;
		n++;
	}
	double latency = n ? (double)(now_us() - start) / (double)n : 0;
	if (errors)
		bench_skip_with_error(state, "UpdateItem failed");
	bench_counter(state, "request_latency_us", latency, BENCH_COUNTER_AVG_THREADS);
	bench_set_items_processed(state, n);
	peer_close(&peer);
}

/* The peer's table, created once ("k" a string key, as the seeds' counters table). */
static int create_seed_table(void)
{
	struct peer_handle peer;

	peer_open(&peer, "CreateTable");
	curl_easy_setopt(peer.curl, CURLOPT_POSTFIELDS,
			 "{\"TableName\":\"seed_counters\",\"BillingMode\":\"PAY_PER_REQUEST\","
			 "\"KeySchema\":[{\"AttributeName\":\"k\",\"KeyType\":\"HASH\"}],"
			 "\"AttributeDefinitions\":[{\"AttributeName\":\"k\",\"AttributeType\":\"S\"}]}");
	CURLcode code = curl_easy_perform(peer.curl);
	peer_close(&peer);
	sleep(1); /* CREATING -> ACTIVE (dynalite: createTableMs) */
	return code == CURLE_OK ? 0 : -1;
}

/* The endpoint from the URL's endpoint= option (the peer talks to the same server). */
static int endpoint_of(const char *url)
{
	const char *p = strstr(url, "endpoint=");
	if (!p)
		return -1;
	p += strlen("endpoint=");
	size_t len = strcspn(p, "&");
	if (len >= sizeof(endpoint))
		return -1;
	memcpy(endpoint, p, len);
	endpoint[len] = '\0';
	return 0;
}

int main(int argc, char **argv)
{
	base_url = getenv("TALLY_BENCH_DYNAMODB_URL");
	if (!base_url || endpoint_of(base_url) || !getenv("AWS_ACCESS_KEY_ID")) {
		fprintf(stderr, "bench/store_dynamodb: skipped (set TALLY_BENCH_DYNAMODB_URL to a "
			"dynamodb://?endpoint=... URL and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)\n");
		return bench_main(argc, argv);
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (create_seed_table()) {
		fprintf(stderr, "bench/store_dynamodb: cannot reach %s\n", endpoint);
		return 1;
	}
	/* One incrementing thread: dynalite (node) and the flusher need the machine's other
	 * CPU; with two spinning threads they starve and the flush latency measures that. */
	struct bench_def *def = bench_register("BM_dynamodb_updateitem", bm_updateitem);
	bench_def_arg(def, 100);
	bench_def_arg(def, 1000);
	bench_def_threads(def, 1);
	bench_def_use_real_time(def);
	bench_def_min_time(def, 1.0); /* the same variant name as tally's, for the ratio */
	def = bench_register("BM_dynamodb_tally", bm_tally);
	bench_def_arg(def, 100);
	bench_def_arg(def, 1000);
	bench_def_threads(def, 1);
	bench_def_use_real_time(def);
	bench_def_min_time(def, 1.0); /* ten flushes per run at least */
	bench_def_setup(def, tally_setup);
	bench_def_teardown(def, tally_teardown);
	int status = bench_main(argc, argv);
	curl_global_cleanup();
	return status;
}
