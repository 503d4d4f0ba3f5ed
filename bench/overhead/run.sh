#!/usr/bin/env bash
# bench/overhead/run.sh: what the per-stage latency telemetry costs (issue 15). The same build of
# axon over XDP (AF_XDP copy mode on a veth pair this script creates, one lcore, echo workers over
# shm) runs with `[telemetry] stage_latency = true` (hop stamps plus the per-stage histograms on
# every RESPONSE) and with `false` (neither the reply-dequeue nor the transmit stamp, nothing
# recorded), alternating A/B in one run (ABBA order: on off, off on, ...) so that drift of this
# shared VM falls on both sides alike. Per configuration and round:
#
#   saturation  achieved RESPONSE/s under an open-loop offered load above axon's saturation
#               (--overload-rate), as bench/run.sh --short measures it;
#   latency     p50/p99 from the intended send time at a fixed rate well below saturation.
#
# The report gives each side's median and the ratio off/on of the saturation throughput per round
# (its median, min and max: the spread says how much to trust it), and the same for p50/p99.
# The target is < 5% apart. JSON and Markdown land in bench/results/overhead-<UTC date>.{json,md}.
#
#   sudo bench/overhead/run.sh [--build DIR] [--rounds N] [--out FILE] [...]   (--help)
#
# Layout (as bench/run.sh): data plane and workers on --server-cpu at nice -10, the load generator
# (AF_XDP, one thread) on --load-cpu at nice -20, each veth end's receive work in a NAPI kthread
# pinned to its side's cpu. Traffic only crosses the veth pair created here (10.199.83.0/30);
# namespace, veth, XDP programs and every process started are removed on any exit. Every loop is
# bounded in count and time. Names start with "axov".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
command_line="bench/overhead/run.sh $*"

build=""
out=""
rounds=3
step_s=3
latency_s=3
warmup_s=0.5
overload_rate=200000
fixed_rate=20000
workers=1
worker_spin_max=64
server_cpu=1
load_cpu=0
port=7400
timeout_ms=500
keep=0

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  cat <<USAGE

Options:
  --build DIR          build tree (default: build/release)
  --out FILE           JSON result (default: bench/results/overhead-<UTC date>.json; Markdown next to it)
  --rounds N           A/B rounds, each runs both configurations (default: ${rounds}; 1 to 20)
  --step-s S           measured seconds of the saturation step (default: ${step_s})
  --latency-s S        measured seconds of the fixed-rate step (default: ${latency_s})
  --overload-rate R    offered load of the saturation step, above axon's saturation (default: ${overload_rate})
  --fixed-rate R       offered load of the latency step (default: ${fixed_rate})
  --workers N          echo workers (default: ${workers})
  --server-cpu N       cpu of the data plane and workers (default: ${server_cpu})
  --load-cpu N         cpu of the load generator (default: ${load_cpu})
  --keep               keep the work directory
USAGE
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --step-s) step_s="$2"; shift 2 ;;
    --latency-s) latency_s="$2"; shift 2 ;;
    --overload-rate) overload_rate="$2"; shift 2 ;;
    --fixed-rate) fixed_rate="$2"; shift 2 ;;
    --workers) workers="$2"; shift 2 ;;
    --server-cpu) server_cpu="$2"; shift 2 ;;
    --load-cpu) load_cpu="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "overhead: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

