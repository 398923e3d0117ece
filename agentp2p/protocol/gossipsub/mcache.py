"""The message cache (gossipsub-v1.0.md "Message Cache").

Why: IHAVE advertises the IDs of recent messages and IWANT fetches them, so we
keep the last ``mcache_len`` heartbeats of accepted messages, in windows; the
newest ``mcache_gossip`` windows are what we advertise. Each message also
counts how often each peer fetched it, so IWANT spam gets at most
``gossip_retransmission`` copies (v1.1 "Spam Protection Measures").

Bounded by ``max_messages``: past it the oldest message is dropped early.

It also remembers, per message, peers known to *have* it (``holders``: they
sent it to us, fetched it, advertised it in an IHAVE, or were sent it by
our flood publish), so our IHAVE does not offer it to them. A peer that has
a message can do nothing with an IHAVE of it; the one mark that is an
intent rather than a proof is the flood publish's (a peer whose queue was
full then hears of it from others' gossip, not ours). On a small network
where every node is connected to every other (SWIM probes each member; 100
nodes: 99 connections each), the spec's adaptive gossip sends each ID to a
quarter of the non-mesh peers at each of three heartbeats: about 66 IHAVE
frames per message per node, most of the pub/sub frames, to peers that
mostly had it (docs/pubsub.md, "How much gossip"). Bounded over all
messages by ``max_holders``: past it nothing more is remembered, which
only costs an IHAVE. A peer that disconnects is forgotten.
"""

from __future__ import annotations

from collections import deque

from .rpc import Message, MsgId, PeerId


class _Entry:
    __slots__ = ("message", "fetches", "holders")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.fetches: dict[PeerId, int] = {}
        self.holders: set[PeerId] | None = None


class MessageCache:
    def __init__(self, length: int, gossip: int, max_messages: int, max_holders: int = 0) -> None:
        self._gossip = gossip
        self._max = max_messages
        self._max_holders = max_holders
        self._holders = 0  # (message, peer) pairs remembered, over all entries
        self._entries: dict[MsgId, _Entry] = {}
        #: Newest window first; each window lists (id, topic) in arrival order.
        self._windows: deque[deque[tuple[MsgId, str]]] = deque(deque() for _ in range(length))
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._entries

    def put(self, msg_id: MsgId, message: Message) -> None:
        if msg_id in self._entries:
            return
        if len(self._entries) >= self._max:
            self._evict_oldest()
        self._entries[msg_id] = _Entry(message)
        self._windows[0].append((msg_id, message.topic))

    def get(self, msg_id: MsgId) -> Message | None:
        e = self._entries.get(msg_id)
        return e.message if e else None

    def fetch(self, msg_id: MsgId, peer: PeerId) -> tuple[Message, int] | None:
        """The message for ``peer``'s IWANT and how often ``peer`` has now fetched it."""
        e = self._entries.get(msg_id)
        if e is None:
            return None
        n = e.fetches.get(peer, 0) + 1
        e.fetches[peer] = n
        return e.message, n

    def mark(self, msg_id: MsgId, peer: PeerId) -> None:
        """``peer`` has the message (a no-op for one not cached, or past the bound)."""
        e = self._entries.get(msg_id)
        if e is None or self._holders >= self._max_holders:
            return
        if e.holders is None:
            e.holders = set()
        elif peer in e.holders:
            return
        e.holders.add(peer)
        self._holders += 1

    def held_by(self, msg_id: MsgId, peer: PeerId) -> bool:
        e = self._entries.get(msg_id)
        return e is not None and e.holders is not None and peer in e.holders

    @property
    def holders(self) -> int:
        return self._holders

    def gossip_ids(self) -> dict[str, list[MsgId]]:
        """IDs in the newest ``mcache_gossip`` windows, by topic (for IHAVE)."""
        out: dict[str, list[MsgId]] = {}
        for i, window in enumerate(self._windows):
            if i >= self._gossip:
                break
            for msg_id, topic in window:
                out.setdefault(topic, []).append(msg_id)
        return out

    def shift(self) -> None:
        """Start a new window, dropping the oldest (run at the end of each heartbeat)."""
        for msg_id, _ in self._windows.pop():
            self._drop(msg_id)
        self._windows.appendleft(deque())

    def _drop(self, msg_id: MsgId) -> None:
        e = self._entries.pop(msg_id, None)
        if e is not None and e.holders:
            self._holders -= len(e.holders)

    def forget_peer(self, peer: PeerId) -> None:
        for e in self._entries.values():
            e.fetches.pop(peer, None)

    def forget_holder(self, peer: PeerId) -> None:
        """``peer`` went away; back, with an empty seen cache, it may need
        what it had. (Its fetch counts stay: reconnecting must not buy more
        IWANT answers than ``gossip_retransmission``.)"""
        if not self._holders:
            return
        for e in self._entries.values():
            if e.holders and peer in e.holders:
                e.holders.discard(peer)
                self._holders -= 1

    def _evict_oldest(self) -> None:
        for window in reversed(self._windows):
            if window:
                msg_id, _ = window.popleft()
                self._drop(msg_id)
                self.evicted += 1
                return
