#!/usr/bin/env bash
# CTest smoke of the broker peers on loopback (bench_brokers_smoke, label bench): a NATS echo
# worker behind Debian's nats-server and a ZeroMQ broker with a REP worker, each driven for one
# second by its open-loop driver; every request must come back echoed. A functional check, not a
# measurement (bench/run.sh measures). Exits 77 (skipped) when nats-server is not installed.
set -euo pipefail
nats_bin="$1" zmq_bin="$2" work="$3"
mkdir -p "${work}"
declare -a pids=()
# shellcheck disable=SC2317  # called by the EXIT trap
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill "${pid}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT

check() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
problems = []
if r["sent"] < 1000: problems.append(f"only {r['sent']} requests sent")
if r["responses"] != r["sent"]: problems.append(f"{r['responses']} responses for {r['sent']} requests")
for key in ("lost", "unmatched", "payload_mismatch", "send_errors"):
    if r[key] != 0: problems.append(f"{key} = {r[key]}")
if not 0 < r["latency_us"]["p50"] <= r["latency_us"]["p99"] <= r["latency_us"]["max"]:
    problems.append(f"latency percentiles out of order: {r['latency_us']}")
if problems:
    sys.exit(f"smoke {r['tool']}: " + "; ".join(problems))
print(f"smoke {r['tool']}: ok, {r['responses']} responses, p50 {r['latency_us']['p50']} us")
PY
}

# A free TCP port on loopback (the kernel picks it; a race with another process is harmless
# here: the server then fails to start and the test says so).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

status=0
if command -v nats-server >/dev/null; then
  port="$(free_port)"
  nats-server -a 127.0.0.1 -p "${port}" >"${work}/nats-server.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q "Server is ready" "${work}/nats-server.log" && break; sleep 0.05; done
  "${nats_bin}" worker --url "nats://127.0.0.1:${port}" --max-life 60 >"${work}/nats-worker.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q subscribed "${work}/nats-worker.log" && break; sleep 0.05; done
  timeout 30 "${nats_bin}" driver --url "nats://127.0.0.1:${port}" --rate 2000 --duration 1 --warmup 0.2 \
    --payload 100 --timeout-ms 2000 --json "${work}/nats.json" >/dev/null
  check "${work}/nats.json" || status=1
else
  echo "smoke: nats-server not installed; NATS part skipped"
  status=77
fi

port="$(free_port)"
"${zmq_bin}" broker --front "tcp://127.0.0.1:${port}" --back "ipc://${work}/back.ipc" --max-life 60 \
  >"${work}/zmq-broker.log" 2>&1 &
pids+=($!)
"${zmq_bin}" worker --back "ipc://${work}/back.ipc" --max-life 60 >"${work}/zmq-worker.log" 2>&1 &
pids+=($!)
timeout 30 "${zmq_bin}" driver --front "tcp://127.0.0.1:${port}" --rate 2000 --duration 1 --warmup 0.2 \
  --payload 100 --timeout-ms 2000 --json "${work}/zmq.json" >/dev/null
check "${work}/zmq.json" || status=1
exit "${status}"
