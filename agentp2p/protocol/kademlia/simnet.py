"""An in-memory network of KademliaCores on virtual time (tests, experiments).

Why: what a DHT promises — every node finds every provider record within a
few hops — is a property of many nodes talking, and checking it needs no
sockets: a queue of timed events and a stand-in adapter. By default messages
go through the real codec (so it is exercised too) with a fixed latency; the
first request between two nodes "connects" them, and each learns whether
the other is a DHT server (as identify would tell it). A node can be given
a ``behaviour`` that replaces its answers (garbage, lies, silence) to model
an adversary. Deterministic for a given seed.

The same driver runs the large simulations (agentp2p/simulation/kademlia.py)
with a richer network, each part optional:

* ``link_latency(i, j)``: a one-way latency per pair of nodes (by their
  ``SimNode.index``), fixed for the pair, instead of one fixed latency;
* ``loss``: each request, answer and ping is lost with this probability
  (the requester's core times it out), drawn from a stream of its own so the
  rest of a run does not change with it;
* ``wire="size"``: messages are handed over as objects and only sized
  (``codec.encoded_size``, exact) — the codec is most of the driver's cost;
* ``transport``: what connections cost (round trips to dial, to negotiate a
  stream, for identify), one stream per peer with its exchanges in turn (as
  our adapter's PeerSender), a cap on connections per node (the least
  recently used goes), and vanished nodes that are silent to pings too.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .codec import Message, decode_message, encode_message, encoded_size
from .config import KademliaConfig, Mode
from .core import KademliaCore
from .events import (
    Action,
    ArmTimer,
    Bootstrap,
    CloseRequest,
    Input,
    PeerConnected,
    PeerDisconnected,
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
#: One-way latency in seconds between the nodes of two indexes; symmetric and
#: fixed for a pair (the simulator asks for every message, so it should be cheap).
LinkLatency = Callable[[int, int], float]

_TICK = Tick()


@dataclass
class SimStats:
    requests: int = 0  # SendRequest actions carried out
    responses: int = 0
    bytes: int = 0  # encoded message bytes (requests and answers; no length prefixes)
    lost: int = 0  # requests, answers and pings dropped by ``loss``
    dials: int = 0  # connections opened (transport model)
    pruned: int = 0  # connections closed over a node's cap (transport model)
    requests_by_type: dict[str, int] = field(default_factory=dict)
    bytes_by_type: dict[str, int] = field(default_factory=dict)  # request type -> request + answer bytes


@dataclass(frozen=True)
class Transport:
    """What connections cost, in round trips of the link (twice its one-way
    latency). All zero: every connection is free and instant (a warm network)."""

    dial_rtts: float = 0.0  # a new connection (TCP, security and muxer negotiation)
    stream_rtts: float = 0.0  # a new outbound DHT stream on it (protocol negotiation)
    identify_rtts: float = 0.0  # after the connection, until each side knows the other's mode
    stream_idle: float = 30.0  # an outbound stream idle this long is replaced (our PeerSender)
    max_connections: int = 0  # per node; 0 = unbounded. Beyond it the least recently used is closed
    #: A node takes the peer it bootstraps from (``connect(..., bootstrap=True)``)
    #: for a DHT server once the connection is up, without waiting for identify.
    assume_bootstrap: bool = False


class _Link:
    """One node's side of a connection: when it is up, and its outbound stream."""

    __slots__ = ("ready", "used", "busy")

    def __init__(self, ready: float) -> None:
        self.ready = ready  # the connection is up
        self.used: float | None = None  # the last exchange on our stream ended; None: no stream
        self.busy = 0.0  # our stream is free from then (one exchange at a time)


@dataclass
class SimNode:
    core: KademliaCore
    server: bool
    behaviour: Behaviour | None = None
    armed: float | None = None
    finished: dict[object, QueryFinished] = field(default_factory=dict)
    index: int = 0
    #: peer -> our side of the connection, least recently used first (transport model)
    conns: OrderedDict[bytes, _Link] = field(default_factory=OrderedDict)


