#!/usr/bin/env bash
# bench/fleet/run.sh: the fleet benchmark of issue 18, client side, on one veth pair it creates:
#
#   throughput  aggregate RESPONSEs/s through FleetClient (axon-fleet-bench: --threads closed-loop
#               client threads, each its own FleetClient, random session keys) with one, two and
#               three appliances. The appliances are axon-dataplane processes (uring backend, one
#               lcore each, one echo worker each) on ports 7401.. of the same veth end, all on
#               --server-cpu: on a two-core machine they SHARE one core (and the clients the
#               other), so this shows what the client's spreading costs and that the fleet
#               keeps serving, not how a fleet of separate machines scales.
#   failover    three appliances under the same load; one is signalled by axon-fleet-bench
#               itself at --kill-after: SIGKILL (the process dies; the kernel answers its port
#               with ICMP port unreachable) and, in a second run, SIGSTOP (the process hangs and
#               answers nothing, as a dead host would). Reported: the time from the signal to
#               the first RESPONSE, from another member, for a session whose member was the
#               signalled one (the clients' view), and the requests that ended in an error.
#
#   sudo bench/fleet/run.sh [--build DIR] [--out FILE] [--threads N] [--duration S] ...  (--help)
#
# Traffic only crosses the veth pair created here (10.199.93.0/30, names "axfcb"); the
# namespace, veth and every process started are removed on any exit. Every load run is bounded
# by --duration (and `timeout`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
command_line="bench/fleet/run.sh $*"

build=""
out=""
threads=2
duration_s=3
sessions=1000
member_timeout_ms=300
kill_after_s=1.5
repeat=3
server_cpu=1
load_cpu=0
spread=0
peer=axon
keep=0

usage() {
  cat <<EOF
usage: sudo bench/fleet/run.sh [options]
  --build DIR            build tree (default: build/release; targets axon-dataplane echo_worker axon-fleet-bench)
  --out FILE             JSON results (default: bench/results/fleet-<time>.json); a .md table beside it
  --threads N            client threads, one FleetClient each (default ${threads})
  --duration S           seconds per load run (default ${duration_s})
  --sessions N           session keys 1..N (default ${sessions})
  --member-timeout-ms M  FleetOptions::member_timeout (default ${member_timeout_ms})
  --kill-after S         when, in the failover runs, the member is signalled (default ${kill_after_s})
  --repeat N             failover runs per signal (default ${repeat}): the reroute time depends on
                         whether a request to the victim was in flight when it died
  --server-cpu C         cpu of every data plane and worker (default ${server_cpu})
  --load-cpu C           cpu of the client threads (default ${load_cpu})
  --peer axon|baseline   the appliances: axon-dataplane (uring, poll mode: one lcore spins a cpu) or
                         axon-baseline-server (epoll: sleeps when idle), to see the client's own
                         failover without poll-mode threads competing for the cpus (default axon)
  --spread               appliance i on cpu (server-cpu + i) mod cpus instead of all on --server-cpu
  --keep                 keep the work directory
EOF
}

while (($#)); do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --duration) duration_s="$2"; shift 2 ;;
    --sessions) sessions="$2"; shift 2 ;;
    --member-timeout-ms) member_timeout_ms="$2"; shift 2 ;;
    --kill-after) kill_after_s="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --server-cpu) server_cpu="$2"; shift 2 ;;
    --load-cpu) load_cpu="$2"; shift 2 ;;
    --spread) spread=1; shift ;;
    --peer) peer="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

