# SPDX-License-Identifier: BSD-2-Clause
# bench/plot-scaling.gp: one family of `make bench-scaling` (bench/run-scaling.sh): items/s
# against threads, tally's impls and the strongest peers (summary.py --scaling's <name>.dat:
# threads, then one column per impl, names in the header), beside tally / strongest peer
# against threads (<name>.ratio.dat). Thread counts above the CPU count are shaded: there the
# threads time-share the CPUs and the figures measure preemption, not parallel speed-up.
# Usage: gnuplot -e "base='results/scaling/sessionlookup_10'; outfile='x.png'; what='...';
#	cpus=2" plot-scaling.gp
set terminal pngcairo size 1200,520 noenhanced font ",10"
set output outfile
set multiplot layout 1,2 title what . sprintf("  (%d CPUs)", cpus)
datafile = base . ".dat"
header = system("head -1 '" . datafile . "'")
impls = words(header) - 3
stats datafile using 1 nooutput
set logscale x 2
set xtics (1, 2, 4, 8, 16, 32, 64)
set xrange [0.8:STATS_max * 1.25]
set xlabel "threads"
set grid ytics
# shaded from half-way (on the log axis) between the CPU count and the next power of two
set object 1 rect from first cpus * sqrt(2), graph 0 to graph 1, graph 1 behind \
	fillcolor rgb "#e8e8e8" fillstyle solid noborder
set label 1 sprintf("oversubscribed: > %d CPUs", cpus) at first cpus * 1.5, graph 0.95
set title "items/s against threads"
set ylabel "items per second (log scale)"
set logscale y
set key bottom right
# tally's impls solid, the peers dashed
plot for [i = 1:impls] datafile using 1:(column(i + 1)) with linespoints lw 2 \
	dashtype 1 + (word(header, i + 2)[1:5] ne "tally") title word(header, i + 2)
ratiofile = base . ".ratio.dat"
ratioheader = system("head -1 '" . ratiofile . "'")
ours = words(ratioheader) - 2
unset logscale y
set yrange [0:*]
set offsets 0, 0, graph 0.1, 0
set title "tally / strongest peer (> 1: tally faster)"
set ylabel "ratio"
set key bottom right
plot for [i = 1:ours] ratiofile using 1:(column(i + 1)) with linespoints lw 2 \
	title word(ratioheader, i + 2), 1 with lines dashtype 2 lc rgb "black" notitle
unset multiplot
