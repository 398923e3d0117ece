"""How long does a newcomer take to find agents by capability?

For each network size N: N agents (each with a RecordService offering one of
``--caps`` capabilities, round-robin) are started in ``--procs`` worker
processes, all bootstrapping from one node in this process; in each worker
they join one after another, each once the previous one has published its
record (DHT put + capability providers). Then a
newcomer joins knowing only the bootstrap node and looks up every capability
once, in turn. Reported per N:

* ``setup_s``   — until every agent had published and no agent had run a
                  publish round for 5 s (context, not the figure);
* ``join_s``    — newcomer start until its routing table is non-empty;
* ``first_s``   — the newcomer's first ``find_agents`` (cold: empty cache,
                  small routing table);
* ``p50_s`` / ``p99_s`` / ``max_s`` — over all capabilities' first look-ups
                  (nearest rank: with 16 capabilities P99 is the slowest);
* ``dht_req``   — DHT requests the newcomer sent per look-up (mean);
* ``dht_p50_s`` / ``dht_max_s`` — the provider look-up alone (``find_providers``),
                  the rest of a look-up being the agents' records and liveness;
* ``cpu_ms``    — CPU time of this process per look-up (the newcomer, plus
                  the bootstrap node answering its share of requests);
* ``complete``  — agents found / agents offering, summed over capabilities
                  (live agents only; nobody dies here).

    .venv/bin/python benchmarks/discovery.py [--sizes 10 50 100] [--procs 4] [--caps 10] [--json]

Figures and the commands that produced them: docs/dht.md.

Workers are this script with ``--worker`` (stdout: one JSON line when ready;
they stop when their stdin closes). Library warnings go to stderr; run with
``2>/dev/null`` for a clean table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import time
from contextlib import AsyncExitStack

import trio

from agentp2p.application.records.service import RecordService
from agentp2p.config import DHTConfig
from agentp2p.node import Node
from agentp2p.testing import local_config, wait_until


def cap_name(i: int) -> str:
    return f"cap-{i:02d}"


async def worker(bootstrap: str, count: int, offset: int, caps: int) -> None:
    async with AsyncExitStack() as stack:
        services: list[RecordService] = []
        agents = []
        # Agents join one after another, each once the previous one has
        # published (or after 30 s): a network that grew, rather than 100
        # nodes starting in the same second — py-libp2p's DHT lookups slow
        # down badly when many run at once on a starved CPU.
        for i in range(offset, offset + count):
            svc = RecordService(f"agent-{i}", capabilities=[cap_name(i % caps)])
            # A worker holds a dozen nodes on a shared core: answers take
            # seconds while the network forms, so its nodes wait longer than
            # the defaults before giving a peer or a query up. (The newcomer
            # measured runs on the defaults.)
            cfg = local_config(bootstrap=[bootstrap], dht=_worker_dht())
            node = await stack.enter_async_context(Node(cfg, services=[svc]))
            services.append(svc)
            agents.append((str(node.peer_id), cap_name(i % caps)))
            with trio.move_on_after(30):
                await svc.published.wait()
        # Ready = every agent published and no publish round for `quiet` s:
        # the agents that published while their routing tables were small
        # have re-published (republish_on_growth), as in a network that has
        # been up for a while.
        quiet, last_rounds, quiet_since = 5.0, -1, trio.current_time()
        with trio.move_on_after(900):
            while True:
                done = sum(s.published.is_set() for s in services)
                rounds = sum(s.counters.rounds for s in services)
                if rounds != last_rounds:
                    last_rounds, quiet_since = rounds, trio.current_time()
                elif done == len(services) and trio.current_time() - quiet_since >= quiet:
                    break
                print(f"worker {offset}: {done}/{len(services)} published, rounds {rounds}, "
                      f"failed {sum(s.counters.round_failures for s in services)}", file=sys.stderr, flush=True)
                await trio.sleep(1)
        print(json.dumps({"agents": agents}), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)  # until the parent closes our stdin


async def measure(n: int, procs: int, caps: int, verbose: bool) -> dict[str, object]:
    t_setup = time.perf_counter()
    async with Node(local_config(), services=[RecordService("bootstrap")]) as boot:
        per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        offsets = [sum(per[:i]) for i in range(procs)]
        workers = []
        async with trio.open_nursery() as nursery:
            expected: dict[str, set[str]] = {}

            async def start(count: int, offset: int) -> None:
                proc = await trio.lowlevel.open_process(
                    [sys.executable, __file__, "--worker", boot.addrs[0], str(count), str(offset), str(caps)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None if verbose else subprocess.DEVNULL,
                )
                workers.append(proc)
                buf = b""
                while b"\n" not in buf:
                    chunk = await proc.stdout.receive_some(65536)  # type: ignore[union-attr]
                    if not chunk:
                        raise RuntimeError(f"worker {offset} exited early")
                    buf += chunk
                for pid, cap in json.loads(buf.split(b"\n", 1)[0])["agents"]:
                    expected.setdefault(cap, set()).add(pid)

            for count, offset in zip(per, offsets):
                if count:
                    nursery.start_soon(start, count, offset)
        setup_s = time.perf_counter() - t_setup
        try:
            t_join = time.perf_counter()
            newcomer_svc = RecordService("newcomer")
            async with Node(local_config(bootstrap=[boot.addrs[0]]), services=[newcomer_svc]) as newcomer:
                await wait_until(lambda: newcomer.dht.routing_table_size > 0, timeout=60, what="join")
                join_s = time.perf_counter() - t_join
                times, found_total, expected_total = [], 0, 0
                requests_before = _dht_requests(newcomer)
                cpu_before = time.process_time()
                dht_times: list[float] = []
                find_providers = newcomer.dht.find_providers

                async def timed_find_providers(*args: object, **kwargs: object) -> object:
                    t0 = time.perf_counter()
                    try:
                        return await find_providers(*args, **kwargs)  # type: ignore[arg-type]
                    finally:
                        dht_times.append(time.perf_counter() - t0)

                newcomer.dht.find_providers = timed_find_providers  # type: ignore[method-assign]
                for c in sorted(expected):
                    t = time.perf_counter()
                    found = await newcomer_svc.find_agents(c, limit=n)
                    times.append(time.perf_counter() - t)
                    got = {str(a.record.peer_id) for a in found}
                    found_total += len(got & expected[c])
                    expected_total += len(expected[c])
                dht_req = (_dht_requests(newcomer) - requests_before) / max(1, len(times))
                cpu_ms = (time.process_time() - cpu_before) * 1000 / max(1, len(times))
        finally:
            for proc in workers:
                with trio.move_on_after(10):
                    await proc.stdin.aclose()  # type: ignore[union-attr]
                    await proc.wait()
                if proc.returncode is None:
                    proc.kill()
    return {
        "nodes": n, "procs": procs, "capabilities": len(expected),
        "setup_s": round(setup_s, 2), "join_s": round(join_s, 3),
        "first_s": round(times[0], 3), "p50_s": round(statistics.median(times), 3),
        "p99_s": round(_nearest_rank(times, 0.99), 3), "max_s": round(max(times), 3),
        "dht_req": round(dht_req, 1), "dht_p50_s": round(statistics.median(dht_times), 3),
        "dht_max_s": round(max(dht_times), 3), "cpu_ms": round(cpu_ms, 1),
        "found": found_total, "expected": expected_total,
    }


def _worker_dht() -> DHTConfig:
    cfg = DHTConfig(query_timeout=30.0)
    if hasattr(cfg, "request_timeout"):  # our DHT (py-libp2p's KadDHT had no per-request timeout)
        cfg.request_timeout = 15.0
    return cfg


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _dht_requests(node: Node) -> int:
    """Requests the node's DHT has sent (0 where the DHT does not count them)."""
    return int(node.dht.stats().get("adapter", {}).get("requests", 0))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        logging.disable(logging.WARNING)  # py-libp2p warns on every reset stream
        if os.environ.get("DISCOVERY_DEBUG"):
            logging.disable(logging.NOTSET)
            logging.basicConfig(level=logging.CRITICAL, format="%(relativeCreated)d %(name)s %(message)s")
            logging.getLogger("agentp2p.records").setLevel(logging.DEBUG)
        bootstrap, count, offset, caps = sys.argv[2], *map(int, sys.argv[3:6])
        trio.run(worker, bootstrap, count, offset, caps)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--procs", type=int, default=4, help="worker processes holding the agents")
    ap.add_argument("--caps", type=int, default=10, help="distinct capabilities (round-robin)")
    ap.add_argument("--json", action="store_true", help="one JSON line per size only")
    ap.add_argument("-v", "--verbose", action="store_true", help="workers' progress on stderr")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    if os.environ.get("DISCOVERY_DEBUG"):  # the newcomer's DHT requests, with timings
        logging.disable(logging.NOTSET)
        logging.basicConfig(level=logging.CRITICAL, format="%(relativeCreated)d %(name)s %(message)s")
        logging.getLogger("agentp2p.dht").setLevel(logging.DEBUG)
    rows = []
    for n in args.sizes:
        row = trio.run(measure, n, min(args.procs, n), args.caps, args.verbose)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        print(f"{'nodes':>5} {'procs':>5} {'caps':>4} {'setup s':>8} {'join s':>7} {'first s':>8} "
              f"{'p50 s':>6} {'p99 s':>6} {'max s':>6} {'req':>5} {'dht p50':>7} {'dht max':>7} {'cpu ms':>6} {'found':>9}")
        for r in rows:
            print(f"{r['nodes']:>5} {r['procs']:>5} {r['capabilities']:>4} {r['setup_s']:>8} {r['join_s']:>7} "
                  f"{r['first_s']:>8} {r['p50_s']:>6} {r['p99_s']:>6} {r['max_s']:>6} {r['dht_req']:>5} "
                  f"{r['dht_p50_s']:>7} {r['dht_max_s']:>7} {r['cpu_ms']:>6} "
                  f"{str(r['found']) + '/' + str(r['expected']):>9}")
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
