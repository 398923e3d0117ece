"""How long does a newcomer take to find agents by capability?

For each network size N: N agents, each with a RecordService offering one of
``--caps`` capabilities (round-robin), run in ``--procs`` worker processes
beside one bootstrap node in this process. Then a newcomer joins knowing
only the bootstrap node and looks up every capability once, in turn.

How the network is built (``setup``):

1. every worker starts ``--seeds`` nodes bootstrapping from the bootstrap
   node, and reports their addresses;
2. each worker is sent every worker's seeds, and starts its other nodes
   ``--concurrency`` at a time, each bootstrapping from ``--bootstrap-from``
   (3) nodes picked at random among the seeds of all workers, the bootstrap
   node and the worker's nodes already up (so no single node takes every
   join, and the workers' nodes mix from the start). A start slot is held
   until the node has published its record (DHT put + capability providers,
   or 30 s);
3. it waits for the network to settle: every agent published, every node's
   routing table at least min(k, N - 1) peers, and no publish round
   anywhere for ``--quiet`` seconds (agents that published while their
   tables were small re-publish as their tables grow). A worker that has
   not settled after ``--settle-timeout`` says so (``settled`` false) and
   is measured anyway.

Reported per N (one JSON line per size with ``--json``; the table otherwise):

* ``up_s``      — start until every agent had published;
* ``setup_s``   — start until every worker had settled (the network is up);
* ``setup_cpu_s`` — CPU time of the worker processes during setup;
* ``work``      — what the workers' nodes did during setup, summed: DHT
                  requests sent and served, DHT streams, connections dialed,
                  record publish rounds, pub/sub RPC frames written
                  (``rpc_out``: the record announcements' gossip), lookups;
                  and the CPU time spent in
                  garbage collections (``gc_ms``; per generation ``gcN_ms``,
                  ``gcN_n`` collections, summed over workers, and
                  ``gcN_max_ms`` the longest in any worker), to divide the
                  setup CPU by what it bought;
* ``table_min`` / ``table_med`` — routing table sizes of the agents when settled;
* ``join_s``    — newcomer start until its routing table is non-empty;
* ``first_s``   — the newcomer's first ``find_agents`` (cold: empty cache,
                  small routing table, few connections);
* ``p50_s`` / ``p99_s`` / ``max_s`` — over all capabilities' first look-ups
                  (nearest rank: with 10 capabilities P99 is the slowest);
* ``dht_req``   — DHT requests the newcomer sent per look-up (mean);
* ``dials``     — connections the newcomer dialed per look-up (mean);
* ``dht_p50_s`` / ``dht_max_s`` — the provider look-up alone (``find_providers``),
                  the rest of a look-up being the agents' records and liveness;
* ``cpu_ms``    — CPU time of this process per look-up (the newcomer, plus
                  the bootstrap node answering its share of requests);
* ``complete``  — agents found / agents offering, summed over capabilities
                  (live agents only; nobody dies here);
* ``load``      — the 1-minute load average at the start of setup and at
                  the start of the look-ups (the machine is shared).

    .venv/bin/python benchmarks/discovery.py [--sizes 50 100] [--procs 4] [--caps 10] [--json]

Workers apply ``agentp2p.gc_policy`` before their nodes start, as the daemon
and devnet workers do (``--gc-policy off``: CPython's defaults; at 100 nodes
both took 251–347 s of worker CPU, within the run-to-run spread).
``--gc-young N`` sets the collector's first threshold on top, for
experiments (docs/dht.md, "Real sockets").

``--swim off`` runs the agents without SWIM (on by default, as in a node's
defaults): SWIM probes every member, so with it on every node ends up
connected to every other one. ``--rounds R`` repeats the newcomer's
look-ups R times with a fresh newcomer each time (P50/P99 over all).
``--limit L`` asks ``find_agents(limit=L)`` (``complete`` then counts up to L
per capability): ``--limit 1`` is "find an agent that can do it", which
ends the lookup at the first live agent. ``--profile FILE`` writes a cProfile of this process during the look-ups.
``DISCOVERY_DEBUG=1`` logs the newcomer's DHT requests and the workers'
publish rounds with timings (stderr).

Figures and the commands that produced them: docs/dht.md ("Measured") and
docs/benchmarks.md.

Workers are this script with ``--worker`` and talk JSON lines: they print
``{"seeds": ...}`` then ``{"agents": ...}`` on stdout and read the seeds from
stdin. They stop when their stdin closes (the parent exiting, however it
exits, closes it), and exit hard if stopping their nodes takes over 30 s.
Library warnings go to stderr; run with ``2>/dev/null`` for a clean table.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
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
from typing import Any

import trio

from agentp2p.application.records.service import RecordService
from agentp2p.config import DHTConfig
from agentp2p.devnet.pool import process_cpu_s
from agentp2p.node import Node
from agentp2p.protocol.swim.config import SwimConfig
from agentp2p.testing import local_config, wait_until

#: How long a worker's start slot waits for a node to publish before the next node starts anyway.
JOIN_WAIT = 30.0
#: A worker still stopping its nodes this long after its stdin closed exits hard.
STOP_GRACE = 30.0


def cap_name(i: int) -> str:
    return f"cap-{i:02d}"


# ---------------------------------------------------------------------------
# Worker process
# ---------------------------------------------------------------------------


def _slow_after(text: str) -> float | str:
    return text if text == "auto" else float(text)


def _worker_dht(slow_after: str = "0") -> DHTConfig:
    # A worker holds 25-50 nodes on a shared core: answers take seconds while
    # the network forms, so its nodes wait longer than the defaults before
    # giving a peer or a query up. (The newcomer measured runs on the defaults.)
    return DHTConfig(query_timeout=30.0, request_timeout=15.0, slow_after=_slow_after(slow_after))


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _exit_later(seconds: float) -> None:
    """Exit the process hard after ``seconds`` (a stop that hangs must not leak a worker)."""
    timer = threading.Timer(seconds, os._exit, args=(3,))
    timer.daemon = True
    timer.start()


async def _stdin_lines(send: trio.MemorySendChannel[str], stop: trio.CancelScope) -> None:
    """Forward stdin's lines; at EOF (the parent closed it, or died) stop the worker."""
    async with send:
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                _exit_later(STOP_GRACE)
                stop.cancel()
                return
            await send.send(line)


