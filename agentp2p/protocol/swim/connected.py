"""Probe order over connected members (``SwimConfig.probe_connected_min``).

SWIM probes every member in randomized round-robin. Over libp2p a node keeps
a few hundred connections (the connection manager trims the rest), so in a
large network most probes went to a member with no connection and paid a
dial: 1.5 dials a second per node, nine tenths of an idle node's traffic in
the whole-node simulator (docs/scale.md, "SWIM over trimmed connections").

Probing only the members we are connected to removes the dial and keeps
SWIM's load: a connection has two ends, so a member with c connections is
probed by each of its c neighbours once per round of theirs, about once a
period in all, as with the whole roster. What it gives up: a member is
probed by its neighbours, not by every member. A node with too few
connections (joining, or cut off) falls back to the whole roster, whose
probes dial and so reconnect it.

The adapter reports connections (MemberDiscovered on connect,
ConnectionClosed / ConnectionLost on close); peers that are not members are
skipped when their turn comes. Bounded by ``max_peers``; the rounds are
reshuffled from the connected set, new connections take a random place in
the current round.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .member import PeerId

__all__ = ["ConnectedOrder"]


class ConnectedOrder:
    """Randomized round-robin over the peers we hold a connection to."""

    __slots__ = ("_rng", "_peers", "_round", "_i", "max_peers")

    def __init__(self, rng: random.Random, max_peers: int = 4096) -> None:
        self._rng = rng
        self._peers: set[PeerId] = set()
        self._round: list[PeerId] = []
        self._i = 0
        self.max_peers = max_peers

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def connected(self, peer: PeerId) -> None:
        if peer in self._peers or len(self._peers) >= self.max_peers:
            return
        self._peers.add(peer)
        if len(self._round) - self._i >= 2 * self.max_peers:
            # Flapping connections piled up in this round: start the next one.
            self._round, self._i = [], 0
            return
        # A random place among those not yet probed this round.
        self._round.insert(self._rng.randint(self._i, len(self._round)), peer)

    def disconnected(self, peer: PeerId) -> None:
        self._peers.discard(peer)  # its place in the round is skipped

    def next(self, usable: Callable[[PeerId], bool]) -> PeerId | None:
        """The next connected peer for which ``usable`` holds (a live
        member), or None after one full pass finds none."""
        for _ in range(2):
            while self._i < len(self._round):
                peer = self._round[self._i]
                self._i += 1
                if peer in self._peers and usable(peer):
                    return peer
            # Round over: a fresh shuffle of who is connected now.
            self._round = sorted(self._peers)
            self._rng.shuffle(self._round)
            self._i = 0
        return None
