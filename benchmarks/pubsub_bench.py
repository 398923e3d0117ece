"""Pub/sub throughput, delivery ratio and publish-to-deliver latency at N nodes.

Topology: each node bootstraps from ``--dials`` (3) random nodes started
before it, the publisher from 3 random subscribers (seeded), and then
learns more peers through its DHT self-lookup. One publisher node (not
subscribed) publishes on one topic; the other N-1 nodes subscribe and
record what arrives.

Each payload carries ``(kind, seq, send time)``; the send time is
``time.monotonic_ns()``, which on Linux is one system-wide clock, so latency
is comparable across worker processes too. A run:

1. starts the nodes and waits until every node is connected and the
   publisher sees a subscriber;
2. warms up: publishes a warm-up message, waiting longer after each, until
   every subscriber got one (the mesh has formed, code paths are hot), then
   waits until no more warm-up copies arrive;
3. publishes ``--messages`` messages, either as fast as ``publish()``
   returns (saturating; ``publish()`` applies backpressure, never drops) or
   at a fixed offered load (``--rate`` msg/s);
4. drains until every subscriber has every message, or nothing new arrived
   for ``--idle-timeout`` seconds.

Figures: delivered msg/s (unique deliveries summed over subscribers, from
the first publish to the last delivery), publish rate, delivery ratio
(unique / expected), duplicates and losses counted separately, P50/P99
latency over every unique delivery, and the drop counters of every node.

By default all nodes share this process, so they share one core: the
figures are the single-core ceiling of py-libp2p, divided among N nodes.
``--procs P`` spreads the subscribers over P worker processes (the
publisher stays here), which is how a real deployment runs (one daemon per
machine) — but this machine has only 2 cores.

    .venv/bin/python benchmarks/pubsub_bench.py --nodes 2,10,50            # saturating, in one process
    .venv/bin/python benchmarks/pubsub_bench.py --nodes 10 --rate 50       # latency at 50 msg/s offered
    .venv/bin/python benchmarks/pubsub_bench.py --nodes 10 --procs 2       # subscribers in 2 processes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import trio

from benchmarks.common import PYTHON, emit, md_table, percentile
from agentp2p.node import Node
from agentp2p.testing import local_config

TOPIC = "bench"
HEADER = struct.Struct("!BIQ")  # kind, seq, monotonic send time (ns)
WARM, DATA = 0, 1

# Default message counts per network size, sized so each run finishes in
# about a minute in one process on one (shared) core. Every node receives
# each message from several mesh peers and pays py-libp2p's per-RPC cost for
# each copy, so the CPU per published message grows faster than N.
DEFAULT_MESSAGES = {2: 2000, 10: 150, 50: 20}
#: Bootstrap peers per node. One shared bootstrap node for everyone made it
#: open every newcomer's first streams at once; at 50 nodes on a loaded
#: machine some newcomers then never got a pubsub stream with it (the
#: adapter's three tries ran out) and, having no other connection, no
#: message at all.
DEFAULT_DIALS = 3


def default_messages(n: int) -> int:
    if n in DEFAULT_MESSAGES:
        return DEFAULT_MESSAGES[n]
    return max(10, int(3000 / (n * n)))


def payload(kind: int, seq: int, size: int) -> bytes:
    head = HEADER.pack(kind, seq, time.monotonic_ns())
    return head + b"\0" * max(0, size - len(head))


class Recorder:
    """What one subscriber received."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.latencies_ms: list[float] = []
        self.warm = False
        self.warm_count = 0
        self.last_ns = 0

    def record(self, data: bytes) -> None:
        now = time.monotonic_ns()
        kind, seq, sent = HEADER.unpack_from(data)
        if kind == WARM:
            self.warm = True
            self.warm_count += 1
            return
        c = self.counts.get(seq, 0)
        self.counts[seq] = c + 1
        if c == 0:
            self.latencies_ms.append((now - sent) / 1e6)
            self.last_ns = now

    @property
    def unique(self) -> int:
        return len(self.counts)

    @property
    def duplicates(self) -> int:
        return sum(self.counts.values()) - len(self.counts)


