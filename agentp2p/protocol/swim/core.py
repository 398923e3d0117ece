"""The SWIM state machine: ``SwimCore.handle(now, event) -> list[Action]``.

Theory of operation
-------------------
Time is divided into protocol periods (``probe_interval``, stretched by our
local-health score). At the start of each period we:

1. close the previous period's probe: if neither the target nor any helper
   acked, we *suspect* the target (and score our own health by the Nacks we
   did or did not get) -- unless not one helper Nacked: then it may get one
   more period, and without a Nack in it we spare the target
   (``suspect_when_helpers_silent``);
2. pick the next target in a randomized round-robin order and send it a Ping;
3. if no Ack arrives within ``probe_timeout``, ask ``indirect_checks`` random
   alive members (helpers) to Ping it for us (PingReq); they answer with the
   forwarded Ack, or with a Nack if the target stayed silent (or at once, from
   a helper in poor health that would have to dial the target). At the same
   time we Ping the target directly once more (memberlist's fallback ping).

A suspect is not yet dead: everyone who hears the suspicion starts a Lifeguard
suspicion timer (suspicion.py) that shrinks with independent confirmations; if
it expires the member is declared dead. The suspect learns it is suspected
(every frame we send to a suspect/dead member carries our accusation first:
the *buddy system*) and refutes by incrementing its incarnation; the refutation
overrides the accusation everywhere (member.py's precedence table).

All membership news rides piggybacked on probe traffic (broadcast.py); each
update is retransmitted ``lambda * log N`` times. Every frame also carries the
sender's own incarnation in its header: the transport authenticated the sender,
so that is first-hand proof of life — it is how a new member becomes known, and
how a member we hold as dead gets told so (and refutes) the moment it talks to
us. Every ``reconnect_every`` periods we also ping one random dead member, so
two sides of a healed partition find each other again.

Anti-entropy (pushpull.py): gossip carries news a few updates per frame,
which is too slow when two sides of a healed partition must exchange hundreds
of refutations. So, periodically (``push_pull_interval`` scaled with N) and
whenever a member we held dead/left or just discovered answers us itself, we
compare bucket digests of our view with one member's and swap the entries of
the buckets that differ; each entry goes through ``_apply`` like a
piggybacked update (no rule is relaxed). Signs that views are merging (a
join or rejoin, an exchange or a period that changed many members) open a
*merge window*: push/pull every ``push_pull_burst_interval``, and
rumour-started suspicions make us ask the accused at once (stale accusations
of the merge are still in flight after their targets refuted). Members coming
back from dead or left (one in its own word, the first frame from one we hold
dead, or 8 in an exchange or a period) make it a *healing* window, in which
new suspicions also wait twice the minimum; a burst of suspicions is a crash
of many, not a heal.

Joining: ``MemberDiscovered`` only *proposes* a peer. We ping it (up to
``join_attempts`` periods) and it becomes a member — ``joined`` — when it
answers. So a discovered address that leads nowhere never appears as alive.

Trust: the adapter authenticates the sender of each frame, so the frame's
header and the updates the sender makes about *itself* are its own word.
Everything about third parties is rumour, and a single hostile peer must not
be able to poison the view with it:

* Admission (admission.py): an alive rumour about a stranger only makes it a
  bounded *candidate*; it becomes a member when it answers our ping. Until
  then it is not counted, not probed by the failure detector, not gossiped.
* Only M raises M's incarnation: a rumour (suspect/dead/left/alive) claiming a
  higher incarnation than we know for M is ignored unless it is M's own
  signed word (signature.py); "left" must be M's own (first-hand or signed).
  An unsigned claim by M itself may raise it by ``max_incarnation_jump`` at most.
* We declare M dead only when *our* suspicion timer expires: someone else's
  "dead" about a member we hold alive starts our suspicion (a confirmation if
  we already suspect it), so a lie alone cannot make a live member dead — it
  has a full suspicion timeout to refute, and does.

Malformed frames are counted in ``stats`` and dropped.

Timers: the core keeps its own timer heap. ``next_deadline()`` says when it
next needs to run; the caller then calls ``handle(now, Tick())``. Every
``handle`` call first runs whatever timers are due at ``now``.
"""

from __future__ import annotations

import collections
import heapq
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agentp2p.network.ratelimit import PeerRateLimiter

from . import wire
from .admission import CandidateSet
from .awareness import Awareness
from .broadcast import BroadcastQueue
from .config import SwimConfig
from .connected import ConnectedOrder
from .contacts import RecentContacts
from .cooldown import Cooldown
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
from .member import EVENT_FOR, MAX_INCARNATION, EventKind, Member, PeerId, State, supersedes
from .messages import Ack, Body, Gossip, Message, MemberUpdate, Nack, Ping, PingReq, PushPull, Step
from .pushpull import Exchanges, Groups, Outgoing, Serving, frames, level_for, select
from .ring import RingPredecessor, RingSuccessor
from .roster import MemberTable, ProbeOrder, RosterBase
from .signature import SignatureCache, Signer, Verifier, signed_update
from .suspicion import Suspicion

# Timer kinds
_TICK, _PROBE_TIMEOUT, _INDIRECT, _SUSPICION, _REAP, _LEAVE, _PUSHPULL, _GOSSIP = range(8)
#: ConnectionLost hints (see _on_connection_lost): at most this many at
#: once, one more every _HINT_REFILL periods, one per member per _HINT_COOLDOWN
#: periods; _MAX_HINT_MEMORY bounds the members remembered for the cooldown.
_MAX_HINTED = 4
_HINT_REFILL = 2
_HINT_COOLDOWN = 30
#: A connection our next probes need, closed in order, is asked for again
#: (_redial_if_upcoming) at most once per member per _REDIAL_COOLDOWN
#: periods. Who was redialed is remembered only while upcoming() names a
#: member (a few each period), at most _MAX_REDIAL_MEMORY of them (cooldown.py).
_REDIAL_COOLDOWN = 8
_MAX_REDIAL_MEMORY = 64
#: Suspicion minimum multiplier while a partition heals (see _transition).
_MERGE_SUSPICION = 2
_MAX_HINT_MEMORY = 1024

#: A merge window (see _pp_burst) lasts this many push/pull burst intervals
#: plus the gossip horizon (retransmit_limit periods).
_MERGE_BURSTS = 3

#: Headroom for the frame header (seq, incarnation, body) in piggyback budgeting.
_HEADER_BYTES = 64 + wire.MAX_PEER_ID_BYTES


def _revival(old: State | None, new: State) -> bool:
    """A member we held dead or left is alive again: the sign of a healed
    partition (a join or a refuted suspicion is not)."""
    return new is State.ALIVE and (old is State.DEAD or old is State.LEFT)


@dataclass(slots=True)
class SwimStats:
    """Counters of things that went wrong or were refused (never raised)."""

    malformed: int = 0  # undecodable / out-of-bounds frames
    unknown_body: int = 0  # frames with no body we know (a newer version's): ignored, no offence
    misdirected: int = 0  # Ping for another peer ID, frames from ourselves
    implausible: int = 0  # updates with an impossible incarnation jump
    ahead: int = 0  # accusations at an incarnation the member never announced to us (ignored)
    unsigned: int = 0  # rumours that needed the member's signature (raise incarnation, left) and had none
    forged: int = 0  # signatures that did not verify
    unverified: int = 0  # signed updates beyond the per-frame verification budget (taken as unsigned)
    dead_rumours: int = 0  # others' "dead" about a member we held alive: became our suspicion
    stretched: int = 0  # running suspicions a healing window made wait its longer minimum
    slowed_verdicts: int = 0  # suspicions taken on in poor health: a longer minimum (awareness_slows_verdicts)
    checks: int = 0  # pings to a member a rumour we could not believe said had moved on
    checks_unconnected: int = 0  # ... not sent: no connection held to the member (a check never dials)
    unsolicited: int = 0  # Nack we did not ask for (late, or for a probe that ended)
    dropped_indirect: int = 0  # PingReq refused: too many pending (answered with a Nack)
    indirect_pings: int = 0  # PingReq served: we pinged the target for the asker (may dial it)
    indirect_unconnected: int = 0  # PingReq answered with a Nack at once: no connection to the target, our score > 0
    dropped_members: int = 0  # member table full
    refutations: int = 0  # we refuted a suspicion/death about ourselves
    suspected: int = 0  # our own probe failed and we started a suspicion
    suspected_nacked: int = 0  # ... with a helper's Nack (it could not reach the target either)
    suspected_lost: int = 0  # ... a connection to the target lost without a goodbye (before or during the probe)
    suspected_unhelped: int = 0  # ... with no helper to ask (no other live member)
    suspected_again: int = 0  # ... silent again, spared before (spared_again)
    waited_nacks: int = 0  # unanswered probes whose helpers were all silent at the period's end, ours healthy until then: one more period
    waited_acked: int = 0  # ... of which were answered in it
    spared_silent: int = 0  # probes with all helpers silent (in the extra period too, if waited): no accusation (suspect_when_helpers_silent)
    spared_again: int = 0  # ... silent again, target not heard from since, we no worse: accused (suspected or confirmed)
    declared_dead: int = 0  # our own suspicion timer expired on someone
    rejoin_proposals: int = 0  # connected peers proposed again (then pinged as joiners) while we had no live member (rejoin_alone_after)
    gossip_sent: int = 0  # Gossip frames (updates only) sent between probes
    addrs_learnt: int = 0  # live members held without addresses that got them later (_learn_addrs)
    connected_probes: int = 0  # probes drawn among connected members (probe_connected_min)
    roster_probes: int = 0  # ... and, while so, probes drawn from the whole roster (roster_probe_every)
    ring_probes: int = 0  # probes of our successor on the hash ring (ring_probe_every)
    connections_lost: int = 0  # ConnectionLost hints about live members (a connection ended without a goodbye, or a re-sync found it gone)
    hinted_probes: int = 0  # ... of which moved the member to the front of the probe order
    redialed_ahead: int = 0  # connections our next probes need, closed in order and asked for again at once
    probe_closes: int = 0  # probes whose target closed its connection in order before answering (close_grace)
    graced: int = 0  # ... of which reached the period's end unanswered and got one more period
    graced_acked: int = 0  # ... of which were answered in it (a suspicion and its refutation saved)
    # push/pull anti-entropy (pushpull.py)
    push_pulls: int = 0  # exchanges we started
    push_pulls_served: int = 0  # REQUESTs we answered with our entries (or "in sync")
    push_pull_busy: int = 0  # REQUESTs we refused (rate limit) + our REQUESTs refused
    push_pull_silent: int = 0  # our REQUEST never answered (partner backed off)
    push_pull_unsolicited: int = 0  # REPLY/PUSH frames for no exchange of ours (or too late)
    push_pull_excess: int = 0  # frames/entries beyond an exchange's bounds (dropped)
    push_pull_entries: int = 0  # entries received and merged
    push_pull_changes: int = 0  # members of our view those entries changed


class _Probe:
    __slots__ = ("target", "seq", "timeout_at", "acked", "helpers", "nacks", "closed", "lost", "silent", "prior",
                 "raised")

    def __init__(self, target: PeerId, seq: int, timeout_at: float) -> None:
        self.target = target
        self.seq = seq
        self.timeout_at = timeout_at
        self.acked = False
        self.helpers: frozenset[PeerId] = frozenset()
        self.nacks: set[PeerId] = set()
        self.closed = False  # the target closed its connection in order while we waited (close_grace)
        self.lost = False  # a connection to the target was lost (no goodbye) just before or during the probe: no grace
        self.silent = False  # its helpers were all silent at its period's end (awareness counted then)
        self.prior = 0  # ... our awareness before the silence raised it
        self.raised = 0  # ... and right after

    @property
    def waited(self) -> bool:
        """Silent, and we were healthy until then (awareness 0): one more period for late Nacks."""
        return self.silent and self.prior == 0


