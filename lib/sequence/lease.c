/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The checked calls shared by every lease provider (tally/lease.h): argument validation in
 * one place, then the provider's own op. Providers: lease_memory.c, lease_file.c, and each
 * store backend's (tally_store_lease_provider).
 */
#include <stddef.h>
#include "tally/lease.h"

int tally_lease_provider_destroy(struct tally_lease_provider *provider)
{
	if (provider && provider->ops && provider->ops->destroy)
		provider->ops->destroy(provider->impl);
	return TALLY_OK;
}

static int check_key(struct tally_lease_provider *provider, const char *key, size_t key_len)
{
	if (!provider || !provider->ops || !key || key_len == 0)
		return TALLY_EINVAL;
	return key_len > TALLY_LEASE_KEY_MAX ? TALLY_ETOOLONG : TALLY_OK;
}

int tally_lease_acquire(struct tally_lease_provider *provider, const char *key, size_t key_len,
			uint64_t min_start, uint64_t size, uint64_t issued, uint64_t *base_out)
{
	int err = check_key(provider, key, key_len);

	if (err)
		return err;
	if (!base_out || size > TALLY_LEASE_SIZE_MAX)
		return TALLY_EINVAL;
	return provider->ops->acquire(provider->impl, key, key_len, min_start, size, issued,
				      base_out);
}

int tally_lease_close(struct tally_lease_provider *provider, const char *key, size_t key_len,
		      uint64_t leased_hi, uint64_t issued)
{
	int err = check_key(provider, key, key_len);

	return err ? err : provider->ops->close(provider->impl, key, key_len, leased_hi, issued);
}

int tally_lease_read(struct tally_lease_provider *provider, const char *key, size_t key_len,
		     struct tally_lease_record *out)
{
	int err = check_key(provider, key, key_len);

	if (err)
		return err;
	return out ? provider->ops->read(provider->impl, key, key_len, out) : TALLY_EINVAL;
}
