"""Idle CPU per node of a whole network in one process, and what wakes it.

N full nodes (records on, one capability each; SWIM on or off) start in one
process, each in its own task and bootstrapped from the last three started.
Once every record is published and ``--settle`` seconds have passed, the
process's CPU (user + system, ``getrusage``) is measured over ``--windows``
consecutive windows of ``--window`` seconds: % of one core, and that divided
by N (the issue #14 target is < 0.5 % per node). A network that has just
formed keeps working for a while (routing-table refreshes, connections,
identify): the windows show it settle.

``--steps`` also counts the scheduler's task steps in the last window, by
task and by where each task waits (a trio instrument: what keeps an idle
node busy).

    .venv/bin/python benchmarks/idle_network.py --nodes 50 --swim off --settle 30 --window 15 --windows 4 [--steps]

A few dozen nodes are all connected to each other, so by default no SWIM probe
pays a dial, unlike at scale, where the connection manager keeps a node at
135-163 connections. ``--high-water H`` lowers its marks (low water: five
sixths of H) so that trimming applies here as it does there, and
``--probe-connected MIN`` (``--roster-every N``) sets SWIM's
probe_connected_min (roster_probe_every): the two ways to probe compared on
real sockets. Each window also gives the dials per node per second.

Each node runs in its own task on purpose: nodes entered one after another
in one task (an ``AsyncExitStack``) nest each node's cancel scopes inside
the previous one's, and trio's deadline bookkeeping then costs more with
every node — an artefact of the harness, not of a node.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agentp2p import _lean_import  # noqa: E402

_lean_import.install(mdns=False)

import trio  # noqa: E402

from agentp2p.application.records.service import RecordService  # noqa: E402
from agentp2p.network.connection_manager import ConnectionsConfig  # noqa: E402
from agentp2p.node import Node  # noqa: E402
from agentp2p.protocol.swim.config import SwimConfig  # noqa: E402
from agentp2p.testing import local_config, wait_until  # noqa: E402
from benchmarks.common import machine  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _Steps(trio.abc.Instrument):
    """Task steps by task name and the frame each task was waiting in."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        co: Any = task.coro
        while getattr(co, "cr_await", None) is not None and getattr(co.cr_await, "cr_frame", None) is not None:
            co = co.cr_await
        frame = co.cr_frame
        where = f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}" if frame is not None else "?"
        self.counts[f"{task.name.split('<')[0][-60:]} @ {where}"] += 1


def _swim_counts(nodes: list[Node]) -> dict[str, int]:
    """SWIM suspicions started, members declared failed and frames sent, summed over ``nodes``."""
    out = {"suspected": 0, "declared_dead": 0, "frames": 0, "dials": 0}
    for n in nodes:
        out["dials"] += n.dialer.stats.dials
        st = n.stats().get("swim") or {}
        core = st.get("core") or {}
        out["suspected"] += core.get("suspected", 0)
        out["declared_dead"] += core.get("declared_dead", 0)
        out["frames"] += sum((st.get("sent") or {}).values())
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    nodes: list[Node] = []
    services: list[RecordService] = []
    stop = trio.Event()

    async def one(i: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        svc = RecordService(f"agent-{i}", capabilities=[f"cap-{i % 10:02d}"])
        swim = SwimConfig(enabled=args.swim == "on", probe_interval=args.swim_period,
                          probe_timeout=args.swim_period / 2, probe_connected_min=args.probe_connected,
                          roster_probe_every=args.roster_every)
        kw: dict[str, Any] = {"swim": swim}
        if args.high_water:
            kw["connections"] = ConnectionsConfig(high_water=args.high_water)
        if nodes:
            kw["bootstrap"] = [n.addrs[0] for n in nodes[-3:]]
        async with Node(local_config(**kw), services=[svc]) as node:
            nodes.append(node)
            services.append(svc)
            task_status.started()
            await stop.wait()

    out: dict[str, Any] = {"machine": machine(), "nodes": args.nodes, "swim": args.swim,
                           "probe_connected_min": args.probe_connected,
                           "roster_probe_every": args.roster_every, "high_water": args.high_water, "windows": []}
    async with trio.open_nursery() as nursery:
        t0 = time.monotonic()
        for i in range(args.nodes):
            await nursery.start(one, i)
        await wait_until(lambda: all(s.published.is_set() for s in services), args.publish_timeout,
                         "every record published")
        out["published_s"] = round(time.monotonic() - t0, 1)
        print(f"{args.nodes} nodes up, every record published after {out['published_s']} s; "
              f"settling {args.settle:g} s", file=sys.stderr, flush=True)
        await trio.sleep(args.settle)
        steps = _Steps()
        for k in range(args.windows):
            if args.steps and k == args.windows - 1:
                trio.lowlevel.add_instrument(steps)
            c0, w0, s0 = _cpu(), time.monotonic(), _swim_counts(nodes)
            await trio.sleep(args.window)
            cpu = 100 * (_cpu() - c0) / (time.monotonic() - w0)
            conns = sorted(len(n.peers()) for n in nodes)
            counts = {k: v - s0[k] for k, v in _swim_counts(nodes).items()}
            row = {"after_s": round(args.settle + k * args.window, 1), "cpu_pct": round(cpu, 1),
                   "per_node_pct": round(cpu / args.nodes, 3), "conns_median": conns[len(conns) // 2],
                   "conns_max": conns[-1],
                   "dials_per_node_s": round(counts.pop("dials") / args.nodes / args.window, 3)}
            if args.swim == "on":
                # Every member is up all along: any suspicion or "failed" is a false one.
                row.update(counts)
            out["windows"].append(row)
            swim = (f"; SWIM false suspicions {row['suspected']}, false failed {row['declared_dead']}, "
                    f"frames sent {row['frames']}" if args.swim == "on" else "")
            print(f"  window {k} (+{row['after_s']:g} s): {row['cpu_pct']}% of a core = {row['per_node_pct']}% "
                  f"per node; connections median {row['conns_median']}, max {row['conns_max']}; "
                  f"{row['dials_per_node_s']} dials per node per second{swim}",
                  file=sys.stderr, flush=True)
        if args.steps:
            trio.lowlevel.remove_instrument(steps)
            out["steps_per_s"] = {k: round(v / args.window, 1) for k, v in steps.counts.most_common(20)}
        stop.set()
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--swim", choices=("on", "off"), default="off")
    p.add_argument("--swim-period", type=float, default=SwimConfig().probe_interval,
                   help="SWIM's probe_interval (probe_timeout is half of it)")
    p.add_argument("--settle", type=float, default=30.0, help="seconds after the last publish before measuring")
    p.add_argument("--window", type=float, default=15.0)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--publish-timeout", type=float, default=300.0)
    p.add_argument("--steps", action="store_true", help="task steps by task in the last window")
    p.add_argument("--probe-connected", type=int, default=SwimConfig().probe_connected_min, metavar="MIN",
                   help="SWIM's probe_connected_min (0: probe the whole roster)")
    p.add_argument("--roster-every", type=int, default=SwimConfig().roster_probe_every, metavar="N",
                   help="SWIM's roster_probe_every (with --probe-connected)")
    p.add_argument("--high-water", type=int, default=0, metavar="H",
                   help="the connection manager's high water (0: the node's default)")
    args = p.parse_args(argv)
    out = trio.run(run, args)
    for name, rate in (out.get("steps_per_s") or {}).items():
        print(f"  {rate:8.1f} steps/s  {name}", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
