set terminal pngcairo size 1200,720 enhanced font 'DejaVu Sans,12' linewidth 2
set grid lc rgb '#dddddd'
set key outside right center box opaque font ',10' title 'codec (final acc)'
set yrange [0.8:*]
set ylabel 'test accuracy'
set style data linespoints
set arrow from graph 0, first 0.87 to graph 1, first 0.87 nohead dt 2 lc rgb '#888888'
set label 'target 0.87' at graph 0.01, first 0.87 left offset 0,0.7 tc rgb '#666666'
set linetype 1 lc rgb '#1f77b4'
set linetype 2 lc rgb '#ff7f0e'
set linetype 3 lc rgb '#2ca02c'
set linetype 4 lc rgb '#d62728'
set linetype 5 lc rgb '#9467bd'
set linetype 6 lc rgb '#8c564b'
set linetype 7 lc rgb '#e377c2'
set linetype 8 lc rgb '#7f7f7f'
set linetype 9 lc rgb '#bcbd22'
set linetype 10 lc rgb '#17becf'
set linetype 11 lc rgb '#000000'
set output 'accuracy_vs_bytes.png'
set title "Fashion-MNIST MLP, 4 ranks: test accuracy vs bytes sent per rank"
set xlabel 'bytes sent per rank, cumulative (transport counters, log scale)'
set logscale x
set format x '10^{%L}'
plot "00-none--.dat" using 2:4 title "none (0.8945)" lt 1 lw 2 pt 5 ps 1.2
unset logscale x
set format x '%g'
set output 'accuracy_vs_time.png'
set title "Fashion-MNIST MLP, 4 ranks: test accuracy vs training time"
set xlabel 'training time, cumulative (s; compute + communication, evaluation excluded)'
set xrange [0:*]
plot "00-none--.dat" using 3:4 title "none (0.8945)" lt 1 lw 2 pt 5 ps 1.2, \
     "01-ddp_fp32--.dat" using 3:4 title "ddp fp32 (0.8971)" lt 2 lw 2 pt 7 ps 1.2, \
     "02-ddp_fp16--.dat" using 3:4 title "ddp fp16 (0.8981)" lt 3 lw 2 pt 9 ps 1.2, \
     "03-ddp_powersgd_4--.dat" using 3:4 title "ddp powersgd:4 (0.8944)" lt 4 lw 2 pt 11 ps 1.2, \
     "04-ddp_powersgd_1--.dat" using 3:4 title "ddp powersgd:1 (0.8657)" lt 5 lw 2 pt 13 ps 1.2
