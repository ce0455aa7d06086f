/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * bench/harness_report.c: the console, JSON and CSV reporters and the machine context, with the
 * field names, column widths and number formats of Google Benchmark 1.7.1 (Debian's
 * libbenchmark 1.7.1 was the oracle: tests/bench_compat.sh feeds our JSON to its compare.py).
 *
 * Number formats, as in Google Benchmark:
 * - JSON doubles: 17 significant digits in scientific form ("%.16e"), NaN / Infinity spelled
 *   out; integers plain.
 * - Console times: 10 columns, 3/2/1/0 decimals below 1/10/100/above, "%1.4e" past 10 digits;
 *   counters as "human readable" numbers (%g of the value scaled by 1000, or 1024 for bytes,
 *   with a k/M/G/... or m/u/n/... suffix), cv aggregates as percentages.
 * - CSV: %g (the default iostream format).
 * One deliberate difference: a CSV cv row shows the ratio (as JSON does), not Google
 * Benchmark's time-scaled ratio, which is meaningless.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness_internal.h"

double bench_unit_multiplier(enum bench_unit unit)
{
	switch (unit) {
	case BENCH_UNIT_NS: return 1e9;
	case BENCH_UNIT_US: return 1e6;
	case BENCH_UNIT_MS: return 1e3;
	case BENCH_UNIT_S: return 1.0;
	}
	return 1e9;
}

const char *bench_unit_name(enum bench_unit unit)
{
	static const char *const names[] = { "ns", "us", "ms", "s" };
	return names[unit];
}

bool bench_counter_set_put(struct bench_counter_set *set, const char *name, double value,
			   unsigned flags, double one_k, bool replace)
{
	int at = 0;

	while (at < set->count && strcmp(set->items[at].name, name) < 0)
		at++;
	if (at < set->count && strcmp(set->items[at].name, name) == 0) {
		set->items[at].value = replace ? value : set->items[at].value + value;
		set->items[at].flags = flags;
		set->items[at].one_k = one_k;
		return true;
	}
	if (set->count == BENCH_COUNTERS_MAX || strlen(name) >= BENCH_COUNTER_NAME_MAX)
		return false;
	memmove(&set->items[at + 1], &set->items[at],
		(size_t)(set->count - at) * sizeof(set->items[0]));
	snprintf(set->items[at].name, sizeof(set->items[at].name), "%s", name);
	set->items[at].value = value;
	set->items[at].flags = flags;
	set->items[at].one_k = one_k;
	set->count++;
	return true;
}

const struct bench_counter_value *bench_counter_set_find(const struct bench_counter_set *set,
							 const char *name)
{
	for (int i = 0; i < set->count; i++)
		if (strcmp(set->items[i].name, name) == 0)
			return &set->items[i];
	return NULL;
}

/* ---------------------------------------------------------------- context */

static void read_first_line(const char *path, char *buf, size_t size)
{
	FILE *file = fopen(path, "r");

	buf[0] = '\0';
	if (!file)
		return;
	if (fgets(buf, (int)size, file))
		buf[strcspn(buf, "\n")] = '\0';
	fclose(file);
}

static int count_cpus_in_list(const char *list)
{
	int count = 0;
	const char *p = list;

	while (*p) {
		char *end;
		long lo = strtol(p, &end, 10), hi = lo;
		if (end == p)
			break;
		if (*end == '-')
			hi = strtol(end + 1, &end, 10);
		count += (int)(hi - lo + 1);
		p = (*end == ',') ? end + 1 : end;
		if (*end != ',')
			break;
	}
	return count;
}

static void collect_caches(struct bench_context *context)
{
	for (int i = 0; i < BENCH_CACHES_MAX; i++) {
		char path[128], text[128];
		struct bench_cache *cache = &context->caches[context->cache_count];

		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
		read_first_line(path, text, sizeof(text));
		if (!text[0])
			break;
		cache->size = strtoll(text, NULL, 10);
		if (strchr(text, 'K'))
			cache->size *= 1024;
		else if (strchr(text, 'M'))
			cache->size *= 1024 * 1024;
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
		read_first_line(path, text, sizeof(text));
		snprintf(cache->type, sizeof(cache->type), "%.31s", text);
		snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
		read_first_line(path, text, sizeof(text));
		cache->level = atoi(text);
		snprintf(path, sizeof(path),
			 "/sys/devices/system/cpu/cpu0/cache/index%d/shared_cpu_list", i);
		read_first_line(path, text, sizeof(text));
		cache->num_sharing = count_cpus_in_list(text);
		context->cache_count++;
	}
}

