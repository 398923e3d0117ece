"""The learned slow threshold (slow_timer.py): fast answers bring it to the
floor, starved ones up to the request timeout, and one late answer cannot
push it past the ceiling."""

from __future__ import annotations

import pytest

from agentp2p.protocol.kademlia.slow_timer import SlowTimer


def test_before_any_answer_the_threshold_is_half_the_ceiling() -> None:
    assert SlowTimer(floor=0.5, ceiling=5.0).threshold() == 2.5
    assert SlowTimer(floor=0.5, ceiling=0.8).threshold() == 0.5  # never below the floor


def test_fast_answers_bring_it_to_the_floor() -> None:
    t = SlowTimer(floor=0.5, ceiling=5.0)
    for _ in range(50):
        t.sample(0.02)
    assert t.threshold() == 0.5
    assert t.srtt == pytest.approx(0.02)


def test_a_network_of_dials_and_answers_lands_between() -> None:
    """Answers that take 0.1 s on a connection and 0.5 s with a dial first."""
    t = SlowTimer(floor=0.5, ceiling=5.0)
    for i in range(200):
        t.sample(0.5 if i % 2 else 0.1)
    assert 0.9 < t.threshold() < 1.5


def test_starved_peers_push_it_to_the_request_timeout() -> None:
    """Answers in 3 to 5 s (the starved 100-node real run): a fixed 1 s would
    have freed every slot; the learned threshold frees none before 5 s."""
    t = SlowTimer(floor=0.5, ceiling=5.0)
    for i in range(40):
        t.sample(3.0 + (i % 3))
    assert t.threshold() == 5.0


def test_a_late_answer_counts_as_the_ceiling() -> None:
    t = SlowTimer(floor=0.5, ceiling=5.0)
    t.sample(0.1)
    t.sample(3600.0)
    assert t.srtt is not None and t.srtt <= 0.1 + 5.0 / 8 + 1e-9
    assert t.threshold() == 5.0


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        SlowTimer(floor=0.0, ceiling=5.0)
    with pytest.raises(ValueError):
        SlowTimer(floor=6.0, ceiling=5.0)
