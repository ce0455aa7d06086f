/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/stress.h: the shared shape of tally's stress programs. Each program runs for
 * `seconds` (argv[1], default 5) on `threads` (argv[2], default 4), checks its invariants
 * and prints one summary line: "<name>: ... violations=N" then exits 0 iff N == 0.
 */
#ifndef TALLY_STRESS_H
#define TALLY_STRESS_H
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "../tests/random.h"

struct stress_args {
	double seconds;
	int threads;
};

static inline struct stress_args stress_parse(int argc, char **argv)
{
	struct stress_args args = { 5.0, 4 };

	if (argc > 1)
		args.seconds = atof(argv[1]);
	if (argc > 2)
		args.threads = atoi(argv[2]);
	if (args.seconds <= 0)
		args.seconds = 5.0;
	if (args.threads < 1 || args.threads > 256)
		args.threads = 4;
	return args;
}

static inline double stress_now(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}
#endif
