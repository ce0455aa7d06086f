/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Sharded counter (see tally/counter.h for the contract).
 *
 * Invariant: the counter's total is the sum of its slots; the drain checkpoint is the total
 * last handed to a drainer. Slots only change by the owner's load+store (or CAS on the shared
 * slot), so each add is visible in a slot as a whole, and a drain that reads a slot sees a
 * prefix of that slot's adds. Drains advance the checkpoint by CAS, so their deltas telescope:
 * the sum of all deltas handed out equals the last checkpoint, whatever the interleaving.
 */
#include <stdatomic.h>
#include <stddef.h>
#include "tally/counter.h"
#include "internal/alloc.h"

int tally_counter_init(struct tally_counter *counter, unsigned slots)
{
	if (!counter || slots > TALLY_COUNTER_SLOTS_MAX)
		return TALLY_EINVAL;
	if (slots == 0)
		slots = TALLY_COUNTER_SLOTS_DEFAULT;
	counter->slots = tally__alloc_aligned((size_t)(slots + 1) * sizeof(*counter->slots));
	if (!counter->slots) {
		counter->magic = 0;
		counter->slot_count = 0;
		return TALLY_ENOMEM;
	}
	counter->slot_count = slots;
	atomic_init(&counter->checkpoint, 0);
	counter->magic = TALLY_COUNTER_MAGIC;
	return TALLY_OK;
}

int tally_counter_destroy(struct tally_counter *counter)
{
	if (!counter)
		return TALLY_EINVAL;
	if (counter->magic != TALLY_COUNTER_MAGIC)
		return TALLY_EDESTROYED;
	counter->magic = 0;
	tally__free_aligned(counter->slots);
	counter->slots = NULL;
	counter->slot_count = 0;
	return TALLY_OK;
}

int tally_counter_local_init(struct tally_counter *counter, struct tally_counter_local *local)
{
	int index;

	if (!counter || !local)
		return TALLY_EINVAL;
	if (counter->magic != TALLY_COUNTER_MAGIC)
		return TALLY_EDESTROYED;
	index = tally_thread_index();
	local->counter = counter;
	local->shared = (unsigned)index >= counter->slot_count;
	local->slot = &counter->slots[local->shared ? counter->slot_count : (unsigned)index].value;
	return TALLY_OK;
}

/* Everything the inline add leaves to us: the argument checks, the thread's first add
 * (claims its index), and threads without a slot of their own (the shared slot, by CAS). */
int tally__counter_add_slow(struct tally_counter *counter, int64_t delta)
{
	_Atomic int64_t *shared;
	int64_t old, sum;
	int index;

	if (!counter)
		return TALLY_EINVAL;
	if (counter->magic != TALLY_COUNTER_MAGIC)
		return TALLY_EDESTROYED;
	index = tally_thread_index();
	if ((unsigned)index < counter->slot_count)
		return tally_counter_add(counter, delta);
	shared = &counter->slots[counter->slot_count].value;
	old = atomic_load_explicit(shared, memory_order_relaxed);
	do {
		if (__builtin_add_overflow(old, delta, &sum))
			return TALLY_EOVERFLOW;
	} while (!atomic_compare_exchange_weak_explicit(shared, &old, sum, memory_order_relaxed,
							 memory_order_relaxed));
	return TALLY_OK;
}

/* Sum of every slot, wide enough that it cannot overflow (at most 1025 int64 terms). */
static __int128 sum_slots(const struct tally_counter *counter)
{
	__int128 total = 0;

	for (unsigned i = 0; i <= counter->slot_count; i++)
		total += atomic_load_explicit(&counter->slots[i].value, memory_order_relaxed);
	return total;
}

static int fits_int64(__int128 value)
{
	return value >= INT64_MIN && value <= INT64_MAX;
}

int tally_counter_read(const struct tally_counter *counter, int64_t *total)
{
	__int128 sum;

	if (!counter || !total)
		return TALLY_EINVAL;
	if (counter->magic != TALLY_COUNTER_MAGIC)
		return TALLY_EDESTROYED;
	sum = sum_slots(counter);
	if (!fits_int64(sum))
		return TALLY_EOVERFLOW;
	*total = (int64_t)sum;
	return TALLY_OK;
}

int tally_counter_drain(struct tally_counter *counter, int64_t *delta)
{
	int64_t checkpoint;
	__int128 total;

	if (!counter || !delta)
		return TALLY_EINVAL;
	if (counter->magic != TALLY_COUNTER_MAGIC)
		return TALLY_EDESTROYED;
	checkpoint = atomic_load_explicit(&counter->checkpoint, memory_order_relaxed);
	for (;;) {
		total = sum_slots(counter);
		if (!fits_int64(total) || !fits_int64(total - checkpoint))
			return TALLY_EOVERFLOW;
		/* Relaxed is enough: the checkpoint orders nothing but itself. */
		if (atomic_compare_exchange_weak_explicit(&counter->checkpoint, &checkpoint,
							  (int64_t)total, memory_order_relaxed,
							  memory_order_relaxed))
			break;
	}
	*delta = (int64_t)(total - checkpoint);
	return TALLY_OK;
}

int tally_counter_undrain(struct tally_counter *counter, int64_t delta)
{
	int64_t checkpoint, restored;

	if (!counter)
		return TALLY_EINVAL;
	if (counter->magic != TALLY_COUNTER_MAGIC)
		return TALLY_EDESTROYED;
	checkpoint = atomic_load_explicit(&counter->checkpoint, memory_order_relaxed);
	do {
		if (__builtin_sub_overflow(checkpoint, delta, &restored))
			return TALLY_EOVERFLOW;
	} while (!atomic_compare_exchange_weak_explicit(&counter->checkpoint, &checkpoint, restored,
							 memory_order_relaxed, memory_order_relaxed));
	return TALLY_OK;
}
