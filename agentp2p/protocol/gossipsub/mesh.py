"""Mesh and fanout peer selection (gossipsub v1.0 "Mesh Maintenance", v1.1
"Outbound Mesh Quotas" and "Heartbeat Maintenance").

Pure functions over peer sets, so the rules the heartbeat applies can be read
(and tested) apart from the router's bookkeeping. Every random choice goes
through the caller's ``rng`` over a *sorted* candidate list: set order of
bytes depends on the interpreter's hash seed, and a simulation with a fixed
seed must replay exactly.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable, Collection, Iterable
from functools import lru_cache

from .rpc import PeerId

ScoreFn = Callable[[PeerId], float]


def pick(candidates: Iterable[PeerId], count: int, rng: random.Random) -> list[PeerId]:
    """Up to ``count`` of ``candidates``, uniformly at random."""
    pool = sorted(candidates)
    if count <= 0:
        return []
    if len(pool) <= count:
        rng.shuffle(pool)
        return pool
    return rng.sample(pool, count)


@lru_cache(maxsize=8192)
def xor_key(peer: PeerId) -> int:
    """A peer's place in Kademlia's keyspace: SHA-256 of its ID (the DHT keys
    peers the same way, so the mesh's "near" is the routing table's)."""
    return int.from_bytes(hashlib.sha256(peer).digest(), "big")


def nearest(candidates: Iterable[PeerId], count: int, local: PeerId) -> list[PeerId]:
    """The ``count`` candidates nearest to ``local`` by XOR distance, nearest first.

    Why XOR: it is a metric in which two peers near a third are near each
    other (the shared prefix), so meshes that prefer near peers overlap —
    clustering — while every peer stays a random point (an ID is a hash)."""
    if count <= 0:
        return []
    me = xor_key(local)
    return heapq.nsmallest(count, candidates, key=lambda p: xor_key(p) ^ me)


def survivors(
    mesh: Iterable[PeerId],
    *,
    d: int,
    d_score: int,
    d_out: int,
    score: ScoreFn,
    outbound: Callable[[PeerId], bool],
    rng: random.Random,
    near: Collection[PeerId] = (),
) -> list[PeerId]:
    """The ``d`` peers an oversubscribed mesh keeps: the ``d_score`` best by
    score, then those in ``near`` (the d_near nearest), the rest at random,
    then — if fewer than ``d_out`` of those are outbound — outbound peers
    from the pruned remainder replace the random (not the best-scoring)
    picks. Why: the best peers protect the mesh from takeover, the near ones
    make neighbouring meshes overlap, the random ones let newcomers in, the
    outbound quota means an attacker who can only *connect to us* cannot
    fill the mesh."""
    plist = sorted(mesh)
    rng.shuffle(plist)  # ties in score broken at random
    plist.sort(key=score, reverse=True)
    rest = plist[d_score:]
    rng.shuffle(rest)
    rest.sort(key=lambda p: p not in near)  # stable: near first, each part still shuffled
    plist[d_score:] = rest
    keep, dropped = plist[:d], plist[d:]
    have_out = sum(1 for p in keep if outbound(p))
    if have_out >= d_out:
        return keep
    # Swap in outbound peers from the dropped ones, replacing inbound picks
    # from the end (the random part first, the best-scoring last).
    extra = [p for p in dropped if outbound(p)][: d_out - have_out]
    for p in extra:
        for i in range(len(keep) - 1, -1, -1):
            if not outbound(keep[i]):
                keep[i] = p
                break
    return keep


def median_score(mesh: Iterable[PeerId], score: ScoreFn) -> float:
    """The score at index len/2 of the ascending list (go's median, an upper median)."""
    scores = sorted(score(p) for p in mesh)
    return scores[len(scores) // 2]
