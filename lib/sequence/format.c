/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Template compiler and renderer for sequence numbers, and the period arithmetic
 * (tally/sequence.h, "Templates"). Pure functions: no shared state.
 */
#include <stdbool.h>
#include <string.h>
#include "sequence/internal.h"

/* Days since 1970-01-01 -> civil date (H. Hinnant's algorithm, proleptic Gregorian). */
static void civil_from_days(int64_t days, int *year, int *month, int *day)
{
	int64_t z = days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;

	*year = (int)(yoe + era * 400 + (m <= 2));
	*month = (int)m;
	*day = (int)d;
}

/* now shifted by the offset, if that lies in [0, TALLY_SEQ_CLOCK_MAX) (else false). */
static bool local_time(int64_t now, int32_t utc_offset_minutes, int64_t *local)
{
	return !__builtin_add_overflow(now, (int64_t)utc_offset_minutes * 60, local) &&
	       *local >= 0 && *local < TALLY_SEQ_CLOCK_MAX;
}

/* The period of a local time in [0, TALLY_SEQ_CLOCK_MAX). */
static uint32_t period_of_local(int64_t local, enum tally_seq_reset reset)
{
	int64_t days = local / 86400;
	int year, month, day;

	if (reset == TALLY_SEQ_RESET_NEVER)
		return 0;
	if (reset == TALLY_SEQ_RESET_DAILY)
		return (uint32_t)days;
	civil_from_days(days, &year, &month, &day);
	if (reset == TALLY_SEQ_RESET_MONTHLY)
		return (uint32_t)((year - 1970) * 12 + (month - 1));
	return (uint32_t)(year - 1970);
}

int seq_period_at(int64_t now, enum tally_seq_reset reset, int32_t utc_offset_minutes,
		  uint32_t *period)
{
	int64_t local;

	if (!local_time(now, utc_offset_minutes, &local))
		return TALLY_EOVERFLOW;
	*period = period_of_local(local, reset);
	return TALLY_OK;
}

uint32_t tally_seq_period_of(int64_t now, enum tally_seq_reset reset, int32_t utc_offset_minutes)
{
	int64_t local;

	if (!local_time(now, utc_offset_minutes, &local)) /* clamp to the range's ends */
		local = now > 0 ? TALLY_SEQ_CLOCK_MAX - 1 : 0;
	return period_of_local(local, reset);
}

void tally__seq_period_date(uint32_t period, enum tally_seq_reset reset, int *year, int *month,
			    int *day)
{
	switch (reset) {
	case TALLY_SEQ_RESET_DAILY:
		civil_from_days(period, year, month, day);
		return;
	case TALLY_SEQ_RESET_MONTHLY:
		*year = 1970 + (int)(period / 12);
		*month = (int)(period % 12) + 1;
		*day = 1;
		return;
	default:
		*year = 1970 + (int)period;
		*month = 1;
		*day = 1;
		return;
	}
}

static int add_piece(struct seq_template *tmpl, enum seq_piece_kind kind, size_t offset,
		     size_t len)
{
	struct seq_piece *last = tmpl->piece_count ? &tmpl->pieces[tmpl->piece_count - 1] : NULL;

	/* Adjacent literals from the same run merge. */
	if (kind == PIECE_LITERAL && last && last->kind == PIECE_LITERAL &&
	    last->offset + last->len == offset) {
		last->len = (uint16_t)(last->len + len);
		return TALLY_OK;
	}
	if (tmpl->piece_count == SEQ_TEMPLATE_PIECES_MAX)
		return TALLY_EFORMAT;
	if (kind >= PIECE_YEAR4 && kind <= PIECE_DAY)
		tmpl->has_date = true;
	tmpl->pieces[tmpl->piece_count++] =
		(struct seq_piece){ kind, (uint16_t)offset, (uint16_t)len };
	return TALLY_OK;
}

/* The finest date unit a reset allows: 3 day, 2 month, 1 year, 0 none. */
static int finest_unit(enum tally_seq_reset reset)
{
	static const int unit[] = { 0, 3, 2, 1 };

	return unit[reset];
}

/* Compiles the spec of {date:...} found at text[from, to): not empty (a date field that
 * renders nothing is a mistake), and no '{' (braces are never literal inside a field;
 * '}' cannot occur, it ends the field). */
