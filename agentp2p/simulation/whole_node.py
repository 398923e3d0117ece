"""The whole node on one virtual clock: SWIM, Kademlia and gossipsub together (issue #14).

The protocol simulators (swim.py, kademlia.py, gossipsub.py) each run one
core alone, on a network made for it. A node runs the three at once, and
they meet in one place: **connections**. A SWIM probe to a member we are
not connected to dials it; so does a DHT request to a peer a lookup
returned; every new connection is then a gossipsub peer, a candidate for
the routing table and a SWIM member (the node's adapters feed each
connection to every service, see ``protocol/swim/service.py``). What the
node does at scale — how many connections each node ends up with, what a
newcomer pays, how a partition heals — comes from that coupling, which no
single-protocol simulator sees. This one runs every node's three real cores
(the node's own configurations: ``SwimConfig()``, ``kademlia_config``,
``router_params``, gossipsub scoring on) and only replaces the adapters:

* **Links.** Each pair of nodes has a one-way latency fixed for the pair
  (links.py: lognormal, median 50 ms, 10-200 ms) and delivers in order.
  ``loss`` drops whole messages (all three protocols), a worst case.
* **Connections.** The first message from i to j dials: the connection is
  usable ``dial_rtts`` round trips later (TCP, Noise, muxer and stream
  negotiation: 4 by default; since 2026-12-02 the node needs 3 — TCP,
  Noise, and one for a stream's protocol, the DHT's none — see
  network/multistream.py and the Kademlia simulator's ``node`` model;
  the whole-node figures were taken with 4), and ``identify_rtts`` after that both sides hand it to
  their services (kad ``PeerConnected``, gossipsub ``PeerConnected``, SWIM
  ``MemberDiscovered``). A node refuses a new connection once it holds
  ``max_inbound`` inbound ones (256) or ``max_connections`` in all (300,
  which also stops its own dials), as the node's limits do. A dial
  to a crashed node or across a partition fails silently (the cores time
  out). The node's own connection manager (the same class) closes idle
  connections above its high-water mark (``connections``; off: the node
  before it, where nothing closed an idle connection), every interval and
  at once when the node refuses a connection for lack of room. It counts a
  connection as in use when a stream opens on it: SWIM and gossipsub keep
  one long-lived stream per peer, so here only a DHT request counts (the
  adapter's stream per peer is replaced after 30 s idle; counting every
  request errs towards "in use"). When a node crashes, or a
  partition cuts a connection, each end notices ``disconnect_detect``
  seconds later (a keep-alive timeout) and tells its kad and gossipsub
  cores.
* **Records on top.** Every node provides one capability (``capabilities``
  names shared round-robin) as the records service does: a provider record
  under ``provider_key(name)``, announced as soon as it is connected to its
  bootstrap node, alongside its self-lookup. Finding an agent is
  ``FindProviders`` and then fetching the record from a provider: one round
  trip more, plus a dial if not connected.
* **Signatures** are stand-ins (SWIM: swim.sim_signer; gossipsub: a
  constant answered valid at once): no crypto, no CPU model. A node
  processes anything instantly; the ``events`` counters (core inputs per
  node per second) are the load figure.
* **Churn.** Nodes crash (``crash``) and fresh nodes join (``join``); no
  node comes back under the same ID.

Everything random comes from the seed, and the heap breaks ties by insertion
order: a run is exactly reproducible. The scenarios and what they measure are
:func:`run_whole_node` and its helpers.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentp2p.application.records.service import GROWTH_LIMIT
from agentp2p.config import DHTConfig, PubSubConfig
from agentp2p.network.connection_manager import ConnectionManager, ConnectionsConfig
from agentp2p.protocol.dht import kademlia_config
from agentp2p.protocol.gossipsub.core import GossipSubCore
from agentp2p.protocol.gossipsub.events import (
    Deliver,
    Publish,
    Published,
    RpcReceived,
    SendRpc,
    SignatureChecked,
    Subscribe,
    Validate,
    ValidationResult,
    Verdict,
    VerifySignature,
)
from agentp2p.protocol.gossipsub.events import PeerConnected as GPeerConnected
from agentp2p.protocol.gossipsub.events import PeerDisconnected as GPeerDisconnected
from agentp2p.protocol.gossipsub.events import Tick as GTick
from agentp2p.protocol.gossipsub.score import PeerScore
from agentp2p.protocol.gossipsub.score_params import PeerScoreThresholds, default_score_params
from agentp2p.protocol.kademlia import (
    ArmTimer,
    Bootstrap,
    CancelQuery,
    CloseRequest,
    FindProviders,
    KademliaCore,
    PingPeer,
    Provide,
    Provided,
    ProvidersFound,
    ProvidersProgress,
    QueryFinished,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    SendRequest,
    SendResponse,
)
from agentp2p.protocol.kademlia import PeerConnected as KPeerConnected
from agentp2p.protocol.kademlia import PeerDisconnected as KPeerDisconnected
from agentp2p.protocol.kademlia import Tick as KTick
from agentp2p.protocol.kademlia.codec import encoded_size as kad_size
from agentp2p.protocol.pubsub import router_params
from agentp2p.protocol.swim import (
    ConnectAhead,
    ConnectionClosed,
    ConnectionLost,
    ConnectionOpened,
    EventKind,
    MemberDiscovered,
    MemberEvent,
    Received,
    RosterBase,
    Send,
    SwimConfig,
    SwimCore,
)
from agentp2p.protocol.swim import State as SwimState
from agentp2p.protocol.swim import Tick as STick
from agentp2p.protocol.swim.messages import Message as SwimMessage
from agentp2p.protocol.swim.wire import encoded_size as swim_size
from agentp2p.protocol.swim.wire import encoded_update_size

from .gossipsub_metrics import DeliveryLog, _MessageSizes, percentile, rpc_size
from .kademlia import provider_key
from .links import LognormalLatency, UniformLatency
from .swim import addr, peer_id, sim_signer, sim_verify
from .topology import figures

__all__ = ["TOPIC", "WholeNodeConfig", "WholeNodeSimulation", "run_churn", "run_partition_merge", "run_whole_node"]

#: The one topic every node subscribes to (as the records service's announcements).
TOPIC = "/agentp2p/sim/agents"
GOSSIP_PROTOCOL = "/meshsub/1.2.0"
_SIGNATURE = b"\x5a" * 64

_CALL, _READY, _NOTICE, _SWIM, _KAD, _GOSSIP, _WAKE_SWIM, _WAKE_GOSSIP, _WAKE_KAD = range(9)
_STICK, _GTICK, _KTICK = STick(), GTick(), KTick()
PROTOCOLS = ("swim", "kad", "gossip")
#: The SWIM states in which a view still holds a member.
_HELD = (SwimState.ALIVE, SwimState.SUSPECT)


def _sign(_payload: bytes) -> bytes:
    return _SIGNATURE


@dataclass(frozen=True)
class WholeNodeConfig:
    n: int = 1000
    seed: int = 1
    latency: str = "lognormal"  # or "uniform" (10-150 ms)
    loss: float = 0.0
    #: Stable nodes every other node dials first (connected to each other).
    bootstrap_nodes: int = 4
    #: Nodes joining per second while the network is built (n / 60: a join storm).
    join_rate: float = 50.0
    #: Round trips before a new connection carries a message, and more until
    #: both sides' services are told of it (identify).
    dial_rtts: float = 4.0
    identify_rtts: float = 1.0
    #: Bytes a new connection costs, both ends together: TCP payload of the
    #: Noise handshake, muxer and protocol negotiation, identify both ways,
    #: the gossipsub hello and the DHT's first exchange. Measured between two
    #: nodes on 127.0.0.1 with ``ss -ti`` (SWIM off: 2,145 + 2,147 bytes).
    dial_bytes: int = 4300
    #: The node's limits: connections either way (the swarm's), and
    #: established inbound ones (ResourceLimits.max_inbound_connections).
    max_connections: int = 300
    max_inbound: int = 256
    disconnect_detect: float = 10.0
    #: The node's connection manager (agentp2p/network/connection_manager.py,
    #: the same class): every ``interval`` a node above high water closes
    #: the connections idle longest down to low water, sparing its gossipsub
    #: mesh, the members SWIM probes now or next, and young or busy
    #: connections. ``enabled=False``: the node before it (nothing closed an
    #: idle connection).
    connections: ConnectionsConfig = field(default_factory=ConnectionsConfig)
    #: Distinct capability names, provided round-robin (so ~n / capabilities providers each).
    capabilities: int = 100
    swim: bool = True
    #: When SWIM starts. ``"join"``: on each node as it starts, its view
    #: growing from the members it connects to and push/pull (the node as it
    #: runs). ``"warm"``: on every node at once when the build ends, each
    #: view the whole network already, held in one read-only ``RosterBase``
    #: shared by all (SWIM's own simulator's warm start). A full view is O(n)
    #: per node, n² members in all (10⁸ at 10,000 nodes): only a shared
    #: roster fits that in memory. Nodes added after the build join as usual.
    swim_start: str = "join"
    #: SWIM's connect_ahead (None: the node's default, SwimConfig).
    connect_ahead: int | None = None
    #: SWIM's redial_upcoming (None: the node's default, SwimConfig).
    redial_upcoming: bool | None = None
    #: SWIM's close_grace (None: the node's default, SwimConfig).
    close_grace: bool | None = None
    #: The connection manager spares the members SWIM probes now or next
    #: (SwimCore.upcoming), as the node's assembly does. False: the node
    #: before 2026-12-04, to measure what it changes.
    protect_probes: bool = True
    #: SWIM's probe_connected_min (0: off, probe the whole roster; None: the
    #: node's default, SwimConfig): probe only connected members.
    probe_connected_min: int | None = None
    #: ... and its roster_probe_every (None: the node's default).
    roster_probe_every: int | None = None
    #: The DHT's slow_after: seconds, 0 off, or "auto" (learned); None: the node's default (DHTConfig).
    dht_slow_after: float | str | None = None
    #: The DHT's reconnect_interval: lost peers pinged again (None: the node's default; 0: off).
    dht_reconnect_interval: float | None = None
    #: Payload bytes of a published message.
    msg_size: int = 256
    #: The node's pub/sub config (its router parameters: degree, degree_near, ...).
    pubsub: PubSubConfig = field(default_factory=PubSubConfig)

    def __post_init__(self) -> None:
        if self.latency not in ("lognormal", "uniform"):
            raise ValueError("latency must be lognormal or uniform")
        if self.swim_start not in ("join", "warm"):
            raise ValueError("swim_start must be join or warm")
        if not 0 <= self.loss < 1:
            raise ValueError("loss is a probability in [0, 1)")
        if self.n < self.bootstrap_nodes + 2 or self.bootstrap_nodes < 2:
            raise ValueError("need at least two bootstrap nodes and a few others")
        self.connections.validate()
        if self.capabilities < 1 or self.join_rate <= 0 or self.max_connections < 1:
            raise ValueError("capabilities, join_rate and max_connections must be positive")


class _Node:
    __slots__ = ("i", "pid", "up", "conns", "manager", "inbound", "swim", "swim_seed", "kad", "gossip", "wake",
                 "kad_wake", "booted", "booted_at", "on_boot", "started", "joined", "cap", "queries", "progress", "round_table", "round_running",
                 "round_due")

    def __init__(self, i: int, pid: bytes, now: float) -> None:
        self.i = i
        self.pid = pid
        self.up = True
        #: peer index -> (connection usable from, we dialed it)
        self.conns: dict[int, tuple[float, bool]] = {}
        self.inbound = 0  # connections it did not dial (the limit counts these)
        self.manager: ConnectionManager | None = None
        self.swim: SwimCore | None = None
        self.swim_seed = 0  # its SWIM core's generator seed (drawn at the start, for a warm start later)
        self.kad: KademliaCore | None = None
        self.gossip: GossipSubCore | None = None
        self.wake: list[float | None] = [None, None]  # SWIM, gossipsub next wake-ups
        self.kad_wake: float | None = None
        #: Connected to a bootstrap node (and so started its self-lookup and first announce).
        self.booted = False
        self.booted_at: float | None = None
        self.on_boot: Callable[[], None] | None = None
        self.started = now
        self.joined: float | None = None  # its provider record is announced
        #: The records service's announce rounds: the routing table's size
        #: when the last one started, one running, one due (see _growth).
        self.round_table = 0
        self.round_running = False
        self.round_due = False
        self.cap = ""
        #: query id -> what to do with its QueryFinished
        self.queries: dict[object, Callable[[QueryFinished], None]] = {}
        #: query id -> what to do with each ProvidersProgress
        self.progress: dict[object, Callable[[ProvidersProgress], None]] = {}


@dataclass
class Counters:
    """Cumulative totals over all nodes (snapshot and subtract for a window)."""

    bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROTOCOLS, 0))
    messages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROTOCOLS, 0))
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROTOCOLS, 0))
    dials: int = 0
    trimmed: int = 0  # connections closed by the connection manager
    refused: int = 0
    failed_dials: int = 0
    lost: int = 0
    connect_ahead: int = 0  # SWIM ConnectAhead hints that found no connection
    #: Dials by what made them: "boot", "swim:<message>" (a Ping to the
    #: period's own target is "swim:Ping(probe)", any other "swim:Ping(other)":
    #: a helper's, a reconnect's or a newcomer's), "swim:ahead"
    #: (ConnectAhead), "kad:<request type>", "kad:response", "kad:ping" (a
    #: liveness check of a full bucket's oldest entry, or a lost peer's reconnect).
    dials_by: dict[str, int] = field(default_factory=dict)
    #: SWIM bytes by what carried them: each body type's frames without their
    #: piggybacked updates, and "updates:<state>" for the updates they carried.
    swim_bytes_by: dict[str, int] = field(default_factory=dict)
    swim_no_conn: int = 0  # SWIM gossip frames dropped: no connection to the member

    def copy(self) -> Counters:
        return dataclasses.replace(self, bytes=dict(self.bytes), messages=dict(self.messages),
                                   events=dict(self.events), dials_by=dict(self.dials_by),
                                   swim_bytes_by=dict(self.swim_bytes_by))


class WholeNodeSimulation:
    def __init__(self, cfg: WholeNodeConfig) -> None:
        self.cfg = cfg
        self.now = 0.0
        self.rng = random.Random(cfg.seed)
        #: The workload (who joins, publishes, crashes, looks up) has a stream of its own.
        self.wrng = random.Random(cfg.seed * 1_000_003 + 17)
        self.loss_rng = random.Random(cfg.seed * 1_000_003 + 5)
        self.links = (LognormalLatency(seed=cfg.seed) if cfg.latency == "lognormal"
                      else UniformLatency(seed=cfg.seed))
        swim_kw: dict[str, Any] = {}
        if cfg.connect_ahead is not None:
            swim_kw["connect_ahead"] = cfg.connect_ahead
        if cfg.redial_upcoming is not None:
            swim_kw["redial_upcoming"] = cfg.redial_upcoming
        if cfg.close_grace is not None:
            swim_kw["close_grace"] = cfg.close_grace
        if cfg.probe_connected_min is not None:
            swim_kw["probe_connected_min"] = cfg.probe_connected_min
        if cfg.roster_probe_every is not None:
            swim_kw["roster_probe_every"] = cfg.roster_probe_every
        self.swim_config = SwimConfig(**swim_kw)
        #: Whether a node starts its SWIM core as it starts (see WholeNodeConfig.swim_start).
        self.swim_on = cfg.swim and cfg.swim_start == "join"
        self.swim_started_at: float | None = 0.0 if self.swim_on else None
        dht: dict[str, float | str] = {}
        if cfg.dht_slow_after is not None:
            dht["slow_after"] = cfg.dht_slow_after
        if cfg.dht_reconnect_interval is not None:
            dht["reconnect_interval"] = cfg.dht_reconnect_interval
        self.kad_config = kademlia_config(DHTConfig(**dht))  # type: ignore[arg-type]
        self.gossip_params = router_params(cfg.pubsub)
        self.score_params = default_score_params()
        self.nodes: list[_Node] = []
        self.index: dict[bytes, int] = {}
        self.live: set[int] = set()
        self.boot: list[int] = []
        self._bootset: set[int] = set()
        #: node -> partition group (absent: group 0)
        self.groups: dict[int, int] = {}
        self.counters = Counters()
        self.log = DeliveryLog()
        self.sizes = _MessageSizes()
        #: (time, observer, subject) of every SWIM "failed" event
        self.failures: list[tuple[float, int, int]] = []
        self.providers: dict[str, list[int]] = {}
        self._heap: list[tuple] = []
        self._count = 0
        self._qid = 0
        self.rounds = 0  # announce rounds finished
        self.false_failures = 0  # SWIM declared failed a node that was up and reachable
        self.false_failure_times: list[float] = []
        #: ... except the partition's own verdicts, delivered late (see
        #: _late_verdict). Counted apart.
        self.late_verdicts = 0
        self.late_verdict_times: list[float] = []
        #: The groups of the last partition, once healed ({} before any heal,
        #: and while a partition lasts), and per node when it first had a SWIM
        #: frame from across that cut after the heal.
        self._cut: dict[int, int] = {}
        self._heard_across: dict[int, float] = {}
        #: (observer, member across the cut) -> the incarnation of the
        #: observer's "suspect" event about the member in the last partition;
        #: dropped if it suspects the member again after the heal.
        self._suspected: dict[tuple[int, int], int] = {}

    # ------------------------------------------------------------ nodes

    def add_node(self, *, on_boot: Callable[[], None] | None = None) -> int:
        """A fresh node (new peer ID) starts now and dials every bootstrap node
        (as the node's Bootstrapper does, retrying refused or failed dials
        from 0.5 s, doubling to 30 s, until one succeeds); ``on_boot`` runs
        when the first of them is connected and identified."""
        i = len(self.nodes)
        pid = peer_id(i)
        node = _Node(i, pid, self.now)
        rng = random.Random(self.rng.getrandbits(64))
        if self.cfg.swim:
            # Drawn now even for a warm start later: the other cores' draws stay those of "join".
            node.swim_seed = rng.getrandbits(64)
        if self.swim_on:
            node.swim = self._swim_core(node)
        node.kad = KademliaCore(pid, rng=random.Random(rng.getrandbits(64)), now=self.now, config=self.kad_config,
                                local_addrs=(addr(i),))
        node.gossip = GossipSubCore(pid, rng=random.Random(rng.getrandbits(64)), now=self.now,
                                    params=self.gossip_params,
                                    scorer=PeerScore(self.score_params, PeerScoreThresholds(), self.now),
                                    sign=_sign)
        node.cap = f"capability-{i % self.cfg.capabilities}"
        self.nodes.append(node)
        self.index[pid] = i
        self.live.add(i)
        self._gossip(i, Subscribe(TOPIC))
        self._swim(i, _STICK)
        node.on_boot = on_boot
        for b in self.boot:
            self._boot_dial(i, b, 0.5)
        cc = self.cfg.connections
        cm = ConnectionManager(cc, min(self.cfg.max_connections, self.cfg.max_inbound))
        if cm.active:
            gossip = node.gossip
            node.manager = cm
            cm.add_protector(lambda: sorted(self.index[p] for p in gossip.mesh(TOPIC)))  # sorted: set order varies
            if self.cfg.swim and self.cfg.protect_probes:
                cm.add_protector(lambda: [] if node.swim is None else
                                 [self.index[p] for p in node.swim.keep_connected() if p in self.index])
            self.at(self.now + self.rng.uniform(0, cc.interval), lambda: self._trim(i))
        return i

    def _swim_core(self, node: _Node, base: RosterBase | None = None) -> SwimCore:
        return SwimCore(node.pid, (addr(node.i),), rng=random.Random(node.swim_seed), now=self.now,
                        config=self.swim_config, base=base, sign=sim_signer(node.pid), verify=sim_verify)

    def start_swim(self) -> None:
        """SWIM starts now on every live node, each view every live node
        (WholeNodeConfig.swim_start "warm"): one shared read-only roster, and
        the connections each node holds, oldest first, as its adapter would
        have reported them."""
        if not self.cfg.swim or self.swim_on:
            raise RuntimeError("SWIM is off in this configuration" if not self.cfg.swim else "SWIM already runs")
        self.swim_on = True
        self.swim_started_at = self.now
        live = sorted(self.live)
        base = RosterBase((self.nodes[i].pid, (addr(i),)) for i in live)
        for i in live:
            node = self.nodes[i]
            node.swim = self._swim_core(node, base)
            self._swim(i, _STICK)
            if self.swim_config.probe_connected_min:
                # Identified ones only, in the order their _READY told the
                # services; the others are told at their _READY, as usual.
                known = sorted((self._identified_at(i, j, ready), j) for j, (ready, _out) in node.conns.items())
                for at, j in known:
                    if at <= self.now:
                        self._swim(i, ConnectionOpened(self.nodes[j].pid))

    def _trim(self, i: int) -> None:
        """A round of node i's connection manager (WholeNodeConfig.connections)."""
        node = self.nodes[i]
        cm = node.manager
        if not node.up or cm is None:
            return
        self.at(self.now + cm.config.interval, lambda: self._trim(i))
        self._trim_round(i)

    def _trim_round(self, i: int, pressed: bool = False) -> None:
        node = self.nodes[i]
        cm = node.manager
        if not node.up or cm is None:
            return
        for j in cm.to_trim(self.now, list(node.conns), pressed=pressed):
            self._close(i, j)
            self.counters.trimmed += 1

    def _close(self, i: int, j: int) -> None:
        """i closes its connection to j: both ends' services are told at once."""
        self._forget(i, j)
        for a, b in ((i, j), (j, i)):
            if self.nodes[a].up:
                self._disconnected(a, b, by_peer=a == j)

    def _forget(self, i: int, j: int) -> None:
        """The connection between i and j is gone from both ends' tables and managers."""
        node, other = self.nodes[i], self.nodes[j]
        outbound = node.conns.pop(j)[1]
        if other.conns.pop(i, None) is not None:
            (other if outbound else node).inbound -= 1
        for a, b in ((node, j), (other, i)):
            if a.manager is not None:
                a.manager.disconnected(b)

    def _disconnected(self, i: int, j: int, abrupt: bool = False, by_peer: bool | None = None) -> None:
        """i's services learn that its connection to j closed: in order (a
        trim; ``by_peer``: j's), or ``abrupt`` (noticed dead: SWIM's
        ConnectionLost hint, as the node's adapter sends it for a connection
        ended without GO_AWAY)."""
        pid = self.nodes[j].pid
        self._kad(i, KPeerDisconnected(pid))
        self._gossip(i, GPeerDisconnected(pid))
        if self.nodes[i].swim is not None:
            if abrupt:
                self._swim(i, ConnectionLost(pid))
            else:
                self._swim(i, ConnectionClosed(pid, by_peer))

    def _boot_dial(self, i: int, b: int, backoff: float) -> None:
        node = self.nodes[i]
        if node.booted or not node.up or b in node.conns:
            return
        if self._dial(i, b, "boot") is None:
            delay = backoff * self.rng.uniform(0.75, 1.25)
            self.at(self.now + delay, lambda: self._boot_dial(i, b, min(30.0, 2 * backoff)))

    def crash(self, i: int) -> None:
        """Node i stops dead; each peer notices ``disconnect_detect`` later."""
        node = self.nodes[i]
        if not node.up:
            return
        node.up = False
        self.live.discard(i)
        when = self.now + self.cfg.disconnect_detect
        for j in node.conns:
            self._push(when, _NOTICE, j, i)

    def partition(self, groups: dict[int, int]) -> None:
        """Nodes in different groups can no longer reach each other; each end
        of a connection that crosses groups notices ``disconnect_detect`` later."""
        self.groups = dict(groups)
        self._cut, self._heard_across, self._suspected = {}, {}, {}
        when = self.now + self.cfg.disconnect_detect
        for i in self.live:
            gi = self.groups.get(i, 0)
            for j in self.nodes[i].conns:
                if self.groups.get(j, 0) != gi:
                    self._push(when, _NOTICE, i, j)

    def heal(self) -> None:
        if not self.groups:
            return  # nothing to heal: keep the last cut
        self._cut, self._heard_across = self.groups, {}
        self.groups = {}

    def _side(self, i: int) -> int:
        """i's side of the last cut, as ``reachable`` saw it (not listed: side 0)."""
        return self._cut.get(i, 0)

    def _late_verdict(self, i: int, j: int, incarnation: int) -> bool:
        """Node i declares j failed, j up and reachable: is it the
        partition's verdict, delivered late? So if i and j were on two sides
        of the last cut, i's suspicion of j (at this incarnation) began in
        the partition, and i has had no SWIM frame from across since the
        heal. Its timer ran on what it could know: j unreachable the whole
        time (a member the other side suspected in the partition's last
        seconds is declared failed right after the heal, before any frame
        that could stop it has crossed). A "dead" rumour from i's own side
        after the heal can still shorten that timer (a confirmation), and the
        verdict still counts as late. A false failure is a verdict on a
        member i could have heard from, or on a suspicion begun before the
        partition or after the heal (a false verdict elsewhere, spread by
        gossip)."""
        if not self._cut or self._side(i) == self._side(j) or i in self._heard_across:
            return False
        return self._suspected.get((i, j)) == incarnation

    def reachable(self, i: int, j: int) -> bool:
        g = self.groups
        return self.nodes[j].up and (not g or g.get(i, 0) == g.get(j, 0))

    # ------------------------------------------------------------ connections

    def _lat(self, i: int, j: int) -> float:
        return self.links(i, j)

    def _identified_at(self, i: int, j: int, ready: float) -> float:
        """When both ends' services learn of a connection between i and j usable from ``ready`` (identify)."""
        return ready + self.cfg.identify_rtts * (2 * self._lat(i, j))

    def _dial(self, i: int, j: int, cause: str) -> float | None:
        """i opens a connection to j (for ``cause``: Counters.dials_by);
        returns when it carries messages, or None."""
        c = self.counters
        if not self.reachable(i, j):
            c.failed_dials += 1
            return None
        ni, nj, cfg = self.nodes[i], self.nodes[j], self.cfg
        if nj.inbound >= cfg.max_inbound or len(nj.conns) >= cfg.max_connections:
            c.refused += 1
            if nj.manager is not None and nj.manager.pressed(self.now):
                # As the node's manager does on a refusal for lack of room: a round now.
                self.at(self.now, lambda: self._trim_round(j, pressed=True))
            return None
        if len(ni.conns) >= cfg.max_connections:
            c.failed_dials += 1  # our own swarm refuses to dial
            return None
        c.dials += 1
        c.dials_by[cause] = c.dials_by.get(cause, 0) + 1
        nj.inbound += 1
        ready = self.now + self.cfg.dial_rtts * (2 * self._lat(i, j))
        ni.conns[j] = (ready, True)
        nj.conns[i] = (ready, False)
        if ni.manager is not None:
            ni.manager.connected(j, self.now, inbound=False)
        if nj.manager is not None:
            nj.manager.connected(i, self.now, inbound=True)
        known = self._identified_at(i, j, ready)
        self._push(known, _READY, i, j)
        self._push(known, _READY, j, i)
        return ready

    def _arrival(self, i: int, j: int, cause: str) -> float | None:
        """When a message i sends j now arrives (dialing if need be), or None if it is lost."""
        conn = self.nodes[i].conns.get(j)
        ready = self._dial(i, j, cause) if conn is None else conn[0]
        if ready is None or not self.reachable(i, j):
            return None
        if self.cfg.loss and self.loss_rng.random() < self.cfg.loss:
            self.counters.lost += 1
            return None
        return max(self.now, ready) + self._lat(i, j)

    def _used(self, i: int, j: int) -> None:
        """A DHT request between i and j: the connection manager's "in use" at
        both ends, as the node counts each request on its reused stream."""
        mi, mj = self.nodes[i].manager, self.nodes[j].manager
        if mi is not None:
            mi.used(j, self.now)
        if mj is not None:
            mj.used(i, self.now)

    def _ready(self, i: int, j: int) -> None:
        node = self.nodes[i]
        conn = node.conns.get(j)
        if not node.up or conn is None:
            if node.up and not node.booted and j in self._bootset:
                self._boot_dial(i, j, 0.5)  # closed before it was identified: the bootstrapper retries
            return
        pid = self.nodes[j].pid
        self._kad(i, KPeerConnected(pid, (addr(j),), True))
        self._gossip(i, GPeerConnected(pid, GOSSIP_PROTOCOL, outbound=conn[1]))
        if node.swim is not None:
            self._swim(i, MemberDiscovered(pid, (addr(j),)))
            if self.swim_config.probe_connected_min:
                self._swim(i, ConnectionOpened(pid))
        if not node.booted and j in self._bootset:
            node.booted = True
            node.booted_at = self.now
            self._kad(i, Bootstrap())
            self._round(i)
            if node.on_boot is not None:
                node.on_boot()

    def _round(self, i: int) -> None:
        """An announce round of the records service: ADD_PROVIDER of the node's capability."""
        node = self.nodes[i]
        node.round_due = False
        if not node.up or node.round_running:
            return
        assert node.kad is not None
        node.round_running = True
        node.round_table = max(1, len(node.kad.table))
        self.ask(i, lambda q: Provide(q, provider_key(node.cap)), self._provided)

    def _provided(self, i: int, fin: QueryFinished) -> None:
        node = self.nodes[i]
        node.round_running = False
        self.rounds += 1
        if not isinstance(fin.result, Provided) or not fin.result.announced:
            node.round_due = True  # a failed round is retried (the service backs off from 2 s)
            self.at(self.now + 2.0, lambda: self._round(i))
            return
        if node.joined is None:
            node.joined = self.now
            self.providers.setdefault(node.cap, []).append(i)
        self._growth(i)

    def _growth(self, i: int) -> None:
        """The records service announces again when the routing table has
        doubled since the last round (until GROWTH_LIMIT), once the table
        has settled: a node that announced while it knew only its bootstrap
        peer reaches the peers really closest to its key. (The service waits
        for 0.5 s without change, 2 s at most; this waits the 2 s.)"""
        node = self.nodes[i]
        last = node.round_table
        if (node.round_running or node.round_due or not 0 < last < GROWTH_LIMIT
                or len(node.kad.table) < 2 * last):  # type: ignore[arg-type]
            return
        node.round_due = True
        self.at(self.now + 2.0, lambda: self._round(i))

    def _notice(self, i: int, j: int) -> None:
        node = self.nodes[i]
        if not node.up or j not in node.conns or self.reachable(i, j):
            return
        self._forget(i, j)
        self._disconnected(i, j, abrupt=True)

    # ------------------------------------------------------------ the clock

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._push(max(when, self.now), _CALL, 0, fn)

    def _push(self, when: float, kind: int, a: int, b: Any) -> None:
        self._count += 1
        heapq.heappush(self._heap, (when, self._count, kind, a, b))

    def run_until(self, t_end: float) -> None:
        heap, nodes = self._heap, self.nodes
        while heap and heap[0][0] <= t_end:
            when, _, kind, a, b = heapq.heappop(heap)
            self.now = when
            if kind == _CALL:
                b()
                continue
            node = nodes[a]
            if not node.up:
                continue
            if kind == _SWIM:
                if self.reachable(b[0], a):
                    if self._cut and a not in self._heard_across and self._side(b[0]) != self._side(a):
                        self._heard_across[a] = self.now
                    self._swim(a, Received(nodes[b[0]].pid, b[1]))
            elif kind == _KAD:
                src, event = b
                if src is None or self.reachable(src, a):
                    self._kad(a, event)
            elif kind == _GOSSIP:
                if self.reachable(b[0], a):
                    self._gossip(a, RpcReceived(nodes[b[0]].pid, b[1]))
            elif kind == _WAKE_SWIM:
                if node.wake[0] == b:
                    node.wake[0] = None
                    self._swim(a, _STICK)
            elif kind == _WAKE_GOSSIP:
                if node.wake[1] == b:
                    node.wake[1] = None
                    self._gossip(a, _GTICK)
            elif kind == _WAKE_KAD:
                if node.kad_wake == b:
                    node.kad_wake = None
                    self._kad(a, _KTICK)
            elif kind == _READY:
                self._ready(a, b)
            elif kind == _NOTICE:
                self._notice(a, b)
        if t_end > self.now:
            self.now = t_end

    # ------------------------------------------------------------ SWIM adapter

    def _swim(self, i: int, event: Any) -> None:
        node = self.nodes[i]
        core = node.swim
        if core is None:
            return
        self.counters.events["swim"] += 1
        c = self.counters
        for act in core.handle(self.now, event):
            t = type(act)
            if t is Send:
                j = self.index.get(act.to)
                if j is None:
                    continue
                if not act.dial and j not in node.conns:
                    c.swim_no_conn += 1  # gossip, a check: the adapter sends it only over an open stream
                    continue
                c.messages["swim"] += 1
                size = swim_size(act.message)
                c.bytes["swim"] += size
                _count_swim_bytes(c.swim_bytes_by, act.message, size)
                arrive = self._arrival(i, j, "swim" if j in node.conns else _swim_cause(core, act))
                if arrive is not None:
                    self._push(arrive, _SWIM, j, (i, act.message))
            elif t is ConnectAhead:
                j = self.index.get(act.to)
                if j is not None and j not in node.conns:
                    c.connect_ahead += 1
                    self._dial(i, j, "swim:ahead")
            elif t is MemberEvent and act.kind is EventKind.SUSPECT:
                j = self.index.get(act.peer_id)
                if j is not None and self.groups and self.groups.get(i, 0) != self.groups.get(j, 0):
                    self._suspected[(i, j)] = act.incarnation  # across the cut, in the partition
                elif j is not None and self._cut:
                    self._suspected.pop((i, j), None)  # suspected again since the heal: not the partition's
            elif t is MemberEvent and act.kind is EventKind.FAILED:
                j = self.index.get(act.peer_id)
                if j is not None:
                    self.failures.append((self.now, i, j))
                    if self.nodes[j].up and self.reachable(i, j):
                        if self._late_verdict(i, j, act.incarnation):
                            self.late_verdicts += 1
                            self.late_verdict_times.append(self.now)
                        else:
                            self.false_failures += 1
                            self.false_failure_times.append(self.now)
        dl = core.next_deadline()
        if dl is not None and dl != node.wake[0]:
            node.wake[0] = dl
            self._push(max(dl, self.now), _WAKE_SWIM, i, dl)

    # ------------------------------------------------------------ Kademlia adapter

    def ask(self, i: int, make: Callable[[object], Any], then: Callable[[int, QueryFinished], None],
            progress: Callable[[object, ProvidersProgress], None] | None = None) -> None:
        """Start a query at node i; ``then(i, finished)`` runs when it ends,
        ``progress(query_id, p)`` with each ProvidersProgress before that."""
        self._qid += 1
        qid = ("sim", self._qid)
        node = self.nodes[i]
        node.queries[qid] = lambda fin: then(i, fin)
        if progress is not None:
            node.progress[qid] = lambda p: progress(qid, p)
        self._kad(i, make(qid))

    def cancel(self, i: int, qid: object) -> None:
        """End node i's query ``qid`` (CancelQuery), after the actions in hand are carried out."""
        self.at(self.now, lambda: self._kad(i, CancelQuery(qid)) if self.nodes[i].up else None)

    def _kad(self, i: int, event: Any) -> None:
        node = self.nodes[i]
        core = node.kad
        assert core is not None
        c = self.counters
        c.events["kad"] += 1
        for a in core.handle(self.now, event):
            t = type(a)
            if t is ArmTimer:
                node.kad_wake = at = max(a.at, self.now)
                self._push(at, _WAKE_KAD, i, at)
            elif t is SendRequest:
                j = self.index.get(a.peer)
                if j is None:
                    continue
                kind = a.message.type.name
                c.messages["kad"] += 1
                c.bytes["kad"] += kad_size(a.message)
                refused = c.refused
                arrive = self._arrival(i, j, "kad:" + kind)
                if arrive is None:
                    if c.refused != refused:
                        # The peer's connection limit: the dial fails after a round trip, not a timeout.
                        self._push(self.now + 2 * self._lat(i, j), _KAD, i,
                                   (None, RequestFailed(a.request_id, "refused")))
                    continue
                self._used(i, j)
                if not a.expect_response:
                    self._push(arrive - self._lat(i, j), _KAD, i, (None, ResponseReceived(a.request_id, None)))
                self._push(arrive, _KAD, j, (i, RequestReceived(node.pid, (i, a.request_id, kind), a.message)))
            elif t is SendResponse:
                requester, rid, _kind = a.request_id
                c.messages["kad"] += 1
                c.bytes["kad"] += kad_size(a.message)
                arrive = self._arrival(i, requester, "kad:response")
                if arrive is not None:
                    self._push(arrive, _KAD, requester, (i, ResponseReceived(rid, a.message)))
            elif t is PingPeer:
                j = self.index.get(a.peer)
                if j is None:
                    continue
                arrive = self._arrival(i, j, "kad:ping")
                if arrive is not None:
                    self._push(arrive + self._lat(i, j), _KAD, i, (j, ResponseReceived(a.request_id, None)))
            elif t is CloseRequest:
                requester, rid, _kind = a.request_id
                if a.error is not None and requester != i:
                    self._push(self.now + self._lat(i, requester), _KAD, requester, (i, RequestFailed(rid, a.error)))
            elif t is ProvidersProgress:
                seen = node.progress.get(a.query_id)
                if seen is not None:
                    seen(a)
            elif t is QueryFinished:
                node.progress.pop(a.query_id, None)
                then = node.queries.pop(a.query_id, None)
                if then is not None:
                    then(a)
        self._growth(i)

    # ------------------------------------------------------------ gossipsub adapter

    def _gossip(self, i: int, event: Any) -> None:
        node = self.nodes[i]
        core = node.gossip
        assert core is not None
        c = self.counters
        c.events["gossip"] += 1
        checks: list[VerifySignature] = []
        for a in core.handle(self.now, event):
            t = type(a)
            if t is SendRpc:
                j = self.index.get(a.peer)
                if j is None or j not in node.conns:
                    continue
                total, _data = rpc_size(a.rpc, self.sizes)
                c.messages["gossip"] += 1
                c.bytes["gossip"] += total
                arrive = self._arrival(i, j, "gossip")
                if arrive is not None:
                    self._push(arrive, _GOSSIP, j, (i, a.rpc))
            elif t is Deliver:
                self.log.deliver(a.msg_id, i, self.now)
            elif t is VerifySignature:
                checks.append(a)
            elif t is Published:
                self.log.publish(a.msg_id, self.now, i, a.topic)
            elif t is Validate:
                self._gossip(i, ValidationResult(a.msg_id, Verdict.ACCEPT))
        for v in checks:
            self._gossip(i, SignatureChecked(v.msg_id, True))
        dl = core.next_deadline()
        if dl is not None and dl != node.wake[1]:
            node.wake[1] = dl
            self._push(max(dl, self.now), _WAKE_GOSSIP, i, dl)

    def publish(self, i: int, tag: int = 0) -> None:
        data = (b"msg %08d %08d " % (len(self.log.published), tag)).ljust(self.cfg.msg_size, b".")
        self._gossip(i, Publish(TOPIC, data))

    # ------------------------------------------------------------ views

    def connections(self) -> list[int]:
        return sorted(len(self.nodes[i].conns) for i in self.live)

    def members_known(self) -> list[float]:
        """Each live node's SWIM view: the other live nodes it holds alive or
        suspect, as a share of them (a crash not yet detected does not count)."""
        live = self.live
        others = len(live) - 1
        if others <= 0:
            return []
        away = self._not_live()
        return [self._held_live(i, away) / others for i in sorted(live) if self.nodes[i].swim is not None]

    def views_whole(self) -> bool:
        """Whether every live node's SWIM view holds every other live node
        (min(members_known()) == 1, stopping at the first view short of it:
        a view holding fewer members than there are others is short without
        building its set)."""
        live = self.live
        others = len(live) - 1
        away = self._not_live()
        for i in live:
            core = self.nodes[i].swim
            if core is None:
                continue
            if core.alive_count() < others or self._held_live(i, away) < others:
                return False
        return True

    def _not_live(self) -> list[int]:
        return [n.i for n in self.nodes if n.i not in self.live]

    def held_live(self, i: int) -> int:
        """How many live nodes node i's SWIM view holds alive or suspect."""
        return self._held_live(i, self._not_live())

    def holds(self, i: int, j: int) -> bool:
        """Whether node i's SWIM view holds node j alive or suspect."""
        core = self.nodes[i].swim
        m = None if core is None else core.member(self.nodes[j].pid)
        return m is not None and m.state in _HELD

    def _held_live(self, i: int, away: list[int]) -> int:
        """How many live nodes node i's SWIM view holds alive or suspect:
        its count of held members less the nodes not live it still holds.
        len(swim_held(i) & live), in O(nodes down) rather than O(view), since
        every member a view holds is one of the simulation's nodes."""
        core = self.nodes[i].swim
        return 0 if core is None else core.alive_count() - sum(1 for j in away if self.holds(i, j))

    def swim_held(self, i: int) -> set[int]:
        """The nodes (not ``i`` itself) that node ``i``'s SWIM view holds alive or suspect."""
        core = self.nodes[i].swim
        if core is None:
            return set()
        index = self.index
        held = {index[m.peer_id] for m in core.members()
                if m.state in _HELD and m.peer_id in index}
        held.discard(i)
        return held

    def mesh_sizes(self) -> list[int]:
        return sorted(len(self.nodes[i].gossip.mesh(TOPIC)) for i in self.live)  # type: ignore[union-attr]

    def random_live(self, *, group: int | None = None, booted: bool = False) -> int:
        """A random live node (of ``group`` if given; connected to a bootstrap node if ``booted``)."""
        live = sorted(i for i in self.live if (group is None or self.groups.get(i, 0) == group)
                      and (not booted or self.nodes[i].booted))
        return live[self.wrng.randrange(len(live))]


