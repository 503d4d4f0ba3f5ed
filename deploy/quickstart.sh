#!/usr/bin/env bash
# axon quickstart: ./deploy/quickstart.sh [--duration S] [--rate RPS] [--shm-demo] [-- LOADGEN-ARGS...]
#
# Sets the host up (packages, hugepages, bpffs), builds the `release` preset, then runs the
# appliance's main job end to end on this machine:
#
#   1. a network namespace `axon-qs` with a veth pair: axqs0 (10.199.77.1, the appliance
#      side) <-> axqs1 (10.199.77.2, inside the namespace, the client side);
#   2. axon-dataplane on axqs0 (backend "auto": XDP + AF_XDP where XDP attaches, else the
#      io_uring socket backend) with a pool of worker slots and its control socket;
#   3. axon-controlplane with a self-signed TLS certificate and an admin token made for
#      this run: it registers the `echo` agent, keeps 2 echo workers warm (a uid of
#      their own each, no capabilities, in their own cgroups; the certificate key and the
#      admin token are 0600 in a 0700 directory) and pushes the routes;
#   4. one request with `axonctl send`, then axon-loadgen from the namespace: open-loop
#      Poisson load for --duration seconds (default 10) with 1% malformed packets mixed in,
#      so the XDP drop counters move;
#   5. a live line per second from the load generator (achieved req/s, p50/p99 round
#      trip, BUSY/ERROR) and from the data plane (its own rate, in-plane latency, drops by
#      reason), then a summary;
#   6. `axonctl status` and `axonctl workers` through the REST API (HTTPS, bearer token);
#   7. teardown: SIGTERM to the control plane (drains and stops its workers, removes its
#      cgroups), then to the data plane (drains, detaches XDP, exits 0), namespace and veth
#      deleted, and a check that no XDP program is left.
#
# Traffic stays inside the veth pair this script creates. Everything it starts is
# stopped by PID on exit, also on Ctrl-C or failure.
#
#   --shm-demo     run the shared-memory transport demo (no network) instead
#   --duration S   load duration in seconds (default 10, at most 600)
#   --rate RPS     offered load (default 100000)
# Environment: AXON_HUGEPAGES (default 64).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

duration=10
rate=100000
shm_demo=0
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="$2"; shift ;;
    --rate) rate="$2"; shift ;;
    --shm-demo) shm_demo=1 ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) sed -n '2,32p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "${duration}" =~ ^[0-9]+$ ]] && ((duration >= 1 && duration <= 600)) || axon_die "--duration must be 1..600"
[[ "${rate}" =~ ^[0-9]+$ ]] && ((rate >= 1)) || axon_die "--rate must be a positive integer"

cd "${AXON_ROOT}"
start="$(axon_now)"
axon_install_deps || axon_die "cannot continue without the build dependencies"
axon_reserve_hugepages "${AXON_HUGEPAGES:-64}" || true
axon_mount_bpffs || axon_warn "bpffs not mounted; XDP attach will use single-program mode"
axon_log "building preset release"
axon_build release || axon_die "build failed"
axon_log "ready in $(axon_elapsed "${start}")"

bin=build/release
if ((shm_demo)); then
  exec "${bin}/tools/axon-shm-demo" --workers 2 --duration "${duration}" \
    --worker-binary "${bin}/examples/echo_worker" "${extra[@]}"
fi

for b in dataplane/axon-dataplane dataplane/axon-dataplane-stats examples/echo_worker bench/loadgen/axon-loadgen \
  client/axonctl controlplane/axon-controlplane; do
  [[ -x "${bin}/${b}" ]] || axon_die "${bin}/${b} was not built"
done

ns=axon-qs
host_if=axqs0
ns_if=axqs1
host_ip=10.199.77.1
ns_ip=10.199.77.2
run_dir="$(mktemp -d /tmp/axon-quickstart.XXXXXX)"
pids=()
dataplane_pid=""
controlplane_pid=""
api_port=19443

