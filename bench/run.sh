#!/usr/bin/env bash
# bench/run.sh: the benchmark suite, one entry point. Every peer serves the same echo work from
# the same number of worker processes on the same core, under the same open-loop load from the
# other core, in one run, and the results land in bench/results/<date>/: raw.json (every step),
# suite.json (with the ratios and targets), summary.md and SVG plots.
#
#   sudo bench/run.sh [--build DIR] [--short] [--peers "LIST"] [--out DIR] [...]   (--help)
#
# Peers (end to end, over one veth pair this script creates):
#   reflector  an XDP program answering every AXP request itself with XDP_TX: the ceiling of
#              this VM and this load generator (bench/reflector/axon_reflect.bpf.c)
#   xdp        axon-dataplane, XDP front door + AF_XDP (copy mode on veth), echo_worker over shm
#   uring      axon-dataplane, io_uring UDP sockets
#   dpdk       axon-dataplane, DPDK with a net_af_xdp vdev
#   baseline   axon-baseline-server: epoll + recvmmsg/sendmmsg, Unix-socket workers
#   nats       Debian's nats-server, echo workers in a queue group (libnats), request-reply,
#              the client's default buffered publish (its flusher waits about 1 ms to batch)
#   nats_asap  the same with libnats' "send asap" on both ends: its latency setting
#   zmq        a ZeroMQ ROUTER/DEALER broker with REP echo workers (libzmq)
# AXP peers are driven by axon-loadgen over AF_XDP from the namespace's veth end; NATS and
# ZeroMQ by their own drivers (axon-bench-nats/-zmq driver) with the same open-loop method
# (Poisson arrivals fixed ahead, latency from the intended send time, the same histogram and
# the same "load side fell behind" verdict), over TCP through the same veth.
#
# Per peer: an offered-load sweep to saturation (a step whose load side fell behind ends the
# sweep and the figure is marked a lower bound), latency at one fixed rate for every peer (50%
# of the baseline's saturation; with its CDF), and a payload sweep (64 B, 1 KiB, 8 KiB, 64 KiB) at
# that rate (AXP requests above one datagram go as segmented messages, docs/protocol.md §6). Then the XDP malformed-drop comparison, the ring section (axon-bench-ring) and the
# mixed-class benchmark (bench/mixed/run.sh: interactive alone, under background with FIFO and
# with class scheduling; XDP_TX BUSY against XDP_DROP; kill -9 -> pool at minimum), the messages
# benchmark (bench/messages/run.sh: payload sweep to 64 KiB with throughput per size, cache hit
# latency, retransmit cost with dedup on and off), and the telemetry overhead
# (bench/overhead/run.sh: stage_latency on vs off, A/B in one run).
# --short is the CI regression gate's suite: reflector, xdp and baseline, one overload step and
# one fixed-rate step each, in about a minute; bench/compare checks its ratios.
#
# Layout: the peer under test (front end, broker or server, and its workers) on --server-cpu at
# nice -10; the load on --load-cpu at nice -20 as an ordinary task (SCHED_OTHER: never RT-
# throttled into bursts); each veth end receives in a threaded NAPI kthread pinned to its own
# side's cpu at SCHED_FIFO 2.
#
# Network rule: traffic only ever goes over the veth pair created here (10.199.79.0/30); nothing
# is routed anywhere else. Everything this script creates (namespace, veth, XDP programs,
# servers, workers) is removed on exit, whatever the exit path; a peer that cannot start is
# reported as skipped with its reason and the suite goes on.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/.." && pwd)"

# --- options ---------------------------------------------------------------------------------
build=""
axon_build=""
peers=""
server_cpu=1
load_cpu=0
workers=1
worker_spin_max=64
payloads="64 1024 8192 65536"
port=7400
step_s=2
latency_s=4
warmup_s=0.5
timeout_ms=500
rates="25000 50000 75000 100000 150000 200000 300000 400000 500000 650000 800000 1000000 1300000"
fixed_rate=""
max_lag_us=""
retries=2
max_steal=0.02
overload_rate=200000
short=0
ring=1
ring_runs=3
xdp_drop=1
xdp_s=4
out=""
keep=0
load_sched="nice"
nats_long=1
mixed=1
messages=1
overhead=1

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  cat <<EOF

Options:
  --build DIR        build tree (default: build/release, else the newest under build/)
  --axon-build DIR   tree with the data plane, echo_worker, axonctl, the baseline server,
                     axon-pktgen and axon-bench-ring (default: the --build tree)
  --peers "LIST"     peers, from: reflector xdp uring dpdk baseline nats nats_asap zmq
                     (default: all; --short: "reflector xdp baseline")
  --short            the CI gate's suite (see above)
  --workers N        worker processes per peer (default: ${workers})
  --worker-spin-max N  axon's echo_worker: the SDK's adaptive spin bound before it sleeps
                     (default: ${worker_spin_max}: the worker shares its cpu with the data plane's
                     polling lcore, and the SDK's default (65536) lets the two spin against each
                     other; "" for the SDK default; see docs/benchmarks.md)
  --rates "LIST"     sweep rates in req/s, ascending (default: ${rates})
  --fixed-rate R     the fixed-load rate (default: 50% of the baseline's saturation)
  --payloads "LIST"  payload sweep sizes in bytes (default: ${payloads})
  --step-s S         seconds per sweep step (default: ${step_s})
  --latency-s S      seconds per fixed-load point (default: ${latency_s})
  --max-lag-us US    a step whose send lag p99 exceeds this fell behind (default: 100; --short: 1000)
  --retries N        run a step again, up to N times, while its load side fell behind or the host
                     took this VM's vCPUs away during it (steal; default: ${retries})
  --max-steal F      steal share of either cpu above which a step is run again (default: ${max_steal})
  --overload-rate R  --short: the one throughput step, above the saturation of axon and the
                     baseline and within the load generator's reach (default: ${overload_rate})
  --server-cpu N     cpu of the peer under test (default: ${server_cpu})
  --load-cpu N       cpu of the load (default: ${load_cpu})
  --load-sched S     "nice" (default: SCHED_OTHER at nice -20) or "fifo" (SCHED_FIFO 1, which the
                     kernel throttles for 50 ms a second when the load spins)
  --no-ring          skip the ring section       --ring-runs N   its runs (default: ${ring_runs})
  --no-xdp-drop      skip the malformed-drop comparison
  --no-nats-long     skip the second NATS sweep on the same (by then long-running) server
  --no-mixed         skip the mixed-class benchmark (bench/mixed/run.sh, about 2 minutes)
  --no-messages      skip the messages benchmark (bench/messages/run.sh, about 3 minutes)
  --no-overhead      skip the telemetry overhead benchmark (bench/overhead/run.sh, about 1 minute)
  --out DIR          results directory (default: bench/results/<UTC date>)
  --keep             keep the work directory (per-step JSON, logs)
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --axon-build) axon_build="$2"; shift 2 ;;
    --peers) peers="$2"; shift 2 ;;
    --short) short=1; shift ;;
    --workers) workers="$2"; shift 2 ;;
    --worker-spin-max) worker_spin_max="$2"; shift 2 ;;
    --rates) rates="$2"; shift 2 ;;
    --fixed-rate) fixed_rate="$2"; shift 2 ;;
    --payloads) payloads="$2"; shift 2 ;;
    --step-s) step_s="$2"; shift 2 ;;
    --latency-s) latency_s="$2"; shift 2 ;;
    --max-lag-us) max_lag_us="$2"; shift 2 ;;
    --retries) retries="$2"; shift 2 ;;
    --max-steal) max_steal="$2"; shift 2 ;;
    --overload-rate) overload_rate="$2"; shift 2 ;;
    --server-cpu) server_cpu="$2"; shift 2 ;;
    --load-cpu) load_cpu="$2"; shift 2 ;;
    --load-sched) load_sched="$2"; shift 2 ;;
    --no-ring) ring=0; shift ;;
    --ring-runs) ring_runs="$2"; shift 2 ;;
    --no-xdp-drop) xdp_drop=0; shift ;;
    --no-nats-long) nats_long=0; shift ;;
    --no-mixed) mixed=0; shift ;;
    --no-messages) messages=0; shift ;;
    --no-overhead) overhead=0; shift ;;
    --out) out="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ((short)); then
  peers="${peers:-reflector xdp baseline}"
  ring=0
  xdp_drop=0
  nats_long=0
  mixed=0
  messages=0
  overhead=0
  payloads="64"
  latency_s=2
  [[ -n "${fixed_rate}" ]] || fixed_rate=20000
  # The gate compares ratios of peers measured alike, not absolute latencies: a load side
  # delayed by a busy CI machine is tolerated up to 1 ms before a step is discarded.
  max_lag_us="${max_lag_us:-1000}"