static double read_mhz(void)
{
	char text[128];
	FILE *file;
	double mhz = 0;

	read_first_line("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", text, sizeof(text));
	if (text[0])
		return strtod(text, NULL) / 1000.0;
	file = fopen("/proc/cpuinfo", "r");
	if (!file)
		return 0;
	while (fgets(text, sizeof(text), file)) {
		if (strncmp(text, "cpu MHz", 7) == 0 && strchr(text, ':')) {
			mhz = strtod(strchr(text, ':') + 1, NULL);
			break;
		}
	}
	fclose(file);
	return mhz;
}

void bench_context_collect(struct bench_context *context, const char *executable)
{
	char governor[64];
	time_t now = time(NULL);
	struct tm local;
	long offset;

	context->executable = executable;
	localtime_r(&now, &local);
	strftime(context->date, sizeof(context->date), "%Y-%m-%dT%H:%M:%S", &local);
	offset = local.tm_gmtoff / 60;
	snprintf(context->date + strlen(context->date), sizeof(context->date) - strlen(context->date),
		 "%c%02ld:%02ld", offset < 0 ? '-' : '+', labs(offset) / 60, labs(offset) % 60);
	if (gethostname(context->host_name, sizeof(context->host_name)) != 0)
		context->host_name[0] = '\0';
	context->host_name[sizeof(context->host_name) - 1] = '\0';
	context->num_cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	context->mhz = read_mhz();
	read_first_line("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", governor,
			sizeof(governor));
	context->scaling_enabled = governor[0] && strcmp(governor, "performance") != 0;
	collect_caches(context);
	context->load_count = getloadavg(context->load_avg, 3);
	if (context->load_count < 0)
		context->load_count = 0;
#ifdef __OPTIMIZE__
	context->debug_build = false;
#else
	context->debug_build = true;
#endif
}

/* Google Benchmark's PrintBasicContext: the lines above the console table. */
static void print_basic_context(FILE *out, const struct bench_context *context)
{
	fprintf(out, "%s\n", context->date);
	if (context->executable)
		fprintf(out, "Running %s\n", context->executable);
	fprintf(out, "Run on (%d X %g MHz CPU%s)\n", context->num_cpus, context->mhz,
		context->num_cpus > 1 ? " s" : "");
	if (context->cache_count > 0) {
		fprintf(out, "CPU Caches:\n");
		for (int i = 0; i < context->cache_count; i++) {
			const struct bench_cache *cache = &context->caches[i];
			fprintf(out, "  L%d %s %lld KiB", cache->level, cache->type,
				(long long)(cache->size / 1024));
			if (cache->num_sharing != 0)
				fprintf(out, " (x%d)", context->num_cpus / cache->num_sharing);
			fprintf(out, "\n");
		}
	}
	if (context->load_count > 0) {
		fprintf(out, "Load Average: ");
		for (int i = 0; i < context->load_count; i++)
			fprintf(out, "%s%.2f", i ? ", " : "", context->load_avg[i]);
		fprintf(out, "\n");
	}
	for (int i = 0; i < context->user_count; i++)
		fprintf(out, "%s: %s\n", context->user_key[i], context->user_value[i]);
	if (context->scaling_enabled)
		fprintf(out, "***WARNING*** CPU scaling is enabled, the benchmark real time "
			     "measurements may be noisy and will incur extra overhead.\n");
	if (context->debug_build)
		fprintf(out, "***WARNING*** Library was built as DEBUG. Timings may be affected.\n");
}

/* ---------------------------------------------------------------- numbers */

/* Google Benchmark's HumanReadableNumber: %g of the value scaled into [1.1, 1.1 * one_k]. */
static void human_number(char *buf, size_t size, double value, double one_k)
{
	static const char big[] = "kMGTPEZY", small[] = "munpfazy";
	const double threshold = 1.1, big_threshold = threshold * one_k;
	const char *sign = "";
	double scaled = value;

	if (value < 0) {
		sign = "-";
		value = -value;
		scaled = value;
	}
	if (value > big_threshold) {
		for (int i = 0; i < 8; i++) {
			scaled /= one_k;
			if (scaled <= big_threshold) {
				snprintf(buf, size, "%s%g%c", sign, scaled, big[i]);
				return;
			}
		}
	} else if (value < threshold && value < 0.01) {
		for (int i = 0; i < 8; i++) {
			scaled *= one_k;
			if (scaled >= threshold) {
				snprintf(buf, size, "%s%g%c", sign, scaled, small[i]);
				return;
			}
		}
	}
	snprintf(buf, size, "%s%g", sign, value);
}

