"""An in-memory network of GossipSubCores on virtual time (tests, experiments).

Why: the router's properties (every subscriber gets a message, mesh degrees
settle in [D_lo, D_hi], forgeries go nowhere) are properties of many routers
talking, and checking them needs no sockets — just a queue of timed events
and a stand-in for the adapter: RPCs go through the real codec (so the codec
is exercised too) with a fixed latency, signatures are a keyed hash
(:func:`sim_sign`; insecure, but a forgery is detectable), validation is a
callback. Fully deterministic for a given seed.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .codec import encode_rpc
from .core import GossipSubCore
from .events import (
    Action,
    Deliver,
    Input,
    PeerConnected,
    PeerDisconnected,
    PeerExchange,
    Published,
    RpcReceived,
    SendRpc,
    SignatureChecked,
    Tick,
    Validate,
    ValidationResult,
    Verdict,
    VerifySignature,
)
from .params import GossipSubParams
from .peers import PROTOCOL_IDS
from .rpc import Message, MsgId, PeerId
from .scorer import NullScorer


def sim_sign(peer: PeerId) -> Callable[[bytes], bytes]:
    """A stand-in signature: sha256(author || payload). Anyone could compute it;
    what matters here is that a message altered in flight no longer matches."""
    return lambda payload: hashlib.sha256(peer + payload).digest()


def sim_verify(message: Message, payload: bytes) -> bool:
    sig = message.signature
    return sig is not None and message.from_ is not None and hashlib.sha256(message.from_ + payload).digest() == sig


def accept_all(peer: PeerId, v: Validate) -> Verdict:
    return Verdict.ACCEPT


class ScriptedScorer(NullScorer):
    """A scorer whose scores the test sets, and which records what the router
    told it (``calls``: (method, peer, ...)); penalties add up in ``penalties``."""

    def __init__(self) -> None:
        self.scores: dict[PeerId, float] = {}
        self.penalties: dict[PeerId, int] = {}
        self.calls: list[tuple] = []

    def score(self, peer: PeerId, now: float) -> float:
        return self.scores.get(peer, 0.0)

    def add_penalty(self, peer: PeerId, count: int) -> None:
        self.penalties[peer] = self.penalties.get(peer, 0) + count

    def graft(self, peer: PeerId, topic: str, now: float) -> None:
        self.calls.append(("graft", peer, topic))

    def prune(self, peer: PeerId, topic: str, now: float) -> None:
        self.calls.append(("prune", peer, topic))

    def validate_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float) -> None:
        self.calls.append(("validate", peer, msg_id))

    def deliver_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float) -> None:
        self.calls.append(("deliver", peer, msg_id))

    def duplicate_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float) -> None:
        self.calls.append(("duplicate", peer, msg_id))

    def reject_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float, reason: str) -> None:
        self.calls.append(("reject", peer, msg_id, reason))

    def called(self, method: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == method]


@dataclass
class NodeLog:
    delivered: list[tuple[str, MsgId]] = field(default_factory=list)
    published: list[Published] = field(default_factory=list)
    px: list[PeerExchange] = field(default_factory=list)
    rpcs_sent: int = 0
    bytes_sent: int = 0
    rpcs: list[tuple[PeerId, bytes]] = field(default_factory=list)  # (to, encoded), if keep_rpcs


class SimNet:
    def __init__(self, *, seed: int = 0, latency: float = 0.01, keep_rpcs: bool = False) -> None:
        self.rng = random.Random(seed)
        self.latency = latency
        self.keep_rpcs = keep_rpcs
        self.now = 0.0
        self.cores: dict[PeerId, GossipSubCore] = {}
        self.logs: dict[PeerId, NodeLog] = {}
        self.protocols: dict[PeerId, str] = {}
        self.links: set[frozenset[PeerId]] = set()
        #: Decides Validate actions: (validating node, action) -> verdict.
        self.validator: Callable[[PeerId, Validate], Verdict] = accept_all
        #: Decides VerifySignature actions; replace to model a broken verifier.
        self.verify: Callable[[Message, bytes], bool] = sim_verify
        self._queue: list[tuple[float, int, PeerId, Input]] = []
        self._seq = 0

    def add(self, peer: PeerId, *, params: GossipSubParams | None = None, protocol: str = "/meshsub/1.2.0",
            **kwargs: object) -> GossipSubCore:
        core = GossipSubCore(peer, rng=random.Random(self.rng.getrandbits(64)), now=self.now, params=params,
                             sign=sim_sign(peer), **kwargs)  # type: ignore[arg-type]
        self.cores[peer] = core
        self.logs[peer] = NodeLog()
        self.protocols[peer] = protocol
        return core

    def connect(self, a: PeerId, b: PeerId) -> None:
        """``a`` dials ``b``; both speak the older of their two protocol versions."""
        if a == b or frozenset((a, b)) in self.links:
            return
        self.links.add(frozenset((a, b)))
        proto = min(self.protocols[a], self.protocols[b], key=lambda p: PROTOCOL_IDS[p])
        self.handle(a, PeerConnected(b, proto, outbound=True, ip=None))
        self.handle(b, PeerConnected(a, proto, outbound=False, ip=None))

    def disconnect(self, a: PeerId, b: PeerId) -> None:
        if frozenset((a, b)) in self.links:
            self.links.discard(frozenset((a, b)))
            self.handle(a, PeerDisconnected(b))
            self.handle(b, PeerDisconnected(a))

    def connect_random(self, degree: int) -> None:
        """Each node dials ``degree`` random others (so ~2*degree links each)."""
        peers = sorted(self.cores)
        for p in peers:
            for q in self.rng.sample([x for x in peers if x != p], min(degree, len(peers) - 1)):
                self.connect(p, q)

    def schedule(self, peer: PeerId, event: Input, delay: float = 0.0) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, peer, event))

    def handle(self, peer: PeerId, event: Input) -> list[Action]:
        actions = self.cores[peer].handle(self.now, event)
        self._apply(peer, actions)
        return actions

    def run(self, until: float) -> None:
        """Process events and heartbeats in time order up to ``until``."""
        while True:
            t_q = self._queue[0][0] if self._queue else float("inf")
            peer_hb, t_hb = min(((p, c.next_deadline()) for p, c in self.cores.items()),
                                key=lambda x: x[1], default=(b"", float("inf")))
            t = min(t_q, t_hb)
            if t > until:
                break
            self.now = max(self.now, t)
            if t_q <= t_hb:
                _, _, peer, event = heapq.heappop(self._queue)
                if peer in self.cores:
                    self.handle(peer, event)
            else:
                self.handle(peer_hb, Tick())
        self.now = max(self.now, until)

    def _apply(self, peer: PeerId, actions: list[Action]) -> None:
        log = self.logs[peer]
        for a in actions:
            if isinstance(a, SendRpc):
                data = encode_rpc(a.rpc)
                log.rpcs_sent += 1
                log.bytes_sent += len(data)
                if self.keep_rpcs:
                    log.rpcs.append((a.peer, data))
                if frozenset((peer, a.peer)) in self.links:
                    self.schedule(a.peer, RpcReceived(peer, data), self.latency)
            elif isinstance(a, VerifySignature):
                self.schedule(peer, SignatureChecked(a.msg_id, self.verify(a.message, a.payload)))
            elif isinstance(a, Validate):
                self.schedule(peer, ValidationResult(a.msg_id, self.validator(peer, a)))
            elif isinstance(a, Deliver):
                log.delivered.append((a.topic, a.msg_id))
            elif isinstance(a, Published):
                log.published.append(a)
            elif isinstance(a, PeerExchange):
                log.px.append(a)