# ================================================================ scenarios


def _swim_cause(core: SwimCore, act: Send) -> str:
    """What a SWIM frame that dials is (Counters.dials_by)."""
    body = act.message.body
    name = type(body).__name__
    if name == "Ping":
        return "swim:Ping(probe)" if act.to in core.upcoming()[:1] else "swim:Ping(other)"
    return "swim:" + name


def _count_swim_bytes(by: dict[str, int], msg: SwimMessage, size: int) -> None:
    """Counters.swim_bytes_by: the frame's body apart from its piggybacked updates."""
    for u in msg.updates:
        n = encoded_update_size(u)
        key = "updates:" + u.state.name
        by[key] = by.get(key, 0) + n
        size -= n
    key = type(msg.body).__name__
    by[key] = by.get(key, 0) + size


#: SWIM core counters summed over the live nodes for each window (SwimStats):
#: what the idle traffic's piggybacked updates come from.
_SWIM_WINDOW_STATS = ("suspected", "declared_dead", "refutations", "dead_rumours", "checks", "connections_lost",
                      "indirect_pings", "push_pulls", "redialed_ahead", "probe_closes", "graced", "graced_acked",
                      "waited_nacks", "waited_acked", "spared_silent", "spared_again")


def _swim_stats(sim: WholeNodeSimulation) -> dict[str, int]:
    out = dict.fromkeys(_SWIM_WINDOW_STATS, 0)
    for i in sim.live:
        core = sim.nodes[i].swim
        if core is not None:
            for k in _SWIM_WINDOW_STATS:
                out[k] += getattr(core.stats, k)
    return out


