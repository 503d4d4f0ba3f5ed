#!/usr/bin/env bash
# bench/e2e/run.sh: axon against the traditional baseline, side by side in one run, on one veth
# pair this script creates, with the same echo work and the same core budget for each peer.
#
#   sudo bench/e2e/run.sh [--build DIR] [--peers "baseline xdp uring dpdk"] [--quick] [...]   (--help)
#
# Peers: the epoll/recvmmsg baseline, and axon-dataplane once per backend (xdp: XDP + AF_XDP
# copy mode on veth; uring: io_uring UDP sockets; dpdk: DPDK with a net_af_xdp vdev), one row
# each in the same run.
#
# What it measures, per peer:
#   1. an offered-load sweep (open loop, Poisson) up to saturation: throughput at saturation is
#      the highest rate of RESPONSE replies received within the timeout;
#   2. latency at 25/50/75% of the BASELINE's saturation rate (the same absolute rates for every
#      peer, so the table compares like with like);
# and the XDP drop rate: malformed AXP frames sent at full speed from an AF_PACKET socket,
# dropped by a bare XDP_DROP program and by axon's XDP front door, on the same veth.
#
# Layout (defaults; 2 cores): the peer under test - front end AND its workers - runs on
# --server-cpu (1) at nice -10; axon-loadgen runs single-threaded on --load-cpu (0) inside the
# namespace at SCHED_FIFO 1. veth has no interrupts: by default a frame's receive work runs in
# softirq on the CPU that sent it, which would put the peer's kernel receive path on the load
# core. So each veth end receives in a threaded NAPI kthread pinned to its own side's cpu
# (--rx-napi). The same holds for every peer, and the JSON records the layout.
#
# Network rule: traffic only ever goes over the veth pair created here, with addresses of
# 10.199.78.0/30 on its two ends; nothing is routed anywhere else. Everything this script
# creates (namespace, veth, XDP program, processes) is removed on exit, whatever the exit path.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"

# --- options ---------------------------------------------------------------------------------
build=""
axon_build=""
peers="baseline xdp uring dpdk"
server_cpu=1
load_cpu=0
workers=1
payload=64
port=7400
step_s=3
latency_s=5
warmup_s=1
timeout_ms=500
rates="10000 20000 30000 40000 50000 60000 80000 100000 125000 150000 200000 250000 300000 400000 500000 600000 800000"
xdp_s=5
xdp_napi=threaded
rx_napi=threaded
skip_xdp=0
out=""
keep=0
nice_level=-10
load_rt=1

usage() {
  # The header comment of this file, up to the first line that is not a comment.
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  cat <<EOF

Options:
  --build DIR        build tree with bench/loadgen/axon-loadgen etc. (default: newest under build/)
  --axon-build DIR   build tree with dataplane/axon-dataplane and examples/echo_worker
                     (default: the --build tree)
  --peers "LIST"     peers to run, from: baseline xdp uring dpdk (axon = xdp)
                     (default: "${peers}")
  --server-cpu N     CPU of the peer under test, front end and workers (default: ${server_cpu})
  --load-cpu N       CPU of axon-loadgen and axon-pktgen         (default: ${load_cpu})
  --workers N        echo worker processes per peer              (default: ${workers})
  --payload BYTES    request payload                             (default: ${payload})
  --rates "LIST"     sweep rates in req/s, ascending              (default: ${rates})
  --step-s S         seconds per sweep step                       (default: ${step_s})
  --latency-s S      seconds per latency point                    (default: ${latency_s})
  --xdp-s S          seconds per XDP drop-rate measurement        (default: ${xdp_s})
  --rx-napi MODE     "threaded" (default): each veth end receives in a NAPI kthread pinned to
                     its own side's cpu at SCHED_FIFO 2 (GRO on, which veth needs for NAPI), so
                     the peer's kernel receive path runs on the peer's core and the load's on the
                     load core; "softirq": the veth default, receive work on the sending cpu
  --xdp-napi MODE    where the XDP programs run in the drop-rate test: "threaded" moves the
                     veth's NAPI to a kthread on --server-cpu (the appliance's core), "softirq"
                     leaves it on the sender's core                (default: ${xdp_napi})
  --skip-xdp         skip the XDP drop-rate comparison
  --quick            short steps and a short sweep (a smoke run, not a measurement)
  --out FILE         JSON results (default: bench/results/e2e-<timestamp>.json)
  --nice N           nice level of every benchmark process, peers and load alike, to shield
                     the measurement from other work on the machine (default: ${nice_level})
  --no-rt            run the load generators as ordinary tasks; by default they run at
                     SCHED_FIFO 1, so that a busy machine delays the peer under test and not
                     the load's send schedule (RT throttling still leaves others 5%)
  --keep             keep the work directory (per-step JSON, logs)
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --axon-build) axon_build="$2"; shift 2 ;;
    --peers) peers="$2"; shift 2 ;;
    --server-cpu) server_cpu="$2"; shift 2 ;;
    --load-cpu) load_cpu="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --payload) payload="$2"; shift 2 ;;
    --rates) rates="$2"; shift 2 ;;
    --step-s) step_s="$2"; shift 2 ;;
    --latency-s) latency_s="$2"; shift 2 ;;
    --xdp-s) xdp_s="$2"; shift 2 ;;
    --xdp-napi) xdp_napi="$2"; shift 2 ;;
    --rx-napi) rx_napi="$2"; shift 2 ;;
    --skip-xdp) skip_xdp=1; shift ;;
    --quick) step_s=1; latency_s=1; warmup_s=0.3; xdp_s=2; rates="20000 80000 320000"; shift ;;
    --out) out="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --nice) nice_level="$2"; shift 2 ;;
    --no-rt) load_rt=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- preflight -------------------------------------------------------------------------------
