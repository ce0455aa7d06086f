/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/internal/backoff.h: bounded exponential backoff for CAS retry loops, from Concurrency
 * Kit's ck_backoff_eb (a plain spin, no atomics, so it is invisible to ThreadSanitizer).
 * tally's loops are short: start at 16 spins and stop growing at 4095, far below ck's
 * default ceiling of a million, so a waiter never sleeps through a free word for long.
 */
#ifndef TALLY_INTERNAL_BACKOFF_H
#define TALLY_INTERNAL_BACKOFF_H
#define CK_BACKOFF_CEILING ((1 << 12) - 1)
#include <ck_backoff.h>

#define TALLY_BACKOFF_INITIALIZER 16u
typedef ck_backoff_t tally_backoff_t;

static inline void tally__backoff(tally_backoff_t *backoff)
{
	ck_backoff_eb(backoff);
}
#endif
