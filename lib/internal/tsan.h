/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/internal/tsan.h: ThreadSanitizer annotations for orderings TSan cannot see.
 *
 * liburcu (0.13, Debian) publishes nodes with inline-assembly atomics and ends grace periods
 * with membarrier; TSan instruments neither. tally annotates its own side of those edges:
 * TALLY_TSAN_RELEASE before a node is published, TALLY_TSAN_ACQUIRE before its fields are read
 * by a lookup, and the grace-period edge from every read-side critical section to a reclaim.
 * Without TSan these compile to nothing.
 */
#ifndef TALLY_INTERNAL_TSAN_H
#define TALLY_INTERNAL_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define TALLY_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TALLY_TSAN 1
#endif
#endif

#ifdef TALLY_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define TALLY_TSAN_ACQUIRE(addr) __tsan_acquire((void *)(addr))
#define TALLY_TSAN_RELEASE(addr) __tsan_release((void *)(addr))
#else
#define TALLY_TSAN_ACQUIRE(addr) ((void)(addr))
#define TALLY_TSAN_RELEASE(addr) ((void)(addr))
#endif

#endif
