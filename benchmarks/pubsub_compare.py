"""Three gossipsub implementations, one workload, one table (issue #12 (c)).

Runs, one after another on the same machine with the same message count,
size and topology:

* ``ours``      — agentp2p's ``Node`` (our router, agentp2p/protocol/gossipsub/,
                  with everything a node runs: SWIM, DHT, resource limits);
* ``pylibp2p``  — py-libp2p 0.8.1's own ``Pubsub`` + ``GossipSub`` on a bare
                  py-libp2p host (Noise, the library's Yamux; no agentp2p code
                  on the path). Only this benchmark constructs it;
* ``go``        — go-libp2p-pubsub v0.19 in ``interop/go-peer`` processes
                  (one process per node), driven by its bench commands.

Every node is its own libp2p host; the publisher is never subscribed and
runs in its own process; the N-1 subscribers run in ``--procs`` worker
processes (Python; Go: one process per node). So 2 nodes are always 2
processes. Topology: subscriber j dials ``--degree`` random earlier
subscribers (seeded, the same choice for every implementation), then the
publisher dials ``--degree`` random subscribers; ours may add connections
through its DHT, as a node does.

A run: start the nodes, wait until every node has a connection and the
publisher sees a subscriber, warm up (one message at a time until every
subscriber has one, then until copies stop arriving), then publish
``--messages`` messages of ``--size`` bytes as fast as the implementation's
publish call returns (``--rate R``: at R msg/s), and drain until every
subscriber has every message or nothing new came for ``--idle-timeout``.

Columns: delivered msg/s (unique deliveries summed over subscribers, first
publish to last first-delivery), delivery ratio, P50/P99 publish-to-deliver
latency (CLOCK_MONOTONIC stamped in the payload: one clock for every process
on Linux, Python's ``time.monotonic_ns()`` and the Go peer's
``clock_gettime``), CPU ms per delivery (CPU time of the publisher and
every subscriber process during the run, / unique deliveries), and each
figure's ratio to ours.

py-libp2p settings (``pylibp2p``; ``pylibp2p-defaults`` keeps every limit).
Its own defaults, except: D/D_lo/D_hi = 6/4/12 (required arguments; ours'),
heartbeat 1 s (its default is 120 s; ours and go's are 1 s), and three
limits that make it drop messages without telling the publisher, lifted
from outside (no library file changes):

1. ``spam_protection_enabled=False``: by default it rejects more than 10
   messages/s per (peer, topic) — and drops the excess;
2. each peer's outbound RPC queue holds 32 RPCs (``RpcQueue()`` built with
   the library's default) and drops on overflow: we enlarge each queue as
   the library registers it (``Pubsub.peer_queues`` replaced by a dict that
   sets ``max_size``) and count what is still refused;
3. each subscription channel holds 32 messages
   (``libp2p.pubsub.pubsub.SUBSCRIPTION_CHANNEL_SIZE``, read at
   ``subscribe()``): set to 2**20 before subscribing.

Its ``publish()`` never waits for the network (there is no backpressure), so
the harness yields to the scheduler once per 32 publishes, as our
``publish()`` does, or a saturating publisher would queue the whole run
before the first byte is written.

Go settings: interop/go-peer's (flood publishing on, peer outbound,
validation and subscription queues 4096), go-libp2p-pubsub defaults
otherwise. Losses it reports to its tracer (full peer queue, slow reader,
throttled validation) are in the ``drops`` column.

    .venv/bin/python benchmarks/pubsub_compare.py                                  # 2 nodes, all three
    .venv/bin/python benchmarks/pubsub_compare.py --nodes 2,10 --messages 2000
    .venv/bin/python benchmarks/pubsub_compare.py --rate 5000 --messages 20000    # latency at 5,000 msg/s offered
    .venv/bin/python benchmarks/pubsub_compare.py --impls ours,go --nodes 10
"""

from __future__ import annotations

import argparse
import contextlib
from collections import Counter
import cProfile
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import trio

from benchmarks.common import PYTHON, emit, md_table, percentile
from benchmarks.profiling import read_raw
from benchmarks.pubsub_bench import DATA, TOPIC, WARM, Recorder, payload

IMPLS = ("ours", "pylibp2p", "go")
ALL_IMPLS = (*IMPLS, "pylibp2p-defaults")
DEFAULT_MESSAGES = {2: 5000, 10: 1000}
#: How often the harness yields while publishing as fast as it can (our
#: publish() yields once per 32 messages by itself; py-libp2p's never waits).
YIELD_EVERY = 32
#: Environment variables carrying --write-coalesce and --no-gc-policy to the worker processes.
COALESCE_ENV = "AGENTP2P_BENCH_WRITE_COALESCE"
GC_POLICY_ENV = "AGENTP2P_BENCH_GC_POLICY"