start_epoch="$(date +%s)"
log() { printf '[overhead %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ ${EUID} -eq 0 ]] || die "needs root (network namespace, veth, XDP, AF_XDP); run it with sudo"
for tool in ip jq timeout taskset python3 ethtool; do
  command -v "${tool}" >/dev/null || die "'${tool}' is missing (deploy/lib/common.sh installs it)"
done
[[ "${rounds}" =~ ^[0-9]+$ ]] && ((rounds >= 1 && rounds <= 20)) || die "--rounds must be 1 to 20"
[[ "${workers}" =~ ^[0-9]+$ ]] && ((workers >= 1 && workers <= 16)) || die "--workers must be 1 to 16"
build="${build:-${repo}/build/release}"
[[ -d "${build}" ]] || die "no build tree at ${build}; cmake --preset release && cmake --build --preset release"
build="$(cd "${build}" && pwd)"
loadgen="${build}/bench/loadgen/axon-loadgen"
dataplane_bin="${build}/dataplane/axon-dataplane"
stats_bin="${build}/dataplane/axon-dataplane-stats"
echo_worker_bin="${build}/examples/echo_worker"
for b in "${loadgen}" "${dataplane_bin}" "${stats_bin}" "${echo_worker_bin}"; do
  [[ -x "${b}" ]] || die "missing ${b}; build the release preset (targets axon-loadgen axon-dataplane axon-dataplane-stats echo_worker)"
done
ncpu="$(nproc)"
((server_cpu < ncpu && load_cpu < ncpu && server_cpu != load_cpu)) || die "--server-cpu and --load-cpu must be two different cpus below ${ncpu}"

# --- resources this script owns, and their cleanup ---------------------------------------------
ns="axov-$$"
vr="axovr$$"  # root-namespace end: the data plane
vn="axovn$$"  # namespace end: the load
addr_r="10.199.83.1"
addr_n="10.199.83.2"
work="$(mktemp -d /tmp/axov.XXXXXX)"
run_dir="${work}/axon-run"
declare -a pids=()
dp_pid=""
worker_pids=""
autogroup_nice=""

cleanup() {
  local status=$?
  set +e
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
    ip link del "${vr}" 2>/dev/null
  fi
  ip netns del "${ns}" 2>/dev/null
  if ((keep)); then log "work directory kept: ${work}"; else rm -rf "${work}"; fi
  exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# As bench/run.sh: autogroup scheduling would otherwise give a compiler in another session as much
# of a cpu as this whole benchmark, whatever the nice levels below.
if [[ -w "/proc/$$/autogroup" ]]; then
  autogroup_nice="$(sed -n 's/.* nice \(-\?[0-9]*\)$/\1/p' "/proc/$$/autogroup")"
  echo -20 >"/proc/$$/autogroup" 2>/dev/null || autogroup_nice=""
fi

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
  ip -4 addr show | grep -q "inet 10\.199\.83\." && die "10.199.83.0/30 is already in use (another bench/overhead run?)"
  ip netns add "${ns}"
  ip link add "${vr}" type veth peer name "${vn}" netns "${ns}"
  ip addr add "${addr_r}/30" dev "${vr}"
  ip link set "${vr}" up
  ip -n "${ns}" addr add "${addr_n}/30" dev "${vn}"
  ip -n "${ns}" link set "${vn}" up
  ip -n "${ns}" link set lo up
  for _ in $(seq 50); do ip netns exec "${ns}" ping -c1 -W1 "${addr_r}" >/dev/null 2>&1 && break; sleep 0.1; done
  vr_mac="$(cat "/sys/class/net/${vr}/address")"
  ip -n "${ns}" neigh replace "${addr_r}" lladdr "${vr_mac}" dev "${vn}" nud permanent
}

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
  fi
}

# write_config ON|OFF FILE: the one configuration, differing only in [telemetry] stage_latency.
write_config() {
  local telemetry="$1" file="$2" w list=""
  for ((w = 0; w < workers; w++)); do list+="${list:+, }\"echo-${w}\""; done
  {
    cat <<TOML
[dataplane]
interface = "${vr}"
backend = "xdp"
queues = [0]
cores = [${server_cpu}]
ports = [${port}]
run_dir = "${run_dir}"

[telemetry]
stage_latency = ${telemetry}

[[tenants]]
id = 1
name = "overhead"
prefixes = ["${addr_n}/32"]

TOML
    for ((w = 0; w < workers; w++)); do printf '[[workers]]\nname = "echo-%d"\n\n' "${w}"; done
    printf '[[agents]]\nid = 1\ntenant = 1\nname = "echo"\nworkers = [%s]\n' "${list}"
  } >"${file}"
  "${dataplane_bin}" --config "${file}" --check >/dev/null 2>&1 ||
    die "this build refuses ${file}: $("${dataplane_bin}" --config "${file}" --check 2>&1 | tail -n 1)"
}

