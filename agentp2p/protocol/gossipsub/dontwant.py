"""IDONTWANT received from peers (gossipsub v1.2).

Why: a mesh peer that already has a large message tells us so, and we skip
it when forwarding (and when answering its IWANT) — the bandwidth saving v1.2
exists for. Entries live ``ttl`` heartbeats (the message is either forwarded
by then or never will be). Bounded twice: IDs taken from one peer per
heartbeat (``per_peer``) and entries over all peers (``total``); past either,
further IDONTWANTs are ignored, which is always safe — the spec makes
honouring IDONTWANT optional, the only cost is a duplicate.
"""

from __future__ import annotations

from .rpc import MsgId, PeerId


class DontWant:
    def __init__(self, ttl: int, per_peer: int, total: int) -> None:
        self._ttl = ttl
        self._per_peer = per_peer
        self._total_max = total
        self._tick = 0
        self._ids: dict[PeerId, dict[MsgId, int]] = {}  # peer -> id -> expiry tick
        self._taken: dict[PeerId, int] = {}  # IDs taken this heartbeat
        self._total = 0
        self.ignored = 0

    def __len__(self) -> int:
        return self._total

    def add(self, peer: PeerId, ids: tuple[MsgId, ...]) -> None:
        taken = self._taken.get(peer, 0)
        room = min(self._per_peer - taken, self._total_max - self._total)
        if room < len(ids):
            self.ignored += len(ids) - max(0, room)
            ids = ids[: max(0, room)]
        if not ids:
            return
        self._taken[peer] = taken + len(ids)
        mine = self._ids.setdefault(peer, {})
        expiry = self._tick + self._ttl
        for msg_id in ids:
            if msg_id not in mine:
                self._total += 1
            mine[msg_id] = expiry

    def unwanted(self, peer: PeerId, msg_id: MsgId) -> bool:
        mine = self._ids.get(peer)
        return mine is not None and msg_id in mine

    def forget(self, peer: PeerId) -> None:
        mine = self._ids.pop(peer, None)
        if mine:
            self._total -= len(mine)

    def heartbeat(self) -> None:
        """Age entries by one heartbeat and reset the per-heartbeat intake."""
        self._tick += 1
        self._taken.clear()
        for peer in list(self._ids):
            mine = self._ids[peer]
            for msg_id in [m for m, exp in mine.items() if exp <= self._tick]:
                del mine[msg_id]
                self._total -= 1
            if not mine:
                del self._ids[peer]
