/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/inline_export_extern.c: built with TALLY_NO_INLINE, so tally_counter_add and the
 * other inline calls are declarations of libtally's exports (tests/inline_export.c).
 */
#define TALLY_NO_INLINE 1
#include <tally/counter.h>
#include <tally/sequence.h>
#include "inline_export.h"

int extern_counter_add(struct tally_counter *counter, int64_t delta)
{
	return tally_counter_add(counter, delta);
}

int extern_series_next(struct tally_series *series, struct tally_seq_number *out)
{
	return tally_series_next(series, out);
}

int extern_thread_index(void)
{
	return tally_thread_index();
}
