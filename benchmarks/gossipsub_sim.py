"""Gossipsub router benchmark on the deterministic simulator (issue #12).

Runs the real sans-IO router (agentp2p.protocol.gossipsub.core) for N nodes on
virtual time (agentp2p/simulation/gossipsub.py: random graph, ~24 links per
node, lognormal 10-200 ms link latency, 1 s heartbeats with random phase and
jitter, stand-in signatures) and prints, per scenario:

* delivery ratio (eligible honest subscribers that got each message within
  the drain deadline) and latency P50 / P99 from publish to Deliver;
* duplicates per delivery; control and data bytes sent per honest node per
  second (exact protobuf sizes, see gossipsub_metrics.rpc_size);
* honest mesh degrees (min / median / max) and the share of honest mesh
  slots held by Sybils.

Scenarios: RPC loss 0/1/5/10 %; 10 % of honest nodes leaving and coming back;
10 % and 20 % Sybils that (a) drop everything, (b) also spam forged messages,
(c) also send IHAVEs they never honour — scoring off / default_score_params /
defaults + P3.

Usage:  python benchmarks/gossipsub_sim.py                  # 1,000 and 10,000 nodes
        python benchmarks/gossipsub_sim.py --nodes 1000 --seed 7
        python benchmarks/gossipsub_sim.py --quick          # shorter runs, fewer 10k scenarios
        python benchmarks/gossipsub_sim.py --only loss,churn --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from agentp2p.simulation.gossipsub import GossipSimConfig, run_scenario

HEADER = ("| scenario | scoring | delivered | P50 / P99 ms | dup/deliv | ctl / data B/s/node | mesh min/med/max "
          "| Sybil mesh share | attack cost | wall s |")


#: --topology small-world: each node dials its 16 nearest in XOR space and 2
#: at random, and the router's mesh is D = 8 with 7 slots for the nearest
#: (d_near; what docs/scale.md recommends); the Sybils grind IDs next to
#: honest victims' and dial 12 nodes, as in the random topology.
SMALL_WORLD = {"dial": 18, "near_dials": 16, "near_metric": "xor", "sybil_dial": 12}
SMALL_WORLD_MESH = {"d": 8, "d_near": 7}


def plan(n: int, seed: int, quick: bool, only: set[str],
         topology: str = "random", gossip_factor: float | None = None,
         dial: int | None = None) -> list[tuple[str, str, GossipSimConfig]]:
    big = n >= 5000
    if big:  # keep 10,000 tractable: 1 msg/s, short windows
        base = GossipSimConfig(n=n, seed=seed, rate=1.0, warmup=6.0, duration=10.0 if quick else 20.0, drain=5.0)
    else:
        base = GossipSimConfig(n=n, seed=seed, rate=2.0, warmup=10.0, duration=15.0 if quick else 30.0, drain=5.0)
    if topology == "small-world":
        base = replace(base, **SMALL_WORLD, sybil_near=True, params=replace(base.params, **SMALL_WORLD_MESH))
    if dial is not None:
        base = replace(base, dial=dial)
    if gossip_factor is not None:
        base = replace(base, params=replace(base.params, gossip_factor=gossip_factor))
    out: list[tuple[str, str, GossipSimConfig]] = []
    if "loss" in only:
        for loss in (0.0, 0.01, 0.05, 0.10):
            out.append((f"loss {loss:.0%}", "off", replace(base, loss=loss)))
    if "churn" in only:
        dur = max(base.duration, 20.0)
        out.append(("churn 10 %", "off", replace(base, churn=0.10, duration=dur)))
        if not big:
            out.append(("churn 10 %", "default", replace(base, churn=0.10, duration=dur, scoring="default")))
    if "attack" in only:
        # Sybils are there from the start; P3 needs 15 s in the mesh before it counts.
        atk = replace(base, warmup=17.0, duration=base.duration if not big else 10.0)
        shares = (0.2,) if big and quick else (0.1, 0.2)
        modes = ("drop", "spam") if big and quick else ("drop", "spam", "ihave")
        for share in shares:
            for mode in modes:
                scorings = ("off", "default", "p3") if mode == "drop" else ("off", "default")
                if big and quick:
                    scorings = ("off", "p3") if mode == "drop" else ("off", "default")
                for sc in scorings:
                    out.append((f"{share:.0%} Sybils {mode}", sc, replace(atk, sybils=share, sybil_mode=mode,
                                                                         scoring=sc)))
        if not big:  # a better-connected attacker: each Sybil dials 4x as many nodes
            for sc in ("off", "p3"):
                out.append(("20% Sybils drop, 4x links", sc,
                            replace(atk, sybils=0.2, sybil_mode="drop", sybil_dial=4 * base.dial, scoring=sc)))
    return out


def row(name: str, scoring: str, r: dict, cfg: GossipSimConfig) -> str:
    def ms(x: float) -> str:
        return "n/a" if x != x else f"{x * 1000:.0f}"

    cost = ""
    if cfg.sybils and cfg.sybil_mode == "spam":
        cost = f"{r['forged_verified_ps']:.1f} forged msgs verified/node/s"
    elif cfg.sybils and cfg.sybil_mode == "ihave":
        cost = f"{r['iwant_to_sybils_ps']:.1f} IWANT ids to Sybils/node/s"
    return (f"| {name} | {scoring} | {r['ratio']:.2%} | {ms(r['p50'])} / {ms(r['p99'])} | "
            f"{r['dup_per_delivery']:.2f} | {r['ctl_Bps']:,.0f} / {r['data_Bps']:,.0f} | "
            f"{r['mesh_min']}/{r['mesh_p50']:.0f}/{r['mesh_max']} | {r['sybil_mesh_share']:.0%} | {cost} | "
            f"{r['wall_s']:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, action="append", help="network size (repeatable)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="shorter simulated durations, fewer 10k scenarios")
    ap.add_argument("--only", default="loss,churn,attack", help="comma-separated: loss, churn, attack")
    ap.add_argument("--json", help="also write every result (all fields) to this file")
    ap.add_argument("--topology", choices=["random", "small-world"], default="random",
                    help="small-world: near dials in XOR space, D 8 with d_near 7, Sybils with IDs ground near victims")
    ap.add_argument("--rows", help="keep only these rows: 'scenario/scoring' pairs, ';'-separated "
                                   "(e.g. 'loss 0%%/off;20%% Sybils drop/p3')")
    ap.add_argument("--gossip-factor", type=float, default=None,
                    help="the router's gossip_factor (default: the router's, the spec's 0.25; "
                         "a node's config sets 0: docs/pubsub.md)")
    ap.add_argument("--dial", type=int, default=None,
                    help="peers each node dials (default 12: ~24 links; 50: ~100, as a small network where "
                         "SWIM connects every pair)")
    ns = ap.parse_args()
    only = set(ns.only.split(","))
    keep = {tuple(r.split("/", 1)) for r in ns.rows.split(";")} if ns.rows else None
    sizes = ns.nodes or [1000, 10000]
    results = []
    for n in sizes:
        scenarios = plan(n, ns.seed, ns.quick, only, ns.topology, ns.gossip_factor, ns.dial)
        if keep is not None:
            scenarios = [x for x in scenarios if (x[0], x[1]) in keep]
        b = scenarios[0][2] if scenarios else GossipSimConfig(n=n)
        print(f"== N = {n}, {ns.topology}: {b.topics} topic, {b.rate:g} msg/s of {b.msg_size} B, each node dials "
              f"{b.dial} ({b.near_dials} near, ~{2 * b.dial} links), d_near {b.params.d_near}, latency lognormal median {b.latency.median * 1000:.0f} ms "
              f"[{b.latency.low * 1000:.0f}, {b.latency.high * 1000:.0f}] ms, gossip_factor {b.params.gossip_factor:g}, "
              f"seed {ns.seed}", flush=True)
        print(HEADER)
        print("|" + "---|" * (HEADER.count("|") - 1), flush=True)
        wall = time.perf_counter()
        for name, scoring, cfg in scenarios:
            r = run_scenario(cfg)
            print(row(name, scoring, r, cfg), flush=True)
            results.append({"n": n, "scenario": name, "scoring": scoring, "warmup": cfg.warmup,
                            "duration": cfg.duration, "drain": cfg.drain, **r})
            if ns.json:
                with open(ns.json, "w") as fh:
                    json.dump(results, fh, indent=1)
        print(f"(wall time for N={n}: {time.perf_counter() - wall:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
