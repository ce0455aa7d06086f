/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/tap.h: a minimal TAP producer for Automake's tap-driver.sh.
 * Each check prints "ok N - name" or "not ok N - name"; tap_done() prints the plan and
 * returns the exit status. Header-only so every test program stays one file.
 */
#ifndef TALLY_TESTS_TAP_H
#define TALLY_TESTS_TAP_H
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_count, tap_failed;

__attribute__((format(printf, 2, 3), unused))
static int tap_ok(int cond, const char *fmt, ...)
{
	va_list ap;
	tap_count++;
	printf("%sok %d - ", cond ? "" : "not ", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!cond)
		tap_failed++;
	return cond;
}

/* Compare two integers, printing both on failure. */
#define tap_eq(got, want, ...) do { \
	long long tap_g_ = (long long)(got), tap_w_ = (long long)(want); \
	if (!tap_ok(tap_g_ == tap_w_, __VA_ARGS__)) \
		printf("# got %lld, want %lld (%s:%d)\n", tap_g_, tap_w_, __FILE__, __LINE__); \
} while (0)

__attribute__((unused))
static int tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
#endif