[[ ${EUID} -eq 0 ]] || die "needs root (network namespaces, veth, XDP)"
for tool in ip jq timeout taskset; do command -v "${tool}" >/dev/null || die "'${tool}' is missing"; done
if [[ -z "${build}" ]]; then
  # The most recently built tree that has the load generator (ls -t: find cannot sort by time).
  # shellcheck disable=SC2012
  build="$(ls -dt "${repo}"/build/*/ 2>/dev/null | while read -r d; do
    [[ -x "${d}/bench/loadgen/axon-loadgen" ]] && { echo "${d%/}"; break; }
  done || true)"
fi
[[ -n "${build}" && -d "${build}" ]] || die "no build tree found; build first or pass --build DIR"
loadgen="${build}/bench/loadgen/axon-loadgen"
pktgen="${build}/bench/loadgen/axon-pktgen"
baseline_bin="${build}/bench/baseline/axon-baseline-server"
axonctl="${build}/client/axonctl"
dataplane_bin="${axon_build:-${build}}/dataplane/axon-dataplane"
echo_worker_bin="${axon_build:-${build}}/examples/echo_worker"
dataplane_stats_bin="${axon_build:-${build}}/dataplane/axon-dataplane-stats"
for b in "${loadgen}" "${axonctl}"; do [[ -x "${b}" ]] || die "missing ${b}"; done
ncpu="$(nproc)"
((server_cpu < ncpu && load_cpu < ncpu)) || die "--server-cpu/--load-cpu must be below ${ncpu}"

# How the load generators are scheduled (see --no-rt).
if ((load_rt)) && command -v chrt >/dev/null; then
  load_sched=(chrt -f 1)
else
  load_rt=0
  load_sched=(nice -n "${nice_level}")
fi

# --- resources this script owns, and their cleanup ----------------------------------------------
ns="axon-e2e-$$"
# Interface names are at most 15 characters; the pid keeps concurrent runs apart.
vr="axr$$"          # root-namespace end: the peer under test listens here
vn="axn$$"          # namespace end: the load comes from here
addr_r="10.199.78.1"
addr_n="10.199.78.2"
work="$(mktemp -d /tmp/axon-e2e.XXXXXX)"
declare -a pids=()