def _per_node_ps(before: dict[str, int], after: dict[str, int], n: int, span: float) -> dict[str, float]:
    """Each key's growth over a window, per node per second (keys that did not grow left out)."""
    return {k: (v - before.get(k, 0)) / n / span for k, v in sorted(after.items()) if v != before.get(k, 0)}


def _window(sim: WholeNodeSimulation, seconds: float) -> dict[str, Any]:
    """Run ``seconds`` with no workload: traffic and core inputs per live node per second."""
    before, t0 = sim.counters.copy(), sim.now
    stats0 = _swim_stats(sim)
    sim.run_until(sim.now + seconds)
    after, n = sim.counters, max(1, len(sim.live))
    span = sim.now - t0
    out: dict[str, Any] = {}
    for p in PROTOCOLS:
        out[f"{p}_Bps"] = (after.bytes[p] - before.bytes[p]) / n / span
        out[f"{p}_events_ps"] = (after.events[p] - before.events[p]) / n / span
    out["Bps"] = sum(out[f"{p}_Bps"] for p in PROTOCOLS)
    out["events_ps"] = sum(out[f"{p}_events_ps"] for p in PROTOCOLS)
    out["dials_ps"] = (after.dials - before.dials) / n / span
    out["dial_Bps"] = out["dials_ps"] * sim.cfg.dial_bytes
    out["Bps_with_dials"] = out["Bps"] + out["dial_Bps"]
    out["refused"] = after.refused - before.refused
    out["trimmed_ps"] = (after.trimmed - before.trimmed) / n / span
    out["connect_ahead_ps"] = (after.connect_ahead - before.connect_ahead) / n / span
    out["dials_by_ps"] = _per_node_ps(before.dials_by, after.dials_by, n, span)
    out["swim_Bps_by"] = _per_node_ps(before.swim_bytes_by, after.swim_bytes_by, n, span)
    # Network-wide counts over the window (a node's is its own: a suspicion its probe started).
    out["swim_stats"] = {k: v - stats0[k] for k, v in _swim_stats(sim).items()}
    return out


