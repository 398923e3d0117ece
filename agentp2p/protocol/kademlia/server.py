"""Answers to inbound requests (server mode): one pure function per type.

kad-dht/README.md "RPC messages": FIND_NODE, GET_VALUE and GET_PROVIDERS
answer with the k closest peers we know (never the requester: it knows
itself), plus the record or the providers we hold; PUT_VALUE stores a
validated record and echoes the request (as go does — that echo is the
acknowledgement); ADD_PROVIDER stores only the provider entries that *are*
the sender (nobody may announce someone else) and has no answer; PING is
echoed.

Each returns (answer, refusal): exactly one is set, except ADD_PROVIDER
whose success is (None, None). A refusal closes the stream (go resets it).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from .codec import ConnectionType, Message, MessageType, Peer, Record
from .config import KademliaConfig
from .keys import kad_key
from .providers import ProviderStore
from .records import Put, RecordStore
from .routing_table import RoutingTable

Answer = tuple[Message | None, str | None]


@dataclass(slots=True)
class Served:
    """The stores a server answers from (the core owns them)."""

    cfg: KademliaConfig
    table: RoutingTable
    records: RecordStore
    providers: ProviderStore
    connected: Container[bytes]


#: Extra table entries looked at so that k with addresses are left after
#: those without are skipped.
_ADDRLESS_SLACK = 8


def closer_peers(s: Served, key: bytes, requester: bytes) -> tuple[Peer, ...]:
    """The k closest peers we know that have addresses. A peer without any
    (connected before identify told us where it listens) is useless to the
    asker and worse for a go-libp2p asker: its FindPeer returns the target
    with an empty address list as "found" (seen in the mixed interop test);
    go-libp2p-kad-dht's own handler skips such peers too."""
    k = s.cfg.k
    target = kad_key(key)
    entries = s.table.closest(target, k, exclude=(requester,))
    if not all(e.addrs for e in entries):  # rare: look further for k with addresses
        entries = s.table.closest(target, k + _ADDRLESS_SLACK, exclude=(requester,))
    out: list[Peer] = []
    connected = s.connected
    for e in entries:
        if not e.addrs:
            continue
        wire = e.wire
        if wire is None:  # built once per entry, not on every request served
            wire = e.wire = (Peer(e.peer, e.addrs, ConnectionType.NOT_CONNECTED),
                             Peer(e.peer, e.addrs, ConnectionType.CONNECTED))
        out.append(wire[e.peer in connected])
        if len(out) == k:
            break
    return tuple(out)


def answer(s: Served, peer: bytes, req: Message, now: float) -> Answer:
    t = req.type
    if t is MessageType.PING:
        return Message(MessageType.PING), None
    if not req.key:
        return None, "empty key"
    if t is MessageType.FIND_NODE:
        return Message(t, key=req.key, closer_peers=closer_peers(s, req.key, peer)), None
    if t is MessageType.GET_VALUE:
        rec = s.records.get(req.key, now)
        record = None if rec is None else Record(rec.key, rec.value)
        return Message(t, key=req.key, record=record, closer_peers=closer_peers(s, req.key, peer)), None
    if t is MessageType.PUT_VALUE:
        return _put_value(s, peer, req, now)
    if t is MessageType.GET_PROVIDERS:
        provs = tuple(Peer(r.peer, r.addrs) for r in s.providers.get(req.key, now, s.cfg.max_providers_returned))
        return Message(t, key=req.key, provider_peers=provs, closer_peers=closer_peers(s, req.key, peer)), None
    if t is MessageType.ADD_PROVIDER:
        mine = [p for p in req.provider_peers if p.id == peer]
        if not mine:
            return None, "no provider entry for the sender"
        for p in mine[:1]:
            if not s.providers.add(req.key, peer, p.addrs[: s.cfg.max_addrs], now):
                return None, "provider store refused"
        return None, None
    return None, f"unsupported type {t!r}"  # pragma: no cover - MessageType is closed


def _put_value(s: Served, peer: bytes, req: Message, now: float) -> Answer:
    r = req.record
    if r is None or r.key != req.key:
        return None, "record missing or for another key"
    outcome = s.records.put(req.key, r.value, now, peer)
    if outcome is not Put.STORED:
        return None, f"record {outcome.value}"
    return req, None
