set terminal svg size 900,560 dynamic enhanced font "sans,12" background "white"
set key outside right top
set grid
set output "/work/main/bench/results/s5-full/cdf.svg"
set title "Latency CDF at the fixed rate (64 B)"
set xlabel "latency, µs"
set ylabel "fraction of requests"
set logscale x
set yrange [0:1]
set key right bottom inside
plot "/work/main/bench/results/s5-full/plot-data/baseline-cdf.dat" using 1:2 with linespoints title "baseline: epoll + Unix-socket workers", \
  "/work/main/bench/results/s5-full/plot-data/reflector-cdf.dat" using 1:2 with linespoints title "XDP_TX reflector (ceiling)", \
  "/work/main/bench/results/s5-full/plot-data/xdp-cdf.dat" using 1:2 with linespoints title "axon, XDP + AF_XDP", \
  "/work/main/bench/results/s5-full/plot-data/uring-cdf.dat" using 1:2 with linespoints title "axon, io_uring", \
  "/work/main/bench/results/s5-full/plot-data/dpdk-cdf.dat" using 1:2 with linespoints title "axon, DPDK (net_af_xdp)", \
  "/work/main/bench/results/s5-full/plot-data/zmq-cdf.dat" using 1:2 with linespoints title "ZeroMQ ROUTER/DEALER", \
  "/work/main/bench/results/s5-full/plot-data/nats_long-cdf.dat" using 1:2 with linespoints title "NATS (same server, second sweep)"
