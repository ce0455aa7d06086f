/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/gauge.c: listener joins and leaves on one hot gauge, single-word and sharded, with
 * greedy multi-unit decrements and a ceiling. A monitor reads continuously.
 * Invariants: no read ever shows a value outside [floor, ceiling]; at the end the value is
 * exactly initial + successful adds - successful subs, and every unit of headroom is back.
 */
#include <pthread.h>
#include <stdint.h>
#include "tally/gauge.h"
#include "stress.h"

#define FLOOR 0
#define CEILING 1000
#define INITIAL 100

struct run {
	struct tally_gauge single;
	struct tally_sgauge sharded;
	_Atomic int stop;
	_Atomic int64_t single_net, sharded_net, ops, out_of_bounds;
};

static void *churn(void *arg)
{
	struct run *run = arg;
	int64_t single_net = 0, sharded_net = 0, ops = 0;
	uint32_t seed = (uint32_t)(uintptr_t)&seed;

	while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
		int64_t n = 1 + test_random(&seed) % 4;
		if (test_random(&seed) & 1) {
			single_net += tally_gauge_add(&run->single, n, NULL) == TALLY_OK ? n : 0;
			sharded_net += tally_sgauge_add(&run->sharded, n) == TALLY_OK ? n : 0;
		} else {
			single_net -= tally_gauge_sub(&run->single, n, NULL) == TALLY_OK ? n : 0;
			sharded_net -= tally_sgauge_sub(&run->sharded, n) == TALLY_OK ? n : 0;
		}
		ops += 2;
	}
	atomic_fetch_add(&run->single_net, single_net);
	atomic_fetch_add(&run->sharded_net, sharded_net);
	atomic_fetch_add(&run->ops, ops);
	return NULL;
}

static void *monitor(void *arg)
{
	struct run *run = arg;
	int64_t single, sharded;

	while (!atomic_load(&run->stop)) {
		tally_gauge_read(&run->single, &single);
		tally_sgauge_read(&run->sharded, &sharded);
		if (single < FLOOR || single > CEILING || sharded < FLOOR || sharded > CEILING)
			atomic_fetch_add(&run->out_of_bounds, 1);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct stress_args args = stress_parse(argc, argv);
	static struct run run;
	pthread_t threads[257];
	int64_t single, sharded;
	double start = stress_now();

	tally_gauge_init(&run.single, INITIAL, FLOOR, CEILING);
	tally_sgauge_init(&run.sharded, INITIAL, FLOOR, CEILING, 0);
	for (int i = 0; i < args.threads; i++)
		pthread_create(&threads[i], NULL, churn, &run);
	pthread_create(&threads[args.threads], NULL, monitor, &run);
	while (stress_now() - start < args.seconds) {
		struct timespec tick = { 0, 50 * 1000 * 1000 };
		nanosleep(&tick, NULL);
	}
	atomic_store(&run.stop, 1);
	for (int i = 0; i <= args.threads; i++)
		pthread_join(threads[i], NULL);
	double elapsed = stress_now() - start;

	tally_gauge_read(&run.single, &single);
	tally_sgauge_read(&run.sharded, &sharded);
	int64_t room = CEILING - sharded;
	int room_exact = room == 0 || tally_sgauge_add(&run.sharded, room) == TALLY_OK;
	room_exact = room_exact && tally_sgauge_inc(&run.sharded) == TALLY_ECEILING;
	int violations = (single != INITIAL + run.single_net) +
			 (sharded != INITIAL + run.sharded_net) + !room_exact +
			 (int)(run.out_of_bounds > 0);
	printf("gauge: threads=%d seconds=%.1f ops=%lld ops_per_s=%.0f out_of_bounds_reads=%lld "
	       "single_drift=%lld sharded_drift=%lld headroom_exact=%d violations=%d\n",
	       args.threads, elapsed, (long long)run.ops, (double)run.ops / elapsed,
	       (long long)run.out_of_bounds, (long long)(single - INITIAL - run.single_net),
	       (long long)(sharded - INITIAL - run.sharded_net), room_exact, violations);
	tally_gauge_destroy(&run.single);
	tally_sgauge_destroy(&run.sharded);
	return violations ? EXIT_FAILURE : EXIT_SUCCESS;
}