fi
peers="${peers:-reflector xdp uring dpdk baseline nats nats_asap zmq}"
max_lag_us="${max_lag_us:-100}"

start_epoch="$(date +%s)"
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- preflight -------------------------------------------------------------------------------
[[ ${EUID} -eq 0 ]] || die "needs root (network namespaces, veth, XDP, AF_XDP); run it with sudo"
for tool in ip jq timeout taskset python3 awk; do command -v "${tool}" >/dev/null || die "'${tool}' is missing (deploy/lib/common.sh installs it)"; done
if [[ -z "${build}" ]]; then
  if [[ -x "${repo}/build/release/bench/loadgen/axon-loadgen" ]]; then
    build="${repo}/build/release"
  else
    # shellcheck disable=SC2012
    build="$(ls -dt "${repo}"/build/*/ 2>/dev/null | while read -r d; do
      [[ -x "${d}/bench/loadgen/axon-loadgen" ]] && { echo "${d%/}"; break; }
    done || true)"
  fi
fi
[[ -n "${build}" && -d "${build}" ]] || die "no build tree found; run cmake --preset release && cmake --build --preset release, or pass --build DIR"
build="$(cd "${build}" && pwd)"
axon_build="$(cd "${axon_build:-${build}}" && pwd)"
loadgen="${build}/bench/loadgen/axon-loadgen"
reflector_obj="${build}/bench/axon_reflect.bpf.o"
nats_bin="${build}/bench/axon-bench-nats"
zmq_bin="${build}/bench/axon-bench-zmq"
pktgen="${axon_build}/bench/loadgen/axon-pktgen"
baseline_bin="${axon_build}/bench/baseline/axon-baseline-server"
ring_bin="${axon_build}/bench/axon-bench-ring"
axonctl="${axon_build}/client/axonctl"
dataplane_bin="${axon_build}/dataplane/axon-dataplane"
echo_worker_bin="${axon_build}/examples/echo_worker"
dataplane_stats_bin="${axon_build}/dataplane/axon-dataplane-stats"
for b in "${loadgen}" "${axonctl}"; do [[ -x "${b}" ]] || die "missing ${b}; build the release preset first"; done
ncpu="$(nproc)"
((server_cpu < ncpu && load_cpu < ncpu && server_cpu != load_cpu)) || die "--server-cpu and --load-cpu must be two different cpus below ${ncpu}"
for peer in ${peers}; do
  case "${peer}" in reflector | xdp | uring | dpdk | baseline | nats | nats_asap | zmq) ;; axon) ;; *) die "unknown peer '${peer}' (see --help)" ;; esac
done
peers="$(echo " ${peers} " | sed 's/ axon / xdp /g')"
case "${load_sched}" in
  nice) load_prefix=(nice -n -20) ;;
  fifo) load_prefix=(chrt -f 1) ;;
  *) die "--load-sched must be nice or fifo" ;;
esac

# --- resources this script owns, and their cleanup ----------------------------------------------
ns="axon-bench-$$"
vr="abr$$"  # root-namespace end: the peer under test
vn="abn$$"  # namespace end: the load
addr_r="10.199.79.1"
addr_n="10.199.79.2"
work="$(mktemp -d /tmp/axon-bench.XXXXXX)"
declare -a pids=()
peer_pids=""

cleanup() {
  local status=$?
  set +e
  # A second signal (timeout(1) forwards one, a user presses Ctrl-C twice) must not cut the
  # cleanup short and leave the namespace, the veth or an XDP program behind.
  trap '' INT TERM
  [[ -n "${autogroup_nice}" ]] && echo "${autogroup_nice}" >"/proc/$$/autogroup" 2>/dev/null
  for pid in "${pids[@]}"; do kill -TERM "${pid}" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pid}" 2>/dev/null
    wait "${pid}" 2>/dev/null
  done
  if ip link show "${vr}" >/dev/null 2>&1; then
    ip link set dev "${vr}" xdp off 2>/dev/null
    ip link del "${vr}" 2>/dev/null  # removes the namespace end too
  fi
  ip netns del "${ns}" 2>/dev/null
  if ((keep)); then log "work directory kept: ${work}"; else rm -rf "${work}"; fi
  exit "${status}"
}
autogroup_nice=""
trap cleanup EXIT
trap 'exit 130' INT TERM

# With autogroup scheduling (kernel.sched_autogroup_enabled, on by default) every session is one
# scheduling group whatever its tasks' nice levels, so a compiler in another session takes as much
# of a cpu as the whole suite: the nice levels above would mean nothing against other work on the
# machine. Raise this session's group for the run, and put it back on exit.
if [[ -w "/proc/$$/autogroup" ]]; then
  autogroup_nice="$(sed -n 's/.* nice \(-\?[0-9]*\)$/\1/p' "/proc/$$/autogroup")"
  echo -20 >"/proc/$$/autogroup" 2>/dev/null || autogroup_nice=""
