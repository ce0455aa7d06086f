/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tests/sequence/lease_file.c: the file lease provider (lib/sequence/lease_file.c): records
 * persist across reopen, corruption is detected, a torn append is recovered, threads and
 * processes sharing one file get disjoint leases, and a sequence restarted from the file
 * (cleanly or after a crash) never repeats a number.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <tally/rcu.h>
#include <tally/sequence.h>
#include "internal/hash.h"
#include "../tap.h"
#include "../threads.h"

static char dir[] = "/tmp/tally-lease-XXXXXX";

static const char *path_of(const char *name)
{
	static char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return path;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static size_t count_duplicates(uint64_t *values, size_t n)
{
	size_t dup = 0;

	qsort(values, n, sizeof(*values), cmp_u64);
	for (size_t i = 1; i < n; i++)
		dup += values[i] == values[i - 1];
	return dup;
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	unsigned char b;

	if (pread(fd, &b, 1, off) != 1)
		abort();
	b ^= 0x5a;
	if (pwrite(fd, &b, 1, off) != 1)
		abort();
	close(fd);
}

static void test_basics(void)
{
	struct tally_lease_provider *p = NULL;
	struct tally_lease_record rec;
	char long_key[TALLY_LEASE_KEY_MAX + 1];
	uint64_t base = 0;
	const char *path = path_of("basic.lease");

	memset(long_key, 'k', sizeof(long_key));
	tap_eq(tally_lease_file_open(&p, NULL), TALLY_EINVAL, "open(NULL path)");
	tap_eq(tally_lease_file_open(&p, ""), TALLY_EINVAL, "open(empty path)");
	tap_eq(tally_lease_file_open(&p, "/nonexistent-dir/x.lease"), TALLY_EIO, "unopenable: EIO");
	tap_eq(tally_lease_file_open(&p, path), TALLY_OK, "open creates the file");
	tap_eq(tally_lease_read(p, "a", 1, &rec), TALLY_ENOTFOUND, "read of a new key");
	tap_eq(tally_lease_acquire(p, "", 0, 0, 10, 0, &base), TALLY_EINVAL, "empty key");
	tap_eq(tally_lease_acquire(p, long_key, sizeof(long_key), 0, 10, 0, &base), TALLY_ETOOLONG,
	       "key above TALLY_LEASE_KEY_MAX");
	tap_eq(tally_lease_acquire(p, "a", 1, 0, TALLY_LEASE_SIZE_MAX + 1, 0, &base), TALLY_EINVAL,
	       "size above TALLY_LEASE_SIZE_MAX");
	tap_eq(tally_lease_acquire(p, "a", 1, 0, 10, 0, &base), TALLY_OK, "acquire 10");
	tap_eq(base, 0, "first lease starts at 0");
	tally_lease_acquire(p, "a", 1, 0, 10, 7, &base);
	tap_eq(base, 10, "second lease starts at 10");
	tally_lease_acquire(p, "b", 1, 500, 10, 0, &base);
	tap_eq(base, 500, "min_start lifts a new key's base");
	tally_lease_acquire(p, long_key, TALLY_LEASE_KEY_MAX, 0, 1, 0, &base);
	tally_lease_provider_destroy(p);

	tap_eq(tally_lease_file_open(&p, path), TALLY_OK, "reopen");
	tally_lease_read(p, "a", 1, &rec);
	tap_ok(rec.mark == 20 && rec.issued == 7 && rec.flags == 0, "record survives reopen");
	tap_eq(tally_lease_close(p, "a", 1, 15, 12), TALLY_OK, "close with a stale hi");
	tally_lease_read(p, "a", 1, &rec);
	tap_ok(rec.mark == 20 && rec.flags == 0, "... leaves a later owner's record alone");
	tally_lease_close(p, "a", 1, 20, 12);
	tally_lease_read(p, "a", 1, &rec);
	tap_ok(rec.mark == 12 && rec.issued == 12 && rec.flags == TALLY_LEASE_CLEAN,
	       "clean close gives the unused rest back");
	tap_eq(tally_lease_close(p, "zz", 2, 1, 1), TALLY_ENOTFOUND, "close of an unknown key");
	tally_lease_provider_destroy(p);
}

static off_t file_size(const char *path);
static struct tally_series_config leased(struct tally_lease_provider *p);

static void test_corruption(void)
{
	struct tally_lease_provider *p = NULL, *q = NULL;
	struct tally_lease_record rec;
	uint64_t base;
	const char *path = path_of("corrupt.lease");
	int fd;

	tally_lease_file_open(&p, path);
	tally_lease_acquire(p, "key", 3, 0, 100, 0, &base);
	tally_lease_acquire(p, "other", 5, 0, 100, 0, &base);
	flip_byte(path, 64 + 256 + 200); /* the second record's mark */
	tap_eq(tally_lease_read(p, "key", 3, &rec), TALLY_ECORRUPT,
	       "any corrupt record fails every call (an open provider)");
	tap_eq(tally_lease_acquire(p, "key", 3, 0, 100, 0, &base), TALLY_ECORRUPT,
	       "acquire on a corrupt file: ECORRUPT");
	tap_eq(tally_lease_file_open(&q, path), TALLY_ECORRUPT, "open of a corrupt file");
	flip_byte(path, 64 + 256 + 200);
	tap_eq(tally_lease_read(p, "key", 3, &rec), TALLY_OK, "restored byte: readable again");
	flip_byte(path, 10); /* header */
	tap_eq(tally_lease_file_open(&q, path), TALLY_ECORRUPT, "bad header: ECORRUPT");
	flip_byte(path, 10);
	fd = open(path, O_WRONLY | O_APPEND);
	if (write(fd, "abc", 3) != 3)
		abort();
	close(fd);
	tap_eq(tally_lease_read(p, "key", 3, &rec), TALLY_OK,
	       "a short tail past the counted records is dropped, not ECORRUPT");
	tap_eq(file_size(path), 64 + 2 * 256, "... the file is truncated to the counted records");
	tally_lease_provider_destroy(p);
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

static void append_bytes(const char *path, const void *bytes, size_t len)
{
	int fd = open(path, O_WRONLY | O_APPEND);

	if (fd < 0 || write(fd, bytes, len) != (ssize_t)len)
		abort();
	close(fd);
}

static void read_bytes(const char *path, void *bytes, size_t len, off_t off)
{
	int fd = open(path, O_RDONLY);

	if (fd < 0 || pread(fd, bytes, len, off) != (ssize_t)len)
		abort();
	close(fd);
}

/*
 * A crash while a new key's record is appended: the record (whole, torn or short) lies past
 * the header's record count, was never acknowledged, and is dropped at the next open; the
 * counted records keep their marks and issuing resumes above them. A counted record that is
 * damaged, or missing, is still ECORRUPT.
 */
static void test_torn_append(void)
{
	struct tally_lease_provider *p = NULL, *q = NULL;
	struct tally_lease_record rec;
	struct tally_seq_recovery recovery;
	struct tally_series_config cfg;
	struct tally_sequence *seq, *seq2;
	struct tally_seq_number n;
	unsigned char garbage[256], whole[256];
	const char *path = path_of("torn.lease");
	uint64_t base;
	int ok = 1;

	/* A series issues 1..20 with leases of 16 (mark 32), then "crashes" (never closed). */
	tally_lease_file_open(&p, path);
	tally_sequence_create(&seq, NULL);
	cfg = leased(p);
	tally_sequence_series_create(seq, "t", "INV", &cfg, NULL);
	for (int i = 0; i < 20; i++)
		ok &= tally_sequence_next(seq, "t", "INV", &n) == TALLY_OK;
	tally_lease_acquire(p, "other", 5, 0, 100, 0, &base);
	tap_ok(ok && file_size(path) == 64 + 2 * 256, "two keys, two counted records");

	/* The crash came in the middle of appending a third key's record. */
	memset(garbage, 0xa5, sizeof(garbage));
	append_bytes(path, garbage, 100); /* short write */
	tap_eq(tally_lease_file_open(&q, path), TALLY_OK, "open after a short append: OK");
	tap_eq(file_size(path), 64 + 2 * 256, "... the short tail was truncated");
	tap_ok(tally_lease_read(q, "t\0INV", 5, &rec) == TALLY_OK && rec.mark == 32 &&
		       tally_lease_read(q, "other", 5, &rec) == TALLY_OK && rec.mark == 100,
	       "... both marks survive (32 and 100)");
	tally_lease_provider_destroy(q);

	append_bytes(path, garbage, sizeof(garbage)); /* whole size, bad checksum */
	tap_eq(tally_lease_file_open(&q, path), TALLY_OK, "open after a torn whole record: OK");
	tap_eq(file_size(path), 64 + 2 * 256, "... the torn record was truncated");
	tally_lease_provider_destroy(q);

	/* Even a record that checks out is dropped if the header never counted it (the crash
	 * came between the record's sync and the header's): nobody was told it existed. */
	read_bytes(path, whole, sizeof(whole), 64 + 256);
	append_bytes(path, whole, sizeof(whole));
	tap_eq(tally_lease_file_open(&q, path), TALLY_OK, "open after an uncounted valid record");
	tap_eq(file_size(path), 64 + 2 * 256, "... it was dropped too");
	tap_ok(tally_lease_read(q, "other", 5, &rec) == TALLY_OK && rec.mark == 100,
	       "... and the counted record of the same key is the one read");

	/* A restart over the recovered file (the crashed incarnation still never closed its
	 * key) resumes above the mark and reports the range after the last checkpoint. */
	tally_sequence_create(&seq2, NULL);
	cfg = leased(q);
	tap_eq(tally_sequence_series_create(seq2, "t", "INV", &cfg, &recovery), TALLY_OK,
	       "series over the recovered file");
	tap_ok(recovery.unclean && recovery.first_counter == 17 && recovery.last_counter == 32,
	       "... reports 17..32 (after the checkpoint at the second lease, up to the mark)");
	tally_sequence_next(seq2, "t", "INV", &n);
	tap_eq(n.counter, 33, "issuing resumes above the mark (33)");
	tally_sequence_destroy(seq2);
	/* The crashed incarnation's memory; its close finds a later owner's record: no-op. */
	tally_sequence_destroy(seq);
	tally_lease_provider_destroy(p);
	tally_lease_provider_destroy(q);

	/* Damage inside the counted records stays ECORRUPT, tail or no tail. */
	append_bytes(path, garbage, 10);
	flip_byte(path, 64 + 200); /* the first record's mark */
	tap_eq(tally_lease_file_open(&q, path), TALLY_ECORRUPT,
	       "a damaged counted record with a torn tail: ECORRUPT");
	tap_eq(file_size(path), 64 + 2 * 256 + 10, "... and nothing was truncated");
	flip_byte(path, 64 + 200);
	if (truncate(path, 64 + 256 + 100) != 0)
		abort();
	tap_eq(tally_lease_file_open(&q, path), TALLY_ECORRUPT,
	       "a counted record cut short: ECORRUPT (it was acknowledged)");
	unlink(path);
}

/* Two valid records for one key (its second copy with a lower mark): damage, ECORRUPT,
 * at open and for every call of an open provider; never "the last copy wins". */
static void test_duplicate_keys(void)
{
	struct tally_lease_provider *p = NULL, *q = NULL;
	struct tally_lease_record rec;
	unsigned char second[256];
	const char *path = path_of("dup.lease");
	uint64_t base = 0, check;
	int fd;

	tally_lease_file_open(&p, path);
	tally_lease_acquire(p, "dup", 3, 0, 1000, 0, &base);
	tally_lease_acquire(p, "xyz", 3, 0, 5, 0, &base);
	tally_lease_acquire(p, "other", 5, 0, 7, 0, &base);
	/* Rename the second record to "dup" (mark 5), with a valid checksum. */
	read_bytes(path, second, sizeof(second), 64 + 256);
	memcpy(second + 8, "dup", 3);
	check = tally__fnv1a64(TALLY__FNV1A64_BASIS, second, 248);
	memcpy(second + 248, &check, 8);
	fd = open(path, O_WRONLY);
	if (fd < 0 || pwrite(fd, second, sizeof(second), 64 + 256) != (ssize_t)sizeof(second))
		abort();
	close(fd);
	tap_eq(tally_lease_file_open(&q, path), TALLY_ECORRUPT,
	       "a key recorded twice (marks 1000 and 5): open is ECORRUPT");
	tap_eq(tally_lease_read(p, "dup", 3, &rec), TALLY_ECORRUPT,
	       "... read of that key by an open provider: ECORRUPT");
	base = 77;
	tap_eq(tally_lease_acquire(p, "dup", 3, 0, 10, 0, &base), TALLY_ECORRUPT,
	       "... acquire: ECORRUPT, no base 5");
	tap_eq(base, 77, "... and no base reported");
	tap_eq(tally_lease_read(p, "other", 5, &rec), TALLY_ECORRUPT,
	       "... and every other key's calls too");
	tally_lease_provider_destroy(p);
	unlink(path);
}

/* A version 1 file (no record count) is read and upgraded in place. */
static void test_version1(void)
{
	struct tally_lease_provider *p = NULL;
	struct tally_lease_record rec;
	unsigned char hdr[64] = "TALLYLSE", record[256] = { 0 }, now[64];
	const char *path = path_of("v1.lease");
	uint64_t v, base;
	uint32_t u;
	int fd;

	u = 1;
	memcpy(hdr + 8, &u, 4);
	u = 256;
	memcpy(hdr + 12, &u, 4);
	v = tally__fnv1a64(TALLY__FNV1A64_BASIS, hdr, 56);
	memcpy(hdr + 56, &v, 8);
	u = 3;
	memcpy(record, &u, 4);
	memcpy(record + 8, "old", 3);
	v = 42;
	memcpy(record + 192, &v, 8); /* mark */
	v = 40;
	memcpy(record + 200, &v, 8); /* issued */
	v = tally__fnv1a64(TALLY__FNV1A64_BASIS, record, 248);
	memcpy(record + 248, &v, 8);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, hdr, 64) != 64 || write(fd, record, 256) != 256)
		abort();
	close(fd);
	tap_eq(tally_lease_file_open(&p, path), TALLY_OK, "version 1 file opens");
	tap_ok(tally_lease_read(p, "old", 3, &rec) == TALLY_OK && rec.mark == 42 &&
		       rec.issued == 40,
	       "... its record reads back (mark 42, issued 40)");
	read_bytes(path, now, sizeof(now), 0);
	memcpy(&u, now + 8, 4);
	memcpy(&v, now + 16, 8);
	tap_ok(u == 2 && v == 1, "... and its header was upgraded to version 2, count 1");
	tap_ok(tally_lease_acquire(p, "new", 3, 0, 10, 0, &base) == TALLY_OK && base == 0 &&
		       tally_lease_acquire(p, "old", 3, 0, 10, 0, &base) == TALLY_OK && base == 42,
	       "... and takes new keys and leases above the old mark");
	tally_lease_provider_destroy(p);
	unlink(path);

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, hdr, 64) != 64 || write(fd, record, 100) != 100)
		abort();
	close(fd);
	tap_eq(tally_lease_file_open(&p, path), TALLY_ECORRUPT,
	       "version 1 with a partial record: ECORRUPT (no count to prove it unacknowledged)");
	unlink(path);
}

