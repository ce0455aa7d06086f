#!/bin/sh
# SPDX-License-Identifier: BSD-2-Clause
# tests/bench_compat.sh: the bench harness behaves like Google Benchmark 1.7 where tools and
# people notice: flags and exit statuses, JSON fields, aggregates, CSV, and Google
# Benchmark's own compare.py (Debian libbenchmark-tools) reading two of our JSON files; and
# what the harness adds (cpu_per_real, runqueue_per_real, latency percentiles).
# TAP output; the compare.py checks are skipped (not failed) when compare.py or scipy is
# absent. Runs in about 5 seconds: every benchmark uses --benchmark_min_time=0.01.
set -u
program=./tests/bench_harness
compare=${BENCH_COMPARE_PY:-/usr/share/benchmark/compare.py}
work=$(mktemp -d "${TMPDIR:-/tmp}/bench_compat.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
count=0
failed=0
fast="--benchmark_min_time=0.01"
# Debian's compare.py needs the python3 that has scipy: prefer the system one (a pyenv shim
# first on PATH may lack it, and is slow to start).
python=python3
for candidate in /usr/bin/python3 python3; do
	if "$candidate" -c 'import scipy' 2>/dev/null; then
		python=$candidate
		break
	fi
done

ok() { # ok CONDITION-STATUS DESCRIPTION
	count=$((count + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $count - $2"
	else
		echo "not ok $count - $2"
		failed=$((failed + 1))
	fi
}
skip() {
	count=$((count + 1))
	echo "ok $count - $1 # SKIP $2"
}
# run EXPECTED-STATUS ARGS...: runs the program, output in $work/out, $work/err
run() {
	want=$1
	shift
	"$program" "$@" >"$work/out" 2>"$work/err"
	got=$?
	[ "$got" -eq "$want" ] || echo "# exit status $got, want $want: $program $*" >&2
	[ "$got" -eq "$want" ]
}
# A BENCH_THREADS from the caller's environment (make bench-scaling's) would change the
# instances every check below expects.
unset BENCH_THREADS
pycheck() { # pycheck FILE PYTHON-EXPRESSION-ON-data
	"$python" -c "import json,sys; data=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1"
}

# --- flags and exit statuses
run 0 --benchmark_list_tests
ok $? "--benchmark_list_tests exits 0"
grep -qx 'BM_selftest_tally/real_time/threads:2' "$work/out" &&
	grep -qx 'BM_selftest_arg/64' "$work/out" &&
	grep -qx 'BM_selftest_paused/iterations:5' "$work/out"
ok $? "instance names as Google Benchmark builds them (args, range by 8, threads, real_time)"

run 0 --benchmark_list_tests --benchmark_filter=-selftest_a
! grep -q 'selftest_a' "$work/out" && grep -q 'selftest_tally' "$work/out"
ok $? "a leading - negates the filter"

run 1 --benchmark_bogus=1
grep -q 'unrecognized command-line flag: --benchmark_bogus=1' "$work/err"
ok $? "an unknown flag is named in the message, exit 1"

run 1 --benchmark_min_time=fast
grep -q 'benchmark_min_time' "$work/err"
ok $? "a malformed --benchmark_min_time exits 1 with a message"

run 1 --benchmark_repetitions=0
ok $? "--benchmark_repetitions=0 exits 1"

run 1 --benchmark_format=xml
ok $? "--benchmark_format=xml exits 1"

run 1 --benchmark_filter='('
grep -q 'regular expression' "$work/err"
ok $? "an invalid filter regex exits 1 with a message"

BENCHMARK_TIME_UNIT=hours run 1 --benchmark_list_tests
grep -q 'BENCHMARK_TIME_UNIT' "$work/err"
ok $? "a malformed BENCHMARK_* environment variable exits 1 and is named"

run 1 $fast --benchmark_out="$work/missing/dir/out.json" --benchmark_filter=tally
grep -q 'missing/dir/out.json' "$work/err" && [ ! -e "$work/missing" ]
ok $? "an unwritable --benchmark_out exits 1 before running, nothing written"

echo keep > "$work/existing.json"
run 1 $fast --benchmark_out="$work/existing.json" --benchmark_min_time=-1
[ "$(cat "$work/existing.json")" = keep ] && [ "$(ls "$work" | grep -c tmp)" -eq 0 ]
ok $? "a failed run leaves an existing --benchmark_out file untouched and no temporary"

# --- JSON
run 0 $fast --benchmark_filter='tally|atomic|arg/8$|paused|error' --benchmark_repetitions=3 \
	--benchmark_out="$work/a.json" --benchmark_out_format=json \
	--benchmark_context=purpose=test
ok $? "a run with --benchmark_out exits 0"
pycheck "$work/a.json" "set(data['context']) >= {'date','host_name','executable','num_cpus',
	'mhz_per_cpu','cpu_scaling_enabled','caches','load_avg','library_build_type'}
	and data['context']['purpose'] == 'test'"
ok $? "JSON context has Google Benchmark's fields and --benchmark_context pairs"
pycheck "$work/a.json" "all(set(b) >= {'name','family_index','per_family_instance_index',
	'run_name','run_type','repetitions','threads','iterations','real_time','cpu_time',
	'time_unit'} for b in data['benchmarks'] if not b.get('error_occurred'))"
