"""Kademlia DHT benchmark on the deterministic simulator (issue #13).

Runs the real sans-IO core (agentp2p.protocol.kademlia.core) with the
node's configuration for N nodes on virtual time
(agentp2p/simulation/kademlia.py: per-link latency lognormal median 50 ms
clipped to 10-200 ms, fixed per pair; connections as our node makes them
("node": 2 round trips to dial, none for a new stream, at most 300 per node), as
py-libp2p 0.8.1's multistream client did ("py-libp2p": 6 and 2), or "warm":
every connection free) and prints, per network size:

* **lookup**: FIND_NODE of random keys from random nodes at message loss
  0 / 1 / 5 %: found the closest live node, found all k = 20 closest, hops,
  requests per lookup, latency P50 / P99, lookups cut by the 10 s deadline;
* **newcomer**: capabilities provided by 5 nodes each; a newcomer joins
  through a bootstrap node and, once identify has run, looks one up with
  FIND_PROVIDERS — count 20 (what find_agents asks: the lookup runs to its
  end) and count 1 (stops at the first provider). Latency from its first dial;
* **survival**: provider records under 10 % and 30 % churn per republish
  period (compressed to 600 s), replication 3 / 5 / 10 / 20 side by side:
  requests and bytes per put, keys found at the end of the first period
  (just before the first republish: one set of holders, as old as it gets)
  and over all checkpoints, live replicas left, keys with none.

Usage:  python benchmarks/kademlia_sim.py                       # 1,000 and 10,000 nodes
        python benchmarks/kademlia_sim.py --nodes 1000 --seed 7
        python benchmarks/kademlia_sim.py --nodes 1000 --scenario lookup,newcomer --transport all
        python benchmarks/kademlia_sim.py --nodes 1000 --scenario survival --churn 0.1 --churn 0.3
        python benchmarks/kademlia_sim.py --quick --json out.json   # fewer samples, shorter runs
        python benchmarks/kademlia_sim.py --nodes 200 --nodes 1000 --scenario refresh

* **refresh** (asked for by name): the idle network's lookup requests per
  minute over 40 minutes after the joins (a storm by default: every node
  within N / 100 s; ``--join-rate``),
  with the refresh's jitter and per-check cap (the defaults) and without
  (every stale bucket at once, what the node did before 2026-12-07): the
  peak minute against the mean.

Survival is left out at N >= 5,000 unless asked for by name (each refresh
round of 10,000 nodes is ~3.5 million requests).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from agentp2p.simulation.kademlia import (
    KadSimConfig,
    KadSimulation,
    SurvivalPlan,
    lookup_scenario,
    newcomer_scenario,
    node_kad_config,
    refresh_all_at_once,
    refresh_scenario,
    survival_scenario,
)

SCENARIOS = ("lookup", "newcomer", "survival", "refresh")


def s(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}"


def pct(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:.1%}"


def build(n: int, seed: int, transport: str, settle: float) -> KadSimulation:
    sim = KadSimulation(KadSimConfig(n=n, seed=seed, transport=transport, settle=settle))
    sim.build()
    ts = sim.table_sizes()
    st = sim.net.stats
    print(f"-- N = {n}, transport {transport}: built in {sim.build_seconds:.0f} s wall "
          f"({sim.net.now:.0f} s virtual{', one refresh round' if settle else ''}); routing tables mean "
          f"{sum(ts) / len(ts):.1f} (min {min(ts)}), {st.requests:,} requests, {st.dials:,} dials, "
          f"{st.pruned:,} connections pruned", flush=True)
    return sim


LOOKUP_HEADER = ("| N | transport | loss | lookups | found closest | all 20 closest | hops mean / P99 | "
                 "requests mean / P99 | latency P50 / P99 s | cut at 10 s |")
NEWCOMER_HEADER = ("| N | transport | count | newcomers | found a provider | providers found (of 5) | hops mean | "
                   "requests mean | latency P50 / P99 s |")
SURVIVAL_HEADER = ("| N | churn / period | r | requests / put | bytes / put | found, end of 1st period | found, all "
                   "checkpoints (not found with a live replica) | live replicas, end of 1st period / last checkpoint | "
                   "keys with none (worst checkpoint) | read P50 / P99 s, end of 1st period |")

REFRESH_HEADER = ("| N | joins | refresh spread | peak minute (lookup requests) | mean minute | peak / mean | minutes with "
                  "any | requests / node / s |")


def table(header: str, rows: list[str]) -> None:
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        print(r)
    print(flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, action="append", help="network size (repeatable)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scenario", default="all", help="comma-separated: lookup, newcomer, survival (or all)")
    ap.add_argument("--transport", choices=("node", "py-libp2p", "warm", "both", "all"), default="both",
                    help="connection model for lookup and newcomer: both = node and warm, all = the three "
                         "(survival always uses node)")
    ap.add_argument("--churn", type=float, action="append", help="share replaced per period (repeatable)")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="virtual seconds run after the build (700: every node ran one refresh round)")
    ap.add_argument("--join-rate", type=float, default=100.0,
                    help="refresh: nodes joining per second (100: a join storm; 0.25: as the devnet)")
    ap.add_argument("--quick", action="store_true", help="fewer samples and shorter survival runs")
    ap.add_argument("--json", help="also write every result (all fields) to this file")
    ns = ap.parse_args()
    if not ns.join_rate > 0:
        ap.error("--join-rate must be positive")
    asked = set(SCENARIOS) - {"refresh"} if ns.scenario == "all" else set(ns.scenario.split(","))
    if not asked <= set(SCENARIOS):
        ap.error(f"unknown scenario in {ns.scenario!r}")
    sizes = ns.nodes or [1000, 10000]
    transports = {"both": ["node", "warm"], "all": ["node", "py-libp2p", "warm"]}.get(ns.transport, [ns.transport])
    churns = ns.churn or [0.1, 0.3]
    results: list[dict[str, Any]] = []

    def save(kind: str, **fields: Any) -> None:
        results.append({"scenario": kind, "seed": ns.seed, **fields})
        if ns.json:
            with open(ns.json, "w") as fh:
                json.dump({"cpus": os.cpu_count(), "loadavg": os.getloadavg(), "results": results}, fh,
                          indent=1, default=str)

    for n in sizes:
        big = n >= 5000
        wall = time.perf_counter()
        print(f"== N = {n}, seed {ns.seed}", flush=True)
        lookups = (200 if big else 300) if ns.quick else 500
        newcomers = 50 if ns.quick else (100 if big else 200)
        lk_rows: list[str] = []
        nc_rows: list[str] = []
        if asked & {"lookup", "newcomer"}:
            for tr in transports:
                sim = build(n, ns.seed, tr, ns.settle)
                if "lookup" in asked:
                    res = lookup_scenario(sim, lookups=lookups)
                    for label, r in res.items():
                        lk_rows.append(
                            f"| {n:,} | {tr} | {r['loss']:.0%} | {r['count']} | {pct(r['success'])} | "
                            f"{pct(r['exact'])} | {r['hops_mean']:.2f} / {r['hops_p99']:.0f} | "
                            f"{r['requests_mean']:.1f} / {r['requests_p99']:.0f} | {s(r['p50'])} / {s(r['p99'])} | "
                            f"{r['timed_out']} |")
                        save("lookup", n=n, transport=tr, settle=ns.settle, label=label, **r)
                if "newcomer" in asked:
                    res = newcomer_scenario(sim, newcomers=newcomers)
                    put = res.pop("provide")
                    print(f"   provide ({tr}): {put['count']} puts, {put['requests_mean']:.1f} requests and "
                          f"{put['bytes_per_put'] / 1000:.1f} kB per put, P50 / P99 {s(put['p50'])} / "
                          f"{s(put['p99'])} s", flush=True)
                    save("provide", n=n, transport=tr, settle=ns.settle, **put)
                    for label, r in res.items():
                        nc_rows.append(
                            f"| {n:,} | {tr} | {r['providers_count']} | {r['count']} | {pct(r['success'])} | "
                            f"{r['found_mean']:.2f} | {r['hops_mean']:.2f} | {r['requests_mean']:.1f} | "
                            f"{s(r['p50'])} / {s(r['p99'])} |")
                        save("newcomer", n=n, transport=tr, settle=ns.settle, label=label, **r)
                print(f"   ({time.perf_counter() - wall:.0f} s wall so far)", flush=True)
            if lk_rows:
                table(LOOKUP_HEADER, lk_rows)
            if nc_rows:
                table(NEWCOMER_HEADER, nc_rows)
        if "survival" in asked and (not big or ns.scenario != "all"):
            sv_rows: list[str] = []
            plan = SurvivalPlan(keys_per=100 if ns.quick else 200, periods=1 if ns.quick else 2)
            for churn in churns:
                p = SurvivalPlan(**{**plan.__dict__, "churn": churn})
                res = survival_scenario(KadSimConfig(n=n, seed=ns.seed), p)
                print(f"   churn {churn:.0%}: {res['replaced']} nodes replaced over {p.periods} x {p.period:.0f} s, "
                      f"{res['requests_per_node_s']:.2f} requests / node / s (refresh, republish, joins, reads), "
                      f"{res['wall_s']:.0f} s wall", flush=True)
                for r, row in res["by_r"].items():
                    sv_rows.append(
                        f"| {n:,} | {churn:.0%} | {r} | {row['requests_per_put']:.1f} | "
                        f"{row['bytes_per_put'] / 1000:.1f} kB | {pct(row['found_first_end'])} "
                        f"({row['lost_first_end']} lost) | {pct(row['found_all'])} ({row['not_found_with_holders']}) | "
                        f"{row['holders_first_end']:.1f} / {row['holders_last']:.1f} | {row['no_holder_max']} | "
                        f"{s(row['read_p50_first_end'])} / {s(row['read_p99_first_end'])} |")
                save("survival", **res)
            table(SURVIVAL_HEADER, sv_rows)
        elif "survival" in asked:
            print(f"   (survival left out at N = {n:,}: ask for it by name, --scenario survival)")
        if "refresh" in asked:
            rf_rows: list[str] = []
            node = node_kad_config()
            forms = {"jitter 25 %, 2 per check (now)": node,
                     "none, all at once (before)": refresh_all_at_once(node)}
            for form, kad in forms.items():
                sim = KadSimulation(KadSimConfig(n=n, seed=ns.seed, join_rate=ns.join_rate, kad=kad))
                sim.build()
                r = refresh_scenario(sim, duration=2400.0, window=60.0)
                busy = sum(1 for x in r["per_window"] if x)
                rf_rows.append(f"| {n:,} | {ns.join_rate:g} / s | {form} | {r['peak']:,} | {r['mean']:,.0f} | {r['peak_over_mean']:.1f} | "
                               f"{busy} of {len(r['per_window'])} | {r['per_node_s']:.3f} |")
                save("refresh", form=form, **r)  # r holds n
            table(REFRESH_HEADER, rf_rows)
        print(f"(wall time for N={n}: {time.perf_counter() - wall:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
