"""k-buckets: insertion, the liveness check before eviction, replacements, closest(), refresh."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agentp2p.protocol.kademlia.keys import common_prefix_len, distance, kad_key, random_peer_id_in_bucket
from agentp2p.protocol.kademlia.routing_table import RoutingTable, Update

from .kadhelpers import pid

ME = pid("me")


def table(k: int = 3, cache: int = 2) -> RoutingTable:
    return RoutingTable(ME, k=k, replacement_cache=cache, max_addrs=4, now=0.0)


def in_bucket(t: RoutingTable, cpl: int, n: int, tag: str = "") -> list[bytes]:
    """``n`` peer IDs whose key lands in bucket ``cpl``."""
    out: list[bytes] = []
    i = 0
    while len(out) < n:
        p = pid(f"{tag}{i}")
        if t.bucket_of(kad_key(p)) == cpl:
            out.append(p)
        i += 1
    return out


def test_keys() -> None:
    a, b = kad_key(b"a"), kad_key(b"b")
    assert distance(a, a) == 0 and distance(a, b) == distance(b, a)
    assert common_prefix_len(a, a) == 256
    flipped = (int.from_bytes(a, "big") ^ (1 << 250)).to_bytes(32, "big")
    assert common_prefix_len(a, flipped) == 5
    rng = random.Random(0)
    for cpl in (0, 3, 9):
        p = random_peer_id_in_bucket(a, cpl, rng)
        assert common_prefix_len(a, kad_key(p)) == cpl and p[:2] == b"\x12\x20"


def test_insert_until_full_then_ping_least_recently_seen() -> None:
    t = table()
    a, b, c, d, e = in_bucket(t, 0, 5)
    assert [t.update(p, (b"/x",), float(i))[0] for i, p in enumerate((a, b, c))] == [Update.ADDED] * 3
    assert t.update(a, (), 3.0) == (Update.UPDATED, None)  # a is now the most recently seen: b is the oldest
    assert t.update(d, (b"/d",), 4.0) == (Update.PENDING, b)
    assert t.update(e, (b"/e",), 5.0) == (Update.PENDING, None)  # one liveness check per bucket at a time
    assert len(t) == 3 and t.replacement_count() == 2


def test_live_entry_stays_newcomer_waits() -> None:
    t = table()
    a, b, c, d = in_bucket(t, 0, 4)
    for p in (a, b, c):
        t.update(p, (), 0.0)
    _, ping = t.update(d, (), 1.0)
    assert ping == a
    assert t.ping_result(a, True, 2.0) == (None, None)
    assert a in t and d not in t
    assert [e.peer for e in t.peers()][-1] == a  # refreshed to most recently seen
    assert t.update(d, (), 3.0) == (Update.PENDING, b)  # the next oldest is checked next


def test_dead_entry_is_replaced_by_newest_candidate() -> None:
    t = table()
    a, b, c, d, e = in_bucket(t, 0, 5)
    for p in (a, b, c):
        t.update(p, (), 0.0)
    t.update(d, (b"/d",), 1.0)
    t.update(e, (b"/e",), 2.0)
    assert t.ping_result(a, False, 3.0) == (a, e)
    assert a not in t and e in t and t.get(e).addrs == (b"/e",)  # type: ignore[union-attr]
    assert t.replacement_count() == 1


def test_a_check_not_sent_lets_the_bucket_ask_again() -> None:
    """While a check is under way the bucket asks for no other; one the
    caller did not send (its budget was spent: ping_skipped) frees it."""
    t = table()
    a, b, c, d, e = in_bucket(t, 0, 5)
    for i, p in enumerate((a, b, c)):
        t.update(p, (), float(i))
    assert t.update(d, (), 3.0) == (Update.PENDING, a)
    assert t.update(e, (), 4.0) == (Update.PENDING, None)
    t.ping_skipped(b)  # not the one asked for: no effect
    assert t.update(e, (), 5.0) == (Update.PENDING, None)
    t.ping_skipped(a)
    assert t.update(d, (), 6.0) == (Update.PENDING, a)
    assert len(t) == 3 and t.replacement_count() == 2


def test_replacement_cache_is_bounded() -> None:
    t = table(k=2, cache=3)
    peers = in_bucket(t, 1, 50)
    for p in peers:
        t.update(p, (), 0.0)
    assert len(t) == 2 and t.replacement_count() == 3


def test_failures_evict_after_threshold() -> None:
    t = table()
    a, b, c, d = in_bucket(t, 0, 4)
    for p in (a, b, c):
        t.update(p, (), 0.0)
    t.update(d, (), 0.0)
    assert t.failed(b, 2, 1.0) == (None, None)
    t.update(b, (), 1.5)  # a success resets the count
    assert t.failed(b, 2, 2.0) == (None, None)
    assert t.failed(b, 2, 2.5) == (b, d)


def test_refuses_self() -> None:
    assert table().update(ME, (), 0.0) == (Update.REFUSED, None)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 400), st.integers(0, 10_000), st.integers(1, 45), st.integers(0, 2), st.integers(0, 12))
def test_closest_matches_brute_force(n: int, seed: int, want: int, where: int, bit: int) -> None:
    """closest() ranks only the buckets it needs; the answer must be the
    brute-force one for any target: random (mostly bucket 0 or 1), the key
    of a table entry, or our own key with one bit flipped (bucket ``bit``),
    with a peer excluded as a server excludes the requester."""
    t = RoutingTable(ME, k=20, replacement_cache=5, max_addrs=4, now=0.0)
    for i in range(n):
        t.update(pid(f"{seed}-{i}"), (), 0.0)
    peers = t.peers()
    if where == 1 and peers:
        target = peers[seed % len(peers)].key
    elif where == 2:
        target = (int.from_bytes(t.local_key, "big") ^ (1 << (255 - bit))).to_bytes(32, "big")
    else:
        target = kad_key(b"t%d" % seed)
    skip = {peers[(seed * 7) % len(peers)].peer} if peers and seed % 2 else set()
    brute = sorted((e for e in peers if e.peer not in skip), key=lambda e: distance(e.key, target))[:want]
    assert [e.peer for e in t.closest(target, want, exclude=skip)] == [e.peer for e in brute]


def test_stale_buckets_and_refresh() -> None:
    t = table(k=20)
    for i in range(100):
        t.update(pid(i), (), 0.0)
    deepest = max(t.bucket_sizes())
    stale = t.stale_buckets(600.0, 600.0, 15)
    assert stale == list(range(min(deepest + 1, 15) + 1))
    t.mark_refreshed(kad_key(in_bucket(t, 0, 1, "r")[0]), 600.0)
    assert 0 not in t.stale_buckets(700.0, 600.0, 15)
    assert t.stale_buckets(599.0, 600.0, 15) == []


def test_stale_buckets_come_stalest_first() -> None:
    """A check that refreshes only a few (KademliaCore: max_refreshes_per_check)
    takes the longest untouched; never-refreshed ones count from the table's start."""
    t = table(k=20)
    for i in range(100):
        t.update(pid(i), (), 0.0)
    assert len(t.stale_buckets(2000.0, 600.0, 15)) >= 4
    t.mark_refreshed(kad_key(in_bucket(t, 0, 1, "r0")[0]), 300.0)
    t.mark_refreshed(kad_key(in_bucket(t, 1, 1, "r1")[0]), 100.0)
    t.mark_refreshed(kad_key(in_bucket(t, 2, 1, "r2")[0]), 200.0)
    stale = t.stale_buckets(2000.0, 600.0, 15)
    assert stale[-3:] == [1, 2, 0] and stale[:-3] == sorted(stale[:-3])
    assert t.stale_buckets(850.0, 600.0, 15)[-2:] == [1, 2]  # bucket 0 is not stale yet


def test_buckets_are_built_where_peers_land() -> None:
    """256 buckets per table, most of them empty forever: a table builds
    only those a peer landed in (a simulator holds 10,000 tables), and a
    refresh or a query builds none."""
    t = table(k=20)
    assert t._buckets == {} and t.stale_buckets(0.0, 600.0, 15) == []
    for i in range(300):
        t.update(pid(i), (), 0.0)
    assert set(t._buckets) == {t.bucket_of(kad_key(pid(i))) for i in range(300)} == set(t.bucket_sizes())
    built = dict(t._buckets)
    far = (int.from_bytes(t.local_key, "big") ^ (1 << (255 - 40))).to_bytes(32, "big")  # bucket 40
    t.mark_refreshed(far, 1.0)
    t.closest(kad_key(b"anything"), 20)
    assert t._buckets == built and len(built) < 20