ok $? "every JSON run has Google Benchmark's run fields"
pycheck "$work/a.json" "sorted(b['aggregate_name'] for b in data['benchmarks']
	if b['run_name'] == 'BM_selftest_tally/real_time/threads:2' and b['run_type'] == 'aggregate')
	== ['cv','mean','median','stddev']"
ok $? "3 repetitions give mean, median, stddev and cv aggregates"
pycheck "$work/a.json" "[b['aggregate_unit'] for b in data['benchmarks']
	if b['name'].endswith('_cv')][0] == 'percentage'
	and [b['iterations'] for b in data['benchmarks'] if b['name'].endswith('_mean')][0] == 3"
ok $? "cv is a percentage aggregate; aggregates count repetitions as iterations"
pycheck "$work/a.json" "[b['items_per_second'] > 0 and b['ops'] > 0 and b['threads_seen'] == 2
	for b in data['benchmarks'] if b['name'] == 'BM_selftest_atomic/real_time/threads:2'][0]"
ok $? "items_per_second and user counters are reported; plain counters sum over threads"
pycheck "$work/a.json" "[b['label'] == 'label text' and b['bytes_per_second'] > 0
	for b in data['benchmarks'] if b['name'] == 'BM_selftest_arg/8'][0]"
ok $? "labels and bytes_per_second are reported"
pycheck "$work/a.json" "[b['iterations'] == 5 and b['real_time'] < 1e6
	for b in data['benchmarks'] if b['name'] == 'BM_selftest_paused/iterations:5'][0]"
ok $? "fixed iterations are run exactly; paused time (2 ms sleeps) is not measured"
pycheck "$work/a.json" "[b['error_occurred'] and b['error_message'] == 'deliberate \"error\"'
	for b in data['benchmarks'] if b['name'] == 'BM_selftest_error'][0]"
ok $? "bench_skip_with_error is reported as error_occurred / error_message"
pycheck "$work/a.json" "[b['repetition_index'] for b in data['benchmarks']
	if b['name'] == 'BM_selftest_tally/real_time/threads:1'] == [0, 1, 2]"
ok $? "repetitions are numbered"
grep -q '"real_time": [0-9]\.[0-9]\{16\}e[-+][0-9][0-9],' "$work/a.json"
ok $? "JSON doubles have Google Benchmark's 17-digit scientific format"

# --- console, CSV, environment
grep -q '^BM_selftest_tally/real_time/threads:1_median ' "$work/out" &&
	grep -q "^BM_selftest_error  *ERROR OCCURRED: 'deliberate \"error\"'" "$work/out" &&
	grep -q '^Benchmark  *Time  *CPU  *Iterations UserCounters...$' "$work/out" &&
	grep -q '^Running ' "$work/err"
ok $? "console: table on stdout with aggregates and errors, context on stderr"

BENCHMARK_FORMAT=csv run 0 $fast --benchmark_filter='atomic/real_time/threads:1$'
head -1 "$work/out" | grep -qx 'name,iterations,real_time,cpu_time,time_unit,bytes_per_second,items_per_second,label,error_occurred,error_message,"ops","threads_seen"'
ok $? "BENCHMARK_FORMAT=csv selects CSV with Google Benchmark's columns"

run 0 $fast --benchmark_filter=tally --benchmark_repetitions=2 \
	--benchmark_report_aggregates_only=true --benchmark_format=json
pycheck "$work/out" "all(b['run_type'] == 'aggregate' for b in data['benchmarks'])"
ok $? "--benchmark_report_aggregates_only reports only aggregates"

run 0 $fast --benchmark_filter='tally|arg/8$' --benchmark_repetitions=4 \
	--benchmark_enable_random_interleaving=true --benchmark_format=json
pycheck "$work/out" "all(sorted(b['repetition_index'] for b in data['benchmarks']
	if b['run_name'] == n and b['run_type'] == 'iteration') == [0, 1, 2, 3]
	and sorted(b['aggregate_name'] for b in data['benchmarks']
	if b['run_name'] == n and b['run_type'] == 'aggregate') == ['cv','mean','median','stddev']
	for n in {b['run_name'] for b in data['benchmarks']})
	and len({b['run_name'] for b in data['benchmarks']}) == 3"
