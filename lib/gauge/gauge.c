/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Single-word floor-guarded gauge (see tally/gauge.h).
 * Invariant: floor <= value <= ceiling at every instant; every update is one CAS that checks
 * the bound against the value it replaces.
 */
#include <stdatomic.h>
#include "tally/gauge.h"
#include "internal/backoff.h"
#include "gauge/internal.h"

#define GAUGE_MAGIC 0x746c7967u /* "tlyg" */

static int check_gauge(const struct tally_gauge *gauge)
{
	if (!gauge)
		return TALLY_EINVAL;
	return gauge->magic == GAUGE_MAGIC ? TALLY_OK : TALLY_EDESTROYED;
}

int tally_gauge_init(struct tally_gauge *gauge, int64_t initial, int64_t floor, int64_t ceiling)
{
	if (!gauge || floor > ceiling || initial < floor || initial > ceiling)
		return TALLY_EINVAL;
	atomic_init(&gauge->value, initial);
	gauge->floor = floor;
	gauge->ceiling = ceiling;
	gauge->magic = GAUGE_MAGIC;
	return TALLY_OK;
}

int tally_gauge_destroy(struct tally_gauge *gauge)
{
	int err = check_gauge(gauge);

	if (err == TALLY_OK)
		gauge->magic = 0;
	return err;
}

int tally__gauge_move(_Atomic int64_t *value, int64_t floor, int64_t ceiling, int64_t delta,
		      int64_t *value_out)
{
	tally_backoff_t backoff = TALLY_BACKOFF_INITIALIZER;
	int64_t next, current = atomic_load_explicit(value, memory_order_relaxed);

	for (;;) {
		/* Past int64 is past any floor, and past any ceiling but "none". */
		if (__builtin_add_overflow(current, delta, &next))
			return delta < 0 ? TALLY_EFLOOR
			       : ceiling == TALLY_GAUGE_NO_CEILING ? TALLY_EOVERFLOW
								   : TALLY_ECEILING;
		if (next < floor)
			return TALLY_EFLOOR;
		if (next > ceiling)
			return TALLY_ECEILING;
		/* acq_rel: publishes this thread's earlier writes with the new value and sees the
		 * writes published by the update it replaces. */
		if (atomic_compare_exchange_weak_explicit(value, &current, next,
							  memory_order_acq_rel,
							  memory_order_relaxed))
			break;
		tally__backoff(&backoff);
	}
	if (value_out)
		*value_out = next;
	return TALLY_OK;
}

static int move_value(struct tally_gauge *gauge, int64_t delta, int64_t *value_out)
{
	return tally__gauge_move(&gauge->value, gauge->floor, gauge->ceiling, delta, value_out);
}

int tally_gauge_add(struct tally_gauge *gauge, int64_t n, int64_t *value_out)
{
	int err = check_gauge(gauge);

	if (err != TALLY_OK)
		return err;
	if (n <= 0)
		return TALLY_EINVAL;
	return move_value(gauge, n, value_out);
}

int tally_gauge_sub(struct tally_gauge *gauge, int64_t n, int64_t *value_out)
{
	int err = check_gauge(gauge);

	if (err != TALLY_OK)
		return err;
	if (n <= 0)
		return TALLY_EINVAL;
	return move_value(gauge, -n, value_out);
}

int tally_gauge_inc(struct tally_gauge *gauge, int64_t *value_out)
{
	return tally_gauge_add(gauge, 1, value_out);
}

int tally_gauge_dec(struct tally_gauge *gauge, int64_t *value_out)
{
	return tally_gauge_sub(gauge, 1, value_out);
}

int tally_gauge_read(const struct tally_gauge *gauge, int64_t *value)
{
	int err = check_gauge(gauge);

	if (err != TALLY_OK)
		return err;
	if (!value)
		return TALLY_EINVAL;
	/* Acquire: pairs with the acq_rel CAS of the update that produced this value. */
	*value = atomic_load_explicit(&gauge->value, memory_order_acquire);
	return TALLY_OK;
}
