# SPDX-License-Identifier: BSD-2-Clause
# bench/plot.gp: throughput against thread count for one family, from summary.py's .dat file
# (first column threads, then one column of items/s per impl, impl names in the header).
# Usage: gnuplot -e "datafile='counter.dat'; outfile='counter.png'" plot.gp
set terminal pngcairo size 900,560 noenhanced font ",10"
set output outfile
set title "counter: items/s against threads (2-core machine: 4 threads oversubscribe it)"
set xlabel "threads"
set ylabel "items per second (log scale)"
set logscale y
set xtics (1, 2, 4)
set key outside right
set grid ytics
header = system("head -1 '" . datafile . "'")
impls = words(header) - 3
plot for [i = 1:impls] datafile using 1:(column(i + 1)) with linespoints lw 2 \
	title word(header, i + 2)
