#!/usr/bin/env python3
"""bench/report.py DIR: turns DIR/raw.json (written by bench/run.sh) into

  DIR/suite.json   raw.json plus what is derived from it: per-peer saturation (and whether it is
                   a measured figure or a lower bound), the ratios between peers of the same run,
                   and the issue's targets, met or not;
  DIR/summary.md   the tables, with the machine's load and the layout;
  DIR/*.svg        plots, rendered with gnuplot (Debian's gnuplot-nox): throughput and latency
                   percentiles against offered load per peer, and the latency CDF at the fixed rate.

Ratios are taken within the run only (axon / peer, same machine, same minutes), because this VM's
absolute figures swing 2x between runs; bench/compare checks them against a stored baseline.
A step whose load side fell behind its schedule never provides a figure: it ends the sweep, and
the peer's saturation is then reported as a lower bound.
"""
import json
import math
import os
import shutil
import subprocess
import sys

PEER_NAMES = {
    "reflector": "XDP_TX reflector (ceiling)",
    "xdp": "axon, XDP + AF_XDP",
    "uring": "axon, io_uring",
    "dpdk": "axon, DPDK (net_af_xdp)",
    "baseline": "baseline: epoll + Unix-socket workers",
    "nats": "NATS (fresh server)",
    "nats_long": "NATS (same server, second sweep)",
    "nats_asap": "NATS, send asap (latency setting)",
    "zmq": "ZeroMQ ROUTER/DEALER",
}
AXON = ("xdp", "uring", "dpdk")


def verdict(step, max_steal):
    """As bench/run.sh's step_verdict."""
    if step.get("load_behind"):
        return "behind"
    sent = max(step.get("sent", 0), 1)
    not_ok = step.get("lost", 0) + step.get("busy", 0) + step.get("errors", 0)
    if step["achieved_rps"] < 0.9 * step["offered_rps"] or not_ok > 0.05 * sent:
        return "disturbed" if max((step.get("steal") or {"x": 0}).values()) > max_steal else "saturated"
    return "ok"


def per_request_ns(cpu_s, n):
    return cpu_s * 1e9 / n if n else None


