"""Our Kademlia vs py-libp2p's KadDHT, side by side: provider look-ups at N nodes.

The same workload runs on each implementation, one after the other, in one
invocation:

* N DHT nodes in ``--procs`` worker processes; node i provides key
  ``cap-(i % keys)`` (the capability keys of benchmarks/discovery.py, as
  provider records: the sha2-256 multihash of ``agentp2p/cap/<name>``);
* nodes join as in discovery.py: ``--seeds`` per worker from a bootstrap
  node in this process, then the rest ``--concurrency`` at a time, each
  bootstrapping from 3 nodes picked among every worker's seeds, the
  bootstrap node and its worker's nodes already up; a node is up once its
  self-lookup and its ADD_PROVIDER round have returned;
* a newcomer in this process knows only the bootstrap node; once its routing
  table holds a peer it looks up the providers of every key once, in turn.

Reported per implementation: ``setup_s``, newcomer ``join_s``, ``first_s``,
``p50_s``/``p99_s``/``max_s`` of the look-ups, providers ``found`` /
``expected``, and ``cpu_ms`` — CPU time of this process per look-up (the
newcomer, plus the bootstrap node answering its share), with the load
average.

* **ours**: a full agentp2p ``Node`` with SWIM off (its pub/sub and records
  services idle along), ``node.dht.provide`` / ``node.dht.find_providers``;
  the agents' DHT waits longer per request than the defaults (15 s, query
  30 s) as in discovery.py; the newcomer runs the defaults (5 s / 10 s).
* **pylibp2p**: bare py-libp2p hosts (``agentp2p.testing.library_host``:
  Noise, the library's Yamux, one connection per peer) running
  ``libp2p.kad_dht.KadDHT`` in server mode with its defaults — constructed
  here only, for this comparison. Peers enter its routing table as the
  node used to feed it before #13: each bootstrap peer once identify says it
  serves ``/ipfs/kad/1.0.0``, then a self-lookup (``find_closest_peers_network``);
  ``provide`` / ``find_providers`` with the same multihash keys; a whole
  look-up is bounded by 30 s here (the library has no query deadline).

    .venv/bin/python benchmarks/discovery_compare.py [--nodes 50] [--procs 4] [--keys 10] [--impls ours pylibp2p] [--json]

Workers are this script with ``--worker IMPL``: JSON lines on stdout, seeds
on stdin; they stop when stdin closes (and exit hard 30 s later).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from contextlib import AsyncExitStack
from typing import Any

import trio

from agentp2p.application.records.keys import CAPABILITY_KEY_PREFIX
from agentp2p.protocol.dht import provider_key

#: A worker's start slot waits this long for a node to be up before the next starts anyway.
JOIN_WAIT = 60.0
#: py-libp2p's look-ups and provides have no deadline of their own.
PYLIBP2P_QUERY_TIMEOUT = 30.0
STOP_GRACE = 30.0


def key_name(i: int, keys: int) -> str:
    return f"{CAPABILITY_KEY_PREFIX}cap-{i % keys:02d}"


# ---------------------------------------------------------------------------
# One DHT node of each implementation
# ---------------------------------------------------------------------------


class OursAgent:
    """A full agentp2p Node (SWIM off) and its DHT."""

    def __init__(self, worker: bool) -> None:
        self.worker = worker
        self.node: Any = None

    async def start(self, stack: AsyncExitStack, bootstrap: list[str]) -> None:
        from agentp2p.config import DHTConfig
        from agentp2p.node import Node
        from agentp2p.testing import local_config, wait_until

        dht = DHTConfig(query_timeout=30.0, request_timeout=15.0) if self.worker else DHTConfig()
        self.node = await stack.enter_async_context(Node(local_config(bootstrap=bootstrap, swim=False, dht=dht)))
        if bootstrap and not self.worker:
            await wait_until(lambda: self.node.dht.routing_table_size > 0, timeout=60, what="join")

    @property
    def addr(self) -> str:
        return str(self.node.addrs[0])

    async def settle(self) -> None:
        if self.worker:
            await self.node.dht.self_lookup()

    async def provide(self, key: str) -> None:
        await self.node.dht.provide(key)

    async def find(self, key: str) -> set[str]:
        return {str(p.peer_id) for p in await self.node.dht.find_providers(key, 20)}

    def table_size(self) -> int:
        return int(self.node.dht.routing_table_size)

    @property
    def peer_id(self) -> str:
        return str(self.node.peer_id)


class PyLibp2pAgent:
    """A bare py-libp2p host running the library's KadDHT (server mode)."""

    def __init__(self, worker: bool) -> None:
        self.worker = worker
        self.host: Any = None
        self.dht: Any = None

    async def start(self, stack: AsyncExitStack, bootstrap: list[str]) -> None:
        from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
        from libp2p.peer.peerinfo import info_from_p2p_addr
        from libp2p.tools.anyio_service import background_trio_service
        from multiaddr import Multiaddr

        from agentp2p.network.events import wait_identified
        from agentp2p.testing import LOOPBACK, library_host

        self.host = library_host()
        await stack.enter_async_context(self.host.run([LOOPBACK]))
        self.dht = KadDHT(self.host, DHTMode.SERVER)
        await stack.enter_async_context(background_trio_service(self.dht))
        for addr in bootstrap:
            info = info_from_p2p_addr(Multiaddr(addr))
            try:
                with trio.fail_after(30):
                    await self.host.connect(info)
                protos = await wait_identified(self.host, info.peer_id, timeout=30)
                if "/ipfs/kad/1.0.0" in protos:
                    await self.dht.add_peer(info.peer_id, skip_server_mode_check=True)
            except Exception as exc:  # noqa: BLE001 — a bootstrap peer that fails is skipped
                logging.getLogger("compare").debug("bootstrap %s failed: %r", addr, exc)

    @property
    def addr(self) -> str:
        return f"{self.host.get_transport_addrs()[0]}/p2p/{self.host.get_id()}"

    async def settle(self) -> None:
        with trio.move_on_after(PYLIBP2P_QUERY_TIMEOUT):
            await self.dht.peer_routing.find_closest_peers_network(self.host.get_id().to_bytes())

    async def provide(self, key: str) -> None:
        with trio.move_on_after(PYLIBP2P_QUERY_TIMEOUT):
            await self.dht.provide(provider_key(key).hex())

    async def find(self, key: str) -> set[str]:
        with trio.move_on_after(PYLIBP2P_QUERY_TIMEOUT):
            return {str(p.peer_id) for p in await self.dht.find_providers(provider_key(key).hex(), 20)}
        return set()

    def table_size(self) -> int:
        return int(self.dht.get_routing_table_size())

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id())


