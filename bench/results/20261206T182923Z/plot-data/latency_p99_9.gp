set terminal svg size 900,560 dynamic enhanced font "sans,12" background "white"
set key outside right top
set grid
set output "/work/main/bench/results/s5-full/latency_p99_9.svg"
set title "Latency p99.9 against offered load (from the intended send time)"
set xlabel "offered, req/s"
set ylabel "latency, µs"
set logscale y
set format x "%.0s%c"
plot "/work/main/bench/results/s5-full/plot-data/baseline.dat" using 1:5 with linespoints title "baseline: epoll + Unix-socket workers", \
  "/work/main/bench/results/s5-full/plot-data/reflector.dat" using 1:5 with linespoints title "XDP_TX reflector (ceiling)", \
  "/work/main/bench/results/s5-full/plot-data/xdp.dat" using 1:5 with linespoints title "axon, XDP + AF_XDP", \
  "/work/main/bench/results/s5-full/plot-data/uring.dat" using 1:5 with linespoints title "axon, io_uring", \
  "/work/main/bench/results/s5-full/plot-data/dpdk.dat" using 1:5 with linespoints title "axon, DPDK (net_af_xdp)", \
  "/work/main/bench/results/s5-full/plot-data/nats.dat" using 1:5 with linespoints title "NATS (fresh server)", \
  "/work/main/bench/results/s5-full/plot-data/nats_asap.dat" using 1:5 with linespoints title "NATS, send asap (latency setting)", \
  "/work/main/bench/results/s5-full/plot-data/zmq.dat" using 1:5 with linespoints title "ZeroMQ ROUTER/DEALER", \
  "/work/main/bench/results/s5-full/plot-data/nats_long.dat" using 1:5 with linespoints title "NATS (same server, second sweep)"
