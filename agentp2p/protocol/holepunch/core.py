"""What a hole punch decides, without sockets or clocks (sans-IO).

Two roles, after libp2p/specs relay/DCUtR.md. A relayed connection runs
from **A** (who dialed through the relay) to **B** (who was reached
through it, usually behind a NAT).

* :class:`Initiator` is B. First, if A says it has public addresses, B
  dials them the ordinary way (a "reversal": no punch needed when A is
  reachable). Otherwise, or if that fails, up to ``attempts`` rounds of:
  send CONNECT with our candidate addresses, take A's CONNECT (the time
  between the two is the relayed round trip), send SYNC, and dial A's
  addresses half a round trip later — when A, which dials on SYNC, is
  dialing too, so the two SYNs cross and each opens its own NAT.
* :class:`Receiver` is A: answer CONNECT with our candidates, dial on SYNC.

Roles in the resulting TCP connection (both sides "dialed"): A runs the
security handshake as the client, B as the server, as go-libp2p does since
v0.41 (the spec leaves it open).

The adapter (service.py) does the I/O and feeds results back: it calls a
method with ``now`` and performs the actions returned, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Dial", "Done", "Initiator", "Receiver", "Reverse", "SendConnect", "SendSync"]


@dataclass(frozen=True, slots=True)
class Reverse:
    """Dial ``addrs`` (A's public addresses) the ordinary way, as the client."""

    addrs: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class SendConnect:
    """Send CONNECT with our candidate addresses (the adapter binds the punch
    sockets first: their port is part of the address)."""


@dataclass(frozen=True, slots=True)
class SendSync:
    pass


@dataclass(frozen=True, slots=True)
class Dial:
    """Punch: at ``at`` (``now`` or later), dial ``addrs`` from the bound
    sockets; ``as_client`` is our role in the security handshake."""

    addrs: tuple[tuple[str, int], ...]
    at: float
    as_client: bool


@dataclass(frozen=True, slots=True)
class Done:
    """The upgrade ended: ``direct`` is whether we have a direct connection;
    ``how`` is "reversal", "punch" or why it failed."""

    direct: bool
    how: str
    attempts: int = 0


Action = Reverse | SendConnect | SendSync | Dial | Done


@dataclass
class Initiator:
    """B's side of one upgrade (see the module doc)."""

    attempts: int = 3
    #: The longest wait before our dial: half a round trip, but a relay
    #: taking seconds to answer is not a round trip worth waiting on.
    max_sync_delay: float = 2.0
    tried: int = 0
    rtt: float | None = None
    _sent_at: float | None = field(default=None, repr=False)
    _finished: bool = False

    def start(self, now: float, peer_public: list[tuple[str, int]]) -> list[Action]:
        """Begin; ``peer_public``: A's addresses (from identify) we may dial directly."""
        if peer_public:
            return [Reverse(tuple(peer_public))]
        return self._next(now, "")

    def reversed(self, now: float, ok: bool) -> list[Action]:
        """The reversal's outcome."""
        if ok:
            return self._done(True, "reversal")
        return self._next(now, "")

    def connect_sent(self, now: float) -> None:
        """Our CONNECT is on its way: the round trip starts now."""
        self._sent_at = now

    def connect_received(self, now: float, peer_addrs: list[tuple[str, int]]) -> list[Action]:
        """A's CONNECT arrived with ``peer_addrs`` (already filtered)."""
        if self._sent_at is None:
            return self._done(False, "protocol error: CONNECT before ours")
        if not peer_addrs:
            return self._done(False, "the peer gave no address to punch to")
        self.rtt = max(0.0, now - self._sent_at)
        self._sent_at = None
        return [SendSync(), Dial(tuple(peer_addrs), now + min(self.rtt / 2, self.max_sync_delay), as_client=False)]

    def punched(self, now: float, ok: bool) -> list[Action]:
        """The dial of the last round ended."""
        if ok:
            return self._done(True, "punch")
        return self._next(now, "")

    def failed(self, reason: str) -> list[Action]:
        """The exchange itself broke (stream, timeout, a bad message): give up."""
        return self._done(False, reason)

    def _next(self, now: float, _why: str) -> list[Action]:
        if self.tried >= self.attempts:
            return self._done(False, f"no direct connection after {self.tried} attempt(s)")
        self.tried += 1
        return [SendConnect()]

    def _done(self, direct: bool, how: str) -> list[Action]:
        if self._finished:
            return []
        self._finished = True
        return [Done(direct, how, self.tried)]


@dataclass
class Receiver:
    """A's side of one round: CONNECT in, CONNECT out, SYNC in, dial."""

    peer_addrs: tuple[tuple[str, int], ...] = ()
    _state: str = "connect"

    def connect_received(self, now: float, peer_addrs: list[tuple[str, int]]) -> list[Action]:
        if self._state != "connect":
            return [Done(False, "protocol error: a second CONNECT")]
        if not peer_addrs:
            return [Done(False, "the peer gave no address to punch to")]
        self.peer_addrs = tuple(peer_addrs)
        self._state = "sync"
        return [SendConnect()]

    def sync_received(self, now: float) -> list[Action]:
        if self._state != "sync":
            return [Done(False, "protocol error: SYNC before CONNECT")]
        self._state = "dialing"
        return [Dial(self.peer_addrs, now, as_client=True)]
