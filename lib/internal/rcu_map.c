/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * String-keyed RCU map on cds_lfht (see rcu_map.h).
 * liburcu publishes and unlinks nodes with inline-assembly atomics that ThreadSanitizer
 * does not see; the TSan edges here stand in for them (internal/tsan.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include "internal/hash.h"
#include "internal/rcu_map.h"
#include "internal/tsan.h"

#define INITIAL_BUCKETS 64
#define MAX_INITIAL_BUCKETS (1ul << 22) /* a size hint never allocates more up front */
/* A maximum makes cds_lfht choose its mmap bucket allocator: every bucket in one reserved
 * range, so finding a bucket is an index. Without one it uses the order allocator, which
 * finds a bucket through a table of tables and a call to cds_lfht_fls_ulong (its cost:
 * docs/session.md). The price is address space, not memory: 2^24 buckets of 16 bytes, 256 MiB
 * reserved per map, populated only as the table grows; past 2^24 buckets (128M nodes at
 * liburcu's 8 per bucket) the table stops growing and chains lengthen. */
#define MAX_BUCKETS (1ul << 24)

struct lookup_key {
	const char *bytes;
	size_t len;
};

/* SipHash-1-3 of the key under the map's key (internal/hash.h). */
uint64_t tally__rcu_map_hash(const struct tally_rcu_map *map, const char *key, size_t key_len)
{
	struct tally__siphash h;

	tally__siphash_init(&h, map->hash_key);
	tally__siphash_absorb(&h, key, key_len);
	return tally__siphash_final(&h);
}

uint64_t tally__rcu_map_hash_pair(const struct tally_rcu_map *map, const char *first,
				  size_t first_len, const char *second, size_t second_len)
{
	struct tally__siphash h;

	tally__siphash_init(&h, map->hash_key);
	tally__siphash_absorb(&h, first, first_len);
	tally__siphash_absorb_zero(&h);
	tally__siphash_absorb(&h, second, second_len);
	return tally__siphash_final(&h);
}

static void seed_hash_key(uint64_t key[2])
{
	if (getrandom(key, 2 * sizeof(uint64_t), GRND_NONBLOCK) == 2 * sizeof(uint64_t))
		return;
	/* No entropy yet (early boot): a per-map address and clock mix still defeats keys
	 * precomputed offline. */
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	key[0] = (uint64_t)(uintptr_t)key ^ (uint64_t)now.tv_nsec * UINT64_C(0x9e3779b97f4a7c15);
	key[1] = (uint64_t)now.tv_sec ^ tally__rotl64(key[0], 29);
}

/* liburcu's mmap allocator aborts when its reservation fails (an RLIMIT_AS, say): reserve
 * the same range first and give cds_lfht no maximum (its order allocator) if we cannot. */
static unsigned long max_buckets_we_can_reserve(void)
{
	size_t length = MAX_BUCKETS * sizeof(struct cds_lfht_node);
	void *probe = mmap(NULL, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (probe == MAP_FAILED)
		return 0;
	munmap(probe, length);
	return MAX_BUCKETS;
}

int tally__rcu_map_init_sized(struct tally_rcu_map *map, size_t expected_nodes)
{
	unsigned long buckets = INITIAL_BUCKETS;

	while (buckets < expected_nodes && buckets < MAX_INITIAL_BUCKETS)
		buckets <<= 1;
	seed_hash_key(map->hash_key);
	map->table = cds_lfht_new_flavor(buckets, INITIAL_BUCKETS, max_buckets_we_can_reserve(),
					 CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING,
					 &urcu_memb_flavor, NULL);
	atomic_init(&map->grown_to, buckets);
	return map->table ? TALLY_OK : TALLY_ENOMEM;
}

int tally__rcu_map_grow_for(struct tally_rcu_map *map, size_t nodes)
{
	unsigned long buckets = atomic_load_explicit(&map->grown_to, memory_order_relaxed);

	if (nodes <= buckets)
		return TALLY_OK;
	if (urcu_memb_read_ongoing())
		return TALLY_EBUSY;
	while (buckets < nodes && buckets < MAX_BUCKETS)
		buckets <<= 1;
	/* Two creators racing both resize (cds_lfht serialises them); the larger mark stays. */
	cds_lfht_resize(map->table, buckets);
	for (unsigned long seen = atomic_load_explicit(&map->grown_to, memory_order_relaxed);
	     seen < buckets && !atomic_compare_exchange_weak_explicit(
				       &map->grown_to, &seen, buckets, memory_order_relaxed,
				       memory_order_relaxed);)
		;
	return TALLY_OK;
}

int tally__rcu_map_init(struct tally_rcu_map *map)
{
	return tally__rcu_map_init_sized(map, 0);
}

void tally__rcu_map_node_init(struct tally_rcu_map_node *node, const char *key, size_t key_len)
{
	cds_lfht_node_init(&node->lfht);
	node->key_offset = (int32_t)(key - (const char *)node);
	node->key_len = (uint32_t)key_len;
}

static struct tally_rcu_map_node *node_of(struct cds_lfht_node *lfht)
{
	return caa_container_of(lfht, struct tally_rcu_map_node, lfht);
}

/* Called by cds_lfht on candidates: acquire before reading the node's fields. */
static int key_matches(struct cds_lfht_node *lfht, const void *wanted)
{
	const struct tally_rcu_map_node *node = node_of(lfht);
	const struct lookup_key *key = wanted;

	TALLY_TSAN_ACQUIRE(node);
	return node->key_len == key->len &&
	       tally__rcu_map_same_bytes(tally__rcu_map_node_key(node), key->bytes, key->len);
}

struct tally_rcu_map_node *tally__rcu_map_lookup(struct tally_rcu_map *map, const char *key,
						 size_t key_len)
{
	struct lookup_key wanted = { key, key_len };
	struct cds_lfht_iter iter;
	struct cds_lfht_node *found;

	cds_lfht_lookup(map->table, tally__rcu_map_hash(map, key, key_len), key_matches,
			&wanted, &iter);
	found = cds_lfht_iter_get_node(&iter);
	if (!found)
		return NULL;
	TALLY_TSAN_ACQUIRE(node_of(found));
	return node_of(found);
}

/* A two-piece key, first NUL second (tally__rcu_map_lookup_pair). */
struct pair_key {
	const char *first, *second;
	size_t first_len, second_len;
};

static int pair_matches(struct cds_lfht_node *lfht, const void *wanted)
{
	const struct tally_rcu_map_node *node = node_of(lfht);
	const struct pair_key *key = wanted;
	const char *bytes = tally__rcu_map_node_key(node);

	TALLY_TSAN_ACQUIRE(node);
	return node->key_len == key->first_len + 1 + key->second_len &&
	       bytes[key->first_len] == '\0' &&
	       tally__rcu_map_same_bytes(bytes, key->first, key->first_len) &&
	       tally__rcu_map_same_bytes(bytes + key->first_len + 1, key->second, key->second_len);
}

struct tally_rcu_map_node *tally__rcu_map_lookup_pair(struct tally_rcu_map *map,
						      const char *first, size_t first_len,
						      const char *second, size_t second_len)
{
	struct pair_key wanted = { first, second, first_len, second_len };
	struct cds_lfht_iter iter;
	struct cds_lfht_node *found;

	cds_lfht_lookup(map->table,
			tally__rcu_map_hash_pair(map, first, first_len, second, second_len),
			pair_matches, &wanted, &iter);
	found = cds_lfht_iter_get_node(&iter);
	if (!found)
		return NULL;
	TALLY_TSAN_ACQUIRE(node_of(found));
	return node_of(found);
}

struct tally_rcu_map_node *tally__rcu_map_insert_unique(struct tally_rcu_map *map,
							struct tally_rcu_map_node *node)
{
	struct lookup_key wanted = { tally__rcu_map_node_key(node), node->key_len };
	struct cds_lfht_node *present;

	TALLY_TSAN_RELEASE(node); /* publication: pairs with the acquires in lookup/visit */
	present = cds_lfht_add_unique(map->table,
				      tally__rcu_map_hash(map, wanted.bytes, wanted.len),
				      key_matches, &wanted, &node->lfht);
	if (present != &node->lfht)
		TALLY_TSAN_ACQUIRE(node_of(present));
	return node_of(present);
}

int tally__rcu_map_remove(struct tally_rcu_map *map, struct tally_rcu_map_node *node)
{
	return cds_lfht_del(map->table, &node->lfht) == 0 ? TALLY_OK : TALLY_ENOTFOUND;
}

int tally__rcu_map_node_removed(struct tally_rcu_map_node *node)
{
	return cds_lfht_is_node_deleted(&node->lfht);
}

int tally__rcu_map_visit(struct tally_rcu_map *map,
			 int (*visit)(struct tally_rcu_map_node *node, void *arg), void *arg)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *lfht;
	int stop;

	cds_lfht_first(map->table, &iter);
	while ((lfht = cds_lfht_iter_get_node(&iter)) != NULL) {
		TALLY_TSAN_ACQUIRE(node_of(lfht));
		stop = visit(node_of(lfht), arg);
		if (stop)
			return stop;
		cds_lfht_next(map->table, &iter);
	}
	return 0;
}

/* Read lock held; no other thread of the caller's uses the map. Removes every node and
 * returns them as a list. The list reuses the key fields: no caller's reader will compare
 * keys again, and liburcu's resize worker reads only the lfht part of a node. */
static struct tally_rcu_map_node *remove_all(struct tally_rcu_map *map)
{
	struct cds_lfht_iter iter;
	struct cds_lfht_node *lfht;
	struct tally_rcu_map_node *removed = NULL, *node;

	cds_lfht_for_each(map->table, &iter, lfht) {
		if (cds_lfht_del(map->table, lfht) != 0)
			continue;
		node = node_of(lfht);
		node->next_released = removed;
		removed = node;
	}
	return removed;
}

int tally__rcu_map_destroy(struct tally_rcu_map *map,
			   void (*release_node)(struct tally_rcu_map_node *node))
{
	struct tally_rcu_map_node *removed, *next;
	int err = tally_rcu_barrier();

	if (err != TALLY_OK)
		return err;
	tally_rcu_read_lock();
	removed = remove_all(map);
	tally_rcu_read_unlock();
	/* No caller's thread uses the map now, but liburcu's resize worker may: the deletes
	 * just made can start a shrink whose worker walks the chains under its own read-side
	 * section. cds_lfht_destroy cancels and waits for it; the grace period after covers
	 * any reader still inside a chain. Only then are the nodes released. */
	cds_lfht_destroy(map->table, NULL);
	map->table = NULL;
	urcu_memb_synchronize_rcu();
	for (; removed; removed = next) {
		next = removed->next_released; /* read before release frees it */
		if (release_node)
			release_node(removed);
	}
	return TALLY_OK;
}
