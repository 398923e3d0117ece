"""Why an incoming message was refused, and how often.

Every check on an incoming message (signature, sender binding, sealing,
replay) reports a failure as :class:`MessageRejected` carrying one
:class:`RejectReason`, so the node can count attacks and faults by kind
(``tampered`` vs ``forged`` vs ``replayed``...) instead of logging strings.
"""

from __future__ import annotations

import enum
from collections import Counter


class RejectReason(enum.StrEnum):
    #: Not well formed: missing/oversized fields, unparseable peer ID or sealed payload.
    MALFORMED = "malformed"
    #: Claims a sender it cannot prove: ``from`` is not the authenticated stream
    #: peer, or carries no usable Ed25519 key, or the message is not addressed to us.
    FORGED = "forged"
    #: The signature or the AEAD tag does not match the content.
    TAMPERED = "tampered"
    #: The same (sender, id) was already accepted.
    REPLAYED = "replayed"
    #: Timestamp outside the accepted window (too old to prove fresh, or in the future).
    STALE = "stale"


class MessageRejected(Exception):
    """An incoming message failed a check; ``reason`` says which kind."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class RejectCounters:
    """Counts of rejected messages by reason (exported as metrics by the node)."""

    def __init__(self) -> None:
        self._counts: Counter[RejectReason] = Counter()

    def add(self, reason: RejectReason) -> None:
        self._counts[reason] += 1

    def __getitem__(self, reason: RejectReason) -> int:
        return self._counts[reason]

    def total(self) -> int:
        return self._counts.total()

    def snapshot(self) -> dict[str, int]:
        """All reasons, zeros included, keyed by their string value."""
        return {r.value: self._counts[r] for r in RejectReason}
