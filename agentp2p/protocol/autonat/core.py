"""The AutoNAT client, sans-IO: whom to ask, when, and what the answers mean.

``AutoNATCore.handle(now, event) -> actions``, like the SWIM core: no
sockets, no clock, no trio. The adapter (service.py) tells it which
connected peers serve AutoNAT and what they answered, and carries out its
``Ask`` actions; the core keeps the verdict (verdict.py) and the schedule:

* the first round starts ``boot_delay`` after a server is known;
* a round wants ``confirmations`` definite answers (reachable or not)
  while the verdict is unknown, one once it is known; a server that
  refuses or fails is replaced by the next eligible one at once, up to
  ``spare_asks`` replacements a round (without that bound, a node whose
  servers all refuse, as they do a private address, asked every connected
  server every ``peer_interval``: 0.54 new streams a second per node with
  49 servers, and as many served);
* rounds repeat every ``retry_interval`` while unknown, every
  ``refresh_interval`` once known, and start over at once when our
  addresses change; while unknown, each round in a row that asked and got
  no definite answer doubles the wait before the next, up to
  ``refresh_interval``. A definite answer ends the back-off (the next
  round comes ``retry_interval`` after the round it came in), and so does
  an address change; a server that connects meanwhile waits for the next
  round (up to ``refresh_interval``) unless the current round still has
  questions to spend;
* a server is asked at most once per ``peer_interval``, least recently
  asked first, so the voices come from as many peers as there are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from .config import AutoNATConfig
from .verdict import Answer, Reachability, Verdict

__all__ = [
    "Answered", "AddressesChanged", "Ask", "AutoNATCore", "Outcome", "ReachabilityChanged", "Servers", "Tick",
]


class Outcome(str, Enum):
    REACHABLE = "reachable"  # the server dialed us back (status OK)
    UNREACHABLE = "unreachable"  # it tried and failed (E_DIAL_ERROR)
    REFUSED = "refused"  # it would not try (refused, bad request, internal error)
    FAILED = "failed"  # no answer: stream, timeout, garbage


# ---------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class Servers:
    """The connected peers that serve AutoNAT, as of now (the whole set)."""

    peers: frozenset[object]


@dataclass(frozen=True, slots=True)
class Answered:
    peer: object
    outcome: Outcome
    addr: str | None = None


@dataclass(frozen=True, slots=True)
class AddressesChanged:
    pass


Input = Tick | Servers | Answered | AddressesChanged


# ---------------------------------------------------------------- outputs
@dataclass(frozen=True, slots=True)
class Ask:
    """Ask ``peer`` to dial us back; report the result as :class:`Answered`."""

    peer: object


@dataclass(frozen=True, slots=True)
class ReachabilityChanged:
    old: Reachability
    new: Reachability
    addrs: tuple[str, ...]  # where servers reached us (public only)


Action = Ask | ReachabilityChanged


@dataclass
class AutoNATStats:
    asked: int = 0
    reachable: int = 0
    unreachable: int = 0
    refused: int = 0
    failed: int = 0
    rounds: int = 0
    changes: int = 0
    contradicted: int = 0  # answers against the verdict (each starts a confirmation round)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class AutoNATCore:
    """See the module doc."""

    def __init__(self, config: AutoNATConfig) -> None:
        self.config = config
        self.verdict = Verdict(config.confirmations, config.answer_ttl)
        self.stats = AutoNATStats()
        self._servers: dict[object, None] = {}  # insertion-ordered set
        self._last_asked: dict[object, float] = {}
        self._in_flight: set[object] = set()
        self._next_round: float | None = None  # None: no server known yet
        self._round_left = 0  # definite answers the current round still wants
        self._round_asks = 0  # questions the current round may still send
        self._round_start = 0.0
        self._round_asked = False  # the current round asked someone ...
        self._round_answered = False  # ... and got a definite answer
        self._quiet_rounds = 0  # rounds in a row that asked and got none, while unknown

    # ------------------------------------------------------------ queries
    @property
    def status(self) -> Reachability:
        return self.verdict.status

    def confirmed_addrs(self, now: float) -> list[str]:
        return self.verdict.confirmed_addrs(now) if self.status is Reachability.PUBLIC else []

    def next_deadline(self) -> float | None:
        return self._next_round

    def servers(self) -> int:
        return len(self._servers)

    @property
    def quiet_rounds(self) -> int:
        """Rounds in a row that asked and got no definite answer while unknown (the back-off's exponent)."""
        return self._quiet_rounds

    # ------------------------------------------------------------ input
    def handle(self, now: float, event: Input) -> list[Action]:
        out: list[Action] = []
        if isinstance(event, Servers):
            self._set_servers(now, event.peers)
            if self._round_left > 0 and self._next_round is not None:
                self._top_up(now, out)  # a server that came mid-round is asked now
        elif isinstance(event, Answered):
            self._answered(now, event, out)
        elif isinstance(event, AddressesChanged):
            self.verdict.forget_all()
            self._quiet_rounds = 0
            self._round_asked = False  # the silence was about the old addresses
            if self._servers:
                self._next_round = now
        if self._next_round is not None and now >= self._next_round:
            self._start_round(now, out)
        return out

    # ------------------------------------------------------------ internals
    def _set_servers(self, now: float, peers: frozenset[object]) -> None:
        for gone in [p for p in self._servers if p not in peers]:
            del self._servers[gone]
        # A server that connects during a back-off waits for the next round
        # (unless the current one still has questions to spend): pulling the
        # round in for each newcomer would undo the back-off wherever
        # connections churn (0.2 questions a second per node, measured).
        for p in sorted(peers - self._servers.keys(), key=str):  # sorted: the same run for the same input
            self._servers[p] = None
        # Forget when we asked peers that are gone long enough not to matter.
        for p in [p for p, t in self._last_asked.items()
                  if p not in self._servers and now - t >= self.config.peer_interval]:
            del self._last_asked[p]
        if self._next_round is None and self._servers:
            self._next_round = now + self.config.boot_delay

    def _eligible(self, now: float) -> list[object]:
        interval = self.config.peer_interval
        ready = [p for p in self._servers
                 if p not in self._in_flight and now - self._last_asked.get(p, -math.inf) >= interval]
        ready.sort(key=lambda p: self._last_asked.get(p, -math.inf))  # stable: ties keep arrival order
        return ready

    def _start_round(self, now: float, out: list[Action]) -> None:
        cfg = self.config
        unknown = self.status is Reachability.UNKNOWN
        if not unknown:  # (a verdict, once reached, is kept: this only clears the stat)
            self._quiet_rounds = 0
        elif self._round_asked and not self._round_answered:
            self._quiet_rounds += 1  # a round that asked nobody (none eligible) says nothing
        self._round_asked = self._round_answered = False
        self._round_start = now
        self._round_left = cfg.confirmations if unknown else 1
        self._round_asks = self._round_left + cfg.spare_asks
        if unknown:  # (the exponent capped: no huge integers after days of silence)
            interval = min(cfg.retry_interval * 2 ** min(self._quiet_rounds, 32), cfg.refresh_interval)
        else:
            interval = cfg.refresh_interval
        self._next_round = now + interval
        self.stats.rounds += 1
        self._top_up(now, out)

    def _top_up(self, now: float, out: list[Action]) -> None:
        want = min(self._round_left - len(self._in_flight), self._round_asks)
        for peer in self._eligible(now)[:max(0, want)]:
            self._in_flight.add(peer)
            self._last_asked[peer] = now
            self._round_asks -= 1
            self._round_asked = True
            self.stats.asked += 1
            out.append(Ask(peer))

    def _answered(self, now: float, ev: Answered, out: list[Action]) -> None:
        if ev.peer not in self._in_flight:
            return  # not a question of ours (or already answered)
        self._in_flight.discard(ev.peer)
        setattr(self.stats, ev.outcome.value, getattr(self.stats, ev.outcome.value) + 1)
        if ev.outcome in (Outcome.REACHABLE, Outcome.UNREACHABLE):
            reachable = ev.outcome is Outcome.REACHABLE
            self._round_answered = True
            if self._quiet_rounds and self.status is Reachability.UNKNOWN and self._next_round is not None:
                # Backed off, then someone answered: the next round comes as
                # if the back-off had ended with this round, not a doubled wait later.
                self._next_round = min(self._next_round, self._round_start + self.config.retry_interval)
            self._quiet_rounds = 0
            self.verdict.add(ev.peer, Answer(reachable, now, ev.addr if reachable else None))
            self._round_left = max(0, self._round_left - 1)
            old = self.status
            new = self.verdict.decide(now)
            if new is not old:
                self.stats.changes += 1
                out.append(ReachabilityChanged(old, new, tuple(self.confirmed_addrs(now))))
                if old is Reachability.UNKNOWN:
                    self._next_round = now + self.config.refresh_interval
            elif new is not Reachability.UNKNOWN and reachable != (new is Reachability.PUBLIC):
                # A voice against the verdict that did not (yet) move it: gather
                # the others now, not one per refresh (a real change would
                # otherwise take c refreshes to show).
                self.stats.contradicted += 1
                self._round_left = max(self._round_left, self.config.confirmations - 1)
                self._round_asks = max(self._round_asks, self._round_left + self.config.spare_asks)
                self._next_round = min(self._next_round or math.inf, now + self.config.retry_interval)
        if self._round_left > 0:
            self._top_up(now, out)  # a refusal or failure: ask the next one now
