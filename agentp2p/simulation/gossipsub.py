"""Run N GossipSubCore routers in one process on virtual time (issue #12).

The same router core the node runs (agentp2p.protocol.gossipsub.core); the
simulator only replaces the adapter, as simulation/swim.py does for SWIM:

* **Network.** A random graph: every node dials ``dial`` random others, so
  each has ~2 x dial connections (24 by default, between D_hi and 2 D_hi).
  Every link gets a one-way latency drawn once from a lognormal (median
  50 ms, sigma 0.5, clipped to 10-200 ms: a mix of same-region and
  intercontinental paths); a link delivers in order (fixed latency + FIFO tie
  break), like the TCP/QUIC stream it stands for. ``loss`` drops whole RPCs
  independently — a worst case: over a real stream a lost packet is delay,
  not loss. No bandwidth or CPU model: a node processes any number of RPCs
  instantly.
* **Time.** One priority queue of (time, insertion count) -> event; ties
  break by insertion order, every random draw comes from one seeded
  ``random.Random``, so a run is exactly reproducible. Each core's
  ``next_deadline()`` becomes a wake-up; heartbeats are 1 s apart, each node
  starts at a random phase and each wake-up is late by U(0, jitter).
* **Signatures** are a stand-in: every message carries a 64-byte constant
  signature and VerifySignature is answered at once, ok unless the
  signature is the FORGED marker (what the spamming Sybils send). No crypto.
* **Wire.** RPCs are handed over as decoded objects and *sized* exactly
  (gossipsub_metrics.rpc_size == len(codec.encode_rpc) + length prefix, see
  the tests); ``wire="full"`` really encodes and decodes every RPC (slower;
  for checking the shortcut).
* **Churn.** A leaving node vanishes (a crash, or a NAT dropping the
  mapping); its peers notice ``disconnect_detect`` seconds later (what a
  keep-alive timeout gives) and until then their RPCs to it are lost. It
  comes back as a restarted router (fresh state, same peer ID) that dials
  ``dial`` random live nodes and subscribes again.
* **Sybils** run a real core with a greedy mesh (D = D_lo = D_hi = 64: they
  GRAFT every topic peer and accept every GRAFT) whose output is filtered:
  they never forward a message, never answer IWANT and never gossip
  (``drop``). ``spam`` adds forged messages to every honest neighbour each
  heartbeat; ``ihave`` adds IHAVEs for recent real IDs plus fake IDs each
  heartbeat (and, like all of them, never answers the IWANTs).

Scoring (``scoring``): ``off`` (the NullScorer), ``default`` (PeerScore with
default_score_params: P3 mesh-delivery off, as shipped for low-rate agent
topics), or ``p3`` (the defaults plus P3/P3b turned on for the simulated
message rate, see :func:`p3_score_params`).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from agentp2p.protocol.gossipsub.codec import encode_rpc, seqno_bytes
from agentp2p.protocol.gossipsub.core import GossipSubCore
from agentp2p.protocol.gossipsub.events import (
    Deliver,
    PeerConnected,
    PeerDisconnected,
    Publish,
    Published,
    RpcReceived,
    SendRpc,
    SignatureChecked,
    Subscribe,
    Tick,
    Validate,
    ValidationResult,
    Verdict,
    VerifySignature,
)
from agentp2p.protocol.gossipsub.mesh import xor_key
from agentp2p.protocol.gossipsub.params import GossipSubParams
from agentp2p.protocol.gossipsub.rpc import Control, IHave, Message, Rpc
from agentp2p.protocol.gossipsub.score import PeerScore
from agentp2p.protocol.gossipsub.score_params import (
    PeerScoreParams,
    PeerScoreThresholds,
    TopicScoreParams,
    default_score_params,
    score_parameter_decay,
)

from .gossipsub_metrics import DeliveryLog, _MessageSizes, percentile, rpc_size

__all__ = ["FORGED", "GossipSimConfig", "GossipSimulation", "LinkLatency", "p3_score_params", "peer_id",
           "run_scenario"]

PROTOCOL = "/meshsub/1.2.0"
#: The stand-in signature of every genuine message (Ed25519-sized) ...
SIGNATURE = b"\x5a" * 64
#: ... and the one a forgery carries: VerifySignature answers not-ok for it.
FORGED = b"\xee" * 64

SCORING = ("off", "default", "p3")
SYBIL_MODES = ("drop", "spam", "ihave")

_DELIVER, _WAKE, _CALL, _NOTICE, _ATTACK = range(5)
_TICK = Tick()


def peer_id(i: int) -> bytes:
    """A 38-byte ID shaped like a libp2p Ed25519 peer ID (identity multihash)."""
    return b"\x00\x24\x08\x01\x12\x20" + i.to_bytes(32, "big")


def _sign(payload: bytes) -> bytes:
    return SIGNATURE


def topic_name(k: int) -> str:
    return f"/agentp2p/sim/topic-{k}"


@dataclass(frozen=True)
class LinkLatency:
    """One-way latency of a link, drawn once per link: lognormal, clipped."""

    median: float = 0.050
    sigma: float = 0.5
    low: float = 0.010
    high: float = 0.200

    def draw(self, rng: random.Random) -> float:
        if self.sigma == 0:
            return self.median
        return min(self.high, max(self.low, self.median * math.exp(rng.gauss(0.0, self.sigma))))


@dataclass(frozen=True)
class GossipSimConfig:
    n: int = 1000
    seed: int = 1
    #: Each node dials this many random others (so ~2 x dial connections each).
    dial: int = 12
    topics: int = 1
    latency: LinkLatency = field(default_factory=LinkLatency)
    #: Probability that an RPC is lost (independently per RPC).
    loss: float = 0.0
    #: Each heartbeat wake-up is late by U(0, heartbeat_jitter) seconds.
    heartbeat_jitter: float = 0.02
    #: Payload bytes per message.
    msg_size: int = 256
    params: GossipSubParams = field(default_factory=GossipSubParams)
    scoring: str = "off"
    # -- workload: Poisson publications by random honest live nodes
    #: Messages per second per topic (network-wide).
    rate: float = 2.0
    #: Meshes form during warmup; then messages are published for
    #: ``duration`` seconds; the run ends ``drain`` seconds after that, which
    #: is also the delivery deadline (a later delivery counts as a miss).
    warmup: float = 10.0
    duration: float = 30.0
    drain: float = 5.0
    # -- attack
    #: Share of nodes that are Sybils (never publishers, never counted as receivers).
    sybils: float = 0.0
    sybil_mode: str = "drop"
    #: Connections each Sybil dials (default: ``dial``, like everyone).
    sybil_dial: int | None = None
    #: ``spam``: forged messages each Sybil sends every honest neighbour per heartbeat.
    spam_per_heartbeat: int = 5
    #: ``ihave``: fake message IDs per IHAVE (on top of the recent real ones).
    fake_ihave_ids: int = 10
    # -- churn
    #: Share of honest nodes that leave once during the publishing window and come back.
    churn: float = 0.0
    #: How long a churning node stays away: U(lo, hi) seconds (lo > disconnect_detect).
    churn_down: tuple[float, float] = (5.0, 15.0)
    disconnect_detect: float = 2.0
    #: "size": hand RPC objects over, size them exactly; "full": encode + decode every RPC.
    wire: str = "size"
    # -- geometry (issue #14's small-world experiments)
    #: Nodes at random points of a unit square; a link's latency grows with
    #: the distance (latency.low at 0 to latency.high across the diagonal),
    #: so "near" is transitive, as network coordinates make it. Off: each
    #: link's latency is drawn on its own (no geometry).
    geometry: bool = False
    #: Of the ``dial`` connections a node makes, this many go to its nearest
    #: nodes, the rest to random ones.
    near_dials: int = 0
    #: What "nearest" means for ``near_dials``: ``plane`` (distance on the
    #: plane; needs ``geometry``) or ``xor`` (Kademlia's XOR distance of the
    #: peer IDs' hashes, what a node's DHT neighbourhood is and what the
    #: router's ``d_near`` prefers).
    near_metric: str = "plane"
    #: Sybils grind their IDs: each picks an honest victim and takes an ID
    #: whose hash shares a long prefix with the victim's (about log2(n) + 4
    #: bits), so it is among the victim's nearest in XOR space — the attack
    #: a router preferring near peers invites. With ``near_dials`` the
    #: victims dial them as their nearest.
    sybil_near: bool = False

    def __post_init__(self) -> None:
        if self.scoring not in SCORING:
            raise ValueError(f"scoring must be one of {SCORING}")
        if self.sybil_mode not in SYBIL_MODES:
            raise ValueError(f"sybil_mode must be one of {SYBIL_MODES}")
        if self.wire not in ("size", "full"):
            raise ValueError("wire must be size or full")
        if not 0 <= self.loss < 1 or not 0 <= self.sybils < 1 or not 0 <= self.churn <= 1:
            raise ValueError("loss, sybils, churn are shares in [0, 1)")
        if self.churn and self.churn_down[0] <= self.disconnect_detect + self.latency.high:
            raise ValueError("churn_down must exceed disconnect_detect + the largest latency")
        if self.n < 2 * self.dial + 2:
            raise ValueError("n too small for dial")
        if self.near_metric not in ("plane", "xor"):
            raise ValueError("near_metric must be plane or xor")
        if not 0 <= self.near_dials <= self.dial or (self.near_dials and self.near_metric == "plane"
                                                      and not self.geometry):
            raise ValueError("near_dials must be in [0, dial]; on the plane it needs geometry")


def _nearest(pos: list[tuple[float, float]], k: int) -> list[list[int]]:
    """Each point's ``k`` nearest others, nearest first (a grid of ~4 points a
    cell, searched ring by ring: fine for 10,000 points)."""
    n = len(pos)
    g = max(1, int(math.sqrt(n / 4)))
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(pos):
        cells.setdefault((min(g - 1, int(x * g)), min(g - 1, int(y * g))), []).append(i)
    out = []
    for i, (x, y) in enumerate(pos):
        cx, cy = min(g - 1, int(x * g)), min(g - 1, int(y * g))
        found: list[tuple[float, int]] = []
        r = 0
        while True:
            for dx in range(-r, r + 1):
                for dy in range(-r, r + 1):
                    if max(abs(dx), abs(dy)) != r:
                        continue
                    for j in cells.get((cx + dx, cy + dy), ()):
                        if j != i:
                            found.append((math.hypot(pos[j][0] - x, pos[j][1] - y), j))
            # Everything within r cells is in; points further out are at least r / g away.
            found.sort()
            if (len(found) >= k and found[k - 1][0] <= r / g) or r > g:
                break
            r += 1
        out.append([j for _, j in found[:k]])
    return out


def _xor_nearest(ids: list[bytes], k: int) -> list[list[int]]:
    """Each ID's ``k`` nearest others by XOR distance of their hashes, nearest
    first. Exact: the k nearest lie inside the smallest prefix range (a
    contiguous run of the sorted hashes) holding k others, found by bisection."""
    keys = [xor_key(p) for p in ids]
    order = sorted(range(len(ids)), key=keys.__getitem__)
    sk = [keys[i] for i in order]
    out = []
    for i, key in enumerate(keys):
        shift = 0
        while True:
            lo = bisect.bisect_left(sk, (key >> shift) << shift)
            hi = bisect.bisect_left(sk, ((key >> shift) + 1) << shift)
            if hi - lo > k or hi - lo == len(sk):
                break
            shift += 1
        near = sorted((j for j in order[lo:hi] if j != i), key=lambda j: keys[j] ^ key)
        out.append(near[:k])
    return out


def _ground_id(victim: bytes, bits: int, rng: random.Random) -> bytes:
    """A peer ID whose hash shares ``bits`` leading bits with ``victim``'s (by
    trial, as an attacker would: about 2^bits hashes, 0.4 s at 10,000 nodes).
    Hashed here, not through xor_key, whose cache the trials would flush."""
    want = xor_key(victim) >> (256 - bits)
    while True:
        cand = b"\x00\x24\x08\x01\x12\x20" + rng.randbytes(32)
        if int.from_bytes(hashlib.sha256(cand).digest(), "big") >> (256 - bits) == want:
            return cand


def p3_score_params(topics: list[str]) -> PeerScoreParams:
    """default_score_params plus P3 (mesh message deliveries) and P3b, for
    topics carrying on the order of a message a second — what score_params.py
    advises for a topic whose rate is known.

    The P3 counter (a mesh peer's first copies, and copies within 100 ms of
    the first) decays to zero in a minute; the threshold is 1 and the weight
    -2, so a mesh peer that has forwarded nothing useful for a while scores
    -2 once it has been in the mesh 15 s (the activation) and is pruned at the
    next heartbeat; P3b keeps the deficit on its record for about a minute.
    An honest mesh peer clears the threshold easily at these rates, and its
    P2 (first deliveries) outweighs a small deficit. A higher threshold or a
    shorter activation prunes honest peers too (tried: a threshold of 3.4
    with a 10 s activation emptied some honest meshes)."""
    base = default_score_params(topics)
    decay = score_parameter_decay(60)
    tp = TopicScoreParams(
        mesh_message_deliveries_weight=-2.0,
        mesh_message_deliveries_decay=decay,
        mesh_message_deliveries_threshold=1.0,
        mesh_message_deliveries_cap=10.0,
        mesh_message_deliveries_activation=15.0,
        mesh_message_deliveries_window=0.1,
        mesh_failure_penalty_weight=-2.0,
        mesh_failure_penalty_decay=decay,
    )
    params = replace(base, topics={t: tp for t in topics})
    params.validate()
    return params


class GossipSimulation:
    def __init__(self, cfg: GossipSimConfig) -> None:
        self.cfg = cfg
        self.now = 0.0
        self.rng = rng = random.Random(cfg.seed)
        #: The workload (publication times, authors, topics, churn schedule) has
        #: its own stream, so scenarios that differ only in loss or scoring
        #: publish the same messages at the same times.
        self.wrng = random.Random(cfg.seed * 1_000_003 + 17)
        n = cfg.n
        self.n = n
        self.ids = [peer_id(i) for i in range(n)]
        self.topics = [topic_name(k) for k in range(cfg.topics)]
        nsyb = round(n * cfg.sybils)
        self.sybil = [False] * n
        for i in rng.sample(range(n), nsyb):
            self.sybil[i] = True
        self.honest = [i for i in range(n) if not self.sybil[i]]
        #: sybil_near: each Sybil's honest victim
        self.victim: dict[int, int] = {}
        if cfg.sybil_near and nsyb:
            grind = random.Random(cfg.seed * 104_729 + 5)
            bits = n.bit_length() + 4
            victims = grind.sample(self.honest, min(nsyb, len(self.honest)))
            for i, v in zip([i for i in range(n) if self.sybil[i]], victims * nsyb):
                self.ids[i] = _ground_id(self.ids[v], bits, grind)
                self.victim[i] = v
        self.index = {p: i for i, p in enumerate(self.ids)}
        self.up = [True] * n
        self.inc = [0] * n  # incarnation: bumped when a node restarts
        self.adj: list[dict[int, float]] = [{} for _ in range(n)]
        self.cores: list[GossipSubCore | None] = [None] * n
        self.wake_at: list[float | None] = [None] * n
        self.down: dict[int, list[list[float]]] = {}  # node -> [[left, back], ...]
        self.log = DeliveryLog()
        self.sizes = _MessageSizes()
        # per-node counters (cumulative; snapshotted at window start)
        self.bytes_ctl = [0] * n
        self.bytes_data = [0] * n
        self.rpcs_sent = [0] * n
        self.verifications = [0] * n
        self.forged_verified = [0] * n
        self.iwant_to_sybils = 0
        self.sybil_bytes = 0
        self.lost = 0
        self.to_departed = 0
        self.events = 0
        self._retired: dict[str, int] = {}
        self._recent: dict[int, deque[tuple[float, bytes, str]]] = {}
        self._attack_seq = [0] * n
        self._heap: list[tuple] = []
        self._count = 0
        self._score_params: PeerScoreParams | None = None
        if cfg.scoring == "default":
            self._score_params = default_score_params(self.topics)
        elif cfg.scoring == "p3":
            self._score_params = p3_score_params(self.topics)
        self._window: dict[str, Any] = {}

        t0 = time.perf_counter()
        #: Node positions (geometry only: drawn from their own stream, so runs
        #: without geometry are exactly as before).
        self.pos: list[tuple[float, float]] = []
        if cfg.geometry:
            prng = random.Random(cfg.seed * 7_919 + 3)
            self.pos = [(prng.random(), prng.random()) for _ in range(n)]
        for i in range(n):
            self.cores[i] = self._make_core(i)
        near = None
        if cfg.near_dials:
            near = (_nearest(self.pos, cfg.near_dials) if cfg.near_metric == "plane"
                    else _xor_nearest(self.ids, cfg.near_dials))
        for i in range(n):
            k = (cfg.sybil_dial or cfg.dial) if self.sybil[i] else cfg.dial
            chosen = list(near[i]) if near is not None and not self.sybil[i] else []
            if chosen:
                for j in chosen:
                    self._connect(i, j)
                taken = set(chosen) | {i}
                while len(chosen) < k:
                    j = rng.randrange(n)
                    if j not in taken:
                        taken.add(j)
                        chosen.append(j)
                        self._connect(i, j)
                continue
            for j in rng.sample(range(n - 1), k):
                self._connect(i, j if j < i else j + 1)
        for i in range(n):
            for t in self.topics:
                self._handle(i, Subscribe(t))
            self._reschedule(i)
            if self.sybil[i] and cfg.sybil_mode != "drop":
                self._recent[i] = deque()
                self._push(rng.uniform(0.5, 1.5), _ATTACK, i, 0)
        self.build_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------ nodes

    def _make_core(self, i: int) -> GossipSubCore:
        cfg, rng = self.cfg, self.rng
        p = replace(cfg.params, heartbeat_initial_delay=rng.uniform(0.05, 1.05))
        scorer = None
        if self.sybil[i]:
            p = replace(p, d=64, d_lo=64, d_hi=64, d_lazy=0)
        elif self._score_params is not None:
            scorer = PeerScore(self._score_params, PeerScoreThresholds(), self.now)
        return GossipSubCore(self.ids[i], rng=random.Random(rng.getrandbits(64)), now=self.now, params=p,
                             scorer=scorer, sign=_sign)

    def _connect(self, i: int, j: int) -> None:
        if j in self.adj[i]:
            return
        if self.pos:
            (xi, yi), (xj, yj) = self.pos[i], self.pos[j]
            span = self.cfg.latency
            lat = span.low + (span.high - span.low) * math.hypot(xi - xj, yi - yj) / math.sqrt(2)
        else:
            lat = self.cfg.latency.draw(self.rng)
        self.adj[i][j] = lat
        self.adj[j][i] = lat
        self._handle(i, PeerConnected(self.ids[j], PROTOCOL, outbound=True))
        self._handle(j, PeerConnected(self.ids[i], PROTOCOL, outbound=False))

    def leave(self, i: int) -> None:
        """Node i vanishes; its peers notice after ``disconnect_detect``."""
        core = self.cores[i]
        if core is None:
            return
        for name in ("duplicates", "delivered"):
            self._retired[name] = self._retired.get(name, 0) + getattr(core.stats, name)
        self.up[i] = False
        self.cores[i] = None
        self.wake_at[i] = None
        self.down.setdefault(i, []).append([self.now, math.inf])
        when = self.now + self.cfg.disconnect_detect
        for j in self.adj[i]:
            self._push(when, _NOTICE, j, i)
        self.adj[i] = {}

    def rejoin(self, i: int) -> None:
        """Node i restarts (fresh router, same ID), dials ``dial`` random live nodes, subscribes."""
        if self.up[i]:
            return
        self.up[i] = True
        self.inc[i] += 1
        self.down[i][-1][1] = self.now
        self.cores[i] = self._make_core(i)
        rng, n = self.rng, self.n
        chosen: list[int] = []
        while len(chosen) < self.cfg.dial:
            j = rng.randrange(n)
            if j != i and self.up[j] and j not in chosen:
                chosen.append(j)
        for j in chosen:
            self._connect(i, j)
        for t in self.topics:
            self._handle(i, Subscribe(t))
        self._reschedule(i)

    # ------------------------------------------------------------ running

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self._push(when, _CALL, 0, fn)

    def _push(self, when: float, kind: int, a: int, b: Any) -> None:
        self._count += 1
        heapq.heappush(self._heap, (when, self._count, kind, a, b))

    def run_until(self, t_end: float) -> None:
        heap = self._heap
        up, inc, sybil = self.up, self.inc, self.sybil
        ids = self.ids
        while heap and heap[0][0] <= t_end:
            when, _, kind, a, b = heapq.heappop(heap)
            self.now = when
            if kind == _DELIVER:
                src, dst_inc, payload = b
                if not up[a] or inc[a] != dst_inc:
                    self.to_departed += 1
                    continue
                self.events += 1
                self._handle(a, RpcReceived(ids[src], payload))
            elif kind == _WAKE:
                if not up[a] or self.wake_at[a] != b[0] or inc[a] != b[1]:
                    continue
                self.wake_at[a] = None
                self.events += 1
                self._handle(a, _TICK)
            elif kind == _NOTICE:
                if self.adj[a].pop(b, None) is not None and up[a]:
                    self._handle(a, PeerDisconnected(ids[b]))
            elif kind == _ATTACK:
                if up[a] and sybil[a]:
                    self._attack(a)
                    self._push(when + self.cfg.params.heartbeat_interval, _ATTACK, a, 0)
            else:
                b()
        if t_end > self.now:
            self.now = t_end

    def _reschedule(self, i: int) -> None:
        core = self.cores[i]
        if core is None:
            return
        dl = core.next_deadline()
        if dl != self.wake_at[i]:
            self.wake_at[i] = dl
            jitter = self.cfg.heartbeat_jitter
            t = max(dl, self.now) + (self.rng.uniform(0.0, jitter) if jitter else 0.0)
            self._push(t, _WAKE, i, (dl, self.inc[i]))

    def _handle(self, i: int, event: Any) -> None:
        core = self.cores[i]
        if core is None:
            return
        actions = core.handle(self.now, event)
        if actions:
            if self.sybil[i]:
                self._process_sybil(i, actions)
            else:
                self._process(i, actions)
        self._reschedule(i)

    def _process(self, i: int, actions: list) -> None:
        checks = None
        for a in actions:
            t = type(a)
            if t is SendRpc:
                self._send(i, a.peer, a.rpc)
            elif t is Deliver:
                self.log.deliver(a.msg_id, i, self.now)
            elif t is VerifySignature:
                if checks is None:
                    checks = []
                checks.append(a)
            elif t is Published:
                self.log.publish(a.msg_id, self.now, i, a.topic)
            elif t is Validate:  # not used (no validators), but answer anyway
                self._handle(i, ValidationResult(a.msg_id, Verdict.ACCEPT))
        if checks:
            for v in checks:
                self.verifications[i] += 1
                ok = v.message.signature != FORGED
                if not ok:
                    self.forged_verified[i] += 1
                self._handle(i, SignatureChecked(v.msg_id, ok))

    def _process_sybil(self, i: int, actions: list) -> None:
        """A Sybil keeps its mesh links but never forwards, answers IWANT or gossips."""
        checks = None
        for a in actions:
            t = type(a)
            if t is SendRpc:
                rpc = a.rpc
                c = rpc.control
                if rpc.publish or c.ihave:
                    if c.ihave:
                        c = Control((), c.iwant, c.graft, c.prune, c.idontwant)
                    rpc = Rpc(rpc.subscriptions, (), c)
                    if not rpc:
                        continue
                self._send(i, a.peer, rpc)
            elif t is VerifySignature:
                if checks is None:
                    checks = []
                checks.append(a)
            elif t is Deliver:
                recent = self._recent.get(i)
                if recent is not None:
                    recent.append((self.now, a.msg_id, a.topic))
        if checks:
            for v in checks:
                self._handle(i, SignatureChecked(v.msg_id, v.message.signature != FORGED))

    def _attack(self, i: int) -> None:
        cfg = self.cfg
        targets = [j for j in self.adj[i] if not self.sybil[j]]
        if not targets:
            return
        if cfg.sybil_mode == "spam":
            msgs = []
            for _ in range(cfg.spam_per_heartbeat):
                self._attack_seq[i] += 1
                topic = self.topics[self._attack_seq[i] % len(self.topics)]
                msgs.append(Message(topic, b"\x00" * cfg.msg_size, self.ids[i],
                                    seqno_bytes(self._attack_seq[i]), FORGED))
            rpc = Rpc(publish=tuple(msgs))
        else:  # ihave: recent real IDs (what it would be asked for) + fake ones
            recent = self._recent[i]
            horizon = self.now - cfg.params.mcache_gossip * cfg.params.heartbeat_interval
            while recent and recent[0][0] < horizon:
                recent.popleft()
            ihaves = []
            for topic in self.topics:
                real = [m for _, m, t in recent if t == topic]
                fake = []
                for _ in range(cfg.fake_ihave_ids):
                    self._attack_seq[i] += 1
                    fake.append(self.ids[i] + seqno_bytes((1 << 63) | self._attack_seq[i]))
                ihaves.append(IHave(topic, tuple(real + fake)))
            rpc = Rpc(control=Control(ihave=tuple(ihaves)))
        for j in targets:
            self._send(i, self.ids[j], rpc)

    def _send(self, i: int, peer: bytes, rpc: Rpc) -> None:
        j = self.index[peer]
        lat = self.adj[i].get(j)
        if lat is None:
            return
        total, data = rpc_size(rpc, self.sizes)
        if self.sybil[i]:
            self.sybil_bytes += total
        else:
            self.bytes_ctl[i] += total - data
            self.bytes_data[i] += data
            self.rpcs_sent[i] += 1
            if self.sybil[j] and rpc.control.iwant:
                self.iwant_to_sybils += sum(len(w.ids) for w in rpc.control.iwant)
        loss = self.cfg.loss
        if loss and self.rng.random() < loss:
            self.lost += 1
            return
        payload: Rpc | bytes = encode_rpc(rpc) if self.cfg.wire == "full" else rpc
        self._count += 1
        heapq.heappush(self._heap, (self.now + lat, self._count, _DELIVER, j, (i, self.inc[j], payload)))

    # ------------------------------------------------------------ workload

    def publish(self, i: int, topic: str) -> None:
        k = len(self.log.published)
        data = (b"msg %08d " % k).ljust(self.cfg.msg_size, b".")
        self._handle(i, Publish(topic, data))

    def start_window(self) -> None:
        """Snapshot the counters, schedule the publications (and the churn)."""
        cfg, rng = self.cfg, self.wrng
        w0, w1 = self.now, self.now + cfg.duration
        self._window = {
            "t0": w0,
            "t1": w1,
            "bytes_ctl": sum(self.bytes_ctl[i] for i in self.honest),
            "bytes_data": sum(self.bytes_data[i] for i in self.honest),
            "rpcs": sum(self.rpcs_sent[i] for i in self.honest),
            "duplicates": self._honest_stat("duplicates"),
            "delivered": self._honest_stat("delivered"),
            "verifications": sum(self.verifications),
            "forged_verified": sum(self.forged_verified),
            "iwant_to_sybils": self.iwant_to_sybils,
            "sybil_bytes": self.sybil_bytes,
            "lost": self.lost,
            "events": self.events,
        }
        for topic in self.topics:
            t = w0
            while True:
                t += rng.expovariate(cfg.rate)
                if t >= w1:
                    break
                self.at(t, lambda topic=topic: self._publish_random(topic))
        if cfg.churn:
            lo, hi = cfg.churn_down
            for i in rng.sample(self.honest, round(len(self.honest) * cfg.churn)):
                t_leave = rng.uniform(w0, w1)
                self.at(t_leave, lambda i=i: self.leave(i))
                self.at(t_leave + rng.uniform(lo, hi), lambda i=i: self.rejoin(i))

    def _publish_random(self, topic: str) -> None:
        while True:
            i = self.honest[self.wrng.randrange(len(self.honest))]
            if self.up[i]:
                break
        self.publish(i, topic)

    def _honest_stat(self, name: str) -> int:
        return self._retired.get(name, 0) + sum(
            getattr(c.stats, name) for i in self.honest if (c := self.cores[i]) is not None)

    # ------------------------------------------------------------ results

    def _eligible(self, i: int, t0: float, t1: float) -> bool:
        for left, back in self.down.get(i, ()):
            if left < t1 and back > t0:
                return False
        return True

    def summary(self) -> dict[str, Any]:
        cfg, w = self.cfg, self._window
        deadline = cfg.drain
        latencies: list[float] = []
        expected = delivered = late = full = 0
        for msg_id, (t_pub, author, _topic) in self.log.published.items():
            got = self.log.delivered[msg_id]
            ok_here = exp_here = 0
            for i in self.honest:
                if i == author or (self.down and not self._eligible(i, t_pub, t_pub + deadline)):
                    continue
                exp_here += 1
                lat = got.get(i)
                if lat is None:
                    continue
                if lat > deadline:
                    late += 1
                    continue
                ok_here += 1
                latencies.append(lat)
            expected += exp_here
            delivered += ok_here
            full += ok_here == exp_here
        span = self.now - w["t0"]
        nh = len(self.honest)
        dup = self._honest_stat("duplicates") - w["duplicates"]
        acc = self._honest_stat("delivered") - w["delivered"]
        p = cfg.params
        degrees: list[int] = []
        sybil_slots = slots = 0
        settled = self.now - 2 * p.heartbeat_interval
        for i in self.honest:
            core = self.cores[i]
            if core is None or (i in self.down and self.down[i][-1][1] > settled):
                continue  # away, or back for less than two heartbeats: no mesh yet
            for t in self.topics:
                mesh = core.mesh(t)
                degrees.append(len(mesh))
                slots += len(mesh)
                sybil_slots += sum(1 for q in mesh if self.sybil[self.index[q]])
        sybil_scores: list[float] = []
        if self._score_params is not None and cfg.sybils:
            for i in self.honest:
                core = self.cores[i]
                if core is None:
                    continue
                sybil_scores += [core.score(self.ids[j]) for j in core_peers(core, self.index, self.sybil)]
        return {
            "messages": len(self.log.published),
            "expected": expected,
            "delivered": delivered,
            "late": late,
            "ratio": delivered / expected if expected else float("nan"),
            "fully_delivered": full / len(self.log.published) if self.log.published else float("nan"),
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "max": max(latencies) if latencies else float("nan"),
            "dup_per_delivery": dup / acc if acc else float("nan"),
            "ctl_Bps": (sum(self.bytes_ctl[i] for i in self.honest) - w["bytes_ctl"]) / nh / span,
            "data_Bps": (sum(self.bytes_data[i] for i in self.honest) - w["bytes_data"]) / nh / span,
            "rpcs_ps": (sum(self.rpcs_sent[i] for i in self.honest) - w["rpcs"]) / nh / span,
            "mesh_min": min(degrees) if degrees else 0,
            "mesh_p50": percentile([float(d) for d in degrees], 50) if degrees else 0,
            "mesh_max": max(degrees) if degrees else 0,
            "mesh_in_bounds": (sum(1 for d in degrees if p.d_lo <= d <= p.d_hi) / len(degrees)) if degrees else 0,
            "sybil_mesh_share": sybil_slots / slots if slots else 0.0,
            "sybil_score_p50": percentile(sybil_scores, 50) if sybil_scores else None,
            "forged_verified_ps": (sum(self.forged_verified) - w["forged_verified"]) / nh / span,
            "iwant_to_sybils_ps": (self.iwant_to_sybils - w["iwant_to_sybils"]) / nh / span,
            "sybil_Bps": (self.sybil_bytes - w["sybil_bytes"]) / max(1, self.n - nh) / span,
            "lost_rpcs": self.lost - w["lost"],
            "events": self.events - w["events"],
        }


def core_peers(core: GossipSubCore, index: dict[bytes, int], sybil: list[bool]) -> list[int]:
    """Indices of ``core``'s connected Sybil peers (sorted: set order of bytes is per-process)."""
    return sorted(j for q in core.peers() if sybil[j := index[q]])


def run_scenario(cfg: GossipSimConfig) -> dict[str, Any]:
    """Build, warm up, publish for ``duration``, drain; the summary plus wall times."""
    wall = time.perf_counter()
    sim = GossipSimulation(cfg)
    sim.run_until(cfg.warmup)
    sim.start_window()
    sim.run_until(cfg.warmup + cfg.duration + cfg.drain)
    out = sim.summary()
    out["build_s"] = sim.build_seconds
    out["wall_s"] = time.perf_counter() - wall
    return out
