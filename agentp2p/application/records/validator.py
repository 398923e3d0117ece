"""DHT validator for agent records (namespace ``agentrec``).

py-libp2p's Kademlia calls ``validate(key, value)`` before storing a value
(locally, or when a peer sends PUT_VALUE) and after fetching one, and
``select(key, values)`` to choose among competing values — including
``[existing, incoming]`` on every PUT, where index 0 keeps the existing one.

* ``validate`` = ``signed.open`` with the peer ID taken from the key, so a
  record can only be stored under its own publisher's key, only while
  current, and only if genuinely signed by that publisher.
* ``select`` = the highest ``seq`` among *valid* values, ties broken by later
  expiry, then by position (earliest wins, so an equal incoming record does
  not churn the store). An invalid value (forged, expired by now, malformed)
  is never selected; hence a replayed older record or an expired one never
  replaces a newer current one, and a stored record that has expired loses
  to any valid incoming one. If no value is valid, select raises.

The DHT gives us no clock, so the validator takes one (``clock_ms``); tests
pass a fixed one. Errors are py-libp2p's ``InvalidRecordType`` (what its own
``pk``/``ipns`` validators raise), chained from our ``InvalidRecord``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from libp2p.records.utils import InvalidRecordType
from libp2p.records.validator import Validator

from . import signed
from .errors import InvalidRecord
from .keys import NAMESPACE, record_key_matches
from .model import AgentRecord

__all__ = ["AgentRecordValidator", "wall_clock_ms"]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class AgentRecordValidator(Validator):
    """Register with ``KadDHT.register_validator("agentrec", AgentRecordValidator())``
    (or in the ``NamespacedValidator`` mapping under :data:`NAMESPACE`)."""

    namespace = NAMESPACE

    def __init__(self, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self._clock_ms = clock_ms

    def open(self, key: str, value: bytes) -> AgentRecord:
        """Verify ``value`` as the record stored under ``key``; raises InvalidRecord."""
        record = signed.open(value, now_ms=self._clock_ms())
        record_key_matches(key, record.peer_id)
        return record

    def validate(self, key: str, value: bytes) -> None:
        try:
            self.open(key, value)
        except InvalidRecord as exc:
            raise InvalidRecordType(f"agent record rejected: {exc}") from exc

    def select(self, key: str, values: list[bytes]) -> int:
        best_index = -1
        best: AgentRecord | None = None
        for i, value in enumerate(values):
            try:
                record = self.open(key, value)
            except InvalidRecord:
                continue
            if best is None or record.newer_than(best):
                best_index, best = i, record
        if best is None:
            raise InvalidRecordType(f"no valid agent record among {len(values)} for {key}")
        return best_index
