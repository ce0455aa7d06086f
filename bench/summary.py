#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""bench/summary.py: the ratio table of `make bench`, from Google-Benchmark-format JSON files.

Usage: summary.py RESULTS_DIR FILE.json...
       summary.py --scaling RESULTS_DIR FILE.json...   (make bench-scaling: see scaling_main)

Benchmarks are named BM_<family>_<impl>[/<arg>][/real_time]/threads:N (see mk/bench.am).
Impls starting with "tally" are ours; the rest are peers, those starting with "naive" the
first thing a user would write (kept for reference, rarely the strongest). A tally impl is
compared with the peers that share its suffix when there are any (tally_gcra with
striped_gcra), else with every peer; the strongest is the one with the highest median.

Repetitions whose threads did not all get a CPU are flagged and left out: a threaded
repetition is flagged when its cpu_per_real (CPU time summed over threads / real time, from
the harness) is below 0.875 x min(threads, CPUs) and the harness's runqueue_per_real (time
the threads were runnable but waiting for a CPU, summed, / real time) covers at least half
of that shortfall, i.e. the machine, not the benchmark's own sleeping in a lock, took the
CPU. Without runqueue_per_real (a kernel without schedstat) the CPU test alone decides.
Above the CPU count nothing is flagged: more threads than CPUs cannot all have one, the run
queue is never empty, and the test cannot tell the machine's other work from the run's own
oversubscription (the scaling summary shows how the threads spent the run instead).

For each family, argument and thread count it prints every tally* impl's items_per_second
(median of the unflagged repetitions) and its ratio to each peer's, the strongest peer (the
highest median) marked, and how many repetitions were flagged; then one section comparing
each tally impl with the strongest peer, with latency percentiles where the benchmarks
sampled them (<op>_p50_ns, <op>_p99_ns, <op>_p999_ns). Ratio > 1: tally is faster (for
latency, ratio < 1: tally is quicker). It writes RESULTS_DIR/<family>.dat (threads, then items/s
of each impl) and <family>.lat (impl, op, p50, p99, p999 at the highest thread count that is
not above the CPU count) for plot.gp. Failed benchmarks are listed and make the exit status 1.
"""
import json
import os
import re
import statistics
import sys

NAME = re.compile(r"^BM_([A-Za-z0-9]+)_([A-Za-z0-9_]+)((?:/[^/]+)*)$")
LATENCY = re.compile(r"^(.+)_(p50|p99|p999)_ns$")
CPU_SHARE = 0.875


def human(value):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return "%.3g%s" % (value / scale, unit)
    return "%.3g" % value


def parse(name):
    """(family, impl, variant, threads) of a benchmark name, or None."""
    match = NAME.match(name)
    if not match:
        return None
    family, impl, rest = match.groups()
    threads, variant = 1, []
    for part in rest.split("/")[1:]:
        if part.startswith("threads:"):
            threads = int(part[len("threads:"):])
        elif part not in ("real_time", "process_time", "manual_time"):
            variant.append(part)
    return family, impl, "/".join(variant), threads


def deprived(run, threads, cpus):
    """True when a threaded repetition's threads did not all get a CPU (see the top)."""
    if threads < 2 or threads > cpus or "cpu_per_real" not in run:
        return False
    expected = min(threads, cpus)
    cpu = run["cpu_per_real"]
    if cpu >= CPU_SHARE * expected:
        return False
    waited = run.get("runqueue_per_real")
    return waited is None or waited >= 0.5 * (expected - cpu)


class Cell:
    """One impl at one family, variant and thread count: its repetitions."""

    def __init__(self):
        self.kept, self.left_out = [], []

    @property
    def flagged(self):
        return len(self.left_out)

    def median(self, key="items_per_second"):
        values = [run[key] for run in self.kept if key in run]
        return statistics.median(values) if values else None

    def median_all(self, key="items_per_second"):
        """The median over every repetition, flagged ones included (shown in parentheses
        only, when no repetition of one side was unflagged)."""
        values = [run[key] for run in self.kept + self.left_out if key in run]
        return statistics.median(values) if values else None

    def count(self):
        return len(self.kept) + self.flagged


