"""Push/pull anti-entropy: swap whole views with one member, digest first.

Why
---
Piggybacked gossip (broadcast.py) spreads news one update at a time, a few
per frame. That is enough for the odd failure, but after a partition heals
hundreds of members have been declared dead on the other side and must all
refute at once; their refutations then queue for frame space and the views
take minutes to merge (114 s at 1,000 members with 100 cut off for 20 s).
memberlist's answer is a periodic *push/pull*: a TCP exchange of the full
member list with one random member. This module is ours, with two changes:

* **Digest first.** Most of the time two views agree, so an exchange starts
  with a digest: the view is split into ``2^level`` buckets by a hash of the
  peer ID, and each bucket's digest is the XOR of ``entry_hash(peer,
  incarnation)`` over its *live* members (alive or suspect; tombstones do not
  count, nor addresses). Two views agree on a bucket when they agree on who
  is up and at which incarnation. Only the buckets whose digests differ are
  exchanged, so a push/pull between agreeing members costs one small frame
  each way. The per-bucket XORs are maintained incrementally by the member
  table (:class:`ViewDigest`), at the finest level (256 buckets); coarser
  levels are XORs of fine buckets.
* **Bounded.** The entries of the differing buckets go in frames of at most
  ``push_pull_frame_bytes`` (and 128 entries), at most ``push_pull_max_entries``
  per direction per exchange: when more buckets differ, a random subset of
  them is exchanged now and the rest by later exchanges.

One exchange, correlated by ``seq`` (the initiator's)::

    A -> B  REQUEST  level, A's bucket digests (4 bytes per bucket)
    B -> A  REPLY    the buckets that differ (bitmap) and B's entries in them,
                     in 1..n frames; or ``busy`` (B's rate limit), or no
                     buckets (the views agree)
    A -> B  PUSH     A's entries in the same buckets, in 1..m frames

Both sides merge what they receive through the core's ordinary ``_apply``
(core.py), entry by entry, exactly as if it had been piggybacked by that
peer: rumours do not raise incarnations or say "left" unless signed by the
member, strangers only become candidates (admission.py), someone else's
"dead" only starts our own suspicion. So a push/pull can carry nothing a
gossip frame could not; it only carries more of it. That is why members keep
the signed update of each member they hold (``Member.signed``): a refutation
passed on in a push/pull is believed because it carries the refuter's
signature.

When
----
* periodically, every ``push_pull_interval`` scaled with the cluster size as
  memberlist does (x ``ceil(log2 N - 5) + 1`` above 32 members), with one
  random alive member;
* on join and rejoin: when a member we discovered answers, and when a member
  we held dead or left speaks to us itself (its own word, e.g. the answer to
  a reconnect ping) — the moment two sides of a partition meet again;
* every ``push_pull_burst_interval`` during a *merge window*, opened by a
  join or rejoin, an exchange (either role) that changed at least
  ``push_pull_burst_changes`` members of our view, or as many membership
  events (and at least N/64) within one period; it lasts a few burst
  intervals plus the gossip horizon, and every new sign of merging extends
  it (core.py ``_pp_burst``). Exchanges between views that agree cost a
  digest. (Members back from dead or left make it a *healing* window, which
  also lengthens new suspicions: core.py ``_flux`` and
  ``_heard_from_the_dead``.)

Limits (a push/pull is the most expensive thing a peer can ask of us):
one outgoing exchange at a time; we serve at most ``push_pull_serves_per_period``
exchanges per protocol period and one per peer per half burst interval
(others get ``busy``); REPLY and PUSH frames are only accepted from the peer,
for the ``seq`` and within the ``push_pull_timeout`` of an exchange in
progress, up to the entry and frame bounds (the rest is counted and dropped);
signature checks per frame are bounded (``push_pull_verifications_per_frame``).
A peer that never answers a REQUEST (e.g. one that predates push/pull and
counts our REQUEST as malformed) is skipped for ``candidate_backoff``.

Pure: hashing, bookkeeping and entry selection; the core does the rest.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from collections.abc import Iterable
from typing import Protocol

from .member import Member, PeerId, State
from .messages import MemberUpdate
from .wire import MAX_PUSHPULL_CHUNKS, MAX_PUSHPULL_ENTRIES, MAX_PUSHPULL_LEVEL, update_size


class FineBuckets(Protocol):
    """What :func:`select` needs of the member table (roster.MemberTable,
    which imports this module, so it is not imported here)."""

    def in_fine_bucket(self, fine: int) -> Iterable[Member]: ...


#: Digests are kept at this many bucket bits (256 buckets) and coarsened on demand.
FINE_BITS = MAX_PUSHPULL_LEVEL
_PERSON_BUCKET = b"agentp2p-swim-pb"
_PERSON_ENTRY = b"agentp2p-swim-pe"
_MASK32 = 0xFFFFFFFF

# peer ID -> peer_hash: a pure function, cached for all cores of a process
# (a simulator runs thousands); bounded.
_peer_hashes: dict[bytes, int] = {}
_MAX_CACHED = 1 << 18


def peer_hash(peer: PeerId) -> int:
    """64-bit hash of a peer ID that places it in a bucket (see swim.proto)."""
    h = _peer_hashes.get(peer)
    if h is None:
        h = int.from_bytes(hashlib.blake2b(peer, digest_size=8, person=_PERSON_BUCKET).digest(), "big")
        if len(_peer_hashes) >= _MAX_CACHED:
            _peer_hashes.clear()
        _peer_hashes[peer] = h
    return h


def bucket(peer: PeerId, level: int) -> int:
    return peer_hash(peer) >> (64 - level) if level else 0


def entry_hash(peer: PeerId, incarnation: int, state: State) -> int:
    """What a live member (alive or suspect) contributes to its bucket's digest."""
    data = incarnation.to_bytes(8, "big") + bytes((int(state),)) + peer
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=_PERSON_ENTRY).digest(), "big")


