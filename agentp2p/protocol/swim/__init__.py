"""SWIM membership and failure detection (with Lifeguard), as a sans-IO core.

Protocol ID ``/agentp2p/swim/1.0.0``; the wire schema is proto/swim.proto.
Drive a :class:`SwimCore` with ``handle(now, event)`` and send what it returns;
see core.py for the theory of operation and docs/swim.md for tuning.
"""

from .config import SwimConfig
from .core import SwimCore, SwimStats
from .events import (
    Action,
    ConnectAhead,
    ConnectionClosed,
    ConnectionLost,
    ConnectionOpened,
    Input,
    Leave,
    LeaveComplete,
    MemberDiscovered,
    MemberEvent,
    Received,
    Send,
    Tick,
)
from .member import MAX_INCARNATION, EventKind, Member, PeerId, State
from .messages import Ack, Gossip, Message, MemberUpdate, Nack, Ping, PingReq
from .roster import RosterBase
from .wire import PROTOCOL_ID, WireError, decode, encode

__all__ = [
    "MAX_INCARNATION",
    "PROTOCOL_ID",
    "Ack",
    "Action",
    "ConnectAhead",
    "ConnectionClosed",
    "ConnectionLost",
    "ConnectionOpened",
    "EventKind",
    "Gossip",
    "Input",
    "Leave",
    "LeaveComplete",
    "Member",
    "MemberDiscovered",
    "MemberEvent",
    "MemberUpdate",
    "Message",
    "Nack",
    "PeerId",
    "Ping",
    "PingReq",
    "Received",
    "RosterBase",
    "Send",
    "State",
    "SwimConfig",
    "SwimCore",
    "SwimStats",
    "Tick",
    "WireError",
    "decode",
    "encode",
]
