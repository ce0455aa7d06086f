/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/sequence/format.c: templates (lib/sequence/format.c) through the public API:
 * every field, escapes, the reset/date-unit rule, widths and buffer sizes.
 */
#include <string.h>
#include <tally/rcu.h>
#include <tally/sequence.h>
#include "../tap.h"

#define NOV23_2026 INT64_C(1795392000)

static int64_t fixed_clock(void *arg)
{
	(void)arg;
	return NOV23_2026 + 3600;
}

static struct tally_sequence *seq;
static int series_no;

/* Creates a series for `format` and returns the create result. */
static int make(const char *format, enum tally_seq_reset reset, struct tally_series **h)
{
	struct tally_series_config cfg = { .format = format, .reset = reset };
	char name[16];
	int err;

	snprintf(name, sizeof(name), "s%d", ++series_no);
	err = tally_sequence_series_create(seq, "tenant", name, &cfg, NULL);
	if (!err)
		tally_sequence_series_find(seq, "tenant", name, h);
	return err;
}

static void check_render(const char *format, enum tally_seq_reset reset, uint64_t counter,
			 const char *want)
{
	struct tally_series *h;
	struct tally_seq_number n = { counter, tally_seq_period_of(NOV23_2026, reset, 0) };
	char buf[160] = "x";
	int err = make(format, reset, &h);

	if (!err)
		err = tally_series_format(h, &n, buf, sizeof(buf));
	tap_ok(err == TALLY_OK && strcmp(buf, want) == 0, "'%s' #%llu -> '%s' (got '%s', err %d)",
	       format, (unsigned long long)counter, want, buf, err);
}

static void check_error(const char *format, enum tally_seq_reset reset, int want)
{
	struct tally_series *h;

	tap_eq(make(format, reset, &h), want, "'%s' (reset %d) is rejected", format, (int)reset);
}

