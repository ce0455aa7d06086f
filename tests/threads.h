/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/threads.h: start N threads on one function behind a barrier, join them all.
 * Shared by the concurrent tests and the stress programs.
 */
#ifndef TALLY_TESTS_THREADS_H
#define TALLY_TESTS_THREADS_H
#include <pthread.h>
#include <stdlib.h>

struct test_thread {
	pthread_t handle;
	int index;
	void *shared;
	pthread_barrier_t *start;
	void *(*body)(struct test_thread *self);
	void *result;
};

static void *test_thread_trampoline(void *arg)
{
	struct test_thread *self = arg;

	pthread_barrier_wait(self->start);
	self->result = self->body(self);
	return NULL;
}

/* Runs body on `count` threads at once and joins them; returns 0. Aborts if a thread cannot
 * start (the started ones would wait on the barrier forever): a test harness only. */
__attribute__((unused))
static int run_threads(int count, void *(*body)(struct test_thread *), void *shared,
		       struct test_thread *threads)
{
	pthread_barrier_t start;
	int started = 0;

	pthread_barrier_init(&start, NULL, (unsigned)count);
	for (int i = 0; i < count; i++) {
		threads[i] = (struct test_thread){ .index = i, .shared = shared, .start = &start,
						   .body = body };
		if (pthread_create(&threads[i].handle, NULL, test_thread_trampoline, &threads[i]))
			abort();
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(threads[i].handle, NULL);
	pthread_barrier_destroy(&start);
	return 0;
}
#endif