fi

# Starts a peer process in the background on the server cpu at nice -10, remembered for cleanup;
# its pid is in $last_pid.
spawn() {
  nice -n -10 taskset -c "${server_cpu}" "$@" &
  last_pid=$!
  pids+=("${last_pid}")
}

stop_pid() {
  local pid="$1"
  kill -TERM "${pid}" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "${pid}" 2>/dev/null || true
  wait "${pid}" 2>/dev/null || true
}

setup_net() {
  if ip -4 addr show | grep -q "inet 10\.199\.79\."; then
    die "10.199.79.0/30 is already in use on this host (another bench/run.sh?)"
  fi
  ip netns add "${ns}"
  ip link add "${vr}" type veth peer name "${vn}" netns "${ns}"
  ip addr add "${addr_r}/30" dev "${vr}"
  ip link set "${vr}" up
  ip -n "${ns}" addr add "${addr_n}/30" dev "${vn}"
  ip -n "${ns}" link set "${vn}" up
  ip -n "${ns}" link set lo up
  # Full checksums in every frame the namespace's kernel sends (the brokers' TCP): a socket's
  # CHECKSUM_PARTIAL would reach AF_XDP peers unfinished. Applied for every peer alike.
  if command -v ethtool >/dev/null; then ip netns exec "${ns}" ethtool -K "${vn}" tx off >/dev/null 2>&1 || true; fi
  for _ in $(seq 50); do ip netns exec "${ns}" ping -c1 -W1 "${addr_r}" >/dev/null 2>&1 && break; sleep 0.1; done
  vr_mac="$(cat "/sys/class/net/${vr}/address")"
  log "veth ${vr} (${addr_r}) <-> ${ns}:${vn} (${addr_n})"
}

# Puts the receive work of veth end $1 (in namespace $3, or the root one) into a NAPI kthread
# pinned to cpu $2 at SCHED_FIFO 2.
pin_napi() {
  local dev="$1" cpu="$2" netns="${3:-}" pid n=0
  local -a in_ns=()
  [[ -n "${netns}" ]] && in_ns=(ip netns exec "${netns}")
  "${in_ns[@]}" ethtool -K "${dev}" gro on >/dev/null 2>&1 || true
  "${in_ns[@]}" sh -c "echo 1 >/sys/class/net/${dev}/threaded" 2>/dev/null || return 1
  for pid in $(pgrep "^napi/${dev}"); do
    taskset -pc "${cpu}" "${pid}" >/dev/null && n=$((n + 1))
    chrt -f -p 2 "${pid}" >/dev/null 2>&1 || true
  done
  ((n > 0))
}

place_rx() {
  rx_where="softirq on the sending cpu"
  if pin_napi "${vr}" "${server_cpu}" && pin_napi "${vn}" "${load_cpu}" "${ns}"; then
    rx_where="threaded NAPI: ${vr} on cpu ${server_cpu}, ${vn} on cpu ${load_cpu}, SCHED_FIFO 2"
  else
    log "threaded NAPI unavailable on the veth; receive work stays in softirq on the sending cpu"
  fi
}

# CPU time (seconds) used so far by the given pids (all their threads) and the NAPI kthreads of
# the given devices: the cost side of every step.
cpu_of() {
  local total=0 pid dev t
  local -a list=()
  for pid in ${1}; do list+=("${pid}"); done
  for dev in ${2}; do for pid in $(pgrep "^napi/${dev}"); do list+=("${pid}"); done; done
  for pid in "${list[@]}"; do
    # Fields 14 and 15 (utime, stime) after the ")" that ends the command name.
    t="$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/${pid}/stat" 2>/dev/null || echo 0)"
    total=$((total + ${t:-0}))
  done
  awk -v t="${total}" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / hz }'
}

# Sends AXP requests from the namespace until one RESPONSE comes back (or 15 s pass).
wait_axp_ready() {
  local name="$1" pid="$2"
  for _ in $(seq 150); do
    if [[ -n "${pid}" ]] && ! kill -0 "${pid}" 2>/dev/null; then
      why="${name} exited during start-up (see ${work}/${name}.log)"
      return 1
    fi
    if ip netns exec "${ns}" timeout 5 "${axonctl}" send --to "${addr_r}:${port}" --tenant 1 --agent 1 \
      --timeout-ms 100 probe >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  why="${name} did not answer an AXP request within 15 s"
  return 1
}

# --- peers -----------------------------------------------------------------------------------
# start_<peer>: starts the peer on ${vr} with its server and workers on ${server_cpu}; sets
# $peer_pids (what to stop and what to charge CPU to) and $driver ("axp", "nats", "zmq"); on
# failure returns non-zero with the reason in $why.

start_reflector() {
  driver=axp
  [[ -f "${reflector_obj}" ]] || { why="${reflector_obj} not built (target axon-reflector)"; return 1; }
  ip -force link set dev "${vr}" xdpdrv obj "${reflector_obj}" sec xdp 2>"${work}/reflector.log" ||
    { why="cannot attach the reflector to ${vr}: $(head -c 300 "${work}/reflector.log")"; return 1; }
  peer_pids=""
  # XDP_TX sends the answer straight back into the namespace's veth queue, which only takes
  # XDP frames while an XDP program is attached there: the load generator's own program is, the
  # kernel socket of axonctl's probe would not see them. So the probe is a short loadgen run.
  local probe="${work}/reflector-probe.json"
  ip netns exec "${ns}" timeout 20 "${loadgen}" --target "${addr_r}:${port}" --xdp-dev "${vn}" --dst-mac "${vr_mac}" \
    --rate 2000 --duration 0.3 --warmup 0 --timeout-ms 200 --json "${probe}" >>"${work}/load.log" 2>&1 ||
    { why="the load generator could not run against the reflector (see ${work}/load.log)"; return 1; }
  (($(jq -r .responses "${probe}") > 0)) || { why="the reflector answered no request"; return 1; }
}

start_baseline() {
  driver=axp
  [[ -x "${baseline_bin}" ]] || { why="axon-baseline-server not built"; return 1; }
  spawn "${baseline_bin}" --bind "${addr_r}" --port "${port}" --workers "${workers}" --cpu "${server_cpu}" \
    --tenants 1 --agents 1-64 --duration 3600 >"${work}/baseline.log" 2>&1
  peer_pids="${last_pid}"
  local w
  for _ in $(seq 50); do
    w="$(pgrep -P "${last_pid}" | tr '\n' ' ')"
    [[ -n "${w}" ]] && break
    sleep 0.1
  done
  peer_pids+=" ${w}"
  wait_axp_ready baseline "${last_pid}"
}

