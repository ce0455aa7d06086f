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

#if TALLY__INLINE_BODIES

TALLY__INLINE int tally_counter_local_add(struct tally_counter_local *local, int64_t delta)
{
	if (TALLY_LIKELY(!local->shared)) {
		/* Single writer, as in tally_counter_add. */
		int64_t sum, old = TALLY__ATOMIC_LOAD(local->slot, TALLY__RELAXED);
		if (TALLY_UNLIKELY(__builtin_add_overflow(old, delta, &sum)))
			return TALLY_EOVERFLOW;
		TALLY__ATOMIC_STORE(local->slot, sum, TALLY__RELAXED);
		return TALLY_OK;
	}
	return tally__counter_add_slow(local->counter, delta);
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
	 * The same unsigned compare covers the thread-index states: the word minus one is
	 * UINT_MAX before the thread's first claim (word 0) and UINT_MAX - 1 when no index was
	 * free (word -1), both above any slot count, so the slow path claims or shares. */
	index = (unsigned)tally__thread_index_plus1 - 1u;
	if (TALLY_LIKELY(index < counter->slot_count)) {
		TALLY__ATOMIC(int64_t) *slot = &counter->slots[index].value;
		/* Single writer: relaxed load + store, no RMW. Readers see either value. */
		int64_t sum, old = TALLY__ATOMIC_LOAD(slot, TALLY__RELAXED);
		if (TALLY_UNLIKELY(__builtin_add_overflow(old, delta, &sum)))
			return TALLY_EOVERFLOW;
		TALLY__ATOMIC_STORE(slot, sum, TALLY__RELAXED);
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
