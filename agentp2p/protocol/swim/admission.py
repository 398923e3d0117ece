"""Admission: gossip about a stranger only makes it a *candidate*.

Anyone can write "alive(X)" into a frame, for any X and any address. Taking
such rumours as members let one hostile peer list thousands of fake members
on every node (and, as fake members fail their probes, pin everyone's
Lifeguard awareness at its maximum). So a peer we learn of from a third party
enters a bounded candidate set instead of the member table:

* we ping a few candidates per protocol period (``candidate_pings_per_period``),
  each at most ``candidate_attempts`` times; the candidate becomes a member
  when it answers — any frame it sends us is first-hand, authenticated by the
  transport;
* a candidate is *not* a member: it is not counted in N, not probed by the
  failure detector (a silent candidate is just forgotten: no suspicion, no
  awareness change) and not gossiped onward;
* the set is bounded (``max_candidates``); when full, a random entry makes
  room, so a flood cannot deterministically push out honest candidates; and
  each gossiper may hold at most ``max_candidates_per_gossiper`` entries, so
  one peer cannot fill it;
* a candidate that never answered is not re-proposed for ``candidate_backoff``
  seconds (bounded memory), so a liar repeating the same fakes does not make
  us dial them again and again — until a partition heals: strangers on the
  other side of one failed to answer for that reason alone, and holding them
  off for the rest of the back-off kept views apart 35 s after the heal
  (whole-node simulation, 500 nodes). When a member we hold dead or left
  comes back in its own word, the core calls :meth:`forgive`, at most once
  per ``candidate_backoff`` / 6. Any member can cause that (leave, come
  back), so against a liar the back-off is really a sixth as long; its fakes
  stay bounded by what always bounded them: the ping budget per period and
  the per-gossiper cap (fresh fake IDs never needed a back-off to expire);
* a candidate backing off is tried again at once when ``vouchers`` distinct
  gossipers propose it meanwhile: the back-off is against one liar
  repeating itself, and a newcomer's first seconds are when its answers
  are likeliest lost (at 1,000 simulated nodes, 20 newcomers joining
  together refused or trimmed the connections of the members pinging them,
  and 11 member and newcomer pairs were still apart 120 s later: every
  member that had heard of the newcomer while backing off had refused
  8-36 proposals of it, and once its back-off ended nothing proposed it
  again: the gossip about it was over). A liar gains nothing it lacked: it
  takes that many identities that spoke to us (keys are free: one liar can
  hold them all), and each retry costs one slot of a per-gossiper cap and
  the ping budget, as a fresh fake ID always could (a gossiper at its cap
  vouches for nothing).

Pure data structure: the core decides when to ping and owns the clock.
"""

from __future__ import annotations

import random

from .member import PeerId


class _Candidate:
    __slots__ = ("addrs", "gossiper", "attempts")

    def __init__(self, addrs: tuple[bytes, ...], gossiper: PeerId) -> None:
        self.addrs = addrs
        self.gossiper = gossiper
        self.attempts = 0


