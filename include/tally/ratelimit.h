/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/ratelimit.h: per-key rate limiter (API keys, client addresses, user ids), the
 * in-process form of a RateLimits table (identifier, count, window start, TTL) updated with a
 * conditional increment per request.
 *
 * One limiter applies one rule to every key, with one of two algorithms:
 *
 * TALLY_RATELIMIT_FIXED_WINDOW: at most `limit` cost units per key per window of `period_ns`
 *   (windows are [k * period_ns, (k + 1) * period_ns) of the limiter's clock). The key's state
 *   is one 64-bit atomic word packing (window index, count), so the reset at a window boundary
 *   and the count move together in one compare-and-swap.
 * TALLY_RATELIMIT_GCRA: the generic cell rate algorithm. `limit` units per `period_ns` on
 *   average, at most `burst` units at once after an idle time. The key's state is one 64-bit
 *   atomic word, the theoretical arrival time (TAT, ns). Each unit costs an emission interval
 *   T = ceil(period_ns / limit) ns (rounded up, so the rate never exceeds limit/period; exact
 *   when limit divides period_ns).
 *
 * Guarantees (under any number of concurrent callers, checked by tests and stress/ratelimit)
 * - Fixed window: the admitted cost per key per window never exceeds `limit`.
 * - GCRA: over any time span S, the admitted cost per key never exceeds burst + S / T.
 * - allow is linearizable per key (one CAS on the key's word is its linearization point) and
 *   lock-free. Memory order: the key word's CAS is a release and its loads acquire, for the
 *   limiter's own bookkeeping; do not rely on an admission to publish the caller's writes.
 * - Fixed window: a key's new window always starts at 0, however long it was idle (the
 *   word's window index is truncated, but the entry keeps the full index of the newest
 *   window: see docs/ratelimit.md).
 * - Keys are created on first use and removed when idle (see tally_ratelimit_sweep). Removing a
 *   key never changes a decision: only a key whose state is equivalent to a fresh key (window
 *   over; TAT in the past) can be removed, and the removal first swaps that exact state for a
 *   "dead" mark, so an allow racing it either lands first (the sweep's swap then fails) or
 *   sees the mark and starts a fresh key. A caller whose clock reading predates a sweep that
 *   expired its key is charged as of that sweep's reading (the fresh key never recounts an
 *   expired window); its result's times stay relative to its own reading.
 * - Clock: readings must be monotonic per thread and across threads in happens-before order
 *   (CLOCK_MONOTONIC is). A stale reading (taken before another caller's newer one) is
 *   charged conservatively: to the newer window, or against the newer TAT.
 *
 * Keys are byte strings (any bytes, not necessarily NUL-terminated) of 1 to
 * TALLY_RATELIMIT_KEY_MAX bytes; the limiter copies them.
 *
 * Threads. Registration is automatic (tally/rcu.h, on a thread's first call). Any call may
 * run in any thread, concurrently with any other call, except:
 *   tally_ratelimit_destroy  exclusive: no other call on the limiter while it runs or after
 *                            it; outside an RCU read-side section (else TALLY_EBUSY)
 * Every other call may also be made inside a tally_rcu_read_lock() section. The clock
 * (config.now_ns) is called by every caller at once and must be thread-safe.
 *
 * Errors (every call: nothing changes on error):
 * TALLY_EINVAL     NULL limiter/key/config, key_len 0, cost <= 0, cost above the limit (fixed
 *                  window) or the burst (GCRA), bad config (see tally_ratelimit_config).
 * TALLY_ETOOLONG   key_len > TALLY_RATELIMIT_KEY_MAX.
 * TALLY_ELIMITED   allow refused the request; *retry_after_ns says when it would succeed.
 * TALLY_EFULL      a new key and the limiter already holds max_keys keys (no eviction: the
 *                  caller decides to fail open or closed; sweep to make room).
 * TALLY_EOVERFLOW  the clock read outside [0, 2^62) ns (allow, peek, sweep).
 * TALLY_ENOMEM     allocation failed (create; a new key; or, in allow, the 32-byte retire
 *                  record of a removed key's entry that must be unlinked before the key
 *                  starts afresh). A removal that finds no memory for that record (sweep,
 *                  reset) still takes effect: the dead entry waits in the table, deciding
 *                  nothing, until a later call unlinks it; a sweep does not count it.
 * TALLY_ENOTFOUND  reset/peek of a key that is not present.
 * TALLY_EBUSY      destroy inside an RCU read-side section.
 * TALLY_ETHREAD    create could not start the background sweeper thread.
 */
#ifndef TALLY_RATELIMIT_H
#define TALLY_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <tally/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_RATELIMIT_KEY_MAX 256
/* Fixed window counts live in 32 bits of the key word. */
#define TALLY_RATELIMIT_WINDOW_LIMIT_MAX ((int64_t)UINT32_MAX - 1)
/* GCRA: burst * T and period_ns must stay below this (about 146 years in ns). */
#define TALLY_RATELIMIT_GCRA_SPAN_MAX ((int64_t)1 << 62)

enum tally_ratelimit_algorithm {
	TALLY_RATELIMIT_FIXED_WINDOW = 1,
	TALLY_RATELIMIT_GCRA = 2,
};

/* A monotonic clock in ns (non-negative, never decreasing). NULL in the config means
 * CLOCK_MONOTONIC. Called once per allow/peek and once per sweep; must be thread-safe. */
typedef int64_t (*tally_ratelimit_now_ns_fn)(void *clock_arg);

struct tally_ratelimit_config {
	enum tally_ratelimit_algorithm algorithm;
	int64_t limit;      /* units per period: 1..TALLY_RATELIMIT_WINDOW_LIMIT_MAX (window) */
	int64_t period_ns;  /* window length, or the period `limit` refers to (GCRA); > 0 and
			     * below 2^62 (window: at most 2^62 - 1 ns; GCRA: see SPAN_MAX) */
	int64_t burst;      /* GCRA only: units admitted at once from idle, >= 1; 0 = limit */
	int64_t max_keys;   /* cap on keys held; 0 = no cap */
	int64_t idle_ttl_ns;/* a key is removable this long after its state became fresh; >= 0 */
	int64_t sweep_interval_ns; /* > 0: a background thread sweeps this often; 0: none */
	tally_ratelimit_now_ns_fn now_ns; /* the clock in ns; NULL = CLOCK_MONOTONIC */
	void *clock_arg;
	/* >= 0: size the key table for this many keys up front (about one bucket per key:
	 * the power of two nearest expected_keys, 0.71 to 1.41 keys per bucket, at most 2^22
	 * buckets, 16 bytes each); 0 = start small. Growth from small is in steps, with
	 * up to 8 keys per bucket (longer lookups) between them. */
	int64_t expected_keys;
};

/* What a server puts in RateLimit-* / Retry-After headers. Times are ns from the call's
 * clock reading. */
struct tally_ratelimit_result {
	int64_t limit;          /* the window limit, or the GCRA burst */
	int64_t remaining;      /* units an immediate next request could still take */
	int64_t reset_ns;       /* until the key is back to full quota (window end; TAT) */
	int64_t retry_after_ns; /* 0 if admitted; else until this request would be admitted */
};

struct tally_ratelimit;

/*
 * tally_ratelimit_create: *limiter_out = a limiter with `config` (copied). Errors: EINVAL
 * (NULL, unknown algorithm, limit/period/burst <= 0 or out of range, negative
 * max_keys/ttl/interval/expected_keys, window limit above TALLY_RATELIMIT_WINDOW_LIMIT_MAX,
 * window period_ns at or above 2^62, GCRA burst * T or period_ns at or above
 * TALLY_RATELIMIT_GCRA_SPAN_MAX), ENOMEM, ETHREAD (sweeper thread).
 * Blocking only to start the sweeper.
 */
int tally_ratelimit_create(struct tally_ratelimit **limiter_out,
			   const struct tally_ratelimit_config *config);

/*
 * tally_ratelimit_destroy: stops the sweeper (joins it), frees every key. Exclusive (see
 * "Threads"). Blocking (waits for deferred frees). Errors: EINVAL (NULL), EBUSY (inside an
 * RCU read-side section: nothing is changed).
 */
int tally_ratelimit_destroy(struct tally_ratelimit *limiter);

/*
 * tally_ratelimit_allow: charges `cost` units to `key` if its limit allows, creating the key
 * on first use. TALLY_OK if admitted; TALLY_ELIMITED if refused (nothing charged), with
 * *retry_after_ns (may be NULL) set to the ns after which the same request would be admitted
 * if nothing else is charged meanwhile (0 when admitted). Lock-free. Errors: see above.
 */
int tally_ratelimit_allow(struct tally_ratelimit *limiter, const char *key, size_t key_len,
			  int64_t cost, int64_t *retry_after_ns);

/* As tally_ratelimit_allow, filling *result (may be NULL) on TALLY_OK and TALLY_ELIMITED. */
int tally_ratelimit_allow_result(struct tally_ratelimit *limiter, const char *key,
				 size_t key_len, int64_t cost,
				 struct tally_ratelimit_result *result);

/* Reports the key's quota without charging: TALLY_OK and *result, or ENOTFOUND for a key not
 * held (which would have the full quota). Reads the clock once, as allow does: EOVERFLOW
 * for a reading outside [0, 2^62) (nothing reported); also EINVAL (NULL limiter, key or
 * result; key_len 0), ETOOLONG. Wait-free apart from the map lookup and the clock. */
int tally_ratelimit_peek(struct tally_ratelimit *limiter, const char *key, size_t key_len,
			 struct tally_ratelimit_result *result);

/* Forgets `key` (an operator's "unban"): the next allow starts from a full quota. An allow
 * racing the reset is charged either to the old state (then forgotten) or to the new one.
 * Errors: EINVAL, ETOOLONG, ENOTFOUND. */
int tally_ratelimit_reset(struct tally_ratelimit *limiter, const char *key, size_t key_len);

/*
 * tally_ratelimit_sweep: removes every key idle for at least idle_ttl_ns past the moment its
 * state became fresh (fixed window: the end of its last window; GCRA: its TAT), and reclaims
 * it after an RCU grace period. *removed (may be NULL) gets the count. Lock-free; holds an RCU
 * read-side section for the walk. May run concurrently with allow and with other sweeps.
 */
int tally_ratelimit_sweep(struct tally_ratelimit *limiter, int64_t *removed);

/* Keys currently held (created and not yet removed), counting a new key from the moment
 * its creator reserves room for it until it is removed (or its creator backs out): never
 * above max_keys, even while creators are refused. Wait-free. */
int tally_ratelimit_key_count(const struct tally_ratelimit *limiter, int64_t *count);

/* Bytes one key costs, excluding the key bytes and the hash table's bucket array (16 bytes
 * per bucket, one to eight keys per bucket): the entry with its map node and state. The
 * allocation is this plus the key length, in the allocator's own size class (not rounded
 * to a cache line): with jemalloc 48 bytes for keys of up to 16 bytes, at most one 64-byte
 * line for keys of up to 32 (x86-64; 24 for a fixed window whose limit and period let the
 * packed window index wrap within 2^62 ns, which keeps 8 more bytes). A removed key also
 * holds a 32-byte retire record until its grace period ends. */
size_t tally_ratelimit_entry_size(void);

#ifdef __cplusplus
}
#endif
#endif /* TALLY_RATELIMIT_H */
