"""What a GossipSimulation run measures, and the exact wire size of an RPC.

Kept apart from the event loop so the definitions can be read in one place:

* **delivery latency**: virtual time from the author's ``Publish`` to each
  *eligible* subscriber's ``Deliver`` (the author's own local delivery is
  not counted);
* **delivery ratio**: deliveries to eligible subscribers / (messages x
  eligible subscribers). Eligible = an honest subscriber that was up for the
  whole window ``[publish, publish + deadline]`` (so a churning node that was
  away, or a Sybil, is never counted either way). A delivery later than
  ``deadline`` counts as a miss;
* **duplicates per delivery**: copies of a message an honest node received
  after its first copy (the router's ``stats.duplicates``), divided by the
  messages it accepted from the network (``stats.delivered``);
* **bytes**: every RPC an honest node sends, sized as ``codec.encode_rpc``
  would encode it plus its varint length prefix (:func:`rpc_size`, checked
  against ``encode_rpc`` in the tests). *data* = the ``publish`` entries
  (full messages), *control* = the rest (subscriptions, IHAVE/IWANT,
  GRAFT/PRUNE, IDONTWANT, framing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentp2p.protocol.gossipsub.rpc import Message, Rpc

from .swim_metrics import percentile

__all__ = ["DeliveryLog", "percentile", "rpc_size", "message_size", "varint_len"]


def varint_len(n: int) -> int:
    """Bytes of ``n`` as a protobuf varint."""
    k = 1
    while n >= 0x80:
        n >>= 7
        k += 1
    return k


def _ld(n: int) -> int:
    """A length-delimited field with a one-byte tag and ``n`` payload bytes."""
    return 1 + varint_len(n) + n


def message_size(m: Message) -> int:
    """Encoded size of one ``Message`` (the body of a ``publish`` entry).

    ``data`` and ``topic`` are always written by the codec (even when
    empty); the optional fields only when present."""
    n = _ld(len(m.data)) + _ld(len(m.topic.encode()))
    if m.from_ is not None:
        n += _ld(len(m.from_))
    if m.seqno is not None:
        n += _ld(len(m.seqno))
    if m.signature is not None:
        n += _ld(len(m.signature))
    if m.key is not None:
        n += _ld(len(m.key))
    return n


def _ids_size(ids: tuple[bytes, ...]) -> int:
    return sum(_ld(len(i)) for i in ids)


class _MessageSizes:
    """``message_size`` memoised by object identity: the simulator hands the
    same immutable Message object from router to router, so each is sized
    once however often it is forwarded."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Message, int]] = {}

    def __call__(self, m: Message) -> int:
        hit = self._by_id.get(id(m))
        if hit is not None and hit[0] is m:
            return hit[1]
        n = _ld(message_size(m))
        self._by_id[id(m)] = (m, n)  # keeps m alive, so its id is not reused
        return n

    def clear(self) -> None:
        self._by_id.clear()


def rpc_size(rpc: Rpc, sizes: _MessageSizes | None = None) -> tuple[int, int]:
    """(total, data) bytes of ``rpc`` on the wire: ``len(encode_rpc(rpc))``
    plus the varint length prefix, and the part of it that is ``publish``
    entries. Pure arithmetic on protobuf's encoding rules (every field number
    here is < 16, so every tag is one byte)."""
    if sizes is None:
        data = sum(_ld(message_size(m)) for m in rpc.publish)
    else:
        data = sum(sizes(m) for m in rpc.publish)
    n = data
    for s in rpc.subscriptions:
        n += _ld(2 + _ld(len(s.topic.encode())))
    c = rpc.control
    if c:
        cn = 0
        for ih in c.ihave:
            cn += _ld(_ld(len(ih.topic.encode())) + _ids_size(ih.ids))
        for iw in c.iwant:
            cn += _ld(_ids_size(iw.ids))
        for g in c.graft:
            cn += _ld(_ld(len(g.topic.encode())))
        for p in c.prune:
            pn = _ld(len(p.topic.encode()))
            for info in p.peers:
                inner = _ld(len(info.peer_id))
                if info.signed_peer_record:
                    inner += _ld(len(info.signed_peer_record))
                pn += _ld(inner)
            if p.backoff is not None:
                pn += 1 + varint_len(p.backoff)
            cn += _ld(pn)
        for idw in c.idontwant:
            cn += _ld(_ids_size(idw.ids))
        n += _ld(cn)
    return n + varint_len(n), data


@dataclass
class DeliveryLog:
    """Per-message publish times and per-delivery latencies (counts, not logs
    of RPCs, so it stays small at 10,000 nodes)."""

    #: msg_id -> (publish time, author index, topic)
    published: dict[bytes, tuple[float, int, str]] = field(default_factory=dict)
    #: msg_id -> {node index: latency}
    delivered: dict[bytes, dict[int, float]] = field(default_factory=dict)

    def publish(self, msg_id: bytes, now: float, author: int, topic: str) -> None:
        self.published[msg_id] = (now, author, topic)
        self.delivered[msg_id] = {}

    def deliver(self, msg_id: bytes, node: int, now: float) -> None:
        got = self.delivered.get(msg_id)
        if got is None:
            return  # a forged or foreign message: not one we published
        pub = self.published[msg_id]
        if node == pub[1] or node in got:
            return
        got[node] = now - pub[0]