class NodeGroup:
    """``k`` subscriber nodes in this process (the whole network, or one worker's share).

    Each new node bootstraps from ``dials`` random nodes started before it
    (``known``: earlier workers' nodes, then this group's own), so no single
    node carries every newcomer's first streams.
    """

    def __init__(self, k: int, known: list[str], dials: int = DEFAULT_DIALS, seed: int = 1, swim: bool = True) -> None:
        self.k = k
        self.swim = swim
        self.known = list(known)
        self.dials = dials
        self.rng = random.Random(f"{seed}/{len(known)}")
        self.nodes: list[Node] = []
        self.recorders: list[Recorder] = []

    @property
    def addrs(self) -> list[str]:
        return [n.addrs[0] for n in self.nodes]

    async def start(self, stack: contextlib.AsyncExitStack) -> None:
        for _ in range(self.k):
            boot = self.rng.sample(self.known, min(self.dials, len(self.known)))
            node = await stack.enter_async_context(Node(local_config(bootstrap=boot, swim=self.swim)))
            self.known.append(node.addrs[0])
            self.nodes.append(node)
        for node in self.nodes:
            sub = await stack.enter_async_context(node.subscribe(TOPIC))
            rec = Recorder()
            self.recorders.append(rec)
            node.spawn(self._drain, sub, rec)  # in the node's nursery: stops with it

    @staticmethod
    async def _drain(sub: Any, rec: Recorder) -> None:
        async for msg in sub:
            rec.record(msg.data)

    def ready(self) -> bool:
        # Connected is enough: the warm-up proves the mesh delivers.
        return all(len(n.peers()) >= 1 for n in self.nodes)

    def unconnected(self) -> int:
        return sum(1 for n in self.nodes if not n.peers())

    def warm(self) -> bool:
        return all(r.warm for r in self.recorders)

    def cold(self) -> list[dict[str, Any]]:
        """Nodes that got no warm-up message yet: their mesh, pubsub peers, connections."""
        return [self._detail(r, n) for r, n in zip(self.recorders, self.nodes) if not r.warm]

    @staticmethod
    def _detail(rec: Recorder, node: Node) -> dict[str, Any]:
        s = node.stats()
        return {"unique": rec.unique, "mesh": s["pubsub"]["mesh"].get(TOPIC, 0), "pubsub_peers": s["pubsub"]["peers"],
                "connections": s["connections"]}

    def progress(self) -> int:
        return sum(r.unique for r in self.recorders)

    def warm_total(self) -> int:
        return sum(r.warm_count for r in self.recorders)

    def drops(self) -> dict[str, int]:
        out = {"dropped_inbound": 0, "dropped_outbound": 0, "handler_failures": 0}
        for n in self.nodes:
            s = n.stats()
            out["dropped_inbound"] += s["pubsub"]["dropped_inbound"]
            out["dropped_outbound"] += s["pubsub"]["dropped_outbound"]
            out["handler_failures"] += sum(s["handler_failures"].values())
        return out

    def report(self) -> dict[str, Any]:
        return {
            "unique": [r.unique for r in self.recorders],
            "duplicates": sum(r.duplicates for r in self.recorders),
            "latencies_ms": [round(x, 3) for r in self.recorders for x in r.latencies_ms],
            "last_ns": max((r.last_ns for r in self.recorders), default=0),
            "drops": self.drops(),
            "cpu_s": _cpu_seconds(),
            # Per subscriber node: what it got, its mesh for the topic, its
            # pubsub peers and connections (to see why one lags or lost).
            "node_detail": [self._detail(r, n) for r, n in zip(self.recorders, self.nodes)],
        }


def _cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


