"""A devnet worker process: full nodes in one trio loop, driven over stdin/stdout.

Run by the controller as ``python -m agentp2p.devnet.worker --parent PID ...``;
it speaks the JSON lines of :mod:`agentp2p.devnet.wire`. Each node is a
complete :class:`~agentp2p.node.Node` on 127.0.0.1 with its defaults (or the
``--config`` file): SWIM, Kademlia, our gossipsub, messaging, and a
:class:`RecordService` offering one capability. Every node subscribes to
the devnet topic and counts what it receives, so the controller can tell
how far a message got.

Why one loop per worker, not a thread per node: a thread per node would
let ``pause`` freeze one node exactly (block its loop), but 40 nodes in 40
threads on one GIL were much slower than in one loop (SWIM had not
converged after 120 s where one loop took 14 s on the same machine). So
nodes share their worker's loop, and ``pause`` stops the whole worker
(SIGSTOP, sent by the controller; nothing to do here).

Stopping: when stdin closes (the controller quit, or died and the kernel
closed the pipe) every node stops — without SWIM's goodbye, nobody stays to
hear it — and the process exits; hard, if that takes more than
:data:`STOP_GRACE` seconds. A worker the controller paused cannot see its
stdin close, so the worker asks the kernel to send it SIGCONT when its
parent dies (Linux ``PR_SET_PDEATHSIG``): it wakes up, finds stdin closed
and stops.

Requests (``op``): ``start``, ``kill``, ``deny``, ``allow``, ``publish``,
``delivered``, ``find``, ``stats``, ``members``, ``views``, ``node``, ``graph`` — see
the ``_op_*`` methods.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from agentp2p.devnet.stalls import StallMeter
from agentp2p.devnet.views import encode_bitmap
from agentp2p.devnet.wire import LineReader, encode

if TYPE_CHECKING:
    from agentp2p.node import Node

log = logging.getLogger("agentp2p.devnet.worker")

#: A worker still stopping its nodes this long after its stdin closed exits hard.
STOP_GRACE = 20.0
#: How long a node may take to start (build, listen, start its services).
START_TIMEOUT = 60.0
#: How long a started node waits to be connected to one of its bootstraps.
CONNECT_TIMEOUT = 30.0
#: Messages whose receivers are remembered (the oldest are forgotten first).
SEEN_MESSAGES = 4096
#: Where the nodes listen.
LOCAL_LISTEN = "/ip4/127.0.0.1/tcp/0"


@dataclass
class NodeSlot:
    """One node of this worker and what it did."""

    index: int
    capability: str
    node: Node | None = None
    #: Its RecordService (``published`` is set after its first successful publish round).
    record: Any = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    up: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    error: str | None = None
    killed: bool = False
    deliveries: int = 0


def _exit_later(seconds: float) -> None:
    """Exit the process hard after ``seconds`` (a stop that hangs must not leak a worker)."""
    timer = threading.Timer(seconds, os._exit, args=(3,))
    timer.daemon = True
    timer.start()


def _wake_when_orphaned(parent: int) -> None:
    """SIGCONT from the kernel when the parent dies, so a paused worker notices
    its closed stdin; exit now if the parent is already gone."""
    with contextlib.suppress(Exception):  # Linux only; elsewhere an orphan waits for SIGCONT
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGCONT), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


class Worker:
    """The nodes of one worker and the requests that drive them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.topic: str = args.topic
        self.config_file = Path(args.config) if args.config else None
        self.slots: dict[int, NodeSlot] = {}
        #: message id -> this worker's nodes that received it: index -> seconds
        #: from its publish (the sender's ``time.monotonic()`` rides in the
        #: message; one clock for every process on the machine, CLOCK_MONOTONIC)
        self.seen: collections.OrderedDict[str, dict[int, float]] = collections.OrderedDict()
        #: peer ID (bytes) -> devnet node index, as the controller last sent it (``views``)
        self.roster: dict[bytes, int] = {}
        self.roster_n = 0
        self._out: Any = None
        self._out_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        #: Loop lag and collector pauses (``stats``' ``stalls``): a node that
        #: looks slow may be a worker that stood still (agentp2p.devnet.stalls).
        self.stalls = StallMeter()

    # -- the process ---------------------------------------------------------

    async def main(self) -> None:
        # Replies go to the original stdout; anything a library prints goes to stderr.
        self._out = trio.lowlevel.FdStream(os.dup(1))
        os.dup2(2, 1)
        reader = LineReader(trio.lowlevel.FdStream(os.dup(0)))
        async with self._out, trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.stalls.run)
            await self._send({"ready": True, "pid": os.getpid()})
            while (request := await reader.next()) is not None:
                nursery.start_soon(self._serve, request)
            # stdin closed: stop every node (no goodbyes: the whole devnet goes).
            _exit_later(STOP_GRACE)
            for slot in self.slots.values():
                self._skip_goodbye(slot)
            nursery.cancel_scope.cancel()

    async def _send(self, obj: dict[str, Any]) -> None:
        async with self._out_lock:
            await self._out.send_all(encode(obj))

    async def _serve(self, request: dict[str, Any]) -> None:
        rid = request.get("id")
        op = getattr(self, f"_op_{request.get('op')}", None)
        if op is None:
            await self._send({"id": rid, "ok": False, "error": f"unknown op {request.get('op')!r}"})
            return
        try:
            reply = await op(request)
        except Exception as exc:  # noqa: BLE001 — one request fails, never the worker
            log.debug("op %s failed", request.get("op"), exc_info=True)
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        else:
            reply = {"ok": True, **reply}
        await self._send({"id": rid, **reply})

    # -- nodes ---------------------------------------------------------------

    def _config(self, bootstrap: list[str]) -> Any:
        from agentp2p.config import NodeConfig, build_config

        return build_config(self.config_file, overrides={"listen": [LOCAL_LISTEN], "bootstrap": bootstrap},
                            base=NodeConfig())  # fmt: skip

    async def _run_node(self, slot: NodeSlot, bootstrap: list[str]) -> None:
        from agentp2p.application.records.service import RecordService
        from agentp2p.node import Node

        try:
            with slot.scope:
                cfg = self._config(bootstrap)
                record = slot.record = RecordService(f"devnet-{slot.index}", capabilities=[slot.capability])
                async with Node(cfg, services=[record]) as node:
                    slot.node = node
                    async with node.subscribe(self.topic) as sub:
                        slot.up.set()
                        async for msg in sub:
                            self._received(slot, msg.data)
        except Exception as exc:  # noqa: BLE001 — a node that fails must not take its worker with it
            slot.error = f"{type(exc).__name__}: {exc}"
            log.warning("node %d stopped: %s", slot.index, slot.error)
        finally:
            slot.node = None
            slot.done.set()

    def _received(self, slot: NodeSlot, data: bytes) -> None:
        now = time.monotonic()
        slot.deliveries += 1
        try:
            doc = json.loads(data)
            msg_id = str(doc["m"])
            sent = float(doc.get("s", now))
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        receivers = self.seen.get(msg_id)
        if receivers is None:
            receivers = self.seen[msg_id] = {}
            while len(self.seen) > SEEN_MESSAGES:
                self.seen.popitem(last=False)
        receivers.setdefault(slot.index, round(max(0.0, now - sent), 4))

    def _running(self, index: int) -> tuple[NodeSlot, Node]:
        slot = self.slots.get(index)
        if slot is None:
            raise LookupError(f"node {index} was never started in this worker")
        if slot.node is None or slot.done.is_set():
            raise LookupError(f"node {index} is not running" + (f" ({slot.error})" if slot.error else ""))
        return slot, slot.node

    @staticmethod
    def _skip_goodbye(slot: NodeSlot) -> None:
        swim = slot.node.services.get("swim") if slot.node is not None else None
        if swim is not None:
            swim.leave_on_stop = False  # type: ignore[attr-defined]

    # -- requests --------------------------------------------------------------

    async def _op_start(self, req: dict[str, Any]) -> dict[str, Any]:
        """Start node ``index`` bootstrapping from ``bootstrap``; reply once it
        runs and (with bootstraps) is connected to one, or CONNECT_TIMEOUT passed."""
        index = int(req["index"])
        old = self.slots.get(index)
        if old is not None and not old.done.is_set():
            raise ValueError(f"node {index} is already running")
        slot = self.slots[index] = NodeSlot(index, str(req["capability"]))
        bootstrap = [str(a) for a in req.get("bootstrap", [])]
        assert self._nursery is not None
        self._nursery.start_soon(self._run_node, slot, bootstrap, name=f"node {index}")
        t0 = time.monotonic()
        with trio.move_on_after(START_TIMEOUT):
            async with trio.open_nursery() as wait:
                async def until(event: trio.Event) -> None:
                    await event.wait()
                    wait.cancel_scope.cancel()

                wait.start_soon(until, slot.up)
                wait.start_soon(until, slot.done)
        if slot.done.is_set():
            raise RuntimeError(slot.error or "the node stopped while starting")
        if not slot.up.is_set() or slot.node is None:
            slot.scope.cancel()
            raise TimeoutError(f"node {index} did not start within {START_TIMEOUT:g}s")
        node = slot.node
        connected = not bootstrap
        with trio.move_on_after(CONNECT_TIMEOUT):
            while not connected and slot.node is not None:
                connected = bool(node.peers())
                if not connected:
                    await trio.sleep(0.05)
        return {"index": index, "peer_id": str(node.peer_id), "addr": node.addrs[0], "connected": connected,
                "seconds": round(time.monotonic() - t0, 3)}  # fmt: skip

    async def _op_kill(self, req: dict[str, Any]) -> dict[str, Any]:
        """Crash nodes: stop them without SWIM's goodbye, so peers must detect it."""
        killed = []
        for index in req["indices"]:
            slot = self.slots.get(int(index))
            if slot is None or slot.done.is_set():
                continue
            self._skip_goodbye(slot)
            slot.killed = True
            slot.scope.cancel()
            killed.append(slot)
        with trio.move_on_after(10):
            for slot in killed:
                await slot.done.wait()
        return {"killed": [s.index for s in killed]}

    async def _op_deny(self, req: dict[str, Any]) -> dict[str, Any]:
        """``deny``: {index: [peer ids]} — each node refuses those peers."""
        async with trio.open_nursery() as nursery:
            for index, peers in req["deny"].items():
                with contextlib.suppress(LookupError):  # a node killed meanwhile
                    _, node = self._running(int(index))
                    nursery.start_soon(self._deny, node, list(peers))
        return {}

    @staticmethod
    async def _deny(node: Node, peers: list[str]) -> None:
        await node.deny(*peers)

    async def _op_allow(self, req: dict[str, Any]) -> dict[str, Any]:
        """Clear the deny list of every node of this worker."""
        cleared = 0
        for slot in self.slots.values():
            if slot.node is not None:
                cleared += len(slot.node.allow())
        return {"cleared": cleared}

    async def _op_publish(self, req: dict[str, Any]) -> dict[str, Any]:
        _, node = self._running(int(req["index"]))
        sent = time.monotonic()
        payload = json.dumps({"m": str(req["msg"]), "f": int(req["index"]), "t": str(req.get("text", "")),
                              "s": sent})  # fmt: skip
        await node.publish(self.topic, payload.encode())
        # How long the publisher held it (backpressure: a peer's queue over the high-water mark).
        return {"publish_s": round(time.monotonic() - sent, 4)}

    async def _op_delivered(self, req: dict[str, Any]) -> dict[str, Any]:
        """Per message: this worker's nodes that received it (by index), each
        with how many seconds after its publish."""
        return {"delivered": {str(m): {str(i): s for i, s in self.seen.get(str(m), {}).items()} for m in req["msgs"]}}

    async def _op_find(self, req: dict[str, Any]) -> dict[str, Any]:
        _, node = self._running(int(req["index"]))
        t0 = time.monotonic()
        found = await node.find_agents(str(req["capability"]), limit=int(req.get("limit", 20)))
        return {"seconds": round(time.monotonic() - t0, 3), "peers": [str(a.record.peer_id) for a in found]}

    async def _op_stats(self, req: dict[str, Any]) -> dict[str, Any]:
        """Per node: mesh size on the topic, connections, routing table, deliveries;
        with ``observer``: that node's SWIM view too (if it is here); with
        ``counters``: its SWIM core's counters (suspicions, refutations...),
        its transport's (``transport_`` + name: frames, stream opens, drops)
        and its node's new connections (``dialer_`` + name: dials out;
        ``inbound_`` + name: connections in), its record's publish rounds
        (``records_``), its DHT's queries and requests (``dht_``) and its
        pub/sub frames and copies (``pubsub_``), which
        the ``stats`` command sums over the network (SWIM's only with SWIM on)."""
        counters = bool(req.get("counters"))
        nodes = []
        for slot in self.slots.values():
            node = slot.node
            entry: dict[str, Any] = {"index": slot.index, "running": node is not None, "killed": slot.killed,
                                     "deliveries": slot.deliveries}  # fmt: skip
            if slot.error:
                entry["error"] = slot.error
            if node is not None:
                entry.update(mesh=len(node.pubsub.mesh_peers(self.topic)), connections=len(node.peers()),
                             table=node.dht.routing_table_size, published=slot.record.published.is_set(),
                             mesh_low=node.config.pubsub.degree_low)  # fmt: skip
                if counters:
                    # The node's connections, its record's rounds and its
                    # DHT's work (prefixed), with SWIM on its core's and its
                    # transport's too: how many frames, stream opens, drops
                    # and new connections a window cost. (Under the key
                    # "swim_counters" for the devnet's summary, SWIM on or off.)
                    entry["swim_counters"] = {**_connection_counters(node), **_record_counters(slot.record),
                                              **_dht_counters(node), **_pubsub_counters(node),
                                              **_swim_counters(node)}  # fmt: skip
            nodes.append(entry)
        reply: dict[str, Any] = {"nodes": nodes, "stalls": self.stalls.as_dict()}
        observer = req.get("observer")
        if observer is not None and int(observer) in self.slots:
            reply["members"] = self._members(int(observer))
        return reply

    async def _op_graph(self, req: dict[str, Any]) -> dict[str, Any]:
        """Per running node: its connections and its mesh on the topic (peer
        IDs), and how many members its SWIM counts live — the dashboard's
        picture of the whole network (``agentp2p devnet --dashboard``)."""
        nodes = []
        for slot in self.slots.values():
            node = slot.node
            if node is None:
                continue
            live = sum(1 for m in node.members() if m.state in ("alive", "suspect"))
            nodes.append({"index": slot.index, "peer_id": str(node.peer_id), "peers": sorted(str(p) for p in node.peers()),
                          "mesh": sorted(str(p) for p in node.pubsub.mesh_peers(self.topic)), "swim_alive": live,
                          "deliveries": slot.deliveries})  # fmt: skip
        return {"nodes": nodes}

    def _members(self, index: int) -> dict[str, str]:
        _, node = self._running(index)
        return {str(m.peer_id): m.state for m in node.members()}

    async def _op_members(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"members": self._members(int(req["index"]))}

    async def _op_views(self, req: dict[str, Any]) -> dict[str, Any]:
        """Per running node: the devnet nodes its SWIM view holds alive and
        those it holds suspect, as bitmaps over node indices (views.py). The
        controller sends ``roster`` (peer ID -> index) and ``n`` when they
        changed; members outside the roster are left out."""
        if "roster" in req:
            from libp2p.peer.id import ID

            self.roster = {ID.from_base58(p).to_bytes(): int(i) for p, i in req["roster"].items()}
            self.roster_n = int(req["n"])
        nodes = []
        for slot in self.slots.values():
            node = slot.node
            if node is None or slot.done.is_set():
                continue
            swim = node.services.get("swim")
            alive: list[int] = []
            suspect: list[int] = []
            # The states alone (not node.members()): this runs several times a
            # second for every node while a merge is timed, on the same cores.
            for peer, state in swim.member_states() if swim is not None else ():  # type: ignore[attr-defined]
                i = self.roster.get(peer)
                if i is None:
                    continue
                if state == "alive":
                    alive.append(i)
                elif state == "suspect":
                    suspect.append(i)
            nodes.append({"index": slot.index, "alive": encode_bitmap(alive, self.roster_n),
                          "suspect": encode_bitmap(suspect, self.roster_n)})  # fmt: skip
        return {"nodes": nodes, "roster": len(self.roster)}

    async def _op_node(self, req: dict[str, Any]) -> dict[str, Any]:
        """One node's details, for ``stats I``."""
        slot, node = self._running(int(req["index"]))
        stats = node.stats()
        swim, dht, records = stats.get("swim", {}), stats.get("dht", {}), stats.get("records", {})
        return {
            "index": slot.index, "peer_id": str(node.peer_id), "addr": node.addrs[0], "capability": slot.capability,
            "connections": len(node.peers()), "routing_table": node.dht.routing_table_size,
            "mesh": len(node.pubsub.mesh_peers(self.topic)), "topic_peers": len(node.topic_peers(self.topic)),
            "deliveries": slot.deliveries, "denied": len(node.denied()),
            "swim_members": swim.get("members", {}), "swim_awareness": swim.get("awareness"),
            "dialer": stats.get("dialer", {}), "penalties_bans": stats.get("penalties", {}).get("bans", 0),
            "record_published": slot.record.published.is_set(), "record_rounds": records.get("rounds"),
            "record_round_failures": records.get("round_failures"),
            "record_failure_kinds": records.get("failure_kinds", {}),
            "record_published_after_s": records.get("published_after_s"),
            "dht": {k: dht.get(k) for k in ("values", "provider_records", "quota_hits", "queries", "query_latency")},
            "uptime_s": round(stats.get("uptime_s", 0.0), 1),
            # Why a node may be alone though connected: whom it is connected
            # to (the controller names them), and what each service made of
            # those connections.
            "peer_ids": [str(p) for p in node.peers()],
            "bootstrap": stats.get("bootstrap", {}),
            "dht_adapter": dht.get("adapter", {}),
            "swim_admission": swim.get("admission", {}),
            "swim_core": swim.get("core", {}),
            "swim_transport": swim.get("transport", {}),
            # Its router's counters, scores and internals: why a message was late or missed.
            "pubsub": stats.get("pubsub", {}),
        }  # fmt: skip