static void format_time(char *buf, size_t size, double time)
{
	if (time < 1.0)
		snprintf(buf, size, "%10.3f", time);
	else if (time < 10.0)
		snprintf(buf, size, "%10.2f", time);
	else if (time < 100.0)
		snprintf(buf, size, "%10.1f", time);
	else if (time > 9999999999.0)
		snprintf(buf, size, "%1.4e", time);
	else
		snprintf(buf, size, "%10.0f", time);
}

static double adjusted(const struct bench_report *run, double seconds)
{
	double value = seconds * bench_unit_multiplier(run->unit);

	if (run->iterations != 0)
		value /= (double)run->iterations;
	return value;
}

static double report_real(const struct bench_report *run)
{
	return run->percentage ? run->real_seconds : adjusted(run, run->real_seconds);
}

static double report_cpu(const struct bench_report *run)
{
	return run->percentage ? run->cpu_seconds : adjusted(run, run->cpu_seconds);
}

static void json_double(FILE *out, double value)
{
	if (isnan(value))
		fputs("NaN", out);
	else if (isinf(value))
		fputs(value < 0 ? "-Infinity" : "Infinity", out);
	else
		fprintf(out, "%.16e", value);
}

static void json_string(FILE *out, const char *text)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p == '\n')
			fputs("\\n", out);
		else if (*p == '\t')
			fputs("\\t", out);
		else if (*p < 0x20)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

static void json_key(FILE *out, int indent, const char *key)
{
	fprintf(out, "%*s", indent, "");
	json_string(out, key);
	fputs(": ", out);
}

static void csv_string(FILE *out, const char *text)
{
	fputc('"', out);
	for (const char *p = text; *p; p++) {
		if (*p == '"')
			fputc('"', out);
		fputc(*p, out);
	}
	fputc('"', out);
}

/* ---------------------------------------------------------------- reporters */

void bench_reporter_init(struct bench_reporter *reporter, enum bench_format format, FILE *out,
			 FILE *err, bool tabular)
{
	memset(reporter, 0, sizeof(*reporter));
	reporter->format = format;
	reporter->out = out;
	reporter->err = err;
	reporter->tabular = tabular;
	reporter->first_batch = true;
}

static void json_context(FILE *out, const struct bench_context *context)
{
	fputs("{\n  \"context\": {\n", out);
	json_key(out, 4, "date");
	json_string(out, context->date);
	fputs(",\n", out);
	json_key(out, 4, "host_name");
	json_string(out, context->host_name);
	fputs(",\n", out);
	if (context->executable) {
		json_key(out, 4, "executable");
		json_string(out, context->executable);
		fputs(",\n", out);
	}
	json_key(out, 4, "num_cpus");
	fprintf(out, "%d,\n", context->num_cpus);
	json_key(out, 4, "mhz_per_cpu");
	fprintf(out, "%lld,\n", (long long)(context->mhz + 0.5));
	json_key(out, 4, "cpu_scaling_enabled");
	fprintf(out, "%s,\n", context->scaling_enabled ? "true" : "false");
	fputs("    \"caches\": [\n", out);
	for (int i = 0; i < context->cache_count; i++) {
		const struct bench_cache *cache = &context->caches[i];
		fputs("      {\n", out);
		json_key(out, 8, "type");
		json_string(out, cache->type);
		fprintf(out, ",\n        \"level\": %d,\n", cache->level);
		fprintf(out, "        \"size\": %lld,\n", (long long)cache->size);
		fprintf(out, "        \"num_sharing\": %d\n", cache->num_sharing);
		fprintf(out, "      }%s\n", i + 1 < context->cache_count ? "," : "");
	}
	fputs("    ],\n    \"load_avg\": [", out);
	for (int i = 0; i < context->load_count; i++)
		fprintf(out, "%s%g", i ? "," : "", context->load_avg[i]);
	fputs("],\n", out);
	json_key(out, 4, "library_build_type");
	json_string(out, context->debug_build ? "debug" : "release");
	for (int i = 0; i < context->user_count; i++) {
		fputs(",\n", out);
		json_key(out, 4, context->user_key[i]);
		json_string(out, context->user_value[i]);
	}
	fputs("\n  },\n  \"benchmarks\": [\n", out);
}

static const char *const csv_columns =
	"name,iterations,real_time,cpu_time,time_unit,bytes_per_second,items_per_second,"
	"label,error_occurred,error_message";

static bool is_builtin_rate(const char *name)
{
	return strcmp(name, "bytes_per_second") == 0 || strcmp(name, "items_per_second") == 0;
}

