"""Real sockets: how long after a SIGKILL every member says "failed".

N-1 full nodes in this process (SWIM at the default config unless told)
and one in a subprocess, bootstrapped from the first; once the network has
settled, the subprocess gets SIGKILL and we time, from the kill, the first
suspicion and each node's "failed" verdict. ``--no-hint`` turns off the
ConnectionLost hint (a connection that ends without a goodbye makes SWIM
probe that member next period), to show what it buys.

    .venv/bin/python benchmarks/swim_kill.py --nodes 10 --runs 5 [--no-hint] [--period 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentp2p.protocol.swim import SwimConfig  # noqa: E402
from agentp2p.protocol.swim.core import SwimCore  # noqa: E402
from agentp2p.simulation.swim_metrics import percentile  # noqa: E402
from tests.protocol.swim.swimreal import ProcNode, swim_network, wait_until  # noqa: E402


async def one(n: int, cfg: SwimConfig) -> dict[str, float]:
    async with swim_network(n - 1, cfg) as members:
        proc = ProcNode(os.urandom(32), members[0].node.addrs[0], cfg)
        try:
            await proc.start()
            victim = proc.peer_id
            await wait_until(lambda: all((x := m.swim.member(victim)) is not None and x.state == "alive"
                                         for m in members), 60, "the process node alive everywhere")
            killed = trio.current_time()
            proc.kill()
            # The log is filled by each member's event task, after the core's
            # state changed: wait for both (the state alone raced the log).
            await wait_until(lambda: all((x := m.swim.member(victim)) is not None and x.state == "dead"
                                         and any(e.peer_id == victim and e.kind == "failed" for e in m.log)
                                         for m in members), 120, "every node says failed")
            failed = [next(e.at for e in m.log if e.peer_id == victim and e.kind == "failed") - killed
                      for m in members]
            suspect = min(e.at for m in members for e in m.log if e.peer_id == victim and e.kind == "suspect")
            return {"first_suspect": round(suspect - killed, 2), "first_failed": round(min(failed), 2),
                    "all_failed": round(max(failed), 2)}
        finally:
            proc.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--period", type=float, default=SwimConfig().probe_interval)
    p.add_argument("--no-hint", action="store_true")
    args = p.parse_args()
    if args.no_hint:
        SwimCore._on_connection_lost = lambda self, peer: None  # type: ignore[method-assign]
    cfg = SwimConfig(probe_interval=args.period, probe_timeout=args.period / 2)
    rows = []
    for k in range(args.runs):
        r = trio.run(one, args.nodes, cfg)
        rows.append(r)
        print(f"run {k}: {r}", file=sys.stderr, flush=True)
    out = {"nodes": args.nodes, "period": args.period, "hint": not args.no_hint, "runs": rows}
    for key in ("first_suspect", "all_failed"):
        xs = [r[key] for r in rows]
        out[key + "_p50_max"] = [percentile(xs, 50), max(xs)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