def analyse_peer(tag, raw, short, max_steal):
    """Saturation and its kind from the sweep, plus per-step figures."""
    if raw.get("skipped"):
        return {"skipped": raw["skipped"]}
    steps = []
    for s in raw.get("sweep", []):
        cpu = s.get("cpu", {})
        # Replies of any age per second of the window: what the peer put out. At overload a peer
        # with deep queues (kernel socket buffers) answers late rather than not at all, so in
        # the short suite's single overload step this, not the on-time rate, is its capacity.
        served_any = (s.get("responses", 0) + s.get("late", 0)) / s["measured_s"] if s.get("measured_s") else 0.0
        steps.append({
            "offered_rps": s["offered_rps"],
            "achieved_rps": s["achieved_rps"],
            "served_any_rps": served_any,
            "verdict": verdict(s, max_steal),
            "load_behind_reason": s.get("load_behind_reason", ""),
            "p50_us": s["latency_us"]["p50"],
            "p99_us": s["latency_us"]["p99"],
            "p99_9_us": s["latency_us"]["p99_9"],
            "lag_p99_us": s["send_lag_us"]["p99"],
            "lost": s.get("lost", 0),
            # Requests the link dropped: the load side's veth refused the frame because the
            # peer's end had a full receive ring (256 frames), e.g. while a host stall stopped it.
            "link_dropped": s.get("send_dropped", 0) + (s.get("xsk") or {}).get("kicks_busy", 0),
            "stall_share": s.get("stall_share", 0.0),
            "stalled": bool(s.get("stalled")),
            "steal": s.get("steal", {}),
            "attempts": s.get("attempts", 1),
            "peer_ns_per_req": per_request_ns(cpu.get("peer_s", 0), s.get("rx_packets", 0)),
            "load_ns_per_req": per_request_ns(cpu.get("load_s", 0), s.get("tx_packets", 0)),
        })
    good = [s for s in steps if s["verdict"] != "behind"]
    key = "served_any_rps" if short else "achieved_rps"
    # What a peer served in time is served, whoever lagged: a step whose load side fell behind
    # still bounds the peer's capacity from below (only its latency is the load side's).
    sat = max((s[key] for s in steps), default=0.0)
    lower_bound = not steps or steps[-1]["verdict"] != "saturated" or short
    last = steps[-1] if steps else None
    if not steps:
        kind = "no step ran"
    elif short:
        kind = ("replies/s at an overload step (any age)" if last["verdict"] != "behind"
                else "lower bound: load side fell behind")
    elif last["verdict"] == "saturated":
        kind = "measured"
    elif last["verdict"] == "disturbed":
        kind = (f"lower bound: the host took the vCPUs (steal) during the last steps, up to "
                f"{last['offered_rps']:,.0f}/s")
    elif last["verdict"] == "behind":
        kind = f"lower bound: the load side fell behind at {last['offered_rps']:,.0f}/s ({last['load_behind_reason']})"
    else:
        kind = f"lower bound: the sweep ended at {last['offered_rps']:,.0f}/s unsaturated"
    at_sat = max(good, key=lambda s: s["achieved_rps"]) if good else None
    fixed = {}
    for payload, f in (raw.get("fixed") or {}).items():
        if f.get("skipped"):
            fixed[payload] = {"skipped": f["skipped"]}
            continue
        fixed[payload] = {
            "offered_rps": f["offered_rps"],
            "achieved_rps": f["achieved_rps"],
            "p50_us": f["latency_us"]["p50"],
            "p99_us": f["latency_us"]["p99"],
            "p99_9_us": f["latency_us"]["p99_9"],
            "lag_p99_us": f["send_lag_us"]["p99"],
            "lost": f.get("lost", 0),
            "load_behind": bool(f.get("load_behind")),
            "stall_share": f.get("stall_share", 0.0),
            "stalled": bool(f.get("stalled")),
            "steal": f.get("steal", {}),
            "attempts": f.get("attempts", 1),
            "load_behind_reason": f.get("load_behind_reason", ""),
            "cdf": f["latency_us"].get("cdf", []),
        }
    out = {"saturation_rps": sat, "saturation_kind": kind, "lower_bound": lower_bound, "steps": steps, "fixed": fixed,
           "at_saturation": at_sat}
    if "server_age_s" in raw:
        out["server_age_s"] = raw["server_age_s"]
    return out


def ratio(a, b):
    return a / b if a and b else None


def unjudgeable(peers):
    """Why each ratio between two measured peers is not a figure of them, if it is not: a step
    whose load side fell behind its schedule measured the load generator (its sends went out in
    bursts after a stall), so neither the saturation nor the latency of that step is the peer's.
    Keys are ratio names as derive() makes them ("saturation.xdp/reflector"), values the reason."""
    def saturation_reason(tag):
        steps = peers.get(tag, {}).get("steps") or []
        if steps and steps[-1]["verdict"] == "behind":
            return f"{tag}'s last load step: the load side fell behind ({steps[-1]['load_behind_reason']})"
        return None

    def fixed_reason(tag):
        f = (peers.get(tag, {}).get("fixed") or {}).get("64") or {}
        if f.get("load_behind"):
            return f"{tag}'s fixed-rate step: the load side fell behind ({f['load_behind_reason']})"
        return None

    out = {}
    live = [t for t, p in peers.items() if not p.get("skipped")]
    for a in live:
        for b in live:
            if a == b:
                continue
            why = saturation_reason(a) or saturation_reason(b)
            if why:
                out[f"saturation.{a}/{b}"] = why
            why = fixed_reason(a) or fixed_reason(b)
            if why:
                out[f"fixed_p50.{a}/{b}"] = out[f"fixed_p99.{a}/{b}"] = why
    return out


