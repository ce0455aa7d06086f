/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tally/lease.h: durable high-water marks for tally's sequence allocator (hi/lo leases).
 *
 * A lease provider stores, per key (a byte string, at most TALLY_LEASE_KEY_MAX bytes), one
 * record:
 *   mark    the durable high-water mark: every number <= mark may have been handed out by
 *           some process; nothing above it has been;
 *   issued  the last checkpoint of the owner's issued watermark (every number <= issued was
 *           handed out, or voided, when the checkpoint was written);
 *   flags   TALLY_LEASE_CLEAN when the owner closed the key cleanly since its last acquire.
 * Marks are opaque 64-bit values to the provider; the sequence allocator packs
 * (period, counter) into them so that marks only grow.
 *
 * Operations (each atomic with respect to every other operation on the same key, from any
 * thread of any process using the same store):
 * - acquire(min_start, size, issued): base = max(stored mark or 0, min_start); stores
 *   mark = base + size, issued, flags = 0; returns base. The caller owns (base, base + size].
 *   size 0 is a checkpoint: the mark only rises to min_start, issued is recorded.
 *   Blocking (one store round trip); durable before it returns. A failed acquire stores
 *   nothing: a key it would have created stays never acquired (read: TALLY_ENOTFOUND).
 * - close(leased_hi, issued): if the stored mark still equals leased_hi (no one leased after
 *   the caller), sets mark = issued = `issued` and TALLY_LEASE_CLEAN, giving back the unused
 *   part of the lease so the next owner continues without a gap. Otherwise the record
 *   belongs to a later owner and is left alone (returns TALLY_OK). Blocking, durable.
 * - read: the record, or TALLY_ENOTFOUND if the key was never acquired.
 *
 * Providers: an in-memory one (tests, and processes that need no durability) and a file one.
 * Other stores implement struct tally_lease_ops; a provider must be safe to call from many
 * threads at once, and must never return a base below a mark it acknowledged: a store that
 * lost records it held (a truncated file, an emptied or reset table) is damage to report
 * (TALLY_ECORRUPT), never "never acquired". The provider is owned by its creator and must
 * outlive every sequence that uses it.
 *
 * Threads. No registration. Any call may run in any thread, concurrently with any other
 * call, except:
 *   tally_lease_provider_destroy  exclusive: no other call on the provider, and no series
 *                                 using it, while it runs or after it
 * A provider's ops (struct tally_lease_ops) must allow the same. Processes share a store by
 * each opening its own provider on it (the file provider: after fork, one per process).
 *
 * File provider (tally_lease_file_open): one file holds many keys, each a 256-byte record
 * with a 64-bit FNV-1a checksum over key and state. Every operation takes a per-provider
 * mutex (threads) and an open-file-description write lock (fcntl F_OFD_SETLKW, processes),
 * reads the file, and rewrites the one record with pwrite + fdatasync before returning. The
 * state part of a record is 64 bytes at a 256-byte-aligned offset, so a write never spans a
 * disk sector. A new key's record is appended, synced, and only then counted in the header
 * (a second synced 64-byte write). A crash in the middle of an append leaves an uncounted
 * tail that was never acknowledged: the next open (or call) truncates it. Any counted
 * record (or the header) that fails its checksum or is missing, two counted records with
 * the same key, or a file shorter than its 64-byte header (empty included) makes every
 * call fail with TALLY_ECORRUPT: tally never guesses a mark, since a guess too low would
 * issue numbers twice. Safe to share between
 * processes (open it after fork, one provider per process).
 *
 * Creation is atomic: open of an absent path writes a complete empty header to a new file
 * "<path>.tmp-XXXXXX" (mkostemp, mode 0600) in the same directory, fsyncs it, link()s it to
 * `path` (never replacing a file another process created meanwhile: that one is used),
 * removes the temporary name and fsyncs the directory. So a file at `path` shorter than a
 * header was never "a creation cut short"; an empty or short file is reported, never
 * reinitialised, also when it is truncated while a provider has it open. A crash during
 * creation may leave a stray "<path>.tmp-XXXXXX" (an empty header, or a second name of the
 * lease file): tally ignores such files, and deleting one is always safe. Every open also
 * fsyncs the directory, so a file another process created is as durable as its records.
 *
 * Errors: TALLY_EINVAL (NULL, empty key, size above TALLY_LEASE_SIZE_MAX, mark arithmetic
 * out of range), TALLY_ETOOLONG (key longer than TALLY_LEASE_KEY_MAX), TALLY_ENOTFOUND
 * (read of a key never acquired), TALLY_ENOMEM, TALLY_EIO (open, lock, read, write or sync
 * failed; the record is unchanged or, if the failure came after the write, the new record
 * may or may not be durable: a mark only grows, so either is safe), TALLY_ECORRUPT.
 */
