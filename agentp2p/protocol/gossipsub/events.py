"""Inputs to and outputs from the sans-IO gossipsub router.

Inputs (``GossipSubCore.handle(now, event)``):
  Tick               time passed; runs the heartbeat when due (see next_deadline()).
  PeerConnected      a pubsub stream to ``peer`` is up, speaking ``protocol``.
  PeerDisconnected   it is gone.
  RpcReceived        an RPC from an authenticated peer (bytes, or a decoded Rpc).
  Publish            the application publishes ``data`` on ``topic`` (we author it).
  Subscribe          join ``topic`` (``validate``: wait for ValidationResult per message).
  Unsubscribe        leave ``topic``.
  SignatureChecked   the answer to a VerifySignature.
  ValidationResult   the answer to a Validate.
  SetAppScore        P5, the application's opinion of a peer (needs scoring on).

Outputs (the returned list, in order; all are fire-and-forget for the adapter
except the two that ask for an answer):
  SendRpc            send ``rpc`` to ``peer`` (codec.encode_rpc + length prefix).
  VerifySignature    check ``message``'s signature; answer with SignatureChecked.
  Validate           run the application's validator; answer with ValidationResult.
  Deliver            hand ``message`` to the local subscribers of ``topic``.
  PeerExchange       a PRUNE suggested peers to connect to (dial them, if you like).
  Published          our Publish got this message id (and reached ``peers`` peers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .rpc import Message, MsgId, PeerId, PeerInfo, Rpc

# ---------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class PeerConnected:
    peer: PeerId
    #: The negotiated protocol ID, e.g. "/meshsub/1.2.0" (peers.PROTOCOL_IDS).
    protocol: str
    #: We dialled (True) or they did. The D_out quota counts outbound peers.
    outbound: bool
    #: The connection's remote IP, for the score's IP colocation factor (P6).
    ip: str | None = None


@dataclass(frozen=True, slots=True)
class PeerDisconnected:
    peer: PeerId


@dataclass(frozen=True, slots=True)
class RpcReceived:
    #: Authenticated by the transport: who sent (forwarded) the RPC.
    peer: PeerId
    #: Raw RPC bytes (the core decodes and counts malformed ones) or a decoded Rpc.
    rpc: bytes | Rpc


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Subscribe:
    topic: str
    #: Emit Validate for each new message on the topic (an app validator exists);
    #: otherwise messages are accepted once their signature checks out.
    validate: bool = False


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    topic: str


@dataclass(frozen=True, slots=True)
class SignatureChecked:
    msg_id: MsgId
    ok: bool


class Verdict(enum.Enum):
    """The three outcomes of an extended validator (gossipsub-v1.1.md)."""

    ACCEPT = "accept"  # deliver and forward
    REJECT = "reject"  # drop, and penalise the sender (P4)
    IGNORE = "ignore"  # drop without penalty


@dataclass(frozen=True, slots=True)
class ValidationResult:
    msg_id: MsgId
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class SetAppScore:
    peer: PeerId
    value: float


Input = (Tick | PeerConnected | PeerDisconnected | RpcReceived | Publish | Subscribe | Unsubscribe
         | SignatureChecked | ValidationResult | SetAppScore)

# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendRpc:
    peer: PeerId
    rpc: Rpc


@dataclass(frozen=True, slots=True)
class VerifySignature:
    """Verify ``message.signature`` over ``payload`` (codec.signing_payload) with
    the author's key: ``message.key`` if set, else the key inlined in the
    ``message.from_`` peer ID. ``key`` must match ``from_`` (else: not ok)."""

    msg_id: MsgId
    message: Message
    payload: bytes


@dataclass(frozen=True, slots=True)
class Validate:
    msg_id: MsgId
    topic: str
    message: Message
    #: The peer the first copy came from (not necessarily the author).
    from_peer: PeerId


@dataclass(frozen=True, slots=True)
class Deliver:
    topic: str
    msg_id: MsgId
    message: Message
    #: The peer we got it from; our own peer ID for our own messages.
    from_peer: PeerId


@dataclass(frozen=True, slots=True)
class PeerExchange:
    """``from_peer`` PRUNEd us from ``topic`` and suggested these peers. Their
    signed peer records (if any) are unchecked: verify before using addresses."""

    from_peer: PeerId
    topic: str
    peers: tuple[PeerInfo, ...]


@dataclass(frozen=True, slots=True)
class Published:
    topic: str
    msg_id: MsgId
    #: Peers the message was sent to (0: nobody in the topic yet).
    peers: int


Action = SendRpc | VerifySignature | Validate | Deliver | PeerExchange | Published
