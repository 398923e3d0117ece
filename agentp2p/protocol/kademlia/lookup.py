"""The iterative lookup state machine: which peer to ask next, and when to stop.

kad-dht/README.md "Peer routing": keep the candidates sorted by XOR distance
to the target, keep at most α requests in flight, add the closer peers each
answer names, and stop once the k closest peers seen have all answered (a
peer that failed or timed out is discarded, not waited for). The lookup
knows nothing of messages, request ids or clocks — the core maps answers and
timeouts to :meth:`Lookup.on_response` / :meth:`Lookup.on_failure`, and
enforces the lookup's deadline.

Bounded against hostile answers: each path keeps at most ``max_candidates``
peers (the farthest idle one is dropped first), reads at most
``max_closer`` peers of one answer, and sends at most ``max_requests``
requests; so a peer naming 10,000 fake "closer" peers grows nothing, and
the fakes it names cost at most a request timeout each before the lookup
moves on — the deadline bounds the rest.

Disjoint paths (S/Kademlia, ``paths`` = d > 1): the seeds are dealt out to d
independent paths, each with its own candidates and α requests in flight;
a peer is queried by one path only, so one poisoned path cannot steer the
others. The result is the k closest peers that answered on any path.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .keys import distance, kad_key


class State(enum.Enum):
    NOT_CONTACTED = 0
    WAITING = 1
    SUCCEEDED = 2
    FAILED = 3


@dataclass(slots=True)
class Candidate:
    peer: bytes
    dist: int
    addrs: tuple[bytes, ...]
    hop: int  # 1 for a seed; n + 1 when named by a peer of hop n
    state: State = State.NOT_CONTACTED


class _Path:
    """One path's sorted candidate list and its in-flight requests."""

    __slots__ = ("cands", "dists", "by_peer", "inflight", "slow", "overdue", "contacted", "requests")

    def __init__(self) -> None:
        self.cands: list[Candidate] = []  # sorted by dist
        self.dists: list[int] = []  # the same order, for bisect
        self.by_peer: dict[bytes, Candidate] = {}
        self.inflight: dict[bytes, Candidate] = {}  # holding the path's α slots
        self.slow: dict[bytes, Candidate] = {}  # still awaited, slots given up (on_slow)
        self.overdue: set[bytes] = set()  # in flight past slow_after, slot kept while others of the path answer
        self.contacted: set[bytes] = set()
        self.requests = 0

    def add(self, c: Candidate, cap: int) -> None:
        i = bisect.bisect_left(self.dists, c.dist)
        self.cands.insert(i, c)
        self.dists.insert(i, c.dist)
        self.by_peer[c.peer] = c
        if len(self.cands) > cap:
            for j in range(len(self.cands) - 1, -1, -1):  # the farthest idle one goes
                if self.cands[j].state is not State.WAITING:
                    gone = self.cands.pop(j)
                    del self.dists[j]
                    del self.by_peer[gone.peer]
                    break


