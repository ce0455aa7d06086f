/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/rcu_map.c: the shared string-keyed RCU map: unique insert, exactly-once remove,
 * lookups racing removes and reclamation, lookups racing a synchronous growth. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "internal/rcu_map.h"
#include "tap.h"
#include "threads.h"

#define KEYS 2000
#define THREADS 4

struct entry {
	struct tally_rcu_map_node node;
	struct tally_rcu_head rcu;
	char key[32];
	_Atomic int64_t alive; /* 1 until reclaimed; readers check they never see 0 */
};

static _Atomic int64_t reclaimed_count;

static struct entry *new_entry(const char *key)
{
	struct entry *entry = calloc(1, sizeof(*entry));

	snprintf(entry->key, sizeof(entry->key), "%s", key);
	atomic_init(&entry->alive, 1);
	tally__rcu_map_node_init(&entry->node, entry->key, strlen(entry->key));
	return entry;
}

static void free_entry(struct entry *entry)
{
	atomic_store(&entry->alive, 0);
	atomic_fetch_add(&reclaimed_count, 1);
	free(entry);
}

/* destroy's release_node */
static void reclaim_entry(struct tally_rcu_map_node *node)
{
	free_entry(caa_container_of(node, struct entry, node));
}

/* what a remover retires */
static void reclaim_retired(struct tally_rcu_head *rcu)
{
	free_entry(caa_container_of(rcu, struct entry, rcu));
}