class _Indirect:
    __slots__ = ("origin", "origin_seq", "target")

    def __init__(self, origin: PeerId, origin_seq: int, target: PeerId) -> None:
        self.origin = origin
        self.origin_seq = origin_seq
        self.target = target


class SwimCore:
    """One member's SWIM + Lifeguard protocol state. Pure: no I/O, no clock."""

    def __init__(
        self,
        local_id: PeerId,
        addrs: Iterable[bytes] = (),
        *,
        rng: random.Random,
        now: float,
        config: SwimConfig | None = None,
        incarnation: int = 0,
        base: RosterBase | None = None,
        sign: Signer | None = None,
        verify: Verifier | None = None,
    ) -> None:
        """``base`` pre-populates the table with alive members (a simulator's warm
        start, shared read-only between cores); real nodes start empty and learn
        members through MemberDiscovered and gossip.

        ``sign(data)`` signs with our identity key and ``verify(peer, data,
        sig)`` checks a member's signature (signature.py; the libp2p versions
        are in crypto.py). Without ``sign`` our updates go unsigned (others
        accept them only first-hand); without ``verify`` no relayed signature
        is believed. ``incarnation`` is where we start (persisted by the
        adapter across restarts)."""
        self.config = config or SwimConfig()
        self.local_id = local_id
        self.addrs = tuple(addrs)
        if not 0 <= incarnation <= MAX_INCARNATION - 1:
            raise ValueError("incarnation out of range")
        self.incarnation = incarnation
        self._sign = sign
        self._signatures = SignatureCache(verify)
        self._verify_budget = 0
        self._refute_period = -1
        self._checked: set[PeerId] = set()
        self._checks_period = -1
        self.stats = SwimStats()
        self.awareness = Awareness(self.config.awareness_max_multiplier)
        self._rng = rng
        self._now = now
        self._table = MemberTable(base, exclude=local_id)
        self._order = ProbeOrder(rng)
        #: Members we hold a connection to (probe_connected_min; else unused).
        self._connected = ConnectedOrder(lambda: random.Random(rng.getrandbits(64)))
        self._told_connections = False  # the adapter reports connections (a simulator may not)
        #: Probe targets drawn ahead (config.connect_ahead), oldest first.
        self._ahead: collections.deque[PeerId] = collections.deque()
        #: While probing over connections: the whole roster's draw for its next
        #: turn (roster_probe_every), made connect_ahead periods early, and
        #: the period it is due.
        self._roster_next: PeerId | None = None
        self._roster_due: int | None = None
        #: Our successor on the hash ring of live members (ring_probe_every).
        self._ring = RingSuccessor(local_id) if self.config.ring_probe_every else None
        #: ... and our predecessor on it, whose ring turns probe us (watcher()),
        #: with the period its last Ping reached us: (peer, period).
        self._ring_before = RingPredecessor(local_id) if self.config.ring_probe_every else None
        #: Both, for the hooks that keep them in step with the table.
        self._rings: tuple[RingSuccessor, ...] = tuple(r for r in (self._ring, self._ring_before) if r is not None)
        self._watcher_pinged: tuple[PeerId, int] | None = None
        self._queue = BroadcastQueue(self.config.max_broadcast_queue)
        self._suspicions: dict[PeerId, Suspicion] = {}
        self._timers: list[tuple[float, int, int, object]] = []
        self._timer_count = 0
        self._seq = rng.getrandbits(32)
        # Randomness for push/pull (and the reconnect phase) comes from its
        # own stream, so that it does not shift the failure detector's draws.
        self._pp_rng = random.Random(self._seq * 0x9E3779B97F4A7C15)
        self._gossip_rng = random.Random(self._seq * 0x9E3779B97F4A7C15 + 1)
        self._contacts = RecentContacts()
        self._hinted: Cooldown[PeerId] = Cooldown(_HINT_COOLDOWN, _MAX_HINT_MEMORY)  # ConnectionLost hints
        self._redialed: Cooldown[PeerId] = Cooldown(_REDIAL_COOLDOWN, _MAX_REDIAL_MEMORY)  # _redial_if_upcoming
        #: One bucket for all hints, on the period clock (see _on_connection_lost).
        self._hint_budget = PeerRateLimiter(1 / _HINT_REFILL, _MAX_HINTED, max_peers=1)
        self._gossip_at = math.inf  # when the armed gossip timer fires (inf: none armed)
        #: The queue's push count when a gossip round found nothing to send
        #: (no live contact, or nothing that fits a frame): no new round until
        #: something new is queued, so a stuck queue does not wake us 5x/s.
        self._gossip_idle_at = -1
        self._probe: _Probe | None = None
        #: Last period's probe, unanswered, whose target had closed its
        #: connection in order (close_grace) or whose helpers had all been
        #: silent: finished at the next tick, or at once by a ConnectionLost
        #: from its target.
        self._late: _Probe | None = None
        #: Members a probe spared (its helpers all silent) that we have not
        #: heard from since -> our awareness right after the spare if we were
        #: healthy before it, else None; insertion-ordered, bounded by max_members.
        self._spared: dict[PeerId, int | None] = {}
        self._indirect: dict[int, _Indirect] = {}
        self._joining: dict[PeerId, list] = {}  # peer -> [addrs, attempts left]
        #: Alone though connected: the period of the next re-proposal (None:
        #: not alone at the last period) and the wait after it.
        self._alone_at: int | None = None
        self._alone_gap = self.config.rejoin_alone_after
        cfg = self.config
        self._candidates = CandidateSet(
            rng,
            max_size=cfg.max_candidates,
            per_gossiper=cfg.max_candidates_per_gossiper,
            attempts=cfg.candidate_attempts,
            backoff=cfg.candidate_backoff,
            vouchers=cfg.candidate_vouchers,
        )
        self._dead: list[PeerId] = []  # dead members, for random reconnect pings
        self._dead_pos: dict[PeerId, int] = {}
        self._period = 0
        # Members that started together must not all ping the dead in the same period.
        self._reconnect_phase = self._pp_rng.randrange(max(1, self.config.reconnect_every))
        self._leaving = False
        self._stopped = False
        self._own_alive: MemberUpdate | None = None
        self._own_until = -1
        self._pp = Exchanges()
        self._pp_next = float("inf")  # when our next periodic push/pull is due
        #: Candidate back-offs, once lifted (a member came back from the dead), are not lifted again before this.
        self._forgive_at = -math.inf
        #: Set by _apply: a push/pull partner, and whether it came back from
        #: dead/left (a partition healing) rather than joined.
        self._rejoined: tuple[PeerId, bool] | None = None
        self._flux_window = -1
        self._flux_count = 0
        self._revived_count = 0  # ... of them, members back from dead/left (see _flux)
        #: Member -> since when we held it dead/left, for the healing window
        #: its first frame opened (_heard_from_the_dead; bounded like the
        #: hint memory: an entry matters only while the member is held).
        self._healed_by: dict[PeerId, float] = {}
        self._merging_until = -1.0  # views are merging until then: see _pp_burst
        self._healing_until = -1.0  # ... because members came back from dead/left (see _transition)
        self._in_merge = False  # _merge is applying a partner's entries
        self._announce_self()
        # Random phase so members' periods are not synchronized.
        self._next_tick_at = now + rng.random() * self.config.probe_interval
        self._arm(self._next_tick_at, _TICK, None)
        if self.config.push_pull_interval > 0:
            first = self._pp_rng.random() * self.config.push_pull_interval_for(self._table.live_count + 1)
            self._pp_schedule(now + first)

    # ------------------------------------------------------------------ API

    @property
    def stopped(self) -> bool:
        """True after a graceful leave completed: the core does nothing more."""
        return self._stopped

    def member(self, peer: PeerId) -> Member | None:
        return self._table.get(peer)

    def members(self) -> list[Member]:
        """Every member we know, including dead/left tombstones (check .state)."""
        return list(self._table)

    def alive_count(self) -> int:
        """Members we consider alive or suspect, excluding ourselves."""
        return self._table.live_count

    def upcoming(self) -> list[PeerId]:
        """The live members whose connections our probes need now or next,
        soonest first: this period's target and helpers until answered, then
        last period's target while its probe has one more period (a closed
        connection's grace, close_grace, or helpers that were all silent)
        and no answer, with its helpers in the second case (their Nacks are
        awaited); then the next period's target (our ring successor on the
        ring's turn, else the whole roster's when due, else the first drawn
        ahead), then the rest drawn ahead, then the roster's draw. At most
        2k + connect_ahead + _MAX_HINTED + 4 (lost connections are drawn
        ahead too).

        For the connection manager, which keeps what a service names: a
        connection closed as idle a moment before its probe turns the probe's
        timeout into a dial, and a live member into a suspect. ConnectAhead
        alone cannot prevent that, since it finds the connection still open
        (docs/swim.md, "Probes keep their connections")."""
        out: list[PeerId] = []
        p = self._probe
        if p is not None and not p.acked:
            out.append(p.target)
            out.extend(sorted(p.helpers))  # sorted: the same order on every run
        late = self._late
        if late is not None and not late.acked:
            out.append(late.target)  # its helpers' window ended with its period...
            if late.silent:
                out.extend(sorted(late.helpers))  # ... unless we wait for their Nacks
        ahead = self._ahead
        ring = self._ring_successor(1)
        hinted = self._hint_first(self._period + 1)  # as _next_target will decide next period
        roster, due, nxt = self._roster_next, self._roster_due, self._period + 1
        soon = roster is not None and due is not None and due <= nxt  # next period's, or the one after the ring's
        if not hinted:
            if soon and (ring is None or due < nxt):  # due, or put off already: before the ring
                out.append(roster)  # type: ignore[arg-type]
            if ring is not None:
                out.append(ring.peer_id)
            if soon:
                out.append(roster)  # type: ignore[arg-type]
        out.extend(ahead)
        if ring is not None:
            out.append(ring.peer_id)
        if roster is not None:
            out.append(roster)
        return [peer for peer in dict.fromkeys(out) if self._is_live(peer)]

    def watcher(self) -> PeerId | None:
        """Our predecessor on the ring among live members, while it probes us:
        the member whose ring turns ping us every ``ring_probe_every`` of its
        periods, if its last Ping came within ``_watcher_window()`` of ours.
        For the connection manager (keep_connected): that member's probes
        reuse one stream, so the connection looks idle to us; closed from our
        side, its next probe pays a dial and, on a slow link, times out
        (docs/swim.md, "The prober's connection, kept by its target"). The
        Ping is asked for so that a member that made its peer ID land just
        before ours gets nothing kept unless it keeps pinging us (one name,
        inside the connection manager's cap, as long as it does)."""
        ring, seen = self._ring_before, self._watcher_pinged
        if ring is None or seen is None:
            return None
        peer = ring.predecessor(self._table)
        if peer != seen[0] or self._period - seen[1] > self._watcher_window():
            return None
        return peer if self._is_live(peer) else None

    def _watcher_window(self) -> int:
        """Periods a watcher's Ping counts for: its ring turn at the slowest
        its health (awareness) can stretch its periods, and one more."""
        cfg = self.config
        return cfg.ring_probe_every * cfg.awareness_max_multiplier + 1

    def connected_peers(self) -> list[PeerId]:
        """The peers we were told are connected (ConnectionOpened) and not
        since closed or lost: an adapter that lost connection events
        re-syncs against it. Empty with probe_connected_min 0 (no order kept)."""
        return list(self._connected)

    def keep_connected(self) -> list[PeerId]:
        """What the connection manager should spare for SWIM, most needed
        first: the connections our probes need now or next (upcoming), then
        the one our watcher probes us over (watcher), then our ring successor
        between its turns, then, while probing over connections, the
        probe_connected_min members held longest."""
        out = self.upcoming()
        w = self.watcher()
        if w is not None and w not in out:
            out.append(w)
        succ = self._ring.successor(self._table) if self._ring is not None else None
        if succ is not None and succ not in out and self._is_live(succ):
            # Between its turns too: the watcher's end keeps it the same way,
            # so the ring's connection is not trimmed and its turns dial once.
            out.append(succ)
        if self._probe_connected():
            # The members we have been connected to longest (connected.py,
            # held): however many connections others open to us, these
            # neighbours keep probing us, and we them.
            out += [p for p in self._connected.held(self.config.probe_connected_min, self._is_live)
                    if p not in out]
        return out

    @property
    def period(self) -> int:
        """Protocol periods started so far (our own protocol clock)."""
        return self._period

    def own_update(self, state: State) -> MemberUpdate:
        """Our own ``state`` at our current incarnation, signed if we can."""
        return signed_update(self._sign, self.local_id, state, self.incarnation,
                             self.addrs if state is State.ALIVE else ())

    def candidates(self) -> int:
        """Strangers heard of through gossip, waiting to answer a ping (not members)."""
        return len(self._candidates)

    def is_candidate(self, peer: PeerId) -> bool:
        return peer in self._candidates

    def admission_stats(self) -> dict[str, int]:
        c, sig = self._candidates, self._signatures
        return {
            "candidates": len(c),
            "refused": c.refused,
            "evicted": c.evicted,
            "expired": c.expired,
            "forgiven": c.forgiven,
            "vouched": c.vouched,
            "signatures_verified": sig.verified,
            "signature_cache_hits": sig.hits,
        }

    def next_deadline(self) -> float | None:
        """When ``handle(now, Tick())`` should next be called (None: never)."""
        timers = self._timers
        while timers and self._is_stale(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def handle(self, now: float, event: Input) -> list[Action]:
        out: list[Action] = []
        if self._stopped:
            return out
        if now > self._now:
            self._now = now
        self._run_timers(out)
        if self._stopped:
            return out
        if isinstance(event, Received):
            self._on_received(event.sender, event.frame, out)
        elif isinstance(event, Tick):
            pass
        elif isinstance(event, MemberDiscovered):
            self._on_discovered(event.peer_id, tuple(event.addrs), out)
        elif isinstance(event, Leave):
            self._on_leave(out)
        elif isinstance(event, ConnectionLost):
            # With probe_connected_min the member keeps its turns among the
            # connected, though no longer held: its process may have died, and
            # its neighbours are the ones who probe it (the hint below is
            # bounded and can be spent). The probe dials; a live member is
            # connected again by it.
            if self.config.probe_connected_min:
                self._connected.lost(event.peer_id)
            p = self._probe
            if p is not None and p.target == event.peer_id:
                p.lost = True  # ended without a goodbye after all: maybe a crash, no grace
            late = self._late
            if late is not None and late.target == event.peer_id:
                self._late = None
                late.lost = True  # maybe a crash: evidence about it, whatever the helpers said
                self._conclude(late, out)  # its extra period is over: now, as without it
            self._on_connection_lost(event.peer_id)
        elif isinstance(event, ConnectionClosed):
            if self.config.probe_connected_min:
                self._connected.disconnected(event.peer_id)
            if event.by_peer is not False:  # not our own close: the member's process ran it
                self._grace_if_probed(event.peer_id, out)
            self._redial_if_upcoming(event.peer_id, out)
        elif isinstance(event, ConnectionOpened):
            if self.config.probe_connected_min and event.peer_id != self.local_id:
                self._told_connections = True
                self._connected.connected(event.peer_id, self._is_member)
        else:
            raise TypeError(f"not a SWIM input: {event!r}")
        self._gossip_arm()
        return out

    # --------------------------------------------------------------- timers

    def _arm(self, when: float, kind: int, key: object) -> None:
        self._timer_count += 1
        heapq.heappush(self._timers, (when, self._timer_count, kind, key))

    def _is_stale(self, timer: tuple[float, int, int, object]) -> bool:
        when, _, kind, key = timer
        if kind == _PROBE_TIMEOUT:
            p = self._probe
            return p is None or p.seq != key or p.acked
        if kind == _INDIRECT:
            return key not in self._indirect
        if kind == _SUSPICION:
            s = self._suspicions.get(key)  # type: ignore[arg-type]
            return s is None or s.deadline != when
        if kind == _REAP:
            peer, since = key  # type: ignore[misc]
            m = self._table.get(peer)
            return m is None or m.live or m.since != since
        if kind == _PUSHPULL:
            return when != self._pp_next
        if kind == _GOSSIP:
            return when != self._gossip_at
        return False

    def _run_timers(self, out: list[Action]) -> None:
        timers = self._timers
        now = self._now
        while timers and timers[0][0] <= now and not self._stopped:
            timer = heapq.heappop(timers)
            if self._is_stale(timer):
                continue
            _, _, kind, key = timer
            if kind == _TICK:
                self._on_tick(out)
            elif kind == _PROBE_TIMEOUT:
                self._on_probe_timeout(out)
            elif kind == _INDIRECT:
                ind = self._indirect.pop(key)  # type: ignore[arg-type]
                self._send(out, ind.origin, ind.origin_seq, Nack())
            elif kind == _SUSPICION:
                self._on_suspicion_expired(key, out)  # type: ignore[arg-type]
            elif kind == _REAP:
                peer = key[0]  # type: ignore[index]
                self._table.remove(peer)
                self._dead_discard(peer)
                self._suspicions.pop(peer, None)
            elif kind == _LEAVE:
                self._stopped = True
                out.append(LeaveComplete())
            elif kind == _PUSHPULL:
                self._on_push_pull_due(out)
            elif kind == _GOSSIP:
                self._on_gossip(out)

    # -------------------------------------------------------------- probing

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFFFFFFFFFF
        return self._seq

    def _on_tick(self, out: list[Action]) -> None:
        cfg = self.config
        late, self._late = self._late, None
        if late is not None:
            self._conclude(late, out)
        self._finish_probe(out)
        self._period += 1
        if not self._leaving:
            target = self._next_target(out)
            nxt = self._ring_successor(1) if self.config.connect_ahead else None
            if nxt is not None and (target is None or nxt.peer_id != target.peer_id):
                # Next period is the ring's: have the connection ready (the
                # adapter does nothing if it holds one), as for the draws ahead.
                out.append(ConnectAhead(nxt.peer_id, nxt.addrs))
            if target is not None:
                seq = self._next_seq()
                self._probe = _Probe(target.peer_id, seq, self._now + self.awareness.scale(cfg.probe_timeout))
                if self._fresh_hint(target.peer_id, self._period):
                    # Probed because its connection was just lost without a
                    # goodbye: the same evidence as a loss during the probe.
                    self._probe.lost = True
                self._send(out, target.peer_id, seq, Ping(target.peer_id), target.addrs, why="probe")
                self._arm(self._probe.timeout_at, _PROBE_TIMEOUT, seq)
            for peer, entry in list(self._joining.items()):
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._joining[peer]
                self._send(out, peer, self._next_seq(), Ping(peer), entry[0], why="join")
            self._rejoin_if_alone(out)
            # Strangers we heard of: a ping each; they join if they answer.
            # Not probes: silence costs them their slot, nothing else.
            for peer, addrs in self._candidates.pick(cfg.candidate_pings_per_period, self._now):
                self._send(out, peer, self._next_seq(), Ping(peer), addrs, why="candidate")
            if self._dead and (self._period + self._reconnect_phase) % cfg.reconnect_every == 0:
                peer = self._dead[self._rng.randrange(len(self._dead))]
                m = self._table.get(peer)
                self._send(out, peer, self._next_seq(), Ping(peer), m.addrs if m else (), why="dead")
        self._next_tick_at = self._now + self.awareness.scale(cfg.probe_interval)
        self._arm(self._next_tick_at, _TICK, None)

    def _rejoin_if_alone(self, out: list[Action]) -> None:
        """No live member but connections: ping the connected peers we hold
        nothing about as joiners again, backing off (``rejoin_alone_after``).
        Their first join pings may have gone unanswered only because they
        were busy; a connection that lasts is never new again."""
        cfg = self.config
        if not cfg.rejoin_alone_after or self._table.live_count:
            self._alone_at, self._alone_gap = None, cfg.rejoin_alone_after
            return
        if self._alone_at is None:
            self._alone_at = self._period + self._alone_gap
            return
        if self._period < self._alone_at:
            return
        room = cfg.max_pending_indirect - len(self._joining)
        # A member held dead or left gets its pings from reconnect_every; a
        # peer still joining has its own.
        peers = [p for p in self._connected if p not in self._joining and self._table.get(p) is None][:max(room, 0)]
        if not peers:
            return  # nobody to ask yet: again next period, the wait not spent
        self._alone_gap = min(2 * self._alone_gap, max(cfg.rejoin_alone_max, cfg.rejoin_alone_after))
        self._alone_at = self._period + self._alone_gap
        for peer in peers:
            self.stats.rejoin_proposals += 1
            self._propose(peer, (), out)

    def _next_target(self, out: list[Action]) -> Member | None:
        """This period's probe target: the oldest drawn ahead that is still
        live (else a fresh draw). Then draws ahead again, telling the adapter
        to connect to each new one (ConnectAhead), so that by its period the
        connection is there. Every draw is kept, so the targets come in the
        randomized round-robin's order as without drawing ahead, except that
        a member who joins can only take a position not yet drawn, and one
        skipped for being down when its turn came waits for the next round."""
        ahead = self._ahead
        connected = self._probe_connected()
        if connected:
            self._roster_ahead(out)
        elif self._roster_due is not None:
            # Out of the mode: the roster's own draws take over (below), the
            # one drawn for its turn first after any fresh hint.
            peer = self._roster_next
            if peer is not None and peer not in ahead:
                k = 0
                while k < len(ahead) and self._fresh_hint(ahead[k], self._period):
                    k += 1
                ahead.insert(k, peer)
            self._roster_next = self._roster_due = None
        if not self._hint_first(self._period):
            # A member whose connection was just lost goes first; else, on
            # the ring's turn, our successor, and the round-robin's draws
            # wait a period; else, while probing over connections, the whole
            # roster's turn once due. A roster turn already put off (by the
            # ring or a hint) goes before the ring: hints are budgeted to one
            # per 2 periods, so ring and hints together cannot hold it off
            # for more than 2 periods.
            overdue = connected and self._roster_due is not None and self._period > self._roster_due
            m = None if overdue else self._ring_successor(0)
            if m is not None:
                self.stats.ring_probes += 1
                return m
            m = self._roster_turn() if connected else None
            if m is not None:
                self.stats.roster_probes += 1
                self._roster_ahead(out, after_turn=True)  # this period may be the next turn's point to draw
                return m
        target = None
        while ahead and target is None:
            m = self._table.get(ahead.popleft())
            if m is not None and m.live:
                target = m
        if connected:
            # Over the connections we hold (connected.py): no draws ahead, no
            # dials but to members whose connection was lost. ``ahead`` holds
            # ConnectionLost hints, and for a few periods after the switch the
            # roster's draws made before it.
            if target is not None:
                return target
            peer = self._connected.next(self._is_live)
            if peer is not None:
                self.stats.connected_probes += 1
                return self._table.get(peer)
        if target is None:
            target = self._draw()
        for _ in range(self.config.connect_ahead - len(ahead)):
            m = self._draw()
            if m is None:
                break
            if m.peer_id != (target.peer_id if target is not None else None) and m.peer_id not in ahead:
                out.append(ConnectAhead(m.peer_id, m.addrs))  # a repeat is connected already or soon
            ahead.append(m.peer_id)
        return target

    def _roster_ahead(self, out: list[Action], after_turn: bool = False) -> None:
        """While probing over connections: schedule the whole roster's next
        turn, every roster_probe_every periods. connect_ahead periods (at
        most roster_probe_every - 1) before it, draw its target from the
        roster's round-robin and have its connection made (ConnectAhead), as
        the roster's draws ahead do; with no lead, it is drawn at its turn.
        ``after_turn``: called again in the period a put-off turn was taken,
        whose own point to draw the next was skipped while it was pending."""
        every = self.config.roster_probe_every
        if not every or self._roster_due is not None:
            return
        lead = min(self.config.connect_ahead, every - 1)
        if (self._period + lead) % every or (after_turn and not lead):
            return
        self._roster_due = self._period + lead
        if lead:
            m = self._draw()
            if m is not None:
                self._roster_next = m.peer_id
                out.append(ConnectAhead(m.peer_id, m.addrs))

    def _roster_turn(self) -> Member | None:
        """While probing over connections, once the whole roster's turn is
        due (_roster_ahead): the member drawn for it if still live, else a
        fresh draw (whose dial then falls inside the probe). None before.
        The caller gives a hint and the ring's turn precedence, but not the
        ring over a turn already put off: at most 2 periods late."""
        due = self._roster_due
        if due is None or self._period < due:
            return None
        peer, self._roster_next, self._roster_due = self._roster_next, None, None
        m = self._table.get(peer) if peer is not None else None
        return m if m is not None and m.live else self._draw()

    def _hint_first(self, period: int) -> bool:
        """In ``period``, the head of the draws ahead is a lost connection
        hinted at most 2 periods before: it is probed before the ring's turn."""
        ahead = self._ahead
        return bool(ahead) and self._fresh_hint(ahead[0], period)

    def _fresh_hint(self, peer: PeerId, period: int) -> bool:
        """``peer`` was hinted (ConnectionLost) at most 2 periods before ``period``."""
        return self._hinted.within(peer, period, 2)

    def _ring_successor(self, ahead: int) -> Member | None:
        """Our successor on the ring (ring.py) if the period ``ahead`` periods
        from now is the ring's turn, else None."""
        ring = self._ring
        if ring is None or (self._period + ahead) % self.config.ring_probe_every:
            return None
        peer = ring.successor(self._table)
        m = self._table.get(peer) if peer is not None else None
        return m if m is not None and m.live else None

    def _on_connection_lost(self, peer: PeerId) -> None:
        """A member's connection ended without a goodbye: probe it next period.

        A member whose process died is otherwise found only when its turn in
        the round-robin comes (P99 ~5 periods at 1,000 members); the kernel
        closing its sockets tells every peer connected to it at once. Its
        probe still decides: a member that is fine answers (after a dial).

        Bounded so that no one can take our probing over by dropping
        connections on purpose (or by closes that lose their GO_AWAY): a
        member is hinted at most once per HINT_COOLDOWN periods, and hints
        spend tokens that refill at one per HINT_REFILL periods (at most
        _MAX_HINTED at once), so the round-robin keeps most of its pace."""
        m = self._table.get(peer)
        if m is None or not m.live or self._leaving:
            return
        self.stats.connections_lost += 1
        probe = self._probe
        if probe is not None and probe.target == peer and not probe.acked:
            return  # being probed right now
        period = self._period
        if self._hinted.cooling(peer, period) or not self._hint_budget.allow(None, period):
            return
        self._hinted.mark(peer, period)
        ahead = self._ahead
        if peer in ahead:
            ahead.remove(peer)
        ahead.appendleft(peer)
        self.stats.hinted_probes += 1

    def _probe_connected(self) -> bool:
        """probe_connected_min is on and at least that many connected peers
        are live members (peers that are not, DHT-only or other clients,
        do not count: they are never probed)."""
        need = self.config.probe_connected_min
        if not need or len(self._connected) < need:
            return False
        for peer in self._connected:
            if self._is_live(peer):
                need -= 1
                if not need:
                    return True
        return False

    def _grace_if_probed(self, peer: PeerId, out: list[Action]) -> None:
        """``peer`` closed its connection to us in order (its process ran the
        close; a close an adapter cannot attribute counts as the peer's). If we
        are probing it and it has not answered, the probe gets one more
        period (close_grace, _finish_probe); a close after the probe's
        timeout, when the fallback Ping went out on the closing connection,
        sends one more Ping (its dial the adapter's)."""
        p = self._probe
        if p is not None and p.target == peer and not p.acked and not p.closed and self.config.close_grace:
            p.closed = True
            self.stats.probe_closes += 1
            if self._now >= p.timeout_at:
                m = self._table.get(peer)
                self._send(out, peer, p.seq, Ping(peer), m.addrs if m else (), why="grace")

    def _redial_if_upcoming(self, peer: PeerId, out: list[Action]) -> None:
        """A connection our probes need now or next was closed in order: ask
        for it again at once (ConnectAhead). Our connection manager spares
        these (keep_connected), but the member's own cannot know our probe is
        coming and closes the connection as idle; the probe would then pay a
        dial of several round trips inside its timeout, and a live member on
        a slow link would be suspected (each suspicion and refutation is then
        piggybacked by every member: docs/swim.md, "A closed connection our
        probe needs, asked for again").

        Only members upcoming() names, at most once per member per
        _REDIAL_COOLDOWN periods: a member at its connection limit closes
        each new connection after the handshake, and our ring successor is
        upcoming every ring_probe_every periods, so without it one peer
        could have us dial it every time it closes. After our own close too
        (ConnectionClosed.by_peer False): our connection manager spares what
        keep_connected() names, so this rarely undoes our own trim, and in
        the 30-node trimming test without that sparing, redialing after our
        own closes cut false suspicions from 20 to 6 (seeds 1-4)."""
        cfg = self.config
        if not (cfg.connect_ahead and cfg.redial_upcoming) or self._leaving:
            return
        period = self._period
        if self._redialed.cooling(peer, period):
            return  # checked first: upcoming() builds a list
        m = self._table.get(peer)
        if m is None or peer not in self.upcoming():
            return
        self._redialed.mark(peer, period)
        self.stats.redialed_ahead += 1
        out.append(ConnectAhead(peer, m.addrs))

    def _is_member(self, peer: PeerId) -> bool:
        return self._table.get(peer) is not None

    def _is_alive(self, peer: PeerId) -> bool:
        m = self._table.get(peer)
        return m is not None and m.state is State.ALIVE

    def _is_live(self, peer: PeerId) -> bool:
        m = self._table.get(peer)
        return m is not None and m.live

    def _draw(self) -> Member | None:
        """The next live member in the randomized round-robin."""
        table = self._table
        for _ in range(table.roster_len + 1):
            idx = self._order.next(table.roster_len)
            if idx is None:
                return None
            m = table.get(table.at(idx))
            if m is not None and m.live:
                return m
        return None

    def _on_probe_timeout(self, out: list[Action]) -> None:
        probe = self._probe
        assert probe is not None
        target = self._table.get(probe.target)
        if target is None or not target.live:
            return
        helpers = self._helpers(probe.target)
        probe.helpers = frozenset(m.peer_id for m in helpers)
        # The helper must answer (Nack) before our period ends, with slack for
        # the two network legs: give it 70 % of what is left of the period.
        next_tick = self._next_tick_at
        wait = max(0.0, next_tick - self._now) * 0.7
        body = PingReq(probe.target, target.addrs, wait)
        for h in helpers:
            self._send(out, h.peer_id, probe.seq, body, h.addrs)
        # Second direct attempt, in parallel (memberlist's TCP fallback ping):
        # one lost datagram should not be enough to start a suspicion.
        self._send(out, probe.target, probe.seq, Ping(probe.target), target.addrs, why="fallback")

    def _helpers(self, target: PeerId) -> list[Member]:
        """Who probes ``target`` for us: k live members drawn among those
        whose connections we have held longest (_held_pool), the rest, if
        fewer are there, among all live members (memberlist's uniform draw).

        Over libp2p a helper we hold no connection to costs a dial before our
        PingReq even leaves, and its Nack must be back within the period: it
        rarely is, and a silent helper counts against *our* health. After a
        partition's heal at 100 nodes on 2 cores, SWIM's opens to such helpers
        ran out of their 10 s by the hundred, and during the cut a helper
        across it could never answer, so every prober's score rose and its
        periods and verdicts stretched (docs/swim.md, "Helpers and checks over held connections"). Held
        longest (_held_pool), not any connection: a peer that opens many
        connections to us must not choose our helpers."""
        k = self.config.indirect_checks
        if k <= 0:
            return []
        pool = self._held_pool(lambda p: p != target and self._is_alive(p))
        chosen = [m for m in (self._table.get(p) for p in self._rng.sample(pool, min(k, len(pool))))
                  if m is not None]
        if len(chosen) < k:
            # Too few held: the rest drawn among every live member (a dial each, maybe).
            ids = {m.peer_id for m in chosen}
            chosen += self._table.sample(self._rng, k - len(chosen), lambda m: m.state is State.ALIVE
                                         and m.peer_id != target and m.peer_id not in ids)
        return chosen

    def _known_unconnected(self, peer: PeerId) -> bool:
        """We hold no connection to ``peer``, as far as the adapter has told
        us: False when it reports no connections (SWIM's own simulator,
        which delivers every frame)."""
        return self._told_connections and not self._connected.holds(peer)

    def _held_pool(self, usable: Callable[[PeerId], bool]) -> list[PeerId]:
        """The members we have held a connection to longest for which
        ``usable`` holds: the first max(probe_connected_min, 4k), 12 by
        default (connected.py, held). Helpers and a merge window's push/pull
        partners are drawn among them: no dial, and not a set a peer can
        enter by opening connections to us (keep_connected asks the
        connection manager to spare the first probe_connected_min held live
        members while probing over connections)."""
        n = max(self.config.probe_connected_min, 4 * self.config.indirect_checks)
        return self._connected.held(n, usable)

    def _finish_probe(self, out: list[Action]) -> None:
        probe, self._probe = self._probe, None
        if probe is None or probe.acked:
            return
        if self._silent(probe):
            # Lifeguard at the period's end, as for any failed probe: not one
            # helper Nacked, so we may be the slow one. If we were healthy
            # until now, one more period for their Nacks, which come late on
            # a new connection (a helper Nacks at 70 % of what is left of our
            # period, leaving 0.15 s for the way back at the default
            # timings): a crashed target's arrive in it. Already unhealthy,
            # no wait: a late Nack from a starved network is as false as the
            # failed probe (a 50-node network sharing its cores: a merge held
            # for 21 s by them in one run of two, 3.5-6.5 s in three without).
            probe.prior = self.awareness.score
            self.awareness.apply(len(probe.helpers))
            probe.silent, probe.raised = True, self.awareness.score
            if probe.waited:
                self.stats.waited_nacks += 1
        if probe.closed and not probe.lost:
            # The target closed its connection in order a moment ago, so its
            # process was running; our second Ping waits on a new connection
            # whose dial outlasts the period. One more period (never two: a
            # probe started this tick has no grace yet).
            self.stats.graced += 1
            self._late = probe
            return
        if probe.waited:
            self._late = probe
            return
        self._conclude(probe, out)

    def _silent(self, probe: _Probe) -> bool:
        """Helpers asked and not one Nacked: the silence is likely ours
        (config.suspect_when_helpers_silent). A lost connection to the
        target is evidence about it, whatever the helpers said."""
        return (bool(probe.helpers) and not probe.nacks and not probe.lost
                and not self.config.suspect_when_helpers_silent)

    def _spare(self, probe: _Probe) -> bool:
        """A probe whose helpers were all silent at its period's end, and in
        its extra period if it had one: spare its target, unless we spared
        it before and have not heard a frame from it since, and were healthy
        until this probe or no worse than right after a spare made while
        healthy (a crash while our helpers stay starved is still suspected,
        one probe of it later: the ring's next turn, say). A prober unhealthy
        all along spares again: its silent probes say as little as its late
        Nacks (in a 50-node merge under CPU contention, 11 of the 14
        suspicions our own probes raised were second spares, every one
        false)."""
        if not probe.silent or not self._silent(probe):
            return False
        spared = self._spared
        if probe.target in spared:
            bar = spared[probe.target]
            if probe.waited or (bar is not None and probe.prior <= bar):
                self.stats.spared_again += 1
                return False
            return True  # the mark stays as it was
        if len(spared) >= self.config.max_members:
            del spared[next(iter(spared))]  # bounded: the oldest goes
        # A spare while healthy: our awareness right after it is the bar a
        # later silent probe of it must not exceed to accuse.
        spared[probe.target] = probe.raised if probe.waited else None
        return True

    def _conclude(self, probe: _Probe, out: list[Action]) -> None:
        """An unanswered probe at its end: Lifeguard's awareness (a silent
        probe's was counted at its period's end), then a suspicion, or
        none if its helpers stayed silent (_spare)."""
        if probe.acked:
            if probe.closed:
                self.stats.graced_acked += 1
            else:
                self.stats.waited_acked += 1
            return
        if not probe.silent:
            # Lifeguard: helpers that could not even Nack suggest *we* are the
            # problem (a silent probe's were counted at its period's end).
            expected = len(probe.helpers)
            self.awareness.apply(expected - len(probe.nacks) if expected else 1)
        if self._spare(probe):
            # Not one helper could say it failed to reach the target either,
            # in two periods: we do not accuse.
            self.stats.spared_silent += 1
            return
        before = self.stats.suspected
        self._suspect(probe.target, out)
        if self.stats.suspected > before:
            # Why, for the operator and the devnet's per-window counters (the
            # rest: suspect_when_helpers_silent=True).
            if probe.lost:
                self.stats.suspected_lost += 1
            elif probe.nacks:
                self.stats.suspected_nacked += 1
            elif not probe.helpers:
                self.stats.suspected_unhelped += 1
            elif probe.silent and self._silent(probe):
                self.stats.suspected_again += 1

    # ------------------------------------------------------------ receiving

    def _on_received(self, sender: PeerId, frame: bytes | Message, out: list[Action]) -> None:
        if isinstance(frame, (bytes, bytearray, memoryview)):
            try:
                msg = wire.decode(bytes(frame))
            except wire.UnknownBody:
                self.stats.unknown_body += 1
                return
            except wire.WireError:
                self.stats.malformed += 1
                return
        else:
            msg = frame
        if sender == self.local_id or not sender:
            self.stats.misdirected += 1
            return
        self._contacts.heard(sender, self._now)
        if self._spared:
            self._spared.pop(sender, None)  # alive after all: a silent probe may spare it again
        self._verify_budget = self.config.max_verifications_per_frame
        self._rejoined = None
        self._heard_from_the_dead(sender, msg.incarnation)
        for u in msg.updates[: self.config.max_updates_per_frame]:
            self._apply(u, sender, out)
        # First-hand: the authenticated sender is alive at this incarnation.
        self._first_hand(sender, msg.incarnation, out)
        body = msg.body
        if isinstance(body, Ping):
            if body.target and body.target != self.local_id:
                self.stats.misdirected += 1
                return
            m = self._table.get(sender)
            self._send(out, sender, msg.seq, Ack(), m.addrs if m else ())
            if self._ring_before is not None and sender == self._ring_before.predecessor(self._table):
                self._watcher_pinged = (sender, self._period)
        elif isinstance(body, Ack):
            self._on_ack(sender, msg.seq, out)
        elif isinstance(body, Nack):
            for p in (self._probe, self._late):
                if p is not None and p.seq == msg.seq and sender in p.helpers:
                    p.nacks.add(sender)
                    break
            else:
                self.stats.unsolicited += 1
        elif isinstance(body, PingReq):
            self._on_ping_req(sender, msg.seq, body, out)
        elif isinstance(body, PushPull):
            self._on_push_pull(sender, msg.seq, body, out)
        # Gossip: its updates are all it has, applied above; never answered.
        rejoined, self._rejoined = self._rejoined, None
        if rejoined is not None and not isinstance(body, PushPull):
            # Someone we held dead/left (or just discovered) answered: the two
            # sides of a partition meet, or a member joins. Swap views now.
            peer, healing = rejoined
            self._push_pull_with(peer, healing, out)

    def _on_ack(self, sender: PeerId, seq: int, out: list[Action]) -> None:
        probe, late = self._probe, self._late
        for p in (probe, late):
            if p is not None and p.seq == seq and (sender == p.target or sender in p.helpers):
                if not p.acked and sender == p.target and self._now <= p.timeout_at:
                    self.awareness.apply(-1)
                p.acked = True
                self._spared.pop(p.target, None)  # alive: forwarded by a helper, too
                if sender == p.target:
                    # Probed twice in a row (a small roster, a hint): an answer
                    # to either Ping says it is alive for both.
                    for q in (probe, late):
                        if q is not None and q.target == sender:
                            q.acked = True
                return
        ind = self._indirect.get(seq)
        if ind is not None and sender == ind.target:
            del self._indirect[seq]
            self._send(out, ind.origin, ind.origin_seq, Ack())
            return
        # Answers to join / reconnect pings land here: the header already did the work.

    def _on_ping_req(self, sender: PeerId, seq: int, body: PingReq, out: list[Action]) -> None:
        if self._leaving or body.target in (self.local_id, sender):
            self.stats.misdirected += 1
            return
        if len(self._indirect) >= self.config.max_pending_indirect:
            # Refused, but answered: a Nack says "I could not reach it" as
            # far as the asker can use it. Silence would count as the asker's
            # own fault and spare the target (suspect_when_helpers_silent),
            # so whoever filled our slots could hide a crash from everyone.
            self.stats.dropped_indirect += 1
            self._send(out, sender, seq, Nack(), dial=False)
            return
        if self.awareness.score > 0 and self._known_unconnected(body.target):
            # Someone else's probe would cost us a new connection (a dial and
            # its handshakes: tens of ms of CPU at both ends) while Lifeguard
            # already sees us in poor health (failed probes, refutations):
            # after a partition's heal at 100 nodes on 2 cores, helpers' dials
            # were half of all new connections in a run that never merged
            # (docs/swim.md, "A helper in poor health does not dial"). The
            # Nack says we are alive but will not ping it: the asker's score
            # is spared, and it suspects the target (which refutes, if alive)
            # rather than sparing it as it would for a silent helper.
            self.stats.indirect_unconnected += 1
            self._send(out, sender, seq, Nack(), dial=False)
            return
        cfg = self.config
        wait = body.timeout or self.awareness.scale(cfg.probe_timeout)
        wait = min(wait, cfg.probe_interval * cfg.awareness_max_multiplier)
        my_seq = self._next_seq()
        self.stats.indirect_pings += 1
        self._indirect[my_seq] = _Indirect(sender, seq, body.target)
        m = self._table.get(body.target)
        self._send(out, body.target, my_seq, Ping(body.target), body.target_addrs or (m.addrs if m else ()),
                   why="helper")
        self._arm(self._now + wait, _INDIRECT, my_seq)

    # ------------------------------------------------------------ membership

    def _apply(self, u: MemberUpdate, sender: PeerId, out: list[Action], first_hand: bool = False) -> None:
        """Merge one update (first- or second-hand) into our view.

        ``own`` word: the authenticated sender speaks about itself (the frame
        header, or an update about the sender in its own frame). Anything
        else is a rumour and may not raise the member's incarnation, say it
        left, or create a member, unless it is the member's signed word."""
        inc = u.incarnation
        if inc > MAX_INCARNATION or (u.state is not State.ALIVE and inc >= MAX_INCARNATION) or inc < 0:
            self.stats.malformed += 1
            return
        peer = u.peer_id
        if peer == self.local_id:
            self._about_self(u)
            return
        own = first_hand or peer == sender
        m = self._table.get(peer)
        if m is None:
            if u.state is not State.ALIVE:
                return  # rumours about strangers carry nothing we can act on
            if own:
                self._admit(peer, inc, u.addrs, out, u if u.signature else None)
            elif not self._leaving:
                # A stranger vouched for by gossip (signed or not: keys are
                # cheap): a candidate until it answers our ping.
                self._candidates.propose(peer, u.addrs, sender, self._now)
            return
        signed: MemberUpdate | None = None
        if inc > m.incarnation:
            if u.state is State.SUSPECT or u.state is State.DEAD:
                if not own:
                    # Nobody but M moves M's incarnation: an accusation newer
                    # than anything M said is a lie (or news we will hear from M).
                    self.stats.ahead += 1
                    self._check(m, out)
                    return
            elif self._is_signed(u):
                signed = u
            elif not own:
                self.stats.unsigned += 1
                self._check(m, out)
                return
            if signed is None and inc > m.incarnation + self.config.max_incarnation_jump:
                self.stats.implausible += 1
                return
        elif not supersedes(u.state, inc, m.state, m.incarnation):
            if inc == m.incarnation and u.state is m.state:
                if u.state is State.SUSPECT:
                    self._confirm(m, self._origin(u, sender))
                elif u.state is State.ALIVE:
                    trusted = self._upgrade_signature(u) or own
                    if u.signature and m.signed_now() is None and self._is_signed(u):
                        # Keep the member's signature for what we hold, so that a
                        # push/pull can pass it on believably.
                        trusted = True
                        m = Member(peer, m.state, inc, m.addrs, m.since, u)
                        self._table.set(m)
                    if trusted and u.addrs and not m.addrs:
                        self._learn_addrs(m, u.addrs, u if u.signature and self._is_signed(u) else None)
            return
        elif u.state is State.LEFT and not own:
            if not self._is_signed(u):
                self.stats.unsigned += 1
                return
            signed = u
        if u.state is State.DEAD and not own and inc == m.incarnation:
            # Someone else's verdict. We declare death only by our own timer:
            # a member we hold alive becomes *our* suspect (so a lie gives the
            # accused a full suspicion timeout to refute); one we already
            # suspect gets a confirmation.
            if m.state is State.ALIVE:
                self.stats.dead_rumours += 1
                self._transition(m, State.SUSPECT, inc, m.addrs, sender, out)
            elif m.state is State.SUSPECT:
                self._confirm(m, sender)
            return
        if own and u.signature and signed is None and u.state in (State.ALIVE, State.LEFT):
            signed = u  # the member's own signed word: relay it as is (receivers verify)
        addrs = (u.addrs or m.addrs) if (own or signed is not None) else m.addrs
        if own and u.state is State.ALIVE and not m.live:
            self._rejoined = (peer, True)  # back from the dead in its own word: push/pull with it
            if self._now >= self._forgive_at and self._candidates.forgive():
                # A partition may have healed: strangers beyond it that failed our
                # candidate pings can answer now (admission.py, forgive).
                self._forgive_at = self._now + self.config.candidate_backoff / 6
        self._transition(m, u.state, inc, addrs, self._origin(u, sender), out, signed)

    def _check(self, m: Member, out: list[Action]) -> None:
        """A rumour we cannot believe says ``m`` has moved on (a newer
        incarnation: it refuted, or someone suspects it again since). Often
        true — e.g. a relay that learned it first-hand cannot sign for ``m`` —
        and our own suspicion of ``m`` may be about to expire: so ask ``m``
        itself. Its answer is first-hand (and our frame carries our verdict,
        so it refutes if need be). Not a probe: silence changes nothing. At
        most once per member per period and ``max_checks_per_period`` in all,
        and only over a connection already open: after a heal at 100 nodes
        on 2 cores, checks asked for 407 new connections in 45 s and 371 of
        their opens ran out of time (docs/swim.md, "Helpers and checks over
        held connections"); a member we hold no connection to refutes
        through gossip and push/pull, signed, as for anyone else."""
        if self._leaving or m.state is State.LEFT:
            return
        if self._known_unconnected(m.peer_id):
            # The frame would be dropped, and this period's budget is for
            # members we can ask.
            self.stats.checks_unconnected += 1
            return
        if self._checks_period != self._period:
            self._checks_period = self._period
            self._checked.clear()
        if m.peer_id in self._checked or len(self._checked) >= self.config.max_checks_per_period:
            return
        self._checked.add(m.peer_id)
        self.stats.checks += 1
        self._send(out, m.peer_id, self._next_seq(), Ping(m.peer_id), m.addrs, dial=False, why="check")

    def _origin(self, u: MemberUpdate, sender: PeerId) -> PeerId:
        """Who accuses: the named origin if it is one of our live members,
        else the (authenticated) sender — invented origins confirm nothing."""
        o = u.origin
        if o and o != sender:
            m = self._table.get(o)
            if m is None or not m.live:
                return sender
        return o or sender

    def _is_signed(self, u: MemberUpdate) -> bool:
        """``u`` carries a valid signature by its subject (within the frame's budget)."""
        if not u.signature:
            return False
        sigs = self._signatures
        verdict = sigs.cached(u)
        if verdict is None:
            if self._verify_budget <= 0:
                self.stats.unverified += 1
                return False
            self._verify_budget -= 1
            verdict = sigs.check(u)
            if not verdict:
                self.stats.forged += 1
        return verdict

    def _upgrade_signature(self, u: MemberUpdate) -> bool:
        """A signed copy of the alive we already hold: if we are gossiping it
        unsigned (learned first-hand), gossip the signed copy instead, so that
        members further away can believe it."""
        queued = self._queue.get(u.peer_id)
        if (
            u.signature
            and queued is not None
            and not queued.signature
            and queued.state is State.ALIVE
            and queued.incarnation == u.incarnation
            and self._is_signed(u)
        ):
            self._queue.push(u)
            return True
        return False

    def _admit(
        self, peer: PeerId, inc: int, addrs: tuple[bytes, ...], out: list[Action], signed: MemberUpdate | None = None
    ) -> None:
        """``peer`` spoke to us itself: first-hand evidence, it becomes a member."""
        if self._table.size >= self.config.max_members:
            self.stats.dropped_members += 1
            return
        joining = self._joining.pop(peer, None)
        if joining is not None:
            self._rejoined = (peer, False)  # a member we discovered joins: push/pull with it
        candidate = self._candidates.admitted(peer)
        addrs = addrs or (joining[0] if joining else ()) or candidate or ()
        if self._table.set(Member(peer, State.ALIVE, inc, addrs, self._now, signed)):
            self._order.grow()
        for ring in self._rings:
            ring.became_live(peer)
        out.append(MemberEvent(EVENT_FOR[(None, State.ALIVE)], peer, inc, None, addrs))  # type: ignore[arg-type]
        self._queue.push(MemberUpdate(peer, State.ALIVE, inc, addrs))

    def _heard_from_the_dead(self, sender: PeerId, inc: int) -> None:
        """A member we hold dead speaks, or one we hold left speaks at a newer
        incarnation (back): the two sides of a partition meet. What its frame
        says of others was decided apart from us and is often stale (their
        refutations still on the way), so the healing window opens *before*
        its updates are applied and its accusations wait the longer minimum
        (see _transition). Before, it opened after the frame: in the
        whole-node simulator at 200 nodes one such frame cost 6 members
        declared failed after a heal. Once per death, so that the other
        side's frames do not keep re-opening it while it refutes; a leaver's
        last frames (left, at the incarnation it left with) open nothing. (A
        member can still open one per frame by saying it left and came back
        in its own word, at the cost of two incarnations: the rejoin path.)"""
        held = self._table.get(sender)
        if held is None or held.live:
            return
        if held.state is State.LEFT and inc <= held.incarnation:
            return
        if self._healed_by.get(sender) == held.since:
            return
        if len(self._healed_by) >= _MAX_HINT_MEMORY:
            self._healed_by.clear()
        self._healed_by[sender] = held.since
        self._pp_burst(healing=True)

    def _first_hand(self, sender: PeerId, inc: int, out: list[Action]) -> None:
        """The sender itself says it is alive at ``inc``. Normally this is just an
        alive update; but a view that is more than max_incarnation_jump ahead of
        the member's own word can only come from forged gossip (honest
        incarnations grow one refutation at a time), so the member's word wins."""
        m = self._table.get(sender)
        if m is not None and m.incarnation > inc + self.config.max_incarnation_jump and inc <= MAX_INCARNATION:
            self.stats.implausible += 1
            self._transition(m, State.ALIVE, inc, m.addrs, sender, out)
            return
        self._apply(MemberUpdate(sender, State.ALIVE, inc), sender, out, first_hand=True)

    def _transition(
        self,
        m: Member,
        state: State,
        inc: int,
        addrs: tuple[bytes, ...],
        origin: PeerId,
        out: list[Action],
        signed: MemberUpdate | None = None,
    ) -> None:
        peer, old = m.peer_id, m.state
        now = self._now
        new = Member(peer, state, inc, addrs, now if state is not old else m.since, signed)
        self._table.set(new)
        if new.live != m.live:
            for ring in self._rings:
                if new.live:
                    ring.became_live(peer)
                else:
                    ring.left_live(peer)
        self._suspicions.pop(peer, None)
        if state is State.SUSPECT:
            n = self._table.live_count + 1
            cfg = self.config
            least = cfg.suspicion_min(n)
            if now < self._healing_until:
                # Views are merging after a partition: accusations made
                # across it are often stale and their refutations still on
                # the way. Twice the minimum, as the short one is meant for a
                # steady network (it cost 18 false "failed" after a heal in
                # the whole-node simulator at 200 nodes, 0 with this).
                least *= _MERGE_SUSPICION
            most = max(least, cfg.suspicion_max(n))
            if cfg.awareness_slows_verdicts and self.awareness.score:
                # Lifeguard's local health, applied to our verdicts: in a
                # starved loop our probes fail and refutations reach us late,
                # and every false "failed" we declare is gossiped to every
                # member, and so is the member's return: the load that starved
                # us grows (a 100-node devnet on 2 cores: docs/swim.md).
                slowed = min(most, self.awareness.scale(least))
                if slowed > least:
                    least = slowed
                    self.stats.slowed_verdicts += 1
            s = Suspicion(now, inc, cfg.suspicion_confirmations, least, most, origin)
            self._suspicions[peer] = s
            self._arm(s.deadline, _SUSPICION, peer)
            if (old is State.ALIVE and origin != self.local_id and now < self._merging_until
                    and not self._in_merge):
                # While views merge (a healed partition), accusations still in
                # flight are often stale: the accused has refuted already, but
                # we heard the accusation first. Ask it (our ping carries the
                # suspicion) rather than wait for our round-robin or gossip.
                self._check(new, out)
        if state is State.DEAD:
            self._dead_add(peer)
            self._arm(now + self.config.dead_retention, _REAP, (peer, now))
        else:
            self._dead_discard(peer)
            if state is State.LEFT:
                self._arm(now + self.config.left_retention, _REAP, (peer, now))
        kind = EVENT_FOR[(old, state)]
        if kind is not None:
            out.append(MemberEvent(kind, peer, inc, old, addrs))
            self._flux(_revival(old, state))
        if signed is not None:
            self._queue.push(signed)  # relayed exactly as signed
            return
        self._queue.push(
            MemberUpdate(
                peer,
                state,
                inc,
                addrs if state is State.ALIVE else (),
                origin if state is State.SUSPECT else b"",
            )
        )

    def _suspect(self, peer: PeerId, out: list[Action]) -> None:
        """Our own probe of ``peer`` failed."""
        m = self._table.get(peer)
        if m is None:
            return
        if m.state is State.ALIVE:
            self.stats.suspected += 1
            self._transition(m, State.SUSPECT, m.incarnation, m.addrs, self.local_id, out)
        elif m.state is State.SUSPECT:
            self._confirm(m, self.local_id)

    def _confirm(self, m: Member, origin: PeerId) -> None:
        s = self._suspicions.get(m.peer_id)
        if s is None or s.incarnation != m.incarnation or not origin:
            return
        if s.confirm(origin):
            self._arm(s.deadline, _SUSPICION, m.peer_id)
            # Pass the independent confirmation on, so others' timers shrink too.
            self._queue.push(MemberUpdate(m.peer_id, State.SUSPECT, m.incarnation, (), origin))

    def _on_suspicion_expired(self, peer: PeerId, out: list[Action]) -> None:
        s = self._suspicions.pop(peer)
        m = self._table.get(peer)
        if m is None or m.state is not State.SUSPECT or m.incarnation != s.incarnation:
            return
        self.stats.declared_dead += 1
        self._transition(m, State.DEAD, m.incarnation, m.addrs, self.local_id, out)

    def _about_self(self, u: MemberUpdate) -> None:
        """Only we may change our incarnation; accusations make us refute."""
        if u.state is State.ALIVE:
            # A higher alive about us that *we* signed is from a previous life
            # (a restart without our persisted incarnation): adopt it, so that
            # our next refutation exceeds it. Anything else is noise.
            if u.incarnation > self.incarnation and self._is_signed(u):
                self.incarnation = u.incarnation
                self._announce_self()
            return
        if u.incarnation > self.incarnation + self.config.max_incarnation_jump:
            # Nobody who knows us could have accepted this; strangers who did
            # are corrected by our own (first-hand) word when we next talk.
            self.stats.implausible += 1
            return
        if self._leaving:
            return
        if u.incarnation < self.incarnation:
            # A stale accusation: our newer alive overrides it, so make sure
            # it is on its way (signed, so relays can carry it too).
            if self._queue.get(self.local_id) is None:
                self._announce_self()
            return
        self.incarnation = min(u.incarnation + 1, MAX_INCARNATION)
        self.stats.refutations += 1
        # Lifeguard: having to refute suggests others cannot hear us. At most
        # once per period, so a liar repeating accusations cannot pin it.
        if self._refute_period != self._period:
            self._refute_period = self._period
            self.awareness.apply(1)
        self._announce_self()

    def _announce_self(self) -> None:
        """Spread our signed alive at our current incarnation: queued for
        gossip, and attached to *every* frame we send for the next
        ``retransmit_limit`` periods — so whoever hears our new incarnation
        first-hand also holds our signature and can relay it believably
        (an unsigned relay of it convinces nobody)."""
        u = self.own_update(State.ALIVE)
        self._own_alive = u
        self._own_until = self._period + self.config.retransmit_limit(self._table.live_count + 1)
        self._queue.push(u)

    def _dead_add(self, peer: PeerId) -> None:
        if peer not in self._dead_pos:
            self._dead_pos[peer] = len(self._dead)
            self._dead.append(peer)

    def _dead_discard(self, peer: PeerId) -> None:
        i = self._dead_pos.pop(peer, None)
        if i is not None:
            last = self._dead.pop()
            if last != peer:
                self._dead[i] = last
                self._dead_pos[last] = i

    # ---------------------------------------------------------- join / leave

    def _on_discovered(self, peer: PeerId, addrs: tuple[bytes, ...], out: list[Action]) -> None:
        if peer == self.local_id or not peer or self._leaving:
            return
        m = self._table.get(peer)
        if m is None:
            joining = self._joining.get(peer)
            if joining is not None:
                if addrs and not joining[0]:
                    joining[0] = addrs  # re-proposed while alone (no addresses): its own, for when it joins
            elif len(self._joining) < self.config.max_pending_indirect:
                self._propose(peer, addrs, out)
        elif m.live:
            if addrs and not m.addrs:
                self._learn_addrs(m, addrs, None)
        else:
            # Reconnected to someone we hold as dead/left: our ping carries that
            # verdict (buddy system), so if it is alive it refutes right away.
            self._send(out, peer, self._next_seq(), Ping(peer), addrs or m.addrs, why="reconnected")

    def _learn_addrs(self, m: Member, addrs: tuple[bytes, ...], signed: MemberUpdate | None) -> None:
        """Live member ``m``, held without addresses (admitted from a frame's
        header, which carries none), gets ``addrs``: its own word, or what
        the adapter found in the peerstore (identify). The "alive" we queued
        when we admitted it had none either: every receiver would hold a
        candidate it cannot dial, and helpers asked to ping it could not. So
        what we pass on about it carries them now (``signed``: its own word,
        as signed, when we have it)."""
        peer = m.peer_id
        self._table.set(Member(peer, m.state, m.incarnation, addrs, m.since, m.signed))
        queued = self._queue.get(peer)
        if (queued is not None and queued.state is State.ALIVE and queued.incarnation == m.incarnation
                and not queued.addrs and (signed is not None or not queued.signature)):  # fmt: skip
            # (A signed word without addresses stays: the member's own
            # signature is what lets far members take a new incarnation.)
            self._queue.push(signed or MemberUpdate(peer, State.ALIVE, m.incarnation, addrs))
        self.stats.addrs_learnt += 1

    def _propose(self, peer: PeerId, addrs: tuple[bytes, ...], out: list[Action]) -> None:
        """Ping ``peer`` as a joiner: the first of its ``join_attempts`` pings
        (the period ticks send the rest); it joins when it answers."""
        self._joining[peer] = [addrs, self.config.join_attempts - 1]
        self._send(out, peer, self._next_seq(), Ping(peer), addrs, why="join")

    def _on_leave(self, out: list[Action]) -> None:
        if self._leaving:
            return
        self._leaving = True
        self._probe = self._late = None
        self._joining.clear()
        self._pp.outgoing = None
        self._pp.serving.clear()
        self._queue.push(self.own_update(State.LEFT))
        for m in self._table.sample(self._rng, max(1, self.config.indirect_checks), lambda m: m.live):
            self._send(out, m.peer_id, self._next_seq(), Ping(m.peer_id), m.addrs, why="leave")
        self._arm(self._now + self.config.leave_periods * self.config.probe_interval, _LEAVE, None)

    # ---------------------------------------------- push/pull (anti-entropy)

    def _pp_schedule(self, when: float) -> None:
        self._pp_next = when
        self._arm(when, _PUSHPULL, None)

    def _pp_expire(self) -> None:
        silent = self._pp.expire(self._now)
        if silent is not None:
            # Never answered at all (gone, or predates push/pull): ask others.
            self.stats.push_pull_silent += 1
            self._pp.backoff(silent, self._now + self.config.candidate_backoff)

    def _own_signed(self) -> MemberUpdate:
        own = self._own_alive
        if own is not None and own.incarnation == self.incarnation:
            return own
        return self.own_update(State.ALIVE)

    def _on_push_pull_due(self, out: list[Action]) -> None:
        """Periodic push/pull with one random alive member."""
        if self._leaving:
            return
        cfg = self.config
        now = self._now
        if now < self._merging_until:
            self._pp_schedule(now + cfg.push_pull_burst_interval)
        else:
            self._pp_schedule(now + cfg.push_pull_interval_for(self._table.live_count + 1))
        self._pp_expire()
        pp = self._pp
        if pp.outgoing is not None:
            return
        gap = cfg.push_pull_burst_interval
        if now < self._merging_until:
            # A burst: among the members we have held a connection to longest
            # (_held_pool). The news of a merge crosses in the exchanges with
            # members back from the dead (_push_pull_with), which dial as need
            # be; a burst spreads it through our side without a new
            # connection each time (after a heal at 100 nodes on 2 cores, a
            # third of SWIM's dials were the bursts' draws across: docs/swim.md).
            pool = [p for p in self._held_pool(self._is_alive) if pp.may_ask(p, now, gap)]
            if pool:
                m = self._table.get(self._pp_rng.choice(pool))
                if m is not None:
                    self._start_push_pull(m, out, "burst")
                return
        picks = self._table.sample(
            self._pp_rng, 1, lambda m: m.state is State.ALIVE and pp.may_ask(m.peer_id, now, gap)
        )
        if picks:
            self._start_push_pull(picks[0], out, "burst" if now < self._merging_until else "periodic")

    def _push_pull_with(self, peer: PeerId, healing: bool, out: list[Action]) -> None:
        """Join / rejoin: ``peer`` just answered us itself (``healing``: it
        came back from the dead or left, and a merge window opens).

        A join opens no window of its own: one exchange with the joiner, and
        a window only if that exchange changes much of our view or names
        many members we never heard of (_merge, _pp_done: two networks
        meeting). Before 2026-12-05 every join opened one, on
        each member connected to the joiner: in the whole-node simulator at
        500 nodes one newcomer cost ~3,600 push/pulls with random members,
        nearly all of them dials (its ~270 connections times a window of
        push/pull every second for ~14 s), and the joiner learns the view
        from its own first exchange anyway."""
        cfg = self.config
        if cfg.push_pull_interval <= 0 or self._leaving:
            return
        self._pp_expire()
        m = self._table.get(peer)
        if m is None or m.state is not State.ALIVE:
            return
        if healing:
            self._pp_burst(healing=True)
        if self._pp.may_ask(peer, self._now, cfg.push_pull_burst_interval):
            self._start_push_pull(m, out, "rejoin" if healing else "join")

    def _start_push_pull(self, m: Member, out: list[Action], why: str) -> None:
        level = level_for(self._table.live_count + 1)
        seq = self._next_seq()
        self._pp.start(m.peer_id, seq, level, self._now, self.config.push_pull_timeout)
        self.stats.push_pulls += 1
        digests = self._table.digest.coarse(level, (self.local_id, self.incarnation, State.ALIVE))
        self._send(out, m.peer_id, seq, PushPull(Step.REQUEST, level, tuple(digests)), m.addrs, why=why)

    def _on_push_pull(self, sender: PeerId, seq: int, body: PushPull, out: list[Action]) -> None:
        if not 0 <= body.level <= wire.MAX_PUSHPULL_LEVEL or (
            body.step is Step.REQUEST and len(body.digests) != 1 << body.level
        ):
            self.stats.malformed += 1  # only possible for a Message built by hand: wire.decode checks
            return
        self._pp_expire()
        if body.step is Step.REQUEST:
            self._serve_push_pull(sender, seq, body, out)
        elif body.step is Step.REPLY:
            self._on_push_pull_reply(sender, seq, body, out)
        else:
            self._on_push_pull_push(sender, seq, body, out)

    def _serve_push_pull(self, sender: PeerId, seq: int, body: PushPull, out: list[Action]) -> None:
        cfg = self.config
        m = self._table.get(sender)
        if self._leaving or m is None:
            return
        pp = self._pp
        # Per protocol period of *unscaled* length: a member whose Lifeguard
        # score stretches its periods must not become harder to merge with.
        window = int(self._now // cfg.probe_interval)
        per = cfg.push_pull_serves_per_period
        if not pp.may_serve(sender, self._now, cfg.push_pull_burst_interval / 2, window, per,
                            per * (math.ceil(cfg.push_pull_timeout / cfg.probe_interval) + 2)):
            self.stats.push_pull_busy += 1
            self._send(out, sender, seq, PushPull(Step.REPLY, body.level, busy=True), m.addrs)
            return
        level = body.level
        ours = self._table.digest.coarse(level, (self.local_id, self.incarnation, State.ALIVE))
        differ = [b for b, d in enumerate(ours) if d != body.digests[b]]
        groups = select(self._table, self._own_signed(), level, differ, cfg.push_pull_max_entries, self._pp_rng)
        self.stats.push_pulls_served += 1
        if groups:
            pp.serve(sender, seq, level, self._now, cfg.push_pull_timeout)
        self._send_entries(out, sender, seq, Step.REPLY, level, groups, m.addrs)

    def _send_entries(
        self, out: list[Action], to: PeerId, seq: int, step: Step, level: int, groups: Groups,
        addrs: tuple[bytes, ...],
    ) -> None:
        parts = frames(groups, self.config.push_pull_frame_bytes)
        for i, (buckets, entries) in enumerate(parts):
            self._send(out, to, seq, PushPull(step, level, (), buckets, i, len(parts), tuple(entries)), addrs)

    def _on_push_pull_reply(self, sender: PeerId, seq: int, body: PushPull, out: list[Action]) -> None:
        cfg = self.config
        pp = self._pp
        ex = pp.outgoing
        if ex is None or ex.peer != sender or ex.seq != seq or body.level != ex.level:
            self.stats.push_pull_unsolicited += 1
            return
        ex.answered = True
        if body.busy:
            # Says nothing about our views: try another member soon.
            self.stats.push_pull_busy += 1
            pp.outgoing = None
            self._pp_soon()
            return
        if not self._pp_accept(ex, body):
            return
        changes, revived = self._merge(sender, body.entries, out)
        ex.changes += changes
        ex.revived += revived
        room = cfg.push_pull_max_entries - ex.pushed
        if body.buckets and room > 0:
            # Answer for the buckets this frame completes: our entries there
            # (after merging theirs) that the partner does not hold as we do.
            theirs = {u.peer_id: u for u in body.entries}
            groups = [
                (b, [e for e in es if not _same(e, theirs.get(e.peer_id))])
                for b, es in select(self._table, self._own_signed(), ex.level, body.buckets, room, self._pp_rng)
            ]
            groups = [(b, es) for b, es in groups if es]
            if groups:
                ex.pushed += sum(len(es) for _, es in groups)
                m = self._table.get(sender)
                self._send_entries(out, sender, seq, Step.PUSH, ex.level, groups, m.addrs if m else ())
        if ex.frames >= body.chunks:
            pp.outgoing = None
            self._pp_done(ex.changes, ex.revived)

    def _on_push_pull_push(self, sender: PeerId, seq: int, body: PushPull, out: list[Action]) -> None:
        sv = self._pp.serving.get((sender, seq))
        if sv is None or body.level != sv.level:
            self.stats.push_pull_unsolicited += 1
            return
        if not self._pp_accept(sv, body):
            return
        changes, revived = self._merge(sender, body.entries, out)
        sv.changes += changes
        sv.revived += revived
        self._pp_done(sv.changes, sv.revived)  # the record itself expires with the exchange

    def _pp_accept(self, ex: Outgoing | Serving, body: PushPull) -> bool:
        """Bounds of one direction of an exchange: frames and entries."""
        ex.frames += 1
        if ex.frames > wire.MAX_PUSHPULL_CHUNKS or ex.entries + len(body.entries) > self.config.push_pull_max_entries:
            self.stats.push_pull_excess += 1
            return False
        ex.entries += len(body.entries)
        return True

    def _merge(self, sender: PeerId, entries: tuple[MemberUpdate, ...], out: list[Action]) -> tuple[int, int]:
        """Merge a partner's entries exactly like its piggybacked updates (same
        rules, same _apply); how many members of our view they changed, plus
        the strangers they made new candidates of, once N/16 or more (two
        networks meeting: a partner's view full of members we never heard of
        changes nothing in ours until each answers our ping, yet it is the
        merge a window is for), and how many of the changed they brought back
        from dead/left. Only new candidates count: ones we already wait on,
        or hold back for not answering (unreachable from here), would
        reopen a window on every exchange; the candidate set's cap per
        gossiper bounds what one partner can count, and the N/16 floor
        (capped at that bound) keeps a few newcomers named in a busy
        network's views from opening windows on the members who have not
        admitted them yet."""
        self._verify_budget = self.config.push_pull_verifications_per_frame
        start = len(out)
        inc = self.incarnation
        table = self._table
        accused: list[Member] = []
        strangers = 0
        candidates = self._candidates
        self._in_merge = True
        try:
            for u in entries:
                m = table.get(u.peer_id)
                new = (m is None and u.state is State.ALIVE and u.peer_id != self.local_id
                       and not candidates.knows(u.peer_id, self._now))
                if (m is not None and m.incarnation == u.incarnation and m.state is u.state
                        and u.state is not State.SUSPECT and (m.addrs or not u.addrs)
                        and (not u.signature or m.signed_now() is not None)):
                    continue  # what we hold already (most of a partner's entries): nothing to do
                self._apply(u, sender, out)
                if new and u.peer_id in candidates:
                    strangers += 1  # proposed now, and accepted (the per-gossiper cap)
                if (m is not None and m.state is State.ALIVE and u.incarnation == m.incarnation
                        and (u.state is State.SUSPECT or u.state is State.DEAD)):
                    after = table.get(u.peer_id)
                    if after is not None and after.state is State.SUSPECT:
                        accused.append(after)
        finally:
            self._in_merge = False
        if accused:
            # The partner's view accuses members we held alive (typically the
            # other side of a healed partition): now our suspicion too. Tell a
            # few of them at once (our ping carries it: buddy system) so they
            # refute now, not when our round-robin or gossip reaches them.
            self._pp_rng.shuffle(accused)
            for m in accused[: self.config.max_checks_per_period]:
                self._check(m, out)
        events = [a for a in out[start:] if type(a) is MemberEvent]
        changes = len(events) + (self.incarnation != inc)
        revived = sum(1 for a in events if a.kind is EventKind.RECOVERED and _revival(a.previous, State.ALIVE))
        self.stats.push_pull_entries += len(entries)
        self.stats.push_pull_changes += changes
        cfg = self.config
        # N/16 (at least the bar), but no more than one partner can make us
        # take (max_candidates_per_gossiper): else, past 256 members, no
        # exchange could ever count.
        need = min(max(cfg.push_pull_burst_changes, (table.live_count + 1) // 16),
                   max(1, cfg.max_candidates_per_gossiper))
        if strangers < need:
            strangers = 0
        return changes + strangers, revived

    def _pp_done(self, changes: int, revived: int) -> None:
        """An exchange (either role) finished: if it changed much, views are
        still merging; a partition heals only if it brought many members
        back from the dead (see _flux)."""
        bar = self.config.push_pull_burst_changes
        if changes >= bar:
            self._pp_burst(healing=revived >= bar)

    def _flux(self, revived: bool) -> None:
        """A membership event. Many within one (unscaled) period mean our view
        is merging with another: push/pull in bursts. The bar grows with N,
        so the churn of a large healthy cluster (false suspicions under loss,
        each refuted) does not count as a merge.

        Only members coming back from dead or left (8 in one period, not
        scaled with N) say a partition heals (the longer suspicions of
        _transition). Suspicions, failures and
        refutations do not: a crash of many members at once is a burst of
        suspicions, and the few false suspicions a healthy network refutes
        every second added up to the bar (8 at 500 members) often enough
        that, in the whole-node simulator at 500 nodes, a tenth of the
        members waited twice the minimum on a crash: seen failed by all in
        10.5 / 11.5 s (P50 / P99) instead of 6.5 / 7.7."""
        cfg = self.config
        window = int(self._now // cfg.probe_interval)
        if window != self._flux_window:
            self._flux_window = window
            self._flux_count = 0
            self._revived_count = 0
        self._flux_count += 1
        if self._flux_count == max(cfg.push_pull_burst_changes, (self._table.live_count + 1) // 64):
            self._pp_burst(healing=False)
        if revived:
            # Not scaled with N: a healthy network revives nobody but the
            # odd restart or false failure, and a small partition healing in
            # a large one must still count.
            self._revived_count += 1
            if self._revived_count == cfg.push_pull_burst_changes:
                self._pp_burst(healing=True)

    def _pp_burst(self, *, healing: bool) -> None:
        """Views are merging (a rejoin, a big exchange, many events
        at once; ``healing``: members came back from dead/left, so new
        suspicions wait longer, see _transition): for a merge window — a few
        burst intervals plus as long as gossip keeps relaying the stale news
        of the merge — push/pull every burst interval
        (an exchange between views that agree by then costs a digest), and
        ask members accused by rumour before believing it (see _transition).
        Every new sign of merging extends the window."""
        cfg = self.config
        if cfg.push_pull_interval <= 0:
            return  # push/pull off: no merge windows either (the plain SWIM merge)
        until = self._now + (
            _MERGE_BURSTS * cfg.push_pull_burst_interval
            + cfg.retransmit_limit(self._table.live_count + 1) * cfg.probe_interval
        )
        if until > self._merging_until:
            self._merging_until = until
        if healing and until > self._healing_until:
            # A partition heals (not just a member joining): see _transition.
            if self._healing_until <= self._now:
                self._stretch_suspicions()
            self._healing_until = until
        self._pp_soon()

    def _stretch_suspicions(self) -> None:
        """A healing window opens: the suspicions already running get its
        longer minimum too, counted from their start. Most are of members
        the other side could not reach, started in the partition's last
        seconds; their refutations can only now get through. (Whole-node
        simulator, 500 nodes: a member the other side happened not to probe
        for 27 of the partition's 30 s was suspected 3 s before the heal
        and declared failed by 206 members right after it.) All of them, not
        only those about the other side, which we cannot tell apart: a real
        crash just before a heal is declared up to one minimum later. A
        member who can open healing windows at will (see
        _heard_from_the_dead) gains little more: a suspicion keeps whichever
        minimum is longer, so however many windows open, its minimum never
        exceeds twice the steady one (for the members we count then) or, if
        longer, the one our poor health gave it (awareness_slows_verdicts,
        at most the maximum)."""
        least = self.config.suspicion_min(self._table.live_count + 1) * _MERGE_SUSPICION
        for peer, s in self._suspicions.items():
            if s.raise_min(least):
                self.stats.stretched += 1
                self._arm(s.deadline, _SUSPICION, peer)

    def _pp_soon(self) -> None:
        """Make the next periodic exchange due after the burst interval."""
        cfg = self.config
        if cfg.push_pull_interval > 0 and not self._leaving:
            when = self._now + cfg.push_pull_burst_interval
            if when < self._pp_next:
                self._pp_schedule(when)

    # --------------------------------------------------------------- gossip

    def _gossip_arm(self) -> None:
        """Updates are queued and someone talked to us: have the gossip timer fire
        one interval from now (if not armed already). Nothing queued, nothing
        armed: idle costs nothing."""
        cfg = self.config
        if not (self._queue and self._contacts and cfg.gossip_interval > 0 and cfg.gossip_nodes > 0
                and not self._stopped and self._queue.pushes != self._gossip_idle_at):
            return
        own = self._queue.get(self.local_id) is not None
        if self._gossip_at != math.inf:
            # Armed already. Slowed by poor health, it must not hold back our
            # own alive queued since: re-armed at the base interval (the
            # earlier timer is then stale: _is_stale).
            if not (own and self._gossip_at > self._now + cfg.gossip_interval):
                return
        interval = cfg.gossip_interval
        if cfg.awareness_slows_gossip and not own:
            # In poor health, each frame we send costs a starved loop (ours
            # and the receiver's) and news from us is late anyway; our own
            # refutation is the exception: it is what others wait for.
            interval = self.awareness.scale(interval)
        self._gossip_at = self._now + interval
        self._arm(self._gossip_at, _GOSSIP, None)

    def _on_gossip(self, out: list[Action]) -> None:
        """Send what is queued to a few members we heard from lately (contacts.py)."""
        self._gossip_at = math.inf
        cfg = self.config
        table = self._table

        def live(peer: PeerId) -> bool:
            m = table.get(peer)
            return m is not None and m.live

        since = self._now - cfg.gossip_recent_periods * cfg.probe_interval
        sent = 0
        for peer in self._contacts.pick(self._gossip_rng, cfg.gossip_nodes, since, live):
            if not self._queue:
                break
            m = table.get(peer)
            if self._send(out, peer, 0, Gossip(), m.addrs if m else (), dial=False):
                sent += 1
            else:
                out.pop()  # nothing queued fits: the news this frame is for is not in it
        self.stats.gossip_sent += sent
        if not sent:
            self._gossip_idle_at = self._queue.pushes

    # -------------------------------------------------------------- sending

    def _send(
        self, out: list[Action], to: PeerId, seq: int, body: Body, addrs: tuple[bytes, ...] = (),
        dial: bool = True, why: str = "",
    ) -> int:
        """Append the frame; how many queued updates it carries. ``why``
        labels its purpose (Send.why: a Ping's, a push/pull's): the dials it
        costs are counted by it."""
        cfg = self.config
        updates: list[MemberUpdate] = []
        m = self._table.get(to)
        if m is not None and m.state is not State.ALIVE:
            # Buddy system: tell a suspect (or a member we think dead/left)
            # what we believe about it, first thing, so it can refute.
            updates.append(MemberUpdate(to, m.state, m.incarnation, (), self.local_id))
        own = self._own_alive
        if own is not None and self._period <= self._own_until and not self._leaving:
            updates.append(own)  # see _announce_self
        else:
            own = None
        budget = cfg.max_frame_bytes - _HEADER_BYTES - sum(wire.update_size(u) for u in updates)
        if isinstance(body, PingReq):
            budget -= sum(len(a) + 2 for a in body.target_addrs)
        elif isinstance(body, PushPull):
            # A push/pull frame is its own payload: gossip only fills what is
            # left of an ordinary frame's budget (a REQUEST's, at most).
            budget -= 4 * len(body.digests) + sum(wire.update_size(u) for u in body.entries) + 40
        taken = self._queue.take(
            cfg.retransmit_limit(self._table.live_count + 1),
            cfg.max_updates_per_frame - len(updates),
            budget,
        ) if budget >= 40 else []
        updates += [u for u in taken if u.peer_id != self.local_id] if own is not None else taken
        out.append(Send(to, Message(seq, self.incarnation, body, tuple(updates)), addrs, dial, why))
        return len(taken)


def _same(mine: MemberUpdate, theirs: MemberUpdate | None) -> bool:
    """A push/pull partner already holds ``mine`` (as signed, if it is)."""
    return (
        theirs is not None
        and theirs.state is mine.state
        and theirs.incarnation == mine.incarnation
        and (bool(theirs.signature) or not mine.signature)
    )
