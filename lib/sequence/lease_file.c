/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * File lease provider (tally/lease.h).
 *
 * Layout (little-endian as written by this host; the header records nothing else):
 *   header, 64 bytes: magic "TALLYLSE", u32 version, u32 record size, u64 record count
 *                     (version 2), zero padding, u64 FNV-1a of bytes 0..55 at offset 56.
 *   records, 256 bytes each, in creation order:
 *     0..191   key part: u32 key_len, u32 zero, key bytes (<= 184), zero padding
 *     192..255 state part: u64 mark, u64 issued, u32 flags, u32 zero, u64 updates,
 *              zero padding, u64 FNV-1a of (key part + state bytes 192..247) at 248.
 * A record's state part is rewritten in place with one 64-byte pwrite at a 256-aligned
 * offset and fdatasync'd.
 *
 * Creation (create_file) writes the whole empty header to a temporary file and links it into
 * place, so a file at the path always starts with a complete header: a shorter one was cut
 * (or written) by someone else, and is TALLY_ECORRUPT like any other damage.
 *
 * Appending a new key is two steps, each fdatasync'd: the whole record past the last one,
 * then the header with the record count + 1 (64 bytes at offset 0: one sector). The call
 * returns only after both, so a record at or past the header's count was never
 * acknowledged to any caller: no lease was handed out from it. A crash between or during
 * the two steps leaves such a tail (a short or torn record, or a whole one the header does
 * not count yet); the next load under the file lock, by any process, truncates it. Every
 * counted record must pass its checksum and hold a key no other counted record holds:
 * damage there is TALLY_ECORRUPT, never repaired, because the only safe value for a lost
 * mark is one no lower than it was. Version 1 files (no count; every whole record counted,
 * any partial tail ECORRUPT) are upgraded in place by rewriting the header.
 *
 * Concurrency: the mutex serialises this process's threads (an OFD lock is shared by all
 * threads using the descriptor); F_OFD_SETLKW on the whole file serialises processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include "tally/lease.h"
#include "internal/hash.h"

#define FILE_MAGIC "TALLYLSE"
#define FILE_VERSION 2u
#define FILE_VERSION_NO_COUNT 1u /* read and upgraded */
#define COUNT_OFFSET 16
#define HEADER_SIZE 64
#define RECORD_SIZE 256
#define STATE_OFFSET 192
#define CHECK_OFFSET 248

struct file_provider {
	struct tally_lease_provider provider;
	pthread_mutex_t lock; /* serialises this process's threads around the file lock */
	int fd;
};

static uint64_t get64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void put64(unsigned char *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static void put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static int file_lock(struct file_provider *fp, short type)
{
	struct flock lock = { .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };

	while (fcntl(fp->fd, F_OFD_SETLKW, &lock) != 0)
		if (errno != EINTR)
			return TALLY_EIO;
	return TALLY_OK;
}

static int full_pread(int fd, void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t got = pread(fd, (char *)buf + done, len - done, off + (off_t)done);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return TALLY_EIO;
		done += (size_t)got;
	}
	return TALLY_OK;
}

static int full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t put = pwrite(fd, (const char *)buf + done, len - done, off + (off_t)done);

		if (put < 0 && errno == EINTR)
			continue;
		if (put <= 0)
			return TALLY_EIO;
		done += (size_t)put;
	}
	return fdatasync(fd) == 0 ? TALLY_OK : TALLY_EIO;
}

static uint64_t record_check(const unsigned char *rec)
{
	return tally__fnv1a64(TALLY__FNV1A64_BASIS, rec, CHECK_OFFSET);
}

/* A version-2 header counting `count` records. */
static void header_build(unsigned char *hdr, uint64_t count)
{
	memset(hdr, 0, HEADER_SIZE);
	memcpy(hdr, FILE_MAGIC, 8);
	put32(hdr + 8, FILE_VERSION);
	put32(hdr + 12, RECORD_SIZE);
	put64(hdr + COUNT_OFFSET, count);
	put64(hdr + 56, tally__fnv1a64(TALLY__FNV1A64_BASIS, hdr, 56));
}

/* Returns the header's version (FILE_VERSION or FILE_VERSION_NO_COUNT), or 0 if invalid. */
static uint32_t header_version(const unsigned char *hdr)
{
	uint32_t version = get32(hdr + 8);

	if (memcmp(hdr, FILE_MAGIC, 8) != 0 || get32(hdr + 12) != RECORD_SIZE ||
	    get64(hdr + 56) != tally__fnv1a64(TALLY__FNV1A64_BASIS, hdr, 56))
		return 0;
	return version == FILE_VERSION || version == FILE_VERSION_NO_COUNT ? version : 0;
}