/*
 * Creation is atomic (a complete header is written to a temporary file, synced, and linked
 * into place), so a lease file shorter than its header is never "a creation cut short": it
 * is damage, ECORRUPT, whatever its bytes, and a provider never reinitialises it (that
 * would hand out numbers below an acknowledged mark again). A relative path syncs "." as
 * its directory.
 */
static void test_short_files(void)
{
	struct tally_lease_provider *p = NULL, *q = NULL;
	struct tally_lease_record rec;
	char path[256], stray[256], cwd[512];
	uint64_t base;
	int fd;

	snprintf(path, sizeof(path), "%s", path_of("short.lease"));
	snprintf(stray, sizeof(stray), "%s", path_of("short.lease.tmp-AbC123"));
	tap_eq(tally_lease_file_open(&p, path), TALLY_OK, "a new lease file");
	tap_eq(file_size(path), 64, "... is created whole: a 64-byte header");
	tally_lease_acquire(p, "k", 1, 0, 100, 0, &base);
	tally_lease_acquire(p, "k", 1, 0, 100, 0, &base);
	tally_lease_provider_destroy(p);
	if (truncate(path, 16) != 0)
		abort();
	tap_eq(tally_lease_file_open(&p, path), TALLY_ECORRUPT,
	       "a counted file truncated to 16 bytes: ECORRUPT, not a new file");
	tap_eq(file_size(path), 16, "... and left as it is");
	if (truncate(path, 0) != 0)
		abort();
	tap_eq(tally_lease_file_open(&p, path), TALLY_ECORRUPT, "truncated to 0 bytes: ECORRUPT");
	tap_eq(file_size(path), 0, "... and left as it is");
	unlink(path);

	/* Truncated to nothing under an open provider: the next call fails, never base 0. */
	tally_lease_file_open(&p, path);
	tally_lease_acquire(p, "k", 1, 0, 100, 0, &base);
	if (truncate(path, 0) != 0)
		abort();
	base = 12345;
	tap_eq(tally_lease_acquire(p, "k", 1, 0, 100, 0, &base), TALLY_ECORRUPT,
	       "truncated to 0 under an open provider: acquire is ECORRUPT");
	tap_eq(base, 12345, "... and hands out no base");
	tap_eq(tally_lease_read(p, "k", 1, &rec), TALLY_ECORRUPT, "... read too");
	tap_eq(file_size(path), 0, "... and the file was not reinitialised");
	tally_lease_provider_destroy(p);
	unlink(path);

	/* Short files tally never writes: empty, a header prefix, zeros, foreign bytes. */
	for (int i = 0; i < 4; i++) {
		static const char *const what[] = { "an empty file", "a prefix of a header",
						     "zeros", "foreign bytes" };
		static const char *const bytes[] = { "", "TALLYL", "\0\0\0\0\0\0\0\0",
						      "not a lease" };
		static const size_t lens[] = { 0, 6, 8, 11 };

		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || write(fd, bytes[i], lens[i]) != (ssize_t)lens[i])
			abort();
		close(fd);
		tap_eq(tally_lease_file_open(&p, path), TALLY_ECORRUPT, "%s at the path: ECORRUPT",
		       what[i]);
		tap_eq(file_size(path), (off_t)lens[i], "... left untouched");
	}
	unlink(path);

	/* A crash between writing the temporary file and linking it leaves a stray
	 * "<path>.tmp-XXXXXX" holding an empty header: ignored, the path is created anew. */
	fd = open(stray, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "TALLYLSE", 8) != 8)
		abort();
	close(fd);
	tap_ok(tally_lease_file_open(&p, path) == TALLY_OK &&
		       tally_lease_read(p, "k", 1, &rec) == TALLY_ENOTFOUND,
	       "a stray temporary file is ignored: the lease file is created empty");
	tap_eq(file_size(stray), 8, "... and the stray left alone");
	tap_ok(tally_lease_file_open(&q, path) == TALLY_OK, "a second open finds the file");
	tally_lease_provider_destroy(q);
	tally_lease_provider_destroy(p);
	unlink(stray);
	unlink(path);

	if (!getcwd(cwd, sizeof(cwd)) || chdir(dir) != 0)
		abort();
	tap_ok(tally_lease_file_open(&p, "relative.lease") == TALLY_OK &&
		       tally_lease_acquire(p, "k", 1, 0, 5, 0, &base) == TALLY_OK,
	       "open by a relative path (directory \".\" synced)");
	tally_lease_provider_destroy(p);
	unlink("relative.lease");
	if (chdir(cwd) != 0)
		abort();
}

