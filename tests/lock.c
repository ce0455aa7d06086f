/* SPDX-License-Identifier: BSD-2-Clause */
/* tests/lock.c: the futex-word mutex (lib/internal/lock.c): mutual exclusion under
 * contention, waiters that must sleep, the word's state afterwards, and the debug check
 * tally__lock_assert_held (compiled here with TALLY_DEBUG, mk/core.am). */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "internal/lock.h"
#include "tap.h"
#include "threads.h"

#define THREADS 4
#define ROUNDS 200000
#define SLEEPY_ROUNDS 20

struct guarded {
	struct tally_lock lock;
	int64_t plain_count;   /* written only under the lock: TSan reports a missed exclusion */
	_Atomic int inside;    /* holders at once; must never exceed 1 */
	_Atomic int overlaps;
	long hold_ns;          /* how long each holder stays (0: no wait) */
	int rounds;
};

static void hold_for(long ns)
{
	struct timespec pause = { 0, ns };

	if (ns)
		nanosleep(&pause, NULL);
}

static void *take_turns(struct test_thread *self)
{
	struct guarded *guarded = self->shared;

	for (int i = 0; i < guarded->rounds; i++) {
		tally__lock_acquire(&guarded->lock);
		if (atomic_fetch_add(&guarded->inside, 1) != 0)
			atomic_fetch_add(&guarded->overlaps, 1);
		guarded->plain_count++;
		hold_for(guarded->hold_ns);
		atomic_fetch_sub(&guarded->inside, 1);
		tally__lock_release(&guarded->lock);
	}
	return NULL;
}

static void run(struct guarded *guarded, const char *what)
{
	struct test_thread threads[THREADS];

	tally__lock_init(&guarded->lock);
	run_threads(THREADS, take_turns, guarded, threads);
	tap_eq(atomic_load(&guarded->overlaps), 0, "%s: never two holders at once", what);
	tap_eq(guarded->plain_count, (int64_t)THREADS * guarded->rounds,
	       "%s: every increment under the lock counted", what);
	tap_eq(atomic_load(&guarded->lock.state), TALLY_LOCK_FREE, "%s: free afterwards", what);
}

/* Holds the lock until told to let go, so the main thread sees it held by another. */
struct holder {
	struct tally_lock *lock;
	_Atomic int holding, let_go;
};

static void *hold_until_told(void *arg)
{
	struct holder *holder = arg;

	tally__lock_acquire(holder->lock);
	atomic_store(&holder->holding, 1);
	while (!atomic_load(&holder->let_go))
		hold_for(100000);
	tally__lock_release(holder->lock);
	return NULL;
}

static void test_is_held(void)
{
	struct tally_lock lock;
	struct holder holder = { .lock = &lock };
	pthread_t thread;

	tally__lock_init(&lock);
	tap_ok(!tally__lock_is_held(&lock), "is_held: a new lock is free");
	tally__lock_acquire(&lock);
	tap_ok(tally__lock_is_held(&lock), "is_held: true for the holder");
	tally__lock_release(&lock);
	tap_ok(!tally__lock_is_held(&lock), "is_held: false after the release");
	if (pthread_create(&thread, NULL, hold_until_told, &holder) != 0)
		abort();
	while (!atomic_load(&holder.holding))
		hold_for(100000);
	tap_ok(tally__lock_is_held(&lock), "is_held: true while another thread holds it");
	atomic_store(&holder.let_go, 1);
	pthread_join(thread, NULL);
	tap_ok(!tally__lock_is_held(&lock), "is_held: false once that thread released it");
}

/* Runs tally__lock_assert_held on `lock` in a child; its exit status and what it wrote to
 * stderr (up to size - 1 bytes) come back. Called before any thread exists. */
static int assert_in_child(struct tally_lock *lock, char *text, size_t size)
{
	int pipe_fds[2], status = -1;
	ssize_t got;
	pid_t pid;

	if (pipe(pipe_fds) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		struct rlimit no_core = { 0, 0 };

		setrlimit(RLIMIT_CORE, &no_core); /* the abort is expected: no core file */
		dup2(pipe_fds[1], STDERR_FILENO);
		tally__lock_assert_held(lock);
		_exit(0);
	}
	close(pipe_fds[1]);
	got = pid > 0 ? read(pipe_fds[0], text, size - 1) : -1;
	text[got > 0 ? got : 0] = '\0';
	close(pipe_fds[0]);
	if (pid > 0)
		waitpid(pid, &status, 0);
	return status;
}

static void test_assert_held(void)
{
	struct tally_lock lock;
	char text[256];
	int status;

	tally__lock_init(&lock);
	status = assert_in_child(&lock, text, sizeof(text));
	tap_ok(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
	       "assert_held on a free lock aborts (status %d)", status);
	tap_ok(strstr(text, "tests/lock.c:") != NULL, "... naming the place of the check (%s)",
	       strtok(text, "\n") ? text : "nothing");
	tally__lock_acquire(&lock);
	status = assert_in_child(&lock, text, sizeof(text));
	tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0 && text[0] == '\0',
	       "assert_held on a held lock passes silently (status %d)", status);
	tally__lock_release(&lock);
}

int main(void)
{
	struct tally_lock lock;
	struct guarded busy = { .rounds = ROUNDS };
	/* 2 ms holds: waiters outlast the spin and sleep in FUTEX_WAIT */
	struct guarded sleepy = { .rounds = SLEEPY_ROUNDS, .hold_ns = 2000000 };

	test_assert_held(); /* first: it forks, and no thread runs yet */
	test_is_held();
	tally__lock_init(&lock);
	tally__lock_acquire(&lock);
	tap_eq(atomic_load(&lock.state), TALLY_LOCK_HELD, "an uncontended acquire marks it held");
	tally__lock_release(&lock);
	tap_eq(atomic_load(&lock.state), TALLY_LOCK_FREE, "release frees it");
	run(&busy, "short holds");
	run(&sleepy, "long holds");
	return tap_done();
}
