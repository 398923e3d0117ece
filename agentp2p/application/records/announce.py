"""The announcement topic: new and updated records, pushed to whoever listens.

The DHT is where records *live*; the topic is how news of them spreads fast.
In a small network gossipsub reaches every subscriber in one or two hops,
so an update shows up in every cache well before anyone would look it up.

Rule (decided here, enforced by the topic validator on every hop): **an agent
announces only its own record.** A message is accepted and forwarded only if

1. its data is an envelope that ``signed.open`` accepts (signature, field
   rules, not expired, not from the future), and
2. the record's peer ID is the message's sender (gossipsub strict signing
   makes the sender authentic), and
3. it is newer (seq, then expiry) than the record we already hold for that
   peer — a replay of an older record, or a repeat of the one we have, is
   not news and goes no further.

Why not "any valid record": relaying third-party records would let one
peer replay every record it ever saw into the topic, costing every
subscriber a signature check per record, with no way to tell the author of
the flood from its victims. Rule 2 ties each announcement to the one peer
who can stop sending it. Third parties' records reach us via the DHT and the
record protocol instead.
"""

from __future__ import annotations

from libp2p.peer.id import ID

from . import signed
from .errors import InvalidRecord, Reason
from .model import AgentRecord

__all__ = ["ANNOUNCE_TOPIC", "check_announcement"]

ANNOUNCE_TOPIC = "/agentp2p/records/1.0.0"


def check_announcement(
    data: bytes, sender: ID, *, now_ms: int, held: AgentRecord | None
) -> AgentRecord:
    """The record in an announcement, if the rules above accept it.

    ``held`` is the newest record we already have for ``sender`` (or None).
    Raises :class:`InvalidRecord`; ``Reason.STALE`` for "not newer".
    """
    record = signed.open(data, now_ms=now_ms, expected_peer_id=sender)
    if held is not None and not record.newer_than(held):
        raise InvalidRecord(
            Reason.STALE, f"seq {record.seq} is not newer than held seq {held.seq} for {sender}"
        )
    return record