def default_messages(n: int) -> int:
    return DEFAULT_MESSAGES.get(n, max(100, 10000 // n))


# =============================================================================
# Worker side: the nodes of one Python process
# =============================================================================


class OursNode:
    """One agentp2p Node: our router."""

    def __init__(self, stack: contextlib.AsyncExitStack, swim: bool = True) -> None:
        self.stack = stack
        self.swim = swim
        self.node: Any = None
        self.recorder: Recorder | None = None

    async def start(self, dials: list[str], subscribe: bool) -> str:
        from agentp2p.node import Node
        from agentp2p.testing import local_config

        config = local_config(bootstrap=dials, swim=self.swim)
        coalesce = os.environ.get(COALESCE_ENV)
        if coalesce is not None:
            config.pubsub.write_coalesce = float(coalesce)
        self.node = await self.stack.enter_async_context(Node(config))
        if subscribe:
            sub = await self.stack.enter_async_context(self.node.subscribe(TOPIC))
            self.recorder = rec = Recorder()

            async def drain() -> None:
                async for msg in sub:
                    rec.record(msg.data)

            self.node.spawn(drain)
        return self.node.addrs[0]

    def connected(self) -> bool:
        return len(self.node.peers()) >= 1

    def topic_peers(self) -> int:
        return len(self.node.topic_peers(TOPIC))

    async def publish(self, data: bytes) -> None:
        await self.node.publish(TOPIC, data)

    def traffic(self) -> dict[str, int]:
        """What the node's pub/sub moved (since it started): divides the CPU by frames, not messages."""
        s = self.node.stats()["pubsub"]
        r = s.get("router") or {}
        out = {k: int(s.get(k, 0)) for k in ("rpc_in", "rpc_out", "writes", "bytes_in", "bytes_out")}
        out["duplicates"] = int(r.get("duplicates", 0))
        return out

    def drops(self) -> dict[str, int]:
        """Every counter under which a message can go missing (adapter and router core)."""
        s = self.node.stats()["pubsub"]
        r = s.get("router") or {}
        out = {k: s[k] for k in ("dropped_inbound", "dropped_outbound", "dropped_disconnected", "write_failures", "peers_gone_with_queue", "graylisted",
                                 "malformed", "oversized", "invalid_signatures", "contained") if s.get(k)}
        out.update({f"router_{k}": r[k] for k in ("pending_full", "pending_timeout", "graylisted", "malformed",
                                                  "unknown_peer", "not_subscribed") if r.get(k)})
        for reason, n in (r.get("rejected") or {}).items():
            out[f"router_rejected_{reason}"] = n
        # Why connections (and the RPCs queued on them) went away.
        full = self.node.stats()
        for k, v in (full.get("network", {}).get("yamux") or {}).items():
            if v:
                out[f"yamux_{k}"] = v
        for k in ("offences", "bans"):
            if full.get("penalties", {}).get(k):
                out[f"penalty_{k}"] = full["penalties"][k]
        for k in ("suspected", "declared_dead"):
            v = (full.get("swim", {}).get("core") or {}).get(k)
            if v:
                out[f"swim_{k}"] = v
        return out


class _LiftedQueues(dict):  # type: ignore[type-arg]
    """``Pubsub.peer_queues`` for the lifted py-libp2p run: every new peer
    queue gets room for ``size`` RPCs instead of 32, and refusals are counted."""

    def __init__(self, size: int | None, counter: dict[str, int]) -> None:
        super().__init__()
        self.size = size
        self.counter = counter

    def __setitem__(self, peer_id: Any, queue: Any) -> None:
        if self.size is not None:
            queue._queue.max_size = self.size
        push, counter = queue.push, self.counter

        def counting_push(rpc: Any, priority: bool = False) -> bool:
            ok = push(rpc, priority)
            if not ok and not queue.closed:
                counter["peer_queue_full"] += 1
            return ok

        queue.push = counting_push
        super().__setitem__(peer_id, queue)


class _LibraryDropLog(logging.Handler):
    """Counts py-libp2p's own log lines for messages it drops (it has no counters)."""

    PATTERNS = {
        "Rate limit exceeded": "spam_rate_limited",
        "fail to deliver message to subscription": "subscription_full",
    }

    def __init__(self, counter: dict[str, int]) -> None:
        super().__init__(logging.DEBUG)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg if isinstance(record.msg, str) else ""
        for text, key in self.PATTERNS.items():
            if msg.startswith(text):
                self.counter[key] += 1


class PyLibp2pNode:
    """py-libp2p's Pubsub + GossipSub on a bare py-libp2p host (module doc)."""

    def __init__(self, stack: contextlib.AsyncExitStack, lifted: bool, counter: dict[str, int]) -> None:
        self.stack = stack
        self.lifted = lifted
        self.counter = counter
        self.recorder: Recorder | None = None

    async def start(self, dials: list[str], subscribe: bool) -> str:
        import libp2p.pubsub.pubsub as pubsub_module
        from libp2p.peer.peerinfo import info_from_p2p_addr
        from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
        from libp2p.pubsub.pubsub import Pubsub
        from libp2p.tools.anyio_service import background_trio_service
        from multiaddr import Multiaddr

        from agentp2p.testing import LOOPBACK, library_host

        host = self.host = library_host()
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11, PROTOCOL_ID],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=1,
            spam_protection_enabled=not self.lifted,
        )
        self.pubsub = Pubsub(host, self.router)  # strict signing, its default
        self.pubsub.peer_queues = _LiftedQueues(1 << 20 if self.lifted else None, self.counter)
        await self.stack.enter_async_context(host.run([LOOPBACK]))
        await self.stack.enter_async_context(background_trio_service(self.pubsub))
        await self.stack.enter_async_context(background_trio_service(self.router))
        await self.pubsub.wait_until_ready()
        if subscribe:
            # Subscribed before dialing, so every hello carries the topic.
            if self.lifted:
                pubsub_module.SUBSCRIPTION_CHANNEL_SIZE = 1 << 20
            sub = await self.pubsub.subscribe(TOPIC)
            self.recorder = rec = Recorder()

            async def drain() -> None:
                while True:
                    msg = await sub.get()
                    rec.record(msg.data)

            nursery = await self.stack.enter_async_context(trio.open_nursery())
            nursery.start_soon(drain)
            self.stack.callback(nursery.cancel_scope.cancel)
        for addr in dials:
            info = info_from_p2p_addr(Multiaddr(addr))
            with trio.fail_after(10):
                await host.connect(info)
        return f"{host.get_transport_addrs()[0]}/p2p/{host.get_id()}"

    def connected(self) -> bool:
        return len(self.host.get_network().connections) >= 1

    def topic_peers(self) -> int:
        return len(self.pubsub.peer_topics.get(TOPIC, ()))

    async def publish(self, data: bytes) -> None:
        await self.pubsub.publish(TOPIC, data)

    def drops(self) -> dict[str, int]:
        return dict(self.counter)


