"""Peers the routing table lost to failed requests, retried now and then.

Why: a table entry that stops answering (``max_failures`` requests in a row,
or a failed liveness check) is dropped. When the cause was a crash that is
right; when it was a partition, the two halves forget each other, and once
the network heals nothing asks across it again: each half's lookups route
inside their half, and pub/sub needs a connection across before any gossip
can cross (measured in the whole-node simulator, SWIM off: a healed
1,000-node network had not merged 60 s after the heal).

So, as serf does for failed members (memberlist's ``reconnect_interval``),
every ``reconnect_interval`` the core pings one lost peer, picked at random;
an answer puts it back in the table, and the connection the ping opened
lets gossipsub gossip across at once. Only a failed request puts a peer
here: a connection closed by either side's connection manager does not, so
this never fights trimming. Bounded: ``max_lost`` peers (the longest lost
forgotten first), each kept ``lost_forget_after`` seconds, one ping per
interval.
"""

from __future__ import annotations

import random
from collections import OrderedDict

__all__ = ["LostPeers"]


class LostPeers:
    def __init__(self, *, max_peers: int, forget_after: float) -> None:
        self.max_peers, self.forget_after = max_peers, forget_after
        #: peer -> (addresses, when lost); oldest loss first
        self._peers: OrderedDict[bytes, tuple[tuple[bytes, ...], float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def add(self, peer: bytes, addrs: tuple[bytes, ...], now: float) -> bool:
        """``peer`` was dropped for failures. Without addresses it cannot be
        dialed again, so it is not kept. Returns whether it was."""
        if not addrs or self.max_peers <= 0:
            return False
        self._peers.pop(peer, None)
        self._peers[peer] = (addrs, now)
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)
        return True

    def discard(self, peer: bytes) -> None:
        """``peer`` is alive (it answered, or is back in the table)."""
        self._peers.pop(peer, None)

    def addrs(self, peer: bytes) -> tuple[bytes, ...]:
        got = self._peers.get(peer)
        return () if got is None else got[0]

    def pick(self, now: float, rng: random.Random) -> tuple[bytes, tuple[bytes, ...]] | None:
        """One lost peer to try again, at random (after forgetting the expired)."""
        peers = self._peers
        while peers:
            peer, (_addrs, lost_at) = next(iter(peers.items()))
            if now - lost_at < self.forget_after:
                break
            del peers[peer]
        if not peers:
            return None
        i = rng.randrange(len(peers))
        for k, (peer, (addrs, _t)) in enumerate(peers.items()):
            if k == i:
                return peer, addrs
        return None  # pragma: no cover - i < len(peers)
