#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""bench/summary.py: the ratio table of `make bench`, from Google-Benchmark-format JSON files.

Usage: summary.py RESULTS_DIR FILE.json...

Benchmarks are named BM_<family>_<impl>[/<arg>][/real_time]/threads:N (see mk/bench.am).
For each family, argument and thread count it prints every tally* impl's items_per_second
and its ratio to each other impl of the same family, argument and thread count, measured in
the same run (the median aggregate when the run had repetitions, else the single run).
Ratio > 1: tally is faster. It also writes RESULTS_DIR/<family>.dat (threads, then items/s
of each impl) for plot.gp. Failed benchmarks are listed and make the exit status 1.
"""
import json
import os
import re
import sys

NAME = re.compile(r"^BM_([A-Za-z0-9]+)_([A-Za-z0-9_]+)((?:/[^/]+)*)$")


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


def load(paths):
    """{(family, variant): {threads: {impl: items_per_second}}}, repetitions, failures."""
    table, failures, repetitions = {}, [], 1
    for path in paths:
        with open(path) as handle:
            data = json.load(handle)
        for run in data.get("benchmarks", []):
            if run.get("error_occurred"):
                failures.append("%s: %s" % (run["name"], run.get("error_message", "")))
                continue
            reps = run.get("repetitions", 1)
            repetitions = max(repetitions, reps)
            if reps > 1 and not (run.get("run_type") == "aggregate"
                                 and run.get("aggregate_name") == "median"):
                continue
            if reps <= 1 and run.get("run_type") == "aggregate":
                continue
            parsed = parse(run.get("run_name", run["name"]))
            if not parsed or "items_per_second" not in run:
                continue
            family, impl, variant, threads = parsed
            cell = table.setdefault((family, variant), {}).setdefault(threads, {})
            cell[impl] = run["items_per_second"]
    return table, repetitions, failures


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: summary.py RESULTS_DIR FILE.json...\n")
        return 2
    results, paths = sys.argv[1], sys.argv[2:]
    table, repetitions, failures = load(paths)
    source = "median of %d repetitions" % repetitions if repetitions > 1 else "single run"
    print("tally vs peers: items/s (%s); ratio = tally / peer, same run, > 1 = tally faster"
          % source)
    for (family, variant), by_threads in sorted(table.items()):
        impls = sorted({impl for cell in by_threads.values() for impl in cell})
        ours = [impl for impl in impls if impl.startswith("tally")]
        peers = [impl for impl in impls if not impl.startswith("tally")]
        title = family + ("/" + variant if variant else "")
        with open(os.path.join(results, "%s.dat" % title.replace("/", "_")), "w") as dat:
            dat.write("# threads " + " ".join(impls) + "  (items/s)\n")
            for threads in sorted(by_threads):
                dat.write("%d %s\n" % (threads, " ".join(
                    "%.6g" % by_threads[threads].get(impl, float("nan")) for impl in impls)))
        if not ours or not peers:
            continue
        print()
        header = ["threads", "impl", "items/s"] + ["vs " + peer for peer in peers]
        rows = []
        for threads in sorted(by_threads):
            cell = by_threads[threads]
            for impl in ours:
                if impl not in cell:
                    continue
                row = [str(threads), impl, human(cell[impl])]
                for peer in peers:
                    row.append("%.2fx" % (cell[impl] / cell[peer]) if cell.get(peer) else "-")
                rows.append(row)
        peer_line = ", ".join("%s %s" % (peer, "/".join(
            human(by_threads[t][peer]) for t in sorted(by_threads) if peer in by_threads[t]))
            for peer in peers)
        print("== %s  (peers items/s by threads: %s)" % (title, peer_line))
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        for row in [header] + rows:
            print("  ".join(cell.rjust(width) if i != 1 else cell.ljust(width)
                            for i, (cell, width) in enumerate(zip(row, widths))))
    if failures:
        print("\nFAILED benchmarks:")
        for failure in failures:
            print("  " + failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
