"""Run the real Kademlia core for 1,000-10,000 nodes on one virtual clock (issue #13).

The same ``KademliaCore`` the node runs (agentp2p/protocol/kademlia/core.py),
with the node's own configuration (``kademlia_config(DHTConfig())``: k = 20,
alpha = 3, 5 s requests, 10 s lookups, refresh every 10 min); the
simulator only replaces the adapter. The driver is the kademlia simnet
(agentp2p/protocol/kademlia/simnet.py) with its network model switched on:

* **Links.** Every pair of nodes has a one-way latency, fixed for the pair
  and drawn from the seed (simulation/links.py): lognormal, median 50 ms,
  sigma 0.5, clipped to 10-200 ms (as the gossipsub simulator), or uniform
  10-150 ms. No bandwidth and no CPU model: a node answers at once.
* **Connections** (``transport``). ``node``, the default: a new connection
  costs 2 round trips before its first request (TCP 1, Noise XX 1: the
  dialer proposes its one security protocol and its one muxer without
  waiting for the listener's answers, which come back in front of Noise's
  second message and the first muxer frames — network/multistream.py);
  each side learns the other is a DHT server 2 round trips later (identify
  on its own stream: its negotiation, header and proposal in one write,
  then its answer; our adapter polls the peerstore for it); a new outbound
  DHT stream costs nothing extra: its protocol proposal rides with its
  first request (a LazyStream); a newcomer takes its bootstrap peer for a
  DHT server once connected, without waiting for identify (as the node
  does with its configured bootstrap peers); a stream carries one exchange at a time
  and is replaced after 30 s idle (our PeerSender); a node keeps at most
  300 connections (``max_connections``), closing the least recently used.
  ``py-libp2p``: the same with py-libp2p 0.8.1's multistream client, which
  waits for the listener's header before its proposal (2 round trips per
  negotiation: 6 per connection, 2 per stream, 3 for identify) — the node
  before 2026-12-02. ``benchmarks/round_trips.py`` measures both through a
  delaying proxy. ``warm``: every connection free and instant — the
  protocol's own round trips alone.
* **Loss** drops whole requests, answers and pings independently (the
  requester's core times the request out after 5 s): a worst case, since
  over a real stream a lost packet is a retransmission, not a lost message.
* **Churn.** A leaving node vanishes without a word (requests to it are
  never answered; nobody is told); a joining node is a fresh peer ID that
  dials one of the ``bootstrap_nodes`` (which never leave) and, once
  identify has run, does its self-lookup (``Bootstrap``), as the node's
  bootstrapper does.
* **Building the network.** The bootstrap nodes start connected to each
  other; then the others join one after another, ``join_rate`` per second,
  each through a random bootstrap node and its own self-lookup — no table
  is filled by hand. The cores' bucket refresh (10 min) and provider
  republish run as in a node.
* **Wire.** Messages are handed over as objects and sized exactly
  (``codec.encoded_size``); ``wire="full"`` encodes and decodes every one.

Everything random comes from the seed (peer IDs and the cores' RNGs from
the simnet's stream, the workload and the churn from streams of their own,
loss from another), and the event queue breaks ties by insertion order, so
a run is exactly reproducible.

What is measured is defined in kademlia_metrics.py; the scenarios are
:func:`lookup_scenario`, :func:`newcomer_scenario` and
:func:`survival_scenario`.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agentp2p.config import DHTConfig
from agentp2p.protocol.dht import kademlia_config
from agentp2p.protocol.kademlia import (
    Bootstrap,
    ClosestPeers,
    FindProviders,
    KademliaConfig,
    Provide,
    Provided,
    ProvidersFound,
    QueryFinished,
    StartLookup,
    kad_key,
)
from agentp2p.protocol.kademlia.simnet import SimNet, Transport

from .kademlia_metrics import Sample, SampleLog, summarise
from .links import LognormalLatency, UniformLatency

__all__ = ["NODE", "PY_LIBP2P", "TRANSPORTS", "WARM", "KadSimConfig", "KadSimulation", "SurvivalPlan", "lookup_scenario",
           "newcomer_scenario", "node_kad_config", "provider_key", "refresh_all_at_once", "refresh_scenario",
           "survival_scenario"]

#: Our node's connections (round trips; see the module docstring).
NODE = Transport(dial_rtts=2.0, stream_rtts=0.0, identify_rtts=2.0, stream_idle=30.0, max_connections=300,
                 assume_bootstrap=True)
#: The same with py-libp2p 0.8.1's multistream client (the node before 2026-12-02).
PY_LIBP2P = Transport(dial_rtts=6.0, stream_rtts=2.0, identify_rtts=3.0, stream_idle=30.0, max_connections=300)
#: Every connection already up: the DHT's own round trips alone.
WARM = Transport()
TRANSPORTS = {"node": NODE, "py-libp2p": PY_LIBP2P, "warm": WARM}


def node_kad_config() -> KademliaConfig:
    """The core's configuration in a node run on the defaults."""
    return kademlia_config(DHTConfig())