def _find(sim: WholeNodeSimulation, i: int, cap: str, started: float, samples: list[tuple[bool, float]],
          group: int | None = None, want: int | None = None,
          first_named: list[tuple[bool, float]] | None = None) -> None:
    """Node i looks ``cap`` up and fetches records from providers.

    ``want`` None: the lookup runs to its end (FindProviders count 20), then
    one record is fetched from the first reachable provider. ``want`` k: as
    ``find_agents(limit=k)`` does, a record fetch starts for each reachable
    provider as the lookup names it (up to 20), the lookup goes on meanwhile,
    and the sample is when the k-th fetch is done; the lookup is then
    cancelled. ``first_named`` (with ``want``) also gets the earlier,
    pessimistic measure: the fetch from the first k providers named, however
    far they are (the lookup's traffic is the faithful one's)."""

    def fetch_done(j: int) -> float:
        conn = sim.nodes[i].conns.get(j)
        rtt = 2 * sim._lat(i, j)
        return sim.now + rtt + (sim.cfg.dial_rtts * rtt if conn is None else max(0.0, conn[0] - sim.now))

    def usable(j: int) -> bool:
        return sim.reachable(i, j) and (group is None or sim.groups.get(j, 0) == group)

    if want is not None:
        k = want
        named: set[int] = set()
        named_times: list[float] = []
        state = {"done": False, "fetched": 0, "pending": 0, "ended": False, "qid": None}

        def finish(ok: bool) -> None:
            state["done"] = True
            samples.append((ok, sim.now - started))
            if not state["ended"]:
                sim.cancel(i, state["qid"])

        def fetched() -> None:
            state["pending"] -= 1
            if state["done"]:
                return
            state["fetched"] += 1
            if state["fetched"] >= k:
                finish(True)
            elif state["ended"] and state["pending"] == 0:
                finish(False)

        def seen(qid: object, p: ProvidersProgress) -> None:
            state["qid"] = qid
            if state["done"]:
                return
            for peer in p.providers:
                j = sim.index.get(peer.id)
                if j is None or j in named or len(named) >= 20 or (j != i and not usable(j)):
                    continue
                named.add(j)
                when = sim.now if j == i else fetch_done(j)
                if first_named is not None and len(named_times) < k:
                    named_times.append(when)
                    if len(named_times) == k:
                        first_named.append((True, max(named_times) - started))
                state["pending"] += 1
                sim.at(when, fetched)

        def ended(_i: int, fin: QueryFinished) -> None:
            state["ended"] = True
            if first_named is not None and len(named_times) < k:
                first_named.append((bool(named_times), (max(named_times) if named_times else sim.now) - started))
            if not state["done"] and state["pending"] == 0:
                finish(state["fetched"] >= k)

        sim.ask(i, lambda q: FindProviders(q, provider_key(cap), 20), ended, seen)
        return

    def done(_i: int, fin: QueryFinished) -> None:
        res = fin.result
        found = [sim.index[p.id] for p in res.providers] if isinstance(res, ProvidersFound) else []
        for j in found:
            if j == i:  # find_agents counts our own record (include_self)
                samples.append((True, sim.now - started))
                return
            if usable(j):
                samples.append((True, fetch_done(j) - started))
                return
        samples.append((False, sim.now - started))

    sim.ask(i, lambda q: FindProviders(q, provider_key(cap), 20), done)


