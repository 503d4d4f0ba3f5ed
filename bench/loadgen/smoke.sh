#!/usr/bin/env bash
# CTest smoke of the benchmark tools on loopback: axon-loadgen drives axon-baseline-server for one
# second (with some malformed datagrams mixed in) and the JSON report must show an answered,
# echoed, loss-free run; then one second of mixed classes (--bg-rate), whose report must split
# every request by its class; then segmented requests (8 KiB: 6 datagrams each, which the baseline
# refuses with one ERROR payload_too_large per message, on segment 0: docs/protocol.md §6) and
# retransmits (the baseline runs a retransmitted request twice: one duplicate reply each).
# A functional check, not a measurement.
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

# Segmented requests: every message must get exactly one reply (the baseline's ERROR on segment 0),
# so a loadgen that sent a wrong count, or split a request over batches badly, shows up here.
timeout 30 "${loadgen}" --target "127.0.0.1:${port}" --rate 1000 --duration 1 --warmup 0.2 --payload 8192 \
  --timeout-ms 2000 --json "${out}.segmented"

python3 - "${out}.segmented" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
problems = []
seg = r["segments"]
if seg["request_segments"] != 6 or seg["request_segment_payload"] != 1366:
    problems.append(f"8192 bytes should go as 6 segments of 1366: {seg}")
if r["sent"] < 500: problems.append(f"only {r['sent']} requests sent")
if r["errors_by_name"].get("payload_too_large", 0) != r["sent"]:
    problems.append(f"{r['errors_by_name']} for {r['sent']} segmented requests (one payload_too_large each)")
for key in ("lost", "invalid", "unmatched", "duplicate_replies", "send_errors"):
    if r[key] != 0: problems.append(f"{key} = {r[key]}")
if r["tx_packets"] < 6 * r["sent"]: problems.append(f"{r['tx_packets']} datagrams for {r['sent']} requests")
if problems:
    sys.exit("smoke (segmented): " + "; ".join(problems))
print(f"smoke: segmented ok, {r['sent']} requests of 6 segments each answered once")
PY

# Retransmits: 20% of the requests again 300 us after their intended send; the baseline does not
# deduplicate, so each retransmit that reached it is answered a second time.
timeout 30 "${loadgen}" --target "127.0.0.1:${port}" --rate 2000 --duration 1 --warmup 0.2 \
  --retransmit-fraction 0.2 --retransmit-after-us 300 --timeout-ms 2000 --json "${out}.retransmit"

python3 - "${out}.retransmit" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
problems = []
sent, rtx, dup = r["sent"], r["retransmits"], r["duplicate_replies"]
# Binomial(sent, 0.2) within 5 sigma.
sigma = (sent * 0.2 * 0.8) ** 0.5
if not abs(rtx - 0.2 * sent) <= 5 * sigma: problems.append(f"{rtx} retransmits of {sent}, expected about 20%")
if not 0.9 * rtx <= dup <= rtx: problems.append(f"{dup} duplicate replies for {rtx} retransmits")
if r["responses"] < 0.99 * sent or r["lost"] != 0: problems.append(f"{r['responses']} responses, {r['lost']} lost of {sent}")
if r["latency_us"]["count"] != r["responses"]: problems.append("a duplicate was timed as a response")
if problems:
    sys.exit("smoke (retransmit): " + "; ".join(problems))
print(f"smoke: retransmit ok, {rtx} retransmits, {dup} duplicate replies")
PY
