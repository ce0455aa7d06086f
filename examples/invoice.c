/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * examples/invoice.c: invoice numbers for two tenants with a crash-safe lease file.
 *
 *   ./invoice [lease-file]      (default: ./invoice.lease)
 *
 * Run it twice: the second run resumes above the first run's numbers. Kill it with
 * kill -9 while it sleeps and run it again to see the crash report.
 */
#include <stdio.h>
#include <unistd.h>
#include <tally/rcu.h>
#include <tally/sequence.h>

static int check(int err, const char *what)
{
	if (err)
		fprintf(stderr, "%s: %s\n", what, tally_strerror(err));
	return err;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "invoice.lease";
	const char *tenants[] = { "acme", "globex" };
	struct tally_lease_provider *lease;
	struct tally_sequence *seq;
	struct tally_seq_recovery recovery;
	struct tally_series_config config = {
		.format = "INV-{date:%Y%m%d}-{counter:06}",
		.mode = TALLY_SEQ_STRICT,
		.reset = TALLY_SEQ_RESET_DAILY,
		.utc_offset_minutes = 60, /* invoices dated in UTC+01:00 */
		.lease_size = 100,
	};
	char number[64];

	if (check(tally_lease_file_open(&lease, path), path) ||
	    check(tally_sequence_create(&seq, NULL), "create"))
		return 1;
	config.lease = lease;
	for (int t = 0; t < 2; t++) {
		if (check(tally_sequence_series_create(seq, tenants[t], "INV", &config, &recovery),
			  tenants[t]))
			return 1;
		if (recovery.count)
			printf("%s: previous run crashed; numbers %llu..%llu of period %u were issued "
			       "after the last checkpoint or lost: reconcile and void the missing\n",
			       tenants[t], (unsigned long long)recovery.first_counter,
			       (unsigned long long)recovery.last_counter, recovery.period);
	}
	for (int i = 0; i < 3; i++)
		for (int t = 0; t < 2; t++)
			if (!check(tally_sequence_next_text(seq, tenants[t], "INV", number,
							    sizeof(number), NULL), "next"))
				printf("%s %s\n", tenants[t], number);

	/* A checkout reserves two numbers, uses one and gives the other back. */
	struct tally_series *acme;
	struct tally_seq_reservation *cart;
	const struct tally_seq_number *numbers;
	uint32_t count;

	tally_sequence_series_find(seq, "acme", "INV", &acme);
	if (!check(tally_series_reserve(acme, 2, &cart), "reserve")) {
		tally_seq_reservation_numbers(cart, &numbers, &count);
		tally_series_format(acme, &numbers[0], number, sizeof(number));
		printf("acme reserved and used %s\n", number);
		tally_seq_reservation_commit(cart, &numbers[0]);
		tally_seq_reservation_finish(cart, false); /* numbers[1] goes back */
		tally_sequence_next_text(seq, "acme", "INV", number, sizeof(number), NULL);
		printf("acme next reuses the released number: %s\n", number);
	}
	if (argc > 2)
		sleep(30); /* a window to kill -9 */
	check(tally_sequence_destroy(seq), "destroy");
	tally_lease_provider_destroy(lease);
	tally_rcu_barrier();
	return 0;
}