stats_json() {
  "${stats_bin}" --run-dir "${run_dir}" --json 2>/dev/null || echo '{}'
}

start_axon() {
  local config="$1" w
  rm -rf "${run_dir}"
  mkdir -p "${run_dir}"
  spawn "${dataplane_bin}" --config "${config}" >>"${work}/dataplane.log" 2>&1
  dp_pid="${last_pid}"
  for _ in $(seq 100); do
    [[ -S "${run_dir}/workers/echo-$((workers - 1)).sock" ]] && break
    kill -0 "${dp_pid}" 2>/dev/null || die "axon-dataplane exited during start-up: $(tail -n 3 "${work}/dataplane.log" | tr '\n' ' ')"
    sleep 0.1
  done
  worker_pids=""
  for ((w = 0; w < workers; w++)); do
    AXON_WORKER_SOCKET="${run_dir}/workers/echo-${w}.sock" spawn "${echo_worker_bin}" \
      ${worker_spin_max:+--spin-max "${worker_spin_max}"} >>"${work}/workers.log" 2>&1
    worker_pids+=" ${last_pid}"
  done
  place_rx
  local probe="${work}/probe.json"
  for _ in $(seq 20); do
    ip netns exec "${ns}" timeout 20 "${loadgen}" --target "${addr_r}:${port}" --xdp-dev "${vn}" --dst-mac "${vr_mac}" \
      --rate 200 --duration 0.2 --warmup 0 --tenant 1 --agent 1 --timeout-ms 200 --json "${probe}" >>"${work}/load.log" 2>&1 || true
    [[ -s "${probe}" ]] && (($(jq -r .responses "${probe}") > 0)) && return 0
    sleep 0.2
  done
  die "the data plane answered no request within 10 s (see ${work}/dataplane.log)"
}

stop_axon() {
  local pid
  for pid in ${worker_pids} ${dp_pid}; do stop_pid "${pid}"; done
  worker_pids=""
  dp_pid=""
  ip link set dev "${vr}" xdp off 2>/dev/null || true
}

# load JSON ARGS...: one bounded loadgen run from the namespace on the load cpu.
load() {
  local json="$1"
  shift
  rm -f "${json}"
  ip netns exec "${ns}" nice -n -20 taskset -c "${load_cpu}" timeout --kill-after=5 120 "${loadgen}" \
    --target "${addr_r}:${port}" --xdp-dev "${vn}" --dst-mac "${vr_mac}" --cpu-send "${load_cpu}" \
    --cpu-recv "${load_cpu}" --payload 64 --tenant 1 --agent 1 --sessions 256 --timeout-ms "${timeout_ms}" \
    --warmup "${warmup_s}" --spin "$@" --json "${json}" >>"${work}/load.log" 2>&1 &
  local lp=$!
  pids+=("${lp}")
  wait "${lp}" || true
  [[ -s "${json}" ]]
}

