"""IHAVE/IWANT bookkeeping: per-peer flood limits and IWANT promises (P7).

Why: gossip is the cheapest thing for an attacker to abuse. Incoming IHAVE is
capped per heartbeat per peer (``max_ihave_messages`` RPCs, ``max_ihave_length``
IDs asked for); incoming IWANT answers are capped per heartbeat per peer
(``max_iwant_replies``) on top of the per-message retransmission cap in the
mcache. When we answer an IHAVE with an IWANT we track one random asked ID as
the peer's *promise* (v1.1 "Spam Protection Measures"); if that message does
not arrive from anyone within ``iwant_followup``, the advertiser broke its
promise and gets a behavioural penalty. One ID per IWANT is enough for a peer
that advertises bogus IDs to be caught quickly, at a fraction of the bookkeeping.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from .rpc import MsgId, PeerId


class GossipLimits:
    """Per-heartbeat counters, reset by ``reset()`` at every heartbeat."""

    def __init__(self, max_ihave_messages: int, max_ihave_length: int, max_iwant_replies: int) -> None:
        self._max_ihaves = max_ihave_messages
        self._max_asked = max_ihave_length
        self._max_replies = max_iwant_replies
        self._ihaves: dict[PeerId, int] = {}
        self._asked: dict[PeerId, int] = {}
        self._replies: dict[PeerId, int] = {}

    def reset(self) -> None:
        self._ihaves.clear()
        self._asked.clear()
        self._replies.clear()

    def take_ihave(self, peer: PeerId) -> int:
        """Count one IHAVE RPC from ``peer``; how many IDs we may still ask it for (0: ignore it)."""
        n = self._ihaves.get(peer, 0) + 1
        self._ihaves[peer] = n
        if n > self._max_ihaves:
            return 0
        return max(0, self._max_asked - self._asked.get(peer, 0))

    def asked(self, peer: PeerId, count: int) -> None:
        self._asked[peer] = self._asked.get(peer, 0) + count

    def take_replies(self, peer: PeerId, wanted: int) -> int:
        """How many of ``wanted`` IWANT answers ``peer`` may still get this heartbeat."""
        used = self._replies.get(peer, 0)
        n = max(0, min(wanted, self._max_replies - used))
        self._replies[peer] = used + n
        return n


class Promises:
    """IWANT promises: message ID -> {peer: deadline}, bounded by ``max_promises``."""

    def __init__(self, followup: float, max_promises: int) -> None:
        self._followup = followup
        self._max = max_promises
        self._by_msg: dict[MsgId, dict[PeerId, float]] = {}
        self._count = 0
        self.dropped = 0

    def __len__(self) -> int:
        return self._count

    def add(self, peer: PeerId, asked: Sequence[MsgId], now: float, rng: random.Random) -> None:
        if not asked:
            return
        if self._count >= self._max:
            self.dropped += 1
            return
        msg_id = asked[rng.randrange(len(asked))]
        peers = self._by_msg.setdefault(msg_id, {})
        if peer not in peers:
            peers[peer] = now + self._followup
            self._count += 1

    def fulfil(self, msg_id: MsgId) -> None:
        """The message arrived (from anyone): nobody broke a promise about it."""
        peers = self._by_msg.pop(msg_id, None)
        if peers:
            self._count -= len(peers)

    def broken(self, now: float) -> dict[PeerId, int]:
        """Peers whose promises are past due (and forget those promises)."""
        out: dict[PeerId, int] = {}
        for msg_id in list(self._by_msg):
            peers = self._by_msg[msg_id]
            for peer, deadline in list(peers.items()):
                if deadline <= now:
                    out[peer] = out.get(peer, 0) + 1
                    del peers[peer]
                    self._count -= 1
            if not peers:
                del self._by_msg[msg_id]
        return out


def gossip_targets(candidates: list[PeerId], d_lazy: int, factor: float, rng: random.Random) -> list[PeerId]:
    """v1.1 adaptive gossip: ``factor`` of the candidates, at least ``d_lazy`` of them."""
    target = max(d_lazy, int(factor * len(candidates)))
    if target >= len(candidates):
        return candidates
    return rng.sample(candidates, target)


def ihave_ids(ids: list[MsgId], max_len: int, rng: random.Random) -> list[MsgId]:
    """The IDs one IHAVE carries: all of them, or a random ``max_len`` (different per peer)."""
    if len(ids) <= max_len:
        return ids
    return rng.sample(ids, max_len)
