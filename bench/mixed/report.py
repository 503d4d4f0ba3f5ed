#!/usr/bin/env python3
"""bench/mixed/report.py: the Markdown summary of one bench/mixed/run.sh result (JSON in, Markdown
on stdout): the three scenarios (each the median over its rounds), the XDP floods with the load
side's own ceilings, kill -9 -> pool at minimum, and the issue's targets as this run judges them.

    python3 bench/mixed/report.py bench/results/mixed-<date>.json
"""
import json
import statistics
import sys

SCENARIOS = [
    ("alone", "interactive alone"),
    ("fifo", "interactive + background, FIFO (class_scheduling = false)"),
    ("classes", "interactive + background, class scheduling"),
]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    if v is None:
        return "-"
    if isinstance(v, float) and digits:
        return f"{v:,.{digits}f}"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:.{max(digits, 1)}f}"


def reasons_txt(reasons):
    parts = [f"{k} {fmt(v)}" for k, v in reasons.items() if v]
    return f" ({', '.join(parts)})" if parts else ""


def pct(v):
    return "-" if v is None else f"{v:.0%}"


def per_s(run, value):
    return value / run["measured_s"] if run.get("measured_s") else None


def xdp_busy(dp):
    """BUSY answered by the XDP program itself: its verdict's name has busy or credit in it."""
    xdp = (dp or {}).get("xdp", {})
    return sum(v for k, v in xdp.items() if ("busy" in k or "credit" in k) and isinstance(v, (int, float)))


def scenario_row(runs):
    inter = [r["classes"]["interactive"] for r in runs]
    back = [r["classes"]["background"] for r in runs]
    lat = {p: med([c["latency_us"][p] if c["latency_us"]["count"] else None for c in inter]) for p in ("p50", "p99", "p99_9")}
    flags = []
    behind = [r for r in runs if r.get("load_behind")]
    stalled = [r for r in runs if r.get("stalled")]
    if behind:
        flags.append(f"load side fell behind in {len(behind)}/{len(runs)} ({behind[0]['load_behind_reason']})")
    if stalled:
        flags.append(f"host stall in {len(stalled)}/{len(runs)}")
    notes = {r.get("config_note") for r in runs if r.get("config_note")}
    return {
        "lat": lat,
        "p99_runs": [c["latency_us"]["p99"] for c in inter],
        "i_sent": med([c["sent"] for c in inter]),
        "i_ok": med([c["responses"] for c in inter]),
        "i_busy": med([c["busy"] for c in inter]),
        "i_err": med([c["errors"] for c in inter]),
        "i_lost": med([c["lost"] for c in inter]),
        "b_offered": med([c["offered_rps"] for c in back]),
        "b_served": med([c["achieved_rps"] for c in back]),
        "b_busy": med([c["busy_rps"] for c in back]),
        "b_err": med([per_s(r, c["errors"]) for r, c in zip(runs, back)]),
        "dp_busy": med([per_s(r, (r.get("dataplane") or {}).get("busy", 0)) for r in runs]),
        "dp_reasons": {k: med([per_s(r, ((r.get("dataplane") or {}).get("busy_reasons") or {}).get(k, 0)) for r in runs])
                       for k in sorted({k for r in runs for k in ((r.get("dataplane") or {}).get("busy_reasons") or {})})},
        "xdp_busy": med([per_s(r, xdp_busy(r.get("dataplane"))) for r in runs]),
        "dp_wait": med([r["sched"]["dataplane"]["wait_ns"] / r["sched"]["t_ns"] for r in runs if r.get("sched", {}).get("t_ns")]),
        "wk_wait": med([r["sched"]["workers"]["wait_ns"] / r["sched"]["t_ns"] for r in runs if r.get("sched", {}).get("t_ns")]),
        "load": med([float(r["loadavg"][1].split()[0]) for r in runs if r.get("loadavg")]),
        "steal": max([max(v["steal"] for v in r["cpu_shares"].values()) for r in runs if r.get("cpu_shares")] or [0]),
        "flags": flags,
        "stalled_rounds": len(stalled),
        "stall_share": med([r.get("stall_share") for r in runs]),
        "rounds": len(runs),
        "notes": notes,
    }