def derive(raw):
    short = raw.get("mode") == "short"
    max_steal = (raw.get("config") or {}).get("max_steal", 0.02)
    peers = {tag: analyse_peer(tag, p, short, max_steal) for tag, p in (raw.get("peers") or {}).items()}
    live = {t: p for t, p in peers.items() if not p.get("skipped")}

    def sat(t):
        return live[t]["saturation_rps"] if t in live else None

    def fixed64(t, key):
        f = live.get(t, {}).get("fixed", {}).get("64")
        if not f or f.get("skipped") or f.get("load_behind"):
            return None
        return f[key]

    def stalled64(t):
        f = live.get(t, {}).get("fixed", {}).get("64") or {}
        return bool(f.get("stalled"))

    def lb(t):
        return bool(live.get(t, {}).get("lower_bound"))

    nats_rows = ("nats", "nats_long", "nats_asap")
    nats_best = max([x for x in (sat(t) for t in nats_rows) if x], default=None)
    # NATS's best latency at the fixed rate: whichever of its settings did best.
    nats_p99 = min([x for x in (fixed64(t, "p99_us") for t in nats_rows) if x], default=None)
    nats_p50 = min([x for x in (fixed64(t, "p50_us") for t in nats_rows) if x], default=None)
    ratios = {}
    for a in AXON:
        if a not in live:
            continue
        for b, value in (("reflector", sat("reflector")), ("baseline", sat("baseline")), ("nats", nats_best),
                         ("zmq", sat("zmq"))):
            r = ratio(sat(a), value)
            if r is not None:
                ratios[f"saturation.{a}/{b}"] = r
        for b in ("baseline", "reflector", "nats", "zmq"):
            for key in ("p50_us", "p99_us"):
                other = {"p50_us": nats_p50, "p99_us": nats_p99}[key] if b == "nats" else fixed64(b, key)
                r = ratio(fixed64(a, key), other)
                if r is not None:
                    ratios[f"fixed_{key[:-3]}.{a}/{b}"] = r
    # The suite's own health: how close the baseline runs to the ceiling.
    r = ratio(sat("baseline"), sat("reflector"))
    if r is not None:
        ratios["saturation.baseline/reflector"] = r

    targets = []

    def target(name, value, goal, ok, unsure=None):
        # unsure: why this run cannot judge the target although it has a value (a figure that is
        # only a lower bound where it matters, or a p99 that is the host's stall).
        targets.append({"target": name, "value": value, "goal": goal, "unsure": unsure,
                        "met": None if value is None or unsure else bool(ok(value))})

    nats_best_tag = max((t for t in nats_rows if sat(t)), key=lambda t: sat(t), default=None)
    nats_lb = nats_best_tag is not None and lb(nats_best_tag)
    stall_note = "p99 at the fixed rate was hit by a host stall (†)"

    target("axon xdp saturation, req/s", sat("xdp"), ">= 500,000", lambda v: v >= 500_000,
           "axon's figure is a lower bound" if lb("xdp") and (sat("xdp") or 0) < 500_000 else None)
    target("axon xdp / NATS best saturation", ratio(sat("xdp"), nats_best), ">= 3", lambda v: v >= 3,
           "NATS's figure is only a lower bound (its driver fell behind first)" if nats_lb else None)
    target("axon xdp / baseline saturation", ratio(sat("xdp"), sat("baseline")), ">= 3", lambda v: v >= 3,
           "the baseline's figure is only a lower bound" if lb("baseline") else None)
    target("axon xdp / reflector saturation", ratio(sat("xdp"), sat("reflector")), ">= 0.5", lambda v: v >= 0.5,
           "axon's figure is a lower bound" if lb("xdp") and (ratio(sat("xdp"), sat("reflector")) or 0) < 0.5 else None)
    xdp_nats_p99 = ratio(fixed64("xdp", "p99_us"), nats_p99)
    target("axon xdp p99 / NATS best p99 at the fixed rate", xdp_nats_p99, "<= 0.1", lambda v: v <= 0.1,
           stall_note if stalled64("xdp") or any(stalled64(t) for t in nats_rows) else None)
    target("axon xdp p99 / baseline p99 at the fixed rate",
           ratio(fixed64("xdp", "p99_us"), fixed64("baseline", "p99_us")), "<= 0.5", lambda v: v <= 0.5,
           stall_note if stalled64("xdp") or stalled64("baseline") else None)
    target("axon xdp p99 at the fixed rate, µs", fixed64("xdp", "p99_us"), "<= 50", lambda v: v <= 50,
           stall_note if stalled64("xdp") else None)
    return peers, ratios, targets