def refresh_all_at_once(kad: KademliaConfig) -> KademliaConfig:
    """``kad`` with its bucket refreshes as before 2026-12-07: no jitter, every
    stale bucket at the same check (the counterpart refresh_scenario compares)."""
    return replace(kad, refresh_jitter=0.0, max_refreshes_per_check=64)


def provider_key(name: str) -> bytes:
    """A provider key as the node makes one: the sha2-256 multihash of the name."""
    return b"\x12\x20" + hashlib.sha256(name.encode()).digest()


@dataclass(frozen=True)
class KadSimConfig:
    n: int = 1000
    seed: int = 1
    latency: str = "lognormal"  # or "uniform" (10-150 ms)
    transport: str = "node"  # or "py-libp2p" (the library's multistream client), "warm"
    wire: str = "size"  # or "full" (encode and decode every message)
    #: Stable nodes every newcomer dials first (they never leave).
    bootstrap_nodes: int = 4
    #: Nodes joining per second of virtual time while the network is built.
    join_rate: float = 100.0
    #: Virtual seconds run after the build, before any scenario (>= the
    #: refresh interval: every node has run one round of bucket refresh).
    settle: float = 0.0
    #: The cores' configuration; None: the node's own.
    kad: KademliaConfig | None = None

    def __post_init__(self) -> None:
        if self.latency not in ("lognormal", "uniform"):
            raise ValueError("latency must be lognormal or uniform")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {sorted(TRANSPORTS)}")
        if self.n < self.bootstrap_nodes + 2 or self.bootstrap_nodes < 1:
            raise ValueError("need at least one bootstrap node and a few others")


@dataclass(slots=True)
class _Pending:
    peer: bytes
    qid: object
    kind: str
    label: str
    clock: float  # latency is measured from here
    issued: float
    truth: list[bytes] | None = None  # FIND_NODE: the k closest live nodes when it started
    providers: frozenset[bytes] | None = None  # GET_PROVIDERS: who provides the key
    tag: object = None