def _swim_counters(node: Any) -> dict[str, int]:
    """SWIM's core and transport counters (``transport_`` + name), none with
    SWIM off."""
    swim = node.services.get("swim")
    if swim is None:
        return {}
    return {
        **swim.core_stats(),
        **{f"transport_{k}": v for k, v in swim.transport_stats().items()},
        # Live members this node has no address for: it can probe them only
        # over a connection that is open.
        "members_without_addrs": sum(1 for m in node.members() if m.state in ("alive", "suspect") and not m.addrs),
        # Its Lifeguard score now (a level): what stretches its probes,
        # verdicts and gossip.
        "awareness": swim.awareness,
    }


def _record_counters(record: Any) -> dict[str, int]:
    """Its record's publish rounds (``records_rounds``, ``_round_failures``,
    ``records_failed_`` + what failed: ``put:short``...) and, once it is out,
    the seconds from start it took (``records_published_after_ms``): why a
    node's record was late."""
    stats = record.stats()
    out = {"records_rounds": stats["rounds"], "records_round_failures": stats["round_failures"]}
    out.update({f"records_failed_{k}": v for k, v in stats["failure_kinds"].items()})
    if stats["published_after_s"] is not None:
        out["records_published_after_ms"] = round(stats["published_after_s"] * 1000)
    return out