# measure ON|OFF ROUND: both steps against a fresh data plane with that telemetry switch.
measure() {
  local telemetry="$1" round="$2" tag="${1}-${2}" enabled
  write_config "${telemetry}" "${work}/dataplane-${telemetry}.toml"
  start_axon "${work}/dataplane-${telemetry}.toml"
  enabled="$(stats_json | jq -r '.stage_latency.enabled | if . == null then "unknown" else tostring end')"  # (// would take false for missing)
  [[ "${enabled}" == "${telemetry}" ]] || die "stage_latency = ${telemetry} but axon-dataplane-stats says enabled: ${enabled}"
  load "${work}/sat-${tag}.json" --rate "${overload_rate}" --duration "${step_s}" --max-lag-us 1000 ||
    log "${tag}: the saturation step failed (see ${work}/load.log)"
  load "${work}/lat-${tag}.json" --rate "${fixed_rate}" --duration "${latency_s}" --max-lag-us 100 ||
    log "${tag}: the latency step failed (see ${work}/load.log)"
  stop_axon
  jq -n --arg t "${telemetry}" --argjson r "${round}" --slurpfile s "${work}/sat-${tag}.json" \
    --slurpfile l "${work}/lat-${tag}.json" \
    '{stage_latency: ($t == "true"), round: $r, saturation: $s[0], latency: $l[0]}' >"${work}/run-${tag}.json" 2>/dev/null ||
    jq -n --arg t "${telemetry}" --argjson r "${round}" '{stage_latency: ($t == "true"), round: $r, failed: true}' >"${work}/run-${tag}.json"
  log "stage_latency=${telemetry} (round ${round}): $(jq -r 'if .failed then "failed" else
    "saturation \(.saturation.achieved_rps | floor)/s of \(.saturation.offered_rps | floor) offered; at \(.latency.offered_rps | floor)/s p50 \(.latency.latency_us.p50) us, p99 \(.latency.latency_us.p99) us"
    + (if .saturation.load_behind then " | SATURATION STEP: LOAD BEHIND" else "" end)
    + (if .latency.load_behind then " | LATENCY STEP: LOAD BEHIND" elif .latency.stalled then " | latency step: host stall" else "" end) end' "${work}/run-${tag}.json")"
}

# --- run -------------------------------------------------------------------------------------------
loadavg_start="$(cat /proc/loadavg)"
setup_net
rx_where=""
log "veth ${vr} (${addr_r}) <-> ${ns}:${vn} (${addr_n}); data plane + ${workers} worker(s) on cpu ${server_cpu}, load on cpu ${load_cpu}; load average ${loadavg_start}"
log "${rounds} round(s), ABBA; saturation at ${overload_rate}/s offered for ${step_s} s, latency at ${fixed_rate}/s for ${latency_s} s"
for ((round = 1; round <= rounds; round++)); do
  if ((round % 2 == 1)); then order="true false"; else order="false true"; fi
  for telemetry in ${order}; do measure "${telemetry}" "${round}"; done
done

ts="$(date -u +%Y%m%dT%H%M%SZ)"
out="${out:-${repo}/bench/results/overhead-${ts}.json}"
mkdir -p "$(dirname "${out}")"
jq -s --arg ts "${ts}" --arg kernel "$(uname -r)" --argjson ncpu "${ncpu}" \
  --arg cpu_model "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
  --arg load_start "${loadavg_start}" --arg load_end "$(cat /proc/loadavg)" \
  --arg commit "$(git -C "${repo}" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --arg rx "${rx_where}" --arg cmd "${command_line}" --arg wall "$(($(date +%s) - start_epoch))" \
  --argjson cfg "$(jq -n --argjson r "${rounds}" --argjson s "${step_s}" --argjson l "${latency_s}" --argjson w "${warmup_s}" \
    --argjson o "${overload_rate}" --argjson f "${fixed_rate}" --argjson wk "${workers}" --argjson sc "${server_cpu}" \
    --argjson lc "${load_cpu}" '{rounds: $r, step_s: $s, latency_s: $l, warmup_s: $w, overload_rate: $o, fixed_rate: $f,
      workers: $wk, server_cpu: $sc, load_cpu: $lc, backend: "xdp"}')" \
  '{schema: 1, bench: "axon bench/overhead/run.sh", timestamp: $ts, commit: $commit, command: $cmd,
    machine: {kernel: $kernel, cpus: $ncpu, cpu_model: $cpu_model, loadavg_start: $load_start, loadavg_end: $load_end,
              receive_path: $rx},
    config: $cfg, wall_s: ($wall | tonumber), runs: .}' "${work}"/run-*.json >"${out}"
python3 "${here}/report.py" "${out}" "${out%.json}.md" || die "report.py failed on ${out}"
log "results: ${out}, ${out%.json}.md ($(($(date +%s) - start_epoch)) s)"
cat "${out%.json}.md"
