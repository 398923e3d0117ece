"""Two SWIM networks started apart meet through a few contacts: how long until every view is whole.
Also what a join storm and a few unreachable members cost in push/pulls (``--scenario``).

SWIM's own simulator (agentp2p/simulation/swim.py, no connections): two
clusters of ``--members`` / 2, each built from scratch round one hub and
kept apart for 200 s, then ``--contacts`` random pairs across discover each
other. Prints, per seed, the seconds until every member's view holds every
member, and the push/pulls it took.

    .venv/bin/python benchmarks/swim_two_networks.py --members 200 --seeds 1-10   # ~2 min
    .venv/bin/python benchmarks/swim_two_networks.py --scenario storm --members 200 --newcomers 60 --spread 2
    .venv/bin/python benchmarks/swim_two_networks.py --scenario unreachable --members 60 --unreachable 10

``storm``: one network of ``--members``, then ``--newcomers`` join within
``--spread`` seconds (each through one random member): push/pulls in the
next 60 s, and how many of the old members were in a merge window.
``unreachable``: member 0 cannot reach ``--unreachable`` others (nor they
it); push/pulls from 100 s to 400 s, member 0's and the others' mean.

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


def storm(n: int, newcomers: int, spread: float, seed: int) -> dict[str, object]:
    sim = SwimSimulation(n + newcomers, seed=seed, warm=False)
    for i in range(1, n):
        sim.discover(i, 0)
        sim.discover(0, i)
    sim.run_until(150.0)
    rng = random.Random(seed + 6)
    before = sum(c.stats.push_pulls for c in sim.cores)
    for k in range(newcomers):
        i, via = n + k, rng.randrange(n)
        sim.at(150.0 + spread * k / max(1, newcomers),
               lambda i=i, via=via: (sim.discover(i, via), sim.discover(via, i)))
    sim.run_until(210.0)
    windows = sum(1 for c in sim.cores[:n] if c._merging_until > 150.0)  # noqa: SLF001
    return {"members": n, "newcomers": newcomers, "spread_s": spread, "seed": seed,
            "push_pulls_60s": sum(c.stats.push_pulls for c in sim.cores) - before, "old_members_in_a_window": windows}


class _Blocked(NetworkModel):
    """A network where some pairs cannot reach each other, either way."""

    def __init__(self, blocked: set[tuple[int, int]]) -> None:
        super().__init__()
        self.blocked = blocked

    def delay(self, rng: random.Random, src: int, dst: int) -> float | None:
        if (src, dst) in self.blocked or (dst, src) in self.blocked:
            return None
        return super().delay(rng, src, dst)


def unreachable(n: int, k: int, seed: int) -> dict[str, object]:
    sim = SwimSimulation(n, seed=seed, warm=False, network=_Blocked({(0, j) for j in range(1, k + 1)}))
    hub = n - 1
    for i in range(n - 1):
        sim.discover(i, hub)
        sim.discover(hub, i)
    sim.run_until(100.0)
    before = [c.stats.push_pulls for c in sim.cores]
    sim.run_until(400.0)
    d = [c.stats.push_pulls - b for c, b in zip(sim.cores, before)]
    return {"members": n, "unreachable": k, "seed": seed, "push_pulls_member_0": d[0],
            "push_pulls_others_mean": round(sum(d[1:]) / (n - 1), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", type=int, default=200)
    p.add_argument("--contacts", type=int, default=1)
    p.add_argument("--seeds", default="1-10", help="a range, e.g. 1-10")
    p.add_argument("--scenario", choices=["merge", "storm", "unreachable"], default="merge")
    p.add_argument("--newcomers", type=int, default=60)
    p.add_argument("--spread", type=float, default=2.0)
    p.add_argument("--unreachable", type=int, default=10)
    args = p.parse_args()
    lo, _, hi = args.seeds.partition("-")
    for seed in range(int(lo), int(hi or lo) + 1):
        if args.scenario == "storm":
            r = storm(args.members, args.newcomers, args.spread, seed)
        elif args.scenario == "unreachable":
            r = unreachable(args.members, args.unreachable, seed)
        else:
            r = merge(args.members, seed, args.contacts)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