static int count_node(struct tally_rcu_map_node *node, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static void test_basics(void)
{
	struct tally_rcu_map map;
	struct entry *a = new_entry("alpha"), *a2 = new_entry("alpha"), *b = new_entry("a\xffz");
	int visited = 0;

	tap_eq(tally__rcu_map_init(&map), TALLY_OK, "init");
	tally_rcu_read_lock();
	tap_ok(tally__rcu_map_insert_unique(&map, &a->node) == &a->node, "insert alpha");
	tap_ok(tally__rcu_map_insert_unique(&map, &a2->node) == &a->node,
	       "a second alpha returns the first");
	tap_ok(tally__rcu_map_insert_unique(&map, &b->node) == &b->node, "non-UTF-8 key");
	tap_ok(tally__rcu_map_lookup(&map, "alpha", 5) == &a->node, "lookup alpha");
	tap_ok(tally__rcu_map_lookup(&map, "alph", 4) == NULL, "a prefix is another key");
	tally__rcu_map_visit(&map, count_node, &visited);
	tap_eq(visited, 2, "visit sees both nodes");
	tap_eq(tally__rcu_map_remove(&map, &a->node), TALLY_OK, "remove alpha");
	tap_eq(tally__rcu_map_remove(&map, &a->node), TALLY_ENOTFOUND,
	       "second remove is ENOTFOUND");
	tap_ok(tally__rcu_map_node_removed(&a->node), "node reports removed");
	tap_ok(tally__rcu_map_lookup(&map, "alpha", 5) == NULL, "alpha gone");
	tally__rcu_retire(&a->rcu, reclaim_retired);
	tally_rcu_read_unlock();
	free(a2);
	tap_eq(tally__rcu_map_destroy(&map, reclaim_entry), TALLY_OK,
	       "destroy frees what is left");
	tap_eq(atomic_load(&reclaimed_count), 2, "both entries reclaimed exactly once");
	tap_eq(tally__rcu_map_hash(&map, "x", 1) == tally__rcu_map_hash(&map, "x", 1), 1,
	       "hash is deterministic per map");
}

struct race {
	struct tally_rcu_map map;
	_Atomic int64_t removed_by_us, dead_seen;
};

/* Half the threads look keys up and read the entries; half remove and retire them. */
static void *race_body(struct test_thread *self)
{
	struct race *race = self->shared;
	char key[32];

	for (int round = 0; round < 3; round++)
		for (int i = 0; i < KEYS; i++) {
			int len = snprintf(key, sizeof(key), "key-%d", i);
			tally_rcu_read_lock();
			struct tally_rcu_map_node *node =
				tally__rcu_map_lookup(&race->map, key, len);
			if (node) {
				struct entry *entry = caa_container_of(node, struct entry, node);
				if (atomic_load(&entry->alive) != 1)
					atomic_fetch_add(&race->dead_seen, 1);
				if (self->index % 2 &&
				    tally__rcu_map_remove(&race->map, node) == TALLY_OK) {
					atomic_fetch_add(&race->removed_by_us, 1);
					tally__rcu_retire(&entry->rcu, reclaim_retired);
				}
			}
			tally_rcu_read_unlock();
		}
	return NULL;
}

static void test_concurrent_removal(void)
{
	static struct race race;
	struct test_thread threads[THREADS];
	char key[32];

	atomic_store(&reclaimed_count, 0);
	tally__rcu_map_init(&race.map);
	tally_rcu_read_lock();
	for (int i = 0; i < KEYS; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		tally__rcu_map_insert_unique(&race.map, &new_entry(key)->node);
	}
	tally_rcu_read_unlock();
	run_threads(THREADS, race_body, &race, threads);
	tally_rcu_barrier();
	tap_eq(race.removed_by_us, KEYS, "every key removed exactly once by racing removers");
	tap_eq(race.dead_seen, 0, "no reader saw a reclaimed entry");
	tap_eq(atomic_load(&reclaimed_count), KEYS, "every removed entry reclaimed once");
	tally__rcu_map_destroy(&race.map, reclaim_entry);
}

struct grow {
	struct tally_rcu_map map;
	_Atomic int growing; /* 1 while thread 0 grows the table */
	_Atomic int64_t lookups, misses;
	int grow_errors;
};

static int64_t look_up_all(struct tally_rcu_map *map)
{
	char key[32];
	int64_t misses = 0;

	for (int i = 0; i < KEYS; i++) {
		int len = snprintf(key, sizeof(key), "key-%d", i);
		tally_rcu_read_lock();
		misses += tally__rcu_map_lookup(map, key, (size_t)len) == NULL;
		tally_rcu_read_unlock();
	}
	return misses;
}

/* Thread 0 grows the table in steps to 64 times its keys; thread 1 looks every key up
 * meanwhile, and must find each one every time. */
static void *grow_body(struct test_thread *self)
{
	struct grow *grow = self->shared;

	if (self->index == 0) {
		for (size_t nodes = 128; nodes <= 64 * KEYS; nodes *= 2)
			grow->grow_errors += tally__rcu_map_grow_for(&grow->map, nodes) != TALLY_OK;
		atomic_store(&grow->growing, 0);
		return NULL;
	}
	do {
		atomic_fetch_add(&grow->misses, look_up_all(&grow->map));
		atomic_fetch_add(&grow->lookups, KEYS);
	} while (atomic_load(&grow->growing));
	return NULL;
}

static void test_grow(void)
{
	static struct grow grow;
	struct test_thread threads[2];
	char key[32];

	tally__rcu_map_init(&grow.map);
	atomic_store(&grow.growing, 1);
	tally_rcu_read_lock();
	for (int i = 0; i < KEYS; i++) {
		snprintf(key, sizeof(key), "key-%d", i);
		tally__rcu_map_insert_unique(&grow.map, &new_entry(key)->node);
	}
	tap_eq(tally__rcu_map_grow_for(&grow.map, 4 * KEYS), TALLY_EBUSY,
	       "grow_for inside a read-side section refuses (EBUSY)");
	tally_rcu_read_unlock();
	run_threads(2, grow_body, &grow, threads);
	tap_eq(grow.grow_errors, 0, "grow_for outside a read-side section succeeds at each step");
	tap_ok(atomic_load(&grow.lookups) >= KEYS && atomic_load(&grow.misses) == 0,
	       "lookups during the growth found every key (%lld lookups, %lld misses)",
	       (long long)atomic_load(&grow.lookups), (long long)atomic_load(&grow.misses));
	tap_eq(tally__rcu_map_grow_for(&grow.map, 16), TALLY_OK, "grow_for below the size: no-op");
	tap_eq(look_up_all(&grow.map), 0, "every key is found after the growth");
	tally__rcu_map_destroy(&grow.map, reclaim_entry);
}

/* The inline key compare agrees with memcmp at every length it special-cases and past them,
 * with the one differing byte at each position. */
static void test_same_bytes(void)
{
	char a[40], b[40];
	int wrong = 0;

	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (char)('a' + i % 26);
	for (size_t len = 0; len <= 33; len++) {
		memcpy(b, a, sizeof(a));
		wrong += !tally__rcu_map_same_bytes(a, b, len);
		for (size_t at = 0; at < len; at++) {
			b[at] ^= 0x40;
			wrong += tally__rcu_map_same_bytes(a, b, len);
			b[at] ^= 0x40;
		}
		b[len] ^= 0x40; /* a byte past the key never counts */
		wrong += !tally__rcu_map_same_bytes(a, b, len);
	}
	tap_eq(wrong, 0, "same_bytes matches memcmp for keys of 0-33 bytes");
}

/* A map reserves address space for its buckets (rcu_map.c); liburcu aborts if that fails, so
 * under an RLIMIT_AS too small for the reservation init must fall back, not abort. Runs in a
 * child, before this process has any thread. Sanitizer runtimes need far more address space
 * than any such limit allows. */
static void test_address_space_limit(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	tap_ok(1, "# SKIP a sanitizer runtime cannot run under an address-space limit");
#else
	pid_t child = fork();
	int status = 0;

	if (child == 0) {
		struct tally_rcu_map map;
		struct entry *entry;
		long pages = 0;
		FILE *statm = fopen("/proc/self/statm", "r");
		struct rlimit limit;

		if (!statm || fscanf(statm, "%ld", &pages) != 1)
			_exit(2);
		fclose(statm);
		getrlimit(RLIMIT_AS, &limit);
		limit.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (64u << 20);
		if (setrlimit(RLIMIT_AS, &limit) != 0)
			_exit(3);
		if (tally__rcu_map_init(&map) != TALLY_OK)
			_exit(4);
		entry = new_entry("limited");
		tally_rcu_read_lock();
		if (tally__rcu_map_insert_unique(&map, &entry->node) != &entry->node ||
		    tally__rcu_map_lookup(&map, "limited", 7) != &entry->node)
			_exit(5);
		tally_rcu_read_unlock();
		_exit(tally__rcu_map_destroy(&map, reclaim_entry) == TALLY_OK ? 0 : 6);
	}
	waitpid(child, &status, 0);
	tap_ok(child > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
	       "a map works under an address-space limit below its bucket reservation (status %d)",
	       status);
#endif
}

/* SipHash-c-d the textbook way (byte by byte, rounds as parameters), to check the map's
 * streaming SipHash-1-3 against something that does not share its code. */
static uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static uint64_t reference_siphash(int c, int d, const uint64_t key[2], const unsigned char *m,
				  size_t len)
{
	uint64_t v[4] = { key[0] ^ 0x736f6d6570736575ull, key[1] ^ 0x646f72616e646f6dull,
			  key[0] ^ 0x6c7967656e657261ull, key[1] ^ 0x7465646279746573ull };
	uint64_t word = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i == len)
			word |= (uint64_t)(len & 0xff) << 56;
		else
			word |= (uint64_t)m[i] << (8 * (i % 8));
		if (i % 8 != 7 && i != len)
			continue;
		v[3] ^= word;
		for (int r = 0; r < c; r++) {
			v[0] += v[1], v[1] = rotl(v[1], 13), v[1] ^= v[0], v[0] = rotl(v[0], 32);
			v[2] += v[3], v[3] = rotl(v[3], 16), v[3] ^= v[2];
			v[0] += v[3], v[3] = rotl(v[3], 21), v[3] ^= v[0];
			v[2] += v[1], v[1] = rotl(v[1], 17), v[1] ^= v[2], v[2] = rotl(v[2], 32);
		}
		v[0] ^= word;
		word = 0;
		if (i == len)
			break;
	}
	v[2] ^= 0xff;
	for (int r = 0; r < d; r++) {
		v[0] += v[1], v[1] = rotl(v[1], 13), v[1] ^= v[0], v[0] = rotl(v[0], 32);
		v[2] += v[3], v[3] = rotl(v[3], 16), v[3] ^= v[2];
		v[0] += v[3], v[3] = rotl(v[3], 21), v[3] ^= v[0];
		v[2] += v[1], v[1] = rotl(v[1], 17), v[1] ^= v[2], v[2] = rotl(v[2], 32);
	}
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static void test_hash_reference(void)
{
	/* The SipHash paper's key 00..0f (little-endian words) and its 2-4 vectors. */
	const uint64_t paper_key[2] = { 0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull };
	unsigned char bytes[40];
	struct tally_rcu_map map;
	int same = 1;

	for (int i = 0; i < 40; i++)
		bytes[i] = (unsigned char)i;
	tap_ok(reference_siphash(2, 4, paper_key, bytes, 0) == 0x726fdb47dd0e0e31ull &&
		       reference_siphash(2, 4, paper_key, bytes, 15) == 0xa129ca6149be45e5ull,
	       "the reference SipHash gives the paper's 2-4 vectors");
	tally__rcu_map_init(&map);
	for (size_t len = 0; len < 40; len++)
		same &= tally__rcu_map_hash(&map, (const char *)bytes, len) ==
			reference_siphash(1, 3, map.hash_key, bytes, len);
	tap_ok(same, "the map's hash is SipHash-1-3 under its key, lengths 0..39");
	tally__rcu_map_destroy(&map, NULL);
}

