"""Test helpers: peer IDs, a validator, and a driver that plays a core's peers.

The :class:`Driver` is the adapter of one KademliaCore on virtual time: each
SendRequest is answered by ``responder(peer, message)`` after ``latency``
(a Message/bytes to answer, None to stay silent, FAIL for a failed stream),
ArmTimer schedules Ticks, and it records what the core did — in-flight
request counts included, so tests can check α.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
import weakref
from collections.abc import Callable, Sequence

from agentp2p.protocol.kademlia import (
    ArmTimer,
    CancelRequest,
    InvalidRecord,
    KademliaConfig,
    KademliaCore,
    Message,
    MessageType,
    Peer,
    PeerConnected,
    PingPeer,
    QueryFinished,
    Record,
    RequestFailed,
    ResponseReceived,
    SendRequest,
    Tick,
    kad_key,
)
from agentp2p.protocol.kademlia.events import Action, Input
from agentp2p.protocol.kademlia.keys import common_prefix_len

FAIL = object()

#: Actions a core_knowing() core emitted before any Driver existed (pings of
#: full buckets, timers); the Driver built on that core carries them out first.
_BOOT: weakref.WeakKeyDictionary[KademliaCore, list[Action]] = weakref.WeakKeyDictionary()


def pid(i: int | str) -> bytes:
    return b"\x00\x24" + hashlib.sha256(str(i).encode()).digest()


def same_bucket(me: bytes, n: int) -> list[bytes]:
    """``n`` test peer IDs in ``me``'s farthest bucket (bucket 0: half of all IDs)."""
    out = [p for p in (pid(f"b{i}") for i in range(64 * n)) if common_prefix_len(kad_key(me), kad_key(p)) == 0][:n]
    assert len(out) == n
    return out


class SeqValidator:
    """Values are b"<seq>:<payload>"; the highest seq wins. Any other shape is invalid."""

    def validate(self, key: bytes, value: bytes) -> None:
        head, sep, _ = value.partition(b":")
        if not sep or not head.isdigit():
            raise InvalidRecord("not seq:payload")

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        seqs = [int(v.partition(b":")[0]) for v in values]
        return seqs.index(max(seqs))


def closest_to(target_raw: bytes, peers: Sequence[bytes], n: int = 20) -> list[bytes]:
    t = int.from_bytes(kad_key(target_raw), "big")
    return sorted(peers, key=lambda p: int.from_bytes(kad_key(p), "big") ^ t)[:n]


class Delayed:
    """A responder's answer that arrives ``after`` seconds instead of the Driver's latency."""

    def __init__(self, after: float, response: object) -> None:
        self.after, self.response = after, response


class Driver:
    def __init__(self, core: KademliaCore, responder: Callable[[bytes, Message], object], *,
                 latency: float = 0.01, ping_ok: Callable[[bytes], bool] = lambda p: True) -> None:
        self.core, self.responder, self.latency, self.ping_ok = core, responder, latency, ping_ok
        self.now = 0.0
        self.queue: list[tuple[float, int, Input]] = []
        self.seq = itertools.count()
        self.finished: dict[object, QueryFinished] = {}
        self.sent: list[SendRequest] = []
        self.pings: list[PingPeer] = []
        self.actions: list[Action] = []
        self.outstanding: set[object] = set()
        self.max_outstanding = 0
        for a in _BOOT.pop(core, []):
            self._carry_out(a)
        self._push(core.next_deadline(), Tick())

    def feed(self, event: Input) -> list[Action]:
        acts = self.core.handle(self.now, event)
        if isinstance(event, (ResponseReceived, RequestFailed)):
            self.outstanding.discard(event.request_id)
        self.actions.extend(acts)
        for a in acts:
            self._carry_out(a)
        self.max_outstanding = max(self.max_outstanding, len(self.outstanding))
        return acts

    def _push(self, at: float, ev: Input) -> None:
        heapq.heappush(self.queue, (at, next(self.seq), ev))

    def _carry_out(self, a: Action) -> None:
        if isinstance(a, ArmTimer):
            self._push(a.at, Tick())
        elif isinstance(a, QueryFinished):
            self.finished[a.query_id] = a
        elif isinstance(a, CancelRequest):
            self.outstanding.discard(a.request_id)
        elif isinstance(a, PingPeer):
            self.pings.append(a)
            ok = self.ping_ok(a.peer)
            self._push(self.now + self.latency,
                       ResponseReceived(a.request_id, None) if ok else RequestFailed(a.request_id, "down"))
        elif isinstance(a, SendRequest):
            self.sent.append(a)
            if not a.expect_response:
                self._push(self.now + self.latency, ResponseReceived(a.request_id, None))
                return
            self.outstanding.add(a.request_id)
            r = self.responder(a.peer, a.message)
            delay = self.latency
            if isinstance(r, Delayed):
                delay, r = r.after, r.response
            if r is FAIL:
                self._push(self.now + delay, RequestFailed(a.request_id, "stream reset"))
            elif r is not None:
                self._push(self.now + delay, ResponseReceived(a.request_id, r))  # type: ignore[arg-type]

    def run(self, until: float) -> None:
        while self.queue and self.queue[0][0] <= until:
            at, _, ev = heapq.heappop(self.queue)
            self.now = max(self.now, at)
            self.feed(ev)
        self.now = max(self.now, until)

    def run_until_finished(self, qid: object, max_time: float = 1000.0) -> QueryFinished:
        end = self.now + max_time
        while qid not in self.finished and self.queue and self.queue[0][0] <= end:
            self.run(self.queue[0][0])
        return self.finished[qid]


class IdealNetwork:
    """Peers that each know everyone: FIND_NODE answers the 20 truly closest.
    Optional per-peer overrides model liars and silent peers."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = random.Random(seed)
        self.peers = [pid(f"net-{seed}-{i}-{rng.random()}") for i in range(n)]
        self.override: dict[bytes, Callable[[Message], object]] = {}
        self.values: dict[bytes, dict[bytes, bytes]] = {}  # peer -> key -> value
        self.providers: dict[bytes, list[Peer]] = {}  # key -> providers (known by every peer)

    def __call__(self, peer: bytes, msg: Message) -> object:
        if peer in self.override:
            return self.override[peer](msg)
        return self.honest(peer, msg)

    def honest(self, peer: bytes, msg: Message) -> object:
        if peer not in self.peers:
            return FAIL
        closer = tuple(Peer(p, (b"/sim",)) for p in closest_to(msg.key, self.peers) if p != peer)
        if msg.type is MessageType.PUT_VALUE:
            assert msg.record is not None
            self.values.setdefault(peer, {})[msg.key] = msg.record.value
            return msg
        if msg.type is MessageType.GET_VALUE:
            v = self.values.get(peer, {}).get(msg.key)
            return Message(msg.type, msg.key, None if v is None else Record(msg.key, v), closer)
        if msg.type is MessageType.GET_PROVIDERS:
            provs = tuple(self.providers.get(msg.key, ()))
            return Message(msg.type, msg.key, closer_peers=closer, provider_peers=provs)
        return Message(msg.type, msg.key, closer_peers=closer)


def core_knowing(peers: Sequence[bytes], *, config: KademliaConfig | None = None, me: bytes | None = None,
                 **kw: object) -> KademliaCore:
    core = KademliaCore(me or pid("me"), rng=random.Random(1), now=0.0, config=config, **kw)  # type: ignore[arg-type]
    _BOOT[core] = [a for p in peers for a in core.handle(0.0, PeerConnected(p, (b"/sim",), True))]
    return core