class RemoteGroup:
    """A worker process running a :class:`NodeGroup`, driven over stdin/stdout JSON lines."""

    def __init__(self, k: int, known: list[str], dials: int = DEFAULT_DIALS, seed: int = 1, swim: bool = True) -> None:
        self.k = k
        args = [PYTHON, str(Path(__file__).resolve()), "--worker", str(k), "--dials", str(dials), "--seed", str(seed)]
        if not swim:
            args.append("--no-swim")
        if known:
            args += ["--worker-bootstrap", ",".join(known)]
        self.args = args
        self.addrs: list[str] = []
        self._buf = b""
        self._ready = self._warm = False
        self._last: dict[str, Any] = {}

    async def open(self) -> None:
        self.proc = await trio.lowlevel.open_process(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        first = await self._read()
        self.addrs = first["addrs"]

    async def _read(self) -> dict[str, Any]:
        while b"\n" not in self._buf:
            chunk = await self.proc.stdout.receive_some()  # type: ignore[union-attr]
            if not chunk:
                raise RuntimeError("pubsub worker exited")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    async def ask(self, cmd: str) -> dict[str, Any]:
        # Shielded: the warm-up polls under move_on_after, and a command
        # cancelled between its write and its reply would leave the reply in
        # the pipe to be read as the next command's (KeyError at 50 nodes).
        with trio.CancelScope(shield=True):
            await self.proc.stdin.send_all(cmd.encode() + b"\n")  # type: ignore[union-attr]
            return await self._read()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.proc.stdin.send_all(b"stop\n")  # type: ignore[union-attr]
        with trio.move_on_after(10):
            await self.proc.wait()
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def worker_main(k: int, known: list[str], dials: int, seed: int, swim: bool) -> None:
    """``--worker K``: run K subscriber nodes and answer the controller's questions."""
    stdin = trio.lowlevel.FdStream(os.dup(0))
    async with contextlib.AsyncExitStack() as stack:
        group = NodeGroup(k, known, dials, seed, swim)
        await group.start(stack)
        print(json.dumps({"addrs": group.addrs}), flush=True)
        buf = b""
        while True:
            while b"\n" not in buf:
                chunk = await stdin.receive_some()
                if not chunk:
                    buf += b"stop\n"
                    break
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            cmd = line.decode().strip()
            if cmd == "stop":
                break
            answer: dict[str, Any] = {
                "ready": lambda: {"ready": group.ready()},
                "unconnected": lambda: {"unconnected": group.unconnected()},
                "warm": lambda: {"warm": group.warm()},
                "cold": lambda: {"cold": group.cold()},
                "progress": lambda: {"progress": group.progress()},
                "cpu": lambda: {"cpu": _cpu_seconds()},
                "warm_total": lambda: {"warm_total": group.warm_total()},
                "report": group.report,
            }.get(cmd, lambda: {"error": f"unknown command {cmd!r}"})()
            print(json.dumps(answer), flush=True)


# -- the controller ---------------------------------------------------------------


class Local:
    """Adapter so the controller treats an in-process group like a remote one."""

    def __init__(self, group: NodeGroup) -> None:
        self.group = group

    async def ask(self, cmd: str) -> dict[str, Any]:
        if cmd == "report":
            return self.group.report()
        return {cmd: getattr(self.group, cmd)()}


async def run_once(
    n: int, messages: int, rate: float | None, size: int, procs: int, idle_timeout: float, setup_timeout: float = 600.0,
    baseline_s: float = 10.0, dials: int = DEFAULT_DIALS, seed: int = 1, swim: bool = True,
) -> dict[str, Any]:
    if n < 2:
        raise ValueError("need at least 2 nodes (a publisher and a subscriber)")
    subscribers = n - 1
    t_setup = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        groups: list[Any] = []
        known: list[str] = []
        if procs <= 0:
            group = NodeGroup(subscribers, [], dials, seed, swim)
            await group.start(stack)
            groups.append(Local(group))
            known = group.addrs
        else:
            shares = [subscribers // procs + (1 if i < subscribers % procs else 0) for i in range(procs)]
            for s in [s for s in shares if s > 0]:
                g = RemoteGroup(s, known, dials, seed, swim)
                await g.open()
                stack.push_async_callback(g.close)
                groups.append(g)
                known = known + g.addrs
        boot = random.Random(f"{seed}/publisher").sample(known, min(dials, len(known)))
        publisher = await stack.enter_async_context(Node(local_config(bootstrap=boot, swim=swim)))

        async def all_say(cmd: str) -> bool:
            return all([(await g.ask(cmd))[cmd] for g in groups])

        with trio.fail_after(setup_timeout):
            next_note = time.monotonic() + 30
            while not (await all_say("ready") and len(publisher.topic_peers(TOPIC)) >= 1):
                await trio.sleep(0.1)
                if time.monotonic() > next_note:  # a slow setup says what it waits for
                    next_note += 30
                    alone = sum([(await g.ask("unconnected"))["unconnected"] for g in groups])
                    print(f"setup {time.monotonic() - t_setup:.0f} s: {alone} of {subscribers} subscribers without "
                          f"a connection; the publisher has {len(publisher.peers())} connections, "
                          f"{publisher.stats()['pubsub']['peers']} pubsub peers, sees "
                          f"{len(publisher.topic_peers(TOPIC))} subscribers",
                          file=sys.stderr, flush=True)
            # One warm-up message at a time, waiting longer each round: a
            # flood of them would queue ahead of the measured messages.
            seq, wait = 0, 0.5
            while True:
                await publisher.publish(TOPIC, payload(WARM, seq, size))
                seq += 1
                with trio.move_on_after(wait):
                    while not await all_say("warm"):
                        await trio.sleep(0.1)
                    break
                wait = min(2 * wait, 8.0)
                if wait == 8.0:  # a slow warm-up says which nodes it waits for
                    cold = [c for g in groups for c in (await g.ask("cold"))["cold"]]
                    print(f"warm-up {time.monotonic() - t_setup:.0f} s: {len(cold)} subscribers without a warm-up "
                          f"message yet: {cold[:5]}", file=sys.stderr, flush=True)
            # ...and until the last warm-up copies stopped arriving.
            last = -1
            while (total := sum([(await g.ask("warm_total"))["warm_total"] for g in groups])) != last:
                last = total
                await trio.sleep(1.0)
        setup_s = time.monotonic() - t_setup

        # -- background CPU: what the idle nodes burn (SWIM, DHT, heartbeats) --
        async def cpu_all() -> float:
            workers = sum([(await g.ask("cpu"))["cpu"] for g in groups]) if procs > 0 else 0.0
            return _cpu_seconds() + workers

        b0 = await cpu_all()
        await trio.sleep(baseline_s)
        idle_cpu_rate = (await cpu_all() - b0) / baseline_s if baseline_s > 0 else 0.0

        # -- measure ----------------------------------------------------------
        workers_cpu_start = sum([(await g.ask("cpu"))["cpu"] for g in groups]) if procs > 0 else 0.0
        cpu_start = _cpu_seconds()
        t0 = time.monotonic()
        t0_ns = time.monotonic_ns()
        for i in range(messages):
            if rate:
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    await trio.sleep(delay)
            await publisher.publish(TOPIC, payload(DATA, i, size))
        publish_s = time.monotonic() - t0
        expected = messages * subscribers
        last_progress, last_change = -1, time.monotonic()
        while True:
            got = sum([(await g.ask("progress"))["progress"] for g in groups])
            if got >= expected:
                break
            if got != last_progress:
                last_progress, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > idle_timeout:
                break
            await trio.sleep(0.05)
        reports = [await g.ask("report") for g in groups]
        cpu_local = _cpu_seconds() - cpu_start
        measured_s = time.monotonic() - t0
        cpu_total = cpu_local + (sum(r["cpu_s"] for r in reports) - workers_cpu_start if procs > 0 else 0.0)
        pub_stats = publisher.stats()["pubsub"]
        # The background again, now that the messages are through: right
        # after setup the network may still be busy (DHT lookups, joins), so
        # the smaller of the two samples is the idle rate.
        if baseline_s > 0:
            a0 = await cpu_all()
            await trio.sleep(baseline_s)
            idle_cpu_rate = min(idle_cpu_rate, (await cpu_all() - a0) / baseline_s)

    unique_per_node = [u for r in reports for u in r["unique"]]
    unique = sum(unique_per_node)
    latencies = [x for r in reports for x in r["latencies_ms"]]
    last_ns = max(r["last_ns"] for r in reports)
    window_s = max(1e-9, (last_ns - t0_ns) / 1e9)
    drops = {k: sum(r["drops"][k] for r in reports) for k in reports[0]["drops"]}
    drops["dropped_outbound"] += pub_stats["dropped_outbound"]
    return {
        "nodes": n,
        "procs": procs if procs > 0 else 1,
        "swim": swim,
        "mode": f"rate {rate:g}/s" if rate else "saturating",
        "messages": messages,
        "size": size,
        "subscribers": subscribers,
        "setup_s": round(setup_s, 2),
        "publish_s": round(publish_s, 3),
        "publish_rate": round(messages / publish_s, 1) if publish_s > 0 else None,
        "delivered_per_s": round(unique / window_s, 1),
        "delivered_per_node_per_s": round(unique / window_s / subscribers, 1),
        "expected": expected,
        "delivered_unique": unique,
        "duplicates": sum(r["duplicates"] for r in reports),
        "lost": expected - unique,
        "delivery_ratio": round(unique / expected, 6) if expected else None,
        "min_node_ratio": round(min(unique_per_node) / messages, 6) if messages else None,
        "latency_p50_ms": round(percentile(latencies, 50), 2),
        "latency_p99_ms": round(percentile(latencies, 99), 2),
        "latency_max_ms": round(max(latencies), 2) if latencies else math.nan,
        "drops": drops,
        "backpressure_waits": pub_stats["backpressure_waits"],
        # CPU of this process during the measurement (100 % = one core).
        "controller_cpu_pct": round(100 * cpu_local / max(1e-9, measured_s), 1),
        # CPU of every process running nodes, per unique delivery (the cost of
        # one message at one subscriber, including relaying duplicates).
        "cpu_ms_per_delivery": round(1000 * cpu_total / unique, 2) if unique else None,
        # The same without the background the idle network burns over the
        # measured window (SWIM, DHT, heartbeats of every node; sampled for
        # --baseline seconds before publishing and after the drain, the
        # smaller counts): the cost of the messages alone, which is what
        # stays comparable when few messages are sent.
        "idle_cpu_pct": round(100 * idle_cpu_rate, 1),
        "cpu_ms_per_delivery_net": (round(1000 * max(0.0, cpu_total - idle_cpu_rate * measured_s) / unique, 2)
                                    if unique else None),
        # The two sides apart: the publisher's CPU per published message, and
        # the subscribers' (worker processes only) per unique delivery.
        "publisher_cpu_us_per_msg": round(1e6 * cpu_local / messages, 1) if messages else None,
        "subscriber_cpu_us_per_delivery": (round(1e6 * (cpu_total - cpu_local) / unique, 1)
                                           if procs > 0 and unique else None),
        "measured_s": round(measured_s, 1),
        "lagging_nodes": [d for r in reports for d in r["node_detail"] if d["unique"] < messages],
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


ROW = ("nodes", "procs", "mode", "messages", "publish_rate", "delivered_per_s", "delivery_ratio", "duplicates", "lost",
       "latency_p50_ms", "latency_p99_ms", "cpu_ms_per_delivery", "cpu_ms_per_delivery_net", "controller_cpu_pct")


def breakdown(size: int = 128, n: int = 2000, repeats: int = 5) -> dict[str, float]:
    """CPU microseconds per message of each step of the 1 -> 1 path, in this process.

    The same code the nodes run (router core, adapter encoding, signatures,
    codec, local delivery), minus the network stack; each figure is the best
    of ``repeats`` runs of ``n`` messages, so a busy machine inflates it less.
    The publisher side is: sign + router publish + encode/queue; the
    subscriber side: decode + router receive + verify + delivery.
    """
    import random

    from agentp2p.network.identity import Identity
    from agentp2p.protocol.gossipsub import GossipSubCore, PeerConnected, Publish, RpcReceived, SendRpc
    from agentp2p.protocol.gossipsub import SignatureChecked, Subscribe, VerifySignature, decode_rpc
    from agentp2p.protocol.gossipsub.codec import signing_payload
    from agentp2p.protocol.gossipsub.rpc import Message, Rpc, SubOpts
    from agentp2p.protocol.gossipsub.score import PeerScore
    from agentp2p.protocol.gossipsub.score_params import default_score_params
    from agentp2p.protocol.gossipsub.signing import SignatureVerifier, make_signer
    from agentp2p.protocol.gossipsub.stream import OutQueue, RpcEncoder

    def best(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            t = time.process_time()
            fn()
            times.append(time.process_time() - t)
        return round(1e6 * min(times) / n, 1)

    ida, idb = Identity.generate(), Identity.generate()
    a, b = ida.peer_id.to_bytes(), idb.peer_id.to_bytes()
    sign, key = make_signer(ida)
    data = b"\0" * size

    def core(me: bytes, other: bytes, signer: Any) -> GossipSubCore:
        c = GossipSubCore(me, rng=random.Random(1), now=0.0, sign=signer, sign_key=key,
                          scorer=PeerScore(default_score_params([TOPIC])))
        c.handle(0.0, PeerConnected(other, "/meshsub/1.2.0", True))
        c.handle(0.0, Subscribe(TOPIC))
        c.handle(0.0, RpcReceived(other, Rpc((SubOpts(True, TOPIC),))))
        return c

    out: dict[str, float] = {}
    payload_msg = Message(TOPIC, data, a, b"\0" * 8)
    out["sign"] = best(lambda: [sign(signing_payload(payload_msg)) for _ in range(n)])
    fake = core(a, b, lambda _p: b"\1" * 64)
    out["router_publish"] = best(lambda: [fake.handle(0.001, Publish(TOPIC, data)) for _ in range(n)])
    pub = core(a, b, sign)
    rpcs = [x.rpc for _ in range(n) for x in pub.handle(0.001, Publish(TOPIC, data)) if type(x) is SendRpc]
    enc = RpcEncoder()

    def encode_queue() -> None:
        q = OutQueue(1 << 30, 1 << 40)
        for r in rpcs:
            q.push(enc.encode(r), 0.0)
            enc.clear()
        while q.items:
            q.take(256 << 10)
            q.written(0.0, 1)

    out["encode_queue"] = best(encode_queue)
    frames = []
    q = OutQueue(1 << 30, 1 << 40)
    for r in rpcs:
        q.push(enc.encode(r), 0.0)
    from agentp2p.network.framing import FrameReader

    frames = FrameReader(1 << 21).feed(q.take(1 << 30)[0])
    out["decode"] = best(lambda: [decode_rpc(f) for f in frames])
    decoded = [decode_rpc(f) for f in frames]
    verifier = SignatureVerifier()

    def receive(verify: bool) -> None:
        sub = core(b, a, make_signer(idb)[0])
        for rpc in decoded:
            for x in sub.handle(0.002, RpcReceived(a, rpc)):
                if type(x) is VerifySignature:
                    ok = verifier.verify(x.message, x.payload) if verify else True
                    sub.handle(0.002, SignatureChecked(x.msg_id, ok))

    out["router_receive"] = best(lambda: receive(False))
    msgs = [m for r in decoded for m in r.publish]
    out["verify"] = best(lambda: [verifier.verify(m, signing_payload(m)) for m in msgs])
    out["publisher_total"] = round(out["sign"] + out["router_publish"] + out["encode_queue"], 1)
    out["subscriber_total"] = round(out["decode"] + out["router_receive"] + out["verify"], 1)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", default="2,10,50", help="comma-separated network sizes (default 2,10,50)")
    p.add_argument("--messages", type=int, help="messages per run (default: sized per network, see DEFAULT_MESSAGES)")
    p.add_argument("--rate", type=float, help="fixed offered load in msg/s (default: saturate)")
    p.add_argument("--size", type=int, default=128, help="payload bytes (default 128)")
    p.add_argument("--procs", type=int, default=0, help="run subscribers in this many worker processes (default: all in this one)")
    p.add_argument("--idle-timeout", type=float, default=10.0, help="stop draining after this long without a new delivery")
    p.add_argument("--setup-timeout", type=float, default=600.0, help="give up if the mesh is not warm after this long")
    p.add_argument("--baseline", type=float, default=10.0,
                   help="seconds of idle CPU sampled before publishing, subtracted in cpu_ms_per_delivery_net")
    p.add_argument("--json", action="store_true")
    p.add_argument("--breakdown", action="store_true",
                   help="only time each step of the 1->1 path in-process (CPU us per message) and exit")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dials", type=int, default=DEFAULT_DIALS,
                   help=f"each node bootstraps from this many random earlier nodes (default {DEFAULT_DIALS})")
    p.add_argument("--seed", type=int, default=1, help="topology seed (default 1)")
    p.add_argument("--no-swim", action="store_true",
                   help="nodes without SWIM (most of an idle network's background CPU; on by default, as deployed)")
    p.add_argument("--worker-bootstrap", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.breakdown:
        result = {"benchmark": "pubsub_breakdown", "size": args.size, "cpu_us_per_msg": breakdown(args.size)}
        print(json.dumps(result))
        return result
    if args.worker:
        known = [a for a in (args.worker_bootstrap or "").split(",") if a]
        trio.run(worker_main, args.worker, known, args.dials, args.seed, not args.no_swim)
        return {}
    runs = []
    for n in [int(x) for x in args.nodes.split(",") if x]:
        msgs = args.messages or default_messages(n)
        if args.rate and not args.messages:
            msgs = max(10, min(int(args.rate * 10), msgs * 2))  # up to ~10 s of offered load
        runs.append(trio.run(run_once, n, msgs, args.rate, args.size, args.procs, args.idle_timeout, args.setup_timeout,
                             args.baseline, args.dials, args.seed, not args.no_swim))
        if not args.json:
            print(json.dumps(runs[-1]), flush=True)
    # Issue #12 (b): CPU per delivery at N nodes against the 2-node figure of the same run.
    base = next((r["cpu_ms_per_delivery_net"] for r in runs if r["nodes"] == 2), None)
    for r in runs:
        if base and r["cpu_ms_per_delivery_net"]:
            r["cpu_vs_2_nodes"] = round(r["cpu_ms_per_delivery_net"] / base, 2)
    result = {"benchmark": "pubsub", "runs": runs}
    if args.json:
        emit(result, True)
    else:
        row = (*ROW, "cpu_vs_2_nodes") if base else ROW
        print(md_table(row, [[r.get(k) for k in row] for r in runs]))
    return result


if __name__ == "__main__":
    main()
