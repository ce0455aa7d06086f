/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/gauge.c: listener joins and leaves on one hot gauge, single-word and sharded, with
 * greedy multi-unit decrements and a ceiling, while a monitor reads continuously.
 * Invariants:
 * - continuously: no read ever shows a value outside [floor, ceiling] (the floor is never
 *   observed crossed);
 * - at the end: the value is exactly initial + successful adds - successful subs, and every
 *   unit of headroom is back (the sharded gauge accepts exactly ceiling - value more).
 */
#include <pthread.h>
#include <stdint.h>
#include "tally/gauge.h"
#include "stress.h"

#define FLOOR 0
#define CEILING 1000
#define INITIAL 100
#define BATCH 256

struct run {
	struct stress_run *stress;
	struct tally_gauge single;
	struct tally_sgauge sharded;
	_Atomic int stop;
	_Atomic int64_t single_net, sharded_net;
};

struct churn_arg {
	struct run *run;
	int index;
};

static void *churn(void *arg)
{
	struct churn_arg *self = arg;
	struct run *run = self->run;
	int64_t single_net = 0, sharded_net = 0;
	struct stress_rng rng;
	struct stress_pacer pacer;

	stress_rng_init(&rng, run->stress->opt.seed, (uint64_t)self->index);
	stress_pacer_init(&pacer, run->stress, run->stress->opt.threads);
	int64_t batch = stress_pace_batch(&pacer, BATCH);
	while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
		for (int64_t i = 0; i < batch; i += 2) {
			uint64_t bits = stress_rng_next(&rng);
			int64_t n = 1 + (int64_t)(bits % 4);

			if (bits & 0x100) {
				single_net += tally_gauge_add(&run->single, n, NULL) == TALLY_OK ? n : 0;
				sharded_net += tally_sgauge_add(&run->sharded, n) == TALLY_OK ? n : 0;
			} else {
				single_net -= tally_gauge_sub(&run->single, n, NULL) == TALLY_OK ? n : 0;
				sharded_net -= tally_sgauge_sub(&run->sharded, n) == TALLY_OK ? n : 0;
			}
		}
		stress_ops(run->stress, batch);
		stress_pace(&pacer, batch);
	}
	atomic_fetch_add(&run->single_net, single_net);
	atomic_fetch_add(&run->sharded_net, sharded_net);
	return NULL;
}

static void *monitor(void *arg)
{
	struct run *run = arg;
	int64_t single, sharded, checks = 0;

	while (!atomic_load(&run->stop)) {
		tally_gauge_read(&run->single, &single);
		tally_sgauge_read(&run->sharded, &sharded);
		if (single < FLOOR || single > CEILING || sharded < FLOOR || sharded > CEILING)
			stress_violation(run->stress, "read outside [%d, %d]: single %lld, sharded "
					 "%lld", FLOOR, CEILING, (long long)single,
					 (long long)sharded);
		if (++checks == 1024) {
			stress_checked(run->stress, 2 * checks);
			checks = 0;
		}
	}
	stress_checked(run->stress, 2 * checks);
	return NULL;
}

static void final_checks(struct run *run)
{
	struct stress_run *stress = run->stress;
	int64_t single, sharded;

	tally_gauge_read(&run->single, &single);
	tally_sgauge_read(&run->sharded, &sharded);
	int64_t single_expect = INITIAL + atomic_load(&run->single_net);
	int64_t sharded_expect = INITIAL + atomic_load(&run->sharded_net);
	stress_check(stress, single == single_expect, "single gauge %lld, expected %lld",
		     (long long)single, (long long)single_expect);
	stress_check(stress, sharded == sharded_expect, "sharded gauge %lld, expected %lld",
		     (long long)sharded, (long long)sharded_expect);
	int64_t room = CEILING - sharded;
	bool room_exact = room == 0 || tally_sgauge_add(&run->sharded, room) == TALLY_OK;
	room_exact = room_exact && tally_sgauge_inc(&run->sharded) == TALLY_ECEILING;
	stress_check(stress, room_exact, "sharded gauge headroom is not exactly %lld",
		     (long long)room);
	stress_field_int(stress, "single_drift", single - single_expect);
	stress_field_int(stress, "sharded_drift", sharded - sharded_expect);
	stress_field_int(stress, "headroom_exact", room_exact);
}

int main(int argc, char **argv)
{
	static struct stress_run stress;
	static struct run run;
	struct churn_arg args[STRESS_THREADS_MAX];
	pthread_t threads[STRESS_THREADS_MAX + 1];
	int count;

	stress_init(&stress, "gauge", argc, argv, NULL);
	count = stress.opt.threads;
	run.stress = &stress;
	tally_gauge_init(&run.single, INITIAL, FLOOR, CEILING);
	tally_sgauge_init(&run.sharded, INITIAL, FLOOR, CEILING, 0);
	for (int i = 0; i < count; i++) {
		args[i] = (struct churn_arg){ &run, i };
		pthread_create(&threads[i], NULL, churn, &args[i]);
	}
	pthread_create(&threads[count], NULL, monitor, &run);
	stress_wait(&stress, NULL);
	atomic_store(&run.stop, 1);
	for (int i = 0; i <= count; i++)
		pthread_join(threads[i], NULL);
	final_checks(&run);
	tally_gauge_destroy(&run.single);
	tally_sgauge_destroy(&run.sharded);
	return stress_finish(&stress);
}
