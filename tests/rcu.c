/* tests/rcu.c: registration is automatic and idempotent; retire runs after readers leave. */
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

	tap_eq(tally_rcu_thread_unregister(), TALLY_OK, "unregister");
	tap_eq(tally_rcu_thread_unregister(), TALLY_OK, "unregister again is a no-op");
	tap_eq(tally_rcu_thread_is_registered(), 0, "unregistered");
	return tap_done();
}
