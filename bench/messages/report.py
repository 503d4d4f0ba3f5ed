#!/usr/bin/env python3
"""bench/messages/report.py: the Markdown summary of a bench/messages/run.sh result (JSON).

Three tables: the payload sweep (latency at the fixed rate, throughput under overload), the
response cache (a hit against a worker round trip) and the retransmit cost (dedup on and off).
Skipped steps are listed with their reasons.
"""
import json
import sys

PEERS = {"xdp": "axon, XDP + AF_XDP", "uring": "axon, io_uring", "dpdk": "axon, DPDK (net_af_xdp)",
         "baseline": "baseline: epoll + Unix-socket worker"}


def num(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def lat(s):
    l = s.get("latency_us") or {}
    if not l.get("count"):
        return "no responses"
    return f"{num(l.get('p50'), 1)} / {num(l.get('p99'), 1)}"


def notes(s):
    out = []
    if s.get("load_behind"):
        out.append(f"load side fell behind ({s.get('load_behind_reason')}): a lower bound")
    elif s.get("stalled"):
        out.append(f"host stall: {s.get('stall_share', 0) * 100:.1f}% of sends late")
    steal = max((s.get("steal") or {"x": 0}).values())
    if steal > 0.02:
        out.append(f"steal {steal * 100:.0f}%")
    seg = s.get("segments") or {}
    if seg.get("incomplete_replies"):
        out.append(f"{seg['incomplete_replies']} incomplete replies")
    if s.get("errors"):
        out.append(f"errors {s.get('errors_by_name')}")
    if s.get("busy"):
        out.append(f"busy {s['busy']}")
    return "; ".join(out)


def sizes_table(steps):
    rows = {}
    for s in steps:
        if s.get("section") != "sizes":
            continue
        tag = str(s.get("tag", ""))
        payload = int(tag.split("-")[0])
        kind = tag.split("-")[1] if "-" in tag else "fixed"
        rows.setdefault((s["peer"], payload), {})[kind] = s
    if not rows:
        return []
    lines = ["## Payload sweep", "",
             "| peer | payload B | segments per request | p50 / p99 µs at the fixed rate | lost at the fixed rate | "
             "overload: offered → served req/s | served MB/s | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    order = {p: i for i, p in enumerate(PEERS)}
    for (peer, payload), r in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
        f, o = r.get("fixed") or {}, r.get("overload") or {}
        name = PEERS.get(peer, peer)
        if f.get("skipped"):
            lines.append(f"| {name} | {payload} | | skipped: {f['skipped']} | | | | |")
            continue
        segs = (f.get("segments") or {}).get("request_segments", "-")
        served = o.get("achieved_rps")
        mbs = served * payload / 1e6 if served is not None else None
        note = "; ".join(x for x in (notes(f), ("overload: " + notes(o)) if notes(o) else "") if x)
        lines.append(f"| {name} | {payload} | {segs} | {lat(f)} | {f.get('lost', '-')} | "
                     f"{num(o.get('offered_rps'))} → {num(served)} | {num(mbs, 1)} | {note} |")
    return lines


def cache_fields(dp):
    """The data plane's counters whose name mentions the cache (the response cache's own)."""
    found = {}

    def walk(v, path):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, path + [k])
        elif "cache" in "/".join(path) and "reply_cache" not in "/".join(path):
            found["/".join(path)] = v
    walk(dp or {}, [])
    return found


def cache_table(steps):
    by = {s.get("tag"): s for s in steps if s.get("section") == "cache"}
    if not by:
        return []
    lines = ["## Response cache: a hit against a worker round trip", ""]
    if any(s.get("skipped") for s in by.values()):
        return lines + [f"Skipped: {next(s['skipped'] for s in by.values() if s.get('skipped'))}"]
    w, h = by.get("worker", {}), by.get("hit", {})
    lines += ["| agent | offered req/s | served req/s | p50 / p99 µs | handler executions | notes |",
              "|---|---:|---:|---:|---:|---|"]
    for name, s in (("uncacheable (every request to the worker)", w), ("cacheable (repeats from the cache)", h)):
        lines.append(f"| {name} | {num(s.get('offered_rps'))} | {num(s.get('achieved_rps'))} | {lat(s)} | "
                     f"{s.get('handler_executions', '-')} | {notes(s)} |")
    wl, hl = (w.get("latency_us") or {}), (h.get("latency_us") or {})
    if wl.get("p50") and hl.get("p50"):
        lines += ["", f"Cache hit / worker round trip: p50 {hl['p50'] / wl['p50']:.2f}×, "
                      f"p99 {hl['p99'] / wl['p99']:.2f}×."]
    fields = cache_fields(h.get("dataplane"))
    if fields:
        lines += ["", "The data plane's cache counters over the cacheable step (deltas; histograms as exported):", "",
                  "```", json.dumps(fields, indent=1, sort_keys=True)[:3000], "```"]
    else:
        lines += ["", "The data plane's stats (`axon-dataplane-stats --json`) export no cache counters in this build."]
    return lines


def retransmit_table(steps):
    by = {s.get("tag"): s for s in steps if s.get("section") == "retransmit"}
    if not by:
        return []
    lines = ["## Retransmit cost", ""]
    if any(s.get("skipped") for s in by.values()):
        return lines + [f"Skipped: {next(s['skipped'] for s in by.values() if s.get('skipped'))}"]
    lines += ["| dedup | offered req/s | served req/s | p50 / p99 µs | retransmits | duplicate replies | "
              "handler executions per request | notes |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, key in (("off (dedup_window_ms = 0)", "dedup_off"), ("on", "dedup_on")):
        s = by.get(key, {})
        sent = s.get("sent") or 0
        per = s.get("handler_executions", 0) / sent if sent else None
        lines.append(f"| {name} | {num(s.get('offered_rps'))} | {num(s.get('achieved_rps'))} | {lat(s)} | "
                     f"{s.get('retransmits', '-')} | {s.get('duplicate_replies', '-')} | {num(per, 3)} | {notes(s)} |")
    return lines


def main():
    r = json.load(open(sys.argv[1]))
    steps = r.get("steps") or []
    m, c = r.get("machine", {}), r.get("config", {})
    lines = [f"# bench/messages: {r.get('timestamp')} (commit {r.get('commit')})", "",
             f"`{r.get('command')}` — {r.get('wall_s')} s; {m.get('cpus')} cpus ({m.get('cpu_model')}), kernel "
             f"{m.get('kernel')}, load average {m.get('loadavg_start')} → {m.get('loadavg_end')}; receive path: "
             f"{m.get('receive_path')}.", "",
             f"Fixed rate {num(c.get('rate'))} req/s for every payload; overload offers min({num(c.get('overload_bytes'))} B/s "
             f"÷ payload, {num(c.get('overload_max'))}) req/s. Latency from the intended send time (open loop), "
             f"on the last reply segment; {c.get('duration_s')} s per step.", ""]
    for part in (sizes_table(steps), cache_table(steps), retransmit_table(steps)):
        if part:
            lines += part + [""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