ok $? "--benchmark_enable_random_interleaving: every benchmark still gets its repetitions and aggregates"

run 0 $fast --benchmark_filter=nothing-matches
grep -q 'Failed to match any benchmarks' "$work/err"
ok $? "a filter that matches nothing says so and exits 0"

# --- beyond Google Benchmark: CPU per real time, run-queue wait, latency percentiles
run 0 $fast --benchmark_filter='atomic|latency' --benchmark_format=json
ok $? "a run with threaded and latency benchmarks exits 0"
pycheck "$work/out" "all((b['threads'] > 1) == ('cpu_per_real' in b) for b in data['benchmarks'])
	and all(0 < b['cpu_per_real'] <= 2.5 and b.get('runqueue_per_real', 0) >= 0
	for b in data['benchmarks'] if b['threads'] == 2)"
ok $? "threaded runs (only) report cpu_per_real and runqueue_per_real, in range"
pycheck "$work/out" "[b['op_samples'] == 100000 and 470 <= b['op_p50_ns'] <= 530
	and 930 <= b['op_p99_ns'] <= 1000 and 940 <= b['op_p999_ns'] <= 1063
	for b in data['benchmarks'] if b['name'] == 'BM_selftest_latency/iterations:100000'][0]"
ok $? "latency samples give their count and p50, p99, p99.9 within the histogram's 6.25 %"

# --- --bench_threads (tally's own flag): the thread counts of every threaded benchmark
run 0 --benchmark_list_tests --bench_threads=1,3,16
grep -qx 'BM_selftest_tally/real_time/threads:3' "$work/out" &&
	grep -qx 'BM_selftest_atomic/real_time/threads:16' "$work/out" &&
	! grep -q 'threads:2$' "$work/out" &&
	[ "$(grep -c '^BM_selftest_tally/' "$work/out")" -eq 3 ]
ok $? "--bench_threads=1,3,16 replaces the registered 1,2 of threaded benchmarks"
grep -qx 'BM_selftest_single/real_time/threads:1' "$work/out" &&
	[ "$(grep -c '^BM_selftest_single' "$work/out")" -eq 1 ] &&
	grep -qx 'BM_selftest_arg/8' "$work/out" && grep -qx 'BM_selftest_error' "$work/out"
ok $? "--bench_threads leaves benchmarks registered with 1 thread, or none, as they are"

BENCH_THREADS=4 run 0 --benchmark_list_tests
grep -qx 'BM_selftest_tally/real_time/threads:4' "$work/out" && ! grep -q 'tally.*threads:1$' "$work/out"
ok $? "BENCH_THREADS=4 sets it from the environment"
BENCH_THREADS=4 run 0 --benchmark_list_tests --bench_threads=5
grep -qx 'BM_selftest_tally/real_time/threads:5' "$work/out" && ! grep -q 'threads:4$' "$work/out"
ok $? "--bench_threads on the command line wins over BENCH_THREADS"

bad=0
for list in '' 0 1,,2 ',1' '1,' 2,2 1025 'x' '1 2' 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17; do
	run 1 --benchmark_list_tests --bench_threads="$list" &&
		grep -q 'bench_threads' "$work/err" || { echo "# accepted: '$list'" >&2; bad=1; }
done
ok $bad "--bench_threads refuses empty, zero, repeated, over 1024, over 16 counts, exit 1"

run 0 $fast --benchmark_filter='atomic|single' --bench_threads=3 --benchmark_format=json
pycheck "$work/out" "[b['threads'] == 3 and b['threads_seen'] == 3 and 'cpu_per_real' in b
	and b['iterations'] % 3 == 0
	for b in data['benchmarks'] if b['name'] == 'BM_selftest_atomic/real_time/threads:3'][0]
	and [b['threads'] for b in data['benchmarks']
	if b['name'] == 'BM_selftest_single/real_time/threads:1'] == [1]
	and data['context']['bench_threads'] == '3'"
ok $? "a --bench_threads=3 run runs 3 threads (each counts itself), says so in its context"

# 8 threads on this machine's CPUs (2 in CI) are preempted inside the timed loop, and each
# thread's time is run + run-queue wait + sleep: were a wait counted in one and not the other
# (a preemption between the clock and schedstat reads), the sum would exceed the threads.
run 0 --benchmark_min_time=0.02 --benchmark_filter='atomic' --bench_threads=8 \
	--benchmark_repetitions=3 --benchmark_format=json
pycheck "$work/out" "all(b['cpu_per_real'] + b['runqueue_per_real'] <= 8 * 1.02
	for b in data['benchmarks'] if b['run_type'] == 'iteration' and b['threads'] == 8)"
ok $? "8 threads: cpu_per_real + runqueue_per_real stay within the thread count"

