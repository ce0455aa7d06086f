/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Reservations and the strict-mode release list (tally/sequence.h, "Reservations").
 *
 * The release list is a mutex-protected array of packed numbers sorted descending, so the
 * smallest is popped from the end. Issuers check `released_count` (one acquire load) and
 * only take the mutex when it is non-zero, so the list costs nothing while it is empty. The
 * lock is acceptable here: releases are rare (a cancelled checkout), and correctness of the
 * fresh path never depends on it (a released number was issued once, sits in the list once
 * and leaves it under the lock once).
 */
#include <stdlib.h>
#include <string.h>
#include "sequence/series.h"

enum { SLOT_OPEN = 0, SLOT_COMMITTED = 1, SLOT_RELEASED = 2 };

struct tally_seq_reservation {
	struct tally_series *series;
	uint32_t count;
	uint64_t *packed;                 /* sorted ascending */
	struct tally_seq_number *numbers; /* same order, unpacked for the caller */
	uint8_t *status;                  /* SLOT_* */
};

static uint32_t effective_period(struct tally_series *s, uint32_t now_period)
{
	uint32_t word_period =
		SEQ_PERIOD(atomic_load_explicit(&s->hot.state, memory_order_acquire));

	return word_period > now_period ? word_period : now_period;
}

/*
 * Keeps the inline strict path's divert bit equal to "the list is not empty"; called under
 * release_lock after released_count was stored. Release: a thread whose relaxed load of
 * divert reads 0 takes a fresh number (it linearizes before the release); one that reads
 * the bit calls out and re-reads released_count with acquire under the lock.
 */
static void set_divert(struct tally_series *s, bool pending)
{
	if (pending)
		atomic_fetch_or_explicit(&s->hot.head.divert, TALLY__SEQ_DIVERT_RELEASED,
					 memory_order_release);
	else
		atomic_fetch_and_explicit(&s->hot.head.divert, ~TALLY__SEQ_DIVERT_RELEASED,
					  memory_order_release);
}

size_t tally__seq_take_released(struct tally_series *s, uint32_t now_period, size_t k,
				uint64_t *out)
{
	uint32_t period = effective_period(s, now_period);
	size_t taken = 0, voided = 0;

	pthread_mutex_lock(&s->release_lock);
	while (s->released_len > 0 && SEQ_PERIOD(s->released[s->released_len - 1]) < period) {
		s->released_len--; /* its period is over: it would carry a stale date */
		voided++;
	}
	while (taken < k && s->released_len > 0)
		out[taken++] = s->released[--s->released_len];
	/* Release: pairs with the acquire loads in next_strict and reserve. */
	atomic_store_explicit(&s->released_count, s->released_len, memory_order_release);
	if (s->released_len == 0)
		set_divert(s, false);
	pthread_mutex_unlock(&s->release_lock);
	if (voided)
		atomic_fetch_add_explicit(&s->voided, voided, memory_order_relaxed);
	return taken;
}

/* Puts a released number back for reuse (strict mode). */
static int release_number(struct tally_series *s, uint64_t packed)
{
	size_t lo = 0, hi;
	uint32_t now_period;

	/* A clock out of range leaves now_period 0: the series word's period decides. */
	(void)tally__seq_current_period(s, &now_period);
	if (SEQ_PERIOD(packed) < effective_period(s, now_period)) {
		atomic_fetch_add_explicit(&s->voided, 1, memory_order_relaxed);
		return TALLY_OK;
	}
	pthread_mutex_lock(&s->release_lock);
	if (s->released_len == s->released_cap) {
		size_t cap = s->released_cap ? 2 * s->released_cap : 64;
		uint64_t *grown = realloc(s->released, cap * sizeof(*grown));

		if (!grown) {
			pthread_mutex_unlock(&s->release_lock);
			return TALLY_ENOMEM;
		}
		s->released = grown;
		s->released_cap = cap;
	}
	/* Descending order: find the first slot holding a smaller number. */
	hi = s->released_len;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->released[mid] > packed)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(&s->released[lo + 1], &s->released[lo],
		(s->released_len - lo) * sizeof(*s->released));
	s->released[lo] = packed;
	s->released_len++;
	atomic_store_explicit(&s->released_count, s->released_len, memory_order_release);
	if (s->released_len == 1)
		set_divert(s, true);
	pthread_mutex_unlock(&s->release_lock);
	return TALLY_OK;
}