def _collect(sim: WholeNodeSimulation, samples: list[tuple[bool, float]], asked: int, limit: float) -> dict[str, Any]:
    """Run until ``asked`` lookups have reported into ``samples`` (or ``limit`` seconds); their figures."""
    end = sim.now + limit
    while len(samples) < asked and sim.now < end:
        sim.run_until(sim.now + 0.5)
    return {"asked": asked, **_latencies(samples)}


def _latencies(samples: list[tuple[bool, float]]) -> dict[str, Any]:
    """Found, and the P50 / P99 / max of the lookups that found."""
    lat = [t for ok, t in samples if ok]
    return {"found": len(lat), "p50": percentile(lat, 50), "p99": percentile(lat, 99),
            "max": max(lat) if lat else float("nan")}


def _lookups(sim: WholeNodeSimulation, pairs: list[tuple[int, str]], limit: float = 30.0,
             group: int | None = None, want: int | None = 1) -> dict[str, Any]:
    samples: list[tuple[bool, float]] = []
    for i, cap in pairs:
        _find(sim, i, cap, sim.now, samples, group, want)
    return _collect(sim, samples, len(pairs), limit)


def _connection_figures(sim: WholeNodeSimulation) -> dict[str, float]:
    conns = sim.connections()
    return {"conns_p50": percentile(conns, 50), "conns_max": max(conns)}


