"""Replay guard: ids accepted once within a bounded, sound window."""

from __future__ import annotations

from agentp2p.security.rejections import RejectReason
from agentp2p.security.replay import ReplayGuard

NOW = 1_700_000_000_000


def test_second_copy_is_replayed_other_sender_is_not() -> None:
    g = ReplayGuard()
    assert g.check(b"a", "1", NOW, NOW) is None
    assert g.check(b"a", "1", NOW, NOW + 5) is RejectReason.REPLAYED
    assert g.check(b"b", "1", NOW, NOW) is None


def test_timestamps_outside_window_are_stale() -> None:
    g = ReplayGuard(max_age_ms=1000, max_future_ms=100)
    assert g.check(b"a", "old", NOW - 1001, NOW) is RejectReason.STALE
    assert g.check(b"a", "future", NOW + 101, NOW) is RejectReason.STALE
    assert g.check(b"a", "ok", NOW - 999, NOW) is None


def test_expired_ids_are_forgotten_but_their_copies_are_stale() -> None:
    g = ReplayGuard(max_age_ms=1000)
    assert g.check(b"a", "x", NOW, NOW) is None
    g.prune(NOW + 2000)
    assert len(g) == 0
    assert g.check(b"a", "x", NOW, NOW + 2000) is RejectReason.STALE


def test_capacity_eviction_raises_floor_so_forgotten_ids_stay_refused() -> None:
    g = ReplayGuard(max_entries_per_sender=3)
    for i in range(5):
        assert g.check(b"a", f"m{i}", NOW + i, NOW + 10) is None
    assert len(g) == 3
    # m0 and m1 were forgotten; a replay of them is still refused (as stale).
    assert g.check(b"a", "m0", NOW, NOW + 10) is RejectReason.STALE
    assert g.check(b"a", "m1", NOW + 1, NOW + 10) is RejectReason.STALE
    assert g.check(b"a", "m5", NOW + 5, NOW + 10) is None


def test_remember_seeds_from_durable_store() -> None:
    g = ReplayGuard()
    g.remember(b"a", "seen", NOW)
    assert g.check(b"a", "seen", NOW, NOW) is RejectReason.REPLAYED