def load(paths):
    """{(family, variant): {threads: {impl: Cell}}}, CPU count, failures."""
    table, failures, cpus = {}, [], 0
    for path in paths:
        with open(path) as handle:
            data = json.load(handle)
        cpus = max(cpus, data.get("context", {}).get("num_cpus", 0))
    for path in paths:
        with open(path) as handle:
            data = json.load(handle)
        for run in data.get("benchmarks", []):
            if run.get("error_occurred"):
                failures.append("%s: %s" % (run["name"], run.get("error_message", "")))
                continue
            if run.get("run_type") == "aggregate":
                continue
            parsed = parse(run.get("run_name", run["name"]))
            if not parsed or "items_per_second" not in run:
                continue
            family, impl, variant, threads = parsed
            cell = table.setdefault((family, variant), {}).setdefault(threads, {})
            cell = cell.setdefault(impl, Cell())
            if deprived(run, threads, cpus or 1):
                cell.left_out.append(run)
            else:
                cell.kept.append(run)
    return table, cpus or 1, failures


def same_kind(impl, peers):
    """The peers an impl is compared with: those sharing its suffix (tally_gcra with
    striped_gcra, not striped_window) when any does, else every peer."""
    suffix = impl[len("tally"):]
    alike = [p for p in peers if suffix and p.endswith(suffix)]
    return alike or peers


def strongest(cell, peers):
    """The peer with the highest median: of its unflagged repetitions, or of all of them
    when every one was flagged (so a peer is not passed over because the machine was busy
    while it ran; the comparison with it is then shown in parentheses)."""
    ranked = [(cell[p].median() or cell[p].median_all(), p) for p in peers
              if p in cell and (cell[p].median() or cell[p].median_all())]
    return max(ranked)[1] if ranked else None


def ratio_text(mine, theirs, key="items_per_second", invert=False):
    """tally / peer from the unflagged medians, or in parentheses from every repetition when
    one side has no unflagged repetition ("-" when there is nothing at all)."""
    a, b = mine.median(key), theirs.median(key)
    if a and b:
        return "%.2fx" % (a / b)
    a, b = mine.median_all(key), theirs.median_all(key)
    return "(%.2fx)" % (a / b) if a and b else "-"


def latency_ops(cell):
    ops = set()
    for impl in cell.values():
        for run in impl.kept:
            for key in run:
                match = LATENCY.match(key)
                if match:
                    ops.add(match.group(1))
    return sorted(ops)


def latency_ops_all(cell):
    ops = set()
    for impl in cell.values():
        for run in impl.kept + impl.left_out:
            for key in run:
                match = LATENCY.match(key)
                if match:
                    ops.add(match.group(1))
    return sorted(ops)


def print_table(header, rows):
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(cell.rjust(width) if i != 1 else cell.ljust(width)
                        for i, (cell, width) in enumerate(zip(row, widths))))


def write_dat(results, title, by_threads, impls):
    with open(os.path.join(results, "%s.dat" % title.replace("/", "_")), "w") as dat:
        dat.write("# threads " + " ".join(impls) + "  (items/s)\n")
        dat.write("# median of the unflagged repetitions, of all of them where every one was"
                  " flagged\n")
        for threads in sorted(by_threads):
            dat.write("%d %s\n" % (threads, " ".join(
                "%.6g" % (by_threads[threads][i].median() or by_threads[threads][i].median_all()
                          or float("nan"))
                if i in by_threads[threads] else "nan" for i in impls)))


def plot_threads(by_threads, cpus):
    """The thread count latency is shown at: the highest that is not above the CPU count."""
    fitting = [t for t in by_threads if t <= cpus] or list(by_threads)
    return max(fitting)


def write_plot_data(results, title, by_threads, ours, peers, cpus):
    """<title>.sel.dat (items/s against threads) and <title>.latp (latency percentiles at
    plot_threads) for plot-family.gp: every tally impl and the strongest peer of each."""
    threads = plot_threads(by_threads, cpus)
    cell = by_threads[threads]
    chosen = [i for i in ours if i in cell]
    for impl in list(chosen):
        best = strongest(cell, same_kind(impl, peers))
        if best and best not in chosen:
            chosen.append(best)
    base = os.path.join(results, title.replace("/", "_"))
    write_dat(results, title.replace("/", "_") + ".sel", by_threads, chosen)
    def value(impl, key):
        return cell[impl].median(key) or cell[impl].median_all(key)

    columns = [(impl, op) for impl in chosen for op in latency_ops_all(cell)
               if value(impl, "%s_p50_ns" % op) is not None]
    if not columns:
        return
    with open(base + ".latp", "w") as latp:
        latp.write("# percentile(1=p50,2=p99,3=p99.9) %s  (ns, threads:%d)\n"
                   % (" ".join("%s:%s" % c for c in columns), threads))
        for x, name in ((1, "p50"), (2, "p99"), (3, "p999")):
            latp.write("%d %s\n" % (x, " ".join(
                "%.6g" % value(impl, "%s_%s_ns" % (op, name)) for impl, op in columns)))


