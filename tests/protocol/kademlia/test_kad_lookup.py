"""The lookup state machine on its own: α, the termination rule, bounds, disjoint paths."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agentp2p.protocol.kademlia.keys import kad_key
from agentp2p.protocol.kademlia.lookup import Lookup, State

from .kadhelpers import closest_to, pid

NET = [pid(f"n{i}") for i in range(300)]
TARGET = b"target"


def lookup(seeds: list[bytes], **kw: int) -> Lookup:
    args = {"k": 20, "alpha": 3, **kw}
    return Lookup(kad_key(TARGET), [(p, ()) for p in seeds], **args)  # type: ignore[arg-type]


def ideal(peer: bytes) -> list[tuple[bytes, tuple[bytes, ...]]]:
    return [(p, ()) for p in closest_to(TARGET, NET) if p != peer]


def run(lk: Lookup, answer, rng: random.Random) -> int:  # type: ignore[no-untyped-def]
    """Answer in-flight requests in random order until done; returns the max in flight."""
    most = 0
    inflight: list[bytes] = []
    while not lk.done:
        inflight += [c.peer for c in lk.next_requests()]
        most = max(most, *lk.in_flight_per_path(), 0)
        if not inflight:
            break
        peer = inflight.pop(rng.randrange(len(inflight)))
        result = answer(peer)
        if result is None:
            lk.on_failure(peer)
        else:
            lk.on_response(peer, result)
    return most


def test_finds_the_k_closest_and_stops() -> None:
    lk = lookup(NET[:20])
    most = run(lk, ideal, random.Random(0))
    assert most <= 3
    assert [c.peer for c in lk.closest()] == closest_to(TARGET, NET)
    assert lk.requests < 60  # converges: the seeds, then the true closest


def test_termination_rule_waits_for_all_k_closest() -> None:
    """Not done while any of the k closest non-failed peers has not answered."""
    lk = lookup(NET[:5], k=3, alpha=5)
    sent = lk.next_requests()
    assert len(sent) == 5
    by_dist = sorted(sent, key=lambda c: c.dist)
    for c in by_dist[1:]:
        lk.on_response(c.peer, [])
    assert not lk.done  # the closest one is still out
    lk.on_failure(by_dist[0].peer)
    assert lk.done  # it failed: the next three closest all answered
    assert [c.peer for c in lk.closest()] == [c.peer for c in by_dist[1:4]]


def test_done_when_fewer_than_k_peers_exist() -> None:
    lk = lookup(NET[:4])
    for c in lk.next_requests():
        lk.on_response(c.peer, [])
    assert not lk.done
    for c in lk.next_requests():
        lk.on_response(c.peer, [])
    assert lk.done and len(lk.closest()) == 4


def test_empty_seeds_are_done() -> None:
    assert lookup([]).done


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 3), st.integers(0, 2**32), st.floats(0, 0.5))
def test_alpha_never_exceeded(alpha: int, paths: int, seed: int, fail_rate: float) -> None:
    rng = random.Random(seed)
    lk = lookup(rng.sample(NET, 30), alpha=alpha, paths=paths)
    most = run(lk, lambda p: None if rng.random() < fail_rate else ideal(p), rng)
    assert most <= alpha
    assert lk.done


def test_ten_thousand_fake_closer_peers_do_not_grow_the_candidates() -> None:
    lk = lookup(NET[:20], max_candidates=100, max_closer=20)
    fakes = [(pid(f"fake{i}"), ()) for i in range(10_000)]
    for c in lk.next_requests():
        lk.on_response(c.peer, fakes)  # only the first 20 of each answer are read
    assert lk.candidate_count() <= 100
    # keep feeding fake lists to every peer that is asked: still bounded
    rng = random.Random(1)
    for _ in range(200):
        sent = lk.next_requests()
        if not sent:
            break
        for c in sent:
            lk.on_response(c.peer, rng.sample(fakes, 50))
        assert lk.candidate_count() <= 100
    assert lk.requests <= 300  # max_requests


def test_disjoint_paths_never_share_a_queried_peer() -> None:
    lk = lookup(NET[:40], paths=3)
    asked: dict[bytes, int] = {}
    rng = random.Random(2)
    inflight: list[bytes] = []
    while not lk.done:
        for c in lk.next_requests():
            assert c.peer not in asked
            asked[c.peer] = 1
            inflight.append(c.peer)
        if not inflight:
            break
        p = inflight.pop(rng.randrange(len(inflight)))
        lk.on_response(p, ideal(p))
    assert len(asked) == lk.requests
    found = [c.peer for c in lk.closest()]
    assert len(found) == 20 and set(found) <= set(closest_to(TARGET, NET, 40))


def test_unknown_answers_are_ignored() -> None:
    lk = lookup(NET[:3])
    assert lk.on_response(pid("stranger"), [(pid("x"), ())]) is None
    assert lk.on_failure(pid("stranger")) is None
    c = lk.next_requests()[0]
    assert lk.on_response(c.peer, []) is c and c.state is State.SUCCEEDED
    assert lk.on_response(c.peer, []) is None  # a second answer counts for nothing
