"""Run every node benchmark (quick mode by default) and print figures vs targets.

Each benchmark runs in its own subprocess with ``--json`` (so memory and
CPU figures are not polluted by this process), then one markdown table
compares the figures with the product targets.

    .venv/bin/python benchmarks/run_all.py [--full] [--json > results.json]
    .venv/bin/python benchmarks/run_all.py --from-json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PYTHON, machine, md_table

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> dict[str, Any]:
    t = time.monotonic()
    print(f"# running {script} {' '.join(args)} (load {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    out = subprocess.run([PYTHON, str(HERE / script), *args, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        # Keep going: one failed benchmark should not lose the others' figures.
        print(out.stderr[-3000:], file=sys.stderr)
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}", "runs": []}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"#   done in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
    return result


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("meets" if ok else "MISSES")


def table(r: dict[str, Any]) -> str:
    rows: list[list[Any]] = []
    for name, part in r.items():
        if isinstance(part, dict) and "error" in part:
            rows.append([f"{name}: FAILED", part["error"], "", ""])
    try:
        _rows(r, rows)
    except KeyError as exc:  # a failed benchmark left a hole
        rows.append([f"(figures missing: {exc})", "", "", ""])
    return md_table(["figure", "measured", "target", ""], rows)


def _rows(r: dict[str, Any], rows: list[list[Any]]) -> None:
    c, ps, lat, res = r["connect"], r["pubsub"]["runs"], r["latency"]["runs"], r["resources"]
    rows.append(["connect P50 / P99, in one process", f"{c['in_process']['p50_ms']} / {c['in_process']['p99_ms']} ms", "—", ""])
    rows.append(["connect P50 / P99, to a daemon process", f"{c['daemon']['p50_ms']} / {c['daemon']['p99_ms']} ms", "—", ""])
    rows.append(["connect P50, py-libp2p new_host() defaults", f"{c['libp2p_default']['p50_ms']} ms", "—", "250 ms happy-eyeballs wait we avoid"])
    for run in ps:
        cap = round(1000 / run["cpu_ms_per_delivery"]) if run["cpu_ms_per_delivery"] else "—"
        rows.append([
            f"pub/sub {run['nodes']} nodes ({run['procs']} proc), saturating",
            f"{run['delivered_per_s']} deliveries/s total ({run['delivered_per_node_per_s']}/node); "
            f"ratio {run['delivery_ratio']} (dup {run['duplicates']}, lost {run['lost']}); "
            f"{run['cpu_ms_per_delivery']} ms CPU/delivery (≈{cap}/s per core)",
            "> 10,000 msg/s per node",
            verdict(run["delivered_per_node_per_s"] > 10_000),
        ])
    for run in lat:
        rows.append([
            f"latency {run['nodes']} nodes, {run['mode']}",
            f"P50 {run['latency_p50_ms']} ms, P99 {run['latency_p99_ms']} ms; ratio {run['delivery_ratio']}",
            "P99 < 500 ms",
            verdict(run["latency_p99_ms"] < 500),
        ])
    imp = res["import"]
    rows.append(["RSS after import: bare / libp2p / agentp2p.node / lean",
                 f"{imp['bare_python']['rss_mb']} / {imp['libp2p']['rss_mb']} / {imp['agentp2p.node']['rss_mb']} / {imp['agentp2p.node_lean']['rss_mb']} MB", "—", ""])
    d = res["daemon"]
    rows.append(["RSS of one daemon (plain)", f"{d['plain']['rss_mb']} MB (USS {d['plain']['uss_mb']})", "< 50 MB", verdict(d["plain"]["rss_mb"] < 50)])
    rows.append(["RSS of one daemon (lean import)", f"{d['lean']['rss_mb']} MB (USS {d['lean']['uss_mb']})", "< 50 MB", verdict(d["lean"]["rss_mb"] < 50)])
    n = res["nodes"]
    for label in ("plain", "lean"):
        sizes = " / ".join(f"{k}: {v}" for k, v in n[label]["rss_mb"].items())
        rows.append([f"RSS of N nodes in one process ({label})", f"{sizes} MB; {n[label]['mb_per_extra_node']} MB per extra node", "< 50 MB per node",
                     verdict(n[label]["mb_per_extra_node"] < 50)])
    idle = res["idle"]
    rows.append(["idle CPU of a connected daemon", f"{max(idle['cpu_pct'].values())} % of a core (A {idle['cpu_pct']['a']}, B {idle['cpu_pct']['b']}) over {idle['window_s']} s", "< 5 %",
                 verdict(max(idle["cpu_pct"].values()) < 5)])
    rows.append(["idle bandwidth on the connection", f"{idle['tcp_bytes_per_s']} B/s both directions over {idle['window_s']} s (kernel tcp_info of that connection)",
                 "< 1 MB/s", verdict(idle["tcp_bytes_per_s"] < 1_000_000)])
    rows.append(["discovery in a 1000-node network", "not measured here (see SWIM simulator)", "< 10 s", "n/a"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="longer windows and more samples")
    p.add_argument("--json", action="store_true", help="print the raw results instead of the table")
    p.add_argument("--from-json", metavar="FILE", help="only print the table of results saved with --json")
    args = p.parse_args(argv)
    if args.from_json:
        print_report(json.loads(Path(args.from_json).read_text()))
        return
    before = machine()
    results: dict[str, Any] = {}
    results["connect"] = run("connect.py", "--dials", "100" if args.full else "30")
    results["pubsub"] = run("pubsub_bench.py", "--nodes", "2,10,50")
    # Latency below saturation: offered loads well under the one-core capacity.
    results["latency"] = {"runs": []}
    for n, rate in ((2, 50), (10, 5), (50, 0.5)):
        extra = ["--messages", str(max(10, int(rate * (20 if args.full else 8))))]
        got = run("pubsub_bench.py", "--nodes", str(n), "--rate", str(rate), *extra)
        results["latency"]["runs"] += got["runs"]
        if "error" in got:
            results[f"latency_{n}"] = got
    results["resources"] = run("resources.py", "--window", "65" if args.full else "10", "--settle", "5" if args.full else "3")
    results["machine"] = {"before": before, "after": machine()}
    if args.json:
        print(json.dumps(results))
        return
    print_report(results)


def print_report(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"Machine: {m['before']['cpus']} cores, Python {m['before']['python']}, libp2p {m['before']['libp2p']}; "
          f"load average {m['before']['loadavg']} before, {m['after']['loadavg']} after.\n")
    print(table(results))


if __name__ == "__main__":
    main()