# --- bench/summary.py: flagging up to the CPU count only; the scaling summary
summary="${srcdir:-$(dirname "$0")/..}/bench/summary.py"
# Two CPUs, two repetitions per run: at 2 threads one got its CPUs and one lost most of them
# to the run queue (flagged); at 4 threads both ran on 1 of the 2 CPUs with 3 threads waiting,
# which oversubscription makes normal: never flagged; at 8 threads the peer slept for 5.
# impl threads items/s cpu_per_real runqueue_per_real ("-": not reported, as at 1 thread)
"$python" - "$work/synthetic.json" <<'PY'
import json, sys
rows = """tally 1 100 - -
peer 1 50 - -
tally 2 200 1.95 0.02
tally 2 90 1.0 1.0
peer 2 80 1.9 0.05
tally 4 150 1.0 3.0
peer 4 100 1.9 2.0
tally 8 160 2.0 6.0
peer 8 40 1.0 2.0"""
runs = []
for impl, threads, items, cpu, queue in (line.split() for line in rows.splitlines()):
    name = "BM_fam_%s/real_time/threads:%s" % (impl, threads)
    run = {"name": name, "run_name": name, "run_type": "iteration", "threads": int(threads),
           "items_per_second": float(items)}
    if cpu != "-":
        run.update(cpu_per_real=float(cpu), runqueue_per_real=float(queue))
    runs.append(run)
json.dump({"context": {"num_cpus": 2, "load_avg": [0.5, 0.4, 0.3]}, "benchmarks": runs},
          open(sys.argv[1], "w"))
PY
mkdir -p "$work/results"
"$python" "$summary" "$work/results" "$work/synthetic.json" > "$work/summary" 2>&1
grep -q '^ *2  tally  *200  *1/2 ' "$work/summary" && grep -q '^ *4  tally  *150  *0/1 ' "$work/summary"
ok $? "summary.py flags a deprived 2-thread repetition, never one above the CPU count"
"$python" "$summary" --scaling "$work/results" "$work/synthetic.json" > "$work/scaling" 2>&1
grep -q 'OVERSUBSCRIBED: 4/8 of these thread counts are above .* 2 CPUs' "$work/scaling" &&
	grep -q 'NOT a parallel speed-up' "$work/scaling" &&
	grep -q '^ *4  tally  *150  *peer  *100  *1.50x  *oversubscribed  *1.00/3.00/0.00 | 1.90/2.00/0.10' "$work/scaling" &&
	grep -q '^ *8  tally  *160  *peer  *40  *4.00x  *oversubscribed  *2.00/6.00/0.00 | 1.00/2.00/5.00' "$work/scaling" &&
	grep -q '^ *2  tally  *200  *peer  *80  *2.50x  *1+0/3 ' "$work/scaling"
ok $? "summary.py --scaling: says what is oversubscribed, ratio and run/wait/sleep per count"
[ "$(sed -n 3p "$work/results/fam.ratio.dat")" = "1 2" ] &&
	[ "$(grep -c '^[0-9]' "$work/results/fam.dat")" -eq 4 ]
ok $? "summary.py --scaling writes the plot data (items/s and ratio per thread count)"
[ $failed -eq 0 ] || { sed 's/^/# /' "$work/summary" "$work/scaling" | head -40; }

# --- Google Benchmark's compare.py on two of our JSON files
if [ ! -r "$compare" ]; then
	skip "compare.py reads our JSON" "$compare not installed (libbenchmark-tools)"
elif ! "$python" -c 'import scipy' 2>/dev/null; then
	skip "compare.py reads our JSON" "python3-scipy not installed"
else
	run 0 $fast --benchmark_filter='tally|atomic' --benchmark_repetitions=3 \
		--benchmark_out="$work/b.json"
	"$python" "$compare" --no-color benchmarks "$work/a.json" "$work/b.json" >"$work/compare" 2>&1
	status=$?
	[ $status -eq 0 ] && grep -q '^BM_selftest_tally/real_time/threads:2 ' "$work/compare" &&
		grep -q 'Comparing .*a.json to .*b.json' "$work/compare" &&
		grep -q 'U Test, Repetitions: 3 vs 3' "$work/compare"
	ok $? "compare.py benchmarks a.json b.json: exit 0, our names, U test over repetitions"
	[ $status -eq 0 ] || sed 's/^/# /' "$work/compare"
	"$python" "$compare" --no-color filters "$work/a.json" BM_selftest_tally BM_selftest_atomic \
		>"$work/compare" 2>&1
	[ $? -eq 0 ] && grep -q 'BM_selftest_tally' "$work/compare"
	ok $? "compare.py filters tally vs atomic within one file"
fi
echo "1..$count"
[ "$failed" -eq 0 ]