/* Orders records by key (length, then bytes): the key part is u32 len, u32 0, key bytes. */
static int key_order(const void *a, const void *b)
{
	const unsigned char *x = *(const unsigned char *const *)a;
	const unsigned char *y = *(const unsigned char *const *)b;
	uint32_t x_len = get32(x), y_len = get32(y);

	if (x_len != y_len)
		return x_len < y_len ? -1 : 1;
	return memcmp(x + 8, y + 8, x_len);
}

/*
 * TALLY_ECORRUPT if two of the n (checked) records hold the same key: appends happen only
 * for a key not found under the file lock, so a second copy is damage, and which copy
 * holds the true mark cannot be known (taking the lower would issue numbers twice).
 * O(n log n): a sort of pointers to the records.
 */
static int check_unique_keys(const unsigned char *records, size_t n)
{
	const unsigned char **by_key;
	int err = TALLY_OK;

	if (n < 2)
		return TALLY_OK;
	by_key = malloc(n * sizeof(*by_key));
	if (!by_key)
		return TALLY_ENOMEM;
	for (size_t i = 0; i < n; i++)
		by_key[i] = records + i * RECORD_SIZE;
	qsort(by_key, n, sizeof(*by_key), key_order);
	for (size_t i = 1; i < n && !err; i++)
		if (key_order(&by_key[i - 1], &by_key[i]) == 0)
			err = TALLY_ECORRUPT;
	free(by_key);
	return err;
}

/* Drops an unacknowledged tail (see the top of the file): truncate, then make it durable. */
static int truncate_tail(int fd, off_t size)
{
	while (ftruncate(fd, size) != 0)
		if (errno != EINTR)
			return TALLY_EIO;
	/* The new size is metadata fdatasync flushes (it is needed to read the data back). */
	return fdatasync(fd) == 0 ? TALLY_OK : TALLY_EIO;
}

/*
 * With the file locked: loads the records, validates all of them, and finds `key`.
 * *records_out (malloc'd) holds `*count` records; *index is the key's record or -1.
 */
static int load(struct file_provider *fp, const char *key, size_t key_len,
		unsigned char **records_out, size_t *count, long *index)
{
	struct stat st;
	unsigned char hdr[HEADER_SIZE], *records;
	uint64_t whole, n;
	uint32_t version;
	int err;

	*records_out = NULL;
	*index = -1;
	if (fstat(fp->fd, &st) != 0)
		return TALLY_EIO;
	/* A file is created whole (create_file), so anything shorter than its header was cut
	 * or written by someone else: never reinitialise what may have held marks. */
	if (st.st_size < HEADER_SIZE)
		return TALLY_ECORRUPT;
	if (full_pread(fp->fd, hdr, sizeof(hdr), 0) != TALLY_OK)
		return TALLY_EIO;
	version = header_version(hdr);
	if (!version)
		return TALLY_ECORRUPT;
	whole = (uint64_t)(st.st_size - HEADER_SIZE) / RECORD_SIZE;
	if (version == FILE_VERSION_NO_COUNT) {
		if ((st.st_size - HEADER_SIZE) % RECORD_SIZE != 0)
			return TALLY_ECORRUPT;
		n = whole;
	} else {
		n = get64(hdr + COUNT_OFFSET);
		if (n > whole) /* a counted (acknowledged) record is missing */
			return TALLY_ECORRUPT;
	}
	records = malloc(n ? n * RECORD_SIZE : 1);
	if (!records)
		return TALLY_ENOMEM;
	if (n && full_pread(fp->fd, records, n * RECORD_SIZE, HEADER_SIZE) != TALLY_OK) {
		free(records);
		return TALLY_EIO;
	}
	for (size_t i = 0; i < n; i++) {
		const unsigned char *rec = records + i * RECORD_SIZE;
		uint32_t len = get32(rec);

		if (len == 0 || len > TALLY_LEASE_KEY_MAX ||
		    get64(rec + CHECK_OFFSET) != record_check(rec)) {
			free(records);
			return TALLY_ECORRUPT;
		}
		if (len == key_len && memcmp(rec + 8, key, key_len) == 0)
			*index = (long)i;
	}
	err = check_unique_keys(records, n);
	if (!err && st.st_size != (off_t)(HEADER_SIZE + n * RECORD_SIZE))
		err = truncate_tail(fp->fd, (off_t)(HEADER_SIZE + n * RECORD_SIZE));
	if (!err && version == FILE_VERSION_NO_COUNT) {
		header_build(hdr, n);
		err = full_pwrite(fp->fd, hdr, sizeof(hdr), 0);
	}
	if (err) {
		free(records);
		return err;
	}
	*records_out = records;
	*count = n;
	return TALLY_OK;
}