def main(path):
    res = json.load(open(path))
    cfg = res["config"]
    m = res["machine"]
    out = []
    w = out.append
    w(f"### Mixed classes: run {res['timestamp']} (commit {res['commit']})\n")
    w(f"`{res['command']}`, {res['wall_s']} s. {m['cpus']} cpus ({m['cpu_model']}), Linux {m['kernel']}; "
      f"load average {m['loadavg_start'].split()[0]} at the start, {m['loadavg_end'].split()[0]} at the end; "
      "over the run, per cpu (busy by anyone / taken by the host as steal): "
      + ", ".join(f"{k} {v['busy']:.0%} / {v['steal']:.1%}" for k, v in sorted(m["cpu_shares"].items())) + ".\n")
    w(f"Data plane (XDP + AF_XDP, one lcore) and {cfg['workers']} echo workers spinning {cfg['work_ns']} ns per "
      f"request on cpu {cfg['server_cpu']}; load on cpu {cfg['load_cpu']}; {m['receive_path']}. Interactive "
      f"{cfg['interactive_rate']:,} req/s, background {cfg['bg_rate']:,} req/s offered (open loop, Poisson, latency "
      f"from the intended send time), {cfg['duration_s']} s measured per scenario after {cfg['warmup_s']} s, "
      f"{cfg['runs']} interleaved rounds; each cell is the median over the rounds.\n")

    rows = {}
    w("| scenario | interactive p50 / p99 / p99.9 µs | p99 per round µs | interactive ok / BUSY / ERROR / lost | "
      "background served / offered req/s | background BUSY req/s | data-plane BUSY/s | XDP BUSY/s | "
      "data plane / workers waiting for the cpu | load avg | notes |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---|---:|---|")
    for key, label in SCENARIOS:
        runs = res["scenarios"].get(key, [])
        if not runs:
            w(f"| {label} | not run | | | | | | | | | |")
            continue
        r = rows[key] = scenario_row(runs)
        lat = r["lat"]
        bg = "-" if key == "alone" else f"{fmt(r['b_served'])} / {fmt(r['b_offered'])}"
        bbusy = "-" if key == "alone" else fmt(r["b_busy"])
        notes = "; ".join(r["flags"] + sorted(r["notes"])) or ""
        w(f"| {label} | {fmt(lat['p50'])} / {fmt(lat['p99'])} / {fmt(lat['p99_9'])} | "
          f"{', '.join(fmt(v) for v in r['p99_runs'])} | {fmt(r['i_ok'])} / {fmt(r['i_busy'])} / {fmt(r['i_err'])} / "
          f"{fmt(r['i_lost'])} | {bg} | {bbusy} | {fmt(r['dp_busy'])}{reasons_txt(r['dp_reasons'])} | {fmt(r['xdp_busy'])} | "
          f"{pct(r['dp_wait'])} / {pct(r['wk_wait'])} | {fmt(r['load'], 1)} | {notes} |")
    w("")

    # Floods: rates and the load side's ceilings, each the median over the flood rounds.
    by_name = {}
    for f in res.get("floods") or []:
        if "flood" in f:
            by_name.setdefault(f["flood"], []).append(f)
    targets = []
    extra = []
    if by_name:
        w("| flood (as fast as the load generator sends; median of rounds) | load side sent/s | replies received/s | "
          "XDP verdicts/s on the appliance end (per round) | frames its receive ring refused/s | load cpu |")
        w("|---|---:|---:|---:|---:|---:|")
        names = {
            "bare_xdp_drop": ("bare XDP_DROP program, every frame (the load side's send ceiling)", "xdp_drops"),
            "reflector": ("XDP_TX reflector answers every request (the load side's send + receive ceiling)", "xdp_tx"),
            "axon_xdp_drop": ("axon: unknown tenant, dropped in XDP (prefix_denied)", "xdp_drops"),
            "axon_xdp_busy": ("axon: tenant over its credits, BUSY from XDP (XDP_TX)", "xdp_tx"),
        }
        agg = {}
        for key, (label, verdict) in names.items():
            fl = [f for f in by_name.get(key, []) if not f.get("skipped")]
            if not fl:
                why = by_name.get(key, [{}])[0].get("skipped", "")
                w(f"| {label} | not run{': ' + why if why else ''} | | | | |")
                continue
            v = lambda f, k: (f.get("veth_xdp_per_s") or {}).get(k)  # noqa: E731
            a = agg[key] = {
                "tx": med([f["load_tx_per_s"] for f in fl]),
                "replies": med([f["replies_per_s"] for f in fl]),
                "busy": med([f["busy_per_s"] for f in fl]),
                "counted": med([v(f, verdict) for f in fl]),
                "counted_runs": [v(f, verdict) for f in fl],
                "ring_full": med([v(f, "drops") for f in fl]),
                "tx_errors": med([v(f, "xdp_tx_errors") for f in fl]),
                "load_cpu": med([f["cpu_s"] / f["wall_s"] for f in fl if f.get("wall_s")]),
                "note": fl[0].get("config_note", ""),
                "verdicts": fl[0].get("busy_verdicts"),
            }
            runs_txt = ", ".join(fmt(x) for x in a["counted_runs"] if x is not None)
            name = "XDP_DROP" if verdict == "xdp_drops" else "XDP_TX"
            errs = f", {fmt(a['tx_errors'])} failed" if verdict == "xdp_tx" and a["tx_errors"] else ""
            w(f"| {label} | {fmt(a['tx'])} | {fmt(a['replies'])} | {name} {fmt(a['counted'])}{errs} ({runs_txt}) | "
              f"{fmt(a['ring_full'])} | {pct(a['load_cpu'])} |")
        w("")
        busy, drop, bare, refl = (agg.get(k) for k in ("axon_xdp_busy", "axon_xdp_drop", "bare_xdp_drop", "reflector"))
        if busy and drop:
            b = busy["busy"]
            notes = []
            if busy["note"]:
                notes.append(busy["note"])
            if not busy["verdicts"]:
                notes.append("this build has no BUSY verdict in XDP: the flood tenant's requests went to the data plane, "
                             f"whose own BUSY came back at {fmt(b)}/s")
            elif busy["counted"] and b < 0.9 * busy["counted"]:
                notes.append(f"XDP counted {fmt(busy['counted'])} BUSY verdicts/s, {fmt(b)}/s reached the load generator")
            if refl and b >= 0.9 * refl["replies"]:
                notes.append(f"limited by the load generator: the reflector, which does nothing else, got {fmt(refl['replies'])}/s back")
            if refl and refl["counted"] and busy["counted"]:
                extra.append(("XDP_TX BUSY verdicts (axon) / XDP_TX answers (reflector), same load side", "(report)",
                              busy["counted"] / refl["counted"], "axon's BUSY path against an XDP program that only "
                              "swaps addresses: the cost of the credit check and the BUSY rewrite"))
            d = drop["counted"] or 0
            targets.append(("XDP_TX BUSY received / axon's XDP_DROP (unknown tenant)", ">= 0.8", b / d if d else None, "; ".join(notes)))
            if bare and bare["counted"]:
                bnotes = list(notes)
                if bare["counted"] >= 0.95 * bare["tx"]:
                    bnotes.append("the bare XDP_DROP rate is the load side's send rate (sender-bound)")
                targets.append(("XDP_TX BUSY received / bare XDP_DROP program", ">= 0.8", b / bare["counted"], "; ".join(bnotes)))

    targets.extend(extra)
    if "alone" in rows and "classes" in rows and rows["alone"]["lat"]["p99"]:
        a, c = rows["alone"], rows["classes"]
        note = "; ".join(c["flags"] + sorted(c["notes"]))
        for name, r in (("alone", a), ("class scheduling", c)):
            if r["i_busy"] or r["i_lost"] or r["i_err"]:
                note = (note + "; " if note else "") + (f"{name}: {fmt(r['i_busy'])} BUSY, {fmt(r['i_err'])} ERROR and "
                                                       f"{fmt(r['i_lost'])} lost of {fmt(r['i_sent'])} interactive requests")
        targets.insert(0, ("interactive p99: classes under background / alone", "<= 2", c["lat"]["p99"] / a["lat"]["p99"], note))
    if "fifo" in rows and "classes" in rows and rows["classes"]["lat"]["p99"]:
        f, c = rows["fifo"], rows["classes"]
        note = "; ".join(sorted(f["notes"] | c["notes"]))
        if f["i_busy"] or f["i_lost"]:
            note = (note + "; " if note else "") + (f"FIFO also refused {fmt(f['i_busy'])} and lost {fmt(f['i_lost'])} of "
                                                   f"{fmt(f['i_sent'])} interactive requests (not in its p99)")
        if c["i_busy"] or c["i_lost"]:
            note = (note + "; " if note else "") + (f"class scheduling refused {fmt(c['i_busy'])} and lost {fmt(c['i_lost'])} "
                                                   f"of {fmt(c['i_sent'])}")
        targets.insert(1, ("interactive p99: FIFO / classes", ">= 5", f["lat"]["p99"] / c["lat"]["p99"], note))
    if all(k in rows and rows[k]["lat"]["p50"] for k in ("alone", "fifo", "classes")):
        a, f, c = rows["alone"]["lat"]["p50"], rows["fifo"]["lat"]["p50"], rows["classes"]["lat"]["p50"]
        targets.append(("interactive p50: classes under background / alone", "(report)", c / a,
                        "medians move little with the host's stalls, unlike p99"))
        targets.append(("interactive p50: FIFO / classes", "(report)", f / c, ""))
    for key in ("alone", "fifo", "classes"):
        r = rows.get(key)
        if r and r["i_sent"]:
            targets.append((f"interactive requests answered (RESPONSE), {dict(SCENARIOS)[key]}", "(report)",
                            r["i_ok"] / r["i_sent"], f"{fmt(r['i_ok'])} of {fmt(r['i_sent'])}; the rest BUSY, ERROR or lost"))
    rs = res.get("respawn") or {}
    if rs.get("skipped"):
        targets.append(("kill -9 -> pool at minimum, median ms", "<= 50", None, rs["skipped"]))
    elif rs:
        warm = rs.get("warm_ms") or []
        note = (f"{rs.get('kills', '?')} kills of a pool at min {rs.get('pool_min', '?')}: the control plane lists the pool "
                f"at its minimum, all warm (range {fmt(min(warm), 1) if warm else '-'}-{fmt(max(warm), 1) if warm else '-'} ms); "
                f"the replacement attached to the data plane after {fmt(rs.get('median_attached_ms'), 1)} ms and served "
                f"a request after {fmt(rs.get('median_served_ms'), 1)} ms (medians)")
        targets.append(("kill -9 -> pool at minimum, median ms", "<= 50", rs.get("median_warm_ms"), note))

    w("| target | goal | this run | met | note |")
    w("|---|---|---:|---|---|")
    def stalled_in(keys):
        # A stall can only lengthen a p99: it decides a ratio only through the scenario whose p99
        # must be small (alone and classes), never through FIFO's queueing of ~100 ms.
        return any(rows[k]["stalled_rounds"] * 2 > rows[k]["rounds"] for k in keys if k in rows)

    for name, goal, value, note in targets:
        if goal == "(report)":
            met = ""
        elif value is None:
            met = "not measured"
        else:
            bound = float(goal.split()[1])
            ok = value <= bound if goal.startswith("<=") else value >= bound
            met = "met" if ok else "**NOT met**"
            if "this build refused" in note or "no BUSY verdict in XDP" in note:
                met = "not judged: this build lacks a feature the target measures"
            elif not ok and "limited by the load generator" in note:
                met = "not judged (NOT met as measured): the BUSY rate is the load generator's receive ceiling"
            elif name.startswith("interactive p99") and stalled_in(["classes", "alone"] if "alone" in name else ["classes"]):
                met = (f"not judged ({'met' if ok else 'NOT met'} as measured): the host stalled the VM in most rounds "
                       "(1 ms or more of send lag for at least 0.5% of sends), which sets these p99")
        w(f"| {name} | {goal} | {fmt(value, 2) if value is not None and value < 100 else fmt(value)} | {met} | {note} |")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