def _dht_counters(node: Any) -> dict[str, int]:
    """What its DHT asked of others: the queries its services ran, by kind
    (``dht_queries_`` + put, lookup...), and the requests it sent, by
    purpose (``dht_requests_`` + lookup, write, ping, reconnect...): what
    the DHT was doing in a window whose DHT dials rose (requests, not
    dials: most go over connections already open); and the liveness checks
    its budget held back (``dht_pings_skipped``)."""
    from agentp2p.protocol.dht import QUERY_KINDS, QUERY_OUTCOMES

    dht = node.dht
    out = {f"dht_queries_{kind}": sum(dht.query_outcomes[kind, o] for o in QUERY_OUTCOMES) for kind in QUERY_KINDS}
    svc = dht.service
    if svc is not None and svc.core is not None:
        out.update({f"dht_requests_{k}": v for k, v in svc.core.stats.requests.items()})
        out["dht_pings_skipped"] = svc.core.stats.pings_skipped
    return out


def _pubsub_counters(node: Any) -> dict[str, int]:
    """Its pub/sub frames (``pubsub_rpc_in``, ``_rpc_out``: RPC frames read
    and written) and messages (``pubsub_delivered`` first copies taken,
    ``_duplicates`` copies it had already, ``_forwarded`` copies sent): what
    one message costs the network, in frames (docs/scale.md)."""
    stats = node.pubsub.stats
    out = {"pubsub_rpc_in": stats.rpc_in, "pubsub_rpc_out": stats.rpc_out}
    core = node.pubsub.router.core
    if core is not None:
        c = core.stats
        out.update(pubsub_delivered=c.delivered, pubsub_duplicates=c.duplicates, pubsub_forwarded=c.forwarded)
    return out


