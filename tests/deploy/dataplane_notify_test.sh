#!/usr/bin/env bash
# dataplane_notify_test: the real axon-dataplane, started as systemd would start a
# Type=notify service with WatchdogSec=2s ($NOTIFY_SOCKET, $WATCHDOG_USEC), on a veth pair
# and namespace this test creates. A listener on the notify socket must see READY=1,
# STATUS=, WATCHDOG=1 at about half the watchdog interval, RELOADING=1 then READY=1 on
# SIGHUP, and STOPPING=1 on SIGTERM, in that order, under the unit's CapabilityBoundingSet
# and NoNewPrivileges (setpriv). Needs root; exits 77 (skip) otherwise.
#
#   dataplane_notify_test.sh SOURCE_DIR AXON_DATAPLANE_BIN
set -euo pipefail

src="${1:?usage: dataplane_notify_test.sh SOURCE_DIR AXON_DATAPLANE_BIN}"
dataplane="${2:?usage: dataplane_notify_test.sh SOURCE_DIR AXON_DATAPLANE_BIN}"
if [[ "$(id -u)" -ne 0 ]]; then
  echo "skip: needs root (XDP, netns)"
  exit 77
fi
[[ -x "${dataplane}" ]] || {
  echo "FAIL: ${dataplane} is not built" >&2
  exit 1
}

tag="opsn$$"
ns="${tag}ns"
root_if="${tag}a"
ns_if="${tag}b"
dir="$(mktemp -d "/tmp/axon-ops-notify-$$.XXXXXX")"
dp_pid=""
listener_pid=""
cleanup() {
  if [[ -n "${dp_pid}" ]]; then kill -KILL "${dp_pid}" 2>/dev/null || true; fi
  if [[ -n "${listener_pid}" ]]; then kill "${listener_pid}" 2>/dev/null || true; fi
  ip link del "${root_if}" 2>/dev/null || true
  ip netns del "${ns}" 2>/dev/null || true
  rm -rf "${dir}"
}
trap cleanup EXIT

ip netns add "${ns}"
ip link add "${root_if}" type veth peer name "${ns_if}" netns "${ns}"
ip link set "${root_if}" up
ip -n "${ns}" link set "${ns_if}" up

mkdir -p "${dir}/run"
sed -e "s|^interface = .*|interface = \"${root_if}\"|" -e "s|^run_dir = .*|run_dir = \"${dir}/run\"|" \
  -e 's|^frames = 4096|frames = 1024|' "${src}/deploy/axon-dataplane.toml" >"${dir}/dataplane.toml"

# The notify socket: one line per datagram, newlines inside a datagram shown as \n.
python3 -u - "${dir}/notify.sock" >"${dir}/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    print(s.recv(4096).decode().replace("\n", "\\n"), flush=True)
PY
listener_pid=$!
for _ in $(seq 100); do
  [[ -S "${dir}/notify.sock" ]] && break
  sleep 0.1
done
[[ -S "${dir}/notify.sock" ]] || {
  echo "FAIL: the notify listener did not start" >&2
  exit 1
}

# Under the unit's own CapabilityBoundingSet and NoNewPrivileges, as systemd would run it:
# the least-privilege unit must still start, attach, reload and stop.
bounding="$(sed -n 's/^CapabilityBoundingSet=//p' "${src}/deploy/systemd/axon-dataplane.service" | tr ' ' '\n' |
  sed '/^$/d; s/^CAP_//' | tr '[:upper:]' '[:lower:]' | sed 's/^/+/' | paste -sd,)"
[[ -n "${bounding}" ]] || {
  echo "FAIL: axon-dataplane.service has no CapabilityBoundingSet" >&2
  exit 1
}
NOTIFY_SOCKET="${dir}/notify.sock" WATCHDOG_USEC=2000000 setpriv --bounding-set="-all,${bounding}" --no-new-privs -- \
  "${dataplane}" --config "${dir}/dataplane.toml" >"${dir}/dataplane.log" 2>&1 &
dp_pid=$!

wait_for() { # wait_for PATTERN SECONDS: until a notify line matches
  local deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    grep -q -- "$1" "${dir}/notify.log" && return 0
    sleep 0.1
  done
  return 1
}
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

wait_for '^READY=1$' 30 || fail "no READY=1 within 30 s"
sleep 3.5 # at 1 s intervals, at least three watchdog pings
kill -HUP "${dp_pid}"
wait_for '^RELOADING=1' 10 || fail "no RELOADING=1 after SIGHUP"
sleep 0.5
kill -TERM "${dp_pid}"
rc=0
wait "${dp_pid}" || rc=$?
dp_pid=""
[[ "${rc}" -eq 0 ]] || fail "axon-dataplane exited ${rc} after SIGTERM"
sleep 0.3

log="$(cat "${dir}/notify.log")"
echo "${log}"
grep -qE '^STATUS=serving on '"${root_if}"' \((xdp|uring|dpdk) [a-z-]*\), 0/2 workers alive, [0-9]* req/s$' <<<"${log}" ||
  fail "no STATUS= line describing ${root_if}"
pings="$(grep -c '^WATCHDOG=1$' <<<"${log}" || true)"
((pings >= 3)) || fail "only ${pings} WATCHDOG=1 pings in 3.5 s with WATCHDOG_USEC=2000000"
grep -Eq '^RELOADING=1\\nMONOTONIC_USEC=[0-9]+$' <<<"${log}" || fail "RELOADING=1 without MONOTONIC_USEC"
# Order: READY, ..., RELOADING, READY, ..., STOPPING (last).
order="$(grep -E '^(READY|RELOADING|STOPPING)=' <<<"${log}" | cut -d= -f1 | tr '\n' ' ')"
[[ "${order}" == "READY RELOADING READY STOPPING " ]] || fail "state order was '${order}'"
[[ "$(tail -n1 <<<"${log}")" == "STOPPING=1" ]] || fail "STOPPING=1 was not the last message"

if ((failures > 0)); then
  echo "--- dataplane log" >&2
  cat "${dir}/dataplane.log" >&2
  exit 1
fi
echo "sd_notify sequence ok"
