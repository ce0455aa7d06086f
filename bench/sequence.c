/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/sequence.c: the sequence allocator against what a user would otherwise write, in one
 * run. Families (no underscore, see mk/bench.am): sequencestrict, sequencebyname,
 * sequencedaily, sequencecached, sequencelease; impls tally* are ours, the rest peers,
 * naive_* the first thing a user writes.
 *
 * BM_sequencestrict_{tally,mutex}/real_time/threads:N
 *	one strict series that never resets, every thread issuing from it through a handle:
 *	with no lease and no reset that is the inline path, one relaxed load and one fetch_add
 *	per number (tally/static/sequence.h) with the width check; the peer is a counter under
 *	one pthread_mutex_t (lock, ++, unlock). Neither side renders text. Every tally series
 *	here has a 12-digit counter template.
 * BM_sequencebyname_{tally,mutex_map,striped_map}/<tenants>/real_time/threads:N
 *	what a multi-tenant invoice service calls: the next strict number of (tenant, "INV") by
 *	name, tally_sequence_next(seq, tenant, series), with 1 tenant or 10,000 (each thread
 *	picks the tenant at random). tally: a registry created without a size hint, grown as
 *	the series are created; tally_sized: created with expected_series = the tenant count. Peers: a name map a good engineer writes in a day, a chained
 *	hash table (FNV-1a over tenant, NUL, series; doubling at load 1) of entries holding the
 *	two names and the counter, the counter advanced under the lock that found it:
 *	  mutex_map    one pthread_mutex_t for the map
 *	  striped_map  64 stripes, each a cache-line-aligned mutex owning its own table
 *	Every 32nd issue is timed into the "issue" latency histogram. The 10,000-tenant run
 *	reports heap_bytes_per_series: malloc's (and jemalloc's) bytes added by creating them.
 * BM_sequencedaily_{tally,mutex}/real_time/threads:N
 *	a strict daily series: both sides read CLOCK_REALTIME per number (the peer computes
 *	the day and resets its counter under the mutex).
 * BM_sequencecached_{tally,tlblock,naive_mutex}/real_time/threads:N
 *	a cached-mode series (block 64, never resets). tlblock: the allocator a good engineer
 *	writes for cached numbers, a thread-local block [at, end) refilled by one relaxed
 *	fetch_add of 64 on a shared counter; naive_mutex: the mutex counter.
 * BM_sequencelease_{tally,hilo,naive_roundtrip}/real_time/threads:1
 *	durable numbers with the file provider: tally strict with a lease of 1,000 against a
 *	hand-written hi/lo allocator (a mutex-protected counter that, when it reaches its
 *	persisted high mark, writes mark + 1,000 to a file with pwrite and one fdatasync before
 *	issuing from the block) and a provider round trip per number (tally_lease_acquire of
 *	size 1: one fdatasync each).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <tally/rcu.h>
#include <tally/sequence.h>
#include "harness.h"
#include "heap.h"
#include "internal/hash.h"
#include "../tests/random.h"

static struct tally_sequence *seq;
static struct tally_series *series;
static struct tally_lease_provider *lease;
static char lease_path[64];

static pthread_mutex_t mutex_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t mutex_counter;

static uint64_t mutex_day;

static void make_series(enum tally_seq_mode mode, enum tally_seq_reset reset,
			struct tally_lease_provider *provider, uint32_t lease_size)
{
	/* 12 digits: a long run (10^9 numbers at --benchmark_min_time=1 on the cached path)
	 * must not reach the width limit, which fails the call (EWIDTH) and the benchmark. */
	struct tally_series_config cfg = { .format = reset ? "INV-{date}-{counter:012}"
							   : "INV-{counter:012}",
					   .mode = mode, .reset = reset, .cache_block = 64,
					   .lease = provider, .lease_size = lease_size };

	if (tally_sequence_create(&seq, NULL) ||
	    tally_sequence_series_create(seq, "acme", "INV", &cfg, NULL) ||
	    tally_sequence_series_find(seq, "acme", "INV", &series))
		abort();
}

static void strict_setup(const struct bench_state *state)
{
	make_series(TALLY_SEQ_STRICT, TALLY_SEQ_RESET_NEVER, NULL, 0);
}