void bench_report_context(struct bench_reporter *reporter, const struct bench_context *context)
{
	reporter->name_width = context->name_width;
	switch (reporter->format) {
	case BENCH_FORMAT_CONSOLE:
	case BENCH_FORMAT_CSV:
		print_basic_context(reporter->err, context);
		break;
	case BENCH_FORMAT_JSON:
		json_context(reporter->out, context);
		break;
	}
}

static bool same_counter_names(const struct bench_counter_set *a, const struct bench_counter_set *b)
{
	if (a->count != b->count)
		return false;
	for (int i = 0; i < a->count; i++)
		if (strcmp(a->items[i].name, b->items[i].name) != 0)
			return false;
	return true;
}

static void console_header(struct bench_reporter *reporter, const struct bench_report *run)
{
	char line[4096];
	int length = snprintf(line, sizeof(line), "%-*s %13s %15s %12s", reporter->name_width,
			      "Benchmark", "Time", "CPU", "Iterations");

	if (run->counters.count > 0) {
		if (reporter->tabular) {
			for (int i = 0; i < run->counters.count && length < (int)sizeof(line); i++)
				length += snprintf(line + length, sizeof(line) - (size_t)length, " %10s",
						   run->counters.items[i].name);
		} else {
			length += snprintf(line + length, sizeof(line) - (size_t)length,
					   " UserCounters...");
		}
	}
	if (length >= (int)sizeof(line))
		length = (int)sizeof(line) - 1;
	for (int i = 0; i < length; i++)
		fputc('-', reporter->out);
	fprintf(reporter->out, "\n%s\n", line);
	for (int i = 0; i < length; i++)
		fputc('-', reporter->out);
	fputc('\n', reporter->out);
}

static void console_run(struct bench_reporter *reporter, const struct bench_report *run)
{
	FILE *out = reporter->out;
	char real[64], cpu[64];

	fprintf(out, "%-*s ", reporter->name_width, run->name);
	if (run->error) {
		fprintf(out, "ERROR OCCURRED: '%s'\n", run->error_message);
		return;
	}
	if (run->percentage) {
		fprintf(out, "%10.2f %-4s %10.2f %-4s ", 100.0 * run->real_seconds, "%",
			100.0 * run->cpu_seconds, "%");
	} else {
		format_time(real, sizeof(real), report_real(run));
		format_time(cpu, sizeof(cpu), report_cpu(run));
		fprintf(out, "%s %-4s %s %-4s ", real, bench_unit_name(run->unit), cpu,
			bench_unit_name(run->unit));
	}
	fprintf(out, "%10lld", (long long)run->iterations);
	for (int i = 0; i < run->counters.count; i++) {
		const struct bench_counter_value *counter = &run->counters.items[i];
		char text[64];
		const char *unit = "";

		if (run->percentage) {
			snprintf(text, sizeof(text), "%.2f", counter->value * 100.0);
			unit = "%";
		} else {
			human_number(text, sizeof(text), counter->value, counter->one_k);
			if (counter->flags & BENCH_COUNTER_IS_RATE)
				unit = "/s";
		}
		if (reporter->tabular) {
			int width = (int)strlen(counter->name);
			if (width < 10)
				width = 10;
			fprintf(out, " %*s%s", width - (int)strlen(unit), text, unit);
		} else {
			fprintf(out, " %s=%s%s", counter->name, text, unit);
		}
	}
	if (run->label[0])
		fprintf(out, " %s", run->label);
	fputc('\n', out);
}

static void json_run(FILE *out, const struct bench_report *run)
{
	json_key(out, 6, "name");
	json_string(out, run->name);
	fprintf(out, ",\n      \"family_index\": %d,\n", run->family_index);
	fprintf(out, "      \"per_family_instance_index\": %d,\n", run->per_family_instance_index);
	json_key(out, 6, "run_name");
	json_string(out, run->run_name);
	fprintf(out, ",\n      \"run_type\": \"%s\",\n", run->aggregate ? "aggregate" : "iteration");
	fprintf(out, "      \"repetitions\": %d,\n", run->repetitions);
	if (!run->aggregate)
		fprintf(out, "      \"repetition_index\": %d,\n", run->repetition_index);
	fprintf(out, "      \"threads\": %d,\n", run->threads);
	if (run->aggregate) {
		fprintf(out, "      \"aggregate_name\": \"%s\",\n", run->aggregate_name);
		fprintf(out, "      \"aggregate_unit\": \"%s\",\n",
			run->percentage ? "percentage" : "time");
	}
	if (run->error) {
		fputs("      \"error_occurred\": true,\n", out);
		json_key(out, 6, "error_message");
		json_string(out, run->error_message);
		fputs(",\n", out);
	}
	fprintf(out, "      \"iterations\": %lld,\n", (long long)run->iterations);
	fputs("      \"real_time\": ", out);
	json_double(out, report_real(run));
	fputs(",\n      \"cpu_time\": ", out);
	json_double(out, report_cpu(run));
	fprintf(out, ",\n      \"time_unit\": \"%s\"", bench_unit_name(run->unit));
	for (int i = 0; i < run->counters.count; i++) {
		fputs(",\n", out);
		json_key(out, 6, run->counters.items[i].name);
		json_double(out, run->counters.items[i].value);
	}
	if (run->label[0]) {
		fputs(",\n", out);
		json_key(out, 6, "label");
		json_string(out, run->label);
	}
	fputc('\n', out);
}

