/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Per-tenant sequence allocator (tally/sequence.h): registry, issuing, leases.
 * Reservations and the release list live in reserve.c.
 *
 * The series word. `state` packs (period << COUNTER_BITS) | counter, where counter is the
 * last number handed out in that period (0: none yet). Every fresh number or block is taken
 * by one CAS on this word, so a period change and the counter reset are a single atomic
 * step; the word only grows (period in the high bits), which also makes it a natural lease
 * mark: the lease provider stores packed words, and "above the mark" means above in
 * (period, counter) order.
 *
 * Leases. `lease_hi` is the highest packed value this process may hand out (UINT64_MAX
 * without a provider). An issuer whose next value is above it takes `lease_lock`, re-checks,
 * and makes one provider call; the provider returns a base >= the current word (another
 * process may have leased in between), the extender raises `state` to base (skipping what
 * others own) and only then publishes the new `lease_hi` with a release store. An issuer
 * that read the old word and the new lease_hi fails its CAS, because the skip happened
 * before (in the word's modification order) the store it acquired.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <urcu/urcu-memb.h>
#include "internal/alloc.h"
#include "internal/backoff.h"
#include "internal/rcu_map.h"
#include "sequence/series.h"

static _Atomic uint64_t next_series_id = 1; /* never reused: keys the thread caches */

static int64_t realtime_clock(void *arg)
{
	struct timespec now;

	(void)arg;
	clock_gettime(CLOCK_REALTIME, &now);
	return (int64_t)now.tv_sec;
}

int tally__seq_current_period(const struct tally_series *s, uint32_t *period)
{
	*period = 0;
	if (s->reset == TALLY_SEQ_RESET_NEVER)
		return TALLY_OK;
	return seq_period_at(s->seq->now_s(s->seq->clock_arg), s->reset, s->utc_offset_minutes,
			     period);
}

/*
 * Plans the next k numbers after word `cur` at clock period `now_period`: the range
 * [start, end] (packed). A period behind the word's (a clock read before another thread's
 * rollover) issues in the word's period: the word never goes back. `partial` shrinks the
 * range to what the template width allows. Returns EWIDTH if not even one number fits.
 */
static int plan(const struct tally_series *s, uint64_t cur, uint32_t now_period, uint64_t k,
		bool partial, uint64_t *start, uint64_t *end)
{
	uint32_t period = SEQ_PERIOD(cur) > now_period ? SEQ_PERIOD(cur) : now_period;
	uint64_t last = period == SEQ_PERIOD(cur) ? SEQ_COUNTER(cur) : 0;
	uint64_t first = last + 1, final = last + k;

	if (first > s->tmpl.max_counter)
		return TALLY_EWIDTH;
	if (final > s->tmpl.max_counter) {
		if (!partial)
			return TALLY_EWIDTH;
		final = s->tmpl.max_counter;
	}
	*start = SEQ_PACK(period, first);
	*end = SEQ_PACK(period, final);
	return TALLY_OK;
}

/*
 * The issued watermark stored with a lease extension or checkpoint (the crash report starts
 * above it): the word, lowered to just below the smallest number waiting in the release
 * list in the word's period. A released number was handed out once and taken back; if the
 * process dies before reissuing it, it is a gap, so it must be inside the report. Lowering
 * costs nothing extra (the write happens anyway) and only widens the report: every number
 * in it is still either issued or lost. A number released after the last such write is
 * covered from the next one (tally_series_checkpoint forces one). Only for acquire: a clean
 * close stores the word itself (its issued value is where the next owner continues).
 */
static uint64_t issued_watermark(struct tally_series *s, uint64_t word)
{
	uint64_t mark = word;

	pthread_mutex_lock(&s->release_lock);
	if (s->released_len > 0) {
		uint64_t lowest = s->released[s->released_len - 1];

		/* An older period's released numbers are voided at the rollover, not reissued. */
		if (SEQ_PERIOD(lowest) == SEQ_PERIOD(word) && lowest - 1 < mark)
			mark = lowest - 1;
	}
	pthread_mutex_unlock(&s->release_lock);
	return mark;
}

/* Slow path: extend the lease so that k numbers after the current word are covered. */
static int extend_lease(struct tally_series *s, uint32_t now_period, uint64_t k, bool partial)
{
	uint64_t cur, start, end, base, size;
	int err;

	pthread_mutex_lock(&s->lease_lock);
	cur = atomic_load_explicit(&s->hot.state, memory_order_acquire);
	err = plan(s, cur, now_period, k, partial, &start, &end);
	/* Relaxed: lease_hi is only written under lease_lock, which we hold. */
	if (err || end <= atomic_load_explicit(&s->lease_hi, memory_order_relaxed))
		goto out;
	size = k > s->lease_size ? k : s->lease_size;
	/* The block starts after start - 1: the current word, or (period, 0) at a rollover. */
	err = tally_lease_acquire(s->lease, s->key, s->key_len, start - 1, size,
				  issued_watermark(s, cur), &base);
	if (err)
		goto out;
	/* Skip what other owners hold: raise the word to base before publishing lease_hi. */
	cur = atomic_load_explicit(&s->hot.state, memory_order_relaxed);
	while (cur < base &&
	       !atomic_compare_exchange_weak_explicit(&s->hot.state, &cur, base, memory_order_acq_rel,
						      memory_order_relaxed))
		;
	/* Release: pairs with the acquire load in take_fresh; the skip above is before it. */
	atomic_store_explicit(&s->lease_hi, base + size, memory_order_release);
	atomic_fetch_add_explicit(&s->lease_calls, 1, memory_order_relaxed);
out:
	pthread_mutex_unlock(&s->lease_lock);
	return err;
}

/*
 * The fetch-and-add path, for series without a lease provider, when the word is already in
 * the caller's period (or a later one) and below the width limit. One fetch_add on the word
 * takes [old + 1, old + k]: the (period, counter) pair it returns is consistent by
 * construction, and it cannot cross a rollover, which is only ever a CAS from the exact
 * (old period, n) to (new period, first): a fetch_add ordered before that CAS issues in the
 * old period (linearized at the fetch_add), one ordered after issues in the new one. Only
 * single numbers and partial blocks come here: a number past the width limit is EWIDTH and
 * a block is cut at the limit, so nothing inside the valid range is ever lost, while a
 * non-partial range (a reservation) that could straddle the limit keeps the CAS loop (it
 * must take all or nothing). The counter field can run past max_counter only by the adds
 * in flight (at most one k per thread): each caller that went past brings the word back
 * to (period, max) before it returns: far below the 2^40 - 10^12 spare counter values, so
 * it never carries into the period bits. Series with a lease keep the
 * CAS loop: a fetch_add could run past lease_hi, and a number taken there may lie in a
 * block another owner leased (see extend_lease), which the CAS path rules out by failing.
 * Returns false when the caller must take the CAS path.
 */
/*
 * A fetch_add of k returned `old` and went past the width limit: bring the word back to
 * (period, max) so that repeated calls cannot carry into the period bits. Only values above
 * max (never issued) are undone, so no number can be handed out twice.
 */
static void undo_overshoot(struct tally_series *s, uint64_t old, uint64_t k)
{
	uint64_t cap = SEQ_PACK(SEQ_PERIOD(old), s->tmpl.max_counter), cur = old + k;

	while (SEQ_PERIOD(cur) == SEQ_PERIOD(old) && cur > cap &&
	       !atomic_compare_exchange_weak_explicit(&s->hot.state, &cur, cap,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

static bool take_fresh_add(struct tally_series *s, uint32_t now_period, uint64_t k,
			   bool partial, uint64_t *first, uint64_t *count, int *err)
{
	uint64_t old, last, cur;

	if (s->lease || (k != 1 && !partial))
		return false;
	if (s->reset != TALLY_SEQ_RESET_NEVER) {
		/* The period may need a rollover (a CAS). A series that never resets skips this
		 * load: under contention a load before the RMW costs a second line transfer. */
		cur = atomic_load_explicit(&s->hot.state, memory_order_relaxed);
		if (SEQ_PERIOD(cur) < now_period || SEQ_COUNTER(cur) >= s->tmpl.max_counter)
			return false;
	}
	/* Relaxed: numbers publish nothing; the RMW itself decides ownership. */
	old = atomic_fetch_add_explicit(&s->hot.state, k, memory_order_relaxed);
	if (SEQ_COUNTER(old) + k > s->tmpl.max_counter)
		undo_overshoot(s, old, k);
	if (SEQ_COUNTER(old) >= s->tmpl.max_counter) {
		*err = TALLY_EWIDTH; /* nothing valid was taken */
		return true;
	}
	last = SEQ_COUNTER(old) + k > s->tmpl.max_counter
		       ? SEQ_PACK(SEQ_PERIOD(old), s->tmpl.max_counter) : old + k;
	*first = old + 1;
	*count = last - old;
	*err = TALLY_OK;
	return true;
}

int tally__seq_take_fresh(struct tally_series *s, uint32_t now_period, uint64_t k, bool partial,
			  uint64_t *first, uint64_t *count)
{
	tally_backoff_t backoff = TALLY_BACKOFF_INITIALIZER;
	uint64_t cur;
	int add_err;

	if (take_fresh_add(s, now_period, k, partial, first, count, &add_err))
		return add_err;
	cur = atomic_load_explicit(&s->hot.state, memory_order_relaxed);
	for (;;) {
		uint64_t start, end;
		int err = plan(s, cur, now_period, k, partial, &start, &end);

		if (err)
			return err;
		/* Acquire: pairs with the release store in extend_lease. */
		if (end > atomic_load_explicit(&s->lease_hi, memory_order_acquire)) {
			err = extend_lease(s, now_period, k, partial);
			if (err)
				return err;
			cur = atomic_load_explicit(&s->hot.state, memory_order_relaxed);
			continue;
		}
		/* acq_rel/relaxed: numbers publish nothing; the CAS itself decides ownership. */
		if (atomic_compare_exchange_strong_explicit(&s->hot.state, &cur, end,
							    memory_order_acq_rel,
							    memory_order_relaxed)) {
			*first = start;
			*count = end - start + 1;
			return TALLY_OK;
		}
		tally__backoff(&backoff);
	}
}

/* Cached mode: this thread's blocks, keyed by series id (never reused). initial-exec: read
 * on every cached issue, inline too (tally/static/sequence.h); a general-dynamic access would
 * cost a __tls_get_addr call (see tally/static/thread_index.h). */
_Thread_local struct tally__seq_block tally__seq_blocks[TALLY_SEQ_THREAD_CACHE]
	__attribute__((tls_model("initial-exec")));
static _Thread_local unsigned thread_block_victim __attribute__((tls_model("initial-exec")));

/* This thread's block slot for s: its home slot (id mod TALLY_SEQ_THREAD_CACHE), the one the
 * inline path reads. If s's block sits elsewhere it is swapped home; if s has none, the home
 * occupant (perhaps a block of a removed series, which nothing else would ever evict) moves
 * to a victim slot when it still has numbers, and the home slot is emptied for s. Keeping
 * every series at home matters: a series parked in another slot missed the inline path on
 * every number. */
static struct tally__seq_block *home_block(const struct tally_series *s)
{
	uint64_t id = s->hot.head.id;
	struct tally__seq_block *home = &tally__seq_blocks[id % TALLY_SEQ_THREAD_CACHE];
	struct tally__seq_block swap;

	if (home->series_id == id)
		return home;
	for (unsigned i = 0; i < TALLY_SEQ_THREAD_CACHE; i++)
		if (tally__seq_blocks[i].series_id == id) {
			swap = *home;
			*home = tally__seq_blocks[i];
			tally__seq_blocks[i] = swap;
			return home;
		}
	if (home->series_id != 0 && home->next <= home->end) {
		struct tally__seq_block *victim =
			&tally__seq_blocks[thread_block_victim++ % TALLY_SEQ_THREAD_CACHE];

		if (victim != home)
			*victim = *home; /* the victim's own numbers, if any, are given up */
	}
	home->series_id = 0;
	return home;
}

/* A thread that empties its blocks fast takes bigger ones: each take within CACHED_HOT_MS of
 * the previous doubles the block, up to CACHED_GROWTH_MAX times cache_block; a slower take
 * starts again from cache_block. Every take is an RMW on the line all issuers share (a
 * cache-line transfer between cores; docs/sequence.md, Costs, has its price), so a hot thread
 * amortises it over more numbers, while a quiet one keeps small blocks and small gaps. */
#define CACHED_HOT_MS 10
#define CACHED_GROWTH_MAX 16

static int64_t coarse_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
	return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static uint32_t next_block_size(const struct tally_series *s, struct tally__seq_block *block)
{
	uint32_t now = (uint32_t)coarse_ms(); /* see tally__seq_block.taken_ms */
	uint64_t size = s->cache_block;
	uint64_t cap = (uint64_t)s->cache_block * CACHED_GROWTH_MAX;

	if (cap > TALLY_SEQ_CACHE_BLOCK_MAX)
		cap = TALLY_SEQ_CACHE_BLOCK_MAX;
	if (block->series_id == s->hot.head.id && (uint32_t)(now - block->taken_ms) < CACHED_HOT_MS &&
	    block->size >= s->cache_block)
		size = (uint64_t)block->size * 2 < cap ? (uint64_t)block->size * 2 : cap;
	if (size < s->cache_block) /* cap below cache_block cannot happen; keep it obvious */
		size = s->cache_block;
	block->taken_ms = now;
	return (uint32_t)size;
}

static int next_cached(struct tally_series *s, struct tally_seq_number *out)
{
	struct tally__seq_block *block = home_block(s);
	uint64_t first, count;
	uint32_t size, now_period;
	int err = tally__seq_current_period(s, &now_period);

	if (err)
		return err;
	if (block->series_id == s->hot.head.id && block->next <= block->end &&
	    SEQ_PERIOD(block->next) >= now_period) {
		out->period = SEQ_PERIOD(block->next);
		out->counter = SEQ_COUNTER(block->next);
		block->next++;
		return TALLY_OK;
	}
	size = next_block_size(s, block);
	err = tally__seq_take_fresh(s, now_period, size, true, &first, &count);
	if (err)
		return err;
	block->series_id = s->hot.head.id;
	block->size = size;
	block->next = first + 1;
	block->end = first + count - 1;
	out->period = SEQ_PERIOD(first);
	out->counter = SEQ_COUNTER(first);
	return TALLY_OK;
}

static int next_strict(struct tally_series *s, struct tally_seq_number *out)
{
	uint32_t now_period;
	uint64_t first, count;
	int err = tally__seq_current_period(s, &now_period);

	if (err)
		return err;
	/* Acquire: pairs with the release in seq_release_number; the lock is taken inside. */
	if (atomic_load_explicit(&s->released_count, memory_order_acquire) > 0 &&
	    tally__seq_take_released(s, now_period, 1, &first) == 1) {
		out->period = SEQ_PERIOD(first);
		out->counter = SEQ_COUNTER(first);
		return TALLY_OK;
	}
	err = tally__seq_take_fresh(s, now_period, 1, false, &first, &count);
	if (err)
		return err;
	out->period = SEQ_PERIOD(first);
	out->counter = SEQ_COUNTER(first);
	return TALLY_OK;
}

static int series_issue(struct tally_series *s, struct tally_seq_number *out)
{
	return s->mode == TALLY_SEQ_CACHED ? next_cached(s, out) : next_strict(s, out);
}

/*
 * The handle path. No RCU read lock: a handle's caller guarantees it is not used
 * concurrently with or after remove (tally/sequence.h). The removed check is a best-effort
 * diagnostic for late handle use.
 */
int tally__series_next_slow(struct tally_series *s, struct tally_seq_number *out)
{
	if (!s || !out)
		return TALLY_EINVAL;
	/* Relaxed: a diagnostic only. */
	if (atomic_load_explicit(&s->removed, memory_order_relaxed))
		return TALLY_EDESTROYED;
	return series_issue(s, out);
}

/* The inline path's fetch_add of 1 returned old, at or past the width limit. */
int tally__series_next_width(struct tally_series *s, uint64_t old)
{
	undo_overshoot(s, old, 1);
	return TALLY_EWIDTH;
}

int64_t tally_seq_now_s_coarse(void *arg)
{
	struct timespec now;

	(void)arg;
	clock_gettime(CLOCK_REALTIME_COARSE, &now);
	return (int64_t)now.tv_sec;
}

int tally_series_format(const struct tally_series *s, const struct tally_seq_number *number,
			char *buf, size_t size)
{
	if (!s || !number || !buf)
		return TALLY_EINVAL;
	return tally__seq_template_render(
		&s->tmpl, s->reset, s->key, s->tenant_len, s->key + s->tenant_len + 1,
		s->key_len - s->tenant_len - 1, number->period, number->counter, buf, size);
}

/* ---- registry ---- */

static int check_id(const char *id, size_t *len)
{
	if (!id || !*id)
		return TALLY_EINVAL;
	*len = strnlen(id, TALLY_SEQ_ID_MAX + 1);
	return *len > TALLY_SEQ_ID_MAX ? TALLY_ETOOLONG : TALLY_OK;
}

/* Both names' lengths; the tenant's error first. A by-name call hashes and compares the
 * two names where they are (tally__rcu_map_lookup_pair): no joined copy. */
static int check_names(const char *tenant, const char *series, size_t *tenant_len,
		       size_t *series_len)
{
	int err = check_id(tenant, tenant_len);

	return err ? err : check_id(series, series_len);
}

/* A zeroed series holding its key "tenant\0series": on the word's line when it fits
 * (what a by-name lookup compares, just before its RMW there), else after the struct. */
static struct tally_series *series_alloc(const char *tenant, size_t tenant_len,
					 const char *series, size_t series_len)
{
	size_t key_len = tenant_len + 1 + series_len;
	bool inline_key = key_len <= SERIES_KEY_INLINE;
	struct tally_series *s = tally__alloc_aligned(sizeof(*s) + (inline_key ? 0 : key_len));
	char *key;

	if (!s)
		return NULL;
	key = inline_key ? s->key_inline : s->key_tail;
	memcpy(key, tenant, tenant_len);
	key[tenant_len] = '\0';
	memcpy(key + tenant_len + 1, series, series_len);
	s->key = key;
	s->key_len = key_len;
	s->tenant_len = tenant_len;
	return s;
}

int tally_sequence_create(struct tally_sequence **out, const struct tally_sequence_options *opts)
{
	struct tally_sequence *seq;

	if (!out)
		return TALLY_EINVAL;
	seq = calloc(1, sizeof(*seq));
	if (!seq)
		return TALLY_ENOMEM;
	seq->now_s = opts && opts->now_s ? opts->now_s : realtime_clock;
	seq->clock_arg = opts ? opts->clock_arg : NULL;
	if (tally__rcu_map_init_sized(&seq->series, opts ? opts->expected_series : 0) != TALLY_OK) {
		free(seq);
		return TALLY_ENOMEM;
	}
	*out = seq;
	return TALLY_OK;
}

static int check_config(const struct tally_series_config *c)
{
	if (!c || !c->format || (unsigned)c->mode > TALLY_SEQ_CACHED ||
	    (unsigned)c->reset > TALLY_SEQ_RESET_YEARLY ||
	    c->utc_offset_minutes > TALLY_SEQ_UTC_OFFSET_MAX ||
	    c->utc_offset_minutes < -TALLY_SEQ_UTC_OFFSET_MAX ||
	    c->cache_block > TALLY_SEQ_CACHE_BLOCK_MAX || c->lease_size > TALLY_LEASE_SIZE_MAX)
		return TALLY_EINVAL;
	return TALLY_OK;
}

static void series_free(struct tally_series *s)
{
	pthread_mutex_destroy(&s->lease_lock);
	pthread_mutex_destroy(&s->release_lock);
	free(s->released);
	tally__free_aligned(s);
}

static void series_reclaim(struct tally_rcu_head *rcu)
{
	series_free(caa_container_of(rcu, struct tally_series, rcu));
}

/* Reads the lease record: where to resume and what to report. */
static int resume_from_lease(struct tally_series *s, struct tally_seq_recovery *recovery)
{
	struct tally_lease_record rec;
	int err = tally_lease_read(s->lease, s->key, s->key_len, &rec);

	if (err == TALLY_ENOTFOUND)
		return TALLY_OK;
	if (err)
		return err;
	atomic_init(&s->hot.state, rec.mark);
	atomic_init(&s->lease_hi, rec.mark);
	recovery->resumed = true;
	recovery->unclean = !(rec.flags & TALLY_LEASE_CLEAN);
	if (recovery->unclean && rec.issued < rec.mark) {
		/* Leases never span periods, so the range lies in the mark's period. */
		uint64_t floor = SEQ_PACK(SEQ_PERIOD(rec.mark), 0);
		uint64_t from = (rec.issued > floor ? rec.issued : floor) + 1;

		if (from <= rec.mark) {
			recovery->period = SEQ_PERIOD(rec.mark);
			recovery->first_counter = SEQ_COUNTER(from);
			recovery->last_counter = SEQ_COUNTER(rec.mark);
			recovery->count = rec.mark - from + 1;
		}
	}
	return TALLY_OK;
}

/* 10^digits - 1 for digits 0..19: a plain strict series' width limit from its plain_digits
 * (a table: one L1 load instead of a chain of multiplies on every by-name issue). */
static const uint64_t width_limit[20] = {
	0, 9, 99, 999, 9999, 99999, 999999, 9999999, 99999999, 999999999,
	UINT64_C(9999999999), UINT64_C(99999999999), UINT64_C(999999999999),
	UINT64_C(9999999999999), UINT64_C(99999999999999), UINT64_C(999999999999999),
	UINT64_C(9999999999999999), UINT64_C(99999999999999999),
	UINT64_C(999999999999999999), UINT64_C(9999999999999999999),
};

/* plain_digits for s: the digits d with 10^d - 1 == strict_max (0 when strict_max is). */
static uint8_t plain_digits(const struct tally_series *s)
{
	for (uint8_t digits = 1; s->hot.head.strict_max && digits < 20; digits++)
		if (width_limit[digits] == s->hot.head.strict_max)
			return digits;
	return 0; /* not a power of ten: the by-name issue takes series_issue */
}

int tally_sequence_series_create(struct tally_sequence *seq, const char *tenant,
				 const char *series, const struct tally_series_config *config,
				 struct tally_seq_recovery *recovery)
{
	struct tally_seq_recovery local = { 0 };
	struct tally_series *s;
	size_t tenant_len, series_len;
	int err;

	if (!seq)
		return TALLY_EINVAL;
	err = check_names(tenant, series, &tenant_len, &series_len);
	if (err)
		return err;
	s = series_alloc(tenant, tenant_len, series, series_len);
	if (!s)
		return TALLY_ENOMEM;
	err = check_config(config);
	if (!err)
		err = tally__seq_template_compile(&s->tmpl, config->format, config->reset);
	if (err) {
		tally__free_aligned(s);
		return err;
	}
	s->seq = seq;
	s->hot.head.id = atomic_fetch_add_explicit(&next_series_id, 1, memory_order_relaxed);
	s->hot.head.inline_key =
		config->mode == TALLY_SEQ_CACHED && config->reset == TALLY_SEQ_RESET_NEVER
			? s->hot.head.id : UINT64_MAX;
	/* The inline fetch_add path (tally/static/sequence.h) is take_fresh_add's k == 1 case:
	 * the same conditions (strict, no rollover, no lease). */
	s->hot.head.strict_max = config->mode == TALLY_SEQ_STRICT &&
					 config->reset == TALLY_SEQ_RESET_NEVER && !config->lease
				 ? s->tmpl.max_counter : 0;
	atomic_init(&s->hot.head.divert, 0);
	s->plain_digits = plain_digits(s);
	s->mode = config->mode;
	s->reset = config->reset;
	s->utc_offset_minutes = config->utc_offset_minutes;
	s->cache_block = config->cache_block ? config->cache_block : TALLY_SEQ_CACHE_BLOCK_DEFAULT;
	s->lease = config->lease;
	s->lease_size = config->lease_size ? config->lease_size : TALLY_SEQ_LEASE_SIZE_DEFAULT;
	if (pthread_mutex_init(&s->lease_lock, NULL)) {
		tally__free_aligned(s);
		return TALLY_ENOMEM;
	}
	if (pthread_mutex_init(&s->release_lock, NULL)) {
		pthread_mutex_destroy(&s->lease_lock);
		tally__free_aligned(s);
		return TALLY_ENOMEM;
	}
	atomic_init(&s->hot.state, 0);
	atomic_init(&s->lease_hi, s->lease ? 0 : UINT64_MAX);
	if (s->lease) {
		err = resume_from_lease(s, &local);
		if (err) {
			series_free(s);
			return err;
		}
	}
	tally__rcu_map_node_init(&s->node, s->key, s->key_len);
	tally_rcu_read_lock();
	if (tally__rcu_map_insert_unique(&seq->series, &s->node) != &s->node)
		err = TALLY_EEXIST;
	tally_rcu_read_unlock();
	if (err) {
		series_free(s);
		return err;
	}
	/* Grow the registry now, in the creator (creation may block), rather than leave it to
	 * liburcu's background resize: by-name lookups walk whatever chains it has not split
	 * yet. Inside a caller's read-side section it cannot (EBUSY): the background resize
	 * then does it later, as before. */
	tally__rcu_map_grow_for(&seq->series,
			       atomic_fetch_add_explicit(&seq->series_count, 1,
							 memory_order_relaxed) + 1);
	if (recovery)
		*recovery = local;
	return TALLY_OK;
}

/* Runs when no thread can issue from s: store the watermark, give the rest back. */
static int close_series(struct tally_series *s, struct tally_series_stats *final)
{
	uint64_t issued = atomic_load_explicit(&s->hot.state, memory_order_acquire);
	int err = TALLY_OK;

	if (final)
		tally_series_get_stats(s, final);
	if (s->lease && atomic_load_explicit(&s->lease_calls, memory_order_relaxed) > 0)
		err = tally_lease_close(s->lease, s->key, s->key_len,
					atomic_load_explicit(&s->lease_hi, memory_order_relaxed),
					issued);
	return err;
}

/* Read lock held. */
static struct tally_series *lookup(struct tally_sequence *seq, const char *tenant,
				   size_t tenant_len, const char *series, size_t series_len)
{
	struct tally_rcu_map_node *node =
		tally__rcu_map_lookup_pair(&seq->series, tenant, tenant_len, series, series_len);

	return node ? caa_container_of(node, struct tally_series, node) : NULL;
}

int tally_sequence_series_remove(struct tally_sequence *seq, const char *tenant,
				 const char *series, struct tally_series_stats *final)
{
	struct tally_series *s;
	size_t tenant_len, series_len;
	int err;

	if (!seq)
		return TALLY_EINVAL;
	err = check_names(tenant, series, &tenant_len, &series_len);
	if (err)
		return err;
	if (urcu_memb_read_ongoing())
		return TALLY_EBUSY;
	tally_rcu_read_lock();
	s = lookup(seq, tenant, tenant_len, series, series_len);
	err = s ? tally__rcu_map_remove(&seq->series, &s->node) : TALLY_ENOTFOUND;
	if (!err) { /* Relaxed: a diagnostic for late handle use; the grace period orders. */
		atomic_fetch_sub_explicit(&seq->series_count, 1, memory_order_relaxed);
		atomic_store_explicit(&s->removed, 1, memory_order_relaxed);
		atomic_fetch_or_explicit(&s->hot.head.divert, TALLY__SEQ_DIVERT_REMOVED,
					 memory_order_relaxed);
	}
	tally_rcu_read_unlock();
	if (err)
		return err;
	/* Every call that could still issue from s runs inside a read-side section. */
	urcu_memb_synchronize_rcu();
	err = close_series(s, final);
	tally__rcu_retire(&s->rcu, series_reclaim);
	return err;
}

int tally_sequence_series_find(struct tally_sequence *seq, const char *tenant,
			       const char *series, struct tally_series **handle)
{
	size_t tenant_len, series_len;
	int err;

	if (!seq || !handle)
		return TALLY_EINVAL;
	err = check_names(tenant, series, &tenant_len, &series_len);
	if (err)
		return err;
	tally_rcu_read_lock();
	*handle = lookup(seq, tenant, tenant_len, series, series_len);
	tally_rcu_read_unlock();
	return *handle ? TALLY_OK : TALLY_ENOTFOUND;
}

/*
 * The issue of a by-name call, on a series found under the read lock. A plain strict
 * series (never resets, no lease) reads only its word's line, which the lookup has just
 * read: released_count, then the fetch_add, as next_strict and take_fresh_add would do for
 * it, without the clock, lease and template fields on colder lines (at 10,000 series, each
 * line more is an L2 miss). Anything else, and released numbers waiting, takes
 * series_issue, which serves them first. Neither answers EDESTROYED: found under the read
 * lock, the call linearizes before a concurrent remove.
 */
static int issue_found(struct tally_series *s, struct tally_seq_number *out)
{
	uint64_t old;

	/* Acquire: pairs with the release stores in reserve.c, as in next_strict. */
	if (!s->plain_digits || atomic_load_explicit(&s->released_count, memory_order_acquire))
		return series_issue(s, out);
	/* Relaxed: numbers publish nothing; take_fresh_add says why nothing interleaves. */
	old = atomic_fetch_add_explicit(&s->hot.state, 1, memory_order_relaxed);
	if (SEQ_COUNTER(old) >= width_limit[s->plain_digits])
		return tally__series_next_width(s, old);
	out->period = SEQ_PERIOD(old + 1);
	out->counter = SEQ_COUNTER(old + 1);
	return TALLY_OK;
}

int tally_sequence_next_text(struct tally_sequence *seq, const char *tenant,
			     const char *series, char *buf, size_t size,
			     struct tally_seq_number *out)
{
	struct tally_seq_number number;
	struct tally_series *s;
	size_t tenant_len, series_len;
	int err;

	if (!seq || (buf == NULL && size > 0) || (!buf && !out))
		return TALLY_EINVAL;
	err = check_names(tenant, series, &tenant_len, &series_len);
	if (err)
		return err;
	tally_rcu_read_lock(); /* held across the issue: remove waits for it */
	s = lookup(seq, tenant, tenant_len, series, series_len);
	/* Found under the read lock: the call linearizes before any remove of s, which waits
	 * for this section to end before it closes the series. */
	err = s ? issue_found(s, &number) : TALLY_ENOTFOUND;
	if (!err && buf)
		err = tally_series_format(s, &number, buf, size);
	tally_rcu_read_unlock();
	if (out && (err == TALLY_OK || err == TALLY_ETOOLONG))
		*out = number;
	return err;
}

int tally_sequence_next(struct tally_sequence *seq, const char *tenant, const char *series,
			struct tally_seq_number *out)
{
	if (!out)
		return TALLY_EINVAL;
	return tally_sequence_next_text(seq, tenant, series, NULL, 0, out);
}

int tally_series_checkpoint(struct tally_series *s)
{
	int err = TALLY_OK;
	uint64_t base;

	if (!s)
		return TALLY_EINVAL;
	if (atomic_load_explicit(&s->removed, memory_order_relaxed)) {
		err = TALLY_EDESTROYED;
	} else if (s->lease) {
		pthread_mutex_lock(&s->lease_lock);
		/* size 0: records the watermark, leaves the mark where it is. */
		err = tally_lease_acquire(s->lease, s->key, s->key_len, 0, 0,
					  issued_watermark(s, atomic_load_explicit(
								     &s->hot.state,
								     memory_order_acquire)),
					  &base);
		pthread_mutex_unlock(&s->lease_lock);
	}
	return err;
}

int tally_series_get_stats(const struct tally_series *s, struct tally_series_stats *out)
{
	uint64_t word;

	if (!s || !out)
		return TALLY_EINVAL;
	word = atomic_load_explicit(&s->hot.state, memory_order_acquire);
	out->last.period = SEQ_PERIOD(word);
	/* The fetch_add path may have run the counter past the width limit (never issued). */
	out->last.counter = SEQ_COUNTER(word) > s->tmpl.max_counter ? s->tmpl.max_counter
								    : SEQ_COUNTER(word);
	out->lease_mark = s->lease ? atomic_load_explicit(&s->lease_hi, memory_order_acquire) : 0;
	out->lease_calls = atomic_load_explicit(&s->lease_calls, memory_order_relaxed);
	out->released_pending = atomic_load_explicit(&s->released_count, memory_order_acquire);
	out->voided = atomic_load_explicit(&s->voided, memory_order_relaxed);
	return TALLY_OK;
}

/* Closes every series while the map still holds them; the first provider error wins. */
static int close_visit(struct tally_rcu_map_node *node, void *arg)
{
	int *first_error = arg;
	int err = close_series(caa_container_of(node, struct tally_series, node), NULL);

	if (err && !*first_error)
		*first_error = err;
	return 0;
}

static void destroy_release(struct tally_rcu_map_node *node)
{
	series_free(caa_container_of(node, struct tally_series, node));
}

int tally_sequence_destroy(struct tally_sequence *seq)
{
	int first_error = TALLY_OK, err;

	if (!seq)
		return TALLY_EINVAL;
	if (urcu_memb_read_ongoing())
		return TALLY_EBUSY;
	tally_rcu_read_lock();
	tally__rcu_map_visit(&seq->series, close_visit, &first_error);
	tally_rcu_read_unlock();
	err = tally__rcu_map_destroy(&seq->series, destroy_release);
	if (err)
		return err;
	free(seq);
	return first_error;
}