log() { printf '[fleet %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "needs root (network namespace, veth pair)"
[[ -e /work/helpers/QUIET ]] && die "/work/helpers/QUIET exists: someone is benchmarking; try later"
build="${build:-${repo}/build/release}"
[[ -d "${build}" ]] || die "no build tree at ${build}; cmake --preset release && cmake --build --preset release"
build="$(cd "${build}" && pwd)"
dataplane_bin="${build}/dataplane/axon-dataplane"
echo_worker_bin="${build}/examples/echo_worker"
fleet_bench="${build}/bench/axon-fleet-bench"
baseline_bin="${build}/bench/baseline/axon-baseline-server"
[[ "${peer}" == axon || "${peer}" == baseline ]] || die "--peer is axon or baseline"
[[ "${peer}" == axon || -x "${baseline_bin}" ]] || die "missing ${baseline_bin} (target axon-baseline-server)"
for b in "${dataplane_bin}" "${echo_worker_bin}" "${fleet_bench}"; do
  [[ -x "${b}" ]] || die "missing ${b}; build the release preset (targets axon-dataplane echo_worker axon-fleet-bench)"
done
command -v jq >/dev/null || die "jq is required"
ncpu="$(nproc)"
((server_cpu < ncpu && load_cpu < ncpu)) || die "--server-cpu and --load-cpu must be below ${ncpu}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="${out:-${repo}/bench/results/fleet-${stamp}.json}"
mkdir -p "$(dirname "${out}")"

ns="axfcb-$$"
vr="axfcbr$$"
vn="axfcbn$$"
addr_r="10.199.93.1"
addr_n="10.199.93.2"
work="$(mktemp -d /tmp/axfcb.XXXXXX)"
declare -a pids=()
declare -a dp_pids=()

cleanup() {
  local status=$?
  set +e
  trap '' INT TERM
  for pid in "${pids[@]}"; do kill -CONT "${pid}" 2>/dev/null; kill -TERM "${pid}" 2>/dev/null; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pid}" 2>/dev/null
    wait "${pid}" 2>/dev/null
  done
  ip link del "${vr}" 2>/dev/null
  ip netns del "${ns}" 2>/dev/null
  if ((keep)); then log "work directory kept: ${work}"; else rm -rf "${work}"; fi
  exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip -4 addr show | grep -q "inet 10\.199\.93\." && die "10.199.93.0/30 is already in use (another bench/fleet run?)"
ip netns add "${ns}"
ip link add "${vr}" type veth peer name "${vn}" netns "${ns}"
ip addr add "${addr_r}/30" dev "${vr}"
ip link set "${vr}" up
ip -n "${ns}" addr add "${addr_n}/30" dev "${vn}"
ip -n "${ns}" link set "${vn}" up
ip -n "${ns}" link set lo up
for _ in $(seq 50); do ip netns exec "${ns}" ping -c1 -W1 "${addr_r}" >/dev/null 2>&1 && break; sleep 0.1; done

# start_fleet N: N data planes (ports 7401..7400+N) with an echo worker each; fills dp_pids and
# members (the axon-fleet-bench --member arguments).
start_fleet() {
  local n="$1" i run_dir port cpu
  dp_pids=()
  members=()
  for ((i = 0; i < n; i++)); do
    port=$((7401 + i))
    cpu="${server_cpu}"
    ((spread)) && cpu=$(((server_cpu + i) % ncpu))
    run_dir="${work}/dp${i}"
    rm -rf "${run_dir}"
    mkdir -p "${run_dir}"
    members+=(--member "dp${i}=${addr_r}:${port}")
    if [[ "${peer}" == baseline ]]; then
      nice -n -10 "${baseline_bin}" --bind "${addr_r}" --port "${port}" --workers 1 --cpu "${cpu}" --tenants 1 \
        --agents 1-8 --duration 3600 >>"${work}/dp${i}.log" 2>&1 &
      dp_pids+=("$!")
      pids+=("$!")
      continue
    fi
    cat >"${work}/dp${i}.toml" <<TOML
[dataplane]
interface = "${vr}"
backend = "uring"
queues = [0]
cores = [${cpu}]
ports = [${port}]
run_dir = "${run_dir}"

[[tenants]]
id = 1
name = "fleet"

[[workers]]
name = "echo-0"

[[agents]]
id = 7
tenant = 1
name = "echo"
workers = ["echo-0"]
TOML
    nice -n -10 taskset -c "${cpu}" "${dataplane_bin}" --config "${work}/dp${i}.toml" >>"${work}/dp${i}.log" 2>&1 &
    dp_pids+=("$!")
    pids+=("$!")
    for _ in $(seq 100); do
      [[ -S "${run_dir}/workers/echo-0.sock" ]] && break
      kill -0 "${dp_pids[$i]}" 2>/dev/null || die "axon-dataplane ${i} exited during start-up: $(tail -n 2 "${work}/dp${i}.log" | tr '\n' ' ')"
      sleep 0.1
    done
    AXON_WORKER_SOCKET="${run_dir}/workers/echo-0.sock" nice -n -10 taskset -c "${cpu}" "${echo_worker_bin}" \
      >>"${work}/workers.log" 2>&1 &
    pids+=("$!")
  done
  # Until every member answers: a short run must see no errors.
  for _ in $(seq 30); do
    if ip netns exec "${ns}" timeout 20 "${fleet_bench}" "${members[@]}" --threads 1 --duration 0.3 --sessions 64 \
      >"${work}/probe.json" 2>>"${work}/load.log" && (($(jq -r '.responses' "${work}/probe.json") > 0)) &&
      (($(jq -r '.errors' "${work}/probe.json") == 0)); then
      return 0
    fi
    sleep 0.3
  done
  die "the fleet of ${n} answered no clean run within 15 s (logs in ${work})"
}

stop_fleet() {
  local pid
  for pid in "${pids[@]}"; do kill -CONT "${pid}" 2>/dev/null || true; kill -TERM "${pid}" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
  done
  pids=()
}

load() {  # load ARGS...: one axon-fleet-bench run in the namespace on --load-cpu; JSON on stdout
  ip netns exec "${ns}" nice -n -5 taskset -c "${load_cpu}" timeout --kill-after=5 "$((${duration_s%.*} + 30))" \
    "${fleet_bench}" "${members[@]}" --threads "${threads}" --duration "${duration_s}" --sessions "${sessions}" \
    --member-timeout-ms "${member_timeout_ms}" "$@" 2>>"${work}/load.log"
}

results="[]"
for n in 1 2 3; do
  log "throughput: ${n} appliance(s)"
  start_fleet "${n}"
  r="$(load)"
  results="$(jq -c --argjson r "${r}" --arg step "throughput" --argjson n "${n}" '. + [$r + {step: $step, appliances: $n}]' <<<"${results}")"
  stop_fleet
done
for sig in KILL STOP; do
  for ((k = 1; k <= repeat; k++)); do
    log "failover: SIG${sig} to appliance dp1 of 3 at ${kill_after_s} s (run ${k} of ${repeat})"
    start_fleet 3
    r="$(load --kill-pid "${dp_pids[1]}" --kill-member dp1 --kill-after "${kill_after_s}" --kill-signal "${sig}")"
    results="$(jq -c --argjson r "${r}" --arg step "failover" '. + [$r + {step: $step, appliances: 3}]' <<<"${results}")"
    stop_fleet 2>/dev/null
  done
done

jq -n --argjson steps "${results}" --arg cmd "${command_line}" --arg host "$(uname -n)" --arg kernel "$(uname -r)" \
  --argjson ncpu "${ncpu}" --arg server_cpu "${server_cpu}" --arg load_cpu "${load_cpu}" --arg stamp "${stamp}" --arg spread "${spread}" --arg peer "${peer}" \
  '{benchmark: "fleet", when: $stamp, command: $cmd, host: $host, kernel: $kernel, cpus: $ncpu,
    setup: {peer: $peer, backend: (if $peer == "axon" then "uring" else "epoll (axon-baseline-server)" end), lcores_per_appliance: 1, workers_per_appliance: 1, server_cpu: $server_cpu,
            load_cpu: $load_cpu, spread: ($spread == "1"),
            note: (if $spread == "1" then "appliance i on cpu (server_cpu + i) mod cpus, sharing them with each other and the clients" else "every appliance on the same cpu: they share it" end)},
    steps: $steps}' >"${out}"
md="${out%.json}.md"
{
  echo "| step | appliances | signal | client threads | RESPONSEs/s | errors | failovers | down before the signal | reroute ms |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|---:|"
  jq -r '.steps[] | "| \(.step) | \(.appliances) | \(.kill_signal // "-") | \(.threads) | \(.responses_per_s | floor) | \(.errors) | \(.failovers) | \(.members_down_before_kill // "-") | \(if .reroute_ms == null then "-" else (.reroute_ms * 100 | floor / 100 | tostring) end) |"' "${out}"
} >"${md}"
cat "${md}"
log "results: ${out} and ${md}"
