/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/gauge/internal.h: the floor-guarded update of tally/gauge.h on a bare value word, for
 * a structure that keeps a gauge's value where it needs it and its bounds as constants (a
 * session's listener count: floor 0, no ceiling, on the session's first cache line, where the
 * 32-byte struct tally_gauge does not fit). struct tally_gauge is this word plus its bounds.
 */
#ifndef TALLY_INTERNAL_GAUGE_H
#define TALLY_INTERNAL_GAUGE_H
#include <stdatomic.h>
#include <stdint.h>

/* Moves *value by delta (non-zero) if the result stays in [floor, ceiling]: one CAS loop,
 * lock-free, acq_rel on success (tally/gauge.h). TALLY_OK, TALLY_EFLOOR, TALLY_ECEILING (also
 * when the sum would leave int64 and the ceiling is not TALLY_GAUGE_NO_CEILING) or
 * TALLY_EOVERFLOW; *value_out (may be NULL) gets the value this call produced. */
int tally__gauge_move(_Atomic int64_t *value, int64_t floor, int64_t ceiling, int64_t delta,
		      int64_t *value_out);

#endif