IMPLS = {"ours": OursAgent, "pylibp2p": PyLibp2pAgent}


# ---------------------------------------------------------------------------
# Worker
# ---------------------------------------------------------------------------


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _stdin_lines(send: trio.MemorySendChannel[str], stop: trio.CancelScope) -> None:
    async with send:
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                timer = threading.Timer(STOP_GRACE, os._exit, args=(3,))
                timer.daemon = True
                timer.start()
                stop.cancel()
                return
            await send.send(line)


async def worker(a: argparse.Namespace) -> None:
    rng = random.Random(a.offset)
    cls = IMPLS[a.worker]
    pool = [a.boot]
    agents: dict[int, Any] = {}
    send, recv = trio.open_memory_channel[str](8)
    async with trio.open_nursery() as root:
        root.start_soon(_stdin_lines, send, root.cancel_scope)

        async def start_all(indices: list[int], seeding: bool) -> None:
            """Each agent lives in its own task (its nurseries are entered and
            left there); returns once every one is up or gave up."""
            slots = trio.Semaphore(a.concurrency)
            done = trio.Semaphore(0)

            async def one(i: int) -> None:
                released = False
                await slots.acquire()
                try:
                    async with AsyncExitStack() as stack:
                        boot = [a.boot] if seeding else rng.sample(pool, min(3, len(pool)))
                        agent = cls(worker=True)
                        await agent.start(stack, boot)
                        with trio.move_on_after(JOIN_WAIT):
                            try:
                                await agent.settle()
                                await agent.provide(key_name(i, a.keys))
                            except Exception as exc:  # noqa: BLE001 — counted: the node stays, unannounced
                                print(f"node {i}: {exc!r}", file=sys.stderr, flush=True)
                        agents[i] = agent
                        pool.append(agent.addr)
                        slots.release()
                        done.release()
                        released = True
                        await trio.sleep_forever()
                finally:
                    if not released:
                        slots.release()
                        done.release()

            for i in indices:
                root.start_soon(one, i)
            for _ in indices:
                await done.acquire()

        n_seeds = min(a.seeds, a.count)
        await start_all(list(range(a.offset, a.offset + n_seeds)), True)
        _emit({"seeds": [agents[i].addr for i in sorted(agents)]})
        pool = list(dict.fromkeys(json.loads(await recv.receive())["seeds"] + [a.boot]))
        await start_all(list(range(a.offset + n_seeds, a.offset + a.count)), False)
        tables = [ag.table_size() for ag in agents.values()]
        _emit({"agents": [(agents[i].peer_id, key_name(i, a.keys)) for i in sorted(agents)],
               "tables": tables})
        async for _line in recv:
            pass
        root.cancel_scope.cancel()


# ---------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------