class Worker:
    """A worker's agents (see the module doc for the phases)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.offset)
        self.nodes: list[tuple[Node, RecordService]] = []
        self.pool: list[str] = [args.boot]  # nodes a joining node may bootstrap from

    async def run(self) -> None:
        a = self.args
        recv_send, recv = trio.open_memory_channel[str](8)
        async with trio.open_nursery() as root:
            root.start_soon(_stdin_lines, recv_send, root.cancel_scope)
            async with trio.open_nursery() as nodes:
                seeds = list(range(a.offset, a.offset + min(a.seeds, a.count)))
                rest = list(range(a.offset + len(seeds), a.offset + a.count))
                await self._start(nodes, seeds, seeding=True)
                _emit({"seeds": [n.addrs[0] for n, _ in self.nodes]})
                line = await recv.receive()
                self.pool = list(dict.fromkeys(json.loads(line)["seeds"] + [a.boot]))
                await self._start(nodes, rest, seeding=False)
                published_at = time.time()
                settled = await self._settle()
                _emit({
                    "agents": [(str(n.peer_id), cap_name(i % a.caps)) for i, (n, _) in
                               zip(range(a.offset, a.offset + a.count), self.nodes)],
                    "tables": [n.dht.routing_table_size for n, _ in self.nodes],
                    "connections": [len(n.peers()) for n, _ in self.nodes],
                    "work": _work(self.nodes),
                    "published": sum(s.published.is_set() for _, s in self.nodes),
                    "published_at": published_at, "settled": settled, "settled_at": time.time(),
                })
                async for _line in recv:  # until stdin closes (then root is cancelled)
                    pass

    async def _start(self, nursery: trio.Nursery, indices: list[int], *, seeding: bool) -> None:
        """Start the agents ``indices``, ``--concurrency`` at a time; returns once all have
        published (or waited JOIN_WAIT)."""
        a = self.args
        slots = trio.Semaphore(a.concurrency)
        done = trio.Semaphore(0)
        ordered: dict[int, tuple[Node, RecordService]] = {}

        async def agent(i: int) -> None:
            await slots.acquire()
            released = False
            try:
                boot = [a.boot] if seeding else self.rng.sample(self.pool, min(a.bootstrap_from, len(self.pool)))
                svc = RecordService(f"agent-{i}", capabilities=[cap_name(i % a.caps)])
                cfg = local_config(bootstrap=boot, dht=_worker_dht(a.slow_after), swim=SwimConfig(enabled=a.swim == "on"))
                async with Node(cfg, services=[svc]) as node:
                    ordered[i] = (node, svc)
                    with trio.move_on_after(JOIN_WAIT):
                        await svc.published.wait()
                    self.pool.append(node.addrs[0])
                    slots.release()
                    released = True
                    done.release()
                    await trio.sleep_forever()
            finally:
                if not released:
                    slots.release()
                    done.release()

        for i in indices:
            nursery.start_soon(agent, i)
        for _ in indices:
            await done.acquire()
        self.nodes.extend(ordered[i] for i in sorted(ordered))

    async def _settle(self) -> bool:
        """Wait until every agent published, every table holds min(k, N-1) peers
        and no publish round ran for ``--quiet`` s; False at ``--settle-timeout``."""
        a = self.args
        want = min(DHTConfig().k, a.total - 1)
        last_rounds, quiet_since = -1, trio.current_time()
        with trio.move_on_after(a.settle_timeout):
            while True:
                done = sum(s.published.is_set() for _, s in self.nodes)
                rounds = sum(s.counters.rounds for _, s in self.nodes)
                tables = [n.dht.routing_table_size for n, _ in self.nodes]
                now = trio.current_time()
                if rounds != last_rounds:
                    last_rounds, quiet_since = rounds, now
                elif done == len(self.nodes) and min(tables) >= want and now - quiet_since >= a.quiet:
                    return True
                if a.verbose:
                    print(f"worker {a.offset}: {done}/{len(self.nodes)} published, rounds {rounds}, "
                          f"failed {sum(s.counters.round_failures for _, s in self.nodes)}, "
                          f"tables min {min(tables)} (want {want})", file=sys.stderr, flush=True)
                    for n, s in self.nodes:
                        if not s.published.is_set() or n.dht.routing_table_size < want:
                            print(f"  {n.peer_id}: {_node_state(n, s)}", file=sys.stderr, flush=True)
                        if n.dht.routing_table_size == 0 and n.peers() and os.environ.get("DISCOVERY_DEBUG"):
                            peer = n.peers()[0]
                            t0 = time.perf_counter()
                            try:
                                with trio.fail_after(5):
                                    st = await n.host.new_stream(peer, ["/ipfs/id/1.0.0"])
                                await st.reset()
                                why = "ok"
                            except Exception as exc:  # noqa: BLE001
                                why = f"{exc!r} cause {exc.__cause__!r} ctx {exc.__context__!r}"
                            conns = n.host.get_network().get_connections(peer)
                            mc = conns[0].muxed_conn if conns else None
                            why += (f" conns {len(conns)} closed {getattr(mc, 'is_closed', None)} "
                                    f"started {conns[0].event_started.is_set() if conns else None}")
                            remote = next((m for m, _ in self.nodes if m.peer_id == peer), None)
                            if remote is not None:
                                rc = remote.host.get_network().get_connections(n.peer_id)
                                why += f" remote(same worker) conns {len(rc)} sees-us-closed {[c.muxed_conn.is_closed for c in rc]}"
                            print(f"  identify {peer} from {n.peer_id}: {why} in {time.perf_counter() - t0:.2f}s; "
                                  f"{n.stats()['resources'].get('hits')} {n.stats()['penalties']}",
                                  file=sys.stderr, flush=True)
                await trio.sleep(1)
        return False


def _node_state(node: Node, svc: RecordService) -> str:
    """One line on why a node has not settled (``--verbose``)."""
    peers = node.peers()
    store = node.host.get_peerstore()
    identified = 0
    for p in peers:
        try:
            identified += bool(store.get_protocols(p))
        except Exception:  # noqa: BLE001
            pass
    ad = node.dht.stats().get("adapter", {})
    c = svc.counters
    return (f"published {svc.published.is_set()} table {node.dht.routing_table_size} conns {len(peers)} "
            f"identified {identified} boot {node.bootstrapper.successes}/{node.bootstrapper.attempts} "
            f"{_dht_failures(ad)} "
            f"evict {ad.get('evictions')} refill {ad.get('refilled')} queries {ad.get('queries_running')} "
            f"identify {ad.get('identify_asked')}/{ad.get('identify_failed')} reid {ad.get('reidentified')} "
            f"pending {ad.get('requests_pending')} rounds {c.rounds} failed {c.round_failures}")


class _GcClock:
    """CPU time the process spent in garbage collections (``gc.callbacks``), by generation.

    CPU, not wall, time: four workers share two cores, so a collection's wall
    time counts the moments another process had the core."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self.collected = [0, 0, 0]
        self.longest = [0.0, 0.0, 0.0]
        self._start = 0.0

    def install(self) -> None:
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
        else:
            gen = info.get("generation", 2)
            took = time.process_time() - self._start
            self.seconds[gen] += took
            self.counts[gen] += 1
            self.collected[gen] += info.get("collected", 0)
            self.longest[gen] = max(self.longest[gen], took)


