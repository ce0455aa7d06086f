/* tests/rcu.c: registration is automatic and idempotent; retire runs after readers leave;
 * per-thread retire batches are flushed by barriers, thread exit and unregistration. */
#include <stdatomic.h>
#include <stdlib.h>
#include "tally/rcu.h"
#include "internal/rcu.h"
#include "tap.h"
#include "threads.h"

struct retired {
	struct tally_rcu_head rcu;
	_Atomic int *reclaimed;
};

static void reclaim(struct tally_rcu_head *rcu)
{
	struct retired *object = caa_container_of(rcu, struct retired, rcu);

	atomic_fetch_add(object->reclaimed, 1);
	free(object);
}

static void *use_without_registering(struct test_thread *self)
{
	tally_rcu_read_lock();
	int registered = tally_rcu_thread_is_registered();
	tally_rcu_read_unlock();
	return (void *)(intptr_t)registered;
}

static _Atomic int batch_reclaimed;

static void retire_some(int count)
{
	for (int i = 0; i < count; i++) {
		struct retired *object = malloc(sizeof(*object));

		object->reclaimed = &batch_reclaimed;
		tally_rcu_retire(&object->rcu, reclaim);
	}
}

/* A thread retires a few objects (less than a batch) and stays alive until told. */
struct parked {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	int retired, release;
};

static void *retire_and_park(struct test_thread *self)
{
	struct parked *parked = self->shared;

	retire_some(5);
	pthread_mutex_lock(&parked->lock);
	parked->retired = 1;
	pthread_cond_broadcast(&parked->changed);
	while (!parked->release)
		pthread_cond_wait(&parked->changed, &parked->lock);
	pthread_mutex_unlock(&parked->lock);
	return NULL;
}

static void *retire_and_park_entry(void *arg)
{
	return retire_and_park(arg);
}

static void test_barrier_flushes_live_threads(void)
{
	static struct parked parked = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };
	struct test_thread thread[1];
	pthread_t runner;

	atomic_store(&batch_reclaimed, 0);
	/* run_threads joins, so drive the parked thread from a helper thread of our own */
	struct test_thread *self = &thread[0];
	*self = (struct test_thread){ .shared = &parked, .body = retire_and_park };
	pthread_create(&runner, NULL, retire_and_park_entry, self);
	pthread_mutex_lock(&parked.lock);
	while (!parked.retired)
		pthread_cond_wait(&parked.changed, &parked.lock);
	pthread_mutex_unlock(&parked.lock);
	tap_eq(tally_rcu_barrier(), TALLY_OK, "barrier while a thread holds a partial batch");
	tap_eq(atomic_load(&batch_reclaimed), 5,
	       "the barrier reclaimed the live thread's partial batch");
	pthread_mutex_lock(&parked.lock);
	parked.release = 1;
	pthread_cond_broadcast(&parked.changed);
	pthread_mutex_unlock(&parked.lock);
	pthread_join(runner, NULL);
}

static void *retire_and_exit(struct test_thread *self)
{
	retire_some(7 + 13 * self->index); /* not multiples of a batch */
	return NULL;
}

static void *retire_and_unregister(struct test_thread *self)
{
	retire_some(3);
	tally_rcu_thread_unregister();
	return NULL;
}

static void test_exit_and_unregister_flush(void)
{
	struct test_thread threads[4];
	int expected = 0;

	atomic_store(&batch_reclaimed, 0);
	run_threads(4, retire_and_exit, NULL, threads);
	for (int i = 0; i < 4; i++)
		expected += 7 + 13 * i;
	/* the exits handed the partial batches to call_rcu; wait for call_rcu only */
	urcu_memb_barrier();
	tap_eq(atomic_load(&batch_reclaimed), expected, "thread exit flushes its partial batch");

	atomic_store(&batch_reclaimed, 0);
	run_threads(2, retire_and_unregister, NULL, threads);
	urcu_memb_barrier();
	tap_eq(atomic_load(&batch_reclaimed), 6, "unregistration flushes the partial batch");
}

/* Retirers race barriers that take their chains: nothing lost, nothing reclaimed twice. */
static _Atomic int retirers_done;

static void *retire_many(struct test_thread *self)
{
	if (self->index == 0) {
		while (atomic_load(&retirers_done) < 3)
			tally_rcu_barrier();
		return NULL;
	}
	retire_some(20000 + self->index);
	atomic_fetch_add(&retirers_done, 1);
	return NULL;
}

static void test_retire_races_barrier(void)
{
	struct test_thread threads[4];

	atomic_store(&batch_reclaimed, 0);
	run_threads(4, retire_many, NULL, threads);
	tally_rcu_barrier();
	tap_eq(atomic_load(&batch_reclaimed), 20001 + 20002 + 20003,
	       "every object retired during concurrent barriers reclaimed exactly once");
}

int main(void)
{
	static _Atomic int reclaimed;
	struct test_thread threads[4];

	tap_eq(tally_rcu_thread_is_registered(), 0, "a new thread is not registered");
	tap_eq(tally_rcu_thread_register(), TALLY_OK, "register");
	tap_eq(tally_rcu_thread_register(), TALLY_OK, "register again is a no-op");
	tap_eq(tally_rcu_thread_is_registered(), 1, "registered");

	tally_rcu_read_lock();
	tally_rcu_read_lock();
	tap_eq(tally_rcu_thread_unregister(), TALLY_EBUSY, "cannot unregister inside a section");
	tap_eq(tally_rcu_barrier(), TALLY_EBUSY, "cannot wait for a barrier inside a section");
	struct retired *object = malloc(sizeof(*object));
	object->reclaimed = &reclaimed;
	tally_rcu_retire(&object->rcu, reclaim);
	tally_rcu_read_unlock();
	tally_rcu_read_unlock();
	tap_eq(tally_rcu_barrier(), TALLY_OK, "barrier outside a section");
	tap_eq(atomic_load(&reclaimed), 1, "the retired object was reclaimed once");

	run_threads(4, use_without_registering, NULL, threads);
	int all = 1;
	for (int i = 0; i < 4; i++)
		all &= threads[i].result == (void *)1;
	tap_ok(all, "threads are registered on first use (and unregistered at exit)");

	test_barrier_flushes_live_threads();
	test_exit_and_unregister_flush();
	test_retire_races_barrier();

	tap_eq(tally_rcu_thread_unregister(), TALLY_OK, "unregister");
	tap_eq(tally_rcu_thread_unregister(), TALLY_OK, "unregister again is a no-op");
	tap_eq(tally_rcu_thread_is_registered(), 0, "unregistered");
	return tap_done();
}
