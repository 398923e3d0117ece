"""A slow peer gives up its α slot after ``slow_after``; its late answer still counts.

Without this, α = 3 starved or far peers asked first hold a lookup for a
whole request timeout before anyone else is asked (the newcomer's first
look-up in the 100-node real run waited out its 10 s deadline so)."""

from __future__ import annotations

from agentp2p.protocol.kademlia import ClosestPeers, KademliaConfig, Message, Peer, StartLookup, kad_key
from agentp2p.protocol.kademlia.keys import distance

from .kadhelpers import Delayed, Driver, IdealNetwork, closest_to, core_knowing, pid

TARGET = b"slow-target"
LATE = 6.0  # seconds the slow peers take to answer (the request timeout is 10)


def _config(slow_after: float) -> KademliaConfig:
    return KademliaConfig(refresh_interval=1e9, refresh_check_interval=1e9, request_timeout=10.0,
                          slow_after=slow_after)


def _lookup_with_slow_first_asked(slow_after: float):  # type: ignore[no-untyped-def]
    """The three peers asked first answer after LATE; returns (net, core,
    answers the lookup had before the late ones came, result)."""
    net = IdealNetwork(500)
    seeds = net.peers[:30]
    first = closest_to(TARGET, seeds, 3)  # what the lookup asks first (α = 3)
    for p in first:
        net.override[p] = lambda m, p=p: Delayed(LATE, net.honest(p, m))
    core = core_knowing(seeds, config=_config(slow_after))
    d = Driver(core, net)
    d.feed(StartLookup("q", TARGET))
    d.run(LATE - 0.5)
    early = core._queries["q"].lookup.responses
    return net, core, d, early, d.run_until_finished("q")


def test_slow_first_peers_do_not_hold_the_lookup() -> None:
    net, core, d, early, res = _lookup_with_slow_first_asked(1.0)
    assert early >= 20  # everyone else was asked and answered meanwhile
    assert isinstance(res.result, ClosestPeers)
    assert [p.id for p in res.result.peers] == closest_to(TARGET, net.peers)  # the same answer
    assert res.stats.slow == core.stats.slow == 3
    assert d.max_outstanding <= 6  # the stalled path's three freed together, three more asked


def test_without_slow_marks_the_lookup_waits_for_them() -> None:
    net, core, d, early, res = _lookup_with_slow_first_asked(0.0)
    assert early == 0  # nobody else asked until the first three answered
    assert [p.id for p in res.result.peers] == closest_to(TARGET, net.peers)
    assert res.stats.slow == 0 and d.max_outstanding <= 3


def test_a_late_answer_still_counts() -> None:
    """Only the slow peer knows the closest peer there is; the lookup moves
    on without it, but still takes its answer when it comes."""
    net = IdealNetwork(200)
    slow = closest_to(TARGET, net.peers, 1)[0]
    best = min(net.peers, key=lambda p: distance(kad_key(p), kad_key(TARGET)))
    hidden = next(x for x in (pid(f"hidden-{i}") for i in range(100_000))
                  if distance(kad_key(x), kad_key(TARGET)) < distance(kad_key(best), kad_key(TARGET)))

    def slow_answer(m: Message) -> Delayed:
        honest = net.honest(slow, m)
        return Delayed(3.0, Message(m.type, m.key, closer_peers=(Peer(hidden, (b"/sim",)), *honest.closer_peers)))

    net.override[slow] = slow_answer
    net.override[hidden] = lambda m: net.honest(best, m)
    core = core_knowing(net.peers[:30] + [slow], config=_config(1.0))
    d = Driver(core, net)
    d.feed(StartLookup("q", TARGET))
    res = d.run_until_finished("q")
    assert res.stats.slow == 0  # the other slots kept answering: the path never stalled, none was given up
    assert [p.id for p in res.result.peers][0] == hidden  # learnt only from the late answer
    assert res.stats.duration >= 3.0


def test_a_learned_threshold_comes_from_answers() -> None:
    """slow_after None (the node's "auto"): after a lookup answered in 10 ms
    each, the three peers asked first in the next one never answer. It asks
    everyone else after the learned threshold (the 0.5 s floor); turned off
    (the default), it asks no one else until their request timeout."""
    results = []
    for slow_after, expect_early in ((None, True), (0.0, False)):
        net = IdealNetwork(500)
        core = core_knowing(net.peers[:30], config=KademliaConfig(
            refresh_interval=1e9, refresh_check_interval=1e9, request_timeout=10.0, slow_after=slow_after))
        d = Driver(core, net)
        d.feed(StartLookup("warm", b"another-target"))
        d.run_until_finished("warm")
        if slow_after is None:
            assert core.slow_timer.samples >= 20 and core.slow_after() == 0.5
        silent = [e.peer for e in core.table.closest(kad_key(TARGET), 3)]  # what the lookup asks first
        for p in silent:
            net.override[p] = lambda m: None
        t0 = d.now
        d.feed(StartLookup("q", TARGET))
        d.run(t0 + 0.45)
        assert core._queries["q"].lookup.responses == 0  # before the threshold: only the silent three asked
        d.run(t0 + 1.0)
        early = core._queries["q"].lookup.responses
        assert (early >= 20) is expect_early, (slow_after, early)
        res = d.run_until_finished("q")
        results.append([p.id for p in res.result.peers])
    assert results[0] == results[1]  # the same answer either way


def test_a_path_that_is_making_progress_frees_no_slot() -> None:
    """The two peers closest to the target (asked first) answer only after
    LATE; the rest answer in 200 ms. The path's third slot keeps asking and
    getting answers, so the path is not stalled: the two late requests keep
    their slots past slow_after (1 s), and nothing is asked beside them
    (each request more is load on a starved machine). Both marks fire
    while the third slot is busy, so neither is ever freed."""
    net = IdealNetwork(500)
    late = closest_to(TARGET, net.peers, 2)
    for p in late:
        net.override[p] = lambda m, p=p: Delayed(LATE, net.honest(p, m))
    core = core_knowing(net.peers[:30] + late, config=_config(1.0))
    d = Driver(core, net, latency=0.2)
    d.feed(StartLookup("q", TARGET))
    d.run(LATE - 0.5)
    lk = core._queries["q"].lookup
    assert lk.responses >= 20  # others asked and answered meanwhile, one at a time
    assert d.max_outstanding <= 3  # never more than α in flight: no slot was given up while the path moved
    res = d.run_until_finished("q")
    assert [p.id for p in res.result.peers] == closest_to(TARGET, net.peers)
    assert res.stats.duration >= LATE  # the two late ones are among the k closest: awaited
    assert res.stats.slow == 0
