#!/usr/bin/env python3
"""bench/messages/report.py: the Markdown summary of a bench/messages/run.sh result (JSON).

Three tables: the payload sweep (latency at the fixed rate, saturation from a sweep per size), the
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


def step_ok(s):
    """The suite's verdict on a sweep step: served in time, answered, the load side kept up."""
    if s.get("skipped") or s.get("load_behind"):
        return False
    return s.get("achieved_rps", 0) >= 0.9 * s.get("offered_rps", 0) and \
        (s.get("lost", 0) + s.get("busy", 0) + s.get("errors", 0)) <= 0.05 * max(s.get("sent", 0), 1)


def saturation(sweep):
    """(req/s, kind) from the steps of one sweep, in rate order."""
    if not sweep:
        return None, "not run"
    ok = [s for s in sweep if step_ok(s)]
    best = max((s["achieved_rps"] for s in ok), default=None)
    last = sweep[-1]
    if last.get("skipped"):
        return best, f"sweep ended early: {last['skipped']}"
    if step_ok(last):
        return best, f"not saturated at the top rate ({num(last.get('offered_rps'))}/s): a lower bound"
    if last.get("load_behind"):
        return best, f"lower bound: the load side fell behind at {num(last.get('offered_rps'))}/s " \
                     f"({last.get('load_behind_reason')})"
    if best is None:
        return last.get("achieved_rps"), f"saturated below the first step ({num(last.get('offered_rps'))}/s offered; " \
                                         "the figure is what it served there)"
    return best, f"saturated at {num(last.get('offered_rps'))}/s offered (served {num(last.get('achieved_rps'))}, " \
                 f"lost {last.get('lost')})"


def sizes_table(steps):
    rows = {}
    for s in steps:
        if s.get("section") != "sizes":
            continue
        tag = str(s.get("tag", ""))
        payload = int(tag.split("-")[0])
        kind = tag.split("-")[1] if "-" in tag else "fixed"
        r = rows.setdefault((s["peer"], payload), {"sweep": []})
        if kind == "sweep":
            r["sweep"].append(s)
        else:
            r[kind] = s
    if not rows:
        return []
    lines = ["## Payload sweep", "",
             "| peer | payload B | segments per request | p50 / p99 µs at the fixed rate | lost at the fixed rate | "
             "saturation req/s | MB/s at saturation | saturation kind | notes at the fixed rate |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    order = {p: i for i, p in enumerate(PEERS)}
    for (peer, payload), r in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1])):
        f = r.get("fixed") or {}
        name = PEERS.get(peer, peer)
        if f.get("skipped"):
            lines.append(f"| {name} | {payload} | | skipped: {f['skipped']} | | | | | |")
            continue
        segs = (f.get("segments") or {}).get("request_segments", "-")
        sweep = sorted(r["sweep"], key=lambda s: s.get("offered_rps", 0))
        sat, kind = saturation(sweep)
        mbs = sat * payload / 1e6 if sat is not None else None
        lines.append(f"| {name} | {payload} | {segs} | {lat(f)} | {f.get('lost', '-')} | {num(sat)} | {num(mbs, 1)} | "
                     f"{kind} | {notes(f)} |")
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
        judged = "" if not (w.get("load_behind") or h.get("load_behind")) else \
            " Not judged: the load side fell behind in a step, so these describe the load generator."
        lines += ["", f"Cache hit / worker round trip: p50 {hl['p50'] / wl['p50']:.2f}×, "
                      f"p99 {hl['p99'] / wl['p99']:.2f}×.{judged}"]
    rc = (h.get("dataplane") or {}).get("response_cache")
    end = ((h.get("dataplane_end") or {}).get("response_cache") or {}).get("hit_latency_us") or {}
    if rc:
        lines += ["", f"The data plane over the cacheable step: {rc.get('hits')} hits, {rc.get('misses')} misses, "
                      f"{rc.get('insertions')} insertions, {rc.get('evictions')} evictions; its own hit-latency "
                      f"histogram (receive to reply, cumulative since start: only this step used the cached agent): "
                      f"{end.get('count')} hits, p50 {end.get('p50')} µs, p99 {end.get('p99')} µs."]
    else:
        fields = cache_fields(h.get("dataplane"))
        lines += ["", "The data plane's cache counters: " + (json.dumps(fields) if fields else "none exported by this build.")]
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
    dd = (by.get("dedup_on", {}).get("dataplane") or {}).get("dedup")
    if dd:
        lines += ["", "The data plane's dedup counters over the dedup-on step: " +
                  ", ".join(f"{k} {v}" for k, v in dd.items()) + "."]
    return lines


def main():
    r = json.load(open(sys.argv[1]))
    steps = r.get("steps") or []
    m, c = r.get("machine", {}), r.get("config", {})
    lines = [f"# bench/messages: {r.get('timestamp')} (commit {r.get('commit')})", "",
             f"`{r.get('command')}` — {r.get('wall_s')} s; {m.get('cpus')} cpus ({m.get('cpu_model')}), kernel "
             f"{m.get('kernel')}, load average {m.get('loadavg_start')} → {m.get('loadavg_end')}; receive path: "
             f"{m.get('receive_path')}.", "",
             f"Latency at the fixed rate {num(c.get('rate'))} req/s for every payload ({c.get('duration_s')} s); "
             f"saturation from a sweep per payload up to min({num(c.get('sweep_bytes'))} B/s ÷ payload, "
             f"{num(c.get('sweep_max'))}) req/s ({c.get('sweep_s')} s per step). Latency from the intended send time "
             "(open loop), on the last reply segment.", ""]
    for part in (sizes_table(steps), cache_table(steps), retransmit_table(steps)):
        if part:
            lines += part + [""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