static void state_of(const unsigned char *rec, struct tally_lease_record *out)
{
	out->mark = get64(rec + STATE_OFFSET);
	out->issued = get64(rec + STATE_OFFSET + 8);
	out->flags = get32(rec + STATE_OFFSET + 16);
}

/* Writes `state` into record `index` (appending it with `key` when index == count). */
static int store(struct file_provider *fp, unsigned char *records, size_t count, size_t index,
		 const char *key, size_t key_len, const struct tally_lease_record *state)
{
	unsigned char rec[RECORD_SIZE];
	off_t off = HEADER_SIZE + (off_t)index * RECORD_SIZE;
	int err;

	if (index < count) {
		memcpy(rec, records + index * RECORD_SIZE, RECORD_SIZE);
	} else {
		memset(rec, 0, sizeof(rec));
		put32(rec, (uint32_t)key_len);
		memcpy(rec + 8, key, key_len);
	}
	put64(rec + STATE_OFFSET, state->mark);
	put64(rec + STATE_OFFSET + 8, state->issued);
	put32(rec + STATE_OFFSET + 16, state->flags);
	put64(rec + STATE_OFFSET + 24, get64(rec + STATE_OFFSET + 24) + 1); /* updates */
	put64(rec + CHECK_OFFSET, record_check(rec));
	if (index < count)
		return full_pwrite(fp->fd, rec + STATE_OFFSET, RECORD_SIZE - STATE_OFFSET,
				   off + STATE_OFFSET);
	/* Append: the record, then the count that makes it part of the file (see the top). */
	err = full_pwrite(fp->fd, rec, RECORD_SIZE, off);
	if (!err) {
		unsigned char hdr[HEADER_SIZE];

		header_build(hdr, count + 1);
		err = full_pwrite(fp->fd, hdr, sizeof(hdr), 0);
	}
	return err;
}

enum file_op { OP_ACQUIRE, OP_CLOSE, OP_READ };

struct file_args {
	uint64_t min_start, size, issued, leased_hi;
	uint64_t *base_out;
	struct tally_lease_record *read_out;
};

static int file_op(void *impl, enum file_op op, const char *key, size_t key_len,
		   struct file_args *args)
{
	struct file_provider *fp = impl;
	struct tally_lease_record state = { 0, 0, 0 };
	unsigned char *records = NULL;
	size_t count = 0;
	long index;
	int err;

	pthread_mutex_lock(&fp->lock);
	/* A write lock even to read: load() truncates an unacknowledged tail. */
	err = file_lock(fp, F_WRLCK);
	if (err)
		goto unlock_mutex;
	err = load(fp, key, key_len, &records, &count, &index);
	if (err)
		goto unlock;
	if (index >= 0)
		state_of(records + (size_t)index * RECORD_SIZE, &state);
	switch (op) {
	case OP_READ:
		if (index < 0)
			err = TALLY_ENOTFOUND;
		else
			*args->read_out = state;
		break;
	case OP_ACQUIRE: {
		uint64_t base = state.mark > args->min_start ? state.mark : args->min_start;

		if (base > UINT64_MAX - args->size) {
			err = TALLY_EINVAL;
			break;
		}
		state.mark = base + args->size;
		state.issued = args->issued;
		state.flags = 0;
		err = store(fp, records, count, index < 0 ? count : (size_t)index, key, key_len,
			    &state);
		if (!err)
			*args->base_out = base;
		break;
	}
	case OP_CLOSE:
		if (index < 0) {
			err = TALLY_ENOTFOUND;
			break;
		}
		if (state.mark != args->leased_hi || args->issued > args->leased_hi)
			break; /* someone leased after the caller: the record is theirs */
		state.mark = args->issued;
		state.issued = args->issued;
		state.flags = TALLY_LEASE_CLEAN;
		err = store(fp, records, count, (size_t)index, key, key_len, &state);
		break;
	}
unlock:
	free(records);
	file_lock(fp, F_UNLCK);
unlock_mutex:
	pthread_mutex_unlock(&fp->lock);
	return err;
}

static int file_acquire(void *impl, const char *key, size_t key_len, uint64_t min_start,
			uint64_t size, uint64_t issued, uint64_t *base_out)
{
	struct file_args args = { .min_start = min_start, .size = size, .issued = issued,
				  .base_out = base_out };

	return file_op(impl, OP_ACQUIRE, key, key_len, &args);
}

static int file_close(void *impl, const char *key, size_t key_len, uint64_t leased_hi,
		      uint64_t issued)
{
	struct file_args args = { .leased_hi = leased_hi, .issued = issued };

	return file_op(impl, OP_CLOSE, key, key_len, &args);
}