static int compile_date(struct seq_template *tmpl, size_t from, size_t to, int finest)
{
	if (from == to)
		return TALLY_EFORMAT;
	for (size_t i = from; i < to; i++) {
		const char *text = tmpl->text;
		enum seq_piece_kind kind;
		int unit, err;

		if (text[i] == '{')
			return TALLY_EFORMAT;
		if (text[i] != '%') {
			err = add_piece(tmpl, PIECE_LITERAL, i, 1);
			if (err)
				return err;
			continue;
		}
		if (++i == to)
			return TALLY_EFORMAT;
		switch (text[i]) {
		case '%': err = add_piece(tmpl, PIECE_LITERAL, i, 1); if (err) return err; continue;
		case 'Y': kind = PIECE_YEAR4; unit = 1; break;
		case 'y': kind = PIECE_YEAR2; unit = 1; break;
		case 'm': kind = PIECE_MONTH; unit = 2; break;
		case 'd': kind = PIECE_DAY; unit = 3; break;
		default: return TALLY_EFORMAT;
		}
		if (unit > finest)
			return TALLY_EFORMAT;
		err = add_piece(tmpl, kind, 0, 0);
		if (err)
			return err;
	}
	return TALLY_OK;
}

static uint64_t max_for_digits(unsigned digits)
{
	uint64_t max = 1;

	while (digits--)
		max *= 10;
	return max - 1;
}

/* Compiles the field text[open+1, close). */
static int compile_field(struct seq_template *tmpl, size_t open, size_t close,
			 enum tally_seq_reset reset, int *counters)
{
	const char *name = tmpl->text + open + 1;
	size_t len = close - open - 1;

	if (len == 7 && memcmp(name, "counter", 7) == 0) {
		++*counters;
		tmpl->counter_width = 0;
		tmpl->max_counter = max_for_digits(TALLY_SEQ_COUNTER_DIGITS_MAX);
		return add_piece(tmpl, PIECE_COUNTER, 0, 0);
	}
	/* "0" then N in 1..12 without leading zeros: one spelling per width. */
	if (len >= 10 && len <= 11 && memcmp(name, "counter:0", 9) == 0 && name[9] != '0') {
		unsigned width = 0;

		for (size_t i = 9; i < len; i++) {
			if (name[i] < '0' || name[i] > '9' || width > TALLY_SEQ_COUNTER_DIGITS_MAX)
				return TALLY_EFORMAT;
			width = width * 10 + (unsigned)(name[i] - '0');
		}
		if (width == 0 || width > TALLY_SEQ_COUNTER_DIGITS_MAX)
			return TALLY_EFORMAT;
		++*counters;
		tmpl->counter_width = width;
		tmpl->max_counter = max_for_digits(width);
		return add_piece(tmpl, PIECE_COUNTER, 0, 0);
	}
	if (len == 6 && memcmp(name, "tenant", 6) == 0)
		return add_piece(tmpl, PIECE_TENANT, 0, 0);
	if (len == 6 && memcmp(name, "series", 6) == 0)
		return add_piece(tmpl, PIECE_SERIES, 0, 0);
	if (len == 4 && memcmp(name, "date", 4) == 0) {
		static const char *const defaults[] = { "", "%Y%m%d", "%Y%m", "%Y" };
		int err;

		if (reset == TALLY_SEQ_RESET_NEVER)
			return TALLY_EFORMAT;
		/* The default spec for the reset: pairs "%Y", "%m", "%d" map to pieces. */
		for (const char *p = defaults[reset]; *p; p += 2) {
			enum seq_piece_kind kind = p[1] == 'Y' ? PIECE_YEAR4
						 : p[1] == 'm' ? PIECE_MONTH : PIECE_DAY;
			err = add_piece(tmpl, kind, 0, 0);
			if (err)
				return err;
		}
		return TALLY_OK;
	}
	if (len >= 5 && memcmp(name, "date:", 5) == 0)
		return compile_date(tmpl, open + 6, close, finest_unit(reset));
	return TALLY_EFORMAT;
}

int tally__seq_template_compile(struct seq_template *tmpl, const char *format,
				enum tally_seq_reset reset)
{
	size_t len;
	int counters = 0, err;