/* A two-piece key hashes and looks up as its pieces joined by a NUL, for every split of
 * lengths across the hash's 8-byte words; other splits of the same bytes are other keys. */
static void test_pair_keys(void)
{
	const char *text = "0123456789abcdefghijklmnopqrstuvwxyz";
	struct tally_rcu_map map;
	struct entry *entry = calloc(1, sizeof(*entry));
	int same_hash = 1, found = 1, misses = 1;

	tally__rcu_map_init(&map);
	tally_rcu_read_lock();
	for (size_t first = 1; first <= 12; first++)
		for (size_t second = 1; second <= 17; second++) {
			char joined[32];

			memcpy(joined, text, first);
			joined[first] = '\0';
			memcpy(joined + first + 1, text + first, second);
			same_hash &= tally__rcu_map_hash(&map, joined, first + 1 + second) ==
				     tally__rcu_map_hash_pair(&map, text, first, text + first,
							      second);
			memcpy(entry->key, joined, first + 1 + second);
			tally__rcu_map_node_init(&entry->node, entry->key, first + 1 + second);
			tally__rcu_map_insert_unique(&map, &entry->node);
			found &= tally__rcu_map_lookup_pair(&map, text, first, text + first,
							    second) == &entry->node;
			misses &= tally__rcu_map_lookup_pair(&map, text, first + 1, text + first + 1,
							     second - 1) == NULL &&
				  tally__rcu_map_lookup_pair(&map, text, first, text + first + 1,
							     second) == NULL;
			tally__rcu_map_remove(&map, &entry->node);
			tally_rcu_read_unlock();
			tally_rcu_barrier(); /* the node is reused: no reader may still see it */
			tally_rcu_read_lock();
		}
	tally_rcu_read_unlock();
	tap_ok(same_hash, "hash_pair(first, second) == hash(first NUL second), every split");
	tap_ok(found, "lookup_pair finds the joined key");
	tap_ok(misses, "lookup_pair: the same bytes split elsewhere, or other bytes, miss");
	tally__rcu_map_destroy(&map, NULL);
	free(entry);
}

int main(void)
{
	test_same_bytes();
	test_address_space_limit();
	test_basics();
	test_hash_reference();
	test_pair_keys();
	test_concurrent_removal();
	test_grow();
	return tap_done();
}