static int file_read(void *impl, const char *key, size_t key_len, struct tally_lease_record *out)
{
	struct file_args args = { .read_out = out };

	return file_op(impl, OP_READ, key, key_len, &args);
}

static void file_destroy(void *impl)
{
	struct file_provider *fp = impl;

	close(fp->fd);
	pthread_mutex_destroy(&fp->lock);
	free(fp);
}

static const struct tally_lease_ops file_ops = {
	.acquire = file_acquire,
	.close = file_close,
	.read = file_read,
	.destroy = file_destroy,
};

/*
 * fsyncs the directory holding `path`. create_file may have just linked the file in: its
 * data is synced, but the directory entry that names it is the directory's data, and
 * without this a crash could lose the whole file (and every mark in it) after calls that
 * returned success. Done at every open, since we cannot tell whether another process
 * created the file and crashed before syncing the directory. A file system that cannot
 * sync directories (EINVAL) has nothing to flush.
 */
static int sync_parent_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	int fd, err = TALLY_OK;

	if (!slash)
		dir = strdup(".");
	else if (slash == path)
		dir = strdup("/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir)
		return TALLY_ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return TALLY_EIO;
	if (fsync(fd) != 0 && errno != EINVAL)
		err = TALLY_EIO;
	close(fd);
	return err;
}

#define TEMP_SUFFIX ".tmp-XXXXXX"

/*
 * Creates the lease file at `path` whole, if nothing is there: a complete empty header is
 * written to a new temporary file "<path>.tmp-XXXXXX" in the same directory and fsync'd,
 * then link()ed to `path`, the temporary name removed and the directory synced. link, not
 * rename: it fails (EEXIST) instead of replacing a file another process created meanwhile
 * and may already lease from; that loser simply opens the winner's file. A crash before
 * the link leaves only a stray temporary file (an empty header, never leased from); after
 * it, at most a second name of the lease file. Nothing reads those names; deleting them is
 * always safe.
 */
static int create_file(const char *path)
{
	size_t len = strlen(path);
	char *temp = malloc(len + sizeof(TEMP_SUFFIX));
	unsigned char hdr[HEADER_SIZE];
	int fd, err;

	if (!temp)
		return TALLY_ENOMEM;
	memcpy(temp, path, len);
	memcpy(temp + len, TEMP_SUFFIX, sizeof(TEMP_SUFFIX));
	fd = mkostemp(temp, O_CLOEXEC); /* mode 0600 */
	if (fd < 0) {
		free(temp);
		return TALLY_EIO;
	}
	header_build(hdr, 0);
	err = full_pwrite(fd, hdr, sizeof(hdr), 0);
	if (!err && fsync(fd) != 0) /* the inode too, before a name can reach it */
		err = TALLY_EIO;
	close(fd);
	if (!err && link(temp, path) != 0 && errno != EEXIST)
		err = TALLY_EIO;
	unlink(temp);
	free(temp);
	return err;
}

/* Opens `path`, creating it whole (create_file) if absent. -1 with *err on failure. */
static int open_or_create(const char *path, int *err)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	*err = TALLY_OK;
	if (fd < 0 && errno == ENOENT) {
		*err = create_file(path);
		if (*err)
			return -1;
		fd = open(path, O_RDWR | O_CLOEXEC);
	}
	if (fd < 0)
		*err = TALLY_EIO;
	return fd;
}

int tally_lease_file_open(struct tally_lease_provider **out, const char *path)
{
	struct file_provider *fp;
	unsigned char *records = NULL;
	size_t count;
	long index;
	int err;

	if (!out || !path || !*path)
		return TALLY_EINVAL;
	fp = calloc(1, sizeof(*fp));
	if (!fp)
		return TALLY_ENOMEM;
	fp->fd = open_or_create(path, &err);
	if (fp->fd < 0) {
		free(fp);
		return err;
	}
	if (pthread_mutex_init(&fp->lock, NULL)) {
		close(fp->fd);
		free(fp);
		return TALLY_ENOMEM;
	}
	/* Validate now, so corruption shows at open. */
	err = file_lock(fp, F_WRLCK);
	if (!err) {
		err = load(fp, "", 0, &records, &count, &index);
		free(records);
		if (!err)
			err = sync_parent_dir(path);
		file_lock(fp, F_UNLCK);
	}
	if (err) {
		file_destroy(fp);
		return err;
	}
	fp->provider.ops = &file_ops;
	fp->provider.impl = fp;
	*out = &fp->provider;
	return TALLY_OK;
}