class KadSimulation:
    def __init__(self, cfg: KadSimConfig) -> None:
        self.cfg = cfg
        self.kad = cfg.kad or node_kad_config()
        self.links = (LognormalLatency(seed=cfg.seed) if cfg.latency == "lognormal"
                      else UniformLatency(seed=cfg.seed))
        self.net = SimNet(seed=cfg.seed, config=self.kad, link_latency=self.links, wire=cfg.wire,
                          transport=TRANSPORTS[cfg.transport])
        #: The workload (who asks what, when) and the churn have streams of their own.
        self.wrng = random.Random(cfg.seed * 1_000_003 + 17)
        self.crng = random.Random(cfg.seed * 1_000_003 + 29)
        self.live: list[bytes] = []
        self._pos: dict[bytes, int] = {}
        self._keys: dict[bytes, int] = {}  # live peer -> its key as an int
        self._since: dict[bytes, float] = {}  # live peer -> when it joined
        self.stable: set[bytes] = set()  # never leave: bootstrap nodes, providers of the survival runs
        self.boot: list[bytes] = []
        self.log = SampleLog()
        self._pending: list[_Pending] = []
        self._qids = itertools.count()
        self._announced = 0  # measured queries to start once a newcomer has joined
        self.joined = 0
        self.left = 0
        self.build_seconds = 0.0

    # ------------------------------------------------------------ membership

    def _add_live(self, p: bytes) -> None:
        self._pos[p] = len(self.live)
        self.live.append(p)
        self._keys[p] = int.from_bytes(kad_key(p), "big")
        self._since[p] = self.net.now

    def _remove_live(self, p: bytes) -> None:
        i = self._pos.pop(p)
        last = self.live.pop()
        if last != p:
            self.live[i] = last
            self._pos[last] = i
        del self._keys[p]
        del self._since[p]

    def join(self, *, config: KademliaConfig | None = None, stable: bool = False,
             then: Callable[[bytes], None] | None = None) -> bytes:
        """A new node dials a random bootstrap node and, once it takes it for
        a DHT server (identify has run; or the connection is up, under the
        transport's ``assume_bootstrap``), does its self-lookup;
        ``then(peer)`` runs at that moment too."""
        net = self.net
        p = net.add_node(config=config)
        self._add_live(p)
        if stable:
            self.stable.add(p)
        self.joined += 1
        boot = self.boot[self.crng.randrange(len(self.boot))]
        known = net.connect(p, boot, bootstrap=True)
        if then is not None:
            self._announced += 1
        net.call_at(known, lambda: self._joined(p, then))
        return p

    def _joined(self, p: bytes, then: Callable[[bytes], None] | None) -> None:
        if then is not None:
            self._announced -= 1
        if p not in self.net.nodes:
            if then is not None:
                self.log.orphaned += 1
            return  # left before it got going
        self.net.input(p, Bootstrap())
        if then is not None:
            then(p)

    def leave(self, p: bytes) -> None:
        node = self.net.nodes.get(p)
        if node is not None and node.finished:
            self.collect()  # what it measured before it went still counts
        self.net.remove(p)
        self._remove_live(p)
        self.left += 1

    def build(self) -> None:
        """Bootstrap nodes (connected to each other), then everyone else joining one by one."""
        wall = time.perf_counter()
        net, cfg = self.net, self.cfg
        for _ in range(cfg.bootstrap_nodes):
            p = net.add_node()
            self._add_live(p)
            self.stable.add(p)
            known = net.now
            for q in self.boot:
                known = max(known, net.connect(p, q))
            net.call_at(known, lambda p=p: net.input(p, Bootstrap()))
            self.boot.append(p)
        spacing = 1.0 / cfg.join_rate
        t0 = net.now
        for i in range(cfg.n - cfg.bootstrap_nodes):
            net.call_at(t0 + (i + 1) * spacing, self.join)
        net.run(t0 + (cfg.n - cfg.bootstrap_nodes) * spacing)
        net.run_queries(120.0)
        if cfg.settle:
            net.run(net.now + cfg.settle)
            net.run_queries(120.0)
        self.build_seconds = time.perf_counter() - wall

    # ------------------------------------------------------------ ground truth

    def closest_live(self, key: bytes, n: int, exclude: bytes | None = None) -> list[bytes]:
        """The ``n`` live nodes truly closest to raw ``key`` (XOR of sha256)."""
        t = int.from_bytes(kad_key(key), "big")
        best = heapq.nsmallest(n + 1, self._keys.items(), key=lambda kv: kv[1] ^ t)
        return [p for p, _ in best if p != exclude][:n]

    def random_live(self, *, exclude_stable: bool = False, min_age: float = 0.0) -> bytes:
        """A random live node (not a stable one, if asked; one that joined at
        least ``min_age`` seconds ago)."""
        since = self.net.now - min_age
        while True:
            p = self.live[self.wrng.randrange(len(self.live))]
            if (not exclude_stable or p not in self.stable) and (not min_age or self._since[p] <= since):
                return p

    # ------------------------------------------------------------ measured queries

    def ask(self, peer: bytes, make: Callable[[object], Any], kind: str, label: str, *,
            clock: float | None = None, truth: list[bytes] | None = None,
            providers: frozenset[bytes] | None = None, tag: object = None) -> None:
        """Start a measured query at ``peer`` (``make(query_id)`` builds the event)."""
        qid = ("sim", next(self._qids))
        now = self.net.now
        self._pending.append(_Pending(peer, qid, kind, label, now if clock is None else clock, now, truth,
                                      providers, tag))
        self.net.input(peer, make(qid))

    def collect(self) -> int:
        """Move finished measured queries into the log; returns how many still run."""
        nodes = self.net.nodes
        keep: list[_Pending] = []
        for p in self._pending:
            node = nodes.get(p.peer)
            if node is None:
                self.log.orphaned += 1
                continue
            fin = node.finished.pop(p.qid, None)
            if fin is None:
                keep.append(p)
                continue
            self.log.add(p.label, self._sample(p, fin))
        self._pending = keep
        return len(keep)

    def _sample(self, p: _Pending, fin: QueryFinished) -> Sample:
        st, res = fin.stats, fin.result
        ok, exact, found = False, None, 0
        if p.kind == "lookup" and isinstance(res, ClosestPeers) and p.truth is not None:
            ids = {x.id for x in res.peers}
            ok = bool(p.truth) and p.truth[0] in ids
            exact = ids == set(p.truth)
            found = len(ids)
        elif p.kind == "providers" and isinstance(res, ProvidersFound) and p.providers is not None:
            found = sum(1 for x in res.providers if x.id in p.providers)
            ok = found > 0
        elif p.kind == "provide" and isinstance(res, Provided):
            found = res.announced
            ok = found > 0
        return Sample(p.kind, ok, (p.issued - p.clock) + st.duration, st.hops, st.requests, st.failures,
                      st.timed_out, exact, found, p.tag)

    def run_measured(self, limit: float = 600.0) -> None:
        """Run until every measured query has finished (or ``limit`` virtual seconds)."""
        end = self.net.now + limit
        while (self.collect() or self._announced) and self.net.now < end:
            self.net.run(min(end, self.net.now + 1.0))
        self.collect()

    def lookup(self, label: str, origin: bytes, key: bytes) -> None:
        truth = self.closest_live(key, self.kad.k, exclude=origin)
        self.ask(origin, lambda q: StartLookup(q, key), "lookup", label, truth=truth)

    def find_providers(self, label: str, peer: bytes, key: bytes, providers: frozenset[bytes], *,
                       count: int = 20, clock: float | None = None, tag: object = None) -> None:
        self.ask(peer, lambda q: FindProviders(q, key, count), "providers", label, clock=clock,
                 providers=providers, tag=tag)

    def provide(self, label: str, peer: bytes, key: bytes) -> None:
        self.ask(peer, lambda q: Provide(q, key), "provide", label)

    def holders(self, key: bytes, provider: bytes) -> int:
        """Live nodes that hold ``provider``'s record for ``key`` (its own copy not counted)."""
        now = self.net.now
        n = 0
        nodes = self.net.nodes
        for p in self.live:
            if p != provider and any(r.peer == provider for r in nodes[p].core.providers.get(key, now, 64)):
                n += 1
        return n

    def table_sizes(self) -> list[int]:
        return [len(self.net.nodes[p].core.table) for p in self.live]