static void csv_header(struct bench_reporter *reporter, const struct bench_report *runs, int count)
{
	for (int r = 0; r < count; r++) {
		for (int i = 0; i < runs[r].counters.count; i++) {
			const char *name = runs[r].counters.items[i].name;
			int at = 0;
			if (is_builtin_rate(name))
				continue;
			while (at < reporter->csv_name_count && strcmp(reporter->csv_names[at], name) < 0)
				at++;
			if ((at < reporter->csv_name_count && strcmp(reporter->csv_names[at], name) == 0) ||
			    reporter->csv_name_count == BENCH_COUNTERS_MAX)
				continue;
			memmove(&reporter->csv_names[at + 1], &reporter->csv_names[at],
				(size_t)(reporter->csv_name_count - at) * sizeof(reporter->csv_names[0]));
			snprintf(reporter->csv_names[at], sizeof(reporter->csv_names[at]), "%s", name);
			reporter->csv_name_count++;
		}
	}
	fputs(csv_columns, reporter->out);
	for (int i = 0; i < reporter->csv_name_count; i++) {
		fputc(',', reporter->out);
		csv_string(reporter->out, reporter->csv_names[i]);
	}
	fputc('\n', reporter->out);
}

static void csv_run(struct bench_reporter *reporter, const struct bench_report *run)
{
	FILE *out = reporter->out;
	const struct bench_counter_value *counter;

	csv_string(out, run->name);
	fputc(',', out);
	if (run->error) {
		fputs(",,,,,,,true,", out);
		csv_string(out, run->error_message);
		fputc('\n', out);
		return;
	}
	fprintf(out, "%lld,%g,%g,%s,", (long long)run->iterations, report_real(run),
		report_cpu(run), bench_unit_name(run->unit));
	if ((counter = bench_counter_set_find(&run->counters, "bytes_per_second")))
		fprintf(out, "%g", counter->value);
	fputc(',', out);
	if ((counter = bench_counter_set_find(&run->counters, "items_per_second")))
		fprintf(out, "%g", counter->value);
	fputc(',', out);
	if (run->label[0])
		csv_string(out, run->label);
	fputs(",,", out);
	for (int i = 0; i < reporter->csv_name_count; i++) {
		fputc(',', out);
		if ((counter = bench_counter_set_find(&run->counters, reporter->csv_names[i])))
			fprintf(out, "%g", counter->value);
	}
	fputc('\n', out);
}

void bench_report_runs(struct bench_reporter *reporter, const struct bench_report *runs,
		       int count)
{
	if (count == 0)
		return;
	switch (reporter->format) {
	case BENCH_FORMAT_CONSOLE:
		for (int i = 0; i < count; i++) {
			bool header = !reporter->printed_header ||
				      (reporter->tabular &&
				       !same_counter_names(&runs[i].counters, &reporter->header_counters));
			if (header) {
				reporter->printed_header = true;
				reporter->header_counters = runs[i].counters;
				console_header(reporter, &runs[i]);
			}
			console_run(reporter, &runs[i]);
		}
		break;
	case BENCH_FORMAT_JSON:
		if (!reporter->first_batch)
			fputs(",\n", reporter->out);
		reporter->first_batch = false;
		for (int i = 0; i < count; i++) {
			fputs("    {\n", reporter->out);
			json_run(reporter->out, &runs[i]);
			fputs(i + 1 < count ? "    },\n" : "    }", reporter->out);
		}
		break;
	case BENCH_FORMAT_CSV:
		if (!reporter->printed_header) {
			csv_header(reporter, runs, count);
			reporter->printed_header = true;
		}
		for (int i = 0; i < count; i++)
			csv_run(reporter, &runs[i]);
		break;
	}
	fflush(reporter->out);
}

void bench_report_finish(struct bench_reporter *reporter)
{
	if (reporter->format == BENCH_FORMAT_JSON)
		fputs("\n  ]\n}\n", reporter->out);
	fflush(reporter->out);
}
