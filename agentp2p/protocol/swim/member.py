"""Member records and the incarnation-precedence table: the heart of SWIM.

Theory of operation
-------------------
Every member M has a *state* (alive, suspect, dead, left) and an *incarnation*
number that only M itself ever increments. Everyone else learns about M through
updates ``(M, state, incarnation)`` that arrive first-hand (in the header of a
frame M sent us: the transport authenticated M) or second-hand (piggybacked
gossip, which anyone could have forged).

All updates about M are merged with one rule: order them by the pair
``(incarnation, rank(state))`` with ``alive < suspect < dead < left`` and keep
the maximum. That makes the merge a join-semilattice (commutative, associative,
idempotent), so views that diverged during a partition converge again once the
updates flow, whatever order they arrive in. Read row by row:

* ``alive(i)`` overrides anything with incarnation < i — a refutation;
* ``suspect(i)`` overrides ``alive(i)`` and anything older;
* ``dead(i)`` overrides ``alive(i)`` / ``suspect(i)``; ``left(i)`` overrides all of those.

Why a live member can never be *kept* dead: an update about M that says
suspect/dead/left with incarnation >= M's own makes M refute — bump its
incarnation past it and announce ``alive``, which by the rule above overrides
the accusation everywhere. Only M moves M's incarnation: a rumour may not
raise it (nor say M left) unless it is M's own word — first-hand or signed
by M (signature.py) — and an accusation above what M announced is ignored;
M's unsigned own word may jump at most ``SwimConfig.max_incarnation_jump``,
and M's first-hand word overrides a view that is that far ahead (a previous
life). So a liar cannot exhaust M's counter or out-bid M's refutation.
The core applies these rules before this table (core.py ``_apply``).
Unknown members are only ever *added* by M's own word (admission.py: gossip
about a stranger only makes it a candidate we ping).

The second table maps (old state, new state) to the event the application sees.
"""

from __future__ import annotations

import enum
from typing import Any, Final

# ``signed`` holds a messages.MemberUpdate; not imported (even for type
# checkers): messages.py builds on this module, and the package keeps its
# imports acyclic.
SignedUpdate = Any

PeerId = bytes

#: Incarnations are uint64 on the wire; we stay far below so that refutation
#: (incarnation + 1) can never overflow. Bigger values are malformed.
MAX_INCARNATION: Final = 2**62


class State(enum.IntEnum):
    """Values match swim.proto's State enum."""

    ALIVE = 1
    SUSPECT = 2
    DEAD = 3
    LEFT = 4


class EventKind(str, enum.Enum):
    JOINED = "joined"
    SUSPECT = "suspect"
    FAILED = "failed"
    LEFT = "left"
    RECOVERED = "recovered"


#: Precedence within one incarnation.
RANK: Final[dict[State, int]] = {State.ALIVE: 0, State.SUSPECT: 1, State.DEAD: 2, State.LEFT: 3}


def supersedes(new_state: State, new_inc: int, cur_state: State, cur_inc: int) -> bool:
    """True when update (new_state, new_inc) replaces what we hold."""
    if new_inc != cur_inc:
        return new_inc > cur_inc
    return RANK[new_state] > RANK[cur_state]


#: (previous state or None for unknown, new state) -> event, None = no event.
#: Unknown members are only created by ALIVE (see module docstring).
EVENT_FOR: Final[dict[tuple[State | None, State], EventKind | None]] = {
    (None, State.ALIVE): EventKind.JOINED,
    (State.ALIVE, State.ALIVE): None,  # incarnation bump only
    (State.ALIVE, State.SUSPECT): EventKind.SUSPECT,
    (State.ALIVE, State.DEAD): EventKind.FAILED,
    (State.ALIVE, State.LEFT): EventKind.LEFT,
    (State.SUSPECT, State.ALIVE): EventKind.RECOVERED,  # refuted
    (State.SUSPECT, State.SUSPECT): None,  # suspected again at a newer incarnation
    (State.SUSPECT, State.DEAD): EventKind.FAILED,
    (State.SUSPECT, State.LEFT): EventKind.LEFT,
    (State.DEAD, State.ALIVE): EventKind.RECOVERED,  # false positive healed / partition merged
    (State.DEAD, State.SUSPECT): EventKind.SUSPECT,  # came back, then suspected again
    (State.DEAD, State.DEAD): None,
    (State.DEAD, State.LEFT): EventKind.LEFT,
    (State.LEFT, State.ALIVE): EventKind.RECOVERED,  # rejoined with a higher incarnation
    (State.LEFT, State.SUSPECT): EventKind.SUSPECT,
    (State.LEFT, State.DEAD): EventKind.FAILED,
    (State.LEFT, State.LEFT): None,
}


class Member:
    """What we believe about one member. Treated as immutable: replaced, never
    mutated, so many simulated nodes can share one initial record safely."""

    __slots__ = ("peer_id", "state", "incarnation", "addrs", "since", "signed")

    def __init__(
        self,
        peer_id: PeerId,
        state: State,
        incarnation: int,
        addrs: tuple[bytes, ...] = (),
        since: float = 0.0,
        signed: SignedUpdate | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.state = state
        self.incarnation = incarnation
        self.addrs = addrs
        self.since = since  # when we entered this state (our clock)
        #: The member's own signed update we hold for it (alive or left), so a
        #: push/pull can pass it on believably; only meaningful while it
        #: matches ``state`` and ``incarnation`` (see :meth:`signed_now`).
        self.signed = signed

    def signed_now(self) -> SignedUpdate | None:
        """The member's signed word for exactly our current record, if we hold it."""
        s = self.signed
        if s is not None and s.state is self.state and s.incarnation == self.incarnation:
            return s
        return None

    @property
    def live(self) -> bool:
        """Counted in N and probed: alive or suspect."""
        return self.state is State.ALIVE or self.state is State.SUSPECT

    def __repr__(self) -> str:
        return f"Member({self.peer_id!r}, {self.state.name}, inc={self.incarnation})"