cleanup() {
  local status=$?
  set +e
  if [[ -n "${controlplane_pid}" ]] && kill -0 "${controlplane_pid}" 2>/dev/null; then
    kill -TERM "${controlplane_pid}"
    wait "${controlplane_pid}"
    axon_log "control plane exited with status $?"
  fi
  if [[ -n "${dataplane_pid}" ]] && kill -0 "${dataplane_pid}" 2>/dev/null; then
    kill -TERM "${dataplane_pid}"
    wait "${dataplane_pid}"
    axon_log "data plane exited with status $?"
  fi
  for pid in "${pids[@]}"; do kill -TERM "${pid}" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "${pid}" 2>/dev/null; done
  if ip link show "${host_if}" 2>/dev/null | grep -q ' xdp'; then
    axon_warn "an XDP program is still attached to ${host_if}; removing it"
    ip link set dev "${host_if}" xdp off
  fi
  ip netns del "${ns}" 2>/dev/null   # takes the veth pair with it
  ip link del "${host_if}" 2>/dev/null
  rm -rf "${run_dir}"
  exit "${status}"
}
trap cleanup EXIT INT TERM

# A previous quickstart that was killed hard may have left its namespace behind.
ip netns del "${ns}" 2>/dev/null || true
ip link del "${host_if}" 2>/dev/null || true
ip netns add "${ns}"
ip link add "${host_if}" type veth peer name "${ns_if}"
ip link set "${ns_if}" netns "${ns}"
ip addr add "${host_ip}/30" dev "${host_if}"
ip link set "${host_if}" up
ip -n "${ns}" addr add "${ns_ip}/30" dev "${ns_if}"
ip -n "${ns}" link set "${ns_if}" up
ip -n "${ns}" link set lo up
axon_log "veth ${host_if} (${host_ip}) <-> ${ns}:${ns_if} (${ns_ip})"

# Workers run under their own uids (worker_uids below): they must reach their slot sockets
# under run_dir, but need not list it. The secrets live in a 0700 directory below it.
chmod 0711 "${run_dir}"
cat >"${run_dir}/dataplane.toml" <<TOML
[dataplane]
interface = "${host_if}"
backend = "auto"
queues = [0]
cores = [1]
ports = [7400]
run_dir = "${run_dir}"
# Slots the control plane assigns to the workers it starts.
worker_slots = 4

[xdp]
enforce_allowlist = true
enforce_rate = true

[[tenants]]
id = 1
name = "quickstart"
rate_pps = 2000000
burst = 20000
prefixes = ["10.199.77.0/30"]
TOML

"${bin}/dataplane/axon-dataplane" --config "${run_dir}/dataplane.toml" &
dataplane_pid=$!
for _ in $(seq 100); do
  "${bin}/dataplane/axon-dataplane-stats" --run-dir "${run_dir}" --json 2>/dev/null | grep -q '"ready":1' && break
  kill -0 "${dataplane_pid}" 2>/dev/null || axon_die "axon-dataplane exited during start-up (see its log above)"
  sleep 0.1
done

# The control plane: a certificate and an admin token of this run's own, 0600 in a 0700
# directory (the admin token can create agents: it must not leak to other local users).
secrets="${run_dir}/secrets"
axon_make_api_secrets "${secrets}" "${bin}/controlplane/axon-controlplane" ||
  axon_die "cannot make the API certificate and token"
cat >"${run_dir}/controlplane.toml" <<TOML
[controlplane]
state_dir = "${run_dir}/state"
log_dir = "${run_dir}/log"
# A uid per worker slot: no worker can reach another's segment or slot socket.
worker_uids = "61000-61099"
# Only this program may be run as a worker, and never as root.
allowed_worker_commands = ["${AXON_ROOT}/${bin}/examples/echo_worker"]

[api]
listen = "127.0.0.1:${api_port}"
cert_file = "${secrets}/server.crt"
key_file = "${secrets}/server.key"
tokens_file = "${secrets}/tokens"
audit_log = "${run_dir}/audit.log"
unix_socket = "${run_dir}/api.sock"

[cgroups]
name = "axon-quickstart"

[pools]
on_exit = "stop"

[dataplane]
run_dir = "${run_dir}"