def sim_peer_id(rng: random.Random) -> bytes:
    """An Ed25519-shaped peer ID (identity multihash of a protobuf public key)."""
    return b"\x00\x24\x08\x01\x12\x20" + rng.getrandbits(256).to_bytes(32, "big")


class SimNet:
    def __init__(self, *, seed: int = 0, latency: float = 0.01, config: KademliaConfig | None = None,
                 validator: Validator | None = None, link_latency: LinkLatency | None = None,
                 loss: float = 0.0, wire: str = "full", transport: Transport | None = None) -> None:
        if wire not in ("full", "size"):
            raise ValueError("wire must be full or size")
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss is a probability in [0, 1)")
        self.rng = random.Random(seed)
        self.loss_rng = random.Random(seed * 1_000_003 + 5)
        self.latency = latency
        self.link_latency = link_latency
        self.loss = loss
        self.wire = wire
        self.transport = transport
        self.config = config or KademliaConfig()
        self.validator = validator
        self.now = 0.0
        self.nodes: dict[bytes, SimNode] = {}
        self.stats = SimStats()
        self._links: set[frozenset[bytes]] = set()
        #: Nodes that went away without a word: requests to them are never answered.
        self.offline: set[bytes] = set()
        self._queue: list[tuple[float, int, bytes | None, object]] = []
        self._seq = itertools.count()
        self._next_index = 0

    # ------------------------------------------------------------ building

    def add_node(self, *, server: bool = True, behaviour: Behaviour | None = None,
                 config: KademliaConfig | None = None) -> bytes:
        peer = sim_peer_id(self.rng)
        cfg = config or self.config
        if not server:
            cfg = dataclasses.replace(cfg, mode=Mode.CLIENT)
        core = KademliaCore(peer, rng=random.Random(self.rng.getrandbits(64)), now=self.now, config=cfg,
                            validator=self.validator, local_addrs=(self.addr(peer),))
        self.nodes[peer] = SimNode(core, server, behaviour, index=self._next_index)
        self._next_index += 1
        return peer

    def remove(self, peer: bytes) -> None:
        """``peer`` vanishes without a word (a crash, a lost NAT mapping): it
        is silent from now on and its state is freed; nobody is told."""
        node = self.nodes.pop(peer, None)
        self.offline.add(peer)
        if node is not None:
            for other in node.conns:
                o = self.nodes.get(other)
                if o is not None:
                    o.conns.pop(peer, None)

    @staticmethod
    def addr(peer: bytes) -> bytes:
        return b"/sim/" + peer[-8:].hex().encode()

    def connect(self, a: bytes, b: bytes, bootstrap: bool = False) -> float:
        """``a`` connects to ``b``; both learn the other's mode, as from
        identify. Returns when they have (now, unless a transport costs time),
        or, for a ``bootstrap`` peer under ``assume_bootstrap``, when ``a``
        has taken ``b`` for a server (the connection is up)."""
        if a == b:
            return self.now
        if self.transport is not None:
            link = self.nodes[a].conns.get(b)
            if link is not None:
                return link.ready
            known = self._dial(a, b)
            if bootstrap and self.transport.assume_bootstrap:
                ready = self.nodes[a].conns[b].ready
                self._at(ready, a, PeerConnected(b, (self.addr(b),), True))
                return ready
            return known
        if frozenset((a, b)) in self._links:
            return self.now
        self._links.add(frozenset((a, b)))
        self.deliver(a, PeerConnected(b, (self.addr(b),), self.nodes[b].server), 0.0)
        self.deliver(b, PeerConnected(a, (self.addr(a),), self.nodes[a].server), 0.0)
        return self.now

    def one_way(self, a: bytes, b: bytes) -> float:
        """The one-way latency between two nodes."""
        if self.link_latency is None:
            return self.latency
        return self.link_latency(self.nodes[a].index, self.nodes[b].index)

    # ------------------------------------------------------------ running

    def deliver(self, peer: bytes, event: Input, delay: float | None = None) -> None:
        at = self.now + (self.latency if delay is None else delay)
        heapq.heappush(self._queue, (at, next(self._seq), peer, event))

    def _at(self, when: float, peer: bytes, event: Input) -> None:
        """Deliver at an absolute time (so events computed for the same
        moment compare equal, and keep their order)."""
        heapq.heappush(self._queue, (when, next(self._seq), peer, event))

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` at virtual time ``when`` (a join, a departure, a query...)."""
        heapq.heappush(self._queue, (max(when, self.now), next(self._seq), None, fn))

    def input(self, peer: bytes, event: Input) -> list[Action]:
        """Hand ``event`` to ``peer`` now and carry out what it answers."""
        actions = self.nodes[peer].core.handle(self.now, event)
        for a in actions:
            self._carry_out(peer, a)
        return actions

    def run(self, until: float) -> None:
        queue, nodes, offline = self._queue, self.nodes, self.offline
        while queue and queue[0][0] <= until:
            at, _, peer, event = heapq.heappop(queue)
            if at > self.now:
                self.now = at
            if peer is None:
                event()  # type: ignore[operator]
                continue
            if peer in offline:
                continue
            node = nodes[peer]
            if event is _TICK:
                if node.armed != at:
                    continue
                node.armed = None
            actions = node.core.handle(self.now, event)  # type: ignore[arg-type]
            for a in actions:
                self._carry_out(peer, a)
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
        t = type(a)
        if t is ArmTimer:
            node = self.nodes[me]
            node.armed = max(a.at, self.now)  # type: ignore[union-attr]  # the core's latest word
            heapq.heappush(self._queue, (node.armed, next(self._seq), me, _TICK))
        elif t is SendRequest:
            self._request(me, a)  # type: ignore[arg-type]
        elif t is SendResponse:
            self._respond(me, a)  # type: ignore[arg-type]
        elif t is PingPeer:
            self._ping(me, a)  # type: ignore[arg-type]
        elif t is CloseRequest:
            requester, rid, _ = a.request_id  # type: ignore[union-attr]
            if a.error is not None:  # type: ignore[union-attr]
                self.deliver(requester, RequestFailed(rid, a.error),  # type: ignore[union-attr]
                             self.one_way(me, requester) if requester in self.nodes else None)
        elif t is QueryFinished:
            self.nodes[me].finished[a.query_id] = a  # type: ignore[union-attr]

    def _lost(self) -> bool:
        if self.loss and self.loss_rng.random() < self.loss:
            self.stats.lost += 1
            return True
        return False

    def _size(self, msg: Message) -> tuple[Message | bytes, int]:
        if self.wire == "full":
            data = encode_message(msg)
            return data, len(data)
        return msg, encoded_size(msg)

    def _ping(self, me: bytes, a: PingPeer) -> None:
        if self.transport is None:
            ok = a.peer in self.nodes and a.peer not in self.offline
            if ok and self._lost():
                return
            self.deliver(me, ResponseReceived(a.request_id, None) if ok else RequestFailed(a.request_id, "down"),
                         2 * self.one_way(me, a.peer) if ok else 2 * self.latency)
            return
        if a.peer in self.offline or a.peer not in self.nodes:
            return  # silence: the ping times out
        arrive = self._exchange(me, a.peer, True)
        if not self._lost() and not self._lost():
            self._at(arrive + self.one_way(me, a.peer), me, ResponseReceived(a.request_id, None))

    def _request(self, me: bytes, a: SendRequest) -> None:
        st = self.stats
        st.requests += 1
        kind = a.message.type.name
        st.requests_by_type[kind] = st.requests_by_type.get(kind, 0) + 1
        if a.peer in self.offline:
            return  # silence: the requester's timeout is all it gets
        target = self.nodes.get(a.peer)
        if target is None:
            self.deliver(me, RequestFailed(a.request_id, "no such peer"))
            return
        payload, size = self._size(a.message)
        st.bytes += size
        st.bytes_by_type[kind] = st.bytes_by_type.get(kind, 0) + size
        lat = self.one_way(me, a.peer)
        if self.transport is None:
            self.connect(me, a.peer)
            arrive = written = self.now + lat  # as it always was: "written" one latency later
        else:
            arrive = self._exchange(me, a.peer, a.expect_response)
            written = arrive - lat
        if not a.expect_response:
            self._at(written, me, ResponseReceived(a.request_id, None))
        if self._lost():
            return
        if target.behaviour is not None:
            msg = payload if isinstance(payload, Message) else decode_message(payload)
            reply = target.behaviour(me, msg)
            if reply is not None and a.expect_response:
                raw = reply if isinstance(reply, bytes) else encode_message(reply)
                self._at(arrive + lat, me, ResponseReceived(a.request_id, raw))
            return
        self._at(arrive, a.peer, RequestReceived(me, (me, a.request_id, kind), payload))

    def _respond(self, me: bytes, a: SendResponse) -> None:
        requester, rid, kind = a.request_id  # type: ignore[misc]
        payload, size = self._size(a.message)
        st = self.stats
        st.responses += 1
        st.bytes += size
        st.bytes_by_type[kind] = st.bytes_by_type.get(kind, 0) + size
        if requester in self.offline or requester not in self.nodes or self._lost():
            return
        self.deliver(requester, ResponseReceived(rid, payload), self.one_way(me, requester))

    # ------------------------------------------------------------ transport model

    def _exchange(self, me: bytes, peer: bytes, expect_response: bool) -> float:
        """Book one exchange on ``me``'s stream to ``peer`` (dialing and
        negotiating as needed); returns when the request arrives there."""
        tr = self.transport
        assert tr is not None
        node, other = self.nodes[me], self.nodes[peer]
        lat = self.one_way(me, peer)
        link = node.conns.get(peer)
        if link is None:
            self._dial(me, peer, lat)
            link = node.conns[peer]
        else:
            node.conns.move_to_end(peer)
            if me in other.conns:
                other.conns.move_to_end(me)
        start = max(self.now, link.ready, link.busy)
        if link.used is None or start - link.used >= tr.stream_idle:
            start += tr.stream_rtts * 2 * lat
        end = start + (2 * lat if expect_response else 0.0)
        link.busy = link.used = end
        return start + lat

    def _dial(self, a: bytes, b: bytes, lat: float | None = None) -> float:
        """Open a connection a -> b; returns when both know each other's mode."""
        tr = self.transport
        assert tr is not None
        if lat is None:
            lat = self.one_way(a, b)
        self.stats.dials += 1
        ready = self.now + tr.dial_rtts * 2 * lat
        na, nb = self.nodes[a], self.nodes[b]
        na.conns[b] = _Link(ready)
        nb.conns[a] = _Link(ready)
        known = ready + tr.identify_rtts * 2 * lat
        self._at(known, a, PeerConnected(b, (self.addr(b),), nb.server))
        self._at(known, b, PeerConnected(a, (self.addr(a),), na.server))
        for me, node in ((a, na), (b, nb)):
            while tr.max_connections and len(node.conns) > tr.max_connections:
                old = next(iter(node.conns))
                if old in (a, b):
                    break
                self._close(me, old)
        return known

    def _close(self, me: bytes, peer: bytes) -> None:
        """``me``'s connection manager closes the connection to ``peer``."""
        self.stats.pruned += 1
        self.nodes[me].conns.pop(peer, None)
        self.deliver(me, PeerDisconnected(peer), 0.0)
        other = self.nodes.get(peer)
        if other is not None and other.conns.pop(me, None) is not None:
            self.deliver(peer, PeerDisconnected(me), self.one_way(me, peer))
