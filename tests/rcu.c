/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/rcu.c: registration is automatic and idempotent; retire runs after readers leave;
 * per-thread retire batches are flushed by barriers, thread exit and unregistration; inline
 * reclamation frees in the retiring thread, after readers, every 2,048 retires. */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
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
		tally__rcu_retire(&object->rcu, reclaim);
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
	static struct parked parked = { .lock = PTHREAD_MUTEX_INITIALIZER,
					.changed = PTHREAD_COND_INITIALIZER };
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

/* ---- inline reclamation ------------------------------------------------------------------ */

#define INLINE_EVERY 2048 /* retires per inline grace period (lib/rcu.c: 64 blocks of 32) */

static void test_set_reclaim_checks(void)
{
	tap_eq(tally_rcu_thread_reclaim(), TALLY_RCU_RECLAIM_DEFERRED, "deferred by default");
	tap_eq(tally_rcu_thread_set_reclaim(7), TALLY_EINVAL, "unknown mode: EINVAL");
	tap_eq(tally_rcu_thread_set_reclaim(-1), TALLY_EINVAL, "negative mode: EINVAL");
	tally_rcu_read_lock();
	tap_eq(tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_INLINE), TALLY_EBUSY,
	       "no mode change inside a section");
	tally_rcu_read_unlock();
	tap_eq(tally_rcu_thread_reclaim(), TALLY_RCU_RECLAIM_DEFERRED, "a refused change changes nothing");
	tap_eq(tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_INLINE), TALLY_OK, "set inline");
	tap_eq(tally_rcu_thread_reclaim(), TALLY_RCU_RECLAIM_INLINE, "inline is reported");
	tap_eq(tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_DEFERRED), TALLY_OK, "back");
}

/* Outside any section: the retire that completes the batch frees all of it, in this thread. */
static void test_inline_frees_in_thread(void)
{
	atomic_store(&batch_reclaimed, 0);
	tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_INLINE);
	retire_some(INLINE_EVERY - 1);
	urcu_memb_barrier(); /* nothing was handed to call_rcu */
	tap_eq(atomic_load(&batch_reclaimed), 0, "inline: fewer than a batch are held");
	retire_some(1);
	tap_eq(atomic_load(&batch_reclaimed), INLINE_EVERY,
	       "inline: the batch's last retire frees the batch before it returns");

	/* Inside a section the batch waits for the outermost unlock. */
	atomic_store(&batch_reclaimed, 0);
	tally_rcu_read_lock();
	tally_rcu_read_lock();
	retire_some(INLINE_EVERY);
	tally_rcu_read_unlock();
	tap_eq(atomic_load(&batch_reclaimed), 0, "inline: nothing freed inside a section");
	tally_rcu_read_unlock();
	tap_eq(atomic_load(&batch_reclaimed), INLINE_EVERY, "inline: the outermost unlock frees");

	/* Leaving inline mode hands what the thread holds to call_rcu. */
	atomic_store(&batch_reclaimed, 0);
	retire_some(100);
	tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_DEFERRED);
	urcu_memb_barrier();
	tap_eq(atomic_load(&batch_reclaimed), 100, "leaving inline mode flushes to call_rcu");

	/* A thread that stays in one section does not hold more than the cap. */
	atomic_store(&batch_reclaimed, 0);
	tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_INLINE);
	tally_rcu_read_lock();
	retire_some(4 * INLINE_EVERY + 5);
	tally_rcu_read_unlock();
	urcu_memb_barrier();
	tap_eq(atomic_load(&batch_reclaimed), 4 * INLINE_EVERY + 5,
	       "inline: past the cap inside a section, the chain goes to call_rcu");
	tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_DEFERRED);
}

/* The inline grace period waits for a reader that could still see a retired object. */
struct pinned {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	int reading, release, retired;
};

static void wait_for_flag(struct pinned *pinned, int *flag)
{
	pthread_mutex_lock(&pinned->lock);
	while (!*flag)
		pthread_cond_wait(&pinned->changed, &pinned->lock);
	pthread_mutex_unlock(&pinned->lock);
}

static void set_flag(struct pinned *pinned, int *flag)
{
	pthread_mutex_lock(&pinned->lock);
	*flag = 1;
	pthread_cond_broadcast(&pinned->changed);
	pthread_mutex_unlock(&pinned->lock);
}

static void *pinned_reader_or_retirer(struct test_thread *self)
{
	struct pinned *pinned = self->shared;

	if (self->index == 0) { /* reader: stays in a section until released */
		tally_rcu_read_lock();
		set_flag(pinned, &pinned->reading);
		wait_for_flag(pinned, &pinned->release);
		tally_rcu_read_unlock();
		return NULL;
	}
	wait_for_flag(pinned, &pinned->reading);
	tally_rcu_thread_set_reclaim(TALLY_RCU_RECLAIM_INLINE);
	retire_some(INLINE_EVERY); /* its last retire waits for the reader */
	set_flag(pinned, &pinned->retired);
	return NULL;
}

static void *release_reader_later(void *arg)
{
	struct pinned *pinned = arg;
	struct timespec pause = { 0, 100 * 1000 * 1000 };

	wait_for_flag(pinned, &pinned->reading);
	nanosleep(&pause, NULL); /* give the retirer time to reach its grace period */
	/* Safety, not speed: the reader is still inside its section, so nothing may be freed. */
	tap_eq(atomic_load(&batch_reclaimed), 0, "inline: no free while an older reader reads");
	set_flag(pinned, &pinned->release);
	return NULL;
}

static void test_inline_waits_for_readers(void)
{
	static struct pinned pinned = { .lock = PTHREAD_MUTEX_INITIALIZER,
					.changed = PTHREAD_COND_INITIALIZER };
	struct test_thread threads[2];
	pthread_t releaser;

	atomic_store(&batch_reclaimed, 0);
	pthread_create(&releaser, NULL, release_reader_later, &pinned);
	run_threads(2, pinned_reader_or_retirer, &pinned, threads);
	pthread_join(releaser, NULL);
	tap_eq(atomic_load(&batch_reclaimed), INLINE_EVERY,
	       "inline: the batch is freed once the reader has left");
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
	tally__rcu_retire(&object->rcu, reclaim);
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
	test_set_reclaim_checks();
	test_inline_frees_in_thread();
	test_inline_waits_for_readers();

	tap_eq(tally_rcu_thread_unregister(), TALLY_OK, "unregister");
	tap_eq(tally_rcu_thread_unregister(), TALLY_OK, "unregister again is a no-op");
	tap_eq(tally_rcu_thread_is_registered(), 0, "unregistered");
	return tap_done();
}
