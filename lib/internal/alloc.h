/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/internal/alloc.h: cache-line-aligned, zeroed allocations for shards and slots.
 * Backed by jemalloc's mallocx when configured --with-jemalloc (the default when found),
 * else by aligned_alloc. Sizes are rounded up to a multiple of the alignment.
 */
#ifndef TALLY_INTERNAL_ALLOC_H
#define TALLY_INTERNAL_ALLOC_H
#include <stddef.h>

#define TALLY_CACHE_LINE 64

/* Returns zeroed memory aligned to TALLY_CACHE_LINE, or NULL. */
void *tally__alloc_aligned(size_t size);
/* Returns zeroed memory of at least `size` bytes in the allocator's own size class (16-byte
 * aligned, not rounded to a cache line: a 48-byte record takes 48 bytes), or NULL. For small
 * records that are many (rate-limit keys) where bytes count more than line alignment. Free
 * with tally__free_aligned. */
void *tally__alloc_packed(size_t size);
/* Frees memory from tally__alloc_aligned or tally__alloc_packed; NULL is a no-op. */
void tally__free_aligned(void *ptr);

#endif
