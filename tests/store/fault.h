/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/store/fault.h: a fault-injecting store backend for tests (scheme "fault"). It wraps
 * a real store: "fault:sqlite:///tmp/x.db" opens "sqlite:///tmp/x.db" and passes every call
 * on to it, except the calls a plan set by the test selects, which it fails in one of three
 * ways:
 *   BEFORE  returns plan.err without passing the call on (nothing applied);
 *   AFTER   passes the call on and, if it succeeded, returns plan.err anyway (the commit
 *           happened, the caller sees an ambiguous failure: EUNAVAIL, ETIMEDOUT);
 *   HANG    sleeps plan.hang_ms (past the caller's timeout), passes the call on and returns
 *           ETIMEDOUT whatever happened.
 * A plan applies to `count` selected calls (-1: until cleared). Counts of what was passed on
 * and failed let a test check that every ambiguous case was retried and nothing applied
 * twice. One plan per process, guarded by a mutex: any thread may set it or call the store.
 */
#ifndef TALLY_TESTS_STORE_FAULT_H
#define TALLY_TESTS_STORE_FAULT_H

#include <stdbool.h>
#include <stdint.h>

enum store_fault_mode {
	STORE_FAULT_NONE = 0,
	STORE_FAULT_BEFORE,
	STORE_FAULT_AFTER,
	STORE_FAULT_HANG,
};

/* Which calls a plan selects (a mask). */
enum store_fault_calls {
	STORE_FAULT_FLUSH = 1 << 0,
	STORE_FAULT_HEARTBEAT = 1 << 1,
	STORE_FAULT_WRITER_OPEN = 1 << 2,
	STORE_FAULT_WRITER_CLOSE = 1 << 3,
	STORE_FAULT_WRITER_CALLS = 0xf, /* all four: "the store is down" for a writer */
};

struct store_fault_plan {
	enum store_fault_mode mode;
	int err;          /* what BEFORE and AFTER return; 0 = TALLY_EUNAVAIL */
	int count;        /* selected calls to fail; -1 = every one until cleared */
	unsigned calls;   /* enum store_fault_calls mask; 0 = STORE_FAULT_FLUSH */
	int64_t hang_ms;  /* HANG: how long; 0 = 200 */
	bool then_down;   /* once `count` faults are spent, fail every selected call BEFORE */
};

struct store_fault_counts {
	int64_t flushes_passed;   /* flushes the inner store applied or acknowledged */
	int64_t flushes_applied;  /* ... of them not already applied (new effects) */
	int64_t failed_before;    /* calls failed without passing them on */
	int64_t failed_after;     /* calls passed on, then reported failed */
	int64_t hung;             /* calls hung */
	int64_t faults_left;      /* of the current plan (-1: unbounded) */
};

/* Registers the "fault" scheme (idempotent). Returns a tally_err. */
int store_fault_register(void);
/* Replaces the plan (NULL or mode NONE: no faults). */
void store_fault_set(const struct store_fault_plan *plan);
void store_fault_counts(struct store_fault_counts *out);
/* Zeroes the counts. */
void store_fault_reset_counts(void);

#endif