# start_axon IFACE BACKEND: the data plane's TOML for IFACE with [dataplane] backend = BACKEND,
# then axon-dataplane and its echo workers; tenant 1, agents 1-64 served by ${workers} worker(s);
# no allowlist or rate limit (the other peers have none).
start_axon() {
  local iface="$1" backend="$2"
  driver=axp
  [[ -x "${dataplane_bin}" ]] || { why="axon-dataplane not built (${dataplane_bin})"; return 1; }
  [[ -x "${echo_worker_bin}" ]] || { why="echo_worker not built (${echo_worker_bin})"; return 1; }
  local run_dir="${work}/axon-run"
  rm -rf "${run_dir}"
  mkdir -p "${run_dir}"
  local w a agents_toml="" workers_toml="" worker_list=""
  for ((w = 0; w < workers; w++)); do
    workers_toml+=$'[[workers]]\n'"name = \"echo-${w}\""$'\n\n'
    worker_list+="${worker_list:+, }\"echo-${w}\""
  done
  for a in $(seq 1 64); do
    agents_toml+=$'[[agents]]\n'"id = ${a}"$'\ntenant = 1\n'"name = \"echo-${a}\""$'\n'"workers = [${worker_list}]"$'\n\n'
  done
  cat >"${run_dir}/dataplane.toml" <<TOML
[dataplane]
interface = "${iface}"
backend = "${backend}"
queues = [0]
cores = [${server_cpu}]
ports = [${port}]
run_dir = "${run_dir}"

[xdp]
enforce_allowlist = false
enforce_rate = false

${backend_toml:-}
[[tenants]]
id = 1
name = "bench"

${workers_toml}${agents_toml}
TOML
  spawn "${dataplane_bin}" --config "${run_dir}/dataplane.toml" >"${work}/axon-${backend}.log" 2>&1
  peer_pids="${last_pid}"
  local dp_pid="${last_pid}"
  for _ in $(seq 100); do
    [[ -S "${run_dir}/workers/echo-0.sock" ]] && break
    kill -0 "${dp_pid}" 2>/dev/null || { why="axon-dataplane exited during start-up: $(tail -n 3 "${work}/axon-${backend}.log" | tr '\n' ' ')"; return 1; }
    sleep 0.1
  done
  for ((w = 0; w < workers; w++)); do
    AXON_WORKER_SOCKET="${run_dir}/workers/echo-${w}.sock" spawn "${echo_worker_bin}" \
      ${worker_spin_max:+--spin-max "${worker_spin_max}"} >>"${work}/axon-workers.log" 2>&1
    peer_pids+=" ${last_pid}"
  done
  wait_axp_ready axon "${dp_pid}"
}
start_xdp() { backend_toml="" start_axon "$1" xdp; }
start_uring() { backend_toml="" start_axon "$1" uring; }
start_dpdk() {
  ip -n "${ns}" neigh replace "${addr_r}" lladdr "${vr_mac}" dev "${vn}" nud permanent
  backend_toml=$'[dpdk]\nvdevs = ["net_af_xdp0,iface='"$1"$'"]\nfile_prefix = "axon-bench-'"$$"$'"\n' start_axon "$1" dpdk
}

nats_port=4222
nats_flags=()
start_nats_asap() {
  nats_flags=(--send-asap)
  start_nats "$@"
}
start_nats() {
  driver=nats
  command -v nats-server >/dev/null || { why="nats-server is not installed (apt-get install nats-server)"; return 1; }
  [[ -x "${nats_bin}" ]] || { why="axon-bench-nats not built (libnats-dev missing at configure time?)"; return 1; }
  if ss -Hltn "sport = :${nats_port}" 2>/dev/null | grep -q .; then
    # Bound to our own veth address only, but a wildcard listener elsewhere would still clash.
    :
  fi
  spawn nats-server -a "${addr_r}" -p "${nats_port}" --no_advertise >"${work}/nats-server.log" 2>&1
  peer_pids="${last_pid}"
  local server="${last_pid}" w
  for _ in $(seq 100); do
    grep -q "Server is ready" "${work}/nats-server.log" 2>/dev/null && break
    kill -0 "${server}" 2>/dev/null || { why="nats-server exited: $(tail -n 2 "${work}/nats-server.log" | tr '\n' ' ')"; return 1; }
    sleep 0.1
  done
  grep -q "Server is ready" "${work}/nats-server.log" || { why="nats-server did not become ready in 10 s"; return 1; }
  rm -f "${work}/nats-workers.log"
  for ((w = 0; w < workers; w++)); do
    spawn "${nats_bin}" worker --url "nats://${addr_r}:${nats_port}" --cpu "${server_cpu}" --max-life 3600 \
      "${nats_flags[@]}" >>"${work}/nats-workers.log" 2>&1
    peer_pids+=" ${last_pid}"
  done
  for _ in $(seq 100); do
    (($(grep -c "subscribed" "${work}/nats-workers.log" 2>/dev/null || echo 0) >= workers)) && return 0
    sleep 0.1
  done
  why="the NATS workers did not subscribe within 10 s (see ${work}/nats-workers.log)"
  return 1
}

zmq_port=5555
start_zmq() {
  driver=zmq
  [[ -x "${zmq_bin}" ]] || { why="axon-bench-zmq not built (libzmq3-dev missing at configure time?)"; return 1; }
  local back="ipc://${work}/zmq-back.ipc" w
  spawn "${zmq_bin}" broker --front "tcp://${addr_r}:${zmq_port}" --back "${back}" --max-life 3600 \
    >"${work}/zmq-broker.log" 2>&1
  peer_pids="${last_pid}"
  local broker="${last_pid}"
  for _ in $(seq 100); do
    grep -q "ROUTER" "${work}/zmq-broker.log" 2>/dev/null && break
    kill -0 "${broker}" 2>/dev/null || { why="the ZeroMQ broker exited: $(tail -n 2 "${work}/zmq-broker.log" | tr '\n' ' ')"; return 1; }
    sleep 0.1
  done
  for ((w = 0; w < workers; w++)); do
    spawn "${zmq_bin}" worker --back "${back}" --max-life 3600 >>"${work}/zmq-workers.log" 2>&1
    peer_pids+=" ${last_pid}"
  done
  sleep 0.5
  kill -0 "${broker}" 2>/dev/null || { why="the ZeroMQ broker exited during start-up"; return 1; }
}

stop_peer() {
  local pid
  for pid in ${peer_pids}; do stop_pid "${pid}"; done
  peer_pids=""
  if ip -j link show dev "${vr}" | jq -e '.[0].xdp != null' >/dev/null 2>&1; then
    [[ "${current}" == reflector ]] || log "warning: ${current} left an XDP program attached to ${vr}; detaching it"
    ip link set dev "${vr}" xdp off
  fi
}

