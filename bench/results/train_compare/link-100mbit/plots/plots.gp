set terminal pngcairo size 1200,720 enhanced font 'DejaVu Sans,12' linewidth 2
set grid lc rgb '#dddddd'
set key outside right center box opaque font ',10' title 'codec (final acc)'
set yrange [0.75:*]
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
set title "Fashion-MNIST MLP, 4 ranks, link 100mbit: test accuracy vs bytes sent per rank"
set xlabel 'bytes sent per rank, cumulative (transport counters, log scale)'
set logscale x
set format x '10^{%L}'
plot "00-none-100mbit.dat" using 2:4 title "none (0.8883)" lt 1 lw 2 pt 5 ps 1.2, \
     "01-fp16-100mbit.dat" using 2:4 title "fp16 (0.8903)" lt 2 lw 2 pt 7 ps 1.2, \
     "02-bf16-100mbit.dat" using 2:4 title "bf16 (0.8898)" lt 3 lw 2 pt 9 ps 1.2, \
     "03-int8_256-100mbit.dat" using 2:4 title "int8:256 (0.8872)" lt 4 lw 2 pt 11 ps 1.2, \
     "04-qsgd_4_64-100mbit.dat" using 2:4 title "qsgd:4:64 (0.8855)" lt 5 lw 2 pt 13 ps 1.2, \
     "05-sign_256-100mbit.dat" using 2:4 title "sign:256 (0.8780)" lt 6 lw 2 pt 15 ps 1.2, \
     "06-sign_256_no-EF-100mbit.dat" using 2:4 title "sign:256 no-EF (0.8571)" lt 7 lw 2 pt 5 ps 1.2, \
     "07-topk_0.01-100mbit.dat" using 2:4 title "topk:0.01 (0.8858)" lt 8 lw 2 pt 7 ps 1.2, \
     "08-powersgd_4-100mbit.dat" using 2:4 title "powersgd:4 (0.8884)" lt 9 lw 2 pt 9 ps 1.2, \
     "09-powersgd_1-100mbit.dat" using 2:4 title "powersgd:1 (0.8339)" lt 10 lw 2 pt 11 ps 1.2
unset logscale x
set format x '%g'
set output 'accuracy_vs_time.png'
set title "Fashion-MNIST MLP, 4 ranks, link 100mbit: test accuracy vs training time"
set xlabel 'training time, cumulative (s; compute + communication, evaluation excluded)'
set xrange [0:*]
plot "00-none-100mbit.dat" using 3:4 title "none (0.8883)" lt 1 lw 2 pt 5 ps 1.2, \
     "01-fp16-100mbit.dat" using 3:4 title "fp16 (0.8903)" lt 2 lw 2 pt 7 ps 1.2, \
     "02-bf16-100mbit.dat" using 3:4 title "bf16 (0.8898)" lt 3 lw 2 pt 9 ps 1.2, \
     "03-int8_256-100mbit.dat" using 3:4 title "int8:256 (0.8872)" lt 4 lw 2 pt 11 ps 1.2, \
     "04-qsgd_4_64-100mbit.dat" using 3:4 title "qsgd:4:64 (0.8855)" lt 5 lw 2 pt 13 ps 1.2, \
     "05-sign_256-100mbit.dat" using 3:4 title "sign:256 (0.8780)" lt 6 lw 2 pt 15 ps 1.2, \
     "06-sign_256_no-EF-100mbit.dat" using 3:4 title "sign:256 no-EF (0.8571)" lt 7 lw 2 pt 5 ps 1.2, \
     "07-topk_0.01-100mbit.dat" using 3:4 title "topk:0.01 (0.8858)" lt 8 lw 2 pt 7 ps 1.2, \
     "08-powersgd_4-100mbit.dat" using 3:4 title "powersgd:4 (0.8884)" lt 9 lw 2 pt 9 ps 1.2, \
     "09-powersgd_1-100mbit.dat" using 3:4 title "powersgd:1 (0.8339)" lt 10 lw 2 pt 11 ps 1.2