def _topology(sim: WholeNodeSimulation) -> dict[str, dict[str, Any]]:
    """Small-world figures (clustering, paths) of the live nodes' connection graph and topic mesh."""
    live = sorted(sim.live)
    conn = {i: {j for j in sim.nodes[i].conns if j in sim.live} for i in live}
    mesh = {i: {sim.index[p] for p in sim.nodes[i].gossip.mesh(TOPIC)} & sim.live for i in live}  # type: ignore[union-attr]
    out = {}
    for name, g in (("connections", conn), ("mesh", mesh)):
        f = figures(g, seed=sim.cfg.seed)
        out[name] = f.as_dict()
    return out


def _deliveries(sim: WholeNodeSimulation, msg_ids: list[bytes], audience: Callable[[int, int, float], bool],
                deadline: float) -> dict[str, Any]:
    """Delivery ratio and latency of ``msg_ids`` to every live node
    ``audience(author, node, published_at)`` admits."""
    lat: list[float] = []
    expected = 0
    full = 0
    for m in msg_ids:
        published_at, author = sim.log.published[m][:2]
        got = sim.log.delivered[m]
        ok = exp = 0
        for i in sim.live:
            if i == author or not audience(author, i, published_at):
                continue
            exp += 1
            d = got.get(i)
            if d is not None and d <= deadline:
                ok += 1
                lat.append(d)
        expected += exp
        full += ok == exp
    return {"messages": len(msg_ids), "ratio": len(lat) / expected if expected else float("nan"),
            "fully_delivered": full / len(msg_ids) if msg_ids else float("nan"),
            "p50": percentile(lat, 50), "p99": percentile(lat, 99)}


def _publish_for(sim: WholeNodeSimulation, seconds: float, rate: float, *, group: int | None = None,
                 drain: float = 5.0) -> list[bytes]:
    """Random live nodes publish ``rate`` messages a second for ``seconds``; returns their IDs."""
    before = set(sim.log.published)
    t0 = sim.now
    t = t0
    while True:
        t += sim.wrng.expovariate(rate)
        if t >= t0 + seconds:
            break
        sim.at(t, lambda: sim.publish(sim.random_live(group=group)))
    sim.run_until(t0 + seconds + drain)
    return [m for m in sim.log.published if m not in before]


def _holders(sim: WholeNodeSimulation, crashed: list[int]) -> set[tuple[int, int]]:
    """(observer, crashed node) pairs whose observer's SWIM holds the node
    alive or suspect now (taken just before the crash). A pair outside it
    cannot see the crash: the observer never admitted the node (a newcomer
    whose candidate ping the node had not yet answered, or the reverse), or
    already held it dead (a false verdict, counted as such)."""
    return {(i, j) for i in sim.live for j in crashed if sim.holds(i, j)}


def _detection(sim: WholeNodeSimulation, crashed: list[int], t0: float, observers: set[int],
               held: set[tuple[int, int]] | None = None) -> dict[str, Any]:
    """For each crashed node: when the first and the last observer saw it failed.

    ``held`` (from _holders): the pairs whose observer held the node at the
    crash. The counts over all pairs are kept (the measure before
    2026-12-06); those over held pairs say whether SWIM missed a failure it
    could have seen, apart from admission."""
    seen: dict[int, dict[int, float]] = {j: {} for j in crashed}
    for t, obs, subj in sim.failures:
        if subj in seen and t >= t0 and obs in observers and obs not in seen[subj]:
            seen[subj][obs] = t - t0
    per_pair = [d for s in seen.values() for d in s.values()]
    all_seen = [max(s.values()) for s in seen.values() if len(s) >= len(observers)]
    missed = {o for s in seen.values() for o in observers if o not in s}  # observers that missed a crash
    out = {"crashed": len(crashed), "pairs_seen": len(per_pair), "pairs": len(crashed) * len(observers),
           "pair_p50": percentile(per_pair, 50), "pair_p99": percentile(per_pair, 99),
           "all_seen": len(all_seen), "all_seen_p50": percentile(all_seen, 50), "all_seen_p99": percentile(all_seen, 99),
           "missed_by": len(missed)}
    if sim.cfg.swim_start == "warm":
        # Nodes whose SWIM joined after the warm start (the newcomers), as
        # observers that missed a crash and as crashed nodes someone missed.
        late = sim.swim_started_at or 0.0
        joined = {i for i in (*observers, *crashed) if sim.nodes[i].started > late}
        unseen = [j for j in crashed if len(seen[j]) < len(observers)]
        out.update(missed_by_joined=len(missed & joined), joined_observers=len(observers & joined),
                   missed_crashes=len(unseen), missed_crashes_joined=sum(1 for j in unseen if j in joined))
    if held is not None:
        held = {(o, j) for o, j in held if o in observers}
        holders: dict[int, set[int]] = {j: set() for j in crashed}
        for o, j in held:
            holders[j].add(o)
        # The moment the last of its holders saw it, for each crashed node all its holders saw.
        by_holders = [max(seen[j][o] for o in h) for j, h in holders.items() if h and h <= seen[j].keys()]
        out.update(pairs_held=len(held), held_unseen=sum(1 for o, j in held if o not in seen[j]),
                   crashes_held=sum(1 for h in holders.values() if h),  # crashed nodes someone held
                   all_holders_saw=len(by_holders), all_holders_p99=percentile(by_holders, 99))
    return out


def _config_record(sim: WholeNodeSimulation) -> dict[str, Any]:
    """What a run's JSON says about the network it simulated."""
    cfg = sim.cfg
    return {"n": cfg.n, "seed": cfg.seed, "join_rate": cfg.join_rate, "swim": cfg.swim,
            "swim_start": cfg.swim_start, "loss": cfg.loss,
            "latency": sim.links.describe(), "connection_manager": cfg.connections.enabled,
            "connect_ahead": sim.swim_config.connect_ahead,
            "redial_upcoming": sim.swim_config.redial_upcoming,
            "close_grace": sim.swim_config.close_grace,
            "probe_connected_min": sim.swim_config.probe_connected_min,
            "roster_probe_every": sim.swim_config.roster_probe_every, "pubsub_degree": cfg.pubsub.degree,
            "pubsub_degree_near": cfg.pubsub.degree_near, "dht_slow_after": "auto" if sim.kad_config.slow_after is None else sim.kad_config.slow_after,
            "dht_reconnect_interval": sim.kad_config.reconnect_interval}