# --- one load step ---------------------------------------------------------------------------------
# run_step PEER RATE SECONDS PAYLOAD JSON: one open-loop run against the current peer; adds the
# CPU both sides used and, for axon peers, the data plane's counter deltas. Returns non-zero if
# the load tool failed.
dataplane_counters() {
  if [[ "${current}" != xdp && "${current}" != uring && "${current}" != dpdk ]] || [[ ! -x "${dataplane_stats_bin}" ]]; then
    echo '{}'
    return
  fi
  "${dataplane_stats_bin}" --run-dir "${work}/axon-run" --json 2>/dev/null |
    jq -c '{rx_frames, responses, busy, tx_dropped, port, device}' 2>/dev/null || echo '{}'
}

run_step() {
  local rate="$1" seconds="$2" payload="$3" json="$4"
  local bound before after cpu_p0 cpu_p1 cpu_l0 cpu_l1 load_pid status=0
  bound="$(awk -v d="${seconds}" -v w="${warmup_s}" -v t="${timeout_ms}" 'BEGIN { printf "%d", d + w + t / 1000 + 20 }')"
  local -a cmd
  case "${driver}" in
    axp)
      cmd=("${loadgen}" --target "${addr_r}:${port}" --xdp-dev "${vn}" --dst-mac "${vr_mac}" --rate "${rate}"
        --duration "${seconds}" --warmup "${warmup_s}" --payload "${payload}" --tenant 1 --agent 1-64 --sessions 256
        --cpu-send "${load_cpu}" --cpu-recv "${load_cpu}" --timeout-ms "${timeout_ms}" --max-lag-us "${max_lag_us}"
        --max-datagram 1472 --json "${json}") ;;
    nats)
      cmd=("${nats_bin}" driver --url "nats://${addr_r}:${nats_port}" "${nats_flags[@]}" --rate "${rate}" --duration "${seconds}"
        --warmup "${warmup_s}" --payload "${payload}" --timeout-ms "${timeout_ms}" --cpu "${load_cpu}"
        --max-lag-us "${max_lag_us}" --json "${json}") ;;
    zmq)
      cmd=("${zmq_bin}" driver --front "tcp://${addr_r}:${zmq_port}" --rate "${rate}" --duration "${seconds}"
        --warmup "${warmup_s}" --payload "${payload}" --timeout-ms "${timeout_ms}" --cpu "${load_cpu}"
        --max-lag-us "${max_lag_us}" --json "${json}") ;;
  esac
  before="$(dataplane_counters)"
  local stat0
  stat0="$(grep "^cpu[0-9]" /proc/stat)"
  cpu_p0="$(cpu_of "${peer_pids}" "${vr}")"
  cpu_l1=0
  ip netns exec "${ns}" "${load_prefix[@]}" taskset -c "${load_cpu}" timeout --kill-after=5 "${bound}" "${cmd[@]}" \
    >"${json}.log" 2>&1 &
  load_pid=$!
  pids+=("${load_pid}")
  cpu_l0="$(cpu_of "" "${vn}")"
  wait "${load_pid}" || status=$?
  cpu_p1="$(cpu_of "${peer_pids}" "${vr}")"
  cpu_l1="$(cpu_of "" "${vn}")"
  after="$(dataplane_counters)"
  cat "${json}.log" >>"${work}/load.log" 2>/dev/null
  # The share of each cpu the hypervisor took during the step (steal): this VM's vCPUs are
  # descheduled by the host now and then, for tens of ms, which no setting inside can prevent.
  local steal
  steal="$( (echo "${stat0}"; echo "--"; grep "^cpu[0-9]" /proc/stat) | awk '
    $1 == "--" { second = 1; next }
    { total = 0; for (i = 2; i <= 9; i++) total += $i
      if (!second) { t0[$1] = total; s0[$1] = $9; next }
      dt = total - t0[$1]; if (dt <= 0) dt = 1
      printf "%s\"%s\": %.3f", sep, $1, ($9 - s0[$1]) / dt; sep = ", " }
    BEGIN { printf "{" } END { printf "}" }')"
  if ((status != 0)) || [[ ! -s "${json}" ]]; then
    # Say why here: the work directory (and load.log with it) is gone after the run.
    log "${current}: the load tool failed at ${rate}/s (status ${status}): $(grep -v '^offered=' "${json}.log" | tail -n 3 | tr '\n' ' ')"
    rm -f "${json}.log"
    return 1
  fi
  jq --argjson b "${before}" --argjson a "${after}" --arg peer "${current}" --argjson steal "${steal}" \
    --argjson pcpu "$(awk -v a="${cpu_p0}" -v b="${cpu_p1}" 'BEGIN { printf "%.3f", b - a }')" \
    --argjson ncpu "$(awk -v a="${cpu_l0}" -v b="${cpu_l1}" 'BEGIN { printf "%.3f", b - a }')" '
    def delta(a; b): if (a | type) == "object" then (a | with_entries(.value = (.value - (b[.key] // 0)))) else a - (b // 0) end;
    . + {peer: $peer, steal: $steal,
         cpu: {peer_s: $pcpu, load_s: (.cpu_s + $ncpu), load_napi_s: $ncpu}}
      + (if ($a | length) > 0 then {dataplane: ($a | with_entries(.value = delta(.value; $b[.key])))} else {} end)' \
    "${json}" >"${json}.tmp" && mv "${json}.tmp" "${json}"
}

# run_step_retry ...: run_step, run again (up to --retries more times) while its load side fell
# behind, or the host took more than --max-steal of either cpu (steal; the vCPU is then gone for
# tens of ms, which stalls the peer or the load and overflows queues), or such a stall delayed
# the sends (stall_share, see loadgen.h). Of the attempts it keeps the first that had none of
# these, else the one with the least steal. The criterion is the host's, not the peer's, and
# applies to every peer alike. The number of attempts is in the step's "attempts".
run_step_retry() {
  local attempt=1 json="$4" best=""
  while :; do
    if ! run_step "$1" "$2" "$3" "${json}.${attempt}"; then
      # A failed start (the tool's own error, logged above) is retried like a disturbed step, after
      # a pause: the usual cause is the previous run's AF_XDP socket on the queue, which the kernel
      # releases after the process exits (EBUSY), or a driver's TIME_WAIT-like port.
      ((attempt > retries)) && break
      sleep "${attempt}"
      attempt=$((attempt + 1))
      continue
    fi
    rm -f "${json}.${attempt}.log"
    if [[ -z "${best}" ]] || jq -e --slurpfile b "${best}" \
      '[(.load_behind | if . then 1 else 0 end), ([.steal[]] | max), .stall_share] < [($b[0].load_behind | if . then 1 else 0 end), ($b[0].steal | [.[]] | max), $b[0].stall_share]' \
      "${json}.${attempt}" >/dev/null; then
      best="${json}.${attempt}"
    fi
    jq -e --argjson s "${max_steal}" '(.load_behind or .stalled or ([.steal[]] | max) > $s) | not' "${json}.${attempt}" >/dev/null && break
    ((attempt > retries)) && break
    log "${current}: at ${1}/s $(jq -r 'if .load_behind then "the load side fell behind (\(.load_behind_reason))" elif .stalled then "a host stall delayed \(.stall_share * 1000 | round / 10)% of the sends" else "the host took cpu time (steal)" end' "${json}.${attempt}") (steal $(jq -r '[.steal[]] | map(. * 100 | round) | join("/")' "${json}.${attempt}")%); again"
    attempt=$((attempt + 1))
  done
  [[ -n "${best}" ]] || return 1
  jq --argjson n "${attempt}" '. + {attempts: $n}' "${best}" >"${json}"
  rm -f "${json}".[0-9]*
}

step_line() {
  jq -r '"offered \(.offered_rps | floor)/s -> \(.achieved_rps | floor)/s, p50 \(.latency_us.p50) us, p99 \(.latency_us.p99) us, lost \(.lost) (dropped at the sender \(.send_dropped // 0), by the veth link \(.xsk.kicks_busy // 0)), lag p99 \(.send_lag_us.p99) us, steal \([.steal[]] | map(. * 100 | round) | join("/"))%, cpu peer \(.cpu.peer_s) s, load \(.cpu.load_s * 1000 | round / 1000) s" + (if .load_behind then " LOAD BEHIND (\(.load_behind_reason))" elif .stalled then " (host stall: \(.stall_share * 1000 | round / 10)% of sends late)" else "" end)' "$1"
}

# step_verdict JSON: "behind" (the load side fell behind), "saturated" (< 90% served in time, or
# > 5% not answered), "disturbed" (saturated, but the host took more than --max-steal of a cpu
# during the step even after the retries: the losses may be the host's), or "ok".
step_verdict() {
  jq -r --argjson s "${max_steal}" 'if .load_behind then "behind"
    elif (.achieved_rps < 0.9 * .offered_rps) or ((.lost + .busy + .errors) > 0.05 * ([.sent, 1] | max)) then
      (if ([.steal[]] | max) > $s then "disturbed" else "saturated" end)
    else "ok" end' "$1"
}

# Offered-load sweep until the peer saturates or the load side falls behind. A saturated step the
# host disturbed does not end the sweep; two in a row do.
sweep() {
  local tag="$1" rate json i=0 verdict disturbed=0
  for rate in ${rates}; do
    json="${work}/${tag}-sweep-$(printf '%02d' ${i}).json"
    i=$((i + 1))
    run_step_retry "${rate}" "${step_s}" 64 "${json}" || break
    log "${tag}: $(step_line "${json}")"
    verdict="$(step_verdict "${json}")"
    if [[ "${verdict}" == disturbed ]]; then
      disturbed=$((disturbed + 1))
      ((disturbed < 2)) && { log "${tag}: the host disturbed this step; the sweep goes on"; continue; }
      break
    fi
    disturbed=0
    [[ "${verdict}" == ok ]] || break
  done
}

# --- XDP malformed-drop comparison (as in bench/e2e) ---------------------------------------------
map_packets() {
  local map_id="$1" keys="$2"
  bpftool -j map dump id "${map_id}" | jq --argjson keys "${keys}" '
    [ .[] | (.formatted // .) as $e
      | select(($keys | length) == 0 or ($keys | index($e.key)) != null)
      | $e.values[] | .value | if type == "object" then .packets else . end ]
    | add // 0'
}

xdp_map_id() {
  local name="$1" prog_id id
  prog_id="$(ip -j link show dev "${vr}" | jq -r '.[0].xdp.prog.id // empty')"
  [[ -n "${prog_id}" ]] || return 1
  for id in $(bpftool -j prog show id "${prog_id}" | jq -r '.map_ids[]?'); do
    if [[ "$(bpftool -j map show id "${id}" | jq -r .name)" == "${name}" ]]; then echo "${id}"; return 0; fi
  done
  return 1
}

measure_drops() {
  local map_id="$1" keys="$2" tag="$3" gen c0 t0 c1 t1
  ip netns exec "${ns}" "${load_prefix[@]}" timeout --kill-after=5 $((xdp_s + 10)) "${pktgen}" --dev "${vn}" \
    --dst-mac "${vr_mac}" --src-ip "${addr_n}" --dst-ip "${addr_r}" --dport "${port}" --kind mix \
    --duration $((xdp_s + 2)) --cpu "${load_cpu}" --json "${work}/pktgen-${tag}.json" >>"${work}/pktgen.log" 2>&1 &
  gen=$!
  pids+=("${gen}")
  sleep 1
  c0="$(map_packets "${map_id}" "${keys}")"; t0="$(date +%s.%N)"
  sleep "${xdp_s}"
  c1="$(map_packets "${map_id}" "${keys}")"; t1="$(date +%s.%N)"
  wait "${gen}" || true
  drops="$(awk -v c0="${c0}" -v c1="${c1}" -v t0="${t0}" -v t1="${t1}" 'BEGIN { printf "%.0f", (c1 - c0) / (t1 - t0) }')"
  pps="$(jq -r '.pps | floor' "${work}/pktgen-${tag}.json" 2>/dev/null || echo 0)"
}

xdp_compare() {
  local result="${work}/xdp_drop.json" map arch_inc
  echo '{}' >"${result}"
  command -v bpftool >/dev/null || { jq '.skipped = "bpftool missing"' "${result}" >"${result}.t" && mv "${result}.t" "${result}"; return; }
  [[ -x "${pktgen}" ]] || { jq '.skipped = "axon-pktgen not built"' "${result}" >"${result}.t" && mv "${result}.t" "${result}"; return; }
  arch_inc="/usr/include/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"
  clang -O2 -g -target bpf -Wall -Werror -I"${arch_inc}" -c "${here}/e2e/xdp_drop.bpf.c" -o "${work}/xdp_drop.bpf.o" ||
    { jq '.skipped = "cannot compile xdp_drop.bpf.c"' "${result}" >"${result}.t" && mv "${result}.t" "${result}"; return; }
  current=bare
  ip -force link set dev "${vr}" xdpdrv obj "${work}/xdp_drop.bpf.o" sec xdp || { jq '.skipped = "cannot attach XDP_DROP"' "${result}" >"${result}.t" && mv "${result}.t" "${result}"; return; }
  place_rx
  map="$(xdp_map_id e2e_drop_count)" || { ip link set dev "${vr}" xdp off; return; }
  measure_drops "${map}" '[]' bare
  ip link set dev "${vr}" xdp off
  log "xdp drop: bare XDP_DROP ${drops}/s (sender ${pps} pps)"
  jq --argjson d "${drops}" --argjson p "${pps}" '.bare_xdp_drop = {drops_per_s: $d, sender_pps: $p}' "${result}" >"${result}.t" && mv "${result}.t" "${result}"
  current=xdp
  if ! start_xdp "${vr}"; then
    log "xdp drop: axon skipped: ${why}"
    stop_peer
    jq --arg w "${why}" '.axon = {skipped: $w}' "${result}" >"${result}.t" && mv "${result}.t" "${result}"
    return
  fi
  place_rx
  if map="$(xdp_map_id axon_counters)"; then
    measure_drops "${map}" "$(seq 2 31 | jq -s -c .)" axon
    log "xdp drop: axon front door ${drops}/s (sender ${pps} pps)"
    jq --argjson d "${drops}" --argjson p "${pps}" '.axon = {drops_per_s: $d, sender_pps: $p}
      | .ratio = (if .bare_xdp_drop.drops_per_s > 0 then $d / .bare_xdp_drop.drops_per_s else null end)' \
      "${result}" >"${result}.t" && mv "${result}.t" "${result}"
  fi
  stop_peer
}

# --- run ---------------------------------------------------------------------------------------
loadavg_start="$(cat /proc/loadavg)"
cpustat_start="$(grep '^cpu[0-9]' /proc/stat)"
setup_net
log "layout: peers on cpu ${server_cpu} (nice -10, ${workers} worker(s) each); load on cpu ${load_cpu} (${load_prefix[*]}); ${ncpu} cpus; load average ${loadavg_start}"

# The baseline goes first: its saturation sets the fixed rate every peer (the reflector too) is
# measured at. Then the reflector (the ceiling), then the others.
ordered=""
for p in baseline reflector xdp uring dpdk nats nats_asap zmq; do [[ " ${peers} " == *" ${p} "* ]] && ordered+="${p} "; done
declare -A skipped=()
current=""
rx_where=""
base_sat=0

run_peer() {
  local peer="$1" tag="$1"
  current="${peer}"
  log "=== ${peer}"
  place_rx
  if ! "start_${peer}" "${vr}"; then
    log "${peer} skipped: ${why}"
    skipped[${peer}]="${why}"
    stop_peer
    return
  fi
  place_rx
  if ((short)); then
    # The gate: one step far above any peer's saturation (achieved = what it serves), then the
    # fixed rate.
    run_step_retry "${overload_rate}" "${step_s}" 64 "${work}/${tag}-sweep-00.json" && log "${tag}: $(step_line "${work}/${tag}-sweep-00.json")"
  else
    sweep "${tag}"
  fi
  if [[ "${peer}" == baseline && -z "${fixed_rate}" ]]; then
    base_sat="$(jq -s '[.[] | select(.load_behind | not) | .achieved_rps] | max // 0' "${work}"/baseline-sweep-*.json 2>/dev/null || echo 0)"
    fixed_rate="$(awk -v s="${base_sat}" 'BEGIN { printf "%d", s / 2 }')"
    if ((fixed_rate < 1000)); then
      fixed_rate=10000
      log "the baseline gave no saturation figure; fixed rate for every peer: ${fixed_rate}/s"
    else
      log "fixed rate for every peer: ${fixed_rate}/s (50% of the baseline's saturation ${base_sat}/s)"
    fi
  fi
  if [[ -n "${fixed_rate}" ]] && ((fixed_rate > 0)); then
    local payload
    for payload in ${payloads}; do
      if [[ "${peer}" == baseline ]] && ((payload + 80 > 1472)); then
        # One AXP datagram carries at most 1392 bytes here; axon-loadgen sends larger requests as
        # segmented messages (docs/protocol.md §6), which the baseline does not reassemble (it
        # answers ERROR payload_too_large), and one larger datagram would need IP fragments, which
        # the AF_XDP load generator does not make.
        echo "{\"skipped\": \"the baseline server does not reassemble AXP segments (above 1392 bytes) and the AF_XDP load generator makes no IP fragments\"}" >"${work}/${tag}-fixed-${payload}.json"
        continue
      fi
      run_step_retry "${fixed_rate}" "${latency_s}" "${payload}" "${work}/${tag}-fixed-${payload}.json" &&
        log "${tag}: fixed, ${payload} B: $(step_line "${work}/${tag}-fixed-${payload}.json")"
    done
  fi
  if [[ "${peer}" == nats ]] && ((nats_long)); then
    # NATS is known to slow down on a server that has run for a while: sweep the same server again.
    log "nats: second sweep on the same server (now long-running)"
    local t0 i=0 rate json verdict
    t0="$(date +%s)"
    for rate in ${rates}; do
      json="${work}/nats_long-sweep-$(printf '%02d' ${i}).json"
      i=$((i + 1))
      current=nats
      run_step_retry "${rate}" "${step_s}" 64 "${json}" || break
      log "nats (long-running): $(step_line "${json}")"
      verdict="$(step_verdict "${json}")"
      [[ "${verdict}" == ok ]] || break
    done
    run_step_retry "${fixed_rate}" "${latency_s}" 64 "${work}/nats_long-fixed-64.json" || true
    echo "$(($(date +%s) - t0))" >"${work}/nats_long.age"
  fi
  stop_peer
  nats_flags=()
}

for peer in ${ordered}; do run_peer "${peer}"; done
current=""
if ((xdp_drop)) && [[ " ${peers} " == *" xdp "* ]]; then xdp_compare; else echo '{"skipped": "not run"}' >"${work}/xdp_drop.json"; fi

if ((ring)); then
  if [[ -x "${ring_bin}" ]]; then
    log "=== ring (${ring_runs} runs; a few minutes)"
    timeout --kill-after=10 900 "${ring_bin}" --rt --runs "${ring_runs}" --no-iceoryx --cpus "${load_cpu},${server_cpu}" \
      --watchdog 120 --json "${work}/ring.json" >"${work}/ring.log" 2>&1 || log "ring bench failed (see ${work}/ring.log)"
  else
    log "ring: ${ring_bin} not built; skipped"
  fi
fi
[[ -s "${work}/ring.json" ]] || echo '{"skipped": "not run"}' >"${work}/ring.json"

if ((mixed)); then
  # Its own namespace, veth pair and subnet (10.199.81.0/30); it writes mixed.json and mixed.md
  # into this run's results directory.
  log "=== mixed classes (bench/mixed/run.sh)"
  mkdir -p "${work}/mixed"
  timeout --kill-after=10 900 "${here}/mixed/run.sh" --build "${axon_build}" --server-cpu "${server_cpu}" \
    --load-cpu "${load_cpu}" --out "${work}/mixed/mixed.json" >"${work}/mixed.log" 2>&1 ||
    log "the mixed-class benchmark failed (see ${work}/mixed.log)"
fi

if ((messages)); then
  # Its own namespace, veth pair and subnet (10.199.82.0/30); it writes messages.json and
  # messages.md into this run's results directory.
  log "=== messages (bench/messages/run.sh)"
  mkdir -p "${work}/messages"
  timeout --kill-after=10 600 "${here}/messages/run.sh" --build "${axon_build}" --server-cpu "${server_cpu}" \
    --load-cpu "${load_cpu}" --out "${work}/messages/messages.json" >"${work}/messages.log" 2>&1 ||
    log "the messages benchmark failed (see ${work}/messages.log)"
fi
if ((overhead)); then
  # Its own namespace, veth pair and subnet (10.199.83.0/30); overhead.json and overhead.md.
  log "=== telemetry overhead (bench/overhead/run.sh)"
  mkdir -p "${work}/overhead"
  timeout --kill-after=10 600 "${here}/overhead/run.sh" --build "${axon_build}" --server-cpu "${server_cpu}" \
    --load-cpu "${load_cpu}" --out "${work}/overhead/overhead.json" >"${work}/overhead.log" 2>&1 ||
    log "the telemetry overhead benchmark failed (see ${work}/overhead.log)"
fi

# --- raw results -----------------------------------------------------------------------------
# Per cpu over the whole run: the share of time the host's hypervisor took (steal) and the share
# other tasks (user + nice + system + irq, whoever ran them) used. Both explain noise.
cpu_shares="$( (echo "${cpustat_start}"; echo "--"; grep '^cpu[0-9]' /proc/stat) | awk '
  $1 == "--" { second = 1; next }
  { total = 0; for (i = 2; i <= 9; i++) total += $i; busy = total - $5 - $6
    if (!second) { t0[$1] = total; b0[$1] = busy; s0[$1] = $9; next }
    dt = total - t0[$1]; if (dt <= 0) dt = 1
    printf "%s\"%s\": {\"busy\": %.3f, \"steal\": %.3f}", sep, $1, (busy - b0[$1]) / dt, ($9 - s0[$1]) / dt; sep = ", " }
  BEGIN { printf "{" } END { printf "}" }')"
ts="$(date -u +%Y%m%dT%H%M%SZ)"
[[ -n "${out}" ]] || out="${repo}/bench/results/${ts}"
mkdir -p "${out}"
{
  for tag in ${ordered} $( [[ -f "${work}/nats_long-sweep-00.json" ]] && echo nats_long ); do
    if [[ -n "${skipped[${tag}]:-}" ]]; then
      jq -n --arg p "${tag}" --arg w "${skipped[${tag}]}" '{peer: $p, skipped: $w}'
      continue
    fi
    fixed="{}"
    for payload in ${payloads}; do
      f="${work}/${tag}-fixed-${payload}.json"
      [[ -s "${f}" ]] && fixed="$(jq -c --arg k "${payload}" --slurpfile v "${f}" '. + {($k): $v[0]}' <<<"${fixed}")"
    done
    jq -n --arg p "${tag}" --slurpfile sweep <(cat "${work}/${tag}"-sweep-*.json 2>/dev/null) --argjson fixed "${fixed}" \
      --arg age "$(cat "${work}/${tag}.age" 2>/dev/null || echo "")" \
      '{peer: $p, sweep: $sweep, fixed: $fixed} + (if $age != "" then {server_age_s: ($age | tonumber)} else {} end)'
  done
} | jq -s --arg ts "${ts}" --arg kernel "$(uname -r)" --argjson ncpu "${ncpu}" \
  --arg cpu_model "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
  --arg load_start "${loadavg_start}" --arg load_end "$(cat /proc/loadavg)" \
  --argjson server_cpu "${server_cpu}" --argjson load_cpu "${load_cpu}" --argjson workers "${workers}" \
  --arg load_sched "${load_prefix[*]}" --arg rx "${rx_where}" --argjson short "${short}" --arg spin "${worker_spin_max}" \
  --argjson fixed_rate "${fixed_rate:-0}" --argjson step_s "${step_s}" --argjson latency_s "${latency_s}" \
  --argjson max_lag "${max_lag_us}" --argjson retries "${retries}" --argjson max_steal "${max_steal}" --argjson wall "$(($(date +%s) - start_epoch))" \
  --arg commit "$(git -C "${repo}" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --slurpfile xdp "${work}/xdp_drop.json" --slurpfile ring "${work}/ring.json" --argjson shares "${cpu_shares}" \
  '{schema: 1, suite: "axon bench/run.sh", timestamp: $ts, commit: $commit, mode: (if $short == 1 then "short" else "full" end),
    machine: {kernel: $kernel, cpus: $ncpu, cpu_model: $cpu_model, loadavg_start: $load_start, loadavg_end: $load_end,
              cpu_shares: $shares},
    layout: {server_cpu: $server_cpu, load_cpu: $load_cpu, workers: $workers, load_sched: $load_sched,
             worker_spin_max: (if $spin == "" then "SDK default" else ($spin | tonumber) end),
             peer_sched: "nice -10", receive_path: $rx},
    config: {fixed_rate: $fixed_rate, step_s: $step_s, latency_s: $latency_s, max_lag_us: $max_lag, retries: $retries,
             max_steal: $max_steal},
    wall_s: $wall,
    peers: (map({(.peer): .}) | add), xdp_drop: $xdp[0], ring: $ring[0]}' >"${out}/raw.json"
if ((keep)); then cp -r "${work}" "${out}/work" 2>/dev/null || true; fi
if [[ -s "${work}/mixed/mixed.json" ]]; then
  cp "${work}/mixed/mixed.json" "${work}/mixed/mixed.md" "${out}/" 2>/dev/null || true
  log "mixed classes: ${out}/mixed.json, ${out}/mixed.md"
fi
if [[ -s "${work}/messages/messages.json" ]]; then
  cp "${work}/messages/messages.json" "${work}/messages/messages.md" "${out}/" 2>/dev/null || true
  log "messages: ${out}/messages.json, ${out}/messages.md"
fi
if [[ -s "${work}/overhead/overhead.json" ]]; then
  cp "${work}/overhead/overhead.json" "${work}/overhead/overhead.md" "${out}/" 2>/dev/null || true
  log "telemetry overhead: ${out}/overhead.json, ${out}/overhead.md"
fi
log "raw results: ${out}/raw.json ($(($(date +%s) - start_epoch)) s)"
python3 "${here}/report.py" "${out}" || die "report.py failed on ${out}/raw.json"
log "summary: ${out}/summary.md"