class Lookup:
    """Find the ``k`` peers closest to ``target`` (an already-hashed key)."""

    def __init__(
        self,
        target: bytes,
        seeds: Iterable[tuple[bytes, tuple[bytes, ...]]],
        *,
        k: int,
        alpha: int,
        paths: int = 1,
        max_candidates: int = 100,
        max_closer: int = 20,
        max_requests: int = 300,
        max_slow: int | None = None,
        exclude: Iterable[bytes] = (),
    ) -> None:
        self.target = target
        self.k, self.alpha = k, alpha
        self.max_candidates, self.max_closer, self.max_requests = max_candidates, max_closer, max_requests
        self.max_slow = 3 * alpha if max_slow is None else max_slow
        self._exclude = frozenset(exclude)
        self._paths = [_Path() for _ in range(paths)]
        self._claimed: dict[bytes, int] = {}  # peer -> the one path that may query it
        self.requests = 0  # sent, over all paths
        self.responses = 0
        self.failures = 0
        self.slow = 0  # requests that gave up their slot (on_slow)
        ordered = sorted(
            ((distance(kad_key(p), target), p, a) for p, a in dict(seeds).items() if p not in self._exclude),
        )
        for i, (d, p, a) in enumerate(ordered[: max_candidates * paths]):
            self._paths[i % paths].add(Candidate(p, d, a, 1), max_candidates)

    # ------------------------------------------------------------- driving

    def next_requests(self, limit: int | None = None) -> list[Candidate]:
        """Peers to ask now (each is marked WAITING); never more than α in
        flight on a path, nothing once that path is done, and at most
        ``limit`` in all (the caller's own bound on requests)."""
        out: list[Candidate] = []
        for idx, path in enumerate(self._paths):
            if self._path_done(idx, path):
                continue
            for c in path.cands:
                if len(path.inflight) >= self.alpha or path.requests >= self.max_requests:
                    break
                if limit is not None and len(out) >= limit:
                    return out
                if c.state is not State.NOT_CONTACTED or self._claimed.get(c.peer, idx) != idx:
                    continue
                c.state = State.WAITING
                self._claimed[c.peer] = idx
                path.inflight[c.peer] = c
                path.contacted.add(c.peer)
                path.requests += 1
                self.requests += 1
                out.append(c)
        return out

    def on_response(self, peer: bytes, closer: Sequence[tuple[bytes, tuple[bytes, ...]]]) -> Candidate | None:
        """``peer`` answered, naming ``closer`` peers (only the first
        ``max_closer`` are read). Returns its candidate (None if unknown)."""
        idx, c = self._take(peer)
        if c is None:
            return None
        c.state = State.SUCCEEDED
        self.responses += 1
        path = self._paths[idx]
        for pid, addrs in closer[: self.max_closer]:
            if pid in self._exclude or pid in path.by_peer or pid in path.contacted:
                continue
            owner = self._claimed.get(pid)
            if owner is not None and owner != idx:
                continue
            d = distance(kad_key(pid), self.target)
            if len(path.cands) >= self.max_candidates and d >= path.dists[-1]:
                continue  # farther than everything we keep: not worth hashing further
            path.add(Candidate(pid, d, addrs, c.hop + 1), self.max_candidates)
        return c

    def on_failure(self, peer: bytes) -> Candidate | None:
        idx, c = self._take(peer)
        if c is None:
            return None
        c.state = State.FAILED
        self.failures += 1
        return c

    def on_slow(self, peer: bytes) -> int:
        """``peer``'s request has been out too long to keep one of the α
        slots. The path gives up slots only once it holds α requests in
        flight and every one is so overdue (it is stalled: the others would
        have answered by now); while one is still within time the path is
        making progress and nothing more is asked. (A request sent with no
        slow mark, slow_after 0 at the time, is never overdue: beside it
        the path waits as with slow marks off.) Slow requests stay awaited (WAITING): a
        late answer counts, and the termination rule still waits for them
        if they are among the k closest. At most ``max_slow`` slow requests
        per path (3α unless set; so at most α + max_slow awaited): beyond
        that a request keeps its slot until it ends. Returns how many slots
        were freed."""
        idx = self._claimed.get(peer)
        if idx is None:
            return 0
        path = self._paths[idx]
        if peer not in path.inflight:
            return 0
        path.overdue.add(peer)
        if len(path.inflight) < self.alpha or any(p not in path.overdue for p in path.inflight):
            return 0  # a free slot already (nothing else to ask), or a request still within time
        freed = 0
        for p in list(path.inflight):
            if len(path.slow) >= self.max_slow:
                break
            path.slow[p] = path.inflight.pop(p)
            path.overdue.discard(p)
            freed += 1
        self.slow += freed
        return freed

    def _take(self, peer: bytes) -> tuple[int, Candidate | None]:
        idx = self._claimed.get(peer)
        if idx is None:
            return -1, None
        path = self._paths[idx]
        c = path.inflight.pop(peer, None)
        if c is None:
            c = path.slow.pop(peer, None)
        path.overdue.discard(peer)
        return idx, c

    # ------------------------------------------------------------- state

    def _path_done(self, idx: int, path: _Path) -> bool:
        """The spec's rule: the k closest non-failed peers have all answered;
        or nothing is left to ask and nothing is in flight."""
        succeeded = 0
        for c in path.cands:
            if c.state is State.FAILED or self._claimed.get(c.peer, idx) != idx:
                continue
            if c.state is not State.SUCCEEDED:
                if path.requests >= self.max_requests and c.state is State.NOT_CONTACTED:
                    continue  # out of requests: this one will never be asked
                return False
            succeeded += 1
            if succeeded >= self.k:
                return True
        return True

    @property
    def done(self) -> bool:
        return all(self._path_done(i, p) for i, p in enumerate(self._paths))

    def in_flight(self) -> list[bytes]:
        """Every peer whose answer is awaited (slow ones included)."""
        return [p for path in self._paths for p in (*path.inflight, *path.slow)]

    def has_in_flight(self) -> bool:
        """Whether any answer is awaited (in_flight() without the list)."""
        for path in self._paths:
            if path.inflight or path.slow:
                return True
        return False

    def in_flight_per_path(self) -> list[int]:
        """Requests holding each path's α slots (slow ones not counted)."""
        return [len(p.inflight) for p in self._paths]

    def candidate_count(self) -> int:
        return sum(len(p.cands) for p in self._paths)

    def closest(self, n: int | None = None) -> list[Candidate]:
        """The closest peers that answered, over all paths."""
        found = sorted((c for p in self._paths for c in p.cands if c.state is State.SUCCEEDED), key=lambda c: c.dist)
        return found[: self.k if n is None else n]