# ---------------------------------------------------------------- scenarios


def _spread(sim: KadSimulation, count: int, spacing: float, fn: Callable[[int], None]) -> None:
    t0 = sim.net.now
    for i in range(count):
        sim.net.call_at(t0 + i * spacing, lambda i=i: fn(i))


def lookup_scenario(sim: KadSimulation, *, lookups: int = 500, losses: tuple[float, ...] = (0.0, 0.01, 0.05),
                    spacing: float = 0.05) -> dict[str, dict[str, Any]]:
    """FIND_NODE lookups of random keys from random live nodes, at each loss
    rate in turn (the network is the same; loss is off again afterwards)."""
    out: dict[str, dict[str, Any]] = {}
    for loss in losses:
        label = f"lookup loss {loss:.0%}"
        sim.net.loss = loss
        r0, l0 = sim.net.stats.requests, sim.net.stats.lost

        def one(_: int, label: str = label) -> None:
            sim.lookup(label, sim.random_live(), sim.wrng.getrandbits(256).to_bytes(32, "big"))

        _spread(sim, lookups, spacing, one)
        sim.net.run(sim.net.now + lookups * spacing)
        sim.run_measured()
        out[label] = summarise(sim.log.get(label))
        out[label].update(loss=loss, lost=sim.net.stats.lost - l0, all_requests=sim.net.stats.requests - r0)
    sim.net.loss = 0.0
    return out


