"""Connected pubsub peers: their protocol version, direction and topics.

Why a table of its own: every routing decision filters peers by what they
speak (a v1.0 peer cannot parse PX, only v1.2 knows IDONTWANT, a floodsub
peer has no mesh), by connection direction (the D_out quota counts outbound
connections, which an attacker cannot create at will), and by the topics they
announced. Bounded: at most ``max_peers`` peers, ``max_topics_per_peer``
topics each and ``max_known_topics`` distinct topics overall; announcements
past a bound are ignored and counted by the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Set as AbstractSet

from .rpc import PeerId


class Proto(enum.IntEnum):
    """Protocol IDs in order of features, so ``proto >= Proto.V11`` reads naturally."""

    FLOODSUB = 0
    V10 = 10
    V11 = 11
    V12 = 12

    @property
    def mesh(self) -> bool:
        return self >= Proto.V10

    @property
    def px(self) -> bool:
        """PRUNE peer exchange and backoff (gossipsub v1.1)."""
        return self >= Proto.V11

    @property
    def idontwant(self) -> bool:
        return self >= Proto.V12


PROTOCOL_IDS: dict[str, Proto] = {
    "/floodsub/1.0.0": Proto.FLOODSUB,
    "/meshsub/1.0.0": Proto.V10,
    "/meshsub/1.1.0": Proto.V11,
    "/meshsub/1.2.0": Proto.V12,
}

#: What we advertise, best first (the adapter negotiates one with each peer).
SUPPORTED_PROTOCOLS: tuple[str, ...] = ("/meshsub/1.2.0", "/meshsub/1.1.0", "/meshsub/1.0.0", "/floodsub/1.0.0")


class PeerState:
    __slots__ = ("proto", "outbound", "ip", "topics")

    def __init__(self, proto: Proto, outbound: bool, ip: str | None) -> None:
        self.proto = proto
        self.outbound = outbound
        self.ip = ip
        self.topics: set[str] = set()


class PeerTable:
    def __init__(self, max_peers: int, max_topics_per_peer: int, max_known_topics: int) -> None:
        self._max_peers = max_peers
        self._max_per_peer = max_topics_per_peer
        self._max_topics = max_known_topics
        self._peers: dict[PeerId, PeerState] = {}
        self._by_topic: dict[str, set[PeerId]] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, peer: object) -> bool:
        return peer in self._peers

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._peers)

    def get(self, peer: PeerId) -> PeerState | None:
        return self._peers.get(peer)

    def add(self, peer: PeerId, proto: Proto, outbound: bool, ip: str | None) -> bool:
        """Add or update ``peer``; False when the table is full."""
        st = self._peers.get(peer)
        if st is not None:
            st.proto, st.outbound, st.ip = proto, outbound, ip
            return True
        if len(self._peers) >= self._max_peers:
            return False
        self._peers[peer] = PeerState(proto, outbound, ip)
        return True

    def remove(self, peer: PeerId) -> PeerState | None:
        st = self._peers.pop(peer, None)
        if st is not None:
            for t in st.topics:
                self._unindex(t, peer)
        return st

    def subscribe(self, peer: PeerId, topic: str) -> bool:
        """Record ``peer`` in ``topic``; False if a bound refused it."""
        st = self._peers.get(peer)
        if st is None:
            return False
        if topic in st.topics:
            return True
        if len(st.topics) >= self._max_per_peer:
            return False
        members = self._by_topic.get(topic)
        if members is None:
            if len(self._by_topic) >= self._max_topics:
                return False
            members = self._by_topic[topic] = set()
        members.add(peer)
        st.topics.add(topic)
        return True

    def unsubscribe(self, peer: PeerId, topic: str) -> None:
        st = self._peers.get(peer)
        if st is not None and topic in st.topics:
            st.topics.discard(topic)
            self._unindex(topic, peer)

    def in_topic(self, topic: str) -> AbstractSet[PeerId]:
        """Peers that announced ``topic`` (a live view: copy before mutating state)."""
        return self._by_topic.get(topic, _EMPTY)

    def is_outbound(self, peer: PeerId) -> bool:
        st = self._peers.get(peer)
        return st is not None and st.outbound

    def proto(self, peer: PeerId) -> Proto | None:
        st = self._peers.get(peer)
        return st.proto if st else None

    def _unindex(self, topic: str, peer: PeerId) -> None:
        members = self._by_topic.get(topic)
        if members is not None:
            members.discard(peer)
            if not members:
                del self._by_topic[topic]


_EMPTY: frozenset[PeerId] = frozenset()
