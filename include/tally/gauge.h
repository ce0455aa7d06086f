/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/gauge.h: floor-guarded gauges (listener counts, stock levels).
 *
 * A gauge's value never goes below its floor (default 0) nor above its ceiling
 * (TALLY_GAUGE_NO_CEILING for none). A decrement that would cross the floor fails with
 * TALLY_EFLOOR and changes nothing: the in-process form of DynamoDB's
 * `ADD :neg ... ConditionExpression count >= :n`. Every sub(n) is all-or-nothing.
 *
 * Two forms with the same verbs:
 *
 * struct tally_gauge (single word). Value in one atomic int64 updated by a CAS loop with
 * exponential backoff (Concurrency Kit's ck_backoff).
 * - add/sub/inc/dec: linearizable, lock-free. A successful update is acq_rel: what a thread
 *   wrote before its update is visible to a thread that reads the value it produced.
 * - read: linearizable, wait-free, acquire.
 *
 * struct tally_sgauge (sharded). The value above the floor is split into tokens spread over
 * cache-line shards; a thread works on its own shard and only visits others when its shard
 * is short. With a ceiling, the room below the ceiling is a second set of tokens.
 * - Safety, in every interleaving: a successful decrement never takes the value below the
 *   floor and a successful increment never takes it above the ceiling (tokens are taken by
 *   CAS before the value moves; they are never created).
 * - add/sub: lock-free. A sub(n) that cannot find n tokens on its own shard scans the others;
 *   if it must gather from several shards it marks itself in flight.
 * - When may a sub fail although the total was large enough? Only while tokens are in flight:
 *   taken by another multi-shard sub that has not finished (or, with a ceiling, by an add or
 *   sub between its two steps). A failing scan that saw such activity retries up to
 *   TALLY_SGAUGE_RETRIES times with backoff before it reports EFLOOR. A sub that fails while
 *   only plain adds and single-shard subs run is linearizable (it saw a value below n).
 * - read: lock-free; floor + the sum of shards, not an atomic snapshot while writers run
 *   (tokens in flight are not counted), clamped to [floor, ceiling]; exact at any quiescent
 *   point.
 * - Memory: 64 bytes + shards * 64 bytes (twice that with a ceiling).
 *
 * Threads. No registration. Any call may run in any thread, concurrently with any other
 * call, except:
 *   tally_gauge_init, tally_sgauge_init        exclusive: no other call on the gauge before
 *                                              it returns
 *   tally_gauge_destroy, tally_sgauge_destroy  exclusive: no other call on the gauge while
 *                                              it runs or after it
 *
 * Errors: TALLY_EINVAL (NULL, n <= 0, floor > ceiling, initial outside [floor, ceiling];
 * for tally_sgauge also shards above TALLY_SGAUGE_SHARDS_MAX, or initial - floor or
 * ceiling - floor outside int64), TALLY_EFLOOR, TALLY_ECEILING (also for an add whose sum
 * would leave int64 when there is a ceiling), TALLY_EOVERFLOW (only without a ceiling, and
 * the value would leave int64: tally_gauge at the update; tally_sgauge when no shard can
 * hold n more, and at read when floor + tokens leaves int64), TALLY_EDESTROYED (a gauge after
 * destroy while its memory lives, or zeroed memory never initialised: a check of a marker
 * word, so uninitialised garbage is undefined, never detected), TALLY_ENOMEM.
 */
#ifndef TALLY_GAUGE_H
#define TALLY_GAUGE_H

#include <stdint.h>
#include <tally/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_GAUGE_NO_CEILING INT64_MAX
#define TALLY_SGAUGE_SHARDS_MAX 256
#define TALLY_SGAUGE_RETRIES 8

/* Caller-owned (stack, static, heap); layouts in tally/static/gauge.h, fields private. */
struct tally_gauge;
struct tally_sgauge;

/* tally_gauge_init: value = initial, bounds [floor, ceiling] (TALLY_GAUGE_NO_CEILING: none).
 * Exclusive (see "Threads"). Errors: EINVAL (NULL, floor > ceiling,
 * initial outside [floor, ceiling]). */
int tally_gauge_init(struct tally_gauge *gauge, int64_t initial, int64_t floor, int64_t ceiling);
/* tally_gauge_destroy: later calls return EDESTROYED. Exclusive (see "Threads").
 * Errors: EINVAL (NULL), EDESTROYED (destroyed, or zeroed and never initialised). */
int tally_gauge_destroy(struct tally_gauge *gauge);
/* Adds n > 0. *value_out (may be NULL) receives the value this call produced. Lock-free,
 * acq_rel. Errors: EINVAL (NULL, n <= 0), ECEILING (value + n > ceiling), EOVERFLOW (no
 * ceiling and value + n leaves int64), EDESTROYED; on error nothing changes. */
int tally_gauge_add(struct tally_gauge *gauge, int64_t n, int64_t *value_out);
/* Subtracts n > 0 if the result stays >= floor. Lock-free, acq_rel. Errors: EINVAL (NULL,
 * n <= 0), EFLOOR (value - n < floor), EDESTROYED; on error nothing changes. */
int tally_gauge_sub(struct tally_gauge *gauge, int64_t n, int64_t *value_out);
/* tally_gauge_add(gauge, 1, value_out): same guarantees and errors. */
int tally_gauge_inc(struct tally_gauge *gauge, int64_t *value_out);
/* tally_gauge_sub(gauge, 1, value_out): same guarantees and errors. */
int tally_gauge_dec(struct tally_gauge *gauge, int64_t *value_out);
/* *value = the current value. Wait-free, acquire (sees what the producing update's thread
 * wrote before it). Errors: EINVAL (NULL), EDESTROYED. */
int tally_gauge_read(const struct tally_gauge *gauge, int64_t *value);

/* tally_sgauge_init: like tally_gauge_init, with `shards` shards (0 = one per CPU, min 2),
 * rounded up to a power of two. Exclusive (see "Threads"). Errors: EINVAL
 * (as tally_gauge_init, shards above TALLY_SGAUGE_SHARDS_MAX, initial - floor or ceiling -
 * floor outside int64), ENOMEM. */
int tally_sgauge_init(struct tally_sgauge *gauge, int64_t initial, int64_t floor,
		      int64_t ceiling, unsigned shards);
/* tally_sgauge_destroy: frees the shards; later calls return EDESTROYED. Exclusive (see
 * "Threads"). Errors: EINVAL (NULL), EDESTROYED. */
int tally_sgauge_destroy(struct tally_sgauge *gauge);
/* Adds n > 0 (to the calling thread's shard). Lock-free. Errors: EINVAL (NULL, n <= 0),
 * ECEILING (with a ceiling: not n tokens of headroom, see "When may a sub fail" above),
 * EOVERFLOW (no ceiling: no shard can hold n more), EDESTROYED; on error nothing changes. */
int tally_sgauge_add(struct tally_sgauge *gauge, int64_t n);
/* Subtracts n > 0 if n tokens above the floor can be gathered. Lock-free. Errors: EINVAL
 * (NULL, n <= 0), EFLOOR (see "When may a sub fail" above), EDESTROYED; on error nothing
 * changes. */
int tally_sgauge_sub(struct tally_sgauge *gauge, int64_t n);
/* tally_sgauge_add(gauge, 1): same guarantees and errors. */
int tally_sgauge_inc(struct tally_sgauge *gauge);
/* tally_sgauge_sub(gauge, 1): same guarantees and errors. */
int tally_sgauge_dec(struct tally_sgauge *gauge);
/* *value = floor + the tokens of every shard, clamped to [floor, ceiling]. Lock-free, not a
 * snapshot while writers run (see "read" above). Errors: EINVAL (NULL), EOVERFLOW (floor +
 * tokens leaves int64), EDESTROYED. */
int tally_sgauge_read(const struct tally_sgauge *gauge, int64_t *value);

#ifdef __cplusplus
}
#endif

#include <tally/static/gauge.h>

#endif /* TALLY_GAUGE_H */