def newcomer_scenario(sim: KadSimulation, *, capabilities: int = 20, providers_per: int = 5,
                      newcomers: int = 100, counts: tuple[int, ...] = (20, 1), spacing: float = 1.0,
                      loss: float = 0.0) -> dict[str, dict[str, Any]]:
    """``capabilities`` keys, each provided by ``providers_per`` live nodes;
    then newcomers join one at a time and, as soon as they take their
    bootstrap node for a server (with their self-lookup), look one capability up
    with FIND_PROVIDERS(count). ``count`` 20 is what ``find_agents`` asks
    (so the lookup runs to its end unless 20 providers turn up); 1 stops at
    the first provider. The latency runs from the newcomer's first dial."""
    out: dict[str, dict[str, Any]] = {}
    names = [f"capability/sim-{sim.cfg.seed}-{i}" for i in range(capabilities)]
    keys = [provider_key(nm) for nm in names]
    chosen: list[bytes] = []
    who: dict[bytes, frozenset[bytes]] = {}
    for k in keys:
        provs: list[bytes] = []
        while len(provs) < providers_per:
            p = sim.random_live(exclude_stable=True)
            if p not in provs:
                provs.append(p)
        who[k] = frozenset(provs)
        chosen += [(p, k) for p in provs]  # type: ignore[misc]
    b0 = sim.net.stats.bytes
    _spread(sim, len(chosen), 0.01, lambda i: sim.provide("provide", *chosen[i]))  # type: ignore[misc]
    sim.net.run(sim.net.now + len(chosen) * 0.01)
    sim.run_measured()
    out["provide"] = summarise(sim.log.get("provide"))
    out["provide"]["bytes_per_put"] = (sim.net.stats.bytes - b0) / max(1, len(chosen))
    sim.net.loss = loss
    for count in counts:
        label = f"newcomer count {count}"

        def arrive(_: int, label: str = label, count: int = count) -> None:
            k = keys[sim.wrng.randrange(len(keys))]
            t0 = sim.net.now
            sim.join(then=lambda p: sim.find_providers(label, p, k, who[k], count=count, clock=t0))

        _spread(sim, newcomers, spacing, arrive)
        sim.net.run(sim.net.now + newcomers * spacing)
        sim.run_measured()
        out[label] = summarise(sim.log.get(label))
        out[label].update(providers_count=count, loss=loss)
    sim.net.loss = 0.0
    return out


@dataclass(frozen=True)
class SurvivalPlan:
    """Provider records under churn, with the providers' republish running.

    Timers are compressed: the republish interval is ``period`` virtual
    seconds (22 h in a node) and the records live ``period * 48 / 22`` (48 h);
    the routing tables' refresh keeps its real 10 min. Over each period a
    share ``churn`` of the nodes (all but the bootstrap nodes and the
    providers) is replaced: departures at uniformly random times, each at
    once followed by a newcomer. Every replication factor has its own
    providers in the same network (so all face the same churn); each
    provides ``keys_per`` keys once at the start."""

    churn: float = 0.1
    replications: tuple[int, ...] = (3, 5, 10, 20)
    keys_per: int = 200
    providers_per: int = 10
    period: float = 600.0
    periods: int = 2
    checkpoints_per_period: int = 2