int main(void)
{
	struct tally_sequence_options opts = { .now_s = fixed_clock };
	struct tally_series *h;
	struct tally_seq_number n;
	char buf[64], long_format[TALLY_SEQ_FORMAT_MAX + 2];

	tally_sequence_create(&seq, &opts);
	check_render("INV-{date:%Y%m%d}-{counter:06}", TALLY_SEQ_RESET_DAILY, 1, "INV-20261123-000001");
	check_render("INV-{date}-{counter:04}", TALLY_SEQ_RESET_DAILY, 42, "INV-20261123-0042");
	check_render("{date}/{counter}", TALLY_SEQ_RESET_MONTHLY, 7, "202611/7");
	check_render("{date}/{counter}", TALLY_SEQ_RESET_YEARLY, 7, "2026/7");
	check_render("{date:%y-%m}.{counter:03}", TALLY_SEQ_RESET_MONTHLY, 5, "26-11.005");
	check_render("{tenant}:{series}:{counter}", TALLY_SEQ_RESET_NEVER, 123456789012ULL,
		     "tenant:s6:123456789012");
	check_render("{{{counter}}} 100%", TALLY_SEQ_RESET_NEVER, 9, "{9} 100%");
	check_render("{date:%%%Y}#{counter:01}", TALLY_SEQ_RESET_YEARLY, 9, "%2026#9");
	check_render("{counter:012}", TALLY_SEQ_RESET_NEVER, 1, "000000000001");

	check_error("INV-{date:%Y}", TALLY_SEQ_RESET_YEARLY, TALLY_EFORMAT);
	check_error("", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{counter}{counter}", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{counter}{branch}", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{counter:6}", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{counter:00}", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{counter:013}", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{counter:0x}", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{counter", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{counter}}", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{date}{counter}", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{date:%d}{counter}", TALLY_SEQ_RESET_MONTHLY, TALLY_EFORMAT);
	check_error("{date:%m}{counter}", TALLY_SEQ_RESET_YEARLY, TALLY_EFORMAT);
	check_error("{date:%H}{counter}", TALLY_SEQ_RESET_DAILY, TALLY_EFORMAT);
	check_error("{date:%}{counter}", TALLY_SEQ_RESET_DAILY, TALLY_EFORMAT);
	/* One spelling per width, no empty date, no braces inside a field. */
	check_error("{counter:0000000000006}", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{counter:006}", TALLY_SEQ_RESET_NEVER, TALLY_EFORMAT);
	check_error("{date:}{counter}", TALLY_SEQ_RESET_DAILY, TALLY_EFORMAT);
	check_error("{date:%Y{%m}{counter}", TALLY_SEQ_RESET_MONTHLY, TALLY_EFORMAT);
	check_error("{date:{{%Y}{counter}", TALLY_SEQ_RESET_YEARLY, TALLY_EFORMAT);
	check_error("{date:%Y-{counter}", TALLY_SEQ_RESET_YEARLY, TALLY_EFORMAT);
	check_render("{counter:010}", TALLY_SEQ_RESET_NEVER, 42, "0000000042");
	check_error("{date:%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d%Y%m%d}{counter}",
		    TALLY_SEQ_RESET_DAILY, TALLY_EFORMAT); /* more than 32 pieces */
	memset(long_format, 'x', sizeof(long_format) - 1);
	long_format[sizeof(long_format) - 1] = '\0';
	memcpy(long_format, "{counter}", 9);
	check_error(long_format, TALLY_SEQ_RESET_NEVER, TALLY_ETOOLONG);
	long_format[TALLY_SEQ_FORMAT_MAX] = '\0';
	tap_eq(make(long_format, TALLY_SEQ_RESET_NEVER, &h), TALLY_OK,
	       "a template of exactly TALLY_SEQ_FORMAT_MAX bytes is accepted");

	make("A{counter:03}", TALLY_SEQ_RESET_NEVER, &h);
	n = (struct tally_seq_number){ 1000, 0 };
	tap_eq(tally_series_format(h, &n, buf, sizeof(buf)), TALLY_EWIDTH,
	       "rendering a counter wider than the field: EWIDTH");
	n.counter = 999;
	tap_eq(tally_series_format(h, &n, buf, 5), TALLY_OK, "A999 fits 5 bytes with the NUL");
	tap_eq(tally_series_format(h, &n, buf, 4), TALLY_ETOOLONG, "4 bytes: ETOOLONG");
	tap_eq(tally_series_format(h, &n, buf, 0), TALLY_ETOOLONG, "0 bytes: ETOOLONG");
	tap_eq(tally_series_format(h, NULL, buf, 4), TALLY_EINVAL, "NULL number: EINVAL");

	/* %Y is 4 digits: years 1970..9999. A period past 9999 (never from the clock, which
	 * is refused there) is not rendered as a 5-digit year. */
	make("{date}-{counter}", TALLY_SEQ_RESET_DAILY, &h);
	n = (struct tally_seq_number){ 1, 2932896 }; /* 9999-12-31 */
	tap_ok(tally_series_format(h, &n, buf, sizeof(buf)) == TALLY_OK &&
		       strcmp(buf, "99991231-1") == 0, "day 2932896 renders 99991231 (%s)", buf);
	n.period = 2932897; /* 10000-01-01 */
	tap_eq(tally_series_format(h, &n, buf, sizeof(buf)), TALLY_EOVERFLOW,
	       "10000-01-01: EOVERFLOW, not a 5-digit year");
	make("{date:%y}-{counter}", TALLY_SEQ_RESET_YEARLY, &h);
	n = (struct tally_seq_number){ 1, 10000 - 1970 };
	tap_eq(tally_series_format(h, &n, buf, sizeof(buf)), TALLY_EOVERFLOW,
	       "year 10000 with %%y: EOVERFLOW too");
	make("{counter}", TALLY_SEQ_RESET_YEARLY, &h);
	tap_eq(tally_series_format(h, &n, buf, sizeof(buf)), TALLY_OK,
	       "... but a template without a date renders any period");
	tally_sequence_destroy(seq);
	tally_rcu_barrier();
	return tap_done();
}
