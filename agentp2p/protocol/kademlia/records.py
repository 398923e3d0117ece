"""The value store: validated records with expiry, and per-peer quota hooks.

kad-dht/README.md "Entry validation": a record is checked with
``validate(key, value)`` before it is stored (PUT_VALUE) and when it comes
back in a GET_VALUE answer; ``select(key, values)`` picks the best of
several (e.g. the highest sequence number), both on a PUT over an existing
record and to settle a GET's answers. Validators are pure and the app's
business; :class:`NamespacedValidator` routes ``/ns/...`` keys to one per
namespace and refuses unknown namespaces (as go does), so nobody can store
arbitrary bytes in our DHT by inventing a key.

Who may make us hold how much is a policy, not a mechanism: the store asks
a :class:`Quota` before storing a peer's record and tells it when the record
goes (expiry, replacement), so the accounting cannot drift.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class InvalidRecord(ValueError):
    """Raised by a validator for a record it refuses."""


class Validator(Protocol):
    def validate(self, key: bytes, value: bytes) -> None:
        """Raise InvalidRecord unless ``value`` is acceptable under ``key``."""

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        """Index of the best of ``values`` (all valid); stable for equal inputs."""


class NamespacedValidator:
    """Routes ``/<ns>/<rest>`` keys to the validator of ``ns``."""

    def __init__(self, validators: Mapping[str, Validator]) -> None:
        self._by_ns = dict(validators)

    def _pick(self, key: bytes) -> Validator:
        parts = key.split(b"/", 2)
        if len(parts) < 3 or parts[0] != b"" or not parts[1]:
            raise InvalidRecord("key is not /namespace/...")
        v = self._by_ns.get(parts[1].decode("utf-8", "replace"))
        if v is None:
            raise InvalidRecord(f"no validator for namespace {parts[1]!r}")
        return v

    def validate(self, key: bytes, value: bytes) -> None:
        self._pick(key).validate(key, value)

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        return self._pick(key).select(key, values)


class Quota(Protocol):
    def admit(self, peer: bytes, size: int) -> bool:
        """May ``peer`` make us hold ``size`` more bytes? (Counted if True.)"""

    def release(self, peer: bytes, size: int) -> None:
        """``size`` bytes ``peer`` made us hold are gone."""


class PerPeerQuota:
    """A count and byte cap per peer — the simplest useful Quota."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._used: dict[bytes, list[int]] = {}

    def admit(self, peer: bytes, size: int) -> bool:
        u = self._used.setdefault(peer, [0, 0])
        if u[0] + 1 > self.max_items or u[1] + size > self.max_bytes:
            if u == [0, 0]:
                del self._used[peer]
            return False
        u[0] += 1
        u[1] += size
        return True

    def release(self, peer: bytes, size: int) -> None:
        u = self._used.get(peer)
        if u is None:
            return
        u[0] -= 1
        u[1] -= size
        if u[0] <= 0:
            del self._used[peer]

    def used(self, peer: bytes) -> tuple[int, int]:
        u = self._used.get(peer, [0, 0])
        return u[0], u[1]


class Put(enum.Enum):
    STORED = "stored"
    OUTDATED = "outdated"  # the record we hold is better (select kept it)
    INVALID = "invalid"
    FULL = "full"  # the store's node-wide cap
    QUOTA = "quota"  # the sender's quota


@dataclass(slots=True)
class StoredRecord:
    key: bytes
    value: bytes
    received: float
    expires: float
    from_peer: bytes | None  # None: put by us


class RecordStore:
    def __init__(self, validator: Validator, *, max_records: int, ttl: float, quota: Quota | None = None) -> None:
        self.validator, self.max_records, self.ttl, self.quota = validator, max_records, ttl, quota
        self._recs: dict[bytes, StoredRecord] = {}

    def __len__(self) -> int:
        return len(self._recs)

    def is_valid(self, key: bytes, value: bytes) -> bool:
        try:
            self.validator.validate(key, value)
        except Exception:  # a validator's bug must not take the node down: refuse the record
            return False
        return True

    def select(self, key: bytes, values: Sequence[bytes]) -> int:
        try:
            i = self.validator.select(key, values)
        except Exception:
            return 0
        return i if 0 <= i < len(values) else 0

    def get(self, key: bytes, now: float) -> StoredRecord | None:
        r = self._recs.get(key)
        if r is not None and r.expires <= now:
            self._forget(key)
            return None
        return r

    def put(self, key: bytes, value: bytes, now: float, from_peer: bytes | None) -> Put:
        if not self.is_valid(key, value):
            return Put.INVALID
        old = self.get(key, now)
        if old is not None and old.value != value and self.select(key, [old.value, value]) == 0:
            return Put.OUTDATED
        if old is None and len(self._recs) >= self.max_records:
            return Put.FULL
        if old is not None:
            self._forget(key)  # first: a peer at its quota may still replace its own record
        if from_peer is not None and self.quota is not None and not self.quota.admit(from_peer, len(key) + len(value)):
            if old is not None:  # put the old one back, with its owner's share
                self._recs[key] = old
                if old.from_peer is not None:
                    self.quota.admit(old.from_peer, len(old.key) + len(old.value))
            return Put.QUOTA
        self._recs[key] = StoredRecord(key, value, now, now + self.ttl, from_peer)
        return Put.STORED

    def expire(self, now: float) -> int:
        gone = [k for k, r in self._recs.items() if r.expires <= now]
        for k in gone:
            self._forget(k)
        return len(gone)

    def _forget(self, key: bytes) -> None:
        r = self._recs.pop(key)
        if r.from_peer is not None and self.quota is not None:
            self.quota.release(r.from_peer, len(r.key) + len(r.value))