def survival_scenario(cfg: KadSimConfig, plan: SurvivalPlan) -> dict[str, Any]:
    """Build a network with the compressed timers, provide, churn, and look
    every key up at each checkpoint (``checkpoints_per_period`` per period,
    each 5 s before its moment, counted from the first provide; so the last
    of a period comes just before the republish, when the records are
    oldest). Per replication factor: requests and bytes per put, the share
    of keys found, the live nodes holding each record (the provider's own
    copy not counted), and keys with none.

    At the end of the first period each record has only the holders of its
    first put, a period old: the worst case. Later, a record also lives on
    at the holders of the put before (records last 48/22 periods), as in a
    long-running network."""
    wall = time.perf_counter()
    base = cfg.kad or node_kad_config()
    kad = replace(base, provider_republish=plan.period, provider_ttl=plan.period * 48.0 / 22.0)
    sim = KadSimulation(replace(cfg, kad=kad))
    sim.build()
    net = sim.net
    groups: dict[int, list[bytes]] = {}
    for r in plan.replications:
        groups[r] = [sim.join(config=replace(kad, replication=r), stable=True) for _ in range(plan.providers_per)]
    net.run(net.now + 10.0)
    net.run_queries(120.0)
    # every key of every group provided at once (spread over a few seconds);
    # bytes per put = the lookups' bytes (all groups alike) + writes x one ADD_PROVIDER
    items: list[tuple[int, bytes, bytes]] = []
    for r, provs in groups.items():
        for j in range(plan.keys_per):
            items.append((r, provs[j % len(provs)], provider_key(f"survival/{cfg.seed}/r{r}/{j}")))
    sim.wrng.shuffle(items)
    b0, q0 = dict(net.stats.bytes_by_type), dict(net.stats.requests_by_type)
    t_first = net.now
    _spread(sim, len(items), 0.01, lambda i: sim.provide(f"provide r={items[i][0]}", items[i][1], items[i][2]))
    net.run(net.now + len(items) * 0.01)
    sim.run_measured()
    d_bytes = {k: v - b0.get(k, 0) for k, v in net.stats.bytes_by_type.items()}
    d_reqs = {k: v - q0.get(k, 0) for k, v in net.stats.requests_by_type.items()}
    lookup_bytes = sum(v for k, v in d_bytes.items() if k != "ADD_PROVIDER") / len(items)
    write_size = d_bytes.get("ADD_PROVIDER", 0) / max(1, d_reqs.get("ADD_PROVIDER", 0))
    # churn: departures at uniform times, each at once replaced by a newcomer
    per_period = round(plan.churn * (cfg.n - cfg.bootstrap_nodes))
    t0 = net.now
    end = t_first + plan.period * plan.periods
    for t in sorted(sim.crng.uniform(t0, end) for _ in range(per_period * plan.periods)):
        net.call_at(t, lambda: _replace_one(sim))
    cps = plan.checkpoints_per_period
    holders: dict[tuple[str, bytes], int] = {}  # (label, key) -> live holders then

    def checkpoint(label: str) -> None:
        for r, prov, k in items:
            # a reader that has been up a while (a newcomer asking before its
            # identify with the bootstrap node is done has an empty table: a
            # miss that says nothing about the records)
            reader = sim.random_live(exclude_stable=True, min_age=30.0)
            sim.find_providers(f"{label} r={r}", reader, k, frozenset((prov,)), count=1, tag=k)
            holders[(f"{label} r={r}", k)] = sim.holders(k, prov)

    labels: list[str] = []
    for i in range(1, plan.periods * cps + 1):
        label = f"t={i / cps:.2f}"
        labels.append(label)
        net.call_at(t_first + i * plan.period / cps - 5.0, lambda label=label: checkpoint(label))
    r0 = net.stats.requests
    net.run(end)
    sim.run_measured()
    out: dict[str, Any] = {
        "n": cfg.n, "churn": plan.churn, "period": plan.period, "periods": plan.periods,
        "replaced": sim.left, "keys_per": plan.keys_per,
        "lookup_bytes_per_put": lookup_bytes, "write_bytes": write_size,
        "requests_per_node_s": (net.stats.requests - r0) / (len(sim.live) * (end - t0)),
        "orphaned": sim.log.orphaned, "wall_s": 0.0, "by_r": {},
    }
    first_end = labels[cps - 1]
    for r in plan.replications:
        put = summarise(sim.log.get(f"provide r={r}"))
        row: dict[str, Any] = {
            "requests_per_put": put["requests_mean"],
            "written_mean": put["found_mean"],
            "bytes_per_put": lookup_bytes + put["found_mean"] * write_size,
            "checkpoints": {},
        }
        all_ok = all_n = 0
        for label in labels:
            lab = f"{label} r={r}"
            smp = sim.log.get(lab)
            h = [n for (lb, _), n in holders.items() if lb == lab]
            sm = summarise(smp)
            row["checkpoints"][label] = {
                "reads": len(smp),
                "found": sm["success"],
                "not_found": sum(1 for x in smp if not x.ok),
                "not_found_with_holders": sum(1 for x in smp if not x.ok and holders.get((lab, x.tag), 0) > 0),
                "timed_out": sm["timed_out"],
                "holders_mean": sum(h) / len(h) if h else math.nan,
                "no_holder": sum(1 for x in h if x == 0),
                "p50": sm["p50"],
                "p99": sm["p99"],
            }
            all_ok += sum(x.ok for x in smp)
            all_n += len(smp)
        cp = row["checkpoints"]
        row["found_first_end"] = cp[first_end]["found"]
        row["lost_first_end"] = cp[first_end]["not_found"]
        row["holders_first_end"] = cp[first_end]["holders_mean"]
        row["holders_last"] = cp[labels[-1]]["holders_mean"]
        row["found_all"] = all_ok / all_n if all_n else math.nan
        row["not_found_all"] = all_n - all_ok
        row["not_found_with_holders"] = sum(c["not_found_with_holders"] for c in cp.values())
        row["no_holder_max"] = max(c["no_holder"] for c in cp.values())
        row["read_p50_first_end"] = cp[first_end]["p50"]
        row["read_p99_first_end"] = cp[first_end]["p99"]
        out["by_r"][r] = row
    out["wall_s"] = time.perf_counter() - wall
    return out


