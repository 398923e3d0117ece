"""Choosing and ordering agents for ``find_agents`` (pure functions).

Input: candidate records (already verified — from the cache, the DHT, the
record protocol), a query, and what the caller knows about each peer's
liveness (SWIM state, or the outcome of a ping) and optionally its RTT.

Filter, in order: drop expired records; keep one record per peer (the newest
by seq/expiry); keep records with a capability named exactly ``capability``
(or any capability, if None) that carries *every* requested tag (tags compare
case-insensitively); drop peers whose liveness is DEAD.

Rank (best first):
0. trust: agents whose peer the node distrusts (``distrusted``: its trust
   score is below the deprioritising threshold) come after all others;
1. liveness: ALIVE, then UNKNOWN (no information yet), then SUSPECT — a
   SWIM suspect is more likely dead than a peer nobody has judged;
2. RTT, lower first; peers with no measurement after measured ones;
3. freshness: later ``issued_at_ms`` first (a recently re-signed record is
   more likely to describe a running agent);
4. peer ID bytes, ascending — a deterministic tiebreak, so equal candidates
   come back in the same order on every node and every run.
``seq`` is not compared across peers: each publisher counts its own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from libp2p.peer.id import ID

from .model import AgentRecord, Capability

__all__ = ["Liveness", "RankedAgent", "rank_agents"]


class Liveness(enum.IntEnum):
    """Larger is better; DEAD is filtered out."""

    DEAD = 0
    SUSPECT = 1
    UNKNOWN = 2
    ALIVE = 3


@dataclass(frozen=True)
class RankedAgent:
    record: AgentRecord
    capability: Capability  # the (first) capability that matched the query
    liveness: Liveness
    rtt_ms: float | None


def _matching_capability(
    record: AgentRecord, capability: str | None, tags: frozenset[str]
) -> Capability | None:
    candidates = record.capabilities if capability is None else [
        c for c in record.capabilities if c.name == capability
    ]
    for cap in candidates:
        if tags <= {t.casefold() for t in cap.tags}:
            return cap
    return None


def rank_agents(
    records: Iterable[AgentRecord],
    *,
    capability: str | None,
    now_ms: int,
    liveness: Callable[[ID], Liveness],
    tags: Iterable[str] = (),
    rtt_ms: Callable[[ID], float | None] | None = None,
    limit: int | None = None,
    distrusted: Callable[[ID], bool] | None = None,
) -> list[RankedAgent]:
    """Filter and order candidates as described in the module docstring."""
    wanted = frozenset(t.casefold() for t in tags)
    newest: dict[ID, AgentRecord] = {}
    for record in records:
        if record.is_expired(now_ms):
            continue
        held = newest.get(record.peer_id)
        if held is None or record.newer_than(held):
            newest[record.peer_id] = record

    ranked: list[RankedAgent] = []
    for record in newest.values():
        cap = _matching_capability(record, capability, wanted)
        if cap is None:
            continue
        state = liveness(record.peer_id)
        if state is Liveness.DEAD:
            continue
        ranked.append(RankedAgent(record, cap, state, rtt_ms(record.peer_id) if rtt_ms else None))

    low = {a.record.peer_id for a in ranked if distrusted(a.record.peer_id)} if distrusted else set()
    ranked.sort(key=lambda a: (
        a.record.peer_id in low,  # trust below the deprioritising threshold: last, whatever else
        -int(a.liveness),
        a.rtt_ms is None,
        a.rtt_ms if a.rtt_ms is not None else 0.0,
        -a.record.issued_at_ms,
        a.record.peer_id.to_bytes(),
    ))
    return ranked if limit is None else ranked[:max(limit, 0)]
