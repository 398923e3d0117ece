"""An in-memory network of KademliaCores on virtual time (tests, experiments).

Why: what a DHT promises — every node finds every provider record within a
few hops — is a property of many nodes talking, and checking it needs no
sockets: a queue of timed events and a stand-in adapter. Messages go
through the real codec (so it is exercised too) with a fixed latency; the
first request between two nodes "connects" them, and each learns whether
the other is a DHT server (as identify would tell it). A node can be given
a ``behaviour`` that replaces its answers (garbage, lies, silence) to model
an adversary. Deterministic for a given seed.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from .codec import Message, decode_message, encode_message
from .config import KademliaConfig, Mode
from .core import KademliaCore
from .events import (
    Action,
    ArmTimer,
    Bootstrap,
    CloseRequest,
    Input,
    PeerConnected,
    PingPeer,
    QueryFinished,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    SendRequest,
    SendResponse,
    Tick,
)
from .records import Validator

#: Replaces a node's answer to a request: a Message or raw bytes to send, or
#: None to stay silent (the requester times out).
Behaviour = Callable[[bytes, Message], "Message | bytes | None"]


@dataclass
class SimStats:
    requests: int = 0  # SendRequest actions carried out
    responses: int = 0
    bytes: int = 0


@dataclass
class SimNode:
    core: KademliaCore
    server: bool
    behaviour: Behaviour | None = None
    armed: float | None = None
    finished: dict[object, QueryFinished] = field(default_factory=dict)


def sim_peer_id(rng: random.Random) -> bytes:
    """An Ed25519-shaped peer ID (identity multihash of a protobuf public key)."""
    return b"\x00\x24\x08\x01\x12\x20" + rng.getrandbits(256).to_bytes(32, "big")


class SimNet:
    def __init__(self, *, seed: int = 0, latency: float = 0.01, config: KademliaConfig | None = None,
                 validator: Validator | None = None) -> None:
        self.rng = random.Random(seed)
        self.latency = latency
        self.config = config or KademliaConfig()
        self.validator = validator
        self.now = 0.0
        self.nodes: dict[bytes, SimNode] = {}
        self.stats = SimStats()
        self._links: set[frozenset[bytes]] = set()
        #: Nodes that went away without a word: requests to them are never answered.
        self.offline: set[bytes] = set()
        self._queue: list[tuple[float, int, bytes, Input]] = []
        self._seq = itertools.count()

    # ------------------------------------------------------------ building

    def add_node(self, *, server: bool = True, behaviour: Behaviour | None = None,
                 config: KademliaConfig | None = None) -> bytes:
        peer = sim_peer_id(self.rng)
        cfg = config or self.config
        if not server:
            cfg = dataclasses.replace(cfg, mode=Mode.CLIENT)
        core = KademliaCore(peer, rng=random.Random(self.rng.getrandbits(64)), now=self.now, config=cfg,
                            validator=self.validator, local_addrs=(self.addr(peer),))
        self.nodes[peer] = SimNode(core, server, behaviour)
        return peer

    @staticmethod
    def addr(peer: bytes) -> bytes:
        return b"/sim/" + peer[-8:].hex().encode()

    def connect(self, a: bytes, b: bytes) -> None:
        """Link two nodes (both learn the other's mode, as from identify)."""
        if a == b or frozenset((a, b)) in self._links:
            return
        self._links.add(frozenset((a, b)))
        self.deliver(a, PeerConnected(b, (self.addr(b),), self.nodes[b].server), 0.0)
        self.deliver(b, PeerConnected(a, (self.addr(a),), self.nodes[a].server), 0.0)

    # ------------------------------------------------------------ running

    def deliver(self, peer: bytes, event: Input, delay: float | None = None) -> None:
        at = self.now + (self.latency if delay is None else delay)
        heapq.heappush(self._queue, (at, next(self._seq), peer, event))

    def input(self, peer: bytes, event: Input) -> list[Action]:
        """Hand ``event`` to ``peer`` now and carry out what it answers."""
        actions = self.nodes[peer].core.handle(self.now, event)
        for a in actions:
            self._carry_out(peer, a)
        return actions

    def run(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            at, _, peer, event = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            if peer in self.offline:
                continue
            node = self.nodes[peer]
            if isinstance(event, Tick):
                if node.armed != at:
                    continue
                node.armed = None
            self.input(peer, event)
        self.now = max(self.now, until)

    def bootstrap(self, n: int, *, contacts: int = 3, spacing: float = 0.5) -> list[bytes]:
        """Add ``n`` server nodes, each connected to ``contacts`` earlier ones
        and running a Bootstrap ``spacing`` seconds after the previous one."""
        peers: list[bytes] = []
        for _ in range(n):
            p = self.add_node()
            for b in self.rng.sample(peers, min(contacts, len(peers))):
                self.connect(p, b)
            peers.append(p)
        self.run(self.now + self.latency)
        for p in peers:
            self.input(p, Bootstrap())
            self.run(self.now + spacing)
        self.run_queries(300.0)
        return peers

    def run_queries(self, max_time: float) -> None:
        """Run until no node has a query running (or ``max_time`` passes)."""
        end = self.now + max_time
        while self.now < end and any(n.core.query_count() for n in self.nodes.values()):
            self.run(min(end, self.now + 1.0))

    # ------------------------------------------------------------ the adapter

    def _carry_out(self, me: bytes, a: Action) -> None:
        node = self.nodes[me]
        if isinstance(a, ArmTimer):
            node.armed = max(a.at, self.now)  # the core's latest word; earlier Ticks are skipped
            heapq.heappush(self._queue, (node.armed, next(self._seq), me, Tick()))
        elif isinstance(a, SendRequest):
            self._request(me, a)
        elif isinstance(a, PingPeer):
            ok = a.peer in self.nodes and a.peer not in self.offline
            self.deliver(me, ResponseReceived(a.request_id, None) if ok else RequestFailed(a.request_id, "down"),
                         2 * self.latency)
        elif isinstance(a, SendResponse):
            requester, rid = a.request_id
            data = encode_message(a.message)
            self.stats.responses += 1
            self.stats.bytes += len(data)
            self.deliver(requester, ResponseReceived(rid, data))
        elif isinstance(a, CloseRequest):
            requester, rid = a.request_id
            if a.error is not None:
                self.deliver(requester, RequestFailed(rid, a.error))
        elif isinstance(a, QueryFinished):
            node.finished[a.query_id] = a

    def _request(self, me: bytes, a: SendRequest) -> None:
        self.stats.requests += 1
        target = self.nodes.get(a.peer)
        if target is None:
            self.deliver(me, RequestFailed(a.request_id, "no such peer"))
            return
        if a.peer in self.offline:
            return  # silence: the requester's timeout is all it gets
        self.connect(me, a.peer)
        data = encode_message(a.message)
        self.stats.bytes += len(data)
        if not a.expect_response:
            self.deliver(me, ResponseReceived(a.request_id, None))
        if target.behaviour is not None:
            reply = target.behaviour(me, decode_message(data))
            if reply is not None and a.expect_response:
                raw = reply if isinstance(reply, bytes) else encode_message(reply)
                self.deliver(me, ResponseReceived(a.request_id, raw), 2 * self.latency)
            return
        self.deliver(a.peer, RequestReceived(me, (me, a.request_id), data))
