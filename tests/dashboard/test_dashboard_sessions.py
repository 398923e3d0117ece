"""Login codes and browser sessions (sans-IO): one use, lifetimes, bounds."""

from __future__ import annotations

from agentp2p.application.dashboard.sessions import DashboardLimits, Sessions


def test_a_code_opens_one_session_once() -> None:
    s = Sessions()
    code = s.issue_code(now=0.0)
    session = s.redeem(code, now=1.0)
    assert session is not None and session != code
    assert s.valid(session, now=2.0)
    assert s.redeem(code, now=2.0) is None  # spent
    assert s.stats()["logins"] == 1 and s.stats()["refused_codes"] == 1


def test_codes_and_sessions_lapse() -> None:
    s = Sessions(DashboardLimits(code_ttl=60.0, session_ttl=3600.0))
    late = s.issue_code(now=0.0)
    assert s.redeem(late, now=60.0) is None
    session = s.redeem(s.issue_code(now=100.0), now=159.0)
    assert session is not None
    assert s.valid(session, now=100.0 + 3600.0) and s.remaining(session, now=159.0 + 3000.0) == 600.0
    # No sliding renewal: asking does not extend it.
    assert not s.valid(session, now=159.0 + 3600.0)
    assert s.stats()["sessions"] == 0


def test_unknown_values_are_refused_and_nothing_is_stored_in_clear() -> None:
    s = Sessions()
    code = s.issue_code(now=0.0)
    session = s.redeem(s.issue_code(now=0.0), now=0.0)
    assert session is not None
    assert s.redeem("", now=0.0) is None and s.redeem(session, now=0.0) is None
    assert not s.valid(code, now=0.0) and not s.valid("x" * 43, now=0.0)
    held = [*s._codes, *s._sessions]
    assert all(isinstance(k, bytes) and len(k) == 32 for k in held)
    assert code.encode() not in held and session.encode() not in held


def test_the_tables_are_bounded_oldest_first() -> None:
    s = Sessions(DashboardLimits(max_codes=2, max_sessions=2))
    first, second, third = (s.issue_code(now=float(i)) for i in range(3))
    assert s.redeem(first, now=3.0) is None  # pushed out by the third
    sessions = [s.redeem(second, now=3.0), s.redeem(third, now=3.0), s.redeem(s.issue_code(now=4.0), now=4.0)]
    assert None not in sessions
    assert not s.valid(sessions[0], now=5.0)  # the oldest browser was logged out
    assert s.valid(sessions[1], now=5.0) and s.valid(sessions[2], now=5.0)


def test_logout_ends_a_session() -> None:
    s = Sessions()
    session = s.redeem(s.issue_code(now=0.0), now=0.0)
    assert session is not None
    assert s.end(session) and not s.end(session)
    assert not s.valid(session, now=0.0)