def write_lat(results, title, by_threads, cpus):
    threads = plot_threads(by_threads, cpus)
    cell = by_threads[threads]
    ops = latency_ops(cell)
    if not ops:
        return
    with open(os.path.join(results, "%s.lat" % title.replace("/", "_")), "w") as lat:
        lat.write("# threads:%d impl op p50_ns p99_ns p999_ns\n" % threads)
        for impl in sorted(cell):
            for op in ops:
                values = [cell[impl].median("%s_%s_ns" % (op, p)) for p in ("p50", "p99", "p999")]
                if None not in values:
                    lat.write("%s %s %.6g %.6g %.6g\n" % (impl, op, *values))


def family_section(title, by_threads, ours, peers):
    rows = []
    for threads in sorted(by_threads):
        cell = by_threads[threads]
        for impl in ours:
            if impl not in cell:
                continue
            best = strongest(cell, same_kind(impl, peers))
            mine = cell[impl].median()
            row = [str(threads), impl,
                   human(mine) if mine else "(%s)" % human(cell[impl].median_all()),
                   "%d/%d" % (cell[impl].flagged, cell[impl].count())]
            for peer in peers:
                mark = "*" if peer == best else ""
                row.append((ratio_text(cell[impl], cell[peer]) if peer in cell else "-") + mark)
            rows.append(row)
    peer_line = ", ".join("%s %s" % (peer, "/".join(
        (human(by_threads[t][peer].median()) if by_threads[t][peer].median()
         else "(%s)" % human(by_threads[t][peer].median_all()))
        + ("" if not by_threads[t][peer].flagged else
           " (%d/%d flagged)" % (by_threads[t][peer].flagged, by_threads[t][peer].count()))
        for t in sorted(by_threads) if peer in by_threads[t])) for peer in peers)
    print()
    print("== %s  (peers items/s by threads: %s)" % (title, peer_line))
    print_table(["threads", "impl", "items/s", "flagged"] + ["vs " + peer for peer in peers],
                rows)


def strongest_section(table):
    print()
    print("== tally vs the strongest peer (* above; median items/s of unflagged repetitions;"
          " latency: tally / peer, < 1 = tally quicker)")
    rows = []
    for (family, variant), by_threads in sorted(table.items()):
        title = family + ("/" + variant if variant else "")
        for threads in sorted(by_threads):
            cell = by_threads[threads]
            peers = [i for i in cell if not i.startswith("tally")]
            for impl in sorted(i for i in cell if i.startswith("tally")):
                best = strongest(cell, same_kind(impl, peers))
                if not best:
                    continue
                mine, theirs = cell[impl], cell[best]
                clean = mine.median() and theirs.median()
                get = (lambda c, k="items_per_second": c.median(k)) if clean else \
                    (lambda c, k="items_per_second": c.median_all(k))
                if not get(mine) or not get(theirs):
                    continue
                notes = []
                for op in latency_ops_all(cell):
                    p99 = [get(c, "%s_p99_ns" % op) for c in (mine, theirs)]
                    if None not in p99:
                        notes.append("%s p99 %.0f/%.0f ns %.2fx" % (op, p99[0], p99[1],
                                                                   p99[0] / p99[1]))
                flags = "%d+%d/%d" % (mine.flagged, theirs.flagged,
                                      mine.count() + theirs.count())
                wrap = (lambda text: text) if clean else (lambda text: "(%s)" % text)
                rows.append([title, impl, str(threads), best, wrap(human(get(mine))),
                             wrap(human(get(theirs))), wrap("%.2fx" % (get(mine) / get(theirs))),
                             flags, "; ".join(notes)])
    print_table(["family", "impl", "threads", "strongest peer", "tally", "peer", "ratio",
                 "flagged", "latency"], rows)