def level_for(n: int) -> int:
    """Bucket level for a view of ``n`` members: about 8 members per bucket,
    at most 2^8 buckets (a 1 KiB digest)."""
    level = 0
    while level < FINE_BITS and (n >> level) > 8:
        level += 1
    return level


class ViewDigest:
    """Per-fine-bucket XOR of entry hashes over the live members of a view.

    The member table toggles a member in and out as it becomes live / not
    live or changes incarnation; XOR makes that O(1) and order-independent."""

    __slots__ = ("fine",)

    def __init__(self, fine: array | None = None) -> None:  # type: ignore[type-arg]
        self.fine = array("Q", fine) if fine is not None else array("Q", bytes(8 << FINE_BITS))

    def copy(self) -> ViewDigest:
        return ViewDigest(self.fine)

    def toggle(self, peer: PeerId, incarnation: int, state: State) -> None:
        self.fine[peer_hash(peer) >> (64 - FINE_BITS)] ^= entry_hash(peer, incarnation, state)

    def coarse(self, level: int, also: tuple[PeerId, int, State] | None = None) -> list[int]:
        """32-bit digests of the 2^level buckets; ``also`` adds one more live
        member (ourselves: our table does not hold us, other views do)."""
        shift = FINE_BITS - level
        out = [0] * (1 << level)
        for i, v in enumerate(self.fine):
            if v:
                out[i >> shift] ^= v
        if also is not None:
            out[bucket(also[0], level)] ^= entry_hash(*also)
        return [v & _MASK32 for v in out]


def entry_of(m: Member) -> MemberUpdate | None:
    """What we tell a push/pull partner about ``m``: the member's own signed
    word if we hold it for this state and incarnation (so that the partner can
    believe a raised incarnation), else our plain view. An unsigned "left"
    would convince nobody (left must be the leaver's word): not sent."""
    signed = m.signed_now()
    if signed is not None:
        return signed
    if m.state is State.LEFT:
        return None
    return MemberUpdate(m.peer_id, m.state, m.incarnation, m.addrs if m.state is State.ALIVE else ())


Groups = list[tuple[int, list[MemberUpdate]]]


def select(
    table: FineBuckets,
    own: MemberUpdate,
    level: int,
    wanted: Iterable[int],
    max_entries: int,
    rng: random.Random,
) -> Groups:
    """Our entries (``own`` included) in the ``wanted`` buckets, grouped by
    bucket in bucket order (empty buckets too), at most ``max_entries`` in
    all: when they do not all fit, the buckets are taken in random order until
    the next one does not fit (a first bucket alone bigger than the bound is
    cut). Visits only the wanted buckets' members."""
    order = sorted(wanted)
    if not order:
        return []
    rng.shuffle(order)
    shift = FINE_BITS - level
    mine = bucket(own.peer_id, level)
    chosen: Groups = []
    room = max_entries
    for b in order:
        g: list[MemberUpdate] = [own] if b == mine else []
        for fine in range(b << shift, (b + 1) << shift):
            for m in table.in_fine_bucket(fine):
                e = entry_of(m)
                if e is not None:
                    g.append(e)
        if len(g) > room:
            if chosen:
                break
            g = g[:room]
        chosen.append((b, g))
        room -= len(g)
    chosen.sort(key=lambda x: x[0])
    return chosen