cleanup() {
  local status=$?
  set +e
  for pid in "${pids[@]}"; do
    kill -TERM "${pid}" 2>/dev/null
  done
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
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a peer's command in the background at the peers' nice level, remembered for cleanup; its
# pid is in $last_pid (nice execs the command, so the pid is the command's own). Peers stay
# ordinary tasks: at SCHED_FIFO a busy-polling front end would starve workers on its core, and
# RT throttling (shared across cpus with the FIFO load) stalls FIFO peers for tens of ms.
spawn() {
  nice -n "${nice_level}" "$@" &
  last_pid=$!
  pids+=("${last_pid}")
}

# Stops one process this script started (SIGTERM, then SIGKILL after 5 s).
stop_pid() {
  local pid="$1"
  kill -TERM "${pid}" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "${pid}" 2>/dev/null || true
  wait "${pid}" 2>/dev/null || true
}

setup_net() {
  if ip -4 addr show | grep -q "inet 10\.199\.78\."; then
    die "10.199.78.0/30 is already in use on this host (another e2e run or quickstart?)"
  fi
  ip netns add "${ns}"
  ip link add "${vr}" type veth peer name "${vn}" netns "${ns}"
  ip addr add "${addr_r}/30" dev "${vr}"
  ip link set "${vr}" up
  ip -n "${ns}" addr add "${addr_n}/30" dev "${vn}"
  ip -n "${ns}" link set "${vn}" up
  ip -n "${ns}" link set lo up
  # Full checksums in every frame: a socket's CHECKSUM_PARTIAL would reach AF_XDP unfinished.
  # Applied for every peer alike, so the baseline pays the same software checksum.
  if command -v ethtool >/dev/null; then ip netns exec "${ns}" ethtool -K "${vn}" tx off >/dev/null 2>&1 || true; fi
  for _ in $(seq 50); do ip netns exec "${ns}" ping -c1 -W1 "${addr_r}" >/dev/null 2>&1 && break; sleep 0.1; done
  log "veth ${vr} (${addr_r}) <-> ${ns}:${vn} (${addr_n})"
}

# Puts the receive work of veth end $1 (in namespace $3, or the root one) into a NAPI kthread
# pinned to cpu $2 at SCHED_FIFO 2: above the load generator's FIFO 1, so the load never starves
# its own receive path, and shielded from other work on the machine.
pin_napi() {
  local dev="$1" cpu="$2" netns="${3:-}" pid n=0
  local -a in_ns=()
  [[ -n "${netns}" ]] && in_ns=(ip netns exec "${netns}")
  "${in_ns[@]}" ethtool -K "${dev}" gro on >/dev/null 2>&1 || true
  "${in_ns[@]}" sh -c "echo 1 >/sys/class/net/${dev}/threaded" 2>/dev/null || return 1
  # Kernel thread names are cut at 15 characters, so match the prefix only.
  for pid in $(pgrep "^napi/${dev}"); do
    taskset -pc "${cpu}" "${pid}" >/dev/null && n=$((n + 1))
    chrt -f -p 2 "${pid}" >/dev/null 2>&1 || true
  done
  ((n > 0))
}

# Applies --rx-napi to both veth ends; run again after a peer starts, since attaching XDP may
# recreate the NAPI instances. Sets $rx_where.
place_rx() {
  rx_where="softirq on the sending cpu"
  [[ "${rx_napi}" == threaded ]] || return 0
  if pin_napi "${vr}" "${server_cpu}" && pin_napi "${vn}" "${load_cpu}" "${ns}"; then
    rx_where="threaded NAPI: ${vr} on cpu ${server_cpu}, ${vn} on cpu ${load_cpu}, SCHED_FIFO 2"
  else
    log "threaded NAPI unavailable on the veth; receive work stays in softirq on the sending cpu"
  fi
}

# Sends AXP requests from the namespace until one RESPONSE comes back (or 15 s pass); on failure
# the reason is in $why.
wait_ready() {
  local name="$1" pid="$2"
  for _ in $(seq 150); do
    if ! kill -0 "${pid}" 2>/dev/null; then
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
# Each start_<peer> starts the peer on ${vr}, port ${port}, with its front end and its workers on
# ${server_cpu}, echo work, tenant 1 and agents 1-64 known; it adds the pids to stop to $peer_pids.
# They run in this shell (not in $(...)), so that cleanup knows every pid; a peer that cannot run
# returns non-zero with the reason in $why.

start_baseline() {
  [[ -x "${baseline_bin}" ]] || { why="axon-baseline-server not built"; return 1; }
  spawn "${baseline_bin}" --bind "${addr_r}" --port "${port}" --workers "${workers}" --cpu "${server_cpu}" \
    --tenants 1 --agents 1-64 --duration 3600 >"${work}/baseline.log" 2>&1
  peer_pids="${last_pid}"
  wait_ready baseline "${last_pid}"
}

# ============================ LEAD: confirm this function ====================================
# start_axon IFACE BACKEND: writes the data plane's TOML config for IFACE with [dataplane] backend
# = BACKEND ("xdp", "uring", "dpdk") and starts axon-dataplane and its echo workers. The
# layout mirrors the baseline: the poll-mode lcore and the workers get ${server_cpu}; tenant 1, agents 1-64 served by ${workers} worker(s); no allowlist or rate
# limit (the baseline has none), so the comparison measures the data path, not the policy.
# Returns non-zero with the reason in $why when axon cannot run here (the peer is skipped).
start_axon() {
  local iface="$1" backend="$2"
  [[ -x "${dataplane_bin}" ]] || { why="axon-dataplane not built (${dataplane_bin})"; return 1; }
  [[ -x "${echo_worker_bin}" ]] || { why="echo_worker not built (${echo_worker_bin})"; return 1; }
  local run_dir="${work}/axon-run"
  mkdir -p "${run_dir}"
  local w agents_toml="" workers_toml="" worker_list=""
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
name = "e2e"

${workers_toml}${agents_toml}
TOML
  spawn "${dataplane_bin}" --config "${run_dir}/dataplane.toml" >"${work}/axon.log" 2>&1
  peer_pids="${last_pid}"
  local dp_pid="${last_pid}"
  # The handoff sockets appear once the data plane is up; then the workers connect.
  for _ in $(seq 100); do
    [[ -S "${run_dir}/workers/echo-0.sock" ]] && break
    kill -0 "${dp_pid}" 2>/dev/null || { why="axon-dataplane exited during start-up (see ${work}/axon.log)"; return 1; }
    sleep 0.1
  done
  for ((w = 0; w < workers; w++)); do
    AXON_WORKER_SOCKET="${run_dir}/workers/echo-${w}.sock" spawn taskset -c "${server_cpu}" "${echo_worker_bin}" \
      >>"${work}/axon-workers.log" 2>&1
    peer_pids+=" ${last_pid}"
  done
  wait_ready axon "${dp_pid}"
}
# ===========================================================================================

# One peer per backend. backend_toml: extra TOML sections for that backend's config.
start_xdp() { backend_toml="" start_axon "$1" xdp; }
start_uring() { backend_toml="" start_axon "$1" uring; }
# The DPDK backend's row: DPDK drives $1 through a net_af_xdp vdev (AF_XDP under DPDK, with the
# PMD's own XDP program sending every frame of the queue to DPDK; axon's program is not loaded).
# The kernel behind $1 then never sees ARP, so the namespace gets a static neighbour entry.
# dpdk_vdev_args (environment) is appended to the vdev, e.g. ",busy_budget=0".
start_dpdk() {
  local mac
  mac="$(cat "/sys/class/net/$1/address")"
  ip -n "${ns}" neigh replace "${addr_r}" lladdr "${mac}" dev "${vn}" nud permanent
  backend_toml=$'[dpdk]\nvdevs = ["net_af_xdp0,iface='"$1"${dpdk_vdev_args:-}$'"]\nfile_prefix = "axon-e2e-'"$$"$'"\n' start_axon "$1" dpdk
}

stop_peer() {
  local pid
  for pid in ${peer_pids}; do stop_pid "${pid}"; done
  peer_pids=""
  # A peer must not leave an XDP program behind; if it did, say so and remove it.
  if ip -j link show dev "${vr}" | jq -e '.[0].xdp != null' >/dev/null 2>&1; then
    log "warning: an XDP program was left attached to ${vr}; detaching it"
    ip link set dev "${vr}" xdp off
  fi
}

# One loadgen run from the namespace; writes $2 (JSON).
loadgen_run() {
  local rate="$1" json="$2" seconds="$3"
  local bound
  bound="$(awk -v d="${seconds}" -v w="${warmup_s}" -v t="${timeout_ms}" 'BEGIN { printf "%d", d + w + t / 1000 + 15 }')"
  ip netns exec "${ns}" "${load_sched[@]}" timeout --kill-after=5 "${bound}" "${loadgen}" --target "${addr_r}:${port}" --rate "${rate}" \
    --duration "${seconds}" --warmup "${warmup_s}" --payload "${payload}" --tenant 1 --agent 1-64 --sessions 256 \
    --cpu-send "${load_cpu}" --cpu-recv "${load_cpu}" --timeout-ms "${timeout_ms}" --json "${json}" \
    >>"${work}/loadgen.log" 2>&1 || { log "axon-loadgen failed at ${rate}/s (see ${work}/loadgen.log)"; return 1; }
}

# The data plane's own counters (axon peers only): what it answered and what was lost below
# its engine, so that a step's lost replies can be placed on one side or the other.
dataplane_counters() {
  [[ "$1" != baseline && -x "${dataplane_stats_bin}" ]] || { echo '{}'; return; }
  "${dataplane_stats_bin}" --run-dir "${work}/axon-run" --json 2>/dev/null |
    jq -c '{rx_frames, responses, busy, tx_dropped, port, device}' 2>/dev/null || echo '{}'
}

# Sweeps the offered load until the peer saturates; records the steps in ${work}/<peer>-sweep-*.json.
# For axon peers each step also records the data plane's counter deltas ("dataplane").
sweep() {
  local peer="$1" rate achieved bad json i=0 before after below
  for rate in ${rates}; do
    json="${work}/${peer}-sweep-$(printf '%02d' ${i}).json"
    i=$((i + 1))
    before="$(dataplane_counters "${peer}")"
    loadgen_run "${rate}" "${json}" "${step_s}" || break
    after="$(dataplane_counters "${peer}")"
    jq --argjson b "${before}" --argjson a "${after}" '
      def delta(a; b): if (a | type) == "object" then (a | with_entries(.value = (.value - (b[.key] // 0)))) else a - (b // 0) end;
      . + (if ($a | length) > 0 then {dataplane: ($a | with_entries(.value = delta(.value; $b[.key])))} else {} end)' \
      "${json}" >"${json}.tmp" && mv "${json}.tmp" "${json}"
    read -r achieved bad < <(jq -r '[.achieved_rps, (.lost + .busy + .errors) / ([.sent, 1] | max)] | @tsv' "${json}")
    below="$(jq -r 'if .dataplane then ", data plane lost below the engine \(.dataplane.tx_dropped + ([.dataplane.port[], .dataplane.device[]] | add)), answered \(.dataplane.responses + .dataplane.busy)" else "" end' "${json}")"
    log "${peer}: offered ${rate}/s -> achieved $(printf '%.0f' "${achieved}")/s, p99 $(jq -r '.latency_us.p99' "${json}") us, not ok $(awk -v b="${bad}" 'BEGIN { printf "%.1f%%", b * 100 }')${below}"
    # Saturated: below 90% of the offered rate served, or more than 5% of requests not served.
    if awk -v a="${achieved}" -v r="${rate}" -v b="${bad}" 'BEGIN { exit !(a < 0.9 * r || b > 0.05) }'; then
      break
    fi
  done
}

saturation_of() {
  jq -s '[.[].achieved_rps] | max // 0' "${work}/$1"-sweep-*.json 2>/dev/null || echo 0
}

latency_points() {
  local peer="$1" base_sat="$2" pct rate
  for pct in 25 50 75; do
    rate="$(awk -v s="${base_sat}" -v p="${pct}" 'BEGIN { printf "%d", s * p / 100 }')"
    ((rate > 0)) || continue
    loadgen_run "${rate}" "${work}/${peer}-lat-${pct}.json" "${latency_s}" || continue
    log "${peer}: ${pct}% of baseline saturation (${rate}/s): p50 $(jq -r .latency_us.p50 "${work}/${peer}-lat-${pct}.json") us, p99 $(jq -r .latency_us.p99 "${work}/${peer}-lat-${pct}.json") us"
  done
}

# --- XDP drop rate ------------------------------------------------------------------------------
# Sum of the per-CPU packet counters of one map, over the given keys (a jq array), or all keys.
map_packets() {
  local map_id="$1" keys="$2"
  bpftool -j map dump id "${map_id}" | jq --argjson keys "${keys}" '
    [ .[] | (.formatted // .) as $e
      | select(($keys | length) == 0 or ($keys | index($e.key)) != null)
      | $e.values[] | .value | if type == "object" then .packets else . end ]
    | add // 0'
}

# The id of the map called $1 used by the XDP program attached to ${vr}.
xdp_map_id() {
  local name="$1" prog_id
  prog_id="$(ip -j link show dev "${vr}" | jq -r '.[0].xdp.prog.id // empty')"
  [[ -n "${prog_id}" ]] || return 1
  local id
  for id in $(bpftool -j prog show id "${prog_id}" | jq -r '.map_ids[]?'); do
    if [[ "$(bpftool -j map show id "${id}" | jq -r .name)" == "${name}" ]]; then echo "${id}"; return 0; fi
  done
  return 1
}

# Moves ${vr}'s NAPI (where its XDP program runs) to a kthread pinned to the server cpu, so the
# program under test does not share the sender's core. Only possible once XDP is attached.
# Sets $napi_where to what was achieved.
napi_placement() {
  napi_where="softirq on the sender's cpu ${load_cpu}"
  [[ "${xdp_napi}" == threaded ]] || return 0
  if ! echo 1 >"/sys/class/net/${vr}/threaded" 2>/dev/null; then
    log "xdp: threaded NAPI unavailable on ${vr}; XDP runs in softirq on the sender's cpu"
    return 0
  fi
  local pid n=0
  # Kernel thread names are cut at 15 characters, so match the prefix only.
  for pid in $(pgrep "^napi/${vr}"); do
    taskset -pc "${server_cpu}" "${pid}" >/dev/null && n=$((n + 1))
    chrt -f -p 2 "${pid}" >/dev/null 2>&1 || true
  done
  ((n > 0)) && napi_where="threaded NAPI pinned to cpu ${server_cpu}"
  return 0
}

# Blasts malformed frames for ${xdp_s} s + 2 and samples the drop counter over the middle ${xdp_s} s.
# Sets $drops (per second) and $pps (what the sender achieved).
measure_drops() {
  local map_id="$1" keys="$2" tag="$3"
  local mac
  mac="$(cat "/sys/class/net/${vr}/address")"
  ip netns exec "${ns}" "${load_sched[@]}" timeout --kill-after=5 $((xdp_s + 10)) "${pktgen}" --dev "${vn}" --dst-mac "${mac}" \
    --src-ip "${addr_n}" --dst-ip "${addr_r}" --dport "${port}" --kind mix --duration $((xdp_s + 2)) \
    --cpu "${load_cpu}" --json "${work}/pktgen-${tag}.json" >>"${work}/pktgen.log" 2>&1 &
  local gen=$!
  pids+=("${gen}")
  sleep 1
  local c0 t0 c1 t1
  c0="$(map_packets "${map_id}" "${keys}")"; t0="$(date +%s.%N)"
  sleep "${xdp_s}"
  c1="$(map_packets "${map_id}" "${keys}")"; t1="$(date +%s.%N)"
  wait "${gen}" || true
  drops="$(awk -v c0="${c0}" -v c1="${c1}" -v t0="${t0}" -v t1="${t1}" 'BEGIN { printf "%.0f", (c1 - c0) / (t1 - t0) }')"
  pps="$(jq -r '.pps | floor' "${work}/pktgen-${tag}.json" 2>/dev/null || echo 0)"
}

xdp_compare() {
  local result="${work}/xdp.json"
  echo '{}' >"${result}"
  command -v bpftool >/dev/null || { log "xdp: bpftool missing; skipped"; jq '.skipped = "bpftool missing"' "${result}" >"${result}.t" && mv "${result}.t" "${result}"; return; }
  [[ -x "${pktgen}" ]] || { log "xdp: axon-pktgen not built; skipped"; return; }
  command -v clang >/dev/null || { log "xdp: clang missing; skipped"; return; }

  # The bare XDP_DROP reference, compiled here so it needs nothing from the build tree.
  local arch_inc
  arch_inc="/usr/include/$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)"
  clang -O2 -g -target bpf -Wall -Werror -I"${arch_inc}" -c "${here}/xdp_drop.bpf.c" -o "${work}/xdp_drop.bpf.o" ||
    die "cannot compile xdp_drop.bpf.c"
  ip -force link set dev "${vr}" xdpdrv obj "${work}/xdp_drop.bpf.o" sec xdp || die "cannot attach XDP_DROP to ${vr}"
  local map
  map="$(xdp_map_id e2e_drop_count)" || die "cannot find the XDP_DROP counter map"
  napi_placement
  measure_drops "${map}" '[]' bare
  ip link set dev "${vr}" xdp off
  echo 0 >"/sys/class/net/${vr}/threaded" 2>/dev/null || true
  log "xdp: bare XDP_DROP dropped ${drops}/s (sender ${pps} pps; ${napi_where})"
  jq --argjson d "${drops}" --argjson p "${pps}" --arg n "${napi_where}" \
    '.bare_xdp_drop = {drops_per_s: $d, sender_pps: $p, napi: $n}' "${result}" >"${result}.t" && mv "${result}.t" "${result}"

  if [[ " ${peers} " != *" xdp "* ]]; then return; fi
  if ! start_xdp "${vr}"; then
    log "xdp: axon skipped: ${why}"
    stop_peer
    jq --arg w "${why}" '.axon = {skipped: $w}' "${result}" >"${result}.t" && mv "${result}.t" "${result}"
    return
  fi
  # Every drop reason of enum axon_reason: all keys except 0 (ok) and 1 (pass_not_axp).
  if map="$(xdp_map_id axon_counters)"; then
    napi_placement
    measure_drops "${map}" "$(seq 2 31 | jq -s -c .)" axon
    log "xdp: axon front door dropped ${drops}/s (sender ${pps} pps; ${napi_where})"
    jq --argjson d "${drops}" --argjson p "${pps}" --arg n "${napi_where}" '.axon = {drops_per_s: $d, sender_pps: $p, napi: $n}
      | .ratio = (if .bare_xdp_drop.drops_per_s > 0 then $d / .bare_xdp_drop.drops_per_s else null end)' \
      "${result}" >"${result}.t" && mv "${result}.t" "${result}"
  else
    log "xdp: axon's counter map not found on ${vr}"
  fi
  stop_peer
}

# --- run --------------------------------------------------------------------------------------
setup_net
log "layout: peer under test (front end + ${workers} worker(s)) on cpu ${server_cpu} at nice ${nice_level}; loadgen on cpu ${load_cpu} (single thread, ${load_sched[*]}); ${ncpu} cpus"

declare -A skipped=()
base_sat=0
peer_pids=""
why=""
drops=0
pps=0
napi_where=""
rx_where=""
peers="$(echo " ${peers} " | sed 's/ axon / xdp /g')"
for peer in ${peers}; do
  case "${peer}" in baseline | xdp | uring | dpdk) ;; *) die "unknown peer '${peer}'" ;; esac
done
# The baseline goes first: its saturation defines the latency points of every peer.
ordered="baseline $(echo " ${peers} " | sed 's/ baseline / /')"
[[ " ${peers} " == *" baseline "* ]] || die "the baseline peer is required (it defines the latency points)"
for peer in ${ordered}; do
  log "=== ${peer}"
  place_rx
  if ! "start_${peer}" "${vr}"; then
    log "${peer} skipped: ${why}"
    skipped[${peer}]="${why}"
    stop_peer
    continue
  fi
  place_rx
  log "${peer}: receive path: ${rx_where}"
  sweep "${peer}"
  sat="$(saturation_of "${peer}")"
  log "${peer}: saturation ${sat} req/s"
  [[ "${peer}" == baseline ]] && base_sat="${sat}"
  latency_points "${peer}" "${base_sat}"
  stop_peer
done

if ((skip_xdp)); then echo '{"skipped": "--skip-xdp"}' >"${work}/xdp.json"; else xdp_compare; fi

# --- report -----------------------------------------------------------------------------------
ts="$(date -u +%Y%m%dT%H%M%SZ)"
[[ -n "${out}" ]] || out="${repo}/bench/results/e2e-${ts}.json"
mkdir -p "$(dirname "${out}")"
{
  for peer in ${ordered}; do
    if [[ -n "${skipped[${peer}]:-}" ]]; then
      jq -n --arg p "${peer}" --arg w "${skipped[${peer}]}" '{peer: $p, skipped: $w}'
      continue
    fi
    jq -n --arg p "${peer}" \
      --slurpfile sweep <(cat "${work}/${peer}"-sweep-*.json 2>/dev/null) \
      --slurpfile l25 <(cat "${work}/${peer}-lat-25.json" 2>/dev/null) \
      --slurpfile l50 <(cat "${work}/${peer}-lat-50.json" 2>/dev/null) \
      --slurpfile l75 <(cat "${work}/${peer}-lat-75.json" 2>/dev/null) \
      '{peer: $p,
        saturation_rps: ([$sweep[].achieved_rps] | max // 0),
        sweep: $sweep,
        latency: {"25": $l25[0], "50": $l50[0], "75": $l75[0]}}'
  done
} | jq -s --arg ts "${ts}" --arg kernel "$(uname -r)" --argjson ncpu "${ncpu}" \
  --argjson server_cpu "${server_cpu}" --argjson load_cpu "${load_cpu}" --argjson workers "${workers}" \
  --argjson payload "${payload}" --argjson nice "${nice_level}" --argjson rt "${load_rt}" --arg rx "${rx_where}" --slurpfile xdp "${work}/xdp.json" \
  '{schema: 1, timestamp: $ts, kernel: $kernel, cpus: $ncpu,
    layout: {server_cpu: $server_cpu, load_cpu: $load_cpu, workers: $workers, payload_bytes: $payload, nice: $nice,
             load_sched: (if $rt == 1 then "SCHED_FIFO 1" else "nice \($nice)" end), receive_path: $rx,
             loadgen: "single thread, open loop, Poisson"},
    peers: (map({(.peer): .}) | add), xdp: $xdp[0]}' >"${out}"
log "results: ${out}"

# Markdown on stdout.
jq -r '
  def f(x): if x == null then "-" else (x | floor | tostring) end;
  def us(x): if x == null then "-" else ((x * 10 | round) / 10 | tostring) end;
  "| peer | saturation req/s | p50/p99 µs @25% | p50/p99 µs @50% | p50/p99 µs @75% |",
  "|---|---:|---:|---:|---:|",
  (.peers | to_entries[] | .value as $v |
    if $v.skipped then "| \(.key) | skipped: \($v.skipped) | | | |"
    else "| \(.key) | \(f($v.saturation_rps)) | " +
      ([ "25", "50", "75" ] | map(. as $k | $v.latency[$k] as $l |
         if $l == null then "-" else "\(us($l.latency_us.p50)) / \(us($l.latency_us.p99)) (\(f($l.offered_rps))/s)" end)
       | join(" | ")) + " |"
    end),
  "",
  (if .xdp.bare_xdp_drop then
     "| XDP program | malformed drops/s | sender pps |\n|---|---:|---:|\n| bare XDP_DROP | \(f(.xdp.bare_xdp_drop.drops_per_s)) | \(f(.xdp.bare_xdp_drop.sender_pps)) |" +
     (if .xdp.axon.drops_per_s then "\n| axon front door | \(f(.xdp.axon.drops_per_s)) (\((.xdp.ratio * 1000 | round) / 10)% of bare) | \(f(.xdp.axon.sender_pps)) |"
      elif .xdp.axon.skipped then "\n| axon front door | skipped: \(.xdp.axon.skipped) | |" else "" end) +
     "\n\nXDP ran as: \(.xdp.bare_xdp_drop.napi)."
   else "XDP drop rate: \(.xdp.skipped // "not measured")" end),
  "",
  "Layout: peer under test on cpu \(.layout.server_cpu) (front end + \(.layout.workers) worker(s), nice \(.layout.nice)); loadgen on cpu \(.layout.load_cpu) (\(.layout.load_sched)); receive path: \(.layout.receive_path); kernel \(.kernel)."
' "${out}"