class WorkerProc:
    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self._buf = b""

    async def line(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = await self.proc.stdout.receive_some(65536)  # type: ignore[union-attr]
            if not chunk:
                raise RuntimeError(f"worker {self.proc.pid} exited early")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\n", 1)
        return json.loads(raw)

    async def send(self, obj: dict[str, Any]) -> None:
        await self.proc.stdin.send_all((json.dumps(obj) + "\n").encode())  # type: ignore[union-attr]

    async def stop(self) -> None:
        with trio.move_on_after(STOP_GRACE + 5):
            try:
                await self.proc.stdin.aclose()  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001
                pass
            await self.proc.wait()
        if self.proc.returncode is None:
            self.proc.kill()
            with trio.move_on_after(5):
                await self.proc.wait()


async def measure(impl: str, args: argparse.Namespace) -> dict[str, Any]:
    cls = IMPLS[impl]
    load0 = os.getloadavg()[0]
    workers: list[WorkerProc] = []
    async with AsyncExitStack() as stack:
        boot = cls(worker=False)
        await boot.start(stack, [])
        try:
            t0 = time.perf_counter()
            procs = min(args.procs, args.nodes)
            per = [args.nodes // procs + (1 if i < args.nodes % procs else 0) for i in range(procs)]
            for i, count in enumerate(per):
                cmd = [sys.executable, __file__, "--worker", impl, "--boot", boot.addr, "--count", str(count),
                       "--offset", str(sum(per[:i])), "--keys", str(args.keys), "--seeds", str(args.seeds),
                       "--concurrency", str(args.concurrency)]
                proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                        stderr=None if args.verbose else subprocess.DEVNULL)
                workers.append(WorkerProc(proc))
            seeds: list[str] = []
            for w in workers:
                seeds += (await w.line())["seeds"]
            for w in workers:
                await w.send({"seeds": seeds})
            expected: dict[str, set[str]] = {}
            tables: list[int] = []
            for w in workers:
                rep = await w.line()
                tables += rep["tables"]
                for pid, key in rep["agents"]:
                    expected.setdefault(key, set()).add(pid)
            setup_s = time.perf_counter() - t0
            load1 = os.getloadavg()[0]
            t_join = time.perf_counter()
            newcomer = cls(worker=False)
            await newcomer.start(stack, [boot.addr])
            with trio.fail_after(60):
                while newcomer.table_size() == 0:
                    await trio.sleep(0.01)
            join_s = time.perf_counter() - t_join
            times: list[float] = []
            found = total = 0
            cpu0 = time.process_time()
            async with trio.open_nursery() as nursery:
                if impl == "pylibp2p":
                    nursery.start_soon(newcomer.settle)  # the self-lookup ours does on bootstrap
                for key in sorted(expected):
                    t = time.perf_counter()
                    got = await newcomer.find(key)
                    times.append(time.perf_counter() - t)
                    found += len(got & expected[key])
                    total += len(expected[key])
                nursery.cancel_scope.cancel()
            cpu_ms = (time.process_time() - cpu0) * 1000 / max(1, len(times))
        finally:
            async with trio.open_nursery() as nursery:
                for w in workers:
                    nursery.start_soon(w.stop)
    tables.sort()
    return {
        "impl": impl, "nodes": args.nodes, "procs": min(args.procs, args.nodes), "keys": len(expected),
        "setup_s": round(setup_s, 2), "table_min": tables[0] if tables else 0,
        "table_med": tables[len(tables) // 2] if tables else 0, "join_s": round(join_s, 3),
        "first_s": round(times[0], 3), "p50_s": round(statistics.median(times), 3),
        "p99_s": round(_nearest_rank(times, 0.99), 3), "max_s": round(max(times), 3),
        "cpu_ms": round(cpu_ms, 1), "found": found, "expected": total,
        "load": [round(load0, 2), round(load1, 2)], "times": [round(t, 3) for t in times],
    }


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--impls", nargs="+", choices=sorted(IMPLS), default=["ours", "pylibp2p"])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--worker", choices=sorted(IMPLS), help=argparse.SUPPRESS)
    ap.add_argument("--boot", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--offset", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    if args.worker:
        trio.run(worker, args)
        return
    rows = []
    for impl in args.impls:
        row = trio.run(measure, impl, args)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        cols = ["impl", "nodes", "procs", "setup_s", "table_med", "join_s", "first_s", "p50_s", "p99_s", "max_s",
                "cpu_ms"]
        print(" ".join(f"{c:>9}" for c in cols) + f" {'found':>7} {'load':>11}")
        for r in rows:
            print(" ".join(f"{r[c]!s:>9}" for c in cols) + f" {str(r['found']) + '/' + str(r['expected']):>7}"
                  f" {'/'.join(map(str, r['load'])):>11}")
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
