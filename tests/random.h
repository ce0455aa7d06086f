/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/random.h: the pseudo-random generator of the tests and the benchmarks (Marsaglia's
 * xorshift32): one multiply-free step, state per thread, a run reproducible from its seed.
 * For picking test inputs and benchmark keys only. The stress programs draw from their own
 * splitmix64 streams (stress/stress.h): 64-bit, one independent stream per thread, process
 * and incarnation derived from --seed, which this 32-bit step does not give.
 */
#ifndef TALLY_TESTS_RANDOM_H
#define TALLY_TESTS_RANDOM_H
#include <stdint.h>

/* Advances *state (any value; 0 is mapped to a fixed non-zero seed) and returns it. */
__attribute__((unused)) static inline uint32_t test_random(uint32_t *state)
{
	uint32_t x = *state ? *state : UINT32_C(0x9e3779b9);

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *state = x;
}
#endif
