/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * stress/gauge.c: listener joins and leaves on one hot gauge, single-word and sharded, with
 * greedy multi-unit decrements and a ceiling, while a monitor reads continuously.
 * Invariants:
 * - continuously: no read ever shows a value outside [floor, ceiling] (the floor is never
 *   observed crossed);
 * - at the end: the value is exactly initial + successful adds - successful subs, and every
 *   unit of headroom is back (the sharded gauge accepts exactly ceiling - value more).
 * With --store URL: --processes workers (default 3) each publish their single-word and
 * sharded gauges through the write-behind flusher; workers are SIGKILLed and restarted as new
 * epochs (whose open removes the dead epoch's contributions), and the last is killed at the
 * end and never restarted. Checked: after its lease expires and the reap, the store's global
 * value of each gauge equals the sum of the live workers' values, never below the floor.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "tally/gauge.h"
#include "tally/writebehind.h"
#include "fleet.h"
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

/* ---- with a store: a fleet of writer processes ---------------------------------------- */

enum { FINAL_SINGLE, FINAL_SHARDED };

static struct fleet_options options = { .kill_every_s = 1.0, .writer_ttl_ms = 2000,
					.flush_ms = 50 };

struct store_run {
	struct fleet fleet;
	char single_key[48], sharded_key[48], tag[24];
};

static int store_worker(struct stress_run *stress, void *arg, int slot)
{
	struct store_run *sr = arg;
	struct fleet_incarnation *me = fleet_worker_me(sr->fleet.shared, slot);
	static struct run run;
	struct churn_arg args[STRESS_THREADS_MAX];
	pthread_t threads[STRESS_THREADS_MAX + 1];
	struct fleet_writer writer;
	char writer_id[TALLY_STORE_WRITER_ID_MAX + 1];
	int count = stress->opt.threads;

	run.stress = stress;
	snprintf(writer_id, sizeof(writer_id), "%s-gauge-%d", sr->tag, slot);
	if (tally_gauge_init(&run.single, INITIAL, FLOOR, CEILING) ||
	    tally_sgauge_init(&run.sharded, INITIAL, FLOOR, CEILING, 0) ||
	    fleet_writer_open(&writer, stress, me, stress->opt.store, writer_id,
			      (int64_t)options.writer_ttl_ms, (int64_t)options.flush_ms, NULL, 0) ||
	    tally_writebehind_add_gauge(writer.wb, sr->single_key, strlen(sr->single_key),
					&run.single) ||
	    tally_writebehind_add_sgauge(writer.wb, sr->sharded_key, strlen(sr->sharded_key),
					 &run.sharded))
		return 20;
	atomic_store(&me->started, 1);
	for (int i = 0; i < count; i++) {
		args[i] = (struct churn_arg){ &run, i + 1000 * (me->number + 1) * (slot + 1) };
		pthread_create(&threads[i], NULL, churn, &args[i]);
	}
	pthread_create(&threads[count], NULL, monitor, &run);
	while (!fleet_worker_stopping(sr->fleet.shared))
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	atomic_store(&run.stop, 1);
	for (int i = 0; i <= count; i++)
		pthread_join(threads[i], NULL);
	fleet_writer_flush(&writer, "final flush");
	tally_gauge_read(&run.single, &me->final[FINAL_SINGLE]);
	tally_sgauge_read(&run.sharded, &me->final[FINAL_SHARDED]);
	fleet_worker_idle(sr->fleet.shared, slot, fleet_writer_reflush, &writer);
	fleet_writer_close(&writer);
	tally_gauge_destroy(&run.single);
	tally_sgauge_destroy(&run.sharded);
	return 0;
}

/* After the reap: each gauge's global value is the sum of the live workers' values. */
static void check_globals(void *arg, struct tally_store *reader)
{
	struct store_run *sr = arg;
	struct stress_run *stress = sr->fleet.run;
	const char *keys[] = { sr->single_key, sr->sharded_key };

	for (int g = 0; g < 2; g++) {
		int64_t value = -1, expected = 0;

		for (int slot = 0; slot < sr->fleet.workers; slot++)
			if (!fleet_abandoned(&sr->fleet, slot))
				expected += fleet_current(&sr->fleet, slot)->final[g];
		tally_store_read_gauge(reader, keys[g], strlen(keys[g]), &value, NULL);
		stress_check(stress, value == expected && value >= FLOOR, "gauge %s: global %lld "
			     "after the reap, the live workers hold %lld", keys[g], (long long)value,
			     (long long)expected);
		stress_field_int(stress, g ? "sharded_global" : "single_global", value);
	}
}

static int run_with_store(struct stress_run *stress)
{
	static struct store_run sr;

	snprintf(sr.tag, sizeof(sr.tag), "g%d", (int)getpid());
	snprintf(sr.single_key, sizeof(sr.single_key), "gauge/%s", sr.tag);
	snprintf(sr.sharded_key, sizeof(sr.sharded_key), "sgauge/%s", sr.tag);
	return fleet_run(&sr.fleet, stress, 3, store_worker, &sr, &options, NULL,
			 check_globals);
}

int main(int argc, char **argv)
{
	static struct stress_run stress;
	static struct run run;
	struct churn_arg args[STRESS_THREADS_MAX];
	pthread_t threads[STRESS_THREADS_MAX + 1];
	int count;

	stress_init(&stress, "gauge", argc, argv, fleet_flags(&options));
	if (stress.opt.store)
		return run_with_store(&stress);
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
