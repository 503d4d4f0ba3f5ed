#!/usr/bin/env bash
# CTest smoke of the benchmark tools on loopback: axon-loadgen drives axon-baseline-server for one
# second (with some malformed datagrams mixed in) and the JSON report must show an answered,
# echoed, loss-free run; then one second of mixed classes (--bg-rate), whose report must split
# every request by its class. A functional check, not a measurement.
set -euo pipefail
loadgen="$1" server="$2" out="$3"

"${server}" --bind 127.0.0.1 --port 0 --workers 2 --duration 60 >"${out}.server" 2>&1 &
server_pid=$!
trap 'kill "${server_pid}" 2>/dev/null || true; wait "${server_pid}" 2>/dev/null || true' EXIT
for _ in $(seq 200); do
  grep -q "listening on" "${out}.server" && break
  sleep 0.05
done
port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "${out}.server")"
[[ -n "${port}" ]] || { cat "${out}.server"; echo "smoke: the baseline server did not start" >&2; exit 1; }

timeout 30 "${loadgen}" --target "127.0.0.1:${port}" --rate 2000 --duration 1 --warmup 0.2 --agent 1-4 \
  --sessions 16 --malformed-ratio 0.05 --timeout-ms 2000 --json "${out}"

python3 - "${out}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
problems = []
if r["sent"] < 1000: problems.append(f"only {r['sent']} requests sent")
if r["responses"] < 0.99 * r["sent"]: problems.append(f"{r['responses']} responses for {r['sent']} requests")
for key in ("lost", "trace_mismatch", "payload_mismatch", "invalid", "send_errors"):
    if r[key] != 0: problems.append(f"{key} = {r[key]}")
if r["malformed_sent"] == 0: problems.append("no malformed datagrams were mixed in")
if not 0 < r["latency_us"]["p50"] <= r["latency_us"]["p99"] <= r["latency_us"]["max"]:
    problems.append(f"latency percentiles out of order: {r['latency_us']}")
if problems:
    sys.exit("smoke: " + "; ".join(problems))
print(f"smoke: ok, {r['responses']} responses, p50 {r['latency_us']['p50']} us")
PY

# Mixed classes: an interactive stream and a background stream at different rates; every figure
# must be split by class and the classes must add up to the totals.
timeout 30 "${loadgen}" --target "127.0.0.1:${port}" --rate 500 --bg-rate 1500 --duration 1 --warmup 0.2 \
  --agent 1-4 --bg-agent 5-8 --timeout-ms 2000 --json "${out}.mixed"

python3 - "${out}.mixed" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
i, b = r["classes"]["interactive"], r["classes"]["background"]
problems = []
# Poisson counts over 1 s: 500 +- 5 sigma and 1500 +- 5 sigma.
if not 390 <= i["sent"] <= 610: problems.append(f"interactive sent {i['sent']}, expected about 500")
if not 1300 <= b["sent"] <= 1700: problems.append(f"background sent {b['sent']}, expected about 1500")
for key in ("sent", "responses", "busy", "errors", "lost"):
    if i[key] + b[key] != r[key]: problems.append(f"classes' {key} {i[key]} + {b[key]} != total {r[key]}")
for name, c in (("interactive", i), ("background", b)):
    if c["latency_us"]["count"] != c["responses"]:
        problems.append(f"{name}: {c['latency_us']['count']} latencies for {c['responses']} responses")
    if c["responses"] < 0.99 * c["sent"]: problems.append(f"{name}: {c['responses']} responses for {c['sent']}")
if r["options"]["bg_rate"] != 1500 or i["offered_rps"] != 500 or b["offered_rps"] != 1500:
    problems.append("the offered rates per class are not reported")
if problems:
    sys.exit("smoke (mixed classes): " + "; ".join(problems))
print(f"smoke: mixed classes ok, interactive {i['responses']}, background {b['responses']} responses")
PY