SCALING_HEADER = """\
Scaling run: tally against its strongest peers at {threads} threads, on {cpus} CPUs.
items/s: median of the repetitions (unflagged ones up to {cpus} threads); ratio = tally / the
strongest peer at that thread count (the highest median), > 1 = tally faster.

{over_line}
At {over} threads at most {cpus} run at any moment, so items/s cannot grow past the
{cpus}-thread figure by running in parallel: those rows are NOT a parallel speed-up. They
measure what each design does when a thread loses its CPU in the middle of an operation: a
lock holder that is preempted stalls every thread that needs its lock until the scheduler
runs it again (a time slice: milliseconds), waiters that sleep in a futex need a wake-up
before they run, and threads queue up behind one another (convoying); a lock-free operation
that is preempted stalls no one. The parallel case the design is for (16 threads on 16
cores, each on its own cache) needs a machine with that many CPUs: run make bench-scaling
there to see it.

Flagging by CPU time / real time (summary.txt) applies only up to {cpus} threads (a
repetition whose threads did not all get a CPU is left out; "flagged" counts them). Above
that nothing can be flagged: every row shows instead how the threads spent the timed run on
average, in threads, for tally | the peer:
  run   = cpu_per_real (CPU time summed over threads / real time: at most {cpus}; below
          {cpus} with threads runnable means other work on the machine had the CPUs)
  wait  = runqueue_per_real (time runnable but waiting for a CPU / real time)
  sleep = threads - run - wait (blocked: a lock's futex wait, a sleeping waiter)
A lock-free design keeps sleep near 0 at any thread count; a sleeping lock shows its
convoy as sleep, and its preempted holders as p99/p99.9 latency.
"NOT OVERLAPPED" marks a row whose run is above {cpus}: its threads ran one after another
(each one's work fitted in a time slice), so real time averaged over the threads is too
short and items/s too high: raise the min_time.
"""


def scaling_loads(paths):
    """The load average each program's run started at (from its JSON context)."""
    loads = []
    for path in paths:
        with open(path) as handle:
            context = json.load(handle).get("context", {})
        load = context.get("load_avg") or []
        loads.append("%s %s" % (os.path.basename(path),
                                ", ".join("%.2f" % v for v in load) or "?"))
    return loads


def time_split(cell, threads):
    """run/wait/sleep (median over the kept repetitions, or in parentheses over the flagged
    ones when all were flagged) as text, "-" at 1 thread."""
    runs = [r for r in cell.kept if "cpu_per_real" in r]
    if not runs:
        flagged = [r for r in cell.left_out if "cpu_per_real" in r]
        if not flagged:
            return "-"
        held = Cell()
        held.kept = flagged
        return "(%s)" % time_split(held, threads)
    run = statistics.median(r["cpu_per_real"] for r in runs)
    waits = [r["runqueue_per_real"] for r in runs if "runqueue_per_real" in r]
    if not waits:
        return "%.2f/?/?" % run
    wait = statistics.median(waits)
    sleep = statistics.median(max(0.0, threads - r["cpu_per_real"] - r["runqueue_per_real"])
                              for r in runs if "runqueue_per_real" in r)
    return "%.2f/%.2f/%.2f" % (run, wait, sleep)


def p99_notes(cell, impl, best):
    notes = []
    for op in latency_ops_all(cell):
        p99 = [cell[i].median("%s_p99_ns" % op) or cell[i].median_all("%s_p99_ns" % op)
               for i in (impl, best)]
        if None not in p99 and p99[1]:
            notes.append("%s %.0f/%.0f ns %.2fx" % (op, p99[0], p99[1], p99[0] / p99[1]))
    return "; ".join(notes)