# ---- Markdown ------------------------------------------------------------------------------------

def f_rate(v):
    return "-" if v is None else f"{v:,.0f}"


def f_us(v):
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def f_ratio(v):
    return "-" if v is None else f"{v:.2f}"


STALL = "†"


def p99_text(step):
    return f_us(step["p99_us"]) + (STALL if step.get("stalled") else "")


def markdown(raw, peers, ratios, targets, plots):
    m = raw["machine"]
    lay = raw["layout"]
    cfg = raw["config"]
    lines = [f"# axon benchmark suite, {raw['timestamp']} ({raw['mode']})", ""]
    lines += [f"Commit `{raw.get('commit', '?')}`; {m['cpu_model']}, {m['cpus']} vCPUs, Linux {m['kernel']}.",
              f"Load average at the start `{m['loadavg_start']}`, at the end `{m['loadavg_end']}` "
              "(other work on the machine shares both vCPUs: compare peers within this run, quote ratios).",
              "Over the run, per cpu: " + ", ".join(
                  f"{c} busy {v['busy']:.0%} (all tasks), taken by the hypervisor (steal) {v['steal']:.0%}"
                  for c, v in (m.get("cpu_shares") or {}).items()) + ".",
              f"Layout: every peer (server/front end and {lay['workers']} worker process(es)) on cpu {lay['server_cpu']} "
              f"at {lay['peer_sched']}; the load on cpu {lay['load_cpu']} ({lay['load_sched']}); "
              f"receive path: {lay['receive_path']}. Wall time {raw['wall_s']} s.", ""]
    fixed_rate = cfg.get("fixed_rate")
    lines += ["## End to end", "",
              f"Saturation from an offered-load sweep (open loop, Poisson); latency at the fixed rate "
              f"{f_rate(fixed_rate)} req/s for every peer (64-byte payload). A step whose load side fell "
              f"behind (send lag p90 above {cfg['max_lag_us']} µs) gives no latency figure, ends the sweep, and "
              "makes the saturation a lower bound (what was served still counts).", "",
              "| peer | saturation req/s | vs reflector | vs baseline | kind | p50 / p99 / p99.9 µs at the fixed rate | "
              "load lag p99 µs | peer CPU ns/req at sat. | load CPU ns/req at sat. |",
              "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    ref = peers.get("reflector", {}).get("saturation_rps")
    base = peers.get("baseline", {}).get("saturation_rps")
    for tag, p in peers.items():
        name = PEER_NAMES.get(tag, tag)
        if p.get("skipped"):
            lines.append(f"| {name} | skipped: {p['skipped']} | | | | | | | |")
            continue
        f = p["fixed"].get("64") or {}
        if f.get("skipped"):
            lat = f"skipped: {f['skipped']}"
            lag = "-"
        elif f:
            lat = f"{f_us(f['p50_us'])} / {p99_text(f)} / {f_us(f['p99_9_us'])}"
            if f["load_behind"]:
                lat = f"load side fell behind ({f['load_behind_reason']})"
            lag = f_us(f["lag_p99_us"])
        else:
            lat, lag = "-", "-"
        at = p.get("at_saturation") or {}
        age = f" (server up {p['server_age_s']} s)" if "server_age_s" in p else ""
        lines.append(f"| {name}{age} | {f_rate(p['saturation_rps'])} | {f_ratio(ratio(p['saturation_rps'], ref))} | "
                     f"{f_ratio(ratio(p['saturation_rps'], base))} | {p['saturation_kind']} | {lat} | {lag} | "
                     f"{f_rate(at.get('peer_ns_per_req'))} | {f_rate(at.get('load_ns_per_req'))} |")
    lines += ["", f"{STALL} a host stall of the VM (steal) delayed at least 0.5% of this step's sends by 1 ms or more "
              "(after the retries): its p99 and above show the host's stall, for the peer and the load alike.", ""]
    lines += ["", "### Targets (issue 17)", "", "| target | goal | this run | met |", "|---|---|---:|---|"]
    for t in targets:
        v = t["value"]
        shown = "-" if v is None else (f_rate(v) if v >= 1000 else f"{v:.3g}")
        if t.get("unsure") and t["value"] is not None:
            met = f"not judged: {t['unsure']}"
        else:
            met = "not measured" if t["met"] is None else ("met" if t["met"] else "**NOT met**")
        lines.append(f"| {t['target']} | {t['goal']} | {shown} | {met} |")
    lines += ["", "### Ratios (what bench/compare checks)", "", "| ratio | value |", "|---|---:|"]
    for k in sorted(ratios):
        lines.append(f"| `{k}` | {ratios[k]:.3f} |")

    payload_rows = []
    for tag, p in peers.items():
        if p.get("skipped"):
            continue
        for payload, f in sorted(p["fixed"].items(), key=lambda kv: int(kv[0])):
            if f.get("skipped"):
                payload_rows.append(f"| {PEER_NAMES.get(tag, tag)} | {payload} | skipped: {f['skipped']} | | |")
            else:
                note = f" (load side fell behind: {f['load_behind_reason']})" if f["load_behind"] else ""
                payload_rows.append(f"| {PEER_NAMES.get(tag, tag)} | {payload} | {f_rate(f['achieved_rps'])}{note} | "
                                    f"{f_us(f['p50_us'])} / {p99_text(f)} | {f['lost']} |")
    if payload_rows:
        lines += ["", "### Payload sweep at the fixed rate", "",
                  "| peer | payload B | served req/s | p50 / p99 µs | lost |", "|---|---:|---:|---:|---:|"]
        lines += payload_rows

    lines += ["", "### Sweep steps", "",
              "| peer | offered | served | p50 µs | p99 µs | p99.9 µs | lost (of which at the link) | load lag p99 µs | steal load/peer cpu | step |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for tag, p in peers.items():
        for s in p.get("steps", []):
            why = f" ({s['load_behind_reason']})" if s["verdict"] == "behind" else ""
            steal = "/".join(f"{v:.0%}" for v in s["steal"].values()) if s["steal"] else "-"
            lines.append(f"| {tag} | {f_rate(s['offered_rps'])} | {f_rate(s['achieved_rps'])} | {f_us(s['p50_us'])} | "
                         f"{p99_text(s)} | {f_us(s['p99_9_us'])} | {s['lost']} ({s['link_dropped']}) | {f_us(s['lag_p99_us'])} | {steal} | "
                         f"{s['verdict']}{why} |")

    x = raw.get("xdp_drop") or {}
    if x.get("bare_xdp_drop"):
        lines += ["", "## Malformed traffic at the XDP front door", "",
                  "| program | drops/s | sender pps |", "|---|---:|---:|",
                  f"| bare XDP_DROP | {f_rate(x['bare_xdp_drop']['drops_per_s'])} | {f_rate(x['bare_xdp_drop']['sender_pps'])} |"]
        if x.get("axon", {}).get("drops_per_s") is not None:
            lines.append(f"| axon front door | {f_rate(x['axon']['drops_per_s'])} ({f_ratio(x.get('ratio'))}x bare) | "
                         f"{f_rate(x['axon']['sender_pps'])} |")
    ring = raw.get("ring") or {}
    if ring.get("markdown"):
        lines += ["", "## Shared-memory rings (axon-bench-ring)", "", ring["markdown"]]
    elif ring.get("skipped"):
        lines += ["", f"Rings: {ring['skipped']}."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{title}]({name})" for name, title in plots]
    return "\n".join(lines) + "\n"


# ---- plots (gnuplot) -----------------------------------------------------------------------------

def plots(outdir, peers):
    if not shutil.which("gnuplot"):
        print("report.py: gnuplot not found (apt-get install gnuplot-nox): no plots", file=sys.stderr)
        return []
    data = os.path.join(outdir, "plot-data")
    os.makedirs(data, exist_ok=True)
    series = []
    for tag, p in peers.items():
        if p.get("skipped") or not p.get("steps"):
            continue
        path = os.path.join(data, f"{tag}.dat")
        with open(path, "w") as fh:
            fh.write("# offered achieved p50_us p99_us p99_9_us\n")
            for s in p["steps"]:
                if s["verdict"] == "behind":
                    continue  # no figure from a step whose load side fell behind
                fh.write(f"{s['offered_rps']} {s['achieved_rps']} {s['p50_us']} {s['p99_us']} {s['p99_9_us']}\n")
        series.append((tag, path))
    cdfs = []
    for tag, p in peers.items():
        f = (p.get("fixed") or {}).get("64") if not p.get("skipped") else None
        if not f or f.get("skipped") or f.get("load_behind") or not f.get("cdf"):
            continue
        path = os.path.join(data, f"{tag}-cdf.dat")
        with open(path, "w") as fh:
            for pct, us in f["cdf"]:
                fh.write(f"{max(us, 0.5)} {pct / 100.0}\n")
        cdfs.append((tag, path))
    made = []
    common = ('set terminal svg size 900,560 dynamic enhanced font "sans,12" background "white"\n'
              'set key outside right top\nset grid\n')

    def render(name, title, body):
        script = os.path.join(data, name.replace(".svg", ".gp"))
        with open(script, "w") as fh:
            fh.write(common + f'set output "{os.path.join(outdir, name)}"\nset title "{title}"\n' + body)
        r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
        if r.returncode == 0:
            made.append((name, title))
        else:
            print(f"report.py: gnuplot failed for {name}: {r.stderr.strip()}", file=sys.stderr)

    def plot_cmd(items, using, fmt):
        return ", \\\n  ".join(f'"{path}" using {using} with linespoints title "{PEER_NAMES.get(tag, tag)}"'
                               for tag, path in items) + "\n"

    if series:
        top = max(max(s["offered_rps"] for s in p["steps"]) for p in peers.values() if p.get("steps"))
        render("throughput.svg", "Served against offered load (64 B echo)",
               'set xlabel "offered, req/s"\nset ylabel "served (RESPONSE within the timeout), req/s"\n'
               'set format x "%.0s%c"\nset format y "%.0s%c"\n'
               f'set xrange [0:{top * 1.05}]\nset yrange [0:{top * 1.05}]\n'
               f'plot x title "offered = served" with lines dt 2 lc rgb "gray", \\\n  ' +
               plot_cmd(series, "1:2", ""))
        for col, pct in ((3, "p50"), (4, "p99"), (5, "p99.9")):
            render(f"latency_{pct.replace('.', '_')}.svg", f"Latency {pct} against offered load (from the intended send time)",
                   'set xlabel "offered, req/s"\nset ylabel "latency, µs"\nset logscale y\n'
                   'set format x "%.0s%c"\n' + "plot " + plot_cmd(series, f"1:{col}", ""))
    if cdfs:
        render("cdf.svg", "Latency CDF at the fixed rate (64 B)",
               'set xlabel "latency, µs"\nset ylabel "fraction of requests"\nset logscale x\nset yrange [0:1]\n'
               "set key right bottom inside\n" + "plot " + plot_cmd(cdfs, "1:2", ""))
    return made


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: report.py DIR   (DIR/raw.json from bench/run.sh)")
    outdir = sys.argv[1]
    with open(os.path.join(outdir, "raw.json")) as fh:
        raw = json.load(fh)
    peers, ratios, targets = derive(raw)
    unjudged = unjudgeable(peers)
    made = plots(outdir, peers)
    suite = dict(raw)
    suite["derived"] = {"peers": peers, "targets": targets}
    suite["ratios"] = ratios
    # Ratios resting on a step whose load side fell behind: no figure of the peers (the gate
    # neither passes nor fails them; bench/compare says so).
    suite["unjudgeable"] = unjudged
    with open(os.path.join(outdir, "suite.json"), "w") as fh:
        json.dump(suite, fh, indent=1)
    with open(os.path.join(outdir, "summary.md"), "w") as fh:
        fh.write(markdown(raw, peers, ratios, targets, made))
    print(f"report.py: {outdir}/summary.md, suite.json, {len(made)} plot(s)")


if __name__ == "__main__":
    main()
