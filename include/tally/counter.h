/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/counter.h: sharded counter for hot, unbounded counts (page views, bytes, events).
 *
 * Each thread adds into its own cache-line slot of the counter (a single-writer relaxed
 * load + store, no read-modify-write), so concurrent writers never share a cache line.
 * Readers sum the slots. Threads with no slot of their own (more live threads than slots)
 * share one extra slot with an atomic compare-and-swap.
 *
 * Guarantees
 * - add/sub/inc: wait-free on the thread's own slot (lock-free on the shared slot). Not
 *   linearizable as a whole (no total order with reads); each update is counted exactly once.
 *   Memory order: relaxed. An add does not publish other data; do not use it as a flag.
 * - read: lock-free, O(slots). The sum of slots read one by one: not an atomic snapshot while
 *   writers run, exact at any quiescent point.
 * - drain: lock-free. Returns exactly what was added since the previous drain: across any
 *   sequence of drains, concurrent with any adds, the deltas sum to the total, and each
 *   update lands in exactly one delta (a delta may include an add that is still "running",
 *   never half of one). Drains may run concurrently with each other.
 * - Thread exit: the thread's slot keeps its value; a later thread reuses the slot, so thread
 *   pools never grow memory. Memory per counter: 64 bytes of header plus (slots + 1) * 64 bytes.
 *
 * Threads. No registration. Any call may run in any thread, concurrently with any other
 * call, except:
 *   tally_counter_init            exclusive: no other call on the counter before it returns
 *   tally_counter_destroy         exclusive: no other call on the counter or its local
 *                                 handles while it runs or after it
 *   tally_counter_local_add/_inc  only in the thread that bound the handle (updates through
 *                                 it from another thread are lost)
 *
 * Caller duties: a `struct tally_counter` is owned by the caller (stack, static, heap).
 *
 * Errors: TALLY_EINVAL (NULL argument, slot count above TALLY_COUNTER_SLOTS_MAX),
 * TALLY_EDESTROYED (destroyed, or zeroed memory never initialised, detected while the struct's
 * memory lives; garbage is not detected),
 * TALLY_EOVERFLOW (a slot or the total would leave the int64 range; nothing changes),
 * TALLY_ENOMEM.
 */
#ifndef TALLY_COUNTER_H
#define TALLY_COUNTER_H

#include <stdint.h>
#include <tally/error.h>
#include <tally/static/compat.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_COUNTER_SLOTS_DEFAULT 64
#define TALLY_COUNTER_SLOTS_MAX 1024

struct tally_counter;

/*
 * tally_counter_init: prepares `counter` with `slots` single-writer slots (0 = default 64).
 * Threads whose index is >= slots use the shared slot. Exclusive (see "Threads").
 * Errors: EINVAL, ENOMEM.
 */
int tally_counter_init(struct tally_counter *counter, unsigned slots);

/* tally_counter_destroy: frees the slots; later calls return TALLY_EDESTROYED. Exclusive
 * (see "Threads"). */
int tally_counter_destroy(struct tally_counter *counter);

/* Adds `delta` (any int64, 0 included). EOVERFLOW if the thread's slot would overflow. */
TALLY__INLINE int tally_counter_add(struct tally_counter *counter, int64_t delta);
/* Subtracts `delta`; EOVERFLOW for INT64_MIN or slot overflow. */
TALLY__INLINE int tally_counter_sub(struct tally_counter *counter, int64_t delta);
/* tally_counter_add(counter, 1): same guarantees and errors. */
TALLY__INLINE int tally_counter_inc(struct tally_counter *counter);

/*
 * A local handle: the calling thread's slot of one counter, bound once, for hot loops.
 * tally_counter_local_add then costs a load, an add with overflow check and a store: no
 * thread-index lookup, no bounds check. The handle belongs to the thread that bound it and is
 * valid until that thread exits or the counter is destroyed; using it from another thread
 * loses updates (two writers on one slot). A thread without a slot of its own (more live
 * threads than slots) gets a handle on the shared slot, which updates by CAS.
 */
struct tally_counter_local;
/* Binds *local to the calling thread's slot of `counter`. Errors: EINVAL, EDESTROYED. */
int tally_counter_local_init(struct tally_counter *counter, struct tally_counter_local *local);
/* Adds `delta` through the handle: wait-free on an own slot, lock-free on the shared one.
 * Errors: EOVERFLOW (the slot would leave int64; nothing changes), EDESTROYED (shared slot,
 * counter destroyed). No NULL check: the handle must come from tally_counter_local_init. */
TALLY__INLINE int tally_counter_local_add(struct tally_counter_local *local, int64_t delta);
/* tally_counter_local_add(local, 1). */
TALLY__INLINE int tally_counter_local_inc(struct tally_counter_local *local);

/*
 * tally_counter_read: *total = sum of all slots (see "read" above).
 * EOVERFLOW if the sum is outside int64 (each slot is in range; their sum may not be).
 */
int tally_counter_read(const struct tally_counter *counter, int64_t *total);

/*
 * tally_counter_drain: *delta = total now - total at the previous drain (0 at init), and
 * records "now" as the new checkpoint. This is what a write-behind flusher ships.
 * EOVERFLOW (nothing recorded) if the total or the delta is outside int64.
 */
int tally_counter_drain(struct tally_counter *counter, int64_t *delta);

/*
 * tally_counter_undrain: gives `delta` back to the next drain: the flusher could not ship
 * it (store down), and the next drain returns it again, merged with newer adds.
 * EOVERFLOW if the checkpoint would leave int64.
 */
int tally_counter_undrain(struct tally_counter *counter, int64_t delta);

#ifdef __cplusplus
}
#endif

#include <tally/static/counter.h>

#endif /* TALLY_COUNTER_H */