_GC_CLOCK = _GcClock()


def _work(nodes: list[tuple[Node, RecordService]]) -> dict[str, int]:
    """What a worker's nodes did while the network was built: divides its CPU by the work."""
    out = {"dht_requests": 0, "dht_served": 0, "dht_streams": 0, "dials": 0, "record_rounds": 0,
           "pubsub_rpcs_out": 0, "lookups": 0}
    for node, svc in nodes:
        st = node.stats()  # its "dht" part is node.dht.stats(): one snapshot serves both
        dht = st["dht"]
        ad = dht.get("adapter", {})
        out["dht_requests"] += int(ad.get("requests", 0))
        out["dht_served"] += int(ad.get("inbound_requests", 0))
        out["dht_streams"] += int(ad.get("streams_opened", 0)) + int(ad.get("inbound_streams", 0))
        out["dials"] += int(st["dialer"].get("successes", 0))
        out["record_rounds"] += int(svc.counters.rounds)
        out["pubsub_rpcs_out"] += int(st["pubsub"].get("rpc_out", 0))
        out["lookups"] += int(dht.get("lookups", 0))
    out["gc_ms"] = round(sum(_GC_CLOCK.seconds) * 1000)
    for gen in range(3):
        out[f"gc{gen}_ms"] = round(_GC_CLOCK.seconds[gen] * 1000)
        out[f"gc{gen}_n"] = _GC_CLOCK.counts[gen]
        out[f"gc{gen}_freed"] = _GC_CLOCK.collected[gen]
        out[f"gc{gen}_max_ms"] = round(_GC_CLOCK.longest[gen] * 1000)
    return out