[[tenants]]
id = 1
name = "quickstart"
rate_pps = 2000000
burst = 20000
prefixes = ["10.199.77.0/30"]

[[agents]]
name = "echo"
id = 7
tenant = 1
command = ["${AXON_ROOT}/${bin}/examples/echo_worker"]
min_workers = 2
max_workers = 4
TOML
"${bin}/controlplane/axon-controlplane" --config "${run_dir}/controlplane.toml" &
controlplane_pid=$!
axonctl=("${bin}/client/axonctl" --api "https://127.0.0.1:${api_port}" --ca "${secrets}/server.crt"
  --token-file "${secrets}/admin.token")
warm=0
for _ in $(seq 150); do
  kill -0 "${controlplane_pid}" 2>/dev/null || axon_die "axon-controlplane exited during start-up (see its log above)"
  warm="$("${axonctl[@]}" --json status 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["warm"])' 2>/dev/null || echo 0)"
  [[ "${warm}" == 2 ]] && break
  sleep 0.1
done
[[ "${warm}" == 2 ]] || axon_die "the control plane did not bring 2 echo workers up (see its log above)"
axon_log "control plane up: 2 echo workers warm"

axon_log "one request through the appliance:"
ip netns exec "${ns}" "${bin}/client/axonctl" send --to "${host_ip}:7400" --tenant 1 --agent 7 "hello from the quickstart"

axon_log "load: ${rate} req/s open loop (Poisson) for ${duration} s from ${ns}, 1% malformed"
"${bin}/dataplane/axon-dataplane-stats" --run-dir "${run_dir}" --watch 1 --count "${duration}" &
stats_pid=$!
pids+=("${stats_pid}")
ip netns exec "${ns}" "${bin}/bench/loadgen/axon-loadgen" --target "${host_ip}:7400" --rate "${rate}" \
  --duration "${duration}" --tenant 1 --agent 7 --payload 256 --sessions 64 --cpu-send 0 --cpu-recv 0 \
  --malformed-ratio 0.01 --live --json "${run_dir}/loadgen.json" "${extra[@]}"
wait "${stats_pid}" 2>/dev/null || true

echo
axon_log "summary"
python3 - "${run_dir}/loadgen.json" <<'PY' || cat "${run_dir}/loadgen.json"
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_us"]
print(f"  offered {r['offered_rps']:,.0f} req/s, achieved {r['achieved_rps']:,.0f} req/s over {r['measured_s']:.0f} s")
print(f"  round trip from the intended send time: p50 {lat['p50']:.1f} us, p90 {lat['p90']:.1f} us, "
      f"p99 {lat['p99']:.1f} us, p99.9 {lat['p99_9']:.1f} us, max {lat['max']:.1f} us")
print(f"  sent {r['sent']:,}, responses {r['responses']:,}, BUSY {r['busy']:,}, ERROR {r['errors']:,} "
      f"{r['errors_by_name'] or ''}, lost {r['lost']:,}, payload mismatches {r['payload_mismatch']}")
print(f"  malformed sent {r['malformed_sent']:,}, of which answered {r['malformed_replies']:,} (expected 0: XDP drops them)")
PY
"${bin}/dataplane/axon-dataplane-stats" --run-dir "${run_dir}" --json > "${run_dir}/dataplane-stats.json" || true
python3 - "${run_dir}/dataplane-stats.json" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
st = r.get("stage_latency", {})
if not st.get("enabled"):
    print("  per-stage latency: off ([telemetry] stage_latency = false)")
else:
    print("  inside the appliance, per stage (measured, log-linear histograms within 1.6%; docs/observability.md):")
    for name, s in st["stages"].items():
        a = s["all"]
        if a["count"] == 0:
            continue
        print(f"    {name:<8} p50 {a['p50_us']:9.1f} us  p99 {a['p99_us']:9.1f} us  ({a['count']:,} responses)")
PY
"${bin}/dataplane/axon-dataplane-stats" --run-dir "${run_dir}"
echo
axon_log "axonctl status"
"${axonctl[@]}" status
"${axonctl[@]}" workers list
