"""Gossipsub v1.1/v1.2 router (sans-IO core) with peer scoring.

Drive a :class:`GossipSubCore` with ``handle(now, event)`` and carry out the
actions it returns (events.py lists both); ``next_deadline()`` says when the
heartbeat is due. core.py has the theory of operation, codec.py the wire
format (proto/gossipsub_rpc.proto), score.py the optional peer scoring.
"""

from .codec import CodecError, Limits, decode_rpc, default_msg_id, encode_rpc, signing_payload
from .core import GossipSubCore, GossipSubStats
from .events import (
    Action,
    Deliver,
    Input,
    PeerConnected,
    PeerDisconnected,
    PeerExchange,
    Publish,
    Published,
    RpcReceived,
    SendRpc,
    SetAppScore,
    SignatureChecked,
    Subscribe,
    Tick,
    Unsubscribe,
    Validate,
    ValidationResult,
    Verdict,
    VerifySignature,
)
from .params import GossipSubParams, SignPolicy
from .peers import PROTOCOL_IDS, SUPPORTED_PROTOCOLS
from .rpc import Message, PeerInfo, Rpc
from .scorer import Thresholds

__all__ = [
    "PROTOCOL_IDS",
    "SUPPORTED_PROTOCOLS",
    "Action",
    "CodecError",
    "Deliver",
    "GossipSubCore",
    "GossipSubParams",
    "GossipSubStats",
    "Input",
    "Limits",
    "Message",
    "PeerConnected",
    "PeerDisconnected",
    "PeerExchange",
    "PeerInfo",
    "Publish",
    "Published",
    "Rpc",
    "RpcReceived",
    "SendRpc",
    "SetAppScore",
    "SignPolicy",
    "SignatureChecked",
    "Subscribe",
    "Thresholds",
    "Tick",
    "Unsubscribe",
    "Validate",
    "ValidationResult",
    "Verdict",
    "VerifySignature",
    "decode_rpc",
    "default_msg_id",
    "encode_rpc",
    "signing_payload",
]
