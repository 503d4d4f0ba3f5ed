#!/usr/bin/env python3
"""bench/overhead/report.py RESULT.json OUT.md: the telemetry overhead summary.

Pairs the runs of each round (stage_latency on and off, same build, same round), takes per round
the ratio on/off of the saturation throughput and of the fixed-rate p50 and p99, and reports each
side's median and the ratios' median, min and max (the spread is the noise of this VM: a ratio
whose min..max straddles 1.0 by more than the target says the run cannot tell). Writes the
summary into RESULT.json ("summary") and the Markdown table to OUT.md."""

import json
import statistics
import sys


def figure(run, step, path):
    node = run.get(step) or {}
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return float(node) if isinstance(node, (int, float)) else None


METRICS = [
    ("saturation RESPONSE/s", "saturation", ("achieved_rps",), "higher"),
    ("p50 at the fixed rate (us)", "latency", ("latency_us", "p50"), "lower"),
    ("p99 at the fixed rate (us)", "latency", ("latency_us", "p99"), "lower"),
]


def spread(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main():
    result_path, md_path = sys.argv[1], sys.argv[2]
    with open(result_path) as f:
        result = json.load(f)
    runs = [r for r in result.get("runs", []) if not r.get("failed")]
    by_round = {}
    for r in runs:
        by_round.setdefault(r["round"], {})["on" if r["stage_latency"] else "off"] = r
    summary = {}
    for name, step, path, better in METRICS:
        on = [v for v in (figure(r, step, path) for r in runs if r["stage_latency"]) if v is not None]
        off = [v for v in (figure(r, step, path) for r in runs if not r["stage_latency"]) if v is not None]
        ratios = []
        for pair in by_round.values():
            if "on" in pair and "off" in pair:
                a, b = figure(pair["on"], step, path), figure(pair["off"], step, path)
                if a is not None and b:
                    ratios.append(a / b)
        summary[name] = {"better": better, "on": spread(on), "off": spread(off), "ratio_on_over_off": spread(ratios)}
    behind = sum(1 for r in runs for s in ("saturation", "latency") if (r.get(s) or {}).get("load_behind"))
    result["summary"] = {"metrics": summary, "rounds_paired": sum(1 for p in by_round.values() if len(p) == 2),
                         "load_behind_steps": behind, "failed_runs": len(result.get("runs", [])) - len(runs)}
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1)

    cfg = result.get("config", {})
    m = result.get("machine", {})
    lines = [
        f"# Telemetry overhead ({result.get('timestamp', '?')}, commit {result.get('commit', '?')})",
        "",
        f"axon over XDP (veth, AF_XDP copy mode), {cfg.get('workers')} echo worker(s), data plane and workers on "
        f"cpu {cfg.get('server_cpu')}, load on cpu {cfg.get('load_cpu')}; `[telemetry] stage_latency` true vs false, "
        f"same build, {cfg.get('rounds')} ABBA round(s). Saturation: {cfg.get('overload_rate')} req/s offered for "
        f"{cfg.get('step_s')} s; latency: {cfg.get('fixed_rate')} req/s for {cfg.get('latency_s')} s. "
        f"Load average {m.get('loadavg_start', '?')} -> {m.get('loadavg_end', '?')}.",
        "",
        "| figure | on (median) | off (median) | ratio on/off: median | min | max | rounds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def fmt(x, digits=0):
        return "-" if x is None else f"{x:,.{digits}f}"

    for name, s in summary.items():
        r = s["ratio_on_over_off"] or {}
        lines.append(
            f"| {name} | {fmt((s['on'] or {}).get('median'), 1)} | {fmt((s['off'] or {}).get('median'), 1)} | "
            f"{fmt(r.get('median'), 3)} | {fmt(r.get('min'), 3)} | {fmt(r.get('max'), 3)} | {r.get('n', 0)} |")
    lines += [
        "",
        "A saturation ratio below 1 is throughput the telemetry costs; a latency ratio above 1 is latency it adds. "
        "The target is a saturation ratio of at least 0.95. "
        f"Steps whose load side fell behind: {behind}; failed runs: {result['summary']['failed_runs']}.",
    ]
    with open(md_path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