def _traffic(nodes: list[Any]) -> dict[str, int]:
    """The process's nodes' pub/sub traffic counters, summed (our nodes only)."""
    out: Counter[str] = Counter()
    for n in nodes:
        if hasattr(n, "traffic"):
            out.update(n.traffic())
    return dict(out)


#: Set once the controller said "stop": every answer has been given by then.
_STOPPED = threading.Event()


def _leaves(exc: BaseException) -> list[str]:
    """The innermost exceptions of a (nested) exception group, as reprs."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [repr(exc)]


async def worker_main(impl: str, role: str, swim: bool = True) -> None:
    """``--worker IMPL --role pub|sub``: nodes of one implementation, driven
    over stdin/stdout JSON lines (one reply per command)."""
    logging.basicConfig(level=logging.ERROR)
    counter = {"peer_queue_full": 0, "spam_rate_limited": 0, "subscription_full": 0}
    if impl.startswith("pylibp2p"):
        # The library's warnings are counted, not printed (one per dropped message).
        library = logging.getLogger("libp2p")
        library.addHandler(_LibraryDropLog(counter))
        library.setLevel(logging.WARNING)
        library.propagate = False
    stdin = trio.lowlevel.FdStream(os.dup(0))
    nodes: list[Any] = []
    async with contextlib.AsyncExitStack() as stack:

        def new_node() -> Any:
            if impl == "ours":
                return OursNode(stack, swim)
            return PyLibp2pNode(stack, lifted=impl == "pylibp2p", counter=counter)

        def recorders() -> list[Recorder]:
            return [n.recorder for n in nodes if n.recorder is not None]

        async def publish(kind: int, start: int, count: int, size: int, rate: float) -> dict[str, Any]:
            node = nodes[0]
            errors, first_error = 0, ""
            t0, t0_ns = time.monotonic(), time.monotonic_ns()
            for i in range(count):
                if rate:
                    delay = t0 + i / rate - time.monotonic()
                    if delay > 0:
                        await trio.sleep(delay)
                elif i % YIELD_EVERY == YIELD_EVERY - 1:
                    await trio.lowlevel.checkpoint()
                try:
                    await node.publish(payload(kind, start + i, size))
                except Exception as exc:  # noqa: BLE001 — counted: a benchmark reports, it does not stop
                    errors += 1
                    first_error = first_error or repr(exc)
            return {"published": count - errors, "errors": errors, "first_error": first_error,
                    "t0_ns": t0_ns, "elapsed_s": time.monotonic() - t0}

        buf = b""
        while True:
            while b"\n" not in buf:
                chunk = await stdin.receive_some()
                if not chunk:
                    buf += b"stop\n"
                    break
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            cmd, *args = line.decode().split()
            if cmd == "stop":
                _STOPPED.set()
                break
            if cmd == "add":
                node = new_node()
                dials = [a for a in args[0].split(",") if a] if args and args[0] != "-" else []
                addr = await node.start(dials, subscribe=role == "sub")
                nodes.append(node)
                answer: dict[str, Any] = {"addr": addr}
            elif cmd == "ready":
                ok = all(n.connected() for n in nodes)
                if role == "pub":
                    ok = ok and nodes[0].topic_peers() >= 1
                answer = {"ready": ok}
            elif cmd == "traffic":
                answer = {"traffic": _traffic(nodes)}
            elif cmd == "count":
                recs = recorders()
                answer = {"unique": sum(r.unique for r in recs), "warm": all(r.warm for r in recs),
                          "warm_total": sum(r.warm_count for r in recs)}
            elif cmd == "publish":
                kind, start, count, size = (int(x) for x in args[:4])
                answer = await publish(kind, start, count, size, float(args[4]))
            elif cmd == "cprofile_on":
                # CPU-time attribution (process_time, so a loaded machine does
                # not skew it, unlike wall-clock sampling); costs ~2x CPU.
                profile = cProfile.Profile(time.process_time)
                profile.enable()
                answer = {}
            elif cmd == "cprofile_off":
                profile.disable()
                profile.dump_stats(args[0])
                answer = {"file": args[0]}
            elif cmd == "report":
                recs = recorders()
                drops: dict[str, int] = {}
                for n in nodes:
                    for k, v in n.drops().items():
                        drops[k] = drops.get(k, 0) + v
                    if impl.startswith("pylibp2p"):
                        break  # one counter shared by the process's nodes
                traffic = _traffic(nodes)
                answer = {"unique": [r.unique for r in recs], "duplicates": sum(r.duplicates for r in recs),
                          "latencies_ms": [round(x, 3) for r in recs for x in r.latencies_ms],
                          "last_ns": max((r.last_ns for r in recs), default=0), "drops": drops,
                          "traffic": traffic}
            else:
                answer = {"error": f"unknown command {cmd!r}"}
            print(json.dumps(answer), flush=True)


# =============================================================================
# Controller side
# =============================================================================


class PyWorker:
    """A Python worker process holding some nodes of one implementation."""

    def __init__(self, impl: str, role: str, swim: bool = True) -> None:
        self.args = [PYTHON, str(Path(__file__).resolve()), "--worker", impl, "--role", role]
        if not swim:
            self.args.append("--no-swim")
        self._buf = b""
        self.nodes = 0

    async def open(self) -> None:
        self.proc = await trio.lowlevel.open_process(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def ask(self, *words: Any) -> dict[str, Any]:
        # Shielded: a command cancelled between its write and its reply would
        # leave the reply in the pipe, to be read as the next command's.
        with trio.CancelScope(shield=True):
            await self.proc.stdin.send_all(" ".join(map(str, words)).encode() + b"\n")  # type: ignore[union-attr]
            while b"\n" not in self._buf:
                chunk = await self.proc.stdout.receive_some()  # type: ignore[union-attr]
                if not chunk:
                    raise RuntimeError(f"worker {self.args[3:]} exited")
                self._buf += chunk
            line, self._buf = self._buf.split(b"\n", 1)
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    async def add(self, dials: list[str]) -> str:
        self.nodes += 1
        return (await self.ask("add", ",".join(dials) or "-"))["addr"]

    async def ready(self) -> bool:
        return bool((await self.ask("ready"))["ready"])

    async def count(self) -> dict[str, Any]:
        return await self.ask("count")

    async def traffic(self) -> dict[str, int]:
        return dict((await self.ask("traffic"))["traffic"])

    async def publish(self, kind: int, start: int, count: int, size: int, rate: float) -> dict[str, Any]:
        return await self.ask("publish", kind, start, count, size, rate or 0)

    async def report(self) -> dict[str, Any]:
        return await self.ask("report")

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await self.proc.stdin.send_all(b"stop\n")  # type: ignore[union-attr]
            with trio.move_on_after(15):
                await self.proc.wait()
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


class GoWorker:
    """One interop/go-peer process: one go-libp2p node."""

    def __init__(self, role: str, stack: contextlib.AsyncExitStack) -> None:
        self.role = role
        self.stack = stack
        self.nodes = 0
        self.peer: Any = None

    async def open(self) -> None:
        pass  # started by add(): the dials are command-line flags

    async def add(self, dials: list[str]) -> str:
        from tests.interop.gopeer import GoPeer, build_go_peer, find_go

        go = find_go()
        if go is None:
            raise RuntimeError("go is not on PATH: the go-libp2p-pubsub row needs interop/go-peer")
        binary = await trio.to_thread.run_sync(build_go_peer, go)
        self.peer = await self.stack.enter_async_context(GoPeer(binary, bootstrap=dials))
        if self.role == "sub":
            await self.peer.command("benchsub", TOPIC)
        self.nodes = 1
        return self.peer.addr

    @property
    def pid(self) -> int:
        return self.peer.pid

    async def ready(self) -> bool:
        if self.role == "pub":
            return len(await self.peer.topic_peers(TOPIC)) >= 1
        return len(await self.peer.peers()) >= 1

    async def count(self) -> dict[str, Any]:
        if self.role == "pub":
            return {"unique": 0, "warm": True, "warm_total": 0}
        r = await self.peer.command("benchcount", TOPIC)
        return {"unique": r["unique"], "warm": r["warm"] > 0, "warm_total": r["warm"]}

    async def publish(self, kind: int, start: int, count: int, size: int, rate: float) -> dict[str, Any]:
        # Bounded like everything else: generous for the slowest rate asked.
        timeout = 120 + (count / rate if rate else count / 100)
        return await self.peer.command("benchpub", TOPIC, kind, start, count, size, rate or 0, timeout=timeout)

    async def report(self) -> dict[str, Any]:
        r = await self.peer.command("benchstats", TOPIC)
        unique = [r["unique"]] if self.role == "sub" else []
        return {"unique": unique, "duplicates": r["duplicates"], "last_ns": r["last_ns"],
                "latencies_ms": [us / 1000 for us in r["latencies_us"]], "drops": r["drops"]}

    async def close(self) -> None:
        pass  # the peer is closed by the run's exit stack


def _cpu(pids: list[int], kernel_only: bool = False) -> float:
    """CPU seconds (user + system, or system only) the processes used so far."""
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.system if kernel_only else t.user + t.system
    return total


# -- optional profile of the measured window (py-spy) ------------------------------

#: Where a sampled Python stack's time goes: the first frame from the leaf
#: up that matches decides (so libsodium called by the verifier counts as
#: verify, and a trio checkpoint called by Yamux as scheduling). For
#: py-libp2p, "router core" is its whole libp2p.pubsub package (Pubsub and
#: GossipSub) and "codec" is protobuf.
PROFILE_CATEGORIES = ("sign", "verify", "codec", "router core", "adapter", "yamux", "noise", "tcp",
                      "trio scheduling", "other agentp2p", "other libp2p", "benchmark harness", "other")


def _frame_category(fn: str, file: str) -> str | None:
    if "crypto_sign_open" in fn or (file.endswith(("gossipsub/signing.py", "nacl/signing.py")) and "verify" in fn):
        return "verify"
    if file.endswith(("gossipsub/signing.py", "nacl/signing.py")) or fn.startswith("crypto_sign"):
        return "sign"
    if file.endswith(("gossipsub/codec.py", "gossipsub/rpc.py", "network/framing.py")) or "google/protobuf" in file:
        return "codec"
    if ("/gossipsub/" in file and not file.endswith(("gossipsub/service.py", "gossipsub/stream.py"))) \
            or "libp2p/pubsub/" in file:
        return "router core"
    if file.endswith(("gossipsub/service.py", "gossipsub/stream.py", "protocol/pubsub.py")):
        return "adapter"
    if "yamux" in file or "stream_muxer" in file:
        return "yamux"
    if "security/noise" in file or "cryptography/" in file:
        return "noise"
    if "transport/tcp" in file or "libp2p/io/" in file or "trio/_socket" in file or "trio/_highlevel_socket" in file:
        return "tcp"
    if fn == "EpollIOManager.get_events":
        return "idle"  # epoll_wait: py-spy does not always see the thread sleep
    if "trio/" in file:
        return None if fn in ("run", "unrolled_run") else "trio scheduling"
    if fn in ("payload", "Recorder.record") or file.endswith("pubsub_compare.py"):
        return "benchmark harness"
    if "agentp2p/" in file:
        return "other agentp2p"
    if "libp2p/" in file:
        return "other libp2p"
    return None


def classify_stack(frames: list[str]) -> str:
    """Category of one py-spy stack (root first, ``function (file:line)`` frames)."""
    for frame in reversed(frames):
        fn, _, where = frame.rpartition(" (")
        category = _frame_category(fn, where.rsplit(":", 1)[0])
        if category is not None:
            return category
    return "other"


def summarize_profile(path: Path) -> dict[str, float]:
    """Share (%) per category of the busy samples of a py-spy ``--format raw``
    file; ``idle`` is the share of all samples spent waiting in epoll."""
    totals = dict.fromkeys((*PROFILE_CATEGORIES, "idle"), 0)
    for frames, count in read_raw(path):
        totals[classify_stack(frames)] += count
    idle = totals.pop("idle")
    busy = sum(totals.values())
    if not busy:
        return {}
    out = {k: round(100 * v / busy, 1) for k, v in totals.items() if v}
    out["idle"] = round(100 * idle / (busy + idle), 1)
    return out


class Profiler:
    """``py-spy record`` attached to some workers for the measured window."""

    def __init__(self, py_spy: str | None, out_dir: Path, label: str) -> None:
        self.py_spy, self.out_dir, self.label = py_spy, out_dir, label
        self.procs: list[tuple[str, Path, Any]] = []

    async def start(self, targets: dict[str, int]) -> None:
        if not self.py_spy:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for role, pid in targets.items():
            out = self.out_dir / f"{self.label}-{role}.txt"
            proc = await trio.lowlevel.open_process(
                [self.py_spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--format", "raw",
                 "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append((role, out, proc))
        await trio.sleep(0.5)  # attached before the first message

    async def stop(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for role, out, proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
            with trio.move_on_after(20):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            result[role] = {"file": str(out), "pct": summarize_profile(out)}
        return result


async def run_impl(impl: str, n: int, messages: int, size: int, rate: float | None, procs: int,
                   degree: int, seed: int, idle_timeout: float, setup_timeout: float,
                   profiler: Profiler | None = None, cprofile_dir: Path | None = None,
                   swim: bool = True) -> dict[str, Any]:
    """One implementation, one network size: the figures of one table row."""
    subscribers = n - 1
    rng = random.Random(seed)
    t_setup = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:

        async def worker(role: str) -> Any:
            w: Any = GoWorker(role, stack) if impl == "go" else PyWorker(impl, role, swim)
            stack.push_async_callback(w.close)
            await w.open()
            return w

        # Subscribers: Python ones in `procs` workers (contiguous shares), Go one per process.
        subs: list[Any] = []
        owners: list[Any] = []
        if impl == "go":
            for _ in range(subscribers):
                subs.append(await worker("sub"))
            owners = subs
        else:
            k = max(1, min(procs, subscribers))
            shares = [subscribers // k + (1 if i < subscribers % k else 0) for i in range(k)]
            for s in shares:
                w = await worker("sub")
                subs.append(w)
                owners += [w] * s
        # Starting a node is bounded by the worker (Go: 30 s to "ready");
        # not under the deadline below, as a Go peer's nursery must nest in `stack`.
        addrs: list[str] = []
        for owner in owners:
            dials = rng.sample(addrs, min(degree, len(addrs)))
            addrs.append(await owner.add(dials))
        pub = await worker("pub")
        await pub.add(rng.sample(addrs, min(degree, len(addrs))))
        everyone = [*subs, pub]

        async def all_subs(key: str) -> list[Any]:
            return [(await w.count())[key] for w in subs]

        with trio.fail_after(setup_timeout):
            while not all([await w.ready() for w in everyone]):
                await trio.sleep(0.1)
            # One warm-up message at a time, waiting longer each round (a flood
            # of them would queue ahead of the measured messages)...
            seq, wait = 0, 0.5
            while True:
                await pub.publish(WARM, seq, 1, size, 0)
                seq += 1
                with trio.move_on_after(wait):
                    while not all(await all_subs("warm")):
                        await trio.sleep(0.1)
                    break
                wait = min(2 * wait, 8.0)
            # ...and until the last warm-up copies stopped arriving.
            last = -1
            while (total := sum(await all_subs("warm_total"))) != last:
                last = total
                await trio.sleep(1.0)
        setup_s = time.monotonic() - t_setup

        # -- measure ------------------------------------------------------------
        pids = [w.pid for w in everyone]
        profile: dict[str, Any] = {}
        if profiler is not None and impl != "go":
            await profiler.start({"publisher": pub.pid, "subscriber": subs[0].pid})
        if cprofile_dir is not None and impl != "go":
            for w in (pub, subs[0]):
                await w.ask("cprofile_on")
        expected = messages * subscribers
        # Our nodes' traffic counters before the window (set-up, warm-up and
        # heartbeats until now are not the workload's).
        traffic0 = [await w.traffic() for w in everyone] if impl == "ours" else []
        cpu0, sys0 = _cpu(pids), _cpu(pids, kernel_only=True)
        pub_cpu0 = _cpu([pub.pid])
        t0 = time.monotonic()
        published: dict[str, Any] = {}

        async def do_publish() -> None:
            published.update(await pub.publish(DATA, 0, messages, size, rate or 0))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(do_publish)
            last_progress, last_change = -1, time.monotonic()
            while True:
                await trio.sleep(0.05)
                got = sum(await all_subs("unique"))
                if got >= expected:
                    break
                if got != last_progress or not published:
                    last_progress, last_change = got, time.monotonic()
                elif time.monotonic() - last_change > idle_timeout:
                    break
        measured_s = time.monotonic() - t0
        if profiler is not None and impl != "go":
            profile = await profiler.stop()
        if cprofile_dir is not None and impl != "go":
            cprofile_dir.mkdir(parents=True, exist_ok=True)
            for role, w in (("publisher", pub), ("subscriber", subs[0])):
                out = cprofile_dir / f"{impl}-{n}-{role}.prof"
                await w.ask("cprofile_off", out)
                profile.setdefault(role, {})["cprofile"] = str(out)
        cpu_total = _cpu(pids) - cpu0
        cpu_kernel = _cpu(pids, kernel_only=True) - sys0
        pub_cpu = _cpu([pub.pid]) - pub_cpu0
        reports = [await w.report() for w in everyone]

    unique_per_node = [u for r in reports for u in r["unique"]]
    unique = sum(unique_per_node)
    latencies = [x for r in reports for x in r["latencies_ms"]]
    last_ns = max(r["last_ns"] for r in reports)
    window_s = max(1e-9, (last_ns - published["t0_ns"]) / 1e9)
    drops: dict[str, int] = {}
    traffic: Counter[str] = Counter()
    for r in reports:
        for key, v in r["drops"].items():
            drops[key] = drops.get(key, 0) + v
        traffic.update(r.get("traffic", {}))
    for before in traffic0:
        traffic.subtract(before)
    return {
        "impl": impl if impl != "ours" or swim else "ours (no SWIM)",
        "nodes": n,
        "processes": len(everyone),
        "mode": f"rate {rate:g}/s" if rate else "saturating",
        "gc_policy": impl == "ours" and os.environ.get(GC_POLICY_ENV) != "0",
        "write_coalesce": float(os.environ[COALESCE_ENV]) if COALESCE_ENV in os.environ else None,
        "messages": messages,
        "size": size,
        "subscribers": subscribers,
        "setup_s": round(setup_s, 2),
        "publish_s": round(published["elapsed_s"], 3),
        "publish_rate": round(messages / published["elapsed_s"], 1) if published["elapsed_s"] > 0 else None,
        "publish_errors": published["errors"],
        "first_publish_error": published["first_error"],
        "delivered_per_s": round(unique / window_s, 1),
        "expected": expected,
        "delivered_unique": unique,
        "duplicates": sum(r["duplicates"] for r in reports),
        "lost": expected - unique,
        "delivery_ratio": round(unique / expected, 6) if expected else None,
        "latency_p50_ms": round(percentile(latencies, 50), 2),
        "latency_p99_ms": round(percentile(latencies, 99), 2),
        "latency_max_ms": round(max(latencies), 2) if latencies else math.nan,
        "drops": {k: v for k, v in drops.items() if v},
        # Ours only, all nodes, the measured window only: RPC frames written
        # (rpc_out) and read, writes, bytes and the routers' duplicates per
        # delivery — how much of the CPU is per frame and per copy.
        "traffic_per_delivery": {k: round(v / unique, 2) for k, v in traffic.items()} if traffic and unique else {},
        "cpu_ms_per_delivery": round(1000 * cpu_total / unique, 3) if unique else None,
        "publisher_cpu_us_per_msg": round(1e6 * pub_cpu / messages, 1) if messages else None,
        "subscriber_cpu_us_per_delivery": round(1e6 * (cpu_total - pub_cpu) / unique, 1) if unique else None,
        "cpu_pct_of_one_core": round(100 * cpu_total / max(1e-9, measured_s), 1),
        # Share of that CPU in the kernel (TCP on loopback runs both ends'
        # stacks in the sender's syscalls; many small writes cost here).
        "kernel_cpu_pct": round(100 * cpu_kernel / cpu_total, 1) if cpu_total > 0 else None,
        "measured_s": round(measured_s, 2),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        **({"profile": profile} if profile else {}),
    }


def _ratio(x: Any, base: Any) -> str:
    if not x or not base:
        return "—"
    return f"{x / base:.2f}x"


def table(runs: list[dict[str, Any]]) -> str:
    """One row per run; ratios against ours at the same size and mode."""
    headers = ("impl", "nodes", "procs", "mode", "msgs", "publish/s", "delivered/s", "vs ours", "ratio", "lost",
               "P50 ms", "P99 ms", "CPU ms/delivery", "vs ours", "pub us/msg", "sub us/delivery", "drops")
    base = {(r["nodes"], r["mode"]): r for r in runs if r["impl"].startswith("ours")}
    rows = []
    for r in runs:
        b = base.get((r["nodes"], r["mode"]), {})
        rows.append([r["impl"], r["nodes"], r["processes"], r["mode"], r["messages"], r["publish_rate"],
                     r["delivered_per_s"], _ratio(r["delivered_per_s"], b.get("delivered_per_s")),
                     r["delivery_ratio"], r["lost"], r["latency_p50_ms"], r["latency_p99_ms"],
                     r["cpu_ms_per_delivery"], _ratio(r["cpu_ms_per_delivery"], b.get("cpu_ms_per_delivery")),
                     r["publisher_cpu_us_per_msg"], r["subscriber_cpu_us_per_delivery"],
                     ", ".join(f"{k} {v}" for k, v in r["drops"].items()) or "0"])
    return md_table(headers, rows)


def profile_table(runs: list[dict[str, Any]]) -> str:
    """Share of samples per category, and that share of the measured CPU in us
    per message (publisher) or per delivery (subscriber worker)."""
    headers = ("impl", "nodes", "process", "CPU us", *PROFILE_CATEGORIES)
    rows = []
    for r in runs:
        for role, key in (("publisher", "publisher_cpu_us_per_msg"), ("subscriber", "subscriber_cpu_us_per_delivery")):
            prof = r["profile"].get(role)
            if not prof or not prof.get("pct"):
                continue
            cpu = r[key] or 0.0
            rows.append([r["impl"], r["nodes"], role, cpu,
                         *(f"{prof['pct'].get(c, 0):.0f} % ({cpu * prof['pct'].get(c, 0) / 100:.0f})"
                           for c in PROFILE_CATEGORIES)])
    return md_table(headers, rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--impls", default=",".join(IMPLS),
                   help=f"comma-separated, run in this order (default {','.join(IMPLS)}; also pylibp2p-defaults)")
    p.add_argument("--nodes", default="2", help="comma-separated network sizes (default 2)")
    p.add_argument("--messages", type=int, help="measured messages per run (default: 5000 at 2 nodes, 1000 at 10)")
    p.add_argument("--rate", type=float, help="fixed offered load in msg/s (default: as fast as publish returns)")
    p.add_argument("--size", type=int, default=128, help="payload bytes (default 128)")
    p.add_argument("--procs", type=int, default=2,
                   help="Python worker processes for the subscribers (default 2; the publisher has its own)")
    p.add_argument("--degree", type=int, default=3, help="peers each node dials (default 3)")
    p.add_argument("--seed", type=int, default=1, help="topology seed (default 1)")
    p.add_argument("--idle-timeout", type=float, default=10.0, help="stop draining after this long without a delivery")
    p.add_argument("--no-gc-policy", action="store_true",
                   help="ours: leave the collector at CPython's defaults (by default each worker applies "
                        "agentp2p/gc_policy.py after its imports, as the daemon does)")
    p.add_argument("--write-coalesce", type=float, metavar="S",
                   help="ours: pubsub.write_coalesce in every node (default: the node's, 0.002 s)")
    p.add_argument("--no-swim", action="store_true",
                   help="our nodes without SWIM (the others have none; our DHT and go's stay on)")
    p.add_argument("--setup-timeout", type=float, default=300.0)
    p.add_argument("--profile", action="store_true",
                   help="sample the publisher and the first subscriber worker with py-spy during the measured "
                        "window (Python implementations) and print where their time goes")
    p.add_argument("--py-spy", default=shutil.which("py-spy"), help="py-spy executable (default: on PATH)")
    p.add_argument("--profile-dir", type=Path, default=Path(tempfile.gettempdir()) / "pubsub_profile",
                   help="where the raw py-spy stacks go (default: $TMPDIR/pubsub_profile)")
    p.add_argument("--cprofile", type=Path, metavar="DIR",
                   help="also run cProfile (CPU-time clock) in the publisher and first subscriber worker for the "
                        "measured window; pstats files in DIR (read: python -m pstats FILE). Slows them ~2x")
    p.add_argument("--json", action="store_true")
    p.add_argument("--worker", choices=ALL_IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--role", choices=("pub", "sub"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.write_coalesce is not None:
        os.environ[COALESCE_ENV] = repr(args.write_coalesce)  # the workers inherit it
    if args.no_gc_policy:
        os.environ[GC_POLICY_ENV] = "0"
    if args.worker:
        if args.worker == "ours" and os.environ.get(GC_POLICY_ENV) != "0":
            import importlib

            from agentp2p import gc_policy

            for module in ("agentp2p.node", "agentp2p.testing"):  # loaded before the freeze, as in the daemon
                importlib.import_module(module)

            gc_policy.apply()
        try:
            trio.run(worker_main, args.worker, args.role, not args.no_swim)
        except BaseException as exc:
            if not _STOPPED.is_set():
                raise
            # py-libp2p's services sometimes fail while several hosts of one
            # process shut down; the figures were delivered already.
            print(f"worker {args.worker}/{args.role}: teardown after stop failed: {sorted(set(_leaves(exc)))}",
                  file=sys.stderr)
        return {}
    impls = [x for x in args.impls.split(",") if x]
    if args.profile and not args.py_spy:
        p.error("--profile needs py-spy (pip install py-spy, or --py-spy PATH)")
    for impl in impls:
        if impl not in ALL_IMPLS:
            p.error(f"unknown implementation {impl!r} (choose from {', '.join(ALL_IMPLS)})")
    runs = []
    for n in [int(x) for x in args.nodes.split(",") if x]:
        if n < 2:
            p.error("need at least 2 nodes (a publisher and a subscriber)")
        for impl in impls:
            msgs = args.messages or default_messages(n)
            try:
                profiler = Profiler(args.py_spy, args.profile_dir, f"{impl}-{n}") if args.profile else None
                run = trio.run(run_impl, impl, n, msgs, args.size, args.rate, args.procs, args.degree, args.seed,
                               args.idle_timeout, args.setup_timeout, profiler, args.cprofile, not args.no_swim)
            except Exception as exc:  # noqa: BLE001 — one implementation failing must not hide the others
                run = {"impl": impl, "nodes": n, "error": repr(exc)}
                traceback.print_exc()
                print(f"{impl} at {n} nodes failed: {exc!r}", file=sys.stderr, flush=True)
            runs.append(run)
            if not args.json:
                print(json.dumps(run), flush=True)
    result = {"benchmark": "pubsub_compare", "runs": runs}
    if args.json:
        emit(result, True)
    else:
        print(table([r for r in runs if "error" not in r]))
        profiled = [r for r in runs if r.get("profile")]
        if profiled:
            print(profile_table(profiled))
    return result


if __name__ == "__main__":
    main()