class CandidateSet:
    __slots__ = (
        "_rng", "_entries", "_peers", "_by_gossiper", "_failed", "_vouched", "max_size", "per_gossiper",
        "attempts", "backoff", "vouchers", "refused", "evicted", "expired", "forgiven", "vouched",
    )

    def __init__(self, rng: random.Random, *, max_size: int, per_gossiper: int, attempts: int,
                 backoff: float, vouchers: int = 0) -> None:
        self._rng = rng
        self._entries: dict[PeerId, _Candidate] = {}
        self._peers: list[PeerId] = []  # for O(1) random choice
        self._by_gossiper: dict[PeerId, int] = {}
        self._failed: dict[PeerId, float] = {}  # peer -> until when it is not re-proposed
        #: peer backing off -> the distinct gossipers that proposed it since (fewer than ``vouchers``)
        self._vouched: dict[PeerId, set[PeerId]] = {}
        self.max_size = max_size
        self.per_gossiper = per_gossiper
        self.attempts = attempts
        self.backoff = backoff
        self.vouchers = vouchers  # distinct proposers that end a back-off early (0: none do)
        self.refused = 0  # proposals refused (gossiper at its cap, or backing off)
        self.evicted = 0  # random evictions to make room
        self.expired = 0  # candidates that never answered
        self.forgiven = 0  # back-offs lifted early (a member came back from the dead: a heal, a restart)
        self.vouched = 0  # back-offs ended early by ``vouchers`` distinct proposers

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, peer: object) -> bool:
        return peer in self._entries

    def addrs(self, peer: PeerId) -> tuple[bytes, ...]:
        c = self._entries.get(peer)
        return c.addrs if c is not None else ()

    def propose(self, peer: PeerId, addrs: tuple[bytes, ...], gossiper: PeerId, now: float) -> bool:
        """Record ``peer`` (heard of from ``gossiper``); False if refused."""
        c = self._entries.get(peer)
        if c is not None:
            if addrs and not c.addrs:
                c.addrs = addrs
            return True
        if self.max_size <= 0 or self._by_gossiper.get(gossiper, 0) >= self.per_gossiper:
            self.refused += 1  # (before the back-off: a gossiper at its cap vouches for nothing)
            return False
        until = self._failed.get(peer)
        if until is not None:
            if until > now and not self._vouch(peer, gossiper):
                self.refused += 1
                return False
            del self._failed[peer]
            self._vouched.pop(peer, None)
        if len(self._entries) >= self.max_size:
            self._remove(self._peers[self._rng.randrange(len(self._peers))])
            self.evicted += 1
        self._entries[peer] = _Candidate(addrs, gossiper)
        self._peers.append(peer)
        self._by_gossiper[gossiper] = self._by_gossiper.get(gossiper, 0) + 1
        return True

    def _vouch(self, peer: PeerId, gossiper: PeerId) -> bool:
        """``gossiper`` proposes ``peer`` while it backs off: True once that
        makes ``vouchers`` distinct proposers (the back-off ends)."""
        if self.vouchers <= 0:
            return False
        seen = self._vouched.setdefault(peer, set())
        seen.add(gossiper)
        if len(seen) < self.vouchers:
            return False
        self.vouched += 1
        return True

    def knows(self, peer: PeerId, now: float) -> bool:
        """``peer`` is a candidate already, or held back after failing to answer."""
        until = self._failed.get(peer)
        return peer in self._entries or (until is not None and until > now)

    def admitted(self, peer: PeerId) -> tuple[bytes, ...] | None:
        """``peer`` became a member: forget it here; its addresses, if it was a candidate."""
        self._failed.pop(peer, None)  # (answering our last ping: it backs off already)
        self._vouched.pop(peer, None)
        c = self._entries.get(peer)
        if c is None:
            return None
        self._remove(peer)
        return c.addrs

    def pick(self, k: int, now: float) -> list[tuple[PeerId, tuple[bytes, ...]]]:
        """Up to ``k`` random candidates to ping now. Each counts one attempt;
        one that has used its last attempt leaves the set (and backs off)."""
        out: list[tuple[PeerId, tuple[bytes, ...]]] = []
        if not self._peers or k <= 0:
            return out
        chosen = self._rng.sample(self._peers, min(k, len(self._peers)))
        for peer in chosen:
            c = self._entries[peer]
            c.attempts += 1
            out.append((peer, c.addrs))
            if c.attempts >= self.attempts:
                self._remove(peer)
                self.expired += 1
                self._remember_failed(peer, now)
        return out

    def forgive(self) -> int:
        """Lift every back-off now (a member came back from the dead); returns how many."""
        n = len(self._failed)
        self._failed.clear()
        self._vouched.clear()
        self.forgiven += n
        return n

    def _remember_failed(self, peer: PeerId, now: float) -> None:
        failed = self._failed
        failed.pop(peer, None)
        failed[peer] = now + self.backoff
        while len(failed) > 4 * max(1, self.max_size):
            oldest = next(iter(failed))
            del failed[oldest]
            self._vouched.pop(oldest, None)

    def _remove(self, peer: PeerId) -> None:
        c = self._entries.pop(peer)
        i = self._peers.index(peer)
        last = self._peers.pop()
        if i < len(self._peers):
            self._peers[i] = last
        n = self._by_gossiper[c.gossiper] - 1
        if n:
            self._by_gossiper[c.gossiper] = n
        else:
            del self._by_gossiper[c.gossiper]
