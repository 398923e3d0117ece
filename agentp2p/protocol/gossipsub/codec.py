"""Bounded RPC encode/decode, the default message ID, and the signed bytes.

decode_rpc() returns a fully checked :class:`Rpc` or raises :class:`CodecError`
— one exception type, whatever the input — so a hostile peer can make us drop
its RPC and count it, never crash. The size cap is checked *before* parsing
(parsing is where the memory goes) and the count caps right after, so a peer
cannot make the core iterate over a million IHAVE IDs.

Signatures are not checked here: the core asks the adapter to verify
(VerifySignature action) with the bytes from :func:`signing_payload`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from google.protobuf.message import DecodeError

from agentp2p.pb import gossipsub_rpc_pb2 as pb

from .rpc import Control, Graft, IDontWant, IHave, IWant, Message, MsgId, PeerInfo, Prune, Rpc, SubOpts

#: Prefix of the signed bytes (libp2p/specs pubsub/README.md "Message Signing").
SIGNING_PREFIX: Final = b"libp2p-pubsub:"


class CodecError(ValueError):
    """An RPC that is undecodable, oversized, or breaks one of :class:`Limits`."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-RPC bounds. Generous enough for any honest go/rust/js peer (their own
    per-RPC output is bounded by max_ihave_length = 5000 IDs and prune_peers = 16),
    small enough that one RPC cannot pin the CPU or memory."""

    max_rpc_bytes: int = 1 << 20
    max_subscriptions: int = 1000
    max_messages: int = 1000
    max_ihave_topics: int = 1000
    max_ihave_ids: int = 5000  # summed over the RPC's IHAVEs
    max_iwant_ids: int = 5000  # summed over the RPC's IWANTs
    max_grafts: int = 1000
    max_prunes: int = 1000
    max_prune_peers: int = 64  # per PRUNE
    max_idontwant_ids: int = 5000  # summed over the RPC's IDONTWANTs
    max_topic_bytes: int = 1024
    max_msg_id_bytes: int = 1024
    max_peer_id_bytes: int = 128
    max_seqno_bytes: int = 64
    max_signature_bytes: int = 1024
    max_key_bytes: int = 2048
    max_peer_record_bytes: int = 4096


DEFAULT_LIMITS: Final = Limits()


# ---------------------------------------------------------------- helpers


def default_msg_id(msg: Message) -> MsgId:
    """from + seqno, byte concatenation: go-libp2p-pubsub's DefaultMsgIdFn, so
    our IHAVE/IWANT IDs mean the same thing to go peers on the same topic."""
    return (msg.from_ or b"") + (msg.seqno or b"")


def _message_pb(msg: Message, *, signed: bool = True) -> pb.Message:
    m = pb.Message(topic=msg.topic, data=msg.data)
    if msg.from_ is not None:
        setattr(m, "from", msg.from_)
    if msg.seqno is not None:
        m.seqno = msg.seqno
    if signed and msg.signature is not None:
        m.signature = msg.signature
    if signed and msg.key is not None:
        m.key = msg.key
    return m


def signing_payload(msg: Message) -> bytes:
    """What the author signs: the prefix + the message marshalled without its
    ``signature`` and ``key`` fields (fields in tag order, as go marshals)."""
    return SIGNING_PREFIX + _message_pb(msg, signed=False).SerializeToString()


def encode_message(msg: Message) -> bytes:
    return _message_pb(msg).SerializeToString()


def seqno_bytes(n: int) -> bytes:
    """The spec's seqno: a 64-bit big-endian unsigned integer."""
    return (n & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


# ---------------------------------------------------------------- encode


def encode_rpc(rpc: Rpc) -> bytes:
    out = pb.RPC()
    for s in rpc.subscriptions:
        out.subscriptions.add(subscribe=s.subscribe, topicid=s.topic)
    for m in rpc.publish:
        out.publish.append(_message_pb(m))
    c = rpc.control
    if c:
        ctl = out.control
        for ih in c.ihave:
            ctl.ihave.add(topicID=ih.topic, messageIDs=ih.ids)
        for iw in c.iwant:
            ctl.iwant.add(messageIDs=iw.ids)
        for g in c.graft:
            ctl.graft.add(topicID=g.topic)
        for p in c.prune:
            pr = ctl.prune.add(topicID=p.topic)
            for info in p.peers:
                pi = pr.peers.add(peerID=info.peer_id)
                if info.signed_peer_record:
                    pi.signedPeerRecord = info.signed_peer_record
            if p.backoff is not None:
                pr.backoff = p.backoff
        for idw in c.idontwant:
            ctl.idontwant.add(messageIDs=idw.ids)
    return out.SerializeToString()


# ---------------------------------------------------------------- decode


def _topic(raw: object, lim: Limits) -> str:
    # Invalid UTF-8 in a proto2 string comes back as bytes from upb.
    if not isinstance(raw, str):
        raise CodecError("topic is not valid UTF-8")
    if len(raw.encode()) > lim.max_topic_bytes:
        raise CodecError("topic too long")
    return raw


def _bounded(raw: bytes, cap: int, what: str) -> bytes:
    if len(raw) > cap:
        raise CodecError(f"{what} of {len(raw)} bytes exceeds {cap}")
    return bytes(raw)


def _ids(raw: object, lim: Limits) -> tuple[MsgId, ...]:
    return tuple(_bounded(i, lim.max_msg_id_bytes, "message id") for i in raw)  # type: ignore[attr-defined]


def _opt(m: pb.Message, name: str, cap: int) -> bytes | None:
    return _bounded(getattr(m, name), cap, name) if m.HasField(name) else None


def _message(m: pb.Message, lim: Limits) -> Message:
    if not m.HasField("topic"):
        raise CodecError("message without topic")
    return Message(
        topic=_topic(m.topic, lim),
        data=bytes(m.data),
        from_=_opt(m, "from", lim.max_peer_id_bytes),
        seqno=_opt(m, "seqno", lim.max_seqno_bytes),
        signature=_opt(m, "signature", lim.max_signature_bytes),
        key=_opt(m, "key", lim.max_key_bytes),
    )


def _check_counts(r: pb.RPC, lim: Limits) -> None:
    c = r.control
    checks = (
        (len(r.subscriptions), lim.max_subscriptions, "subscriptions"),
        (len(r.publish), lim.max_messages, "messages"),
        (len(c.ihave), lim.max_ihave_topics, "IHAVEs"),
        (sum(len(i.messageIDs) for i in c.ihave), lim.max_ihave_ids, "IHAVE ids"),
        (sum(len(i.messageIDs) for i in c.iwant), lim.max_iwant_ids, "IWANT ids"),
        (len(c.graft), lim.max_grafts, "GRAFTs"),
        (len(c.prune), lim.max_prunes, "PRUNEs"),
        (max((len(p.peers) for p in c.prune), default=0), lim.max_prune_peers, "PRUNE peers"),
        (sum(len(i.messageIDs) for i in c.idontwant), lim.max_idontwant_ids, "IDONTWANT ids"),
    )
    for n, cap, what in checks:
        if n > cap:
            raise CodecError(f"{n} {what} exceed {cap}")
    # Empty IWANT/IDONTWANT entries cost nothing to send and something to
    # handle: bound the entry count too (by the id cap, an entry per id).
    if len(c.iwant) > lim.max_iwant_ids or len(c.idontwant) > lim.max_idontwant_ids:
        raise CodecError("too many IWANT/IDONTWANT entries")


def decode_rpc(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Rpc:
    """Parse and check one RPC frame (without its varint length prefix)."""
    if len(data) > limits.max_rpc_bytes:
        raise CodecError(f"RPC of {len(data)} bytes exceeds {limits.max_rpc_bytes}")
    r = pb.RPC()
    try:
        r.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError, TypeError) as exc:
        raise CodecError(f"undecodable RPC: {exc}") from None
    _check_counts(r, limits)
    subs = tuple(SubOpts(bool(s.subscribe), _topic(s.topicid, limits)) for s in r.subscriptions)
    msgs = tuple(_message(m, limits) for m in r.publish)
    c = r.control
    control = Control(
        ihave=tuple(IHave(_topic(i.topicID, limits), _ids(i.messageIDs, limits)) for i in c.ihave),
        iwant=tuple(IWant(_ids(i.messageIDs, limits)) for i in c.iwant),
        graft=tuple(Graft(_topic(g.topicID, limits)) for g in c.graft),
        prune=tuple(
            Prune(
                _topic(p.topicID, limits),
                tuple(
                    PeerInfo(
                        _bounded(pi.peerID, limits.max_peer_id_bytes, "PX peer id"),
                        _bounded(pi.signedPeerRecord, limits.max_peer_record_bytes, "peer record"),
                    )
                    for pi in p.peers
                ),
                p.backoff if p.HasField("backoff") else None,
            )
            for p in c.prune
        ),
        idontwant=tuple(IDontWant(_ids(i.messageIDs, limits)) for i in c.idontwant),
    )
    return Rpc(subs, msgs, control)
