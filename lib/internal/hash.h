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

#endif
