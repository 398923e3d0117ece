"""What the router needs from peer scoring, and the stand-in when scoring is off.

Why a seam: scoring (score.py, :class:`PeerScore`) is its own concern and the
router must work without it. The router only calls the methods of
:class:`Scorer` and reads the five thresholds; with scoring disabled every
peer scores 0 and every threshold is 0, so no threshold ever bites (0 is not
below 0) and the router behaves as plain gossipsub v1.1 without scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .rpc import MsgId, PeerId


class Scorer(Protocol):
    def add_peer(self, peer: PeerId, now: float, ip: str | None = None) -> bool: ...
    def remove_peer(self, peer: PeerId, now: float) -> None: ...
    def graft(self, peer: PeerId, topic: str, now: float) -> None: ...
    def prune(self, peer: PeerId, topic: str, now: float) -> None: ...
    def validate_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float) -> None: ...
    def deliver_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float) -> None: ...
    def duplicate_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float) -> None: ...
    def reject_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float, reason: str) -> None: ...
    def add_penalty(self, peer: PeerId, count: int) -> None: ...
    def set_app_score(self, peer: PeerId, value: float) -> bool: ...
    def score(self, peer: PeerId, now: float) -> float: ...
    def refresh(self, now: float) -> None: ...
    def stats(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The router's copy of PeerScoreThresholds (all 0 when scoring is off)."""

    gossip: float = 0.0
    publish: float = 0.0
    graylist: float = 0.0
    accept_px: float = 0.0
    opportunistic_graft: float = 0.0

    @classmethod
    def of(cls, t: Any) -> Thresholds:
        """From a score_params.PeerScoreThresholds (or anything with its fields)."""
        return cls(t.gossip_threshold, t.publish_threshold, t.graylist_threshold,
                   t.accept_px_threshold, t.opportunistic_graft_threshold)


class NullScorer:
    """Scoring disabled: every peer scores 0, every event is ignored."""

    def add_peer(self, peer: PeerId, now: float, ip: str | None = None) -> bool:
        return True

    def remove_peer(self, peer: PeerId, now: float) -> None:
        pass

    def graft(self, peer: PeerId, topic: str, now: float) -> None:
        pass

    def prune(self, peer: PeerId, topic: str, now: float) -> None:
        pass

    def validate_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float) -> None:
        pass

    def deliver_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float) -> None:
        pass

    def duplicate_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float) -> None:
        pass

    def reject_message(self, peer: PeerId, msg_id: MsgId, topic: str, now: float, reason: str) -> None:
        pass

    def add_penalty(self, peer: PeerId, count: int) -> None:
        pass

    def set_app_score(self, peer: PeerId, value: float) -> bool:
        return False

    def score(self, peer: PeerId, now: float) -> float:
        return 0.0

    def refresh(self, now: float) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}
