/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * lib/sequence/internal.h: pieces shared by the sequence allocator's files.
 */
#ifndef TALLY_SEQUENCE_INTERNAL_H
#define TALLY_SEQUENCE_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "tally/sequence.h"

#define SEQ_TEMPLATE_PIECES_MAX 32

enum seq_piece_kind {
	PIECE_LITERAL, PIECE_COUNTER, PIECE_YEAR4, PIECE_YEAR2, PIECE_MONTH, PIECE_DAY,
	PIECE_TENANT, PIECE_SERIES,
};

struct seq_piece {
	enum seq_piece_kind kind;
	uint16_t offset, len; /* literal: bytes in the template's own copy of the format */
};

/* A compiled template. Literals point into `text`, the template's own copy. */
struct seq_template {
	char text[TALLY_SEQ_FORMAT_MAX + 1];
	struct seq_piece pieces[SEQ_TEMPLATE_PIECES_MAX];
	unsigned piece_count;
	unsigned counter_width; /* 0: unpadded */
	bool has_date;          /* a %Y, %y, %m or %d piece */
	uint64_t max_counter;   /* 10^digits - 1 */
};

/* Compiles `format` for `reset`. Errors: EINVAL, ETOOLONG, EFORMAT. */
int tally__seq_template_compile(struct seq_template *tmpl, const char *format,
				enum tally_seq_reset reset);

/* The period of clock reading `now` (UTC seconds): TALLY_OK, or TALLY_EOVERFLOW if now
 * shifted by the offset lies outside [0, TALLY_SEQ_CLOCK_MAX). */
int seq_period_at(int64_t now, enum tally_seq_reset reset, int32_t utc_offset_minutes,
		  uint32_t *period);

/* Renders a number. Errors: EWIDTH, ETOOLONG, EOVERFLOW (a date past 9999). */
int tally__seq_template_render(const struct seq_template *tmpl, enum tally_seq_reset reset,
			       const char *tenant, size_t tenant_len, const char *series,
			       size_t series_len, uint32_t period, uint64_t counter, char *buf,
			       size_t size);

/* Civil date of a period's first day. */
void tally__seq_period_date(uint32_t period, enum tally_seq_reset reset, int *year, int *month,
			    int *day);
#endif
