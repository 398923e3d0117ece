"""Provider records (who has the content for a key), and the keys we provide.

kad-dht/README.md "Content routing": a node that provides a key announces
itself (ADD_PROVIDER) to the peers closest to the key; they keep the record
for ``ttl`` (48 h, as go does; the spec says 24 h) and hand it out in
GET_PROVIDERS answers. The provider re-announces every ``republish``
interval (22 h) so records never lapse while it still provides.

Bounded: at most ``max_keys`` keys and ``max_per_key`` providers per key. A
full key refuses newcomers rather than evicting (evicting would let a Sybil
swarm flush the honest providers; refusing lets honest records age out only
by their own expiry). A provider re-announcing refreshes its slot.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from .records import Quota


@dataclass(slots=True)
class ProviderRecord:
    peer: bytes
    addrs: tuple[bytes, ...]
    expires: float


class ProviderStore:
    def __init__(self, *, ttl: float, max_keys: int, max_per_key: int, quota: Quota | None = None) -> None:
        self.ttl, self.max_keys, self.max_per_key, self.quota = ttl, max_keys, max_per_key, quota
        self._by_key: dict[bytes, OrderedDict[bytes, ProviderRecord]] = {}

    def key_count(self) -> int:
        return len(self._by_key)

    def record_count(self) -> int:
        return sum(len(v) for v in self._by_key.values())

    def add(self, key: bytes, peer: bytes, addrs: tuple[bytes, ...], now: float, *, local: bool = False) -> bool:
        """Store (or refresh) ``peer`` as a provider of ``key``. ``local``: our
        own record, exempt from the quota. False when a bound refused it."""
        provs = self._by_key.get(key)
        if provs is not None and peer in provs:
            rec = provs[peer]
            rec.expires = now + self.ttl
            if addrs:
                rec.addrs = addrs
            provs.move_to_end(peer)
            return True
        if provs is None and len(self._by_key) >= self.max_keys:
            return False
        if provs is not None and len(provs) >= self.max_per_key:
            self._expire_key(key, now)
            provs = self._by_key.get(key)
            if provs is not None and len(provs) >= self.max_per_key:
                return False
        if not local and self.quota is not None and not self.quota.admit(peer, 1):
            return False
        self._by_key.setdefault(key, OrderedDict())[peer] = ProviderRecord(peer, addrs, now + self.ttl)
        return True

    def get(self, key: bytes, now: float, n: int) -> list[ProviderRecord]:
        """Up to ``n`` live providers, most recently announced first."""
        self._expire_key(key, now)
        provs = self._by_key.get(key)
        return [] if provs is None else list(reversed(provs.values()))[:n]

    def expire(self, now: float) -> int:
        before = self.record_count()
        for key in list(self._by_key):
            self._expire_key(key, now)
        return before - self.record_count()

    def _expire_key(self, key: bytes, now: float) -> None:
        provs = self._by_key.get(key)
        if provs is None:
            return
        for peer in [p for p, r in provs.items() if r.expires <= now]:
            del provs[peer]
            if self.quota is not None:
                self.quota.release(peer, 1)
        if not provs:
            del self._by_key[key]


class LocalProvides:
    """The keys we provide, and when each is next due for republishing."""

    def __init__(self, *, republish: float, max_keys: int) -> None:
        self.republish, self.max_keys = republish, max_keys
        self._due: dict[bytes, float] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: bytes, now: float) -> bool:
        if key not in self._due and len(self._due) >= self.max_keys:
            return False
        self._due[key] = now + self.republish
        return True

    def remove(self, key: bytes) -> None:
        self._due.pop(key, None)

    def due(self, now: float) -> list[bytes]:
        """Keys whose republish is due (each is rescheduled: call add() again
        when the republish actually ran, or it is retried next interval)."""
        keys = [k for k, t in self._due.items() if t <= now]
        for k in keys:
            self._due[k] = now + self.republish
        return keys

    def next_due(self) -> float | None:
        return min(self._due.values(), default=None)