def scaling_family(results, title, by_threads, cpus):
    """One family's table; writes <title>.dat (items/s per impl) and <title>.ratio.dat
    (tally / strongest peer per tally impl) for plot-scaling.gp."""
    impls = sorted({impl for cell in by_threads.values() for impl in cell})
    ours = [impl for impl in impls if impl.startswith("tally")]
    peers = [impl for impl in impls if not impl.startswith("tally")]
    rows, ratios = [], {}
    for threads in sorted(by_threads):
        cell = by_threads[threads]
        for impl in ours:
            best = strongest(cell, same_kind(impl, peers)) if impl in cell else None
            if not best:
                continue
            mine, theirs = cell[impl], cell[best]
            a = mine.median() or mine.median_all()
            b = theirs.median() or theirs.median_all()
            clean = mine.median() and theirs.median()
            ratio = a / b if a and b else float("nan")
            ratios.setdefault(threads, {})[impl] = ratio
            wrap = (lambda text: text) if clean else (lambda text: "(%s)" % text)
            state = ("%d+%d/%d" % (mine.flagged, theirs.flagged, mine.count() + theirs.count())
                     if threads <= cpus else "oversubscribed")
            if any(c.median("cpu_per_real") and c.median("cpu_per_real") > 1.1 * cpus
                   for c in (mine, theirs)):
                state = "NOT OVERLAPPED"
            rows.append([str(threads), impl, wrap(human(a)), best, wrap(human(b)),
                         wrap("%.2fx" % ratio), state,
                         "%s | %s" % (time_split(mine, threads), time_split(theirs, threads)),
                         p99_notes(cell, impl, best)])
    print()
    print("== %s" % title)
    print_table(["threads", "impl", "items/s", "strongest peer", "peer", "ratio", "flagged",
                 "run/wait/sleep tally | peer", "p99 latency tally/peer"], rows)
    base = title.replace("/", "_")
    write_dat(results, title, by_threads, impls)
    with open(os.path.join(results, base + ".ratio.dat"), "w") as dat:
        dat.write("# threads " + " ".join(ours) + "\n")
        dat.write("# items/s of each tally impl / that of the strongest peer at that count\n")
        for threads in sorted(ratios):
            dat.write("%d %s\n" % (threads, " ".join(
                "%.4g" % ratios[threads].get(impl, float("nan")) for impl in ours)))


def scaling_main(results, paths):
    """make bench-scaling's summary (bench/run-scaling.sh): per family and thread count,
    each tally impl against the strongest peer, how the threads spent the run, p99."""
    table, cpus, failures = load(paths)
    counts = sorted({t for by_threads in table.values() for t in by_threads})
    over = [t for t in counts if t > cpus]
    over_line = ("OVERSUBSCRIBED: %s of these thread counts are above this machine's %d CPUs."
                 % ("/".join(map(str, over)), cpus) if over else
                 "No thread count here is above this machine's %d CPUs." % cpus)
    print(SCALING_HEADER.format(threads=", ".join(map(str, counts)), cpus=cpus,
                                over="/".join(map(str, over)) or "(none)",
                                over_line=over_line))
    print("load average (1, 5, 15 min) when each program started: "
          + "; ".join(scaling_loads(paths)))
    for (family, variant), by_threads in sorted(table.items()):
        title = family + ("/" + variant if variant else "")
        if any(i.startswith("tally") for c in by_threads.values() for i in c):
            scaling_family(results, title, by_threads, cpus)
    return report_failures(failures)


def report_failures(failures):
    """Lists the benchmarks that failed; the exit status of a summary (1 if any failed)."""
    if not failures:
        return 0
    print("\nFAILED benchmarks:")
    for failure in failures:
        print("  " + failure)
    return 1


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--scaling":
        if len(sys.argv) < 3:
            sys.stderr.write("usage: summary.py --scaling RESULTS_DIR FILE.json...\n")
            return 2
        return scaling_main(sys.argv[2], sys.argv[3:])
    if len(sys.argv) < 2:
        sys.stderr.write("usage: summary.py RESULTS_DIR FILE.json...\n")
        return 2
    results, paths = sys.argv[1], sys.argv[2:]
    table, cpus, failures = load(paths)
    print("tally vs peers: items/s (median of the unflagged repetitions); ratio = tally / peer,"
          " same run, > 1 = tally faster; * = the strongest peer at that thread count;")
    print("flagged = repetitions left out because the threads did not all get a CPU"
          " (cpu_per_real < %.3g x min(threads, %d CPUs), the shortfall spent in the run queue);"
          % (CPU_SHARE, cpus))
    print("thread counts above the %d CPUs are never flagged: they oversubscribe the machine and"
          " measure time slicing, not contention (make bench-scaling's scaling.txt shows how"
          " their threads spent the run)" % cpus)
    print("(parentheses) = from every repetition, flagged ones included, where one side had"
          " no unflagged repetition: not a measurement of contention")
    for (family, variant), by_threads in sorted(table.items()):
        impls = sorted({impl for cell in by_threads.values() for impl in cell})
        ours = [impl for impl in impls if impl.startswith("tally")]
        peers = [impl for impl in impls if not impl.startswith("tally")]
        title = family + ("/" + variant if variant else "")
        write_dat(results, title, by_threads, impls)
        write_lat(results, title, by_threads, cpus)
        if ours and peers:
            write_plot_data(results, title, by_threads, ours, peers, cpus)
            family_section(title, by_threads, ours, peers)
    strongest_section(table)
    return report_failures(failures)


if __name__ == "__main__":
    sys.exit(main())
