/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/static/counter.h: layout and inline fast paths of tally_counter.
 * Fields are private: use the calls in tally/counter.h.
 */
#ifndef TALLY_STATIC_COUNTER_H
#define TALLY_STATIC_COUNTER_H

#include <stdbool.h>
#include <stdint.h>
#include <tally/counter.h>
#include <tally/error.h>
#include <tally/static/compat.h>
#include <tally/static/thread_index.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_COUNTER_MAGIC 0x746c7963u /* "tlyc" */

struct tally_counter_slot {
	TALLY__ATOMIC(int64_t) value; /* written only by the slot's owning thread (or CAS: shared slot) */
	char pad[64 - sizeof(int64_t)];
};

struct tally_counter {
	uint32_t magic;                   /* TALLY_COUNTER_MAGIC while alive; written by init/destroy */
	uint32_t slot_count;              /* single-writer slots; slots[slot_count] is shared */
	struct tally_counter_slot *slots; /* slot_count + 1 cache lines */
	TALLY__ATOMIC(int64_t) checkpoint;       /* total handed out by drains; CAS by drainers */
};

struct tally_counter_local {
	TALLY__ATOMIC(int64_t) *slot;         /* the binding thread's slot, or the shared slot */
	struct tally_counter *counter; /* for the shared-slot path */
	bool shared;                   /* slot is the shared one: update by CAS */
};

int tally__counter_add_slow(struct tally_counter *counter, int64_t delta);

/*
 * The slot accesses of the inline paths. On x86-64 (outside ThreadSanitizer) the owner's
 * store is one `movq` in inline assembly that names the slot as its only memory operand:
 * the instruction a relaxed atomic store compiles to (an aligned 8-byte store is
 * single-copy atomic), but the compiler knows it writes nothing else, whereas GCC treats
 * every __atomic store as touching all memory and reloads the caller's loop invariants (a
 * local handle's slot pointer) after each one. Likewise the shared slot's CAS is a
 * `lock cmpxchgq` on the slot alone, so a local handle's loop has no call in it and keeps the
 * handle in registers. Elsewhere, and under ThreadSanitizer (which must see every access),
 * these are the C11 relaxed store and CAS: the same semantics.
 */
#if defined(__SANITIZE_THREAD__)
#define TALLY__COUNTER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TALLY__COUNTER_TSAN 1
#endif
#endif
#if defined(__x86_64__) && !defined(TALLY__COUNTER_TSAN)
#define TALLY__COUNTER_ASM 1
#else
#define TALLY__COUNTER_ASM 0
#endif

#if TALLY__INLINE_BODIES

/* Relaxed store by the slot's single writer. */
static inline void tally__counter_slot_store(TALLY__ATOMIC(int64_t) *slot, int64_t value)
{
#if TALLY__COUNTER_ASM
	__asm__ __volatile__("movq %1, %0" : "=m"(*(int64_t *)slot) : "r"(value));
#else
	TALLY__ATOMIC_STORE(slot, value, TALLY__RELAXED);
#endif
}

/* Relaxed CAS on a slot with several writers: true (and *value = sum) if *old was current;
 * otherwise *old is the value found. */
static inline bool tally__counter_slot_cas(TALLY__ATOMIC(int64_t) *slot, int64_t *old,
					   int64_t sum)
{
#if TALLY__COUNTER_ASM
	bool swapped;

	__asm__ __volatile__("lock cmpxchgq %3, %1"
			     : "=@ccz"(swapped), "+m"(*(int64_t *)slot), "+a"(*old)
			     : "r"(sum));
	return swapped;
#elif defined(__cplusplus)
	return __atomic_compare_exchange_n(slot, old, sum, true, __ATOMIC_RELAXED,
					   __ATOMIC_RELAXED);
#else
	return atomic_compare_exchange_weak_explicit(slot, old, sum, memory_order_relaxed,
						     memory_order_relaxed);
#endif
}

/* A local handle on the shared slot: a CAS loop, inline so that the caller's loop has no
 * call in it. EDESTROYED once the counter is destroyed (its struct must still be alive). */
static inline int tally__counter_local_add_shared(const struct tally_counter_local *local,
						  TALLY__ATOMIC(int64_t) *slot, int64_t delta)
{
	int64_t sum, old;

	if (TALLY_UNLIKELY(local->counter->magic != TALLY_COUNTER_MAGIC))
		return TALLY_EDESTROYED;
	old = TALLY__ATOMIC_LOAD(slot, TALLY__RELAXED);
	do {
		if (__builtin_add_overflow(old, delta, &sum))
			return TALLY_EOVERFLOW;
	} while (!tally__counter_slot_cas(slot, &old, sum));
	return TALLY_OK;
}

TALLY__INLINE int tally_counter_local_add(struct tally_counter_local *local, int64_t delta)
{
	/* Both fields are read before the slot's atomic load, which GCC also treats as a
	 * barrier to later loads: read after it, they would be reloaded every call of a loop. */
	TALLY__ATOMIC(int64_t) *slot = local->slot;
	bool shared = local->shared;
	int64_t sum, old;

	if (TALLY_UNLIKELY(shared))
		return tally__counter_local_add_shared(local, slot, delta);
	/* Single writer, as in tally_counter_add. */
	old = TALLY__ATOMIC_LOAD(slot, TALLY__RELAXED);
	if (TALLY_UNLIKELY(__builtin_add_overflow(old, delta, &sum)))
		return TALLY_EOVERFLOW;
	tally__counter_slot_store(slot, sum);
	return TALLY_OK;
}

TALLY__INLINE int tally_counter_local_inc(struct tally_counter_local *local)
{
	return tally_counter_local_add(local, 1);
}

TALLY__INLINE int tally_counter_add(struct tally_counter *counter, int64_t delta)
{
	unsigned index;

	if (TALLY_UNLIKELY(!counter))
		return TALLY_EINVAL;
	/* No magic check here: init sets slot_count last-but-one and destroy zeroes it, so a
	 * destroyed (or zero-filled, never initialised) counter fails the bounds check below and
	 * the slow path reports TALLY_EDESTROYED. One load less per add.
	 * One unsigned compare covers every other case too: the thread-index word minus one is
	 * UINT_MAX before the thread's first claim (word 0) and UINT_MAX - 1 when none was
	 * free (word -1), both above any slot count, so the slow path claims or shares. */
	index = (unsigned)tally__thread_index_plus1 - 1u;
	if (TALLY_LIKELY(index < counter->slot_count)) {
		TALLY__ATOMIC(int64_t) *slot = &counter->slots[index].value;
		/* Single writer: relaxed load + store, no RMW. Readers see either value. */
		int64_t sum, old = TALLY__ATOMIC_LOAD(slot, TALLY__RELAXED);
		if (TALLY_UNLIKELY(__builtin_add_overflow(old, delta, &sum)))
			return TALLY_EOVERFLOW;
		tally__counter_slot_store(slot, sum);
		return TALLY_OK;
	}
	return tally__counter_add_slow(counter, delta);
}

TALLY__INLINE int tally_counter_sub(struct tally_counter *counter, int64_t delta)
{
	if (TALLY_UNLIKELY(delta == INT64_MIN))
		return counter ? TALLY_EOVERFLOW : TALLY_EINVAL;
	return tally_counter_add(counter, -delta);
}

TALLY__INLINE int tally_counter_inc(struct tally_counter *counter)
{
	return tally_counter_add(counter, 1);
}

#endif /* TALLY__INLINE_BODIES */

#ifdef __cplusplus
}
#endif
#endif