static int compare_packed(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static struct tally_seq_reservation *reservation_alloc(uint32_t n)
{
	struct tally_seq_reservation *r;
	size_t bytes = sizeof(*r) + n * (sizeof(uint64_t) + sizeof(struct tally_seq_number) + 1);

	r = calloc(1, bytes);
	if (!r)
		return NULL;
	r->count = n;
	r->packed = (uint64_t *)(r + 1);
	r->numbers = (struct tally_seq_number *)(r->packed + n);
	r->status = (uint8_t *)(r->numbers + n);
	return r;
}

static int reserve_numbers(struct tally_series *s, uint32_t n, uint64_t *packed)
{
	uint32_t now_period;
	uint64_t first, count;
	size_t got = 0;
	int err = tally__seq_current_period(s, &now_period);

	if (err)
		return err;
	/* Acquire: pairs with the release stores on the release list. */
	if (s->mode == TALLY_SEQ_STRICT &&
	    atomic_load_explicit(&s->released_count, memory_order_acquire) > 0)
		got = tally__seq_take_released(s, now_period, n, packed);
	if (got == n)
		return TALLY_OK;
	err = tally__seq_take_fresh(s, now_period, n - got, false, &first, &count);
	if (err) {
		/* Put back what we took: the list keeps its capacity, so this cannot fail. */
		for (size_t i = 0; i < got; i++)
			release_number(s, packed[i]);
		return err;
	}
	for (uint64_t i = 0; i < count; i++)
		packed[got + i] = first + i;
	return TALLY_OK;
}

int tally_series_reserve(struct tally_series *s, uint32_t n, struct tally_seq_reservation **out)
{
	struct tally_seq_reservation *r;
	int err;

	if (!s || !out || n == 0 || n > TALLY_SEQ_RESERVE_MAX)
		return TALLY_EINVAL;
	r = reservation_alloc(n);
	if (!r)
		return TALLY_ENOMEM;
	r->series = s;
	/* Relaxed: a diagnostic for late handle use (see tally_series_next). */
	if (atomic_load_explicit(&s->removed, memory_order_relaxed))
		err = TALLY_EDESTROYED;
	else
		err = reserve_numbers(s, n, r->packed);
	if (err) {
		free(r);
		return err;
	}
	qsort(r->packed, n, sizeof(*r->packed), compare_packed);
	for (uint32_t i = 0; i < n; i++)
		r->numbers[i] = (struct tally_seq_number){ .counter = SEQ_COUNTER(r->packed[i]),
							   .period = SEQ_PERIOD(r->packed[i]) };
	*out = r;
	return TALLY_OK;
}

int tally_seq_reservation_numbers(const struct tally_seq_reservation *r,
				  const struct tally_seq_number **numbers, uint32_t *count)
{
	if (!r || !numbers || !count)
		return TALLY_EINVAL;
	*numbers = r->numbers;
	*count = r->count;
	return TALLY_OK;
}

/* Index of an open number in r, or -1. */
static long find_open(const struct tally_seq_reservation *r, const struct tally_seq_number *n)
{
	uint64_t packed;
	size_t lo = 0, hi = r->count;

	if (n->counter > SEQ_COUNTER_MASK || n->period >= (1u << (64 - SEQ_COUNTER_BITS)))
		return -1;
	packed = SEQ_PACK(n->period, n->counter);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r->packed[mid] < packed)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == r->count || r->packed[lo] != packed || r->status[lo] != SLOT_OPEN)
		return -1;
	return (long)lo;
}

int tally_seq_reservation_commit(struct tally_seq_reservation *r,
				 const struct tally_seq_number *number)
{
	long i;

	if (!r || !number)
		return TALLY_EINVAL;
	i = find_open(r, number);
	if (i < 0)
		return TALLY_ENOTRESERVED;
	r->status[i] = SLOT_COMMITTED;
	return TALLY_OK;
}

static int release_slot(struct tally_seq_reservation *r, size_t i)
{
	int err = TALLY_OK;

	if (r->series->mode == TALLY_SEQ_STRICT)
		err = release_number(r->series, r->packed[i]);
	else
		atomic_fetch_add_explicit(&r->series->voided, 1, memory_order_relaxed);
	if (!err)
		r->status[i] = SLOT_RELEASED;
	return err;
}

int tally_seq_reservation_release(struct tally_seq_reservation *r,
				  const struct tally_seq_number *number)
{
	long i;

	if (!r || !number)
		return TALLY_EINVAL;
	i = find_open(r, number);
	if (i < 0)
		return TALLY_ENOTRESERVED;
	return release_slot(r, (size_t)i);
}

int tally_seq_reservation_finish(struct tally_seq_reservation *r, bool commit_rest)
{
	int err = TALLY_OK;

	if (!r)
		return TALLY_EINVAL;
	for (uint32_t i = 0; i < r->count; i++) {
		if (r->status[i] != SLOT_OPEN)
			continue;
		if (commit_rest) {
			r->status[i] = SLOT_COMMITTED;
		} else {
			int slot_err = release_slot(r, i);

			if (slot_err && !err)
				err = slot_err;
		}
	}
	free(r);
	return err;
}
