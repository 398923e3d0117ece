"""A local cache of verified agent records, with expiry (sans-IO).

Theory of operation: the cache holds at most one record per peer — the
newest by the same order the DHT validator uses (higher ``seq``, then later
expiry) — together with the exact envelope bytes it came in, so the node can
serve or forward it without re-signing. Callers put only records that
``signed.open`` has verified. Every operation takes ``now_ms``; nothing reads
a clock. An entry lapses at the earlier of the record's own expiry and
``received + ttl_ms`` (the cache TTL bounds how long we trust a record
without asking the network again). Lapsed entries are dropped lazily on
access and eagerly by :meth:`evict_expired`, which a node calls from a timer
armed with :meth:`next_expiry_ms`. When full, the entry that lapses soonest
makes room (ties: lowest peer ID bytes) — deterministic, and it is the least
valuable one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from libp2p.peer.id import ID

from .model import AgentRecord

__all__ = ["CachedRecord", "RecordCache"]


@dataclass(frozen=True)
class CachedRecord:
    record: AgentRecord
    envelope: bytes
    received_at_ms: int
    lapses_at_ms: int


class RecordCache:
    def __init__(self, *, max_entries: int = 4096, ttl_ms: int | None = None) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        self._max = max_entries
        self._ttl_ms = ttl_ms
        self._entries: dict[ID, CachedRecord] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, record: AgentRecord, envelope: bytes, now_ms: int) -> bool:
        """Store ``record`` unless it is lapsed or not newer than what we hold.

        Returns True if the cache changed (callers use this to decide
        whether to re-announce: a record we already had is not news).
        """
        lapses = record.expires_at_ms
        if self._ttl_ms is not None:
            lapses = min(lapses, now_ms + self._ttl_ms)
        if now_ms >= lapses:
            return False
        current = self.get(record.peer_id, now_ms)
        if current is not None and not record.newer_than(current.record):
            return False
        if current is None and len(self._entries) >= self._max:
            self.evict_expired(now_ms)
            if len(self._entries) >= self._max:
                victim = min(self._entries.values(),
                             key=lambda e: (e.lapses_at_ms, e.record.peer_id.to_bytes()))
                if victim.lapses_at_ms < lapses:
                    del self._entries[victim.record.peer_id]
                else:
                    return False  # the newcomer would be the first to go
        self._entries[record.peer_id] = CachedRecord(record, bytes(envelope), now_ms, lapses)
        return True

    def get(self, peer_id: ID, now_ms: int) -> CachedRecord | None:
        entry = self._entries.get(peer_id)
        if entry is not None and now_ms >= entry.lapses_at_ms:
            del self._entries[peer_id]
            return None
        return entry

    def remove(self, peer_id: ID) -> None:
        self._entries.pop(peer_id, None)

    def entries(self, now_ms: int) -> Iterator[CachedRecord]:
        """All live entries (snapshot; safe to mutate the cache meanwhile)."""
        self.evict_expired(now_ms)
        return iter(list(self._entries.values()))

    def with_capability(self, name: str, now_ms: int) -> list[AgentRecord]:
        return [e.record for e in self.entries(now_ms) if e.record.capability(name) is not None]

    def evict_expired(self, now_ms: int) -> int:
        lapsed = [p for p, e in self._entries.items() if now_ms >= e.lapses_at_ms]
        for p in lapsed:
            del self._entries[p]
        return len(lapsed)

    def next_expiry_ms(self) -> int | None:
        """When the next entry lapses (arm a timer for evict_expired)."""
        return min((e.lapses_at_ms for e in self._entries.values()), default=None)
