"""Whole-network figures (issue #14): the topology agentp2p builds today.

    .venv/bin/python benchmarks/scale.py topology [--nodes 1000,10000] [--variants random,plane,plane-near6,plane-near10]
                                                  [--deliver S] [--warmup S] [--seed N] [--json]

``topology``: runs the gossipsub simulator (agentp2p/simulation/gossipsub.py,
the node's own router core on virtual time) until its meshes have formed,
then measures two graphs with agentp2p/simulation/topology.py:

* the **connection graph** (who holds a connection to whom: every node
  dials ``dial`` random others, as bootstrap plus DHT lookups roughly do);
* the **mesh graph** of the topic (the peers each node exchanges full
  messages with: gossipsub's D = 8 mesh, chosen at random among
  connections, then kept by score).

For each: nodes, edges, mean degree, the clustering coefficient (and what a
random graph of that size and degree has), the mean and longest path in
hops, and the degree and path-length histograms. The original design asks
for clustering > 0.5 with short paths; this shows where today's random
choices stand before any neighbour selection changes them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

from agentp2p.simulation.gossipsub import GossipSimConfig, GossipSimulation
from agentp2p.simulation.topology import GraphFigures, figures


def _row(name: str, f: GraphFigures) -> str:
    return (f"  {name:11s} {f.nodes:7,d} {f.edges:9,d} {f.mean_degree:7.1f} {f.clustering:8.3f} "
            f"{f.random_clustering:9.4f} {f.mean_path:7.2f} {f.max_path:5d} {f.reachable:7.1%}")


#: The connection graphs compared: name -> (geometry, near_dials of the 12 dials).
VARIANTS = {
    "random": (False, 0),  # today: independent per-link latency, random dials
    "plane": (True, 0),  # nodes on a plane, latency from distance, still random dials
    "plane-near6": (True, 6),  # half the dials to the nearest nodes, half random
    "plane-near10": (True, 10),  # most dials near, two long links (Watts–Strogatz-like)
}


def topology(n: int, warmup: float, seed: int, variant: str = "random", deliver: float = 0.0) -> dict[str, Any]:
    """The graphs once the meshes formed; with ``deliver`` seconds, also a
    publishing window (2 msg/s) through the same network: delivery and latency."""
    geometry, near = VARIANTS[variant]
    t0 = time.perf_counter()
    cfg = GossipSimConfig(n=n, seed=seed, warmup=warmup, duration=deliver, rate=2.0 if deliver else 0.0,
                          geometry=geometry, near_dials=near)
    sim = GossipSimulation(cfg)
    sim.run_until(warmup)
    topic = sim.topics[0]
    conn = {i: set(sim.adj[i]) for i in range(n)}
    mesh = {}
    for i, core in enumerate(sim.cores):
        if core is not None:
            mesh[i] = {sim.index[p] for p in core.mesh(topic)}
    out: dict[str, Any] = {"nodes": n, "variant": variant, "warmup_s": warmup, "seed": seed,
                           "connections": figures(conn, seed=seed), "mesh": figures(mesh, seed=seed)}
    if deliver:
        sim.start_window()
        sim.run_until(warmup + cfg.duration + cfg.drain)
        summary = sim.summary()
        out["delivery"] = {k: summary[k] for k in ("messages", "ratio", "p50", "p99", "dup_per_delivery")}
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["topology"])
    p.add_argument("--nodes", default="1000", help="comma-separated network sizes")
    p.add_argument("--warmup", type=float, default=30.0, help="virtual seconds for the meshes to form")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--variants", default="random", help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--deliver", type=float, default=0.0, help="also publish for this many seconds (2 msg/s)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    results = [topology(int(n), args.warmup, args.seed, v, args.deliver)
               for n in args.nodes.split(",") for v in args.variants.split(",")]
    if not args.json:
        print("  graph         nodes     edges  degree  cluster.  random C    path   max  reach")
        for r in results:
            print(f"  [{r['variant']}]")
            print(_row("connections", r["connections"]))
            print(_row("mesh", r["mesh"]))
            if "delivery" in r:
                d = r["delivery"]
                print(f"  delivery {d['ratio']:.1%} of {d['messages']} messages, latency P50 {d['p50'] * 1000:.0f} ms "
                      f"/ P99 {d['p99'] * 1000:.0f} ms, {d['dup_per_delivery']:.2f} duplicates per delivery")
            print(f"  (n = {r['nodes']:,}: {r['wall_s']} s of wall time)")
    for r in results:
        print(json.dumps({k: (dataclasses.asdict(v) if isinstance(v, GraphFigures) else v) for k, v in r.items()}))


if __name__ == "__main__":
    main()
