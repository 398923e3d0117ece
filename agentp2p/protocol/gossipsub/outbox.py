"""Coalescing of everything one handle() call sends, into size-bounded RPCs.

Why: the spec lets control messages piggyback on any RPC (gossipsub-v1.0.md
"Control Message Piggybacking"): a heartbeat's GRAFT, PRUNE and IHAVE to one
peer, or an IWANT and its IWANT-answers, go out as one RPC instead of
several. But a receiver drops an RPC over its size limit (1 MiB for go and
for us), so messages are packed greedily and split across RPCs by an upper
estimate of their encoded size. Floodsub peers get no control at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from .rpc import Control, Graft, IDontWant, IHave, IWant, Message, MsgId, PeerId, Prune, Rpc, SubOpts

#: Protobuf framing per field is at most a tag byte plus a 5-byte length for our sizes.
_FIELD = 6


def message_size(m: Message) -> int:
    """Upper bound of ``m``'s encoded size inside an RPC."""
    n = len(m.data) + len(m.topic.encode()) + 7 * _FIELD
    for f in (m.from_, m.seqno, m.signature, m.key):
        if f is not None:
            n += len(f)
    return n


def _topic_size(topic: str) -> int:
    return len(topic.encode()) + 2 * _FIELD


def _sub_size(sub: SubOpts) -> int:
    return _topic_size(sub.topic) + 2


def _prune_size(p: Prune) -> int:
    return _topic_size(p.topic) + 12 + sum(len(i.peer_id) + len(i.signed_peer_record) + 3 * _FIELD for i in p.peers)


def _ihave_size(h: IHave) -> int:
    return _topic_size(h.topic) + sum(len(i) + _FIELD for i in h.ids)


def _id_size(i: MsgId) -> int:
    return len(i) + 2 * _FIELD


class _PeerOut:
    __slots__ = ("subs", "msgs", "ihave", "iwant", "graft", "prune", "idontwant")

    def __init__(self) -> None:
        self.subs: list[SubOpts] = []
        self.msgs: list[Message] = []
        self.ihave: list[IHave] = []
        self.iwant: list[MsgId] = []
        self.graft: list[Graft] = []
        self.prune: list[Prune] = []
        self.idontwant: list[MsgId] = []

    def size(self, control: bool) -> int:
        """Upper bound of everything queued, as one RPC."""
        n = sum(_sub_size(s) for s in self.subs) + sum(message_size(m) for m in self.msgs)
        if control:
            n += (sum(_topic_size(g.topic) for g in self.graft) + sum(_prune_size(p) for p in self.prune)
                  + sum(_ihave_size(h) for h in self.ihave) + sum(_id_size(i) for i in self.iwant)
                  + sum(_id_size(i) for i in self.idontwant))
        return n

    def whole(self, control: bool) -> Rpc:
        """Everything queued as one RPC (the caller checked :meth:`size`)."""
        if not control:
            return _rpc(self.subs, self.msgs, (), (), (), (), ())
        return _rpc(self.subs, self.msgs, self.ihave, self.iwant, self.graft, self.prune, self.idontwant)

    def parts(self, control: bool) -> list[tuple[int, object, int]]:
        """(kind, item, size upper bound) in sending order: control first, so a
        split leaves mesh changes in the first RPC and messages after."""
        parts: list[tuple[int, object, int]] = [(_SUB, s, _sub_size(s)) for s in self.subs]
        if control:
            parts += [(_GRAFT, g, _topic_size(g.topic)) for g in self.graft]
            parts += [(_PRUNE, p, _prune_size(p)) for p in self.prune]
            parts += [(_IHAVE, h, _ihave_size(h)) for h in self.ihave]
            parts += [(_IWANT, i, _id_size(i)) for i in self.iwant]
            parts += [(_IDONTWANT, i, _id_size(i)) for i in self.idontwant]
        parts += [(_MSG, m, message_size(m)) for m in self.msgs]
        return parts


_SUB, _GRAFT, _PRUNE, _IHAVE, _IWANT, _IDONTWANT, _MSG = range(7)
_NO_CONTROL = Control()


def _rpc(subs: Sequence[SubOpts], msgs: Sequence[Message], ihave: Sequence[IHave], iwant: Sequence[MsgId],
         graft: Sequence[Graft], prune: Sequence[Prune], idontwant: Sequence[MsgId]) -> Rpc:
    """One RPC of these items (IWANT and IDONTWANT ids each in one entry)."""
    if not (ihave or iwant or graft or prune or idontwant):
        return Rpc(tuple(subs), tuple(msgs), _NO_CONTROL)
    ctl = Control(
        ihave=tuple(ihave),
        iwant=(IWant(tuple(iwant)),) if iwant else (),
        graft=tuple(graft),
        prune=tuple(prune),
        idontwant=(IDontWant(tuple(idontwant)),) if idontwant else (),
    )
    return Rpc(tuple(subs), tuple(msgs), ctl)


def _build(batch: list[tuple[int, object, int]]) -> Rpc:
    by: dict[int, list] = {k: [] for k in range(7)}
    for kind, item, _ in batch:
        by[kind].append(item)
    return _rpc(by[_SUB], by[_MSG], by[_IHAVE], by[_IWANT], by[_GRAFT], by[_PRUNE], by[_IDONTWANT])


class Outbox:
    def __init__(self, max_rpc_bytes: int) -> None:
        # Headroom for the RPC's own framing of the repeated fields.
        self._max = max_rpc_bytes - 64
        self._peers: dict[PeerId, _PeerOut] = {}

    def to(self, peer: PeerId) -> _PeerOut:
        out = self._peers.get(peer)
        if out is None:
            out = self._peers[peer] = _PeerOut()
        return out

    def addressed(self) -> list[PeerId]:
        return list(self._peers)

    def drop(self, peer: PeerId) -> None:
        self._peers.pop(peer, None)

    def flush(self, control_ok: dict[PeerId, bool]) -> list[tuple[PeerId, Rpc]]:
        """Every peer's RPCs, in the order peers were first addressed.
        ``control_ok[peer]`` False strips control (floodsub peers)."""
        out: list[tuple[PeerId, Rpc]] = []
        for peer, po in self._peers.items():
            control = control_ok.get(peer, False)
            if po.size(control) <= self._max:  # the common case: one RPC, no split
                rpc = po.whole(control)
                if rpc:  # nothing left (an IWANT not answered, a floodsub peer's control): nothing sent
                    out.append((peer, rpc))
                continue
            batch: list[tuple[int, object, int]] = []
            size = 0
            for part in po.parts(control):
                if batch and size + part[2] > self._max:
                    out.append((peer, _build(batch)))
                    batch, size = [], 0
                batch.append(part)
                size += part[2]
            if batch:
                out.append((peer, _build(batch)))
        self._peers.clear()
        return out