def refresh_scenario(sim: KadSimulation, *, duration: float = 2400.0, window: float = 60.0) -> dict[str, Any]:
    """The idle network's lookup requests, per ``window`` seconds over
    ``duration`` after the build: with no query asked, they are the bucket
    refreshes (and the liveness checks their answers trigger are not
    counted). How evenly the refreshes spread shows in ``peak`` against
    ``mean``: a network that joined together refreshes together unless
    each bucket's due time is spread (KademliaConfig.refresh_jitter)."""
    net = sim.net

    def total() -> int:
        return sum(node.core.stats.requests.get("lookup", 0) for node in net.nodes.values())

    counts: list[int] = []
    last = total()
    t = net.now
    for _ in range(max(1, int(duration // window))):
        t += window
        net.run(t)
        now = total()
        counts.append(now - last)
        last = now
    n = len(net.nodes)
    mean = sum(counts) / len(counts)
    return {"n": n, "window_s": window, "duration_s": duration, "per_window": counts, "total": sum(counts),
            "mean": mean, "peak": max(counts), "peak_over_mean": max(counts) / mean if mean else math.nan,
            "per_node_s": sum(counts) / (n * window * len(counts))}


def _replace_one(sim: KadSimulation) -> None:
    """A random node that may churn leaves, and a newcomer joins."""
    while True:
        p = sim.live[sim.crng.randrange(len(sim.live))]
        if p not in sim.stable:
            break
    sim.leave(p)
    sim.join()
