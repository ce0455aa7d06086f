/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/internal/hash.h: 64-bit FNV-1a, the checksum of the lease file's records (and what its
 * test recomputes to forge a valid record), the store's duplicate-key check of a batch, and
 * the hash of the benchmarks' peer tables (bench/ includes this header: it is inline only,
 * so they still link nothing but libtally's API). Not for hash tables that take keys from
 * outside: FNV is not keyed, so inputs can be chosen to collide; tally's maps use keyed
 * SipHash.
 */
#ifndef TALLY_INTERNAL_HASH_H
#define TALLY_INTERNAL_HASH_H
#include <stddef.h>
#include <stdint.h>

#define TALLY__FNV1A64_BASIS UINT64_C(0xcbf29ce484222325)
#define TALLY__FNV1A64_PRIME UINT64_C(0x100000001b3)

/* Continues an FNV-1a hash over `len` bytes; start with TALLY__FNV1A64_BASIS. */
static inline uint64_t tally__fnv1a64(uint64_t hash, const void *bytes, size_t len)
{
	const unsigned char *byte = bytes;

	for (size_t i = 0; i < len; i++) {
		hash ^= byte[i];
		hash *= TALLY__FNV1A64_PRIME;
	}
	return hash;
}

/*
 * SipHash-1-3 (one compression round, three finalisation rounds) under a 128-bit key: the
 * keyed hash of tally's maps (internal/rcu_map.h), in streaming form, so that a key made of
 * pieces (a tenant, a NUL, a series) hashes as the bytes joined, without joining them.
 * Pure functions of their inputs; no state outside the caller's.
 */

/* SipHash-1-3 in progress: absorb the message's pieces in order, then finish. */
struct tally__siphash {
	uint64_t v0, v1, v2, v3;
	uint64_t pending; /* the last len % 8 bytes, little-endian, not yet compressed */
	size_t len;       /* bytes absorbed so far */
};

static inline uint64_t tally__rotl64(uint64_t x, int bits)
{
	return (x << bits) | (x >> (64 - bits));
}

/* One SipRound on the state. Inline, so that a caller's state lives in registers (an
 * out-of-line round on memory was a tenth of a map lookup). */
static inline void tally__sip_round(struct tally__siphash *h)
{
	h->v0 += h->v1, h->v1 = tally__rotl64(h->v1, 13), h->v1 ^= h->v0;
	h->v0 = tally__rotl64(h->v0, 32);
	h->v2 += h->v3, h->v3 = tally__rotl64(h->v3, 16), h->v3 ^= h->v2;
	h->v0 += h->v3, h->v3 = tally__rotl64(h->v3, 21), h->v3 ^= h->v0;
	h->v2 += h->v1, h->v1 = tally__rotl64(h->v1, 17), h->v1 ^= h->v2;
	h->v2 = tally__rotl64(h->v2, 32);
}

static inline void tally__sip_compress(struct tally__siphash *h, uint64_t word)
{
	h->v3 ^= word;
	tally__sip_round(h);
	h->v0 ^= word;
}

/* Little-endian whatever the host: the hash of a key must not depend on how it was split,
 * and the byte-wise tail below is little-endian by construction. */
static inline uint64_t tally__load_le64(const unsigned char *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	       (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
	       (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

static inline void tally__siphash_init(struct tally__siphash *h, const uint64_t key[2])
{
	h->v0 = key[0] ^ UINT64_C(0x736f6d6570736575);
	h->v1 = key[1] ^ UINT64_C(0x646f72616e646f6d);
	h->v2 = key[0] ^ UINT64_C(0x6c7967656e657261);
	h->v3 = key[1] ^ UINT64_C(0x7465646279746573);
	h->pending = 0;
	h->len = 0;
}

/* Appends `len` bytes to the message. */
static inline void tally__siphash_absorb(struct tally__siphash *h, const void *bytes,
					 size_t len)
{
	const unsigned char *p = bytes;
	size_t fill = h->len & 7;

	h->len += len;
	if (fill) { /* top up the word a previous piece left part-filled */
		for (; fill < 8 && len > 0; fill++, len--)
			h->pending |= (uint64_t)*p++ << (8 * fill);
		if (fill < 8)
			return;
		tally__sip_compress(h, h->pending);
		h->pending = 0;
	}
	for (; len >= 8; p += 8, len -= 8)
		tally__sip_compress(h, tally__load_le64(p));
	for (size_t i = 0; i < len; i++)
		h->pending |= (uint64_t)p[i] << (8 * i);
}

/* Appends one zero byte (a separator between pieces): nothing to or into pending. */
static inline void tally__siphash_absorb_zero(struct tally__siphash *h)
{
	if ((++h->len & 7) == 0) {
		tally__sip_compress(h, h->pending);
		h->pending = 0;
	}
}

/* The hash of everything absorbed (the state is spent). */
static inline uint64_t tally__siphash_final(struct tally__siphash *h)
{
	tally__sip_compress(h, h->pending | (uint64_t)h->len << 56);
	h->v2 ^= 0xff;
	tally__sip_round(h);
	tally__sip_round(h);
	tally__sip_round(h);
	return h->v0 ^ h->v1 ^ h->v2 ^ h->v3;
}

#endif