	if (!tmpl || !format || (unsigned)reset > TALLY_SEQ_RESET_YEARLY)
		return TALLY_EINVAL;
	len = strnlen(format, TALLY_SEQ_FORMAT_MAX + 1);
	if (len > TALLY_SEQ_FORMAT_MAX)
		return TALLY_ETOOLONG;
	memset(tmpl, 0, sizeof(*tmpl));
	memcpy(tmpl->text, format, len);
	for (size_t i = 0; i < len; i++) {
		char c = tmpl->text[i];

		if (c == '{' && i + 1 < len && tmpl->text[i + 1] == '{') {
			err = add_piece(tmpl, PIECE_LITERAL, i++, 1);
		} else if (c == '}' && i + 1 < len && tmpl->text[i + 1] == '}') {
			err = add_piece(tmpl, PIECE_LITERAL, i++, 1);
		} else if (c == '{') {
			const char *end = memchr(tmpl->text + i, '}', len - i);

			if (!end)
				return TALLY_EFORMAT;
			err = compile_field(tmpl, i, (size_t)(end - tmpl->text), reset, &counters);
			i = (size_t)(end - tmpl->text);
		} else if (c == '}') {
			return TALLY_EFORMAT;
		} else {
			err = add_piece(tmpl, PIECE_LITERAL, i, 1);
		}
		if (err)
			return err;
	}
	return counters == 1 ? TALLY_OK : TALLY_EFORMAT;
}

/* Appends len bytes; ETOOLONG when the NUL would not fit. */
static int emit(char *buf, size_t size, size_t *pos, const char *bytes, size_t len)
{
	if (*pos + len >= size)
		return TALLY_ETOOLONG;
	memcpy(buf + *pos, bytes, len);
	*pos += len;
	return TALLY_OK;
}

static int emit_number(char *buf, size_t size, size_t *pos, uint64_t value, unsigned width)
{
	char digits[24];
	size_t n = 0;

	do {
		digits[sizeof(digits) - 1 - n++] = (char)('0' + value % 10);
		value /= 10;
	} while (value);
	while (n < width)
		digits[sizeof(digits) - 1 - n++] = '0';
	return emit(buf, size, pos, digits + sizeof(digits) - n, n);
}

int tally__seq_template_render(const struct seq_template *tmpl, enum tally_seq_reset reset,
			       const char *tenant, size_t tenant_len, const char *series,
			       size_t series_len, uint32_t period, uint64_t counter, char *buf,
			       size_t size)
{
	int year = 1970, month = 1, day = 1, err = TALLY_OK;
	size_t pos = 0;

	if (counter > tmpl->max_counter)
		return TALLY_EWIDTH;
	if (size == 0)
		return TALLY_ETOOLONG;
	if (reset != TALLY_SEQ_RESET_NEVER)
		tally__seq_period_date(period, reset, &year, &month, &day);
	/* %Y is 4 digits: a date past 9999 (a period the clock never gives: see
	 * seq_period_at) is refused rather than rendered wider or wrapped. */
	if (year > 9999 && tmpl->has_date)
		return TALLY_EOVERFLOW;
	for (unsigned i = 0; i < tmpl->piece_count && !err; i++) {
		const struct seq_piece *piece = &tmpl->pieces[i];

		switch (piece->kind) {
		case PIECE_LITERAL:
			err = emit(buf, size, &pos, tmpl->text + piece->offset, piece->len);
			break;
		case PIECE_COUNTER:
			err = emit_number(buf, size, &pos, counter, tmpl->counter_width);
			break;
		case PIECE_YEAR4: err = emit_number(buf, size, &pos, (uint64_t)year, 4); break;
		case PIECE_YEAR2: err = emit_number(buf, size, &pos, (uint64_t)year % 100, 2); break;
		case PIECE_MONTH: err = emit_number(buf, size, &pos, (uint64_t)month, 2); break;
		case PIECE_DAY: err = emit_number(buf, size, &pos, (uint64_t)day, 2); break;
		case PIECE_TENANT: err = emit(buf, size, &pos, tenant, tenant_len); break;
		case PIECE_SERIES: err = emit(buf, size, &pos, series, series_len); break;
		}
	}
	if (err) {
		buf[0] = '\0';
		return err;
	}
	buf[pos] = '\0';
	return TALLY_OK;
}
