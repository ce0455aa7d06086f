/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/internal/rcu_map.h: a string-keyed, RCU-protected hash map on liburcu's cds_lfht
 * (memb flavour, auto-resizing). Shared by every tally table: sessions, connections,
 * sequence registries, rate-limit keys.
 *
 * A node is embedded in its owner's struct; the key bytes live in the owner and must not
 * change while the node is in the map. Keys are byte strings (any bytes), compared by length
 * and memcmp; hashed with SipHash-1-3 under a per-map random key, so a client that picks keys
 * (API keys, addresses) cannot aim them at one bucket.
 *
 * Concurrency (all calls lock-free; lookups wait-free apart from chain length):
 * - lookup, insert_unique, remove and visit must be called inside tally_rcu_read_lock().
 *   A node returned by lookup stays readable until the caller leaves its read-side section.
 * - remove returns TALLY_OK to exactly one caller per inserted node: the one whose removal
 *   took effect. That caller (only) then retires the node's owner with tally__rcu_retire
 *   (internal/rcu.h) on an rcu head the owner keeps on a cold line: the node itself holds only
 *   what a lookup reads, so an owner can put its key and hot fields on the node's line.
 * - insert_unique is linearizable with lookup and remove of the same key.
 * - ThreadSanitizer sees publication: insert releases the node, lookup and visit acquire it.
 */
#ifndef TALLY_INTERNAL_RCU_MAP_H
#define TALLY_INTERNAL_RCU_MAP_H
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>
#include "internal/rcu.h"

struct tally_rcu_map {
	struct cds_lfht *table;
	uint64_t hash_key[2]; /* SipHash key, random per map */
	_Atomic unsigned long grown_to; /* buckets init or tally__rcu_map_grow_for made sure of */
};

/* 24 bytes: everything a lookup reads of a node it passes or matches. The key is named by
 * its offset from the node (it lives in the owner), not by a pointer, which leaves an owner
 * 8 more bytes of the node's cache line for a short key or hot fields. */
struct tally_rcu_map_node {
	struct cds_lfht_node lfht;
	union {
		struct {
			int32_t key_offset; /* owner's bytes at (char *)node + key_offset */
			uint32_t key_len;   /* both immutable while in the map */
		};
		struct tally_rcu_map_node *next_released; /* destroy's list, once removed */
	};
};

/* The node's key bytes (key_len of them). */
static inline const char *tally__rcu_map_node_key(const struct tally_rcu_map_node *node)
{
	return (const char *)node + node->key_offset;
}

/* memcmp(a, b, len) == 0, inline for up to 16 bytes (most ids): two overlapping loads per
 * side instead of a call into libc (its share of a lookup: docs/session.md, Performance). */
static inline int tally__rcu_map_same_bytes(const char *a, const char *b, size_t len)
{
	uint64_t a8, b8, a8_end, b8_end;
	uint32_t a4, b4, a4_end, b4_end;

	if (len > 16)
		return memcmp(a, b, len) == 0;
	if (len >= 8) {
		memcpy(&a8, a, 8), memcpy(&b8, b, 8);
		memcpy(&a8_end, a + len - 8, 8), memcpy(&b8_end, b + len - 8, 8);
		return ((a8 ^ b8) | (a8_end ^ b8_end)) == 0;
	}
	if (len >= 4) {
		memcpy(&a4, a, 4), memcpy(&b4, b, 4);
		memcpy(&a4_end, a + len - 4, 4), memcpy(&b4_end, b + len - 4, 4);
		return ((a4 ^ b4) | (a4_end ^ b4_end)) == 0;
	}
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return 0;
	return 1;
}

/* Creates an empty map. Errors: TALLY_ENOMEM. Any thread; no read lock needed. The bucket
 * table reserves 256 MiB of address space, not memory (MAX_BUCKETS in rcu_map.c). */