def _totals(sim: WholeNodeSimulation, wall: float) -> dict[str, Any]:
    """A run's whole-network counters, at its end (``wall``: its perf_counter start)."""
    c = sim.counters
    return {"virtual_s": sim.now, "dials": c.dials, "dials_by": dict(sorted(c.dials_by.items())),
            "refused": c.refused, "trimmed": c.trimmed,
            "false_failures": sim.false_failures, "late_verdicts": sim.late_verdicts, "failed_dials": c.failed_dials,
            "queries_cancelled": sum(n.kad.stats.cancelled for n in sim.nodes if n.kad is not None),
            "dht_reconnects": sum(n.kad.stats.reconnects for n in sim.nodes if n.kad is not None),
            "dht_reconnected": sum(n.kad.stats.reconnected for n in sim.nodes if n.kad is not None),
            "wall_s": time.perf_counter() - wall}


def build(sim: WholeNodeSimulation) -> dict[str, Any]:
    """Bootstrap nodes, then everyone else at ``join_rate`` (each dialing every
    bootstrap node); runs until every node has announced its record (or 120 s more)."""
    cfg = sim.cfg
    for _ in range(cfg.bootstrap_nodes):
        b = sim.add_node()  # dials the bootstrap nodes before it
        sim.boot.append(b)
        sim._bootset.add(b)
    spacing = 1.0 / cfg.join_rate
    for k in range(cfg.n - cfg.bootstrap_nodes):
        sim.at((k + 1) * spacing, sim.add_node)
    t_last = (cfg.n - cfg.bootstrap_nodes) * spacing
    sim.run_until(t_last)
    end = t_last + 120.0
    while sim.now < end and any(sim.nodes[i].joined is None for i in sim.live):
        sim.run_until(sim.now + 1.0)
    if cfg.swim and not sim.swim_on:
        sim.start_swim()
    joins = [n.joined - n.started for n in sim.nodes if n.joined is not None]
    # A join in two: the wait for a first bootstrap connection, then the DHT work to the announced record.
    waits = [n.booted_at - n.started for n in sim.nodes if n.booted_at is not None and n.i not in sim._bootset]
    works = [n.joined - n.booted_at for n in sim.nodes
             if n.joined is not None and n.booted_at is not None and n.i not in sim._bootset]
    return {"nodes": len(sim.nodes), "joined": len(joins), "got_in": sum(1 for n in sim.nodes if n.booted),
            "spread_s": t_last, "done_at": sim.now, "join_p50": percentile(joins, 50),
            "join_p99": percentile(joins, 99), "join_max": max(joins) if joins else None,
            "boot_wait_p50": percentile(waits, 50), "boot_wait_p90": percentile(waits, 90),
            "boot_wait_p99": percentile(waits, 99), "announce_p50": percentile(works, 50),
            "announce_p99": percentile(works, 99), "refused": sim.counters.refused,
            "pressure_rounds": sum(n.manager.pressure_rounds for n in sim.nodes if n.manager is not None),
            "swim_started_at": sim.swim_started_at}


