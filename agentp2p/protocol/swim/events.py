"""Inputs to and outputs from the sans-IO core.

Inputs (``SwimCore.handle(now, event)``):
  Tick               time passed; run whatever timers are due (see next_deadline()).
  MemberDiscovered   the node connected to / learned of a peer (e.g. bootstrap, DHT).
  Received           a frame from an authenticated peer (bytes or a decoded Message).
  Leave              start a graceful leave.
  ConnectionLost     our connection to a member ended without a goodbye (its
                     process may have died): probe it next period, not in its
                     round-robin turn.
  ConnectionOpened   we hold a connection to the peer now, and
  ConnectionClosed   our connection to it closed in order: probe_connected_min
                     drops it from the connected order (connected.py), and a
                     member our next probes need is asked for again
                     (ConnectAhead).

Outputs (the returned list, in order):
  Send               deliver ``message`` to ``to`` (encode with wire.encode());
                     if not ``dial``, only over a connection already open.
  ConnectAhead       ``to`` is among the next members we probe: have a connection
                     (and a stream) ready by then, so the probe times the member,
                     not a dial. A hint: ignoring it costs only slower probes.
  MemberEvent        membership changed: joined / suspect / failed / left / recovered.
  LeaveComplete      our "left" has had its time to spread; the adapter may stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from .member import EventKind, PeerId, State
from .messages import Message

# ---------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class MemberDiscovered:
    peer_id: PeerId
    addrs: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Received:
    #: Authenticated by the transport (libp2p Noise): trust it.
    sender: PeerId
    #: Raw frame bytes (the core decodes and counts malformed ones) or a Message.
    frame: bytes | Message


@dataclass(frozen=True, slots=True)
class Leave:
    pass


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    peer_id: PeerId


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """We now hold a connection to the peer (used only with
    probe_connected_min; the adapter also sends MemberDiscovered)."""

    peer_id: PeerId


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """Our connection to the peer closed in order (trimmed by either side's
    connection manager, or a goodbye): probe_connected_min drops the peer
    from the connected order; if our next probes need it the core asks for
    it again (ConnectAhead, SwimCore._redial_if_upcoming); if the peer
    closed it, a probe of the peer under way gets one more period
    (close_grace)."""

    peer_id: PeerId
    #: The peer closed it (True), we did (False), or the adapter cannot say
    #: (None: taken as the peer's).
    by_peer: bool | None = None


Input = Tick | MemberDiscovered | Received | Leave | ConnectionLost | ConnectionOpened | ConnectionClosed

# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Send:
    to: PeerId
    message: Message
    #: Addresses we know for ``to`` (a dialing hint; may be empty).
    addrs: tuple[bytes, ...] = ()
    #: False: send only over a connection that is already open, else drop
    #: (gossip: news is worth a frame, not a dial).
    dial: bool = True
    #: Why the core sends it, when the body's kind does not say (a Ping:
    #: "probe", "check", "dead", ...): labels the dials it costs.
    why: str = ""


@dataclass(frozen=True, slots=True)
class ConnectAhead:
    to: PeerId
    addrs: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class MemberEvent:
    kind: EventKind
    peer_id: PeerId
    incarnation: int
    #: State before the change (None when the member was unknown).
    previous: State | None
    addrs: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class LeaveComplete:
    pass


Action = Send | ConnectAhead | MemberEvent | LeaveComplete
