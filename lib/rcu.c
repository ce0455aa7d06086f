/*
 * tally's RCU domain: automatic thread registration and annotated reclamation.
 *
 * Registration is tracked in a thread-local flag so that register is idempotent (liburcu
 * asserts on a double registration); a pthread key destructor unregisters at thread exit.
 *
 * ThreadSanitizer: every read-side unlock releases `grace_period_edge` and every reclaim
 * acquires it, which tells TSan what a grace period guarantees: all read-side sections that
 * could see an object happen before its free. Retire releases the object and reclaim acquires
 * it, the edge that liburcu's call_rcu queue carries in inline assembly.
 */
#include <pthread.h>
#include "internal/rcu.h"
#include "internal/tsan.h"

/* initial-exec: these are read on every table call; see tally/static/thread_index.h. */
static _Thread_local int thread_registered __attribute__((tls_model("initial-exec")));
static _Thread_local int read_depth __attribute__((tls_model("initial-exec")));
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int exit_key_ready;
#ifdef TALLY_TSAN
static char grace_period_edge;
#endif

static void unregister_at_exit(void *unused)
{
	if (thread_registered) {
		urcu_memb_unregister_thread();
		thread_registered = 0;
	}
}

static void create_exit_key(void)
{
	exit_key_ready = pthread_key_create(&exit_key, unregister_at_exit) == 0;
}

int tally_rcu_thread_register(void)
{
	if (thread_registered)
		return TALLY_OK;
	pthread_once(&exit_key_once, create_exit_key);
	urcu_memb_register_thread();
	thread_registered = 1;
	if (exit_key_ready)
		pthread_setspecific(exit_key, &thread_registered);
	return TALLY_OK;
}

int tally_rcu_thread_unregister(void)
{
	if (read_depth > 0)
		return TALLY_EBUSY;
	if (thread_registered) {
		urcu_memb_unregister_thread();
		thread_registered = 0;
		if (exit_key_ready)
			pthread_setspecific(exit_key, NULL);
	}
	return TALLY_OK;
}

int tally_rcu_thread_is_registered(void)
{
	return thread_registered;
}

void tally_rcu_ensure_registered(void)
{
	if (!thread_registered)
		tally_rcu_thread_register();
}

void tally_rcu_read_lock(void)
{
	tally_rcu_ensure_registered();
	urcu_memb_read_lock();
	read_depth++;
}

void tally_rcu_read_unlock(void)
{
#ifdef TALLY_TSAN
	TALLY_TSAN_RELEASE(&grace_period_edge);
#endif
	read_depth--;
	urcu_memb_read_unlock();
}

static void run_reclaim(struct rcu_head *head)
{
	struct tally_rcu_head *rcu = caa_container_of(head, struct tally_rcu_head, head);

#ifdef TALLY_TSAN
	TALLY_TSAN_ACQUIRE(&grace_period_edge);
#endif
	TALLY_TSAN_ACQUIRE(rcu);
	rcu->reclaim(rcu);
}

void tally_rcu_retire(struct tally_rcu_head *rcu, void (*reclaim)(struct tally_rcu_head *rcu))
{
	tally_rcu_ensure_registered();
	rcu->reclaim = reclaim;
	TALLY_TSAN_RELEASE(rcu);
	urcu_memb_call_rcu(&rcu->head, run_reclaim);
}

int tally_rcu_barrier(void)
{
	if (read_depth > 0)
		return TALLY_EBUSY;
	tally_rcu_ensure_registered();
	urcu_memb_barrier();
	return TALLY_OK;
}
