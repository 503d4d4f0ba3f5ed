#!/usr/bin/env bash
# CTest smoke of bench/messages/run.sh (label bench, root only; exit 77 = skipped otherwise): the
# real data plane over XDP + AF_XDP on a veth pair, driven by axon-loadgen with 8 KiB and 64 KiB
# requests (6 and 48 segments each way), then the cache and retransmit sections. A functional check
# on counts, never on timings:
#   - the segmented requests of the fixed-rate steps are answered with their whole echo (most of
#     them: a host stall overflows the veth ring; every loss counted), no payload of the wrong
#     length, no reply segment refused;
#   - cache: a section this build lacks must say why; when it runs, the cacheable agent's requests
#     reach the worker less often than the uncacheable one's (repeats are answered from the cache);
#   - retransmit: likewise skipped with a reason, or: without dedup every retransmit runs the
#     handler again and is answered twice; with dedup the handler runs about once per request.
set -euo pipefail
build="$1" out="$2"
if [[ ${EUID} -ne 0 ]]; then
  echo "bench_messages_smoke: needs root (namespace, veth, XDP); skipped"
  exit 77
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "${out}"
timeout --kill-after=10 300 "${here}/run.sh" --build "${build}" --peers xdp --payloads "8192 65536" --no-sweep \
  --rate 200 --duration 2 --cache-rate 500 --rtx-rate 1000 --retries 2 --out "${out}/messages.json"

python3 - "${out}/messages.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
steps = r["steps"]
problems = []
by = {(s["section"], s["tag"]): s for s in steps}
for payload, segs in (("8192", 6), ("65536", 48)):
    s = by.get(("sizes", payload + "-fixed"))
    if s is None or s.get("skipped"):
        problems.append(f"{payload}: no fixed-rate step ({s and s.get('skipped')})")
        continue
    seg = s["segments"]
    if seg["request_segments"] != segs: problems.append(f"{payload}: {seg['request_segments']} segments, not {segs}")
    if s["sent"] < 300: problems.append(f"{payload}: only {s['sent']} requests sent")
    # A host stall of this VM's vCPUs overflows the veth ring (256 frames: five 64 KiB requests), so
    # some requests may be lost; losses are counted, never silent, and most requests must arrive
    # (without segmentation none would).
    if s["responses"] + s["busy"] + s["lost"] != s["sent"] or s["responses"] < 0.5 * s["sent"]:
        problems.append(f"{payload}: {s['responses']} responses, {s['busy']} busy, {s['lost']} lost of {s['sent']}")
    if seg["incomplete_replies"] > s["lost"]: problems.append(f"{payload}: more incomplete replies than lost requests")
    for key in ("reply_segment_offset", "reply_segment_mismatch", "reply_segments_untracked"):
        if seg[key] != 0: problems.append(f"{payload}: {key} = {seg[key]}")
    if s["payload_mismatch"] != 0: problems.append(f"{payload}: {s['payload_mismatch']} replies of the wrong length")
    if seg["reply_segments"] < segs * s["responses"]:
        problems.append(f"{payload}: {seg['reply_segments']} reply segments for {s['responses']} responses")

w, h = by.get(("cache", "worker"), {}), by.get(("cache", "hit"), {})
if w.get("skipped") or h.get("skipped"):
    if not (w.get("skipped") and h.get("skipped")): problems.append("cache: one step skipped, the other not")
    print(f"smoke: cache skipped: {w.get('skipped')}")
elif not w or not h:
    problems.append("cache: steps missing")
else:
    if w["responses"] < 0.99 * w["sent"] or h["responses"] < 0.99 * h["sent"]:
        problems.append(f"cache: responses {w['responses']}/{w['sent']} and {h['responses']}/{h['sent']}")
    # Every uncached request runs the handler; the cached agent's repeats do not.
    if not w["handler_executions"] >= w["sent"]: problems.append(f"cache: uncached {w['handler_executions']} executions for {w['sent']}")
    if not h["handler_executions"] < 0.5 * h["sent"]: problems.append(f"cache: cached {h['handler_executions']} executions for {h['sent']}")

off, on = by.get(("retransmit", "dedup_off"), {}), by.get(("retransmit", "dedup_on"), {})
if off.get("skipped") or on.get("skipped"):
    if not (off.get("skipped") and on.get("skipped")): problems.append("retransmit: one step skipped, the other not")
    print(f"smoke: retransmit skipped: {off.get('skipped')}")
elif not off or not on:
    problems.append("retransmit: steps missing")
else:
    for name, s in (("off", off), ("on", on)):
        if s["retransmits"] < 0.05 * s["sent"]: problems.append(f"dedup {name}: only {s['retransmits']} retransmits")
        if s["responses"] < 0.99 * s["sent"]: problems.append(f"dedup {name}: {s['responses']} responses of {s['sent']}")
    # Requests lost in a host stall ran no handler: count against what arrived.
    if not off["handler_executions"] - (off["sent"] - off["lost"]) >= 0.5 * off["retransmits"]:
        problems.append(f"dedup off: {off['handler_executions']} executions for {off['sent']} ({off['lost']} lost) + {off['retransmits']} retransmits")
    if not off["duplicate_replies"] >= 0.5 * off["retransmits"]:
        problems.append(f"dedup off: {off['duplicate_replies']} duplicate replies for {off['retransmits']} retransmits")
    if not on["handler_executions"] <= on["sent"] + 0.1 * on["retransmits"]:
        problems.append(f"dedup on: {on['handler_executions']} executions for {on['sent']} + {on['retransmits']} retransmits")
if problems:
    sys.exit("bench_messages_smoke: " + "; ".join(problems))
print("bench_messages_smoke: ok")
PY