def run_whole_node(cfg: WholeNodeConfig, *, settle: float = 60.0, idle: float = 30.0, newcomers: int = 20,
                   lookups: int = 5, rate: float = 2.0, publish_s: float = 20.0, crash_share: float = 0.01,
                   crash_wait: float = 90.0, partition_s: float = 30.0, heal_wait: float = 60.0,
                   heal_probe_every: int = 1, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build the network, then in turn: idle, newcomers looking agents up,
    publishing, a crash of ``crash_share`` of the nodes at once, and a
    partition in two halves that heals (a node publishes every
    ``heal_probe_every`` seconds after the heal: when one reaches every node,
    the mesh has merged; each publish keeps IHAVE gossip going for three
    heartbeats, which made publishing and the heal half of a 2,000-node
    run's wall time). ``partition_s`` 0 ends the run after the crash (with
    SWIM on, a partition of 10,000 nodes has each view change by half the
    network: hours of wall time). Returns every figure (see docs/scale.md)."""
    if heal_probe_every < 1:
        raise ValueError("heal_probe_every: a publish every 1 s or more")
    if partition_s < 0 or newcomers < 1 or not 0 < crash_share < 1:
        raise ValueError("partition_s >= 0 (0: none), newcomers >= 1, crash_share in (0, 1)")
    say = log or (lambda _m: None)
    wall = time.perf_counter()
    sim = WholeNodeSimulation(cfg)
    out: dict[str, Any] = {"config": {**_config_record(sim), "publish_s": publish_s, "heal_wait_s": heal_wait,
                                      "heal_probe_every_s": heal_probe_every, "settle_s": settle, "idle_s": idle,
                                      "crash_wait_s": crash_wait, "crash_share": crash_share,
                                      "newcomers": newcomers, "partition_s": partition_s}}
    marks: list[tuple[str, float]] = [("build", 0.0)]
    out["build"] = build(sim)
    marks.append(("settle", sim.now))
    out["build"]["wall_s"] = time.perf_counter() - wall
    say(f"built: {out['build']}")
    sim.run_until(sim.now + settle)
    meshes, members = sim.mesh_sizes(), sim.members_known()
    out["settled"] = {"at": sim.now, **_connection_figures(sim), "mesh_p50": percentile(meshes, 50),
                      "mesh_min": min(meshes), "members_min": min(members, default=float("nan")),
                      "members_p50": percentile(members, 50), "topology": _topology(sim)}
    marks.append(("idle", sim.now))
    out["idle"] = _window(sim, idle)
    marks.append(("newcomers", sim.now))
    out["idle"].update(_connection_figures(sim))
    say(f"idle: {out['idle']}")

    # Newcomers: start, and as soon as one is connected to a bootstrap node, look
    # agents up; each lookup is timed from the newcomer's start. One group asks
    # as find_agents(limit=1) does (the first live agent ends the lookup), the
    # other waits for the whole lookup (20 providers asked, as limit=10 does
    # when fewer than 10 agents are up).
    caps = sorted(sim.providers)
    for key, want in (("newcomer", 1), ("newcomer_whole", None)):
        samples: list[tuple[bool, float]] = []
        named: list[tuple[bool, float]] | None = [] if want is not None else None
        fresh = []
        for _ in range(newcomers):
            picks = [caps[sim.wrng.randrange(len(caps))] for _ in range(lookups)]
            box: list[int] = []
            box.append(sim.add_node(on_boot=lambda box=box, picks=picks, t=sim.now, s=samples, w=want, n=named: [
                _find(sim, box[0], c, t, s, want=w, first_named=n) for c in picks]))
            fresh.append(box[0])
        out[key] = _collect(sim, samples, newcomers * lookups, 60.0)
        out[key].update(got_in=sum(1 for i in fresh if sim.nodes[i].booted), newcomers=newcomers)
        if named is not None:
            # The measure before 2026-12-03: the first provider named, however far.
            out[key]["first_named"] = _latencies(named)
        say(f"{key}: {out[key]}")

    marks.append(("pubsub", sim.now))
    ids = _publish_for(sim, publish_s, rate)
    out["pubsub"] = _deliveries(sim, ids, lambda _a, _i, _t: True, 5.0)
    out["pubsub"]["rate"] = rate
    say(f"pubsub: {out['pubsub']}")

    # A worker process dies: crash_share of the nodes at once.
    can = sorted(set(sim.live) - set(sim.boot))
    k = min(len(can), max(1, round(crash_share * len(sim.live))))
    crashed = sim.wrng.sample(can, k)
    t0 = sim.now
    marks.append(("crash", t0))
    held = _holders(sim, crashed) if cfg.swim else set()
    for j in crashed:
        sim.crash(j)
    observers = {i for i in sim.live if sim.nodes[i].booted}
    sim.run_until(t0 + crash_wait)
    out["crash"] = _detection(sim, crashed, t0, observers, held) if cfg.swim else {"crashed": k}
    say(f"crash: {out['crash']}")
    if not partition_s:
        out["partition"] = out["heal"] = None
        out["false_failures_by_phase"] = _by_phase(sim, marks)
        out["totals"] = _totals(sim, wall)
        return out

    # Partition in two halves (bootstrap nodes split too), then heal.
    live = sorted(sim.live)
    halves = {i: (0 if sim.wrng.random() < 0.5 else 1) for i in live}
    sim.partition(halves)
    t_split = sim.now
    marks.append(("partition", t_split))
    sim.run_until(t_split + max(15.0, sim.cfg.disconnect_detect + 5.0))
    during: dict[str, Any] = {}
    for g in (0, 1):
        ids = _publish_for(sim, 5.0, rate, group=g, drain=3.0)
        during[f"pubsub_{g}"] = _deliveries(sim, ids, lambda a, i, _t: halves.get(i) == halves.get(a), 3.0)
        mine = [c for c in caps if any(halves.get(j) == g for j in sim.providers[c] if j in sim.live)]
        pairs = [(sim.random_live(group=g), mine[sim.wrng.randrange(len(mine))]) for _ in range(20)]
        during[f"find_{g}"] = _lookups(sim, pairs, group=g)
    sim.run_until(max(sim.now, t_split + partition_s))
    out["partition"] = during
    say(f"partition: {during}")
    sim.heal()
    t_heal = sim.now
    marks.append(("heal", t_heal))
    merge: dict[str, Any] = {"swim_merged_s": None, "pubsub_merged_s": None}
    probes: list[tuple[float, bytes]] = []
    second = 0
    while sim.now < t_heal + heal_wait:
        if second % heal_probe_every == 0:
            i = sim.random_live()
            before = set(sim.log.published)
            sim.publish(i)
            probes.extend((sim.now, m) for m in sim.log.published if m not in before)
        second += 1
        sim.run_until(sim.now + 1.0)
        if merge["swim_merged_s"] is None and cfg.swim and sim.views_whole():
            merge["swim_merged_s"] = sim.now - t_heal
    for t, m in probes:
        got = sim.log.delivered[m]
        author = sim.log.published[m][1]
        if all(j in got for j in sim.live if j != author):
            merge["pubsub_merged_s"] = t - t_heal
            break
    cross = []
    for _ in range(20):
        i = sim.random_live()
        other = [c for c in caps if any(halves.get(j) != halves.get(i) for j in sim.providers[c] if j in sim.live)]
        cross.append((i, other[sim.wrng.randrange(len(other))]))
    merge["find_across"] = _lookups(sim, cross)
    merge.update(_connection_figures(sim), members_min=min(sim.members_known(), default=float("nan")))
    out["heal"] = merge
    say(f"heal: {merge}")
    out["false_failures_by_phase"] = _by_phase(sim, marks)
    out["totals"] = _totals(sim, wall)
    return out


def _by_phase(sim: WholeNodeSimulation, marks: list[tuple[str, float]]) -> dict[str, int]:
    """False "failed" verdicts by the phase of the run they fell in."""
    by_phase = dict.fromkeys((name for name, _ in marks), 0)
    for t in sim.false_failure_times:
        by_phase[[name for name, at in marks if at <= t][-1]] += 1
    return by_phase


def run_partition_merge(cfg: WholeNodeConfig, *, settle: float = 60.0, partition_s: float = 30.0,
                        heal_wait: float = 60.0) -> dict[str, Any]:
    """SWIM alone on stage: build, settle, split in two random halves for
    ``partition_s``, heal, and follow every second for ``heal_wait`` how
    many nodes still miss members (a view counts live members held alive or
    suspect, so a suspicion that later ends in a false failure shows as a
    relapse). Returns the curve, ``merged_s`` (the first second every view
    was whole; None if none was), ``behind_at_end`` and the failures
    declared after the heal."""
    if not cfg.swim:
        raise ValueError("partition merge is SWIM's: run it with swim on")
    wall = time.perf_counter()
    sim = WholeNodeSimulation(cfg)
    build(sim)
    sim.run_until(sim.now + settle)
    halves = {i: (0 if sim.wrng.random() < 0.5 else 1) for i in sorted(sim.live)}
    sim.partition(halves)
    sim.run_until(sim.now + partition_s)
    at_heal, late_at_heal = len(sim.false_failure_times), len(sim.late_verdict_times)
    sim.heal()
    t_heal = sim.now
    curve: list[dict[str, float]] = []
    merged: float | None = None
    for k in range(1, int(heal_wait) + 1):
        sim.run_until(t_heal + k)
        known = sim.members_known()
        behind = sum(1 for x in known if x < 1.0)
        curve.append({"t": float(k), "min": min(known), "p50": percentile(known, 50), "nodes_behind": behind})
        if behind == 0 and merged is None:
            merged = float(k)
    return {"config": {"n": cfg.n, "seed": cfg.seed, "swim_start": cfg.swim_start,
                       "connect_ahead": sim.swim_config.connect_ahead,
                       "redial_upcoming": sim.swim_config.redial_upcoming,
                       "close_grace": sim.swim_config.close_grace,
                       "probe_connected_min": sim.swim_config.probe_connected_min,
                       "roster_probe_every": sim.swim_config.roster_probe_every, "partition_s": partition_s},
            "merged_s": merged, "behind_at_end": curve[-1]["nodes_behind"] if curve else None, "curve": curve,
            # live members declared failed after the heal (the measure before 2026-12-04: both below)
            "declared_failed_after_heal": (len(sim.false_failure_times) - at_heal
                                           + len(sim.late_verdict_times) - late_at_heal),
            "false_failures_after_heal": len(sim.false_failure_times) - at_heal,
            "late_verdicts_after_heal": len(sim.late_verdict_times) - late_at_heal,
            "wall_s": time.perf_counter() - wall}


def run_churn(cfg: WholeNodeConfig, *, settle: float = 60.0, churn_per_hour: float = 0.1, duration: float = 600.0,
              rate: float = 1.0, probe_every: float = 2.0, drain: float = 30.0,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build, settle, then churn for ``duration`` seconds: nodes leave (crash:
    the worst case, nothing said; never a bootstrap node, the way in) and
    fresh ones join through the bootstrap nodes, each as a Poisson process
    at ``churn_per_hour`` of the network an hour, so its size stays about
    the same. Meanwhile random connected nodes publish ``rate`` messages a
    second and, every ``probe_every`` seconds (0: none), one looks up a
    capability that has a live provider, as ``find_agents(limit=1)`` does.

    A message counts towards delivery at every node live at the end whose
    record was announced before the message was published (a node still
    joining is not yet expected to hear the topic); a lookup is found when
    it fetched a live provider's record, and one whose asker crashed first
    is left out. After the churn the run waits (up to ``drain`` seconds)
    for the last lookups and for the last arrivals to announce."""
    say = log or (lambda _m: None)
    wall = time.perf_counter()
    sim = WholeNodeSimulation(cfg)
    out: dict[str, Any] = {"config": {**_config_record(sim), "churn_per_hour": churn_per_hour,
                                      "duration_s": duration, "rate": rate, "probe_every_s": probe_every}}
    out["build"] = build(sim)
    say(f"built: {out['build']}")
    sim.run_until(sim.now + settle)
    t0 = sim.now
    per_s = len(sim.live) * churn_per_hour / 3600.0
    left: list[int] = []
    arrived: list[int] = []
    probes: list[tuple[int, list[tuple[bool, float]]]] = []  # (asker, its one sample once reported)
    before = set(sim.log.published)

    def leave() -> None:
        others = sorted(sim.live - sim._bootset)
        if others:
            j = others[sim.wrng.randrange(len(others))]
            sim.crash(j)
            left.append(j)

    def probe() -> None:
        i = sim.random_live(booted=True)
        caps = [c for c, provs in sorted(sim.providers.items()) if any(j in sim.live and j != i for j in provs)]
        if caps:
            mine: list[tuple[bool, float]] = []
            probes.append((i, mine))
            _find(sim, i, caps[sim.wrng.randrange(len(caps))], sim.now, mine, want=1)

    def poisson(rate_per_s: float, fn: Callable[[], None]) -> None:
        t = t0
        while rate_per_s > 0:
            t += sim.wrng.expovariate(rate_per_s)
            if t >= t0 + duration:
                break
            sim.at(t, fn)

    poisson(per_s, leave)
    poisson(per_s, lambda: arrived.append(sim.add_node()))
    poisson(rate, lambda: sim.publish(sim.random_live(booted=True)))
    poisson(1.0 / probe_every if probe_every > 0 else 0.0, probe)
    for k in range(1, 11):
        sim.run_until(t0 + duration * k / 10)
        say(f"churn {k * 10} %: {len(left)} left, {len(arrived)} arrived, {len(sim.live)} live, "
            f"{sum(1 for _, got in probes if got and got[0][0])}/{len(probes)} lookups found")

    def waiting() -> bool:
        return (any(not got and sim.nodes[i].up for i, got in probes)
                or any(sim.nodes[i].up and sim.nodes[i].joined is None for i in arrived))

    end = sim.now + drain
    while waiting() and sim.now < end:
        sim.run_until(sim.now + 0.5)
    sim.run_until(max(sim.now, t0 + duration + 5.0))  # the last messages' 5 s

    msgs = [m for m in sim.log.published if m not in before]
    pub = _deliveries(sim, msgs, lambda _a, i, t: (j := sim.nodes[i].joined) is not None and j <= t, 5.0)
    joins = [n.joined - n.started for n in (sim.nodes[i] for i in arrived) if n.joined is not None]
    samples = [got[0] for i, got in probes if got or sim.nodes[i].up]
    found = [t for ok, t in samples if ok]
    out["churn"] = {
        "left": len(left), "arrived": len(arrived), "live_at_end": len(sim.live),
        "arrivals_live": sum(1 for i in arrived if sim.nodes[i].up), "arrivals_announced": len(joins),
        "arrivals_waiting": sum(1 for i in arrived if sim.nodes[i].up and sim.nodes[i].joined is None),
        "arrival_join_p50": percentile(joins, 50), "arrival_join_p99": percentile(joins, 99),
        "lookups": len(samples), "askers_crashed": len(probes) - len(samples), "found": len(found),
        "find_p50": percentile(found, 50), "find_p99": percentile(found, 99),
        "messages": pub["messages"], "delivered": pub["ratio"], "fully_delivered": pub["fully_delivered"],
        "deliver_p50": pub["p50"], "deliver_p99": pub["p99"],
        **_connection_figures(sim),
    }
    if cfg.swim:
        out["churn"].update(_views(sim), false_failures=len([t for t in sim.false_failure_times if t >= t0]))
    out["totals"] = _totals(sim, wall)
    say(f"churn: {out['churn']}")
    return out


def _views(sim: WholeNodeSimulation) -> dict[str, float]:
    """How whole and how clean the live nodes' SWIM views are: the share of
    the other live nodes each holds alive or suspect (min, P50), and the
    crashed nodes each still holds so (max, mean)."""
    live, whole, stale = sim.live, [], []
    others = max(1, len(live) - 1)
    for i in sorted(live):
        if sim.nodes[i].swim is None:
            continue
        held = sim.swim_held(i)
        whole.append(len(held & live) / others)
        stale.append(len(held - live))
    return {"views_min": min(whole, default=float("nan")), "views_p50": percentile(whole, 50),
            "dead_held_max": max(stale, default=0), "dead_held_mean": sum(stale) / len(stale) if stale else 0.0}