def _dht_failures(ad: dict[str, Any]) -> str:
    """A node's DHT requests and how they failed (the adapter's stats)."""
    return (f"dht req {ad.get('requests')} fail {ad.get('failures')} timeouts {ad.get('timeouts')} "
            f"slow {ad.get('slow_requests')} (after {ad.get('slow_after_s')} s) "
            f"queued {ad.get('queued')} ({ad.get('queued_ms')} ms) expired waiting {ad.get('expired_waiting')} "
            f"abandoned holding {ad.get('abandoned_holding')} (cut {ad.get('abandoned_cut')}) "
            f"failure kinds {ad.get('failure_kinds')}")


# ---------------------------------------------------------------------------
# Parent: build the network, measure a newcomer
# ---------------------------------------------------------------------------


class WorkerProc:
    """One worker process and its stdout lines."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self._buf = b""

    async def line(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = await self.proc.stdout.receive_some(65536)  # type: ignore[union-attr]
            if not chunk:
                raise RuntimeError(f"worker {self.proc.pid} exited early (rc {self.proc.returncode})")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\n", 1)
        return json.loads(raw)

    async def send(self, obj: dict[str, Any]) -> None:
        await self.proc.stdin.send_all((json.dumps(obj) + "\n").encode())  # type: ignore[union-attr]

    def cpu_s(self) -> float:
        """User + system CPU of the process so far (0 once it is gone)."""
        return process_cpu_s(self.proc.pid)

    async def stop(self) -> None:
        """Close stdin (the worker stops its nodes), wait; kill if it lingers."""
        with trio.move_on_after(STOP_GRACE + 5):
            try:
                await self.proc.stdin.aclose()  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 — already gone
                pass
            await self.proc.wait()
        if self.proc.returncode is None:
            self.proc.kill()
            with trio.move_on_after(5):
                await self.proc.wait()


async def build_network(n: int, args: argparse.Namespace, boot: Node, workers: list[WorkerProc],
                        ) -> tuple[dict[str, set[str]], dict[str, Any]]:
    """Start the workers (appended to ``workers`` as they start, so the caller
    stops them whatever happens) and wait until each has settled."""
    procs = min(args.procs, n)
    per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
    offsets = [sum(per[:i]) for i in range(procs)]
    t0, wall0 = time.perf_counter(), time.time()
    for count, offset in zip(per, offsets):
        cmd = [sys.executable, __file__, "--worker", "--boot", boot.addrs[0], "--count", str(count),
               "--offset", str(offset), "--gc-policy", args.gc_policy, "--gc-young", str(args.gc_young), "--total", str(n), "--caps", str(args.caps),
               "--seeds", str(args.seeds), "--concurrency", str(args.concurrency),
               "--bootstrap-from", str(args.bootstrap_from), "--quiet", str(args.quiet),
               "--settle-timeout", str(args.settle_timeout), "--swim", args.swim, "--slow-after", args.slow_after]
        if args.verbose:
            cmd.append("--verbose")
        proc = await trio.lowlevel.open_process(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None if args.verbose or os.environ.get("DISCOVERY_DEBUG") else subprocess.DEVNULL)
        workers.append(WorkerProc(proc))
    seeds: list[str] = []
    for w in workers:
        seeds += (await w.line())["seeds"]
    seeded_s = time.perf_counter() - t0
    for w in workers:
        await w.send({"seeds": seeds})
    expected: dict[str, set[str]] = {}
    reports = []
    for w in workers:
        rep = await w.line()
        reports.append(rep)
        for pid, cap in rep["agents"]:
            expected.setdefault(cap, set()).add(pid)
    setup_s = time.perf_counter() - t0
    tables = sorted(t for r in reports for t in r["tables"])
    conns = sorted(c for r in reports for c in r["connections"])
    info = {
        "seeded_s": round(seeded_s, 2),
        "up_s": round(max(r["published_at"] for r in reports) - wall0, 2),
        "setup_s": round(setup_s, 2),
        "setup_cpu_s": round(sum(w.cpu_s() for w in workers), 1),
        "settled": all(r["settled"] for r in reports),
        "published": sum(r["published"] for r in reports),
        "table_min": tables[0], "table_med": tables[len(tables) // 2],
        "conns_med": conns[len(conns) // 2],
        # Counts and times add up over workers; a longest pause does not.
        "work": {k: (max if k.endswith("_max_ms") else sum)(r["work"][k] for r in reports)
                 for k in reports[0]["work"]},
    }
    return expected, info


async def measure_newcomer(boot: Node, expected: dict[str, set[str]], n: int, swim: bool,
                           profile: cProfile.Profile | None, limit: int | None = None,
                           slow_after: str = "0") -> dict[str, Any]:
    """A newcomer that knows only ``boot`` joins and looks up every capability once."""
    t_join = time.perf_counter()
    svc = RecordService("newcomer")
    cfg = local_config(bootstrap=[boot.addrs[0]], swim=SwimConfig(enabled=swim),
                       dht=DHTConfig(slow_after=_slow_after(slow_after)))
    async with Node(cfg, services=[svc]) as newcomer:
        await wait_until(lambda: newcomer.dht.routing_table_size > 0, timeout=60, what="join")
        join_s = time.perf_counter() - t_join
        dht_times: list[float] = []
        find_providers = newcomer.dht.find_providers

        async def timed_find_providers(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return await find_providers(*args, **kwargs)
            finally:
                dht_times.append(time.perf_counter() - t0)

        newcomer.dht.find_providers = timed_find_providers  # type: ignore[method-assign]
        times: list[float] = []
        found_total = expected_total = 0
        req0, dials0 = _dht_requests(newcomer), newcomer.dialer.stats.dials
        cached0 = len(svc.cache)
        cpu0 = time.process_time()
        if profile is not None:
            profile.enable()
        try:
            for c in sorted(expected):
                t = time.perf_counter()
                found = await svc.find_agents(c, limit=limit or n)
                times.append(time.perf_counter() - t)
                got = {str(a.record.peer_id) for a in found}
                found_total += len(got & expected[c])
                expected_total += min(limit or n, len(expected[c]))
                logging.getLogger("agentp2p.dht").debug("look-up %s: %.3fs, %d/%d found", c, times[-1],
                                                        len(got & expected[c]), len(expected[c]))
        finally:
            if profile is not None:
                profile.disable()
        looks = max(1, len(times))
        ad = newcomer.dht.stats().get("adapter", {})
        print(f"newcomer: look-ups {[round(t, 3) for t in times]}; {_dht_failures(ad)} "
              f"table {newcomer.dht.routing_table_size}", file=sys.stderr, flush=True)
        return {
            "join_s": join_s, "times": times, "dht_times": dht_times,
            "dht_req": (_dht_requests(newcomer) - req0) / looks,
            "dials": (newcomer.dialer.stats.dials - dials0) / looks,
            "cpu_ms": (time.process_time() - cpu0) * 1000 / looks,
            "found": found_total, "expected": expected_total, "cached_before": cached0,
            "fetched": svc.counters.fetched, "early": svc.counters.found_early,
            "requests": {k: ad.get(k) for k in ("requests", "timeouts", "slow_requests", "queued", "queued_ms",
                                                 "expired_waiting", "abandoned_holding", "abandoned_cut")},
        }


async def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    profile = cProfile.Profile() if args.profile else None
    workers: list[WorkerProc] = []
    boot_cfg = local_config(swim=SwimConfig(enabled=args.swim == "on"), dht=DHTConfig(slow_after=_slow_after(args.slow_after)))
    async with Node(boot_cfg, services=[RecordService("bootstrap")]) as boot:
        try:
            expected, info = await build_network(n, args, boot, workers)
            load1 = os.getloadavg()[0]
            rounds = [await measure_newcomer(boot, expected, n, args.swim == "on", profile, args.limit, args.slow_after)
                      for _ in range(args.rounds)]
        finally:
            async with trio.open_nursery() as nursery:
                for w in workers:
                    nursery.start_soon(w.stop)
    if profile is not None:
        profile.dump_stats(args.profile)
    times = [t for r in rounds for t in r["times"]]
    dht_times = [t for r in rounds for t in r["dht_times"]]

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in rounds)

    return {
        "nodes": n, "procs": min(args.procs, n), "capabilities": len(expected), "swim": args.swim,
        "limit": args.limit,
        **info,
        "join_s": round(mean("join_s"), 3), "first_s": round(rounds[0]["times"][0], 3),
        "p50_s": round(statistics.median(times), 3), "p99_s": round(_nearest_rank(times, 0.99), 3),
        "max_s": round(max(times), 3), "dht_req": round(mean("dht_req"), 1), "dials": round(mean("dials"), 1),
        "dht_p50_s": round(statistics.median(dht_times), 3), "dht_max_s": round(max(dht_times), 3),
        "cpu_ms": round(mean("cpu_ms"), 1),
        "found": sum(r["found"] for r in rounds), "expected": sum(r["expected"] for r in rounds),
        "load": [round(load0, 2), round(load1, 2)],
        "cached_before": [r["cached_before"] for r in rounds], "fetched": [r["fetched"] for r in rounds],
        "early": [r["early"] for r in rounds],
        "newcomer_requests": [r["requests"] for r in rounds],
        "times": [round(t, 3) for t in times],
    }


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _dht_requests(node: Node) -> int:
    return int(node.dht.stats().get("adapter", {}).get("requests", 0))


def _debug_logs(*names: str) -> None:
    logging.disable(logging.NOTSET)
    logging.basicConfig(level=logging.CRITICAL, format="%(relativeCreated)d %(name)s %(message)s")
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--procs", type=int, default=4, help="worker processes holding the agents")
    ap.add_argument("--caps", type=int, default=10, help="distinct capabilities (round-robin)")
    ap.add_argument("--seeds", type=int, default=2, help="nodes per worker started first, from the bootstrap node")
    ap.add_argument("--concurrency", type=int, default=4, help="nodes a worker starts at once")
    ap.add_argument("--bootstrap-from", type=int, default=3, help="running nodes each joining node bootstraps from")
    ap.add_argument("--quiet", type=float, default=5.0, help="seconds without a publish round to call it settled")
    ap.add_argument("--settle-timeout", type=float, default=600.0)
    ap.add_argument("--swim", choices=("on", "off"), default="on", help="SWIM on the agents (node default: on)")
    ap.add_argument("--rounds", type=int, default=1, help="newcomers, one after another")
    ap.add_argument("--slow-after", default="0", help='the DHT\'s slow_after on every node: 0 (off, the default), "auto" or seconds')
    ap.add_argument("--limit", type=int, default=None,
                    help="find_agents(limit=L) instead of asking for every agent (1: the first live agent)")
    ap.add_argument("--profile", metavar="FILE", help="cProfile of this process during the look-ups")
    ap.add_argument("--gc-policy", choices=("on", "off"), default="on",
                    help="workers apply agentp2p.gc_policy as the daemon does (off: CPython's defaults)")
    ap.add_argument("--gc-young", type=int, default=0, metavar="N",
                    help="with --gc-policy on: the collector's first threshold (CPython: 700)")
    ap.add_argument("--json", action="store_true", help="one JSON line per size only")
    ap.add_argument("-v", "--verbose", action="store_true", help="workers' progress on stderr")
    # worker side
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--boot", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--offset", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--total", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.gc_young and args.gc_policy == "off":
        ap.error("--gc-young needs --gc-policy on")
    logging.disable(logging.WARNING)  # py-libp2p warns on every reset stream
    if args.worker:
        if os.environ.get("DISCOVERY_DEBUG"):
            _debug_logs("agentp2p.records")
        if args.gc_policy == "on":
            from agentp2p import gc_policy

            gc_policy.apply()  # as the daemon and devnet workers do (agentp2p/gc_policy.py)
            if args.gc_young:
                gc.set_threshold(args.gc_young, *gc.get_threshold()[1:])
        _GC_CLOCK.install()
        trio.run(Worker(args).run)
        return
    if os.environ.get("DISCOVERY_DEBUG"):  # the newcomer's DHT requests, with timings
        _debug_logs("agentp2p.dht")
    rows = []
    for n in args.sizes:
        row = trio.run(measure, n, args)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if not args.json:
        cols = [("nodes", 5), ("procs", 5), ("swim", 4), ("up_s", 6), ("setup_s", 7), ("setup_cpu_s", 11),
                ("table_min", 9), ("join_s", 6), ("first_s", 7), ("p50_s", 6), ("p99_s", 6), ("max_s", 6),
                ("dht_req", 7), ("dials", 5), ("dht_p50_s", 9), ("dht_max_s", 9), ("cpu_ms", 6)]
        print(" ".join(f"{c:>{w}}" for c, w in cols) + f" {'found':>9} {'load':>11}")
        for r in rows:
            print(" ".join(f"{r[c]!s:>{w}}" for c, w in cols)
                  + f" {str(r['found']) + '/' + str(r['expected']):>9} {'/'.join(map(str, r['load'])):>11}")
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
