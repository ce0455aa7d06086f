/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/heap.h: heap bytes in use, for the bench programs' memory-per-record counters.
 * Not thread-safe against concurrent allocation by other threads (call it from a setup).
 */
#ifndef TALLY_BENCH_HEAP_H
#define TALLY_BENCH_HEAP_H

#include <stddef.h>

/* Bytes allocated and not freed: glibc malloc's (mallinfo2: the peers', liburcu's) plus
 * jemalloc's stats.allocated when libtally brought jemalloc (tally's own records,
 * lib/internal/alloc.c: mallocx), looked up at run time so a build without jemalloc needs
 * nothing. Memory mapped directly (liburcu's mmap bucket allocator, which tally's maps use)
 * is not included. */
size_t bench_heap_bytes(void);

#endif
