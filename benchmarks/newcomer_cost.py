"""What a newcomer costs the network, and how soon it knows the network (whole-node simulator).

Builds a network (``scale.py whole``'s build), lets it settle, measures a
window with no newcomer, then starts ``--newcomers`` nodes at once and
measures the same windows: every dial in the network by what made it
(``Counters.dials_by``: bootstrap, each SWIM message, SWIM's draws ahead,
each DHT request, the DHT's pings), dials refused, how many members hold
the newcomers, and how much of the network the newcomers' SWIM views hold.

    .venv/bin/python benchmarks/newcomer_cost.py --nodes 500 --swim-start warm
    .venv/bin/python benchmarks/newcomer_cost.py --nodes 2000 --swim-start warm --newcomers 20 --windows 24

Figures: docs/scale.md, "Dials by cause" and "10,000 nodes with SWIM on".
"""

from __future__ import annotations

import argparse
import json
import time

from agentp2p.simulation.whole_node import WholeNodeConfig, WholeNodeSimulation, build


def _by(now: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(now.items()) if v != before.get(k, 0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=500)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--swim-start", choices=["join", "warm"], default="warm")
    p.add_argument("--settle", type=float, default=30.0, help="virtual seconds after the build")
    p.add_argument("--newcomers", type=int, default=1)
    p.add_argument("--window", type=float, default=5.0)
    p.add_argument("--windows", type=int, default=12, help="windows after the newcomers start (6 before)")
    args = p.parse_args()
    wall = time.perf_counter()
    sim = WholeNodeSimulation(WholeNodeConfig(n=args.nodes, seed=args.seed, swim_start=args.swim_start))
    build(sim)
    sim.run_until(sim.now + args.settle)
    print(f"built and settled: {time.perf_counter() - wall:.0f} s of wall time", flush=True)
    c = sim.counters
    rows: list[dict[str, object]] = []
    for phase, count in (("before", 6), ("after", args.windows)):
        dials, refused, by = c.dials, c.refused, dict(c.dials_by)
        new = [sim.add_node() for _ in range(args.newcomers)] if phase == "after" else []
        old = sim.live - set(new)
        for k in range(count):
            sim.run_until(sim.now + args.window)
            row: dict[str, object] = {"phase": phase, "t": (k + 1) * args.window, "dials": c.dials - dials,
                                      "refused": c.refused - refused, "by": _by(c.dials_by, by)}
            if new:
                others = len(sim.live) - 1
                views = sorted(sim.held_live(i) / others for i in new)
                held_by = sorted(sum(1 for j in old if sim.holds(j, i)) for i in new)
                row.update(newcomer_view_min=round(views[0], 4), newcomer_view_p50=round(views[len(views) // 2], 4),
                           held_by_min=held_by[0], members=len(old))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"config": {"nodes": args.nodes, "seed": args.seed, "swim_start": args.swim_start,
                                 "settle": args.settle, "newcomers": args.newcomers, "window": args.window},
                      "wall_s": round(time.perf_counter() - wall, 1), "rows": rows}))


if __name__ == "__main__":
    main()