#ifndef TALLY_LEASE_H
#define TALLY_LEASE_H

#include <stddef.h>
#include <stdint.h>
#include <tally/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TALLY_LEASE_KEY_MAX 184
#define TALLY_LEASE_SIZE_MAX (UINT64_C(1) << 30)
#define TALLY_LEASE_CLEAN 1u

struct tally_lease_record {
	uint64_t mark;   /* durable high-water mark */
	uint64_t issued; /* last checkpoint of the issued watermark */
	uint32_t flags;  /* TALLY_LEASE_CLEAN */
};

struct tally_lease_ops {
	int (*acquire)(void *impl, const char *key, size_t key_len, uint64_t min_start,
		       uint64_t size, uint64_t issued, uint64_t *base_out);
	int (*close)(void *impl, const char *key, size_t key_len, uint64_t leased_hi,
		     uint64_t issued);
	int (*read)(void *impl, const char *key, size_t key_len, struct tally_lease_record *out);
	void (*destroy)(void *impl);
};

struct tally_lease_provider {
	const struct tally_lease_ops *ops; /* set by the creator, immutable */
	void *impl;                        /* the provider's own state */
};

/* An in-memory provider (a mutex-protected table). Errors: EINVAL, ENOMEM. */
int tally_lease_memory_create(struct tally_lease_provider **out);

/* Opens (creating it whole if absent, mode 0600: see above) the lease file at `path`.
 * Validates the header and every record (checksums, no key twice, no short file).
 * Errors: EINVAL, ENOMEM, EIO (also: the directory is not writable to create the file),
 * ECORRUPT. */
int tally_lease_file_open(struct tally_lease_provider **out, const char *path);

/* Destroys a provider made by either constructor (or any provider whose ops->destroy frees
 * it). NULL is a no-op returning TALLY_OK. Exclusive (see "Threads"). */
int tally_lease_provider_destroy(struct tally_lease_provider *provider);

/* The calls below check their arguments, then call the provider's op. Each is atomic per
 * key and blocking (one store round trip), as "Operations" above says. */

/* acquire: *base_out = max(stored mark, min_start); the caller owns (base, base + size].
 * size 0 is a checkpoint. Errors: EINVAL (NULL, empty key, size above TALLY_LEASE_SIZE_MAX,
 * mark arithmetic out of range), ETOOLONG, ENOMEM, EIO, ECORRUPT. */
int tally_lease_acquire(struct tally_lease_provider *provider, const char *key, size_t key_len,
			uint64_t min_start, uint64_t size, uint64_t issued, uint64_t *base_out);
/* close: gives back (issued, leased_hi] and marks the key clean if no one leased after the
 * caller (else leaves the later owner's record alone: TALLY_OK). Errors: EINVAL (NULL, empty
 * key), ETOOLONG, EIO, ECORRUPT. */
int tally_lease_close(struct tally_lease_provider *provider, const char *key, size_t key_len,
		      uint64_t leased_hi, uint64_t issued);
/* read: *out = the key's record. Errors: EINVAL, ETOOLONG, ENOTFOUND (never acquired), EIO,
 * ECORRUPT. */
int tally_lease_read(struct tally_lease_provider *provider, const char *key, size_t key_len,
		     struct tally_lease_record *out);

#ifdef __cplusplus
}
#endif
#endif /* TALLY_LEASE_H */
