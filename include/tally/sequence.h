/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/sequence.h: per-tenant sequence allocator (invoice numbers such as INV-20261123-000001).
 *
 * A struct tally_sequence is a registry of series keyed by (tenant, series), both non-empty
 * strings of at most TALLY_SEQ_ID_MAX bytes. Tenants are isolated: each (tenant, series)
 * has its own counter. A series renders numbers with a template (see "Templates") and
 * restarts its counter at 1 every period (never, daily, monthly, yearly) computed in UTC
 * shifted by a fixed offset in minutes (no time-zone database: DST rules would make
 * periods depend on process-global TZ state).
 *
 * A number is (period, counter): period is the index of its period (days, months or years
 * since 1970-01 in the series' offset; 0 for TALLY_SEQ_RESET_NEVER), counter starts at 1.
 * Its rendered date comes from its period, never from a second clock read.
 *
 * Modes
 * - TALLY_SEQ_STRICT: one 64-bit atomic word packs (period, last counter). The rollover is
 *   one compare-and-swap from (old period, n) to (new period, first); a single number of a
 *   series without a lease, once the word is in the caller's period, is one fetch_add on it
 *   (reservations and leased series use a CAS loop). So the period rollover and the counter
 *   move together: no number has
 *   one period's date with another period's counter, none repeats across the boundary, and
 *   after any thread saw the new period no thread issues in the old one. Within a series and
 *   period the issued numbers are 1..N with no gaps in normal operation (see "Gaps").
 *   next: linearizable; wait-free without a lease except at a rollover or at the width limit
 *   (a CAS loop there: lock-free), lock-free with a lease; blocking only when it must extend
 *   a lease or take a released number from the release list, which is mutex-protected.
 * - TALLY_SEQ_CACHED: each thread takes blocks of `cache_block` numbers from the same word
 *   and hands them out from a thread-local cache: unique but not ordered across threads,
 *   with gaps (blocks not used up when a thread exits, when the series is removed, or at a
 *   period change). A thread that takes its next block within 10 ms of the previous one
 *   takes twice as many, up to 16 x cache_block (and TALLY_SEQ_CACHE_BLOCK_MAX): a hot
 *   thread pays the shared-word RMW less often; a quiet one keeps cache_block, so its gaps
 *   stay small. A gap is at most one block per thread and series. next: wait-free on the cached path, lock-free when taking a block.
 *   Threads cache blocks for at most TALLY_SEQ_THREAD_CACHE series at a time (others evict).
 *   Rule for removed series: cache entries are keyed by a never-reused series id, so a block
 *   cached for a removed series is simply never used again (its numbers become gaps).
 *
 * Gaps in strict mode happen only when: numbers are released from a reservation and the
 * period ends before they are issued again (they are voided and counted in stats); numbers
 * are released and the series is removed or the process stops before they are reissued; a
 * crash (see "Leases"); or another process shares the same lease key (each process issues
 * from its own leased blocks: unique, not consecutive).
 *
 * Reservations: reserve n (1..TALLY_SEQ_RESERVE_MAX) numbers at once, commit some or all,
 * release the rest. Strict mode hands released numbers out again (smallest first, current
 * period only) before fresh ones; cached mode voids them. A reservation is owned by one
 * thread at a time and must be finished before its series is removed (see "Threads").
 *
 * Leases (tally/lease.h). With a provider, a series never issues a number above its durable
 * high-water mark: when the next number would pass it, one thread (under the series' lease
 * mutex) extends the mark by lease_size in one provider call while other threads that
 * also need it wait on that mutex; numbers below the mark are issued without I/O. At series
 * creation the series resumes above the stored mark, so no number is ever issued twice
 * across restarts or across processes sharing the store. Crash report: each lease extension
 * also stores the issued watermark (the last number issued when it ran), tally_series_
 * checkpoint() stores it on demand, and a clean removal stores it, gives the unused rest of
 * the lease back and marks the key clean. When a series is created over a record that is not
 * clean, struct tally_seq_recovery reports the range (checkpoint, mark]: every number in it
 * was either issued before the crash (after the last checkpoint) or is lost. The allocator
 * cannot tell which without a store write per number; the operator reconciles the range
 * against the invoice store and voids the missing ones. Numbers waiting in the release list
 * (strict mode) are lost at a crash; the checkpoint written by each lease extension and by
 * tally_series_checkpoint is lowered to just below the smallest of them, so those released
 * before the last such write are inside the report, those released after it are not (call
 * tally_series_checkpoint after releases to cover them: one provider write).
 *
 * Templates: literal text plus fields in braces; "{{" and "}}" are literal braces.
 *   {counter}        the counter, at most 12 digits, no padding
 *   {counter:0N}     zero-padded to N digits, N in 1..12 written without leading zeros
 *                    ({counter:06}; {counter:006} is TALLY_EFORMAT); a counter above
 *                    10^N - 1 is never issued (TALLY_EWIDTH): never a wider or wrapped number
 *   {date:SPEC}      the period's date; SPEC has %Y (4 digits: years 1970..9999, see
 *                    "Clock"), %y (2), %m, %d, %% and
 *                    literal characters. Only units down to the reset period are allowed
 *                    (%d needs daily reset, %m monthly or daily, no date with reset never)
 *   {date}           %Y%m%d, %Y%m or %Y for daily, monthly, yearly reset
 *   {tenant} {series} the ids
 * Exactly one counter field. At most TALLY_SEQ_FORMAT_MAX bytes and 32 pieces. An empty
 * spec ({date:}) and a brace inside a field ({date:%Y{%m}) are TALLY_EFORMAT: braces are
 * literal only doubled, outside fields.
 *
 * Clock: the default reads CLOCK_REALTIME on every issue of a resetting series (exact at
 * midnight). tally_seq_now_s_coarse (CLOCK_REALTIME_COARSE) is cheaper where the kernel's
 * clock source makes CLOCK_REALTIME a slow call, at the cost of dating numbers issued in the
 * first few milliseconds (one scheduler tick) of a period with the previous period.
 * Range: a reading shifted by the series' offset must lie in [0, TALLY_SEQ_CLOCK_MAX)
 * (1970-01-01T00:00:00 to 9999-12-31T23:59:59); outside it (e.g. milliseconds passed as
 * seconds) next, next_text and reserve of a resetting series return TALLY_EOVERFLOW and
 * issue nothing. A series that never resets does not read the clock. Rendering a number
 * whose period lies past 9999 (never one the clock gave) with a date field is
 * TALLY_EOVERFLOW, never a 5-digit year.
 *
 * Memory ordering: issuing does not publish other data (do not use numbers as flags).
 *
 * Threads. Registration is automatic (tally/rcu.h, on a thread's first call). Any call may
 * run in any thread, concurrently with any other call, except:
 *   tally_sequence_destroy        exclusive: no other call on the registry, its series
 *                                 handles or their reservations while it runs or after it
 *   tally_sequence_series_remove  no call through a handle of that series (tally_series_*)
 *                                 or on a reservation made from it while it runs or after it
 *   tally_seq_reservation_*       one call at a time per reservation (its owner thread; it
 *                                 may hand the reservation to another), none after _finish
 * destroy and series_remove wait for a grace period: outside an RCU read-side section
 * (else TALLY_EBUSY). The clock (options.now_s) is called by every issuing thread at once and
 * must be thread-safe. By-name calls look the series up and issue under the RCU read lock,
 * so they may overlap a remove (TALLY_ENOTFOUND once it took effect); a handle from
 * tally_sequence_series_find skips the lookup and the read lock (the hot path), hence the
 * rule above. A late handle call may be detected (TALLY_EDESTROYED) while the memory still
 * lives; that is a diagnostic, not a guarantee.
 *
 * Errors (per call below): TALLY_EINVAL (NULL, bad enum, out-of-range option, reserve of 0 or
 * more than TALLY_SEQ_RESERVE_MAX), TALLY_ETOOLONG (id or template too long; output buffer
 * too small for the rendered number plus NUL), TALLY_EOVERFLOW (clock out of range, see
 * "Clock"), TALLY_EFORMAT, TALLY_EWIDTH, TALLY_EEXIST,
 * TALLY_ENOTFOUND, TALLY_EDESTROYED, TALLY_ENOTRESERVED, TALLY_ENOMEM, TALLY_EBUSY (remove
 * or destroy inside an RCU read-side section), and from the lease provider TALLY_EIO,
 * TALLY_ECORRUPT. A failed call issues nothing and changes nothing.
 */
#ifndef TALLY_SEQUENCE_H
#define TALLY_SEQUENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <tally/error.h>
#include <tally/lease.h>
#include <tally/static/compat.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_SEQ_ID_MAX 64
#define TALLY_SEQ_FORMAT_MAX 128
#define TALLY_SEQ_RESERVE_MAX 4096
#define TALLY_SEQ_COUNTER_DIGITS_MAX 12
#define TALLY_SEQ_CACHE_BLOCK_DEFAULT 64
#define TALLY_SEQ_CACHE_BLOCK_MAX 65536
#define TALLY_SEQ_LEASE_SIZE_DEFAULT 1000
#define TALLY_SEQ_UTC_OFFSET_MAX (18 * 60)
#define TALLY_SEQ_THREAD_CACHE 8
/* Clock readings, shifted by a series' offset, must lie in [0, TALLY_SEQ_CLOCK_MAX):
 * 1970-01-01T00:00:00 to 9999-12-31T23:59:59 (10000-01-01 is 253402300800). */
#define TALLY_SEQ_CLOCK_MAX INT64_C(253402300800)

enum tally_seq_mode { TALLY_SEQ_STRICT = 0, TALLY_SEQ_CACHED = 1 };
enum tally_seq_reset {
	TALLY_SEQ_RESET_NEVER = 0,
	TALLY_SEQ_RESET_DAILY = 1,
	TALLY_SEQ_RESET_MONTHLY = 2,
	TALLY_SEQ_RESET_YEARLY = 3,
};

/* Wall clock: UTC seconds since 1970. Called on every issue of a series that resets. */
typedef int64_t (*tally_seq_now_s_fn)(void *arg);

/* A clock on CLOCK_REALTIME_COARSE (see "Clock" above); arg is ignored. */
int64_t tally_seq_now_s_coarse(void *arg);

struct tally_sequence_options {
	tally_seq_now_s_fn now_s; /* the wall clock in UTC seconds; NULL: CLOCK_REALTIME */
	void *clock_arg;
	/* > 0: size the registry for this many series up front (about one 16-byte bucket per
	 * series, at most 2^22); 0: start at 64 buckets, grown by series creation. */
	size_t expected_series;
};

struct tally_series_config {
	const char *format;             /* template, required */
	enum tally_seq_mode mode;
	enum tally_seq_reset reset;
	int32_t utc_offset_minutes;     /* |offset| <= TALLY_SEQ_UTC_OFFSET_MAX */
	uint32_t cache_block;           /* cached mode: 0 = default, <= TALLY_SEQ_CACHE_BLOCK_MAX */
	struct tally_lease_provider *lease; /* NULL: no durability */
	uint32_t lease_size;            /* 0 = default 1000, <= TALLY_LEASE_SIZE_MAX */
};

struct tally_seq_number {
	uint64_t counter; /* 1-based within its period */
	uint32_t period;  /* period index (see above) */
};

/* What a series found in its lease record at creation. */
struct tally_seq_recovery {
	bool resumed;           /* a record existed: numbers continue above its mark */
	bool unclean;           /* the previous owner did not close cleanly */
	uint32_t period;        /* period of the unaccounted range */
	uint64_t first_counter; /* unaccounted range [first, last]: issued before the crash */
	uint64_t last_counter;  /* after the last checkpoint, or lost. Empty: count == 0 */
	uint64_t count;
};

struct tally_series_stats {
	struct tally_seq_number last; /* strict: last fresh number issued; cached: last handed
				       * to a thread's block ({0,0} before the first) */
	uint64_t lease_mark;          /* packed lease high-water mark held (0 without lease) */
	uint64_t lease_calls;         /* provider acquire calls made by this series */
	uint64_t released_pending;    /* released numbers waiting for reuse (strict) */
	uint64_t voided;              /* released numbers never reissued (period ended, cached) */
};

struct tally_sequence;
struct tally_series;
struct tally_seq_reservation;

/* Creates an empty registry. opts may be NULL. Errors: EINVAL, ENOMEM. */
int tally_sequence_create(struct tally_sequence **out, const struct tally_sequence_options *opts);

/*
 * Destroys the registry: every series is closed as by tally_sequence_series_remove (lease
 * given back and marked clean) and freed. Exclusive (see "Threads").
 * Blocking; call outside an RCU read-side section. Returns the first provider error met
 * (everything is freed regardless). Errors: EINVAL, EBUSY, EIO, ECORRUPT.
 */
int tally_sequence_destroy(struct tally_sequence *seq);

/*
 * Creates series (tenant, series). With a lease provider, reads its record first and fills
 * *recovery (may be NULL). Blocking: when the registry's series outgrow its buckets (past 64,
 * or expected_series), the creating call grows it (waits for RCU grace periods); called
 * inside a read-side section it leaves that to liburcu's background resize.
 * Errors: EINVAL, ETOOLONG, EFORMAT, EEXIST, ENOMEM, EIO, ECORRUPT.
 */
int tally_sequence_series_create(struct tally_sequence *seq, const char *tenant,
				 const char *series, const struct tally_series_config *config,
				 struct tally_seq_recovery *recovery);

/*
 * Removes a series: later by-name calls return ENOTFOUND; waits for calls in flight (an RCU
 * grace period), then closes its lease (checkpoint, give back the unused rest, mark clean)
 * and fills *final (may be NULL). Not concurrent with calls through its handles (see
 * "Threads"). Blocking. The series is removed even if the provider fails (the error is
 * returned; the record then stays unclean: the next owner gets a recovery report). Errors: EINVAL, ETOOLONG, ENOTFOUND, EBUSY, EIO, ECORRUPT.
 */
int tally_sequence_series_remove(struct tally_sequence *seq, const char *tenant,
				 const char *series, struct tally_series_stats *final);

/* A handle for the hot path (see the lifetime rule above). Errors: EINVAL, ETOOLONG,
 * ENOTFOUND. */
int tally_sequence_series_find(struct tally_sequence *seq, const char *tenant,
			       const char *series, struct tally_series **handle);

/* Issues the next number. Errors: EINVAL, ENOTFOUND/EDESTROYED, EWIDTH, EOVERFLOW (clock
 * out of range), EIO, ECORRUPT, ENOMEM (lease extension only). */
int tally_sequence_next(struct tally_sequence *seq, const char *tenant, const char *series,
			struct tally_seq_number *out);
/* Issues and renders into buf (size bytes with the NUL). A number that does not fit the
 * buffer is still issued (ETOOLONG is returned with *out set when out is non-NULL): size
 * the buffer from the template. */
int tally_sequence_next_text(struct tally_sequence *seq, const char *tenant,
			     const char *series, char *buf, size_t size,
			     struct tally_seq_number *out);

/* The handle form of next (same errors). Inline (tally/static/sequence.h) for series that
 * never reset: a cached series' thread-block hit is served without a call; a strict series
 * without a lease is one relaxed load of a read-mostly word and one fetch_add on the series
 * word, calling out only when released numbers wait, at the width limit or after remove. */
TALLY__INLINE int tally_series_next(struct tally_series *series, struct tally_seq_number *out);

/* Renders `number` with the series' template. Wait-free, no side effects.
 * Errors: EINVAL, EWIDTH (counter above the template's width), ETOOLONG (buffer),
 * EOVERFLOW (a date field and a period past 9999-12-31). */
int tally_series_format(const struct tally_series *series, const struct tally_seq_number *number,
			char *buf, size_t size);

/* Reserves n numbers (released ones first in strict mode, then a consecutive fresh range).
 * Errors: EINVAL (n == 0 or n > TALLY_SEQ_RESERVE_MAX), EWIDTH, EOVERFLOW (clock out of
 * range), ENOMEM, EIO, ECORRUPT, EDESTROYED. */
int tally_series_reserve(struct tally_series *series, uint32_t n,
			 struct tally_seq_reservation **out);
/* The reserved numbers, sorted by (period, counter). Valid until finish. */
int tally_seq_reservation_numbers(const struct tally_seq_reservation *reservation,
				  const struct tally_seq_number **numbers, uint32_t *count);
/* Marks a reserved number used. ENOTRESERVED: not in this reservation, already committed
 * or released. */
int tally_seq_reservation_commit(struct tally_seq_reservation *reservation,
				 const struct tally_seq_number *number);
/* Gives a reserved number back. ENOTRESERVED as for commit (double release included). */
int tally_seq_reservation_release(struct tally_seq_reservation *reservation,
				  const struct tally_seq_number *number);
/* Ends the reservation: the numbers still open are committed (commit_rest) or released;
 * frees it. Errors: EINVAL. */
int tally_seq_reservation_finish(struct tally_seq_reservation *reservation, bool commit_rest);

/* Stores the issued watermark in the lease provider (no-op without one), tightening the
 * crash report. Blocking (one provider call). Errors: EIO, ECORRUPT, EDESTROYED. */
int tally_series_checkpoint(struct tally_series *series);
/* *out = the series' counters (struct tally_series_stats). Lock-free reads of each field,
 * not a snapshot across fields. Errors: EINVAL (NULL). */
int tally_series_get_stats(const struct tally_series *series, struct tally_series_stats *out);

/* Period index of UTC second `now_s` for a reset rule and offset (exposed for tests and for
 * callers that render dates themselves). Returns 0 for TALLY_SEQ_RESET_NEVER. A reading out
 * of range (see "Clock") is clamped: before 1970 (in the offset) as 1970-01-01T00:00:00,
 * from 10000-01-01 as 9999-12-31T23:59:59; a series refuses such readings instead. */
uint32_t tally_seq_period_of(int64_t now_s, enum tally_seq_reset reset,
			     int32_t utc_offset_minutes);

#ifdef __cplusplus
}
#endif

#include <tally/static/sequence.h>
#endif /* TALLY_SEQUENCE_H */
