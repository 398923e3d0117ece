"""The k-bucket routing table, with replacement caches and liveness checks.

Bucket i holds up to k peers whose key shares exactly i leading bits with
ours (256 buckets — the fully unfolded form of the spec's lazily split
table; the peers it can hold are the same). A bucket is built when a peer
first lands in it: a network of n nodes fills about log2(n) of them, and a
simulator holding 10,000 tables would otherwise carry 5 million empty
dicts. Within a bucket the entries are ordered least- to most-recently seen.

Kademlia's rule for a full bucket: old peers that still answer are worth
more than new ones (they are likelier to stay), so a newcomer does not evict
anyone. It waits in the bucket's bounded *replacement cache*, and the table
asks the core to ping the least-recently-seen entry (:meth:`RoutingTable.update`
returns it); only if that ping fails is the entry dropped and the newest
replacement promoted. This is also what makes the table hard to flood: a
Sybil swarm can fill replacement caches, not buckets that hold live peers.
The core sends these checks within a budget (``KademliaConfig.ping_rate``);
one it does not send leaves the newcomer waiting (:meth:`ping_skipped`).

Refresh: a bucket that no lookup has touched for a while is *stale*; the
core looks up a random key in it (keys.random_peer_id_in_bucket).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .keys import KEY_BITS, common_prefix_len, kad_key

if TYPE_CHECKING:
    from .codec import Peer


@dataclass(slots=True)
class Entry:
    peer: bytes
    key: bytes
    addrs: tuple[bytes, ...]
    last_seen: float
    failures: int = 0  # consecutive failed requests
    #: ``key`` as an int, for XOR distances (closest() ranks entries on every request served)
    ikey: int = field(init=False, repr=False, compare=False)
    #: What a server answers about this entry, built once (server.closer_peers);
    #: reset whenever ``addrs`` change.
    wire: tuple[Peer, Peer] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.ikey = int.from_bytes(self.key, "big")


class Update(enum.Enum):
    ADDED = "added"
    UPDATED = "updated"  # already in; now most recently seen
    PENDING = "pending"  # bucket full: in the replacement cache
    REFUSED = "refused"  # ourselves


@dataclass(slots=True)
class _Bucket:
    entries: OrderedDict[bytes, Entry]
    replacements: OrderedDict[bytes, tuple[bytes, ...]]  # newest last
    pinging: bytes | None = None  # the entry whose liveness we are checking


class RoutingTable:
    def __init__(self, local_peer: bytes, *, k: int, replacement_cache: int, max_addrs: int, now: float) -> None:
        self.local_peer = local_peer
        self.local_key = kad_key(local_peer)
        self.k, self.replacement_cache, self.max_addrs = k, replacement_cache, max_addrs
        self._buckets: dict[int, _Bucket] = {}  # index -> bucket, built on first use
        self._where: dict[bytes, int] = {}  # peer -> bucket index, for entries only
        self._nonempty: set[int] = set()  # bucket indexes with entries
        self._born = now  # every bucket counts as refreshed at the table's start
        self._refreshed: dict[int, float] = {}  # bucket index -> its last refresh, once there was one

    # ------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, peer: object) -> bool:
        return peer in self._where

    def get(self, peer: bytes) -> Entry | None:
        i = self._where.get(peer)
        return None if i is None else self._buckets[i].entries[peer]

    def peers(self) -> list[Entry]:
        return [e for b in self._buckets.values() for e in b.entries.values()]

    def bucket_of(self, key: bytes) -> int:
        return min(common_prefix_len(self.local_key, key), KEY_BITS - 1)

    def bucket_sizes(self) -> dict[int, int]:
        return {i: len(b.entries) for i, b in sorted(self._buckets.items()) if b.entries}

    def replacement_count(self) -> int:
        return sum(len(b.replacements) for b in self._buckets.values())

    def closest(self, target: bytes, n: int, exclude: Iterable[bytes] = ()) -> list[Entry]:
        """The ``n`` entries closest to ``target`` (a hashed key), ranking only
        the groups needed. With c = cpl(local, target), the entries of bucket c
        share more than c bits with the target, so they beat every other;
        next come all deeper buckets together (exactly c bits shared), then
        bucket c-1, c-2, ... in turn. A server answers a FIND_NODE for a
        random key from its full bucket c alone, without ranking the table."""
        skip = frozenset(exclude)
        t = int.from_bytes(target, "big")

        def dist(e: Entry) -> int:
            return e.ikey ^ t

        def best(entries: Iterable[Entry], need: int) -> list[Entry]:
            cand = [e for e in entries if e.peer not in skip] if skip else list(entries)
            cand.sort(key=dist)
            return cand[:need]

        c = self.bucket_of(target)
        buckets, used = self._buckets, self._nonempty
        out = best(buckets[c].entries.values(), n) if c in used else []
        if len(out) < n:
            out += best((e for i in used if i > c for e in buckets[i].entries.values()), n - len(out))
        if len(out) < n:
            for i in sorted((i for i in used if i < c), reverse=True):
                out += best(buckets[i].entries.values(), n - len(out))
                if len(out) >= n:
                    break
        return out

    # ------------------------------------------------------------ changes

    def update(self, peer: bytes, addrs: tuple[bytes, ...], now: float) -> tuple[Update, bytes | None]:
        """``peer`` (a DHT server) was seen alive. Returns what happened and,
        for a full bucket, the entry to ping (None when one is already being
        pinged: one liveness check per bucket at a time). A caller that does
        not send the ping says :meth:`ping_skipped`."""
        if peer == self.local_peer:
            return Update.REFUSED, None
        addrs = addrs[: self.max_addrs]
        i = self._where.get(peer)
        if i is not None:
            b = self._buckets[i]
            e = b.entries[peer]
            e.last_seen, e.failures = now, 0
            if addrs and addrs != e.addrs:
                e.addrs, e.wire = addrs, None
            b.entries.move_to_end(peer)
            return Update.UPDATED, None
        key = kad_key(peer)
        i = self.bucket_of(key)
        b = self._buckets.get(i)
        if b is None:
            b = self._buckets[i] = _Bucket(OrderedDict(), OrderedDict())
        if len(b.entries) < self.k:
            b.entries[peer] = Entry(peer, key, addrs, now)
            self._where[peer] = i
            self._nonempty.add(i)
            b.replacements.pop(peer, None)
            return Update.ADDED, None
        b.replacements.pop(peer, None)
        b.replacements[peer] = addrs
        while len(b.replacements) > self.replacement_cache:
            b.replacements.popitem(last=False)
        if b.pinging is not None:
            return Update.PENDING, None
        b.pinging = next(iter(b.entries))
        return Update.PENDING, b.pinging

    def ping_skipped(self, peer: bytes) -> None:
        """The check :meth:`update` asked for of ``peer`` was not sent (the
        core's budget was spent): the bucket may ask again."""
        i = self._where.get(peer)
        if i is not None and self._buckets[i].pinging == peer:
            self._buckets[i].pinging = None

    def ping_result(self, peer: bytes, alive: bool, now: float) -> tuple[bytes | None, bytes | None]:
        """The liveness check of ``peer`` ended. Returns (removed, promoted)."""
        i = self._where.get(peer)
        if i is None:
            return None, None
        b = self._buckets[i]
        if b.pinging == peer:
            b.pinging = None
        if alive:
            self.update(peer, (), now)
            return None, None
        return peer, self._drop(i, peer, now)

    def failed(self, peer: bytes, max_failures: int, now: float) -> tuple[bytes | None, bytes | None]:
        """A request to ``peer`` failed. After ``max_failures`` in a row the
        entry goes and the newest replacement takes its slot. Returns (removed, promoted)."""
        i = self._where.get(peer)
        if i is None:
            return None, None
        e = self._buckets[i].entries[peer]
        e.failures += 1
        if e.failures < max_failures:
            return None, None
        return peer, self._drop(i, peer, now)

    def remove(self, peer: bytes, now: float) -> bytes | None:
        """Drop ``peer`` (e.g. it turned client). Returns the promoted replacement."""
        i = self._where.get(peer)
        return None if i is None else self._drop(i, peer, now)

    def _drop(self, i: int, peer: bytes, now: float) -> bytes | None:
        b = self._buckets[i]
        del b.entries[peer]
        del self._where[peer]
        if b.pinging == peer:
            b.pinging = None
        if not b.replacements:
            if not b.entries:
                self._nonempty.discard(i)
            return None
        new, addrs = b.replacements.popitem(last=True)
        b.entries[new] = Entry(new, kad_key(new), addrs, now)
        self._where[new] = i
        return new

    # ------------------------------------------------------------ refresh

    def mark_refreshed(self, target: bytes, now: float) -> None:
        """A lookup for ``target`` (hashed) finished: its bucket is fresh."""
        self._refreshed[self.bucket_of(target)] = now

    def stale_buckets(self, now: float, interval: float, max_cpl: int) -> list[int]:
        """Buckets due for a refresh lookup, the stalest first: up to one past
        the deepest non-empty bucket (where new close peers would land),
        capped at ``max_cpl``."""
        if not self._where:
            return []
        deepest = max(self._nonempty)
        top = min(deepest + 1, max_cpl)
        done, born = self._refreshed, self._born
        due = [i for i in range(top + 1) if now - done.get(i, born) >= interval]
        return sorted(due, key=lambda i: done.get(i, born))  # stable: ties keep bucket order
