/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * examples/listeners.c: the hot path of a broadcast server, in process.
 *
 * A floor-guarded gauge keeps a session's listener count (joins increment, leaves decrement,
 * a duplicate leave is refused by the floor instead of driving the count negative), and a
 * sharded counter counts delivered messages; a flusher drains the counter's delta the way a
 * write-behind adapter ships `UpdateItem ... ADD` once per interval instead of once per event.
 *
 * Build against an installed tally:  cc -std=c11 listeners.c $(pkg-config --cflags --libs tally)
 */
#include <pthread.h>
#include <stdio.h>
#include <tally/counter.h>
#include <tally/gauge.h>

#define LISTENERS 4
#define MESSAGES 100000

static struct tally_gauge listener_count;
static struct tally_counter messages_delivered;

static void *listener(void *arg)
{
	int err = tally_gauge_inc(&listener_count, NULL);

	if (err != TALLY_OK)
		fprintf(stderr, "join refused: %s\n", tally_strerror(err));
	for (int i = 0; i < MESSAGES; i++)
		tally_counter_inc(&messages_delivered);
	tally_gauge_dec(&listener_count, NULL);
	return NULL;
}

int main(void)
{
	pthread_t threads[LISTENERS];
	int64_t count, delta;
	int err;

	if ((err = tally_gauge_init(&listener_count, 0, 0, 10000)) != TALLY_OK ||
	    (err = tally_counter_init(&messages_delivered, 0)) != TALLY_OK) {
		fprintf(stderr, "init: %s\n", tally_strerror(err));
		return 1;
	}
	for (int i = 0; i < LISTENERS; i++)
		pthread_create(&threads[i], NULL, listener, NULL);
	for (int i = 0; i < LISTENERS; i++)
		pthread_join(threads[i], NULL);

	/* A second disconnect of a listener that already left: refused, count stays at 0. */
	err = tally_gauge_dec(&listener_count, NULL);
	tally_gauge_read(&listener_count, &count);
	printf("duplicate leave: %s; listeners now %lld\n", tally_strerror(err), (long long)count);

	tally_counter_drain(&messages_delivered, &delta);
	printf("flush: ADD %lld to messages_delivered in one store write\n", (long long)delta);
	tally_counter_destroy(&messages_delivered);
	tally_gauge_destroy(&listener_count);
	return 0;
}