/*
 * Processes racing to create one lease file: exactly one creation wins and every process
 * uses that file (a creation never replaces a file another process already leases from).
 */
static void test_create_race(void)
{
	struct tally_lease_provider *p;
	struct tally_lease_record rec;
	const char *path = path_of("race.lease");
	uint64_t all[4 * 20];
	int fds[2], go[2], status, ok = 1;
	size_t got = 0;

	if (pipe(fds) || pipe(go))
		abort();
	for (int c = 0; c < 4; c++) {
		if (fork() == 0) {
			char byte;
			uint64_t base;

			close(fds[0]);
			close(go[1]);
			if (read(go[0], &byte, 1) != 0) /* wait for the start: EOF */
				_exit(6);
			if (tally_lease_file_open(&p, path))
				_exit(2);
			for (int i = 0; i < 20; i++) {
				if (tally_lease_acquire(p, "k", 1, 0, 3, 0, &base))
					_exit(3);
				if (write(fds[1], &base, sizeof(base)) != sizeof(base))
					_exit(4);
			}
			_exit(0);
		}
	}
	close(fds[1]);
	close(go[0]);
	close(go[1]); /* all four start together */
	while (got < sizeof(all)) {
		ssize_t n = read(fds[0], (char *)all + got, sizeof(all) - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fds[0]);
	for (int c = 0; c < 4; c++) {
		wait(&status);
		ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	tap_ok(ok && got == sizeof(all), "4 processes created and leased from one new file");
	tap_eq(count_duplicates(all, 80), 0, "... 80 leases of 3, all bases disjoint");
	tap_ok(tally_lease_file_open(&p, path) == TALLY_OK &&
		       tally_lease_read(p, "k", 1, &rec) == TALLY_OK && rec.mark == 80 * 3,
	       "... and the file's mark counts every lease (240)");
	tally_lease_provider_destroy(p);
	unlink(path);
}

struct thread_run {
	struct tally_lease_provider *p;
	uint64_t bases[4][200];
};

static void *lease_thread(struct test_thread *self)
{
	struct thread_run *run = self->shared;

	for (int i = 0; i < 200; i++)
		if (tally_lease_acquire(run->p, "k", 1, 0, 1, 0, &run->bases[self->index][i]))
			run->bases[self->index][i] = UINT64_MAX - (uint64_t)i;
	return NULL;
}

static void test_threads_and_processes(void)
{
	static struct thread_run run;
	struct test_thread th[4];
	struct tally_lease_record rec;
	uint64_t all[4 * 100];
	const char *path = path_of("shared.lease");
	int fds[2], status, ok = 1;

	tally_lease_file_open(&run.p, path);
	run_threads(4, lease_thread, &run, th);
	tap_eq(count_duplicates(&run.bases[0][0], 800), 0, "4 threads, 800 leases: all disjoint");
	tally_lease_provider_destroy(run.p);

	if (pipe(fds))
		abort();
	for (int c = 0; c < 4; c++) {
		if (fork() == 0) {
			struct tally_lease_provider *p;
			uint64_t base;

			close(fds[0]);
			if (tally_lease_file_open(&p, path))
				_exit(2);
			for (int i = 0; i < 100; i++) {
				if (tally_lease_acquire(p, "k", 1, 0, 3, 0, &base))
					_exit(3);
				if (write(fds[1], &base, sizeof(base)) != sizeof(base))
					_exit(4);
			}
			_exit(0);
		}
	}
	close(fds[1]);
	for (size_t got = 0; got < sizeof(all);) {
		ssize_t n = read(fds[0], (char *)all + got, sizeof(all) - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fds[0]);
	for (int c = 0; c < 4; c++) {
		wait(&status);
		ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
	}
	tap_ok(ok, "4 processes leased without error");
	tap_eq(count_duplicates(all, 400), 0, "4 processes, 400 leases of 3: all bases disjoint");
	tally_lease_file_open(&run.p, path);
	tally_lease_read(run.p, "k", 1, &rec);
	tap_eq(rec.mark, 800 + 400 * 3, "the mark counts every lease exactly once");
	tally_lease_provider_destroy(run.p);
}

static struct tally_series_config leased(struct tally_lease_provider *p)
{
	return (struct tally_series_config){ .format = "{counter:06}", .mode = TALLY_SEQ_STRICT,
					     .lease = p, .lease_size = 16 };
}

/* The crashing incarnation (run by exec from test_restart): issues 30 numbers, writes each
 * to fd, and exits without closing the series, so its lease stays unclean. */
static int crash_child(const char *path, int fd)
{
	struct tally_lease_provider *p;
	struct tally_series_config cfg;
	struct tally_sequence *seq;
	struct tally_seq_number n;

	if (tally_lease_file_open(&p, path) != TALLY_OK)
		return 3;
	cfg = leased(p);
	tally_sequence_create(&seq, NULL);
	tally_sequence_series_create(seq, "t", "INV", &cfg, NULL);
	for (int i = 0; i < 30; i++) {
		tally_sequence_next(seq, "t", "INV", &n);
		if (write(fd, &n.counter, sizeof(n.counter)) != sizeof(n.counter))
			_exit(4);
	}
	_exit(0);
}

static void test_restart(void)
{
	struct tally_lease_provider *p;
	struct tally_sequence *seq;
	struct tally_series_config cfg;
	struct tally_seq_recovery rec;
	struct tally_seq_number n;
	const char *path = path_of("restart.lease");
	uint64_t child_numbers[30];
	int fds[2], status;
	size_t got = 0;

	/* Clean incarnation. */
	tally_lease_file_open(&p, path);
	tally_sequence_create(&seq, NULL);
	cfg = leased(p);
	tally_sequence_series_create(seq, "t", "INV", &cfg, &rec);
	for (int i = 0; i < 50; i++)
		tally_sequence_next(seq, "t", "INV", &n);
	tap_eq(tally_sequence_destroy(seq), TALLY_OK, "clean shutdown");
	tally_lease_provider_destroy(p);
	tally_lease_file_open(&p, path);
	cfg = leased(p);
	tally_sequence_create(&seq, NULL);
	tally_sequence_series_create(seq, "t", "INV", &cfg, &rec);
	tap_ok(rec.resumed && !rec.unclean && rec.count == 0, "restart after a clean shutdown");
	tally_sequence_next(seq, "t", "INV", &n);
	tap_eq(n.counter, 51, "... continues at 51 without a gap");
	tally_sequence_destroy(seq);
	tally_lease_provider_destroy(p);

	/* Crashing incarnation: a child issues 51+1..51+30 and dies without closing. */
	if (pipe(fds))
		abort();
	if (fork() == 0) {
		/* A fresh process, as a real restart is: exec rather than run on in a fork of
		 * this (multi-threaded, RCU-using) process. */
		char fd_text[16];

		close(fds[0]);
		snprintf(fd_text, sizeof(fd_text), "%d", fds[1]);
		execl("/proc/self/exe", "lease_file", "crash-child", path, fd_text, (char *)NULL);
		_exit(5);
	}
	close(fds[1]);
	while (got < sizeof(child_numbers)) {
		ssize_t r = read(fds[0], (char *)child_numbers + got, sizeof(child_numbers) - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fds[0]);
	wait(&status);
	tap_ok(got == sizeof(child_numbers) && child_numbers[29] == 81, "child issued 52..81");
	tally_lease_file_open(&p, path);
	cfg = leased(p);
	tally_sequence_create(&seq, NULL);
	tally_sequence_series_create(seq, "t", "INV", &cfg, &rec);
	/* Child leases: (51,67] with checkpoint 51, (67,83] with checkpoint 67. */
	tap_ok(rec.resumed && rec.unclean, "restart after a crash: unclean record");
	tap_ok(rec.first_counter == 68 && rec.last_counter == 83 && rec.count == 16,
	       "report 68..83 (issued after the last checkpoint, or lost): got %llu..%llu",
	       (unsigned long long)rec.first_counter, (unsigned long long)rec.last_counter);
	tap_ok(rec.first_counter <= 82 && rec.last_counter >= 82,
	       "the lost numbers 82..83 are inside the report");
	tally_sequence_next(seq, "t", "INV", &n);
	tap_eq(n.counter, 84, "next incarnation starts above every number the child could issue");
	tally_sequence_destroy(seq);
	tally_lease_provider_destroy(p);
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "crash-child") == 0)
		return crash_child(argv[2], atoi(argv[3]));
	if (!mkdtemp(dir))
		return 1;
	test_basics();
	test_corruption();
	test_torn_append();
	test_duplicate_keys();
	test_version1();
	test_short_files();
	test_create_race();
	test_threads_and_processes();
	test_restart();
	tally_rcu_barrier();
	for (const char *const *f = (const char *const[]){ "basic.lease", "corrupt.lease",
							    "shared.lease", "restart.lease", NULL };
	     *f; f++)
		unlink(path_of(*f));
	rmdir(dir);
	return tap_done();
}
