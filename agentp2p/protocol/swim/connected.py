"""Probe order over connected members (``SwimConfig.probe_connected_min``).

SWIM probes every member in randomized round-robin. Over libp2p a node keeps
a few hundred connections (the connection manager trims the rest), so in a
large network most probes went to a member with no connection and paid a
dial: 1.5 dials a second per node, nine tenths of an idle node's traffic in
the whole-node simulator (docs/scale.md, "SWIM over trimmed connections").

Probing only the members we are connected to removes the dial and keeps
SWIM's load: a connection has two ends, so a member with c connections is
probed by each of its c neighbours once per round of theirs, about once a
period in all, as with the whole roster (the default since 2026-12-05).
What it gives up: a member is probed by its neighbours, not by every
member; so SWIM still gives the whole roster one turn in
``roster_probe_every`` periods, and asks the connection manager to keep
the members held longest (``held``), against a peer that fills our
connection slots to choose who watches us (docs/swim.md, "Two guards, and
the default"). A node with too few
connected members (joining, or cut off) falls back to the whole roster,
whose probes dial and so reconnect it.

The adapter reports connections: ConnectionOpened, and ConnectionClosed for
one closed in order (a trim, a goodbye), which takes the peer out. A
connection lost without a goodbye (ConnectionLost) keeps the peer's turns:
the member's process may have died, and its neighbours are who probe it,
so that probe dials (a live member is then connected again). But a lost
peer is not one we hold: it does not count toward the minimum, and when
the order is full the lost peers leave first (those that are not members,
then, if none, the members), so that a peer connecting and
resetting again and again under new keys can neither keep us in the mode
nor, at ``max_peers``, shut out every new connection. Peers that are not
live members are skipped when their turn comes.

Each round is a fresh shuffle of who is connected; a new connection takes a
random place in what is left of the current round unless the peer had a
place in it already: one turn per peer per round, so a peer that flaps its
connection gains no turns. Bounded by ``max_peers``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from .member import PeerId

__all__ = ["ConnectedOrder"]


class ConnectedOrder:
    """Randomized round-robin over the peers we hold a connection to."""

    __slots__ = ("_rng", "_rng_source", "_peers", "_lost", "_round", "_i", "_placed", "max_peers")

    def __init__(self, rng: random.Random | Callable[[], random.Random], max_peers: int = 4096) -> None:
        # A callable is asked for the generator at the first connection: a
        # core that never hears of one (SWIM's own simulator) then draws
        # nothing from its seed for this order.
        self._rng: random.Random | None = rng if isinstance(rng, random.Random) else None
        self._rng_source = rng
        self._peers: dict[PeerId, None] = {}  # oldest connection first (held())
        self._lost: set[PeerId] = set()  # in _peers, connection lost without a goodbye (not held)
        self._round: list[PeerId] = []
        self._i = 0
        self._placed: set[PeerId] = set()  # peers with a place in this round (taken or to come)
        self.max_peers = max_peers

    def __len__(self) -> int:
        """Peers whose connection we hold (a lost one, though it keeps its turns, is not)."""
        return len(self._peers) - len(self._lost)

    def __iter__(self) -> Iterator[PeerId]:
        lost = self._lost
        return (p for p in self._peers if p not in lost)

    def connected(self, peer: PeerId, is_member: Callable[[PeerId], bool] = lambda _p: False) -> None:
        """``peer`` is connected. When the order is full, lost peers make room:
        first those that are not members (``is_member``), then, if none is,
        every lost one (held connections come first)."""
        if peer in self._peers:
            if peer in self._lost:
                # Connected again (its probe's dial, or the peer): a new
                # connection, the youngest we hold.
                self._lost.discard(peer)
                del self._peers[peer]
                self._peers[peer] = None
            return
        if len(self._peers) >= self.max_peers and self._lost:
            gone = {p for p in self._lost if not is_member(p)} or set(self._lost)
            for p in gone:
                del self._peers[p]
            self._lost -= gone
        if len(self._peers) >= self.max_peers:
            return
        self._peers[peer] = None
        if len(self._round) >= 4 * self.max_peers:
            # Many distinct peers came and went this round: start the next.
            self._round, self._i, self._placed = [], 0, set()
        if peer not in self._placed:
            self._placed.add(peer)
            # A random place among those not yet probed this round.
            self._round.insert(self._random().randint(self._i, len(self._round)), peer)

    def _random(self) -> random.Random:
        if self._rng is None:
            source = self._rng_source
            assert callable(source)
            self._rng = source()
        return self._rng

    def holds(self, peer: PeerId) -> bool:
        """We hold a connection to ``peer`` (one lost without a goodbye is not held)."""
        return peer in self._peers and peer not in self._lost

    def peers(self) -> list[PeerId]:
        """Every peer with turns in the order: those we hold a connection to
        and those whose connection was lost without a goodbye."""
        return list(self._peers)

    def disconnected(self, peer: PeerId) -> None:
        self._peers.pop(peer, None)  # its place in the round, if any, is skipped
        self._lost.discard(peer)

    def lost(self, peer: PeerId) -> None:
        """The connection ended without a goodbye: the peer keeps its turns
        (its probe dials) but is no longer held."""
        if peer in self._peers:
            self._lost.add(peer)

    def held(self, n: int, usable: Callable[[PeerId], bool]) -> list[PeerId]:
        """The ``n`` peers we have held a connection to longest for which
        ``usable`` holds (live members), oldest first: what SWIM asks the
        connection manager to keep (SwimCore.keep_connected), so that a peer
        opening connections to fill ours cannot get every neighbour that
        probes us trimmed. Stable: the same peers while their connections
        last, not a new set each round."""
        out: list[PeerId] = []
        if n <= 0:
            return out
        lost = self._lost
        for peer in self._peers:
            if peer not in lost and usable(peer):
                out.append(peer)
                if len(out) >= n:
                    break
        return out

    def next(self, usable: Callable[[PeerId], bool]) -> PeerId | None:
        """The next connected peer for which ``usable`` holds (a live
        member), or None after one full pass finds none."""
        for _ in range(2):
            rnd = self._round
            while self._i < len(rnd):
                peer = rnd[self._i]
                self._i += 1
                if peer in self._peers and usable(peer):
                    return peer
            # Round over: a fresh shuffle of who is connected now.
            self._round = sorted(self._peers)
            self._random().shuffle(self._round)
            self._i = 0
            self._placed = set(self._round)
        return None
