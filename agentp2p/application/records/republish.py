"""When to re-publish our own record.

A record is re-signed (with a higher ``seq`` and a fresh expiry) and
re-published once less than a third of its lifetime remains. A third leaves
room for two more attempts at the same cadence if a publish round fails,
before readers would see the record expire (the same reasoning as IPNS and
go-libp2p's provider re-announce running well ahead of expiry).
"""

from __future__ import annotations

from .model import AgentRecord

__all__ = ["repub_at_ms", "repub_due"]


def repub_at_ms(record: AgentRecord) -> int:
    """The time at which :func:`repub_due` becomes true for ``record``."""
    return record.expires_at_ms - record.lifetime_ms // 3


def repub_due(record: AgentRecord, now_ms: int) -> bool:
    """True once less than 1/3 of the record's lifetime remains."""
    return now_ms >= repub_at_ms(record)
