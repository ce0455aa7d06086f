/*
 * tally's RCU domain: automatic thread registration and annotated reclamation.
 *
 * Registration is tracked in a thread-local flag so that register is idempotent (liburcu
 * asserts on a double registration); a pthread key destructor unregisters at thread exit.
 *
 * Retire batching. Each call_rcu costs two read-modify-writes on lines that every retiring
 * thread and liburcu's call_rcu thread share (the queue tail and its length), and the
 * call_rcu thread pays a dequeue per callback. With two cores that doubled the cost of a
 * connection leave. So a thread collects its retired objects in a private batch and hands
 * RETIRE_BATCH of them to call_rcu as one callback. Correctness: each object was unlinked
 * before it joined the batch, and the batch's grace period starts after its last retire, so
 * it covers every reader that could see any of them. The cost is retention: up to
 * RETIRE_BATCH - 1 objects per thread wait for that thread's next retires, its exit or
 * unregistration, or any tally_rcu_barrier(), which flushes every thread's batch.
 *
 * ThreadSanitizer: every read-side unlock releases `grace_period_edge` and every reclaim
 * acquires it, which tells TSan what a grace period guarantees: all read-side sections that
 * could see an object happen before its free. Retire releases the object and reclaim acquires
 * it, the edge that liburcu's call_rcu queue carries in inline assembly.
 */
#include <pthread.h>
#include <stdatomic.h>
#include "internal/rcu.h"
#include "internal/tsan.h"

#define RETIRE_BATCH 32

/* One thread's retired objects that have not been handed to call_rcu yet: a stack that the
 * owner pushes onto and that the owner (when full) or a barrier takes whole by exchange. */
struct retire_batch {
	_Atomic(struct tally_rcu_head *) first; /* chained by batch_next */
	unsigned pushed;                  /* owner only: pushes since the owner last took it */
	int listed;                       /* in all_batches; owner only */
	struct retire_batch *prev, *next; /* in all_batches; under batches_lock */
};

/* initial-exec: these are read on every table call; see tally/static/thread_index.h. */
static _Thread_local int thread_registered __attribute__((tls_model("initial-exec")));
static _Thread_local int read_depth __attribute__((tls_model("initial-exec")));
static pthread_once_t exit_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static int exit_key_ready;
static _Thread_local struct retire_batch my_batch __attribute__((tls_model("initial-exec")));
static pthread_mutex_t batches_lock = PTHREAD_MUTEX_INITIALIZER;
static struct retire_batch *all_batches; /* under batches_lock */
#ifdef TALLY_TSAN
static char grace_period_edge;
#endif

static void flush_own_batch(void);
static void unlist_own_batch(void);

static void unregister_at_exit(void *unused)
{
	if (thread_registered) {
		flush_own_batch();
		unlist_own_batch();
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
		flush_own_batch();
		unlist_own_batch();
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

/* The call_rcu callback of a batch: a grace period has passed since its last retire. */
static void run_batch(struct rcu_head *head)
{
	struct tally_rcu_head *rcu = caa_container_of(head, struct tally_rcu_head, head);
	struct tally_rcu_head *next;

#ifdef TALLY_TSAN
	TALLY_TSAN_ACQUIRE(&grace_period_edge);
#endif
	for (; rcu; rcu = next) {
		TALLY_TSAN_ACQUIRE(rcu);
		next = rcu->batch_next; /* read before reclaim frees it */
		rcu->reclaim(rcu);
	}
}

/* Takes the whole chain (acquire: pairs with the release of each push, so the taker sees
 * every pushed object's fields and its batch_next). */
static struct tally_rcu_head *batch_take(struct retire_batch *batch)
{
	return atomic_exchange_explicit(&batch->first, NULL, memory_order_acquire);
}

static void hand_to_call_rcu(struct tally_rcu_head *chain)
{
	if (chain)
		urcu_memb_call_rcu(&chain->head, run_batch);
}

static void list_own_batch(void)
{
	pthread_mutex_lock(&batches_lock);
	my_batch.next = all_batches;
	my_batch.prev = NULL;
	if (all_batches)
		all_batches->prev = &my_batch;
	all_batches = &my_batch;
	pthread_mutex_unlock(&batches_lock);
	my_batch.listed = 1;
}

static void unlist_own_batch(void)
{
	if (!my_batch.listed)
		return;
	pthread_mutex_lock(&batches_lock);
	if (my_batch.prev)
		my_batch.prev->next = my_batch.next;
	else
		all_batches = my_batch.next;
	if (my_batch.next)
		my_batch.next->prev = my_batch.prev;
	pthread_mutex_unlock(&batches_lock);
	my_batch.listed = 0;
}

static void flush_own_batch(void)
{
	my_batch.pushed = 0;
	hand_to_call_rcu(batch_take(&my_batch));
}

/* Lock-free: the CAS loop only races with a barrier taking the chain. */
void tally_rcu_retire(struct tally_rcu_head *rcu, void (*reclaim)(struct tally_rcu_head *rcu))
{
	struct tally_rcu_head *first;

	tally_rcu_ensure_registered();
	rcu->reclaim = reclaim;
	if (!exit_key_ready) {
		/* No exit hook to flush a batch, so a batch could outlive its thread: none. */
		rcu->batch_next = NULL;
		TALLY_TSAN_RELEASE(rcu);
		hand_to_call_rcu(rcu);
		return;
	}
	if (!my_batch.listed)
		list_own_batch();
	first = atomic_load_explicit(&my_batch.first, memory_order_relaxed);
	do {
		rcu->batch_next = first;
		TALLY_TSAN_RELEASE(rcu); /* the object's last write: pairs with run_batch */
		/* release: publishes rcu's fields to batch_take */
	} while (!atomic_compare_exchange_weak_explicit(&my_batch.first, &first, rcu,
						       memory_order_release,
						       memory_order_relaxed));
	/* A barrier may have taken part of the chain meanwhile: then this take hands over a
	 * shorter batch, which is only less efficient. */
	if (++my_batch.pushed == RETIRE_BATCH)
		flush_own_batch();
}

/* Hands every thread's partial batch to call_rcu (the calling thread is registered). */
static void flush_all_batches(void)
{
	pthread_mutex_lock(&batches_lock);
	for (struct retire_batch *batch = all_batches; batch; batch = batch->next)
		hand_to_call_rcu(batch_take(batch));
	pthread_mutex_unlock(&batches_lock);
}

int tally_rcu_barrier(void)
{
	if (read_depth > 0)
		return TALLY_EBUSY;
	tally_rcu_ensure_registered();
	flush_all_batches();
	urcu_memb_barrier();
	return TALLY_OK;
}
