/* SPDX-License-Identifier: BSD-2-Clause */
/* lib/internal/sweeper.c: the background sweep thread (see sweeper.h). */
#include <errno.h>
#include <time.h>
#include <tally/error.h>
#include <tally/rcu.h>
#include "internal/sweeper.h"

int tally__sweeper_init(struct tally__sweeper *sweeper)
{
	pthread_condattr_t attr;
	int failed;

	sweeper->running = sweeper->stop = false;
	if (pthread_condattr_init(&attr))
		return TALLY_ENOMEM;
	failed = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) ||
		 pthread_cond_init(&sweeper->wake, &attr);
	pthread_condattr_destroy(&attr);
	if (failed)
		return TALLY_ENOMEM;
	if (pthread_mutex_init(&sweeper->lock, NULL)) {
		pthread_cond_destroy(&sweeper->wake);
		return TALLY_ENOMEM;
	}
	return TALLY_OK;
}

void tally__sweeper_destroy(struct tally__sweeper *sweeper)
{
	if (tally__sweeper_running(sweeper))
		tally__sweeper_stop(sweeper);
	pthread_cond_destroy(&sweeper->wake);
	pthread_mutex_destroy(&sweeper->lock);
}

static struct timespec deadline_after(int64_t ns)
{
	struct timespec at;

	clock_gettime(CLOCK_MONOTONIC, &at);
	at.tv_sec += (time_t)(ns / 1000000000);
	at.tv_nsec += (long)(ns % 1000000000);
	if (at.tv_nsec >= 1000000000) {
		at.tv_sec++;
		at.tv_nsec -= 1000000000;
	}
	return at;
}

static void *sweeper_main(void *arg)
{
	struct tally__sweeper *sweeper = arg;

	pthread_mutex_lock(&sweeper->lock);
	while (!sweeper->stop) {
		struct timespec at = deadline_after(sweeper->interval_ns);
		int wait = 0;

		while (!sweeper->stop && wait != ETIMEDOUT)
			wait = pthread_cond_timedwait(&sweeper->wake, &sweeper->lock, &at);
		if (sweeper->stop)
			break;
		pthread_mutex_unlock(&sweeper->lock);
		sweeper->sweep(sweeper->arg);
		pthread_mutex_lock(&sweeper->lock);
	}
	pthread_mutex_unlock(&sweeper->lock);
	/* Also done at thread exit; explicit, so the registry forgets the thread at once. */
	tally_rcu_thread_unregister();
	return NULL;
}

int tally__sweeper_start(struct tally__sweeper *sweeper, int64_t interval_ns,
			 void (*sweep)(void *arg), void *arg)
{
	int err = TALLY_OK;

	pthread_mutex_lock(&sweeper->lock);
	if (sweeper->running) {
		err = TALLY_ESTATE;
	} else {
		sweeper->interval_ns = interval_ns;
		sweeper->sweep = sweep;
		sweeper->arg = arg;
		sweeper->stop = false;
		if (pthread_create(&sweeper->thread, NULL, sweeper_main, sweeper) != 0)
			err = TALLY_ETHREAD;
		else
			sweeper->running = true;
	}
	pthread_mutex_unlock(&sweeper->lock);
	return err;
}

int tally__sweeper_stop(struct tally__sweeper *sweeper)
{
	pthread_mutex_lock(&sweeper->lock);
	if (!sweeper->running || sweeper->stop) {
		pthread_mutex_unlock(&sweeper->lock);
		return TALLY_ESTATE;
	}
	sweeper->stop = true;
	pthread_cond_signal(&sweeper->wake);
	pthread_mutex_unlock(&sweeper->lock);
	pthread_join(sweeper->thread, NULL);
	pthread_mutex_lock(&sweeper->lock);
	sweeper->running = false;
	pthread_mutex_unlock(&sweeper->lock);
	return TALLY_OK;
}

bool tally__sweeper_running(struct tally__sweeper *sweeper)
{
	bool running;

	pthread_mutex_lock(&sweeper->lock);
	running = sweeper->running;
	pthread_mutex_unlock(&sweeper->lock);
	return running;
}