int tally__rcu_map_init(struct tally_rcu_map *map);
/* As tally__rcu_map_init, with about one bucket per expected node from the start (rounded up
 * to a power of two, at most 2^22) rather than growing to it: cds_lfht grows by its count in
 * steps, so a table filled from small can hold up to 8 nodes per bucket between them. */
int tally__rcu_map_init_sized(struct tally_rcu_map *map, size_t expected_nodes);

/* Outside any read-side section, blocking (cds_lfht_resize waits for grace periods): makes
 * the bucket table about one bucket per node for `nodes` nodes now (a power of two, at most
 * MAX_BUCKETS) when it has not been made that large already, instead of leaving it to
 * liburcu's lazy resize, which runs in a background worker and, on a busy machine, can lag
 * behind a burst of inserts for seconds (chains of 150 nodes for 10,000 nodes in 64
 * buckets). For creation paths that may block; a no-op when already that large. Errors:
 * TALLY_EBUSY (inside a read-side section: nothing done). */
int tally__rcu_map_grow_for(struct tally_rcu_map *map, size_t nodes);

/*
 * Destroys the map. Every node still in it is removed and handed to release_node (may be
 * NULL when the caller frees them otherwise) once liburcu's resize worker, which may still
 * be walking the chains, has stopped and a grace period has passed, before destroy returns.
 * The caller guarantees no other thread of its own uses the map. Waits for pending retires
 * (tally_rcu_barrier), so call it outside any read-side section. Errors: TALLY_EBUSY (inside
 * a read-side section).
 */
int tally__rcu_map_destroy(struct tally_rcu_map *map,
			   void (*release_node)(struct tally_rcu_map_node *node));

/* Points `node` at its key: key_len bytes inside the node's owner (within 2 GiB of the node;
 * at most UINT32_MAX bytes), unchanged while the node is in the map. */
void tally__rcu_map_node_init(struct tally_rcu_map_node *node, const char *key, size_t key_len);

/* Read lock held. The node with this key, or NULL. */
struct tally_rcu_map_node *tally__rcu_map_lookup(struct tally_rcu_map *map, const char *key,
						 size_t key_len);

/* Read lock held. The node whose key is first, one NUL byte, second (first_len + 1 +
 * second_len bytes), or NULL: tally__rcu_map_lookup of the joined key, without joining it
 * (for owners keyed by two names, such as a sequence's "tenant\0series"). */
struct tally_rcu_map_node *tally__rcu_map_lookup_pair(struct tally_rcu_map *map,
						      const char *first, size_t first_len,
						      const char *second, size_t second_len);

/* Read lock held. Inserts `node` unless its key is present: returns `node` when inserted,
 * else the node already present (and `node` is left untouched). */
struct tally_rcu_map_node *tally__rcu_map_insert_unique(struct tally_rcu_map *map,
							struct tally_rcu_map_node *node);

/* Read lock held. TALLY_OK if this call removed `node`; TALLY_ENOTFOUND if it was already
 * removed (by this or another thread). */
int tally__rcu_map_remove(struct tally_rcu_map *map, struct tally_rcu_map_node *node);

/* 1 if `node` has been removed from its map (read lock held). */
int tally__rcu_map_node_removed(struct tally_rcu_map_node *node);

/* Read lock held. Calls visit(node, arg) for each node until visit returns non-zero, which
 * is then returned (0 after a full pass). Nodes added or removed during the walk may or may
 * not be visited; every node present throughout is visited once. */
int tally__rcu_map_visit(struct tally_rcu_map *map,
			 int (*visit)(struct tally_rcu_map_node *node, void *arg), void *arg);

/* SipHash-1-3 of the bytes under the map's key (exposed for secondary indexes). */
uint64_t tally__rcu_map_hash(const struct tally_rcu_map *map, const char *key, size_t key_len);
/* tally__rcu_map_hash of first, one NUL byte, second, computed without joining them. */
uint64_t tally__rcu_map_hash_pair(const struct tally_rcu_map *map, const char *first,
				  size_t first_len, const char *second, size_t second_len);

#endif
