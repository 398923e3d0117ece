"""The simulator's stalled event loops (agentp2p.simulation.stalls)."""

from __future__ import annotations

import pytest

from agentp2p.protocol.swim import SwimConfig
from agentp2p.simulation.stalls import StallModel
from agentp2p.simulation.swim import SwimSimulation
from agentp2p.simulation.swim_metrics import Observer


def first_stall(model: StallModel, node: int) -> tuple[float, float]:
    t = 0.0
    while (end := model.blocked_until(node, t)) is None:
        t += 0.001
        assert t < 100, "no stall in 100 s"
    return t, end


def test_nodes_of_one_process_stall_together_and_the_schedule_is_seeded() -> None:
    a, b = StallModel(procs=2, stall_mean=0.5, run_mean=1.0, seed=4), StallModel(procs=2, stall_mean=0.5, run_mean=1.0, seed=4)
    begin, end = first_stall(a, 0)
    assert first_stall(b, 0) == (begin, end)  # same seed, same schedule
    assert a.blocked_until(2, begin) == end  # node 2 runs on process 0's loop
    other = StallModel(procs=2, stall_mean=0.5, run_mean=1.0, seed=4)
    assert first_stall(other, 1) != (begin, end)  # process 1 has its own
    assert a.blocked_until(0, end) is None  # over at its end (the next one starts later)
    blocks = StallModel(procs=2, stall_mean=0.5, run_mean=1.0, seed=4, process_of=[0, 0, 1, 1])
    assert blocks.blocked_until(1, begin) == end  # node 1 is in process 0's block here


def test_no_stall_outside_the_window() -> None:
    m = StallModel(procs=1, stall_mean=0.5, run_mean=0.5, start=10.0, end=20.0, seed=1)
    assert all(m.blocked_until(0, t / 10) is None for t in range(100))
    assert any(m.blocked_until(0, 10 + t / 100) is not None for t in range(1000))
    assert all(m.blocked_until(0, 30 + t) is None for t in range(30))


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        StallModel(procs=0, stall_mean=1.0, run_mean=1.0)
    with pytest.raises(ValueError):
        StallModel(procs=2, stall_mean=0.0, run_mean=1.0)
    with pytest.raises(ValueError):
        StallModel(procs=2, stall_mean=1.0, run_mean=1.0, process_of=[0, 2])


def stalled_cluster(stalls: StallModel | None) -> tuple[SwimSimulation, Observer]:
    obs = Observer()
    # The same schedule, read apart: no member acts inside its process's stall.
    twin = StallModel(procs=2, stall_mean=1.5, run_mean=1.5, start=10.0, end=30.0, seed=2) if stalls else None
    acted_stalled = []

    def hook(now: float, member: int, ev: object) -> None:
        if twin is not None and (end := twin.blocked_until(member, now)) is not None and end > now:
            acted_stalled.append((now, member))
        obs(now, member, ev)  # type: ignore[arg-type]

    sim = SwimSimulation(30, seed=2, config=SwimConfig(), on_event=hook, stalls=stalls)
    obs.sim = sim
    sim.run_until(60.0)
    assert acted_stalled == []
    return sim, obs


def test_a_stalled_process_is_suspected_with_helpers_nacks_and_refutes() -> None:
    """Two processes of 15 members, each on one event loop. While a loop
    stops for longer than a protocol period, its members cannot answer, and
    the other process's members suspect them with their helpers' Nacks: the
    devnet's merge tail under CPU contention, where every false suspicion of
    one run had a helper's Nack (docs/scale.md, "The merge tail"). The
    suspects refute once running; after the stalls every view is whole."""
    sim, obs = stalled_cluster(StallModel(procs=2, stall_mean=1.5, run_mean=1.5, start=10.0, end=30.0, seed=2))
    suspected = sum(c.stats.suspected for c in sim.cores)
    nacked = sum(c.stats.suspected_nacked for c in sim.cores)
    assert suspected > 5 and nacked >= 0.9 * suspected, (suspected, nacked)
    assert obs.false_suspects > 0 and obs.bad_views == 0
    assert sim.stalls is not None and sim.stalls.stalls > 3
    quiet, quiet_obs = stalled_cluster(None)
    assert sum(c.stats.suspected for c in quiet.cores) == 0 and quiet_obs.false_suspects == 0
