"""Two SWIM networks started apart meet through a few contacts: how long until every view is whole.

SWIM's own simulator (agentp2p/simulation/swim.py, no connections): two
clusters of ``--members`` / 2, each built from scratch round one hub and
kept apart for 200 s, then ``--contacts`` random pairs across discover each
other. Prints, per seed, the seconds until every member's view holds every
member, and the push/pulls it took.

    .venv/bin/python benchmarks/swim_two_networks.py --members 200 --seeds 1-10   # ~2 min

Figures: docs/swim.md, "When." (a join opens no merge window; an exchange
naming many strangers does).
"""

from __future__ import annotations

import argparse
import json
import random

from agentp2p.protocol.swim import State
from agentp2p.simulation.network import NetworkModel
from agentp2p.simulation.swim import SwimSimulation


def _held(sim: SwimSimulation, i: int, members: range) -> int:
    core = sim.cores[i]
    return sum(1 for j in members if j != i and (m := core.member(sim.ids[j])) is not None
               and m.state in (State.ALIVE, State.SUSPECT))


def merge(n: int, seed: int, contacts: int, limit: float = 600.0) -> dict[str, object]:
    half = n // 2
    net = NetworkModel(groups={i: (0 if i < half else 1) for i in range(n)})
    sim = SwimSimulation(n, seed=seed, warm=False, network=net)
    for i in range(n):
        hub = 0 if i < half else half
        if i != hub:
            sim.discover(i, hub)
            sim.discover(hub, i)
    sim.run_until(200.0)
    apart = all(_held(sim, i, range(half)) == half - 1 for i in range(half))
    net.groups.clear()
    before = sum(c.stats.push_pulls for c in sim.cores)
    rng = random.Random(seed)
    for _ in range(contacts):
        a, b = rng.randrange(half), half + rng.randrange(half)
        sim.discover(a, b)
        sim.discover(b, a)
    whole, t, everyone = None, 200.0, range(n)
    while t < 200.0 + limit:
        t += 1.0
        sim.run_until(t)
        if all(_held(sim, i, everyone) == n - 1 for i in everyone):
            whole = t - 200.0
            break
    return {"members": n, "seed": seed, "contacts": contacts, "each_whole_before": apart, "whole_after_s": whole,
            "push_pulls": sum(c.stats.push_pulls for c in sim.cores) - before}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=200)
    p.add_argument("--contacts", type=int, default=1)
    p.add_argument("--seeds", default="1-10", help="a range, e.g. 1-10")
    args = p.parse_args()
    lo, _, hi = args.seeds.partition("-")
    for seed in range(int(lo), int(hi or lo) + 1):
        print(json.dumps(merge(args.members, seed, args.contacts)), flush=True)


if __name__ == "__main__":
    main()