static void daily_setup(const struct bench_state *state)
{
	make_series(TALLY_SEQ_STRICT, TALLY_SEQ_RESET_DAILY, NULL, 0);
}

static void cached_setup(const struct bench_state *state)
{
	make_series(TALLY_SEQ_CACHED, TALLY_SEQ_RESET_NEVER, NULL, 0);
}

static void open_lease_file(void)
{
	snprintf(lease_path, sizeof(lease_path), "bench-sequence-%d.lease", (int)getpid());
	unlink(lease_path);
	if (tally_lease_file_open(&lease, lease_path))
		abort();
}

static void lease_setup(const struct bench_state *state)
{
	open_lease_file();
	make_series(TALLY_SEQ_STRICT, TALLY_SEQ_RESET_NEVER, lease, 1000);
}

static void roundtrip_setup(const struct bench_state *state)
{
	open_lease_file();
}

static void series_teardown(const struct bench_state *state)
{
	tally_sequence_destroy(seq);
	seq = NULL;
	if (lease) {
		tally_lease_provider_destroy(lease);
		lease = NULL;
		unlink(lease_path);
	}
	tally_rcu_barrier();
}

static void bm_tally(struct bench_state *state)
{
	/* The handle in a local, as a caller holds it (the global would be reloaded after
	 * every store the loop makes). */
	struct tally_series *handle = series;
	struct tally_seq_number n;

	while (bench_keep_running(state)) {
		if (tally_series_next(handle, &n) != TALLY_OK) {
			bench_skip_with_error(state, "tally_series_next failed");
			break;
		}
		bench_do_not_optimize(n.counter);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_mutex(struct bench_state *state)
{
	while (bench_keep_running(state)) {
		uint64_t n;

		pthread_mutex_lock(&mutex_lock);
		n = ++mutex_counter;
		pthread_mutex_unlock(&mutex_lock);
		bench_do_not_optimize(n);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_mutex_daily(struct bench_state *state)
{
	while (bench_keep_running(state)) {
		struct timespec now;
		uint64_t n, day;

		clock_gettime(CLOCK_REALTIME, &now);
		day = (uint64_t)now.tv_sec / 86400;
		pthread_mutex_lock(&mutex_lock);
		if (day > mutex_day) {
			mutex_day = day;
			mutex_counter = 0;
		}
		n = ++mutex_counter;
		pthread_mutex_unlock(&mutex_lock);
		bench_do_not_optimize(n);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

static void bm_roundtrip(struct bench_state *state)
{
	uint64_t base;

	while (bench_keep_running(state)) {
		if (tally_lease_acquire(lease, "acme\0INV", 8, 0, 1, 0, &base) != TALLY_OK) {
			bench_skip_with_error(state, "tally_lease_acquire failed");
			break;
		}
		bench_do_not_optimize(base);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

/* ---- cached numbers: a thread-local block allocator on fetch_add ----------------------- */

#define TL_BLOCK 64

static _Atomic uint64_t tl_counter;
static _Thread_local uint64_t tl_at, tl_end;

static void tlblock_setup(const struct bench_state *state)
{
	atomic_store(&tl_counter, 0);
	tl_at = tl_end = 0; /* the main thread is reused across runs */
}

static inline uint64_t tlblock_next(void)
{
	if (__builtin_expect(tl_at == tl_end, 0)) {
		tl_at = atomic_fetch_add_explicit(&tl_counter, TL_BLOCK, memory_order_relaxed);
		tl_end = tl_at + TL_BLOCK;
	}
	return ++tl_at;
}

static void bm_tlblock(struct bench_state *state)
{
	while (bench_keep_running(state))
		bench_do_not_optimize(tlblock_next());
	tl_at = tl_end = 0;
	bench_set_items_processed(state, bench_iterations(state));
}

/* ---- durable numbers: a hand-written hi/lo allocator, one fdatasync per block ------------ */

#define HILO_BLOCK 1000

static struct {
	pthread_mutex_t lock;
	uint64_t next; /* the last number issued */
	uint64_t high; /* persisted: numbers up to it may have been issued */
	int fd;
} hilo = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

static void hilo_setup(const struct bench_state *state)
{
	snprintf(lease_path, sizeof(lease_path), "bench-sequence-hilo-%d", (int)getpid());
	hilo.fd = open(lease_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (hilo.fd < 0)
		abort(); /* bench only */
	hilo.next = hilo.high = 0;
}

static void hilo_teardown(const struct bench_state *state)
{
	close(hilo.fd);
	unlink(lease_path);
}

/* 0 on failure (the mark could not be made durable: nothing issued). */
static uint64_t hilo_next(void)
{
	uint64_t n = 0;

	pthread_mutex_lock(&hilo.lock);
	if (hilo.next == hilo.high) {
		uint64_t high = hilo.high + HILO_BLOCK;

		if (pwrite(hilo.fd, &high, sizeof(high), 0) != (ssize_t)sizeof(high) ||
		    fdatasync(hilo.fd) != 0)
			goto out;
		hilo.high = high;
	}
	n = ++hilo.next;
out:
	pthread_mutex_unlock(&hilo.lock);
	return n;
}

static void bm_hilo(struct bench_state *state)
{
	while (bench_keep_running(state)) {
		uint64_t n = hilo_next();

		if (!n) {
			bench_skip_with_error(state, "hi/lo: the mark write failed");
			break;
		}
		bench_do_not_optimize(n);
	}
	bench_set_items_processed(state, bench_iterations(state));
}

/* ---- by-name sequences: tally's registry against name maps ----------------------------- */

#define TENANTS_MAX 10000
#define MAP_STRIPES 64
#define SAMPLE_EVERY 32
#define TENANT_LEN 16

static char tenants[TENANTS_MAX][TENANT_LEN];
static int tenant_count;
static double heap_per_series;

struct name_entry {
	struct name_entry *next;
	uint64_t hash;
	uint64_t counter;
	char *series; /* points into names, after the tenant's NUL */
	char names[];  /* tenant NUL series NUL */
};

struct name_map {
	alignas(64) pthread_mutex_t lock;
	struct name_entry **buckets;
	size_t mask;
	size_t count;
};

static struct name_map maps[MAP_STRIPES];
static int map_count; /* 1: mutex_map, MAP_STRIPES: striped_map */

static uint64_t name_hash(const char *tenant, const char *series_name)
{
	/* the tenant with its NUL, then the series name */
	uint64_t hash = tally__fnv1a64(TALLY__FNV1A64_BASIS, tenant, strlen(tenant) + 1);

	return tally__fnv1a64(hash, series_name, strlen(series_name));
}

static inline struct name_map *map_of(uint64_t hash)
{
	return &maps[map_count == 1 ? 0 : (int)(hash >> 58)];
}

static void map_grow(struct name_map *map)
{
	size_t buckets = (map->mask + 1) * 2;
	struct name_entry **grown = calloc(buckets, sizeof(*grown));

	if (!grown)
		return;
	for (size_t b = 0; b <= map->mask; b++)
		for (struct name_entry *entry = map->buckets[b], *next; entry; entry = next) {
			next = entry->next;
			entry->next = grown[entry->hash & (buckets - 1)];
			grown[entry->hash & (buckets - 1)] = entry;
		}
	free(map->buckets);
	map->buckets = grown;
	map->mask = buckets - 1;
}

static void map_create(const char *tenant, const char *series_name)
{
	size_t tenant_len = strlen(tenant), series_len = strlen(series_name);
	struct name_entry *entry = malloc(sizeof(*entry) + tenant_len + series_len + 2);
	uint64_t hash = name_hash(tenant, series_name);
	struct name_map *map = map_of(hash);

	if (!entry)
		abort(); /* bench only */
	memcpy(entry->names, tenant, tenant_len + 1);
	entry->series = entry->names + tenant_len + 1;
	memcpy(entry->series, series_name, series_len + 1);
	entry->hash = hash;
	entry->counter = 0;
	pthread_mutex_lock(&map->lock);
	if (map->count >= map->mask + 1)
		map_grow(map);
	entry->next = map->buckets[hash & map->mask];
	map->buckets[hash & map->mask] = entry;
	map->count++;
	pthread_mutex_unlock(&map->lock);
}

/* The next number of (tenant, series_name), 0 if there is no such series. */
static uint64_t map_next(const char *tenant, const char *series_name)
{
	uint64_t hash = name_hash(tenant, series_name), n = 0;
	struct name_map *map = map_of(hash);

	pthread_mutex_lock(&map->lock);
	for (struct name_entry *entry = map->buckets[hash & map->mask]; entry; entry = entry->next)
		if (entry->hash == hash && strcmp(entry->names, tenant) == 0 &&
		    strcmp(entry->series, series_name) == 0) {
			n = ++entry->counter;
			break;
		}
	pthread_mutex_unlock(&map->lock);
	return n;
}

static void byname_setup_map(const struct bench_state *state, int stripes)
{
	size_t before = bench_heap_bytes();

	map_count = stripes;
	for (int i = 0; i < map_count; i++) {
		pthread_mutex_init(&maps[i].lock, NULL);
		maps[i].buckets = calloc(1, sizeof(*maps[i].buckets));
		maps[i].mask = 0;
		maps[i].count = 0;
		if (!maps[i].buckets)
			abort(); /* bench only */
	}
	tenant_count = (int)bench_range(state, 0);
	for (int i = 0; i < tenant_count; i++)
		map_create(tenants[i], "INV");
	heap_per_series = (double)(bench_heap_bytes() - before) / tenant_count;
}

static void byname_setup_mutex(const struct bench_state *state)
{
	byname_setup_map(state, 1);
}

static void byname_setup_striped(const struct bench_state *state)
{
	byname_setup_map(state, MAP_STRIPES);
}

static void byname_teardown_map(const struct bench_state *state)
{
	for (int i = 0; i < map_count; i++) {
		for (size_t b = 0; b <= maps[i].mask; b++)
			for (struct name_entry *entry = maps[i].buckets[b], *next; entry;
			     entry = next) {
				next = entry->next;
				free(entry);
			}
		free(maps[i].buckets);
		pthread_mutex_destroy(&maps[i].lock);
	}
}

static void byname_setup(const struct bench_state *state, bool sized)
{
	struct tally_series_config cfg = { .format = "INV-{counter:012}", .mode = TALLY_SEQ_STRICT };
	struct tally_sequence_options options = { .expected_series = (size_t)bench_range(state, 0) };
	size_t before = bench_heap_bytes();

	if (tally_sequence_create(&seq, sized ? &options : NULL))
		abort();
	tenant_count = (int)bench_range(state, 0);
	for (int i = 0; i < tenant_count; i++)
		if (tally_sequence_series_create(seq, tenants[i], "INV", &cfg, NULL))
			abort(); /* bench only */
	heap_per_series = (double)(bench_heap_bytes() - before) / tenant_count;
}

static void byname_setup_tally(const struct bench_state *state)
{
	byname_setup(state, false);
}

static void byname_setup_tally_sized(const struct bench_state *state)
{
	byname_setup(state, true);
}

static void byname_teardown_tally(const struct bench_state *state)
{
	tally_sequence_destroy(seq);
	seq = NULL;
	tally_rcu_barrier();
}

static int tally_issue(const char *tenant, uint64_t *n)
{
	struct tally_seq_number number;

	if (tally_sequence_next(seq, tenant, "INV", &number) != TALLY_OK)
		return 0;
	*n = number.counter;
	return 1;
}

static int map_issue(const char *tenant, uint64_t *n)
{
	*n = map_next(tenant, "INV");
	return *n != 0;
}

typedef int (*issue_fn)(const char *tenant, uint64_t *n);

static inline __attribute__((always_inline)) void byname_loop(struct bench_state *state,
							      issue_fn issue)
{
	uint32_t pick = 2654435761u * (uint32_t)(bench_thread_index(state) + 1), op = 0;
	uint64_t n = 0;

	while (bench_keep_running(state)) {
		const char *tenant;
		int ok;

		test_random(&pick);
		tenant = tenants[pick % (uint32_t)tenant_count];
		if ((++op & (SAMPLE_EVERY - 1)) == 0) {
			int64_t start = bench_now_ns();

			ok = issue(tenant, &n);
			bench_latency_record(state, "issue", bench_now_ns() - start);
		} else {
			ok = issue(tenant, &n);
		}
		if (!ok) {
			bench_skip_with_error(state, "a by-name issue failed");
			break;
		}
		bench_do_not_optimize(n);
	}
	bench_set_items_processed(state, bench_iterations(state));
	if (bench_thread_index(state) == 0 && tenant_count > 1)
		bench_counter(state, "heap_bytes_per_series", heap_per_series, BENCH_COUNTER_DEFAULT);
}

static void bm_byname_tally(struct bench_state *state)
{
	tally_rcu_thread_register();
	byname_loop(state, tally_issue);
}

static void bm_byname_mutex_map(struct bench_state *state)
{
	byname_loop(state, map_issue);
}

static void bm_byname_striped_map(struct bench_state *state)
{
	byname_loop(state, map_issue);
}

static void register_byname(const char *impl, bench_fn fn, bench_hook setup,
			    bench_hook teardown)
{
	char name[96];
	struct bench_def *def;

	if (!tenants[0][0])
		for (int i = 0; i < TENANTS_MAX; i++)
			snprintf(tenants[i], TENANT_LEN, "tenant-%05d", i);
	snprintf(name, sizeof(name), "BM_sequencebyname_%s", impl);
	def = bench_register(name, fn);
	bench_def_setup(def, setup);
	bench_def_teardown(def, teardown);
	bench_def_arg(def, 1);
	bench_def_arg(def, TENANTS_MAX);
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	bench_def_use_real_time(def);
}

/* 1 and 2 threads: 4 on this 2-core machine only time-slices (and make bench stays short). */
static void threads_1_2(struct bench_def *def)
{
	bench_def_threads(def, 1);
	bench_def_threads(def, 2);
	bench_def_use_real_time(def);
}

int main(int argc, char **argv)
{
	struct bench_def *def;

	def = bench_register("BM_sequencestrict_tally", bm_tally);
	bench_def_setup(def, strict_setup);
	bench_def_teardown(def, series_teardown);
	threads_1_2(def);
	threads_1_2(bench_register("BM_sequencestrict_mutex", bm_mutex));

	def = bench_register("BM_sequencedaily_tally", bm_tally);
	bench_def_setup(def, daily_setup);
	bench_def_teardown(def, series_teardown);
	threads_1_2(def);
	threads_1_2(bench_register("BM_sequencedaily_mutex", bm_mutex_daily));

	def = bench_register("BM_sequencecached_tally", bm_tally);
	bench_def_setup(def, cached_setup);
	bench_def_teardown(def, series_teardown);
	threads_1_2(def);
	threads_1_2(bench_register("BM_sequencecached_naive_mutex", bm_mutex));
	def = bench_register("BM_sequencecached_tlblock", bm_tlblock);
	bench_def_setup(def, tlblock_setup);
	threads_1_2(def);

	def = bench_register("BM_sequencelease_tally", bm_tally);
	bench_def_setup(def, lease_setup);
	bench_def_teardown(def, series_teardown);
	bench_def_threads(def, 1);
	bench_def_use_real_time(def);
	def = bench_register("BM_sequencelease_hilo", bm_hilo);
	bench_def_setup(def, hilo_setup);
	bench_def_teardown(def, hilo_teardown);
	bench_def_threads(def, 1);
	bench_def_use_real_time(def);
	def = bench_register("BM_sequencelease_naive_roundtrip", bm_roundtrip);
	bench_def_setup(def, roundtrip_setup);
	bench_def_teardown(def, series_teardown);
	bench_def_threads(def, 1);
	bench_def_use_real_time(def);
	register_byname("tally", bm_byname_tally, byname_setup_tally, byname_teardown_tally);
	register_byname("tally_sized", bm_byname_tally, byname_setup_tally_sized,
			byname_teardown_tally);
	register_byname("mutex_map", bm_byname_mutex_map, byname_setup_mutex,
			byname_teardown_map);
	register_byname("striped_map", bm_byname_striped_map, byname_setup_striped,
			byname_teardown_map);
	return bench_main(argc, argv);
}
