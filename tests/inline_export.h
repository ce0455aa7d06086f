/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/inline_export.h: calls made from a file built with TALLY_NO_INLINE. */
#ifndef TALLY_TESTS_INLINE_EXPORT_H
#define TALLY_TESTS_INLINE_EXPORT_H
#include <stdint.h>
struct tally_counter;
struct tally_series;
struct tally_seq_number;
int extern_counter_add(struct tally_counter *counter, int64_t delta);
int extern_series_next(struct tally_series *series, struct tally_seq_number *out);
int extern_thread_index(void);
#endif