def _connection_counters(node: Any) -> dict[str, int]:
    """The node's new connections so far: dial attempts out (``dialer_dials``,
    ``_successes``, ``_failures``; ``dialer_for_`` + what asked for one), connections let in (``inbound_accepted``,
    ``inbound_failed`` handshakes, ``inbound_timed_out``) and the
    connections found left closed in the swarm's table, taken out
    (``closing_forgotten``: agentp2p/network/closing.py)."""
    from agentp2p.network.inbound import inbound_gate

    dialer = node.dialer.stats
    out = {"dialer_dials": dialer.dials, "dialer_successes": dialer.successes, "dialer_failures": dialer.failures}
    # Which service asked for each new connection (a stream's protocol, or bootstrap...).
    out.update({f"dialer_for_{k}": v for k, v in dialer.by_purpose.items()})
    out["closing_forgotten"] = node.closer.stats.forgotten
    gate = inbound_gate(node.host)
    if gate is not None:
        out.update({f"inbound_{k}": int(gate.stats[k]) for k in ("accepted", "failed", "timed_out")})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="a devnet worker (started by `agentp2p devnet`)")
    ap.add_argument("--parent", type=int, required=True, help="the controller's pid")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--config", help="TOML node config applied to every node")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    _wake_when_orphaned(args.parent)
    # Skip the py-libp2p packages a TCP node never uses (QUIC, TLS, metrics): ~20 MB per worker.
    from agentp2p import _lean_import

    _lean_import.install()
    # Import the node now, so "ready" means ready (a second or more of CPU).
    for module in ("agentp2p.node", "agentp2p.application.records.service"):
        importlib.import_module(module)
    from agentp2p.log import setup_logging

    setup_logging("text", args.log_level)
    from agentp2p import gc_policy

    gc_policy.apply()  # the imports are done: keep the collector off them (agentp2p/gc_policy.py)
    trio.run(Worker(args).main)


if __name__ == "__main__":
    sys.exit(main())
