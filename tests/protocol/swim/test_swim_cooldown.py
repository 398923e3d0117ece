"""Cooldown: once per key per so many periods, in bounded memory."""
import pytest

from agentp2p.protocol.swim.cooldown import Cooldown


def test_a_key_cools_for_its_periods_then_may_act_again() -> None:
    c: Cooldown[str] = Cooldown(periods=3, memory=8)
    assert not c.cooling("a", 10)
    c.mark("a", 10)
    assert [c.cooling("a", p) for p in (10, 11, 12, 13)] == [True, True, True, False]
    assert [c.within("a", p, 2) for p in (10, 12, 13)] == [True, True, False]
    assert not c.within("b", 10, 2)


def test_memory_forgets_expired_keys_first_and_never_grows_past_its_bound() -> None:
    c: Cooldown[int] = Cooldown(periods=5, memory=4)
    for k in range(4):
        c.mark(k, k)  # keys 0..3 at periods 0..3
    c.mark(9, 6)  # full: 0 and 1 have cooled (6 - 1 >= 5), 2 and 3 have not
    assert len(c) == 3
    assert not c.cooling(0, 6) and c.cooling(2, 6) and c.cooling(3, 6) and c.cooling(9, 6)
    for k in range(100, 200):  # a flood of keys all still cooling: the oldest go
        c.mark(k, 7)
        assert len(c) <= 4
    assert c.cooling(199, 7) and not c.cooling(2, 7)


def test_marking_again_moves_a_key_to_the_newest_end() -> None:
    c: Cooldown[str] = Cooldown(periods=10, memory=2)
    c.mark("a", 0)
    c.mark("b", 1)
    c.mark("a", 2)  # a is newest now: the next key evicts b
    c.mark("c", 3)
    assert c.cooling("a", 3) and c.cooling("c", 3) and not c.cooling("b", 3)


def test_nonsense_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        Cooldown(0, 4)
    with pytest.raises(ValueError):
        Cooldown(4, 0)
