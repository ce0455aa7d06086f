# SPDX-License-Identifier: BSD-2-Clause
# bench/plot-family.gp: one family's plot from summary.py's files: items/s against threads
# (<name>.sel.dat: threads, then one column per impl, names in the header) beside latency
# percentiles p50, p99, p99.9 (<name>.latp: one column per impl:operation), tally's impls and
# the strongest peer of each.
# Usage: gnuplot -e "base='results/sessionlookup_10'; outfile='session.png'; what='...'" \
#	plot-family.gp
set terminal pngcairo size 1200,520 noenhanced font ",10"
set output outfile
set multiplot layout 1,2 title what
datafile = base . ".sel.dat"
header = system("head -1 '" . datafile . "'")
impls = words(header) - 3
set title "items/s against threads (2-core machine)"
set xlabel "threads"
set ylabel "items per second (log scale)"
set logscale y
set xtics 1
set key bottom right
set grid ytics
plot for [i = 1:impls] datafile using 1:(column(i + 1)) with linespoints lw 2 \
	title word(header, i + 2)
latfile = base . ".latp"
latheader = system("head -1 '" . latfile . "'")
columns = words(latheader) - 4
set title "latency percentiles (one operation in 32 timed; ns, log scale)"
set xlabel "percentile"
set ylabel "ns per operation"
set xtics ("p50" 1, "p99" 2, "p99.9" 3)
set xrange [0.8:3.2]
set key top left
plot for [i = 1:columns] latfile using 1:(column(i + 1)) with linespoints lw 2 \
	title word(latheader, i + 2)
unset multiplot