def frames(groups: Groups, max_bytes: int) -> list[tuple[frozenset[int], list[MemberUpdate]]]:
    """Pack grouped entries into frames of at most ``max_bytes`` of entries
    and MAX_PUSHPULL_ENTRIES entries, whole buckets together where they fit.
    Each frame names the buckets it *completes* (a bucket too big for one
    frame is named by the frame that holds its last entries), so the receiver
    of a REPLY frame can answer for exactly those buckets. At most
    MAX_PUSHPULL_CHUNKS frames (a bucket that does not fit any more is left
    for the next exchange). Always at least one (maybe empty) frame."""
    out: list[tuple[frozenset[int], list[MemberUpdate]]] = []
    done: set[int] = set()
    cur: list[MemberUpdate] = []
    size = 0
    for b, entries in groups:
        need = sum(update_size(e) for e in entries)
        if cur and (size + need > max_bytes or len(cur) + len(entries) > MAX_PUSHPULL_ENTRIES):
            if len(out) + 1 >= MAX_PUSHPULL_CHUNKS:
                break
            out.append((frozenset(done), cur))  # start the bucket in a fresh frame
            done, cur, size = set(), [], 0
        full = False
        for e in entries:
            s = update_size(e)
            if cur and (size + s > max_bytes or len(cur) >= MAX_PUSHPULL_ENTRIES):
                if len(out) + 1 >= MAX_PUSHPULL_CHUNKS:
                    full = True
                    break
                out.append((frozenset(done), cur))
                done, cur, size = set(), [], 0
            cur.append(e)
            size += s
        if full:
            break
        done.add(b)
    out.append((frozenset(done), cur))
    return out


class Outgoing:
    """The exchange we started (one at a time)."""

    __slots__ = ("peer", "seq", "level", "deadline", "frames", "entries", "pushed", "answered", "changes", "revived")

    def __init__(self, peer: PeerId, seq: int, level: int, deadline: float) -> None:
        self.peer = peer
        self.seq = seq
        self.level = level
        self.deadline = deadline
        self.frames = 0  # REPLY frames accepted
        self.entries = 0
        self.pushed = 0  # entries sent in PUSH frames
        self.answered = False
        self.changes = 0  # members of our view the REPLY changed
        self.revived = 0  # ... of them, members it brought back from dead/left


class Serving:
    """An exchange we answered: its PUSH frames are welcome until ``deadline``."""

    __slots__ = ("peer", "seq", "level", "deadline", "frames", "entries", "changes", "revived")

    def __init__(self, peer: PeerId, seq: int, level: int, deadline: float) -> None:
        self.peer = peer
        self.seq = seq
        self.level = level
        self.deadline = deadline
        self.frames = 0
        self.entries = 0
        self.changes = 0
        self.revived = 0


class Exchanges:
    """Bookkeeping and limits for push/pull (see the module docstring)."""

    __slots__ = ("outgoing", "serving", "_last", "_silent", "_period", "_served", "max_tracked")

    def __init__(self, max_tracked: int = 4096) -> None:
        self.outgoing: Outgoing | None = None
        self.serving: dict[tuple[PeerId, int], Serving] = {}
        self._last: dict[PeerId, float] = {}  # peer -> last exchange with it (either role)
        self._silent: dict[PeerId, float] = {}  # peer -> until when we do not ask it again
        self._period = -1
        self._served = 0
        self.max_tracked = max_tracked

    def expire(self, now: float) -> PeerId | None:
        """Drop finished-by-timeout exchanges; the partner of an outgoing one
        that never answered at all (the caller backs off from it)."""
        silent = None
        o = self.outgoing
        if o is not None and now > o.deadline:
            self.outgoing = None
            if not o.answered:
                silent = o.peer
        if self.serving:
            for key in [k for k, s in self.serving.items() if now > s.deadline]:
                del self.serving[key]
        return silent

    def may_ask(self, peer: PeerId, now: float, gap: float) -> bool:
        """Can we start an exchange with ``peer`` now?"""
        if self.outgoing is not None:
            return False
        until = self._silent.get(peer)
        if until is not None:
            if until > now:
                return False
            del self._silent[peer]
        last = self._last.get(peer)
        return last is None or now - last >= gap

    def start(self, peer: PeerId, seq: int, level: int, now: float, timeout: float) -> Outgoing:
        self.outgoing = o = Outgoing(peer, seq, level, now + timeout)
        self._touch(peer, now)
        return o

    def may_serve(self, peer: PeerId, now: float, gap: float, period: int, per_period: int,
                  max_serving: int) -> bool:
        """Serve ``peer``'s REQUEST now? (counts it if so)"""
        if self._period != period:
            self._period = period
            self._served = 0
        last = self._last.get(peer)
        if self._served >= per_period or (last is not None and now - last < gap):
            return False
        if len(self.serving) >= max_serving:
            return False
        self._served += 1
        self._touch(peer, now)
        return True

    def serve(self, peer: PeerId, seq: int, level: int, now: float, timeout: float) -> None:
        self.serving[(peer, seq)] = Serving(peer, seq, level, now + timeout)

    def backoff(self, peer: PeerId, until: float) -> None:
        silent = self._silent
        silent.pop(peer, None)
        silent[peer] = until
        while len(silent) > self.max_tracked:
            del silent[next(iter(silent))]

    def _touch(self, peer: PeerId, now: float) -> None:
        last = self._last
        last.pop(peer, None)
        last[peer] = now
        while len(last) > self.max_tracked:
            del last[next(iter(last))]  # oldest first
